"""Inbound DNS servers on asyncio: translate datagrams and TCP streams to handler calls and back.

The listener only moves bytes. It unframes and frames TCP messages (RFC 1035 §4.2.2), keeps the
connection rules of RFC 7766 and bounds its own resources; every decision about what a message
means belongs to the `QueryHandler`. Its rules:
- UDP: one handler task per datagram, the reply goes to the datagram's source. Beyond
  `max_pending_udp` tasks in flight, datagrams are dropped: it is UDP, the client retries.
- TCP: framing, concurrency and the idle timeout are `stream_connection.FramedConnection`'s
  (shared with DNS over TLS), with `tcp_idle_timeout_s`. Beyond `max_tcp_clients`
  connections, or `max_tcp_per_address` from one client address, new ones are accepted and
  closed at once. The wait for a client's next query shrinks as connections fill up
  (Unbound's tcp-idle-timeout rule, RFC 7766 §6.2.3: a server under pressure may close idle
  connections sooner): see `idle_timeout_s`.
- Nothing a client sends, and no handler exception, escapes: a failing handler is logged once
  at WARNING and the query gets no reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Protocol, TypedDict, cast

from resolver.engine.network import Transport
from resolver.server.client import Client
from resolver.server.stream_connection import FramedConnection, StreamRules

logger = logging.getLogger(__name__)

#: The shortest idle timeout under pressure (Unbound's floor for tcp-idle-timeout).
_MIN_IDLE_TIMEOUT_S = 0.2
_BIND_ATTEMPTS = 8


class DatagramSink(Protocol):
    """Where UDP replies go: an event loop's datagram transport, or a plain socket's wrapper."""

    def is_closing(self) -> bool: ...

    def sendto(self, data: bytes, addr: tuple[str | int, ...]) -> None: ...


class QueryHandler(Protocol):
    """Turns one query message into the reply message, or None to send nothing."""

    async def handle(self, wire: bytes, client: Client) -> bytes | None:
        """Return the full reply (already truncated to the client's UDP size) or None."""
        ...


def _format_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class ListenerOptions(TypedDict, total=False):
    """The keyword options of `Listener`, as a listener built on it passes them along."""

    tcp_idle_timeout_s: float
    max_tcp_clients: int
    max_tcp_per_address: int
    max_pending_udp: int
    reuse_port: bool


class Listener:
    """UDP and TCP servers on a list of addresses, all feeding one handler."""

    def __init__(
        self,
        handler: QueryHandler,
        addresses: list[tuple[str, int]],
        *,
        tcp_idle_timeout_s: float = 10.0,
        max_tcp_clients: int = 128,
        max_tcp_per_address: int = 10,
        max_pending_udp: int = 1024,
        reuse_port: bool = False,
    ) -> None:
        self._handler = handler
        self._addresses = list(addresses)
        self._tcp_idle_timeout_s = tcp_idle_timeout_s
        self._max_tcp_clients = max_tcp_clients
        self._max_tcp_per_address = max_tcp_per_address
        self._tcp_per_address: dict[str, int] = {}
        self._max_pending_udp = max_pending_udp
        self._reuse_port = reuse_port
        self.bound_addresses: list[tuple[str, int, Transport]] = []
        self.udp_received = 0  #: datagrams read
        self.udp_dropped = 0  #: datagrams dropped: max_pending_udp reached, or stopping
        self.tcp_connections = 0  #: TCP connections served
        self.tcp_rejected = 0  #: TCP connections closed at once because max_tcp_clients were open
        #: TCP connections closed at once because their address had max_tcp_per_address open
        self.tcp_rejected_per_address = 0
        self.handler_errors = 0  #: handler calls that raised
        self._closing = False
        self._udp_closers: list[Callable[[], None]] = []
        self._tcp_servers: list[asyncio.Server] = []
        self._udp_tasks: set[asyncio.Task[None]] = set()
        self._tcp_query_tasks: set[asyncio.Task[None]] = set()
        self._tcp_connection_tasks: set[asyncio.Task[None]] = set()
        self._stream_rules = StreamRules(
            answer=self._call_handler, idle_timeout_s=tcp_idle_timeout_s,
            stopping=lambda: self._closing, query_tasks=self._tcp_query_tasks,
            next_query_timeout_s=self.idle_timeout_s)

    async def start(self) -> None:
        """Bind UDP and TCP on every address; OSError naming the address if one cannot be bound."""
        try:
            for ip, port in self._addresses:
                udp_sock, tcp_sock = self._bind_pair(ip, port)
                try:
                    self._udp_closers.append(await self._serve_udp(udp_sock))
                except BaseException:
                    udp_sock.close()
                    tcp_sock.close()
                    raise
                try:
                    server = await asyncio.start_server(self._accept_tcp, sock=tcp_sock)
                except BaseException:
                    tcp_sock.close()
                    raise
                self._tcp_servers.append(server)
                for sock, transport in ((udp_sock, Transport.UDP), (tcp_sock, Transport.TCP)):
                    bound_ip, bound_port = sock.getsockname()[:2]
                    self.bound_addresses.append((bound_ip, bound_port, transport))
        except BaseException:
            await self.stop()
            raise

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop accepting at once, let in-flight queries finish for up to `drain_s`, close all."""
        self._closing = True
        for server in self._tcp_servers:
            server.close()
        in_flight = self._udp_tasks | self._tcp_query_tasks
        if in_flight and drain_s > 0:
            await asyncio.wait(in_flight, timeout=drain_s)
        leftover = self._udp_tasks | self._tcp_query_tasks | self._tcp_connection_tasks
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        for close in self._udp_closers:
            close()
        self._udp_closers.clear()
        self._tcp_servers.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks (fds released)

    async def _serve_udp(self, sock: socket.socket) -> Callable[[], None]:
        """Start answering datagrams on a bound UDP socket; returns what closes it."""
        endpoint, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _UdpServer(self), sock=sock
        )
        return endpoint.close

    def _bind_pair(self, ip: str, port: int) -> tuple[socket.socket, socket.socket]:
        """Bind UDP, then TCP on the same port number; for port 0, retry if TCP's is taken."""
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        except ValueError:
            raise OSError(errno.EINVAL, f"cannot listen on {ip!r}: not an IP address") from None
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            udp_sock = self._bound_socket(family, socket.SOCK_DGRAM, ip, port)
            try:
                tcp_sock = self._bound_socket(
                    family, socket.SOCK_STREAM, ip, udp_sock.getsockname()[1]
                )
            except OSError as exc:
                udp_sock.close()
                if port == 0 and exc.errno == errno.EADDRINUSE and attempt < _BIND_ATTEMPTS:
                    continue
                raise
            return udp_sock, tcp_sock
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _bound_socket(
        self, family: socket.AddressFamily, kind: socket.SocketKind, ip: str, port: int
    ) -> socket.socket:
        name = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, kind)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:
                if not hasattr(socket, "SO_REUSEPORT"):
                    raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available here")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # "::" must not also claim IPv4: IPv4 addresses are listed on their own.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_DGRAM:
                _enlarge_receive_buffer(sock)
            sock.bind((ip, port))
            sock.setblocking(False)
        except OSError as exc:
            if sock is not None:
                sock.close()
            reason = exc.strerror or str(exc)
            raise OSError(
                exc.errno, f"cannot bind {name} on {_format_address(ip, port)}: {reason}"
            ) from exc
        return sock

    async def _call_handler(self, wire: bytes, client: Client) -> bytes | None:
        try:
            return await self._handler.handle(wire, client)
        except Exception:
            self.handler_errors += 1
            logger.warning(
                "query handler failed for %s over %s; no reply sent",
                _format_address(client.ip, client.port),
                client.via,
                exc_info=True,
            )
            return None

    def _on_datagram(
        self, data: bytes, addr: tuple[str | int, ...], endpoint: DatagramSink
    ) -> None:
        self.udp_received += 1
        if self._closing or len(self._udp_tasks) >= self._max_pending_udp:
            self.udp_dropped += 1
            return
        client = Client(ip=str(addr[0]), port=int(addr[1]), transport=Transport.UDP)
        task = asyncio.get_running_loop().create_task(
            self._answer_datagram(data, addr, client, endpoint)
        )
        self._udp_tasks.add(task)
        task.add_done_callback(self._udp_tasks.discard)

    async def _answer_datagram(
        self,
        data: bytes,
        addr: tuple[str | int, ...],
        client: Client,
        endpoint: DatagramSink,
    ) -> None:
        reply = await self._call_handler(data, client)
        if reply is None or endpoint.is_closing():
            return
        try:
            endpoint.sendto(reply, addr)
        except (OSError, ValueError, TypeError) as exc:
            logger.debug("reply to %s not sent: %r", _format_address(client.ip, client.port), exc)

    def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback: the connection runs in a task this listener owns and may cancel.
        if len(self._tcp_connection_tasks) >= self._max_tcp_clients:
            self.tcp_rejected += 1
            writer.close()
            return
        peer = writer.get_extra_info("peername") or ("", 0)
        client = Client(ip=str(peer[0]), port=int(peer[1]), transport=Transport.TCP)
        held = self._tcp_per_address.get(client.ip, 0)
        if held >= self._max_tcp_per_address:
            # One address reconnecting idle sockets must not take the slots of everyone else.
            self.tcp_rejected_per_address += 1
            writer.close()
            return
        self._tcp_per_address[client.ip] = held + 1
        self.tcp_connections += 1
        connection = FramedConnection(self._stream_rules, reader, writer, client)
        task = asyncio.get_running_loop().create_task(connection.serve())
        self._tcp_connection_tasks.add(task)
        task.add_done_callback(self._tcp_connection_tasks.discard)
        task.add_done_callback(lambda _task: self._release_address(client.ip))

    def _release_address(self, ip: str) -> None:
        left = self._tcp_per_address.get(ip, 1) - 1
        if left > 0:
            self._tcp_per_address[ip] = left
        else:
            self._tcp_per_address.pop(ip, None)

    def idle_timeout_s(self) -> float:
        """The wait for a client's next query, shorter as TCP slots fill (Unbound's
        tcp-idle-timeout: below 50% free slots 1% of the configured value, below 35% 0.2%,
        below 20% none, never under 200 ms)."""
        free = 1.0 - len(self._tcp_connection_tasks) / max(1, self._max_tcp_clients)
        configured = self._tcp_idle_timeout_s
        if free >= 0.5:
            return configured
        scaled = configured * 0.01 if free >= 0.35 else configured * 0.002 if free >= 0.2 else 0.0
        return min(configured, max(_MIN_IDLE_TIMEOUT_S, scaled))


class _UdpServer(asyncio.DatagramProtocol):
    """Hands every datagram of one bound socket to the listener."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._endpoint: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not a DatagramTransport subclass on every Python version, but it has that interface.
        self._endpoint = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._endpoint is not None:
            self._listener._on_datagram(data, addr, self._endpoint)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors about clients (gone, port closed): nothing to do on a server socket.
        logger.debug("UDP socket error ignored: %r", exc)


#: Receive buffer asked for on UDP listen sockets (Unbound so-rcvbuf: "try 4m on a busy
#: server"). The default (net.core.rmem_default, often 208 KB) holds about 200 queries, a
#: few tens of milliseconds at thousands a second: any pause longer drops datagrams.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


def _enlarge_receive_buffer(sock: socket.socket) -> None:
    """Ask for UDP_RECEIVE_BUFFER; the kernel caps it at net.core.rmem_max, silently."""
    with contextlib.suppress(OSError):  # a smaller buffer still works: the default stays
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
