"""Attacks that make the resolver work: NXNS, delegation and CNAME loops, huge NS sets that
black-hole, oversized replies, a cache too small for one resolution, ghost domains
(docs/reliability.md (a) and (d)). Each test states the work limit it checks
(`resolver.engine.settings.Limits`) and prints what the attack cost. Fake servers on 127.72.0.0/16.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from dnslib import QTYPE

from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.cache import RecordCache
from resolver.engine.delegation import parse_root_hints
from resolver.engine.network import Transport
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings, Limits
from resolver.service.resolver_service import ResolverService
from tests.support.fakeauth import (
    FakeAuth,
    FakeNet,
    ScriptedNetwork,
    addresses,
    answer,
    drop,
    ede_codes,
    rcode,
    refer,
    resolver_against,
    root_hints_text,
    root_server,
    soa,
    zone,
)
from tests.support.labnet import FakeClock

pytestmark = pytest.mark.integration

ROOT = "127.72.0.1"
ATTACKER = "127.72.0.2"
VICTIM = "127.72.0.3"
OTHER = "127.72.0.4"
LIMITS = Limits()


def test_nxns_attack_costs_at_most_the_limit(tmp_path: Path) -> None:
    """NXNSAttack: every name below attacker.test is delegated to 100 glueless name servers
    in victim.test, which do not exist. Per client query the victim sees at most
    max_failed_ns_lookups + 1 lookups (A and AAAA each), and all upstream queries stay
    within max_sends_per_name (32) and max_upstream_queries (200)."""
    attacker = FakeAuth(ATTACKER, zones={"attacker.test": zone("attacker.test",
                                                               f"ns1 A {ATTACKER}")})
    # Fresh victim names per client query ({label}), so no negative answer is reused, each
    # one label below victim.test, so no NXDOMAIN above them answers for them (RFC 8020).
    attacker.on("*.attacker.test", None,
                refer("{qname}", [f"r{i}-{{label}}.victim.test." for i in range(100)]))
    victim = FakeAuth(VICTIM, zones={"victim.test": zone("victim.test", f"ns1 A {VICTIM}")})
    root = root_server(ROOT, "attacker NS ns1.attacker", f"ns1.attacker A {ATTACKER}",
                       "victim NS ns1.victim", f"ns1.victim A {VICTIM}")
    costs = []
    with FakeNet(root, attacker, victim) as net, resolver_against(net, tmp_path) as resolver:
        resolver.ask("warm.victim.test")  # the victim's delegation is known beforehand
        for i in range(3):
            before, victim_before = net.total(), victim.count()
            reply = resolver.ask(f"x{i}.attacker.test")
            costs.append((net.total() - before, victim.count() - victim_before))
            assert reply.header.rcode == Rcode.SERVFAIL
    print(f"NXNS, per client query (upstream queries, of which at the victim): {costs}")
    for total, at_victim in costs:
        assert at_victim <= 2 * (LIMITS.max_failed_ns_lookups + 1)
        assert total <= LIMITS.max_sends_per_name
        assert total <= LIMITS.max_upstream_queries


def test_delegation_loop_ends_in_servfail_within_limits(tmp_path: Path) -> None:
    """a.test NS ns.b.test and b.test NS ns.a.test, no glue (TsuNAME, Deckard iter_cycle):
    SERVFAIL with few upstream queries; the same question within 1 s costs none (RFC 9520)."""
    root = root_server(ROOT, "a NS ns.b", "b NS ns.a")
    with FakeNet(root) as net, resolver_against(net, tmp_path) as resolver:
        before = net.total()
        started = time.monotonic()
        reply = resolver.ask("www.a.test")
        elapsed = time.monotonic() - started
        cost = net.total() - before
        again = resolver.ask("www.a.test")
        repeat_cost = net.total() - before - cost
    print(f"delegation loop: {cost} upstream queries, {elapsed * 1000:.0f} ms, "
          f"repeat within 1 s: {repeat_cost}")
    assert reply.header.rcode == Rcode.SERVFAIL
    assert ede_codes(reply), "the SERVFAIL says why (RFC 8914)"
    assert cost <= LIMITS.max_sends_per_name
    assert again.header.rcode == Rcode.SERVFAIL
    assert repeat_cost == 0


def test_cname_loop_ends_in_servfail(tmp_path: Path) -> None:
    """www.a.test -> www.b.test -> www.a.test across two zones, and a name aliased to
    itself: SERVFAIL, bounded work, and a retry within 1 s costs nothing."""
    a = FakeAuth(ATTACKER, zones={"a.test": zone(
        "a.test", f"ns1 A {ATTACKER}", "www CNAME www.b.test.", "self CNAME self.a.test.")})
    b = FakeAuth(OTHER, zones={"b.test": zone("b.test", f"ns1 A {OTHER}",
                                              "www CNAME www.a.test.")})
    root = root_server(ROOT, "a NS ns1.a", f"ns1.a A {ATTACKER}", "b NS ns1.b", f"ns1.b A {OTHER}")
    costs = {}
    with FakeNet(root, a, b) as net, resolver_against(net, tmp_path) as resolver:
        for name in ("www.a.test", "self.a.test"):
            before = net.total()
            reply = resolver.ask(name)
            assert reply.header.rcode == Rcode.SERVFAIL, name
            cost = net.total() - before
            assert resolver.ask(name).header.rcode == Rcode.SERVFAIL
            costs[name] = (cost, net.total() - before - cost)
    print(f"CNAME loops (upstream queries, on retry): {costs}")
    for cost, retry in costs.values():
        assert cost <= LIMITS.max_sends_per_name
        assert retry == 0


def _chain(length: int) -> tuple[dict[str, list[str]], str]:
    """A CNAME chain of `length` links alternating between c.test and d.test, ending in an A."""
    records: dict[str, list[str]] = {"c.test": [], "d.test": []}
    for i in range(length):
        here, there = ("c.test", "d.test") if i % 2 == 0 else ("d.test", "c.test")
        records[here].append(f"n{length}x{i} CNAME n{length}x{i + 1}.{there}.")
    end = "c.test" if length % 2 == 0 else "d.test"
    records[end].append(f"n{length}x{length} A 192.0.2.80")
    return records, f"n{length}x0.c.test"


def test_cname_chain_longer_than_the_restart_limit_ends_in_servfail(tmp_path: Path) -> None:
    """A chain of 8 CNAMEs across zones is followed to the end; one of 12 exceeds
    max_cname_chain (11, Unbound and BIND max-query-restarts) and is SERVFAIL."""
    short, short_name = _chain(8)
    long, long_name = _chain(12)
    c = FakeAuth(ATTACKER, zones={"c.test": zone("c.test", f"ns1 A {ATTACKER}",
                                                 *short["c.test"], *long["c.test"])})
    d = FakeAuth(OTHER, zones={"d.test": zone("d.test", f"ns1 A {OTHER}",
                                              *short["d.test"], *long["d.test"])})
    root = root_server(ROOT, "c NS ns1.c", f"ns1.c A {ATTACKER}", "d NS ns1.d", f"ns1.d A {OTHER}")
    with FakeNet(root, c, d) as net, resolver_against(net, tmp_path) as resolver:
        before = net.total()
        followed = resolver.ask(short_name)
        short_cost = net.total() - before
        too_long = resolver.ask(long_name)
        long_cost = net.total() - before - short_cost
    print(f"CNAME chains: 8 links cost {short_cost} upstream queries, 12 links {long_cost}")
    assert followed.header.rcode == Rcode.NOERROR
    assert sum(1 for rr in followed.rr if rr.rtype == QTYPE.CNAME) == 8
    assert addresses(followed) == ["192.0.2.80"]
    assert too_long.header.rcode == Rcode.SERVFAIL
    assert long_cost <= LIMITS.max_upstream_queries


def test_many_black_holed_name_servers_servfail_within_budget(tmp_path: Path) -> None:
    """NRDelegationAttack: a referral to 100 name servers (with glue) that never answer.
    SERVFAIL within the 4 s budget (+2 s slack), a cached name is still answered, and the
    whole resolution sends at most max_sends_per_name (32) queries to those servers."""
    holes = [FakeAuth(f"127.72.1.{i}", default=drop()) for i in range(1, 101)]
    delegation = [line for i in range(1, 101)
                  for line in (f"nrd NS ns{i}.nrd", f"ns{i}.nrd A 127.72.1.{i}")]
    other = FakeAuth(OTHER, zones={"ok.test": zone("ok.test", f"ns1 A {OTHER}",
                                                   "www A 192.0.2.90")})
    root = root_server(ROOT, *delegation, "ok NS ns1.ok", f"ns1.ok A {OTHER}")
    with FakeNet(root, other, *holes) as net, resolver_against(net, tmp_path) as resolver:
        assert addresses(resolver.ask("www.ok.test")) == ["192.0.2.90"]
        before = net.total()
        started = time.monotonic()
        reply = resolver.ask("www.nrd.test")
        elapsed = time.monotonic() - started
        assert addresses(resolver.ask("www.ok.test")) == ["192.0.2.90"]
        resolver.wait_idle()  # the resolution may go on after the client's SERVFAIL
        resolution_s = time.monotonic() - started
        cost = net.total() - before
        at_holes = sum(h.count() for h in holes)
    print(f"100 black-holed NS: SERVFAIL after {elapsed:.2f} s; the resolution ended after "
          f"{resolution_s:.2f} s with {cost} upstream queries ({at_holes} to the black holes)")
    assert reply.header.rcode == Rcode.SERVFAIL
    assert elapsed <= LIMITS.total_budget_s + 2.0
    assert at_holes <= LIMITS.max_sends_per_name
    assert cost <= LIMITS.max_upstream_queries


def test_huge_reply_with_duplicates_is_answered_or_servfailed(tmp_path: Path) -> None:
    """A 30 KB reply over TCP: 50 copies of one CNAME and 1000 A records each sent twice.
    The resolver answers with the records once each (or SERVFAIL), and keeps serving."""
    many = [f"many.big.test. 300 A 10.{i // 250}.{i % 250}.1" for i in range(1000)]
    auth = FakeAuth(ATTACKER, zones={"big.test": zone("big.test", f"ns1 A {ATTACKER}",
                                                      "small A 192.0.2.95")})
    auth.on("alias.big.test", "A", answer(
        *(["alias.big.test. 300 CNAME many.big.test."] * 50), *many, *many))
    auth.on("many.big.test", "A", answer(*many, *many))
    root = root_server(ROOT, "big NS ns1.big", f"ns1.big A {ATTACKER}")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        reply = resolver.ask("alias.big.test", tcp=True)
        elapsed = time.monotonic() - started
        assert addresses(resolver.ask("small.big.test")) == ["192.0.2.95"]
        tcp_queries = auth.count("alias.big.test", transport=Transport.TCP)
        sent = net.total()
    print(f"huge reply: {reply.header.rcode} with {len(reply.rr)} records after "
          f"{elapsed * 1000:.0f} ms ({tcp_queries} TCP queries, {sent} upstream in all)")
    assert reply.header.rcode in (Rcode.NOERROR, Rcode.SERVFAIL)
    if reply.header.rcode == Rcode.NOERROR:
        texts = [str(rr) for rr in reply.rr]
        assert len(texts) == len(set(texts)), "duplicate records were passed on"
        assert sum(1 for rr in reply.rr if rr.rtype == QTYPE.CNAME) == 1
        assert len(addresses(reply)) == 1000


def test_cache_eviction_during_resolution_never_breaks_it(tmp_path: Path) -> None:
    """--cache-size 2 and three levels of delegation: every answer is right or SERVFAIL,
    never a wrong answer or a crash (the eviction happens between the awaits)."""
    deep = FakeAuth(VICTIM, zones={"deep.sub.test": zone("deep.sub.test", f"ns1 A {VICTIM}",
                                                         "www A 192.0.2.99")})
    sub = FakeAuth(OTHER, zones={"sub.test": zone("sub.test", f"ns1 A {OTHER}",
                                                  "deep NS ns1.deep", f"ns1.deep A {VICTIM}")})
    root = root_server(ROOT, "sub NS ns1.sub", f"ns1.sub A {OTHER}")
    outcomes = []
    with (FakeNet(root, sub, deep) as net,
          resolver_against(net, tmp_path, "--cache-size", "2") as resolver):
        for i in range(5):
            for name in ("www.deep.sub.test", f"n{i}.deep.sub.test"):
                reply = resolver.ask(name)
                outcomes.append(Rcode(reply.header.rcode).name)
                if name.startswith("www") and reply.header.rcode == Rcode.NOERROR:
                    assert addresses(reply) == ["192.0.2.99"]
                else:
                    assert reply.header.rcode in (Rcode.NXDOMAIN, Rcode.SERVFAIL, Rcode.NOERROR)
        assert resolver.process.poll() is None
    print(f"cache of 2 entries: {outcomes}, {net.total()} upstream queries")
    assert "NOERROR" in outcomes


def test_ghost_domain_ends_with_the_parent_delegation() -> None:
    """The parent removes ghost.test; the child keeps answering with a fresh NS set of TTL
    86400. Once the parent's NS TTL (300 s) has passed, new names are NXDOMAIN."""
    root_address, child_address = "198.51.100.1", "198.51.100.2"
    root = FakeAuth(root_address, zones={
        ".": zone(".", f"root-ns. A {root_address}", "test. NS root-ns.", ns=["root-ns."]),
        "test.": zone("test.", "ghost 300 NS ns1.ghost", f"ns1.ghost 300 A {child_address}",
                      ns=["root-ns."]),
    })
    child = FakeAuth(child_address, zones={"ghost.test": zone(
        "ghost.test", f"ns1 A {child_address}", "www A 192.0.2.77", "new A 192.0.2.78",
        ttl=86400)})
    clock = FakeClock()
    service = ResolverService(
        settings=EngineSettings(),
        state=SharedState(cache=RecordCache(CacheSettings(), timer=clock),
                          selection=ServerSelection(),
                          root_hints=parse_root_hints(root_hints_text(root_address))),
        network=ScriptedNetwork([root, child], clock), clock=clock, rng=random.Random(2),
    )

    async def rcode_of(name: str, rtype: int = RRType.A) -> int:
        return (await service.resolve(Question(name, rtype))).rcode

    async def body() -> None:
        assert await rcode_of("www.ghost.test.") == Rcode.NOERROR
        # The parent deletes the delegation...
        root.on("ghost.test", None, rcode("NXDOMAIN", authority=[soa("test")]))
        root.on("*.ghost.test", None, rcode("NXDOMAIN", authority=[soa("test")]))
        clock.advance(200)
        # ...and the attacker has the resolver refresh the NS set from the child.
        await rcode_of("ghost.test.", RRType.NS)
        clock.advance(200)  # 400 s after the referral: the parent's NS TTL is long over
        assert await rcode_of("new.ghost.test.") == Rcode.NXDOMAIN

    asyncio.run(body())


@pytest.mark.parametrize("name", ["host{}.icmp.test", "a.b.c.d.host{}.icmp.test"],
                         ids=["one label below", "five labels below (minimised steps)"])
def test_referral_to_500_unreachable_name_servers_costs_at_most_max_sent_count(
        tmp_path: Path, name: str) -> None:
    """A referral to 500 name servers, each with glue on a loopback address where nothing
    listens (every query gets ICMP port unreachable at once). Per client query the resolver
    sends at most max_sends_per_name (32) queries, Unbound's max-sent-count ("hard limit on
    the number of outgoing queries Unbound will make while resolving a name, making sure
    large NS sets do not loop", unbound.conf(5)); the answer is SERVFAIL, and a cached
    name is still answered."""
    unreachable = [f"127.74.{i // 250}.{i % 250 + 1}" for i in range(500)]
    delegation = [line for i, ip in enumerate(unreachable)
                  for line in (f"icmp NS ns{i}.icmp", f"ns{i}.icmp A {ip}")]
    other = FakeAuth(OTHER, zones={"ok.test": zone("ok.test", f"ns1 A {OTHER}",
                                                   "www A 192.0.2.91")})
    root = root_server(ROOT, *delegation, "ok NS ns1.ok", f"ns1.ok A {OTHER}")
    costs = []
    with FakeNet(root, other) as net, resolver_against(net, tmp_path) as resolver:
        assert addresses(resolver.ask("www.ok.test")) == ["192.0.2.91"]
        for i in range(3):
            before = resolver.metrics()["resolver_upstream_queries_total"]
            reply = resolver.ask(name.format(i))
            resolver.wait_idle()  # the resolution may go on after the client's SERVFAIL
            costs.append(resolver.metrics()["resolver_upstream_queries_total"] - before)
            assert reply.header.rcode == Rcode.SERVFAIL
        assert addresses(resolver.ask("www.ok.test")) == ["192.0.2.91"]
    print(f"500 unreachable NS, {name}: upstream queries per client query {costs}")
    assert all(cost <= LIMITS.max_sends_per_name for cost in costs), costs
