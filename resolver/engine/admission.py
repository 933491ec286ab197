"""What a reply may put into the cache, and at which trust rank (RFC 2181 §5.4.1).

Rules: only scrubbed data enters (see `resolver.engine.classify`); answer data ranks above
authority data, which ranks above glue; a referral's NS set and in-bailiwick glue are kept
for the next lookups in that zone; a negative answer is kept with its SOA (RFC 2308 §5);
a child's NS set never outlives the parent's delegation (ghost domains); NS sets in the
authority section of non-authoritative answers are never kept (promiscuous data).
DNSSEC (RFC 4035 §4.5): each RRset is kept with its RRSIGs and the security status
validation gave it, a negative answer with its proof; bogus data is never kept, and a
referral's DS RRset is kept (unvalidated) for the chain of trust to use.
"""

from __future__ import annotations

from resolver.dns import names
from resolver.dns.wire import Question, Rcode, Record, RRType
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.classify import (
    Classified,
    ResponseKind,
    covered_type,
    is_wildcard_expansion,
)
from resolver.engine.delegation import Delegation
from resolver.engine.scrub import ScrubbedReply


def admit(
    cache: RecordCache,
    reply: ScrubbedReply,
    classified: Classified,
    cut: Delegation,
    question: Question,
) -> None:
    """Put what the scrubbed reply proves into the cache, ranked (RFC 2181 §5.4.1)."""
    kind = classified.kind
    security = classified.security
    if security is Security.BOGUS:
        return  # RFC 4035 §4.5: bogus data is not cached (the failure is, briefly)
    answer_rank = Rank.AUTHORITATIVE_ANSWER if reply.aa else Rank.ANSWER
    for rrset in rrsets(classified.answer):
        sigs = signatures_of(rrset, classified.signatures)
        proof = classified.denial if is_wildcard_expansion(rrset[0].name, sigs) else ()
        cache.store_rrset(within_delegation(cache, rrset, cut.zone), answer_rank,
                          security=security, rrsigs=sigs, proof=proof)
    if kind is ResponseKind.REFERRAL and classified.delegation is not None:
        _admit_referral(cache, reply, classified, classified.delegation.zone)
        return
    if kind in (ResponseKind.NXDOMAIN, ResponseKind.NODATA):
        end = classified.target or chain_end(question.name, classified.answer)
        rcode = Rcode.NXDOMAIN if kind is ResponseKind.NXDOMAIN else Rcode.NOERROR
        cache.store_negative(Question(end, question.rtype, question.rclass), rcode,
                             classified.soa, security=security,
                             proof=(*_soa_signatures(classified), *classified.denial))
        return
    if kind is ResponseKind.ANSWER and not cut.recursion_desired:
        # The zone's own NS set as the child states it, only when it speaks with
        # authority: a non-authoritative answer's NS set is promiscuous (Unbound's
        # iter-scrub-promiscuous) and could hijack the zone (Deckard iter_ns_spoof).
        ns_set = [rr for rr in reply.authority if rr.rtype == RRType.NS and reply.aa
                  and names.is_subdomain(question.name, rr.name)
                  and names.is_subdomain(rr.name, cut.zone)]
        ns_ttl: int | None = None
        for rrset in rrsets(ns_set):
            clamped = within_delegation(cache, rrset)
            ns_ttl = clamped[0].ttl
            cache.store_rrset(clamped, Rank.AUTHORITATIVE_AUTHORITY)
        answer_ns = [rr for rr in classified.answer if rr.rtype == RRType.NS]
        if answer_ns:
            ns_ttl = within_delegation(cache, answer_ns)[0].ttl
        # Addresses of the zone's own servers, from within the zone even without
        # harden-glue: an answer is no referral that needs them to go on.
        extra = [rr for rr in reply.addresses_of({rr.target for rr in (*ns_set, *answer_ns)})
                 if names.is_subdomain(rr.name, cut.zone)]
        for rrset in rrsets(extra):
            if ns_ttl is not None:  # glue lives no longer than the NS set it serves
                rrset = [rr.with_ttl(min(rr.ttl, ns_ttl)) for rr in rrset]
            cache.store_rrset(rrset, Rank.ADDITIONAL)

def _admit_referral(cache: RecordCache, reply: ScrubbedReply, classified: Classified,
                    zone: str) -> None:
    """A referral's NS set and glue, and the DS RRset of the child or the proof that it has
    none (RFC 4035 §5.2), all of non-authoritative rank."""
    ns_set = [rr for rr in reply.authority if rr.rtype == RRType.NS and rr.name == zone]
    cache.store_rrset(ns_set, Rank.AUTHORITY)
    ds = [rr for rr in classified.ds if rr.rtype == RRType.DS]
    if ds:
        cache.store_rrset(ds, Rank.AUTHORITY, rrsigs=signatures_of(ds, classified.ds))
    elif classified.denial:
        cache.store_ds_denial(zone, classified.denial)  # RFC 4035 §5.2: no DS, proved
    glue = reply.addresses_of({rr.target for rr in ns_set})
    for rrset in rrsets(glue):
        cache.store_rrset(rrset, Rank.ADDITIONAL)


def _soa_signatures(classified: Classified) -> tuple[Record, ...]:
    soa = classified.soa
    return signatures_of([soa], classified.signatures) if soa is not None else ()


def signatures_of(rrset: list[Record], signatures: tuple[Record, ...]) -> tuple[Record, ...]:
    """The RRSIGs among `signatures` that cover `rrset` (same owner, covered type)."""
    if not signatures or not rrset:
        return ()
    first = rrset[0]
    return tuple(rr for rr in signatures if rr.rtype == RRType.RRSIG and rr.name == first.name
                 and covered_type(rr) == first.rtype)


def within_delegation(
    cache: RecordCache, rrset: list[Record], zone: str | None = None
) -> list[Record]:
    """A child's NS set, and the addresses of the zone's own name servers, may not outlive
    the parent's delegation still in the cache (ghost domains, Unbound CVE-2022-30698/30699
    and ghost glue): clamp their TTL to what is left of it."""
    if not rrset:
        return rrset
    first = rrset[0]
    # Only the delegation's names and TTL left are read: the records as stored will do.
    if first.rtype == RRType.NS:
        cached = cache.stored_rrset(first.name, RRType.NS)
    elif first.rtype in (RRType.A, RRType.AAAA) and zone is not None:
        cached = cache.stored_rrset(zone, RRType.NS)
        if cached is not None and all(first.name != rr.target for rr in cached[0]):
            cached = None
    else:
        cached = None
    if cached is None:
        return rrset
    limit = cached[1]
    return [rr.with_ttl(min(rr.ttl, limit)) for rr in rrset]


def rrsets(records: tuple[Record, ...] | list[Record]) -> list[list[Record]]:
    """Records grouped into RRsets (RFC 2181 §5): same owner, type and class."""
    groups: dict[tuple[str, int, int], list[Record]] = {}
    for rr in records:
        groups.setdefault((rr.name, rr.rtype, rr.rclass), []).append(rr)
    return list(groups.values())


def chain_end(qname: str, chain: tuple[Record, ...]) -> str:
    """The name a CNAME chain starting at `qname` ends at."""
    current = qname
    for rr in chain:
        if rr.rtype == RRType.CNAME and rr.name == current:
            current = rr.target
    return current
