"""The metrics port (METRICS_PORT): GET /metrics, bounded like the API port.

prometheus_client's start_http_server has neither a request timeout nor a connection cap: it
spends a thread per connection for as long as the client likes (2,000 idle half-sent
requests: 2,000 threads, +50 MB). This server is one asyncio loop in one daemon thread:

- at most MAX_CONNECTIONS connections at once; one more is answered 503 and closed;
- a request's head must arrive within REQUEST_TIMEOUT_SECONDS of the connection opening or of
  the previous answer, else a 408 and the connection closed (idle keep-alive ones included);
- a head over MAX_HEADER_BYTES is a 431, a request with a body a 400 (the route takes none);
- errors are the API's bounded JSON (errors.error_json), never echoing a header.

Prometheus' scrape (keep-alive, `Accept-Encoding: gzip`, OpenMetrics negotiation) is served
as prometheus_client's own handler would, except that Accept-Encoding's weights count
(negotiation.accepts_gzip: `gzip;q=0` gets no gzip; prometheus_client's ignores q).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import socket
import threading

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest

from .errors import error_json
from .negotiation import accepts_gzip

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 64  # Prometheus needs one or two; the rest is room for people and probes
PATH = b"/metrics"
LINGER_SECONDS, LINGER_BYTES = 1.0, 1_048_576  # what a refused client may still send before the close
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


def _response(status: int, body: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool, head: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, REASONS[status]), *(b"%s: %s" % h for h in headers)]
    lines += [b"content-length: %d" % len(body), b"connection: " + (b"keep-alive" if keep_alive else b"close")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else body)


def _error(status: int, detail: str, extra: list | None = None) -> bytes:
    body = error_json({"detail": detail})
    return _response(status, body, [(b"content-type", b"application/json"), *(extra or [])], False, False)


class MetricsServer:
    """Listening once constructed (an OSError then is the caller's to report); stop() closes it."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        host: str = "0.0.0.0",
        *,
        timeout: float = 15.0,
        max_header_bytes: int = 65_536,
        max_connections: int = MAX_CONNECTIONS,
    ):
        self.port, self.registry, self.timeout = port, registry, timeout
        self.max_header_bytes, self.max_connections = max_header_bytes, max_connections
        self.active = 0
        self._sock = socket.create_server((host, port), family=address_family(host), backlog=128)
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="metrics-port", daemon=True)
        self._thread.start()
        started.wait(10)
        log.info("metrics_listening", extra={"port": port, "host": host, "max_connections": max_connections})

    @classmethod
    def for_settings(cls, settings, registry: CollectorRegistry) -> MetricsServer:
        return cls(
            settings.metrics_port,
            registry,
            settings.host,
            timeout=settings.request_timeout,
            max_header_bytes=settings.max_header_bytes,
        )

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, sock=self._sock, limit=self.max_header_bytes)
        )
        started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        """Stop listening, end every connection's task, close the loop (nothing left pending)."""
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(timeout=5)
        self._sock.close()
        if not self._loop.is_running():
            self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            return await self._close(writer, _error(503, f"over {self.max_connections} connections: try again"))
        self.active += 1
        try:
            await self._requests(reader, writer)
        except (ConnectionError, asyncio.CancelledError):  # the client left, or the server stops
            writer.close()
        finally:
            self.active -= 1

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after another (keep-alive), each head within the timeout, until one closes."""
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            except TimeoutError:
                return await self._close(writer, _error(408, "request not received in time"))
            except asyncio.LimitOverrunError:
                too_large = _error(431, f"request headers over {self.max_header_bytes:,} bytes")
                return await self._close(writer, too_large, reader)
            except asyncio.IncompleteReadError:
                return await self._close(writer, b"")
            answer, keep_alive = self._answer(head)
            writer.write(answer)
            try:  # a client that never reads its answers must not hold a slot forever
                await asyncio.wait_for(writer.drain(), self.timeout)
            except TimeoutError:
                return writer.close()
            if not keep_alive:
                return await self._close(writer, b"")

    async def _close(
        self, writer: asyncio.StreamWriter, last: bytes, reader: asyncio.StreamReader | None = None
    ) -> None:
        """Answer, then close; with unread input left (an oversized head), half-close first and
        discard what the client still sends for a moment, so it reads the answer, not a reset."""
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            if last:
                writer.write(last)
                await writer.drain()
            if reader is not None and writer.can_write_eof():
                writer.write_eof()
                await asyncio.wait_for(_discard(reader), LINGER_SECONDS)
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()
            await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[bytes, bool]:
        """(the whole response, whether the connection stays open) for one request head."""
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            return _error(400, "not an HTTP/1.1 request line"), False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return _error(400, "a header line without a colon"), False
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            return _error(400, "the metrics port takes no request body"), False
        if target.split(b"?", 1)[0] != PATH:
            return _error(404, "not found: this port serves GET /metrics only"), False
        if method not in (b"GET", b"HEAD"):
            return _error(405, "method not allowed: GET /metrics", [(b"allow", b"GET, HEAD")]), False
        connection = headers.get(b"connection", b"").lower()
        keep_alive = connection != b"close" and (version == b"HTTP/1.1" or connection == b"keep-alive")
        try:
            body, response_headers = self._payload(headers)
        except Exception:  # a collector failing is the server's fault, logged; the client gets a bounded 500
            log.exception("metrics_payload_failed")
            return _error(500, "the metrics could not be collected"), False
        return _response(200, body, response_headers, keep_alive, method == b"HEAD"), keep_alive

    def _payload(self, headers: dict[bytes, bytes]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        accept = headers.get(b"accept", b"").decode("latin-1")
        try:
            encoder, content_type = choose_encoder(accept)
        except ValueError:  # a version it cannot parse: the plain format, as with no Accept
            encoder, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
        body = encoder(self.registry)
        out = [(b"content-type", content_type.encode())]
        if accepts_gzip(headers.get(b"accept-encoding", b"").decode("latin-1")):  # q=0 refuses (RFC 9110)
            body = gzip.compress(body)
            out.append((b"content-encoding", b"gzip"))
        return body, out


async def _discard(reader: asyncio.StreamReader) -> None:
    total = 0
    while total < LINGER_BYTES and (chunk := await reader.read(65536)):
        total += len(chunk)


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
