"""A lean start (issues 14 and 22): the server imports only what predictions need (ONNX Runtime and
NumPy; no scikit-learn, SciPy, pandas, SHAP or numba, even after 1,000 /predict and a live drift run),
/explain loads the Pipeline and SHAP on its first call where they are installed and answers 503 where
they are not, and requirements-serve.txt (all the predictor image installs) covers what the server
imports, requirements-explain.txt what /explain adds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"heart", "heart_fastapi", "tests"}  # this checkout (the venv may hold it as an editable install)
HEAVY = {"sklearn", "scipy", "pandas", "shap", "numba", "llvmlite", "joblib", "skl2onnx", "onnx", "matplotlib"}

# Run in a fresh interpreter (this one has imported half the world) in which every module of a
# distribution outside the given requirements' closure is unimportable, as in the image: start the
# app as uvicorn would, wait for readiness, send 1,000 /predict, run live drift once, note the
# modules loaded, then explain.
SERVER_RUN = """
import json, sys, time
BLOCKED = set(json.loads(sys.argv[1]))

class NotShipped:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)

sys.meta_path.insert(0, NotShipped())
from fastapi.testclient import TestClient
import heart_fastapi
from heart.serving.contract import EXAMPLE

def top():
    return sorted({name.split(".")[0] for name in sys.modules})

with TestClient(heart_fastapi.create_app()) as c:
    for _ in range(600):
        ready = c.get("/ready_check")
        if ready.status_code == 200 or ready.json()["status"] == "failed":
            break
        time.sleep(0.1)
    codes = {c.post("/predict", json={**EXAMPLE, "age": 30 + i % 50}).status_code for i in range(1000)}
    drift = c.app.state.live_drift.compute()
    at_ready = top()
    explain = c.post("/explain", json=EXAMPLE)
    print("RESULT", json.dumps({"ready": ready.json(), "predict": sorted(codes), "drift": drift, "at_ready": at_ready,
                                "explain": [explain.status_code, explain.json()], "after_explain": top()}))
"""


def pins(name: str) -> dict[str, Requirement]:
    reqs = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def closure(names) -> set[str]:
    """The installed distributions these need, transitively (markers evaluated, no extras)."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def not_shipped(*requirements: str) -> set[str]:
    """Top-level modules of installed distributions outside these files' closure (the TestClient's httpx aside)."""
    allowed = closure([*(name for r in requirements for name in pins(r)), "httpx"])
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if not {canonicalize_name(d) for d in dists} & allowed and module not in LOCAL
    }


def run_server(model_path, *requirements: str, **extra_env: str) -> dict:
    env = {
        **extra_env,
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "MODEL_PATH": str(model_path),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LOG_LEVEL": "warning",
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVER_RUN, json.dumps(sorted(not_shipped(*requirements)))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(result.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def predictor_image(model_path) -> dict:
    """The server with only requirements-serve.txt's closure importable: the predictor image."""
    return run_server(model_path, "requirements-serve.txt")


@pytest.fixture(scope="module")
def explainer_image(model_path) -> dict:
    """The server with requirements-explain.txt's packages too: the explainer image."""
    return run_server(model_path, "requirements-serve.txt", "requirements-explain.txt")


def test_ready_and_1000_predictions_import_none_of_the_heavy_libraries(predictor_image):
    run = predictor_image
    assert run["ready"]["status"] == "ready" and run["predict"] == [200] and run["drift"] is True
    assert run["ready"]["engine"] == "onnxruntime" and run["ready"]["parity"]["rows"] == 2303
    assert HEAVY.isdisjoint(run["at_ready"]), HEAVY & set(run["at_ready"])
    assert {"onnxruntime", "numpy", "fastapi"} <= set(run["at_ready"])


def test_explain_without_shap_in_the_image_is_a_503_naming_the_explainer(predictor_image):
    status, body = predictor_image["explain"]
    assert status == 503 and body["detail"].startswith("explanations need scikit-learn and SHAP, which this image")
    assert "explainer image" in body["detail"] and "No module named" in body["detail"]


def test_the_explainer_image_explains_on_the_first_call_and_adds_up(explainer_image):
    assert HEAVY.isdisjoint(explainer_image["at_ready"]), "installed is not imported: predictions stay lean"
    status, explain = explainer_image["explain"]
    assert status == 200 and {"shap", "sklearn", "pandas"} <= set(explainer_image["after_explain"])
    total = explain["base_value"] + sum(c["contribution"] for c in explain["contributions"])
    assert abs(total - explain["probability"]) < 1e-6 and 0 < explain["probability"] < 1
    assert len(explain["contributions"]) == 13


def test_the_sklearn_engine_in_the_predictor_image_is_refused_naming_what_it_needs(model_path):
    run = run_server(model_path, "requirements-serve.txt", INFERENCE_ENGINE="sklearn")
    assert run["ready"]["status"] == "failed" and run["predict"] == [503]
    assert run["ready"]["reason"].startswith(
        "model refused: the Pipeline cannot be unpickled here: scikit-learn and joblib are not installed "
        "(requirements-explain.txt); INFERENCE_ENGINE=sklearn and /explain need them"
    )


def test_the_requirement_sets_cover_what_each_image_imports(predictor_image, explainer_image):
    """The runs above had only their sets' closures importable (as in each image) and still started,
    predicted and (the explainer) explained; the analysis and build libraries were among those they could not import."""
    lean = not_shipped("requirements-serve.txt")
    assert {"sklearn", "scipy", "pandas", "shap", "numba", "onnx", "skl2onnx", "fairlearn", "matplotlib"} <= lean
    assert {"onnx", "skl2onnx", "fairlearn", "matplotlib"} <= not_shipped(
        "requirements-serve.txt", "requirements-explain.txt"
    )
    # only what site's .pth hooks load before the block (the test venv's coverage and setuptools)
    for run, blocked in (
        (predictor_image, lean),
        (explainer_image, not_shipped("requirements-serve.txt", "requirements-explain.txt")),
    ):
        assert blocked & set(run["after_explain"]) <= {"coverage", "_distutils_hack"}


def test_requirements_txt_includes_each_set_once_with_exact_pins():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    sets = ("requirements-serve.txt", "requirements-explain.txt", "requirements-build.txt")
    assert [f"-r {name}" for name in sets] == [line for line in lines if line.startswith("-r")]
    pinned = [pins(name) for name in (*sets, "requirements.txt")]
    for i, a in enumerate(pinned):
        for b in pinned[i + 1 :]:
            assert not a.keys() & b.keys(), "pinned twice"
        for req in a.values():
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", req
    serve, explain, build, rest = pinned
    # predictions need none of these, not even as a dependency
    heavy = {"scikit-learn", "scipy", "pandas", "shap", "numba", "onnx", "skl2onnx", "fairlearn", "matplotlib"}
    assert heavy.isdisjoint(closure(serve))
    assert {"onnx", "skl2onnx", "fairlearn", "matplotlib"}.isdisjoint(closure([*serve, *explain]))
    assert {"fairlearn", "matplotlib"} <= rest.keys() and {"onnx", "skl2onnx"} == build.keys()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_package_metadata_reads_the_sets_without_pip_options():
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(ROOT / "pyproject.toml", expand=True)["project"]
    assert sorted(project["dependencies"]) == sorted(str(r) for r in pins("requirements-serve.txt").values())
    extras = project["optional_dependencies"]
    assert sorted(extras["explain"]) == sorted(str(r) for r in pins("requirements-explain.txt").values())
    assert sorted(extras["build"]) == sorted(str(r) for r in pins("requirements-build.txt").values())
