"""The container and Kubernetes files, offline: schema-valid manifests that agree with each other,
with the Dockerfile and with the app they deploy (issue 6). Building and running the image is
deploy/container_check.sh's job (`make container-check`, run by .ci/run)."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
# The oldest Kubernetes the manifests promise to work on (every field they use exists there).
KUBERNETES_VERSION = "1.30.0"
NAME = "heart-disease-api"


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{path.name}:{doc['kind']}"] = doc
    return docs


def by_kind(kind: str) -> dict:
    found = [d for d in manifests().values() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in k8s/, found {len(found)}"
    return found[0]


def container() -> dict:
    (c,) = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def instructions(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def runtime_stage() -> list[tuple[str, str]]:
    """Instructions of the last stage: the image that runs."""
    steps = dockerfile()
    last_from = max(i for i, (instr, _) in enumerate(steps) if instr == "FROM")
    return steps[last_from:]


@pytest.fixture(scope="module")
def app_routes():
    import heart_fastapi
    return {route.path for route in heart_fastapi.app.routes}


@pytest.fixture(scope="module")
def app_port():
    import os

    import heart_fastapi
    saved = os.environ.pop("PORT", None)
    try:
        return heart_fastapi.parse_args([]).port
    finally:
        if saved is not None:
            os.environ["PORT"] = saved


# ------------------------------------------------------------------------------ schema validity

def test_the_expected_manifests_are_there():
    kinds = sorted(d["kind"] for d in manifests().values())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize("key", sorted(manifests()))
def test_manifest_is_valid_for_the_pinned_kubernetes(key):
    # strict: unknown or misspelt fields fail too (a typo'd probe would otherwise be silently dropped)
    kubernetes_validate.validate(manifests()[key], KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest():
    """The check above can fail: a containerPort as text is not a valid Deployment."""
    broken = json.loads(json.dumps(by_kind("Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_object_carries_the_recommended_labels():
    for key, doc in manifests().items():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == NAME, key
        assert labels["app.kubernetes.io/part-of"] == "heart-disease-mlops", key


# ------------------------------------------------------------------------------ consistency

def test_selectors_match_the_pod_labels():
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    deployment_selector = by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    assert deployment_selector.items() <= pod_labels.items()
    assert by_kind("Service")["spec"]["selector"].items() <= pod_labels.items()
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_ports_agree_service_container_app_and_dockerfile(app_port):
    (port,) = container()["ports"]
    (service_port,) = by_kind("Service")["spec"]["ports"]
    target = service_port["targetPort"]
    target = port["containerPort"] if target == port.get("name") else target
    exposed = {int(p.split("/")[0]) for args in instructions("EXPOSE") for p in args.split()}
    env = {e["name"]: e.get("value") for e in container().get("env", [])}
    assert service_port["port"] == 80
    assert target == port["containerPort"] == app_port == 8000
    assert exposed == {app_port}
    assert int(env.get("PORT", app_port)) == app_port


def test_every_probe_path_is_a_route_of_the_app(app_routes):
    c = container()
    probes = {name: c[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/ready_check"
    assert probes["livenessProbe"]["path"] == "/live_check"
    for name, get in probes.items():
        assert get["path"] in app_routes, f"{name} probes {get['path']}, not a route of heart_fastapi.app"
        assert get["port"] in (c["ports"][0]["containerPort"], c["ports"][0]["name"]), name


def test_the_hpa_scales_the_deployment_between_one_and_three_pods():
    hpa, deployment = by_kind("HorizontalPodAutoscaler"), by_kind("Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    # a replica count in the Deployment would fight the HPA on every `kubectl apply`
    assert "replicas" not in deployment["spec"]


def test_resources_are_requested_and_limited():
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys(), kind


def test_the_pod_is_locked_down_and_writes_only_to_an_emptydir():
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    sc = container()["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in container()["volumeMounts"] if m["name"] in emptydirs}
    assert "/tmp" in mounts
    env = {e["name"]: e.get("value") for e in container()["env"]}
    for var in ("HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):  # caches libraries write at import
        assert any(env[var].startswith(m) for m in mounts), var
    # the pod's uid is the image's USER, so runAsNonRoot holds for the image as built
    user = instructions("USER")[-1]
    assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0]


def test_rolling_updates_and_shutdown_drop_no_request():
    deployment = by_kind("Deployment")
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_opentelemetry_is_configured_by_the_standard_variables():
    env = {e["name"] for e in container()["env"]}
    assert {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"} <= env


def test_the_image_is_a_documented_placeholder():
    image = container()["image"]
    assert image.split(":")[0] == "heart-disease-mlops"
    assert "kubectl set image" in (K8S / "deployment.yaml").read_text()


# ------------------------------------------------------------------------------ Dockerfile

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


def test_dockerignore_sends_only_what_the_image_needs():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"requirements.txt", "train.py", "heart_fastapi.py", "heart", "data/data.csv"}
    for path in included:
        assert (ROOT / path).exists(), path
