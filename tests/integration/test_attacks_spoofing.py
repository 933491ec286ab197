"""Attacks on what the resolver believes: forged replies, out-of-bailiwick data, guessable
ids and ports, shared in-flight questions, and servers on addresses never to be asked
(docs/reliability.md (a): Kaminsky, TuDoor, bailiwick, 0x20, birthday,
self-query). A real `resolver serve` runs against scripted fake servers on 127.71.0.0/16.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from pathlib import Path

import pytest
from dnslib import DNSRecord

from resolver.dns.wire import Question, Rcode
from resolver.engine.cache import RecordCache
from resolver.engine.delegation import is_loopback_or_unspecified, parse_root_hints
from resolver.engine.network import Transport
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings
from resolver.service.resolver_service import ResolverService
from tests.support.fakeauth import (
    POISON_ADDRESS,
    FakeAuth,
    FakeNet,
    ScriptedNetwork,
    addresses,
    answer,
    delay,
    from_zones,
    lowercase_qname,
    make_stub_query,
    resolver_against,
    root_hints_text,
    root_server,
    spoof_first,
    truncate,
    uppercase_qname,
    zone,
)
from tests.support.labnet import FakeClock

pytestmark = pytest.mark.integration

ROOT = "127.71.0.1"
AUTH = "127.71.0.2"
VICTIM = "127.71.0.3"
EVIL = "127.71.0.66"


def test_spoofed_replies_before_the_real_one_are_ignored(tmp_path: Path) -> None:
    """Wrong id, wrong question, QR=0, a short header and garbage arrive first: the real
    answer wins, no SERVFAIL, no retry, and the forgeries are never served later."""
    auth = FakeAuth(AUTH, zones={"spoof.test": zone(
        "spoof.test", f"ns1 A {AUTH}", "www A 192.0.2.10", "big A 192.0.2.11")})
    auth.on("www.spoof.test", "A", spoof_first(10, from_zones()))
    # Over TCP too: forgeries before the truncated UDP reply and before the TCP answer.
    auth.on("big.spoof.test", "A", spoof_first(5, truncate(from_zones())))
    root = root_server(ROOT, "spoof NS ns1.spoof", f"ns1.spoof A {AUTH}")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        reply = resolver.ask("www.spoof.test")
        assert reply.header.rcode == Rcode.NOERROR
        assert addresses(reply) == ["192.0.2.10"]
        assert auth.count("www.spoof.test", "A") == 1, "a forgery made the resolver ask again"

        over_tcp = resolver.ask("big.spoof.test")
        assert addresses(over_tcp) == ["192.0.2.11"]
        assert auth.count("big.spoof.test", "A", Transport.TCP) == 1

        asked = net.total()
        assert addresses(resolver.ask("www.spoof.test")) == ["192.0.2.10"]
        assert net.total() == asked, "the answer was not cached"
        # The wrong-question forgery spoke for poison.www.spoof.test: not believed either.
        other = resolver.ask("poison.www.spoof.test")
        assert other.header.rcode == Rcode.NXDOMAIN
        assert POISON_ADDRESS not in addresses(other)
        metrics = resolver.metrics()
    # Each forgery was ignored while the exchange kept waiting (TuDoor): none ended it.
    assert metrics["resolver_upstream_timeouts_total"] == 0
    assert metrics["resolver_upstream_errors_total"] == 0


def test_poisoned_additional_records_are_not_cached(tmp_path: Path) -> None:
    """Out-of-bailiwick A records in answer and additional, and NS sets for a victim zone
    and for the parent in authority: none is believed; the victim's names are asked of the
    victim's own server and the evil server is never queried."""
    auth = FakeAuth(AUTH, zones={"a.test": zone("a.test", f"ns1 A {AUTH}")})
    auth.on("www.a.test", "A", answer(
        "www.a.test. 300 A 192.0.2.20",
        f"www.victim.test. 300 A {POISON_ADDRESS}",
        authority=["victim.test. 300 NS ns.evil.test.", "test. 300 NS ns.evil.test.",
                   "a.test. 300 NS ns1.a.test."],
        additional=[f"ns.evil.test. 300 A {EVIL}", f"www.victim.test. 300 A {POISON_ADDRESS}",
                    f"www.other.test. 300 A {POISON_ADDRESS}", f"ns1.a.test. 300 A {AUTH}"],
    ))
    victim = FakeAuth(VICTIM, zones={
        "victim.test": zone("victim.test", f"ns1 A {VICTIM}", "www A 192.0.2.30"),
        "other.test": zone("other.test", f"ns1 A {VICTIM}", "www A 192.0.2.31"),
    })
    evil = FakeAuth(EVIL, default=answer(f"{{qname}} 300 A {POISON_ADDRESS}"))
    root = root_server(
        ROOT, "a NS ns1.a", f"ns1.a A {AUTH}", "victim NS ns1.victim", f"ns1.victim A {VICTIM}",
        "other NS ns1.other", f"ns1.other A {VICTIM}", "evil NS ns", f"ns.evil A {EVIL}",
    )
    with FakeNet(root, auth, victim, evil) as net, resolver_against(net, tmp_path) as resolver:
        first = resolver.ask("www.a.test")
        assert addresses(first) == ["192.0.2.20"], "only the asked name's data is answered"
        for name, address in (("www.victim.test", "192.0.2.30"), ("www.other.test", "192.0.2.31")):
            reply = resolver.ask(name)
            assert addresses(reply) == [address]
            assert victim.count(name, "A") == 1
        assert evil.count() == 0


def test_upstream_ids_and_ports_are_unpredictable(tmp_path: Path) -> None:
    """200 upstream queries: ids and source ports spread out (RFC 5452 §9.2), each from a
    fresh port; every query advertises an EDNS size of 1232 (Flag Day 2020)."""
    auth = FakeAuth(AUTH, zones={"rand.test": zone("rand.test", f"ns1 A {AUTH}")})
    auth.on("*.rand.test", "A", answer("{qname} 300 A 192.0.2.40"))
    root = root_server(ROOT, "rand NS ns1.rand", f"ns1.rand A {AUTH}")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        for i in range(200):
            assert addresses(resolver.ask(f"q{i}.rand.test")) == ["192.0.2.40"]
    seen = [q for q in auth.queries if q.qname.endswith(".rand.test.") and q.qname[0] == "q"]
    assert len(seen) == 200
    ids = {q.query_id for q in seen}
    ports = {q.source[1] for q in seen}
    steps = [b.source[1] - a.source[1] for a, b in itertools.pairwise(seen)]
    print(f"upstream spread over 200 queries: {len(ids)} distinct ids, {len(ports)} distinct "
          f"ports in {min(ports)}..{max(ports)}, {sum(1 for s in steps if 0 < s <= 2)} "
          "sequential port steps")
    assert len(ids) >= 150
    assert len(ports) >= 100
    assert sum(1 for s in steps if 0 < s <= 2) < 20, "source ports are allocated in sequence"
    assert {q.edns_size for q in net.received()} == {1232}


def test_server_not_echoing_the_qname_case_is_still_answered(tmp_path: Path) -> None:
    """0x20: a server that lower-cases (or upper-cases) the question in its reply is still
    believed (RFC 4343; we do not randomise case), and the client gets its own case back."""
    auth = FakeAuth(AUTH, zones={"case.test": zone("case.test", f"ns1 A {AUTH}")})
    auth.on("lower.case.test", "A", lowercase_qname(answer("{qname} 300 A 192.0.2.50")))
    auth.on("upper.case.test", "A", uppercase_qname(answer("{qname} 300 A 192.0.2.51")))
    root = root_server(ROOT, "case NS ns1.case", f"ns1.case A {AUTH}")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        lower = resolver.ask("LoWeR.CaSe.TeSt")
        upper = resolver.ask("upper.case.test")
        sent = [q.qname for q in net.received() if q.qname.lower().endswith("r.case.test.")]
    assert addresses(lower) == ["192.0.2.50"]
    assert str(lower.q.qname) == "LoWeR.CaSe.TeSt."
    assert addresses(upper) == ["192.0.2.51"]
    print(f"names as sent upstream: {sent}")


def test_identical_questions_in_flight_share_one_upstream_query(tmp_path: Path) -> None:
    """Birthday attack (RFC 5452 §5): 200 client queries for one uncached name, all
    arriving while it is resolved, cause exactly one upstream query and all get the answer."""
    auth = FakeAuth(AUTH, zones={"bday.test": zone("bday.test", f"ns1 A {AUTH}")})
    auth.on("www.bday.test", "A", delay(0.2, answer("www.bday.test. 300 A 192.0.2.60")))
    root = root_server(ROOT, "bday NS ns1.bday", f"ns1.bday A {AUTH}")
    with FakeNet(root, auth) as net, resolver_against(net, tmp_path) as resolver:
        before = net.total()
        # The server is new to the resolver (first timeout 400 ms): 0.2 s is no timeout.
        replies = _ask_many(resolver.ip, resolver.port, ["www.bday.test"] * 200)
        sent = auth.count("www.bday.test", "A")
        total = net.total() - before
        shared = resolver.metrics()["resolver_shared_waits_total"]
    assert len(replies) == 200
    assert [addresses(r) for r in replies.values()] == [["192.0.2.60"]] * 200
    assert sent == 1
    assert shared > 0, "no question joined the one under way"
    print(f"200 identical questions: {sent} upstream query for the name, {total} in all, "
          f"{shared:.0f} joined the resolution under way")


def test_own_listen_address_in_glue_is_never_queried(tmp_path: Path) -> None:
    """Glue naming the resolver's own listen address (127.0.0.1) is never asked, even in a
    loopback lab: SERVFAIL and 0 packets to ourselves (Unbound do-not-query-localhost)."""
    self_server = FakeAuth("127.0.0.1", default=answer(f"{{qname}} 300 A {POISON_ADDRESS}"))
    root = root_server(ROOT, "self NS ns1.self", "ns1.self A 127.0.0.1")
    with FakeNet(root, self_server) as net, resolver_against(net, tmp_path) as resolver:
        reply = resolver.ask("www.self.test")
    assert reply.header.rcode == Rcode.SERVFAIL
    assert self_server.count() == 0


def test_unspecified_address_in_glue_is_never_queried(tmp_path: Path) -> None:
    """Glue 0.0.0.0 is never a server (RFC 1122 §3.2.1.3): SERVFAIL, nothing sent (on Linux
    a packet to 0.0.0.0 arrives at 127.0.0.1, where the resolver itself listens)."""
    self_server = FakeAuth("127.0.0.1", default=answer(f"{{qname}} 300 A {POISON_ADDRESS}"))
    root = root_server(ROOT, "zero NS ns1.zero", "ns1.zero A 0.0.0.0")
    with FakeNet(root, self_server) as net, resolver_against(net, tmp_path) as resolver:
        reply = resolver.ask("www.zero.test")
    assert self_server.count() == 0
    assert reply.header.rcode == Rcode.SERVFAIL


def test_loopback_glue_is_never_queried_outside_a_lab() -> None:
    """With public root hints, glue pointing at 127/8, 0/8 or ::1 is never asked (Unbound
    do-not-query-localhost): the only such server gives SERVFAIL, a zone with another
    server is answered by that one. (In memory: nothing here leaves the process.)"""
    root_address, real = "198.51.100.1", "198.51.100.7"
    root = FakeAuth(root_address, zones={
        ".": zone(".", f"root-ns. A {root_address}", "test. NS root-ns.", ns=["root-ns."]),
        "test.": zone("test.", "loop NS ns1.loop", "ns1.loop A 127.0.0.1",
                      "zero NS ns1.zero", "ns1.zero A 0.0.0.0",
                      "six NS ns1.six", "ns1.six AAAA ::1",
                      "mixed NS ns1.mixed", "mixed NS ns2.mixed", "ns1.mixed A 127.0.0.2",
                      f"ns2.mixed A {real}", ns=["root-ns."]),
    })
    loopbacks = [FakeAuth(a, default=answer(f"{{qname}} 300 A {POISON_ADDRESS}"))
                 for a in ("127.0.0.1", "127.0.0.2", "0.0.0.0", "::1")]
    good = FakeAuth(real, zones={"mixed.test": zone("mixed.test", "www A 192.0.2.70")})
    clock = FakeClock()
    network = ScriptedNetwork([root, good, *loopbacks], clock)
    service = ResolverService(
        settings=EngineSettings(),
        state=SharedState(cache=RecordCache(CacheSettings(), timer=clock),
                          selection=ServerSelection(),
                          root_hints=parse_root_hints(root_hints_text(root_address))),
        network=network, clock=clock, rng=random.Random(1),
    )

    async def resolve(name: str) -> tuple[int, list[str]]:
        outcome = await service.resolve(Question(name, 1))
        return outcome.rcode, [rr.address for rr in outcome.answer]

    async def body() -> None:
        for name in ("www.loop.test.", "www.zero.test.", "www.six.test."):
            assert (await resolve(name))[0] == Rcode.SERVFAIL
        assert await resolve("www.mixed.test.") == (Rcode.NOERROR, ["192.0.2.70"])

    asyncio.run(body())
    assert not [s for s in network.sent if is_loopback_or_unspecified(s.ip)]
    assert all(server.count() == 0 for server in loopbacks)


def _ask_many(ip: str, port: int, names: list[str], timeout_s: float = 8.0) -> dict[int, object]:
    """Send one query per name from one socket at once; the replies by query id."""
    wires = {}
    while len(wires) < len(names):
        wire = make_stub_query(names[len(wires)])
        wires.setdefault(int.from_bytes(wire[:2], "big"), wire)
    replies: dict[int, object] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((ip, port))
        for wire in wires.values():
            sock.send(wire)
        deadline = time.monotonic() + timeout_s
        while len(replies) < len(wires) and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            qid = int.from_bytes(data[:2], "big")
            if qid in wires:
                replies[qid] = DNSRecord.parse(data)
    return replies
