"""Prefetch (Unbound `prefetch`): entries asked for in the last 10% of their TTL are refreshed.

www.networkutopia.com A has TTL 3600 in the lab, so its last tenth starts 3240 s after
it was cached. The lab runs in memory with a fake clock.
"""

from __future__ import annotations

import asyncio

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.events import Outcome
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.network import Transport
from resolver.engine.settings import CacheSettings
from resolver.server.answer_cache import AnswerCache
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.service.prefetch import PREFETCH_FRACTION, rrsets_due
from resolver.service.resolver_service import PREFETCH_RETRY_S, ResolverService
from tests.support.labnet import FakeClock, LabNetwork, lab_service

TIMED_OUT = Failure(FailureKind.NO_REACHABLE_AUTHORITY, "all servers timed out")

WWW = Question("www.networkutopia.com.", RRType.A)
IBM = Question("www.ibm.com.", RRType.A)
NETWORKUTOPIA_NS = "127.212.212.1"
PREFETCH = CacheSettings(prefetch=True)


def setup(settings: CacheSettings = PREFETCH) -> tuple[FakeClock, LabNetwork, ResolverService]:
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network, cache_settings=settings)
    service.defer_background = True
    return clock, network, service


def test_prefetch_is_off_by_default() -> None:
    """Without --prefetch a hit in the last tenth of the TTL starts nothing."""
    clock, _network, service = setup(CacheSettings())
    asyncio.run(service.resolve(WWW))
    clock.advance(3500)
    asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 0 and service.prefetches == 0


def test_prefetch_refreshes_an_entry_hit_in_the_last_tenth_of_its_ttl() -> None:
    """A hit with 100 s of 3600 left refreshes the RRset: it lives on past its old expiry."""
    clock, network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3500)
    before = network.received[NETWORKUTOPIA_NS]
    hit = asyncio.run(service.resolve(WWW))
    assert hit.queries_sent == 0 and hit.answer[0].ttl == 100  # the client gets the cached copy
    assert asyncio.run(service.run_background()) == 1
    assert network.received[NETWORKUTOPIA_NS] == before + 1
    assert service.prefetches == 1
    clock.advance(200)  # past the old expiry
    later = asyncio.run(service.resolve(WWW))
    assert later.queries_sent == 0 and later.answer[0].ttl == 3400


def test_prefetch_does_not_refresh_before_the_last_tenth() -> None:
    """A hit with 600 of 3600 s left (more than 10%) is just a hit."""
    clock, _network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3000)
    asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 0


def test_prefetch_starts_one_refresh_per_question() -> None:
    """Several hits before the refresh has run schedule it once."""
    clock, _network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3500)
    for _ in range(3):
        asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 1 and service.prefetches == 1


def test_prefetch_failure_keeps_serving_the_cached_answer() -> None:
    """A refresh that fails leaves the cached data answering, not a remembered SERVFAIL."""
    clock, network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3500)
    network.silent.add(NETWORKUTOPIA_NS)
    asyncio.run(service.resolve(WWW))
    asyncio.run(service.run_background())
    after = asyncio.run(service.resolve(WWW))
    assert after.rcode == Rcode.NOERROR and after.queries_sent == 0
    assert after.answer[0].ttl < 100


def test_prefetch_refreshes_a_whole_cname_chain() -> None:
    """For www.ibm.com the CNAME and the target's A are both fetched again."""
    clock, network, service = setup()
    asyncio.run(service.resolve(IBM))
    clock.advance(3500)
    asyncio.run(service.resolve(IBM))
    before = sum(network.received.values())
    asyncio.run(service.run_background())
    assert sum(network.received.values()) - before == 2  # ns.ibm.com and ns.backup2.ibm.com
    clock.advance(200)
    later = asyncio.run(service.resolve(IBM))
    assert later.queries_sent == 0 and all(rr.ttl > 3300 for rr in later.answer)


def test_prefetch_runs_as_a_background_task_in_a_live_server() -> None:
    """Without deferral the refresh runs as a task of the serving loop."""
    clock, network, service = setup()
    service.defer_background = False

    async def main() -> int:
        await service.resolve(WWW)
        clock.advance(3500)
        await service.resolve(WWW)
        return await service.run_background()

    before = network.received[NETWORKUTOPIA_NS]
    assert asyncio.run(main()) == 1
    assert network.received[NETWORKUTOPIA_NS] == before + 2  # the first lookup and the refresh


def test_prefetch_due_only_for_answers_wholly_from_the_cache() -> None:
    """Answers that needed upstream queries, stale answers and failures are never due."""
    clock = FakeClock()
    cache = RecordCache(CacheSettings(), timer=clock)
    records = parse_records("a.example. 100 IN A 192.0.2.1")
    cache.store_rrset(records, Rank.AUTHORITATIVE_ANSWER)
    clock.advance(95)
    answer = tuple(rr.with_ttl(5) for rr in records)
    key = ("a.example.", RRType.A, 1)
    assert rrsets_due(cache, Outcome(rcode=Rcode.NOERROR, answer=answer)) == (key,)
    assert rrsets_due(cache, Outcome(rcode=Rcode.NOERROR, answer=answer, queries_sent=1)) == ()
    assert rrsets_due(cache, Outcome(rcode=Rcode.NOERROR, answer=answer, stale=True)) == ()
    assert rrsets_due(cache, Outcome(rcode=Rcode.SERVFAIL)) == ()


def test_prefetch_cache_info_tells_the_original_ttl() -> None:
    """rrset_info gives the stored TTL (after clamps) next to what is left."""
    clock = FakeClock()
    cache = RecordCache(CacheSettings(max_ttl_s=500), timer=clock)
    cache.store_rrset(parse_records("a.example. 3600 IN A 192.0.2.1"), Rank.ANSWER)
    clock.advance(100)
    info = cache.rrset_info("a.example.", RRType.A)
    assert info is not None
    assert (info.original_ttl, info.ttl_left, info.stored_at) == (500, 400, 1000.0)
    assert cache.rrset_info("b.example.", RRType.A) is None


def test_prefetch_cache_view_hides_only_the_refreshed_rrsets() -> None:
    """The refresh view misses the hidden RRset, sees the rest, and writes through."""
    clock = FakeClock()
    cache = RecordCache(CacheSettings(), timer=clock)
    cache.store_rrset(parse_records("a.example. 100 IN A 192.0.2.1"), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(parse_records("b.example. 100 IN A 192.0.2.2"), Rank.AUTHORITATIVE_ANSWER)
    view = cache.hiding([("a.example.", RRType.A, 1)])
    assert view.rrset("a.example.", RRType.A) is None
    assert view.rrset("b.example.", RRType.A) is not None
    assert cache.rrset("a.example.", RRType.A) is not None
    # A refresh replaces the entry even with a lower rank, and the real cache sees it.
    assert view.store_rrset(parse_records("a.example. 300 IN A 192.0.2.9"), Rank.ANSWER)
    fresh = cache.rrset("a.example.", RRType.A)
    assert fresh is not None and fresh[0].address == "192.0.2.9"
    view.store_failure(Question("a.example.", RRType.A), TIMED_OUT)
    assert cache.failure(Question("a.example.", RRType.A)) is None


def test_prefetch_after_a_failure_waits_before_trying_again() -> None:
    """A failed refresh is not retried at once (the authority is failing), but later it is."""
    clock, network, service = setup()
    asyncio.run(service.resolve(WWW))
    clock.advance(3400)
    network.silent.add(NETWORKUTOPIA_NS)
    asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 1  # it failed
    asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 0  # holding back
    network.silent.clear()
    clock.advance(PREFETCH_RETRY_S)
    asyncio.run(service.resolve(WWW))
    assert asyncio.run(service.run_background()) == 1
    clock.advance(300)  # past the old expiry
    assert asyncio.run(service.resolve(WWW)).queries_sent == 0


def test_prefetch_answer_in_its_window_is_not_kept_as_reply_bytes() -> None:
    """The handler keeps no reply bytes of an answer due for refresh: the next one is fresh."""
    clock, _network, service = setup()
    # As resolver.daemon.app builds it: with prefetch on, reply bytes stop in their last tenth.
    handler = QueryHandler(service, answers=AnswerCache(clock=clock,
                                                        refresh_fraction=PREFETCH_FRACTION))
    client = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
    wire = make_query(WWW, query_id=9, recursion_desired=True)
    asyncio.run(handler.handle(wire, client))
    clock.advance(3500)
    due = decode(asyncio.run(handler.handle(wire, client)) or b"")
    assert due.answer[0].ttl == 100
    asyncio.run(service.run_background())
    fresh = decode(asyncio.run(handler.handle(wire, client)) or b"")
    assert fresh.answer[0].ttl == 3600


def test_prefetch_also_refreshes_a_delegation_in_its_last_tenth() -> None:
    """When the zone cut's NS RRset is due as well, it is fetched again from the parent."""
    clock = FakeClock()
    cache = RecordCache(CacheSettings(), timer=clock)
    cache.store_rrset(parse_records("example. 100 IN NS ns.example."), Rank.AUTHORITY)
    cache.store_rrset(parse_records("ns.example. 1000 IN A 192.0.2.53"), Rank.ADDITIONAL)
    cache.store_rrset(parse_records("a.example. 100 IN A 192.0.2.1"), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(95)
    answer = cache.rrset("a.example.", RRType.A) or ()
    due = rrsets_due(cache, Outcome(rcode=Rcode.NOERROR, answer=answer))
    assert due == (("a.example.", RRType.A, 1), ("example.", RRType.NS, 1))
