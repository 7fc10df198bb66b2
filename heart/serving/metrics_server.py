"""/metrics on a port of its own (METRICS_PORT), so the public Service never exposes it.

prometheus_client's own HTTP server, in a daemon thread, serving whatever registry it is
given: the app's registry with one worker (heart.serving.app starts it in the lifespan); with
WEB_CONCURRENCY > 1 the supervisor serves one port for all workers (heart_fastapi.py) from a
registry that gathers them (prometheus_client's multiprocess mode: `multiprocess_registry`).
"""

from __future__ import annotations

import logging
import os
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("heart.api")


class MetricsServer:
    """A running metrics listener; stop() closes its port."""

    def __init__(self, port: int, registry: CollectorRegistry, host: str = "0.0.0.0"):
        self.port = port
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        log.info("metrics_listening", extra={"port": port, "host": host})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def multiprocess_registry() -> CollectorRegistry | None:
    """A registry summing every worker's metrics, if PROMETHEUS_MULTIPROC_DIR is set; else None."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
