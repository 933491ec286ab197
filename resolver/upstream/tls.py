"""DNS over TLS to upstream resolvers (RFC 7858): verified connections, reused and pipelined.

Rules this module keeps:
- The server's certificate is verified against the system's CA store or a given CA file, and
  must be valid for the upstream's TLS name (its IP address when it has no name): the strict
  privacy profile of RFC 8310 §6.6, with no fallback to clear text. TLS 1.2 at least
  (RFC 8310 §9, RFC 7525).
- One connection per upstream, opened on first use and shared by every query to it: queries
  are written as they come without waiting for earlier replies, and replies, which may come in
  any order, are matched by id and question (pipelining, RFC 7766 §6.2.1.1; RFC 7858 §3.3).
- A connection is closed after `idle_timeout_s` without an outstanding query (RFC 7766 §6.2.3),
  and reopened on the next query. When the server closes a connection that had already carried
  queries (its own idle timeout, a restart), the queries left unanswered are sent once more on a
  new connection (RFC 7766 §6.2.1: the client must be prepared for the server to close).
- A connection attempt is not abandoned when the query that started it times out: it goes on
  (bounded by `connect_timeout_s`) so that the retry finds it ready, since a TLS handshake can
  take longer than one query's timeout.
- Every failure is an `UpstreamError` or `UpstreamTimeout`; a rejected certificate is also
  logged, at most once a minute per upstream, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from resolver.engine.network import ServerAddress, UpstreamError, UpstreamTimeout
from resolver.upstream.exchange import ReplyMatcher

log = logging.getLogger(__name__)

_MAX_MESSAGE = 0xFFFF
#: How often the same upstream's TLS failure is logged again.
_LOG_EVERY_S = 60.0


def make_tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: `ca_file`'s CAs, else the system's.

    Raises OSError or ssl.SSLError when `ca_file` cannot be read or holds no certificate.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _ConnectionClosed(Exception):
    """The connection ended before the reply came."""


class _Connection:
    """One TLS connection to one upstream, with its outstanding queries."""

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
        self._pending: dict[bytes, list[tuple[ReplyMatcher, asyncio.Future[bytes]]]] = {}
        self._write_lock = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None
        self.queries = 0  #: queries written on this connection
        self.mismatched = 0  #: messages that answered no outstanding query
        self.closed = False
        self._reading = asyncio.get_running_loop().create_task(self._read_replies())
        self._arm_idle_timer()

    async def ask(self, query: bytes, matcher: ReplyMatcher) -> bytes:
        """Write `query` and wait for its reply; _ConnectionClosed if the connection ends first."""
        if self.closed:
            raise _ConnectionClosed("connection already closed")
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiters = self._pending.setdefault(matcher.query_id, [])
        waiters.append((matcher, reply))
        self._disarm_idle_timer()
        try:
            async with self._write_lock:
                self._writer.write(len(query).to_bytes(2, "big") + query)
                self.queries += 1
                await self._writer.drain()
            return await reply
        except (OSError, RuntimeError) as exc:  # written into a connection that just went away
            self.close()
            raise _ConnectionClosed(str(exc) or type(exc).__name__) from None
        finally:
            reply.cancel()
            with contextlib.suppress(ValueError):
                waiters.remove((matcher, reply))
            if not waiters and self._pending.get(matcher.query_id) is waiters:
                del self._pending[matcher.query_id]
            if not self._pending:
                self._arm_idle_timer()

    async def _read_replies(self) -> None:
        reason = "closed by the server"
        try:
            while True:
                size = int.from_bytes(await self._reader.readexactly(2), "big")
                message = await self._reader.readexactly(size)
                self._dispatch(message)
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ssl.SSLError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "closed"
        finally:
            self.closed = True
            for waiters in list(self._pending.values()):
                for _, reply in waiters:
                    if not reply.done():
                        reply.set_exception(_ConnectionClosed(reason))
            self._disarm_idle_timer()
            self._writer.close()

    def _dispatch(self, message: bytes) -> None:
        for matcher, reply in self._pending.get(message[:2], ()):
            if not reply.done() and matcher.matches(message):
                reply.set_result(message)
                return
        self.mismatched += 1  # late, unknown or forged: ignored, like over UDP (RFC 5452 §9.1)

    def _arm_idle_timer(self) -> None:
        self._disarm_idle_timer()
        if not self.closed:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self._idle_timeout_s, self.close)

    def _disarm_idle_timer(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def close(self) -> None:
        """Close the connection; outstanding queries fail with _ConnectionClosed."""
        if not self._reading.done():
            self._reading.cancel()
        self.closed = True
        self._writer.close()


class DotClient:
    """DNS over TLS exchanges with upstream resolvers, one reused connection per upstream."""

    def __init__(
        self,
        *,
        context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        idle_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._context = context if context is not None else make_tls_context(ca_file)
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._connections: dict[ServerAddress, _Connection] = {}
        self._connecting: dict[ServerAddress, asyncio.Task[_Connection]] = {}
        self._logged: dict[tuple[ServerAddress, str], float] = {}
        self.connections_opened = 0  #: TLS connections established
        self.reconnects = 0  #: queries sent again after the server closed a used connection

    async def exchange(self, query: bytes, server: ServerAddress, timeout_s: float) -> bytes:
        """Send `query` to `server` over TLS and return the matching reply.

        Raises UpstreamTimeout when no reply comes within `timeout_s` (connecting included),
        UpstreamError when the connection cannot be made or verified, or ends unanswered.
        """
        if server.tls_name is None:
            raise UpstreamError(f"{server}: no TLS name, not a DNS over TLS upstream")
        if len(query) > _MAX_MESSAGE:
            raise UpstreamError(f"{server}: query of {len(query)} octets cannot be framed")
        try:
            matcher = ReplyMatcher.for_query(query)
        except ValueError as exc:
            raise UpstreamError(f"{server}: {exc}") from None
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(query, matcher, server)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{server} (tls): no matching reply within {timeout_s:g} s"
            ) from None

    async def _exchange(self, query: bytes, matcher: ReplyMatcher, server: ServerAddress) -> bytes:
        for attempt in (1, 2):
            connection = await self._connection(server)
            reused = connection.queries > 0
            try:
                return await connection.ask(query, matcher)
            except _ConnectionClosed as exc:
                if self._connections.get(server) is connection:
                    del self._connections[server]
                if reused and attempt == 1:
                    self.reconnects += 1
                    continue
                raise UpstreamError(
                    f"{server} (tls): connection closed without a reply ({exc})"
                ) from None
        raise AssertionError("unreachable")

    async def _connection(self, server: ServerAddress) -> _Connection:
        current = self._connections.get(server)
        if current is not None and not current.closed:
            return current
        task = self._connecting.get(server)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(server))
            self._connecting[server] = task
            task.add_done_callback(lambda done: self._connected(server, done))
        return await asyncio.shield(task)

    def _connected(self, server: ServerAddress, task: asyncio.Task[_Connection]) -> None:
        if self._connecting.get(server) is task:
            del self._connecting[server]
        if task.cancelled() or task.exception() is not None:  # retrieved: no "never retrieved"
            return
        self._connections[server] = task.result()

    async def _connect(self, server: ServerAddress) -> _Connection:
        assert server.tls_name is not None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    server.ip, server.port, ssl=self._context, server_hostname=server.tls_name,
                    ssl_handshake_timeout=self.connect_timeout_s,
                )
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            self._log_once(server, f"certificate rejected: {reason}")
            raise UpstreamError(f"{server} (tls): certificate rejected: {reason}") from None
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            self._log_once(server, f"TLS handshake failed: {reason}")
            raise UpstreamError(f"{server} (tls): TLS handshake failed: {reason}") from None
        except TimeoutError:
            raise UpstreamError(
                f"{server} (tls): no connection within {self.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"{server} (tls): {exc.strerror or exc}") from None
        self.connections_opened += 1
        return _Connection(server, reader, writer, self.idle_timeout_s)

    def _log_once(self, server: ServerAddress, what: str) -> None:
        now = asyncio.get_running_loop().time()
        key = (server, what)
        if now - self._logged.get(key, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return
        if len(self._logged) > 1000:
            self._logged.clear()
        self._logged[key] = now
        log.warning("DNS over TLS to %s rejected: %s", server, what)

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
