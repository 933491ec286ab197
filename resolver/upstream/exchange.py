"""Upstream exchanges over asyncio sockets: one query out, the one matching reply back.

Rules this module keeps (RFC 5452, RFC 7766):
- UDP: a fresh socket per exchange, bound to port 0 so the OS picks a random ephemeral source
  port (RFC 5452 §9.2), and `connect()`ed to the server so that only that address and port can
  deliver and ICMP errors reach us. The query is sent once.
- A reply is accepted only if it matches the query (RFC 5452 §9.1): at least a header, the same
  id, QR=1, the same opcode, QDCOUNT=1 and the same question (name compared case-insensitively,
  RFC 4343; type and class exactly). Anything else is counted and ignored while the exchange
  keeps waiting: junk must never end an exchange early (TuDoor).
- ICMP port unreachable (ECONNREFUSED on the connected socket) fails the exchange at once:
  nothing listens there. Other ICMP errors are ignored like junk and the deadline decides
  (beyond 16 of them in one exchange the socket itself is taken for broken).
- TCP: one connection per exchange, messages framed by a two-octet length (RFC 1035 §4.2.2);
  framed replies are read until one matches.
- At most `max_outstanding` exchanges hold a socket at once, and never more than half of the
  process's file descriptor limit (read at each exchange), so that listeners, metrics and
  control keep working when upstreams are slow.

The query bytes are sent exactly as given: the engine chose their random id.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import resource
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resolver.engine.network import (
    ServerAddress,
    Transport,
    TransportProblem,
    UpstreamError,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from resolver.upstream.https import DohClient
    from resolver.upstream.tls import DotClient

_HEADER_OCTETS = 12
_MAX_LABEL_OCTETS = 63
_MAX_TCP_MESSAGE = 0xFFFF
#: Largest UDP datagram: nothing longer can arrive, so nothing is ever cut.
_MAX_UDP_DATAGRAM = 0xFFFF
#: Socket errors (ICMP reports, maybe forged) a UDP exchange outlasts before it gives up:
#: enough for any forgery burst within one timeout, few enough that a broken socket cannot
#: spin until the deadline.
_MAX_IGNORED_SOCKET_ERRORS = 16
# Linux values, for Pythons whose socket module does not export them (3.11 does not).
_LINUX_IP_MTU_DISCOVER = 10
_LINUX_IP_PMTUDISC_OMIT = 5


@dataclass(frozen=True, slots=True)
class ReplyMatcher:
    """What a reply must echo to count as the answer to one query (RFC 5452 §9.1)."""

    query_id: bytes  #: the two id octets
    opcode: int
    qname: bytes  #: the question name in wire form, lower-cased
    qtype_qclass: bytes  #: the four octets after the name

    @classmethod
    def for_query(cls, query: bytes) -> ReplyMatcher:
        """Read the question of a query we built (uncompressed, QDCOUNT=1); ValueError otherwise."""
        if len(query) < _HEADER_OCTETS or query[4:6] != b"\x00\x01":
            raise ValueError("a query must have a header and exactly one question")
        pos = _HEADER_OCTETS
        while True:
            if pos >= len(query):
                raise ValueError("the query's question name runs past the end")
            length = query[pos]
            if length == 0:
                break
            if length > _MAX_LABEL_OCTETS:
                raise ValueError("the query's question name is compressed or malformed")
            pos += 1 + length
        name_end = pos + 1
        if name_end + 4 > len(query):
            raise ValueError("the query's question has no type and class")
        return cls(
            query_id=query[:2],
            opcode=(query[2] >> 3) & 0xF,
            # bytes.lower() only touches A-Z (65..90); length octets are <= 63, so they survive.
            qname=query[_HEADER_OCTETS:name_end].lower(),
            qtype_qclass=query[name_end : name_end + 4],
        )

    def matches(self, reply: bytes) -> bool:
        """True if `reply` answers the query; never raises, whatever the bytes."""
        if len(reply) < _HEADER_OCTETS:
            return False
        name_end = _HEADER_OCTETS + len(self.qname)
        return (
            reply[:2] == self.query_id
            and reply[2] & 0x80 != 0  # QR=1: a response, not a reflected query
            and (reply[2] >> 3) & 0xF == self.opcode
            and reply[4:6] == b"\x00\x01"
            and reply[_HEADER_OCTETS:name_end].lower() == self.qname
            and reply[name_end : name_end + 4] == self.qtype_qclass
        )


class AsyncioNetwork:
    """The production `Network`: real UDP and TCP exchanges on the running event loop.

    A server with a TLS name is a DNS over TLS upstream: its exchanges go to
    `resolver.upstream.tls.DotClient` (reused, verified connections), whatever the transport
    asked; one with a URL path as well is a DNS over HTTPS upstream, for
    `resolver.upstream.https.DohClient`.
    """

    def __init__(self, max_outstanding: int = 512, *, tls_ca_file: str | None = None) -> None:
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be at least 1")
        self._slots = asyncio.Semaphore(max_outstanding)
        self._tls_ca_file = tls_ca_file
        self.dot: DotClient | None = None  #: created on the first DNS over TLS exchange
        self.doh: DohClient | None = None  #: created on the first DNS over HTTPS exchange
        self.sent = 0  #: queries written to a socket
        self.timeouts = 0  #: exchanges that ended at the deadline
        self.errors = 0  #: exchanges that failed at once (refused, reset, no fd, ...)
        self.mismatched = 0  #: datagrams or TCP messages ignored because they did not match
        self.in_use = 0  #: exchanges under way (each holds a socket, or waits for one)

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        """Send `query` to `server` and return the first matching reply.

        Raises UpstreamTimeout when nothing matching arrives within `timeout_s` (waiting for
        a free socket slot included), UpstreamError when the exchange fails at once.
        """
        matcher = ReplyMatcher.for_query(query)
        deadline = asyncio.get_running_loop().time() + timeout_s
        if self.in_use >= _upstream_fd_budget():
            self.errors += 1
            raise UpstreamError(f"{server}: upstream sockets hold half the file descriptors")
        waiting_for_slot = True
        self.in_use += 1
        try:
            # One timeout scope for both steps: each scope costs a timer on the event loop.
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
                waiting_for_slot = False
                try:
                    if server.doh_path is not None:
                        return await self._exchange_https(query, server, deadline)
                    if server.tls_name is not None:
                        return await self._exchange_tls(query, server, deadline)
                    if transport is Transport.UDP:
                        return await self._exchange_udp(query, matcher, server)
                    return await self._exchange_tcp(query, matcher, server)
                finally:
                    self._slots.release()
        except TimeoutError:
            if waiting_for_slot:
                # A local shortage, not the server's silence: a failure, not a timeout.
                self.errors += 1
                raise UpstreamError(
                    f"{server}: no free upstream socket before the deadline"
                ) from None
            # Also an OS-level ETIMEDOUT: TimeoutError is an OSError, and a timeout all the same.
            self.timeouts += 1
            raise UpstreamTimeout(
                f"{server} ({transport.value}): no matching reply within {timeout_s:g} s"
            ) from None
        except UpstreamTimeout:
            self.timeouts += 1
            raise
        except UpstreamError:
            self.errors += 1
            raise
        except OSError as exc:  # EMFILE, ENETUNREACH, ECONNREFUSED, ECONNRESET, ...
            self.errors += 1
            raise UpstreamError(f"{server} ({transport.value}): {exc}",
                                transport_problem(exc)) from exc
        finally:
            self.in_use -= 1

    async def _exchange_tls(self, query: bytes, server: ServerAddress, deadline: float) -> bytes:
        if self.dot is None:
            from resolver.upstream.tls import DotClient

            self.dot = DotClient(ca_file=self._tls_ca_file)
        self.sent += 1
        left = deadline - asyncio.get_running_loop().time()
        return await self.dot.exchange(query, server, max(left, 0.001))

    async def _exchange_https(self, query: bytes, server: ServerAddress, deadline: float) -> bytes:
        if self.doh is None:
            from resolver.upstream.https import DohClient

            self.doh = DohClient(ca_file=self._tls_ca_file)
        self.sent += 1
        left = deadline - asyncio.get_running_loop().time()
        return await self.doh.exchange(query, server, max(left, 0.001))

    async def close(self) -> None:
        """Close the connections kept open for reuse (DNS over TLS and over HTTPS)."""
        if self.dot is not None:
            await self.dot.close()
        if self.doh is not None:
            await self.doh.close()

    async def _exchange_udp(
        self, query: bytes, matcher: ReplyMatcher, server: ServerAddress
    ) -> bytes:
        loop = asyncio.get_running_loop()
        family = _family(server)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            if family == socket.AF_INET:
                omit_path_mtu_discovery(sock)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            sock.connect((server.ip, server.port))
            sock.send(query)
            self.sent += 1
            errors = 0
            while True:  # the caller's deadline ends the wait
                try:
                    data = await loop.sock_recv(sock, _MAX_UDP_DATAGRAM)
                except ConnectionRefusedError:
                    # ICMP port unreachable on a connected socket: nobody listens there.
                    raise UpstreamError(f"{server} (udp): port unreachable (ICMP)",
                                        TransportProblem.NOBODY_LISTENS) from None
                except OSError as exc:
                    # Other ICMP errors may be forged; they must not end the exchange (TuDoor).
                    errors += 1
                    if errors > _MAX_IGNORED_SOCKET_ERRORS:
                        raise UpstreamError(f"{server} (udp): {exc}",
                                            transport_problem(exc)) from exc
                    continue
                if matcher.matches(data):
                    return data
                self.mismatched += 1

    async def _exchange_tcp(
        self, query: bytes, matcher: ReplyMatcher, server: ServerAddress
    ) -> bytes:
        _family(server)
        if len(query) > _MAX_TCP_MESSAGE:
            raise UpstreamError(f"{server}: query of {len(query)} octets cannot be framed for TCP")
        reader, writer = await asyncio.open_connection(server.ip, server.port)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            await writer.drain()
            self.sent += 1
            while True:
                try:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    message = await reader.readexactly(size)  # size 0 gives b"": a mismatch
                except asyncio.IncompleteReadError:
                    raise UpstreamError(
                        f"{server} (tcp): connection closed without a matching reply"
                    ) from None
                if matcher.matches(message):
                    return message
                self.mismatched += 1
        finally:
            writer.close()


def _upstream_fd_budget() -> int:
    """Half the file descriptors the process may open now (RLIMIT_NOFILE, soft limit).

    Read at every exchange: an operator may lower it at run time (prlimit). The other half
    stays for what must keep working when upstreams are slow: accepting TCP clients, the
    metrics and control sockets, log files.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft // 2


def _family(server: ServerAddress) -> socket.AddressFamily:
    try:
        version = ipaddress.ip_address(server.ip).version
    except ValueError:
        raise UpstreamError(f"{server}: not an IP address") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def omit_path_mtu_discovery(sock: socket.socket) -> None:
    """Set IP_PMTUDISC_OMIT on an IPv4 socket where the platform has it; ignore it elsewhere.

    Forged ICMP "fragmentation needed" then cannot lower the path MTU of our sockets, one step
    of the fragmentation-poisoning defence (RFC 9715).
    """
    option = getattr(socket, "IP_MTU_DISCOVER", None)
    value = getattr(socket, "IP_PMTUDISC_OMIT", None)
    if sys.platform == "linux":
        option = _LINUX_IP_MTU_DISCOVER if option is None else option
        value = _LINUX_IP_PMTUDISC_OMIT if value is None else value
    if option is None or value is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IP, option, value)


_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def transport_problem(exc: OSError) -> TransportProblem:
    """The engine's view of a socket error."""
    if exc.errno in _NO_ROUTE:
        return TransportProblem.NETWORK_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError):
        return TransportProblem.NOBODY_LISTENS
    return TransportProblem.OTHER
