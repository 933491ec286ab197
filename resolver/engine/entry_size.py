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
  slot and the bookkeeping of the store (resolver.engine.expiring_store: an ordered-map
  node, the slot list it shares with the expiry heap, the expiry, sequence and size
  numbers). `CONTAINER_OVERHEAD` is that cost, measured with tracemalloc on CPython 3.11
  (tests/unit/test_entry_size.py checks the total within 25%).
- The walk is bounded (`_MAX_OBJECTS`): an entry too large to walk is already one a
  byte budget must refuse, so the estimate stops early with what it has counted so far
  times a margin rather than spend unbounded time.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

from resolver.dns.wire import Ipv4Rdata, NameRdata, Record
from resolver.engine.cache_entries import CachedRRset

__all__ = ["CONTAINER_OVERHEAD", "deep_size", "entry_size", "record_cache_entry_size"]

#: Bytes an entry costs beyond its key and value: an OrderedDict slot and node, the store's
#: five-item slot list, its expiry float and sequence and size integers, a heap pointer
#: (measured: tests/unit/test_entry_size.py; within 2-5% of the totals there).
CONTAINER_OVERHEAD = 150

#: Objects of these types are shared by all entries (or immortal): never counted.
_SHARED = (type(None), bool, type, types.FunctionType, types.BuiltinFunctionType,
           types.ModuleType, enum.Enum)
#: CPython keeps one object for each of these integers.
_SMALL_INT_MIN, _SMALL_INT_MAX = -5, 256
#: Most objects one estimate visits; past it the rest is extrapolated.
_MAX_OBJECTS = 100_000


#: How the walk treats one class of object: skip it (shared), count it alone (a leaf),
#: walk its items, walk a dict's keys and values, or walk its attributes (slots, __dict__).
_SKIP, _LEAF, _ITEMS, _MAPPING = "skip", "leaf", "items", "mapping"
_Plan = str | tuple[tuple[str, ...], bool]
#: The plan of each class met so far: deciding it once per class, not once per object,
#: is what makes an estimate cost a few microseconds (it runs for every entry stored).
_PLANS: dict[type, _Plan] = {}


def _plan_for(kind: type) -> _Plan:
    plan: _Plan
    if issubclass(kind, _SHARED):
        plan = _SKIP
    elif kind in (str, bytes, float, int, complex):
        plan = _LEAF
    elif kind in (tuple, list, set, frozenset):
        plan = _ITEMS
    elif kind is dict:
        plan = _MAPPING
    else:
        slots = tuple(slot for klass in kind.__mro__
                      for slot in klass.__dict__.get("__slots__", ()))
        plan = (slots, any("__dict__" in klass.__dict__ for klass in kind.__mro__
                           if klass is not object))
    _PLANS[kind] = plan
    return plan


def deep_size(*values: Any) -> int:
    """Bytes of `values` and of every distinct object they hold, each counted once (an
    object shared by two of them, such as a key's name and its record's, counts once)."""
    return _walk(list(values), set())


def _walk(stack: list[Any], seen: set[int]) -> int:
    """`deep_size` of what `stack` holds, skipping (and adding to) the objects in `seen`."""
    total = 0
    visited = 0
    plans = _PLANS
    getsizeof = sys.getsizeof
    while stack:
        obj = stack.pop()
        kind = type(obj)
        plan = plans.get(kind)
        if plan is None:
            plan = _plan_for(kind)
        if plan is _SKIP:
            continue
        if kind is int and _SMALL_INT_MIN <= obj <= _SMALL_INT_MAX:
            continue
        identity = id(obj)
        if identity in seen:
            continue
        seen.add(identity)
        total += getsizeof(obj)
        visited += 1
        if visited >= _MAX_OBJECTS:
            # The rest is at least as large again as what was walked (a margin, not a
            # measure): such an entry is over any sensible budget anyway.
            return total * 2
        if plan is _LEAF:
            continue
        if plan is _ITEMS:
            stack.extend(obj)
        elif plan is _MAPPING:
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif not isinstance(plan, str):
            slots, has_dict = plan
            if has_dict:
                attributes = getattr(obj, "__dict__", None)
                if attributes is not None:
                    stack.append(attributes)
            for slot in slots:
                member = getattr(obj, slot, None)
                if member is not None:
                    stack.append(member)
    return total


def entry_size(key: Any, value: Any) -> int:
    """Bytes one cache entry costs: its key, its value and its place in the containers."""
    return CONTAINER_OVERHEAD + deep_size(key, value)


def record_cache_entry_size(key: tuple[Any, ...], value: Any) -> int:
    """`entry_size` for the record cache's keys: a zone's latest negative SOA ("negsoa") is
    the very entry its NXDOMAIN or NODATA key holds, so it costs only its key and slot.

    A cached RRset, the entry stored most, is counted field by field: the same sum as the
    generic walk (tests/unit/test_entry_size.py compares them), in a fraction of its time.
    """
    if key and key[0] == "negsoa":
        return CONTAINER_OVERHEAD + deep_size(key)
    if type(value) is CachedRRset:
        seen: set[int] = set()
        return CONTAINER_OVERHEAD + _key_size(key, seen) + _rrset_size(value, seen)
    return entry_size(key, value)


_getsizeof = sys.getsizeof


def _once(obj: object, seen: set[int]) -> int:
    """The size of one object that holds nothing else to count, if not counted yet."""
    identity = id(obj)
    if identity in seen:
        return 0
    seen.add(identity)
    return _getsizeof(obj)


def _number(value: int, seen: set[int]) -> int:
    return 0 if _SMALL_INT_MIN <= value <= _SMALL_INT_MAX else _once(value, seen)


def _key_size(key: tuple[Any, ...], seen: set[int]) -> int:
    total = _once(key, seen)
    for part in key:
        kind = type(part)
        if kind is str:
            total += _once(part, seen)
        elif kind is int:
            total += _number(part, seen)
        else:
            total += _walk([part], seen)
    return total


#: What `sys.getsizeof` says of every object of these classes (fixed slots, no items): it
#: asks the object's __sizeof__ each time, a tenth of a microsecond, for a constant.
_FLOAT_OCTETS = _getsizeof(0.5)
_RECORD_OCTETS = _getsizeof(Record("", 0, 0, 0, "", None))
_IPV4_OCTETS = _getsizeof(Ipv4Rdata(bytes(4)))
_NAME_RDATA_OCTETS = _getsizeof(NameRdata(b"\x00"))


def _rrset_size(entry: CachedRRset, seen: set[int]) -> int:
    total = _once(entry, seen) + _records_size(entry.records, seen)
    for moment in (entry.stored_at, entry.expires_at):
        identity = id(moment)
        if identity not in seen:
            seen.add(identity)
            total += _FLOAT_OCTETS if type(moment) is float else _getsizeof(moment)
    # Without DNSSEC both are the empty tuple, one object shared by every entry: once.
    if entry.rrsigs:
        total += _records_size(entry.rrsigs, seen)
    else:
        total += _once(entry.rrsigs, seen)
    if entry.proof:
        total += _records_size(entry.proof, seen)
    else:
        total += _once(entry.proof, seen)
    if entry.security is not None:
        total += _walk([entry.security], seen)
    return total


def _records_size(records: tuple[Record, ...], seen: set[int]) -> int:
    # `_once` written out: this runs for every record stored, a dozen objects each.
    add = seen.add
    getsizeof = _getsizeof
    total = _once(records, seen)
    for record in records:
        identity = id(record)
        if identity in seen:
            continue
        add(identity)
        total += _RECORD_OCTETS if type(record) is Record else getsizeof(record)
        for text in (record.name, record.rdata_key):
            identity = id(text)
            if identity not in seen:
                add(identity)
                total += getsizeof(text)
        for number in (record.rtype, record.rclass, record.ttl):
            if not _SMALL_INT_MIN <= number <= _SMALL_INT_MAX:
                identity = id(number)
                if identity not in seen:
                    add(identity)
                    total += getsizeof(number)
        rdata = record.rdata
        kind = type(rdata)
        if kind is Ipv4Rdata:
            parts: tuple[object, ...] = (rdata.octets, rdata.text)
            rdata_octets = _IPV4_OCTETS
        elif kind is NameRdata:  # NS and CNAME sets: one bytes object in a slot, no walk
            parts = (rdata.wire,)
            rdata_octets = _NAME_RDATA_OCTETS
        else:
            if rdata is not None:
                total += _walk([rdata], seen)
            continue
        identity = id(rdata)
        if identity not in seen:
            add(identity)
            total += rdata_octets
        for part in parts:
            identity = id(part)
            if identity not in seen:
                add(identity)
                total += getsizeof(part)
    return total
