"""Serve-stale (RFC 8767): expired data answers when resolution fails or is too slow.

The lab runs in memory with a fake clock; `silent` servers never answer, which is how
an authoritative outage looks to the resolver.
"""

from __future__ import annotations

import asyncio

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.network import ServerAddress, Transport
from resolver.engine.settings import CacheSettings
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.service.resolver_service import ResolverService
from resolver.service.stale import stale_answer
from tests.support.labnet import FakeClock, LabNetwork, lab_service

TIMED_OUT = Failure(FailureKind.NO_REACHABLE_AUTHORITY, "all servers timed out")

WWW = Question("www.networkutopia.com.", RRType.A)
NOTHERE = Question("nothere.networkutopia.com.", RRType.A)
IBM = Question("www.ibm.com.", RRType.A)
NETWORKUTOPIA_NS = "127.212.212.1"  # dns1.networkutopia.com
IBM_SERVERS = ("127.42.38.10", "127.42.60.53")  # ns.ibm.com, ns.backup2.ibm.com
STALE = CacheSettings(stale_answer_enable=True)


def setup(
    settings: CacheSettings = STALE, network_type: type[LabNetwork] = LabNetwork
) -> tuple[FakeClock, LabNetwork, ResolverService]:
    clock = FakeClock()
    network = network_type(clock)
    return clock, network, lab_service(clock, network, cache_settings=settings)


class StuckNetwork(LabNetwork):
    """The lab, but a chosen server holds every query until released (a slow authority)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.slow: set[str] = set()
        self.release: asyncio.Event | None = None

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        if server.ip in self.slow and self.release is not None:
            await self.release.wait()
        return await super().exchange(query, server, transport, timeout_s)


def test_serve_stale_is_off_by_default() -> None:
    """Without --stale-answer-enable an outage after expiry is SERVFAIL."""
    clock, network, service = setup(CacheSettings())
    asyncio.run(service.resolve(WWW))
    clock.advance(3601)
    network.silent.add(NETWORKUTOPIA_NS)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.rcode == Rcode.SERVFAIL and not outcome.stale


def test_serve_stale_answers_expired_data_when_resolution_fails() -> None:
    """Expired data is served with stale-answer-ttl when the authority is unreachable."""
    clock, network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3601)
    network.silent.add(NETWORKUTOPIA_NS)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.rcode == Rcode.NOERROR and outcome.stale
    assert [(rr.address, rr.ttl) for rr in outcome.answer] == [("212.212.212.2", 30)]
    assert outcome.reason.startswith("stale answer: resolution failed")
    assert service.stale_answers == 1


def test_serve_stale_uses_the_configured_stale_ttl() -> None:
    """stale-answer-ttl sets the TTL of stale records."""
    clock, network, service = setup(CacheSettings(stale_answer_enable=True, stale_answer_ttl_s=7))
    asyncio.run(service.resolve(WWW))
    clock.advance(4000)
    network.silent.add(NETWORKUTOPIA_NS)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.stale and {rr.ttl for rr in outcome.answer} == {7}


def test_serve_stale_keeps_data_no_longer_than_max_stale_ttl() -> None:
    """Past expiry + max-stale-ttl the data is gone: an outage is SERVFAIL again."""
    clock, network, service = setup(CacheSettings(stale_answer_enable=True, max_stale_ttl_s=100))
    asyncio.run(service.resolve(WWW))
    clock.advance(3600 + 101)
    network.silent.add(NETWORKUTOPIA_NS)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.rcode == Rcode.SERVFAIL and not outcome.stale


def test_serve_stale_prefers_a_fresh_answer() -> None:
    """When the authority answers, expired data is replaced and the fresh answer served."""
    clock, network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3601)
    before = network.received[NETWORKUTOPIA_NS]
    outcome = asyncio.run(service.resolve(WWW))
    assert not outcome.stale and outcome.answer[0].ttl == 3600
    assert network.received[NETWORKUTOPIA_NS] == before + 1


def test_serve_stale_live_data_is_answered_normally() -> None:
    """Unexpired data is a plain cache hit, with its counted-down TTL."""
    clock, _network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(100)
    outcome = asyncio.run(service.resolve(WWW))
    assert not outcome.stale and outcome.queries_sent == 0 and outcome.answer[0].ttl == 3500


def test_serve_stale_serves_an_expired_negative_answer() -> None:
    """An expired NXDOMAIN is served stale with its SOA at stale-answer-ttl."""
    clock, network, service = setup()
    assert asyncio.run(service.resolve(NOTHERE)).rcode == Rcode.NXDOMAIN
    clock.advance(301)  # the SOA MINIMUM of networkutopia.com is 300
    network.silent.add(NETWORKUTOPIA_NS)
    outcome = asyncio.run(service.resolve(NOTHERE))
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.stale
    assert [(rr.rtype, rr.ttl) for rr in outcome.authority] == [(RRType.SOA, 30)]


def test_serve_stale_follows_a_cname_chain_through_expired_data() -> None:
    """www.ibm.com CNAME and its target's A are both served stale."""
    clock, network, service = setup()
    assert asyncio.run(service.resolve(IBM)).rcode == Rcode.NOERROR
    clock.advance(3601)
    network.silent.update(IBM_SERVERS)
    outcome = asyncio.run(service.resolve(IBM))
    assert outcome.stale
    assert [(RRType(rr.rtype).name, rr.ttl) for rr in outcome.answer] == [("CNAME", 30), ("A", 30)]


def test_serve_stale_client_timeout_zero_answers_at_once_and_refreshes() -> None:
    """With stale-answer-client-timeout 0 the stale answer comes first, the refresh after."""
    clock, network, service = setup(
        CacheSettings(stale_answer_enable=True, stale_answer_client_timeout_ms=0)
    )
    service.defer_background = True
    asyncio.run(service.resolve(WWW))
    clock.advance(3601)
    before = network.received[NETWORKUTOPIA_NS]
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.stale and outcome.queries_sent == 0
    assert network.received[NETWORKUTOPIA_NS] == before  # nothing asked yet
    assert asyncio.run(service.run_background()) == 1
    assert network.received[NETWORKUTOPIA_NS] == before + 1
    fresh = asyncio.run(service.resolve(WWW))
    assert not fresh.stale and fresh.queries_sent == 0 and fresh.answer[0].ttl == 3600


def test_serve_stale_after_the_client_timeout_while_resolution_goes_on() -> None:
    """A slow authority: stale data after the client timeout; the late answer is still cached."""
    clock, network, service = setup(
        CacheSettings(stale_answer_enable=True, stale_answer_client_timeout_ms=20),
        StuckNetwork,
    )
    assert isinstance(network, StuckNetwork)
    asyncio.run(service.resolve(WWW))
    clock.advance(3601)

    async def main() -> tuple[bool, int, int]:
        network.slow = {NETWORKUTOPIA_NS}
        network.release = asyncio.Event()
        outcome = await service.resolve(WWW)
        network.release.set()
        await service.run_background()
        fresh = await service.resolve(WWW)
        return outcome.stale, fresh.answer[0].ttl, fresh.queries_sent

    stale, fresh_ttl, fresh_queries = asyncio.run(main())
    assert stale and fresh_ttl == 3600 and fresh_queries == 0


def test_serve_stale_reply_carries_extended_error_stale_answer() -> None:
    """Through the handler a stale reply has EDE 3 "Stale Answer" (RFC 8914 §5.2)."""
    clock, network, service = setup()
    handler = QueryHandler(service)
    client = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
    wire = make_query(WWW, query_id=7, recursion_desired=True)
    asyncio.run(handler.handle(wire, client))
    clock.advance(3601)
    network.silent.add(NETWORKUTOPIA_NS)
    reply = asyncio.run(handler.handle(wire, client))
    assert reply is not None
    message = decode(reply)
    assert message.rcode == Rcode.NOERROR and message.answer[0].ttl == 30
    assert message.edns is not None and (15, b"\x00\x03") in message.edns.options


def test_serve_stale_answer_is_none_while_data_is_live() -> None:
    """stale_answer gives nothing when the normal lookup would answer."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.1"), Rank.AUTHORITATIVE_ANSWER)
    question = Question("a.example.", RRType.A)
    assert stale_answer(cache, question, ttl=30, max_chain=11) is None
    clock.advance(61)
    found = stale_answer(cache, question, ttl=30, max_chain=11)
    assert found is not None and found.answer[0].ttl == 30


def test_serve_stale_cache_keeps_expired_data_only_when_enabled() -> None:
    """Expired RRsets linger for max-stale-ttl with serve-stale on, and never without."""
    for enabled in (False, True):
        clock = FakeClock()
        cache = RecordCache(CacheSettings(stale_answer_enable=enabled), timer=clock)
        cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.1"), Rank.ANSWER)
        clock.advance(61)
        assert cache.rrset("a.example.", RRType.A) is None
        kept = cache.stale_rrset("a.example.", RRType.A, ttl=30)
        assert (kept is not None) is enabled
        assert len(cache) == (1 if enabled else 0)


def test_serve_stale_cache_lets_any_rank_replace_stale_data() -> None:
    """Stale data defends no rank: a lower-ranked fresh RRset replaces it."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.1"), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(61)
    assert cache.rank_of("a.example.", RRType.A) is None
    assert cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.2"), Rank.ADDITIONAL)
    live = cache.rrset("a.example.", RRType.A)
    assert live is not None and live[0].address == "192.0.2.2"


def test_serve_stale_cache_does_not_keep_failures_longer() -> None:
    """Remembered failures expire on time even when data is kept for serve-stale."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    cache.store_failure(WWW, TIMED_OUT)
    assert cache.failure(WWW) == TIMED_OUT
    clock.advance(1.5)
    assert cache.failure(WWW) is None


def test_serve_stale_expired_nodata_does_not_hide_a_live_nxdomain_above() -> None:
    """A kept, expired NODATA must not shadow a live NXDOMAIN of an ancestor (RFC 8020)."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    soa = parse_records("example. 3600 IN SOA ns.example. h.example. 1 7200 900 1209600 60")[0]
    cache.store_negative(Question("a.b.example.", RRType.A), Rcode.NOERROR, soa.with_ttl(10))
    clock.advance(11)
    cache.store_negative(Question("b.example.", RRType.A), Rcode.NXDOMAIN, soa)
    found = cache.negative(Question("a.b.example.", RRType.A))
    assert found is not None and found.rcode == Rcode.NXDOMAIN


def test_serve_stale_dump_marks_stale_entries() -> None:
    """The operator's dump shows kept, expired entries with TTL 0 and a stale note."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.1"), Rank.ANSWER)
    clock.advance(90)
    (line,) = cache.dump()
    assert line.startswith("a.example.\t0\tIN\tA\t192.0.2.1") and "stale (expired 30 s ago)" in line


def test_serve_stale_success_forgets_the_expired_data_of_the_question() -> None:
    """After a successful refresh the old expired data of that question is not served again."""
    clock = FakeClock()
    cache = RecordCache(STALE, timer=clock)
    cache.store_rrset(parse_records("a.example. 60 IN A 192.0.2.1"), Rank.ANSWER)
    cache.store_rrset(parse_records("a.example. 600 IN TXT live"), Rank.ANSWER)
    clock.advance(61)
    assert cache.forget_stale(Question("a.example.", RRType.A)) == 1
    assert cache.stale_rrset("a.example.", RRType.A, ttl=30) is None
    assert cache.rrset("a.example.", RRType.TXT) is not None
    assert cache.forget_stale(Question("a.example.", RRType.TXT)) == 0  # live data stays
