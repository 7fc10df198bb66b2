"""Issue 22: the lean server span (heart.serving.tracing.ServerSpans) makes the spans
opentelemetry-instrumentation-fastapi made, asks the sampler first and collects attributes only for a
span that records. Issue 24: no collector configured, no exporter and no warning; an unreachable one,
one warning a minute."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import datetime

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased

from heart.artifact import sha256_file
from heart.serving import tracing
from heart.serving.app import create_app
from heart.serving.contract import EXAMPLE
from heart.serving.middleware import ObservabilityMiddleware
from heart.serving.tracing import ReportingExporter, ServerSpans
from tests.support import make_app, settings_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
V2 = {
    "inputs": [
        {"name": n, "shape": [1], "datatype": "FP64", "data": [1.0 if n == "gender" else float(v)]}
        for n, v in EXAMPLE.items()
    ]
}
REQUESTS = [
    ("POST", "/predict", EXAMPLE, {}),
    ("POST", "/predict", EXAMPLE, {"traceparent": TRACEPARENT, "tracestate": "vendor=1", "baggage": "k=v"}),
    ("POST", "/predict/", EXAMPLE, {}),
    ("POST", "/predict/batch", {"instances": [EXAMPLE, EXAMPLE]}, {}),
    ("POST", "/predict", {"age": "old"}, {}),  # 422
    ("POST", "/predict?x=1&sig=secret", EXAMPLE, {"host": "api.example.com:8443"}),
    ("GET", "/predict", None, {}),  # 405
    ("FOO", "/predict", EXAMPLE, {}),  # an unknown method
    ("POST", "/nowhere", {}, {}),  # 404: named by the method alone
    ("GET", "/model", None, {"user-agent": "curl/8.0"}),
    ("POST", "/v2/models/heart-disease/infer", V2, {}),  # a route with a parameter: named once routed
    ("GET", "/v2/health/ready", None, {}),
    ("GET", "/ready_check", None, {}),  # untraced
    ("GET", "/metrics", None, {}),  # untraced
    ("POST", "/explain", EXAMPLE, {}),
]


def instrumented_as_before(app: FastAPI) -> None:
    """The app as it was traced before issue 22: its span middleware without a span, and FastAPIInstrumentor."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    app.build_middleware_stack = FastAPI.build_middleware_stack.__get__(app)  # ours, span middleware first, undone
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics, templates={}, spans=None)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=app.state.tracer_provider,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
        excluded_urls="metrics,live_check,ready_check",
    )


def described(span, server_id=None) -> dict:
    """What must be the same: name, kind, parent, status, events, and the http./net. attributes (the
    prediction span: all of them)."""
    attributes = dict(span.attributes)
    if span.kind.name == "SERVER":
        attributes = {k: v for k, v in attributes.items() if k.startswith(("http.", "net."))}
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "parent": None
        if parent is None
        else ("server" if parent.span_id == server_id else format(parent.span_id, "x")),
        "remote_parent": bool(parent and parent.is_remote),
        "status": span.status.status_code.name,
        "description": span.status.description,
        "events": [e.name for e in span.events],
        "attributes": attributes,
    }


def all_described(finished) -> list[dict]:
    server = [s for s in finished if s.kind.name == "SERVER"]
    server_id = server[0].context.span_id if server else None
    return sorted((described(s, server_id) for s in finished), key=json.dumps)


def trace_of(app, failing: bool = False) -> list:
    """Every request of REQUESTS through `app`: (status, response header names, spans described)."""
    spans = InMemorySpanExporter()
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    out = []
    with TestClient(app, raise_server_exceptions=False) as c:
        for method, path, body, headers in REQUESTS:
            spans.clear()
            r = c.request(method, path, json=body, headers=headers)
            finished = spans.get_finished_spans()
            trace_ids = {format(s.context.trace_id, "032x") for s in finished}
            headers = sorted(h for h in r.headers if h != "x-trace-id")
            out.append((f"{method} {path}", r.status_code, headers, trace_ids, all_described(finished)))
        if failing:  # a model that raises (500), then a model not loaded (503)
            state = app.state.serving
            for name, break_it in (
                ("500", lambda: setattr(state.predictor, "predict", lambda X: 1 / 0)),
                ("503", lambda: setattr(state, "status", "loading")),
            ):
                break_it()
                spans.clear()
                status = c.post("/predict", json=EXAMPLE).status_code
                out.append((name, status, [], set(), all_described(spans.get_finished_spans())))
    return out


@pytest.fixture(scope="module")
def both(model_path):
    lean = make_app(model_path)
    before = make_app(model_path)
    instrumented_as_before(before)
    return trace_of(lean, failing=True), trace_of(before, failing=True)


def test_the_spans_are_the_instrumentations_request_by_request(both):
    lean, before = both
    assert len(lean) == len(before) == len(REQUESTS) + 2
    for (request, status, headers, _, spans), (_, status0, headers0, _, spans0) in zip(lean, before):
        assert (status, headers) == (status0, headers0), request
        assert spans == spans0, request


def test_the_comparison_covers_what_matters(both):
    """The requests above do exercise a remote parent, a route named once routed, a 5xx, and the prediction span."""
    lean, _ = both
    by_request = {r[0]: r for r in lean}
    with_parent = lean[1][4]
    server = next(s for s in with_parent if s["kind"] == "SERVER")
    assert server["parent"] == "b7ad6b7169203331" and server["remote_parent"] is True
    assert lean[1][3] == {"0af7651916cd43dd8448eb211c80319c"}, "the caller's trace id"
    inference = next(s for s in with_parent if s["name"] == "inference")
    assert inference["parent"] == "server" and inference["attributes"]["batch.size"] == 1
    assert set(inference["attributes"]) == {"model.version", "batch.size", "inference.engine", "http.route.endpoint"}
    v2 = next(s for s in by_request["POST /v2/models/heart-disease/infer"][4] if s["kind"] == "SERVER")
    assert v2["name"] == "POST /v2/models/{name}/infer" and v2["attributes"]["http.route"] == "/v2/models/{name}/infer"
    assert [s["name"] for s in by_request["POST /nowhere"][4]] == ["POST"]
    assert by_request["GET /ready_check"][4] == by_request["GET /metrics"][4] == []
    query = next(s for s in by_request["POST /predict?x=1&sig=secret"][4] if s["kind"] == "SERVER")
    assert query["attributes"]["http.url"] == "http://api.example.com:8443/predict?x=1&sig=REDACTED"
    failed = {s["kind"]: s for s in by_request["500"][4]}
    assert failed["SERVER"]["status"] == "ERROR" and failed["SERVER"]["attributes"]["http.status_code"] == 500
    assert failed["INTERNAL"]["events"] == ["exception"]


def test_a_traceparent_is_extracted_and_its_trace_id_answered(model_path):
    with TestClient(make_app(model_path)) as c:
        r = c.post("/predict", json=EXAMPLE, headers={"traceparent": TRACEPARENT})
        assert r.headers["x-trace-id"] == r.json()["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        r = c.post("/predict", json=EXAMPLE, headers={"traceparent": "00-garbage"})  # ignored, a new trace
        assert r.status_code == 200 and r.headers["x-trace-id"] == r.json()["trace_id"] != "0" * 32


class Recording(Sampler):
    """Records what each sampling decision was given, and drops (or keeps) the span."""

    def __init__(self, keep: bool):
        self.keep, self.calls = keep, []

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        self.calls.append((name, kind, dict(attributes or {})))
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.keep else Decision.DROP)

    def get_description(self):
        return "Recording"


@pytest.mark.parametrize("keep", [False, True], ids=["dropped", "kept"])
def test_the_sampler_decides_first_and_attributes_are_collected_only_for_a_kept_span(model_path, monkeypatch, keep):
    collected = []
    real = ServerSpans._attributes
    monkeypatch.setattr(ServerSpans, "_attributes", staticmethod(lambda *a: collected.append(1) or real(*a)))
    sampler = Recording(keep)
    app = create_app(settings_for(model_path), TracerProvider(sampler=sampler), background_load=False)
    with TestClient(app) as c:
        for _ in range(3):
            r = c.post("/predict", json=EXAMPLE)
            assert r.status_code == 200 and r.headers["x-trace-id"] == r.json()["trace_id"]
    server_calls = [call for call in sampler.calls if call[1].name == "SERVER"]
    assert [(name, attrs) for name, _, attrs in server_calls] == [("POST /predict", {})] * 3
    assert len(collected) == (3 if keep else 0)


def test_a_ratio_sampler_still_follows_a_sampled_caller(model_path, monkeypatch):
    """parentbased_traceidratio at 0: a request of its own is not recorded, one whose caller sampled it is."""
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings_for(model_path), provider, background_load=False)
    with TestClient(app) as c:
        c.post("/predict", json=EXAMPLE)
        assert spans.get_finished_spans() == ()
        c.post("/predict", json=EXAMPLE, headers={"traceparent": TRACEPARENT})
        assert {s.name for s in spans.get_finished_spans()} == {"POST /predict", "inference"}


# ------------------------------------------------------------------------ issue 24: exporting


def test_no_endpoint_means_no_exporter():
    assert tracing.span_exporters({}) == []
    assert tracing.span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) == []
    assert (
        tracing.span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}) == []
    )


@pytest.mark.parametrize(
    "environ, records",
    [({}, False), ({"OTEL_TRACES_EXPORTER": "none"}, False), ({"OTEL_TRACES_EXPORTER": "console"}, True)],
    ids=["nothing set", "none", "console"],
)
def test_without_an_exporter_no_span_is_recorded_and_every_reply_still_has_its_trace_id(
    model_path, monkeypatch, environ, records
):
    """Recording a span nobody receives costs about as much as the prediction: without an exporter
    the spans are not recorded, yet each reply and log line has its own trace id, and a caller's."""
    recorded = []
    real = ServerSpans._attributes
    monkeypatch.setattr(ServerSpans, "_attributes", staticmethod(lambda *a: recorded.append(1) or real(*a)))
    provider = tracing.tracer_provider("9.9", environ=environ)
    assert provider.resource.attributes["service.version"] == "9.9"
    app = create_app(settings_for(model_path), provider, background_load=False)
    with TestClient(app) as c:
        ids = [c.post("/predict", json=EXAMPLE).json()["trace_id"] for _ in range(5)]
        r = c.post("/predict", json=EXAMPLE, headers={"traceparent": TRACEPARENT})
    assert len(set(ids)) == 5 and all(len(t) == 32 and int(t, 16) for t in ids)
    assert r.json()["trace_id"] == r.headers["x-trace-id"] == "0af7651916cd43dd8448eb211c80319c"
    assert len(recorded) == (6 if records else 0)


class Failing:
    def __init__(self):
        self.results = []

    def export(self, spans):
        logging.getLogger(tracing.OTLP_LOGGER).warning("Transient error %s, retrying", "refused")
        return self.results.pop(0) if self.results else SpanExportResult.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_export_failures_make_one_warning_a_minute_and_a_recovery_line(caplog):
    clock = [1000.0]
    exporter = ReportingExporter(Failing(), "http://c:4318/v1/traces", clock=lambda: clock[0])
    caplog.set_level(logging.INFO)
    for t in (0, 1, 30, 59.9, 60.0, 61):
        clock[0] = 1000.0 + t
        assert exporter.export([object()] * 4) is SpanExportResult.FAILURE
    warnings = [r for r in caplog.records if r.getMessage() == "trace_export_failed"]
    assert [(r.batches_failed, r.spans_lost, r.next_report_in_s) for r in warnings] == [(1, 4, 60.0), (4, 16, 60.0)]
    assert (
        warnings[0].endpoint == "http://c:4318/v1/traces" and warnings[0].reason == "Transient error refused, retrying"
    )
    assert not [r for r in caplog.records if r.name == tracing.OTLP_LOGGER], "the exporter's own lines stay out"
    exporter.inner.results = [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    assert exporter.export([object()]) is SpanExportResult.SUCCESS and exporter.export([object()])
    assert [r.getMessage() for r in caplog.records].count("trace_export_recovered") == 1
    logging.getLogger(tracing.OTLP_LOGGER).warning("outside an export")  # not ours to silence
    assert caplog.records[-1].getMessage() == "outside an export"


def test_an_unreachable_collector_is_reported_once_with_the_exporters_reason(caplog, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    (exporter,) = tracing.span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        provider.get_tracer("t").start_span("s").end()
    warnings = [r for r in caplog.records if r.getMessage() == "trace_export_failed"]
    assert len(warnings) == 1 and "Failed to export" in warnings[0].reason and exporter.failed_batches == 2
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]


def test_60_seconds_of_traffic_without_a_collector_log_no_export_warning(real_server, model_path, tmp_path):
    """Two real servers side by side for 60 s of light traffic: the one without a collector logs nothing
    about exporting; the one with an unreachable collector (batches every 0.2 s, 1 s timeout) exactly
    one trace_export_failed warning, and none of the OTLP exporter's own lines."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    pinned = {"MODEL_SHA256": sha256_file(model_path), "API_AUTH": "open"}  # else: model_unpinned, api_open
    unreachable = {
        **pinned,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    logs = {"none": tmp_path / "none.log", "unreachable": tmp_path / "unreachable.log"}
    with real_server(logs["none"], pinned) as quiet, real_server(logs["unreachable"], unreachable) as failing:
        deadline, sent = time.monotonic() + 60, 0
        with requests.Session() as session:
            while time.monotonic() < deadline:
                for api in (quiet, failing):
                    assert session.post(api.url + "/predict", json=EXAMPLE, timeout=10).status_code == 200
                sent += 1
                time.sleep(0.1)
    assert sent > 200
    lines = {
        name: [json.loads(l) for l in path.read_text().splitlines() if l.startswith("{")] for name, path in logs.items()
    }
    assert [l for l in lines["none"] if "export" in json.dumps(l).lower() or l["level"] != "INFO"] == []
    reports = [l for l in lines["unreachable"] if l["level"] != "INFO"]  # warnings and errors: these alone
    assert reports and all(r["event"] == "trace_export_failed" for r in reports), reports
    report = reports[0]
    assert report["endpoint"] == f"http://127.0.0.1:{closed}/v1/traces"
    assert report["next_report_in_s"] == 60 and "Failed to export" in report["reason"]
    # one a minute: a second report only if the servers outlived the first by a minute (a loaded machine)
    times = [datetime.fromisoformat(r["timestamp"]) for r in reports]
    assert all((b - a).total_seconds() >= 59 for a, b in zip(times, times[1:])), times
