"""Authoritative servers that fail: black holes, ICMP port unreachable, TCP only, EDNS
trouble, lame servers, and what the resolver must still do for everyone else
(docs/reliability.md (d), and the "slow-drip" row of (a)). A real
`resolver serve` against scripted fake servers on 127.73.0.0/16.
"""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord

from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import Rcode
from resolver.engine.network import Transport
from resolver.engine.selection import DOWN_AFTER_TIMEOUTS
from resolver.engine.settings import Limits
from tests.support.fakeauth import (
    FakeAuth,
    FakeNet,
    addresses,
    answer,
    delay,
    drop,
    drop_edns,
    drop_tcp,
    ede_codes,
    from_zones,
    make_stub_query,
    no_edns,
    rcode,
    refer,
    resolver_against,
    root_server,
    zone,
)

pytestmark = pytest.mark.integration

ROOT = "127.73.0.1"
LIMITS = Limits()
#: The answer every test must get within the resolver's budget, with slack for a slow machine.
BUDGET_S = LIMITS.total_budget_s + 2.0


def test_one_of_three_servers_black_holed_is_answered_and_later_avoided(tmp_path: Path) -> None:
    """One of three name servers never answers: every query is answered, and after
    DOWN_AFTER_TIMEOUTS (3) timeouts the dead server is no longer asked."""
    live = [FakeAuth(a, zones={"three.test": zone("three.test", "ns1 A 127.73.0.2",
                                                  "ns2 A 127.73.0.3", "ns3 A 127.73.0.4",
                                                  ns=["ns1.three.test", "ns2.three.test",
                                                      "ns3.three.test"])})
            for a in ("127.73.0.2", "127.73.0.4")]
    for server in live:
        server.on("*.three.test", "A", answer("{qname} 300 A 192.0.2.100"))
    dead = FakeAuth("127.73.0.3", default=drop())
    root = root_server(ROOT, "three NS ns1.three", "three NS ns2.three", "three NS ns3.three",
                       "ns1.three A 127.73.0.2", "ns2.three A 127.73.0.3",
                       "ns3.three A 127.73.0.4")
    with FakeNet(root, dead, *live) as net, resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        for i in range(30):
            assert addresses(resolver.ask(f"q{i}.three.test")) == ["192.0.2.100"]
        elapsed = time.monotonic() - started
        at_dead = [q.qname for q in dead.queries]
        metrics = resolver.metrics()
    print(f"1 of 3 black-holed: 30 answers in {elapsed:.2f} s, {len(at_dead)} queries to the "
          f"dead server ({at_dead}), {metrics['resolver_upstream_timeouts_total']:.0f} timeouts")
    assert len(at_dead) <= DOWN_AFTER_TIMEOUTS


def test_all_servers_black_holed_servfail_within_budget(tmp_path: Path) -> None:
    """Every name server black-holed: SERVFAIL with EDE 22 "No Reachable Authority" within
    4 s + 2 s slack; a stub's retry starts no second resolution; the whole resolution
    sends at most max_sends_per_name (32) packets; and once it is over, a retry within the
    failure TTL (1 s, RFC 9520) sends nothing upstream."""
    holes = [FakeAuth(a, default=drop()) for a in ("127.73.1.1", "127.73.1.2")]
    root = root_server(ROOT, "dead NS ns1.dead", "dead NS ns2.dead",
                       "ns1.dead A 127.73.1.1", "ns2.dead A 127.73.1.2")
    with FakeNet(root, *holes) as net, resolver_against(net, tmp_path) as resolver:
        before = net.total()
        started = time.monotonic()
        reply = resolver.ask("www.dead.test")
        elapsed = time.monotonic() - started
        resolutions = resolver.metrics()["resolver_resolutions_total"]
        retry = resolver.ask("www.dead.test")
        assert resolver.metrics()["resolver_resolutions_total"] == resolutions
        resolver.wait_idle()
        resolution_s = time.monotonic() - started
        cost = net.total() - before
        at_holes = sum(h.count() for h in holes)
        after = resolver.ask("www.dead.test")
        after_cost = net.total() - before - cost
    print(f"all black-holed: SERVFAIL after {elapsed:.2f} s (EDE {ede_codes(reply)}), the "
          f"resolution went on until {resolution_s:.2f} s: {cost} upstream packets "
          f"({at_holes} to the dead servers); a retry after it: {after_cost}")
    assert reply.header.rcode == Rcode.SERVFAIL
    assert ExtendedError.NO_REACHABLE_AUTHORITY in ede_codes(reply)
    assert elapsed <= BUDGET_S
    assert retry.header.rcode == Rcode.SERVFAIL
    assert cost <= LIMITS.max_sends_per_name
    assert after.header.rcode == Rcode.SERVFAIL
    assert after_cost == 0


def test_tcp_only_server_is_resolved_over_tcp(tmp_path: Path) -> None:
    """A server that sets TC=1 on every UDP reply is asked again over TCP (RFC 7766 §5);
    the truncated reply is never cached: the next question costs the same two packets."""
    auth = FakeAuth("127.73.0.5", tcp_only=True, zones={"tcponly.test": zone(
        "tcponly.test", "ns1 A 127.73.0.5", "www A 192.0.2.110", "mail A 192.0.2.111")})
    root = root_server(ROOT, "tcponly NS ns1.tcponly", "ns1.tcponly A 127.73.0.5")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        assert addresses(resolver.ask("www.tcponly.test")) == ["192.0.2.110"]
        assert addresses(resolver.ask("mail.tcponly.test")) == ["192.0.2.111"]
        assert addresses(resolver.ask("www.tcponly.test")) == ["192.0.2.110"]
    for name in ("www.tcponly.test", "mail.tcponly.test"):
        assert auth.count(name, "A", Transport.UDP) == 1
        assert auth.count(name, "A", Transport.TCP) == 1


def test_large_answer_truncated_over_udp_is_fetched_over_tcp(tmp_path: Path) -> None:
    """Fragmentation defence: a 3 KB RRset comes with TC=1 over UDP and in full over TCP.
    A TCP client gets it all; a UDP client with bufsize 1232 gets TC=1 (RFC 6891 §7)."""
    big = [f"big TXT \"{i:03d}{'x' * 90}\"" for i in range(30)]
    auth = FakeAuth("127.73.0.6", zones={"frag.test": zone("frag.test", "ns1 A 127.73.0.6",
                                                           *big)})
    root = root_server(ROOT, "frag NS ns1.frag", "ns1.frag A 127.73.0.6")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        full = resolver.ask("big.frag.test", "TXT", tcp=True)
        over_udp = resolver.ask("big.frag.test", "TXT", bufsize=1232)
    assert len([rr for rr in full.rr if rr.rtype == QTYPE.TXT]) == 30
    assert over_udp.header.tc
    assert auth.count("big.frag.test", "TXT", Transport.UDP) == 1
    assert auth.count("big.frag.test", "TXT", Transport.TCP) == 1
    assert {q.edns_size for q in net.received()} == {1232}


def test_truncating_server_with_tcp_refused_falls_over_to_the_next_server(
        tmp_path: Path) -> None:
    """TC=1 over UDP but the TCP connection is refused: the next name server answers."""
    zone_text = zone("tcpgone.test", "ns1 A 127.73.0.7", "ns2 A 127.73.0.8",
                     "www A 192.0.2.120", ns=["ns1.tcpgone.test", "ns2.tcpgone.test"])
    broken = FakeAuth("127.73.0.7", tcp_only=True, tcp=False, zones={"tcpgone.test": zone_text})
    good = FakeAuth("127.73.0.8", zones={"tcpgone.test": zone_text})
    root = root_server(ROOT, "tcpgone NS ns1.tcpgone", "tcpgone NS ns2.tcpgone",
                       "ns1.tcpgone A 127.73.0.7", "ns2.tcpgone A 127.73.0.8")
    with FakeNet(root, broken, good) as net, resolver_against(net, tmp_path) as resolver:
        # Whichever server is chosen first, every question is answered.
        assert addresses(resolver.ask("www.tcpgone.test")) == ["192.0.2.120"]
        for i in range(6):
            assert resolver.ask(f"n{i}.tcpgone.test").header.rcode == Rcode.NXDOMAIN
    assert good.count() >= 1
    print(f"TCP refused after TC: {broken.count(transport=Transport.UDP)} UDP queries to the "
          f"broken server, {good.count()} to the good one")


def test_truncating_server_silent_over_tcp_falls_over_to_the_next_server(
        tmp_path: Path) -> None:
    """TC=1 over UDP, then the TCP connection is accepted but never answered: the try
    times out and the next name server answers, within the budget."""
    zone_text = zone("tcpmute.test", "ns1 A 127.73.0.15", "ns2 A 127.73.0.16",
                     "www A 192.0.2.125", ns=["ns1.tcpmute.test", "ns2.tcpmute.test"])
    silent = FakeAuth("127.73.0.15", tcp_only=True, default=drop_tcp(from_zones()),
                      zones={"tcpmute.test": zone_text})
    good = FakeAuth("127.73.0.16", zones={"tcpmute.test": zone_text})
    root = root_server(ROOT, "tcpmute NS ns1.tcpmute", "tcpmute NS ns2.tcpmute",
                       "ns1.tcpmute A 127.73.0.15", "ns2.tcpmute A 127.73.0.16")
    with FakeNet(root, silent, good) as net, resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        for i in range(4):
            assert addresses(resolver.ask("www.tcpmute.test")) == ["192.0.2.125"]
            assert resolver.ask(f"n{i}.tcpmute.test").header.rcode == Rcode.NXDOMAIN
        elapsed = time.monotonic() - started
    print(f"TCP silent after TC: 8 questions in {elapsed:.2f} s, "
          f"{silent.count(transport=Transport.TCP)} TCP queries to the silent server")
    assert elapsed <= BUDGET_S


def test_icmp_port_unreachable_fails_fast_to_the_next_server(tmp_path: Path) -> None:
    """Nothing listens on the first server's port: the ICMP error ends that exchange at
    once (an upstream error, not a timeout) and the next name server answers."""
    # The glued server comes first; the second name server lives in another top-level
    # zone, so it comes without glue and is looked up only when the first has failed.
    closed = FakeAuth("127.73.0.9", udp=False, tcp=False)
    live = FakeAuth("127.73.0.10", zones={
        "icmp.test": zone("icmp.test", "ns1 A 127.73.0.9", "www A 192.0.2.130",
                          ns=["ns1.icmp.test", "ns.live.example"]),
        "live.example": zone("live.example", "ns A 127.73.0.10"),
    })
    root = root_server(ROOT, "icmp NS ns1.icmp", "icmp NS ns.live.example.",
                       "ns1.icmp A 127.73.0.9",
                       other_tlds={"example": ["live NS ns.live", "ns.live A 127.73.0.10"]})
    with FakeNet(root, closed, live) as net, resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        reply = resolver.ask("www.icmp.test")
        elapsed = time.monotonic() - started
        metrics = resolver.metrics()
    print(f"ICMP port unreachable: answered in {elapsed * 1000:.0f} ms, "
          f"{metrics['resolver_upstream_errors_total']:.0f} upstream errors, "
          f"{metrics['resolver_upstream_timeouts_total']:.0f} timeouts")
    assert addresses(reply) == ["192.0.2.130"]
    assert metrics["resolver_upstream_errors_total"] >= 1
    assert metrics["resolver_upstream_timeouts_total"] == 0


def test_formerr_without_opt_retries_once_without_edns(tmp_path: Path) -> None:
    """A server from before EDNS answers FORMERR without OPT: the same server is asked
    once more, without EDNS, and its answer is used (RFC 6891 §7)."""
    old = FakeAuth("127.73.0.11", default=no_edns(from_zones()), zones={
        "old.test": zone("old.test", "ns1 A 127.73.0.11", "www A 192.0.2.140")})
    root = root_server(ROOT, "old NS ns1.old", "ns1.old A 127.73.0.11")
    with FakeNet(root, old) as net, resolver_against(net, tmp_path) as resolver:
        reply = resolver.ask("www.old.test")
    sizes = [q.edns_size for q in old.queries if q.qname == "www.old.test."]
    assert addresses(reply) == ["192.0.2.140"]
    assert sizes == [1232, None]


def test_timeout_never_retries_without_edns(tmp_path: Path) -> None:
    """Queries with EDNS time out (though the server would answer without): the resolver
    never drops EDNS because of a timeout (DNS Flag Day 2019) and answers SERVFAIL."""
    mute = FakeAuth("127.73.0.12", default=drop_edns(from_zones()), zones={
        "mute.test": zone("mute.test", "ns1 A 127.73.0.12", "www A 192.0.2.150")})
    root = root_server(ROOT, "mute NS ns1.mute", "ns1.mute A 127.73.0.12")
    with FakeNet(root, mute) as net, resolver_against(net, tmp_path) as resolver:
        reply = resolver.ask("www.mute.test")
    sizes = {q.edns_size for q in mute.queries}
    assert reply.header.rcode == Rcode.SERVFAIL
    assert mute.count() >= 1
    assert sizes == {1232}


def test_all_servers_lame_servfail_and_lameness_is_not_cached_as_data(tmp_path: Path) -> None:
    """REFUSED, SERVFAIL, NOTIMP and an upward referral from the four name servers:
    SERVFAIL with an extended error, each server asked at most
    max_tries_per_server times; once they are fixed, the failure is not served after its
    1 s (RFC 9520), nor is any of the bad replies cached as data."""
    addresses_ = [f"127.73.2.{i}" for i in range(1, 5)]
    zone_text = zone("lame.test", *(f"ns{i} A {a}" for i, a in enumerate(addresses_, 1)),
                     "www A 192.0.2.160", ns=[f"ns{i}.lame.test" for i in range(1, 5)])
    servers = [FakeAuth(a, zones={"lame.test": zone_text}) for a in addresses_]
    bad = [rcode("REFUSED", aa=False), rcode("SERVFAIL", aa=False), rcode("NOTIMP", aa=False),
           refer("test", ["root-ns."], {"root-ns.": ROOT})]
    for server, rule in zip(servers, bad, strict=True):
        server.on(None, None, rule)
    root = root_server(ROOT, *(f"lame NS ns{i}.lame" for i in range(1, 5)),
                       *(f"ns{i}.lame A {a}" for i, a in enumerate(addresses_, 1)))
    with FakeNet(root, *servers) as net, resolver_against(net, tmp_path) as resolver:
        before = net.total()
        reply = resolver.ask("www.lame.test")
        cost = net.total() - before
        per_server = [s.count("www.lame.test") for s in servers]
        time.sleep(1.2)  # the failure TTL
        for server in servers:
            server.on(None, None, from_zones())
        fixed = resolver.ask("www.lame.test")
    print(f"all lame: SERVFAIL with EDE {ede_codes(reply)}, {cost} upstream queries, per "
          f"server {per_server}")
    assert reply.header.rcode == Rcode.SERVFAIL
    assert ede_codes(reply)
    assert max(per_server) <= LIMITS.max_tries_per_server
    assert cost <= LIMITS.max_sends_per_name
    assert addresses(fixed) == ["192.0.2.160"]


def test_slow_authority_gets_an_answer_or_servfail_within_budget_and_is_cached(
        tmp_path: Path) -> None:
    """An authority that answers every query after 2.5 s: the client hears within the
    budget (the answer, or SERVFAIL), and the late answer is cached for the next client."""
    slow = FakeAuth("127.73.0.17", default=delay(2.5, from_zones()), zones={
        "slow.test": zone("slow.test", "ns1 A 127.73.0.17", "www A 192.0.2.190")})
    root = root_server(ROOT, "slow NS ns1.slow", "ns1.slow A 127.73.0.17")
    with FakeNet(root, slow) as net, resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        first = resolver.ask("www.slow.test")
        elapsed = time.monotonic() - started
        resolver.wait_idle()
        time.sleep(1.1)  # past the failure TTL, should the first client have had SERVFAIL
        sent = slow.count("www.slow.test")
        later = resolver.ask("www.slow.test")
        later_cost = slow.count("www.slow.test") - sent
    print(f"slow authority (2.5 s): {Rcode(first.header.rcode).name} after {elapsed:.2f} s, "
          f"{sent} queries; the next client: {addresses(later)} with {later_cost} more")
    assert first.header.rcode in (Rcode.NOERROR, Rcode.SERVFAIL)
    assert elapsed <= BUDGET_S
    assert addresses(later) == ["192.0.2.190"]
    assert later_cost == 0


def test_cached_answers_keep_flowing_while_queries_are_stuck_on_a_black_hole(
        tmp_path: Path) -> None:
    """300 queries for distinct names in a black-holed zone, and meanwhile 300 queries for a
    cached name from another socket: every cached one is answered, and every stuck one
    gets SERVFAIL within the budget."""
    holes = [FakeAuth(a, default=drop()) for a in ("127.73.3.1", "127.73.3.2")]
    fast = FakeAuth("127.73.0.13", zones={"fast.test": zone("fast.test", "ns1 A 127.73.0.13",
                                                            "www A 192.0.2.170")})
    root = root_server(ROOT, "hole NS ns1.hole", "hole NS ns2.hole", "ns1.hole A 127.73.3.1",
                       "ns2.hole A 127.73.3.2", "fast NS ns1.fast", "ns1.fast A 127.73.0.13")
    with (FakeNet(root, fast, *holes) as net,
          resolver_against(net, tmp_path) as resolver,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stuck,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cached):
        assert addresses(resolver.ask("www.fast.test")) == ["192.0.2.170"]
        # The stuck replies are read only after the cached ones: room for all 300, or the
        # kernel drops the SERVFAILs that come back early (once the holes are known down).
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        stuck.connect((resolver.ip, resolver.port))
        cached.connect((resolver.ip, resolver.port))
        started = time.monotonic()
        for i in range(300):
            stuck.send(make_stub_query(f"s{i}.hole.test", qid=i))
        answered = 0
        for i in range(300):
            cached.send(make_stub_query("www.fast.test", qid=i))
            cached.settimeout(2.0)
            data = cached.recv(4096)
            if DNSRecord.parse(data).header.rcode == Rcode.NOERROR and data[:2] == bytes(
                    [i >> 8, i & 0xFF]):
                answered += 1
            time.sleep(0.005)  # spread over ~2 s, while the stuck ones wait
        cached_done = time.monotonic() - started
        stuck_replies = _drain(stuck, 300, deadline=started + BUDGET_S)
        stuck_done = time.monotonic() - started
        at_holes = sum(h.count() for h in holes)
    servfails = sum(1 for r in stuck_replies if r.header.rcode == Rcode.SERVFAIL)
    print(f"black-hole isolation: {answered}/300 cached answered in {cached_done:.2f} s; "
          f"{len(stuck_replies)}/300 stuck replied ({servfails} SERVFAIL) by {stuck_done:.2f} s;"
          f" {at_holes} queries to the black holes")
    assert answered == 300
    assert len(stuck_replies) == 300
    assert servfails == 300


def test_file_descriptor_exhaustion_gives_servfail_not_a_crash(tmp_path: Path) -> None:
    """The resolver runs out of file descriptors (RLIMIT_NOFILE lowered to 64) while 200
    queries wait on a black hole: it does not crash, it answers every client, and cached
    names are still answered."""
    hole = FakeAuth("127.73.4.1", default=drop())
    fast = FakeAuth("127.73.0.14", zones={"fast.test": zone("fast.test", "ns1 A 127.73.0.14",
                                                            "www A 192.0.2.180")})
    root = root_server(ROOT, "hole NS ns1.hole", "ns1.hole A 127.73.4.1",
                       "fast NS ns1.fast", "ns1.fast A 127.73.0.14")
    with (FakeNet(root, fast, hole) as net,
          resolver_against(net, tmp_path) as resolver,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client):
        assert addresses(resolver.ask("www.fast.test")) == ["192.0.2.180"]
        resource.prlimit(resolver.process.pid, resource.RLIMIT_NOFILE, (64, 64))
        client.connect((resolver.ip, resolver.port))
        started = time.monotonic()
        for i in range(200):
            client.send(make_stub_query(f"s{i}.hole.test", qid=i))
        assert addresses(resolver.ask("www.fast.test", timeout_s=3.0)) == ["192.0.2.180"]
        replies = _drain(client, 200, deadline=started + BUDGET_S)
        metrics = resolver.metrics()
        assert resolver.process.poll() is None
    rcodes = {Rcode(r.header.rcode).name for r in replies}
    print(f"fd exhaustion: {len(replies)}/200 replies {rcodes}, "
          f"{metrics['resolver_upstream_errors_total']:.0f} upstream errors, "
          f"{hole.count()} queries reached the black hole")
    assert len(replies) == 200
    assert rcodes == {"SERVFAIL"}


def _drain(sock: socket.socket, count: int, *, deadline: float) -> list[Any]:
    """Up to `count` replies read from `sock` before `deadline` (by distinct id)."""
    replies: dict[bytes, Any] = {}
    while len(replies) < count and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        replies.setdefault(data[:2], DNSRecord.parse(data))
    return list(replies.values())
