"""docs/deploy.md, "From zero to a cluster": every command in it is one the suite checks (issue 24).
What it applies is what tests/test_overlays.py renders, validates and scans; the Secret it creates is
rendered with `kubectl create --dry-run=client` and must be the one the Deployment mounts; the image,
namespaces, objects, ports and routes it names exist. A command of another tool (kind, gcloud,
metrics-server's manifest) must be in the short list below, or the test fails."""

from __future__ import annotations

import json
import re
import shlex

import kubernetes_validate
import pytest

from heart import __version__
from tests.k8s_tools import (
    KUBERNETES_VERSION,
    OVERLAYS,
    ROOT,
    base_docs,
    by_key,
    copy_tree,
    kubectl,
    pin,
    render,
    run,
)

DOC = ROOT / "docs" / "deploy.md"
IMAGE = f"heart-disease-mlops:{__version__}"
EXPLAINER_IMAGE = f"heart-disease-mlops-explainer:{__version__}"  # `docker build --target explainer`
# Commands of tools and objects that are not this project's: named, so that nothing slips through.
EXTERNAL = (
    "kind create cluster ",
    "gcloud ",
    "kubectl apply -f https://github.com/kubernetes-sigs/metrics-server/",
    "kubectl -n kube-system patch deployment metrics-server ",
    "kubectl top pods",
    "kubectl -n monitoring port-forward service/prometheus-operated ",
    "TOKEN=$(openssl rand -hex 32)",
)
APPLIED_FILES = {"k8s/", "deploy/prometheus/rules-configmap.yaml", "deploy/kserve/inferenceservice.yaml"}


def commands() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## From zero to a cluster\n") : text.index("\n## ", text.index("## From zero"))]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, dict]:
    """The objects per namespace the commands can reach: k8s/ in the context's, each overlay's own."""
    tree = copy_tree(tmp_path_factory.mktemp("docs-tree"))
    assert pin(tree).returncode == 0
    found = {"": by_key(base_docs())}
    for overlay in OVERLAYS:
        docs = render(tree, overlay)
        (ns,) = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
        found[ns] = by_key(docs)
    return found


def split_namespace(argv: list[str]) -> tuple[str, list[str]]:
    if argv[:2] and argv[1] == "-n":
        return argv[2], [argv[0], *argv[3:]]
    return "", argv


def check_secret(argv: list[str], namespace: str, objects) -> None:
    argv = [a.replace("$TOKEN", "a-test-token") for a in argv]
    result = run(kubectl(), *argv[1:], *(["-n", namespace] if namespace else []), "--dry-run=client", "-o", "json")
    assert result.returncode == 0, result.stderr
    secret = json.loads(result.stdout)
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    pod = objects[namespace][("Deployment", "heart-disease-api")]["spec"]["template"]["spec"]
    mounted = [
        v["secret"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]
    ]
    assert len(mounted) == 1, f"the pods mount no Secret {secret['metadata']['name']}"
    (volume,) = mounted
    assert set(secret["data"]) == {item["key"] for item in volume["items"]}


def check_kubectl(line: str, objects, built: set[str]) -> None:
    namespace, argv = split_namespace(shlex.split(line.rstrip("&").strip()))
    assert namespace in objects, f"{line}: namespace {namespace!r} is no overlay's"
    verb = argv[1]
    if verb == "apply" and argv[2] == "-f":
        assert argv[3] in APPLIED_FILES, line  # each validated by test_deploy, test_monitoring, test_kserve
    elif verb == "apply" and argv[2] == "-k":
        assert argv[3] in {f"deploy/overlays/{o}" for o in OVERLAYS}, line  # rendered by test_overlays
    elif argv[1:4] == ["create", "secret", "generic"]:
        check_secret(argv, namespace, objects)
    elif argv[1:3] == ["create", "namespace"]:
        assert argv[3] in objects, line
    elif verb == "rollout":
        kind, name = argv[3].split("/")
        assert (kind.capitalize(), name) in objects[namespace], line
    elif verb == "port-forward":
        kind, name = argv[2].split("/")
        service = objects[namespace][("Service", name)]
        assert int(argv[3].split(":")[1]) in {p["port"] for p in service["spec"]["ports"]}, line
    elif verb == "get":
        kinds = {"hpa": "HorizontalPodAutoscaler", "prometheusrule": "PrometheusRule", "podmonitor": "PodMonitor"}
        present = {kind for kind, _ in objects[namespace]}
        assert {kinds[k] for k in argv[2].split(",")} <= present, line
        if len(argv) > 3:
            assert ("HorizontalPodAutoscaler", argv[3]) in objects[namespace], line
    else:
        pytest.fail(f"a kubectl command the test does not check: {line}")


def check_line(line: str, objects, built: set[str]) -> None:
    argv = shlex.split(line.rstrip("&").strip()) if not line.startswith("deploy/pin-image.sh") else line.split(" ", 1)
    if line.startswith(EXTERNAL):
        return
    if argv[0] == "kubectl":
        return check_kubectl(line, objects, built)
    if argv[:2] == ["docker", "build"]:
        tag = argv[argv.index("-t") + 1]
        target = argv[argv.index("--target") + 1] if "--target" in argv else None
        assert target in (None, "explainer"), line  # the Dockerfile's default (the predictor) or the explainer
        image = EXPLAINER_IMAGE if target else IMAGE
        assert tag == image or tag.endswith("/" + image), line  # the tag k8s/ runs, or its registry copy
        assert argv[-1] == "."
        built.add(tag)
    elif argv[:2] == ["docker", "push"]:
        assert argv[2] in built, line
    elif argv[:3] == ["kind", "load", "docker-image"]:
        loaded = argv[3 : argv.index("--name")] if "--name" in argv else argv[3:]
        pods = [d["spec"]["template"]["spec"] for d in objects[""].values() if d["kind"] == "Deployment"]
        images = {c["image"] for pod in pods for c in pod["containers"]}
        assert sorted(loaded) == sorted(images) == sorted({IMAGE, EXPLAINER_IMAGE}), line  # every image k8s/ runs
    elif argv[0] == "deploy/pin-image.sh":
        # the digests of the two images just pushed: the predictor's, then the explainer's
        predictor, explainer = shlex.split(argv[1])
        assert any(tag in predictor for tag in built if tag.endswith("/" + IMAGE)), line
        assert any(tag in explainer for tag in built if tag.endswith("/" + EXPLAINER_IMAGE)), line
    elif argv[0] == "curl":
        import heart_fastapi

        url = next(a for a in argv if a.startswith("localhost:"))
        path = "/" + url.split("/", 1)[1]
        assert path in {r.path for r in heart_fastapi.app.routes}, line
        body = json.loads(argv[argv.index("-d") + 1])
        assert body and all(isinstance(k, str) for k in body)
    else:
        pytest.fail(f"a command the test does not check: {line}")


def test_every_command_of_from_zero_to_a_cluster_is_checked(objects):
    lines = commands()
    assert len(lines) >= 20
    built: set[str] = set()
    for line in lines:
        check_line(line, objects, built)
    text = " ".join(lines)
    for needed in (
        "kind load docker-image",
        "--target explainer",
        "metrics-server",
        "create secret generic",
        "apply -f k8s/",
        "apply -k",
        "rollout status deployment/heart-disease-explainer",
    ):
        assert needed in text, needed


def test_an_unknown_command_or_a_wrong_name_fails(objects):
    """The check above can fail: a command of no known kind, or a Secret name the pods do not mount."""
    with pytest.raises(pytest.fail.Exception):
        check_line("helm install prometheus prometheus-community/prometheus", objects, set())
    with pytest.raises(AssertionError):
        check_line("kubectl create secret generic api-tokens --from-literal=tokens=x", objects, set())
    with pytest.raises(AssertionError):
        check_line("kubectl apply -k deploy/overlays/staging", objects, set())
    with pytest.raises(AssertionError):
        check_line("kind load docker-image heart-disease-mlops:latest", objects, set())
    with pytest.raises(AssertionError):  # the explainer's image not loaded: its pod would never start
        check_line(f"kind load docker-image {IMAGE} --name heart", objects, set())
    with pytest.raises(AssertionError):  # the explainer built under the predictor's tag
        check_line(f"docker build --target explainer -t {IMAGE} .", objects, set())
    built = {f"r/{IMAGE}", f"r/{EXPLAINER_IMAGE}"}
    inspect = "\"$(docker inspect --format '{{{{index .RepoDigests 0}}}}' r/{})\""
    check_line(f"deploy/pin-image.sh {inspect.format(IMAGE)} {inspect.format(EXPLAINER_IMAGE)}", objects, built)
    with pytest.raises(AssertionError):  # swapped
        check_line(f"deploy/pin-image.sh {inspect.format(EXPLAINER_IMAGE)} {inspect.format(IMAGE)}", objects, built)
