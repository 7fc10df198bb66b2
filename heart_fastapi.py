"""Serve the heart-disease model over HTTP: python heart_fastapi.py [--port 8000] [--model-path model.joblib]

Starts uvicorn with the API of heart/serving/: POST /predict (and /predict/), /predict/batch,
/explain; GET /live_check, /ready_check, /model, /metrics, /docs. Every flag overrides its
environment variable (12-factor), so `uvicorn heart_fastapi:app` and containers configure the
same server without flags. A bad value, from a flag or the environment, exits 2 with one line
naming it. The model is sha256-verified and parity-checked after start-up; /ready_check
answers 503 with the reason until then. SIGTERM (or Ctrl-C) stops accepting connections and
lets in-flight requests finish (up to --graceful-timeout seconds).

Tracing follows the standard OpenTelemetry variables: OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over
HTTP), OTEL_TRACES_EXPORTER=console, none by default. See docs/serving.md.
"""
from __future__ import annotations

import argparse
import os
import sys

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
    add("model_sha256", metavar="SHA256")
    p.add_argument("--graceful-timeout", type=cli.number(0), default=30.0,
                   help="seconds in-flight requests get to finish after SIGTERM")
    p.add_argument("--access-log", action="store_true", help="also log every HTTP request (costs throughput)")
    args = p.parse_args(argv)
    try:
        args.settings = load_settings({name: getattr(args, name) for name in FLAGS if hasattr(args, name)})
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
    uvicorn.run("heart_fastapi:create_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level,
                log_config=uvicorn_log_config(settings.log_level, args.access_log), access_log=args.access_log,
                timeout_graceful_shutdown=args.graceful_timeout, server_header=False)
    return 0


def create_app():
    """The app factory (uvicorn --factory heart_fastapi:create_app): settings read once, from the environment."""
    from heart.serving.app import create_app as build

    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(cli.EXIT_BAD_INPUT) from None
    check_prediction_log(settings)
    return build(settings)


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
