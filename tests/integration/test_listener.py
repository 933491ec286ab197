"""Listener on loopback with real sockets: UDP and TCP serving, framing rules, limits, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from resolver.engine.network import Transport
from resolver.server.listener import Client, Listener

pytestmark = pytest.mark.integration


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one test body on a fresh loop, bounded so that a bug cannot hang the suite."""

    async def bounded() -> None:
        async with asyncio.timeout(15):
            await coro

    asyncio.run(bounded())


def make_query(name: str = "www.example.test", qid: int = 0x1234) -> bytes:
    query = DNSRecord.question(name, "A")
    query.header.id = qid
    return bytes(query.pack())


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class EchoHandler:
    """Answers every query with one A record; a few names change its behaviour.

    boom.*: raises. silent.*: returns None. slow.*: answers after 0.2 s. gate.*: waits for `gate`.
    """

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.gate = asyncio.Event()

    async def handle(self, wire: bytes, client: Client) -> bytes | None:
        self.clients.append(client)
        query = DNSRecord.parse(wire)
        name = str(query.q.qname)
        if name.startswith("boom."):
            raise RuntimeError("handler bug")
        if name.startswith("silent."):
            return None
        if name.startswith("slow."):
            await asyncio.sleep(0.2)
        if name.startswith("gate."):
            await self.gate.wait()
        reply = query.reply()
        reply.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
        return bytes(reply.pack())


@contextlib.asynccontextmanager
async def serving(
    handler: EchoHandler | None = None, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[tuple[Listener, EchoHandler, tuple[str, int]]]:
    """A started listener on host:0; yields it, its handler and the (host, port) to ask."""
    handler = handler or EchoHandler()
    listener = Listener(handler, [(host, 0)], **options)
    await listener.start()
    try:
        yield listener, handler, (host, listener.bound_addresses[0][1])
    finally:
        await listener.stop()


async def udp_ask(address: tuple[str, int], wire: bytes, timeout_s: float = 2.0) -> bytes:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(address)
        sock.send(wire)
        async with asyncio.timeout(timeout_s):
            return await asyncio.get_running_loop().sock_recv(sock, 65535)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(size)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Wait for the server to close the connection; return how long it took."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
    return time.monotonic() - started


def reply_id(wire: bytes) -> int:
    return int(DNSRecord.parse(wire).header.id)


def test_listener_udp_query_answered() -> None:
    """A UDP query gets the handler's reply at its source, and the handler sees who asked."""

    async def body() -> None:
        async with serving() as (listener, handler, address):
            reply = await udp_ask(address, make_query(qid=77))
            assert reply_id(reply) == 77
            assert handler.clients[0].transport is Transport.UDP
            assert handler.clients[0].ip == "127.0.0.1"
            assert listener.udp_received == 1

    run(body())


def test_listener_binds_udp_and_tcp_on_one_port() -> None:
    """With port 0, UDP and TCP end up on the same port number, both listed in bound_addresses."""

    async def body() -> None:
        async with serving() as (listener, _, _address):
            [(udp_ip, udp_port, udp), (tcp_ip, tcp_port, tcp)] = listener.bound_addresses
            assert (udp, tcp) == (Transport.UDP, Transport.TCP)
            assert udp_ip == tcp_ip == "127.0.0.1"
            assert udp_port == tcp_port != 0

    run(body())


def test_listener_tcp_pipelined_queries_all_answered() -> None:
    """100 queries in one write are all answered on the same connection with their ids."""

    async def body() -> None:
        async with serving() as (listener, _, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"".join(frame(make_query(qid=i)) for i in range(100)))
            await writer.drain()
            ids = {reply_id(await read_frame(reader)) for _ in range(100)}
            assert ids == set(range(100))
            assert listener.tcp_connections == 1
            writer.close()

    run(body())


def test_listener_tcp_replies_may_overtake() -> None:
    """A fast query pipelined behind a slow one is answered first (RFC 7766 §6.2.1.1)."""

    async def body() -> None:
        async with serving() as (_, _, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(
                frame(make_query("slow.test", qid=1)) + frame(make_query("fast.test", qid=2))
            )
            first, second = await read_frame(reader), await read_frame(reader)
            assert (reply_id(first), reply_id(second)) == (2, 1)
            writer.close()

    run(body())


def test_listener_tcp_query_split_into_single_bytes_answered() -> None:
    """A query arriving one byte per segment is reassembled and answered."""

    async def body() -> None:
        async with serving() as (_, _, address):
            reader, writer = await asyncio.open_connection(*address)
            for octet in frame(make_query(qid=5)):
                writer.write(bytes([octet]))
                await writer.drain()
                await asyncio.sleep(0.001)
            assert reply_id(await read_frame(reader)) == 5
            writer.close()

    run(body())


@pytest.mark.parametrize("prefix", [b"\x00\x00", b"\x00\x05hello"])
def test_listener_tcp_too_short_length_closes_connection(prefix: bytes) -> None:
    """A length prefix of 0, or one too short for a DNS header, closes the connection at once."""

    async def body() -> None:
        async with serving(tcp_idle_timeout_s=5.0) as (_, _, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(prefix)
            assert await closed_within(reader, 2.0) < 1.0
            writer.close()

    run(body())


def test_listener_tcp_idle_timeout_closes_slowloris() -> None:
    """10 bytes of a 65535-byte message, then silence: closed at the idle timeout."""

    async def body() -> None:
        async with serving(tcp_idle_timeout_s=0.3) as (_, _, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"\xff\xff" + b"x" * 10)
            elapsed = await closed_within(reader, 3.0)
            assert 0.2 <= elapsed < 1.5
            writer.close()

    run(body())


def test_listener_tcp_idle_timeout_waits_for_pending_reply() -> None:
    """A client that asked and went quiet still gets its reply before the idle close."""

    async def body() -> None:
        async with serving(tcp_idle_timeout_s=0.1) as (_, _, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(frame(make_query("slow.test", qid=9)))
            assert reply_id(await read_frame(reader)) == 9
            await closed_within(reader, 2.0)
            writer.close()

    run(body())


def test_listener_handler_exception_does_not_kill_server(caplog: pytest.LogCaptureFixture) -> None:
    """A raising handler sends nothing, logs one warning, and the next queries are answered."""

    async def body() -> None:
        async with serving() as (listener, _, address):
            with pytest.raises(TimeoutError):
                await udp_ask(address, make_query("boom.test"), timeout_s=0.3)
            assert reply_id(await udp_ask(address, make_query(qid=3))) == 3
            reader, writer = await asyncio.open_connection(*address)
            writer.write(frame(make_query("boom.test", qid=1)) + frame(make_query(qid=2)))
            assert reply_id(await read_frame(reader)) == 2
            writer.close()
            assert listener.handler_errors == 2

    caplog.set_level(logging.WARNING)
    run(body())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert all(
        r.name == "resolver.server.listener" and r.levelno == logging.WARNING for r in warnings
    )


def test_listener_handler_none_sends_nothing() -> None:
    """When the handler returns None, no datagram goes back."""

    async def body() -> None:
        async with serving() as (_, _, address):
            with pytest.raises(TimeoutError):
                await udp_ask(address, make_query("silent.test"), timeout_s=0.3)

    run(body())


def test_listener_ipv6_loopback() -> None:
    """::1 is served over UDP and TCP like an IPv4 address."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 cannot be bound on this host")

    async def body() -> None:
        async with serving(host="::1") as (listener, handler, address):
            assert reply_id(await udp_ask(address, make_query(qid=6))) == 6
            reader, writer = await asyncio.open_connection(*address)
            writer.write(frame(make_query(qid=7)))
            assert reply_id(await read_frame(reader)) == 7
            writer.close()
            assert handler.clients[0].ip == "::1"
            assert {t for _, _, t in listener.bound_addresses} == {Transport.UDP, Transport.TCP}

    run(body())


def test_listener_tcp_over_cap_connections_closed() -> None:
    """Beyond max_tcp_clients open connections, a new one is accepted and closed at once."""

    async def body() -> None:
        async with serving(max_tcp_clients=2) as (listener, _, address):
            kept = []
            for qid in range(2):
                reader, writer = await asyncio.open_connection(*address)
                writer.write(frame(make_query(qid=qid)))
                assert reply_id(await read_frame(reader)) == qid
                kept.append(writer)
            reader, writer = await asyncio.open_connection(*address)
            assert await closed_within(reader, 2.0) < 1.0
            assert (listener.tcp_connections, listener.tcp_rejected) == (2, 1)
            for w in [*kept, writer]:
                w.close()

    run(body())


def test_listener_udp_over_pending_cap_dropped() -> None:
    """Beyond max_pending_udp in-flight queries, new datagrams are dropped and counted."""

    async def body() -> None:
        async with serving(max_pending_udp=2) as (listener, handler, address):
            asks = [
                asyncio.create_task(udp_ask(address, make_query("gate.test", qid=i)))
                for i in range(5)
            ]
            while listener.udp_received < 5:
                await asyncio.sleep(0.01)
            handler.gate.set()
            results = await asyncio.gather(*asks, return_exceptions=True)
            answered = [r for r in results if isinstance(r, bytes)]
            assert (len(answered), listener.udp_dropped) == (2, 3)

    run(body())


def test_listener_tcp_client_reset_before_reply_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A client that resets before its reply causes no log noise and the server keeps serving."""

    async def body() -> None:
        async with serving() as (_, _, address):
            _, writer = await asyncio.open_connection(*address)
            writer.write(frame(make_query("slow.test")))
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST, not FIN
            await asyncio.sleep(0.4)  # the slow reply is attempted after the reset
            assert reply_id(await udp_ask(address, make_query(qid=8))) == 8

    caplog.set_level(logging.WARNING)
    run(body())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_listener_stop_drains_in_flight_queries() -> None:
    """stop(drain_s) lets an in-flight query finish and send its reply."""

    async def body() -> None:
        async with serving() as (listener, _, address):
            ask = asyncio.create_task(udp_ask(address, make_query("slow.test", qid=4)))
            while listener.udp_received < 1:
                await asyncio.sleep(0.01)
            await listener.stop(drain_s=2.0)
            assert reply_id(await ask) == 4

    run(body())


def test_listener_stop_stops_accepting() -> None:
    """After stop, the TCP port refuses connections."""

    async def body() -> None:
        async with serving() as (listener, _, address):
            await listener.stop()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(*address)

    run(body())


def test_listener_bind_conflict_names_address() -> None:
    """A taken TCP port raises OSError naming the address and port, leaving nothing bound."""

    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            listener = Listener(EchoHandler(), [("127.0.0.1", port)])
            with pytest.raises(OSError, match=rf"cannot bind TCP on 127\.0\.0\.1:{port}"):
                await listener.start()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))  # the listener's UDP socket was released

    run(body())


def test_listener_rejects_non_ip_address() -> None:
    """A host name instead of an IP literal is an OSError with the name in it."""

    async def body() -> None:
        with pytest.raises(OSError, match="localhost"):
            await Listener(EchoHandler(), [("localhost", 0)]).start()

    run(body())


def test_listener_reuse_port_allows_two_listeners() -> None:
    """With reuse_port, a second listener binds the same UDP and TCP port."""

    async def body() -> None:
        async with serving(reuse_port=True) as (_, _, address):
            second = Listener(EchoHandler(), [address], reuse_port=True)
            await second.start()
            try:
                assert {port for _, port, _ in second.bound_addresses} == {address[1]}
            finally:
                await second.stop()

    run(body())
