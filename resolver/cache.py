"""The TTL-aware record cache: RRsets, negative answers and remembered failures.

Rules:
- Keys are canonical (owner, type, class); one entry holds one RRset (RFC 2181 §5).
- Entries expire by absolute time from one injected timer (cachetools TLRUCache); a
  lookup returns TTLs lowered by the time spent in the cache, never more than stored.
- TTLs are clamped on entry (Unbound cache-min-ttl / cache-max-ttl); TTL 0 is never
  stored: such data serves only the resolution that fetched it.
- Trust ranks (RFC 2181 §5.4.1): live data is never replaced by data of lower rank.
- Negative answers (RFC 2308 §5) live for min(SOA TTL, SOA MINIMUM), clamped by
  cache-max-negative-ttl; an NXDOMAIN also answers for every name below (RFC 8020).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache

from resolver import names
from resolver.config import CacheSettings
from resolver.delegation import Delegation, NameServer
from resolver.wire import Question, Rcode, Record, RRType


class Rank(enum.IntEnum):
    """How much a cached RRset is trusted (RFC 2181 §5.4.1, highest last)."""

    ADDITIONAL = 1  #: glue and other additional-section data
    AUTHORITY = 2  #: authority-section data of a non-authoritative reply (a referral's NS)
    ANSWER = 3  #: answer data of a non-authoritative reply (a forwarder's, for instance)
    AUTHORITATIVE_AUTHORITY = 4  #: authority section of an authoritative reply
    AUTHORITATIVE_ANSWER = 5  #: the answer section of an authoritative reply


@dataclass(frozen=True, slots=True)
class CachedRRset:
    records: tuple[Record, ...]
    rank: Rank
    stored_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class NegativeAnswer:
    """A cached NXDOMAIN or NODATA with its SOA, TTLs already lowered."""

    rcode: Rcode
    name: str
    soa: Record | None


@dataclass(frozen=True, slots=True)
class _NegativeEntry:
    rcode: Rcode
    name: str
    soa: Record | None
    stored_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class _FailureEntry:
    reason: str
    expires_at: float


_Key = tuple[Any, ...]


def _expiry(_key: _Key, value: Any, _now: float) -> float:
    return float(value.expires_at)


class RecordCache:
    """RRsets, negative answers and failures, bounded with LRU eviction."""

    def __init__(self, settings: CacheSettings, *, timer: Callable[[], float]) -> None:
        self.settings = settings
        self._timer = timer
        self._entries: TLRUCache[_Key, Any] = TLRUCache(
            maxsize=settings.max_entries, ttu=_expiry, timer=timer
        )
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- RRsets ---------------------------------------------------------------

    def store_rrset(self, records: list[Record] | tuple[Record, ...], rank: Rank) -> bool:
        """Store one RRset; returns False when refused (TTL 0 or outranked by live data)."""
        if not records:
            return False
        first = records[0]
        ttl = self._clamp(min(rr.ttl for rr in records))
        if ttl <= 0:
            return False
        key = ("rr", first.name, first.rtype, first.rclass)
        now = self._timer()
        current = self._entries.get(key)
        if isinstance(current, CachedRRset) and current.rank > rank:
            return False
        unique: dict[str, Record] = {}
        for rr in records:
            unique.setdefault(rr.rdata_key, rr.with_ttl(ttl))
        self._entries[key] = CachedRRset(
            records=tuple(unique.values()), rank=rank, stored_at=now, expires_at=now + ttl
        )
        return True

    def rrset(
        self, name: str, rtype: int, rclass: int = 1, *, min_rank: Rank = Rank.ADDITIONAL
    ) -> tuple[Record, ...] | None:
        """The live RRset with TTLs counted down, or None (also when ranked below `min_rank`)."""
        entry = self._entries.get(("rr", name, rtype, rclass))
        if not isinstance(entry, CachedRRset) or entry.rank < min_rank:
            return None
        left = self._ttl_left(entry.expires_at)
        if left <= 0:
            return None
        return tuple(rr.with_ttl(left) for rr in entry.records)

    def rank_of(self, name: str, rtype: int, rclass: int = 1) -> Rank | None:
        entry = self._entries.get(("rr", name, rtype, rclass))
        return entry.rank if isinstance(entry, CachedRRset) else None

    # -- negative answers -----------------------------------------------------

    def store_negative(self, question: Question, rcode: Rcode, soa: Record | None) -> bool:
        """Cache NXDOMAIN/NODATA for `question` for min(SOA TTL, MINIMUM) (RFC 2308 §5)."""
        if soa is None:  # RFC 2308 §5: without an SOA, negative answers are not cached
            return False
        ttl = min(soa.ttl, soa.soa_minimum)
        ttl = max(self.settings.min_negative_ttl_s, min(ttl, self.settings.max_negative_ttl_s))
        if ttl <= 0:
            return False
        now = self._timer()
        entry = _NegativeEntry(
            rcode=rcode, name=question.name, soa=soa.with_ttl(ttl), stored_at=now, expires_at=now + ttl
        )
        if rcode == Rcode.NXDOMAIN:
            self._entries[("nx", question.name, question.rclass)] = entry
        else:
            self._entries[("nodata", question.name, question.rtype, question.rclass)] = entry
        return True

    def negative(self, question: Question) -> NegativeAnswer | None:
        """A live NXDOMAIN for the name or an ancestor (RFC 8020 §2), or a NODATA for the type."""
        entry = self._entries.get(("nodata", question.name, question.rtype, question.rclass))
        if isinstance(entry, _NegativeEntry):
            return self._lowered(entry)
        for name in names.ancestors(question.name):
            entry = self._entries.get(("nx", name, question.rclass))
            if isinstance(entry, _NegativeEntry):
                return self._lowered(entry)
        return None

    def _lowered(self, entry: _NegativeEntry) -> NegativeAnswer | None:
        left = self._ttl_left(entry.expires_at)
        if left <= 0:
            return None
        soa = entry.soa.with_ttl(left) if entry.soa is not None else None
        return NegativeAnswer(rcode=entry.rcode, name=entry.name, soa=soa)

    # -- remembered failures (RFC 9520) -----------------------------------------

    def store_failure(self, question: Question, reason: str) -> None:
        ttl = self.settings.failure_ttl_s
        if ttl > 0:
            self._entries[("fail", *_qkey(question))] = _FailureEntry(
                reason=reason, expires_at=self._timer() + ttl
            )

    def failure(self, question: Question) -> str | None:
        entry = self._entries.get(("fail", *_qkey(question)))
        return entry.reason if isinstance(entry, _FailureEntry) else None

    # -- delegations ------------------------------------------------------------

    def closest_delegation(self, qname: str) -> Delegation | None:
        """The deepest cached zone cut at or above `qname` whose servers we can reach.

        A cut is usable when at least one NS name has a cached address, or an NS name
        lies outside the zone (its address can be looked up without this very cut).
        """
        for zone in names.ancestors(qname):
            ns_set = self.rrset(zone, RRType.NS)
            if not ns_set:
                continue
            servers = []
            for rr in ns_set:
                target = rr.target
                addresses = tuple(
                    rec.address
                    for rtype in (RRType.A, RRType.AAAA)
                    for rec in self.rrset(target, rtype) or ()
                )
                servers.append(NameServer(target, addresses))
            usable = any(s.addresses for s in servers) or any(
                not names.is_subdomain(s.name, zone) for s in servers
            )
            if usable:
                return Delegation(
                    zone=zone, servers=tuple(servers), source="cache", ttl=ns_set[0].ttl
                )
        return None

    # -- operator view ----------------------------------------------------------

    def flush(self, name: str, *, subtree: bool = False, rtype: int | None = None) -> int:
        """Remove entries for `name` (and below, with `subtree`); returns how many."""
        doomed = [
            key
            for key in list(self._entries.keys())
            if _key_name(key) is not None
            and (_key_name(key) == name or (subtree and names.is_subdomain(str(_key_name(key)), name)))
            and (rtype is None or _key_type(key) == rtype)
        ]
        for key in doomed:
            self._entries.pop(key, None)
        return len(doomed)

    def dump(self) -> Iterator[str]:
        """Every live entry as text, TTLs counted down."""
        for key in list(self._entries.keys()):
            entry = self._entries.get(key)
            if isinstance(entry, CachedRRset):
                for rr in self.rrset(key[1], key[2], key[3]) or ():
                    yield f"{rr.to_text()}\t; rank={entry.rank.name.lower()}"
            elif isinstance(entry, _NegativeEntry):
                neg = self._lowered(entry)
                if neg is not None:
                    what = "NXDOMAIN" if key[0] == "nx" else f"NODATA {key[2]}"
                    yield f"{key[1]}\t{self._ttl_left(entry.expires_at)}\t; negative {what}"

    # -- helpers ----------------------------------------------------------------

    def _clamp(self, ttl: int) -> int:
        if ttl <= 0:
            return 0
        return max(self.settings.min_ttl_s, min(ttl, self.settings.max_ttl_s))

    def _ttl_left(self, expires_at: float) -> int:
        return math.floor(expires_at - self._timer() + 1e-9)


def _qkey(question: Question) -> tuple[str, int, int]:
    return (question.name, question.rtype, question.rclass)


def _key_name(key: _Key) -> str | None:
    return key[1] if len(key) > 1 and isinstance(key[1], str) else None


def _key_type(key: _Key) -> int | None:
    if key[0] in ("rr", "nodata", "fail"):
        return int(key[2])
    return None
