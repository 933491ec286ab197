"""The sans-I/O resolution engine on the lab's in-memory network (RFC 1034 §5.3.3).

Each test drives `Resolution` through `ResolverService` (or by hand) over `LabNetwork`,
counts what every authoritative server received and checks the outcome. Small custom
worlds, built from zone text on addresses 127.1.0.x, cover the pathological cases
the lab does not have (loops, long chains, NXNS-style referrals).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import dnslib
import pytest

from resolver.dns.decoding import decode
from resolver.dns.wire import Question, Rcode, RRType, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.delegation import parse_root_hints
from resolver.engine.events import Finished, Outcome, QuerySent, SendQuery, TraceEvent
from resolver.engine.network import ServerAddress, Transport
from resolver.engine.resolution import Resolution, SharedState
from resolver.engine.selection import DOWN_AFTER_TIMEOUTS, MAX_BACKOFF_S, ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings, Limits
from resolver.lab.authority import Authority, Zone
from resolver.service.resolver_service import ResolverService
from tests.support.labnet import FakeClock, LabNetwork, lab_root_hints, lab_service

# Addresses of lab servers used below (resolver/lab/world.py).
ROOTS = {"127.41.0.4", "127.247.170.2", "127.33.4.12"}
GTLD_A, GTLD_B = "127.5.6.30", "127.33.14.30"
TEST_TLD = "127.0.2.53"
UTOPIA = "127.212.212.1"
AMAZON = "127.251.192.1"
IBM, BACKUP2 = "127.42.38.10", "127.42.60.53"
ORG, HOSTING = "127.19.54.1", "127.0.113.53"
EXAMPLE_TEST = "127.0.2.54"  # also the lame ns1.lame.test
LAME_NS2 = "127.0.2.55"


@dataclass
class Lab:
    """A resolver service wired to an in-memory network, with a fake clock."""

    clock: FakeClock
    network: LabNetwork
    service: ResolverService

    @property
    def cache(self) -> RecordCache:
        return self.service.state.cache

    def resolve(
        self, name: str, rtype: int = RRType.A, observer: Callable[[TraceEvent], None] | None = None
    ) -> Outcome:
        return asyncio.run(self.service.resolve(Question(name, rtype), observer=observer))

    def asked(self) -> list[tuple[str, str, Transport]]:
        """(server address, question text, transport) of every query sent so far."""
        found = []
        for address, transport, query in self.network.log:
            question = decode(query).question
            found.append((address, str(question), transport))
        return found

    def total(self) -> int:
        return sum(self.network.received.values())


#: These tests follow the classic walk of RFC 1034 §5.3.3, full names at every level;
#: the minimised walk (RFC 9156, on by default) is specified in test_engine_qmin.py.
CLASSIC = EngineSettings(qname_minimisation=False)


def lab(seed: int = 0, *, settings: EngineSettings = CLASSIC) -> Lab:
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network, settings=settings, seed=seed)
    return Lab(clock, network, service)


def texts(outcome: Outcome) -> list[str]:
    """Answer records as 'owner TYPE rdata' strings."""
    return [f"{rr.name} {rr.to_text().split(chr(9))[3]} {rr.rdata_text}" for rr in outcome.answer]


# --- custom worlds -----------------------------------------------------------------------


def zone(origin: str, body: str, ns: str = "ns") -> Zone:
    """A zone with an SOA and one NS (`ns` relative to the origin), plus `body`."""
    text = (
        f"$ORIGIN {origin}\n$TTL 3600\n"
        f"@ IN SOA {ns} hostmaster 1 7200 900 1209600 300\n@ IN NS {ns}\n{body}\n"
    )
    return Zone.from_text(origin, text)


ROOT_ADDRESS = "127.1.0.1"
TEST_ADDRESS = "127.1.0.2"


def world(
    servers: dict[str, list[Zone]],
    *,
    seed: int = 0,
    limits: Limits | None = None,
    root_address: str = ROOT_ADDRESS,
) -> Lab:
    """A service over a network made of the given servers (address -> zones).

    The root server is at `root_address` and named ns.root.
    """
    clock = FakeClock()
    network = LabNetwork(clock, servers=())
    network.authorities = {address: Authority(zones) for address, zones in servers.items()}
    hints = parse_root_hints(f". 3600000 NS ns.root.\nns.root. 3600000 A {root_address}")
    state = SharedState(
        cache=RecordCache(CacheSettings(), timer=clock),
        selection=ServerSelection(),
        root_hints=hints,
    )
    settings = EngineSettings(limits=limits or Limits())
    service = ResolverService(
        settings=settings, state=state, network=network, clock=clock, rng=random.Random(seed)
    )
    return Lab(clock, network, service)


def root_zone(body: str, address: str = ROOT_ADDRESS) -> Zone:
    """The root zone of a custom world: ns.root. at `address`, a test. TLD at TEST_ADDRESS."""
    return zone(
        ".",
        f"ns.root. IN A {address}\ntest. IN NS ns.test.\nns.test. IN A {TEST_ADDRESS}\n{body}",
        ns="ns.root.",
    )


# --- tampering -----------------------------------------------------------------------------


def once(change: Callable[[bytes, bytes], bytes]) -> Callable[[bytes, bytes], bytes]:
    """Apply `change` to the first reply only; later replies pass untouched."""
    calls = []

    def rewrite(query: bytes, reply: bytes) -> bytes:
        calls.append(query)
        return change(query, reply) if len(calls) == 1 else reply

    return rewrite


def edit(reply: bytes, how: Callable[[dnslib.DNSRecord], None]) -> bytes:
    record = dnslib.DNSRecord.parse(reply)
    how(record)
    return bytes(record.pack())


def wrong_id(query: bytes, reply: bytes) -> bytes:
    def change(r: dnslib.DNSRecord) -> None:
        r.header.id ^= 0x5A5A

    return edit(reply, change)


def poisoned(query: bytes, reply: bytes) -> bytes:
    """Add out-of-bailiwick data for ibm.com and com. to a reply."""

    def change(r: dnslib.DNSRecord) -> None:
        r.add_answer(*dnslib.RR.fromZone("www.ibm.com. 3600 IN A 6.6.6.6"))
        r.add_auth(*dnslib.RR.fromZone("com. 3600 IN NS ns.evil.net."))
        r.add_auth(*dnslib.RR.fromZone("ibm.com. 3600 IN NS ns.evil.net."))
        r.add_ar(*dnslib.RR.fromZone("www.ibm.com. 3600 IN A 6.6.6.7"))
        r.add_ar(*dnslib.RR.fromZone("ns.ibm.com. 3600 IN A 6.6.6.8"))

    return edit(reply, change)


# --- walking the tree ------------------------------------------------------------------------


def test_engine_plain_lookup_walks_root_com_and_the_zone() -> None:
    """Root (after priming), then com, then networkutopia.com: one query each (RFC 1034 §5.3.3)."""
    lab_ = lab()
    outcome = lab_.resolve("www.networkutopia.com.")
    assert outcome.rcode == Rcode.NOERROR
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    asked = lab_.asked()
    assert [q for _, q, _ in asked] == [
        ". NS",
        "www.networkutopia.com. A",
        "www.networkutopia.com. A",
        "www.networkutopia.com. A",
    ]
    assert asked[0][0] in ROOTS and asked[1][0] in ROOTS
    assert asked[2][0] in (GTLD_A, GTLD_B) and asked[3][0] == UTOPIA
    assert outcome.queries_sent == 4


def test_engine_primes_the_root_first() -> None:
    """The first query asks a root server for the root NS set (RFC 8109 §3)."""
    lab_ = lab()
    lab_.resolve("www.amazon.com.")
    address, question, _ = lab_.asked()[0]
    assert address in ROOTS and question == ". NS"
    assert lab_.cache.rrset(".", RRType.NS) is not None


def test_engine_without_priming_asks_the_question_at_the_root() -> None:
    """With prime_root off, the root hints are asked the client's question directly."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False, prime_root=False))
    outcome = lab_.resolve("www.amazon.com.")
    assert outcome.rcode == Rcode.NOERROR
    assert lab_.asked()[0][1] == "www.amazon.com. A"


def test_engine_second_name_under_com_starts_at_a_com_server() -> None:
    """Cached delegations are reused: a second .com name does not go back to the root."""
    lab_ = lab()
    lab_.resolve("www.networkutopia.com.")
    roots_before = sum(lab_.network.received[a] for a in ROOTS)
    start = len(lab_.network.log)
    outcome = lab_.resolve("www.amazon.com.")
    assert outcome.rcode == Rcode.NOERROR
    assert sum(lab_.network.received[a] for a in ROOTS) == roots_before
    first = lab_.asked()[start]
    assert first[0] in (GTLD_A, GTLD_B)
    assert [a for a, _, _ in lab_.asked()[start:]] == [first[0], AMAZON]


def test_engine_cached_answer_sends_nothing() -> None:
    """A second identical question is answered from the cache, TTL lowered."""
    lab_ = lab()
    lab_.resolve("www.amazon.com.")
    before = lab_.total()
    lab_.clock.advance(10)
    outcome = lab_.resolve("www.amazon.com.")
    assert lab_.total() == before and outcome.queries_sent == 0
    assert [rr.ttl for rr in outcome.answer] == [50]


def test_engine_expired_answer_is_fetched_again_from_the_zone_only() -> None:
    """After the answer's TTL (60 s) only the zone's server is asked again."""
    lab_ = lab()
    lab_.resolve("www.amazon.com.")
    start = len(lab_.network.log)
    lab_.clock.advance(61)
    outcome = lab_.resolve("www.amazon.com.")
    assert outcome.rcode == Rcode.NOERROR
    assert [a for a, _, _ in lab_.asked()[start:]] == [AMAZON]


def test_engine_cname_across_zones_is_followed_through_a_zone_cut() -> None:
    """www.ibm.com is a CNAME into backup2.ibm.com, a child zone: the chain is completed there."""
    lab_ = lab()
    outcome = lab_.resolve("www.ibm.com.")
    assert outcome.rcode == Rcode.NOERROR
    assert texts(outcome) == [
        "www.ibm.com. CNAME servereast.backup2.ibm.com.",
        "servereast.backup2.ibm.com. A 129.42.60.216",
    ]
    assert lab_.network.received[BACKUP2] == 1


def test_engine_cname_chain_over_three_zones() -> None:
    """alias.example.test -> www.ibm.com -> servereast.backup2.ibm.com, in order."""
    outcome = lab().resolve("alias.example.test.")
    assert outcome.rcode == Rcode.NOERROR
    assert [rr.name for rr in outcome.answer] == [
        "alias.example.test.",
        "www.ibm.com.",
        "servereast.backup2.ibm.com.",
    ]


def test_engine_in_zone_cname_chain_comes_whole() -> None:
    """A chain inside one zone arrives in one reply and is returned whole."""
    outcome = lab().resolve("chain.example.test.")
    assert outcome.rcode == Rcode.NOERROR
    assert [rr.rtype for rr in outcome.answer][:2] == [RRType.CNAME, RRType.CNAME]
    assert sorted(rr.address for rr in outcome.answer if rr.rtype == RRType.A) == [
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
    ]


def test_engine_dangling_cname_is_nxdomain_with_the_chain() -> None:
    """A CNAME to a missing name: NXDOMAIN, the CNAME in the answer, the SOA (RFC 6604 §3)."""
    outcome = lab().resolve("dangling.example.test.")
    assert outcome.rcode == Rcode.NXDOMAIN
    assert texts(outcome) == ["dangling.example.test. CNAME missing.example.test."]
    assert [rr.rtype for rr in outcome.authority] == [RRType.SOA]


def test_engine_nxdomain_carries_the_soa_with_the_negative_ttl() -> None:
    """NXDOMAIN comes with the zone's SOA at TTL min(SOA TTL, MINIMUM) (RFC 2308 §3)."""
    outcome = lab().resolve("nothere.networkutopia.com.")
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.answer == ()
    (soa,) = outcome.authority
    assert soa.name == "networkutopia.com." and soa.rtype == RRType.SOA and soa.ttl == 300


def test_engine_fresh_negative_answer_shows_the_zone_soa_already_cached_counted_down() -> None:
    """A second name of the zone denied 100 s after the first: its fresh answer shows the
    SOA the cache keeps from the first (300 - 100 s), not a reset 300, so the answer sent and
    every later one from the cache count down alike (RFC 2308 §5)."""
    lab_ = lab()
    lab_.resolve("nothere.networkutopia.com.")
    lab_.clock.advance(100)
    outcome = lab_.resolve("neither.networkutopia.com.")
    assert outcome.rcode == Rcode.NXDOMAIN
    (soa,) = outcome.authority
    (first,) = lab_.resolve("nothere.networkutopia.com.").authority  # from the cache
    assert soa.ttl == first.ttl <= 200
    lab_.clock.advance(10)
    (again,) = lab_.resolve("neither.networkutopia.com.").authority
    assert again.ttl == soa.ttl - 10


def test_engine_nodata_is_noerror_with_soa() -> None:
    """A name without the asked type: NOERROR, empty answer, SOA (RFC 2308 §2.2)."""
    outcome = lab().resolve("www.networkutopia.com.", RRType.MX)
    assert outcome.rcode == Rcode.NOERROR and outcome.answer == ()
    assert [rr.rtype for rr in outcome.authority] == [RRType.SOA]


def test_engine_empty_non_terminal_is_nodata_not_nxdomain() -> None:
    """deep.example.test owns nothing but has a child: it exists (RFC 8020 §2)."""
    outcome = lab().resolve("deep.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.answer == ()
    assert outcome.authority


def test_engine_unknown_type_is_resolved_like_any_other() -> None:
    """A type the resolver does not know travels untouched (RFC 3597)."""
    outcome = lab().resolve("unknown.example.test.", 65400)
    assert outcome.rcode == Rcode.NOERROR
    assert [(rr.rtype, rr.rdata_text) for rr in outcome.answer] == [(65400, "\\# 4 0A000001")]


def test_engine_negative_answer_is_cached() -> None:
    """A second question for a missing name sends nothing (RFC 2308 §5)."""
    lab_ = lab()
    lab_.resolve("nothere.networkutopia.com.")
    before = lab_.total()
    outcome = lab_.resolve("nothere.networkutopia.com.")
    assert outcome.rcode == Rcode.NXDOMAIN and lab_.total() == before


def test_engine_nothing_below_a_cached_nxdomain() -> None:
    """A name below a cached NXDOMAIN is NXDOMAIN without asking (RFC 8020 §2)."""
    lab_ = lab()
    lab_.resolve("nothere.networkutopia.com.")
    before = lab_.total()
    outcome = lab_.resolve("a.b.nothere.networkutopia.com.", RRType.AAAA)
    assert outcome.rcode == Rcode.NXDOMAIN and lab_.total() == before


def test_engine_nodata_is_cached_per_type() -> None:
    """NODATA for MX is remembered; A for the same name is still fetched or answered."""
    lab_ = lab()
    lab_.resolve("www.networkutopia.com.", RRType.MX)
    before = lab_.total()
    assert lab_.resolve("www.networkutopia.com.", RRType.MX).rcode == Rcode.NOERROR
    assert lab_.total() == before
    assert lab_.resolve("www.networkutopia.com.", RRType.A).answer


# --- glue, lameness, dead servers ---------------------------------------------------------


def test_engine_glueless_ns_in_another_tld_is_looked_up_first() -> None:
    """glueless.org's NS ns.hosting.net has no glue: its address is resolved before asking it."""
    lab_ = lab()
    events: list[TraceEvent] = []
    outcome = lab_.resolve("www.glueless.org.", observer=events.append)
    assert texts(outcome) == ["www.glueless.org. A 203.0.113.81"]
    asked = [(address, question) for address, question, _ in lab_.asked()]
    referral = asked.index((ORG, "www.glueless.org. A"))
    lookups = [i for i, (_, q) in enumerate(asked) if q == "ns.hosting.net. A"]
    final = asked.index((HOSTING, "www.glueless.org. A"))
    assert lookups and referral < lookups[0] and lookups[-1] < final
    nested = [e for e in events if isinstance(e, QuerySent) and e.qname == "ns.hosting.net."]
    assert nested and all(e.depth == 1 for e in nested)


def test_engine_lame_server_is_skipped_for_the_other_one() -> None:
    """ns1.lame.test answers REFUSED: the answer comes from ns2 (RFC 1034 §4.2.2)."""
    for seed in range(6):
        lab_ = lab(seed)
        outcome = lab_.resolve("www.lame.test.")
        assert texts(outcome) == ["www.lame.test. A 192.0.2.81"], seed
        assert lab_.network.received[EXAMPLE_TEST] <= 1
        assert lab_.network.received[LAME_NS2] == 1


def test_engine_lame_server_is_not_asked_again_for_that_zone() -> None:
    """Once a server proved lame for a zone, later lookups in that zone avoid it."""
    checked = 0
    for seed in range(8):
        lab_ = lab(seed)
        lab_.resolve("www.lame.test.")
        if lab_.network.received[EXAMPLE_TEST] == 0:
            continue  # this seed picked ns2 first: no lameness learnt yet
        checked += 1
        assert lab_.resolve("nothing.lame.test.").rcode == Rcode.NXDOMAIN
        assert lab_.resolve("www.lame.test.", RRType.AAAA).rcode == Rcode.NOERROR
        assert lab_.network.received[EXAMPLE_TEST] == 1, seed
    assert checked >= 2


def test_engine_black_holed_server_is_skipped() -> None:
    """A com server that never answers costs one timeout; the other com server answers."""
    for seed in range(4):
        lab_ = lab(seed)
        lab_.network.silent.add(GTLD_A)
        outcome = lab_.resolve("www.networkutopia.com.")
        assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"], seed
        assert lab_.network.received[GTLD_A] <= 1


def test_engine_server_down_after_three_timeouts_is_avoided() -> None:
    """After three timeouts in a row a server is down: later lookups use the healthy one."""
    lab_ = lab(1)
    lab_.network.silent.add(GTLD_A)
    for i in range(12):
        assert lab_.resolve(f"nothere{i}.com.").rcode == Rcode.NXDOMAIN
    assert lab_.network.received[GTLD_A] <= DOWN_AFTER_TIMEOUTS


def test_engine_all_servers_of_a_zone_silent_is_servfail_within_limits() -> None:
    """A dead zone gives SERVFAIL, within the query and time budgets."""
    lab_ = lab()
    lab_.network.silent.add(UTOPIA)
    start = lab_.clock.now
    outcome = lab_.resolve("www.networkutopia.com.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL and outcome.reason
    assert outcome.queries_sent <= limits.max_upstream_queries
    assert lab_.network.received[UTOPIA] <= limits.max_tries_per_server
    assert lab_.clock.now - start < limits.resolution_budget_s + limits.max_timeout_s


def test_engine_all_root_servers_silent_is_servfail_within_the_time_budget() -> None:
    """Nothing answers at all: SERVFAIL once the resolution's budget is spent, not later
    (the client itself is answered at total_budget_s by the service)."""
    lab_ = lab()
    lab_.network.silent.update(ROOTS)
    start = lab_.clock.now
    outcome = lab_.resolve("www.networkutopia.com.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.queries_sent <= limits.max_upstream_queries
    assert lab_.clock.now - start <= limits.resolution_budget_s + 0.01


def test_engine_failure_is_remembered_briefly() -> None:
    """A failed question asked again within the failure TTL sends nothing (RFC 9520 §3.2)."""
    lab_ = lab()
    lab_.network.silent.add(UTOPIA)
    lab_.resolve("www.networkutopia.com.")
    before = lab_.total()
    again = lab_.resolve("www.networkutopia.com.")
    assert again.rcode == Rcode.SERVFAIL and lab_.total() == before
    # Past the failure TTL, and past the back-off after which the server, down after its
    # timeouts, may be probed again (test_engine_down_server_is_probed_by_one_query_...).
    lab_.clock.advance(max(CacheSettings().failure_ttl_s, MAX_BACKOFF_S))
    lab_.network.silent.clear()
    assert lab_.resolve("www.networkutopia.com.").rcode == Rcode.NOERROR


def test_engine_zone_whose_only_server_is_down_is_servfail_at_once_until_its_probe() -> None:
    """Unbound's one probe at a time: once the zone's one server is down (three timeouts in
    a row), new questions of the zone do not wait out their budget on it; they are SERVFAIL
    at once, sending nothing, until the back-off allows one query to probe it again."""
    lab_ = lab()
    lab_.network.silent.add(UTOPIA)
    lab_.resolve("www.networkutopia.com.")
    server = ServerAddress(UTOPIA, 53)
    assert lab_.service.state.selection.is_down(server, lab_.clock.now)
    before, started = lab_.network.received[UTOPIA], lab_.clock.now
    outcome = lab_.resolve("mail.networkutopia.com.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert lab_.network.received[UTOPIA] == before
    assert lab_.clock.now - started < 0.01


def test_engine_down_server_is_probed_by_one_query_and_is_up_again_when_it_answers() -> None:
    lab_ = lab()
    lab_.network.silent.add(UTOPIA)
    lab_.resolve("www.networkutopia.com.")
    server = ServerAddress(UTOPIA, 53)
    selection = lab_.service.state.selection
    lab_.clock.advance(selection.probe_held(server, lab_.clock.now))
    lab_.network.silent.clear()
    before = lab_.network.received[UTOPIA]
    assert lab_.resolve("mail.networkutopia.com.").rcode == Rcode.NOERROR
    assert lab_.network.received[UTOPIA] == before + 1  # the probe
    assert not selection.is_down(server, lab_.clock.now)
    assert lab_.resolve("ftp.networkutopia.com.").rcode in (Rcode.NOERROR, Rcode.NXDOMAIN)


def test_engine_never_queries_its_own_addresses() -> None:
    """Addresses in never_query are skipped even when they are the only servers."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False, never_query=frozenset({UTOPIA})))
    outcome = lab_.resolve("www.networkutopia.com.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert lab_.network.received[UTOPIA] == 0


def test_engine_does_not_query_loopback_learnt_from_public_servers() -> None:
    """With public root hints, glue pointing at 127.0.0.1 is never used (do-not-query-localhost)."""
    public_root = "198.41.0.4"
    lab_ = world(
        {
            public_root: [
                zone(
                    ".",
                    f"ns.root. IN A {public_root}\ntest. IN NS ns.test.\nns.test. IN A 127.0.0.1",
                    ns="ns.root.",
                )
            ],
            "127.0.0.1": [zone("test.", "ns IN A 127.0.0.1\nwww IN A 192.0.2.1")],
        },
        root_address=public_root,
    )
    outcome = lab_.resolve("www.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert lab_.network.received["127.0.0.1"] == 0
    assert lab_.network.received[public_root] >= 1


# --- transports ---------------------------------------------------------------------------------


def test_engine_truncated_udp_reply_is_retried_over_tcp() -> None:
    """TC=1 over UDP: the same server is asked again over TCP (RFC 7766 §5)."""
    lab_ = lab()
    outcome = lab_.resolve("huge.example.test.", RRType.TXT)
    assert outcome.rcode == Rcode.NOERROR and len(outcome.answer) == 24
    to_example = [(q, t) for a, q, t in lab_.asked() if a == EXAMPLE_TEST]
    assert to_example == [
        ("huge.example.test. TXT", Transport.UDP),
        ("huge.example.test. TXT", Transport.TCP),
    ]


def test_engine_small_edns_size_makes_big_answers_use_tcp() -> None:
    """Advertising 512 octets makes the 600-octet TXT set come over TCP."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False, edns_udp_size=512))
    outcome = lab_.resolve("big.example.test.", RRType.TXT)
    assert len(outcome.answer) == 8
    assert [t for a, _, t in lab_.asked() if a == EXAMPLE_TEST] == [Transport.UDP, Transport.TCP]


def test_engine_tcp_upstream_sends_everything_over_tcp() -> None:
    """With tcp_upstream every query goes over TCP."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False, tcp_upstream=True))
    assert lab_.resolve("www.networkutopia.com.").rcode == Rcode.NOERROR
    assert {t for _, _, t in lab_.asked()} == {Transport.TCP}


def test_engine_formerr_to_edns_echoing_the_question_retries_without_edns() -> None:
    """A server that rejects EDNS with FORMERR is asked again without OPT (RFC 6891 §7)."""
    lab_ = lab()

    def no_edns(query: bytes, reply: bytes) -> bytes:
        if decode(query).edns is None:
            return reply

        def change(r: dnslib.DNSRecord) -> None:
            r.header.rcode = Rcode.FORMERR
            r.rr, r.auth, r.ar = [], [], []

        return edit(reply, change)

    lab_.network.rewrite[UTOPIA] = no_edns
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    sent = [decode(q).edns for a, _, q in lab_.network.log if a == UTOPIA]
    assert sent[0] is not None and sent[-1] is None


def test_engine_header_only_formerr_to_edns_retries_without_edns() -> None:
    """A pre-EDNS server's FORMERR often has no question; it still means 'retry without OPT'."""
    lab_ = lab()

    def no_edns(query: bytes, reply: bytes) -> bytes:
        if decode(query).edns is None:
            return reply
        return query[:2] + bytes([0x80 | (query[2] & 0x79), Rcode.FORMERR]) + b"\x00" * 8

    lab_.network.rewrite[UTOPIA] = no_edns
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]


# --- forged and poisoned replies --------------------------------------------------------------


def test_engine_reply_with_a_wrong_id_is_not_accepted() -> None:
    """Replies whose id does not match are discarded (RFC 5452 §9.1): SERVFAIL, nothing cached."""
    lab_ = lab()
    lab_.network.rewrite[UTOPIA] = wrong_id
    outcome = lab_.resolve("www.networkutopia.com.")
    assert outcome.rcode == Rcode.SERVFAIL and "does not match" in outcome.reason
    assert lab_.cache.rrset("www.networkutopia.com.", RRType.A) is None


def test_engine_one_forged_reply_is_survived() -> None:
    """After a reply with a wrong id the server is asked again and the real answer wins."""
    lab_ = lab()
    lab_.network.rewrite[UTOPIA] = once(wrong_id)
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    assert lab_.network.received[UTOPIA] == 2


def test_engine_reply_to_another_question_is_not_accepted() -> None:
    """A reply whose question differs is discarded, and its records are not cached."""
    lab_ = lab()

    def other_question(query: bytes, reply: bytes) -> bytes:
        def change(r: dnslib.DNSRecord) -> None:
            r.questions = [dnslib.DNSQuestion("www.ibm.com.", 1)]
            r.rr = list(dnslib.RR.fromZone("www.ibm.com. 3600 IN A 6.6.6.6"))

        return edit(reply, change)

    lab_.network.rewrite[UTOPIA] = once(other_question)
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    assert lab_.cache.rrset("www.ibm.com.", RRType.A) is None


def test_engine_reply_with_qr_zero_is_not_accepted() -> None:
    """A message that is not a response (QR=0) is no reply (RFC 5452 §9.1)."""
    lab_ = lab()

    def not_a_response(query: bytes, reply: bytes) -> bytes:
        def change(r: dnslib.DNSRecord) -> None:
            r.header.qr = 0

        return edit(reply, change)

    lab_.network.rewrite[UTOPIA] = once(not_a_response)
    assert lab_.resolve("www.networkutopia.com.").answer
    assert lab_.network.received[UTOPIA] == 2


def test_engine_malformed_reply_is_survived() -> None:
    """Garbage from a server counts as a failed try, never as an answer or a crash."""
    lab_ = lab()
    lab_.network.rewrite[UTOPIA] = once(lambda query, reply: reply[:20])
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]


def test_engine_reply_with_different_letter_case_is_accepted() -> None:
    """Question matching ignores case (RFC 4343), so an upper-cased echo is fine."""
    lab_ = lab()

    def upper(query: bytes, reply: bytes) -> bytes:
        def change(r: dnslib.DNSRecord) -> None:
            r.questions = [dnslib.DNSQuestion("WWW.NETWORKUTOPIA.COM.", 1)]

        return edit(reply, change)

    lab_.network.rewrite[UTOPIA] = upper
    assert texts(lab_.resolve("www.networkutopia.com.")) == [
        "www.networkutopia.com. A 212.212.212.2"
    ]
    assert lab_.network.received[UTOPIA] == 1


def test_engine_out_of_bailiwick_records_do_not_poison_the_cache() -> None:
    """networkutopia.com's server cannot speak for ibm.com or com (RFC 2181 §5.4.1)."""
    lab_ = lab()
    lab_.network.rewrite[UTOPIA] = poisoned
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    assert lab_.cache.rrset("www.ibm.com.", RRType.A) is None
    assert lab_.cache.rrset("ibm.com.", RRType.NS) is None
    assert lab_.cache.rrset("ns.ibm.com.", RRType.A) is None
    com = lab_.cache.rrset("com.", RRType.NS)
    assert com is not None and "ns.evil.net." not in {rr.target for rr in com}
    later = lab_.resolve("www.ibm.com.")
    assert "6.6.6.6" not in {rr.address for rr in later.answer if rr.rtype == RRType.A}
    assert lab_.network.received[IBM] >= 1


def test_engine_referral_cannot_plant_ns_for_a_sibling_zone() -> None:
    """A com referral for networkutopia.com that adds ibm.com's NS and glue plants neither."""
    lab_ = lab()
    lab_.network.rewrite[GTLD_A] = poisoned
    lab_.network.rewrite[GTLD_B] = poisoned
    lab_.resolve("www.networkutopia.com.")
    assert lab_.cache.rrset("ibm.com.", RRType.NS) is None
    assert lab_.cache.rrset("ns.ibm.com.", RRType.A) is None


def test_engine_glue_is_not_returned_as_an_answer() -> None:
    """Glue learnt from a referral must not answer a client; the zone's own server is asked."""
    lab_ = lab()
    lab_.resolve("www.networkutopia.com.")
    before = lab_.network.received[UTOPIA]
    outcome = lab_.resolve("dns1.networkutopia.com.")
    assert texts(outcome) == ["dns1.networkutopia.com. A 127.212.212.1"]
    assert lab_.network.received[UTOPIA] == before + 1
    assert lab_.cache.rank_of("dns1.networkutopia.com.", RRType.A) is Rank.AUTHORITATIVE_ANSWER


def test_engine_referral_ns_set_is_not_returned_as_an_answer() -> None:
    """An NS question is answered by the zone itself, not from the parent's referral."""
    lab_ = lab()
    lab_.resolve("www.networkutopia.com.")
    before = lab_.network.received[UTOPIA]
    outcome = lab_.resolve("networkutopia.com.", RRType.NS)
    assert texts(outcome) == ["networkutopia.com. NS dns1.networkutopia.com."]
    assert lab_.network.received[UTOPIA] == before + 1
    assert all(rr.ttl <= 3600 for rr in outcome.answer)


# --- loops and limits ----------------------------------------------------------------------------


def cname_world(links: int) -> Lab:
    """c0.one.test -> c1.two.test -> c2.one.test ... -> c<links>.<zone> A 192.0.2.99."""
    zones = {"one": "", "two": ""}
    for i in range(links):
        here, there = ("one", "two") if i % 2 == 0 else ("two", "one")
        zones[here] += f"c{i} IN CNAME c{i + 1}.{there}.test.\n"
    last = "one" if links % 2 == 0 else "two"
    zones[last] += f"c{links} IN A 192.0.2.99\n"
    test = zone(
        "test.",
        f"ns IN A {TEST_ADDRESS}\none IN NS ns.one.test.\nns.one IN A 127.1.0.3\n"
        "two IN NS ns.two.test.\nns.two IN A 127.1.0.4",
    )
    return world(
        {
            ROOT_ADDRESS: [root_zone("")],
            TEST_ADDRESS: [test],
            "127.1.0.3": [zone("one.test.", "ns IN A 127.1.0.3\n" + zones["one"])],
            "127.1.0.4": [zone("two.test.", "ns IN A 127.1.0.4\n" + zones["two"])],
        }
    )


def test_engine_cname_chain_across_zones_within_the_cap_is_followed() -> None:
    """Eight cross-zone CNAME links are followed to the data (cap: 11 restarts)."""
    outcome = cname_world(8).resolve("c0.one.test.")
    assert outcome.rcode == Rcode.NOERROR
    assert len(outcome.answer) == 9 and outcome.answer[-1].address == "192.0.2.99"


def test_engine_cname_chain_longer_than_the_cap_is_servfail() -> None:
    """More CNAME restarts than max_cname_chain: SERVFAIL (Unbound/BIND max-query-restarts 11)."""
    outcome = cname_world(14).resolve("c0.one.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert "CNAME chain" in outcome.reason


def test_engine_cname_loop_across_zones_is_servfail() -> None:
    """a.one.test -> a.two.test -> a.one.test: SERVFAIL quickly, not a spin."""
    test = zone(
        "test.",
        f"ns IN A {TEST_ADDRESS}\none IN NS ns.one.test.\nns.one IN A 127.1.0.3\n"
        "two IN NS ns.two.test.\nns.two IN A 127.1.0.4",
    )
    lab_ = world(
        {
            ROOT_ADDRESS: [root_zone("")],
            TEST_ADDRESS: [test],
            "127.1.0.3": [zone("one.test.", "ns IN A 127.1.0.3\na IN CNAME a.two.test.")],
            "127.1.0.4": [zone("two.test.", "ns IN A 127.1.0.4\na IN CNAME a.one.test.")],
        }
    )
    outcome = lab_.resolve("a.one.test.")
    assert outcome.rcode == Rcode.SERVFAIL and "loop" in outcome.reason
    assert outcome.queries_sent <= 8


def test_engine_cname_loop_inside_one_zone_is_servfail() -> None:
    """a -> b -> a inside one zone: SERVFAIL."""
    lab_ = world(
        {
            ROOT_ADDRESS: [root_zone("")],
            TEST_ADDRESS: [
                zone("test.", f"ns IN A {TEST_ADDRESS}\na IN CNAME b.test.\nb IN CNAME a.test.")
            ],
        }
    )
    outcome = lab_.resolve("a.test.")
    assert outcome.rcode == Rcode.SERVFAIL


def test_engine_cyclic_glueless_delegations_stay_within_limits() -> None:
    """a.test NS ns.b.test, b.test NS ns.a.test, no glue (TsuNAME): SERVFAIL within the budget,
    and the failure is remembered so a retry sends nothing (RFC 9520)."""
    test = zone("test.", f"ns IN A {TEST_ADDRESS}\na IN NS ns.b.test.\nb IN NS ns.a.test.")
    lab_ = world({ROOT_ADDRESS: [root_zone("")], TEST_ADDRESS: [test]})
    outcome = lab_.resolve("www.a.test.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.queries_sent <= limits.max_upstream_queries
    assert lab_.total() == outcome.queries_sent
    before = lab_.total()
    assert lab_.resolve("www.a.test.").rcode == Rcode.SERVFAIL
    assert lab_.total() == before


def referral_chain(depth: int, limits: Limits) -> Lab:
    """test. delegates l1.test, which delegates l2.l1.test, ... down to depth levels."""
    servers: dict[str, list[Zone]] = {ROOT_ADDRESS: [root_zone("")]}
    parent, parent_address, parent_body = "test.", TEST_ADDRESS, f"ns IN A {TEST_ADDRESS}\n"
    for level in range(1, depth + 1):
        child = f"l{level}.{parent}"
        address = f"127.1.1.{level}"
        parent_body += f"{child} IN NS ns.{child}\nns.{child} IN A {address}\n"
        servers[parent_address] = [zone(parent, parent_body)]
        parent, parent_address, parent_body = child, address, f"ns IN A {address}\n"
    servers[parent_address] = [zone(parent, parent_body + "www IN A 192.0.2.42")]
    return world(servers, limits=limits)


def deepest_name(depth: int) -> str:
    return "www." + "".join(f"l{level}." for level in range(depth, 0, -1)) + "test."


def test_engine_referral_chain_within_the_limit_resolves() -> None:
    """Five referrals (root, test, l1..l3) with the default limit: the answer arrives."""
    outcome = referral_chain(4, Limits()).resolve(deepest_name(4))
    assert outcome.rcode == Rcode.NOERROR and outcome.answer[0].address == "192.0.2.42"


def test_engine_referral_chain_beyond_the_limit_is_servfail() -> None:
    """More referrals than max_referrals: SERVFAIL, and no more queries than the referrals allow."""
    limits = Limits(max_referrals=3)
    lab_ = referral_chain(6, limits)
    outcome = lab_.resolve(deepest_name(6))
    assert outcome.rcode == Rcode.SERVFAIL and "referrals" in outcome.reason
    # Priming, one ask per referral followed, and the ask whose referral is one too many.
    assert outcome.queries_sent <= 1 + limits.max_referrals + 1


def test_engine_exactly_max_referrals_is_allowed() -> None:
    """A name that needs exactly max_referrals referrals still resolves."""
    # root -> test -> l1 -> l2 -> l3: four referrals, then the answer from l3's server.
    outcome = referral_chain(3, Limits(max_referrals=4)).resolve(deepest_name(3))
    assert outcome.rcode == Rcode.NOERROR


def test_engine_upstream_query_budget_is_enforced() -> None:
    """With max_upstream_queries=3 a lookup needing four queries is SERVFAIL after three."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False,
                                       limits=Limits(max_upstream_queries=3)))
    outcome = lab_.resolve("www.networkutopia.com.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.queries_sent == 3 and lab_.total() == 3


def test_engine_many_glueless_ns_in_missing_zones_are_capped() -> None:
    """NXNSAttack: of 20 glueless NS names that do not exist, only a few are looked up."""
    body = f"ns IN A {TEST_ADDRESS}\n" + "".join(
        f"victim IN NS n{i}.nx{i}.test.\n" for i in range(20)
    )
    lab_ = world({ROOT_ADDRESS: [root_zone("")], TEST_ADDRESS: [zone("test.", body)]})
    outcome = lab_.resolve("www.victim.test.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL
    looked_up = {q.split()[0] for _, q, _ in lab_.asked() if ".nx" in q}
    assert len(looked_up) <= limits.max_failed_ns_lookups + 1
    assert outcome.queries_sent <= limits.max_sends_per_name


# --- determinism and the driver interface --------------------------------------------------------


def test_engine_is_deterministic_for_a_seed() -> None:
    """Same seed, same questions: the same queries to the same servers, byte for byte."""

    def run(seed: int) -> list[tuple[str, Transport, bytes]]:
        lab_ = lab(seed)
        for name in (
            "www.networkutopia.com.",
            "www.glueless.org.",
            "www.lame.test.",
            "www.ibm.com.",
        ):
            lab_.resolve(name)
        return lab_.network.log

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_engine_query_ids_are_drawn_from_the_rng() -> None:
    """Every upstream query carries an id from the given rng, not a counter."""
    lab_ = lab(3)
    lab_.resolve("www.glueless.org.")
    ids = [decode(q).id for _, _, q in lab_.network.log]
    assert len(set(ids)) == len(ids) > 3
    assert ids != sorted(ids)


def test_engine_trace_counts_match_queries_sent() -> None:
    """One QuerySent event per upstream query."""
    lab_ = lab()
    events: list[TraceEvent] = []
    outcome = lab_.resolve("www.ibm.com.", observer=events.append)
    sent = [e for e in events if isinstance(e, QuerySent)]
    assert len(sent) == outcome.queries_sent == lab_.total()


def new_resolution(question: Question, state: SharedState, now: float = 1_000.0) -> Resolution:
    return Resolution(
        question, settings=EngineSettings(), state=state, rng=random.Random(0), now=now
    )


def lab_state() -> SharedState:
    return SharedState(
        cache=RecordCache(CacheSettings(), timer=FakeClock()),
        selection=ServerSelection(),
        root_hints=lab_root_hints(),
    )


def test_resolution_first_action_is_a_query_to_a_root_hint() -> None:
    """Driven by hand, a fresh resolution first asks to send a UDP query to a root server."""
    resolution = new_resolution(Question("www.amazon.com.", RRType.A), lab_state())
    action = resolution.next_action()
    assert isinstance(action, SendQuery)
    assert action.server.ip in ROOTS and action.transport is Transport.UDP
    assert 0 < action.timeout_s <= Limits().max_timeout_s
    assert decode(action.wire).question == Question(".", RRType.NS)


def test_resolution_refuses_a_report_for_an_unknown_token() -> None:
    """Reports must name the pending query's token."""
    resolution = new_resolution(Question("www.amazon.com.", RRType.A), lab_state())
    action = resolution.next_action()
    assert isinstance(action, SendQuery)
    with pytest.raises(ValueError):
        resolution.on_timeout(action.token + 1, 1_000.1)


def test_resolution_answered_from_cache_finishes_at_once() -> None:
    """With the answer cached, the first action is Finished and nothing is sent."""
    state = lab_state()
    state.cache.store_rrset(
        parse_records("www.amazon.com. 60 IN A 176.32.103.205"), Rank.AUTHORITATIVE_ANSWER
    )
    action = new_resolution(Question("www.amazon.com.", RRType.A), state).next_action()
    assert isinstance(action, Finished)
    assert action.outcome.rcode == Rcode.NOERROR and action.outcome.queries_sent == 0


def test_resolution_timeouts_reported_by_hand_end_in_servfail() -> None:
    """A driver that reports only timeouts gets SERVFAIL once the time budget is spent."""
    resolution = new_resolution(Question("www.amazon.com.", RRType.A), lab_state())
    now, steps = 1_000.0, 0
    action = resolution.next_action()
    while isinstance(action, SendQuery):
        steps += 1
        assert steps < 100
        now += action.timeout_s
        resolution.on_timeout(action.token, now)
        action = resolution.next_action()
    assert action.outcome.rcode == Rcode.SERVFAIL
    assert now - 1_000.0 <= Limits().resolution_budget_s + 0.01


def wide_delegation(count: int) -> tuple[Lab, list[str]]:
    """test. delegates victim.test to `count` name servers, each with glue."""
    addresses = [f"127.1.2.{i}" for i in range(1, count + 1)]
    body = f"ns IN A {TEST_ADDRESS}\n" + "".join(
        f"victim IN NS ns{i}.victim.test.\nns{i}.victim IN A {a}\n" for i, a in enumerate(addresses)
    )
    victim = zone("victim.test.", "www IN A 192.0.2.1", ns="ns0")
    servers = {ROOT_ADDRESS: [root_zone("")], TEST_ADDRESS: [zone("test.", body)]}
    servers.update({a: [victim] for a in addresses})
    return world(servers), addresses


def test_engine_many_black_holed_servers_end_within_the_time_budget() -> None:
    """NRDelegationAttack: 20 silent name servers cost at most the 4 s budget, then SERVFAIL."""
    lab_, addresses = wide_delegation(20)
    lab_.network.silent.update(addresses)
    start = lab_.clock.now
    outcome = lab_.resolve("www.victim.test.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL
    assert lab_.clock.now - start <= limits.resolution_budget_s + 0.01
    assert 1 < sum(lab_.network.received[a] for a in addresses) <= limits.max_sends_per_name


def test_engine_many_refusing_servers_are_capped_by_sends_per_name() -> None:
    """Servers that fail at once (connection refused) are tried at most max_sends_per_name times."""
    lab_, addresses = wide_delegation(40)
    lab_.network.authorities = {
        a: auth for a, auth in lab_.network.authorities.items() if a not in addresses
    }
    outcome = lab_.resolve("www.victim.test.")
    limits = Limits()
    assert outcome.rcode == Rcode.SERVFAIL
    assert sum(lab_.network.received[a] for a in addresses) == limits.max_sends_per_name
    assert all(lab_.network.received[a] <= limits.max_tries_per_server for a in addresses)
