"""k8s/, offline: schema-valid manifests that agree with each other, with the Dockerfile and with the
app they deploy (issues 6, 14 and 24). The overlays built on k8s/ are tests/test_overlays.py's, the
Dockerfile itself tests/test_dockerfile.py's; building and running the image is
deploy/container_check.sh's job (`make container-check`, run by .ci/run)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml

from heart import __version__
from tests.dockerfile_tools import instructions

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
# The oldest Kubernetes the manifests promise to work on (every field they use exists there).
KUBERNETES_VERSION = "1.30.0"
NAME = "heart-disease-api"
EXPLAINER = "heart-disease-explainer"


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{path.name}:{doc['kind']}"] = doc
    return docs


def by_kind(kind: str, name: str = NAME) -> dict:
    found = [d for d in manifests().values() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in k8s/, found {len(found)}"
    return found[0]


def container(name: str = NAME) -> dict:
    (c,) = by_kind("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return c


def container_ports(name: str = NAME) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(name)["ports"]}


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory/storage quantity (Ki, Mi, Gi or plain bytes) in MiB."""
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()
    return int(number) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / 2**20}[unit]


@pytest.fixture(scope="module")
def app_routes():
    import heart_fastapi

    return {route.path for route in heart_fastapi.app.routes}


@pytest.fixture(scope="module")
def app_port():
    import os

    from heart.serving import run

    saved = os.environ.pop("PORT", None)
    try:
        return run.parse_args([]).port
    finally:
        if saved is not None:
            os.environ["PORT"] = saved


# ------------------------------------------------------------------------------ schema validity


def test_the_expected_manifests_are_there():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in manifests().values())
    assert kinds == [
        ("Deployment", NAME),
        ("Deployment", EXPLAINER),
        ("HorizontalPodAutoscaler", NAME),
        ("Ingress", NAME),
        ("NetworkPolicy", NAME),
        ("NetworkPolicy", EXPLAINER),
        ("PodDisruptionBudget", NAME),
        ("Service", NAME),
        ("Service", EXPLAINER),
    ]


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
        assert labels["app.kubernetes.io/name"] in (NAME, EXPLAINER), key
        assert labels["app.kubernetes.io/part-of"] == "heart-disease-mlops", key


# ------------------------------------------------------------------------------ consistency


def test_selectors_match_the_pod_labels():
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    deployment_selector = by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    assert deployment_selector.items() <= pod_labels.items()
    assert by_kind("Service")["spec"]["selector"].items() <= pod_labels.items()
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_ports_agree_service_container_app_and_dockerfile(app_port):
    port = container()["ports"][0]
    (service_port,) = by_kind("Service")["spec"]["ports"]
    target = service_port["targetPort"]
    target = port["containerPort"] if target == port.get("name") else target
    exposed = {int(p.split("/")[0]) for args in instructions("EXPOSE") for p in args.split()}
    env = {e["name"]: e.get("value") for e in container().get("env", [])}
    assert service_port["port"] == 80
    assert target == port["containerPort"] == app_port == 8000
    assert app_port in exposed
    assert int(env.get("PORT", app_port)) == app_port


def test_metrics_port_is_scraped_in_cluster_but_not_on_the_public_service():
    """Issue 12, "Access": METRICS_PORT 9464, port name `metrics`; the Service carries only `http`."""
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert container_ports() == {"http": 8000, "metrics": 9464}
    assert int(env["METRICS_PORT"]) == container_ports()["metrics"]
    service_ports = by_kind("Service")["spec"]["ports"]
    assert [p["targetPort"] for p in service_ports] == ["http"]
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container_ports()["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", (NAME, EXPLAINER))
def test_network_policy_admits_the_api_port_and_prometheus_on_the_metrics_port_only(name):
    policy = by_kind("NetworkPolicy", name)["spec"]
    pod_labels = by_kind("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    admitted = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            admitted[port["port"]] = rule.get("from")
    assert set(admitted) == {"http", "metrics"} <= set(container_ports(name))
    assert admitted["http"] is None  # the API: any source (the Service's and the Ingress's traffic)
    (peer,) = admitted["metrics"]  # the metrics: Prometheus's pods in its namespace, nobody else
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_every_probe_path_is_a_route_of_the_app(app_routes):
    c = container()
    probes = {name: c[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/ready_check"
    assert probes["livenessProbe"]["path"] == "/live_check"
    for name, get in probes.items():
        assert get["path"] in app_routes, f"{name} probes {get['path']}, not a route of heart_fastapi.app"
        assert get["port"] in (c["ports"][0]["containerPort"], c["ports"][0]["name"]), name


def test_the_hpa_scales_the_deployment_between_two_and_three_pods():
    hpa, deployment = by_kind("HorizontalPodAutoscaler"), by_kind("Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    # two at the least, so the PodDisruptionBudget (one pod at a time) leaves one serving in a drain
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
    assert by_kind("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    # a replica count in the Deployment would fight the HPA on every `kubectl apply`
    assert "replicas" not in deployment["spec"]


def test_resources_are_requested_and_limited():
    for name in (NAME, EXPLAINER):
        resources = container(name)["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory", "ephemeral-storage"} <= resources[kind].keys(), (name, kind)


# ------------------------------------------------------------------------------ the explainer


def test_the_ingress_routes_explain_to_the_explainer_and_the_rest_to_the_predictor():
    (rule,) = by_kind("Ingress")["spec"]["rules"]
    routes = {(p["path"], p["pathType"]): p["backend"]["service"] for p in rule["http"]["paths"]}
    assert routes == {
        ("/explain", "Exact"): {"name": EXPLAINER, "port": {"name": "http"}},
        ("/", "Prefix"): {"name": NAME, "port": {"name": "http"}},
    }
    for name in (NAME, EXPLAINER):
        assert [p["name"] for p in by_kind("Service", name)["spec"]["ports"]] == ["http"]


def test_the_explainer_runs_the_explainer_image_of_the_same_model_locked_down_like_the_predictor():
    deployment, explainer, api = by_kind("Deployment", EXPLAINER), container(EXPLAINER), container()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service", EXPLAINER)["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    name, _, tag = api["image"].partition(":")
    assert explainer["image"] == f"{name}-explainer:{tag}"
    built = subprocess.run(
        [
            "bash",
            "-c",
            'source <(sed -n "/^VERSION=/,/^EXPLAINER_IMAGE=/p" deploy/container_check.sh); echo $EXPLAINER_IMAGE',
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert built.stdout.strip() == explainer["image"], built.stderr
    env = {e["name"]: e for e in explainer["env"]}
    api_env = {e["name"]: e for e in api["env"]}
    assert env["MODEL_PATH"] == api_env["MODEL_PATH"]
    # The same pin: neither sets MODEL_SHA256, so both verify the image's baked one. Set but blank
    # would exit 2 (issue 19): the variable stays a comment in both files until there is a digest.
    assert "MODEL_SHA256" not in env and "MODEL_SHA256" not in api_env
    for path in (K8S / "deployment.yaml", K8S / "explainer.yaml"):
        assert re.search(r"^\s*# - name: MODEL_SHA256$", path.read_text(), re.M), path.name
    # The same tokens, required, from the same Secret mounted the same way (never an env variable)
    for var in ("API_AUTH", "API_TOKENS_FILE"):
        assert env[var] == api_env[var], var
    assert env["API_AUTH"]["value"] == "tokens" and "API_TOKENS" not in env
    pod, api_pod = deployment["spec"]["template"]["spec"], by_kind("Deployment")["spec"]["template"]["spec"]
    secrets = [v for v in pod["volumes"] if "secret" in v]  # the tokens, and the optional database URL
    assert sorted(v["secret"]["secretName"] for v in secrets) == [
        "heart-disease-api-database",
        "heart-disease-api-tokens",
    ]
    mounts, api_mounts = ({m["name"]: m for m in c["volumeMounts"]} for c in (explainer, api))
    for secret in secrets:
        assert secret in api_pod["volumes"] and mounts[secret["name"]] == api_mounts[secret["name"]]
    for var in ("DATABASE_URL_FILE", "INFERENCE_DB"):  # /explain's predictions go to the same table
        assert env[var] == api_env[var], var
    # Locked down alike: the container's and the pod's security context, no service-account token
    assert explainer["securityContext"] == api["securityContext"]
    assert pod["securityContext"] == api_pod["securityContext"] and pod["automountServiceAccountToken"] is False
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert explainer[probe]["httpGet"] == api[probe]["httpGet"], probe
    assert explainer["lifecycle"] == api["lifecycle"]
    assert pod["terminationGracePeriodSeconds"] == api_pod["terminationGracePeriodSeconds"]
    for var in ("GRACEFUL_TIMEOUT", "REQUEST_TIMEOUT_SECONDS", "METRICS_PORT", "WEB_CONCURRENCY"):
        assert env[var] == api_env[var], var
    # its /tmp emptyDir and the kubelet's container log fit in the ephemeral-storage it asks for
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    request, limit = (mebibytes(explainer["resources"][k]["ephemeral-storage"]) for k in ("requests", "limits"))
    assert mebibytes(tmp["emptyDir"]["sizeLimit"]) + CONTAINER_LOG_MIB <= request <= limit
    assert deployment["spec"]["replicas"] == 1  # no HPA: the predictor's autoscaling never pulls this image
    assert by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == NAME
    # no PodDisruptionBudget for one replica (docs/deploy.md, "The explainer")
    assert [d["metadata"]["name"] for d in manifests().values() if d["kind"] == "PodDisruptionBudget"] == [NAME]


# The prediction-log sizing of docs/deploy.md, "Prediction log storage".
PLANNED_BYTES_PER_RECORD = 512  # 419 B measured with the inputs (below), + headroom for new fields
ROTATE_AT_MIB = 64  # the log is rotated by size ...
LOG_FILES_ON_POD = 2  # ... and one rotated file waits to be shipped
CACHES_MIB = 16  # HOME, matplotlib, onnxruntime, numba: 160 KiB measured
CONTAINER_LOG_MIB = 50  # the kubelet's default stdout rotation: 10 MiB x 5 files
TABLE_MIB = 32  # the SQLite inference table without a database Secret: INFERENCE_RETENTION_ROWS rows ...
PLANNED_BYTES_PER_ROW = 256  # ... at 215 B measured (python -m bench.table_size), + its WAL


def test_ephemeral_storage_fits_the_prediction_log():
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container()["env"]}
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == "tmp"]
    assert env["PREDICTION_LOG"].startswith(mount["mountPath"] + "/")  # the log is in the emptyDir
    size_limit = mebibytes(tmp["emptyDir"]["sizeLimit"])
    request = mebibytes(container()["resources"]["requests"]["ephemeral-storage"])
    limit = mebibytes(container()["resources"]["limits"]["ephemeral-storage"])
    log_mib = LOG_FILES_ON_POD * ROTATE_AT_MIB
    assert log_mib * 2**20 // PLANNED_BYTES_PER_RECORD == 262_144  # records kept on the pod
    assert env["INFERENCE_DB"].startswith(mount["mountPath"] + "/")  # the table too, when it is SQLite
    assert int(env["INFERENCE_RETENTION_ROWS"]) * PLANNED_BYTES_PER_ROW <= 0.8 * TABLE_MIB * 2**20  # 20% for the WAL
    # big enough for the log, the table and the caches, not a blank cheque (within 25%)
    planned = log_mib + TABLE_MIB + CACHES_MIB
    assert planned <= size_limit <= 1.25 * planned
    assert size_limit + CONTAINER_LOG_MIB <= request <= limit <= 1.5 * request


def test_bytes_per_record_fit_the_planned_size(model_path, dataset, tmp_path):
    """The figure the sizing rests on, measured: training-like patients through a real server."""
    from heart.clients.harness import ApiServer
    from heart.samples import sample, to_records

    log = tmp_path / "predictions.jsonl"
    patients = to_records(sample(200, seed=1, mode="marginal", reference=dataset.X))
    with (
        ApiServer(
            model_path,
            log=tmp_path / "server.log",
            ready_timeout=90,
            log_level="warning",
            extra_env={
                "PREDICTION_LOG": str(log),
                "LOG_INPUTS": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": None,
                "OTEL_TRACES_EXPORTER": None,
            },
        ) as api,
        requests.Session() as session,
    ):
        for patient in patients:
            assert session.post(api.url + "/predict", json=patient, timeout=10).status_code == 200
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(patients)
    per_record = log.stat().st_size / len(lines)
    print(
        f"prediction log: {per_record:.1f} bytes per record over {len(lines)} records "
        f"({min(map(len, lines))} to {max(map(len, lines))} B)"
    )
    # below: a record with inputs holds 13 features, a trace id and a timestamp (> 250 B)
    assert 250 < per_record <= max(map(len, lines)) <= PLANNED_BYTES_PER_RECORD


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


def test_the_drain_fits_in_the_grace_period_after_the_prestop_sleep():
    """Issue 12 #15: preStop sleep + GRACEFUL_TIMEOUT + the shutdown's trace flush must end before
    the kubelet's SIGKILL at terminationGracePeriodSeconds, for the manifest's value and the default."""
    from heart.serving.app import TRACE_FLUSH_SECONDS
    from heart.serving.settings import Settings

    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    env = {e["name"]: e.get("value") for e in container()["env"]}
    default = Settings.model_fields["graceful_timeout"].default
    for drain in (float(env["GRACEFUL_TIMEOUT"]), default):
        assert drain > 0
        assert pre_stop + drain + TRACE_FLUSH_SECONDS <= grace, (
            f"preStop {pre_stop:g} s + drain {drain:g} s + flush {TRACE_FLUSH_SECONDS:g} s > grace {grace} s"
        )
    assert float(env["REQUEST_TIMEOUT_SECONDS"]) <= float(env["GRACEFUL_TIMEOUT"]), (
        "a request still arriving at SIGTERM must be able to finish within the drain"
    )


def test_bearer_tokens_are_required_and_probes_need_none():
    """Issue 24: the prediction routes need a token (API_AUTH=tokens, from the mounted Secret: see
    tests/test_overlays.py); the probes are on the public list (issue 19), so a pod gets ready without one."""
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert env["API_AUTH"] == "tokens" and env["API_TOKENS_FILE"]
    from heart.serving.auth import PUBLIC

    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container()[probe]["httpGet"]
        assert get["path"] in PUBLIC and "httpHeaders" not in get


def test_opentelemetry_is_configured_by_the_standard_variables_and_exports_nothing_by_default():
    """No collector endpoint in k8s/: nothing is exported until one is set (the prod overlay does)."""
    env = {e["name"] for e in container()["env"]}
    assert {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} <= env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


def test_the_image_is_the_version_tag_the_container_check_builds():
    image = container()["image"]
    name, _, tag = image.partition(":")
    assert name == "heart-disease-mlops" and tag == __version__  # never :latest, never untagged
    assert "kubectl set image" in (K8S / "deployment.yaml").read_text()
    built = subprocess.run(
        ["bash", str(ROOT / "deploy" / "container_check.sh"), "--print-image"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert built.returncode == 0 and built.stdout.strip() == image, built.stderr
    for deployment in (by_kind("Deployment"), by_kind("Deployment", EXPLAINER)):
        for labels in (deployment["metadata"]["labels"], deployment["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.kubernetes.io/version"] == __version__
