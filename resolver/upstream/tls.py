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
  take longer than one query's timeout. (The pool of connections and the TLS connect are shared
  with DNS over HTTPS: `resolver.upstream.tls_pool`.)
- Every failure is an `UpstreamError` or `UpstreamTimeout`; a rejected certificate is also
  logged, at most once a minute per upstream, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from resolver.dns.header import MAX_MESSAGE_OCTETS
from resolver.engine.network import ServerAddress, UpstreamError
from resolver.upstream.reply_matching import ReplyMatcher
from resolver.upstream.tls_pool import ConnectionClosed, IdleClosingConnection, TlsConnectionPool


def make_tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: `ca_file`'s CAs, else the system's.

    Raises OSError or ssl.SSLError when `ca_file` cannot be read or holds no certificate.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Connection(IdleClosingConnection):
    """One TLS connection to one upstream, with its outstanding queries."""

    def _set_up(self) -> None:
        self._pending: dict[bytes, list[tuple[ReplyMatcher, asyncio.Future[bytes]]]] = {}
        self._write_lock = asyncio.Lock()
        self.mismatched = 0  #: messages that answered no outstanding query

    async def ask(self, query: bytes, matcher: ReplyMatcher) -> bytes:
        """Write `query` and wait for its reply; ConnectionClosed if the connection ends first."""
        if self.closed:
            raise ConnectionClosed("connection already closed")
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
            raise ConnectionClosed(str(exc) or type(exc).__name__) from None
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
                        reply.set_exception(ConnectionClosed(reason))
            self._disarm_idle_timer()
            self._writer.close()

    def _dispatch(self, message: bytes) -> None:
        for matcher, reply in self._pending.get(message[:2], ()):
            if not reply.done() and matcher.matches(message):
                reply.set_result(message)
                return
        self.mismatched += 1  # late, unknown or forged: ignored, like over UDP (RFC 5452 §9.1)

    def close(self) -> None:
        """Close the connection; outstanding queries fail with ConnectionClosed."""
        if not self._reading.done():
            self._reading.cancel()
        self.closed = True
        self._writer.close()


class DotClient(TlsConnectionPool[_Connection]):
    """DNS over TLS exchanges with upstream resolvers, one reused connection per upstream."""

    scheme = "tls"
    protocol = "DNS over TLS"

    default_idle_timeout_s = 10.0

    def _new_context(self, ca_file: str | None) -> ssl.SSLContext:
        return make_tls_context(ca_file)

    async def exchange(self, query: bytes, server: ServerAddress, timeout_s: float) -> bytes:
        """Send `query` to `server` over TLS and return the matching reply.

        Raises UpstreamTimeout when no reply comes within `timeout_s` (connecting included),
        UpstreamError when the connection cannot be made or verified, or ends unanswered.
        """
        if server.tls_name is None:
            raise UpstreamError(f"{server}: no TLS name, not a DNS over TLS upstream")
        if len(query) > MAX_MESSAGE_OCTETS:
            raise UpstreamError(f"{server}: query of {len(query)} octets cannot be framed")
        matcher = self._matcher(server, query)
        return await self._ask_in_time(server, timeout_s, lambda c: c.ask(query, matcher),
                                       "matching reply")

    async def _connect(self, server: ServerAddress) -> _Connection:
        assert server.tls_name is not None
        reader, writer = await self._open_tls(server, server.tls_name)
        self.connections_opened += 1
        return _Connection(server, reader, writer, self.idle_timeout_s)
