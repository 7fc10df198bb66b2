"""Metrics with several workers (issue 14, part 2): whichever worker answers the scrape, /metrics
reports every worker's counts (prometheus_client's multiprocess mode, set up by heart_fastapi.py)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from heart.clients.harness import ApiServer
from heart.serving.contract import EXAMPLE
from heart.serving.metrics import Metrics, metrics_payload, multiprocess_dir

WORKERS = 2


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def predictions(text: str) -> float:
    return sum(v for (name, _), v in samples(text).items() if name == "heart_predictions_total")


def per_worker_predictions(directory: Path) -> dict[int, float]:
    """Each worker's own heart_predictions_total, read from its file (what a per-worker /metrics showed)."""
    out = {}
    for path in directory.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)], accumulate=True)
        out[int(path.stem.split("_")[1])] = sum(
            s.value
            for f in families
            if f.name == "heart_predictions"
            for s in f.samples
            if s.name == "heart_predictions_total"
        )
    return out


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiproc")
    with ApiServer(
        model_path,
        log=tmp / "server.log",
        workers=WORKERS,
        ready_timeout=120,
        log_level="warning",
        extra_env={
            "TMPDIR": str(tmp),
            "PROMETHEUS_MULTIPROC_DIR": None,
            "DRIFT_INTERVAL_SECONDS": "0.2",
            "OTEL_EXPORTER_OTLP_ENDPOINT": None,
            "OTEL_TRACES_EXPORTER": None,
        },
    ) as api:
        (directory,) = tmp.glob("heart-metrics-*")
        # /ready_check answered from one worker: wait until every worker has started and is ready
        # (heart_ready is the minimum over the live workers).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pids = {p.stem.rsplit("_", 1)[1] for p in directory.glob("gauge_livemin_*.db")}
            text = requests.get(api.url + "/metrics", timeout=10).text
            if len(pids) == WORKERS and samples(text).get(("heart_ready", ())) == 1:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"{WORKERS} workers were not ready in time: {pids}, {text[:200]}")
        yield api, directory, tmp


def test_counters_are_summed_over_the_workers_whichever_answers(server):
    api, directory, _ = server

    def post(_):
        # a new connection each time, so the kernel hands the requests to either worker
        return requests.post(api.url + "/predict", json=EXAMPLE, timeout=10, headers={"Connection": "close"})

    sent = 0
    with ThreadPoolExecutor(4) as pool:
        while sent < 400:
            assert all(r.status_code == 200 for r in pool.map(post, range(40)))
            sent += 40
            per_worker = per_worker_predictions(directory)
            if len([n for n in per_worker.values() if n > 0]) == WORKERS:
                break
    assert len([n for n in per_worker.values() if n > 0]) == WORKERS, f"one worker got everything: {per_worker}"
    assert sum(per_worker.values()) == sent and max(per_worker.values()) < sent
    for _ in range(10):  # ten scrapes, new connections: both workers answer some of them
        text = requests.get(api.url + "/metrics", timeout=10, headers={"Connection": "close"}).text
        assert predictions(text) == sent
        s = samples(text)
        assert s[("heart_http_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == sent
        assert (
            s[
                (
                    "heart_http_request_duration_seconds_count",
                    (("method", "POST"), ("route", "/predict"), ("status", "200")),
                )
            ]
            == sent
        )
        assert s[("heart_ready", ())] == 1
        info = [k for k in s if k[0] == "heart_model_info"]
        assert len(info) == 1 and s[info[0]] == 1, "one series per model, not one per worker"
        assert not any(k[0].startswith("heart_drift") and "pid" in dict(k[1]) for k in s)


def test_drift_gauges_are_one_workers_window(server):
    """Each worker tests its own window; the exported value is the most recent computation, so
    the window's row count is one worker's count of predictions, not the sum."""
    api, directory, _ = server
    answers = {
        requests.post(api.url + "/predict", json=EXAMPLE, timeout=10).json()["predicted_class"] for _ in range(20)
    }
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the gauges exist once a worker's first drift run is done
        s = samples(requests.get(api.url + "/metrics", timeout=10).text)
        per_worker = per_worker_predictions(directory)
        if s.get(("heart_drift_window_rows", ())) in per_worker.values():
            break
        time.sleep(0.2)
    rows = s.get(("heart_drift_window_rows", ()))
    assert rows in per_worker.values(), (rows, per_worker)
    assert [s[("heart_predicted_positive_rate", ())]] == list(answers), "EXAMPLE every time: its one class"


def test_a_worker_that_exits_leaves_the_live_gauges_and_its_counts_stay(server):
    """mark_process_dead at a worker's shutdown: its readiness and drift gauges leave the merge
    (a restarted worker is not held back by its predecessor), its counted requests do not."""
    api, directory, _ = server
    before = predictions(requests.get(api.url + "/metrics", timeout=10).text)
    pid = min(int(p.stem.rsplit("_", 1)[1]) for p in directory.glob("gauge_livemin_*.db"))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(directory.glob(f"gauge_*_{pid}.db")):
        time.sleep(0.2)
    assert list(directory.glob(f"gauge_*_{pid}.db")) == [], "the exited worker's gauges are still merged"
    assert (directory / f"counter_{pid}.db").exists()
    for _ in range(5):
        assert (
            predictions(requests.get(api.url + "/metrics", timeout=10, headers={"Connection": "close"}).text) == before
        )


def test_the_directory_is_removed_when_the_server_stops(model_path, tmp_path):
    with ApiServer(
        model_path,
        workers=WORKERS,
        ready_timeout=120,
        log_level="warning",
        extra_env={"TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None},
    ) as api:
        assert len(list(tmp_path.glob("heart-metrics-*"))) == 1
        api.proc.send_signal(signal.SIGTERM)  # as ApiServer.stop, with time for a loaded machine
        assert api.proc.wait(timeout=90) == 0
    assert list(tmp_path.glob("heart-metrics-*")) == []


def test_one_worker_keeps_the_plain_registry(monkeypatch, model_path, tmp_path):
    """No PROMETHEUS_MULTIPROC_DIR with one worker: no directory, no per-sample file writes."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert multiprocess_dir() is None
    m = Metrics()
    m.count_classes(1, 3)
    assert predictions(metrics_payload(m).decode()) == 3
    with ApiServer(
        model_path,
        ready_timeout=90,
        log_level="warning",
        extra_env={"TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None},
    ) as api:
        assert requests.post(api.url + "/predict", json=EXAMPLE, timeout=10).ok
        assert predictions(requests.get(api.url + "/metrics", timeout=10).text) == 1
        assert list(tmp_path.glob("heart-metrics-*")) == []


def test_a_scrape_while_a_worker_creates_its_file_leaves_that_file_out(monkeypatch, tmp_path):
    """A starting worker's file exists empty until prometheus_client sizes it; reading it raised
    struct.error, and the scrape that met it answered 500 (seen once in the suite under load)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("heart_predictions", "heart_predictions_total", ["predicted_class"], ["1"], "Predictions")
    written.write_value(key, 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # the other worker, between open() and its truncate()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert predictions(metrics_payload(Metrics()).decode()) == 3
