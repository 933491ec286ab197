"""The metrics endpoint over HTTP and the counting of upstream exchanges.

Rules:
- `MetricsServer` is a deliberately small HTTP/1.1 server: GET or HEAD of /metrics, one request
  per connection, a bounded request head, a read deadline and a cap on open connections.
- `CountingNetwork` wraps the upstream `Network` to count queries, timeouts and errors.
The counters themselves and their text format live in `resolver.server.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from resolver.engine.network import (
    Network,
    ServerAddress,
    Transport,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.server.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# -- upstream counting ----------------------------------------------------------------------


class CountingNetwork:
    """A `Network` that counts what passes through it into `metrics`."""

    def __init__(self, inner: Network, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        self.metrics.upstream_queries.inc(transport.value)
        try:
            return await self.inner.exchange(query, server, transport, timeout_s)
        except UpstreamTimeout:
            self.metrics.upstream_timeouts.inc()
            raise
        except (UpstreamError, OSError):
            self.metrics.upstream_errors.inc()
            raise

    def __getattr__(self, name: str) -> object:
        # Anything else the wrapped network offers (close, statistics) stays reachable.
        return getattr(self.inner, name)


# -- the HTTP endpoint ----------------------------------------------------------------------

_MAX_REQUEST_HEAD = 8192
_READ_DEADLINE_S = 5.0
_MAX_CONNECTIONS = 32


class MetricsServer:
    """Serves `GET /metrics` on one address; `stop` closes it."""

    def __init__(self, metrics: Metrics, ip: str, port: int) -> None:
        self.metrics = metrics
        self.ip, self.port = ip, port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.scrapes = 0

    async def start(self) -> None:
        """Bind; OSError if the address cannot be used."""
        self._server = await asyncio.start_server(
            self._accept, self.ip, self.port, limit=_MAX_REQUEST_HEAD, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= _MAX_CONNECTIONS:
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_DEADLINE_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type, head_only = self._respond(head)
            payload = body.encode("utf-8")
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + (b"" if head_only else payload))
            async with asyncio.timeout(_READ_DEADLINE_S):
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, OSError):
            pass  # a broken, slow or oversized request: just close
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, str, str, bool]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", "bad request\n", "text/plain", False
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "only GET and HEAD\n", "text/plain", False
        if target != "/metrics":
            return "404 Not Found", "metrics are at /metrics\n", "text/plain", method == "HEAD"
        self.scrapes += 1
        return "200 OK", self.metrics.render(), CONTENT_TYPE, method == "HEAD"


# -- reading a running server's metrics (`resolver stats`) ------------------------------------



def fetch(ip: str, port: int, *, timeout_s: float = 3.0) -> str:
    """The exposition text of the server at ip:port; OSError or ValueError if it fails."""
    import http.client  # only the `stats` command reads metrics: the server never loads it

    host = f"[{ip}]" if ":" in ip else ip
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read(16 * 1024 * 1024).decode("utf-8", "replace")
        if response.status != 200:
            raise ValueError(f"{ip}:{port} answered HTTP {response.status}")
        return body
    finally:
        connection.close()


