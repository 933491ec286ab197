"""Reading the octets of a reply this server encoded: where each record's TTL field is,
and which runs of address records may be rotated (Unbound's rrset-roundrobin). The answer
cache stores replies by these offsets; the DoH listener reads the TTLs for Cache-Control.
Any surprise reads as "nothing found": such a reply is not stored.
"""

from __future__ import annotations

import struct

from resolver.dns.header import TTL_SIGN_BIT
from resolver.dns.names import MAX_LABEL_OCTETS

_TYPE_OPT = 41
_RR_FIXED = struct.Struct(">HHIH")


def record_ttls(reply: bytes, question_end: int) -> list[int] | None:
    """The TTL of every record after the question, OPT left out; None if the reply cannot be
    walked (a reply this server encoded always can)."""
    found = ttl_field_offsets(reply, question_end)
    return None if found is None else [ttl for _, ttl in found[0]]


def ttl_field_offsets(reply: bytes, pos: int) -> tuple[list[tuple[int, int]], bytes] | None:
    """Offsets and values of every record's TTL after the question, and the OPT record's octets.

    The reply is one the handler just encoded; still, any surprise means "do not store".
    """
    try:
        count = sum(struct.unpack_from(">HHH", reply, 6))
        fields: list[tuple[int, int]] = []
        opt = b""
        for index in range(count):
            start = pos
            while True:  # the owner name: labels, then the root or one pointer
                length = reply[pos]
                if length == 0:
                    pos += 1
                    break
                if length >= 0xC0:
                    pos += 2
                    break
                if length > MAX_LABEL_OCTETS:
                    return None
                pos += length + 1
            rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(reply, pos)
            if rtype == _TYPE_OPT:
                if index != count - 1 or opt:
                    return None
                opt = reply[start : pos + 10 + rdlength]
            else:
                if ttl & TTL_SIGN_BIT:  # RFC 2181 §8: means zero
                    ttl = 0
                fields.append((pos + 4, ttl))
            pos += 10 + rdlength
    except (IndexError, struct.error):
        return None
    if pos != len(reply):
        return None
    return fields, opt


_TYPE_A = 1
_TYPE_AAAA = 28
_ADDRESS_RDLENGTH = {_TYPE_A: 4, _TYPE_AAAA: 16}


def address_runs(reply: bytes, pos: int) -> tuple[tuple[int, int, int], ...]:
    """Runs of two or more A (or AAAA) records of one owner in the answer section, each
    record a compression pointer, the fixed fields and its address: (offset after the id,
    record size, count). A reply the handler just encoded; anything else finds no run."""
    runs: list[tuple[int, int, int]] = []
    try:
        answers = struct.unpack_from(">H", reply, 6)[0]
        start, key, count = 0, b"", 0
        for _ in range(answers):
            if reply[pos] < 0xC0:  # an owner written out: stop looking (rare in our replies)
                break
            rtype, _rclass, _ttl, rdlength = _RR_FIXED.unpack_from(reply, pos + 2)
            size = 12 + rdlength
            this = reply[pos : pos + 4] if _ADDRESS_RDLENGTH.get(rtype) == rdlength else b""
            if this and this == key:
                count += 1
            else:
                if count > 1:
                    runs.append((start - 2, _record_size(key), count))
                start, key, count = pos, this, 1 if this else 0
            pos += size
        if count > 1:
            runs.append((start - 2, _record_size(key), count))
    except (IndexError, struct.error):
        return ()
    return tuple(runs)


def _record_size(owner_and_type: bytes) -> int:
    """Octets of one address record whose pointer and type are `owner_and_type`."""
    return 12 + _ADDRESS_RDLENGTH[(owner_and_type[2] << 8) | owner_and_type[3]]
