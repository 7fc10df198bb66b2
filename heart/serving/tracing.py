"""OpenTelemetry tracing, configured from the standard OTEL_* variables, never from code edits.

Traces go to any OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set, to the console when
OTEL_TRACES_EXPORTER=console, and nowhere otherwise (spans still exist, so every response and
log line carries a trace_id). Each app gets its own TracerProvider, so tests can build many.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

SERVICE_NAME = "heart-disease-api"
log = logging.getLogger(__name__)


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
