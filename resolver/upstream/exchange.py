"""Upstream exchanges over asyncio sockets: one query out, the one matching reply back.

Rules this module keeps (RFC 5452, RFC 7766):
- UDP: a fresh socket per exchange, `connect()`ed to the server: the kernel binds it to a random
  ephemeral source port then (RFC 5452 §9.2: as unpredictable as an explicit bind to port 0),
  only that address and port can deliver, and ICMP errors reach us. The query is sent once.
  The exchange is no coroutine of its own: the socket's readiness calls one receive callback
  that drains and matches the datagrams, one `call_later` timer is the deadline, and the one
  future is the thing the driver awaits.
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
import collections
import contextlib
import errno
import ipaddress
import resource
import socket
import sys
from typing import TYPE_CHECKING

from resolver.dns.header import MAX_MESSAGE_OCTETS
from resolver.engine.network import (
    ServerAddress,
    Transport,
    TransportProblem,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.upstream.reply_matching import ReplyMatcher

if TYPE_CHECKING:
    from resolver.upstream.https import DohClient
    from resolver.upstream.tls import DotClient

#: Largest UDP datagram: nothing longer can arrive, so nothing is ever cut.
_MAX_UDP_DATAGRAM = MAX_MESSAGE_OCTETS
#: Socket errors (ICMP reports, maybe forged) a UDP exchange outlasts before it gives up:
#: enough for any forgery burst within one timeout, few enough that a broken socket cannot
#: spin until the deadline.
_MAX_IGNORED_SOCKET_ERRORS = 16
#: Datagrams one readiness callback reads at most before it yields to the rest of the loop.
_DATAGRAMS_PER_WAKEUP = 16
_NONBLOCKING_AT_CREATION = hasattr(socket, "SOCK_NONBLOCK")
_NONBLOCKING_DATAGRAM = socket.SOCK_DGRAM | getattr(socket, "SOCK_NONBLOCK", 0)
# Linux values, for Pythons whose socket module does not export them (3.11 does not).
_LINUX_IP_MTU_DISCOVER = 10
_LINUX_IP_PMTUDISC_OMIT = 5


#: Upstream exchanges holding a socket at once (Unbound outgoing-range, 4096 in its
#: libevent builds): black-holed zones hold theirs for a whole timeout, and the names of
#: healthy zones must still find one. Half the file descriptor limit bounds it as well.
MAX_OUTSTANDING = 4096


class AsyncioNetwork:
    """The production `Network`: real UDP and TCP exchanges on the running event loop.

    A server with a TLS name is a DNS over TLS upstream: its exchanges go to
    `resolver.upstream.tls.DotClient` (reused, verified connections), whatever the transport
    asked; one with a URL path as well is a DNS over HTTPS upstream, for
    `resolver.upstream.https.DohClient`.
    """

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, *,
                 tls_ca_file: str | None = None) -> None:
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be at least 1")
        self._slots = _SocketSlots(max_outstanding)
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
        loop = asyncio.get_running_loop()
        if self.in_use >= _upstream_fd_budget():
            self.errors += 1
            raise UpstreamError(f"{server}: upstream sockets hold half the file descriptors")
        self.in_use += 1
        try:
            if self._slots.take_free():
                left_s = timeout_s  # the common case: no wait, no timer, no coroutine
            else:
                left_s = await self._wait_for_slot(loop, server, timeout_s)
            try:
                plain = server.tls_name is None and server.doh_path is None
                if transport is Transport.UDP and plain:
                    pending = self._start_udp(loop, query, matcher, server, left_s)
                    try:
                        return await pending.future
                    finally:
                        pending.close()  # at once if the awaiting task is cancelled
                        # A timeout is raised from the future, which keeps it and so its
                        # traceback, this frame: this frame must not keep the future (through
                        # `pending`), or the two make a cycle that only a collection frees,
                        # holding the socket and the exchange until then.
                        del pending
                async with asyncio.timeout(left_s):
                    if server.doh_path is not None:
                        return await self._exchange_https(query, server, left_s)
                    if server.tls_name is not None:
                        return await self._exchange_tls(query, server, left_s)
                    return await self._exchange_tcp(query, matcher, server)
            finally:
                self._slots.give_back()
        except UpstreamTimeout:
            self.timeouts += 1
            raise
        except UpstreamError:
            self.errors += 1
            raise
        except TimeoutError:
            # The TCP/TLS deadline, or an OS-level ETIMEDOUT (an OSError): a timeout all the same.
            self.timeouts += 1
            raise UpstreamTimeout(
                f"{server} ({transport.value}): no matching reply within {timeout_s:g} s"
            ) from None
        except OSError as exc:  # EMFILE, ENETUNREACH, ECONNREFUSED, ECONNRESET, ...
            self.errors += 1
            raise UpstreamError(f"{server} ({transport.value}): {exc}",
                                transport_problem(exc)) from exc
        finally:
            self.in_use -= 1

    async def _wait_for_slot(
        self, loop: asyncio.AbstractEventLoop, server: ServerAddress, timeout_s: float
    ) -> float:
        """Wait for a socket slot; return the seconds left of `timeout_s` for the exchange."""
        deadline = loop.time() + timeout_s
        try:
            await self._slots.wait_until(loop, deadline)
        except TimeoutError:
            # A local shortage, not the server's silence: a failure, not a timeout.
            raise UpstreamError(f"{server}: no free upstream socket before the deadline") from None
        return max(deadline - loop.time(), 0.0)

    def _start_udp(
        self,
        loop: asyncio.AbstractEventLoop,
        query: bytes,
        matcher: ReplyMatcher,
        server: ServerAddress,
        timeout_s: float,
    ) -> _UdpExchange:
        """Open a fresh socket, send the query once and leave the rest to its callbacks."""
        family = _family(server)
        # SOCK_NONBLOCK at creation spares the fcntl() calls of setblocking(False).
        sock = socket.socket(family, _NONBLOCKING_DATAGRAM)
        try:
            if not _NONBLOCKING_AT_CREATION:
                sock.setblocking(False)
            if family == socket.AF_INET:
                omit_path_mtu_discovery(sock)
            # connect() binds an unbound socket to a kernel-chosen random ephemeral port, the
            # same choice as bind(port 0) (RFC 5452 §9.2), and filters replies to this server.
            sock.connect((server.ip, server.port))
            sock.send(query)
            self.sent += 1
            return _UdpExchange(loop, sock, matcher, server, self, timeout_s)
        except BaseException:
            sock.close()
            raise

    async def _exchange_tls(self, query: bytes, server: ServerAddress, timeout_s: float) -> bytes:
        if self.dot is None:
            from resolver.upstream.tls import DotClient

            self.dot = DotClient(ca_file=self._tls_ca_file)
        self.sent += 1
        return await self.dot.exchange(query, server, max(timeout_s, 0.001))

    async def _exchange_https(self, query: bytes, server: ServerAddress, timeout_s: float) -> bytes:
        if self.doh is None:
            from resolver.upstream.https import DohClient

            self.doh = DohClient(ca_file=self._tls_ca_file)
        self.sent += 1
        return await self.doh.exchange(query, server, max(timeout_s, 0.001))

    async def close(self) -> None:
        """Close the connections kept open for reuse (DNS over TLS and over HTTPS)."""
        if self.dot is not None:
            await self.dot.close()
        if self.doh is not None:
            await self.doh.close()

    async def _exchange_tcp(
        self, query: bytes, matcher: ReplyMatcher, server: ServerAddress
    ) -> bytes:
        _family(server)
        if len(query) > MAX_MESSAGE_OCTETS:
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


class _SocketSlots:
    """The cap on exchanges holding a socket: a counter, and a queue only when it is reached.

    Lighter than asyncio.Semaphore on the common path (a free slot is an integer decrement);
    a released slot passes straight to the longest waiter.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_free(self) -> bool:
        """Take a slot if one is free and nobody waits for one; True if taken."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait_until(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Wait in line for a slot until `deadline` (loop time); TimeoutError after it."""
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        """Release a slot: to the longest waiter still waiting, else to the free count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _UdpExchange:
    """One UDP query in flight: its connected socket, the reply it waits for, its deadline.

    No task and no coroutine of its own: the event loop calls `_on_readable` when datagrams
    (or ICMP errors) are queued on the socket and `_on_deadline` when the timer fires; either
    settles `future`, the one object the driver awaits, and releases the socket.
    """

    __slots__ = ("_errors", "_fd", "_loop", "_matcher", "_network", "_server", "_sock",
                 "_timeout_s", "_timer", "future")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        matcher: ReplyMatcher,
        server: ServerAddress,
        network: AsyncioNetwork,
        timeout_s: float,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._matcher = matcher
        self._server = server
        self._network = network
        self._timeout_s = timeout_s
        self._errors = 0
        self.future: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(self._fd, self._on_readable)
        try:
            self._timer = loop.call_later(timeout_s, self._on_deadline)
        except BaseException:
            # Nothing may stay registered for a descriptor the caller is about to close.
            loop.remove_reader(self._fd)
            raise

    def _on_readable(self) -> None:
        """Read what is queued: the first matching datagram settles the exchange."""
        sock = self._sock
        # Bounded, so that a flood on one socket cannot starve the loop; the reader stays
        # registered and the loop calls again while datagrams remain.
        for _ in range(_DATAGRAMS_PER_WAKEUP):
            try:
                data = sock.recv(_MAX_UDP_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                # ICMP port unreachable on a connected socket: nobody listens there.
                self._fail(UpstreamError(f"{self._server} (udp): port unreachable (ICMP)",
                                         TransportProblem.NOBODY_LISTENS))
                return
            except OSError as exc:
                # Other ICMP errors may be forged; they must not end the exchange (TuDoor).
                self._errors += 1
                if self._errors > _MAX_IGNORED_SOCKET_ERRORS:
                    self._fail(UpstreamError(f"{self._server} (udp): {exc}",
                                             transport_problem(exc)))
                    return
                # libuv (uvloop) stops watching a descriptor once poll() reported an error on
                # it: watch it anew, or the genuine reply after a forged error is never read.
                self._loop.remove_reader(self._fd)
                self._loop.add_reader(self._fd, self._on_readable)
                continue
            if self._matcher.matches(data):
                self._succeed(data)
                return
            self._network.mismatched += 1

    def _on_deadline(self) -> None:
        self._fail(UpstreamTimeout(
            f"{self._server} (udp): no matching reply within {self._timeout_s:g} s"))

    def _succeed(self, reply: bytes) -> None:
        self.close()
        if not self.future.done():  # done: the awaiting task was cancelled meanwhile
            self.future.set_result(reply)

    def _fail(self, error: Exception) -> None:
        self.close()
        if not self.future.done():
            self.future.set_exception(error)

    def close(self) -> None:
        """Stop watching the socket, cancel the timer, close the socket; idempotent."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        self._timer.cancel()
        self._sock.close()
        self._fd = -1


def _upstream_fd_budget() -> int:
    """Half the file descriptors the process may open now (RLIMIT_NOFILE, soft limit).

    Read at every exchange: an operator may lower it at run time (prlimit). The other half
    stays for what must keep working when upstreams are slow: accepting TCP clients, the
    metrics and control sockets, log files.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft // 2


def _family(server: ServerAddress) -> socket.AddressFamily:
    # inet_pton first: an order of magnitude cheaper than ipaddress, and it accepts exactly
    # the address literals connect() takes; ipaddress still decides the rare rest (scoped
    # IPv6 literals).
    try:
        socket.inet_pton(socket.AF_INET, server.ip)
        return socket.AF_INET
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, server.ip)
        return socket.AF_INET6
    except OSError:
        pass
    try:
        version = ipaddress.ip_address(server.ip).version
    except ValueError:
        raise UpstreamError(f"{server}: not an IP address") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _path_mtu_option() -> tuple[int, int] | None:
    """(IP_MTU_DISCOVER, IP_PMTUDISC_OMIT) where the platform has them, else None."""
    option = getattr(socket, "IP_MTU_DISCOVER", None)
    value = getattr(socket, "IP_PMTUDISC_OMIT", None)
    if sys.platform == "linux":
        option = _LINUX_IP_MTU_DISCOVER if option is None else option
        value = _LINUX_IP_PMTUDISC_OMIT if value is None else value
    if option is None or value is None:
        return None
    return option, value


_PATH_MTU_OMIT = _path_mtu_option()


def omit_path_mtu_discovery(sock: socket.socket) -> None:
    """Set IP_PMTUDISC_OMIT on an IPv4 socket where the platform has it; ignore it elsewhere.

    Forged ICMP "fragmentation needed" then cannot lower the path MTU of our sockets, one step
    of the fragmentation-poisoning defence (RFC 9715).
    """
    if _PATH_MTU_OMIT is None:
        return
    # Not contextlib.suppress: this runs for every upstream query, and the context
    # manager's object and calls cost more than the setsockopt (0.4 against 1.0 us).
    try:
        sock.setsockopt(socket.IPPROTO_IP, *_PATH_MTU_OMIT)
    except OSError:
        return  # refused by this kernel: the query goes out without it


_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def transport_problem(exc: OSError) -> TransportProblem:
    """The engine's view of a socket error."""
    if exc.errno in _NO_ROUTE:
        return TransportProblem.NETWORK_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError):
        return TransportProblem.NOBODY_LISTENS
    return TransportProblem.OTHER
