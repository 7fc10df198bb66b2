"""One real uvicorn process: the entry point, readiness, a prediction, and a graceful SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from heart.clients.harness import ApiServer
from heart.serving.contract import EXAMPLE

from conftest import ROOT


@pytest.fixture
def server(model_path, tmp_path):
    api = ApiServer(
        model_path,
        log=tmp_path / "stdout.log",
        ready_timeout=90,
        extra_env={
            "PREDICTION_LOG": str(tmp_path / "p.jsonl"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": None,
            "OTEL_TRACES_EXPORTER": None,
        },
    )
    with api:
        yield api.proc, api.url, api.port, tmp_path


def test_real_server_predicts_and_shuts_down_gracefully(server):
    proc, url, port, tmp_path = server
    for path in ("/predict", "/predict/"):
        r = requests.post(url + path, json=EXAMPLE, timeout=10, allow_redirects=False)
        assert r.status_code == 200 and r.json()["trace_id"] == r.headers["x-trace-id"]
    assert requests.post(url + "/predict", json={"age": 63}, timeout=10).status_code == 422

    # An in-flight request: headers and half the body sent, then SIGTERM, then the rest.
    body = json.dumps(EXAMPLE).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
    )
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None, "the server must wait for the in-flight request"
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/live_check", timeout=2)  # ... while accepting no new connections
    sock.sendall(body[10:])
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["predicted_class"] in (0, 1)
    # uvicorn finishes its shutdown, then re-raises the signal so the exit status says SIGTERM
    assert proc.wait(30) in (0, -signal.SIGTERM)
    lines = [json.loads(l) for l in (tmp_path / "stdout.log").read_text().splitlines() if l.startswith("{")]
    events = [l.get("event") for l in lines]
    assert "startup" in events and "model_loaded" in events and "shutdown" in events
    assert events.count("prediction") == 3
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


def test_uvicorn_import_string_serves_app(model_path):
    command = [sys.executable, "-m", "uvicorn", "heart_fastapi:app", "--host", "127.0.0.1", "--port", "{port}"]
    with ApiServer(
        model_path, log_level="warning", command=command, ready_timeout=90, extra_env={"PYTHONPATH": str(ROOT)}
    ) as api:
        assert requests.post(api.url + "/predict", json=EXAMPLE, timeout=10).status_code == 200


def test_cli_help_and_missing_model(tmp_path):
    out = subprocess.run([sys.executable, "heart_fastapi.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--model-path", "--workers", "--log-level", "--prediction-log", "--log-inputs"):
        assert flag in out.stdout
    missing = subprocess.run(
        [sys.executable, "heart_fastapi.py", "--model-path", str(tmp_path / "none.zip")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    bad_env = subprocess.run(
        [sys.executable, "heart_fastapi.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PORT": "eighty"},
    )
    assert bad_env.returncode == 2 and "--port" in bad_env.stderr and "Traceback" not in bad_env.stderr
