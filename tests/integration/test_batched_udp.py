"""Batched UDP (recvmmsg/sendmmsg) on loopback: the batch itself, and the fast listener on it.

The reference for every batched reply is the same listener with batching off: a client must
not be able to tell the two apart, byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from resolver.engine.network import Transport
from resolver.server.acl import AccessControl
from resolver.server.datagram_batch import DatagramBatch, batching_available
from resolver.server.fast_path import FastListener
from resolver.server.metrics import Metrics
from tests.unit.test_answer_cache import Setup, query

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not batching_available(), reason="recvmmsg/sendmmsg need Linux"),
]


def udp_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = udp_socket()
    sock.setblocking(False)
    yield sock
    sock.close()


def exchange_when_ready(batch: DatagramBatch, answer: object, expected: int) -> int:
    """Run `exchange` until `expected` datagrams were taken (loopback delivery is immediate,
    but a scheduler may still hold a sender back for a moment)."""
    taken = 0
    for _ in range(200):
        taken += batch.exchange(answer)  # type: ignore[arg-type]
        if taken >= expected:
            return taken
        time.sleep(0.005)
    return taken


def test_batch_replies_to_each_datagram_at_its_source_behind_its_id(
    server: socket.socket,
) -> None:
    """Each reply goes to its own sender, after the query's own id, in one batch."""
    clients = [udp_socket() for _ in range(3)]
    for index, client in enumerate(clients):
        client.sendto(bytes((0, index)) + b"question-%d" % index, server.getsockname())
    batch = DatagramBatch(server, slots=8)
    seen: list[bytes] = []

    def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
        seen.append(data)
        return b"reply-to-" + data[2:]

    assert exchange_when_ready(batch, answer, 3) == 3
    assert sorted(seen) == [bytes((0, i)) + b"question-%d" % i for i in range(3)]
    for index, client in enumerate(clients):
        assert client.recv(512) == bytes((0, index)) + b"reply-to-question-%d" % index
        client.close()


def test_batch_sends_nothing_for_a_slot_without_reply_and_the_rest_still_leave(
    server: socket.socket,
) -> None:
    """A miss in the middle ends a run of replies; the replies after it are still sent."""
    clients = [udp_socket() for _ in range(3)]
    for index, client in enumerate(clients):
        client.sendto(b"\x00" + bytes((index,)) + b"q", server.getsockname())
    batch = DatagramBatch(server, slots=8)

    def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
        return None if data[1] == 1 else b"ok"

    assert exchange_when_ready(batch, answer, 3) == 3
    assert clients[0].recv(512) == b"\x00\x00ok"
    assert clients[2].recv(512) == b"\x00\x02ok"
    clients[1].settimeout(0.2)
    with pytest.raises(TimeoutError):
        clients[1].recv(512)
    for client in clients:
        client.close()


def test_batch_hands_on_a_datagram_that_fills_its_slot_as_read(server: socket.socket) -> None:
    """A datagram as long as a slot may have been cut: it is counted and handed on as read."""
    client = udp_socket()
    client.sendto(b"\x00\x01" + b"x" * 200, server.getsockname())
    client.sendto(b"\x00\x02short", server.getsockname())
    batch = DatagramBatch(server, slots=4, slot_octets=64)
    asked: list[bytes] = []

    def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
        asked.append(data)
        return b"ok"

    assert exchange_when_ready(batch, answer, 2) == 2
    assert asked == [b"\x00\x01" + b"x" * 62, b"\x00\x02short"] and batch.truncated == 1
    assert {client.recv(512), client.recv(512)} == {b"\x00\x01ok", b"\x00\x02ok"}
    client.close()


def test_batch_returns_zero_when_nothing_is_waiting(server: socket.socket) -> None:
    """No datagram: 0, no call to the answer function, no error."""
    batch = DatagramBatch(server)

    def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
        raise AssertionError("nothing was sent")

    assert batch.exchange(answer) == 0


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_batch_source_is_the_sender_and_its_key_ignores_the_port(
    family: socket.AddressFamily,
) -> None:
    """`source` gives the sender as the socket module would; the key is its address alone."""
    try:
        server = udp_socket(family)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server.setblocking(False)
    clients = [udp_socket(family) for _ in range(2)]
    for client in clients:
        client.sendto(b"\x00\x00q", server.getsockname())
    batch = DatagramBatch(server, slots=4)
    sources: list[tuple[object, ...]] = []
    keys: list[int | bytes] = []

    def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
        sources.append(batch.source(slot))
        keys.append(address)
        return None

    assert exchange_when_ready(batch, answer, 2) == 2
    assert sorted(s[:2] for s in sources) == sorted(c.getsockname()[:2] for c in clients)
    assert keys[0] == keys[1]  # same address, different ports
    server.close()
    for client in clients:
        client.close()


# --- the fast listener on batches ---------------------------------------------------------------


class Running:
    """A FastListener on 127.0.0.1 for one test body, with a client socket."""

    def __init__(self, setup: Setup, *, batching: bool) -> None:
        self.listener = FastListener(setup.handler, [("127.0.0.1", 0)],
                                     batch_datagrams=batching)

    async def __aenter__(self) -> Running:
        await self.listener.start()
        ip, port, _ = next(a for a in self.listener.bound_addresses if a[2] is Transport.UDP)
        self.address = (ip, port)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.setblocking(False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.close()
        await self.listener.stop()

    async def ask(self, wire: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.client, wire, self.address)
        async with asyncio.timeout(5):
            return await loop.sock_recv(self.client, 4096)


def run(setup: Setup, batching: bool, wires: list[bytes]) -> tuple[list[bytes], FastListener]:
    async def body() -> tuple[list[bytes], FastListener]:
        async with Running(setup, batching=batching) as running:
            return [await running.ask(wire) for wire in wires], running.listener

    return asyncio.run(body())


def test_fast_listener_batched_replies_equal_the_unbatched_ones() -> None:
    """Miss, hit, hit with another id and letter case: the same octets with batching or not."""
    wires = [query(qid=1), query(qid=2), query("WWW.networkUtopia.com.", qid=3),
             query("www.ibm.com.", qid=4, edns=1232)]
    plain_setup, batched_setup = Setup(), Setup()
    plain, _ = run(plain_setup, False, wires)
    batched, listener = run(batched_setup, True, wires)
    assert listener.batching and listener.batches
    assert batched == plain
    assert [reply[:2] for reply in batched] == [b"\x00\x01", b"\x00\x02", b"\x00\x03", b"\x00\x04"]
    assert batched[2][12:34] == wires[2][12:34]  # the client's letter case
    assert batched_setup.answers.hits == 2 and listener.udp_received == 4
    assert batched_setup.handler.queries == plain_setup.handler.queries == 4
    assert batched_setup.handler.rcodes == plain_setup.handler.rcodes == {"NOERROR": 4}


def test_fast_listener_batched_hits_are_timed_in_the_latency_histogram() -> None:
    """Cached answers from a batch are observed in the query-duration histogram."""
    setup = Setup()
    setup.handler.metrics = Metrics()
    run(setup, True, [query(qid=1), query(qid=2), query(qid=3)])
    assert setup.answers.hits == 2
    assert setup.handler.metrics.latency.count == 3  # one full path, two from the batch


def test_fast_listener_batched_client_refused_by_access_control_is_refused() -> None:
    """A cached answer is no way around access control: the client gets REFUSED."""
    setup = Setup()
    setup.ask(query())  # cached now
    setup.handler.access = AccessControl.from_texts(["127.0.0.0/8 refuse"])
    replies, _ = run(setup, True, [query(qid=7)])
    assert replies[0][:2] == b"\x00\x07" and replies[0][3] & 0xF == 5  # REFUSED
    assert setup.answers.hits == 0


def test_fast_listener_batched_sees_a_new_access_list_at_once() -> None:
    """A reload that replaces the access list applies to the very next batch."""
    setup = Setup()

    async def body() -> list[int]:
        async with Running(setup, batching=True) as running:
            first = await running.ask(query(qid=1))
            second = await running.ask(query(qid=2))  # from cache, allowed
            setup.handler.access = AccessControl.from_texts(["127.0.0.0/8 refuse"])
            third = await running.ask(query(qid=3))
            return [reply[3] & 0xF for reply in (first, second, third)]

    assert asyncio.run(body()) == [0, 0, 5]


def test_fast_listener_batched_query_log_sends_every_query_through_handle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the query log on, a cached query still reaches `handle`, which logs it."""
    setup = Setup()
    setup.ask(query())
    setup.handler.log_queries = True
    with caplog.at_level(logging.INFO, logger="resolver.queries"):
        replies, listener = run(setup, True, [query(qid=9)])
    assert replies[0][:2] == b"\x00\x09" and listener.udp_received == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "resolver.queries"]
    assert len(logged) == 1 and "www.networkutopia.com. A NOERROR" in logged[0]


def test_fast_listener_batched_drops_what_arrives_while_stopping() -> None:
    """Once stopping, datagrams are counted as dropped and not answered, as unbatched."""
    setup = Setup()

    async def body() -> tuple[int, int]:
        async with Running(setup, batching=True) as running:
            await running.ask(query(qid=1))
            running.listener._closing = True
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(running.client, query(qid=2), running.address)
            for _ in range(100):
                if running.listener.udp_dropped:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await loop.sock_recv(running.client, 4096)
            return running.listener.udp_received, running.listener.udp_dropped

    assert asyncio.run(body()) == (2, 1)


def test_fast_listener_without_batching_support_uses_the_datagram_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where recvmmsg is missing, the listener still serves through the event loop."""
    monkeypatch.setattr("resolver.server.fast_path.batching_available", lambda: False)
    setup = Setup()
    replies, listener = run(setup, True, [query(qid=5)])
    assert not listener.batching and not listener.batches and replies[0][:2] == b"\x00\x05"
    assert struct.unpack("!H", replies[0][6:8])[0] >= 1  # an answer record


def test_fast_listener_batched_datagram_longer_than_a_slot_gets_formerr_not_silence() -> None:
    """A 5,000-octet query: when what was cut holds a counted record (a padding option),
    FORMERR with the client's id; when it held only octets after the counted records, the
    same answer as without batching (those octets are ignored)."""
    padded = query(qid=0x0C01, edns=1232, options=b"\x00\x0c\x13\x80" + bytes(4992))
    trailing = query(qid=0x0C02) + bytes(5000)
    replies, listener = run(Setup(), True, [padded, trailing])
    unbatched, _ = run(Setup(), False, [trailing])
    assert replies[0][:2] == b"\x0c\x01" and replies[0][3] & 0xF == 1  # FORMERR
    assert replies[1] == unbatched[0] and replies[1][3] & 0xF == 0
    assert listener.batches[0].truncated == 2


def test_fast_listener_batched_answers_over_ipv6_from_cache() -> None:
    """On ::1 the batch keys clients by their IPv6 address and still answers hits in place."""
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    finally:
        probe.close()
    setup = Setup()
    setup.ask(query())  # cached now

    async def body() -> bytes:
        listener = FastListener(setup.handler, [("::1", 0)])
        await listener.start()
        try:
            ip, port, _ = next(a for a in listener.bound_addresses if a[2] is Transport.UDP)
            assert listener.batches
            client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            client.bind(("::1", 0))
            client.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(client, query(qid=0x0A0B), (ip, port))
            async with asyncio.timeout(5):
                reply = await loop.sock_recv(client, 4096)
            client.close()
            return reply
        finally:
            await listener.stop()

    reply = asyncio.run(body())
    assert reply[:2] == b"\x0a\x0b" and reply[3] & 0xF == 0
    assert setup.answers.hits == 1
