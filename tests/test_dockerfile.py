"""The Dockerfile, read offline: the base is an argument, the runtime runs a numeric non-root user,
the healthcheck and command are exec-form, the model is trained at build from the bundled data, and
only the serving requirements and the files the server needs reach the image (issues 6 and 14)."""

from __future__ import annotations

import json
import re

from tests.test_deploy import ROOT, dockerfile, instructions, runtime_stage


def test_dockerfile_base_is_an_argument_defaulting_to_python_slim():
    steps = dockerfile()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = instructions("FROM")
    assert len(froms) >= 2, "multi-stage: a builder stage and a runtime stage"
    assert all(f.split()[0] == "${BASE_IMAGE}" for f in froms)
    assert any("--from=builder /opt/venv" in args for instr, args in runtime_stage() if instr == "COPY")


def test_dockerfile_runtime_runs_as_a_numeric_non_root_user():
    users = [args for instr, args in runtime_stage() if instr == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can check it


def test_dockerfile_healthcheck_and_cmd():
    (health,) = instructions("HEALTHCHECK")
    assert "/ready_check" in health and "urllib" in health
    (cmd,) = instructions("CMD")
    argv = json.loads(cmd)  # exec form (a JSON array): the server is PID 1 and gets SIGTERM
    assert argv[-1] == "heart_fastapi.py" and argv[0].endswith("python")
    assert not instructions("ENTRYPOINT")


def test_dockerfile_trains_the_model_at_build_from_the_bundled_data():
    runs = " ".join(instructions("RUN"))
    assert "train.py --data data/data.csv" in runs
    env = " ".join(args for instr, args in runtime_stage() if instr == "ENV")
    assert "MODEL_PATH=" in env and "WEB_CONCURRENCY=" in env


def test_the_image_installs_only_the_serving_requirements_and_caches_the_onnx_graph():
    """requirements.txt (fairlearn, matplotlib, ...) never reaches the image; the build converts the
    model it trained to ONNX once (heart.serving.onnx_cache), beside the model the server loads."""
    copies = " ".join(instructions("COPY"))
    runs = " ".join(instructions("RUN"))
    assert "requirements-serve.txt" in copies and "-r requirements-serve.txt" in runs
    assert not re.search(r"requirements\.txt", copies + runs)
    model = re.search(r"train\.py .*--out (\S+)", runs).group(1)
    assert f"-m heart.serving.onnx_cache {model}" in runs
    env = " ".join(args for instr, args in runtime_stage() if instr == "ENV")
    assert f"MODEL_PATH={model}" in env
    assert "pip uninstall" in runs and "-name tests" in runs  # no installer, no test suites shipped


def test_dockerignore_sends_only_what_the_image_needs():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"requirements-serve.txt", "train.py", "heart_fastapi.py", "heart", "data/data.csv"}
    for path in included:
        assert (ROOT / path).exists(), path
