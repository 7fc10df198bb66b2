"""Live drift (issue 14, part 1): the window of recent inputs, the gauges computed from it by
heart.analyses.drift.drift_report (the offline script's code), and a real server that flags age, and
only age, within one window of patients ten years older than the training data's."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from heart.analyses.drift import drift_report
from heart.clients.harness import ApiServer
from heart.samples import sample, to_records
from heart.schema import FEATURE_NAMES
from heart.serving.live_drift import DriftWindow, LiveDrift
from heart.serving.metrics import Metrics, metrics_payload
from heart.serving.settings import SettingsError, load_settings

WINDOW = 1000


def gauges(text: str) -> dict:
    """{(name, feature or None): value} of every sample in an exposition."""
    return {
        (s.name, s.labels.get("feature")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# ------------------------------------------------------------------------- the window


def test_the_window_keeps_the_last_rows_whatever_the_batch_sizes():
    w = DriftWindow(5, n_features=2)
    rows = np.arange(24, dtype=float).reshape(12, 2)
    w.append(rows[:1], np.array([1]))
    w.append(rows[1:4], np.array([0, 1, 0]))
    got, classes, seen = w.snapshot()
    assert seen == 4 and got.tolist() == rows[:4].tolist() and classes.tolist() == [1, 0, 1, 0]
    w.append(rows[4:7], np.array([1, 1, 1]))  # wraps around
    got, classes, seen = w.snapshot()
    assert seen == 7 and sorted(map(tuple, got.tolist())) == sorted(map(tuple, rows[2:7].tolist()))
    assert sorted(classes.tolist()) == [0, 1, 1, 1, 1]
    w.append(rows[:12], np.arange(12) % 2)  # a batch larger than the window: its last 5 rows
    got, classes, seen = w.snapshot()
    assert seen == 19 and sorted(map(tuple, got.tolist())) == sorted(map(tuple, rows[7:12].tolist()))
    with pytest.raises(ValueError, match="at least 1 row"):
        DriftWindow(0)


def test_the_gauges_are_drift_reports_figures(dataset):
    """The same rows through LiveDrift and through drift_report give the same numbers; nothing
    is recomputed until new rows arrive."""
    metrics = Metrics()
    window = DriftWindow(300)
    live = LiveDrift(window, metrics, 60, lambda: dataset.X.to_numpy(dtype=float))
    assert not live.compute(), "no rows yet"
    current = sample(300, seed=3, mode="marginal", reference=dataset.X)
    current["age"] += 10
    current["thal"] = sample(300, seed=3, mode="uniform")["thal"]  # uniform over the codes: drifts
    current.loc[::7, "ca"] = np.nan  # imputed values are left out of the tests, as offline
    classes = np.r_[np.ones(60, dtype=int), np.zeros(240, dtype=int)]
    window.append(current.to_numpy(), classes)
    assert live.compute() and not live.compute()
    expected = drift_report(dataset.X, current)
    got = gauges(metrics_payload(metrics).decode())
    for f in expected.features:
        assert got["heart_drift_statistic", f.feature] == pytest.approx(f.statistic, rel=1e-12)
        assert got["heart_drift_p_value_adjusted", f.feature] == pytest.approx(f.p_adjusted, rel=1e-12, abs=1e-300)
    assert 0 < expected.share_drifted < 1
    assert got["heart_drift_drifted_share", None] == expected.share_drifted
    assert got["heart_drift_window_rows", None] == 300
    assert got["heart_predicted_positive_rate", None] == 0.2


def test_the_reference_is_the_training_data_the_model_carries(artifact, dataset, caplog):
    """The rows train.py stored in the artifact lead its reference; live drift waits for a model,
    and gives up (saying why) on one saved without them."""
    np.testing.assert_array_equal(artifact.reference.data, dataset.X.to_numpy(dtype=float))
    window = DriftWindow(10)
    window.append(dataset.X.to_numpy()[:10], np.zeros(10, dtype=int))
    live = LiveDrift(window, Metrics(), 60, lambda: None)
    assert not live.compute() and not live.disabled, "no model yet: wait, do not give up"
    live = LiveDrift(window, Metrics(), 60, lambda: artifact.reference.X[:0])
    assert not live.compute()
    assert live.disabled == "the model carries no training rows to compare with (saved without data)"
    live = LiveDrift(window, Metrics(), 60, lambda: artifact.reference.data)
    assert live.compute() and np.shares_memory(live.reference, artifact.reference.X)


def test_drift_window_settings(monkeypatch):
    monkeypatch.setenv("DRIFT_WINDOW", "0")
    monkeypatch.setenv("DRIFT_INTERVAL_SECONDS", "2.5")
    s = load_settings()
    assert (s.drift_window, s.drift_interval) == (0, 2.5)
    monkeypatch.setenv("DRIFT_WINDOW", "-1")
    with pytest.raises(
        SettingsError,
        match=r"^environment variable DRIFT_WINDOW \(flag --drift-window\) must be "
        r"a whole number from 0 to 100000 \(0 = off\), got '-1'$",
    ):
        load_settings()


# ------------------------------------------------------------------------- a real server


def wait_for(url: str, condition, timeout: float = 20.0) -> dict:
    """The /metrics gauges once `condition(gauges)` holds (the drift thread runs every 0.2 s here)."""
    deadline = time.monotonic() + timeout
    while True:
        got = gauges(requests.get(url + "/metrics", timeout=10).text)
        if condition(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def post_all(session: requests.Session, url: str, records: list[dict]) -> list[int]:
    classes = []
    for rec in records:
        resp = session.post(url + "/predict", json=rec, timeout=10)
        assert resp.status_code == 200, resp.text
        classes.append(resp.json()["predicted_class"])
    return classes


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("live-drift") / "server.log"
    with ApiServer(
        model_path,
        log=log,
        ready_timeout=90,
        log_level="warning",
        extra_env={
            "DRIFT_WINDOW": str(WINDOW),
            "DRIFT_INTERVAL_SECONDS": "0.2",
            "OTEL_EXPORTER_OTLP_ENDPOINT": None,
            "OTEL_TRACES_EXPORTER": None,
        },
    ) as api:
        yield api


def test_imputed_fields_are_counted_per_feature(server):
    before = gauges(requests.get(server.url + "/metrics", timeout=10).text)
    with requests.Session() as s:
        for _ in range(3):
            assert s.post(server.url + "/predict", json={"age": 50, "gender": "male", "chol": 200}, timeout=10).ok
        body = {"instances": [{"age": 60, "gender": 0, "ca": 1}, {"age": 61, "gender": 1, "ca": None}]}
        assert s.post(server.url + "/predict/batch", json=body, timeout=10).ok
    after = gauges(requests.get(server.url + "/metrics", timeout=10).text)
    added = {
        n: after["heart_imputed_fields_total", n] - before.get(("heart_imputed_fields_total", n), 0)
        for n in FEATURE_NAMES
    }
    # 3 patients with age, gender and chol only; then one with ca, one without (ca: null)
    expected = {n: 3 + 2 for n in FEATURE_NAMES if n not in ("age", "gender")}
    expected.update(age=0, gender=0, chol=2, ca=4)
    assert added == expected


def test_training_like_traffic_flags_nothing_and_older_patients_flag_age_only(server, dataset):
    """Patients drawn from the training marginals: no feature drifts. The same patients ten years
    older: age drifts within one window, and nothing else does."""
    patients = sample(WINDOW, seed=7, mode="marginal", reference=dataset.X)
    older = patients.assign(age=patients["age"] + 10)
    with requests.Session() as session:
        for current in (patients, older):
            classes = post_all(session, server.url, to_records(current))
            expected = drift_report(dataset.X, current)
            age = next(f for f in expected.features if f.feature == "age")
            got = wait_for(server.url, lambda g, age=age: g.get(("heart_drift_statistic", "age")) == age.statistic)
            assert got["heart_drift_window_rows", None] == WINDOW
            assert got["heart_predicted_positive_rate", None] == pytest.approx(np.mean(classes), abs=1e-12)
            flagged = {n for n in FEATURE_NAMES if got["heart_drift_p_value_adjusted", n] < 0.05}
            for f in expected.features:  # the server's figures are the offline script's
                assert got["heart_drift_statistic", f.feature] == pytest.approx(f.statistic, rel=1e-9)
                p = got["heart_drift_p_value_adjusted", f.feature]
                assert p == pytest.approx(f.p_adjusted, rel=1e-6, abs=1e-300) or (math.isnan(p) and f.test == "skipped")
            if current is patients:
                assert flagged == set(), got
                assert got["heart_drift_drifted_share", None] == 0
            else:
                assert flagged == {"age"}, got
                assert got["heart_drift_p_value_adjusted", "age"] < 1e-6
                assert got["heart_drift_drifted_share", None] == pytest.approx(1 / 13)


def estimated_gauges(url: str) -> dict:
    """heart_performance_estimated by metric, and the rows it was computed on."""
    text = requests.get(url + "/metrics", timeout=10).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    got = {s.labels["metric"]: s.value for s in samples if s.name == "heart_performance_estimated"}
    got["rows"] = next((s.value for s in samples if s.name == "heart_performance_estimated_rows"), None)
    return got


def test_the_estimated_performance_gauges_are_cbpe_of_the_served_probabilities(server, dataset):
    """A whole window in one batch: the drift thread scores its rows again, and the gauges are
    heart.analyses.performance.expected of the probabilities the server answered with."""
    from heart.analyses.performance import METRICS, expected

    patients = sample(WINDOW, seed=11, mode="marginal", reference=dataset.X)
    resp = requests.post(server.url + "/predict/batch", json={"instances": to_records(patients)}, timeout=30)
    assert resp.status_code == 200, resp.text
    want = expected(np.array([r["probability"] for r in resp.json()["predictions"]]), 0.5)
    deadline = time.monotonic() + 20
    while True:
        got = estimated_gauges(server.url)
        if got.get("accuracy") == pytest.approx(want["accuracy"], abs=1e-9) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {m: got.get(m) for m in METRICS} == pytest.approx(want, abs=1e-9) and got["rows"] == WINDOW
