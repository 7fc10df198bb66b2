"""OpenTelemetry tracing, configured from the standard OTEL_* variables, never from code edits.

Traces go to any OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, to the console when
OTEL_TRACES_EXPORTER=console, and nowhere otherwise: no exporter, no export warnings, and no span
recorded (each still has ids, so every response and log line carries a trace_id). A collector that is set but
unreachable is reported by one warning per EXPORT_WARNING_SECONDS (ReportingExporter), not by
the OTLP exporter's warning per retry. Each app gets its own TracerProvider, so tests can build many.

The server span of each request (ServerSpans, started by heart.serving.middleware's
ObservabilityMiddleware) is built on the OpenTelemetry API directly, as
opentelemetry-instrumentation-fastapi built it (name, kind, parent, status and its HTTP semantic
convention attributes, the stable "old" set), at a fraction of the cost: the sampler decides
first, with no attributes; they are collected only for a span that records; the W3C traceparent
(whatever OTEL_PROPAGATORS configures) is extracted only when the request carries it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICE_NAME = "heart-disease-api"
UNTRACED_PATHS = frozenset({"/metrics", "/live_check", "/ready_check"})  # probes and scrapes: no span
EXPORT_WARNING_SECONDS = 60.0  # at most one warning this often about spans a collector did not take
OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
log = logging.getLogger(__name__)


def span_exporters(environ: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters the standard OTEL_* variables ask for (OTEL_TRACES_EXPORTER, OTLP endpoints)."""
    endpoint = _traces_endpoint(environ)
    default = "otlp" if endpoint else "none"
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", default).split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("otel_protocol_unsupported", extra={"protocol": protocol, "using": "http/protobuf"})
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter(endpoint=endpoint)  # headers, timeout (and no endpoint: localhost) from the env
            exporters.append(ReportingExporter(otlp, getattr(otlp, "_endpoint", endpoint or "")))
        else:
            log.warning("otel_exporter_unknown", extra={"exporter": name, "known": "otlp, console, none"})
    return exporters


def _traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL as the SDK resolves it: the signal's own endpoint as given, else the
    base endpoint + /v1/traces."""
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None


def tracer_provider(
    service_version: str, exporters: Iterable[SpanExporter] | None = None, environ: Mapping[str, str] = os.environ
) -> TracerProvider:
    """A TracerProvider with service.name/service.version; exporters default to the env's choice.

    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still apply; the sampler follows
    OTEL_TRACES_SAMPLER as the SDK reads it. With no exporter configured, no span is recorded
    (ALWAYS_OFF): recording one costs about as much as the prediction (docs/performance.md), and
    nothing would read it. The ids are still made, so replies and log lines keep their trace_id.
    """
    resource = Resource.create(
        {"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE_NAME), "service.version": service_version}
    )
    if exporters is None:
        exporters = span_exporters(environ)
        if not exporters:  # nothing would receive a span: none is recorded, each still has its ids
            return TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_ids() -> tuple[str, str]:
    """(trace_id, span_id) of the active span as lowercase hex, or fresh random ids if there is none."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return os.urandom(16).hex(), os.urandom(8).hex()


# --------------------------------------------------------------------------- the server span

KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
REDACTED_PARAMS = re.compile(r"(^|&)(AWSAccessKeyId|Signature|sig|X-Goog-Signature)=[^&]*")


class ServerSpans:
    """The SERVER span of each HTTP request, named "<method> <route template>" (the method alone when
    no route matched), child of the caller's span when the request carries a traceparent."""

    def __init__(self, tracer: trace.Tracer, templates: Mapping[str, str], untraced: Iterable[str] = UNTRACED_PATHS):
        """templates: path -> route template of the routes without parameters, known before routing."""
        self.tracer, self.templates, self.untraced = tracer, templates, frozenset(untraced)
        self.fields = frozenset(f.encode() for f in propagate.get_global_textmap().fields)

    def start(self, scope) -> tuple[trace.Span, object] | None:
        """(span, context to attach) for a traced request, None for an untraced path."""
        path = scope["path"]
        if path in self.untraced:
            return None
        method = scope["method"]
        template = self.templates.get(path)
        label = method if method in KNOWN_METHODS else "HTTP"
        parent = self._parent(scope["headers"])
        span = self.tracer.start_span(f"{label} {template}" if template else label, parent, SpanKind.SERVER)
        if span.is_recording():
            span.set_attributes(self._attributes(scope, path, method, template))
        return span, trace.set_span_in_context(span, parent)

    def finish(self, span: trace.Span, scope, status: int, error: BaseException | None = None) -> None:
        """The route (known once routed), the status, the exception if one escaped; then end the span."""
        if span.is_recording():
            if scope["path"] not in self.templates:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    method = scope["method"]
                    span.update_name(f"{method if method in KNOWN_METHODS else 'HTTP'} {route}")
                    span.set_attribute("http.route", route)
            span.set_attribute("http.status_code", status)
            if error is not None:
                span.record_exception(error)
            if status >= 500 or status < 100:
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    def _parent(self, headers) -> object | None:
        """The caller's context, extracted only when the request carries the propagator's headers."""
        fields = self.fields
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in fields}
        return propagate.extract(carrier) if carrier else None

    @staticmethod
    def _attributes(scope, path: str, method: str, template: str | None) -> dict:
        """The HTTP semantic-convention attributes opentelemetry-instrumentation-asgi sets (its default set)."""
        server = scope.get("server") or ("0.0.0.0", 80)
        host = server[0] if str(server[1]) == "80" else f"{server[0]}:{server[1]}"
        host_headers = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
        agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
        query = scope.get("query_string") or b""
        url = f"{scope.get('scheme', 'http')}://{host_headers[0] if host_headers else host}{path}"
        if query:
            url += "?" + REDACTED_PARAMS.sub(r"\1\2=REDACTED", unquote(query.decode("utf8")))
        attributes = {
            "http.scheme": scope.get("scheme", "http"),
            "http.host": host,
            "net.host.port": server[1],
            "http.flavor": scope.get("http_version"),
            "http.target": path,
            "http.url": url,
            "http.method": method if method in KNOWN_METHODS else "_OTHER",
            "http.server_name": ",".join(host_headers) or None,
            "http.user_agent": agent,
            "http.route": template,
        }
        client = scope.get("client")
        if client:
            attributes["net.peer.ip"], attributes["net.peer.port"] = client[0], client[1]
        return {k: v for k, v in attributes.items() if v is not None}


# --------------------------------------------------------------------------- export failures


class _Captured(threading.local):
    active = False  # inside ReportingExporter.export, on this thread
    last = ""  # the OTLP exporter's last message, kept out of the log


_captured = _Captured()


class _CaptureOtlpMessages(logging.Filter):
    """Keeps the OTLP exporter's own messages (one per retry) out of the log while ReportingExporter
    exports, remembering the last one as the reason it reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _captured.active:
            _captured.last = record.getMessage()
            return False
        return True


_OTLP_FILTER = _CaptureOtlpMessages()


class ReportingExporter(SpanExporter):
    """Wraps an exporter: its failures make one warning per `interval` seconds (trace_export_failed:
    the endpoint, batches and spans lost since the last report, the last reason), and its first
    success after them an info line (trace_export_recovered)."""

    def __init__(self, inner: SpanExporter, endpoint: str, interval: float = EXPORT_WARNING_SECONDS, clock=None):
        self.inner, self.endpoint, self.interval = inner, endpoint, interval
        self.clock = clock or time.monotonic
        self.failed_batches = self.lost_spans = 0  # since the last warning
        self.failing = False
        self._warned_at: float | None = None
        self._lock = threading.Lock()
        otlp_logger = logging.getLogger(OTLP_LOGGER)
        if _OTLP_FILTER not in otlp_logger.filters:
            otlp_logger.addFilter(_OTLP_FILTER)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _captured.active, _captured.last = True, ""
        try:
            result = self.inner.export(spans)
            reason = _captured.last
        except Exception as e:  # noqa: BLE001 - an exporter bug must not kill the batch thread
            result, reason = SpanExportResult.FAILURE, f"{type(e).__name__}: {e}"
        finally:
            _captured.active = False
        self._record(result is SpanExportResult.SUCCESS, len(spans), reason)
        return result

    def _record(self, ok: bool, n: int, reason: str) -> None:
        with self._lock:
            if ok:
                if self.failing:
                    log.info("trace_export_recovered", extra={"endpoint": self.endpoint})
                self.failing = False
                return
            self.failing = True
            self.failed_batches += 1
            self.lost_spans += n
            now = self.clock()
            if self._warned_at is not None and now - self._warned_at < self.interval:
                return
            log.warning(
                "trace_export_failed",
                extra={
                    "endpoint": self.endpoint,
                    "batches_failed": self.failed_batches,
                    "spans_lost": self.lost_spans,
                    "reason": reason or "the exporter reported a failure",
                    "next_report_in_s": self.interval,
                },
            )
            self._warned_at, self.failed_batches, self.lost_spans = now, 0, 0

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
