"""What one cache entry costs in memory, in bytes: the measure of a byte-bounded cache.

A cache bounded in entries is not bounded in memory: one RRset of 4,000 records is one
entry, and so is a single A record (docs/reliability.md, issue "memory is bounded in
entries"). Unbound bounds msg-cache-size and rrset-cache-size in bytes and counts each
entry's actual allocation (`msgreply_sizefunc`, `ub_rrset_sizefunc`); this module does the
same for Python objects.

Rules:
- The size of a value is the sum of `sys.getsizeof` over every distinct object reachable
  from it through tuples, lists, dicts, sets, instance dicts and slots, each counted once.
  Objects shared by every entry are not counted: None, booleans, small integers, enum
  members, classes and functions.
- Each entry also costs its slot in the containers that hold it: the key, the hash-table
  slots and the bookkeeping of cachetools' TLRUCache (its size map, ordered item map and
  expiry heap). `CONTAINER_OVERHEAD` is that cost, measured with tracemalloc on CPython
  3.11 (tests/unit/test_entry_size.py checks the total within 25%).
- The walk is bounded (`_MAX_OBJECTS`): an entry too large to walk is already one a
  byte budget must refuse, so the estimate stops early with what it has counted so far
  times a margin rather than spend unbounded time.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

__all__ = ["CONTAINER_OVERHEAD", "deep_size", "entry_size", "record_cache_entry_size"]

#: Bytes an entry costs beyond its key and value: a dict slot in cachetools' data and size
#: maps, an OrderedDict node, a TLRUCache item with its expiry float, a heap slot, and the
#: size integer itself (measured: tests/unit/test_entry_size.py).
CONTAINER_OVERHEAD = 150

#: Objects of these types are shared by all entries (or immortal): never counted.
_SHARED = (type(None), bool, type, types.FunctionType, types.BuiltinFunctionType,
           types.ModuleType, enum.Enum)
#: CPython keeps one object for each of these integers.
_SMALL_INT_MIN, _SMALL_INT_MAX = -5, 256
#: Most objects one estimate visits; past it the rest is extrapolated.
_MAX_OBJECTS = 100_000


def deep_size(*values: Any) -> int:
    """Bytes of `values` and of every distinct object they hold, each counted once (an
    object shared by two of them, such as a key's name and its record's, counts once)."""
    seen: set[int] = set()
    total = 0
    stack: list[Any] = list(values)
    visited = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        if type(obj) is int and _SMALL_INT_MIN <= obj <= _SMALL_INT_MAX:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        visited += 1
        if visited >= _MAX_OBJECTS:
            # The rest is at least as large again as what was walked (a margin, not a
            # measure): such an entry is over any sensible budget anyway.
            return total * 2
        kind = type(obj)
        if kind in (str, bytes, float, int, complex):
            continue
        if kind in (tuple, list, set, frozenset):
            stack.extend(obj)
            continue
        if kind is dict:
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        attributes = getattr(obj, "__dict__", None)
        if attributes is not None:
            stack.append(attributes)
        for klass in kind.__mro__:
            for slot in klass.__dict__.get("__slots__", ()):
                member = getattr(obj, slot, None)
                if member is not None:
                    stack.append(member)
    return total


def entry_size(key: Any, value: Any) -> int:
    """Bytes one cache entry costs: its key, its value and its place in the containers."""
    return CONTAINER_OVERHEAD + deep_size(key, value)


def record_cache_entry_size(key: tuple[Any, ...], value: Any) -> int:
    """`entry_size` for the record cache's keys: a zone's latest negative SOA ("negsoa") is
    the very entry its NXDOMAIN or NODATA key holds, so it costs only its key and slot."""
    if key and key[0] == "negsoa":
        return CONTAINER_OVERHEAD + deep_size(key)
    return entry_size(key, value)
