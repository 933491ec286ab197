"""Canonical form and order of names and records, and the data an RRSIG signs.

RFC 4034 §6: names in canonical form are uncompressed and lower-cased; RRs of an RRset
are sorted by their canonical RDATA octets; the RDATA of the types listed in §6.2 item 3
has its embedded names lower-cased, without NSEC (RFC 6840 §5.1, RFC 3755). The signed
data is RFC 4034 §3.1.8.1: RRSIG RDATA without the signature, then every RR of the set in
canonical order with the original TTL, its owner rebuilt from the labels field when the
RRset was synthesised from a wildcard (RFC 4035 §5.3.2).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from resolver.dns import names
from resolver.dns.rdata_wire import name_labels, rdata_wire
from resolver.dns.wire import Record
from resolver.dnssec.records import MalformedRdata, Rrsig

__all__ = [
    "canonical_name_wire",
    "canonical_rdata",
    "name_order_key",
    "owner_label_count",
    "signed_data",
    "wildcard_source",
]

# Layouts of RDATA with embedded names: "N" a name, an int that many fixed octets,
# "S" one <character-string>. RFC 4034 §6.2 item 3 with RFC 6840 §5.1 (NSEC removed).
_NAME = "N"
_STRING = "S"
_NAME_LAYOUT: dict[int, tuple[str | int, ...]] = {
    2: (_NAME,),  # NS
    3: (_NAME,),  # MD
    4: (_NAME,),  # MF
    5: (_NAME,),  # CNAME
    6: (_NAME, _NAME),  # SOA (the 20 octets of counters follow)
    7: (_NAME,),  # MB
    8: (_NAME,),  # MG
    9: (_NAME,),  # MR
    12: (_NAME,),  # PTR
    14: (_NAME, _NAME),  # MINFO
    15: (2, _NAME),  # MX
    17: (_NAME, _NAME),  # RP
    18: (2, _NAME),  # AFSDB
    21: (2, _NAME),  # RT
    24: (18, _NAME),  # SIG
    26: (2, _NAME, _NAME),  # PX
    30: (_NAME,),  # NXT
    33: (6, _NAME),  # SRV
    35: (4, _STRING, _STRING, _STRING, _NAME),  # NAPTR
    36: (2, _NAME),  # KX
    39: (_NAME,),  # DNAME
    46: (18, _NAME),  # RRSIG
}
_A6 = 38
_RR_FIXED = struct.Struct("!HHIH")


def canonical_name_wire(name: str) -> bytes:
    """`name` in canonical wire form: uncompressed, letters lower-cased (RFC 4034 §6.2)."""
    # Lower-casing the whole octet string is safe: length octets are at most 63, below "A".
    try:
        labels = name_labels(name)
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None
    return b"".join(bytes((len(label),)) + label.lower() for label in labels) + b"\x00"


def name_order_key(name: str) -> tuple[bytes, ...]:
    """Sort key of the canonical name order (RFC 4034 §6.1): labels compared right to left
    as lower-cased octet strings, a name sorting before the names below it."""
    try:
        labels = name_labels(name)
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None
    return tuple(label.lower() for label in reversed(labels))


def owner_label_count(name: str) -> int:
    """Labels of an owner as the RRSIG labels field counts them: without the root and
    without a leading wildcard label (RFC 4034 §3.1.3)."""
    count = names.label_count(name)
    return count - 1 if name.startswith("*.") else count


def wildcard_source(owner: str, rrsig_labels: int) -> str | None:
    """The wildcard an RRset at `owner` was expanded from, or None if it was not
    (RFC 4035 §5.3.2: fewer RRSIG labels than the owner has)."""
    count = owner_label_count(owner)
    if rrsig_labels >= count:
        return None
    kept = names.labels(owner)[count - rrsig_labels :] if rrsig_labels else []
    return "*." + ".".join(kept) + "." if kept else "*."


def canonical_rdata(record: Record) -> bytes:
    """The RDATA of `record` in canonical form (RFC 4034 §6.2 items 2 and 3)."""
    try:
        data = rdata_wire(record)
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None
    layout = _NAME_LAYOUT.get(record.rtype)
    if layout is not None:
        return _lower_names(data, layout)
    if record.rtype == _A6:
        return _lower_a6(data)
    return data


def _lower_names(data: bytes, layout: tuple[str | int, ...]) -> bytes:
    out = bytearray(data)
    pos = 0
    for part in layout:
        if isinstance(part, int):
            pos += part
        elif part == _STRING:
            if pos >= len(out):
                raise MalformedRdata("character-string runs past the RDATA")
            pos += 1 + out[pos]
        else:
            pos = _lower_name_at(out, pos)
        if pos > len(out):
            raise MalformedRdata("RDATA shorter than its type's fields")
    return bytes(out)


def _lower_name_at(out: bytearray, pos: int) -> int:
    while True:
        if pos >= len(out):
            raise MalformedRdata("name runs past the RDATA")
        length = out[pos]
        if length == 0:
            return pos + 1
        if length > names.MAX_LABEL_OCTETS:
            raise MalformedRdata("compressed name in RDATA")
        out[pos + 1 : pos + 1 + length] = bytes(out[pos + 1 : pos + 1 + length]).lower()
        pos += 1 + length


def _lower_a6(data: bytes) -> bytes:
    # RFC 2874 §3.1: prefix length, the address suffix, then the prefix name if any.
    if not data or data[0] > 128:
        raise MalformedRdata("bad A6 prefix length")
    prefix = data[0]
    if prefix == 0:
        return data
    return _lower_names(data, ((128 - prefix + 7) // 8 + 1, _NAME))


def signed_data(rrsig: Rrsig, rrset: Iterable[Record]) -> bytes:
    """The octets an RRSIG signs over `rrset` (RFC 4034 §3.1.8.1, §6.3).

    Duplicate RRs are counted once (RFC 4034 §6.3). Every RR carries the RRSIG's
    original TTL, and an owner with more labels than the RRSIG's labels field is written
    as the wildcard it was expanded from.
    """
    records = list(rrset)
    if not records:
        raise MalformedRdata("no records to verify")
    owner = records[0].name
    source = wildcard_source(owner, rrsig.labels)
    owner_wire = canonical_name_wire(source if source is not None else owner)
    rdatas = sorted({canonical_rdata(record) for record in records})
    out = bytearray(rrsig.fields_wire)
    rtype, rclass = records[0].rtype, records[0].rclass
    for rdata in rdatas:
        out += owner_wire + _RR_FIXED.pack(rtype, rclass, rrsig.original_ttl, len(rdata))
        out += rdata
    return bytes(out)
