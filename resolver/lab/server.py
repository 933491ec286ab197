"""The lab's sockets: every lab server on its own loopback address, UDP and TCP, one port.

`Lab` signs the zones (resolver.lab.signing), binds and serves the whole world in-process
(tests use it directly); `run` is the `resolver lab` command: it writes the root hints and
the trust anchor beside them, prints the map and serves until SIGINT or SIGTERM.
All answers come from `authority.Authority`; this module only moves bytes. TCP follows
RFC 7766: a two-octet length before each message, several queries per connection, and an
idle timeout so that silent clients cannot hold a connection.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import cast

from resolver.daemon.hints_file import LAB_PORT_NOTE
from resolver.engine.network import Transport
from resolver.lab.authority import Authority, Zone
from resolver.lab.signing import sign_world
from resolver.lab.world import SERVERS, LabServer, root_servers, zone_text

log = logging.getLogger(__name__)

_HINT_TTL = 3600000  # the TTL IANA's root.hints uses
_PORT_ATTEMPTS = 20  # with port=0, how many free-port candidates to try


class _Endpoint:
    """One server's answering logic and its query counter."""

    def __init__(self, server: LabServer, authority: Authority) -> None:
        self.server = server
        self.authority = authority
        self.queries = 0


class _UdpProtocol(asyncio.DatagramProtocol):
    """One datagram in, at most one datagram out."""

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._endpoint.queries += 1
        reply = self._endpoint.authority.respond(data, transport=Transport.UDP)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: UDP error: %s", self._endpoint.server.name, exc)


class Lab:
    """The whole offline internet, served on loopback; start it, query it, stop it."""

    def __init__(
        self,
        *,
        port: int = 53,
        servers: Sequence[LabServer] = SERVERS,
        tcp_idle_timeout_s: float = 10.0,
        max_tcp_connections: int = 256,
        key_seed: bytes | None = None,
        now: int | None = None,
    ) -> None:
        """`key_seed` makes the zones' keys (fresh random ones when None); `now` is when
        the signatures are made (the real clock when None)."""
        self.port = port
        self._tcp_idle_timeout_s = tcp_idle_timeout_s
        self._max_tcp_connections = max_tcp_connections
        plain = {z: Zone.from_text(z, zone_text(z)) for s in servers for z in s.zones}
        self.signed = sign_world(
            plain, seed=os.urandom(32) if key_seed is None else key_seed,
            now=int(time.time()) if now is None else now)
        zones = self.signed.zones
        self._endpoints = [_Endpoint(s, Authority(zones[z] for z in s.zones)) for s in servers]
        #: server host name (without the final dot) -> loopback address
        self.servers: dict[str, str] = {s.name.rstrip("."): s.address for s in servers}
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind UDP and TCP on every server address; raises OSError if a port is unusable.

        With port 0, the kernel picks a free port for the first address and the other
        addresses reuse its number; if that number is taken elsewhere, try another.
        """
        if self.port != 0:
            await self._bind(self.port)
            return
        for _ in range(_PORT_ATTEMPTS - 1):
            try:
                await self._bind(0)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        await self._bind(0)

    async def _bind(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            for endpoint in self._endpoints:
                address = endpoint.server.address
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_UdpProtocol, endpoint), local_addr=(address, port)
                )
                self._udp.append(transport)
                port = transport.get_extra_info("sockname")[1]  # fixes the port after a 0
                self._tcp.append(
                    await asyncio.start_server(
                        functools.partial(self._serve_tcp, endpoint), host=address, port=port
                    )
                )
        except OSError:
            await self.stop()
            raise
        self.port = port

    async def stop(self) -> None:
        """Close every socket and connection. Safe to call twice."""
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._tcp:
            await server.wait_closed()
        self._udp, self._tcp = [], []

    async def _serve_tcp(
        self, endpoint: _Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= self._max_tcp_connections:
            writer.close()  # over the cap: accept and close at once
            return
        self._connections.add(task)
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), self._tcp_idle_timeout_s)
                size = int.from_bytes(prefix, "big")
                if size < 12:
                    break  # not even a header: no reply, close (RFC 1035 §4.2.2 framing)
                message = await asyncio.wait_for(reader.readexactly(size), self._tcp_idle_timeout_s)
                endpoint.queries += 1
                reply = endpoint.authority.respond(message, transport=Transport.TCP)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # the client left, went quiet or reset the connection
        except asyncio.CancelledError:
            pass  # the lab is stopping
        except Exception:
            log.exception("%s: TCP connection failed", endpoint.server.name)
        finally:
            self._connections.discard(task)
            writer.close()

    def query_counts(self) -> dict[str, int]:
        """Queries received so far (UDP datagrams and TCP messages), by server address."""
        return {e.server.address: e.queries for e in self._endpoints}

    def hints_text(self) -> str:
        """Root hints in the layout of IANA's root.hints (named.root), for the resolver."""
        lines = [
            "; Root hints for the offline DNS lab, in the layout of IANA's root.hints.",
            # Read back by resolver.daemon.hints_file to catch a wrong --upstream-port.
            LAB_PORT_NOTE.format(port=self.port),
        ]
        for server in root_servers():
            lines.append(f"{'.':<24} {_HINT_TTL:<10} NS    {server.name}")
            lines.append(f"{server.name:<24} {_HINT_TTL:<10} A     {server.address}")
        return "\n".join(lines) + "\n"

    def describe(self) -> list[str]:
        """One line per server: name, address and the zones it serves."""
        return [
            f"{e.server.name:<26} {e.server.address:<16} {' '.join(e.server.zones)}"
            for e in self._endpoints
        ]


def run(*, hints_file: Path, port: int) -> int:
    """Serve the lab until SIGINT or SIGTERM; 0 on a clean stop, 1 if it cannot start."""
    try:
        return asyncio.run(_run(hints_file, port))
    except KeyboardInterrupt:
        return 0


async def _run(hints_file: Path, port: int) -> int:
    lab = Lab(port=port)
    try:
        await lab.start()
    except OSError as exc:
        print(
            f"error: cannot listen on port {port}: {_bind_reason(exc)}; try --port 5353",
            file=sys.stderr,
        )
        return 1
    try:
        try:
            hints_file.write_text(lab.hints_text(), encoding="utf-8")
        except OSError as exc:
            print(
                f"error: cannot write the hints file {hints_file}: {exc.strerror}", file=sys.stderr
            )
            return 1
        print(f"DNS lab: {len(lab.servers)} authoritative servers on port {lab.port}", flush=True)
        for line in lab.describe():
            print(f"  {line}", flush=True)
        command = f"resolver serve --listen 127.0.0.1:5300 --root-hints {hints_file}"
        if lab.port != 53:
            command += f" --upstream-port {lab.port}"
        anchor_file = anchor_path(hints_file)
        try:
            anchor_file.write_text(lab.signed.anchor_text(), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the trust-anchor file {anchor_file}: {exc.strerror}",
                  file=sys.stderr)
            return 1
        print(
            f"root hints written to {hints_file}; start a resolver with:\n  {command}", flush=True
        )
        print(
            f"trust anchor (the lab root's DS) written to {anchor_file}; to validate DNSSEC:\n"
            f"  {command} --trust-anchor-file {anchor_file}\n"
            "  signed: every zone but crepes.fr (unsigned: insecure) and cnn.com (broken "
            "signatures: bogus)",
            flush=True,
        )
        print("serving; press Ctrl-C to stop", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    finally:
        await lab.stop()
    return 0


def anchor_path(hints_file: Path) -> Path:
    """Where the trust anchor goes: beside the hints, `lab.hints` -> `lab.anchor`."""
    if hints_file.suffix == ".anchor":  # never overwrite the hints themselves
        return hints_file.with_name(hints_file.name + ".anchor")
    return hints_file.with_suffix(".anchor")


def _bind_reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "it is already in use"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "a 127.x.y.z address is not available (add loopback aliases)"
    return exc.strerror or str(exc)
