"""What the record cache holds, as values: trust ranks, cached RRsets and negative answers,
and the entries the cache file saves and restores (the store they live in is
`resolver.engine.expiring_store`).

`resolver.engine.cache.RecordCache` owns the rules (ranks, clamps, serve-stale); this module
only says what an entry is and when the store lets it go (RFC 8767 §5 for data kept stale).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from resolver.dns.wire import Rcode, Record
from resolver.dnssec.security import Security
from resolver.engine.failure import Failure


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
    security: Security | None = None
    rrsigs: tuple[Record, ...] = ()
    #: For a wildcard expansion, the NSEC/NSEC3 records (and RRSIGs) proving no closer
    #: name exists: a DO client needs them to check the answer (RFC 4035 §3.1.3.3).
    proof: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class SignedRRset:
    """A live RRset with its RRSIGs, wildcard proof and security status, TTLs lowered."""

    records: tuple[Record, ...]
    rrsigs: tuple[Record, ...]
    security: Security | None
    proof: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class NegativeAnswer:
    """A cached NXDOMAIN or NODATA with its SOA, TTLs already lowered."""

    rcode: Rcode
    name: str
    soa: Record | None
    security: Security | None = None
    #: The SOA's RRSIGs, then the NSEC/NSEC3 records and their RRSIGs.
    proof: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RRsetInfo:
    """Bookkeeping of one live cached RRset (what prefetch decides on)."""

    rank: Rank
    stored_at: float
    expires_at: float
    #: The TTL it was stored with, after the cache-min/max-ttl clamps.
    original_ttl: int
    ttl_left: int


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    rcode: Rcode
    name: str
    soa: Record | None
    stored_at: float
    expires_at: float
    security: Security | None = None
    proof: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class FailureEntry:
    failure: Failure
    expires_at: float


Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedRRset:
    """One cached RRset as a cache file holds it."""

    #: With the TTL they were stored with (after the clamps).
    records: tuple[Record, ...]
    rank: Rank
    #: Seconds until it expires; at or below 0 it is kept for serve-stale only.
    ttl_left: float
    #: Its DNSSEC status and signatures: a validating resolver reloads it as secure data,
    #: not as unsigned data to check again (which would find it bogus).
    security: Security | None = None
    rrsigs: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedNegative:
    """One cached NXDOMAIN (any type at `name`) or NODATA (`rtype` at `name`)."""

    rcode: Rcode
    name: str
    rclass: int
    #: The type with no data; None for NXDOMAIN, which covers every type.
    rtype: int | None
    #: With the negative TTL it was stored with (RFC 2308 §5).
    soa: Record
    ttl_left: float
    security: Security | None = None
    #: The SOA's RRSIGs, then the NSEC/NSEC3 records and their RRSIGs (RFC 4035 §3.1.3).
    proof: tuple[Record, ...] = ()


SavedEntry = SavedRRset | SavedNegative


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """The cache's entries at one instant: references to immutable values, so it is taken
    at once on the event loop and read anywhere afterwards (in a thread, for instance)."""

    taken_at: float
    #: How long expired data is kept for serve-stale; None when serve-stale is off.
    keep_stale_s: float | None
    items: dict[Key, Any]

    def entries(self) -> Iterator[SavedEntry]:
        """The RRsets and negative answers still usable (live, or kept for serve-stale)."""
        floor = -self.keep_stale_s if self.keep_stale_s is not None else 0.0
        for key, entry in self.items.items():
            left = entry.expires_at - self.taken_at if hasattr(entry, "expires_at") else 0.0
            if left <= floor:
                continue
            if getattr(entry, "security", None) in _NOT_SAVED:
                continue  # data that failed validation is never written
            if isinstance(entry, CachedRRset) and entry.proof:
                continue  # a wildcard expansion: fetched again with its proof after a restart
            if isinstance(entry, CachedRRset):
                yield SavedRRset(records=entry.records, rank=entry.rank, ttl_left=left,
                                 security=entry.security, rrsigs=entry.rrsigs)
            elif isinstance(entry, NegativeEntry) and entry.soa is not None and key[0] != "negsoa":
                yield SavedNegative(
                    rcode=entry.rcode, name=key[1], rclass=key[-1],
                    rtype=int(key[2]) if key[0] == "nodata" else None, soa=entry.soa,
                    ttl_left=left, security=entry.security, proof=entry.proof,
                )


#: Security states a snapshot leaves out (bogus data is not even cached).
_NOT_SAVED = (Security.BOGUS, Security.INDETERMINATE)


def expiry(_key: Key, value: Any, _now: float) -> float:
    return float(value.expires_at)


def expiry_keeping_stale(keep_s: float) -> Callable[[Key, Any, float], float]:
    """A time-to-use that keeps data `keep_s` past expiry (RFC 8767 §5), failures never."""

    def ttu(_key: Key, value: Any, _now: float) -> float:
        if isinstance(value, FailureEntry):
            return value.expires_at
        return float(value.expires_at) + keep_s

    return ttu
