"""uvicorn's multi-worker supervisor, made to stop listening as soon as SIGTERM arrives.

uvicorn (0.54) binds the listening socket in the supervisor and hands it to the workers. At
SIGTERM each worker closes its copy and drains, but the supervisor keeps its own open until
every worker has exited: the kernel goes on completing handshakes for connections nobody
will accept, then resets them all when the supervisor exits. A client that opened one after a
`Connection: close` answer (16 keep-alive clients: 16 requests lost in every run) sent its
request into that queue. Closing the supervisor's copy first leaves the socket to the
workers alone, so it closes when they stop accepting: new connections are refused (the client
knows nothing was sent) instead of accepted and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import socket

from uvicorn.supervisors.multiprocess import Multiprocess

log = logging.getLogger(__name__)


class DrainingSupervisor(Multiprocess):
    """Multiprocess whose SIGTERM / SIGINT close the supervisor's listening sockets before the
    workers are told to stop (the workers' copies stay open until they stop accepting)."""

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # the shared socket stops listening, in every process at once
            sock.close()
        log.info("supervisor_stopped_listening", extra={"workers": len(self.processes)})

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()
