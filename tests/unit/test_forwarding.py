"""Forward and stub zones: the notation, the configured delegations, failover and loops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from resolver.cli.commands import main
from resolver.daemon.app import build
from resolver.daemon.config import ServeConfig
from resolver.dns.decoding import decode
from resolver.dns.encoding import encode, make_query
from resolver.dns.wire import Message, Question, Rcode, RRType, parse_record
from resolver.dnssec.anchors import ROOT_ANCHORS
from resolver.engine.network import ServerAddress, Transport, UpstreamTimeout
from resolver.engine.settings import EngineSettings, ForwardingSettings, ValidationSettings
from resolver.server.listener import Client
from resolver.upstream.forwarding import (
    DOT_PORT,
    ForwardingError,
    ForwardingNetwork,
    ForwardLoopGuard,
    check_no_self_forwarding,
    configured_upstreams,
    configured_zones,
    forward_zone_names,
    parse_upstream,
    parse_zone_upstreams,
)
from tests.support.labnet import FakeClock, LabNetwork, lab_root_hints

# -- the notation -------------------------------------------------------------------------


def test_parse_upstream_plain_address_uses_the_default_port() -> None:
    """A bare IPv4 address is plain DNS on the default port."""
    assert parse_upstream("192.0.2.1") == ServerAddress("192.0.2.1", 53)
    assert parse_upstream("192.0.2.1", default_port=5353) == ServerAddress("192.0.2.1", 5353)


def test_parse_upstream_port_after_at_sign() -> None:
    """ADDR@PORT sets the port, as in Unbound's forward-addr."""
    assert parse_upstream("127.0.0.1@5301") == ServerAddress("127.0.0.1", 5301)


def test_parse_upstream_ipv6_needs_no_brackets() -> None:
    """`::1@5301` is IPv6 ::1 on port 5301; brackets are accepted too."""
    assert parse_upstream("::1@5301") == ServerAddress("::1", 5301)
    assert parse_upstream("[2001:db8::1]@53") == ServerAddress("2001:db8::1", 53)
    assert parse_upstream("2001:DB8:0::1") == ServerAddress("2001:db8::1", 53)


def test_parse_upstream_tls_name_means_dns_over_tls_on_853() -> None:
    """#NAME asks for DNS over TLS, port 853 unless given, verified against NAME."""
    assert parse_upstream("9.9.9.9#dns.quad9.net") == ServerAddress(
        "9.9.9.9", DOT_PORT, tls_name="dns.quad9.net")
    assert parse_upstream("127.0.0.1@8853#Dot.Test.") == ServerAddress(
        "127.0.0.1", 8853, tls_name="dot.test")


def test_parse_upstream_tls_without_name_verifies_the_address() -> None:
    """With tls=True and no name the certificate must be valid for the IP address."""
    assert parse_upstream("127.0.0.1", tls=True) == ServerAddress(
        "127.0.0.1", DOT_PORT, tls_name="127.0.0.1")


@pytest.mark.parametrize("text", [
    "", "dns.google", "192.0.2.1@", "192.0.2.1@0", "192.0.2.1@65536", "192.0.2.1@x",
    "192.0.2.1#", "192.0.2.1#bad name", "192.0.2.1#" + "a" * 64 + ".test", "999.1.1.1",
])
def test_parse_upstream_rejects_bad_notation_with_one_line(text: str) -> None:
    """Bad addresses, ports and TLS names raise ForwardingError with a one-line message."""
    with pytest.raises(ForwardingError) as caught:
        parse_upstream(text)
    assert "\n" not in str(caught.value)
    assert str(caught.value)


def test_notation_reads_back_as_the_same_server() -> None:
    """The notation messages show decodes back to the same server, port and TLS name included."""
    for server in (ServerAddress("127.0.0.1", 5301), ServerAddress("::1", 53),
                   ServerAddress("192.0.2.7", 853, tls_name="dot.example")):
        assert parse_upstream(server.notation()) == server


def test_configured_servers_carry_their_parsed_address() -> None:
    """A forward zone's servers hold the `ServerAddress` parsed from the option, no text."""
    zones = configured_zones(ForwardingSettings(forward=("127.0.0.1@5301#dot.test",)),
                             default_port=53)
    [server] = zones["."].servers
    assert server.upstream == ServerAddress("127.0.0.1", 5301, tls_name="dot.test")
    assert server.addresses == ()


def test_parse_zone_upstreams_reads_zone_and_list() -> None:
    """ZONE=ADDR[@PORT][,ADDR...] gives the canonical zone and its upstreams in order."""
    zone, servers = parse_zone_upstreams("Corp.Example=10.0.0.1, 10.0.0.2@5353")
    assert zone == "corp.example."
    assert servers == (ServerAddress("10.0.0.1", 53), ServerAddress("10.0.0.2", 5353))


@pytest.mark.parametrize("text", ["corp.example", "corp.example=", "=10.0.0.1",
                                  "a..b=10.0.0.1", "corp.example=nohost"])
def test_parse_zone_upstreams_rejects_bad_text(text: str) -> None:
    """A zone option without '=', without an address or with a bad name is refused."""
    with pytest.raises(ForwardingError):
        parse_zone_upstreams(text)


# -- configured zones ---------------------------------------------------------------------


def test_configured_zones_forwarders_for_the_root_are_recursive() -> None:
    """--forward and --forward-tls both make the root a forward zone (RD=1), in order."""
    zones = configured_zones(
        ForwardingSettings(forward=("127.0.0.1@5301",), forward_tls=("127.0.0.2#dot.test",)),
        default_port=53,
    )
    root = zones["."]
    assert root.recursion_desired
    assert [a for ns in root.servers for a in ns.address_texts()] == [
        "127.0.0.1@5301", "127.0.0.2@853#dot.test"]


def test_configured_zones_stub_zone_is_iterative_and_forward_zone_recursive() -> None:
    """A stub zone is asked with RD=0, a forward zone with RD=1; repeats merge, duplicates go."""
    zones = configured_zones(
        ForwardingSettings(
            forward_zones=("corp.example=10.0.0.1", "corp.example=10.0.0.1,10.0.0.2"),
            stub_zones=("lab.example=127.0.0.9@5353",),
        ),
        default_port=53,
    )
    assert set(zones) == {"corp.example.", "lab.example."}
    assert zones["corp.example."].recursion_desired
    assert [a for ns in zones["corp.example."].servers for a in ns.address_texts()] == [
        "10.0.0.1@53", "10.0.0.2@53"]
    stub = zones["lab.example."]
    assert not stub.recursion_desired
    assert stub.source == "stub zone"
    assert forward_zone_names(zones) == frozenset({"corp.example."})


def test_configured_zones_default_port_is_the_upstream_port() -> None:
    """An address without @PORT uses the port given (the --upstream-port)."""
    zones = configured_zones(ForwardingSettings(stub_zones=("x.test=127.0.0.9",)),
                             default_port=5353)
    assert configured_upstreams(zones) == [ServerAddress("127.0.0.9", 5353)]


def test_configured_zones_refuses_a_zone_both_forward_and_stub() -> None:
    """One zone cannot be both forwarded and stubbed."""
    with pytest.raises(ForwardingError, match="both"):
        configured_zones(ForwardingSettings(forward_zones=("x.test=10.0.0.1",),
                                            stub_zones=("x.test=10.0.0.2",)), default_port=53)


def test_configured_zones_empty_without_settings() -> None:
    """No forwarding settings: no configured zone, plain iteration."""
    assert configured_zones(ForwardingSettings(), default_port=53) == {}


# -- loops at start -----------------------------------------------------------------------


def test_check_no_self_forwarding_refuses_our_own_listen_address() -> None:
    """An upstream equal to a listen address (ip and port) is a loop."""
    with pytest.raises(ForwardingError, match="forwarding loop"):
        check_no_self_forwarding([ServerAddress("127.0.0.1", 5300)], [("127.0.0.1", 5300)])


def test_check_no_self_forwarding_allows_another_port_or_address() -> None:
    """The same address on another port, or another address, is someone else."""
    check_no_self_forwarding([ServerAddress("127.0.0.1", 5301), ServerAddress("127.0.0.2", 5300)],
                             [("127.0.0.1", 5300)])


def test_check_no_self_forwarding_wildcard_listen_covers_local_addresses() -> None:
    """Listening on 0.0.0.0 means every local address of this host is ours."""
    with pytest.raises(ForwardingError):
        check_no_self_forwarding([ServerAddress("127.0.0.1", 5300)], [("0.0.0.0", 5300)])
    with pytest.raises(ForwardingError):
        check_no_self_forwarding([ServerAddress("::ffff:127.0.0.1", 53)], [("127.0.0.1", 53)])


def _serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serve", *args])
    return result.exit_code, result.output


def test_cli_serve_refuses_to_forward_to_itself() -> None:
    """`serve --forward` to our own listen address exits 1 with one clear line."""
    code, output = _serve("--listen", "127.0.0.1:5399", "--forward", "127.0.0.1@5399")
    assert code == 1
    lines = output.strip().splitlines()
    assert len(lines) == 1
    assert "forwarding loop" in lines[0]
    assert "127.0.0.1@5399" in lines[0]


@pytest.mark.parametrize("args, words", [
    (("--forward", "not-an-ip"), "not an IP address"),
    (("--forward-zone", "corp.example"), "ZONE=ADDR"),
    (("--stub-zone", "corp.example=1.2.3.4@99999"), "bad port"),
    (("--forward-first",), "--forward-first needs"),
    (("--forward-tls", "127.0.0.1#dot.test", "--tls-ca-file", "/nonexistent/ca.pem"),
     "--tls-ca-file"),
])
def test_cli_serve_bad_forwarding_options_exit_1(args: tuple[str, ...], words: str) -> None:
    """Unreadable forwarding options end `serve` at once with exit 1 and one line."""
    code, output = _serve("--listen", "127.0.0.1:5399", *args)
    assert code == 1
    assert words in output
    assert len(output.strip().splitlines()) == 1


# -- the loop guard -----------------------------------------------------------------------


def _query(name: str, query_id: int, rtype: int = RRType.A, rd: bool = True) -> bytes:
    return make_query(Question(name, rtype), query_id=query_id, recursion_desired=rd)


def test_loop_guard_recognises_a_query_we_forwarded() -> None:
    """Same id and question (name in any case) within the window: our own query."""
    clock = FakeClock()
    guard = ForwardLoopGuard(clock=clock)
    guard.remember(_query("www.example.com.", 4242))
    assert guard.is_own(_query("WWW.Example.COM.", 4242))
    assert guard.loops_detected == 1


def test_loop_guard_ignores_other_ids_questions_and_old_entries() -> None:
    """Another id, another type, or after the window: a client's own query."""
    clock = FakeClock()
    guard = ForwardLoopGuard(window_s=5.0, clock=clock)
    guard.remember(_query("www.example.com.", 4242))
    assert not guard.is_own(_query("www.example.com.", 4243))
    assert not guard.is_own(_query("www.example.com.", 4242, RRType.AAAA))
    clock.advance(5.1)
    assert not guard.is_own(_query("www.example.com.", 4242))


def test_loop_guard_memory_is_bounded() -> None:
    """The oldest entries go when the guard is full; expired ones go as new ones come."""
    clock = FakeClock()
    guard = ForwardLoopGuard(max_entries=10, clock=clock)
    for i in range(25):
        guard.remember(_query(f"n{i}.example.", i))
    assert len(guard) == 10
    assert not guard.is_own(_query("n0.example.", 0))
    assert guard.is_own(_query("n24.example.", 24))
    clock.advance(60)
    guard.remember(_query("late.example.", 1))
    assert len(guard) == 1


@pytest.mark.parametrize("junk", [b"", b"\x00" * 5, b"\x12\x34" + b"\xff" * 30])
def test_loop_guard_never_raises_on_junk(junk: bytes) -> None:
    """Garbage is neither remembered nor matched, and never raises."""
    guard = ForwardLoopGuard(clock=FakeClock())
    guard.remember(junk)
    assert not guard.is_own(junk)
    assert len(guard) == 0


# -- the forwarding network ---------------------------------------------------------------

Behaviour = Callable[[bytes], bytes]


def reply_to(query: bytes, *records: str, rcode: Rcode = Rcode.NOERROR, ra: bool = True,
             aa: bool = False) -> bytes:
    """A reply to `query` carrying `records` (zone-file text) in the answer section."""
    message = decode(query)
    return encode(Message(
        id=message.id, qr=True, opcode=0, rcode=rcode, rd=message.rd, ra=ra, aa=aa,
        question=message.question, answer=tuple(parse_record(r) for r in records),
    ))


class UpstreamsNetwork:
    """Upstreams by (ip, port) with scripted behaviour; lab addresses go to the lab."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lab = LabNetwork(clock)
        self.upstreams: dict[tuple[str, int], Behaviour | None] = {}
        self.asked: list[tuple[ServerAddress, bool]] = []  # (server, RD)

    async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                       timeout_s: float) -> bytes:
        key = (server.ip, server.port)
        if key not in self.upstreams:
            return await self.lab.exchange(query, server, transport, timeout_s)
        self.asked.append((server, bool(query[2] & 1)))
        behaviour = self.upstreams[key]
        if behaviour is None:  # a black hole
            self.clock.advance(timeout_s)
            raise UpstreamTimeout()
        self.clock.advance(0.002)
        return behaviour(query)


def answering(*records: str, **flags: object) -> Behaviour:
    return lambda query: reply_to(query, *records, **flags)  # type: ignore[arg-type]


WWW = "www.example.com. 300 IN A 192.0.2.80"


def _resolve(network: UpstreamsNetwork, settings: ForwardingSettings,
             name: str = "www.example.com.",
             never_query: frozenset[str] = frozenset()) -> tuple[Rcode, tuple[str, ...], str]:
    config = ServeConfig(engine=EngineSettings(upstream_port=53, never_query=never_query),
                         forwarding=settings)
    app = build(config, root_hints=lab_root_hints(), network=network, clock=network.clock,
                rng=random.Random(7))
    outcome = asyncio.run(app.service.resolve(Question(name, RRType.A)))
    return outcome.rcode, tuple(rr.to_text() for rr in outcome.answer), outcome.reason


def test_forwarding_sends_rd1_to_the_configured_port() -> None:
    """Every query goes with RD=1 to the upstream's own port; its answer is the outcome."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 5301)] = answering(WWW)
    rcode, answer, _ = _resolve(network, ForwardingSettings(forward=("10.0.0.1@5301",)))
    assert rcode == Rcode.NOERROR
    assert len(answer) == 1 and "192.0.2.80" in answer[0]
    assert network.asked and all(rd for _, rd in network.asked)
    assert network.lab.received.total() == 0  # nothing was iterated


def answering_any(address: str) -> Behaviour:
    """A recursive upstream that knows every name: `address` for each A question."""
    def behaviour(query: bytes) -> bytes:
        question = decode(query).question
        assert question is not None
        return reply_to(query, f"{question.name} 300 IN A {address}")
    return behaviour


def without_ra(behaviour: Behaviour) -> Behaviour:
    """The same replies with RA cleared."""
    def cleared(query: bytes) -> bytes:
        reply = behaviour(query)
        return reply[:3] + bytes([reply[3] & 0x7F]) + reply[4:]
    return cleared


#: What a server that does not recurse says for a name it is not authoritative for: an
#: empty NOERROR without RA or AA (the shape of a referral).
NOT_RECURSING = answering(ra=False)


FAILING: dict[str, Behaviour | None] = {
    "timeout": None,
    "servfail": answering(rcode=Rcode.SERVFAIL),
    "refused": answering(rcode=Rcode.REFUSED),
    "no-recursion": NOT_RECURSING,
}


@pytest.mark.parametrize("failure", sorted(FAILING))
def test_forwarding_moves_on_to_the_next_upstream(failure: str) -> None:
    """Timeout, SERVFAIL, REFUSED or an empty reply without RA from one upstream: the next
    answers."""
    first = FAILING[failure]
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = first
    network.upstreams[("10.0.0.2", 53)] = answering_any("192.0.2.80")
    config = ServeConfig(forwarding=ForwardingSettings(forward=("10.0.0.1", "10.0.0.2")))
    app = build(config, root_hints=lab_root_hints(), network=network, clock=network.clock,
                rng=random.Random(7))
    for i in range(10):  # whichever upstream the selection tries first, the answer comes
        outcome = asyncio.run(app.service.resolve(Question(f"n{i}.example.com.", RRType.A)))
        assert outcome.rcode == Rcode.NOERROR, outcome.reason
        assert [rr.address for rr in outcome.answer] == ["192.0.2.80"]
    assert any(server.ip == "10.0.0.1" for server, _ in network.asked)


def test_forwarding_all_upstreams_failing_is_servfail_with_the_reason() -> None:
    """Without forward-first, failing upstreams give SERVFAIL (never NXDOMAIN) and say why."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = NOT_RECURSING
    rcode, _, reason = _resolve(network, ForwardingSettings(forward=("10.0.0.1",)))
    assert rcode == Rcode.SERVFAIL
    assert "without RA" in reason


def test_a_forwarder_answer_without_ra_is_used() -> None:
    """RA=0 on a reply that answers (a forwarder that never sets RA, an authoritative server
    for the name) does not make it useless: the answer is used, as Unbound uses it."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = without_ra(answering(WWW))
    rcode, answer, reason = _resolve(network, ForwardingSettings(forward=("10.0.0.1",)))
    assert rcode == Rcode.NOERROR, reason
    assert "192.0.2.80" in answer[0]


def test_forward_first_falls_back_to_iteration() -> None:
    """forward-first: when the upstreams fail, the name is iterated from the root hints."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = None
    rcode, answer, reason = _resolve(
        network, ForwardingSettings(forward=("10.0.0.1",), forward_first=True),
        name="www.networkutopia.com.")
    assert rcode == Rcode.NOERROR, reason
    assert "212.212.212.2" in answer[0]
    assert network.asked  # the forwarder was tried first
    assert network.lab.received.total() > 0


def test_forward_zone_longest_match_wins_and_the_rest_iterates() -> None:
    """corp.example goes to its upstream; other names are iterated from the lab."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = answering("intranet.corp.example. 60 IN A 10.1.2.3")
    settings = ForwardingSettings(forward_zones=("corp.example=10.0.0.1",))
    rcode, answer, _ = _resolve(network, settings, name="intranet.corp.example.")
    assert rcode == Rcode.NOERROR and "10.1.2.3" in answer[0]
    assert network.lab.received.total() == 0
    rcode, answer, _ = _resolve(network, settings, name="www.networkutopia.com.")
    assert rcode == Rcode.NOERROR and "212.212.212.2" in answer[0]
    assert network.lab.received.total() > 0
    assert len(network.asked) == 1


def test_stub_zone_is_asked_without_recursion() -> None:
    """A stub zone's servers get RD=0 and their authoritative answer is used."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.9", 5353)] = answering(
        "intranet.corp.example. 60 IN A 10.1.2.3", ra=False, aa=True)
    rcode, answer, reason = _resolve(
        network, ForwardingSettings(stub_zones=("corp.example=10.0.0.9@5353",)),
        name="intranet.corp.example.")
    assert rcode == Rcode.NOERROR, reason
    assert "10.1.2.3" in answer[0]
    assert network.asked == [(ServerAddress("10.0.0.9", 5353), False)]


def test_forwarding_network_remembers_only_forwarded_queries() -> None:
    """The loop guard remembers RD=1 queries (ours to a forwarder); RD=0 ones pass by."""

    class Echo:
        async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                           timeout_s: float) -> bytes:
            return reply_to(query, WWW, ra=False, aa=True)

    network = ForwardingNetwork(Echo(), ForwardLoopGuard(clock=FakeClock()))
    server = ServerAddress("10.0.0.1@5301", 53)
    for query_id, rd in ((1, True), (2, False)):
        reply = asyncio.run(network.exchange(_query("www.example.com.", query_id, rd=rd),
                                             server, Transport.UDP, 1.0))
        assert decode(reply).answer
    assert len(network.guard) == 1


def test_forwarding_network_sends_to_the_port_and_tls_name_the_engine_chose() -> None:
    """A configured upstream reaches the network with its own port and TLS name."""
    seen: list[ServerAddress] = []

    class Recorder:
        async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                           timeout_s: float) -> bytes:
            seen.append(server)
            return reply_to(query, WWW)

    network = ForwardingNetwork(Recorder(), ForwardLoopGuard(clock=FakeClock()))
    asyncio.run(network.exchange(_query("www.example.com.", 3), ServerAddress(
        "127.0.0.1", 8853, tls_name="dot.test"), Transport.UDP, 1.0))
    asyncio.run(network.exchange(_query("www.example.com.", 4), ServerAddress(
        "127.41.0.4", 5353), Transport.UDP, 1.0))
    assert seen == [ServerAddress("127.0.0.1", 8853, tls_name="dot.test"),
                    ServerAddress("127.41.0.4", 5353)]


def test_forwarding_loop_at_run_time_is_servfail_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """A forwarder that hands our query back to us: we answer it SERVFAIL, log the loop,
    and the client gets SERVFAIL instead of a hang."""
    clock = FakeClock()
    holder: dict[str, object] = {}

    class BackToUs:
        async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                           timeout_s: float) -> bytes:
            handler = holder["handler"]
            client = Client(ip="127.0.0.2", port=53, transport=Transport.UDP)
            reply = await handler.handle(query, client)  # type: ignore[attr-defined]
            assert reply is not None
            return bytes(reply)

    config = ServeConfig(forwarding=ForwardingSettings(forward=("10.0.0.1",)))
    app = build(config, root_hints=lab_root_hints(), network=BackToUs(), clock=clock,
                rng=random.Random(3))
    holder["handler"] = app.handler
    client_query = _query("www.example.com.", 777)
    with caplog.at_level(logging.WARNING):
        reply = asyncio.run(app.handler.handle(
            client_query, Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)))
    assert reply is not None
    assert decode(reply).rcode == Rcode.SERVFAIL
    assert decode(reply).id == 777
    assert "forwarding loop" in caplog.text
    assert app.handler.loop_guard is not None and app.handler.loop_guard.loops_detected >= 1


def test_build_without_forwarding_keeps_the_plain_network() -> None:
    """No forward or stub zone: no forwarding layer, no loop guard."""
    network = LabNetwork(FakeClock())
    app = build(ServeConfig(), root_hints=lab_root_hints(), network=network, clock=network.clock)
    chain: list[object] = []
    current: object | None = app.service.network
    while current is not None:
        chain.append(current)
        current = getattr(current, "__dict__", {}).get("inner")
    assert network in chain
    assert not any(isinstance(n, ForwardingNetwork) for n in chain)
    assert app.handler.loop_guard is None
    assert app.state.configured_zones == {}


# Our own listen address 10.0.0.1:53, as `serve` passes it to the engine: the bare IP
# (never iterated to) and the endpoint (never asked at all).
OWN_LISTEN = frozenset({"10.0.0.1", "10.0.0.1@53"})


def test_forwarder_on_another_port_of_our_listen_ip_is_asked() -> None:
    """A local upstream beside us (10.0.0.1@5353 while we listen on 10.0.0.1:53) is no loop."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 5353)] = answering(WWW)
    rcode, answer, reason = _resolve(network, ForwardingSettings(forward=("10.0.0.1@5353",)),
                                     never_query=OWN_LISTEN)
    assert rcode == Rcode.NOERROR, reason
    assert "192.0.2.80" in answer[0]
    assert network.asked == [(ServerAddress("10.0.0.1", 5353), True)]


def test_forwarder_on_our_own_listen_endpoint_is_never_asked() -> None:
    """The same address and port is a loop: the query is not sent, the answer is SERVFAIL."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = answering(WWW)
    rcode, _, _ = _resolve(network, ForwardingSettings(forward=("10.0.0.1@53",)),
                                never_query=OWN_LISTEN)
    assert rcode == Rcode.SERVFAIL
    assert network.asked == []


def stub_authority(zone: str, address: str) -> Behaviour:
    """An authoritative server for `zone` as NSD answers: AA, the zone's NS set in the
    authority section, naming a server in another zone whose address we do not know."""
    def behaviour(query: bytes) -> bytes:
        message = decode(query)
        question = message.question
        assert question is not None
        ns = parse_record(f"{zone} 3600 IN NS ns1.hosting.example.")
        return encode(Message(
            id=message.id, qr=True, opcode=0, rcode=Rcode.NOERROR, rd=message.rd, aa=True,
            question=question, answer=(parse_record(f"{question.name} 300 IN A {address}"),),
            authority=(ns,)))
    return behaviour


def test_stub_zones_keep_answering_after_their_servers_state_their_ns_set() -> None:
    """Unbound stub-zone (stub-prime: no): the NS set a stub's server puts in its answers
    never replaces the configured address; the root is never asked; a second stub zone
    beside it keeps working too."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.9", 5353)] = stub_authority("a.corp.example.", "10.9.0.1")
    network.upstreams[("10.0.0.10", 5353)] = stub_authority("b.corp.example.", "10.10.0.1")
    settings = ForwardingSettings(stub_zones=("a.corp.example=10.0.0.9@5353",
                                              "b.corp.example=10.0.0.10@5353"))
    config = ServeConfig(engine=EngineSettings(upstream_port=53), forwarding=settings)
    app = build(config, root_hints=lab_root_hints(), network=network, clock=network.clock,
                rng=random.Random(7))
    answers = []
    for name in ("www.a.corp.example.", "mail.a.corp.example.", "x.y.a.corp.example.",
                 "www.b.corp.example."):
        outcome = asyncio.run(app.service.resolve(Question(name, RRType.A)))
        assert outcome.rcode == Rcode.NOERROR, (name, outcome.reason)
        answers.append(outcome.answer[0].address)
    assert answers == ["10.9.0.1", "10.9.0.1", "10.9.0.1", "10.10.0.1"]
    assert network.lab.received.total() == 0  # the root was never asked
    assert {(server.ip, server.port) for server, _ in network.asked} == {
        ("10.0.0.9", 5353), ("10.0.0.10", 5353)}


@pytest.mark.parametrize("validating", [False, True])
def test_nxdomain_above_a_stub_zone_does_not_hide_it(validating: bool) -> None:
    """A cached NXDOMAIN for corp.example (RFC 8020) says nothing of the configured stub
    zone a.corp.example below it: the operator's zone wins, with validation on or off."""
    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.9", 5353)] = stub_authority("a.corp.example.", "10.9.0.1")
    settings = ForwardingSettings(stub_zones=("a.corp.example=10.0.0.9@5353",))
    validation = ValidationSettings(anchors=ROOT_ANCHORS,
                                    insecure_domains=("corp.example.",)) if validating else None
    config = ServeConfig(engine=EngineSettings(upstream_port=53, validation=validation),
                         forwarding=settings)
    app = build(config, root_hints=lab_root_hints(), network=network, clock=network.clock,
                rng=random.Random(7))
    soa = parse_record(". 3600 IN SOA a.root. b.root. 1 2 3 4 3600")
    app.state.cache.store_negative(Question("corp.example.", RRType.A), Rcode.NXDOMAIN, soa)
    outcome = asyncio.run(app.service.resolve(Question("www.a.corp.example.", RRType.A)))
    assert outcome.rcode == Rcode.NOERROR and outcome.answer[0].address == "10.9.0.1"
    other = asyncio.run(app.service.resolve(Question("www.corp.example.", RRType.A)))
    assert other.rcode == Rcode.NXDOMAIN  # outside the stub zone RFC 8020 still holds
