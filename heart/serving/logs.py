"""JSON logs: one object per line on stdout, for the package, uvicorn and the OpenTelemetry SDK.

The prediction record's stdout lines (heart.predlog) are spliced through STDOUT_HANDLER's lock,
so the two never interleave mid-line.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

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


STDOUT_HANDLER = StdoutHandler()
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
