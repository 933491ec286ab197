"""Prefetch (Unbound `prefetch`): which cached answers to refresh before they expire.

Rule (Unbound's): an answer given from the cache while one of its RRsets is in the last
10% of the TTL it was stored with is refreshed by a background resolution, so a popular
name never drops out of the cache. Only positive answers taken wholly from the cache
qualify; negative answers and stale answers are not prefetched. When the NS RRset of the
zone cut the refresh would start from is in its last tenth too, it is fetched again from
the parent as well, so that a changed delegation is noticed (Unbound iter_prefetch_change).
"""

from __future__ import annotations

from resolver.dns.wire import Rcode, RRType
from resolver.engine.cache import RecordCache
from resolver.engine.events import Outcome

#: Refresh when no more than this share of the original TTL is left (Unbound: 10%).
PREFETCH_FRACTION = 0.1

RRsetKey = tuple[str, int, int]


def rrsets_due(cache: RecordCache, outcome: Outcome) -> tuple[RRsetKey, ...]:
    """The (owner, type, class) of every RRset of the answer, if one is due; else ()."""
    if outcome.rcode != Rcode.NOERROR or outcome.stale or outcome.queries_sent:
        return ()
    keys = tuple(dict.fromkeys((rr.name, rr.rtype, rr.rclass) for rr in outcome.answer))
    if not any(_due(cache, key) for key in keys):
        return ()
    cut = cache.closest_delegation(outcome.answer[0].name)
    if cut is not None and _due(cache, (cut.zone, RRType.NS, 1)):
        keys += ((cut.zone, int(RRType.NS), 1),)
    return keys


def _due(cache: RecordCache, key: RRsetKey) -> bool:
    info = cache.rrset_info(*key)
    return info is not None and info.ttl_left <= info.original_ttl * PREFETCH_FRACTION
