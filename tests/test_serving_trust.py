"""Issue 12, then 22: what may be served (the deployer's pin, the card inside the artifact, a graph that
reproduces the probabilities stored with it), and a readiness that tells the truth about the model and
the prediction log. Nothing of the file is unpickled to serve predictions."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from heart import artifact, export
from heart.artifact import card_path_for, sha256_file
from heart.export import save_model
from heart.serving.app import create_app
from heart.serving.contract import EXAMPLE
from heart.serving.settings import ENV_NAMES
from heart.serving.tracing import tracer_provider
from tests.support import disk_full, make_app

from conftest import ROOT


def app_for(model_path, **values):
    """An app whose every environment-backed setting is given, so the developer's env cannot leak in."""
    return make_app(model_path, **values)


@pytest.fixture
def copy_of_model(model_path, tmp_path):
    dst = tmp_path / "model.zip"
    shutil.copy(model_path, dst)
    shutil.copy(card_path_for(model_path), card_path_for(dst))
    return dst


class Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def members_of(path) -> tuple[dict, dict[str, bytes]]:
    """(embedded card, the other members' bytes) of an archive."""
    with zipfile.ZipFile(path) as zf:
        content = {name: zf.read(name) for name in zf.namelist()}
    return json.loads(content.pop("card.json")), content


def forge(path, card=None, **replaced) -> None:
    """What an attacker who can write the model's directory does: members replaced (None: removed), the
    archive and its trailer rebuilt, the card beside it re-hashed to match, so every check that reads the
    artifact's own files passes."""
    old_card, content = members_of(path)
    card = old_card if card is None else card
    content.update(replaced)
    content = {k: v for k, v in content.items() if v is not None}
    if len(content) == 3:
        blob = export.pack(card, content)
    else:  # a member removed: write the zip by hand, with a correct trailer
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("card.json", json.dumps(card))
            for name, member in content.items():
                zf.writestr(name, member)
            zf.comment = b"x" * artifact.TRAILER_LEN
        body = buf.getvalue()[: -artifact.TRAILER_LEN]
        blob = body + artifact.TRAILER_MAGIC + artifact.sha256_bytes(body).encode() + b"\n"
    path.write_bytes(blob)
    copy = json.loads(card_path_for(path).read_text())
    copy["artifact"].update(sha256=artifact.sha256_bytes(blob), bytes=len(blob))
    card_path_for(path).write_text(json.dumps(copy))


def refused(app) -> str:
    """The reason readiness gives for a refused model, after checking every route refuses to serve."""
    with TestClient(app) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and r.json()["status"] == "failed", r.json()
        for path, body in (("/predict", EXAMPLE), ("/predict/batch", {"instances": [EXAMPLE]}), ("/explain", EXAMPLE)):
            assert c.post(path, json=body).status_code == 503
        assert c.get("/model").status_code == 503
        assert app.state.serving.model is None and app.state.serving.pipeline is None
        return r.json()["reason"]


def dump(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


# ------------------------------------------------------------------------ 5: the pin


def test_a_forged_pickle_never_runs_when_the_model_is_pinned(copy_of_model, tmp_path):
    pin = sha256_file(copy_of_model)
    marker = tmp_path / "pwned"
    forge(copy_of_model, **{"pipeline.joblib": dump(Payload(marker))})
    reason = refused(app_for(copy_of_model, model_sha256=pin))
    assert (
        reason.startswith(f"model refused: {copy_of_model}: sha256 ") and f"does not match the pinned {pin}" in reason
    )
    assert not marker.exists(), "the payload ran: the pickle was loaded before the pin was checked"


def test_require_model_pin_refuses_an_unpinned_model(copy_of_model, tmp_path):
    marker = tmp_path / "pwned"
    forge(copy_of_model, **{"pipeline.joblib": dump(Payload(marker))})
    assert "no pin, and REQUIRE_MODEL_PIN is true: set MODEL_SHA256" in refused(
        app_for(copy_of_model, require_model_pin=True)
    )
    assert not marker.exists()


def test_the_pin_comes_from_the_environment_or_a_baked_file(copy_of_model, tmp_path, monkeypatch):
    pin = sha256_file(copy_of_model)
    baked = tmp_path / "model.sha256"
    baked.write_text(f"{pin.upper()}  model.zip\n")  # `sha256sum` output, any case
    with TestClient(app_for(copy_of_model, model_sha256_file=baked, require_model_pin=True)) as c:
        body = c.get("/ready_check").json()
        assert body["status"] == "ready" and body["pinned"] is True and body["pinned_by"] == "MODEL_SHA256_FILE"
        assert "heart_model_pinned 1.0" in c.get("/metrics").text
    baked.write_text("0" * 64)
    monkeypatch.setenv("MODEL_SHA256", pin.upper())  # the variable wins over the file
    from heart.serving.settings import load_settings

    settings = load_settings({"model_path": copy_of_model, "model_sha256_file": baked})
    app = create_app(settings, tracer_provider_=tracer_provider("test", exporters=[]), background_load=False)
    with TestClient(app) as c:
        assert c.get("/ready_check").json()["pinned_by"] == "MODEL_SHA256"
    assert "does not match the pinned 0000" in refused(app_for(copy_of_model, model_sha256_file=baked))
    assert "MODEL_SHA256_FILE" in refused(app_for(copy_of_model, model_sha256_file=tmp_path / "absent"))


def test_an_unpinned_model_is_served_with_a_warning_and_says_so(copy_of_model, caplog):
    with TestClient(app_for(copy_of_model)) as c:
        body = c.get("/ready_check").json()
        assert body["status"] == "ready" and body["pinned"] is False and body["pinned_by"] == "none"
        assert "heart_model_pinned 0.0" in c.get("/metrics").text
    assert any(r.getMessage() == "model_unpinned" for r in caplog.records)


# ------------------------------------------------- issue 22: the members, read and never unpickled


def test_a_tampered_member_is_refused_pinned_or_not(copy_of_model):
    pin = sha256_file(copy_of_model)
    blob = bytearray(copy_of_model.read_bytes())
    with zipfile.ZipFile(copy_of_model) as zf:
        onnx = zf.getinfo("model.onnx")
    blob[onnx.header_offset + 100] ^= 0x01  # a byte of the graph's compressed bytes
    copy_of_model.write_bytes(bytes(blob))
    assert f"does not match the pinned {pin}" in refused(app_for(copy_of_model, model_sha256=pin))
    assert "written at its end: the file changed after training; refusing to load it" in refused(app_for(copy_of_model))


@pytest.mark.parametrize("member", ["model.onnx", "reference.npz", "pipeline.joblib", "card.json"])
def test_a_missing_member_is_refused_even_when_the_deployer_pinned_that_file(copy_of_model, member):
    if member == "card.json":  # forge writes a card: leave it out by hand
        card, content = members_of(copy_of_model)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, blob in content.items():
                zf.writestr(name, blob)
            zf.comment = b"x" * artifact.TRAILER_LEN
        body = buf.getvalue()[: -artifact.TRAILER_LEN]
        copy_of_model.write_bytes(body + artifact.TRAILER_MAGIC + artifact.sha256_bytes(body).encode() + b"\n")
    else:
        forge(copy_of_model, **{member: None})
    reason = refused(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model)))
    assert reason == (
        f"model refused: {copy_of_model}: missing member {member} (heart-model/3 holds exactly card.json, "
        "model.onnx, reference.npz, pipeline.joblib); refusing to load it"
    )


def test_reference_probabilities_that_do_not_match_the_graph_are_refused(copy_of_model, tmp_path):
    """A forged reference (pinned by a deployer who trusted it): the graph no longer reproduces it."""
    _, content = members_of(copy_of_model)
    npz = dict(np.load(io.BytesIO(content["reference.npz"]), allow_pickle=False))
    npz["proba"] = npz["proba"].copy()
    npz["proba"][7] += 2e-5  # twice the tolerance, on one row of 2,303
    buf = io.BytesIO()
    np.savez(buf, **npz)
    forge(copy_of_model, **{"reference.npz": buf.getvalue()})
    reason = refused(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model)))
    assert reason.startswith(
        f"model refused: {copy_of_model}: onnxruntime does not reproduce the reference probabilities stored "
        "with the model: 0 class mismatches, max |dp| 2."
    )
    assert reason.endswith("on 2303 rows (tolerance 1e-05); refusing to serve it")


def test_predictions_never_unpickle_and_explain_refuses_a_pipeline_replaced_since_the_load(
    copy_of_model, tmp_path, caplog
):
    """Served unpinned, the file is then rewritten with a pickle payload: /predict goes on (the graph was
    read at load), /explain refuses to unpickle a file that is no longer the one verified, and the
    payload never runs. INFERENCE_ENGINE=sklearn loads the Pipeline at start, from the verified file."""
    marker = tmp_path / "pwned"
    app = app_for(copy_of_model, configure_logging=False)  # records reach caplog
    with TestClient(app) as c:
        assert c.get("/ready_check").json()["status"] == "ready"
        forge(copy_of_model, **{"pipeline.joblib": dump(Payload(marker))})
        for _ in range(20):
            assert c.post("/predict", json=EXAMPLE).status_code == 200
        r = c.post("/explain", json=EXAMPLE)
        assert r.status_code == 503 and r.json()["detail"].startswith(f"cannot explain: {copy_of_model}: sha256 ")
        assert "is no longer the" in r.json()["detail"] and "refusing to unpickle its Pipeline" in r.json()["detail"]
        (logged,) = [rec for rec in caplog.records if rec.getMessage() == "explain_refused"]
        assert logged.levelname == "ERROR" and logged.name == "heart.serving.inference"
        assert logged.trace_id == r.headers["x-trace-id"]  # the operator finds the refused request by its id
        assert f"cannot explain: {logged.reason}" == r.json()["detail"]
        assert c.post("/predict", json=EXAMPLE).status_code == 200  # predictions unaffected
    assert not marker.exists() and app.state.serving.pipeline is None


def test_the_sklearn_engine_unpickles_the_verified_file_and_checks_it_against_the_reference(copy_of_model):
    pin = sha256_file(copy_of_model)
    app = app_for(copy_of_model, model_sha256=pin, engine="sklearn")
    with TestClient(app) as c:
        body = c.get("/ready_check").json()
        assert body["engine"] == "sklearn" and body["parity"]["rows"] == 2303 and body["parity"]["max_abs_diff"] == 0
        assert c.post("/predict", json=EXAMPLE).status_code == 200 and app.state.serving.pipeline is not None
    forge(copy_of_model, **{"pipeline.joblib": dump({"not": "a pipeline"})})  # a deployer pinned the forgery
    assert "pipeline.joblib does not match the pipeline_sha256 in its card" in refused(
        app_for(copy_of_model, model_sha256=sha256_file(copy_of_model), engine="sklearn")
    )


# ---------------------------------------------------------------- 6: the card is covered


def test_an_edited_card_beside_the_model_is_not_what_is_served(copy_of_model, loaded):
    card = json.loads(card_path_for(copy_of_model).read_text())
    card["model_version"] = "9.9.9-spoofed"
    card_path_for(copy_of_model).write_text(json.dumps(card))
    with TestClient(app_for(copy_of_model)) as c:
        assert c.get("/ready_check").json()["model_version"] == loaded.version
        assert c.get("/model").json()["model_version"] == loaded.version
        assert c.post("/predict", json=EXAMPLE).json()["model_version"] == loaded.version


def test_an_edited_card_inside_the_model_breaks_the_pin(copy_of_model):
    pin = sha256_file(copy_of_model)
    card, _ = members_of(copy_of_model)
    forge(copy_of_model, card={**card, "model_version": "9.9.9-spoofed"})
    assert f"does not match the pinned {pin}" in refused(app_for(copy_of_model, model_sha256=pin))


# ------------------------------------------------------------- 7: readiness never hangs


def test_a_card_without_model_version_fails_readiness_with_the_reason(copy_of_model):
    card, _ = members_of(copy_of_model)
    forge(copy_of_model, card={k: v for k, v in card.items() if k != "model_version"})
    assert "has no model_version" in refused(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model)))


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


def test_a_crash_between_model_and_card_leaves_the_new_pair_served(copy_of_model, trained, dataset, monkeypatch):
    real, calls = export.atomic_write, []

    def crash_on_the_card(path, blob):
        calls.append(path)
        if path.name.endswith(".card.json"):
            raise KeyboardInterrupt("killed")
        real(path, blob)

    monkeypatch.setattr(export, "atomic_write", crash_on_the_card)
    with pytest.raises(KeyboardInterrupt):
        save_model(trained.pipeline, {"note": "retrained"}, copy_of_model, dataset.X)
    monkeypatch.undo()
    with TestClient(app_for(copy_of_model, model_sha256=sha256_file(copy_of_model))) as c:
        assert c.get("/ready_check").status_code == 200
        assert c.get("/model").json()["note"] == "retrained"


# -------------------------------------------------------- 10: a prediction log that fails


def test_a_full_prediction_log_never_fails_predictions_and_is_counted(model_path, tmp_path, monkeypatch):
    app = app_for(model_path, prediction_log=tmp_path / "p.jsonl")
    disk_full(monkeypatch, app.state.inference.writer.file.fd)
    with TestClient(app) as c:
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
