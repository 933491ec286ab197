"""The DNS over TLS client (resolver/dot.py) against real TLS servers on loopback.

A small asyncio TLS server with a test certificate plays the misbehaving parts (replies out
of order, connections closed under a query, junk before the reply, silence); a real Unbound
shows that queries to it share one verified connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.upstream.exchange import AsyncioNetwork
from resolver.upstream.tls import DotClient, make_tls_context
from tests.integration.conftest import RunningLab
from tests.support.unbound import (
    CertificateFiles,
    RunningUnbound,
    free_port,
    make_certificates,
    start_unbound,
    stop_unbound,
)

pytestmark = pytest.mark.integration

SERVER_IP = "127.53.2.1"
UNBOUND_IP = "127.53.2.2"
NAME = "dot.resolver.test"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("dot-certs"), server_name=NAME,
                             ip=SERVER_IP)


def query(name: str, query_id: int) -> bytes:
    return make_query(Question(name, RRType.A), query_id=query_id, recursion_desired=True)


def empty_reply(message: bytes) -> bytes:
    """A NOERROR reply to `message` with RA set and nothing else."""
    return message[:2] + bytes([message[2] | 0x80, 0x80]) + message[4:]


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "TlsServer"], Awaitable[None]]


@dataclass
class TlsServer:
    port: int
    connections: int = 0
    queries: list[bytes] = field(default_factory=list)

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        size = int.from_bytes(await reader.readexactly(2), "big")
        message = await reader.readexactly(size)
        self.queries.append(message)
        return message


@asynccontextmanager
async def tls_server(certificates: CertificateFiles, session: Session) -> AsyncIterator[TlsServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    state = TlsServer(port=free_port(SERVER_IP))

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await session(reader, writer, state)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, SERVER_IP, state.port, ssl=context)
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def client(certificates: CertificateFiles, *, idle_timeout_s: float = 10.0) -> DotClient:
    return DotClient(context=make_tls_context(str(certificates.ca_file)),
                     idle_timeout_s=idle_timeout_s)


def target(server: TlsServer, name: str = NAME) -> ServerAddress:
    return ServerAddress(SERVER_IP, server.port, tls_name=name)


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 20))


def test_dot_pipelines_queries_and_matches_replies_out_of_order(
        certificates: CertificateFiles) -> None:
    """Three queries share one connection; replies in reverse order reach the right query."""
    async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      state: TlsServer) -> None:
        batch = [await state.read(reader) for _ in range(3)]
        for message in reversed(batch):
            writer.write(framed(empty_reply(message)))
        await writer.drain()
        await reader.read()  # until the client closes

    async def scenario() -> None:
        async with tls_server(certificates, reverse) as server:
            dot = client(certificates)
            replies = await asyncio.gather(*(
                dot.exchange(query(f"n{i}.example.", 100 + i), target(server), 5.0)
                for i in range(3)))
            assert [decode(r).id for r in replies] == [100, 101, 102]
            assert [decode(r).question for r in replies] == [
                Question(f"n{i}.example.", RRType.A) for i in range(3)]
            assert dot.connections_opened == 1 and server.connections == 1
            await dot.close()

    run(scenario())


def test_dot_sends_again_when_the_server_closes_a_used_connection(
        certificates: CertificateFiles) -> None:
    """The server answers one query per connection and drops the next unanswered: the
    client sends it again on a new connection (RFC 7766 §6.2.1)."""
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 state: TlsServer) -> None:
        writer.write(framed(empty_reply(await state.read(reader))))
        await writer.drain()
        await state.read(reader)  # read the second query, then close without answering

    async def scenario() -> None:
        async with tls_server(certificates, one_per_connection) as server:
            dot = client(certificates)
            first = await dot.exchange(query("a.example.", 1), target(server), 5.0)
            second = await dot.exchange(query("b.example.", 2), target(server), 5.0)
            assert decode(first).id == 1 and decode(second).id == 2
            assert dot.reconnects == 1
            assert dot.connections_opened == 2 == server.connections
            await dot.close()

    run(scenario())


def test_dot_ignores_replies_that_match_no_query(certificates: CertificateFiles) -> None:
    """A reply with another id, then one with another question, then the real one."""
    async def junk_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: TlsServer) -> None:
        message = await state.read(reader)
        wrong_id = bytes([message[0] ^ 0xFF]) + message[1:]
        other_question = query("other.example.", int.from_bytes(message[:2], "big"))
        for junk in (wrong_id, other_question, b"\x00"):
            writer.write(framed(empty_reply(junk) if len(junk) > 4 else junk))
        writer.write(framed(empty_reply(message)))
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with tls_server(certificates, junk_first) as server:
            dot = client(certificates)
            reply = await dot.exchange(query("www.example.", 4321), target(server), 5.0)
            assert decode(reply).id == 4321
            assert decode(reply).question == Question("www.example.", RRType.A)
            await dot.close()

    run(scenario())


def test_dot_idle_connection_is_closed_and_reopened(certificates: CertificateFiles) -> None:
    """After the idle timeout the connection is closed; the next query opens a new one."""
    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: TlsServer) -> None:
        while True:
            writer.write(framed(empty_reply(await state.read(reader))))
            await writer.drain()

    async def scenario() -> None:
        async with tls_server(certificates, answer_all) as server:
            dot = client(certificates, idle_timeout_s=0.1)
            await dot.exchange(query("a.example.", 1), target(server), 5.0)
            await dot.exchange(query("b.example.", 2), target(server), 5.0)
            assert dot.connections_opened == 1  # reused while busy
            for _ in range(100):
                if dot.open_connections == 0:
                    break
                await asyncio.sleep(0.05)
            assert dot.open_connections == 0
            await dot.exchange(query("c.example.", 3), target(server), 5.0)
            assert dot.connections_opened == 2
            await dot.close()

    run(scenario())


def test_dot_wrong_name_is_rejected_with_the_reason(certificates: CertificateFiles,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A certificate that is not valid for the expected name: UpstreamError, logged once."""
    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: TlsServer) -> None:
        writer.write(framed(empty_reply(await state.read(reader))))
        await writer.drain()

    async def scenario() -> None:
        async with tls_server(certificates, answer_all) as server:
            dot = client(certificates)
            for i in range(3):
                with pytest.raises(UpstreamError, match="certificate rejected"):
                    await dot.exchange(query("a.example.", i), target(server, "wrong.example"),
                                       5.0)
            assert server.queries == []  # nothing was sent over the unverified connection
            await dot.close()

    run(scenario())
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert "wrong.example" in rejected[0].getMessage()


def test_dot_certificate_for_the_ip_address_without_a_name(
        certificates: CertificateFiles) -> None:
    """With no TLS name the certificate must be valid for the server's IP address."""
    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: TlsServer) -> None:
        writer.write(framed(empty_reply(await state.read(reader))))
        await writer.drain()

    async def scenario() -> None:
        async with tls_server(certificates, answer_all) as server:
            dot = client(certificates)
            reply = await dot.exchange(query("a.example.", 9), target(server, SERVER_IP), 5.0)
            assert decode(reply).id == 9
            await dot.close()

    run(scenario())


def test_dot_silent_server_times_out(certificates: CertificateFiles) -> None:
    """A server that reads but never answers: UpstreamTimeout at the deadline."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     state: TlsServer) -> None:
        await reader.read()

    async def scenario() -> None:
        async with tls_server(certificates, silent) as server:
            dot = client(certificates)
            with pytest.raises(UpstreamTimeout):
                await dot.exchange(query("a.example.", 1), target(server), 0.3)
            await dot.close()

    run(scenario())


def test_dot_nothing_listening_is_an_upstream_error(certificates: CertificateFiles) -> None:
    """A refused connection fails at once with UpstreamError."""
    async def scenario() -> None:
        dot = client(certificates)
        port = free_port(SERVER_IP)
        with pytest.raises(UpstreamError):
            await dot.exchange(query("a.example.", 1),
                               ServerAddress(SERVER_IP, port, tls_name=NAME), 5.0)
        await dot.close()

    run(scenario())


# -- against Unbound ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def unbound_dot(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[RunningUnbound, CertificateFiles]]:
    directory = tmp_path_factory.mktemp("unbound-dot")
    certificates = make_certificates(directory / "certs", server_name=NAME, ip=UNBOUND_IP)
    running = start_unbound(directory, ip=UNBOUND_IP, lab_hints=lab.hints, lab_port=lab.port,
                            certificates=certificates)
    try:
        yield running, certificates
    finally:
        stop_unbound(running)


LAB_NAMES = ("www.hamburger.edu.", "www.networkutopia.com.", "www.crepes.fr.", "www.cnn.com.",
             "gaia.cs.umass.edu.", "www.amazon.com.")


def test_dot_to_unbound_shares_one_connection(
        unbound_dot: tuple[RunningUnbound, CertificateFiles]) -> None:
    """Concurrent queries to Unbound over TLS are all answered over one connection."""
    unbound, certificates = unbound_dot
    assert unbound.tls_port is not None
    server = ServerAddress(UNBOUND_IP, unbound.tls_port, tls_name=NAME)

    async def scenario() -> None:
        dot = DotClient(ca_file=str(certificates.ca_file))
        replies = await asyncio.gather(*(
            dot.exchange(query(name, 200 + i), server, 5.0) for i, name in enumerate(LAB_NAMES)))
        for name, reply in zip(LAB_NAMES, replies, strict=True):
            message = decode(reply)
            assert message.ra and message.answer, name
            assert message.question == Question(name, RRType.A)
        assert dot.connections_opened == 1
        await dot.close()

    run(scenario())


def test_asyncio_network_routes_tls_upstreams_to_dot(
        unbound_dot: tuple[RunningUnbound, CertificateFiles]) -> None:
    """AsyncioNetwork sends a server with a TLS name over DNS over TLS, whatever transport."""
    unbound, certificates = unbound_dot
    assert unbound.tls_port is not None
    server = ServerAddress(UNBOUND_IP, unbound.tls_port, tls_name=NAME)

    async def scenario() -> None:
        network = AsyncioNetwork(tls_ca_file=str(certificates.ca_file))
        for i, transport in enumerate((Transport.UDP, Transport.TCP)):
            reply = await network.exchange(query("www.hamburger.edu.", 300 + i), server,
                                           transport, 5.0)
            assert [rr.address for rr in decode(reply).answer] == ["198.51.100.11"]
        assert network.dot is not None and network.dot.connections_opened == 1
        await network.close()

    run(scenario())


def test_make_tls_context_refuses_a_file_without_certificates(tmp_path: Path) -> None:
    """A CA file that holds no certificate is an error at once, not at the first query."""
    bad = tmp_path / "empty.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError):
        make_tls_context(str(bad))
