"""The scripted fake authoritative server that the attack tests stand on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode
from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.upstream.exchange import AsyncioNetwork
from resolver.upstream.reply_matching import ReplyMatcher
from tests.support.fakeauth import (
    POISON_ADDRESS,
    FakeAuth,
    FakeNet,
    ScriptedNetwork,
    SpoofKind,
    answer,
    ask,
    delay,
    drop,
    lowercase_qname,
    no_edns,
    raw,
    rcode,
    refer,
    soa,
    spoof_first,
    start_all,
    stop_all,
    truncate,
    zone,
)
from tests.support.labnet import FakeClock

ADDRESS = "127.88.0.1"
ZONE = zone("a.test", "www A 192.0.2.1", "sub NS ns.sub", "ns.sub A 127.88.0.9",
            "big TXT " + " ".join(f'"{i:0200d}"' for i in range(4)))


def query(name: str, qtype: int = 1, *, edns: bool = True, qid: int = 7) -> bytes:
    return make_query(Question(name, qtype), query_id=qid, edns_udp_size=1232 if edns else None)


def reply_of(auth: FakeAuth, wire: bytes, transport: Transport = Transport.UDP) -> Any:
    plan = auth.plan(wire, transport, ("127.0.0.1", 5353))
    assert plan.messages, "the server sent nothing"
    return DNSRecord.parse(plan.messages[-1])


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):
            await coro

    asyncio.run(bounded())


def test_fakeauth_exact_rule_beats_pattern_catch_all_and_zones() -> None:
    """Rules are looked up exact name and type first, then "*." patterns, then catch-alls."""
    auth = FakeAuth(ADDRESS, zones={"a.test": ZONE})
    auth.on(None, None, rcode("REFUSED"))
    auth.on("*.a.test", None, answer("{qname} 60 A 192.0.2.3"))
    auth.on("www.a.test", "A", answer("www.a.test. 60 A 192.0.2.2"))
    assert [str(rr.rdata) for rr in reply_of(auth, query("www.a.test.")).rr] == ["192.0.2.2"]
    assert [str(rr.rdata) for rr in reply_of(auth, query("x.a.test.")).rr] == ["192.0.2.3"]
    assert reply_of(auth, query("b.test.")).header.rcode == Rcode.REFUSED


def test_fakeauth_answers_from_its_zones_without_a_rule() -> None:
    """Zone data gives answers, referrals with glue and NXDOMAIN with the SOA."""
    auth = FakeAuth(ADDRESS, zones={"a.test": ZONE})
    found = reply_of(auth, query("www.a.test."))
    assert found.header.aa and [str(rr.rdata) for rr in found.rr] == ["192.0.2.1"]
    referral = reply_of(auth, query("x.sub.a.test."))
    assert not referral.header.aa and referral.auth[0].rtype == QTYPE.NS
    assert [str(rr.rdata) for rr in referral.ar if rr.rtype == QTYPE.A] == ["127.88.0.9"]
    missing = reply_of(auth, query("nothere.a.test."))
    assert missing.header.rcode == Rcode.NXDOMAIN and missing.auth[0].rtype == QTYPE.SOA


def test_fakeauth_refer_and_rcode_build_the_sections() -> None:
    """refer() gives NS in authority and glue in additional with AA=0; rcode() its SOA."""
    auth = FakeAuth(ADDRESS)
    auth.on("x.test", None,
            refer("x.test", ["ns1.x.test", "ns2.y.test"], {"ns1.x.test": "127.0.0.5"}))
    auth.on("nx.test", None, rcode("NXDOMAIN", authority=[soa("test")]))
    referral = reply_of(auth, query("x.test."))
    assert not referral.header.aa
    assert sorted(str(rr.rdata) for rr in referral.auth) == ["ns1.x.test.", "ns2.y.test."]
    assert [str(rr.rdata) for rr in referral.ar if rr.rtype == QTYPE.A] == ["127.0.0.5"]
    negative = reply_of(auth, query("nx.test."))
    assert negative.header.rcode == Rcode.NXDOMAIN and negative.auth[0].rtype == QTYPE.SOA


def test_fakeauth_truncate_sets_tc_over_udp_and_answers_over_tcp() -> None:
    """truncate(): header and question with TC=1 over UDP, the records over TCP."""
    auth = FakeAuth(ADDRESS, zones={"a.test": ZONE})
    auth.on("www.a.test", "A", truncate(answer("www.a.test. 60 A 192.0.2.2")))
    over_udp = reply_of(auth, query("www.a.test."))
    assert over_udp.header.tc and not over_udp.rr
    over_tcp = reply_of(auth, query("www.a.test."), Transport.TCP)
    assert not over_tcp.header.tc and len(over_tcp.rr) == 1


def test_fakeauth_tcp_only_server_and_oversized_replies_truncate_over_udp() -> None:
    """tcp_only sets TC=1 on every UDP reply; a reply over the client's size is truncated."""
    assert reply_of(FakeAuth(ADDRESS, zones={"a.test": ZONE}, tcp_only=True),
                    query("www.a.test.")).header.tc
    auth = FakeAuth(ADDRESS, zones={"a.test": ZONE})
    assert reply_of(auth, query("big.a.test.", 16, edns=False)).header.tc
    assert not reply_of(auth, query("big.a.test.", 16)).header.tc  # 1232 octets: it fits


def test_fakeauth_spoof_first_sends_forgeries_that_no_matcher_accepts() -> None:
    """spoof_first(k): k forged messages of each kind, then the one real reply."""
    auth = FakeAuth(ADDRESS).on(None, None, spoof_first(5, answer("{qname} 60 A 192.0.2.2")))
    wire = query("www.a.test.")
    plan = auth.plan(wire, Transport.UDP, ("127.0.0.1", 1))
    matcher = ReplyMatcher.for_query(wire)
    assert len(plan.messages) == 6
    assert [matcher.matches(m) for m in plan.messages] == [False] * 5 + [True]
    forged = [DNSRecord.parse(m) for m in plan.messages[:3]]  # id, question, QR=0
    assert all(str(f.rr[0].rdata) == POISON_ADDRESS for f in forged)
    assert len(plan.messages[3]) == 11  # the short header
    assert len(SpoofKind) == 5


def test_fakeauth_lowercase_qname_does_not_echo_the_case() -> None:
    """lowercase_qname(): the reply's question is lower-cased (a server ignoring 0x20)."""
    auth = FakeAuth(ADDRESS).on(None, None, lowercase_qname(answer("{qname} 60 A 192.0.2.2")))
    assert str(reply_of(auth, query("WwW.A.tEsT.")).q.qname) == "www.a.test."


def test_fakeauth_no_edns_answers_formerr_without_opt_only_to_edns_queries() -> None:
    """no_edns(): FORMERR without OPT when the query has OPT, the answer when it has none."""
    auth = FakeAuth(ADDRESS).on(None, None, no_edns(answer("{qname} 60 A 192.0.2.2")))
    with_opt = reply_of(auth, query("www.a.test."))
    assert with_opt.header.rcode == Rcode.FORMERR and not with_opt.ar
    assert reply_of(auth, query("www.a.test.", edns=False)).rr


def test_fakeauth_raw_copies_the_id_and_drop_sends_nothing() -> None:
    """raw() sends its bytes with the query id; drop() sends nothing; both are counted."""
    auth = FakeAuth(ADDRESS)
    auth.on("raw.test", None, raw(b"\x00\x00\x81\x80junk"))
    auth.on("hole.test", None, drop())
    assert auth.plan(query("raw.test.", qid=0x1234), Transport.UDP, ("x", 1)).messages == (
        b"\x12\x34\x81\x80junk",)
    assert auth.plan(query("hole.test."), Transport.TCP, ("x", 2)).messages == ()
    assert auth.count() == 2 and auth.count("hole.test", transport=Transport.TCP) == 1
    assert auth.count("hole.test", transport=Transport.UDP) == 0


def test_fakeauth_records_ids_ports_and_edns_size() -> None:
    """Each query is recorded with its id, source port and EDNS size."""
    auth = FakeAuth(ADDRESS, zones={"a.test": ZONE})
    auth.plan(query("www.a.test.", qid=99), Transport.UDP, ("127.0.0.1", 40000))
    auth.plan(query("www.a.test.", edns=False), Transport.UDP, ("127.0.0.1", 40001))
    first = auth.queries[0]
    assert (first.query_id, first.source[1], first.edns_size) == (99, 40000, 1232)
    assert auth.queries[1].edns_size is None
    assert auth.count("WWW.a.test.", "A", since=1) == 1


def test_fakeauth_serves_udp_and_tcp_on_one_shared_port() -> None:
    """Two servers share one port; AsyncioNetwork reaches both over UDP and TCP."""

    async def body() -> None:
        one = FakeAuth("127.88.0.1", zones={"a.test": ZONE})
        two = FakeAuth("127.88.0.2").on(None, None, delay(0.05, answer("{qname} 60 A 192.0.2.9")))
        port = await start_all([one, two])
        network = AsyncioNetwork()
        try:
            first = await network.exchange(query("www.a.test."), ServerAddress("127.88.0.1", port),
                                           Transport.UDP, 2.0)
            second = await network.exchange(query("x.b.test."), ServerAddress("127.88.0.2", port),
                                            Transport.TCP, 2.0)
        finally:
            await stop_all([one, two])
        assert str(DNSRecord.parse(first).rr[0].rdata) == "192.0.2.1"
        assert str(DNSRecord.parse(second).rr[0].rdata) == "192.0.2.9"
        assert one.port == two.port == port
        assert two.count(transport=Transport.TCP) == 1

    run(body())


def test_fakeauth_without_udp_socket_gives_port_unreachable() -> None:
    """udp=False leaves the port closed: the kernel answers ICMP port unreachable."""

    async def body() -> None:
        closed = FakeAuth("127.88.0.3", udp=False, tcp=False)
        port = await start_all([closed])
        try:
            with pytest.raises(UpstreamError):
                await AsyncioNetwork().exchange(query("x.test."), ServerAddress("127.88.0.3", port),
                                                Transport.UDP, 2.0)
        finally:
            await stop_all([closed])

    run(body())


def test_fakenet_runs_servers_in_a_thread_for_blocking_clients(tmp_path: Any) -> None:
    """FakeNet serves from its own thread; a blocking client gets answers; hints name the root."""
    auth = FakeAuth("127.88.0.4").on(None, None, answer("{qname} 60 A 192.0.2.4", rcode=0))
    with FakeNet(auth, lifetime_s=20) as net:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(query("x.test."), ("127.88.0.4", net.port))
            assert str(DNSRecord.parse(sock.recv(4096)).rr[0].rdata) == "192.0.2.4"
        # ask() is a recursive stub query; the fake answers it all the same.
        assert str(ask("127.88.0.4", net.port, "y.test", tcp=True).rr[0].rdata) == "192.0.2.4"
        hints = net.write_hints(tmp_path / "hints").read_text()
        assert "127.88.0.4" in hints and net.total() == 2
    assert not net._thread.is_alive()


def test_scripted_network_delivers_in_memory_with_timeouts_and_errors() -> None:
    """ScriptedNetwork skips forgeries; drop is a timeout, a missing server an error."""
    clock = FakeClock()
    auth = FakeAuth("192.0.2.53")
    auth.on("ok.test", None, spoof_first(3, answer("{qname} 60 A 192.0.2.2")))
    auth.on("hole.test", None, drop())
    network = ScriptedNetwork([auth], clock)

    async def body() -> None:
        server = ServerAddress("192.0.2.53")
        reply = await network.exchange(query("ok.test."), server, Transport.UDP, 1.0)
        assert str(DNSRecord.parse(reply).rr[0].rdata) == "192.0.2.2"
        with pytest.raises(UpstreamTimeout):
            await network.exchange(query("hole.test."), server, Transport.UDP, 1.0)
        with pytest.raises(UpstreamError):
            await network.exchange(query("ok.test."), ServerAddress("192.0.2.99"),
                                   Transport.UDP, 1.0)

    start = clock.now
    run(body())
    assert clock.now - start == pytest.approx(1.001)
    assert len(network.sent) == 3
