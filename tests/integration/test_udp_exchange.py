"""The UDP exchange as the event loop runs it: a readiness callback, a timer and one future.

Each behaviour is checked on both event loops the daemon may run (uvloop in production, the
standard loop where uvloop is missing): they report socket readiness and ICMP errors through
different code. Forged ICMP errors are sent from a raw socket on loopback (root only).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from resolver.engine.network import (
    ServerAddress,
    Transport,
    TransportProblem,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.upstream.exchange import AsyncioNetwork

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
SERVER_HOST = "127.0.0.2"
#: ICMP destination unreachable, code 10 (host administratively prohibited): Linux reports
#: it to a connected UDP socket as EHOSTUNREACH (a "hard" error, RFC 1122 §4.1.3.3).
ICMP_DEST_UNREACH, ICMP_HOST_ANO = 3, 10


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        factories.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip("no uvloop")))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


LOOPS = pytest.mark.parametrize("loop_factory", _loop_factories())


def run(loop_factory: LoopFactory, coro: Coroutine[Any, Any, None]) -> None:
    """Run one test body on a fresh loop of the given kind, bounded in time."""

    async def bounded() -> None:
        async with asyncio.timeout(15):
            await coro

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(bounded())


def make_query(name: str = "www.example.test", qid: int = 0x1234) -> bytes:
    query = DNSRecord.question(name, "A")
    query.header.id = qid
    return bytes(query.pack())


def make_reply(query: bytes, *, qid: int | None = None) -> bytes:
    record = DNSRecord.parse(query)
    reply = record.reply()
    if qid is not None:
        reply.header.id = qid
    reply.add_answer(RR(str(record.q.qname), QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    return bytes(reply.pack())


class SilentServer(asyncio.DatagramProtocol):
    """Remembers who asked and answers only when the test says so."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, tuple[str, int]]] = []
        self.endpoint: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.endpoint = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.asked.append((data, addr))
        self.arrived.set()

    def send(self, datagram: bytes, to: tuple[str, int]) -> None:
        assert self.endpoint is not None
        self.endpoint.sendto(datagram, to)

    async def next_query(self) -> tuple[bytes, tuple[str, int]]:
        await self.arrived.wait()
        self.arrived.clear()
        return self.asked[-1]


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[SilentServer, ServerAddress]]:
    loop = asyncio.get_running_loop()
    endpoint, protocol = await loop.create_datagram_endpoint(
        SilentServer, local_addr=(SERVER_HOST, 0)
    )
    try:
        yield protocol, ServerAddress(SERVER_HOST, endpoint.get_extra_info("sockname")[1])
    finally:
        endpoint.close()


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forged_host_unreachable(client: tuple[str, int], server: ServerAddress) -> bytes:
    """An ICMP error claiming that `server` is unreachable, quoting a datagram from `client`."""
    udp = struct.pack("!HHHH", client[1], server.port, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(client[0]), socket.inet_aton(server.ip))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    body = struct.pack("!BBHI", ICMP_DEST_UNREACH, ICMP_HOST_ANO, 0, 0) + ip + udp
    return body[:2] + struct.pack("!H", _checksum(body)) + body[4:]


@contextlib.contextmanager
def icmp_forger() -> Any:
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        pytest.skip("raw sockets need root")
    with raw:
        yield raw


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@LOOPS
def test_matching_reply_is_returned_after_junk_on_the_same_socket(
    loop_factory: LoopFactory,
) -> None:
    """40 mismatched datagrams (more than one wake-up reads) before the reply: all are
    counted and skipped, the reply is returned, no error and no timeout."""

    async def body() -> None:
        async with silent_server() as (server, address):
            network = AsyncioNetwork()
            query = make_query()
            exchange = asyncio.ensure_future(
                network.exchange(query, address, Transport.UDP, 2.0))
            _, client = await server.next_query()
            for qid in range(40):
                server.send(make_reply(query, qid=qid), client)
            server.send(make_reply(query), client)
            assert await exchange == make_reply(query)
            counters = (network.sent, network.mismatched, network.errors, network.timeouts)
            assert counters == (1, 40, 0, 0)

    run(loop_factory, body())


@LOOPS
def test_silence_times_out_at_the_deadline_and_releases_the_socket(
    loop_factory: LoopFactory,
) -> None:
    async def body() -> None:
        async with silent_server() as (_, address):
            network = AsyncioNetwork()
            before = open_descriptors()
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await network.exchange(make_query(), address, Transport.UDP, 0.3)
            assert 0.25 <= time.monotonic() - started < 1.0
            assert (network.timeouts, network.in_use) == (1, 0)
            assert open_descriptors() == before

    run(loop_factory, body())


@LOOPS
def test_port_unreachable_fails_at_once_as_nobody_listens(loop_factory: LoopFactory) -> None:
    async def body() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.3", 0))
            closed = ServerAddress("127.0.0.3", probe.getsockname()[1])
        network = AsyncioNetwork()
        started = time.monotonic()
        with pytest.raises(UpstreamError) as failure:
            await network.exchange(make_query(), closed, Transport.UDP, 5.0)
        assert failure.value.problem is TransportProblem.NOBODY_LISTENS
        assert time.monotonic() - started < 1.0
        assert (network.errors, network.in_use) == (1, 0)

    run(loop_factory, body())


@LOOPS
def test_forged_icmp_host_unreachable_does_not_end_the_exchange(
    loop_factory: LoopFactory,
) -> None:
    """Three forged ICMP errors arrive before the real reply: each is ignored (TuDoor) and
    the reply that follows is returned."""

    async def body() -> None:
        with icmp_forger() as raw:
            async with silent_server() as (server, address):
                network = AsyncioNetwork()
                query = make_query()
                exchange = asyncio.ensure_future(
                    network.exchange(query, address, Transport.UDP, 3.0))
                _, client = await server.next_query()
                for _ in range(3):
                    raw.sendto(forged_host_unreachable(client, address), (client[0], 0))
                    await asyncio.sleep(0.02)  # one pending error per socket at a time
                assert not exchange.done()
                server.send(make_reply(query), client)
                assert await exchange == make_reply(query)
                assert (network.errors, network.timeouts) == (0, 0)

    run(loop_factory, body())


@LOOPS
def test_a_storm_of_icmp_errors_ends_the_exchange_as_a_broken_socket(
    loop_factory: LoopFactory,
) -> None:
    """Beyond 16 socket errors in one exchange the socket is taken for broken: an
    UpstreamError (no route, as EHOSTUNREACH says) long before the deadline."""

    async def body() -> None:
        with icmp_forger() as raw:
            async with silent_server() as (server, address):
                network = AsyncioNetwork()
                exchange = asyncio.ensure_future(
                    network.exchange(make_query(), address, Transport.UDP, 10.0))
                _, client = await server.next_query()
                # A socket holds one pending error: errors sent faster than the exchange
                # reads them merge, so keep forging until the exchange gives up.
                forged = 0
                while not exchange.done() and forged < 200:
                    raw.sendto(forged_host_unreachable(client, address), (client[0], 0))
                    forged += 1
                    await asyncio.sleep(0.01)
                assert forged >= 17, "16 errors are outlasted"
                with pytest.raises(UpstreamError, match=os.strerror(errno.EHOSTUNREACH)) as failure:
                    await exchange
                assert failure.value.problem is TransportProblem.NETWORK_UNREACHABLE
                assert (network.errors, network.in_use) == (1, 0)

    run(loop_factory, body())


@LOOPS
def test_cancelled_exchange_closes_its_socket_and_frees_its_slot(
    loop_factory: LoopFactory,
) -> None:
    """Cancelling the task that awaits an exchange (a client gave up) releases everything
    at once: the socket, the slot, the in-use count; the next exchange starts at once."""

    async def body() -> None:
        async with silent_server() as (server, address):
            network = AsyncioNetwork(max_outstanding=1)
            before = open_descriptors()
            waiting = asyncio.ensure_future(
                network.exchange(make_query(), address, Transport.UDP, 5.0))
            await server.next_query()
            assert open_descriptors() == before + 1
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (network.in_use, open_descriptors()) == (0, before)
            query = make_query(qid=7)
            following = asyncio.ensure_future(
                network.exchange(query, address, Transport.UDP, 1.0))
            _, client = await asyncio.wait_for(server.next_query(), 0.5)
            server.send(make_reply(query), client)
            assert await following == make_reply(query)

    run(loop_factory, body())


@LOOPS
def test_a_released_slot_passes_to_the_exchange_waiting_for_it(
    loop_factory: LoopFactory,
) -> None:
    """With one slot, the second exchange waits; when the first is answered the second
    sends its query and gets its own reply, within its own deadline."""

    async def body() -> None:
        async with silent_server() as (server, address):
            network = AsyncioNetwork(max_outstanding=1)
            first_query, second_query = make_query(qid=1), make_query(qid=2)
            first = asyncio.ensure_future(
                network.exchange(first_query, address, Transport.UDP, 2.0))
            second = asyncio.ensure_future(
                network.exchange(second_query, address, Transport.UDP, 2.0))
            _, client = await server.next_query()
            await asyncio.sleep(0.05)
            assert len(server.asked) == 1  # the second waits for the slot
            server.send(make_reply(first_query), client)
            assert await first == make_reply(first_query)
            asked, client = await asyncio.wait_for(server.next_query(), 0.5)
            assert asked == second_query
            server.send(make_reply(second_query), client)
            assert await second == make_reply(second_query)
            assert (network.errors, network.timeouts, network.in_use) == (0, 0, 0)

    run(loop_factory, body())


@LOOPS
def test_giving_up_in_line_for_a_slot_leaks_no_slot(loop_factory: LoopFactory) -> None:
    """An exchange that waits for a slot past its deadline fails as a local shortage
    (UpstreamError, not a timeout); once the slot holder ends, the slot is free again."""

    async def body() -> None:
        async with silent_server() as (server, address):
            network = AsyncioNetwork(max_outstanding=1)
            holder = asyncio.ensure_future(
                network.exchange(make_query(qid=1), address, Transport.UDP, 0.4))
            await server.next_query()
            with pytest.raises(UpstreamError, match="no free upstream socket"):
                await network.exchange(make_query(qid=2), address, Transport.UDP, 0.1)
            with pytest.raises(UpstreamTimeout):
                await holder
            query = make_query(qid=3)
            later = asyncio.ensure_future(network.exchange(query, address, Transport.UDP, 1.0))
            _, client = await asyncio.wait_for(server.next_query(), 0.5)
            server.send(make_reply(query), client)
            assert await later == make_reply(query)
            assert (network.errors, network.timeouts, network.in_use) == (1, 1, 0)

    run(loop_factory, body())


@LOOPS
def test_every_exchange_has_its_own_kernel_chosen_source_port(
    loop_factory: LoopFactory,
) -> None:
    """40 exchanges in flight at once: 40 sockets, 40 distinct source ports, none of them
    a small reused set (RFC 5452 §9.2)."""

    async def body() -> None:
        async with silent_server() as (server, address):
            network = AsyncioNetwork()
            queries = [make_query(qid=qid) for qid in range(40)]
            exchanges = [asyncio.ensure_future(network.exchange(q, address, Transport.UDP, 2.0))
                         for q in queries]
            while len(server.asked) < 40:
                await server.next_query()
            ports = {client[1] for _, client in server.asked}
            assert len(ports) == 40
            for asked, client in server.asked:
                server.send(make_reply(asked), client)
            assert await asyncio.gather(*exchanges) == [make_reply(q) for q in queries]

    run(loop_factory, body())


@LOOPS
def test_timeouts_leave_no_reference_cycle_for_the_collector(loop_factory: LoopFactory) -> None:
    """A timed-out exchange is freed by reference counting: its future, socket and frames
    form no cycle that would wait for (and lengthen) a garbage collection."""
    async def body() -> None:
        async with silent_server() as (_, address):
            network = AsyncioNetwork()
            for _ in range(3):  # what a first exchange creates once (caches) is not counted
                with contextlib.suppress(UpstreamTimeout):
                    await network.exchange(make_query(), address, Transport.UDP, 0.01)
            gc.collect()
            gc.disable()
            try:
                for _ in range(20):
                    with contextlib.suppress(UpstreamTimeout):
                        await network.exchange(make_query(), address, Transport.UDP, 0.01)
                freed_in_cycles = gc.collect()
            finally:
                gc.enable()
            assert freed_in_cycles < 20  # 16 objects per timeout, before the cycle was cut

    run(loop_factory, body())
