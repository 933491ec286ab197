"""AsyncioNetwork against tiny scripted servers on loopback: matching, failures, framing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.upstream.exchange import AsyncioNetwork, omit_path_mtu_discovery
from resolver.upstream.reply_matching import ReplyMatcher

pytestmark = pytest.mark.integration

Script = Callable[[bytes], list[bytes]]


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one test body on a fresh loop, bounded so that a bug cannot hang the suite."""

    async def bounded() -> None:
        async with asyncio.timeout(15):
            await coro

    asyncio.run(bounded())


def make_query(name: str = "www.example.test", qtype: str = "A", qid: int = 0x1234) -> bytes:
    query = DNSRecord.question(name, qtype)
    query.header.id = qid
    return bytes(query.pack())


def make_reply(
    query: bytes, *, qid: int | None = None, qname: str | None = None, address: str = "192.0.2.1"
) -> bytes:
    record = DNSRecord.parse(query)
    reply = record.reply()
    if qid is not None:
        reply.header.id = qid
    if qname is not None:
        reply.questions[0].qname = qname
    reply.add_answer(RR(str(record.q.qname), QTYPE.A, rdata=A(address), ttl=60))
    return bytes(reply.pack())


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class ScriptedUdp(asyncio.DatagramProtocol):
    """Answers each datagram with the datagrams its script returns; remembers who asked."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sources: list[tuple[str, int]] = []
        self.endpoint: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.endpoint = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.append(addr)
        assert self.endpoint is not None
        for datagram in self.script(data):
            self.endpoint.sendto(datagram, addr)


@contextlib.asynccontextmanager
async def udp_server(
    script: Script, host: str = "127.0.0.2"
) -> AsyncIterator[tuple[ScriptedUdp, ServerAddress]]:
    loop = asyncio.get_running_loop()
    endpoint, protocol = await loop.create_datagram_endpoint(
        lambda: ScriptedUdp(script), local_addr=(host, 0)
    )
    try:
        yield protocol, ServerAddress(host, endpoint.get_extra_info("sockname")[1])
    finally:
        endpoint.close()


@contextlib.asynccontextmanager
async def tcp_server(
    script: Script, host: str = "127.0.0.2", *, byte_by_byte: bool = False, hang_up: bool = False
) -> AsyncIterator[ServerAddress]:
    """Reads one framed query, writes the script's chunks, then waits for the client to leave."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            query = await reader.readexactly(size)
            data = b"".join(script(query))
            chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                if byte_by_byte:
                    await asyncio.sleep(0.001)  # separate segments (asyncio sets TCP_NODELAY)
            if not hang_up:
                await reader.read()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, host, 0)
    try:
        yield ServerAddress(host, server.sockets[0].getsockname()[1])
    finally:
        server.close()


def closed_port(kind: socket.SocketKind, host: str = "127.0.0.3") -> ServerAddress:
    """An address where nothing listens: bind to get a free port, then close."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return ServerAddress(host, sock.getsockname()[1])


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_transport_udp_returns_matching_reply() -> None:
    """A correct UDP reply is returned byte for byte and counted as sent."""

    async def body() -> None:
        query = make_query()
        reply = make_reply(query)
        async with udp_server(lambda q: [reply]) as (_, server):
            network = AsyncioNetwork()
            assert await network.exchange(query, server, Transport.UDP, 2.0) == reply
            counters = (network.sent, network.timeouts, network.errors, network.mismatched)
            assert counters == (1, 0, 0, 0)

    run(body())


def test_transport_udp_ignores_mismatched_and_malformed_replies() -> None:
    """Wrong id, wrong question, QR=0 and a 5-byte datagram are skipped; the right reply wins."""

    async def body() -> None:
        query = make_query()
        right = make_reply(query)
        junk = [
            make_reply(query, qid=0x4321),
            make_reply(query, qname="other.example.test"),
            query,  # a reflected query: QR=0
            b"\x12\x34\x81\x80\x00",
        ]
        async with udp_server(lambda q: [*junk, right]) as (_, server):
            network = AsyncioNetwork()
            assert await network.exchange(query, server, Transport.UDP, 2.0) == right
            assert network.mismatched == 4

    run(body())


def test_transport_udp_accepts_question_in_other_case() -> None:
    """The question name is compared case-insensitively (RFC 4343), as 0x20-echoing servers need."""

    async def body() -> None:
        query = make_query("www.Example.test")
        reply = make_reply(query, qname="WWW.EXAMPLE.TEST")
        async with udp_server(lambda q: [reply]) as (_, server):
            assert await AsyncioNetwork().exchange(query, server, Transport.UDP, 2.0) == reply

    run(body())


def test_transport_udp_silence_times_out_at_deadline() -> None:
    """No reply gives UpstreamTimeout close to the deadline, not before and not much after."""

    async def body() -> None:
        async with udp_server(lambda q: []) as (_, server):
            network = AsyncioNetwork()
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await network.exchange(make_query(), server, Transport.UDP, 0.3)
            assert 0.25 <= time.monotonic() - started < 1.0
            assert network.timeouts == 1

    run(body())


def test_transport_udp_closed_port_fails_fast() -> None:
    """ICMP port unreachable ends the exchange at once with UpstreamError."""

    async def body() -> None:
        network = AsyncioNetwork()
        started = time.monotonic()
        with pytest.raises(UpstreamError):
            await network.exchange(make_query(), closed_port(socket.SOCK_DGRAM), Transport.UDP, 5.0)
        assert time.monotonic() - started < 1.0
        assert network.errors == 1

    run(body())


def test_transport_udp_ignores_replies_from_other_ports() -> None:
    """The connected socket drops a well-formed reply sent from another port of the same host."""

    async def body() -> None:
        query = make_query()
        real = make_reply(query)
        spoof = make_reply(query, address="198.51.100.66")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:
            spoofer.bind(("127.0.0.2", 0))
            async with udp_server(lambda q: []) as (protocol, server):

                def answer_after_spoof(q: bytes) -> list[bytes]:
                    spoofer.sendto(spoof, protocol.sources[-1])  # sent first, same host
                    return [real]

                protocol.script = answer_after_spoof
                network = AsyncioNetwork()
                assert await network.exchange(query, server, Transport.UDP, 2.0) == real
                assert network.mismatched == 0  # the kernel never delivered the spoof

    run(body())


def test_transport_udp_source_ports_vary() -> None:
    """50 exchanges use many different OS-chosen source ports (RFC 5452 §9.2)."""

    async def body() -> None:
        async with udp_server(lambda q: [make_reply(q)]) as (protocol, server):
            network = AsyncioNetwork()
            for qid in range(50):
                await network.exchange(make_query(qid=qid), server, Transport.UDP, 2.0)
            ports = {port for _, port in protocol.sources}
            assert len(protocol.sources) == 50
            assert len(ports) >= 10

    run(body())


def test_transport_udp_over_ipv6_loopback() -> None:
    """An IPv6 server address works like an IPv4 one."""
    if not ipv6_loopback_available():
        pytest.skip("::1 cannot be bound on this host")

    async def body() -> None:
        query = make_query()
        reply = make_reply(query)
        async with udp_server(lambda q: [reply], host="::1") as (_, server):
            assert await AsyncioNetwork().exchange(query, server, Transport.UDP, 2.0) == reply

    run(body())


def test_transport_caps_outstanding_sockets() -> None:
    """With max_outstanding=2, a third exchange does not open a socket while two are pending."""

    async def body() -> None:
        async with udp_server(lambda q: []) as (protocol, server):
            network = AsyncioNetwork(max_outstanding=2)
            tasks = [
                asyncio.create_task(network.exchange(make_query(qid=i), server, Transport.UDP, 0.5))
                for i in range(5)
            ]
            await asyncio.sleep(0.2)
            assert len(protocol.sources) == 2
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, UpstreamTimeout | UpstreamError) for r in results)

    run(body())


def test_transport_fd_exhaustion_is_upstream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMFILE while opening the socket becomes UpstreamError, not a crash."""

    def no_more_fds(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(24, "Too many open files")

    async def body() -> None:
        network = AsyncioNetwork()
        with monkeypatch.context() as patch:
            patch.setattr(socket, "socket", no_more_fds)
            with pytest.raises(UpstreamError, match="Too many open files"):
                await network.exchange(
                    make_query(), ServerAddress("127.0.0.2", 53), Transport.UDP, 1.0
                )
        assert network.errors == 1

    run(body())


def test_transport_keeps_half_the_file_descriptors_for_the_rest_of_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With RLIMIT_NOFILE at 4, at most 2 exchanges hold sockets; a third fails at once."""
    monkeypatch.setattr(
        "resolver.upstream.exchange.resource.getrlimit", lambda which: (4, 4096)
    )

    async def body() -> None:
        async with udp_server(lambda q: []) as (protocol, server):
            network = AsyncioNetwork()
            waiting = [
                asyncio.create_task(network.exchange(make_query(qid=i), server, Transport.UDP, 1.0))
                for i in range(2)
            ]
            await asyncio.sleep(0.1)
            with pytest.raises(UpstreamError, match="half the file descriptors"):  # no timeout
                await network.exchange(make_query(qid=9), server, Transport.UDP, 1.0)
            assert len(protocol.sources) == 2 and network.in_use == 2
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            assert network.in_use == 0

    run(body())


def test_transport_sets_pmtu_omit_on_ipv4_sockets() -> None:
    """Path MTU discovery is set to OMIT on an IPv4 socket where the platform supports it."""
    if not hasattr(socket, "IP_MTU_DISCOVER") and sys.platform != "linux":
        pytest.skip("no IP_MTU_DISCOVER on this platform")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        omit_path_mtu_discovery(sock)
        assert sock.getsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10)) == 5


def test_transport_tcp_returns_reply_written_byte_by_byte() -> None:
    """A framed TCP reply arriving in 1-byte segments is reassembled and returned."""

    async def body() -> None:
        query = make_query()
        reply = make_reply(query)
        async with tcp_server(lambda q: [frame(reply)], byte_by_byte=True) as server:
            network = AsyncioNetwork()
            assert await network.exchange(query, server, Transport.TCP, 3.0) == reply
            assert network.sent == 1

    run(body())


def test_transport_tcp_skips_empty_and_mismatched_messages() -> None:
    """A zero-length message and a wrong-id reply on the stream are skipped."""

    async def body() -> None:
        query = make_query()
        right = make_reply(query)
        chunks = [b"\x00\x00", frame(make_reply(query, qid=0x9999)), frame(right)]
        async with tcp_server(lambda q: chunks) as server:
            network = AsyncioNetwork()
            assert await network.exchange(query, server, Transport.TCP, 2.0) == right
            assert network.mismatched == 2

    run(body())


def test_transport_tcp_connection_refused_is_upstream_error() -> None:
    """A refused TCP connection fails at once with UpstreamError."""

    async def body() -> None:
        network = AsyncioNetwork()
        started = time.monotonic()
        with pytest.raises(UpstreamError):
            await network.exchange(
                make_query(), closed_port(socket.SOCK_STREAM), Transport.TCP, 5.0
            )
        assert time.monotonic() - started < 1.0
        assert network.errors == 1

    run(body())


def test_transport_tcp_hang_up_without_match_is_upstream_error() -> None:
    """A server that closes after a non-matching reply gives UpstreamError, not a timeout."""

    async def body() -> None:
        query = make_query()
        async with tcp_server(lambda q: [frame(make_reply(q, qid=1))], hang_up=True) as server:
            with pytest.raises(UpstreamError, match="without a matching reply"):
                await AsyncioNetwork().exchange(query, server, Transport.TCP, 2.0)

    run(body())


def test_transport_tcp_silence_times_out() -> None:
    """A TCP server that accepts but never answers gives UpstreamTimeout at the deadline."""

    async def body() -> None:
        async with tcp_server(lambda q: []) as server:
            network = AsyncioNetwork()
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await network.exchange(make_query(), server, Transport.TCP, 0.3)
            assert time.monotonic() - started < 1.0
            assert network.timeouts == 1

    run(body())


def test_reply_matcher_checks_header_and_question() -> None:
    """The matcher accepts the reply and rejects other opcodes, QDCOUNT and short data."""
    query = make_query()
    matcher = ReplyMatcher.for_query(query)
    reply = make_reply(query)
    assert matcher.matches(reply)
    other_opcode = reply[:2] + bytes([reply[2] | 0x20]) + reply[3:]  # opcode 4 (NOTIFY)
    assert not matcher.matches(other_opcode)
    two_questions = reply[:4] + b"\x00\x02" + reply[6:]
    assert not matcher.matches(two_questions)
    assert not matcher.matches(b"")
    assert not matcher.matches(reply[:14])
