"""Alert rules and dashboard (issue 14, part 3): promtool checks and unit-tests the rules, each
threshold is pinned by those tests, the positive-rate band holds the model's own output on
training-like traffic, and every metric a rule or panel names is one the running server exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from heart.clients.harness import ApiServer, free_port
from heart.samples import sample
from heart.serving.contract import EXAMPLE

from conftest import ROOT

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = {
    "HeartApi5xxRateHigh",
    "HeartApiLatencyP99High",
    "HeartApiPodNotReady",
    "HeartApiDown",
    "HeartInputDrift",
    "HeartPredictedPositiveRateOutOfBand",
    "HeartPredictionLogRecordsLost",
    "HeartInferenceTableDown",
    "HeartInferenceTableRowsLost",
    "HeartPerformanceEstimatedLow",
    "HeartPerformanceRealizedLow",
}
# Prometheus's own series about a target, not the service's.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run `make install-tools` (Debian's prometheus package ships it)")
    return path


def run(*argv: str, cwd=MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=60)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_queries(variables: bool = True) -> list[str]:
    """The panels' PromQL, and the variables' Grafana queries (label_values(...)) unless told not to."""
    doc = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    if variables:
        queries += [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return queries


def metric_names(expr: str) -> set[str]:
    """The service's metric names (all start heart_) and Prometheus's `up` in a PromQL expression."""
    names = set(re.findall(r"\b(heart_[a-z0-9_]+)\b", expr))
    names |= {n for n in PROMETHEUS_SERIES if re.search(rf"\b{n}\s*{{", expr)}
    return names


# ------------------------------------------------------------------------------ rules


def test_promtool_checks_the_rules(promtool):
    result = run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_the_rules_alert_on_what_the_issue_asks():
    assert {r["alert"] for r in rules()} == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]
        doc, anchor = rule["annotations"]["runbook"].split("#")
        assert f"## {anchor.replace('-', ' ')}".lower() in (ROOT / doc).read_text().lower()


def test_promtool_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent():
    firing, silent = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == ALERTS and silent == ALERTS


@pytest.mark.parametrize(
    "old, new",
    [
        ("> 0.01\n", "> 0.03\n"),  # 5xx share
        ("> 0.25\n", "> 0.5\n"),  # p99 budget
        ('route=~"/predict/?|/predict/batch|/explain|/v2/models/.+/infer"', 'route=~".+"'),  # budget's routes
        ('route=~"/predict/?|/predict/batch|/explain|/v2/models/.+/infer"', 'route=~"/predict|/predict/batch"'),
        ("sum by (namespace, route, le)", "sum by (namespace, le)"),  # per route, not pooled
        (
            "sum by (namespace, route) (rate(heart_http_requests_total{status",
            "sum by (namespace) (rate(heart_http_requests_total{status",
        ),
        ('route!~"/ready_check|/v2/health/ready|/v2/models/.+/ready"', 'route!="/ready_check"'),  # V2 probes
        (
            'absent(up{app_kubernetes_io_name="heart-disease-api"} == 1)',
            'absent(up{app_kubernetes_io_name="heart-disease-api"})',
        ),
        ("heart_ready == 0\n", "heart_ready < 0\n"),  # readiness
        ("heart_drift_drifted_share >= 0.5", "heart_drift_drifted_share > 0.5"),
        ("heart_predicted_positive_rate < 0.2", "heart_predicted_positive_rate <= 0.2"),
        ("heart_predicted_positive_rate > 0.7", "heart_predicted_positive_rate > 0.9"),
        ("heart_drift_window_rows >= 200", "heart_drift_window_rows >= 0"),
        ("increase(heart_prediction_log_lost_total[10m]) > 0", "increase(heart_prediction_log_lost_total[10m]) > 5"),
        ("        for: 15m\n", "        for: 5m\n"),
        (
            'heart_performance_estimated{metric="accuracy"} < 0.75',
            'heart_performance_estimated{metric="accuracy"} < 0.7',
        ),
        ('heart_performance_estimated{metric="roc_auc"} < 0.8', 'heart_performance_estimated{metric="roc_auc"} <= 0.8'),
        ('heart_performance_realized{metric="accuracy"} < 0.75', 'heart_performance_realized{metric="accuracy"} < 0.7'),
        ('heart_performance_realized{metric="roc_auc"} < 0.8', 'heart_performance_realized{metric="roc_auc"} < 0.6'),
        ("heart_performance_estimated_rows >= 200", "heart_performance_estimated_rows >= 100"),
        ("heart_performance_labelled_rows >= 200", "heart_performance_labelled_rows > 200"),
        ("heart_performance_labelled_rows >= 200", "heart_performance_labelled_rows >= 100"),
        ("        for: 1h\n", "        for: 30m\n"),
        ("heart_inference_table_up == 0\n", "heart_inference_table_up < 0\n"),
        (
            '        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: "Heart API: {{ $labels.instance }} cannot',
            '        for: 2m\n        labels:\n          severity: warning\n        annotations:\n          summary: "Heart API: {{ $labels.instance }} cannot',
        ),
        (
            "increase(heart_inference_table_rows_lost_total[10m]) > 0",
            "increase(heart_inference_table_rows_lost_total[10m]) > 1000",
        ),
    ],
)
def test_the_unit_tests_pin_each_threshold(promtool, tmp_path, old, new):
    """Every threshold is held by the unit tests: changing it makes `promtool test rules` fail."""
    text = RULES.read_text()
    assert text.count(old) >= 1, old
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    assert run(promtool, "check", "rules", RULES.name, cwd=tmp_path).returncode == 0
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode == 1 and "FAILED" in result.stdout + result.stderr, result.stdout


PREDICTION_ROUTES = {
    "/predict",
    "/predict/",
    "/predict/batch",
    "/explain",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
}


def label_regex(expr: str, op: str) -> re.Pattern:
    """The route matcher of a PromQL expression (op `=~` or `!~`), anchored as Prometheus anchors it."""
    (pattern,) = set(re.findall(rf'route{op}"([^"]+)"', expr))
    return re.compile(rf"(?:{pattern})\Z")


def test_the_prediction_routes_are_those_the_app_serves():
    """The routes named above are the app's POST routes (but /feedback, which takes labels and predicts
    nothing): a new prediction route fails here first."""
    import heart_fastapi

    posts = {r.path for r in heart_fastapi.app.routes if "POST" in (getattr(r, "methods", None) or ())}
    assert posts == PREDICTION_ROUTES | {"/feedback"}


def test_latency_and_error_rules_and_panels_see_every_prediction_route():
    """Issue 24: the latency rule and panel match each prediction route's label (the route template),
    nothing else; the 5xx rule and panel count every route but the readiness probes."""
    import heart_fastapi

    every_route = {r.path for r in heart_fastapi.app.routes}
    readiness = {
        "/ready_check",
        "/v2/health/ready",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
    }
    assert readiness <= every_route
    (latency,) = [r for r in rules() if r["alert"] == "HeartApiLatencyP99High"]
    (errors,) = [r for r in rules() if r["alert"] == "HeartApi5xxRateHigh"]
    panels = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard_panels()}
    latency_panel = panels["p99 latency by prediction route"]
    errors_panel = panels["5xx share by route (readiness probes excluded)"]
    for expr in (latency["expr"], latency_panel):
        matcher = label_regex(expr, "=~")
        assert {route for route in every_route if matcher.match(route)} == PREDICTION_ROUTES, expr
    for expr in (errors["expr"], errors_panel):
        excluded = label_regex(expr, "!~")
        assert {route for route in every_route if excluded.match(route)} == readiness, expr
    assert "by (namespace, route, le)" in latency["expr"] and "by (le, route)" in latency_panel
    assert errors["expr"].count("by (namespace, route)") == 2 and errors_panel.count("by (route)") == 2


def test_the_positive_rate_band_holds_the_models_output_on_training_like_traffic(trained, dataset):
    """The band is wide around the 46% training prevalence; the model's own predicted-positive rate
    on windows of 1,000 training rows (bootstrap) and of patients drawn from the training
    marginals (the live drift test's traffic) stays inside it with 0.1 to spare."""
    (rule,) = [r for r in rules() if r["alert"] == "HeartPredictedPositiveRateOutOfBand"]
    low = float(re.search(r"heart_predicted_positive_rate < ([\d.]+)", rule["expr"]).group(1))
    high = float(re.search(r"heart_predicted_positive_rate > ([\d.]+)", rule["expr"]).group(1))
    assert low < dataset.y.mean() < high
    predicted = trained.pipeline.predict(dataset.X)
    rng = np.random.default_rng(0)
    windows = [predicted[rng.integers(0, len(predicted), 1000)].mean() for _ in range(500)]
    windows += [
        trained.pipeline.predict(sample(1000, seed=s, mode="marginal", reference=dataset.X)).mean() for s in range(3)
    ]
    assert low + 0.1 <= min(windows) and max(windows) <= high - 0.1, (low, high, min(windows), max(windows))


def test_the_performance_floors_are_the_scripts_defaults_and_hold_on_training_like_traffic(trained, dataset):
    """The alerts' floors are heart.analyses.performance.DEFAULT_MINIMUMS, and the estimate on
    windows of 1,000 training patients (bootstrap) clears them with 0.05 to spare."""
    from heart.analyses.performance import DEFAULT_MINIMUMS, expected

    floors = {
        (kind, metric): float(value)
        for rule in rules()
        if rule["alert"].startswith("HeartPerformance")
        for kind, metric, value in re.findall(r'heart_performance_(\w+)\{metric="(\w+)"\} < ([\d.]+)', rule["expr"])
    }
    assert floors == {(m.kind, m.metric): m.value for m in DEFAULT_MINIMUMS}
    proba = trained.pipeline.predict_proba(dataset.X)[:, 1]
    rng = np.random.default_rng(0)
    windows = [expected(proba[rng.integers(0, len(proba), 1000)], 0.5) for _ in range(200)]
    for (_, metric), floor in floors.items():
        assert min(w[metric] for w in windows) >= floor + 0.05, (metric, floor)


# ------------------------------------------------------------------------------ the rules as shipped

CONFIGMAP = ROOT / "deploy" / "prometheus" / "rules-configmap.yaml"
OPERATOR = ROOT / "deploy" / "components" / "prometheus-operator"
# The fields the prometheus-operator's CRDs define for what we use (monitoring.coreos.com/v1,
# example/prometheus-operator-crd/ of prometheus-operator 0.82-0.91): a misspelt key is an error here,
# as it is for `kubectl apply --validate=strict`.
RULE_GROUP_FIELDS = {"name", "interval", "rules", "labels", "limit", "query_offset", "partial_response_strategy"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
PODMONITOR_SPEC_FIELDS = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings", "metricRelabelings"}
RELABEL_FIELDS = {"sourceLabels", "targetLabel", "action", "regex", "replacement", "separator", "modulus"}


def test_the_rules_configmap_carries_alerts_yaml_verbatim_where_prometheus_runs():
    doc = yaml.safe_load(CONFIGMAP.read_text())
    (text,) = doc["data"].values()
    assert text == RULES.read_text(), "copy monitoring/alerts.yaml into the ConfigMap (data, indented 4 spaces)"
    assert doc["metadata"]["namespace"] == "monitoring"  # Prometheus's, not the app's


def test_the_prometheusrule_carries_the_same_groups_with_the_crds_fields():
    doc = yaml.safe_load((OPERATOR / "prometheusrule.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"} and set(doc["spec"]) == {"groups"}
    assert doc["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], "edit both rule files together"
    for group in doc["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_FIELDS
        for rule in group["rules"]:
            assert set(rule) <= RULE_FIELDS and "expr" in rule and ("alert" in rule) != ("record" in rule)


def test_the_podmonitor_scrapes_the_metrics_port_and_labels_targets_as_the_rules_expect():
    from tests.test_deploy import by_kind, container_ports

    doc = yaml.safe_load((OPERATOR / "podmonitor.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    spec = doc["spec"]
    assert set(spec) <= PODMONITOR_SPEC_FIELDS
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = spec["podMetricsEndpoints"]
    assert set(endpoint) <= ENDPOINT_FIELDS and endpoint["port"] in container_ports()
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    targets = set()
    for relabel in endpoint["relabelings"]:
        assert set(relabel) <= RELABEL_FIELDS
        targets.add(relabel["targetLabel"])
    selected = set(re.findall(r"\b(\w+)=\"heart-disease-api\"", " ".join(r["expr"] for r in rules())))
    assert selected == {"app_kubernetes_io_name"} <= targets


# ------------------------------------------------------------------------------ dashboard


def test_dashboard_panels_query_prometheus_by_the_datasource_variable():
    doc = json.loads(DASHBOARD.read_text())
    panels = doc["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in doc["templating"]["list"]] == ["datasource", "namespace"]
    for p in dashboard_panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """promtool parses each panel query, written as a recording rule (Grafana's variables filled in)."""
    filled = [
        q.replace("$__rate_interval", "5m").replace("$namespace", ".*") for q in dashboard_queries(variables=False)
    ]
    group = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:query_{i}", "expr": q} for i, q in enumerate(filled)]}
        ]
    }
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump(group))
    result = run(promtool, "check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_estimated_and_realized_performance_side_by_side():
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard_panels()}
    for metric in ("accuracy", "roc_auc"):
        (exprs,) = [e for title, e in panels.items() if "estimated (CBPE) and realized" in title and metric in e[0]]
        assert [n for e in exprs for n in metric_names(e)] == [
            "heart_performance_estimated",
            "heart_performance_realized",
        ]


def test_dashboard_shows_every_alerted_metric():
    alerted = set().union(*(metric_names(r["expr"]) for r in rules()))
    shown = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert alerted <= shown, alerted - shown


# ------------------------------------------------------------------------------ the live service


def exported_names(text: str) -> set[str]:
    """Every series name /metrics can carry, declared families included (a counter with no sample yet)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


@pytest.fixture(scope="module")
def live_metrics(model_path, tmp_path_factory) -> str:
    """/metrics of a real server after a good and a bad prediction, read on its metrics port
    (METRICS_PORT), where Prometheus scrapes it; the API port no longer serves it then."""
    metrics_port = free_port()
    log = tmp_path_factory.mktemp("monitoring") / "server.log"
    with ApiServer(
        model_path,
        log=log,
        ready_timeout=90,
        log_level="warning",
        extra_env={
            "METRICS_PORT": str(metrics_port),
            "OTEL_EXPORTER_OTLP_ENDPOINT": None,
            "OTEL_TRACES_EXPORTER": None,
        },
    ) as api:
        assert requests.post(api.url + "/predict", json=EXAMPLE, timeout=10).status_code == 200
        assert requests.post(api.url + "/predict", json={"age": 63}, timeout=10).status_code == 422
        assert requests.get(api.url + "/metrics", timeout=10).status_code == 404
        response = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        return response.text


def test_every_metric_in_a_rule_or_panel_is_exported(live_metrics):
    exported = exported_names(live_metrics)
    assert "heart_ready" in exported and "heart_http_request_duration_seconds_bucket" in exported
    referenced = set().union(
        *(metric_names(r["expr"]) for r in rules()), *(metric_names(q) for q in dashboard_queries())
    )
    missing = referenced - PROMETHEUS_SERIES - exported
    assert not missing, f"named in monitoring/ but not exported by the server: {sorted(missing)}"
