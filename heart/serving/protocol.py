"""uvicorn's httptools protocol with the limits a public server needs, which uvicorn lacks.

uvicorn (0.54) bounds neither the size of a request's headers nor the time a client takes to
send its request: `timeout_keep_alive` only closes a connection idle *between* requests. And
at shutdown it closes idle keep-alive connections at once, so a request the client already
sent on one is lost to a reset. This protocol adds, per connection:

- headers over MAX_HEADER_BYTES: a 431 and the connection closed, counted as the bytes arrive
  (httptools would buffer an 8 MB header whole before calling back);
- a request (headers and body) not received within REQUEST_TIMEOUT_SECONDS of its first byte,
  or of the connection opening: a 408 if the headers are not complete, else the connection is
  closed and the app sees a client disconnect (a 499 in the metrics);
- at shutdown, an idle connection stays open DRAIN_IDLE_SECONDS, so a request already on its
  way is answered (with `Connection: close`), then is closed with nothing unread (a FIN, not a
  reset).

heart_fastapi.py uses it; with plain uvicorn: `uvicorn --http heart.serving.protocol:HardenedProtocol`.
The limits are read from the environment (heart.serving.settings), like the app's settings.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from urllib.parse import urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)
DRAIN_IDLE_SECONDS = 1.0  # an idle connection's last chance, at shutdown, to deliver a request
START_BYTES = 2048  # of a request's head kept to read its path from (a longer request line: no path)


@functools.cache
def limits() -> tuple[int, float]:
    """(max header bytes, request timeout in seconds) from the settings, read once per process."""
    from .settings import load_settings

    settings = load_settings()
    return settings.max_header_bytes, settings.request_timeout


def _reply(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
    )


class HardenedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol + a header-size limit, a request deadline and a drain at shutdown."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_header_bytes, self.request_timeout = limits()
        self._head_bytes = 0
        self._tail = b""  # the last bytes read, to find a blank line split across reads
        self._in_head = True  # waiting for (more of) a request's headers
        self._start = b""  # the head's first bytes: the request line, whose path picks the error's shape
        self._deadline: asyncio.TimerHandle | None = None
        self._draining = False

    # -- the request deadline
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends its request is a stalled one too

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        phase = "headers" if self._in_head else "body"
        log.warning(
            "request_timeout",
            extra={
                "phase": phase,
                "seconds": self.request_timeout,
                "client": f"{self.client[0]}:{self.client[1]}" if self.client else None,
            },
        )
        if self._in_head:
            self.transport.write(_reply(b"408 Request Timeout", self._error("request not received in time")))
        self.transport.close()  # mid-body: the app's receive() gets http.disconnect

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the header limit and the parser's milestones
    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if len(self._start) < START_BYTES:
                self._start += data[: START_BYTES - len(self._start)]
            end = data.find(b"\r\n\r\n")
            if self._tail and (self._tail + data[:3]).find(b"\r\n\r\n") >= 0:
                end = 0  # the blank line straddles two reads: no header bytes in this one
            self._tail = data[-3:]
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.max_header_bytes:
                log.warning("request_headers_too_large", extra={"limit_bytes": self.max_header_bytes})
                self._disarm()
                message = f"request headers over {self.max_header_bytes} bytes"
                self.transport.write(_reply(b"431 Request Header Fields Too Large", self._error(message)))
                self.transport.close()
                return
        super().data_received(data)

    def _error(self, message: str) -> bytes:
        """The error body in the shape of the request's route family (errors.error_body), from the
        request line as far as it arrived: no route has been chosen yet."""
        from .errors import error_body, error_json

        line = self._start.split(b"\r\n", 1)[0].split(b" ")
        target = urlsplit(line[1].decode("latin-1")).path if len(line) > 1 else ""
        return error_json(error_body({"path": target}, message))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._in_head, self._head_bytes, self._tail, self._start = True, 0, b"", b""  # the next request, afresh

    # -- shutdown
    def shutdown(self) -> None:
        """Idle: wait DRAIN_IDLE_SECONDS for a request on its way, then close. Busy: as uvicorn."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(DRAIN_IDLE_SECONDS, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        partial = self._in_head and self._head_bytes > 0  # its deadline still runs
        if not partial and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()
        elif self.cycle is not None:
            self.cycle.keep_alive = False  # a request arrived: closed after its answer
