"""The record cache's operator and cache-file side: flush, dump, snapshot and restore.

A mixin of `resolver.engine.cache.RecordCache`: these read and write the same entries as the
lookups but serve the control channel (`resolver.daemon.control`) and the cache file
(`resolver.daemon.cache_file`), not resolutions. TTLs are clamped again on restore by the
settings in force (Unbound cache-min-ttl / cache-max-ttl).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

from cachetools import LRUCache

from resolver.dns import names
from resolver.dns.wire import Record, RRType
from resolver.engine.cache_entries import (
    CachedRRset,
    CacheSnapshot,
    Key,
    NegativeAnswer,
    NegativeEntry,
    SavedEntry,
    SavedRRset,
)
from resolver.engine.expiring_store import ExpiringStore
from resolver.engine.nsec_ranges import NsecRanges
from resolver.engine.settings import CacheSettings


class CacheOperations:
    """Flush, dump, snapshot and restore over the record cache's entries."""

    settings: CacheSettings
    _timer: Callable[[], float]
    _entries: ExpiringStore[Key]
    nsec_ranges: NsecRanges
    _ds_denials: LRUCache[str, tuple[float, tuple[Record, ...]]]
    flush_listeners: list[Callable[[], None]]

    def rrset(self, name: str, rtype: int, rclass: int = 1) -> tuple[Record, ...] | None:
        """The live RRset (resolver.engine.cache)."""
        raise NotImplementedError

    def stale_rrset(self, name: str, rtype: int, rclass: int = 1, *,
                    ttl: int) -> tuple[Record, ...] | None:
        """An RRset kept for serve-stale (resolver.engine.cache)."""
        raise NotImplementedError

    def _lowered(self, entry: NegativeEntry) -> NegativeAnswer | None:
        """A live negative entry, TTLs lowered (resolver.engine.cache)."""
        raise NotImplementedError

    # -- operator view ----------------------------------------------------------

    def flush(self, name: str, *, subtree: bool = False, rtype: int | None = None) -> int:
        """Remove entries for `name` (and below, with `subtree`); returns how many."""
        doomed = [
            key
            for key in list(self._entries.keys())
            if _key_name(key) is not None
            and (_key_name(key) == name
                 or (subtree and names.is_subdomain(str(_key_name(key)), name)))
            and (rtype is None or _key_type(key) == rtype)
        ]
        for key in doomed:
            self._entries.pop(key, None)
        if rtype is None or rtype == RRType.NSEC:  # a range may prove `name` absent
            self.nsec_ranges.forget(name)
        if rtype is None or rtype == RRType.DS:
            for zone in [z for z in self._ds_denials
                         if z == name or (subtree and names.is_subdomain(z, name))]:
                self._ds_denials.pop(zone, None)
        for listener in self.flush_listeners:
            listener()
        return sum(1 for key in doomed if key[0] != "negsoa")  # that one is bookkeeping

    def dump(self, *, name: str | None = None, rtype: int | None = None) -> Iterator[str]:
        """Every live entry as text, TTLs counted down; entries kept for serve-stale marked.

        `name` and `rtype` restrict the listing to one owner name and one type (an
        NXDOMAIN, which covers every type, is listed for any `rtype`).
        """
        for key in list(self._entries.keys()):
            if key[0] == "negsoa" or (name is not None and _key_name(key) != name):
                continue
            if rtype is not None and _key_type(key) not in (None, rtype):
                continue
            entry = self._entries.get(key)
            if isinstance(entry, CachedRRset):
                for rr in self.rrset(key[1], key[2], key[3]) or ():
                    yield f"{rr.to_text()}\t; rank={entry.rank.name.lower()}"
                for rr in self.stale_rrset(key[1], key[2], key[3], ttl=0) or ():
                    yield (f"{rr.to_text()}\t; rank={entry.rank.name.lower()}, "
                           f"{self._stale_note(entry.expires_at)}")
            elif isinstance(entry, NegativeEntry):
                neg = self._lowered(entry)
                what = "NXDOMAIN" if key[0] == "nx" else f"NODATA {key[2]}"
                if neg is not None:
                    yield f"{key[1]}\t{self._ttl_left(entry.expires_at)}\t; negative {what}"
                elif self.settings.stale_answer_enable:
                    yield f"{key[1]}\t0\t; negative {what}, {self._stale_note(entry.expires_at)}"

    # -- the cache file (resolver.daemon.cache_file) -----------------------------

    def snapshot(self) -> CacheSnapshot:
        """Every entry as it is now, taken in one go (cheap: no entry is copied)."""
        keep = self.settings.max_stale_ttl_s if self.settings.stale_answer_enable else None
        return CacheSnapshot(self._timer(), keep, self._entries.stored_items())

    def restore(self, entries: Iterable[SavedEntry]) -> int:
        """Put saved entries back, TTLs clamped again by the current settings; how many.

        `ttl_left` counts from now. An entry at or past its expiry is taken only as stale
        data, when serve-stale is on and keeps it still. Live data of a higher rank stays,
        as for `store_rrset`: a reload never promotes glue over an answer.
        """
        now = self._timer()
        floor = -self.settings.max_stale_ttl_s if self.settings.stale_answer_enable else 0
        taken = 0
        for saved in entries:
            if isinstance(saved, SavedRRset):
                ttl = self._clamp(saved.records[0].ttl) if saved.records else 0
                left = min(saved.ttl_left, ttl)
                if ttl <= 0 or left <= floor:
                    continue
                first = saved.records[0]
                key: Key = ("rr", first.name, first.rtype, first.rclass)
                current = self._entries.get(key)
                if (isinstance(current, CachedRRset) and current.rank > saved.rank
                        and current.expires_at > now):
                    continue
                self._entries[key] = CachedRRset(
                    records=tuple(rr.with_ttl(ttl) for rr in saved.records), rank=saved.rank,
                    stored_at=now - (ttl - left), expires_at=now + left,
                    security=saved.security, rrsigs=tuple(rr.with_ttl(ttl) for rr in saved.rrsigs),
                )
            else:
                ttl = max(self.settings.min_negative_ttl_s,
                          min(saved.soa.ttl, self.settings.max_negative_ttl_s))
                left = min(saved.ttl_left, ttl)
                if ttl <= 0 or left <= floor:
                    continue
                entry = NegativeEntry(rcode=saved.rcode, name=saved.name,
                                       soa=saved.soa.with_ttl(ttl), stored_at=now - (ttl - left),
                                       expires_at=now + left, security=saved.security,
                                       proof=tuple(rr.with_ttl(ttl) for rr in saved.proof))
                if saved.rtype is None:
                    self._entries[("nx", saved.name, saved.rclass)] = entry
                else:
                    self._entries[("nodata", saved.name, saved.rtype, saved.rclass)] = entry
                soa_key = ("negsoa", saved.soa.name, saved.soa.rclass)
                latest = self._entries.get(soa_key)
                if not isinstance(latest, NegativeEntry) or latest.stored_at < entry.stored_at:
                    self._entries[soa_key] = entry
            taken += 1
        return taken

    def _stale_note(self, expires_at: float) -> str:
        return f"stale (expired {math.floor(self._timer() - expires_at)} s ago)"

    # -- helpers ----------------------------------------------------------------

    def _clamp(self, ttl: int) -> int:
        if ttl <= 0:
            return 0
        return max(self.settings.min_ttl_s, min(ttl, self.settings.max_ttl_s))

    def _ttl_left(self, expires_at: float) -> int:
        return math.floor(expires_at - self._timer() + 1e-9)


def _key_name(key: Key) -> str | None:
    return key[1] if len(key) > 1 and isinstance(key[1], str) else None


def _key_type(key: Key) -> int | None:
    if key[0] in ("rr", "nodata", "fail"):
        return int(key[2])
    return None
