"""Helpers of the Kubernetes tests (test_overlays, test_kserve): kubectl's kustomize, checkov from its
tool venv, and a copy of the tree where the prod overlay is pinned the way the release pins it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

K8S = ROOT / "k8s"
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "dev-postgres", "prod")
# The oldest Kubernetes the manifests promise to work on (every field they use exists there).
KUBERNETES_VERSION = "1.30.0"
API = "heart-disease-api"  # the predictor's Deployment (and its Service, HPA, PDB, Ingress)
EXPLAINER = "heart-disease-explainer"
# Test inputs for deploy/pin-image.sh: the sha256 of a string each, well formed and pinned nowhere.
TEST_DIGEST = "sha256:" + hashlib.sha256(b"tests/k8s_tools.py: a digest for rendering prod").hexdigest()
TEST_IMAGE = f"ghcr.io/example/heart-disease-mlops@{TEST_DIGEST}"
TEST_EXPLAINER_DIGEST = "sha256:" + hashlib.sha256(b"tests/k8s_tools.py: the explainer's digest").hexdigest()
TEST_EXPLAINER_IMAGE = f"ghcr.io/example/heart-disease-mlops-explainer@{TEST_EXPLAINER_DIGEST}"


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl not found: run `make install-tools` (its `kustomize` renders the overlays)")
    return path


def checkov() -> str:
    """checkov from the tool venv `make install-tools` creates (.venv-tools), or CHECKOV, or PATH."""
    for candidate in (os.environ.get("CHECKOV"), ROOT / ".venv-tools" / "bin" / "checkov", shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail("checkov not found: run `make install-tools` (it installs requirements-tools.txt into .venv-tools)")


def run(*argv, cwd=ROOT, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def copy_tree(dest: Path) -> Path:
    """k8s/ and deploy/ (without the container check's cache) copied to dest: overlays render there."""
    shutil.copytree(K8S, dest / "k8s")
    shutil.copytree(DEPLOY, dest / "deploy", ignore=shutil.ignore_patterns("release-image"))
    return dest


def pin(tree: Path, image: str = TEST_IMAGE, explainer: str = TEST_EXPLAINER_IMAGE) -> subprocess.CompletedProcess:
    return run("bash", tree / "deploy" / "pin-image.sh", image, explainer, cwd=tree)


def kustomize(directory: Path) -> subprocess.CompletedProcess:
    return run(kubectl(), "kustomize", directory)


def render(tree: Path, overlay: str) -> list[dict]:
    result = kustomize(tree / "deploy" / "overlays" / overlay)
    assert result.returncode == 0, result.stderr
    return docs_of(result.stdout)


def base_docs() -> list[dict]:
    """What `kubectl apply -f k8s/` applies: every document of k8s/*.yaml, in file order."""
    return [d for path in sorted(K8S.glob("*.yaml")) for d in docs_of(path.read_text())]


def checkov_scan(target: Path) -> dict:
    """checkov's kubernetes checks on a file or directory, offline: the JSON results and summary."""
    flag = "-d" if target.is_dir() else "-f"
    result = run(checkov(), flag, target, "--framework", "kubernetes", "--skip-download", "-o", "json")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["check_type"] == "kubernetes", report
    return report


def by_key(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def deployments(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == "Deployment"]


def deployment(docs: list[dict], name: str = API) -> dict:
    (found,) = [d for d in deployments(docs) if d["metadata"]["name"] == name]
    return found


def api_container(docs: list[dict], name: str = API) -> dict:
    """The one container of the Deployment `name`: the predictor's unless told."""
    (c,) = deployment(docs, name)["spec"]["template"]["spec"]["containers"]
    return c


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}
