"""The inference table behind real servers (`python heart_fastapi.py`), on SQLite and on a real
PostgreSQL the suite starts: settings refused at start (exit 2, one line, never the password);
a database that is unreachable, or goes down and comes back mid-run, never stops a prediction or
readiness and its rows are counted as delayed, then written; two workers, eight clients, and
labels for one worker's predictions arriving on the other."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from heart import inference_table
from heart.samples import sample, to_records
from heart.serving.contract import EXAMPLE
from tests import postgres as postgres_tools
from tests.support import CLEAN_SERVER_ENV, wait_for_every_worker

from conftest import ROOT

SECRET = "hunter2-not-echoed"


def metric(api, name: str, labels: dict | None = None) -> float:
    text = requests.get(api.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return s.value
    return 0.0


def wait_for(condition, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def table_env(url: str) -> dict:
    return {"DATABASE_URL": url} if url.startswith("postgresql") else {"INFERENCE_DB": url.removeprefix("sqlite:///")}


def table_rows(url: str) -> dict[str, int | None]:
    """prediction_id -> label of every stored row; {} while the writer has not created the table
    (its first migration may come after the first answers on a loaded machine)."""
    engine = inference_table.engine_for(url)
    try:
        if inference_table.current_revision(engine) is None:
            return {}
        return {row[0]: row[5] for part in inference_table.read_predictions(engine) for row in part}
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- start-up


def start(model_path, env: dict, *args) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CLEAN_SERVER_ENV}
    return subprocess.run(
        [sys.executable, "heart_fastapi.py", "--port", str(postgres_tools.port_for.select_random()), *args],
        cwd=ROOT,
        env={**clean, "MODEL_PATH": str(model_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": " "}, "environment variable DATABASE_URL is set but blank"),
        ({"DATABASE_URL": f"mysql://u:{SECRET}@db/x"}, "DATABASE_URL is a 'mysql' URL"),
        ({"DATABASE_URL": f"postgresql+psycopg2://u:{SECRET}@db/x"}, "DATABASE_URL names the driver 'psycopg2'"),
        ({"DATABASE_URL": f"postgresql://u:{SECRET}@db:port/x"}, "DATABASE_URL is not a database URL"),
        (
            {"DATABASE_URL_FILE": ""},
            "environment variable DATABASE_URL_FILE (flag --database-url-file) is set but blank",
        ),
        ({"INFERENCE_RETENTION_DAYS": "0", "INFERENCE_RETENTION_ROWS": "0"}, "are both 0"),
        (
            {"INFERENCE_RETENTION_DAYS": "-1"},
            "INFERENCE_RETENTION_DAYS (flag --retention-days) must be a number of days",
        ),
        (
            {"INFERENCE_DB": "/proc/inference.db"},
            "INFERENCE_DB (flag --inference-db) /proc/inference.db: cannot be written",
        ),
    ],
)
def test_a_table_setting_that_cannot_work_exits_2_with_one_line(model_path, env, message):
    proc = start(model_path, env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert message in lines[0] and SECRET not in proc.stderr


def test_a_url_file_a_database_url_flag_and_a_sqlite_file_that_is_not_one(model_path, tmp_path):
    empty = tmp_path / "url"
    empty.write_text("\n")
    proc = start(model_path, {"DATABASE_URL_FILE": str(empty)})
    assert proc.returncode == 2 and f"DATABASE_URL_FILE {empty} is empty" in proc.stderr
    proc = start(model_path, {}, "--database-url", f"postgresql://u:{SECRET}@db/x")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr  # a secret: no flag (ps would show it)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    (tmp_path / "file").write_text("")
    for path, why in ((text, "file is not a database"), (tmp_path / "file" / "x.db", "a parent is not a directory")):
        proc = start(model_path, {"INFERENCE_DB": str(path)})
        assert (
            proc.returncode == 2
            and f"INFERENCE_DB (flag --inference-db) {path}: cannot be written ({why})" in proc.stderr
        )


def test_an_unreachable_database_never_stops_a_prediction(real_server, tmp_path):
    """Nothing listens at DATABASE_URL: the server starts, is ready, serves; the rows wait, counted
    as delayed, the table is reported down, and /feedback says so with a 503."""
    port = postgres_tools.port_for.select_random()
    env = {"DATABASE_URL": f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/heart"}
    with real_server(tmp_path / "server.log", env) as api:
        assert requests.get(api.url + "/ready_check", timeout=5).status_code == 200
        for _ in range(20):
            assert requests.post(api.url + "/predict", json=EXAMPLE, timeout=10).status_code == 200
        wait_for(lambda: metric(api, "heart_inference_table_rows_delayed_total") >= 20, what="20 rows delayed")
        assert metric(api, "heart_inference_table_up") == 0 and metric(api, "heart_inference_table_pending_rows") == 20
        r = requests.post(api.url + "/feedback", json={"prediction_id": "0" * 32, "label": 1}, timeout=30)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert requests.get(api.url + "/ready_check", timeout=5).status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "inference_table_unavailable" in log and SECRET not in log
    assert '"rows": 20' in log and "inference_table_rows_lost_at_shutdown" in log  # counted, not silently dropped


# ---------------------------------------------------------------------------------- two workers


def per_worker(tmpdir: Path, metric_name: str) -> dict[int, float]:
    """{worker pid: the sum of a counter's samples} from the multiprocess files of a server run with TMPDIR=tmpdir."""
    out: dict[int, float] = {}
    for path in tmpdir.glob("heart-metrics-*/counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        out[pid] = sum(v for key, v, *_ in MmapedDict.read_all_values_from_file(str(path)) if f'"{metric_name}"' in key)
    return out


def test_two_workers_eight_clients_and_labels_arriving_on_the_other_worker(real_server, tmp_path, database_url):
    """Eight clients predict against two workers; then one worker is frozen (SIGSTOP) and the labels
    for every prediction arrive on the other one: those for the frozen worker's predictions too."""
    env = {**table_env(database_url), "TMPDIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": None}
    with real_server(tmp_path / "server.log", env, workers=2) as api:
        wait_for_every_worker(api, tmp_path, 2)

        def client(k: int) -> list[dict]:
            with requests.Session() as s:
                patients = to_records(sample(25, seed=k))
                answers = [s.post(api.url + "/predict", json=p, timeout=30) for p in patients]
            assert all(a.status_code == 200 for a in answers)
            return [a.json() for a in answers]

        with ThreadPoolExecutor(8) as pool:
            served = [p for part in pool.map(client, range(8)) for p in part]
        ids = [p["prediction_id"] for p in served]
        assert len(set(ids)) == 200
        wait_for(lambda: len(table_rows(database_url)) == 200, what="200 rows in the table")
        predicted = per_worker(tmp_path, "heart_predictions_total")
        frozen = max(predicted, key=predicted.get)
        assert len(predicted) == 2 and predicted[frozen] > 0 and sum(predicted.values()) == 200
        os.kill(frozen, signal.SIGSTOP)
        try:

            def labels(k: int) -> dict:
                items = [{"prediction_id": p["prediction_id"], "label": p["predicted_class"]} for p in served[k::8]]
                with requests.Session() as s:
                    r = s.post(api.url + "/feedback", json={"items": items}, timeout=30)
                assert r.status_code == 202, r.text
                return r.json()

            with ThreadPoolExecutor(8) as pool:
                replies = list(pool.map(labels, range(8)))
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert sum(r["accepted"] for r in replies) == 200
        feedback = per_worker(tmp_path, "heart_feedback_labels_total")
        assert feedback.get(frozen, 0) == 0 and sum(feedback.values()) == 200  # all on the other worker
        assert set(psutil.Process(api.proc.pid).children()) >= {psutil.Process(frozen)}  # not restarted
    stored = table_rows(database_url)
    assert {pid: stored[pid] for pid in ids} == {p["prediction_id"]: p["predicted_class"] for p in served}


# ---------------------------------------------------------------------------------- outage mid-run


class Load:
    """A client posting /predict without pause in a thread until stopped: every answer must be 200."""

    def __init__(self, url: str):
        self.url, self.ids, self.failures = url, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with requests.Session() as s:
            while not self._stop.is_set():
                r = s.post(self.url + "/predict", json=EXAMPLE, timeout=30)
                (self.ids.append(r.json()["prediction_id"]) if r.status_code == 200 else self.failures.append(r.text))
                time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def outage_then_recovery(api, url: str, down, up) -> None:
    """Predictions throughout; the database goes down (`down`), rows are counted as delayed while it is,
    readiness stays 200; it comes back (`up`) and every row is written, none lost."""
    with Load(api.url) as load:
        wait_for(lambda: len(load.ids) >= 20, what="traffic")
        down()
        try:
            before = len(load.ids)
            wait_for(lambda: metric(api, "heart_inference_table_rows_delayed_total") > 0, what="rows delayed")
            wait_for(lambda: len(load.ids) >= before + 50, what="predictions served while the database is down")
            assert metric(api, "heart_inference_table_up") == 0
            assert requests.get(api.url + "/ready_check", timeout=5).status_code == 200
        finally:
            up()
        wait_for(lambda: metric(api, "heart_inference_table_up") == 1, what="the table back up")
    served = len(load.ids)
    assert load.failures == [] and served > 70
    wait_for(lambda: metric(api, "heart_inference_table_rows_written_total") == served, what="every row written")
    assert metric(api, "heart_inference_table_pending_rows") == 0
    assert metric(api, "heart_inference_table_rows_lost_total") == 0
    assert set(table_rows(url)) == set(load.ids)


def test_postgresql_restarted_mid_run(real_server, tmp_path):
    server = postgres_tools.start()  # its own server: the session's is not stopped under other tests
    try:
        with postgres_tools.database(server) as url, real_server(tmp_path / "server.log", {"DATABASE_URL": url}) as api:
            outage_then_recovery(api, url, server.stop, server.start)
    finally:
        postgres_tools.stop(server)


def test_sqlite_locked_by_another_writer_mid_run(real_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'inference.db'}"
    holder: dict = {}

    def lock():
        holder["conn"] = sqlite3.connect(tmp_path / "inference.db", isolation_level=None, timeout=30)
        holder["conn"].execute("BEGIN EXCLUSIVE")

    def unlock():
        holder["conn"].execute("ROLLBACK")
        holder["conn"].close()

    with real_server(tmp_path / "server.log", table_env(url)) as api:
        outage_then_recovery(api, url, lock, unlock)
