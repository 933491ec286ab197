"""The TTL-aware record cache: RRsets, negative answers and remembered failures.

Rules:
- Keys are canonical (owner, type, class); one entry holds one RRset (RFC 2181 §5).
- Entries expire by absolute time from one injected timer (expiring_store); a
  lookup returns TTLs lowered by the time spent in the cache, never more than stored.
- TTLs are clamped on entry (Unbound cache-min-ttl / cache-max-ttl); TTL 0 is never
  stored: such data serves only the resolution that fetched it.
- Trust ranks (RFC 2181 §5.4.1): live data is never replaced by data of lower rank.
- Negative answers (RFC 2308 §5) live for min(SOA TTL, SOA MINIMUM), clamped by
  cache-max-negative-ttl; an NXDOMAIN also answers for every name below (RFC 8020).
- Serve-stale (RFC 8767), when enabled, keeps expired RRsets and negative answers for
  max-stale-ttl; normal lookups still treat them as expired, only `stale_*` return them.
- DNSSEC (RFC 4035 §4.5): each RRset and negative answer keeps its security status and
  the RRSIGs (and NSEC/NSEC3 proof) that came with it, so that DO clients get them; None
  means not validated (validation off, or fetched for a CD=1 client). Bogus data is never
  stored, and validated data is not replaced by unvalidated data of the same rank.
- `snapshot` and `restore` hand RRsets and negative answers out and back as plain values
  (`SavedRRset`, `SavedNegative`) for the cache file (resolver.daemon.cache_file); failures
  are not saved.

The entry values and their store are in `cache_entries`; flush, dump, snapshot and restore
(the operator's and the cache file's side) in `cache_operations`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from cachetools import LRUCache

from resolver.dns import names
from resolver.dns.wire import Question, Rcode, Record, RRType
from resolver.dnssec.records import MalformedRdata, Rrsig
from resolver.dnssec.security import Security
from resolver.engine.cache_budget import split_bytes
from resolver.engine.cache_entries import (
    CachedRRset,
    FailureEntry,
    Key,
    NegativeAnswer,
    NegativeEntry,
    Rank,
    RRsetInfo,
    SignedRRset,
    expiry,
    expiry_keeping_stale,
)
from resolver.engine.cache_operations import CacheOperations
from resolver.engine.delegation import CutSource, Delegation, NameServer
from resolver.engine.entry_size import record_cache_entry_size
from resolver.engine.expiring_store import ExpiringStore
from resolver.engine.failure import Failure
from resolver.engine.nsec_ranges import NsecRanges, SynthesizedAnswer
from resolver.engine.settings import CacheSettings

#: `NegativeAnswer` is what negative lookups return: serve-stale reads it from here.
__all__ = ["MAX_DS_DENIALS", "NegativeAnswer", "RecordCache"]

#: Referral proofs of DS absence kept for the chain of trust (a bound, not a budget).
MAX_DS_DENIALS = 10_000

#: An RRset stored again with an expiry this close to the stored one is the same entry:
#: TTLs are shown in whole seconds.
_SAME_EXPIRY_S = 1.0


class RecordCache(CacheOperations):
    """RRsets, negative answers and failures, bounded with LRU eviction."""

    def __init__(self, settings: CacheSettings, *, timer: Callable[[], float]) -> None:
        self.settings = settings
        self._timer = timer
        # Serve-stale keeps expired data for max-stale-ttl; lookups still see it as expired.
        ttu = (expiry_keeping_stale(settings.max_stale_ttl_s) if settings.stale_answer_enable
               else expiry)
        # A byte budget (--cache-size 64m) bounds memory; a count (--cache-size 100000) entries.
        bound, sizer = ((split_bytes(settings.max_bytes)[0], record_cache_entry_size)
                        if settings.max_bytes is not None else (settings.max_entries, None))
        self._entries: ExpiringStore[Key] = ExpiringStore(bound, ttu, timer=timer, sizer=sizer)
        #: RRset keys this view does not see (a prefetch must not be answered from them).
        self._hidden: frozenset[Key] = frozenset()
        self.hits = 0
        self.misses = 0
        #: Called after every flush: caches built from this one (the answer cache) drop theirs.
        self.flush_listeners: list[Callable[[], None]] = []
        #: Validated NSEC ranges of secure negative answers (RFC 8198, aggressive NSEC).
        self.nsec_ranges = NsecRanges()
        #: Referrals' proofs that a child zone has no DS: zone -> (expiry, NSEC/NSEC3 + RRSIGs).
        self._ds_denials: LRUCache[str, tuple[float, tuple[Record, ...]]] = LRUCache(
            MAX_DS_DENIALS)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int | None:
        """What the entries cost as estimated, with a byte budget; None without one."""
        return int(self._entries.currsize) if self.settings.max_bytes is not None else None

    # -- RRsets ---------------------------------------------------------------

    def store_rrset(self, records: list[Record] | tuple[Record, ...], rank: Rank, *,
                    security: Security | None = None,
                    rrsigs: tuple[Record, ...] = (),
                    proof: tuple[Record, ...] = ()) -> bool:
        """Store one RRset; returns False when refused (TTL 0, outranked by live data,
        bogus, or unvalidated where validated data of its rank lives)."""
        if not records or security is Security.BOGUS:
            return False
        first = records[0]
        ttl = self._clamp(min(rr.ttl for rr in records))
        if ttl <= 0:
            return False
        key = ("rr", first.name, first.rtype, first.rclass)
        now = self._timer()
        current = self._entries.get(key)
        # Only live data defends its rank: stale data kept for RFC 8767 yields to anything,
        # and a prefetch (key hidden) replaces what it refreshes.
        if (isinstance(current, CachedRRset) and current.rank > rank
                and current.expires_at > now and key not in self._hidden):
            return False
        if (isinstance(current, CachedRRset) and current.security is Security.SECURE
                and security is not Security.SECURE and current.rank >= rank
                and current.expires_at > now and key not in self._hidden):
            return False  # RFC 4035 §4.5: validated data is not replaced by unchecked data
        unique: dict[str, Record] = {}
        for rr in records:
            unique.setdefault(rr.rdata_key, rr.with_ttl(ttl))
        if (isinstance(current, CachedRRset) and current.rank == rank
                and abs(current.expires_at - (now + ttl)) < _SAME_EXPIRY_S
                and key not in self._hidden and _same_rdata(current.records, unique, ttl)
                and current.security is security and len(current.proof) == len(proof)):
            # The same RRset again within the second (the glue of a referral, then of the
            # answer): storing it anew would change nothing a client sees, and each store
            # leaves a dead item in the cache's expiry heap until that heap is compacted.
            return True
        self._entries[key] = CachedRRset(
            records=tuple(unique.values()), rank=rank, stored_at=now, expires_at=now + ttl,
            # Without DNSSEC both are empty: no generator to build for them.
            security=security,
            rrsigs=tuple(rr.with_ttl(ttl) for rr in rrsigs) if rrsigs else (),
            proof=tuple(rr.with_ttl(min(ttl, rr.ttl)) for rr in proof) if proof else (),
        )
        if proof and security is Security.SECURE and rrsigs:
            signer = _signer(rrsigs[0])
            if signer is not None:  # RFC 8198 §5.3: the wildcard may answer other names
                self.nsec_ranges.learn_wildcard(signer, first.name,
                                                tuple(unique.values()), rrsigs, proof, now)
        return True

    def signed_rrset(
        self, name: str, rtype: int, rclass: int = 1, *, min_rank: Rank = Rank.ADDITIONAL
    ) -> SignedRRset | None:
        """`rrset` with the RRSIGs kept beside it and its security status."""
        live = self._live(name, rtype, rclass, min_rank)
        if live is None:
            return None
        entry, left = live
        return SignedRRset(tuple(rr.with_ttl(left) for rr in entry.records),
                           tuple(rr.with_ttl(left) for rr in entry.rrsigs), entry.security,
                           tuple(rr.with_ttl(min(left, rr.ttl)) for rr in entry.proof))

    def rrset(
        self, name: str, rtype: int, rclass: int = 1, *, min_rank: Rank = Rank.ADDITIONAL
    ) -> tuple[Record, ...] | None:
        """The live RRset with TTLs counted down, or None (also when ranked below `min_rank`)."""
        live = self._live(name, rtype, rclass, min_rank)
        if live is None:
            return None
        entry, left = live
        return tuple(rr.with_ttl(left) for rr in entry.records)

    def stored_rrset(
        self, name: str, rtype: int, rclass: int = 1
    ) -> tuple[tuple[Record, ...], int] | None:
        """The live RRset's records as stored (TTLs not counted down) and the TTL left, or
        None: for readers of names, addresses or the TTL alone, spared a copy per record."""
        live = self._live(name, rtype, rclass, Rank.ADDITIONAL)
        return (live[0].records, live[1]) if live is not None else None

    def _live(self, name: str, rtype: int, rclass: int,
              min_rank: Rank) -> tuple[CachedRRset, int] | None:
        """The entry of a live, visible RRset of at least `min_rank`, and its TTL left."""
        key = ("rr", name, rtype, rclass)
        if self._hidden and key in self._hidden:
            return None
        entry = self._entries.get(key)
        if not isinstance(entry, CachedRRset) or entry.rank < min_rank:
            return None
        left = self._ttl_left(entry.expires_at)
        return (entry, left) if left > 0 else None

    def rank_of(self, name: str, rtype: int, rclass: int = 1) -> Rank | None:
        entry = self._entries.get(("rr", name, rtype, rclass))
        if not isinstance(entry, CachedRRset) or entry.expires_at <= self._timer():
            return None  # stale data kept for RFC 8767 has no rank to defend
        return entry.rank

    # -- negative answers -----------------------------------------------------

    def store_negative(self, question: Question, rcode: Rcode, soa: Record | None, *,
                       security: Security | None = None,
                       proof: tuple[Record, ...] = ()) -> bool:
        """Cache NXDOMAIN/NODATA for `question` for min(SOA TTL, MINIMUM) (RFC 2308 §5),
        with its DNSSEC proof (RFC 4035 §4.5); a bogus one never."""
        if soa is None or security is Security.BOGUS:
            return False  # RFC 2308 §5: without an SOA, negative answers are not cached
        ttl = min(soa.ttl, soa.soa_minimum)
        ttl = max(self.settings.min_negative_ttl_s, min(ttl, self.settings.max_negative_ttl_s))
        if ttl <= 0:
            return False
        now = self._timer()
        kept = self._kept_negative_soa(soa, security)
        expires_at = now + ttl
        if kept is not None:
            # The zone's SOA is cached already, same data, as trusted: it stays as it is and
            # this answer shows it counted down (RFC 2181 §5.4.1: same-rank data does not
            # replace live data; Unbound's rrset cache keeps an equal RRset's TTL too), so a
            # negative answer's TTL never grows back when another name of the zone is denied.
            expires_at = min(expires_at, kept.expires_at)
            ttl = self._ttl_left(expires_at)
            if ttl <= 0:
                return False
        if security is Security.SECURE:  # RFC 8198: its NSEC ranges answer other names
            self.nsec_ranges.learn(soa.name, soa.with_ttl(ttl), proof, now, ttl)
        entry = NegativeEntry(
            rcode=rcode, name=question.name, soa=soa.with_ttl(ttl), stored_at=now,
            expires_at=expires_at, security=security,
            proof=tuple(rr.with_ttl(min(rr.ttl, ttl)) for rr in proof),
        )
        # The SOA is an RRset of its own too: a later negative answer from the same zone with
        # a different SOA (a new serial) replaces it, and every negative entry of the zone
        # shows the new one (as the RRset references in Unbound's message cache do; testbound
        # ttl_msg). Kept apart from the SOA RRset proper: its TTL is the negative one
        # (Unbound's PACKED_RRSET_SOA_NEG), so a later SOA question still gets the real record.
        if kept is None:
            self._entries[("negsoa", soa.name, soa.rclass)] = entry
        if rcode == Rcode.NXDOMAIN:
            self._entries[("nx", question.name, question.rclass)] = entry
        else:
            self._entries[("nodata", question.name, question.rtype, question.rclass)] = entry
        return True

    def store_ds_denial(self, zone: str, proof: tuple[Record, ...]) -> None:
        """Keep a referral's NSEC/NSEC3 proof that `zone` has no DS (RFC 4035 §5.2,
        RFC 5155 §8.9 opt-out), unvalidated: the chain of trust checks it instead of asking
        the parent for the DS again (Unbound keeps it in its negative cache). It lives as long
        as its shortest record, at most cache-max-negative-ttl; it never answers a client."""
        if not proof:
            return
        ttl = min(min(rr.ttl for rr in proof), self.settings.max_negative_ttl_s)
        if ttl > 0:
            self._ds_denials[zone] = (self._timer() + ttl, proof)

    def ds_denial(self, zone: str) -> tuple[Record, ...] | None:
        """A live referral proof that `zone` has no DS, TTLs counted down."""
        found = self._ds_denials.get(zone)
        if found is None:
            return None
        left = int(found[0] - self._timer())
        if left <= 0:
            self._ds_denials.pop(zone, None)
            return None
        return tuple(rr.with_ttl(min(rr.ttl, left)) for rr in found[1])

    def _kept_negative_soa(self, soa: Record,
                           security: Security | None) -> NegativeEntry | None:
        """The zone's live negative SOA if a new negative answer with `soa` leaves it in
        place: the same RDATA, and the new one no better validated (a secure one replaces
        an unvalidated one, anything replaces a bogus one)."""
        latest = self._entries.get(("negsoa", soa.name, soa.rclass))
        if not isinstance(latest, NegativeEntry) or latest.soa is None:
            return None
        if latest.soa.rdata_key != soa.rdata_key or self._ttl_left(latest.expires_at) <= 0:
            return None
        if security is Security.SECURE and latest.security is not Security.SECURE:
            return None
        return None if latest.security is Security.BOGUS else latest

    def negative(self, question: Question, *, within: str = ".") -> NegativeAnswer | None:
        """A live NXDOMAIN for the name or an ancestor (RFC 8020 §2) at or below `within`,
        or a NODATA for the type."""
        entry = self._entries.get(("nodata", question.name, question.rtype, question.rclass))
        # Expired entries may linger for serve-stale: they must not hide a live one above.
        found = self._lowered(entry) if isinstance(entry, NegativeEntry) else None
        if found is not None:
            return found
        for name in names.ancestors(question.name):
            if within != "." and not names.is_subdomain(name, within):
                break
            entry = self._entries.get(("nx", name, question.rclass))
            found = self._lowered(entry) if isinstance(entry, NegativeEntry) else None
            if found is not None:
                return found
        return None

    def synthesized_negative(self, question: Question, *,
                             within: str = ".") -> NegativeAnswer | None:
        """The NXDOMAIN or NODATA that validated NSEC ranges prove for `question` (RFC 8198),
        secure by construction: only secure ranges are kept."""
        if question.rclass != 1:
            return None
        found = self.nsec_ranges.synthesize(question.name, question.rtype, self._timer(),
                                            within=within)
        if found is None:
            return None
        return NegativeAnswer(rcode=found.rcode, name=question.name, soa=found.soa,
                              security=Security.SECURE, proof=found.proof)

    def synthesized_answer(self, question: Question, *,
                           within: str = ".") -> SynthesizedAnswer | None:
        """The answer a cached secure wildcard gives `question` (RFC 8198 §5.3), if a
        cached range proves no closer name exists."""
        if question.rclass != 1:
            return None
        return self.nsec_ranges.synthesize_answer(question.name, question.rtype,
                                                  self._timer(), within=within)

    def negative_soa_left(self, soa: Record) -> int | None:
        """The TTL left of the zone's cached negative SOA if it holds `soa`'s RDATA (None:
        none live, or another SOA): what a negative answer with `soa` shows once cached."""
        entry = self._entries.get(("negsoa", soa.name, soa.rclass))
        if not isinstance(entry, NegativeEntry) or entry.soa is None:
            return None
        if entry.soa.rdata_key != soa.rdata_key:
            return None
        left = self._ttl_left(entry.expires_at)
        return left if left > 0 else None

    def negative_soa_stamp(self, zone: str, rclass: int = 1) -> float | None:
        """When the zone's latest negative SOA was stored (None: none live)."""
        entry = self._entries.get(("negsoa", zone, rclass))
        return entry.stored_at if isinstance(entry, NegativeEntry) else None

    def _lowered(self, entry: NegativeEntry) -> NegativeAnswer | None:
        left = self._ttl_left(entry.expires_at)
        if left <= 0:
            return None
        soa = entry.soa.with_ttl(left) if entry.soa is not None else None
        if soa is not None:
            latest = self._entries.get(("negsoa", soa.name, soa.rclass))
            if isinstance(latest, NegativeEntry) and latest.soa is not None:
                latest_left = self._ttl_left(latest.expires_at)
                if latest_left > 0 and latest.stored_at > entry.stored_at:
                    soa = latest.soa.with_ttl(latest_left)
        return NegativeAnswer(rcode=entry.rcode, name=entry.name, soa=soa,
                              security=entry.security,
                              proof=tuple(rr.with_ttl(left) for rr in entry.proof))

    # -- remembered failures (RFC 9520) -----------------------------------------

    def store_failure(self, question: Question, failure: Failure,
                      ttl_s: int | None = None) -> None:
        """Remember a failure for failure-ttl, or `ttl_s` (a bogus answer: val-bogus-ttl)."""
        ttl = self.settings.failure_ttl_s if ttl_s is None else ttl_s
        if self._hidden:
            return  # a failed prefetch must not turn the still-cached data into SERVFAIL
        if ttl > 0:
            self._entries[("fail", *_qkey(question))] = FailureEntry(
                failure=failure, expires_at=self._timer() + ttl
            )

    def failure(self, question: Question) -> Failure | None:
        entry = self._entries.get(("fail", *_qkey(question)))
        if not isinstance(entry, FailureEntry) or entry.expires_at <= self._timer():
            return None
        return entry.failure

    def forget_failure(self, question: Question) -> None:
        """Drop the remembered failure of `question` (forward-first retries it by iterating)."""
        self._entries.pop(("fail", *_qkey(question)), None)

    # -- delegations ------------------------------------------------------------

    def closest_delegation(self, qname: str) -> Delegation | None:
        """The deepest cached zone cut at or above `qname` whose servers we can reach.

        A cut is usable when at least one NS name has a cached address, or an NS name
        lies outside the zone (its address can be looked up without this very cut).
        """
        stored = self.stored_rrset
        for zone in names.ancestors(qname):
            live = stored(zone, RRType.NS)
            if live is None:
                continue
            ns_set, ns_ttl = live
            servers = []
            for rr in ns_set:
                target = rr.target
                addresses: list[str] = []
                for rtype in (RRType.A, RRType.AAAA):
                    glue = stored(target, rtype)
                    if glue is not None:
                        addresses.extend(rec.address for rec in glue[0])
                servers.append(NameServer(target, tuple(addresses)))
            usable = any(s.addresses for s in servers) or any(
                not names.is_subdomain(s.name, zone) for s in servers
            )
            if usable:
                return Delegation(
                    zone=zone, servers=tuple(servers), source=CutSource.CACHE, ttl=ns_ttl
                )
        return None

    # -- serve-stale (RFC 8767) and prefetch ---------------------------------------

    def stale_rrset(
        self, name: str, rtype: int, rclass: int = 1, *, ttl: int
    ) -> tuple[Record, ...] | None:
        """An expired RRset still kept for serve-stale, its TTLs set to `ttl` (RFC 8767 §4).

        None when the RRset is live (the normal lookup answers it), absent, or kept no
        longer (past max-stale-ttl, or serve-stale is off).
        """
        if not self.settings.stale_answer_enable:
            return None
        entry = self._entries.get(("rr", name, rtype, rclass))
        if not isinstance(entry, CachedRRset) or self._ttl_left(entry.expires_at) > 0:
            return None
        return tuple(rr.with_ttl(ttl) for rr in entry.records)

    def stale_negative(self, question: Question, *, ttl: int) -> NegativeAnswer | None:
        """An expired NODATA for the type, or NXDOMAIN at or above the name, kept stale."""
        if not self.settings.stale_answer_enable:
            return None
        keys: list[Key] = [("nodata", question.name, question.rtype, question.rclass)]
        keys += [("nx", name, question.rclass) for name in names.ancestors(question.name)]
        for key in keys:
            entry = self._entries.get(key)
            if isinstance(entry, NegativeEntry) and self._ttl_left(entry.expires_at) <= 0:
                soa = entry.soa.with_ttl(ttl) if entry.soa is not None else None
                return NegativeAnswer(rcode=entry.rcode, name=entry.name, soa=soa)
        return None

    def rrset_info(self, name: str, rtype: int, rclass: int = 1) -> RRsetInfo | None:
        """When a live RRset was stored and with what TTL (prefetch compares it with the rest)."""
        entry = self._entries.get(("rr", name, rtype, rclass))
        if not isinstance(entry, CachedRRset) or entry.expires_at <= self._timer():
            return None
        return RRsetInfo(
            rank=entry.rank, stored_at=entry.stored_at, expires_at=entry.expires_at,
            original_ttl=entry.records[0].ttl, ttl_left=self._ttl_left(entry.expires_at),
        )

    def forget_stale(self, question: Question) -> int:
        """Drop expired data kept for `question` (its type, a CNAME, NODATA, NXDOMAIN at it).

        Called once a resolution of `question` succeeded: what it found (perhaps with TTL 0,
        so not cached) supersedes the old data, which must not be served stale again.
        """
        name, rtype, rclass = _qkey(question)
        keys = [("rr", name, rtype, rclass), ("rr", name, int(RRType.CNAME), rclass),
                ("nodata", name, rtype, rclass), ("nx", name, rclass)]
        dropped = 0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and self._ttl_left(entry.expires_at) <= 0:
                self._entries.pop(key, None)
                dropped += 1
        return dropped

    def hiding(self, rrsets: Iterable[tuple[str, int, int]]) -> RecordCache:
        """A view of this cache that stores into it but does not see the given RRsets.

        `rrsets` are (owner, type, class). A prefetch resolves through such a view, so the
        engine asks upstream for what it refreshes instead of answering from the cache,
        while clients keep getting the cached copies until the new ones replace them.
        """
        view = copy.copy(self)  # shares the entries, the timer and the settings
        view._hidden = frozenset(("rr", *key) for key in rrsets)
        return view


def _same_rdata(records: tuple[Record, ...], unique: dict[str, Record], ttl: int) -> bool:
    """Whether `records` hold exactly the RDATA in `unique`, with TTL `ttl` when stored."""
    return (len(records) == len(unique) and records[0].ttl == ttl
            and all(rr.rdata_key in unique for rr in records))


def _qkey(question: Question) -> tuple[str, int, int]:
    return (question.name, question.rtype, question.rclass)



def _signer(rrsig: Record) -> str | None:
    try:
        return Rrsig.from_record(rrsig).signer
    except MalformedRdata:
        return None
