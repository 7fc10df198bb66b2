"""POST /feedback and the inference table behind the API, each on SQLite and on a real PostgreSQL:
every route's prediction_id lands in the table, labels come back by it (accepted, duplicate,
conflict, unknown; 422 for a broken rule with nothing stored), the realized gauges follow, and the
route is guarded like the prediction routes (auth, body limit, content type, the OpenAPI document)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from heart import inference_table
from heart.samples import sample, to_records
from heart.serving.contract import EXAMPLE
from heart.serving.feedback import MAX_FEEDBACK
from tests.support import make_app, v2_tensors

TOKEN = "feedback-test-token"


def wait_for(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture
def api(model_path, tmp_path, database_url):
    app = make_app(model_path, tmp_path, database_url=database_url, drift_interval=0.1)
    with TestClient(app) as client:
        yield client


def rows_in_table(client) -> dict[str, tuple]:
    engine = client.app.state.table.ensure_ready()
    return {row[0]: row for part in inference_table.read_predictions(engine) for row in part}


def predict_everywhere(client) -> list[str]:
    """One prediction through each route that predicts: their ids."""
    one = client.post("/predict", json=EXAMPLE).json()
    slash = client.post("/predict/", json={"age": 54, "gender": "female"}).json()
    batch = client.post("/predict/batch", json={"instances": to_records(sample(3, seed=1))}).json()
    v2 = client.post(
        "/v2/models/heart-disease/infer", json={"inputs": v2_tensors([EXAMPLE]), "outputs": [{"name": "prediction_id"}]}
    ).json()
    return [one["prediction_id"], slash["prediction_id"], *(p["prediction_id"] for p in batch["predictions"])] + v2[
        "outputs"
    ][0]["data"]


def test_every_route_writes_its_predictions_to_the_table(api):
    ids = predict_everywhere(api)
    assert len(set(ids)) == 6
    rows = wait_for(lambda: (r := rows_in_table(api)) and set(ids) <= set(r) and r)
    answered = api.post("/predict", json=EXAMPLE).json()
    row = wait_for(lambda: rows_in_table(api).get(answered["prediction_id"]))
    assert row[2:5] == (answered["model_version"], answered["probability"], answered["predicted_class"])
    assert all(rows[i][5] is None for i in ids)  # no label yet
    assert api.app.state.metrics.registry.get_sample_value("heart_inference_table_rows_written_total") >= 7


def test_a_label_is_accepted_once_then_a_duplicate_and_another_label_a_conflict(api):
    pid = api.post("/predict", json=EXAMPLE).json()["prediction_id"]
    wait_for(lambda: pid in rows_in_table(api))
    first = api.post("/feedback", json={"prediction_id": pid, "label": "yes"})
    assert first.status_code == 202
    assert first.json() == {
        "accepted": 1,
        "duplicate": 0,
        "conflicting": 0,
        "unknown": 0,
        "items": [{"prediction_id": pid, "status": "accepted", "code": 202, "label": 1, "detail": "stored"}],
    }
    again = api.post("/feedback", json={"prediction_id": pid, "label": " 1 "})
    assert again.status_code == 202 and again.json()["items"][0]["status"] == "duplicate"
    other = api.post("/feedback", json={"prediction_id": pid, "label": "No"})
    assert other.status_code == 409
    item = other.json()["items"][0]
    assert (item["status"], item["code"], item["label"], item["stored_label"]) == ("conflict", 409, 0, 1)
    assert "never overwritten" in item["detail"]
    assert rows_in_table(api)[pid][5] == 1
    unknown = api.post("/feedback", json={"prediction_id": "0" * 32, "label": 0})
    assert unknown.status_code == 404 and unknown.json()["unknown"] == 1
    metrics = api.app.state.metrics.registry
    counted = {
        s: metrics.get_sample_value("heart_feedback_labels_total", {"status": s}) for s in ("accepted", "conflict")
    }
    assert counted == {"accepted": 1.0, "conflict": 1.0}


def test_many_labels_in_one_request_each_with_its_outcome(api):
    ids = [
        p["prediction_id"]
        for p in api.post("/predict/batch", json={"instances": to_records(sample(4, seed=2))}).json()["predictions"]
    ]
    wait_for(lambda: set(ids) <= set(rows_in_table(api)))
    api.post("/feedback", json={"prediction_id": ids[0], "label": 1})
    body = {
        "items": [
            {"prediction_id": ids[0], "label": "YES"},  # duplicate
            {"prediction_id": ids[0], "label": 0},  # conflict
            {"prediction_id": ids[1], "label": 1.0},  # accepted
            {"prediction_id": ids[2], "label": "0.0"},  # accepted
            {"prediction_id": ids[2], "label": "no"},  # duplicate of the item before
            {"prediction_id": "f" * 32, "label": "no"},  # unknown
        ]
    }
    r = api.post("/feedback", json=body)
    assert r.status_code == 202  # many labels: always 202, each item its own code
    got = r.json()
    assert (got["accepted"], got["duplicate"], got["conflicting"], got["unknown"]) == (2, 2, 1, 1)
    assert [(i["status"], i["code"]) for i in got["items"]] == [
        ("duplicate", 200),
        ("conflict", 409),
        ("accepted", 202),
        ("accepted", 202),
        ("duplicate", 200),
        ("unknown", 404),
    ]
    stored = rows_in_table(api)
    assert [stored[i][5] for i in ids] == [1, 1, 0, None]


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"prediction_id": "A" * 32, "label": 1}, ["body", "prediction_id"], "32 lowercase hexadecimal digits"),
        ({"prediction_id": "a" * 31, "label": 1}, ["body", "prediction_id"], "got 'aaaa"),
        ({"prediction_id": 12, "label": 1}, ["body", "prediction_id"], "got int 12"),
        ({"prediction_id": "a" * 32, "label": True}, ["body", "label"], "yes/no or 1/0"),
        ({"prediction_id": "a" * 32, "label": "maybe"}, ["body", "label"], "got 'maybe'"),
        ({"prediction_id": "a" * 32, "label": 2}, ["body", "label"], "got 2"),
        ({"prediction_id": "a" * 32, "label": 0.5}, ["body", "label"], "got 0.5"),
        ({"prediction_id": "a" * 32, "label": None}, ["body", "label"], "got None"),
        ({"prediction_id": "a" * 32, "label": ""}, ["body", "label"], "got ''"),
        ({"prediction_id": "a" * 32}, ["body", "label"], "Field required"),
        ({"prediction_id": "a" * 32, "label": 1, "note": "x"}, ["body", "note"], "Extra inputs"),
        ({"items": []}, ["body", "items"], "at least 1"),
        ({"items": [{"prediction_id": "a" * 32, "label": 1}] * (MAX_FEEDBACK + 1)}, ["body", "items"], "at most 1000"),
        (
            {"items": [{"prediction_id": "a" * 32, "label": 1}, {"label": 1}]},
            ["body", "items", 1, "prediction_id"],
            "required",
        ),
        ([{"prediction_id": "a" * 32, "label": 1}], ["body"], "object"),
    ],
)
def test_a_broken_rule_is_a_422_naming_the_item_and_field(client, body, loc, msg):
    r = client.post("/feedback", json=body)
    assert r.status_code == 422, r.text
    first = r.json()["detail"][0]
    assert first["loc"] == loc and msg.lower() in first["msg"].lower(), first


def test_a_422_stores_nothing_not_even_the_valid_labels(api):
    pid = api.post("/predict", json=EXAMPLE).json()["prediction_id"]
    wait_for(lambda: pid in rows_in_table(api))
    r = api.post(
        "/feedback", json={"items": [{"prediction_id": pid, "label": 1}, {"prediction_id": pid, "label": "?"}]}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "items", 1, "label"]
    assert rows_in_table(api)[pid][5] is None


def test_labels_are_read_as_the_offline_labels_file_reads_them(client, tmp_path):
    """The API and monitor_performance.py --labels take the same spellings to the same labels."""
    from heart.analyses.outcomes import read_labels
    from heart.data import DataError

    spellings = [
        "yes",
        " YES ",
        "Yes",
        "no",
        "No",
        "1",
        "0",
        "1.0",
        "0.0",
        1,
        0,
        1.0,
        0.0,
        "true",
        True,
        "2",
        2,
        "y",
        "",
        "nan",
        "-1",
    ]
    for value in spellings:
        api = client.post("/feedback", json={"prediction_id": "e" * 32, "label": value})
        path = tmp_path / "labels.jsonl"
        path.write_text(f'{{"prediction_id": "{"e" * 32}", "label": {__import__("json").dumps(value)}}}\n')
        try:
            offline = int(read_labels(path).frame["label"].iloc[0])
        except DataError:
            offline = None
        if offline is None:
            assert api.status_code == 422, (value, api.text)
        else:
            assert api.status_code == 404 and api.json()["items"][0]["label"] == offline, (value, api.text)


def test_the_realized_gauges_follow_the_labels_in_the_table(api):
    predictions = api.post("/predict/batch", json={"instances": to_records(sample(40, seed=5))}).json()["predictions"]
    wait_for(lambda: len(rows_in_table(api)) >= 40)
    labels = [{"prediction_id": p["prediction_id"], "label": p["predicted_class"]} for p in predictions]
    labels[0]["label"] = 1 - labels[0]["label"]  # one wrong: accuracy 39/40
    assert api.post("/feedback", json={"items": labels}).json()["accepted"] == 40
    registry = api.app.state.metrics.registry
    wait_for(lambda: registry.get_sample_value("heart_performance_labelled_rows") == 40)
    assert registry.get_sample_value("heart_performance_realized", {"metric": "accuracy"}) == pytest.approx(39 / 40)


def test_feedback_needs_the_token_and_is_bounded_like_the_prediction_routes(model_path, tmp_path):
    app = make_app(model_path, tmp_path, api_tokens=TOKEN, max_body_bytes=2_000)
    body = {"prediction_id": "0" * 32, "label": "yes"}
    with TestClient(app) as client:
        assert client.post("/feedback", json=body).status_code == 401
        assert client.post("/feedback", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/feedback", json=body, headers=auth).status_code == 404
        big = {"items": [body] * 100}
        too_big = client.post("/feedback", json=big, headers=auth)
        assert too_big.status_code == 413 and "over the limit" in too_big.json()["detail"]
        text = client.post("/feedback", content=b"x", headers={**auth, "content-type": "text/plain"})
        assert text.status_code == 415
        malformed = client.post(
            "/feedback", content=b'{"items": [', headers={**auth, "content-type": "application/json"}
        )
        assert malformed.status_code == 422 and "malformed JSON" in malformed.json()["detail"][0]["msg"]
        doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/feedback"]["post"]
    assert "security" not in operation and doc["security"] == [{"bearerAuth": []}]  # the token, like /predict
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in schema["anyOf"]} == {"FeedbackItem", "FeedbackBatch"}
    assert {"FeedbackItem", "FeedbackBatch", "FeedbackResponse"} <= set(doc["components"]["schemas"])
    assert {"202", "404", "409", "422", "503"} <= set(operation["responses"])


def test_a_locked_database_is_a_503_and_stores_nothing(model_path, tmp_path, monkeypatch):
    """SQLite held by another writer past the busy timeout: 503 with Retry-After, nothing stored;
    predictions go on being served meanwhile."""
    monkeypatch.setattr(inference_table, "BUSY_SECONDS", 0.2)
    app = make_app(model_path, tmp_path)
    with TestClient(app) as client:
        pid = client.post("/predict", json=EXAMPLE).json()["prediction_id"]
        wait_for(lambda: pid in rows_in_table(client))
        blocker = sqlite3.connect(tmp_path / "inference.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            r = client.post("/feedback", json={"prediction_id": pid, "label": 1})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert "nothing was stored" in r.json()["detail"] and "Traceback" not in r.text
            assert client.post("/predict", json=EXAMPLE).status_code == 200
            assert client.get("/ready_check").status_code == 200
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert client.post("/feedback", json={"prediction_id": pid, "label": 1}).json()["accepted"] == 1


def test_a_label_sent_right_after_its_prediction_finds_it(api):
    """A script that posts the label at once (before the writer's next round) finds its prediction:
    /feedback writes what its worker still holds first."""
    for _ in range(20):
        pid = api.post("/predict", json=EXAMPLE).json()["prediction_id"]
        r = api.post("/feedback", json={"prediction_id": pid, "label": "no"})
        assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
