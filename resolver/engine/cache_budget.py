"""The cache's size: a count of entries or a number of bytes, and how bytes are shared.

`--cache-size` (config key `cache-size`) takes either form:
- a plain integer counts entries, as it always has (README: "at most --cache-size
  entries"): each cache holds at most that many RRsets, negative answers or replies;
- a number with a unit is a size in bytes, written as Unbound writes msg-cache-size and
  rrset-cache-size (unbound.conf(5), msg-cache-size: "A plain number is in bytes, append
  'k', 'm' or 'g' for kilobytes, megabytes or gigabytes (1024*1024 bytes in a
  megabyte)"): `512k`, `64m`, `1g`, and `b` for plain bytes (`1000000b`), in either case.

Here a plain integer keeps meaning entries, unlike in Unbound, so that existing command lines
and configuration files keep their meaning; bytes need their unit.

A byte budget is shared by the two caches that hold answers: two thirds to the record cache
(RRsets, negative answers, failures), one third to the reply cache (whole replies as bytes).
Unbound's tuning advice is the same ratio: rrset-cache-size twice msg-cache-size ("How to
optimise", NLnet Labs documentation), the record cache being the one that answers
everything the reply cache cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from resolver.engine.settings import CacheSettings

__all__ = ["DEFAULT_CACHE_SIZE", "CacheSize", "cache_size_text", "parse_cache_size",
           "split_bytes", "with_cache_size"]

#: Unbound's multipliers: powers of 1024.
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"\s*([0-9]+)\s*([bkmg])?\s*", re.IGNORECASE)
#: Below this a byte budget holds next to nothing (one entry costs about 1-2 KB).
MIN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CacheSize:
    """Either `entries` or `max_bytes` is set, never both."""

    entries: int | None = None
    max_bytes: int | None = None

    def __str__(self) -> str:
        if self.max_bytes is not None:
            return _bytes_text(self.max_bytes)
        return f"{self.entries} entries"


def parse_cache_size(value: int | str) -> CacheSize:
    """`7` or `"7"`: 7 entries; `"64m"`: 64 MiB. ValueError says what is accepted."""
    if isinstance(value, bool):
        raise ValueError("must be a number of entries or a size such as 64m")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be at least 1 entry, not {value}")
        return CacheSize(entries=value)
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"must be a number of entries or a size such as 512k, 64m or 1g, "
                         f"not {value!r}")
    number, unit = int(match.group(1)), match.group(2)
    if unit is None:
        return parse_cache_size(number)
    size = number * _UNITS[unit.lower()]
    if size < MIN_BYTES:
        raise ValueError(f"must be at least 64k, not {value!r}")
    return CacheSize(max_bytes=size)


#: `--cache-size` when none is given: about the 100,000 RRsets the count used to allow
#: (an RRset with its records costs 1.2-2 KB, an NXDOMAIN with its SOA about 2 KB).
DEFAULT_CACHE_SIZE = "256m"


def with_cache_size(settings: CacheSettings, size: CacheSize) -> CacheSettings:
    """`settings` bounded by `size`: in entries (no byte budget) or in bytes."""
    if size.max_bytes is not None:
        return replace(settings, max_bytes=size.max_bytes)
    return replace(settings, max_entries=size.entries or settings.max_entries, max_bytes=None)


def cache_size_text(settings: CacheSettings) -> str:
    """The bound of `settings` as the configuration summary says it."""
    if settings.max_bytes is not None:
        records, replies = split_bytes(settings.max_bytes)
        return (f"{_bytes_text(settings.max_bytes)} ({records / 2**20:.1f} MiB for records, "
                f"{replies / 2**20:.1f} MiB for replies)")
    return f"{settings.max_entries} entries"


def split_bytes(total: int) -> tuple[int, int]:
    """(record cache, reply cache) bytes of a budget: two thirds and one third."""
    records = total * 2 // 3
    return records, total - records


def _bytes_text(size: int) -> str:
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit} bytes"
    return f"{size} bytes"
