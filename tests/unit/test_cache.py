"""The record cache: TTLs, clamps, trust ranks, negative answers and failures.

RFC 1035 §3.2.1 and RFC 2181 §8 (TTL), RFC 2181 §5.4.1 (ranks), RFC 2308 §5 (negative
caching), RFC 8020 (nothing below NXDOMAIN), RFC 9520 (remembered failures).
"""

from __future__ import annotations

from typing import Any

import pytest

from resolver.dns.wire import Question, Rcode, Record, RRType, parse_record, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.settings import CacheSettings
from tests.support.labnet import FakeClock

TIMED_OUT = Failure(FailureKind.NO_REACHABLE_AUTHORITY, "all servers timed out")

SOA = "example. {ttl} IN SOA ns.example. host.example. 1 7200 900 1209600 {minimum}"


def make_cache(clock: FakeClock, **settings: Any) -> RecordCache:
    return RecordCache(CacheSettings(**settings), timer=clock)


def a_rrset(name: str = "www.example.", ttl: int = 300, *addresses: str) -> list[Record]:
    return parse_records(
        "\n".join(f"{name} {ttl} IN A {a}" for a in (addresses or ("192.0.2.1", "192.0.2.2")))
    )


def soa(ttl: int = 3600, minimum: int = 300) -> Record:
    return parse_record(SOA.format(ttl=ttl, minimum=minimum))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- RRsets and TTLs ------------------------------------------------------------------


def test_cache_returns_a_stored_rrset_with_its_ttl(clock: FakeClock) -> None:
    """A stored RRset comes back whole, with the TTL it was stored with."""
    cache = make_cache(clock)
    assert cache.store_rrset(a_rrset(), Rank.AUTHORITATIVE_ANSWER)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None
    assert sorted(rr.address for rr in got) == ["192.0.2.1", "192.0.2.2"]
    assert {rr.ttl for rr in got} == {300}


def test_cache_ttl_counts_down_with_the_clock(clock: FakeClock) -> None:
    """TTLs handed out drop by the time spent in the cache, never rise (RFC 1035 §3.2.1)."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(ttl=300), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(100)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {200}
    clock.advance(0.5)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {199}


def test_cache_entry_vanishes_at_expiry(clock: FakeClock) -> None:
    """An RRset is gone once its TTL has run out."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(ttl=60), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(59)
    assert cache.rrset("www.example.", RRType.A) is not None
    clock.advance(1)
    assert cache.rrset("www.example.", RRType.A) is None


def test_cache_uses_the_smallest_ttl_of_an_rrset(clock: FakeClock) -> None:
    """An RRset has one TTL (RFC 2181 §5.2): the smallest of its records."""
    cache = make_cache(clock)
    records = parse_records("www.example. 300 IN A 192.0.2.1\nwww.example. 30 IN A 192.0.2.2")
    cache.store_rrset(records, Rank.AUTHORITATIVE_ANSWER)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {30}


def test_cache_does_not_store_ttl_zero(clock: FakeClock) -> None:
    """TTL 0 data is used once and never cached (RFC 1035 §3.2.1)."""
    cache = make_cache(clock, min_ttl_s=60)
    assert not cache.store_rrset(a_rrset(ttl=0), Rank.AUTHORITATIVE_ANSWER)
    assert cache.rrset("www.example.", RRType.A) is None
    assert len(cache) == 0


def test_cache_refuses_an_empty_rrset(clock: FakeClock) -> None:
    """Storing nothing is refused."""
    assert not make_cache(clock).store_rrset([], Rank.AUTHORITATIVE_ANSWER)


def test_cache_clamps_ttl_to_the_maximum(clock: FakeClock) -> None:
    """TTLs above cache-max-ttl are lowered to it."""
    cache = make_cache(clock, max_ttl_s=3600)
    cache.store_rrset(a_rrset(ttl=172800), Rank.AUTHORITATIVE_ANSWER)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {3600}
    clock.advance(3600)
    assert cache.rrset("www.example.", RRType.A) is None


def test_cache_clamps_ttl_to_the_minimum(clock: FakeClock) -> None:
    """TTLs below cache-min-ttl are raised to it (but TTL 0 stays uncached)."""
    cache = make_cache(clock, min_ttl_s=60)
    cache.store_rrset(a_rrset(ttl=5), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(30)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {30}


def test_cache_removes_duplicate_records_of_an_rrset(clock: FakeClock) -> None:
    """An RRset is a set: repeated records are kept once (RFC 2181 §5)."""
    cache = make_cache(clock)
    records = a_rrset("www.example.", 300, "192.0.2.1", "192.0.2.1", "192.0.2.2")
    cache.store_rrset(records, Rank.AUTHORITATIVE_ANSWER)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and len(got) == 2


def test_cache_keys_by_type_and_class(clock: FakeClock) -> None:
    """An A RRset answers neither AAAA nor another class."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(), Rank.AUTHORITATIVE_ANSWER)
    assert cache.rrset("www.example.", RRType.AAAA) is None
    assert cache.rrset("www.example.", RRType.A, 3) is None


# --- trust ranks (RFC 2181 §5.4.1) -----------------------------------------------------


def test_cache_lower_rank_never_replaces_live_higher_rank(clock: FakeClock) -> None:
    """Glue cannot overwrite an authoritative answer while it lives."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(), Rank.AUTHORITATIVE_ANSWER)
    poison = a_rrset("www.example.", 300, "6.6.6.6")
    assert not cache.store_rrset(poison, Rank.ADDITIONAL)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and "6.6.6.6" not in {rr.address for rr in got}
    assert cache.rank_of("www.example.", RRType.A) is Rank.AUTHORITATIVE_ANSWER


def test_cache_higher_rank_replaces_lower_rank(clock: FakeClock) -> None:
    """An authoritative answer replaces glue for the same RRset."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset("ns.example.", 300, "192.0.2.9"), Rank.ADDITIONAL)
    assert cache.store_rrset(a_rrset("ns.example.", 300, "192.0.2.53"), Rank.AUTHORITATIVE_ANSWER)
    got = cache.rrset("ns.example.", RRType.A)
    assert got is not None and [rr.address for rr in got] == ["192.0.2.53"]


def test_cache_lower_rank_may_replace_expired_higher_rank(clock: FakeClock) -> None:
    """Rank protects live data only; after expiry anything may be stored."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(ttl=10), Rank.AUTHORITATIVE_ANSWER)
    clock.advance(10)
    assert cache.store_rrset(a_rrset("www.example.", 300, "192.0.2.7"), Rank.ADDITIONAL)
    assert cache.rank_of("www.example.", RRType.A) is Rank.ADDITIONAL


def test_cache_same_rrset_again_within_the_second_keeps_the_entry(clock: FakeClock) -> None:
    """The same RRset at the same rank stored again within a second changes nothing, and
    leaves no second item in the expiry heap; a second later it refreshes the TTL."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(ttl=300), Rank.ADDITIONAL)
    first = cache._entries.get(("rr", "www.example.", RRType.A, 1))
    clock.advance(0.4)
    assert cache.store_rrset(a_rrset(ttl=300), Rank.ADDITIONAL)
    assert cache._entries.get(("rr", "www.example.", RRType.A, 1)) is first
    assert cache._entries.heap_length == 1
    clock.advance(1.0)
    cache.store_rrset(a_rrset(ttl=300), Rank.ADDITIONAL)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and {rr.ttl for rr in got} == {300}  # refreshed


def test_cache_same_rrset_with_other_data_or_rank_replaces_the_entry(clock: FakeClock) -> None:
    """Within the same second, a changed record set or a higher rank is stored."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset(ttl=300), Rank.ADDITIONAL)
    cache.store_rrset(a_rrset("www.example.", 300, "192.0.2.9"), Rank.ADDITIONAL)
    got = cache.rrset("www.example.", RRType.A)
    assert got is not None and [rr.address for rr in got] == ["192.0.2.9"]
    cache.store_rrset(a_rrset("www.example.", 300, "192.0.2.9"), Rank.AUTHORITATIVE_ANSWER)
    assert cache.rank_of("www.example.", RRType.A) is Rank.AUTHORITATIVE_ANSWER


def test_cache_ranks_are_ordered_as_in_rfc2181() -> None:
    """Additional < authority < answer < authoritative authority < authoritative answer."""
    assert (
        Rank.ADDITIONAL
        < Rank.AUTHORITY
        < Rank.ANSWER
        < Rank.AUTHORITATIVE_AUTHORITY
        < Rank.AUTHORITATIVE_ANSWER
    )


# --- negative answers (RFC 2308, RFC 8020) ----------------------------------------------


def test_cache_negative_ttl_is_min_of_soa_ttl_and_minimum(clock: FakeClock) -> None:
    """A negative answer lives min(SOA TTL, SOA MINIMUM) seconds (RFC 2308 §5)."""
    cache = make_cache(clock)
    question = Question("nothere.example.", RRType.A)
    assert cache.store_negative(question, Rcode.NXDOMAIN, soa(ttl=3600, minimum=300))
    found = cache.negative(question)
    assert found is not None and found.soa is not None and found.soa.ttl == 300
    clock.advance(300)
    assert cache.negative(question) is None


def test_cache_negative_ttl_uses_soa_ttl_when_smaller(clock: FakeClock) -> None:
    """When the SOA's own TTL is the smaller, it bounds the negative entry."""
    cache = make_cache(clock)
    question = Question("nothere.example.", RRType.A)
    cache.store_negative(question, Rcode.NXDOMAIN, soa(ttl=60, minimum=300))
    clock.advance(59)
    found = cache.negative(question)
    assert found is not None and found.soa is not None and found.soa.ttl == 1
    clock.advance(1)
    assert cache.negative(question) is None


def test_cache_negative_ttl_is_clamped_to_the_negative_maximum(clock: FakeClock) -> None:
    """cache-max-negative-ttl caps negative entries."""
    cache = make_cache(clock, max_negative_ttl_s=60)
    question = Question("nothere.example.", RRType.A)
    cache.store_negative(question, Rcode.NXDOMAIN, soa(ttl=86400, minimum=86400))
    found = cache.negative(question)
    assert found is not None and found.soa is not None and found.soa.ttl == 60


def test_cache_negative_ttl_is_raised_to_the_negative_minimum(clock: FakeClock) -> None:
    """cache-min-negative-ttl raises short negative entries."""
    cache = make_cache(clock, min_negative_ttl_s=30)
    question = Question("nothere.example.", RRType.A)
    cache.store_negative(question, Rcode.NXDOMAIN, soa(ttl=3600, minimum=5))
    clock.advance(20)
    assert cache.negative(question) is not None


def test_cache_negative_answer_without_soa_is_not_stored(clock: FakeClock) -> None:
    """Without an SOA there is no negative TTL, so nothing is cached (RFC 2308 §5)."""
    cache = make_cache(clock)
    question = Question("nothere.example.", RRType.A)
    assert not cache.store_negative(question, Rcode.NXDOMAIN, None)
    assert cache.negative(question) is None


def test_cache_nxdomain_covers_every_name_below(clock: FakeClock) -> None:
    """An NXDOMAIN also denies every descendant of the name (RFC 8020 §2)."""
    cache = make_cache(clock)
    cache.store_negative(Question("nothere.example.", RRType.A), Rcode.NXDOMAIN, soa())
    below = cache.negative(Question("a.b.nothere.example.", RRType.AAAA))
    assert below is not None and below.rcode == Rcode.NXDOMAIN and below.name == "nothere.example."
    assert cache.negative(Question("example.", RRType.A)) is None
    assert cache.negative(Question("sibling.example.", RRType.A)) is None


def test_cache_nxdomain_covers_every_type(clock: FakeClock) -> None:
    """NXDOMAIN is about the name, so it answers for any type."""
    cache = make_cache(clock)
    cache.store_negative(Question("nothere.example.", RRType.A), Rcode.NXDOMAIN, soa())
    found = cache.negative(Question("nothere.example.", RRType.MX))
    assert found is not None and found.rcode == Rcode.NXDOMAIN


def test_cache_nodata_is_per_type_and_not_inherited(clock: FakeClock) -> None:
    """NODATA denies one type at one name only (RFC 2308 §2.2)."""
    cache = make_cache(clock)
    cache.store_negative(Question("www.example.", RRType.MX), Rcode.NOERROR, soa())
    found = cache.negative(Question("www.example.", RRType.MX))
    assert found is not None and found.rcode == Rcode.NOERROR
    assert cache.negative(Question("www.example.", RRType.A)) is None
    assert cache.negative(Question("a.www.example.", RRType.MX)) is None


def test_cache_negative_ttl_never_grows_when_another_name_of_the_zone_is_denied(
        clock: FakeClock) -> None:
    """A cached NXDOMAIN counts down from when it was stored: a later negative answer of the
    same zone with the same SOA does not reset it (the SOA stays as cached, RFC 2181 §5.4.1);
    the later one lives no longer than the SOA already cached."""
    cache = make_cache(clock)
    first = Question("nx1.example.", RRType.A)
    cache.store_negative(first, Rcode.NXDOMAIN, soa(ttl=86400, minimum=3600))
    clock.advance(14)
    later = Question("nx2.example.", RRType.A)
    cache.store_negative(later, Rcode.NXDOMAIN, soa(ttl=86400, minimum=3600))
    clock.advance(1)
    for question in (first, later):
        found = cache.negative(question)
        assert found is not None and found.soa is not None
        assert found.soa.ttl == 3600 - 15, question
    nodata = Question("www.example.", RRType.MX)
    cache.store_negative(nodata, Rcode.NOERROR, soa(ttl=86400, minimum=3600))
    found = cache.negative(nodata)
    assert found is not None and found.soa is not None and found.soa.ttl == 3600 - 15
    clock.advance(3600 - 15)
    assert cache.negative(first) is None
    assert cache.negative(later) is None
    assert cache.negative(nodata) is None


def test_cache_negative_answer_with_a_new_soa_serial_shows_the_new_soa_in_the_zone(
        clock: FakeClock) -> None:
    """A negative answer whose SOA differs (new serial) replaces the zone's cached SOA, and
    earlier negative entries of the zone show it (testbound ttl_msg)."""
    cache = make_cache(clock)
    first = Question("nx1.example.", RRType.A)
    cache.store_negative(first, Rcode.NXDOMAIN, soa(ttl=3600, minimum=300))
    clock.advance(10)
    newer = parse_record("example. 3600 IN SOA ns.example. host.example. 2 7200 900 1209600 300")
    cache.store_negative(Question("nx2.example.", RRType.A), Rcode.NXDOMAIN, newer)
    found = cache.negative(first)
    assert found is not None and found.soa is not None
    assert found.soa.rdata_key == newer.rdata_key


# --- failures (RFC 9520) ----------------------------------------------------------------


def test_cache_failure_is_remembered_for_failure_ttl(clock: FakeClock) -> None:
    """A failed resolution is remembered at least one second, then forgotten (RFC 9520 §3.2)."""
    cache = make_cache(clock, failure_ttl_s=1)
    question = Question("broken.example.", RRType.A)
    cache.store_failure(question, TIMED_OUT)
    clock.advance(0.5)
    assert cache.failure(question) == TIMED_OUT
    assert cache.failure(Question("broken.example.", RRType.AAAA)) is None
    clock.advance(0.5)
    assert cache.failure(question) is None


def test_cache_failure_ttl_zero_remembers_nothing(clock: FakeClock) -> None:
    """With failure_ttl_s=0 failures are not cached."""
    cache = make_cache(clock, failure_ttl_s=0)
    question = Question("broken.example.", RRType.A)
    cache.store_failure(question, "x")
    assert cache.failure(question) is None


# --- delegations ------------------------------------------------------------------------


def test_cache_closest_delegation_is_the_deepest_usable_cut(clock: FakeClock) -> None:
    """The deepest cached NS set at or above the name, with the addresses known for it."""
    cache = make_cache(clock)
    cache.store_rrset(parse_records("com. 3600 IN NS a.gtld.net."), Rank.AUTHORITY)
    cache.store_rrset(parse_records("a.gtld.net. 3600 IN A 192.0.2.30"), Rank.ADDITIONAL)
    cache.store_rrset(parse_records("example.com. 3600 IN NS ns.example.com."), Rank.AUTHORITY)
    cache.store_rrset(parse_records("ns.example.com. 3600 IN A 192.0.2.53"), Rank.ADDITIONAL)
    cut = cache.closest_delegation("www.example.com.")
    assert cut is not None and cut.zone == "example.com." and cut.source == "cache"
    assert [(ns.name, ns.addresses) for ns in cut.servers] == [("ns.example.com.", ("192.0.2.53",))]


def test_cache_closest_delegation_skips_a_cut_without_reachable_servers(clock: FakeClock) -> None:
    """An in-zone NS name without an address cannot be reached: fall back to the parent cut."""
    cache = make_cache(clock)
    cache.store_rrset(parse_records("com. 3600 IN NS a.gtld.net."), Rank.AUTHORITY)
    cache.store_rrset(parse_records("a.gtld.net. 3600 IN A 192.0.2.30"), Rank.ADDITIONAL)
    cache.store_rrset(parse_records("example.com. 3600 IN NS ns.example.com."), Rank.AUTHORITY)
    cut = cache.closest_delegation("www.example.com.")
    assert cut is not None and cut.zone == "com."


def test_cache_closest_delegation_accepts_out_of_zone_ns_without_address(clock: FakeClock) -> None:
    """A glueless NS name outside the zone can be looked up, so the cut is usable."""
    cache = make_cache(clock)
    cache.store_rrset(parse_records("example.org. 3600 IN NS ns.hosting.net."), Rank.AUTHORITY)
    cut = cache.closest_delegation("www.example.org.")
    assert cut is not None and cut.zone == "example.org." and not cut.has_addresses


def test_cache_closest_delegation_is_none_when_nothing_is_cached(clock: FakeClock) -> None:
    """An empty cache knows no zone cut."""
    assert make_cache(clock).closest_delegation("www.example.com.") is None


def test_cache_closest_delegation_forgets_expired_ns(clock: FakeClock) -> None:
    """A delegation expires with its NS RRset."""
    cache = make_cache(clock)
    cache.store_rrset(parse_records("example.org. 60 IN NS ns.hosting.net."), Rank.AUTHORITY)
    clock.advance(60)
    assert cache.closest_delegation("www.example.org.") is None


# --- operator view and bounds -----------------------------------------------------------


def test_cache_flush_removes_one_name(clock: FakeClock) -> None:
    """flush(name) removes the name's entries and leaves the others."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset("www.example."), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(a_rrset("a.www.example."), Rank.AUTHORITATIVE_ANSWER)
    cache.store_negative(Question("www.example.", RRType.MX), Rcode.NOERROR, soa())
    assert cache.flush("www.example.") == 2
    assert cache.rrset("www.example.", RRType.A) is None
    assert cache.negative(Question("www.example.", RRType.MX)) is None
    assert cache.rrset("a.www.example.", RRType.A) is not None


def test_cache_flush_subtree_removes_names_below(clock: FakeClock) -> None:
    """flush(name, subtree=True) also removes every name below it."""
    cache = make_cache(clock)
    for name in ("example.", "www.example.", "a.b.example.", "example.org."):
        cache.store_rrset(a_rrset(name), Rank.AUTHORITATIVE_ANSWER)
    cache.store_negative(Question("nx.example.", RRType.A), Rcode.NXDOMAIN, soa())
    assert cache.flush("example.", subtree=True) == 4
    assert cache.rrset("example.org.", RRType.A) is not None
    assert cache.negative(Question("nx.example.", RRType.A)) is None


def test_cache_flush_by_type_keeps_other_types(clock: FakeClock) -> None:
    """flush(name, rtype=...) removes only that type."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset("www.example."), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(
        parse_records("www.example. 300 IN AAAA 2001:db8::1"), Rank.AUTHORITATIVE_ANSWER
    )
    assert cache.flush("www.example.", rtype=RRType.AAAA) == 1
    assert cache.rrset("www.example.", RRType.A) is not None
    assert cache.rrset("www.example.", RRType.AAAA) is None


def test_cache_dump_lists_live_entries_with_counted_down_ttls(clock: FakeClock) -> None:
    """dump shows every live RRset record and negative entry, TTLs lowered."""
    cache = make_cache(clock)
    cache.store_rrset(a_rrset("www.example.", 300, "192.0.2.1"), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(a_rrset("old.example.", 10, "192.0.2.9"), Rank.AUTHORITATIVE_ANSWER)
    cache.store_negative(Question("nx.example.", RRType.A), Rcode.NXDOMAIN, soa())
    clock.advance(100)
    lines = list(cache.dump())
    assert len(lines) == 2
    assert lines[0].startswith("www.example.\t200\tIN\tA\t192.0.2.1")
    assert "authoritative_answer" in lines[0]
    assert lines[1].startswith("nx.example.\t200\t") and "NXDOMAIN" in lines[1]


def test_cache_is_bounded_with_least_recently_used_eviction(clock: FakeClock) -> None:
    """Beyond max_entries the least recently used entry goes first."""
    cache = make_cache(clock, max_entries=2)
    cache.store_rrset(a_rrset("a.example."), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(a_rrset("b.example."), Rank.AUTHORITATIVE_ANSWER)
    assert cache.rrset("a.example.", RRType.A) is not None  # a is now the most recent
    cache.store_rrset(a_rrset("c.example."), Rank.AUTHORITATIVE_ANSWER)
    assert len(cache) == 2
    assert cache.rrset("b.example.", RRType.A) is None
    assert cache.rrset("a.example.", RRType.A) is not None
    assert cache.rrset("c.example.", RRType.A) is not None
