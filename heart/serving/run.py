"""The server process: flags derived from Settings, checks before any worker starts, the workers.

heart_fastapi.py is a shell over main(). Every setting of heart.serving.settings is a flag
(`--` + its name) that overrides its environment variable, so flags, the environment and the
container configure the same server. With several workers, this process is uvicorn's
supervisor: it owns the multiprocess metrics directory and, with METRICS_PORT, the one
metrics listener that sums the workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import typing

from .. import cli
from ..artifact import ModelError, check_model_file
from .database import table_url
from .settings import FLAGS, Settings, SettingsError, load_settings

log = logging.getLogger(__name__)
APP_FACTORY = "heart.serving.run:worker_app"  # what each uvicorn worker of main() calls
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
    # No abbreviations: `--database-url URL` (a secret has no flag) must not be taken as a prefix of
    # --database-url-file, which would put the password in `ps` and quietly serve without it.
    p.allow_abbrev = False
    for name, flag in FLAGS.items():
        p.add_argument(flag, *_aliases(name), dest=name, default=argparse.SUPPRESS, **_flag_options(name))
    args = p.parse_args(argv)
    try:
        args.settings = load_settings({name: getattr(args, name) for name in FLAGS if hasattr(args, name)})
        args.settings.check()  # an empty token Secret is an error now, not an open API later
        table_url(args.settings)  # a DATABASE_URL that cannot be one, named without its password
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
    from .logs import setup_logging
    from .metrics import multiprocess_metrics

    settings = parse_args(argv).settings
    check_model_file(settings.model_path)  # missing, a directory or a device: exit 2 with one line
    startup_checks(settings)  # here, before any worker exists: no supervisor restarting them forever
    check_listen(settings.host, settings.port, "PORT (flag --port)")  # uvicorn's own launcher binds its --port
    setup_logging(settings.log_level)
    announce_access(settings)
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
            _serve(settings)
        finally:
            if metrics is not None:
                metrics.stop()
    return 0


def _serve(settings: Settings) -> None:
    """uvicorn.run for one worker; for several, its supervisor made to stop listening at SIGTERM."""
    import uvicorn

    from .logs import uvicorn_log_config

    options = dict(
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
    if settings.workers == 1:
        return uvicorn.run(APP_FACTORY, **options)
    from .supervisor import DrainingSupervisor

    config = uvicorn.Config(APP_FACTORY, **options)
    DrainingSupervisor(config, sockets=[config.bind_socket()]).run()


def _supervisor_metrics(settings: Settings):
    """With several workers, one METRICS_PORT listener in the supervisor, summing the workers
    (prometheus_client's multiprocess mode); one worker serves its own (heart.serving.app)."""
    if settings.metrics_port is None or settings.workers == 1:
        return None
    from .metrics import multiprocess_registry
    from .metrics_server import MetricsServer

    registry = multiprocess_registry()
    if registry is None:
        fail(
            f"METRICS_PORT with WEB_CONCURRENCY={settings.workers} needs PROMETHEUS_MULTIPROC_DIR "
            "(one port cannot serve several workers' separate registries)"
        )
    try:
        return MetricsServer.for_settings(settings, registry)
    except OSError as e:
        fail(f"METRICS_PORT (flag --metrics-port) {settings.metrics_port}: cannot listen ({os.strerror(e.errno)})")


def app_from_environment():
    """The app `uvicorn heart_fastapi:app` serves: settings read once, from the environment, and
    checked as heart_fastapi.py checks them (exit 2 with one line)."""
    from .app import create_app

    try:
        settings = load_settings()
        settings.check()
        startup_checks(settings)
        app = create_app(settings)
    except SettingsError as e:
        fail(str(e))
    announce_access(settings)
    return app


def worker_app():
    """The app each worker of main() builds: main() has checked everything already, and said
    whether the API is open, once."""
    from .app import create_app

    try:
        return create_app(load_settings())
    except SettingsError as e:
        fail(str(e))


def fail(message: str) -> typing.NoReturn:
    """A configuration error: one line on stderr, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(cli.EXIT_BAD_INPUT)


def announce_access(settings: Settings) -> None:
    """An API open because no tokens were configured (rather than by API_AUTH=open) says so, once."""
    if settings.api_auth is None and not settings.bearer_tokens():
        log.warning(
            "api_open",
            extra={
                "detail": "no API_TOKENS or API_TOKENS_FILE: every route answers without a token; "
                "configure tokens, or set API_AUTH=open to say the API is open on purpose"
            },
        )


def startup_checks(settings: Settings) -> None:
    """What would otherwise fail later, hang, or fail in every worker: checked once, exit 2 with one line."""
    check_prediction_log(settings)
    check_inference_table(settings)
    try:
        settings.pin(require=False)  # a pin file that is unreadable, blank or not a sha256
    except ModelError as e:
        fail(str(e))
    check_metrics_port(settings)


def check_prediction_log(settings: Settings) -> None:
    """A PREDICTION_LOG that cannot be appended to (or is a FIFO, a device...): exit 2 with one line naming it."""
    if settings.prediction_log is None:
        return
    from ..predlog import PredictionLog, PredictionLogError

    try:
        PredictionLog(settings.prediction_log).close()
    except PredictionLogError as e:
        fail(f"PREDICTION_LOG (flag --prediction-log) {e.strerror}")


def check_inference_table(settings: Settings) -> None:
    """The SQLite file of the inference table cannot be written: exit 2 with one line naming it."""
    from .database import check_sqlite_file

    why = check_sqlite_file(table_url(settings))
    if why is not None:
        setting_name = "DATABASE_URL" if settings.database_url else "INFERENCE_DB (flag --inference-db)"
        fail(f"{setting_name} {why}")


def check_metrics_port(settings: Settings) -> None:
    """METRICS_PORT already taken: exit 2 now rather than fail inside a worker's start-up."""
    if settings.metrics_port is not None:
        check_listen(settings.host, settings.metrics_port, "METRICS_PORT (flag --metrics-port)")


def check_listen(host: str, port: int, setting_name: str) -> None:
    """A port another process listens on: exit 2 with one line naming the setting (HOST when
    the host is no address of this machine's resolver: the port is not to blame)."""
    from .metrics_server import address_family

    try:  # create_server re-raises a resolver error as a bind error on the port
        socket.getaddrinfo(host, port, address_family(host), socket.SOCK_STREAM)
    except socket.gaierror as e:
        fail(f"HOST (flag --host) {host!r}: not an address or a name that resolves ({e.strerror or e})")
    try:
        with socket.create_server((host, port), family=address_family(host)):
            pass
    except OSError as e:
        fail(f"{setting_name} {port}: cannot listen on {host} ({os.strerror(e.errno) if e.errno else e})")
