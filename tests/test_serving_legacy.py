"""The API takes what the loader takes: legacy "unknown" codes (ca = 4, thal = 0) and `sex`
for `gender`, by the one declaration in heart/schema.py; and the course's client, played
against a real server, gets an answer for every patient."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import requests

from heart.analyses import drift
from heart.clients.client import prediction_problem, row_problem
from heart.clients.harness import ApiServer
from heart.data import load_dataset
from heart.predlog import load_prediction_log
from heart.schema import ALIASES, BY_NAME, FEATURE_NAMES, FEATURES
from heart.serving.contract import EXAMPLE, Patient
from tests.support import proba

LEGACY = {f.name: f.missing_codes for f in FEATURES if f.missing_codes}


def post(client, path, body, status=200):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_the_schema_declares_what_the_issue_names():
    assert LEGACY == {"ca": (4,), "thal": (0,)} and ALIASES == {"sex": "gender"}


# ------------------------------------------------------------------------------ legacy codes


@pytest.mark.parametrize("field,code", [("ca", 4), ("ca", 4.0), ("thal", 0)])
def test_a_legacy_code_is_predicted_exactly_like_a_null(client, loaded, field, code):
    legacy = post(client, "/predict", {**EXAMPLE, field: code})
    null = post(client, "/predict", {**EXAMPLE, field: None})
    assert legacy["imputed"] == null["imputed"] == [field]
    assert legacy["legacy_codes"] == {field: 4 if field == "ca" else 0} and null["legacy_codes"] == {}
    assert legacy["probability"] == null["probability"] and legacy["predicted_class"] == null["predicted_class"]
    assert abs(legacy["probability"] - proba(loaded, [{**EXAMPLE, field: None}])[0]) <= 1e-6
    assert prediction_problem(legacy) is None


def test_both_legacy_codes_at_once(client, loaded):
    body = post(client, "/predict/", {**EXAMPLE, "ca": 4, "thal": 0, "chol": None})
    assert body["legacy_codes"] == {"ca": 4, "thal": 0}
    assert body["imputed"] == ["chol", "ca", "thal"]  # schema order, nulls and legacy codes alike
    assert abs(body["probability"] - proba(loaded, [{**EXAMPLE, "ca": None, "thal": None, "chol": None}])[0]) <= 1e-6


def test_legacy_codes_in_a_batch_are_named_per_row(client):
    rows = [EXAMPLE, {**EXAMPLE, "ca": 4}, {**EXAMPLE, "thal": 0}, {**EXAMPLE, "ca": None}]
    got = post(client, "/predict/batch", {"instances": rows})["predictions"]
    nulls = post(
        client,
        "/predict/batch",
        {"instances": [EXAMPLE, {**EXAMPLE, "ca": None}, {**EXAMPLE, "thal": None}, {**EXAMPLE, "ca": None}]},
    )["predictions"]
    assert [p["legacy_codes"] for p in got] == [{}, {"ca": 4}, {"thal": 0}, {}]
    assert [p["imputed"] for p in got] == [[], ["ca"], ["thal"], ["ca"]]
    assert [p["probability"] for p in got] == [p["probability"] for p in nulls]
    assert all(row_problem(p) is None for p in got)


def test_explain_reads_a_legacy_code_as_unknown(client):
    legacy = post(client, "/explain", {**EXAMPLE, "ca": 4})
    null = post(client, "/explain", {**EXAMPLE, "ca": None})
    assert legacy["legacy_codes"] == {"ca": 4} and legacy["imputed"] == ["ca"] and null["legacy_codes"] == {}
    assert legacy["probability"] == pytest.approx(null["probability"], abs=1e-12)
    values = {c["feature"]: c["value"] for c in legacy["contributions"]}
    assert values["ca"] is None and values["thal"] == EXAMPLE["thal"]
    assert [c["contribution"] for c in legacy["contributions"]] == pytest.approx(
        [c["contribution"] for c in null["contributions"]], abs=1e-12
    )


@pytest.mark.parametrize(
    "patch,field",
    [({"ca": 5}, "ca"), ({"thal": 4}, "thal"), ({"thal": False}, "thal"), ({"ca": "4"}, "ca"), ({"ca": 4.5}, "ca")],
)
def test_near_misses_of_a_legacy_code_are_still_refused(client, patch, field):
    detail = post(client, "/predict", {**EXAMPLE, **patch}, status=422)["detail"]
    assert detail[0]["loc"] == ["body", field] and BY_NAME[field].rule() in detail[0]["msg"]


def test_the_prediction_log_records_a_legacy_code_as_null_and_the_drift_reader_reads_it(client, dataset):
    path = client.app.state.serving.settings.prediction_log
    before = len(path.read_text().splitlines()) if path.exists() else 0
    patients = [{**EXAMPLE, "ca": 4}, {**EXAMPLE, "thal": 0}, {**EXAMPLE, "ca": 4, "thal": 0}, EXAMPLE]
    post(client, "/predict/batch", {"instances": patients})
    lines = [json.loads(line) for line in path.read_text().splitlines()[before:]]
    assert [(line["inputs"]["ca"], line["inputs"]["thal"]) for line in lines] == [
        (None, 1),
        (0, None),
        (None, None),
        (0, 1),
    ]
    assert [line["imputed"] for line in lines] == [["ca"], ["thal"], ["ca", "thal"], []]
    served = load_prediction_log(path)
    tail = served.X.iloc[-4:]
    assert tail["ca"].isna().tolist() == [True, False, True, False]
    assert tail["thal"].isna().tolist() == [False, True, True, False]
    assert served.sentinels == {}  # nulls in the log, never the legacy codes themselves
    report = drift.drift_report(dataset.X, served.X)
    ca = next(f for f in report.features if f.feature == "ca")
    assert ca.n_current == int(served.X["ca"].notna().sum()) < served.n_rows


VALID = {
    "prediction_id": "0190f0a1b2c37d4e8f9a0b1c2d3e4f50",
    "predicted_class": 1,
    "label": "heart disease",
    "probability": 0.8,
    "model_version": "v1",
    "trace_id": "0123456789abcdef0123456789abcdef",
    "imputed": ["ca"],
    "legacy_codes": {"ca": 4},
}


@pytest.mark.parametrize(
    "change,why",
    [
        ({}, None),
        ({"legacy_codes": {}}, None),
        ({"legacy_codes": {"ca": 3}}, "3 is not a legacy code of ca"),
        ({"legacy_codes": {"thal": 0}}, "thal, which is not in imputed"),
        ({"legacy_codes": {"ca": "4"}}, "legacy_codes.ca"),
        ({"legacy_codes": {"smoker": 1}}, "legacy_codes.smoker"),
    ],
)
def test_the_clients_check_legacy_codes_against_the_schema(change, why):
    problem = prediction_problem({**VALID, **change})
    assert problem is None if why is None else why in problem, problem
    older_server = {k: v for k, v in VALID.items() if k != "legacy_codes"}
    assert prediction_problem(older_server) is None


# ---------------------------------------------------------------------------------- sex alias


def test_sex_is_an_alias_of_gender(client):
    as_gender = post(client, "/predict", {**EXAMPLE, "gender": "female"})
    for sex in ("female", "Female", 0):
        patient = {("sex" if k == "gender" else k): (sex if k == "gender" else v) for k, v in EXAMPLE.items()}
        assert "gender" not in patient
        assert post(client, "/predict", patient)["probability"] == as_gender["probability"]
    batch = post(client, "/predict/batch", {"instances": [{"age": 50, "sex": "male"}, {"age": 50, "gender": "male"}]})
    assert batch["predictions"][0]["probability"] == batch["predictions"][1]["probability"]
    assert post(client, "/explain", {"age": 50, "sex": "male"})["probability"] > 0


def test_sex_and_gender_together_is_a_422_naming_both(client):
    detail = post(client, "/predict", {**EXAMPLE, "sex": "male"}, status=422)["detail"]
    assert len(detail) == 1 and detail[0]["loc"] == ["body", "sex"] and detail[0]["type"] == "alias_conflict"
    assert "gender" in detail[0]["msg"] and "sex" in detail[0]["msg"]
    rows = [EXAMPLE, {**EXAMPLE, "sex": 1, "age": 500}]
    detail = post(client, "/predict/batch", {"instances": rows}, status=422)["detail"]
    by_loc = {tuple(d["loc"]): d for d in detail}
    assert set(by_loc) == {("body", "instances", 1, "age"), ("body", "instances", 1, "sex")}
    assert by_loc[("body", "instances", 1, "age")]["type"] == "schema_rule"  # other errors keep their words
    assert "gender and sex" in by_loc[("body", "instances", 1, "sex")]["msg"]


def test_neither_sex_nor_gender_is_the_usual_missing_gender(client):
    detail = post(client, "/predict", {"age": 50}, status=422)["detail"]
    assert detail[0]["loc"] == ["body", "gender"] and "required" in detail[0]["msg"]


def test_the_openapi_schema_documents_the_alias_and_the_legacy_codes(client):
    props = client.get("/openapi.json").json()["components"]["schemas"]["Patient"]["properties"]
    assert "sex" in props["gender"]["description"] and "sex" not in props  # an alias, not a second field
    for name, codes in LEGACY.items():
        enum = next(s["enum"] for s in props[name]["anyOf"] if s.get("type") == "integer")
        assert set(codes) <= set(enum) and "Legacy code" in props[name]["description"]
    assert Patient.model_validate({"age": 50, "sex": "male"}).__dict__["gender"] == 1.0


# ------------------------------------------------------------------------- one rule, two readers


def test_the_loader_and_the_api_read_the_same_legacy_file_alike(client, loaded, tmp_path):
    """A CSV in the widely shared copy's spelling (sex as text, ca 4, thal 0): the loader's
    matrix and the API's answers to the same rows must agree on every patient."""
    rng = np.random.default_rng(5)
    frame = pd.read_csv("data/data.csv", dtype=str).drop(columns=["target"], errors="ignore").iloc[:40]
    frame = frame.rename(columns={"gender": "sex"})
    frame.loc[rng.random(40) < 0.3, "ca"] = "4"
    frame.loc[rng.random(40) < 0.3, "thal"] = "0"
    frame.to_csv(tmp_path / "legacy.csv", index=False)
    data = load_dataset(tmp_path / "legacy.csv", require_target=False)
    records = [
        {
            k: (json.loads(v) if v.strip() and k != "sex" else v.strip() or None)
            for k, v in row.items()
            if k in FEATURE_NAMES or k == "sex"
        }
        for row in frame.fillna("").to_dict("records")
    ]
    got = post(client, "/predict/batch", {"instances": records})["predictions"]
    expected = loaded.pipeline.predict_proba(data.X)[:, 1]
    assert np.abs(np.array([p["probability"] for p in got]) - expected).max() <= 1e-6
    n_legacy = sum(len(p["legacy_codes"]) for p in got)
    assert n_legacy == sum(data.sentinels.values()) > 10


# ---------------------------------------------------------------------- the course's client, live


def course_patient(rng: random.Random) -> dict:
    """One patient as the course's client drew it: ca 0-4, thal 0-3, gender as text, the rest
    anywhere within the schema's limits."""
    patient = {}
    for f in FEATURES:
        if f.name == "gender":
            patient[f.name] = rng.choice(["male", "female"])
        elif f.name in ("ca", "thal"):
            patient[f.name] = rng.randint(0, {"ca": 4, "thal": 3}[f.name])
        elif f.discrete:
            patient[f.name] = rng.choice(sorted(f.codes))
        elif f.integer or f.name != "oldpeak":
            patient[f.name] = rng.randint(int(f.low), int(f.high))
        else:
            patient[f.name] = round(rng.uniform(f.low, f.high), 1)
    return patient


def test_the_course_client_gets_an_answer_for_every_patient(model_path, tmp_path):
    rng = random.Random(2024)
    patients = [course_patient(rng) for _ in range(100)]
    n_legacy = sum(p["ca"] == 4 or p["thal"] == 0 for p in patients)
    assert 25 <= n_legacy <= 60  # the draw really holds the codes that were refused (40 of 100 in the issue)
    with (
        ApiServer(
            model_path,
            log=tmp_path / "server.log",
            ready_timeout=90,
            log_level="warning",
            extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": None, "OTEL_TRACES_EXPORTER": None},
        ) as api,
        requests.Session() as session,
    ):
        answers = [session.post(api.url + "/predict/", json=p, timeout=10, allow_redirects=False) for p in patients]
    assert [r.status_code for r in answers].count(200) == 100, [r.text for r in answers if r.status_code != 200][:3]
    bodies = [r.json() for r in answers]
    assert all(b["predicted_class"] in (0, 1) and len(b["trace_id"]) == 32 for b in bodies)
    assert all(prediction_problem(b) is None for b in bodies)
    assert sum(bool(b["legacy_codes"]) for b in bodies) == n_legacy
    for p, b in zip(patients, bodies):
        expected = {k: v for k, v in (("ca", p["ca"]), ("thal", p["thal"])) if v in LEGACY[k]}
        assert b["legacy_codes"] == expected
