"""The kustomize overlays, offline (issue 24): every overlay renders with `kubectl kustomize`, validates
against the Kubernetes schemas (strict), passes checkov with no failure and only reasoned skips, and
shares with k8s/ everything it does not deliberately change. Nothing is applied to a cluster."""

from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
import pytest
import yaml

from tests.k8s_tools import (
    API,
    DEPLOY,
    EXPLAINER,
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    ROOT,
    TEST_EXPLAINER_IMAGE,
    TEST_IMAGE,
    api_container,
    base_docs,
    by_key,
    checkov_scan,
    copy_tree,
    deployment,
    deployments,
    docs_of,
    env_of,
    kubectl,
    kustomize,
    pin,
    render,
    run,
)

CRD_KINDS = {"PrometheusRule", "PodMonitor"}  # checked by test_deploy.py against their CRDs' fields
TOKENS_MOUNT = "/etc/heart-disease-api/tokens"
SERVERS = (API, EXPLAINER)  # the two Deployments: the predictor and the explainer
IMAGES = {API: TEST_IMAGE, EXPLAINER: TEST_EXPLAINER_IMAGE}  # what prod runs once pinned
DATABASE_MOUNT = "/etc/heart-disease-api/database"
POSTGRES = ("StatefulSet", "heart-disease-postgres")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of k8s/ and deploy/ with prod pinned by deploy/pin-image.sh, as the release does."""
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    result = pin(tree)
    assert result.returncode == 0, result.stderr
    return tree


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, list[dict]]:
    return {overlay: render(tree, overlay) for overlay in OVERLAYS}


# ------------------------------------------------------------------------------ k8s/ as a base


def test_the_base_kustomization_lists_exactly_what_kubectl_apply_f_reads():
    """k8s/Kustomization (no extension: `kubectl apply -f k8s/` skips it) names every *.yaml of k8s/,
    so `kubectl apply -f k8s/` and the overlays' base are the same objects."""
    kustomization = yaml.safe_load((K8S / "Kustomization").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml"))
    assert not list(K8S.glob("*.yml")) and not list(K8S.glob("*.json"))
    result = kustomize(K8S)
    assert result.returncode == 0, result.stderr
    assert by_key(docs_of(result.stdout)) == by_key(base_docs())


def test_kubectl_apply_f_k8s_reads_the_manifests_and_not_the_kustomization(tmp_path):
    """`kubectl apply -f k8s/` as the course runs it: kubectl's own file reader, offline (`annotate
    --local` reads files as `apply -f` does), takes the manifests and skips `Kustomization`; the
    same file named kustomization.yaml would be read as an object and break the apply."""
    argv = ("annotate", "--local", "-o", "name", "check=1", "-f")
    result = run(kubectl(), *argv, K8S, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()  # e.g. deployment.apps/heart-disease-api
    read = sorted((n.split("/")[0].split(".")[0], n.split("/")[1]) for n in names)
    assert read == sorted((d["kind"].lower(), d["metadata"]["name"]) for d in base_docs())
    renamed = copy_tree(tmp_path)
    (renamed / "k8s" / "Kustomization").rename(renamed / "k8s" / "kustomization.yaml")
    assert "kustomization" in run(kubectl(), *argv, renamed / "k8s", cwd=tmp_path).stdout


# ------------------------------------------------------------------------------ render and validate


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(rendered, overlay):
    docs = rendered[overlay]
    builtin = [d for d in docs if d["kind"] not in CRD_KINDS]
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert len(namespaces) == 1, namespaces
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespaces[0], (overlay, doc["kind"])
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "heart-disease-mlops"
    # the pods meet the restricted Pod Security Standard, which the namespace enforces
    (ns,) = [d for d in docs if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_validator_rejects_a_misspelt_field_in_a_rendered_overlay(rendered):
    """The check above can fail: a typo'd probe field is an error, not silently dropped."""
    broken = copy.deepcopy(deployment(rendered["dev"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_environment_references_come_after_their_definitions(rendered, overlay):
    """Kubernetes expands $(VAR) only from variables defined earlier in the list, and a patch moves the
    variables it touches to the front: a reference must still follow its definition."""
    docs = base_docs() if overlay == "base" else rendered[overlay]
    assert sorted(d["metadata"]["name"] for d in deployments(docs)) == sorted(SERVERS)
    for name in SERVERS:
        defined = set()
        for var in api_container(docs, name)["env"]:
            for ref in re.findall(r"\$\((\w+)\)", var.get("value", "")):
                assert ref in defined, f"{overlay} {name}: {var['name']} uses $({ref}) before it is defined"
            defined.add(var["name"])


# ------------------------------------------------------------------------------ what each overlay is


@pytest.mark.parametrize("name", SERVERS)
def test_the_base_requires_tokens_from_a_mounted_secret_and_exports_no_traces(name):
    """The predictor and the explainer alike: /explain is a prediction route."""
    pod = deployment(base_docs(), name)["spec"]["template"]["spec"]
    env = env_of(api_container(base_docs(), name))
    assert env["API_AUTH"]["value"] == "tokens"
    assert env["API_TOKENS_FILE"]["value"].startswith(TOKENS_MOUNT + "/")
    assert "API_TOKENS" not in env and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in env.values())
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "heart-disease-api-tokens"]
    assert not volume["secret"].get("optional")
    assert [i["key"] for i in volume["secret"]["items"]] == ["tokens"]
    mount = {m["name"]: m for m in api_container(base_docs(), name)["volumeMounts"]}[volume["name"]]
    assert mount["mountPath"] == TOKENS_MOUNT and mount["readOnly"] is True
    services = [d for d in base_docs() if d["kind"] == "Service"]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(SERVERS)
    assert all(s["spec"]["type"] == "ClusterIP" for s in services)


@pytest.mark.parametrize("name", SERVERS)
def test_dev_is_one_open_pod_without_collector_or_autoscaler(rendered, name):
    docs = rendered["dev"]
    env = env_of(api_container(docs, name))
    assert deployment(docs, name)["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert env["API_AUTH"]["value"] == "open" and "API_TOKENS_FILE" not in env
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    pod = deployment(docs, name)["spec"]["template"]["spec"]
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["heart-disease-api-database"]  # the optional one: dev runs SQLite without it
    assert TOKENS_MOUNT not in {m["mountPath"] for m in api_container(docs, name)["volumeMounts"]}


def test_the_base_reads_an_optional_database_secret_and_keeps_sqlite_on_the_emptydir():
    """No database Secret: SQLite on the emptyDir (one table per pod); with it, the URL as a file."""
    api = by_key(base_docs())[("Deployment", "heart-disease-api")]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    (volume,) = [v for v in api["spec"]["template"]["spec"]["volumes"] if v["name"] == "database"]
    assert volume["secret"]["secretName"] == "heart-disease-api-database" and volume["secret"]["optional"] is True
    assert [i["key"] for i in volume["secret"]["items"]] == ["url"]
    mount = {m["name"]: m for m in container["volumeMounts"]}["database"]
    assert mount["mountPath"] == DATABASE_MOUNT and mount["readOnly"] is True
    assert env["DATABASE_URL_FILE"]["value"] == f"{DATABASE_MOUNT}/{volume['secret']['items'][0]['path']}"
    assert env["INFERENCE_DB"]["value"].startswith("/tmp/") and "DATABASE_URL" not in env


def test_dev_postgres_shares_one_table_between_two_pods(rendered):
    docs = rendered["dev-postgres"]
    objects = by_key(docs)
    assert deployment(docs)["spec"]["replicas"] == 2
    postgres = objects[POSTGRES]
    pod = postgres["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = env_of(c)
    (secret,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert env["POSTGRES_PASSWORD_FILE"]["value"].endswith("/" + secret["items"][0]["path"])
    assert secret["secretName"] == "heart-disease-postgres" and not secret.get("optional")
    service = objects[("Service", "heart-disease-postgres")]
    assert service["spec"]["selector"] == postgres["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 5432 and c["ports"][0]["containerPort"] == 5432
    policy = objects[("NetworkPolicy", "heart-disease-postgres")]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": deployment(docs)["spec"]["selector"]["matchLabels"]}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    # the URL the docs tell you to put in heart-disease-api-database names this Service, user and database
    docs_url = "postgresql://heart:$PW@heart-disease-postgres:5432/heart"
    assert docs_url in (DEPLOY / "components" / "postgres" / "kustomization.yaml").read_text()
    assert (env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]) == ("heart", "heart")


def test_prod_requires_tokens_pins_the_digest_and_adds_ingress_collector_and_operator_rules(rendered):
    docs = rendered["prod"]
    kinds = {d["kind"] for d in docs}
    assert {"Ingress", "PrometheusRule", "PodMonitor", "HorizontalPodAutoscaler"} <= kinds
    assert "ConfigMap" not in kinds
    for name in SERVERS:  # the predictor and the explainer alike
        c = api_container(docs, name)
        env = env_of(c)
        assert (
            env["API_AUTH"]["value"] == "tokens"
            and env["API_TOKENS_FILE"] == env_of(api_container(base_docs(), name))["API_TOKENS_FILE"]
        )
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"].startswith("http://otel-collector.")
        assert c["image"] == IMAGES[name] and re.fullmatch(r"[^@:]+(:\d+)?[^@:]*@sha256:[0-9a-f]{64}", c["image"])
        assert c["imagePullPolicy"] == "Always"
    # one Ingress, the base's, with a host and TLS, and still its two paths (issue 22's routing)
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in tls["hosts"] and tls["secretName"] and ingress["spec"]["ingressClassName"]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    backends = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert backends == {
        "/explain": {"name": EXPLAINER, "port": {"name": "http"}},
        "/": {"name": API, "port": {"name": "http"}},
    }
    assert {b["name"] for b in backends.values()} == services


def test_prod_does_not_build_until_its_image_is_pinned_by_digest(tmp_path):
    tree = copy_tree(tmp_path)
    result = kustomize(tree / "deploy" / "overlays" / "prod")
    assert result.returncode != 0 and "release-image" in result.stderr
    for bad in ("ghcr.io/example/heart-disease-mlops:1.0.0", "heart-disease-mlops@sha256:abc", "Bad/Name@" + "x"):
        refused = pin(tree, bad)
        assert refused.returncode == 2 and "is not REPOSITORY@sha256:" in refused.stderr, refused.stderr
        assert not (tree / "deploy" / "overlays" / "prod" / "release-image").exists()
    # both images or none: one alone, or the two swapped, is refused too
    swapped = pin(tree, TEST_EXPLAINER_IMAGE, TEST_IMAGE)
    assert swapped.returncode == 2 and "the second the explainer" in swapped.stderr, swapped.stderr
    alone = run("bash", tree / "deploy" / "pin-image.sh", TEST_IMAGE, cwd=tree)
    assert alone.returncode == 2 and "usage:" in alone.stderr, alone.stderr
    assert not (tree / "deploy" / "overlays" / "prod" / "release-image").exists()
    local = "localhost:5000/team/heart-disease-mlops"
    assert pin(tree, f"{local}@sha256:" + "0123456789abcdef" * 4, f"{local}-explainer@{'f' * 64}").returncode == 2
    assert (
        pin(tree, f"{local}@sha256:" + "0123456789abcdef" * 4, f"{local}-explainer@sha256:{'f' * 64}").returncode == 0
    )
    docs = render(tree, "prod")
    assert api_container(docs)["image"] == f"{local}@sha256:" + "0123456789abcdef" * 4
    assert api_container(docs, EXPLAINER)["image"] == f"{local}-explainer@sha256:{'f' * 64}"


# ------------------------------------------------------------------------------ no drift from k8s/


def strip_changes(doc: dict, namespace: str, removed_annotations: set[str]) -> dict:
    """doc without what an overlay changes on every shared object: its namespace, the skip annotations
    it deletes; environment variables compared as a set (a patch reorders them)."""
    doc = copy.deepcopy(doc)
    meta = doc["metadata"]
    assert meta.pop("namespace", namespace) == namespace
    annotations = {k: v for k, v in meta.pop("annotations", {}).items() if k not in removed_annotations}
    if annotations:
        meta["annotations"] = annotations
    for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        c["env"] = sorted(c.get("env", []), key=lambda e: e["name"])
    return doc


# What each overlay changes on purpose, as (kind, name) -> the paths it touches. The test applies these
# edits to k8s/'s objects and requires the rendered overlay to be that exactly.
def dev_edits(doc: dict) -> None:
    if doc["kind"] == "Deployment":  # the predictor and the explainer: one open pod each
        doc["spec"]["replicas"] = 1
        pod = doc["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        c["env"] = [e for e in c["env"] if e["name"] != "API_TOKENS_FILE"]
        env_of(c)["API_AUTH"]["value"] = "open"
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != TOKENS_MOUNT]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "tokens"]


def dev_postgres_edits(doc: dict) -> None:
    dev_edits(doc)
    if doc["kind"] == "Deployment" and doc["metadata"]["name"] == API:  # the predictor: two pods, one table
        doc["spec"]["replicas"] = 2


def prod_edits(doc: dict) -> None:
    if doc["kind"] == "Deployment":
        (c,) = doc["spec"]["template"]["spec"]["containers"]
        c["image"], c["imagePullPolicy"] = IMAGES[doc["metadata"]["name"]], "Always"
        c["env"].append(
            {
                "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
                "value": "http://otel-collector.observability.svc.cluster.local:4318",
            }
        )
    if doc["kind"] == "Ingress":  # a host and TLS on the base's rule, its paths untouched
        host = "heart-disease.example.com"
        doc["spec"]["ingressClassName"] = "nginx"
        doc["spec"]["tls"] = [{"hosts": [host], "secretName": "heart-disease-api-tls"}]
        doc["spec"]["rules"][0]["host"] = host
        doc["metadata"]["annotations"].update(
            {"cert-manager.io/cluster-issuer": "letsencrypt", "nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}
        )


DRIFT = {
    "dev": ("heart-dev", dev_edits, {("HorizontalPodAutoscaler", "heart-disease-api")}, {"checkov.io/skip3"}),
    "dev-postgres": (
        "heart-dev",
        dev_postgres_edits,
        {("HorizontalPodAutoscaler", "heart-disease-api")},
        {"checkov.io/skip3"},
    ),
    "prod": ("heart-disease", prod_edits, set(), {"checkov.io/skip1", "checkov.io/skip2", "checkov.io/skip3"}),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_and_k8s_do_not_drift_apart_in_what_they_share(rendered, overlay):
    namespace, edit, dropped, skips = DRIFT[overlay]
    base, ours = by_key(base_docs()), by_key(rendered[overlay])
    assert set(base) - set(ours) == dropped, "objects of k8s/ missing from the overlay"
    for key in sorted(set(base) - dropped):
        expected = copy.deepcopy(base[key])
        edit(expected)
        removed = skips if key[0] == "Deployment" else {"checkov.io/skip1"}
        want, got = strip_changes(expected, namespace, removed), strip_changes(ours[key], namespace, removed)
        assert got == want, f"{overlay} {key} differs from k8s/ beyond the overlay's own changes"


def test_the_drift_check_notices_a_change_made_only_in_k8s(rendered):
    """The check above can fail: an edit of the base that the overlay does not get is drift."""
    namespace, edit, _, skips = DRIFT["dev"]
    base = by_key(base_docs())[("Deployment", "heart-disease-api")]
    changed = copy.deepcopy(base)
    changed["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60
    edit(changed)
    ours = by_key(rendered["dev"])[("Deployment", "heart-disease-api")]
    assert strip_changes(changed, namespace, skips) != strip_changes(ours, namespace, skips)


# ------------------------------------------------------------------------------ checkov


# The checks skipped where, each with the reason in a checkov.io/skipN annotation; prod skips none.
EXPECTED_SKIPS = {
    "base": {
        ("CKV_K8S_43", "Deployment"),
        ("CKV_K8S_15", "Deployment"),
        ("CKV_K8S_21", "Deployment"),
        ("CKV_K8S_21", "Service"),
        ("CKV_K8S_21", "Ingress"),
    },
    "prometheus": set(),
    "dev": {("CKV_K8S_43", "Deployment"), ("CKV_K8S_15", "Deployment")},
    "dev-postgres": {("CKV_K8S_43", "Deployment"), ("CKV_K8S_15", "Deployment"), ("CKV_K8S_43", "StatefulSet")},
    "prod": set(),
}


def scan(name: str, rendered, tmp_path) -> dict:
    if name == "base":
        return checkov_scan(K8S)
    if name == "prometheus":
        return checkov_scan(DEPLOY / "prometheus")
    target = tmp_path / f"{name}.yaml"
    target.write_text(yaml.safe_dump_all(rendered[name]))
    return checkov_scan(target)


@pytest.mark.parametrize("name", EXPECTED_SKIPS)
def test_checkov_finds_no_failure_and_every_skip_carries_its_reason(rendered, tmp_path, name):
    report = scan(name, rendered, tmp_path)
    summary, results = report["summary"], report["results"]
    print(f"checkov {name}: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
    assert summary["passed"] > 0
    skipped = {(c["check_id"], c["resource"].split(".")[0]) for c in results["skipped_checks"]}
    assert skipped == EXPECTED_SKIPS[name]
    for check in results["skipped_checks"]:
        reason = check["check_result"]["suppress_comment"]
        assert len(reason) > 20 and reason != "No comment provided", check["check_id"]


def test_checkov_fails_the_base_without_its_skips(tmp_path):
    """The scan above can fail: without the annotations, the findings they skip are failures."""
    stripped = [{**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "annotations"}} for d in base_docs()]
    target = tmp_path / "base.yaml"
    target.write_text(yaml.safe_dump_all(stripped))
    report = checkov_scan(target)
    failed = {(c["check_id"], c["resource"].split(".")[0]) for c in report["results"]["failed_checks"]}
    assert failed == EXPECTED_SKIPS["base"] and report["summary"]["skipped"] == 0


def test_the_secret_is_never_passed_as_an_environment_variable(rendered):
    """checkov's CKV_K8S_35, stated for every manifest we ship: the tokens are a mounted file."""
    texts = [json.dumps(base_docs()), *(json.dumps(docs) for docs in rendered.values())]
    texts.append((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())
    assert not any("secretKeyRef" in text for text in texts)
    assert ROOT.joinpath("deploy", "pin-image.sh").stat().st_mode & 0o111
