"""Exact record text, the cache file's format: one zone-file line per record that reads
back octet for octet (`exact_text`, `record_from_exact_text`), the RDATA in presentation form
for the common types and in the generic form of RFC 3597 §5 for the rest.
"""

from __future__ import annotations

import re

import dnslib

from resolver.dns import names
from resolver.dns.encoding import name_wire
from resolver.dns.wire import (
    Ipv4Rdata,
    Record,
    RRType,
    check_u16,
    class_name,
    rdata_key,
    type_from_text,
    type_name,
)

#: Types whose RDATA is written in presentation form by `exact_text`; the RDATA of every
#: other type is written in the generic form of RFC 3597 §5, which reads back octet for octet.
_PRESENTED_TYPES = frozenset({
    RRType.A, RRType.AAAA, RRType.NS, RRType.CNAME, RRType.DNAME, RRType.PTR, RRType.MX,
    RRType.SOA,
})
#: Names whose text is unambiguous: letters, digits, '-', '_' and '*' only (dnslib does not
#: escape a '.' inside a label, so other names go in generic form).
_PLAIN_RDATA_NAME = re.compile(r"^(?:[A-Za-z0-9_*-]+\.)+$|^\.$")
_GENERIC_RDATA = re.compile(r"^\\#\s+(\d+)\s*([0-9A-Fa-f\s]*)$")


def rdata_octets(record: Record) -> bytes:
    """The RDATA of `record` as octets, names uncompressed (RFC 3597 §4: the generic form
    never holds compression pointers)."""
    buffer = dnslib.DNSBuffer()
    buffer.encode_name = buffer.encode_name_nocompress
    record.rdata.pack(buffer)
    return bytes(buffer.data)


def exact_text(record: Record) -> str:
    """`record` as one zone-file line that `record_from_exact_text` reads back unchanged.

    Owner, TTL, class, type and RDATA separated by tabs; the RDATA in presentation form
    for the common types, in RFC 3597 §5 generic form (`\\# LENGTH HEX`) for the rest.
    """
    rdata = record.rdata_text if record.rtype in _PRESENTED_TYPES else ""
    if rdata and record.rtype != RRType.A and record.rtype != RRType.AAAA:
        fields = rdata.split()
        names_in = fields[-1:] if record.rtype != RRType.SOA else fields[:2]
        if not all(_PLAIN_RDATA_NAME.match(name) for name in names_in):
            rdata = ""
    if not rdata or type(record.rdata) is dnslib.RD:
        octets = rdata_octets(record)
        rdata = f"\\# {len(octets)} {octets.hex()}" if octets else "\\# 0"
    return "\t".join((record.name, str(record.ttl), class_name(record.rclass),
                      type_name(record.rtype), rdata))


def record_from_exact_text(line: str) -> Record:
    """Read one line written by `exact_text`; ValueError when it is not one."""
    parts = line.split("\t")
    if len(parts) != 5:
        raise ValueError("not five tab-separated fields")
    owner, ttl_text, class_text, type_text, rdata_text = parts
    if not ttl_text.isdigit() or int(ttl_text) > 2**31 - 1:
        raise ValueError(f"bad TTL {ttl_text!r}")
    rclass = _class_from_text(class_text)
    rtype = type_from_text(type_text)
    name = names.canonical(owner)
    name_wire(name)  # ValueError when it is no valid name
    generic = _GENERIC_RDATA.match(rdata_text)
    if generic is not None:
        octets = bytes.fromhex("".join(generic.group(2).split()))
        if len(octets) != int(generic.group(1)):
            raise ValueError("generic RDATA length does not match its octets")
    elif rtype in _PRESENTED_TYPES:
        octets = _presented_rdata(rtype, rdata_text.split())
    else:
        raise ValueError(f"{type_name(rtype)} RDATA must be in generic form")
    return record_from_rdata(name, rtype, rclass, int(ttl_text), octets)


def _presented_rdata(rtype: int, fields: list[str]) -> bytes:
    import ipaddress

    if rtype == RRType.A and len(fields) == 1:
        return ipaddress.IPv4Address(fields[0]).packed
    if rtype == RRType.AAAA and len(fields) == 1:
        return ipaddress.IPv6Address(fields[0]).packed
    if rtype == RRType.MX and len(fields) == 2 and fields[0].isdigit():
        return check_u16(int(fields[0])).to_bytes(2, "big") + name_wire(fields[1])
    if rtype == RRType.SOA and len(fields) == 7 and all(f.isdigit() for f in fields[2:]):
        times = b"".join(int(f).to_bytes(4, "big") for f in fields[2:])
        return name_wire(fields[0]) + name_wire(fields[1]) + times
    if rtype in (RRType.NS, RRType.CNAME, RRType.DNAME, RRType.PTR) and len(fields) == 1:
        return name_wire(fields[0])
    raise ValueError(f"cannot read {type_name(rtype)} RDATA {' '.join(fields)!r}")


def record_from_rdata(name: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> Record:
    """A record from uncompressed RDATA octets, decoded for its type (opaque when unknown);
    ValueError when the octets do not fit the type."""
    if rtype == RRType.A and len(rdata) == 4:  # the decoder's compact form (Ipv4Rdata)
        return Record(names.canonical(name), rtype, rclass, ttl, Ipv4Rdata(rdata).text,
                      Ipv4Rdata(rdata))
    parser = dnslib.RDMAP.get(type_name(rtype), dnslib.RD)
    buffer = dnslib.DNSBuffer(rdata)
    try:
        rd = parser.parse(buffer, len(rdata))
    except Exception as exc:  # dnslib raises several kinds on bad RDATA
        raise ValueError(f"{type_name(rtype)} RDATA does not fit its type: {exc}") from None
    if buffer.remaining() != 0:
        raise ValueError(f"{type_name(rtype)} RDATA has {buffer.remaining()} octets too many")
    return Record(name=names.canonical(name), rtype=rtype, rclass=rclass, ttl=ttl,
                  rdata_key=rdata_key(rtype, rd), rdata=rd)


def _class_from_text(text: str) -> int:
    upper = text.upper()
    if upper.startswith("CLASS") and upper[5:].isdigit():
        return check_u16(int(upper[5:]))
    number = dnslib.CLASS.reverse.get(upper)
    if number is None:
        raise ValueError(f"unknown class {text!r}")
    return int(number)
