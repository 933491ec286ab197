"""Aggressive use of the DNSSEC-validated cache (RFC 8198), for NSEC and NSEC3.

Every secure negative answer brings NSEC records that prove whole ranges of names empty:
an NSEC says no name lies between its owner and its next name (RFC 4034 §4.1), and which
types its owner has. Kept per zone in canonical order (RFC 4034 §6.1), they answer later
questions for other names in the same ranges without asking anyone:

- NXDOMAIN (RFC 8198 §5.1): one NSEC covers the name, and one covers the wildcard at the
  closest encloser (so no wildcard could have answered);
- NODATA (§5.2): the NSEC at the name itself lacks the type (and CNAME), or the name is
  an empty non-terminal (an NSEC covers it and its next name lies below it).

Only ranges proven secure are kept (RFC 8198 §4), with the zone's SOA and its signatures,
for the shortest TTL of the NSEC, the SOA and its MINIMUM (§5.4). An NSEC at a delegation
(NS without SOA, the parent's side of a cut) or a DNAME covers nothing below its owner:
those names belong to another zone, or are redirected.

NSEC3 records (RFC 5155) are kept the same way, in hash order: a name whose hash matches
one lacks the types it does not list (NODATA); a closest encloser that matches, a next
closer name and a wildcard that are covered give NXDOMAIN (§8.4). Opt-out spans prove
nothing about names (§6), and the records chosen are checked by the validator's own
denial proof before they answer.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Rcode, Record, RRType
from resolver.dnssec.canonical import name_order_key, wildcard_source
from resolver.dnssec.denial import (
    DEFAULT_NSEC3_ITERATIONS_LIMIT,
    NSEC3_SHA1,
    nsec3_hash,
    prove_nodata,
    prove_nxdomain,
)
from resolver.dnssec.records import MalformedRdata, Nsec, Nsec3, Rrsig

__all__ = ["NsecRanges", "SynthesizedAnswer", "SynthesizedDenial"]

#: Zones whose ranges are kept, and ranges kept per zone (least recently used dropped).
MAX_ZONES = 1_000
MAX_RANGES_PER_ZONE = 1_000
#: Ranges and wildcards kept in all (about 1.5 KB each with their signatures: some 30 MB
#: at most, outside the byte budget of --cache-size); the least recently used zones go.
MAX_RANGES_TOTAL = 20_000


@dataclass(frozen=True, slots=True)
class _Range:
    key: tuple[bytes, ...]
    nsec: Nsec
    records: tuple[Record, ...]  #: the NSEC record and its RRSIGs
    expires_at: float
    learned_at: float


@dataclass(frozen=True, slots=True)
class _Hashed:
    nsec3: Nsec3
    records: tuple[Record, ...]  #: the NSEC3 record and its RRSIGs
    expires_at: float
    learned_at: float


@dataclass(slots=True)
class _Zone:
    soa: tuple[Record, ...]  #: the SOA and its RRSIGs
    soa_expires_at: float
    keys: list[tuple[bytes, ...]]
    ranges: list[_Range]
    #: (wildcard owner, type) -> a secure RRset expanded from it, kept at the wildcard.
    wildcards: dict[tuple[str, int], _Expansion]
    #: NSEC3 records by owner hash, and the hashes in order (one salt and iteration count).
    hashed: dict[bytes, _Hashed]
    hash_order: list[bytes]


@dataclass(frozen=True, slots=True)
class _Expansion:
    records: tuple[Record, ...]
    rrsigs: tuple[Record, ...]
    expires_at: float
    learned_at: float


@dataclass(frozen=True, slots=True)
class SynthesizedDenial:
    """A negative answer made from cached NSEC ranges, TTLs lowered."""

    rcode: Rcode  #: NXDOMAIN, or NOERROR for NODATA
    soa: Record
    #: The SOA's RRSIGs, then each NSEC used with its RRSIGs.
    proof: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class SynthesizedAnswer:
    """An answer expanded from a cached wildcard (RFC 8198 §5.3), TTLs lowered."""

    records: tuple[Record, ...]  #: owned by the question's name
    rrsigs: tuple[Record, ...]
    #: The NSEC records (with RRSIGs) proving no closer name exists (RFC 4035 §3.1.3.3).
    proof: tuple[Record, ...]


class NsecRanges:
    """Validated NSEC ranges by zone; times are the record cache's monotonic seconds."""

    def __init__(self) -> None:
        self._zones: OrderedDict[str, _Zone] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(zone.ranges) for zone in self._zones.values())

    def learn(self, zone: str, soa: Record, proof: tuple[Record, ...], now: float,
              ttl: int) -> None:
        """Keep the NSEC records of a secure negative answer from `zone` for `ttl` seconds
        (the answer's negative TTL); `proof` holds the SOA's RRSIGs and the NSEC records
        with theirs."""
        nsecs = [rr for rr in proof if rr.rtype == RRType.NSEC
                 and names.is_subdomain(rr.name, zone)]
        nsec3s = [rr for rr in proof if rr.rtype == RRType.NSEC3
                  and names.is_subdomain(rr.name, zone)]
        if (not nsecs and not nsec3s) or ttl <= 0:
            return
        soa_sigs = tuple(rr for rr in proof if rr.rtype == RRType.RRSIG and rr.name == zone
                         and _covered(rr) == RRType.SOA)
        kept = self._zone(zone)
        kept.soa, kept.soa_expires_at = (soa, *soa_sigs), now + ttl
        self._keep_ranges(kept, nsecs, proof, now, ttl)
        self._keep_hashed(kept, nsec3s, proof, now, ttl)

    def learn_wildcard(self, zone: str, owner: str, rrset: tuple[Record, ...],
                       rrsigs: tuple[Record, ...], proof: tuple[Record, ...],
                       now: float) -> None:
        """Keep a secure wildcard expansion of `zone` (the RRset at `owner`, its RRSIGs and
        the NSEC proof that no closer name exists), so that other names the wildcard
        covers are answered from it (RFC 8198 §5.3)."""
        labels = min((_labels(rr) for rr in rrsigs), default=None)
        wildcard = wildcard_source(owner, labels) if labels is not None else None
        nsecs = [rr for rr in proof if rr.rtype == RRType.NSEC
                 and names.is_subdomain(rr.name, zone)]
        ttl = min(rr.ttl for rr in rrset) if rrset else 0
        if wildcard is None or not nsecs or ttl <= 0 or not names.is_subdomain(wildcard, zone):
            return
        kept = self._zone(zone)
        self._keep_ranges(kept, nsecs, proof, now, ttl)
        kept.wildcards[(wildcard, rrset[0].rtype)] = _Expansion(
            tuple(rr.with_name(wildcard) for rr in rrset),
            tuple(rr.with_name(wildcard) for rr in rrsigs), now + ttl, now)
        while len(kept.wildcards) > MAX_RANGES_PER_ZONE:
            del kept.wildcards[next(iter(kept.wildcards))]
        self._bound()

    def _bound(self) -> None:
        while len(self._zones) > MAX_ZONES or (len(self._zones) > 1 and sum(
                len(z.ranges) + len(z.wildcards) + len(z.hashed)
                for z in self._zones.values())
                > MAX_RANGES_TOTAL):
            self._zones.popitem(last=False)

    def _zone(self, zone: str) -> _Zone:
        kept = self._zones.get(zone)
        if kept is None:
            kept = self._zones[zone] = _Zone((), 0.0, [], [], {}, {}, [])
        self._zones.move_to_end(zone)
        return kept

    def _keep_ranges(self, kept: _Zone, nsecs: list[Record], proof: tuple[Record, ...],
                     now: float, ttl: int) -> None:
        for record in nsecs:
            try:
                nsec = Nsec.from_record(record)
                key = name_order_key(record.name)
            except MalformedRdata:
                continue
            sigs = tuple(rr for rr in proof if rr.rtype == RRType.RRSIG
                         and rr.name == record.name and _covered(rr) == RRType.NSEC)
            # RFC 9077 §3.3, RFC 8198 §5.4: a range proves nothing for longer than the
            # negative TTL of the answer that brought it.
            entry = _Range(key, nsec, (record, *sigs), now + min(ttl, record.ttl), now)
            at = bisect.bisect_left(kept.keys, key)
            if at < len(kept.keys) and kept.keys[at] == key:
                kept.ranges[at] = entry
            else:
                kept.keys.insert(at, key)
                kept.ranges.insert(at, entry)
        while len(kept.ranges) > MAX_RANGES_PER_ZONE:
            oldest = min(range(len(kept.ranges)), key=lambda i: kept.ranges[i].expires_at)
            del kept.keys[oldest], kept.ranges[oldest]
        self._bound()

    def _keep_hashed(self, kept: _Zone, nsec3s: list[Record], proof: tuple[Record, ...],
                     now: float, ttl: int) -> None:
        for record in nsec3s:
            try:
                nsec3 = Nsec3.from_record(record)
            except MalformedRdata:
                continue
            # RFC 9276 §3.2: above the limit a proof is insecure, so it answers nothing.
            if (nsec3.algorithm != NSEC3_SHA1
                    or nsec3.iterations > DEFAULT_NSEC3_ITERATIONS_LIMIT):
                continue
            first = next(iter(kept.hashed.values()), None)
            if first is not None and (first.nsec3.salt, first.nsec3.iterations) != (
                    nsec3.salt, nsec3.iterations):
                kept.hashed.clear()  # the zone changed its NSEC3 parameters
                kept.hash_order.clear()
            sigs = tuple(rr for rr in proof if rr.rtype == RRType.RRSIG
                         and rr.name == record.name and _covered(rr) == RRType.NSEC3)
            if nsec3.owner_hash not in kept.hashed:
                bisect.insort(kept.hash_order, nsec3.owner_hash)
            kept.hashed[nsec3.owner_hash] = _Hashed(
                nsec3, (record, *sigs), now + min(ttl, record.ttl), now)
        while len(kept.hashed) > MAX_RANGES_PER_ZONE:
            oldest = min(kept.hashed, key=lambda h: kept.hashed[h].expires_at)
            del kept.hashed[oldest]
            kept.hash_order.remove(oldest)
        self._bound()

    def forget(self, name: str) -> None:
        """Drop the ranges of zones at or below `name` and of the closest zone holding it,
        whose ranges could prove it absent (`resolver cache flush`)."""
        holder = next((z for z in names.ancestors(name) if z in self._zones), None)
        for zone in list(self._zones):
            if zone == holder or names.is_subdomain(zone, name):
                del self._zones[zone]

    def clear(self) -> None:
        self._zones.clear()

    def synthesize(self, qname: str, qtype: int, now: float, *,
                   within: str = ".") -> SynthesizedDenial | None:
        """The NXDOMAIN or NODATA the cached ranges prove for (`qname`, `qtype`), or None.
        Only ranges of zones at or below `within` count: a configured stub or forward zone
        is not denied by its parent's NSEC records."""
        found = self._range_at(qname, now, within)
        if found is None:
            return None
        zone_name, zone, qkey, match = found
        if zone.soa_expires_at <= now or not zone.soa:
            return None
        if zone.hashed:
            return self._hashed_denial(zone_name, zone, qname, qtype, now)
        if match is not None and match.key == qkey:
            types = match.nsec.types
            if qtype in types or RRType.CNAME in types or _parent_side(types, qname,
                                                                        zone_name, qtype):
                return None
            return self._denial(zone, Rcode.NOERROR, (match,), now)
        if match is None or not self._covers(match, qname, zone_name):
            return None
        if names.is_subdomain(match.nsec.next_name, qname):
            # A name below `qname` exists: it is an empty non-terminal, with no data of
            # any type (RFC 4035 §3.1.3.2, RFC 8198 §5.2).
            return self._denial(zone, Rcode.NOERROR, (match,), now)
        encloser = _closest_encloser(qname, match.nsec)
        wildcard = names.wildcard_at(encloser)
        wild_key = name_order_key(wildcard)
        wild = self._live(zone, bisect.bisect_right(zone.keys, wild_key) - 1, now)
        if wild is None or wild.key == wild_key or not self._covers(wild, wildcard, zone_name):
            return None  # a wildcard may exist: the answer could be one of its expansions
        return self._denial(zone, Rcode.NXDOMAIN, (match, wild), now)

    def synthesize_answer(self, qname: str, qtype: int, now: float, *,
                          within: str = ".") -> SynthesizedAnswer | None:
        """The records of type `qtype` (or a CNAME) a cached wildcard gives `qname`, when a
        cached range proves that no name closer than the wildcard exists (RFC 8198 §5.3,
        RFC 4592 §4.3), or None."""
        at = self._range_at(qname, now, within)
        if at is None or not at[1].wildcards:
            return None
        zone_name, zone, qkey, cover = at
        if cover is None or cover.key == qkey or not self._covers(cover, qname, zone_name):
            return None  # the name exists, or nothing proves it does not
        if names.is_subdomain(cover.nsec.next_name, qname):
            return None  # an empty non-terminal: no wildcard applies (RFC 4592 §2.2.2)
        wildcard = names.wildcard_at(_closest_encloser(qname, cover.nsec))
        found = zone.wildcards.get((wildcard, qtype)) or zone.wildcards.get(
            (wildcard, RRType.CNAME))
        if found is None or found.expires_at <= now or qtype in _NO_SYNTHESIS:
            return None
        left = int(min(found.expires_at, cover.expires_at) - now)
        if left <= 0:
            return None
        age = int(now - cover.learned_at)
        return SynthesizedAnswer(
            tuple(rr.with_name(qname).with_ttl(left) for rr in found.records),
            tuple(rr.with_name(qname).with_ttl(left) for rr in found.rrsigs),
            tuple(rr.with_ttl(max(1, rr.ttl - age)) for rr in cover.records))

    # -- helpers -----------------------------------------------------------------------

    def _range_at(self, qname: str, now: float, within: str
                  ) -> tuple[str, _Zone, tuple[bytes, ...], _Range | None] | None:
        """The closest zone holding `qname` (at or below `within`), the name's order key,
        and the live range starting at or before it, or None when no zone applies."""
        zone_name = next((z for z in names.ancestors(qname) if z in self._zones), None)
        if zone_name is None or not names.is_subdomain(zone_name, within):
            return None
        zone = self._zones[zone_name]
        try:
            qkey = name_order_key(qname)
        except MalformedRdata:
            return None
        return zone_name, zone, qkey, self._live(
            zone, bisect.bisect_right(zone.keys, qkey) - 1, now)

    @staticmethod
    def _live(zone: _Zone, index: int, now: float) -> _Range | None:
        if index < 0:
            index = len(zone.ranges) - 1  # before the first owner: the last NSEC wraps
        if index < 0 or index >= len(zone.ranges):
            return None
        found = zone.ranges[index]
        return found if found.expires_at > now else None

    @staticmethod
    def _covers(entry: _Range, name: str, zone: str) -> bool:
        """Whether the NSEC proves `name` absent: strictly after its owner (and not below a
        delegation or DNAME there), strictly before its next name or the NSEC is the last."""
        owner, next_name = entry.nsec.owner, entry.nsec.next_name
        key = name_order_key(name)
        if not entry.key < key or not names.is_subdomain(name, zone):
            return False
        types = entry.nsec.types
        if names.is_subdomain(name, owner) and (
                RRType.DNAME in types or (RRType.NS in types and RRType.SOA not in types)):
            return False
        try:
            next_key = name_order_key(next_name)
        except MalformedRdata:
            return False
        if next_name == zone or next_key <= entry.key:  # the last NSEC of the zone
            return True
        return key < next_key

    def _hashed_denial(self, zone_name: str, zone: _Zone, qname: str, qtype: int,
                       now: float) -> SynthesizedDenial | None:
        """NODATA or NXDOMAIN from cached NSEC3 records (RFC 5155 §8.4-8.6, RFC 8198 §5)."""
        some = next(iter(zone.hashed.values())).nsec3
        salt, iterations = some.salt, some.iterations

        def matching(name: str) -> _Hashed | None:
            found = zone.hashed.get(nsec3_hash(name, salt, iterations))
            return found if found is not None and found.expires_at > now else None

        def covering(name: str) -> _Hashed | None:
            digest = nsec3_hash(name, salt, iterations)
            at = bisect.bisect_left(zone.hash_order, digest)
            if at < len(zone.hash_order) and zone.hash_order[at] == digest:
                return None  # the name exists
            found = zone.hashed[zone.hash_order[at - 1]]  # at 0: the last one wraps
            owner, after = found.nsec3.owner_hash, found.nsec3.next_hash
            inside = (owner < digest < after if owner < after
                      else digest > owner or digest < after)
            if not inside or found.expires_at <= now or found.nsec3.opt_out:
                return None  # an opt-out span may hide unsigned delegations (§6)
            return found

        used: tuple[_Hashed, ...]
        exact = matching(qname)
        if exact is not None:
            types = exact.nsec3.types
            if qtype in types or RRType.CNAME in types or _parent_side(types, qname,
                                                                        zone_name, qtype):
                return None
            used, rcode = (exact,), Rcode.NOERROR
        else:
            # RFC 5155 §8.3: the closest encloser matches; the name one label below it
            # towards `qname` (the next closer) and the wildcard at it are covered.
            above = names.ancestors(qname)
            at, held = 0, None
            while held is None:
                at += 1
                if at >= len(above) or not names.is_subdomain(above[at], zone_name):
                    return None
                held = matching(above[at])
            cover = covering(above[at - 1])
            wild = covering(names.wildcard_at(above[at]))
            if cover is None or wild is None:
                return None
            used, rcode = (held, cover, wild), Rcode.NXDOMAIN
        records = [rr for entry in used for rr in entry.records]
        verdict = (prove_nxdomain(qname, zone_name, records) if rcode == Rcode.NXDOMAIN
                   else prove_nodata(qname, qtype, zone_name, records))
        return self._denial(zone, rcode, used, now) if verdict.is_secure else None

    @staticmethod
    def _denial(zone: _Zone, rcode: Rcode, used: tuple[_Range | _Hashed, ...],
                now: float) -> SynthesizedDenial:
        # RFC 8198 §5.4: the answer's negative TTL is the least of the NSEC TTLs, the SOA
        # TTL and its MINIMUM; each NSEC shows its own TTL counted down (as Unbound's do).
        ttl = int(min(zone.soa_expires_at, *(r.expires_at for r in used)) - now)
        soa, *soa_sigs = zone.soa
        ttl = max(1, min(ttl, soa.ttl, soa.soa_minimum))
        proof = [rr.with_ttl(ttl) for rr in soa_sigs]
        for entry in dict.fromkeys(used):
            age = int(now - entry.learned_at)
            proof += [rr.with_ttl(max(1, rr.ttl - age)) for rr in entry.records]
        return SynthesizedDenial(rcode, soa.with_ttl(ttl), tuple(proof))


def _closest_encloser(qname: str, nsec: Nsec) -> str:
    """RFC 4035 §5.4: the longest ancestor of `qname` shared with the NSEC's owner or
    next name: the closest name that exists above `qname`."""
    best = names.ROOT
    for other in (nsec.owner, nsec.next_name):
        for ancestor in names.ancestors(qname)[1:]:
            if names.is_subdomain(other, ancestor):
                if names.label_count(ancestor) > names.label_count(best):
                    best = ancestor
                break
    return best


def _parent_side(types: frozenset[int], qname: str, zone: str, qtype: int) -> bool:
    """An NSEC at a delegation (NS, no SOA) speaks for the parent: only DS is denied there."""
    return (qname != zone and RRType.NS in types and RRType.SOA not in types
            and qtype != RRType.DS)


#: Types no wildcard answers for a client: DNSSEC records of the name itself, and ANY.
_NO_SYNTHESIS = frozenset({RRType.NSEC, RRType.RRSIG, RRType.DS, RRType.ANY})


def _labels(rrsig: Record) -> int:
    try:
        return Rrsig.from_record(rrsig).labels
    except MalformedRdata:
        return 255


def _covered(rrsig: Record) -> int | None:
    try:
        return Rrsig.from_record(rrsig).type_covered
    except MalformedRdata:
        return None
