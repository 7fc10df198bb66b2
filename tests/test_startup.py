"""A fast start (issue 14, part 6): the server imports only what predictions need, SHAP waits for
the first /explain, the build-time ONNX graph is used only for its own model and still parity-checked,
and requirements-serve.txt (all the image installs) covers everything the server imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from heart.artifact import card_path_for, sha256_bytes
from heart.fast import to_onnx
from heart.model import train
from heart.serving.contract import EXAMPLE
from heart.serving.onnx_cache import cache_paths, read_cache, write_cache
from tests.support import make_app

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"heart", "heart_fastapi", "tests"}  # this checkout (the venv may hold it as an editable install)
NEVER_AT_START = {"shap", "numba", "llvmlite", "skl2onnx", "matplotlib", "fairlearn", "locust"}

# Run in a fresh interpreter (this one has imported half the world) in which every module of a
# distribution outside requirements-serve.txt's closure is unimportable, as in the image: start
# the app as uvicorn would, wait for readiness, predict, then explain; report the modules loaded.
SERVER_RUN = """
import json, sys, time
BLOCKED = set(json.loads(sys.argv[1]))

class NotShipped:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in requirements-serve.txt)", name=name)

sys.meta_path.insert(0, NotShipped())
from fastapi.testclient import TestClient
import heart_fastapi
from heart.serving.contract import EXAMPLE

def top():
    return sorted({name.split(".")[0] for name in sys.modules})

with TestClient(heart_fastapi.create_app()) as c:
    for _ in range(600):
        ready = c.get("/ready_check")
        if ready.status_code == 200:
            break
        time.sleep(0.1)
    predict = c.post("/predict", json=EXAMPLE)
    at_ready = top()
    explain = c.post("/explain", json=EXAMPLE)
    print("RESULT", json.dumps({"ready": ready.json(), "predict": predict.status_code, "at_ready": at_ready,
                                "explain": explain.json(), "after_explain": top()}))
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


@pytest.fixture(scope="module")
def cached_model(model_path, tmp_path_factory) -> Path:
    """A copy of the session's model with its build-time ONNX graph beside it."""
    path = tmp_path_factory.mktemp("cached") / "model.joblib"
    shutil.copy(model_path, path)
    shutil.copy(card_path_for(model_path), card_path_for(path))
    write_cache(path)
    return path


def not_shipped() -> set[str]:
    """Top-level modules of installed distributions the image lacks (the TestClient's httpx aside)."""
    allowed = closure([*pins("requirements-serve.txt"), "httpx"])
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if not {canonicalize_name(d) for d in dists} & allowed and module not in LOCAL
    }


@pytest.fixture(scope="module")
def server_run(cached_model) -> dict:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "MODEL_PATH": str(cached_model),
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVER_RUN, json.dumps(sorted(not_shipped()))],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(result.removeprefix("RESULT "))


def test_ready_and_predicting_without_shap_skl2onnx_or_the_analysis_libraries(server_run):
    assert server_run["ready"]["status"] == "ready" and server_run["predict"] == 200
    assert server_run["ready"]["engine"] == "onnxruntime" and server_run["ready"]["parity"]["rows"] > 300
    assert NEVER_AT_START.isdisjoint(server_run["at_ready"]), NEVER_AT_START & set(server_run["at_ready"])
    assert {"onnxruntime", "sklearn", "fastapi"} <= set(server_run["at_ready"])


def test_the_first_explain_loads_shap_and_adds_up(server_run):
    explain = server_run["explain"]
    assert "shap" in server_run["after_explain"]
    total = explain["base_value"] + sum(c["contribution"] for c in explain["contributions"])
    assert abs(total - explain["probability"]) < 1e-6 and 0 < explain["probability"] < 1
    assert len(explain["contributions"]) == 13


def test_requirements_serve_covers_everything_the_server_imports(server_run):
    """The run above had only requirements-serve.txt's closure importable (as in the image) and still
    started, predicted and explained; the analysis libraries were among those it could not import."""
    assert {"fairlearn", "matplotlib", "locust", "pytest"} <= not_shipped()
    assert server_run["predict"] == 200 and server_run["explain"]["contributions"]
    # only what site's .pth hooks load before the block (the test venv's coverage and setuptools)
    assert not_shipped() & set(server_run["after_explain"]) <= {"coverage", "_distutils_hack"}


def test_requirements_txt_includes_the_serving_set_once():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-r requirements-serve.txt" in lines
    serve, rest = pins("requirements-serve.txt"), pins("requirements.txt")
    assert not serve.keys() & rest.keys(), "pinned in both files"
    for req in [*serve.values(), *rest.values()]:
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", req
    # the analyses' and load test's libraries are not shipped, not even as a dependency
    assert {"fairlearn", "matplotlib", "locust"}.isdisjoint(closure(serve))
    assert {"fairlearn", "matplotlib"} <= rest.keys()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_package_metadata_reads_the_serving_set_without_pip_options():
    from setuptools.config.pyprojecttoml import read_configuration

    deps = read_configuration(ROOT / "pyproject.toml", expand=True)["project"]["dependencies"]
    assert sorted(deps) == sorted(str(r) for r in pins("requirements-serve.txt").values())


# ------------------------------------------------------------------------- the ONNX cache


def test_cache_is_used_only_for_its_own_model(cached_model, loaded):
    sha = loaded.card["artifact"]["sha256"]
    graph, record = cache_paths(cached_model)
    assert graph.name == "model.onnx" and record.name == "model.onnx.json"
    blob = read_cache(cached_model, sha)
    assert blob == graph.read_bytes() and json.loads(record.read_text())["onnx_sha256"] == sha256_bytes(blob)
    assert read_cache(cached_model, "0" * 64) is None  # another model mounted at the same path


def test_cache_with_a_changed_graph_or_no_record_is_ignored(cached_model, loaded, tmp_path):
    sha = loaded.card["artifact"]["sha256"]
    graph, record = cache_paths(tmp_path / "model.joblib")
    blob = bytearray(cache_paths(cached_model)[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    graph.write_bytes(bytes(blob))
    assert read_cache(tmp_path / "model.joblib", sha) is None  # no record
    shutil.copy(cache_paths(cached_model)[1], record)
    assert read_cache(tmp_path / "model.joblib", sha) is None  # hash mismatch
    record.write_text("{not json")
    assert read_cache(tmp_path / "model.joblib", sha) is None


def test_server_start_uses_the_cache_and_still_checks_parity(cached_model, model_path):
    with TestClient(app := make_app(cached_model, background_load=False)) as c:
        state = app.state.serving
        assert state.timings["onnx_cached"] is True and state.predictor.engine == "onnxruntime"
        assert state.parity.ok and state.parity.rows > 300 and not state.parity.fallback
        assert c.post("/predict", json=EXAMPLE).status_code == 200
        assert state.explainer is None  # no /explain yet
    with TestClient(app := make_app(model_path, background_load=False)):
        assert app.state.serving.timings["onnx_cached"] is False  # no cache beside it: converted at start
        assert set(app.state.serving.timings) >= {"verify_and_load", "fast_path", "parity"}


def test_a_forged_cache_of_another_model_fails_parity_and_is_not_served(model_path, dataset, loaded, tmp_path):
    """Even with hashes that match (a forged record), the graph serves only if it agrees with the Pipeline."""
    path = tmp_path / "model.joblib"
    shutil.copy(model_path, path)
    shutil.copy(card_path_for(model_path), card_path_for(path))
    other = to_onnx(train(dataset, seed=7, params={"n_estimators": 5, "max_depth": 2}, cv=False).pipeline)
    graph, record = cache_paths(path)
    graph.write_bytes(other)
    record.write_text(
        json.dumps({"model_sha256": loaded.card["artifact"]["sha256"], "onnx_sha256": sha256_bytes(other)})
    )
    with TestClient(app := make_app(path, background_load=False)) as c:
        state = app.state.serving
        assert state.timings["onnx_cached"] is True
        assert state.parity.fallback and state.predictor.engine == "sklearn"
        assert c.post("/predict", json=EXAMPLE).status_code == 200
