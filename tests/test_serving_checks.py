"""Issue 19: start-up checks never hang and always exit 2 with one line naming the setting, under
both launchers; a blank security setting is never "off"; API_AUTH; every log line is JSON."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import warnings

import pytest
import requests

from heart.serving import run
from heart.serving.contract import EXAMPLE
from heart.serving.logs import setup_logging
from heart.serving.settings import ENV_NAMES
from tests.support import v2_tensors

from conftest import ROOT

LAUNCHERS = {
    "heart_fastapi": [sys.executable, "heart_fastapi.py"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "heart_fastapi:app", "--port", "1"],
}


def launch(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """A launcher with nothing of the developer's settings; 60 s is a hang, and a failure."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**clean, **env}, timeout=60)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Started server process" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    return errors[0]


@pytest.fixture
def busy_port():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def cases(tmp_path, port: int) -> dict[str, tuple[dict, str]]:
    """name -> (environment, words the one error line must hold). Main hung on the FIFO, gave a
    traceback and exit 1 on the undecodable file, exit 3 on the ports, and served on a blank pin."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    latin1 = tmp_path / "tokens-latin1"
    latin1.write_bytes(b"caf\xe9-token\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    tokens = tmp_path / "tokens"
    tokens.write_text("b\n")
    missing = tmp_path / "missing"  # never created: the checks must not make it either
    return {
        "fifo-log": ({"PREDICTION_LOG": str(fifo)}, f"PREDICTION_LOG (flag --prediction-log) {fifo}: cannot be"),
        "device-log": ({"PREDICTION_LOG": "/dev/null"}, "PREDICTION_LOG (flag --prediction-log) /dev/null: cannot"),
        "latin1-tokens": ({"API_TOKENS_FILE": str(latin1)}, f"API_TOKENS_FILE {latin1}: not UTF-8 text (byte 3)"),
        "fifo-tokens": ({"API_TOKENS_FILE": str(fifo)}, "API_TOKENS_FILE (flag --api-tokens-file) must be a readable"),
        "metrics-port-in-use": (
            {"METRICS_PORT": str(port), "HOST": "127.0.0.1"},
            f"METRICS_PORT (flag --metrics-port) {port}: cannot listen on 127.0.0.1 (Address already in use)",
        ),
        "port-in-use": (
            {"PORT": str(port), "HOST": "127.0.0.1"},
            f"PORT (flag --port) {port}: cannot listen on 127.0.0.1 (Address already in use)",
        ),
        "metrics-port-is-port": ({"METRICS_PORT": "9555", "PORT": "9555"}, "METRICS_PORT (flag --metrics-port) must"),
        "blank-pin": (
            {"MODEL_SHA256": " "},
            "environment variable MODEL_SHA256 (flag --model-sha256) is set but blank",
        ),
        "empty-pin": ({"MODEL_SHA256": ""}, "environment variable MODEL_SHA256 (flag --model-sha256) is set but blank"),
        "blank-pin-file": ({"MODEL_SHA256_FILE": str(empty)}, f"MODEL_SHA256_FILE {empty} must be a sha256"),
        "fifo-pin-file": ({"MODEL_SHA256_FILE": str(fifo)}, f"MODEL_SHA256_FILE {fifo}: not a regular file"),
        "empty-tokens": ({"API_TOKENS": ""}, "environment variable API_TOKENS is set but blank"),
        "blank-tokens": ({"API_TOKENS": "   "}, "environment variable API_TOKENS is set but blank"),
        "comma-tokens": ({"API_TOKENS": ","}, "API_TOKENS / API_TOKENS_FILE is set but holds no token"),
        "spaced-token": ({"API_TOKENS": "a b"}, "token 1 holds a space"),
        "blank-tokens-file": ({"API_TOKENS_FILE": ""}, "environment variable API_TOKENS_FILE (flag"),
        "auth-tokens-none": ({"API_AUTH": "tokens"}, "API_AUTH is tokens but neither API_TOKENS nor API_TOKENS_FILE"),
        "auth-open-tokens": ({"API_AUTH": "open", "API_TOKENS": "t"}, "API_AUTH is open but API_TOKENS"),
        "auth-blank": ({"API_AUTH": " "}, "environment variable API_AUTH (flag --api-auth) is set but blank"),
        "auth-other": ({"API_AUTH": "off"}, "environment variable API_AUTH (flag --api-auth) must be tokens or open"),
        "require-pin-blank": ({"REQUIRE_MODEL_PIN": ""}, "REQUIRE_MODEL_PIN (flag --require-model-pin) is set but"),
        "log-inputs-blank": ({"LOG_INPUTS": ""}, "LOG_INPUTS (flag --log-inputs) is set but blank"),
        "drift-interval-0": ({"DRIFT_INTERVAL_SECONDS": "0"}, "DRIFT_INTERVAL_SECONDS (flag --drift-interval) must"),
        # A stranger's list: each gave a line that did not name the setting, or blamed another, or none.
        "url-file-directory": (
            {"DATABASE_URL_FILE": str(tmp_path)},
            f"DATABASE_URL_FILE {tmp_path}: a directory, not a regular file",  # main: [Errno 21] Is a directory: 3
        ),
        "host-unresolvable": (
            {"HOST": "not.a.host.invalid"},
            "HOST (flag --host) 'not.a.host.invalid': not an address or a name that resolves",  # main: PORT
        ),
        "log-missing-dir": (
            {"PREDICTION_LOG": str(missing / "x.jsonl")},
            f"PREDICTION_LOG (flag --prediction-log) {missing / 'x.jsonl'}: cannot be opened for appending "
            f"(its directory {missing} does not exist)",  # main: served, and made the directory
        ),
        "db-missing-dir": (
            {"INFERENCE_DB": str(missing / "x.db")},
            f"INFERENCE_DB (flag --inference-db) {missing / 'x.db'}: cannot be written "
            f"(its directory {missing} does not exist)",
        ),
        "model-directory": ({"MODEL_PATH": str(tmp_path)}, f"{tmp_path}: a directory, not a model file"),
        "model-device": ({"MODEL_PATH": "/dev/zero"}, "/dev/zero: not a regular file"),  # main: "not found"
        "tokens-and-file": (
            {"API_TOKENS": "a", "API_TOKENS_FILE": str(tokens)},  # main: both served, undocumented
            "API_TOKENS and API_TOKENS_FILE are both set: set one of API_TOKENS or API_TOKENS_FILE",
        ),
    }


BOTH = {
    *("fifo-log", "latin1-tokens", "metrics-port-in-use", "metrics-port-is-port", "blank-pin", "blank-pin-file"),
    *("url-file-directory", "log-missing-dir", "db-missing-dir", "tokens-and-file"),
}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_every_start_up_check_exits_2_with_one_line_naming_the_setting(model_path, tmp_path, busy_port, launcher):
    for name, (env, words) in cases(tmp_path, busy_port).items():
        if launcher == "uvicorn" and name not in BOTH:  # (uvicorn binds its own --port: not PORT)
            continue  # the same checks (run.startup_checks); the slow launcher tries one of each kind
        line = one_error_line(launch(LAUNCHERS[launcher], {"MODEL_PATH": str(model_path), **env}))
        assert words in line, (name, line)
        assert "caf" not in line and "'a b'" not in line, "a token is never echoed"
    assert not (tmp_path / "missing").exists(), "a missing directory is said, not made"


# -------------------------------------------------------------------------------- API_AUTH


@pytest.fixture
def clean_env(monkeypatch, model_path):
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_PATH", str(model_path))
    return monkeypatch


@pytest.mark.parametrize(
    "env, auth, warned",
    [
        ({}, "open", True),
        ({"API_AUTH": "open"}, "open", False),
        ({"API_AUTH": "OPEN"}, "open", False),
        ({"API_TOKENS": "t1,t2"}, "tokens", False),
        ({"API_AUTH": "tokens", "API_TOKENS": "t1"}, "tokens", False),
    ],
)
def test_api_auth_says_how_the_api_is_reached_and_an_implicitly_open_one_warns_once(
    clean_env, capsys, env, auth, warned
):
    for name, value in env.items():
        clean_env.setenv(name, value)
    app = run.app_from_environment()
    assert app.state.auth == auth
    opened = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"api_open"' in x]
    assert len(opened) == (1 if warned else 0) and all(line["level"] == "WARNING" for line in opened)


def test_heart_fastapi_workers_do_not_repeat_the_warning(clean_env, capsys):
    run.worker_app()  # what main()'s workers build: main() said it once
    assert '"api_open"' not in capsys.readouterr().out


# ------------------------------------------------------------------------ every line is JSON


def test_python_warnings_are_json_log_lines(capsys):
    logging.captureWarnings(False)  # pytest restores warnings.showwarning after each test: start afresh
    try:
        setup_logging("info")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library said something", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "a library said" in x]
    assert line["logger"] == "py.warnings" and line["level"] == "WARNING"


def test_every_line_a_real_server_writes_is_json(real_server, tmp_path):
    """main: numpy's float32 overflow warning on V2 and sklearn's warning came out as raw text."""
    log = tmp_path / "server.log"
    with real_server(log, env={"INFERENCE_ENGINE": "sklearn"}, log_level="info") as api:
        overflow = v2_tensors([{**EXAMPLE, "chol": 1e300}], chol="FP32")
        r = requests.post(api.url + "/v2/models/heart-disease/infer", json={"inputs": overflow}, timeout=30)
        assert r.status_code == 400
        assert requests.post(api.url + "/predict", json=EXAMPLE, timeout=30).status_code == 200
    lines = log.read_text().splitlines()
    assert len(lines) > 5
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_a_token_file_written_on_windows_reads_as_its_tokens(clean_env, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_bytes(b"\xef\xbb\xbftok1\r\ntok2, tok3\r\n")  # a BOM and CRLF lines
    clean_env.setenv("API_TOKENS_FILE", str(tokens))
    assert run.parse_args([]).settings.bearer_tokens() == ["tok1", "tok2", "tok3"]
