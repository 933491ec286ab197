"""Serve-stale answers (RFC 8767): what the cache can still say once its data has expired.

Rules:
- The service asks for a stale answer only when a resolution failed (SERVFAIL) or took
  longer than stale-answer-client-timeout (RFC 8767 §5); this module only assembles it.
- Live data first, then expired data kept for max-stale-ttl; at least one part of the
  answer must be expired, otherwise the normal cache lookup would have answered.
- Expired records carry stale-answer-ttl (RFC 8767 §4: 30 s suggested); live records keep
  their counted-down TTL.
- CNAME chains are followed through the cache as the engine follows them (RFC 1034
  §5.3.3); a chain that ends in neither data nor a negative answer gives nothing.
- Negative answers (NXDOMAIN, NODATA) may be served stale too, with their SOA.
"""

from __future__ import annotations

from resolver.dns.wire import Question, Rcode, Record, RRType
from resolver.engine.cache import NegativeAnswer, RecordCache
from resolver.engine.events import Outcome


def stale_answer(
    cache: RecordCache, question: Question, *, ttl: int, max_chain: int
) -> Outcome | None:
    """The answer the cache gives for `question` from data at most max-stale-ttl past expiry.

    None when serve-stale is off, nothing is kept, or everything needed is still live.
    """
    chain: list[Record] = []
    used_stale = False
    current = question.name
    seen = {current}
    for _ in range(max_chain + 1):
        records, stale = _rrset(cache, current, question.rtype, question.rclass, ttl)
        if records:
            if not (used_stale or stale):
                return None
            return Outcome(rcode=Rcode.NOERROR, answer=(*chain, *records), stale=True)
        if question.rtype != RRType.CNAME:
            cname, stale = _rrset(cache, current, RRType.CNAME, question.rclass, ttl)
            if cname:
                used_stale = used_stale or stale
                chain.extend(cname)
                target = cname[0].target
                if target in seen:  # a CNAME loop: no answer to give
                    return None
                seen.add(target)
                current = target
                continue
        negative, stale = _negative(cache, Question(current, question.rtype, question.rclass), ttl)
        if negative is None or not (used_stale or stale):
            return None
        authority = (negative.soa,) if negative.soa is not None else ()
        return Outcome(rcode=negative.rcode, answer=tuple(chain), authority=authority, stale=True)
    return None


def _rrset(
    cache: RecordCache, name: str, rtype: int, rclass: int, ttl: int
) -> tuple[tuple[Record, ...] | None, bool]:
    live = cache.rrset(name, rtype, rclass)
    if live:
        return live, False
    stale = cache.stale_rrset(name, rtype, rclass, ttl=ttl)
    return stale, bool(stale)


def _negative(
    cache: RecordCache, question: Question, ttl: int
) -> tuple[NegativeAnswer | None, bool]:
    live = cache.negative(question)
    if live is not None:
        return live, False
    stale = cache.stale_negative(question, ttl=ttl)
    return stale, stale is not None
