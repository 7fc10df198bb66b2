"""Issue 12: what may be served (the deployer's pin, the card inside the artifact), and a
readiness that tells the truth about the model and the prediction log."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import joblib
import pytest
from fastapi.testclient import TestClient

from heart import artifact
from heart.artifact import card_path_for, sha256_file
from heart.serving.app import create_app
from heart.serving.contract import EXAMPLE
from heart.serving.settings import ENV_NAMES
from heart.serving.tracing import tracer_provider
from tests.support import make_app

from conftest import ROOT


def app_for(model_path, **values):
    """An app whose every environment-backed setting is given, so the developer's env cannot leak in."""
    return make_app(model_path, **values)


@pytest.fixture
def copy_of_model(model_path, tmp_path):
    dst = tmp_path / "model.joblib"
    shutil.copy(model_path, dst)
    shutil.copy(card_path_for(model_path), card_path_for(dst))
    return dst


class Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def forge(path, content) -> None:
    """What an attacker who can write the model's directory does: a new file, its trailer and the
    card beside it re-hashed to match, so every check that reads the artifact's own files passes."""
    buf = io.BytesIO()
    joblib.dump(content, buf)
    payload = buf.getvalue()
    blob = payload + artifact.TRAILER_MAGIC + artifact.sha256_bytes(payload).encode() + b"\n"
    path.write_bytes(blob)
    card_path = card_path_for(path)
    card = json.loads(card_path.read_text())
    card["artifact"].update(sha256=artifact.sha256_bytes(blob), bytes=len(blob))
    card_path.write_text(json.dumps(card))


# ------------------------------------------------------------------------ 5: the pin


def test_a_forged_pickle_never_runs_when_the_model_is_pinned(copy_of_model, tmp_path):
    pin = sha256_file(copy_of_model)
    marker = tmp_path / "pwned"
    forge(copy_of_model, Payload(marker))
    app = app_for(copy_of_model, model_sha256=pin)
    with TestClient(app) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert f"does not match the pinned {pin}" in r.json()["reason"]
        assert c.post("/predict", json=EXAMPLE).status_code == 503
    assert not marker.exists(), "the payload ran: the pickle was loaded before the pin was checked"


def test_require_model_pin_refuses_an_unpinned_model_before_unpickling(copy_of_model, tmp_path):
    marker = tmp_path / "pwned"
    forge(copy_of_model, Payload(marker))
    with TestClient(app_for(copy_of_model, require_model_pin=True)) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and "no pin, and REQUIRE_MODEL_PIN is true: set MODEL_SHA256" in r.json()["reason"]
    assert not marker.exists()


def test_the_pin_comes_from_the_environment_or_a_baked_file(copy_of_model, tmp_path, monkeypatch):
    pin = sha256_file(copy_of_model)
    baked = tmp_path / "model.sha256"
    baked.write_text(f"{pin.upper()}  model.joblib\n")  # `sha256sum` output, any case
    with TestClient(app_for(copy_of_model, model_sha256_file=baked, require_model_pin=True)) as c:
        body = c.get("/ready_check").json()
        assert body["status"] == "ready" and body["pinned"] is True and body["pinned_by"] == "MODEL_SHA256_FILE"
        assert "heart_model_pinned 1.0" in c.get("/metrics").text
    baked.write_text("0" * 64)
    monkeypatch.setenv("MODEL_SHA256", pin.upper())  # the variable wins over the file
    from heart.serving.settings import load_settings

    settings = load_settings({"model_path": copy_of_model, "model_sha256_file": baked})
    app = create_app(
        settings, tracer_provider_=tracer_provider("test", exporters=[]), background_load=False, parity_samples=200
    )
    with TestClient(app) as c:
        assert c.get("/ready_check").json()["pinned_by"] == "MODEL_SHA256"
    with TestClient(app_for(copy_of_model, model_sha256_file=baked)) as c:
        assert "does not match the pinned 0000" in c.get("/ready_check").json()["reason"]
    with TestClient(app_for(copy_of_model, model_sha256_file=tmp_path / "absent")) as c:
        assert "MODEL_SHA256_FILE" in c.get("/ready_check").json()["reason"]


def test_an_unpinned_model_is_served_with_a_warning_and_says_so(copy_of_model, caplog):
    with TestClient(app_for(copy_of_model)) as c:
        body = c.get("/ready_check").json()
        assert body["status"] == "ready" and body["pinned"] is False and body["pinned_by"] == "none"
        assert "heart_model_pinned 0.0" in c.get("/metrics").text
    assert any(r.getMessage() == "model_unpinned" for r in caplog.records)


# ---------------------------------------------------------------- 6: the card is covered


def test_an_edited_card_beside_the_model_is_not_what_is_served(copy_of_model, loaded):
    card = json.loads(card_path_for(copy_of_model).read_text())
    card["model_version"] = "9.9.9-spoofed"
    card_path_for(copy_of_model).write_text(json.dumps(card))
    with TestClient(app_for(copy_of_model)) as c:
        assert c.get("/ready_check").json()["model_version"] == loaded.version
        assert c.get("/model").json()["model_version"] == loaded.version
        assert c.post("/predict", json=EXAMPLE).json()["model_version"] == loaded.version


def test_an_edited_card_inside_the_model_breaks_the_pin(copy_of_model, loaded):
    pin = sha256_file(copy_of_model)
    content = joblib.load(io.BytesIO(copy_of_model.read_bytes()))
    card = json.loads(content["card"])
    content["card"] = json.dumps({**card, "model_version": "9.9.9-spoofed"})
    forge(copy_of_model, content)
    with TestClient(app_for(copy_of_model, model_sha256=pin)) as c:
        assert c.get("/ready_check").status_code == 503
        assert c.get("/model").status_code == 503


# ------------------------------------------------------------- 7: readiness never hangs


def test_a_card_without_model_version_fails_readiness_with_the_reason(copy_of_model):
    content = joblib.load(io.BytesIO(copy_of_model.read_bytes()))
    content["card"] = json.dumps({k: v for k, v in json.loads(content["card"]).items() if k != "model_version"})
    forge(copy_of_model, content)
    with TestClient(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model))) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "has no model_version" in r.json()["reason"]


def test_a_failure_while_publishing_the_model_fails_readiness(copy_of_model, monkeypatch):
    app = app_for(copy_of_model)
    monkeypatch.setattr(app.state.serving.metrics.model_info, "labels", lambda **kw: 1 / 0)
    with TestClient(app) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and r.json() == {
            "status": "failed",
            "reason": "model could not be loaded: ZeroDivisionError: division by zero",
        }


# ---------------------------------------------------------------- 8: replaced as a pair


def test_a_crash_between_model_and_card_leaves_the_new_pair_served(copy_of_model, trained, monkeypatch):
    real, calls = artifact.atomic_write, []

    def crash_on_the_card(path, blob):
        calls.append(path)
        if path.name.endswith(".card.json"):
            raise KeyboardInterrupt("killed")
        real(path, blob)

    monkeypatch.setattr(artifact, "atomic_write", crash_on_the_card)
    with pytest.raises(KeyboardInterrupt):
        artifact.save_model(trained.pipeline, {"note": "retrained"}, copy_of_model)
    monkeypatch.undo()
    with TestClient(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model))) as c:
        assert c.get("/ready_check").status_code == 200
        assert c.get("/model").json()["note"] == "retrained"


# -------------------------------------------------------- 10: a prediction log that fails


def test_a_full_prediction_log_never_fails_predictions_and_is_counted(model_path):
    with TestClient(app_for(model_path, prediction_log="/dev/full")) as c:
        assert c.get("/ready_check").status_code == 200
        assert c.post("/predict", json=EXAMPLE).status_code == 200
        assert c.post("/predict/batch", json={"instances": [EXAMPLE, EXAMPLE]}).status_code == 200
        assert "heart_prediction_log_lost_total 3.0" in c.get("/metrics").text


# ------------------------------------------------------------- 11, 12: start-up checks


def run(args, env):
    env = {**{k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}, **env}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def bad_logs(tmp_path):
    (tmp_path / "afile").write_text("")
    yield tmp_path / "afile" / "p.jsonl", "a parent is not a directory"
    yield tmp_path, "Is a directory"
    yield "/sys/p.jsonl", "Permission denied"  # refused even to root, like a read-only directory
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        yield ro / "p.jsonl", "Permission denied"


@pytest.mark.parametrize(
    "command",
    [
        ["heart_fastapi.py", "WEB_CONCURRENCY=1"],
        ["heart_fastapi.py", "WEB_CONCURRENCY=2"],
        ["-m", "uvicorn", "heart_fastapi:app", "--port", "1"],
    ],
)
def test_a_bad_prediction_log_exits_2_with_one_line_in_every_worker_mode(command, model_path, tmp_path):
    args = [a for a in command if "=" not in a]
    env = dict(a.split("=") for a in command if "=" in a)
    for path, why in bad_logs(tmp_path):
        proc = run([sys.executable, *args], {**env, "MODEL_PATH": str(model_path), "PREDICTION_LOG": str(path)})
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "Started server process" not in proc.stderr
        assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
            f"error: PREDICTION_LOG (flag --prediction-log) {path}: cannot be opened for appending ({why})"
        ]


@pytest.mark.parametrize(
    "var, value, rule",
    [
        ("LOG_LEVEL", "verbose", "one of critical"),
        ("LOG_INPUTS", "maybe", "true or false"),
        ("MODEL_SHA256", "abc", "a sha256"),
    ],
)
@pytest.mark.parametrize("command", [["heart_fastapi.py"], ["-m", "uvicorn", "heart_fastapi:app", "--port", "1"]])
def test_a_bad_variable_exits_2_naming_it_under_both_launchers(var, value, rule, command):
    proc = run([sys.executable, *command], {var: value})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: environment variable {var} ") and rule in errors[0]
