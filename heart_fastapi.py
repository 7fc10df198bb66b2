"""Serve the heart-disease model over HTTP: python heart_fastapi.py [--port 8000] [--model-path model.joblib]

Starts uvicorn with the API of heart/serving/: POST /predict (and /predict/), /predict/batch,
/explain; GET /live_check, /ready_check, /model, /metrics, /docs. Every flag overrides its
environment variable (12-factor), so `uvicorn heart_fastapi:app` and containers configure the
same server without flags. A bad value, from a flag or the environment, exits 2 with one line
naming it. The model is sha256-verified and parity-checked after start-up; /ready_check
answers 503 with the reason until then. SIGTERM (or Ctrl-C) stops accepting connections and
lets in-flight requests finish (up to --graceful-timeout seconds); requests already sent on an
idle keep-alive connection are answered too (heart/serving/protocol.py, which also bounds
header size and the time a client may take to send a request). With METRICS_PORT set,
/metrics is served on that port only. See docs/serving.md, "Reliability".

Tracing follows the standard OpenTelemetry variables: OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over
HTTP), OTEL_TRACES_EXPORTER=console, none by default. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager

from heart import cli
from heart.artifact import ModelError
from heart.serving.settings import FLAGS, LOG_LEVELS, Settings, SettingsError, load_settings


def parse_args(argv) -> argparse.Namespace:
    """The flags, validated with the environment into args.settings (also copied onto args)."""
    p = cli.parser(__doc__)
    fields = Settings.model_fields

    def add(name: str, *aliases: str, **kw) -> None:
        f = fields[name]
        kw.setdefault("help", f.description)
        default = {None: "unset", True: "true", False: "false"}.get(f.default, f.default)
        kw["help"] += f" (env {f.validation_alias}; default {default})"
        p.add_argument(FLAGS[name], *aliases, dest=name, default=argparse.SUPPRESS, **kw)

    add("host")
    add("port")
    add("model_path", "--model")
    add("workers")
    add("log_level", metavar="{" + ",".join(LOG_LEVELS) + "}")
    add("prediction_log")
    add("log_inputs", metavar="{true,false}")
    add("engine", metavar="{onnx,sklearn}")
    add("drift_window")
    add("drift_interval")
    add("graceful_timeout", metavar="SECONDS")
    add("request_timeout", metavar="SECONDS")
    add("metrics_port", metavar="PORT")
    add("model_sha256", metavar="SHA256")
    p.add_argument("--access-log", action="store_true", help="also log every HTTP request (costs throughput)")
    args = p.parse_args(argv)
    try:
        args.settings = load_settings({name: getattr(args, name) for name in FLAGS if hasattr(args, name)})
        args.settings.bearer_tokens()  # an empty token Secret is an error now, not an open API later
    except SettingsError as e:
        p.exit(cli.EXIT_BAD_INPUT, f"error: {e}\n")
    vars(args).update({name: getattr(args.settings, name) for name in FLAGS})
    return args


def main(argv=None) -> int:
    import uvicorn

    from heart.telemetry import uvicorn_log_config

    args = parse_args(argv)
    settings = args.settings
    if not settings.model_path.is_file():
        raise ModelError(f"{settings.model_path}: model file not found (run `make train` or `python train.py`)")
    check_prediction_log(settings)  # here, before any worker exists: no supervisor restarting them forever
    # Workers are separate processes that call create_app(): they get the validated settings
    # through the same variables a container would set (see Settings.to_env).
    for name, value in settings.to_env().items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    with multiprocess_metrics(settings.workers):
        metrics = _supervisor_metrics(settings)
        try:
            uvicorn.run(
                "heart_fastapi:create_app",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=settings.workers,
                log_level=settings.log_level,
                log_config=uvicorn_log_config(settings.log_level, args.access_log),
                access_log=args.access_log,
                timeout_graceful_shutdown=settings.graceful_timeout,
                server_header=False,
                http="heart.serving.protocol:HardenedProtocol",
            )
        finally:
            if metrics is not None:
                metrics.stop()
    return 0


@contextmanager
def multiprocess_metrics(workers: int):
    """Several workers share one /metrics: prometheus_client's multiprocess mode, in a fresh
    directory (stale files of an earlier run would be summed in), removed after the last worker.
    One worker keeps the plain in-memory registry (no per-sample file writes)."""
    from heart.telemetry import MULTIPROC_ENV

    if workers == 1:
        yield
        return
    path = tempfile.mkdtemp(prefix="heart-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers are spawned after this: they inherit it
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _supervisor_metrics(settings: Settings):
    """With several workers, one METRICS_PORT listener in the supervisor, summing the workers
    (prometheus_client's multiprocess mode); one worker serves its own (heart.serving.app)."""
    if settings.metrics_port is None or settings.workers == 1:
        return None
    from heart.serving.metrics_server import MetricsServer, multiprocess_registry

    registry = multiprocess_registry()
    if registry is None:
        print(
            f"error: METRICS_PORT with WEB_CONCURRENCY={settings.workers} needs PROMETHEUS_MULTIPROC_DIR "
            "(one port cannot serve several workers' separate registries)",
            file=sys.stderr,
        )
        raise SystemExit(cli.EXIT_BAD_INPUT)
    return MetricsServer(settings.metrics_port, registry, settings.host)


def create_app():
    """The app factory (uvicorn --factory heart_fastapi:create_app): settings read once, from the environment."""
    from heart.serving.app import create_app as build

    try:
        settings = load_settings()
        check_prediction_log(settings)
        return build(settings)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(cli.EXIT_BAD_INPUT) from None


def check_prediction_log(settings: Settings) -> None:
    """A PREDICTION_LOG that cannot be appended to: exit 2 with one line naming it."""
    if settings.prediction_log is None:
        return
    from heart.predlog import PredictionLog, PredictionLogError

    try:
        PredictionLog(settings.prediction_log).close()
    except PredictionLogError as e:
        print(f"error: PREDICTION_LOG (flag --prediction-log) {e.strerror}", file=sys.stderr)
        raise SystemExit(cli.EXIT_BAD_INPUT) from None


def __getattr__(name: str):
    """`uvicorn heart_fastapi:app`: the app is built on first access, not at import."""
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
