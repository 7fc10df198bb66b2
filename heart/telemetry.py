"""Observability for the API: OpenTelemetry traces, JSON logs, Prometheus metrics (the prediction log: heart/predlog.py).

Everything is configured from the standard environment, never from code edits, and nothing
ties the service to one vendor: traces go to any OTLP collector when
OTEL_EXPORTER_OTLP_ENDPOINT is set, to the console when OTEL_TRACES_EXPORTER=console, and
nowhere otherwise (spans still exist, so every response and log line carries a trace_id).
Each app gets its own TracerProvider and metrics registry, so tests can build many apps.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from pythonjsonlogger.json import JsonFormatter

from .schema import FEATURE_NAMES

SERVICE_NAME = "heart-disease-api"
log = logging.getLogger("heart.telemetry")

# ---------------------------------------------------------------------------------------- tracing


def span_exporters(environ: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters the standard OTEL_* variables ask for (OTEL_TRACES_EXPORTER, OTLP endpoints)."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
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

            exporters.append(OTLPSpanExporter())  # reads the endpoint, headers and timeout from the env
        else:
            log.warning("otel_exporter_unknown", extra={"exporter": name, "known": "otlp, console, none"})
    return exporters


def tracer_provider(
    service_version: str, exporters: Iterable[SpanExporter] | None = None, environ: Mapping[str, str] = os.environ
) -> TracerProvider:
    """A TracerProvider with service.name/service.version; exporters default to the env's choice.

    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still apply; the sampler follows
    OTEL_TRACES_SAMPLER as the SDK reads it.
    """
    resource = Resource.create(
        {"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE_NAME), "service.version": service_version}
    )
    provider = TracerProvider(resource=resource)
    for exporter in span_exporters(environ) if exporters is None else exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_ids() -> tuple[str, str]:
    """(trace_id, span_id) of the active span as lowercase hex, or fresh random ids if there is none."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return os.urandom(16).hex(), os.urandom(8).hex()


# ---------------------------------------------------------------------------------------- logging

LOG_FIELDS = "%(levelname)s %(name)s %(message)s"


def json_formatter() -> JsonFormatter:
    """One JSON object per line: timestamp, level, logger, event, then the record's extra fields."""
    return JsonFormatter(
        LOG_FIELDS,
        rename_fields={"levelname": "level", "message": "event", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=False,
    )


class StdoutHandler(logging.StreamHandler):
    """A StreamHandler on whatever sys.stdout is now (test capture and redirections keep working)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


STDOUT_HANDLER = StdoutHandler()  # heart.predlog writes its lines through this handler's lock
STDOUT_HANDLER.setFormatter(json_formatter())


def setup_logging(level: str = "info") -> None:
    """Send the package's (and uvicorn's) logs to stdout as JSON lines; idempotent."""
    for name in ("heart", "uvicorn", "uvicorn.error", "opentelemetry"):
        logger = logging.getLogger(name)
        if STDOUT_HANDLER not in logger.handlers:
            logger.addHandler(STDOUT_HANDLER)
        # the SDK's own messages (e.g. an unreachable collector) only from warnings up
        logger.setLevel(level.upper() if name != "opentelemetry" else max(logging.WARNING, _level(level)))
        logger.propagate = False


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO


def uvicorn_log_config(level: str = "info", access_log: bool = False) -> dict:
    """uvicorn's dictConfig, with its own records as JSON lines on stdout like ours."""
    fmt = {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": LOG_FIELDS,
        "timestamp": True,
        "rename_fields": {"levelname": "level", "message": "event", "name": "logger"},
    }
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": fmt},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["json"] if access_log else [], "level": level.upper(), "propagate": False},
        },
    }


# ---------------------------------------------------------------------------------------- metrics

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by heart_fastapi.py when it starts several workers


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app).

    With several workers (PROMETHEUS_MULTIPROC_DIR set), prometheus_client keeps every value in
    a per-process file of that directory and metrics_payload() merges them: counters and
    histograms are summed over the workers; each gauge says how (multiprocess_mode). The drift
    gauges describe one worker's window: the most recently computed one is exported.
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "heart_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "heart_http_request_duration_seconds",
            "HTTP request latency (server side)",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "heart_predictions_total", "Patients predicted, by predicted class", ["predicted_class"], registry=r
        )
        self.inference = Histogram(
            "heart_inference_duration_seconds",
            "Model inference time per call",
            ["endpoint", "engine"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.errors = Counter("heart_prediction_errors_total", "Failures inside the model", ["endpoint"], registry=r)
        self.model_info = Gauge(
            "heart_model_info",
            "The model being served (value 1)",
            ["model_version", "engine"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "heart_ready",
            "1 once the model is loaded, verified and parity-checked (with several workers: all of them)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.imputed = Counter(
            "heart_imputed_fields_total", "Patients whose feature was missing and imputed", ["feature"], registry=r
        )
        self.client_disconnects = Counter(
            "heart_client_disconnects_total",
            "Requests the client abandoned before they were read (also a 499 in heart_http_requests_total)",
            registry=r,
        )
        self._by_class = {c: self.predictions.labels(predicted_class=str(c)) for c in (0, 1)}
        self._imputed = {name: self.imputed.labels(feature=name) for name in FEATURE_NAMES}
        self._children: dict[tuple, tuple] = {}
        self._drift_gauges(r)

    def _drift_gauges(self, r: CollectorRegistry) -> None:
        """Set by heart/serving/live_drift.py from the window of recent inputs."""
        mode = "livemostrecent"
        self.drift_statistic = Gauge(
            "heart_drift_statistic",
            "Drift test statistic per feature over the window "
            "of recent inputs (KS D for continuous features, chi-squared otherwise)",
            ["feature"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_p_adjusted = Gauge(
            "heart_drift_p_value_adjusted",
            "Benjamini-Hochberg adjusted p-value per feature over the window (drifted below 0.05)",
            ["feature"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_share = Gauge(
            "heart_drift_drifted_share",
            "Share of the features drifted in the window",
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_rows = Gauge(
            "heart_drift_window_rows",
            "Rows in the window the drift gauges were computed on",
            registry=r,
            multiprocess_mode=mode,
        )
        self.positive_rate = Gauge(
            "heart_predicted_positive_rate",
            "Share of the window's patients predicted positive",
            registry=r,
            multiprocess_mode=mode,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # cache the labelled children: .labels() costs more than .inc()
            labels = dict(route=route, method=method, status=str(status))
            children = self._children[key] = (self.requests.labels(**labels), self.latency.labels(**labels))
        children[0].inc()
        children[1].observe(seconds)

    def observe_inference(self, endpoint: str, engine: str, seconds: float) -> None:
        key = ("inference", endpoint, engine)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.inference.labels(endpoint=endpoint, engine=engine)
        child.observe(seconds)

    def count_classes(self, ones: int, total: int) -> None:
        if ones:
            self._by_class[1].inc(ones)
        if total - ones:
            self._by_class[0].inc(total - ones)

    def count_imputed(self, imputed: list[list[str]]) -> None:
        """Per feature, the patients whose value was imputed (most patients have none: no work)."""
        for names in imputed:
            for name in names:
                self._imputed[name].inc()


def multiprocess_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The directory of the per-worker metric files, or None in single-process mode."""
    return environ.get(MULTIPROC_ENV) or None


def metrics_payload(metrics: Metrics) -> bytes:
    """The text exposition of /metrics (and of the metrics port): every worker's values merged
    in multiprocess mode, else this app's registry (no file I/O on the single-process path)."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)


def mark_worker_dead(pid: int | None = None) -> None:
    """A worker's exit: its live* gauges (readiness, model info, drift) leave the merge; counters stay."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid or os.getpid())


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): per-request metrics by route template and an
    x-trace-id response header. `static_paths` are routes without parameters that the router
    does not name in the scope (plain Starlette routes): their path is their template."""

    def __init__(self, app, metrics: Metrics, static_paths: Iterable[str] = ()):
        self.app = app
        self.metrics = metrics
        self.static_paths = frozenset(static_paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_with_trace(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ctx = trace.get_current_span().get_span_context()
                if ctx.is_valid:
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-trace-id", format(ctx.trace_id, "032x").encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            path = getattr(scope.get("route"), "path", None)
            if path is None:  # unmatched paths share one label: no unbounded label values
                path = scope["path"] if scope.get("path") in self.static_paths else "<unmatched>"
            self.metrics.observe_request(path, scope.get("method", ""), status, time.perf_counter() - start)
