"""The clients: response checks, retries, batch_predict.py end to end, and Locust runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from heart.clients.client import (
    Record,
    _post,
    batch_problem,
    endpoints,
    predict_each,
    prediction_problem,
)
from heart.clients.harness import ApiServer, free_port, gate, run_locust
from heart.clients.summary import percentile, summarize_records
from heart.samples import sample, to_records
from tests.stub_api import StubAPI

from conftest import ROOT

TRACE = "0123456789abcdef0123456789abcdef"
VALID = {
    "prediction_id": "0190f0a1b2c37d4e8f9a0b1c2d3e4f50",
    "predicted_class": 1,
    "label": "heart disease",
    "probability": 0.8,
    "model_version": "v1",
    "trace_id": TRACE,
    "imputed": ["ca"],
}
HAS_API = (ROOT / "heart_fastapi.py").exists()
needs_api = pytest.mark.skipif(not HAS_API, reason="heart_fastapi.py (serving issue) is not in this checkout yet")


def batch_predict(*args, timeout=120, token=None):
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"} | ({"API_TOKEN": token} if token else {})
    return subprocess.run(
        [sys.executable, str(ROOT / "batch_predict.py"), "--quiet", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# --- one definition of a valid response ------------------------------------------------------


def test_a_contract_prediction_is_valid():
    assert prediction_problem(VALID) is None


@pytest.mark.parametrize(
    "change, why",
    [
        ({"label": "no heart disease"}, "does not match"),
        ({"predicted_class": 2}, "predicted_class"),
        ({"predicted_class": True}, "predicted_class"),
        ({"probability": 1.5}, "probability"),
        ({"probability": "0.8"}, "probability"),
        ({"trace_id": TRACE.upper()}, "trace_id"),
        ({"trace_id": TRACE[:-1]}, "trace_id"),
        ({"model_version": ""}, "model_version"),
        ({"imputed": ["cholesterol"]}, "imputed"),
        ({"prediction_id": VALID["prediction_id"].upper()}, "prediction_id"),
        ({"prediction_id": None}, "prediction_id"),
    ],
)
def test_each_wrong_field_is_named(change, why):
    assert why in prediction_problem({**VALID, **change})


def test_a_missing_field_and_a_non_object_are_caught():
    assert "label" in prediction_problem({k: v for k, v in VALID.items() if k != "label"})
    assert "JSON object" in prediction_problem([VALID])


def test_batch_rows_are_checked_and_counted():
    row = {k: VALID[k] for k in ("prediction_id", "predicted_class", "label", "probability", "imputed")}
    body = {"model_version": "v1", "trace_id": TRACE, "predictions": [row, row]}
    assert batch_problem(body, 2) is None
    assert "list of 3 rows" in batch_problem(body, 3)
    assert batch_problem({**body, "predictions": [row, {**row, "probability": -1}]}, 2).startswith("predictions[1]")


def test_endpoints_derive_from_the_predict_url():
    for url in ("http://h:1/predict", "http://h:1/predict/", "http://h:1"):
        e = endpoints(url)
        assert e["batch"] == "http://h:1/predict/batch" and e["ready"] == "http://h:1/ready_check"
    assert endpoints("http://h:1/api/predict")["batch"] == "http://h:1/api/predict/batch"


# --- retries: connection errors only ------------------------------------------------------------


class FakeSession:
    def __init__(self, *outcomes):
        self.outcomes, self.calls = list(outcomes), 0

    def post(self, url, json, timeout):
        self.calls += 1
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        resp = requests.Response()
        resp.status_code, resp._content = out, b'{"detail": "boom"}'
        return resp


def test_connection_errors_are_retried_with_exponential_backoff():
    session = FakeSession(requests.ConnectionError("refused"), requests.ConnectionError("refused"), 200)
    sleeps = []
    out = _post(session, "http://x/predict", {}, timeout=1, retries=3, backoff=0.2, sleep=sleeps.append)
    assert out.status == 200 and out.attempts == 3 and session.calls == 3
    assert sleeps == [0.2, 0.4]


def test_retries_run_out_and_the_error_is_kept():
    session = FakeSession(*[requests.ConnectionError("[Errno 111] Connection refused")] * 3)
    out = _post(session, "http://x/predict", {}, timeout=1, retries=2, backoff=0, sleep=lambda s: None)
    assert (out.kind, out.attempts, session.calls) == ("connection", 3, 3)
    assert out.error == "connection error: Connection refused"


@pytest.mark.parametrize("outcome, kind", [(requests.ReadTimeout("slow"), "timeout"), (500, "ok"), (503, "ok")])
def test_timeouts_and_http_errors_are_never_retried(outcome, kind):
    session = FakeSession(outcome, 200)
    out = _post(session, "http://x/predict", {}, timeout=1, retries=3, backoff=0, sleep=lambda s: None)
    assert session.calls == 1 and out.attempts == 1 and out.kind == kind


def test_summary_counts_and_percentiles_come_from_the_records():
    recs = [Record(i, {}, 1, 0.9, TRACE, 200, float(i + 1)) for i in range(10)]
    recs += [
        Record(10, {}, status=500, latency_ms=99.0, error="HTTP 500", kind="http"),
        Record(11, {}, latency_ms=1000.0, error="timeout after 1 s", kind="timeout"),
    ]
    s = summarize_records(recs, wall_s=2.0)
    assert (s["requests"], s["successes"], s["failures"], s["timeouts"], s["http_errors"]) == (12, 10, 2, 1, 1)
    assert s["throughput_per_s"] == 5.0
    assert s["latency_ms"]["min"] == 1.0 and s["latency_ms"]["max"] == 10.0 and s["latency_ms"]["p50"] == 5.5
    assert s["failure_reasons"] == {"HTTP 500": 1, "timeout after 1 s": 1}


# --- batch_predict.py against stub servers ------------------------------------------------------


def test_unreachable_api_is_one_clear_line_and_exit_1(tmp_path):
    out = tmp_path / "r.json"
    proc = batch_predict("--url", f"http://127.0.0.1:{free_port()}/predict", "--retries", 1, "--out", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the API at http://127.0.0.1:")
    assert "Connection refused" in lines[0] and "tried 2 times" in lines[0]
    assert not out.exists()


def test_http_500_rows_fail_the_run_grouped_and_are_not_retried(tmp_path):
    patients = to_records(sample(100, seed=3))
    failing = {i for i, p in enumerate(patients) if p["age"] % 5 == 0}
    assert 5 < len(failing) < 95
    out = tmp_path / "r.json"
    with StubAPI(fail=lambda p: p["age"] % 5 == 0) as stub:
        proc = batch_predict("--url", stub.url + "/predict", "--seed", 3, "--out", out)
        posted = stub.posts("/predict")
    assert proc.returncode == 1
    assert len(posted) == 100, "an HTTP error must not be retried"
    assert f"error: {len(failing)} of 100 requests failed:" in proc.stderr
    assert f"{len(failing):5d}  HTTP 500: internal error" in proc.stderr
    report = json.loads(out.read_text())
    bad = {r["index"] for r in report["records"] if r["error"]}
    assert bad == failing
    assert all(
        r["status"] == 500 and r["attempts"] == 1 and r["predicted_class"] is None
        for r in report["records"]
        if r["error"]
    )
    assert report["summary"]["failures"] == len(failing) and report["summary"]["successes"] == 100 - len(failing)


def test_a_wrong_response_shape_is_a_failure(tmp_path):
    with StubAPI(bad_shape=True) as stub:
        proc = batch_predict("-n", 10, "--url", stub.url + "/predict", "--out", tmp_path / "r.json")
    assert proc.returncode == 1
    assert "10  bad response: missing field(s): label" in proc.stderr


def test_timeouts_are_counted_and_not_retried(tmp_path):
    out = tmp_path / "r.json"
    with StubAPI(delay=0.5) as stub:
        proc = batch_predict("-n", 4, "--timeout", 0.1, "--url", stub.url + "/predict", "--out", out)
        posted = stub.posts("/predict")
    assert proc.returncode == 1 and len(posted) == 4
    summary = json.loads(out.read_text())["summary"]
    assert (summary["timeouts"], summary["failures"], summary["retried"]) == (4, 4, 0)
    assert "4  timeout after 0.1 s" in proc.stderr


def test_batch_mode_chunks_to_predict_batch(tmp_path):
    out = tmp_path / "r.json"
    with StubAPI() as stub:
        proc = batch_predict("-n", 25, "--batch", "--batch-size", 10, "--url", stub.url + "/predict", "--out", out)
        sizes = [len(b["instances"]) for b in stub.posts("/predict/batch")]
    assert proc.returncode == 0, proc.stderr
    assert sorted(sizes) == [5, 10, 10] and not stub.posts("/predict")
    records = json.loads(out.read_text())["records"]
    assert [r["index"] for r in records] == list(range(25))
    assert [r["input"] for r in records] == to_records(sample(25, seed=0))


@pytest.mark.parametrize("batch", [[], ["--batch", "--batch-size", "4"]])
def test_an_api_that_requires_a_token_gets_api_token_and_refuses_without(tmp_path, batch):
    with StubAPI(token="s3cret") as stub:
        ok = batch_predict(
            "-n", 8, *batch, "--url", stub.url + "/predict", "--out", tmp_path / "ok.json", token="s3cret"
        )
        refused = batch_predict("-n", 8, *batch, "--url", stub.url + "/predict", "--out", tmp_path / "no.json")
    assert ok.returncode == 0, ok.stderr
    assert refused.returncode == 1 and "8 of" in refused.stderr and "HTTP 401" in refused.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "0"],
        ["-n", "100001"],
        ["--seed", "-1"],
        ["--seed", str(2**32)],
        ["--concurrency", "0"],
        ["--batch-size", "1001"],
        ["--retries", "-1"],
        ["--sampling", "gaussian"],
        ["--timeout", "0"],
        ["--url", "localhost:8000"],
        ["--url", "ftp://h/predict"],
    ],
)
def test_bad_flags_are_usage_errors(args, capsys):
    import batch_predict as script  # in-process: argparse exits 2 with a usage message

    with pytest.raises(SystemExit) as exit_:
        script.parse_args(args)
    assert exit_.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_an_out_that_is_not_a_regular_file_is_refused_before_any_request(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "device.json").symlink_to("/dev/null")
    with StubAPI() as stub:
        for out, what in (
            (tmp_path, "is a directory"),
            (tmp_path / "fifo", "is a FIFO (named pipe)"),
            (tmp_path / "device.json", "(a symlink to /dev/null) is a character device"),
        ):
            proc = batch_predict("-n", 5, "--url", stub.url + "/predict", "--out", out)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert proc.stderr.splitlines()[-1] == (
                f"batch_predict.py: error: argument --out: {out} {what}, not a regular file: "
                "give a new path or a regular file to replace"
            )
        assert stub.requests == []
    assert (tmp_path / "device.json").is_symlink() and (tmp_path / "fifo").is_fifo()


def test_an_out_symlink_to_a_file_is_written_through_and_kept(tmp_path):
    target = tmp_path / "reports" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    with StubAPI() as stub:
        proc = batch_predict("-n", 5, "--url", stub.url + "/predict", "--out", tmp_path / "link.json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link.json").is_symlink() and len(json.loads(target.read_text())["records"]) == 5


def test_help_explains_every_option():
    proc = subprocess.run([sys.executable, str(ROOT / "batch_predict.py"), "--help"], capture_output=True, text=True)
    for flag in (
        "--url",
        "API_URL",
        "--n",
        "--seed",
        "--sampling",
        "--concurrency",
        "--timeout",
        "--retries",
        "--batch",
        "--out",
    ):
        assert flag in proc.stdout
    assert "at most 100,000" in proc.stdout  # -n's limit, and why


# --- against the real API process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def api(model_path, tmp_path_factory):
    if not HAS_API:
        pytest.skip("heart_fastapi.py (serving issue) is not in this checkout yet")
    with ApiServer(model_path, log=tmp_path_factory.mktemp("api") / "server.log") as server:
        yield server


@needs_api
def test_batch_predict_against_the_real_api(api, tmp_path):
    out = tmp_path / "r.json"
    proc = batch_predict("--url", api.url + "/predict", "-n", 100, "--seed", 7, "--sampling", "marginal", "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    records, summary = report["records"], report["summary"]
    assert len(records) == 100 and [r["index"] for r in records] == list(range(100))
    for r in records:
        assert r["error"] is None and r["status"] == 200 and r["attempts"] == 1
        assert r["predicted_class"] in (0, 1) and 0 <= r["probability"] <= 1
        assert len(r["trace_id"]) == 32 and r["latency_ms"] > 0
    assert len({r["trace_id"] for r in records}) == 100
    lat = [r["latency_ms"] for r in records]
    assert (summary["requests"], summary["successes"], summary["failures"], summary["timeouts"]) == (100, 100, 0, 0)
    assert summary["latency_ms"]["min"] == min(lat) and summary["latency_ms"]["max"] == max(lat)
    for q in (50, 95, 99):
        assert summary["latency_ms"][f"p{q}"] == pytest.approx(percentile(lat, q))
    assert summary["throughput_per_s"] == pytest.approx(100 / summary["wall_s"])
    assert summary["predicted_class"] == {str(k): sum(r["predicted_class"] == k for r in records) for k in (0, 1)}
    assert "requests" in proc.stdout and "latency p99 (ms)" in proc.stdout


@needs_api
def test_per_sample_and_batch_modes_agree_on_the_real_api(api, tmp_path):
    patients = to_records(sample(30, seed=11))
    each = predict_each(api.url + "/predict", patients, concurrency=4)
    proc = batch_predict("--url", api.url + "/predict", "-n", 30, "--seed", 11, "--batch", "--out", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stderr
    batch = json.loads((tmp_path / "b.json").read_text())["records"]
    assert [r.predicted_class for r in each] == [r["predicted_class"] for r in batch]
    assert [r.probability for r in each] == pytest.approx([r["probability"] for r in batch], abs=1e-9)


@needs_api
def test_make_load_path_starts_the_api_runs_locust_and_passes(model_path, tmp_path):
    """bench.load_test as `make load` runs it, shortened: own server, reports written, gate passed."""
    args = [
        "--model",
        model_path,
        "--users",
        10,
        "--spawn-rate",
        10,
        "--run-time",
        "6s",
        "--max-p95-ms",
        5000,
        "--out-dir",
        tmp_path,
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.load_test", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed: no failed request" in proc.stdout
    summary = json.loads((tmp_path / "load.summary.json").read_text())
    assert summary["requests"] > 50 and summary["failures"] == 0 and gate(summary, None) == []
    assert {"POST /predict", "POST /predict/batch", "GET /ready_check"} <= set(summary["by_endpoint"])
    assert (
        summary["by_endpoint"]["POST /predict"]["requests"] > summary["by_endpoint"]["POST /predict/batch"]["requests"]
    )
    assert (tmp_path / "load_stats.csv").exists() and (tmp_path / "load.html").stat().st_size > 1000
    assert (tmp_path / "load_server.log").stat().st_size > 0


def test_a_p95_over_the_limit_fails_the_gate():
    summary = {"requests": 10, "failures": 0, "errors": {}, "latency_ms": {"p95": 300.0}}
    assert gate(summary, 250) == ["p95 300 ms is over the limit of 250 ms"]
    assert gate(summary, 400) == [] and gate(summary, None) == []


def test_timeout_analysis_counts_client_timeouts(tmp_path):
    with StubAPI(delay=0.5) as stub:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.timeouts",
                "--host",
                stub.url,
                "--users",
                "2",
                "--run-time",
                "2s",
                "--request-timeout",
                "0.2",
                "--out-dir",
                tmp_path,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    step = json.loads((tmp_path / "timeouts.json").read_text())["steps"][0]
    assert step["users"] == 2 and step["timeouts"] > 0
    assert step["timeouts"] == step["by_endpoint"]["POST /predict"]["failures"]
    assert "timeouts" in proc.stdout.splitlines()[0]


def test_locust_marks_wrong_shapes_as_failures(tmp_path):
    with StubAPI(bad_shape=True) as stub:
        rc, summary, _ = run_locust(stub.url, users=3, spawn_rate=3, run_time="3s", summary=tmp_path / "s.json")
    assert rc == 1
    assert summary["failures"] == summary["by_endpoint"]["POST /predict"]["requests"] > 0
    assert (
        summary["by_endpoint"]["GET /ready_check"]["failures"] == 0
        if "GET /ready_check" in summary["by_endpoint"]
        else True
    )
    assert any("bad response: missing field(s): label" in k for k in summary["errors"])
    assert any("failed" in r for r in gate(summary, max_p95_ms=None))


def test_locust_sends_api_token(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cret")
    with StubAPI(token="s3cret") as stub:
        rc, summary, _ = run_locust(stub.url, users=2, spawn_rate=2, run_time="2s", summary=tmp_path / "s.json")
    assert rc == 0 and summary["requests"] > 0 and summary["failures"] == 0, summary["errors"]
    monkeypatch.delenv("API_TOKEN")
    with StubAPI(token="s3cret") as stub:
        rc, summary, _ = run_locust(stub.url, users=2, spawn_rate=2, run_time="2s", summary=tmp_path / "n.json")
    assert rc == 1 and summary["by_endpoint"]["POST /predict"]["failures"] > 0


def test_progress_bar_draws_on_a_terminal_only():
    import io

    from heart.clients.client import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(10, stream=stream)
        for _ in range(10):
            bar(1)
        bar.close()
    assert "10/10" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""
