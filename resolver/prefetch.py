"""Prefetch (Unbound `prefetch`): which cached answers to refresh before they expire.

Rule (Unbound's): an answer given from the cache while one of its RRsets is in the last
10% of the TTL it was stored with is refreshed by a background resolution, so a popular
name never drops out of the cache. Only positive answers taken wholly from the cache
qualify; negative answers and stale answers are not prefetched.
"""

from __future__ import annotations

from resolver.cache import RecordCache
from resolver.events import Outcome
from resolver.wire import Rcode

#: Refresh when no more than this share of the original TTL is left (Unbound: 10%).
PREFETCH_FRACTION = 0.1

RRsetKey = tuple[str, int, int]


def rrsets_due(cache: RecordCache, outcome: Outcome) -> tuple[RRsetKey, ...]:
    """The (owner, type, class) of every RRset of the answer, if one is due; else ()."""
    if outcome.rcode != Rcode.NOERROR or outcome.stale or outcome.queries_sent:
        return ()
    keys = tuple(dict.fromkeys((rr.name, rr.rtype, rr.rclass) for rr in outcome.answer))
    for key in keys:
        info = cache.rrset_info(*key)
        if info is not None and info.ttl_left <= info.original_ttl * PREFETCH_FRACTION:
            return keys
    return ()
