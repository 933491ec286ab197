"""Flushing the shared cache: markers that void what was stored before them.

Keys are keyed hashes of the question, so the store cannot be searched for a name, let alone
for every name below one. A flush is therefore written as a marker instead: a value under a
key derived from the flushed name that holds the wall-clock time of the flush. A reader asks
for the reply and, in the same round trip (one MGET), for the markers that could cover it:
the `NAME` marker of the question's name and the `TREE` marker of that name and of each of
its ancestors. A reply stored before any marker that covers it is a miss, and the fresh
answer written next is newer than the marker, so it counts again. A marker lives as long
as the longest-lived entry, so that it outlives everything it voids.

One type of one name (`resolver cache flush NAME --type T`) needs no marker: its keys can be
computed (one per `ReplyVariant`), and are deleted.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import struct

from resolver.service.cachedb import KEY_PREFIX, ReplyVariant, cachedb_key

__all__ = ["FlushScope", "decode_marker", "encode_marker", "flushed_before", "marker_key",
           "markers_covering", "variant_keys"]

#: A marker's value: the magic, then the wall-clock time of the flush (a double).
_MARKER = struct.Struct(">4sd")
_MAGIC = b"RFL1"
_CLASS_IN = b"\x00\x01"


class FlushScope(enum.Enum):
    NAME = b"n"  #: the name itself, every type
    TREE = b"t"  #: the name and every name below it


def marker_key(secret: bytes, scope: FlushScope, name_wire: bytes) -> str:
    """The key of the marker for `name_wire` (lower-cased, uncompressed wire form)."""
    digest = hmac.new(secret, b"flush:" + scope.value + name_wire, hashlib.sha256).hexdigest()
    return KEY_PREFIX + "flush:" + digest


def markers_covering(secret: bytes, question: bytes) -> list[str]:
    """The keys of every marker that voids a reply to `question` (lower-cased name wire,
    QTYPE, QCLASS): the name's own, then the subtree markers of the name and its ancestors."""
    name_wire = question[:-4]
    keys = [marker_key(secret, FlushScope.NAME, name_wire)]
    pos = 0
    while pos < len(name_wire):
        keys.append(marker_key(secret, FlushScope.TREE, name_wire[pos:]))
        if name_wire[pos] == 0:
            break
        pos += name_wire[pos] + 1
    return keys


def variant_keys(secret: bytes, name_wire: bytes, rtype: int) -> list[str]:
    """The keys of every reply to (name, type, IN) that can be stored, one per variant."""
    question = name_wire + rtype.to_bytes(2, "big") + _CLASS_IN
    return [cachedb_key(secret, question, ReplyVariant(do=do, cd=cd, edns=edns, ad=ad))
            for do, cd, edns, ad in itertools.product((False, True), repeat=4)]


def encode_marker(flushed_at: float) -> bytes:
    return _MARKER.pack(_MAGIC, flushed_at)


def decode_marker(value: bytes) -> float | None:
    """The time in a marker, or None for a value that is not one."""
    if len(value) != _MARKER.size:
        return None
    magic, flushed_at = _MARKER.unpack(value)
    return flushed_at if magic == _MAGIC and flushed_at == flushed_at else None  # not NaN


def flushed_before(stored_at: float, markers: list[bytes | None]) -> bool:
    """Whether a reply stored at `stored_at` is voided by one of the marker values read."""
    for value in markers:
        flushed_at = decode_marker(value) if value is not None else None
        if flushed_at is not None and stored_at <= flushed_at:
            return True
    return False
