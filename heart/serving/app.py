"""create_app: the prediction API wired from its parts (see heart/serving/__init__.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from .. import __version__
from ..predlog import PredictionWriter
from . import errors, feedback, routes, v2
from .auth import BearerAuth
from .inference import Inference
from .live_drift import live_drift_for
from .logs import STDOUT_HANDLER, setup_logging
from .metrics import Metrics, mark_worker_dead
from .metrics_server import MetricsServer
from .middleware import MAX_BODY_BYTES, BodyLimit, ObservabilityMiddleware
from .pages import install_front_doors
from .settings import Settings, load_settings
from .state import ServingState
from .table_writer import TableWriter, table_writer_for
from .tracing import SERVICE_NAME, ServerSpans, tracer_provider

log = logging.getLogger(__name__)
TRACE_FLUSH_SECONDS = 5.0  # at most this long flushing spans at shutdown (and, at the same time, the inference table)


def create_app(
    settings: Settings | None = None,
    tracer_provider_: TracerProvider | None = None,
    *,
    background_load: bool = True,
    configure_logging: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the API; `settings` default to the environment's (read once, here).

    The keyword arguments are for tests and tools, never configuration: load the model before
    returning (background_load=False), leave logging alone, or a smaller body limit. A TracerProvider may be passed in
    (tests use an in-memory exporter); otherwise one is made from the OTEL_* environment
    variables and shut down (flushed) with the app.
    """
    settings = settings or load_settings()
    if configure_logging:
        setup_logging(settings.log_level)
    provider = tracer_provider_ or tracer_provider(__version__)
    metrics = Metrics()
    state = ServingState(settings=settings, metrics=metrics)
    table = table_writer_for(settings, state, metrics)
    writer = PredictionWriter(settings.prediction_log, metrics.registry, STDOUT_HANDLER, table=table)
    app = FastAPI(
        title="Heart-disease prediction API",
        version=__version__,
        lifespan=_lifespan(state, writer, table, provider if tracer_provider_ is None else None, background_load),
        docs_url=None,
        redoc_url=None,  # served from local assets: pages.install_front_doors
        description="Predicts angiographic heart disease from 13 clinical features "
        "(UCI Cleveland data). Not a medical device.",
    )
    app.state.serving = state
    app.state.metrics = metrics
    app.state.tracer_provider = provider
    app.state.table = table
    app.state.live_drift = drift = live_drift_for(settings, state, metrics)
    tracer = provider.get_tracer("heart.serving", __version__)
    app.state.inference = Inference(
        state, metrics, tracer, writer, settings.log_inputs, drift.window if drift else None
    )
    _layers(app, settings, max_body_bytes)
    _routes(app, settings, state)
    _observed(app, metrics, tracer)
    return app


def _layers(app: FastAPI, settings: Settings, max_body_bytes: int) -> None:
    """What every request passes through, outermost last: auth (deny by default: every route but
    auth.PUBLIC, including routes added later), body limits, errors (and _observed, outside them)."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, max_header_bytes=settings.max_header_bytes)
    tokens = settings.bearer_tokens()
    app.state.auth = "tokens" if tokens else "open"
    if tokens:
        app.add_middleware(BearerAuth, tokens=tokens)
    errors.install(app)


def _observed(app: FastAPI, metrics: Metrics, tracer) -> None:
    """ObservabilityMiddleware (span, metrics, x-trace-id) outside even Starlette's error middleware,
    where opentelemetry-instrumentation-fastapi put its span, so an unhandled error's 500 is traced
    and counted too. The stack is built on the first request, when every route is in place."""
    build = app.build_middleware_stack

    def build_middleware_stack():
        templates = {p: p for r in app.router.routes if (p := getattr(r, "path", None)) and "{" not in p}
        return ObservabilityMiddleware(build(), metrics, templates, ServerSpans(tracer, templates))

    app.build_middleware_stack = build_middleware_stack


def _routes(app: FastAPI, settings: Settings, state: ServingState) -> None:
    """The routers' APIRoutes go straight into the app's table: FastAPI 0.165's include_router
    adds a lazily resolved group instead, which has no .path (route labels, deploy checks)."""
    app.router.routes.extend(
        [*routes.predictions.routes, *feedback.router.routes, *routes.operations.routes, *v2.router.routes]
    )
    if settings.metrics_port is not None:  # /metrics is served on METRICS_PORT only: off the public port
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/metrics"]
    install_front_doors(app, lambda: routes.about(state))
    routes.serve_hot_paths_plainly(app)
    app.openapi = lambda: routes.openapi(app)


def _lifespan(
    state: ServingState,
    writer: PredictionWriter,
    table: TableWriter,
    own_provider: TracerProvider | None,
    background: bool,
):
    """Start-up loads the model (in the background unless told otherwise); shutdown flushes."""
    settings = state.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(
            "startup",
            extra={
                "service": SERVICE_NAME,
                "version": __version__,
                "pid": os.getpid(),
                "model_path": str(settings.model_path),
                "log_inputs": settings.log_inputs,
                "prediction_log": str(settings.prediction_log or ""),
                "auth": app.state.auth,
                "inference_table": table.url.split(":", 1)[0].split("+")[0],
            },
        )
        # One worker serves its own registry; with more, the supervisor serves them all (heart_fastapi.py).
        metrics_server = (
            MetricsServer.for_settings(settings, state.metrics.registry)
            if settings.metrics_port is not None and settings.workers == 1
            else None
        )
        task = asyncio.create_task(asyncio.to_thread(state.load)) if background else None
        if task is None:
            state.load()
        drift = app.state.live_drift
        if drift is not None:
            drift.start()
        table.start()
        try:
            yield
        finally:
            log.info("shutdown", extra={"service": SERVICE_NAME, "pid": os.getpid()})
            if metrics_server is not None:
                metrics_server.stop()
            if drift is not None:
                drift.stop()
            mark_worker_dead()
            if task is not None and not task.done():
                await asyncio.wait([task], timeout=30)
            writer.close()
            _flush(own_provider, table)

    return lifespan


def _flush(provider: TracerProvider | None, table: TableWriter) -> None:
    """Flush the spans and the inference table's last rows side by side, within TRACE_FLUSH_SECONDS:
    never hold up shutdown for an unreachable collector or database."""
    deadline = time.monotonic() + TRACE_FLUSH_SECONDS
    flusher = None
    if provider is not None:
        flusher = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        flusher.start()
    table.stop(TRACE_FLUSH_SECONDS)
    if flusher is not None:
        flusher.join(max(0.0, deadline - time.monotonic()))
        if flusher.is_alive():
            log.warning("trace_flush_timeout", extra={"seconds": TRACE_FLUSH_SECONDS})
