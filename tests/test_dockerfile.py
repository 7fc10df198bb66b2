"""The Dockerfile, read offline: the base is an argument, the runtime runs a numeric non-root user,
the healthcheck and command are exec-form, the model is trained at build from the bundled data, the
predictor is the default target and the explainer one layer on top of it, and only each image's
requirements and the files the server needs reach it (issues 6, 14 and 22)."""

from __future__ import annotations

import json
import re

from tests.dockerfile_tools import dockerfile, instructions, runtime_stage, stages

from conftest import ROOT


def test_dockerfile_base_is_an_argument_defaulting_to_python_slim():
    steps = dockerfile()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = instructions("FROM")
    assert len(froms) >= 2, "multi-stage: build stages and the runtime"
    assert all(f.split()[0] == "${BASE_IMAGE}" or f.split()[0] in stages() for f in froms)
    assert ("COPY", "--from=serve-lean /opt/venv /opt/venv") in runtime_stage()
    assert stages()["runtime"][0] == ("FROM", "${BASE_IMAGE} AS runtime"), "the predictor starts from the bare base"


def test_the_default_target_is_the_predictor_and_the_explainer_adds_one_layer():
    """`docker build .` builds the last stage: the runtime as it is. The explainer is the runtime plus the
    packages explain-extra set apart, so a node that runs both pulls the predictor's layers once."""
    names = list(stages())
    assert names[-1] == "predictor" and stages()["predictor"] == [("FROM", "runtime AS predictor")]
    explainer = stages()["explainer"]
    assert explainer[0] == ("FROM", "runtime AS explainer")
    assert [args for instr, args in explainer if instr == "COPY"] == [
        "--from=explain-extra /opt/explain-extra/ /opt/venv/lib/python3.11/site-packages/"
    ]
    assert not [i for i, _ in explainer if i in ("RUN", "USER", "CMD")], "same user and command as the predictor"


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
    runs = " ".join(args for instr, args in stages()["builder"] if instr == "RUN")
    assert "train.py --data data/data.csv" in runs
    env = " ".join(args for instr, args in runtime_stage() if instr == "ENV")
    assert "MODEL_PATH=" in env and "WEB_CONCURRENCY=" in env


def test_each_image_installs_only_its_requirement_sets():
    """The predictor's venv holds requirements-serve.txt alone; the explainer's layer requirements-explain.txt;
    the conversion tools (requirements-build.txt) only the builder, which trains and writes model.zip."""
    runs = {name: " ".join(a for i, a in steps if i == "RUN") for name, steps in stages().items()}
    assert "-r requirements-serve.txt" in runs["serve-venv"] and "-r requirements-" not in runs["serve-lean"]
    assert "-r requirements-explain.txt" in runs["explain-venv"] and "-r requirements-build.txt" in runs["builder"]
    assert [n for n, r in runs.items() if "-r requirements-build.txt" in r] == ["builder"]
    assert not re.search(r"requirements\.txt", " ".join(runs.values()) + " ".join(instructions("COPY")))
    assert stages()["explain-venv"][0] == ("FROM", "serve-venv AS explain-venv")
    assert stages()["builder"][0] == ("FROM", "explain-venv AS builder")
    model = re.search(r"train\.py .*--out (\S+)", runs["builder"]).group(1)
    assert model == "/app/model.zip" and f"sha256sum {model}" in runs["builder"]
    env = " ".join(args for instr, args in runtime_stage() if instr == "ENV")
    assert f"MODEL_PATH={model}" in env and "REQUIRE_MODEL_PIN=true" in env
    assert "pip uninstall" in runs["serve-lean"] and "-name tests" in runs["serve-lean"]  # no installer, no tests
    assert ("COPY", "--from=builder /app /app") in runtime_stage()


def test_dockerignore_sends_only_what_the_image_needs():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {
        "requirements-serve.txt",
        "requirements-explain.txt",
        "requirements-build.txt",
        "train.py",
        "heart_fastapi.py",
        "heart",
        "data/data.csv",
    }
    for path in included:
        assert (ROOT / path).exists(), path
