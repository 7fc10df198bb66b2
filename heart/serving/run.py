"""The server process: flags derived from Settings, checks before any worker starts, the workers.

heart_fastapi.py is a shell over main(). Every setting of heart.serving.settings is a flag
(`--` + its name) that overrides its environment variable, so flags, the environment and the
container configure the same server. With several workers, this process is uvicorn's
supervisor: it owns the multiprocess metrics directory and, with METRICS_PORT, the one
metrics listener that sums the workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing

from .. import cli
from ..artifact import ModelError
from .settings import FLAGS, Settings, SettingsError, load_settings

APP_FACTORY = "heart.serving.run:app_from_environment"  # what each uvicorn worker calls
USAGE = """Serve the heart-disease model over HTTP: python heart_fastapi.py [--port 8000] [--model-path model.zip]

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


def parse_args(argv) -> argparse.Namespace:
    """The flags, validated with the environment into args.settings (also copied onto args)."""
    p = cli.parser(USAGE)
    for name, flag in FLAGS.items():
        p.add_argument(flag, *_aliases(name), dest=name, default=argparse.SUPPRESS, **_flag_options(name))
    args = p.parse_args(argv)
    try:
        args.settings = load_settings({name: getattr(args, name) for name in FLAGS if hasattr(args, name)})
        args.settings.bearer_tokens()  # an empty token Secret is an error now, not an open API later
    except SettingsError as e:
        p.exit(cli.EXIT_BAD_INPUT, f"error: {e}\n")
    vars(args).update({name: getattr(args.settings, name) for name in FLAGS})
    return args


def _aliases(name: str) -> tuple[str, ...]:
    return ("--model",) if name == "model_path" else ()  # the analyses' spelling


def _flag_options(name: str) -> dict:
    """help (with the variable and default), metavar, and `--flag` alone meaning true for booleans."""
    field = Settings.model_fields[name]
    default = (
        "unset" if field.default is None else str(field.default).lower() if field.annotation is bool else field.default
    )
    options: dict = {"help": f"{field.description} (env {field.validation_alias}; default {default})"}
    choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()
    if field.annotation is bool:
        options.update(metavar="{true,false}", nargs="?", const="true")
    elif choices:
        options["metavar"] = "{" + ",".join(choices) + "}"
    elif name.endswith(("timeout", "interval")):
        options["metavar"] = "SECONDS"
    else:
        options["metavar"] = name.upper()
    return options


def main(argv=None) -> int:
    import uvicorn

    from .logs import uvicorn_log_config
    from .metrics import multiprocess_metrics

    settings = parse_args(argv).settings
    if not settings.model_path.is_file():
        raise ModelError(f"{settings.model_path}: model file not found (run `make train` or `python train.py`)")
    check_prediction_log(settings)  # here, before any worker exists: no supervisor restarting them forever
    # Workers are separate processes that build their app from the environment: they get the
    # validated settings through the same variables a container would set (Settings.to_env).
    for name, value in settings.to_env().items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    with multiprocess_metrics(settings.workers):
        metrics = _supervisor_metrics(settings)
        try:
            uvicorn.run(
                APP_FACTORY,
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=settings.workers,
                log_level=settings.log_level,
                log_config=uvicorn_log_config(settings.log_level, settings.access_log),
                access_log=settings.access_log,
                timeout_graceful_shutdown=settings.graceful_timeout,
                server_header=False,
                http="heart.serving.protocol:HardenedProtocol",
            )
        finally:
            if metrics is not None:
                metrics.stop()
    return 0


def _supervisor_metrics(settings: Settings):
    """With several workers, one METRICS_PORT listener in the supervisor, summing the workers
    (prometheus_client's multiprocess mode); one worker serves its own (heart.serving.app)."""
    if settings.metrics_port is None or settings.workers == 1:
        return None
    from .metrics import MetricsServer, multiprocess_registry

    registry = multiprocess_registry()
    if registry is None:
        print(
            f"error: METRICS_PORT with WEB_CONCURRENCY={settings.workers} needs PROMETHEUS_MULTIPROC_DIR "
            "(one port cannot serve several workers' separate registries)",
            file=sys.stderr,
        )
        raise SystemExit(cli.EXIT_BAD_INPUT)
    return MetricsServer(settings.metrics_port, registry, settings.host)


def app_from_environment():
    """The app factory each worker calls (and `uvicorn heart_fastapi:app`): settings read once, from the environment."""
    from .app import create_app

    try:
        settings = load_settings()
        check_prediction_log(settings)
        return create_app(settings)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(cli.EXIT_BAD_INPUT) from None


def check_prediction_log(settings: Settings) -> None:
    """A PREDICTION_LOG that cannot be appended to: exit 2 with one line naming it."""
    if settings.prediction_log is None:
        return
    from ..predlog import PredictionLog, PredictionLogError

    try:
        PredictionLog(settings.prediction_log).close()
    except PredictionLogError as e:
        print(f"error: PREDICTION_LOG (flag --prediction-log) {e.strerror}", file=sys.stderr)
        raise SystemExit(cli.EXIT_BAD_INPUT) from None
