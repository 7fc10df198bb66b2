"""One validated Settings object: the environment's names, flags over them, one-line errors."""

import os
import subprocess
import sys

import pytest

from heart.serving.settings import ENV_NAMES, Settings, SettingsError, load_settings

from conftest import ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_every_variable_by_its_name(monkeypatch):
    s = load_settings()
    assert (s.host, s.port, s.workers, str(s.model_path), s.prediction_log, s.log_inputs, s.log_level, s.engine) == (
        "0.0.0.0",
        8000,
        1,
        "model.zip",
        None,
        True,
        "info",
        "onnx",
    )
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": "9001",
        "WEB_CONCURRENCY": "3",
        "MODEL_PATH": "m.zip",
        "PREDICTION_LOG": "p.jsonl",
        "LOG_INPUTS": "FALSE",
        "LOG_LEVEL": "WARNING",
        "INFERENCE_ENGINE": "Sklearn",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (
        s.host,
        s.port,
        s.workers,
        str(s.model_path),
        str(s.prediction_log),
        s.log_inputs,
        s.log_level,
        s.engine,
    ) == ("127.0.0.1", 9001, 3, "m.zip", "p.jsonl", False, "warning", "sklearn")
    assert load_settings({"port": "9002", "log_inputs": "true"}).port == 9002, "a flag overrides its variable"
    assert s.to_env() == {
        "HOST": "127.0.0.1",
        "PORT": "9001",
        "WEB_CONCURRENCY": "3",
        "MODEL_PATH": "m.zip",
        "PREDICTION_LOG": "p.jsonl",
        "LOG_INPUTS": "false",
        "LOG_LEVEL": "warning",
        "ACCESS_LOG": "false",
        "INFERENCE_ENGINE": "sklearn",
        "DRIFT_WINDOW": "1000",
        "DRIFT_INTERVAL_SECONDS": "10.0",
        "DATABASE_URL": None,
        "DATABASE_URL_FILE": None,
        "INFERENCE_DB": None,
        "INFERENCE_RETENTION_DAYS": "90.0",
        "INFERENCE_RETENTION_ROWS": "1000000",
        "REQUEST_TIMEOUT_SECONDS": "15.0",
        "MAX_HEADER_BYTES": "65536",
        "GRACEFUL_TIMEOUT": "15.0",
        "METRICS_PORT": None,
        "API_AUTH": None,
        "API_TOKENS": None,
        "API_TOKENS_FILE": None,
        "MODEL_SHA256": None,
        "MODEL_SHA256_FILE": None,
        "REQUIRE_MODEL_PIN": "false",
    }


def test_empty_variables_mean_the_default_and_only_declared_variables_are_read(monkeypatch):
    monkeypatch.setenv("PREDICTION_LOG", "")
    monkeypatch.setenv("ACCESS_LOG", " ")
    monkeypatch.setenv("prediction_log", "by-field-name.jsonl")  # a field's own name is not its variable
    monkeypatch.setenv("PARITY_SAMPLES", "3")  # a create_app knob, never configuration
    s = load_settings()
    assert s.prediction_log is None and s.access_log is False
    assert "parity_samples" not in Settings.model_fields


def test_to_env_round_trips():
    s = Settings(port=8123, workers=2, prediction_log="x.jsonl", log_inputs=False, engine="sklearn")
    env = {k: v for k, v in s.to_env().items() if v is not None}
    assert Settings(**env) == s


@pytest.mark.parametrize(
    "var, value, flag, rule",
    [
        ("LOG_LEVEL", "verbose", "--log-level", "one of critical, error, warning, info, debug"),
        ("LOG_INPUTS", "maybe", "--log-inputs", "true or false"),
        ("PORT", "abc", "--port", "a whole number from 1 to 65535"),
        ("PORT", "70000", "--port", "a whole number from 1 to 65535"),
        ("WEB_CONCURRENCY", "0", "--workers", "a whole number from 1 to 64"),
        ("INFERENCE_ENGINE", "gpu", "--engine", "onnx or sklearn"),
    ],
)
def test_a_bad_value_names_its_variable_or_flag_and_the_rule(monkeypatch, var, value, flag, rule):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as env_error:
        load_settings()
    assert str(env_error.value) == f"environment variable {var} (flag {flag}) must be {rule}, got {value!r}"
    monkeypatch.delenv(var)
    field = next(name for name, alias in ENV_NAMES.items() if alias == var)
    with pytest.raises(SettingsError) as flag_error:
        load_settings({field: value})
    assert str(flag_error.value) == f"{flag} must be {rule}, got {value!r}"


def run(args, env, **kw):
    env = {**{k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}, **env}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60, **kw)


@pytest.mark.parametrize(
    "var, value",
    [
        ("LOG_LEVEL", "verbose"),
        ("LOG_INPUTS", "maybe"),
        ("PORT", "abc"),
        ("WEB_CONCURRENCY", "0"),
        ("INFERENCE_ENGINE", "gpu"),
    ],
)
def test_heart_fastapi_exits_2_with_one_line_on_a_bad_variable(var, value):
    proc = run([sys.executable, "heart_fastapi.py"], {var: value})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: environment variable {var} ") and repr(value) in lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--log-level", "verbose"], "--log-level must be one of"),
        (["--port", "0"], "--port must be a whole number from 1 to 65535"),
        (["--workers", "x"], "--workers must be a whole number"),
        (["--engine", "gpu"], "--engine must be onnx or sklearn"),
    ],
)
def test_heart_fastapi_exits_2_with_one_line_on_a_bad_flag(args, words, capsys):
    from heart.serving import run  # in-process: parse_args validates the flags with the environment

    with pytest.raises(SystemExit) as exit_:
        run.parse_args(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {words}")


def test_flags_land_in_the_settings_and_on_args(monkeypatch):
    from heart.serving import run

    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("LOG_INPUTS", "false")
    args = run.parse_args(["--model", "m.zip", "--engine", "SKLEARN", "--workers", "2"])
    assert (args.port, args.workers, str(args.model_path), args.engine, args.log_inputs) == (
        9100,
        2,
        "m.zip",
        "sklearn",
        False,
    )
    assert args.settings.port == 9100 and args.graceful_timeout == 15.0  # issue 12 #15: fits the pod


def test_uvicorn_import_string_with_a_bad_variable_is_one_line_too():
    proc = run([sys.executable, "-m", "uvicorn", "heart_fastapi:app", "--port", "1"], {"LOG_INPUTS": "maybe"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: environment variable LOG_INPUTS (flag --log-inputs) must be true or false, got 'maybe'"
    ]


def test_the_contract_imports_without_fastapi():
    code = "import sys, heart.serving.contract, heart.clients.client; print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    proc = run([sys.executable, "-c", code], {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
