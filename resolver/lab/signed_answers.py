"""What a server of a signed lab zone adds for a query with DO=1 (RFC 4035 §3.1).

The answer itself comes from `Authority.lookup` (RFC 1034 §4.3.2); this module adds:

- the RRSIGs of every RRset in the answer (§3.1.1), and of the SOA of a negative answer;
- NODATA: the NSEC at the name, or for an empty non-terminal the NSEC covering it
  (§3.1.3.1, §3.1.3.2);
- NXDOMAIN: the NSEC covering the name and the one covering the wildcard at its closest
  encloser (§3.1.3.2);
- a referral: the child's DS and its RRSIG, or the NSEC at the cut that proves there is
  no DS: an insecure delegation (§3.1.4);
- a DS question at a cut is answered by the parent side, not referred (§3.1.4.1), and a
  DNSKEY question at the apex is answered from the zone's keys.

Zones that are not signed answer as they do without DO.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from dnslib import QTYPE, RCODE, RR, DNSLabel

from resolver.lab.authority import Answer, Name, Outcome, Zone, order_key, to_name

if TYPE_CHECKING:
    from resolver.lab.authority import Authority

__all__ = ["signed_lookup"]

_WILDCARD = b"*"


def signed_lookup(authority: Authority, qname: str | DNSLabel, qtype: int) -> Answer:
    """`authority`'s answer to a DO=1 query: the plain answer with its DNSSEC records."""
    name = to_name(qname)
    zone = authority.zone_for(name)
    if qtype == QTYPE.DS:
        parent = _zone_with_cut(authority, zone, name)
        if parent is not None and parent.is_signed:
            return _ds_answer(parent, name)
    if zone is None or not zone.is_signed:
        return authority.lookup(qname, qtype)
    if qtype in (QTYPE.DNSKEY, QTYPE.NSEC) and zone.cut_above(name) is None:
        own = zone.dnssec_rrset(name, qtype)
        if own:
            return Answer(outcome=Outcome.ANSWER, rcode=RCODE.NOERROR, aa=True,
                          answer=(*own, *zone.rrsigs(name, qtype)))
    plain = authority.lookup(qname, qtype)
    answer = _signed(authority, plain.answer)
    if plain.outcome is Outcome.REFERRAL:
        cut = to_name(plain.authority[0].rname)
        ds = zone.dnssec_rrset(cut, QTYPE.DS)
        proof = [*ds, *zone.rrsigs(cut, QTYPE.DS)] if ds else _nsec_at(zone, cut)
        return replace(plain, authority=(*plain.authority, *proof))
    if plain.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
        end = _chain_end(name, plain.answer)
        proof = _soa_with_sigs(zone, plain.authority)
        if plain.outcome is Outcome.NXDOMAIN:
            encloser = _closest_encloser(zone, end)
            proof += _nsec_covering(zone, end) + _nsec_covering(zone, (_WILDCARD, *encloser))
        elif zone.dnssec_rrset(end, QTYPE.NSEC):
            proof += _nsec_at(zone, end)
        else:  # an empty non-terminal: the NSEC before it names a name below it
            proof += _nsec_covering(zone, end)
        return replace(plain, answer=answer, authority=tuple(_unique(proof)))
    return replace(plain, answer=answer)


def _zone_with_cut(authority: Authority, zone: Zone | None, name: Name) -> Zone | None:
    """The served zone in which `name` is a delegation point, if any: the zone itself,
    or, when `name` is the apex of a served zone, its served parent (RFC 4035 §3.1.4.1)."""
    if zone is None:
        return None
    if name in zone.cuts:
        return zone
    if name == zone.origin and name:
        parent = authority.zone_for(name[1:])
        if parent is not None and name in parent.cuts:
            return parent
    return None


def _ds_answer(parent: Zone, cut: Name) -> Answer:
    ds = parent.dnssec_rrset(cut, QTYPE.DS)
    if ds:
        return Answer(outcome=Outcome.ANSWER, rcode=RCODE.NOERROR, aa=True,
                      answer=(*ds, *parent.rrsigs(cut, QTYPE.DS)))
    proof = _soa_with_sigs(parent, (parent.negative_soa(),)) + _nsec_at(parent, cut)
    return Answer(outcome=Outcome.NODATA, rcode=RCODE.NOERROR, aa=True, authority=tuple(proof))


def _signed(authority: Authority, records: Iterable[RR]) -> tuple[RR, ...]:
    """`records`, then the RRSIGs of each of their RRsets, from the zone that holds it."""
    listed = list(records)
    out = list(listed)
    done: set[tuple[Name, int]] = set()
    for rr in listed:
        owner = to_name(rr.rname)
        if (owner, rr.rtype) in done:
            continue
        done.add((owner, rr.rtype))
        zone = authority.zone_for(owner)
        if zone is not None:
            out.extend(zone.rrsigs(owner, rr.rtype))
    return tuple(out)


def _soa_with_sigs(zone: Zone, authority: Iterable[RR]) -> list[RR]:
    records = list(authority)
    return [*records, *zone.rrsigs(zone.origin, QTYPE.SOA)] if records else []


def _nsec_at(zone: Zone, name: Name) -> list[RR]:
    return [*zone.dnssec_rrset(name, QTYPE.NSEC), *zone.rrsigs(name, QTYPE.NSEC)]


def _nsec_covering(zone: Zone, name: Name) -> list[RR]:
    """The NSEC whose owner is the last one at or before `name` in canonical order; the
    apex sorts first, so every name of the zone has one (RFC 4034 §4.1.1)."""
    index = bisect.bisect_right(zone.nsec_owners, order_key(name), key=order_key) - 1
    return _nsec_at(zone, zone.nsec_owners[max(index, 0)]) if zone.nsec_owners else []


def _closest_encloser(zone: Zone, name: Name) -> Name:
    """The longest existing ancestor of `name` in the zone (RFC 4592 §3.3.1)."""
    for depth in range(len(name) - 1, len(zone.origin) - 1, -1):
        candidate = name[len(name) - depth :]
        if zone.exists(candidate):
            return candidate
    return zone.origin


def _chain_end(name: Name, answer: Iterable[RR]) -> Name:
    current = name
    for rr in answer:
        if rr.rtype == QTYPE.CNAME and to_name(rr.rname) == current:
            current = to_name(rr.rdata.label)
    return current


def _unique(records: Iterable[RR]) -> list[RR]:
    seen: set[str] = set()
    out: list[RR] = []
    for rr in records:
        text = rr.toZone()
        if text not in seen:
            seen.add(text)
            out.append(rr)
    return out
