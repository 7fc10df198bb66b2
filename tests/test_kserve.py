"""deploy/kserve/inferenceservice.yaml, offline (issue 24): a KServe v1beta1 InferenceService whose every
field is one KServe's schema has, whose pod part is a valid Kubernetes PodSpec, serving the same image
as a custom predictor that speaks V2 and is probed on the V2 health routes.

KServe's CRD (about 1 MB) is not vendored: the fields below are those of the v1beta1 types as KServe's
own SDK generates them from its OpenAPI definitions (kserve 0.21.0 on PyPI, Apache-2.0:
kserve/models/v1beta1_inference_service.py, _inference_service_spec.py, _predictor_spec.py and
_component_extension_spec.py, their attribute_map and openapi_types). A PredictorSpec inlines a
Kubernetes PodSpec and KServe's ComponentExtensionSpec, plus one optional field per model runtime: the
PodSpec part is validated by kubernetes-validate (strict), the rest against the lists here."""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml

from tests.k8s_tools import DEPLOY, KUBERNETES_VERSION, api_container, base_docs, env_of

ISVC = DEPLOY / "kserve" / "inferenceservice.yaml"
INFERENCE_SERVICE_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
SPEC_FIELDS = {"predictor", "transformer", "explainer", "canary", "tracing"}
# ComponentExtensionSpec, with the SDK's types (int, str, dict(str, str) or a KServe object).
EXTENSION_FIELDS = {
    "minReplicas": int,
    "maxReplicas": int,
    "scaleTarget": int,
    "scaleMetric": str,
    "scaleMetricType": str,
    "containerConcurrency": int,
    "timeout": int,
    "canaryTrafficPercent": int,
    "labels": dict,
    "annotations": dict,
    "logger": dict,
    "batcher": dict,
    "autoScaling": dict,
    "deploymentStrategy": dict,
}
SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}  # the SDK's doc of scaleMetric
# PredictorSpec's own fields beside the PodSpec and the extension: the model runtimes and storage.
PREDICTOR_FIELDS = {
    "model", "sklearn", "xgboost", "lightgbm", "onnx", "pmml", "paddle", "pytorch", "tensorflow", "triton",
    "huggingface", "workerSpec", "storageUris", "storageContainerName",
}  # fmt: skip
# The PodSpec fields PredictorSpec inlines (the SDK's list, all of which Kubernetes 1.30 has but the
# newest: hostnameOverride and schedulingGroup, which the manifest does not use).
POD_FIELDS = {
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector", "os",
    "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims",
    "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "schedulingGroup",
    "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
}  # fmt: skip


def isvc() -> dict:
    return yaml.safe_load(ISVC.read_text())


def check_shape(doc: dict) -> None:
    """Raise AssertionError or kubernetes_validate.ValidationError for a field KServe does not have."""
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(doc) <= INFERENCE_SERVICE_FIELDS, set(doc) - INFERENCE_SERVICE_FIELDS
    assert set(doc["spec"]) <= SPEC_FIELDS, set(doc["spec"]) - SPEC_FIELDS
    predictor = doc["spec"]["predictor"]
    unknown = set(predictor) - set(EXTENSION_FIELDS) - PREDICTOR_FIELDS - POD_FIELDS
    assert not unknown, f"not fields of a v1beta1 PredictorSpec: {sorted(unknown)}"
    for name, kind in EXTENSION_FIELDS.items():
        if name in predictor:
            assert isinstance(predictor[name], kind) and not isinstance(predictor[name], bool), name
    assert predictor.get("scaleMetric", "cpu") in SCALE_METRICS
    assert 0 <= predictor.get("canaryTrafficPercent", 0) <= 100
    assert predictor.get("minReplicas", 1) <= predictor.get("maxReplicas", predictor.get("minReplicas", 1))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": doc["metadata"]["name"],
            **{k: doc["metadata"][k] for k in ("labels",) if k in doc["metadata"]},
        },
        "spec": {k: v for k, v in predictor.items() if k in POD_FIELDS},
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_the_inferenceservice_has_only_kserve_v1beta1_fields_and_a_valid_pod():
    check_shape(isvc())


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"]["predictor"].update(canaryTrafficPercnt=10),  # misspelt extension field
        lambda d: d["spec"]["predictor"].update(protocolVersion="v2"),  # a ModelSpec field, not a custom one
        lambda d: d["spec"]["predictor"]["containers"][0].update(readinessProbe={"httpGet": {"path": "/", "prot": 1}}),
        lambda d: d["spec"]["predictor"].update(minReplicas="2"),
        lambda d: d["spec"].update(predictors={}),
    ],
)
def test_the_shape_check_rejects_what_kserve_would(edit):
    broken = isvc()
    edit(broken)
    with pytest.raises((AssertionError, kubernetes_validate.ValidationError)):
        check_shape(broken)


def test_a_custom_predictor_speaking_v2_with_the_image_and_settings_of_k8s():
    predictor = isvc()["spec"]["predictor"]
    (c,) = predictor["containers"]
    assert c["name"] == "kserve-container"  # the container KServe treats as the predictor
    env = env_of(c)
    assert env["PROTOCOL"]["value"] == "v2"  # KServe reads a custom predictor's protocol here
    assert list(env)[0] == "PROTOCOL"
    base = api_container(base_docs())
    assert c["image"] == base["image"]
    (port,) = c["ports"]  # Knative mode allows one port: the API's
    assert port["containerPort"] == int(env["PORT"]["value"]) == 8000
    base_env = env_of(base)
    for name in ("API_AUTH", "API_TOKENS_FILE", "MODEL_PATH", "METRICS_PORT", "WEB_CONCURRENCY", "HOME"):
        assert env[name] == base_env[name], name
    assert c["resources"] == base["resources"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    annotations = predictor["annotations"]
    assert annotations["prometheus.io/port"] == env["METRICS_PORT"]["value"]
    # the predictor image, no explainer component: KServe routes only V1's :explain verb to one, which
    # this server does not serve (docs/deploy.md, "KServe")
    assert "explainer" not in isvc()["spec"] and "/explain" in ISVC.read_text()


def test_the_probes_are_on_the_v2_health_routes_which_need_no_token():
    import heart_fastapi
    from heart.serving.auth import PUBLIC

    (c,) = isvc()["spec"]["predictor"]["containers"]
    routes = {route.path for route in heart_fastapi.app.routes}
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in routes and get["path"] in PUBLIC and get["port"] == 8000, probe


def test_the_commented_canary_is_valid_once_uncommented():
    """The canary example is a comment today; uncommented, it is a v1beta1 field with a valid value."""
    text = ISVC.read_text()
    (line,) = [m for m in re.finditer(r"^(\s*)# (canaryTrafficPercent: \d+)$", text, re.M)]
    uncommented = text[: line.start()] + line.group(1) + line.group(2) + text[line.end() :]
    doc = yaml.safe_load(uncommented)
    assert doc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    check_shape(doc)
    assert "serving.kserve.io/deploymentMode" in isvc()["metadata"]["annotations"]
    assert "Knative" in text[: line.start()]  # the comment says which mode canaries need


def test_the_mounted_tokens_secret_is_the_one_k8s_uses():
    predictor = copy.deepcopy(isvc()["spec"]["predictor"])
    (secret,) = [v["secret"] for v in predictor["volumes"] if "secret" in v]
    base_pod = [d for d in base_docs() if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"]
    (base_secret,) = [v["secret"] for v in base_pod["volumes"] if v.get("name") == "tokens"]
    assert secret["secretName"] == base_secret["secretName"] and secret["items"] == base_secret["items"]
