"""The GitHub workflows, offline: actionlint finds nothing in them, CI runs what .ci/run runs, and
the release workflow's version step tags the image with heart/__init__.py's version (issue 14, part 4)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from heart import __version__

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> str:
    """The binary requirements-dev.txt installs into the venv (or one on PATH)."""
    found = Path(sys.executable).parent / "actionlint"
    path = str(found) if found.exists() else shutil.which("actionlint")
    if path is None:
        pytest.fail(
            "actionlint not found: install the test tools with `make install` (pip install -r requirements-dev.txt)"
        )
    return path


def lint(*files: Path) -> subprocess.CompletedProcess:
    # shellcheck, where installed, checks the run: scripts too (actionlint calls it itself)
    return subprocess.run(
        [actionlint(), "-no-color", "-oneline", *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1): load it as written
    return yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.BaseLoader)


def steps(doc: dict) -> list[dict]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_actionlint_finds_nothing_in_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    result = lint(*files)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The check above can fail: an unknown event, a bad expression and an unknown input are found."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: pushh\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope( }}\n"
        "      - uses: actions/checkout@v5\n        with:\n          no-such-input: 1\n"
    )
    result = lint(broken)
    assert result.returncode == 1
    found = {
        (int(m.group(1)), m.group(2)) for m in re.finditer(r"broken\.yml:(\d+):\d+: .*\[(\w+)\]$", result.stdout, re.M)
    }
    assert found == {(1, "events"), (6, "expression"), (9, "action")}, result.stdout
    assert '"pushh"' in result.stdout and '"no-such-input"' in result.stdout


def test_ci_runs_what_ci_run_runs():
    ci_run = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci_run.splitlines() if line.strip().startswith("make ")]
    assert commands == ["make lint", "make test", "make smoke", "make container-check"]
    doc = workflow("ci.yml")
    runs = [step.get("run", "") for step in steps(doc)]
    assert any(r.strip() == "make test" for r in runs) and any(r.strip() == "make smoke" for r in runs)
    assert any(r.strip().endswith("make container-check") for r in runs)
    # the manifests and alert rules, validated as a job of their own (fast feedback)
    assert any("tests/test_deploy.py" in r and "tests/test_monitoring.py" in r for r in runs)
    assert any("actionlint" in r for r in runs) and any(
        "ruff check ." in r and "ruff format --check ." in r for r in runs
    )
    assert set(doc["on"]) >= {"push", "pull_request"}
    assert doc["permissions"] == {"contents": "read"}


def test_ci_installs_the_actionlint_that_the_tests_pin():
    pinned = [
        line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if line.startswith("actionlint")
    ]
    assert len(pinned) == 1 and re.fullmatch(r"actionlint[\w-]*==[\d.]+", pinned[0])
    runs = " ".join(step.get("run", "") for step in steps(workflow("ci.yml")))
    assert "grep -E '^actionlint' requirements-dev.txt" in runs


def release_step(step_id: str) -> dict:
    (step,) = [s for s in steps(workflow("release.yml")) if s.get("id") == step_id]
    return step


def run_version_step(tmp_path, event: str, ref: str, registry: str) -> tuple[int, dict, str]:
    """The release workflow's own version script, run with bash as Actions would run it."""
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        **os.environ,
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF_NAME": ref,
        "GITHUB_OUTPUT": str(output),
        "REGISTRY": registry,
        "IMAGE_NAME": workflow("release.yml")["env"]["IMAGE_NAME"],
        "EXPLAINER_IMAGE_NAME": workflow("release.yml")["env"]["EXPLAINER_IMAGE_NAME"],
    }
    result = subprocess.run(
        ["bash", "-e", "-c", release_step("version")["run"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    values = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result.returncode, values, result.stdout + result.stderr


def test_release_version_step_tags_with_the_package_version(tmp_path):
    rc, values, out = run_version_step(tmp_path, "release", f"v{__version__}", "ghcr.io/acme/")
    assert rc == 0, out
    assert values == {
        "version": __version__,
        "repository": "ghcr.io/acme/heart-disease-mlops",
        "explainer_repository": "ghcr.io/acme/heart-disease-mlops-explainer",  # k8s/explainer.yaml's name
        "registry_host": "ghcr.io",
    }
    assert "${{ vars.REGISTRY }}" in release_step("version")["env"]["REGISTRY"]


def test_release_refuses_a_tag_that_is_not_the_package_version_or_no_registry(tmp_path):
    rc, values, out = run_version_step(tmp_path, "release", "v9.9.9", "ghcr.io/acme")
    assert rc == 1 and "does not match the package version" in out and values == {}
    rc, values, out = run_version_step(tmp_path, "workflow_dispatch", "main", "")
    assert rc == 1 and "repository variable REGISTRY" in out and values == {}


# The two images the release pushes: the step id, the repository output, the Dockerfile target.
PUSHED = {"push": ("repository", None), "push-explainer": ("explainer_repository", "explainer")}


def test_release_pushes_both_images_with_both_version_tags_and_an_sbom():
    pushes = {
        s["id"]: s
        for s in steps(workflow("release.yml"))
        if s.get("uses", "").startswith("docker/build-push-action") and s["with"].get("push") == "true"
    }
    assert set(pushes) == set(PUSHED)
    for step_id, (repository, target) in PUSHED.items():
        push = pushes[step_id]
        assert push["with"].get("target") == target, step_id
        tags = push["with"]["tags"].strip().splitlines()
        assert tags == [
            f"${{{{ steps.version.outputs.{repository} }}}}:${{{{ steps.version.outputs.version }}}}",
            f"${{{{ steps.version.outputs.{repository} }}}}:${{{{ steps.model.outputs.model_version }}}}",
        ]
        assert push["with"]["sbom"] == "true"
    sboms = [s for s in steps(workflow("release.yml")) if s.get("uses", "").startswith("anchore/sbom-action")]
    assert {s["with"]["format"] for s in sboms} == {"spdx-json"}
    assert sorted(s["with"]["image"].split(":")[0] for s in sboms) == sorted(
        f"${{{{ steps.version.outputs.{repository} }}}}" for repository, _ in PUSHED.values()
    )
    # the model version comes from the card inside the image, where train.py wrote it
    assert "/app/model.card.json" in release_step("model")["run"]
    assert "/app/model.sha256" in release_step("model")["run"]  # the explainer explains the model served
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--out /app/model.zip" in dockerfile


# ------------------------------------------------------------------------------ supply chain (issue 24)

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.M)


def test_every_action_is_pinned_by_commit_sha_with_its_release_in_a_comment():
    found = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for ref, rest in USES.findall(path.read_text()):
            found += 1
            action, _, sha = ref.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{path.name}: {ref} is not pinned by a full commit SHA"
            assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", rest), f"{path.name}: {action} needs a `# vX.Y.Z` comment"
    assert found >= 10


def test_one_release_one_sha():
    """An action used at two places runs the same commit at both (Dependabot bumps them together)."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS.glob("*.yml"):
        for ref, rest in USES.findall(path.read_text()):
            action, _, sha = ref.partition("@")
            pins.setdefault(action, set()).add(sha + rest.strip())
    assert all(len(v) == 1 for v in pins.values()), pins


def test_dependabot_watches_pip_actions_and_docker():
    doc = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert doc["version"] == 2
    ecosystems = {u["package-ecosystem"]: u for u in doc["updates"]}
    assert set(ecosystems) == {"pip", "github-actions", "docker"}
    for update in ecosystems.values():
        assert update["directory"] == "/" and update["schedule"]["interval"] in ("daily", "weekly")
    assert list(ROOT.glob("requirements*.txt")) and (ROOT / "Dockerfile").exists()


def test_release_scans_before_pushing_then_signs_the_pushed_digest():
    doc = workflow("release.yml")
    assert doc["permissions"]["id-token"] == "write"  # keyless signing
    order = [s.get("uses", "").split("@")[0] or s.get("name", "") for s in steps(doc)]
    scans = [i for i, name in enumerate(order) if name == "aquasecurity/trivy-action"]
    trivies = [steps(doc)[i] for i in scans]
    for trivy in trivies:
        assert trivy["with"]["exit-code"] == "1" and set(trivy["with"]["severity"].split(",")) == {"HIGH", "CRITICAL"}
    assert sorted(t["with"]["image-ref"] for t in trivies) == [  # the two local builds
        "${{ env.EXPLAINER_IMAGE_NAME }}:${{ steps.version.outputs.version }}",
        "${{ env.IMAGE_NAME }}:${{ steps.version.outputs.version }}",
    ]
    pushes = [i for i, s in enumerate(steps(doc)) if s.get("id") in PUSHED]
    assert len(pushes) == 2 and max(scans) < min(pushes) < max(pushes) < order.index("sigstore/cosign-installer")
    (sign,) = [s for s in steps(doc) if "cosign sign" in s.get("run", "")]
    assert sign["env"]["IMAGE"].endswith("@${{ steps.push.outputs.digest }}") and "cosign verify" in sign["run"]
    assert sign["env"]["EXPLAINER_IMAGE"].endswith("@${{ steps.push-explainer.outputs.digest }}")
    assert '"$IMAGE" "$EXPLAINER_IMAGE"' in sign["run"]  # both signed and verified


def test_release_pins_the_prod_overlay_to_the_pushed_digest(tmp_path):
    """The release's pin step, run with bash as Actions would: it renders the prod manifests."""
    from tests.k8s_tools import TEST_EXPLAINER_IMAGE, TEST_IMAGE, copy_tree, docs_of

    (step,) = [s for s in steps(workflow("release.yml")) if "deploy/pin-image.sh" in s.get("run", "")]
    assert step["env"]["IMAGE"] == "${{ steps.version.outputs.repository }}@${{ steps.push.outputs.digest }}"
    assert step["env"]["EXPLAINER_IMAGE"] == (
        "${{ steps.version.outputs.explainer_repository }}@${{ steps.push-explainer.outputs.digest }}"
    )
    tree = copy_tree(tmp_path)
    summary = tmp_path / "summary.md"
    env = {
        **os.environ,
        "IMAGE": TEST_IMAGE,
        "EXPLAINER_IMAGE": TEST_EXPLAINER_IMAGE,
        "GITHUB_EVENT_NAME": "workflow_dispatch",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=tree, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    docs = docs_of((tree / "heart-disease-api-prod.yaml").read_text())
    images = {
        c["image"] for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {TEST_IMAGE, TEST_EXPLAINER_IMAGE}
    assert TEST_IMAGE in summary.read_text() and TEST_EXPLAINER_IMAGE in summary.read_text()


@pytest.mark.parametrize("uid, prefix", [("0", ""), ("1001", "sudo ")])
def test_make_installs_apt_packages_with_sudo_only_when_not_root(tmp_path, uid, prefix):
    """`make browser` and `make install-tools` on a CI runner (not root) go through sudo; as root, not."""
    (tmp_path / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (tmp_path / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["make", "-n", "-W", "requirements-tools.txt", "browser", "install-tools"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    apt = [line for line in result.stdout.splitlines() if "apt-get" in line]
    assert len(apt) == 4  # chromium, promtool (prometheus), postgresql, kubectl
    for line in apt:
        calls = re.findall(r"(sudo )?env DEBIAN_FRONTEND=noninteractive apt-get", line)
        assert len(calls) == line.count("apt-get") == 2 and all(c == prefix for c in calls), line
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"^\t.*(?<!\))\bapt-get\b", makefile.replace("$(APT_GET)", ""), re.M)
