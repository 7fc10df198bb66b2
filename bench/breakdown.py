"""Where a /predict spends its time, in process: python -m bench.breakdown [--requests 20000] [--rounds 5]

Drives the ASGI app directly (no socket, no HTTP parsing: uvicorn's share is what `make bench`
adds) with one patient per request, for six apps, each adding one part of the hot path to the one
before; every one of them is the real app from heart.serving.app.create_app with the later parts
switched off:

  bare        the route reads the body and answers a constant (the middleware stack in place)
  validation  + the body parsed and validated (Patient) and turned into model input
  inference   + the real /predict route: ONNX Runtime, the decision, the answer
  record      + the prediction record (the PREDICTION_LOG file and the JSON log line)
  metrics     + the Prometheus metrics (request, inference, classes, imputed, live drift window)
  tracing     + the server span and the inference span, every request's recorded (as with a
                collector configured; the export itself is not in the process): the whole app
  instrumentor  (for comparison) the whole app traced by opentelemetry-instrumentation-fastapi, as
                before issue 22, when it is installed (requirements-dev.txt)
  bare_fastapi  (for comparison) `make bench`'s bare endpoint (bench/servers.py), in process too

Prints µs per request (the best round's mean) and the step each part adds; --docs writes the table
into docs/performance.md between its bench:breakdown markers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
from starlette.routing import request_response

from heart import cli
from heart.analyses.report import format_table
from heart.serving.contract import EXAMPLE, Patient
from heart.serving.inference import to_rows
from heart.serving.middleware import parse_body
from heart.serving.routes import json_response
from heart.serving.settings import load_settings

LEVELS = ("bare", "validation", "inference", "record", "metrics", "tracing")
ANSWER = {"predicted_class": 0, "label": "no heart disease", "probability": 0.5}


class NoMetrics:
    """Metrics that count nothing: the apps before "metrics"."""

    def observe_request(self, *a):
        pass

    observe_inference = count_classes = count_imputed = observe_request


async def bare(request):
    await request.body()
    return json_response(ANSWER)


async def validation(request):
    to_rows([await parse_body(request, Patient)])
    return json_response(ANSWER)


def build(level: str, model_path: Path, log_file: Path):
    """The app with the parts after `level` switched off ("instrumentor": traced as before;
    "bare_fastapi": bench/servers.py's bare endpoint)."""
    if level == "bare_fastapi":
        from bench.servers import bare_app

        app = bare_app()
        app.middleware_stack = app.build_middleware_stack()
        return app
    from opentelemetry.trace import NoOpTracer

    from heart.serving.app import create_app
    from heart.serving.tracing import tracer_provider

    settings = load_settings({"model_path": model_path, "prediction_log": log_file, "log_inputs": True})
    recording = tracer_provider("breakdown", exporters=[])  # every span recorded, as with a collector
    app = create_app(settings, recording, background_load=False, configure_logging=True)
    app.state.serving.load()  # the lifespan's work (no ASGI lifespan here)
    rank = LEVELS.index(level) if level in LEVELS else len(LEVELS)
    routes = {"bare": bare, "validation": validation}
    if level in routes:  # the plain route serve_hot_paths_plainly put first
        route = next(r for r in app.router.routes if getattr(r, "path", None) == "/predict")
        route.endpoint, route.app = routes[level], request_response(routes[level])
    inference = app.state.inference
    if rank < LEVELS.index("record"):
        inference.writer.enabled = lambda: False
    if rank < LEVELS.index("metrics"):
        inference.metrics, inference.drift_window = NoMetrics(), None
    if rank < LEVELS.index("tracing"):
        inference.tracer = NoOpTracer()
    if level == "instrumentor":
        _instrument_as_before(app)
        return app
    stack = app.build_middleware_stack()  # ObservabilityMiddleware over the rest
    if rank < LEVELS.index("metrics"):
        stack.metrics = NoMetrics()
    if rank < LEVELS.index("tracing"):
        stack.spans = None
    app.middleware_stack = stack
    return app


def _instrument_as_before(app) -> None:
    """The metrics middleware inside Starlette's stack and FastAPIInstrumentor around it, as before issue 22."""
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    from heart.serving.middleware import ObservabilityMiddleware
    from heart.serving.routes import HOT_PATHS

    app.build_middleware_stack = FastAPI.build_middleware_stack.__get__(app)
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics, templates={p: p for p in HOT_PATHS})
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=app.state.tracer_provider,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
        excluded_urls="metrics,live_check,ready_check",
    )
    app.middleware_stack = app.build_middleware_stack()


async def drive(app, n: int) -> float:
    """Seconds for n sequential POST /predict through the app's ASGI callable."""
    body = orjson.dumps(EXAMPLE)
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asgi = app.middleware_stack
    t0 = time.perf_counter()
    for _ in range(n):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "app": app,
            "state": {},
        }
        await asgi(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"/predict answered {sent[0]['status']}: {sent[-1].get('body', b'')[:200]!r}")
        sent.clear()
    return time.perf_counter() - t0


def measure(levels, model_path: Path, requests: int, rounds: int) -> dict[str, float]:
    """µs per request of each app: the best of `rounds` rounds, the apps interleaved in each round."""
    tmp = Path(tempfile.mkdtemp(prefix="heart-breakdown-"))
    apps = {level: build(level, model_path, tmp / "predictions.jsonl") for level in levels}
    for level, app in apps.items():
        if level != "bare_fastapi" and not app.state.serving.ready:
            raise RuntimeError(f"{level}: the model did not load: {app.state.serving.reason}")
    best = dict.fromkeys(levels, float("inf"))
    loop = asyncio.new_event_loop()
    try:
        for app in apps.values():  # warm up: imports, first-call caches
            loop.run_until_complete(drive(app, 500))
        gc.collect()
        gc.freeze()
        for _ in range(rounds):
            for level, app in apps.items():
                best[level] = min(best[level], loop.run_until_complete(drive(app, requests)) / requests * 1e6)
    finally:
        loop.close()
    return best


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--model-path", default="model.zip")
    p.add_argument("--requests", type=cli.integer(100), default=20_000, help="requests per app and round")
    p.add_argument("--rounds", type=cli.integer(1), default=5, help="rounds; the best is reported")
    p.add_argument("--docs", default="", help="write the table into this file between its bench:breakdown markers")
    return p.parse_args(argv)


LABELS = {
    "instrumentor": "the whole app, traced by FastAPIInstrumentor instead (before issue 22)",
    "bare_fastapi": "`make bench`'s bare endpoint (FastAPI, the same request model, a constant answer)",
}


def table(best: dict[str, float], markdown: bool = False) -> str:
    """Each app's µs per request and what its part adds to the one before (the comparisons add nothing)."""
    rows, previous = [], None
    for level, us in best.items():
        own = level in LEVELS
        added = f"{us - previous:+.1f}" if own and previous is not None else ""
        rows.append([LABELS.get(level, level), f"{us:.1f}", added])
        previous = us if own else previous
    headers = ["app (each adds one part)", "µs per request", "added"]
    if not markdown:
        return format_table(headers, rows)
    lines = ["| " + " | ".join(headers) + " |", "| --- | ---: | ---: |"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main(argv=None) -> int:
    args = parse_args(argv)
    levels = [*LEVELS, "bare_fastapi"]
    try:
        import opentelemetry.instrumentation.fastapi  # noqa: F401

        levels.append("instrumentor")
    except ImportError:
        pass
    logging.getLogger("heart").setLevel(logging.WARNING)  # startup lines; the prediction lines stay on
    logging.getLogger("heart.predictions").setLevel(logging.INFO)
    load = os.getloadavg()
    with open(os.devnull, "w") as devnull:
        stdout, sys.stdout = sys.stdout, devnull  # the JSON log lines: written, not shown
        try:
            best = measure(levels, Path(args.model_path), args.requests, args.rounds)
        finally:
            sys.stdout = stdout
    text = table(best)
    in_process = best["tracing"] and best["bare_fastapi"] / best["tracing"]
    note = (
        f"{os.cpu_count()} cores, load average {load[0]:.2f} at the start and {os.getloadavg()[0]:.2f} at the end; "
        f"{args.requests:,} requests per app and round, best of {args.rounds} rounds "
        f"(`python -m bench.breakdown --requests {args.requests} --rounds {args.rounds}`)"
    )
    ratio = (
        f"In process, the whole app takes {1 / in_process:.2f}x the bare endpoint's time ({in_process:.2f}x its rate)."
    )
    print(text + "\n\n" + ratio + "\n" + note)
    if args.docs:
        from bench.docs import replace_block

        replace_block(args.docs, "bench:breakdown", table(best, markdown=True) + "\n\n" + ratio + " " + note + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
