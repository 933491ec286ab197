"""One verified TLS connection per upstream, opened on first use and shared: what the DNS
over TLS (`resolver.upstream.tls`) and DNS over HTTPS (`resolver.upstream.https`) clients
have in common.

- A connection attempt is not abandoned when the query that started it times out: it goes
  on (bounded by `connect_timeout_s`) so that the retry finds it ready, since a TLS
  handshake can take longer than one query's timeout.
- The server's certificate must be valid for the upstream's TLS name (RFC 8310 §6.6, no
  fallback to clear text). A rejected certificate or handshake is an `UpstreamError` and is
  logged, at most once a minute per upstream, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from resolver.engine.network import ServerAddress, UpstreamError, UpstreamTimeout
from resolver.upstream.reply_matching import ReplyMatcher

#: How often the same upstream's TLS failure is logged again.
_LOG_EVERY_S = 60.0


class ConnectionClosed(Exception):
    """The connection ended (or could not carry the query) before the reply came."""


class PooledConnection(Protocol):
    """What the pool needs of a connection."""

    @property
    def closed(self) -> bool: ...

    @property
    def queries(self) -> int: ...

    def close(self) -> None: ...


ConnectionT = TypeVar("ConnectionT", bound=PooledConnection)


class IdleClosingConnection:
    """What a pooled connection of either transport holds besides its protocol: the stream,
    its counters, the task reading replies, and the timer that closes it after
    `idle_timeout_s` without an outstanding query (RFC 7766 §6.2.3)."""

    def __init__(
        self,
        server: ServerAddress,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout_s: float,
    ) -> None:
        self.server = server
        self._reader = reader
        self._writer = writer
        self._idle_timeout_s = idle_timeout_s
        self._idle: asyncio.TimerHandle | None = None
        self.queries = 0  #: queries sent on this connection
        self.closed = False
        self._set_up()
        self._reading = asyncio.get_running_loop().create_task(self._read_replies())
        self._arm_idle_timer()

    def _set_up(self) -> None:
        """The transport's own state, made before replies are read."""
        raise NotImplementedError

    async def _read_replies(self) -> None:
        """Read until the connection ends, then fail what is still outstanding."""
        raise NotImplementedError

    def _arm_idle_timer(self) -> None:
        self._disarm_idle_timer()
        if not self.closed:
            self._idle = asyncio.get_running_loop().call_later(self._idle_timeout_s, self.close)

    def _disarm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def close(self) -> None:
        """Close the connection; outstanding queries fail with ConnectionClosed."""
        raise NotImplementedError


class TlsConnectionPool(Generic[ConnectionT]):
    """Connections by upstream, with the TLS connect and its failures in one place."""

    #: The transport as messages name it ("tls", "https").
    scheme = "tls"
    #: The protocol as log lines name it ("DNS over TLS").
    protocol = "DNS over TLS"
    #: Seconds a connection stays open without an outstanding query (RFC 7766 §6.2.3).
    default_idle_timeout_s = 10.0

    def __init__(
        self,
        *,
        context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        idle_timeout_s: float | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._context = context if context is not None else self._new_context(ca_file)
        #: The transport module's own logger ("resolver.upstream.tls", ...).
        self._log = logging.getLogger(type(self).__module__)
        self.idle_timeout_s = (self.default_idle_timeout_s if idle_timeout_s is None
                               else idle_timeout_s)
        self.connect_timeout_s = connect_timeout_s
        self._connections: dict[ServerAddress, ConnectionT] = {}
        self._connecting: dict[ServerAddress, asyncio.Task[ConnectionT]] = {}
        self._logged: dict[tuple[ServerAddress, str], float] = {}
        self.connections_opened = 0  #: connections established
        self.reconnects = 0  #: queries sent again after the server closed a used connection

    def _new_context(self, ca_file: str | None) -> ssl.SSLContext:
        """The client context that verifies servers (`ca_file`'s CAs, else the system's)."""
        raise NotImplementedError

    async def _connect(self, server: ServerAddress) -> ConnectionT:
        """Open and set up one connection to `server` (the transport's own)."""
        raise NotImplementedError

    async def _ask(self, server: ServerAddress,
                   ask: Callable[[ConnectionT], Awaitable[bytes]]) -> bytes:
        """`ask` over the server's connection; once more on a new connection when the server
        closed one that had already carried queries (RFC 7766 §6.2.1: a client must be
        prepared for the server to close)."""
        for attempt in (1, 2):
            connection = await self._connection(server)
            reused = connection.queries > 0
            try:
                return await ask(connection)
            except ConnectionClosed as exc:
                if self._connections.get(server) is connection and connection.closed:
                    del self._connections[server]
                if reused and attempt == 1:
                    self.reconnects += 1
                    continue
                raise UpstreamError(
                    f"{server} ({self.scheme}): connection closed without a reply ({exc})"
                ) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _matcher(server: ServerAddress, query: bytes) -> ReplyMatcher:
        """What a reply to `query` must match; UpstreamError when `query` has no question."""
        try:
            return ReplyMatcher.for_query(query)
        except ValueError as exc:
            raise UpstreamError(f"{server}: {exc}") from None

    async def _ask_in_time(self, server: ServerAddress, timeout_s: float,
                           ask: Callable[[ConnectionT], Awaitable[bytes]],
                           waited_for: str = "reply") -> bytes:
        """`_ask` within `timeout_s`, connecting included; UpstreamTimeout after that, saying
        "no `waited_for` within"."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._ask(server, ask)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{server} ({self.scheme}): no {waited_for} within {timeout_s:g} s"
            ) from None

    async def _connection(self, server: ServerAddress) -> ConnectionT:
        current = self._connections.get(server)
        if current is not None and not current.closed:
            return current
        task = self._connecting.get(server)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(server))
            self._connecting[server] = task
            task.add_done_callback(lambda done: self._connected(server, done))
        return await asyncio.shield(task)

    def _connected(self, server: ServerAddress, task: asyncio.Task[ConnectionT]) -> None:
        if self._connecting.get(server) is task:
            del self._connecting[server]
        if task.cancelled() or task.exception() is not None:  # retrieved: no "never retrieved"
            return
        self._connections[server] = task.result()

    async def _open_tls(
        self, server: ServerAddress, name: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS stream to `server` whose certificate is valid for `name`; UpstreamError if
        it cannot be had within `connect_timeout_s`."""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                return await asyncio.open_connection(
                    server.ip, server.port, ssl=self._context, server_hostname=name,
                    ssl_handshake_timeout=self.connect_timeout_s,
                )
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            self._log_once(server, f"certificate rejected: {reason}")
            raise UpstreamError(
                f"{server} ({self.scheme}): certificate rejected: {reason}") from None
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            self._log_once(server, f"TLS handshake failed: {reason}")
            raise UpstreamError(
                f"{server} ({self.scheme}): TLS handshake failed: {reason}") from None
        except TimeoutError:
            raise UpstreamError(
                f"{server} ({self.scheme}): no connection within {self.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"{server} ({self.scheme}): {exc.strerror or exc}") from None

    def _log_once(self, server: ServerAddress, what: str) -> None:
        now = asyncio.get_running_loop().time()
        key = (server, what)
        if now - self._logged.get(key, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return
        if len(self._logged) > 1000:
            self._logged.clear()
        self._logged[key] = now
        self._log.warning("%s to %s rejected: %s", self.protocol, server, what)

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._connections.values() if not c.closed)

    async def close(self) -> None:
        """Close every connection and abandon connection attempts."""
        for task in list(self._connecting.values()):
            task.cancel()
        for connection in list(self._connections.values()):
            connection.close()
        self._connections.clear()
        await asyncio.sleep(0)
