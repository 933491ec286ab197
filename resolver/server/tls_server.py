"""Accepting TCP connections for the encrypted stream listeners (DoT, DoH, plain HTTP).

Each accepted socket first passes the `ConnectionGate` (access list, total and per-client
caps): a refused one is closed at once, before any TLS work. Then the event loop wraps it
(`connect_accepted_socket`, with TLS and a handshake bounded by `handshake_timeout_s`) and
the connection goes to the listener's session with the ALPN protocol the client chose
(None without TLS or without ALPN). Accepting runs in one task per listening socket, each
connection in its own task; `stop` cancels them all.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from resolver.engine.network import Transport
from resolver.server.client import Channel, Client
from resolver.server.connection_limits import ConnectionGate
from resolver.server.stream_connection import close_stream

logger = logging.getLogger(__name__)

#: Serves one connection after its handshake: (reader, writer, client, ALPN protocol).
Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Client, str | None],
                   Awaitable[None]]
_BACKLOG = 512
#: Accept errors that mean "no file descriptor or memory now": pause, do not stop serving.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class SecureStreamServer:
    """TCP servers on a list of addresses whose connections go through TLS to a session."""

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        *,
        channel: Channel,
        session: Session,
        gate: ConnectionGate,
        context: ssl.SSLContext | None,
        reuse_port: bool = False,
    ) -> None:
        self._addresses = list(addresses)
        self._reuse_port = reuse_port
        self._channel = channel
        self._session = session
        self._gate = gate
        self._context = context
        self.bound_addresses: list[tuple[str, int]] = []
        self.stopping = False
        self.handshake_failures = 0  #: connections that never finished their TLS handshake
        self._sockets: list[socket.socket] = []
        self._accepting: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[None]] = set()
        #: Query tasks of the sessions, drained on stop.
        self.query_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every address; OSError naming the address if one cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            for ip, port in self._addresses:
                sock = self._listening_socket(ip, port)
                self._sockets.append(sock)
                bound_ip, bound_port = sock.getsockname()[:2]
                self.bound_addresses.append((bound_ip, bound_port))
                self._accepting.add(loop.create_task(self._accept_loop(sock)))
        except BaseException:
            await self.stop()
            raise

    def _listening_socket(self, ip: str, port: int) -> socket.socket:
        where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        except ValueError:
            raise OSError(errno.EINVAL, f"cannot listen on {ip!r}: not an IP address") from None
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reuse_port:  # --workers: every worker accepts on the same address
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((ip, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot bind {self._channel.name} on {where}: "
                                     f"{exc.strerror or exc}") from exc
        return sock

    async def stop(self, drain_s: float = 0.0) -> None:
        self.stopping = True
        for task in self._accepting:
            task.cancel()
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        self._accepting.clear()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self.query_tasks and drain_s > 0:
            await asyncio.wait(set(self.query_tasks), timeout=drain_s)
        leftover = self.query_tasks | self._connections
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                sock, peer = await loop.sock_accept(listening)
            except OSError as exc:
                if exc.errno in _EXHAUSTED:  # wait for connections to close, then go on
                    logger.warning("cannot accept %s connections now: %s",
                                   self._channel.name, exc.strerror)
                    await asyncio.sleep(0.1)
                continue
            client = Client(ip=str(peer[0]), port=int(peer[1]), transport=Transport.TCP,
                            channel=self._channel)
            if self._gate.enter(client.ip) is not None:
                sock.close()  # before any TLS work: a refused client costs no handshake
                continue
            task = loop.create_task(self._serve(sock, client))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, sock: socket.socket, client: Client) -> None:
        limits = self._gate.limits
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        try:
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self._context,
                    ssl_handshake_timeout=limits.handshake_timeout_s
                    if self._context is not None else None)
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                self.handshake_failures += 1
                logger.debug("TLS handshake with %s failed: %r", client.ip, exc)
                sock.close()
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            tls = writer.get_extra_info("ssl_object")
            alpn = tls.selected_alpn_protocol() if tls is not None else None
            await self._session(reader, writer, client, alpn)
        except (OSError, ConnectionError):
            pass  # the client went away: nothing left to answer
        except Exception:  # a session bug must not take the server down
            logger.warning("%s session with %s failed", self._channel.name, client.ip,
                           exc_info=True)
        finally:
            self._gate.leave(client.ip)
            if writer is not None and not writer.is_closing():
                close_stream(writer, limits.idle_timeout_s)
