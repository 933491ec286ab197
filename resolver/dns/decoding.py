"""Decoding a DNS message: octets in, a `Message` out, or `MalformedMessage`.

The strict linear-time scanner (`resolver.dns.scanner`) checks the octets first; only then
are names and record fields read here, and each RDATA by dnslib through a buffer whose names
follow the scanner's rules (dnslib alone accepts over-long labels and names and burns
quadratic time on pointer chains: docs/reliability.md (0)). A record whose RDATA does not
fit its type is dropped and named; the rest of the message stands.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import dnslib
import dnslib.dns

from resolver.dns.header import TTL_SIGN_BIT, HeaderFlag
from resolver.dns.scanner import HEADER_LEN, MalformedMessage, ScannedMessage, scan_message
from resolver.dns.wire import (
    RR_FIXED,
    Edns,
    Ipv4Rdata,
    Message,
    NameRdata,
    Question,
    Record,
    RRType,
    rdata_key,
    type_name,
)
from resolver.dns.wire_names import presentation, scan_labels


def decode(data: bytes, *, max_records: int | None = None) -> Message:
    """Decode `data`; raises MalformedMessage (and nothing else) for anything not well formed.

    Header, names and record fields are read here; dnslib reads only RDATA, through a buffer
    whose names follow the scanner's rules. A record whose RDATA does not read as its type
    says is dropped and named in `Message.malformed` (RFC 2181 §5.4.1 spirit, as Unbound's
    scrubber drops a malformed RR); the rest of the message stands. A message counting more
    than `max_records` records (OPT included) is refused whole.
    """
    if max_records is not None and len(data) >= HEADER_LEN:
        # Refused before any record is read, so an oversized reply costs nothing.
        ancount, nscount, arcount = struct.unpack_from("!3H", data, 6)
        if ancount + nscount + arcount > max_records:
            raise MalformedMessage(f"more than {max_records} records")
    scanned = scan_message(data)
    if type(data) is not bytes:
        data = bytes(data)
    if scanned.end < len(data):
        # Octets after the last record are ignored, so no name may point into them either.
        data = data[: scanned.end]
    return _decode_records(data, scanned)


def _message(
    scanned: ScannedMessage, question: Question | None, answer: list[Record],
    authority: list[Record], additional: list[Record], malformed: tuple[str, ...] = (),
) -> Message:
    flags = scanned.flags
    edns = None
    if scanned.edns is not None:
        e = scanned.edns
        edns = Edns(udp_size=e.udp_size, version=e.version, do=e.do, ext_rcode=e.ext_rcode,
                    options=e.options)
    return Message(
        id=scanned.id,
        qr=scanned.qr,
        opcode=scanned.opcode,
        rcode=scanned.rcode | ((edns.ext_rcode << 4) if edns else 0),
        aa=bool(flags & HeaderFlag.AA),
        tc=bool(flags & HeaderFlag.TC),
        rd=bool(flags & HeaderFlag.RD),
        ra=bool(flags & HeaderFlag.RA),
        ad=bool(flags & HeaderFlag.AD),
        cd=bool(flags & HeaderFlag.CD),
        question=question,
        answer=tuple(answer),
        authority=tuple(authority),
        additional=tuple(additional),
        edns=edns,
        malformed=malformed,
    )


#: dnslib's RDATA class for each type it knows (DNAME added above); others are opaque RD.
_RDATA_CLASSES: dict[int, Any] = {
    int(dnslib.QTYPE.reverse[name]): rdata_class
    for name, rdata_class in dnslib.dns.RDMAP.items()
    if name in dnslib.QTYPE.reverse
}
#: Labels of only these octets need no escapes in presentation form (dnslib's or ours).
_PLAIN_NAME = re.compile(rb"[\x21-\x2d\x2f-\x5b\x5d-\x7e]+(?:\.[\x21-\x2d\x2f-\x5b\x5d-\x7e]+)*")


#: Types whose RDATA is one name, read here without dnslib (`NameRdata`).
_ONE_NAME = frozenset({RRType.NS, RRType.CNAME, RRType.PTR, RRType.DNAME})
#: Types whose dnslib RDATA always writes back what it read (fixed fields, names, strings).
_REPACKS = frozenset({RRType.AAAA, RRType.NS, RRType.CNAME, RRType.SOA, RRType.PTR, RRType.MX,
                      RRType.TXT, RRType.SRV, RRType.DNAME})


def _writes_back(rtype: int, rdata: Any, octets: bytes, key: str) -> bool:
    """Whether `rdata` writes back to what was read: dnslib reads some RDATA it cannot
    write (an NSEC without a type bitmap) or writes differently (bitmap windows out of
    the order RFC 4034 §4.1.2 requires, which it sorts). Such a record could never be sent
    on or cached as received. Raises what dnslib raises when it cannot write at all."""
    buffer = dnslib.DNSBuffer()
    buffer.encode_name = buffer.encode_name_nocompress
    rdata.pack(buffer)
    written = bytes(buffer.data)
    if written == octets:
        return True
    # Differently written: equal only if it reads back the same (a compressed name in
    # the RDATA is written out in full here).
    again = _RDATA_CLASSES.get(rtype, dnslib.RD).parse(_StrictNameBuffer(written), len(written))
    return bool(rdata_key(rtype, again) == key)


class _StrictNameBuffer(dnslib.DNSBuffer):  # type: ignore[misc]  # dnslib has no hints
    """A dnslib buffer whose RDATA readers read names by the scanner's rules: pointers only
    strictly back, bounded hops, 255 octets at most, any octet in a label (RFC 2181 §11).
    dnslib's own reader recurses once per pointer and refuses octets above 0x7f."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.octets = data
        self.offset: int = 0

    def decode_name(self, last: int = -1) -> Any:  # dnslib's signature
        labels, end = scan_labels(self.octets, self.offset)
        self.offset = end
        return dnslib.DNSLabel(labels)


def _decode_records(data: bytes, scanned: ScannedMessage) -> Message:
    """Decode a message the scanner accepted.

    The scanner has proven every owner name, pointer and length sound, so this only reads.
    Names are kept by offset: a compression pointer to a name read before costs one lookup.
    """
    try:
        return _read_records(data, scanned)
    except (IndexError, struct.error):
        # Every length was proven sound, but a name reached through a pointer may run on
        # into the octets after the last record, which are no part of the message.
        raise MalformedMessage("name runs past the last record") from None


def _read_records(data: bytes, scanned: ScannedMessage) -> Message:
    read: dict[int, str] = {}
    question = None
    if scanned.qdcount and scanned.qname is not None:
        qname = scanned.qname
        read[HEADER_LEN] = qname
        question = Question(qname, scanned.qtype or 0, scanned.qclass or 0)
    buffer = _StrictNameBuffer(data)
    sections: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    malformed: list[str] = []
    pos = scanned.question_end
    unpack = RR_FIXED.unpack_from
    for section, count in zip(sections, (scanned.ancount, scanned.nscount, scanned.arcount),
                              strict=True):
        for _ in range(count):
            name, pos = _owner_name(data, pos, read)
            rtype, rclass, ttl, rdlength = unpack(data, pos)
            pos += 10
            ttl = 0 if ttl & TTL_SIGN_BIT else ttl  # RFC 2181 §8: the top bit set means 0
            if rtype == RRType.OPT:  # the scanner read it: Message.edns
                pos += rdlength
                continue
            if rtype == RRType.A and rdlength == 4:
                address = Ipv4Rdata(data[pos : pos + 4])
                pos += 4
                section.append(Record(name, rtype, rclass, ttl, address.text, address))
                continue
            if rtype in _ONE_NAME:
                try:
                    labels, end = scan_labels(data, pos)
                except MalformedMessage:
                    end = -1
                pos += rdlength
                if end != pos:
                    malformed.append(f"{name} {type_name(rtype)}: {rdlength} octets of RDATA "
                                     "do not fit the type")
                    continue
                section.append(Record(name, rtype, rclass, ttl, presentation(labels),
                                      NameRdata.of_labels(labels)))
                continue
            buffer.offset = pos
            try:
                rdata = _RDATA_CLASSES.get(rtype, dnslib.RD).parse(buffer, rdlength)
                # The key prints the RDATA: dnslib may parse values it cannot print (a LOC
                # size exponent over 9, say), so printing belongs to the same test.
                key = rdata_key(rtype, rdata) if buffer.offset == pos + rdlength else None
                if (key is not None and rtype not in _REPACKS
                        and not _writes_back(rtype, rdata, data[pos : pos + rdlength], key)):
                    key = None
            except Exception:  # dnslib raises many kinds (and RecursionError) on bad RDATA
                key = None
            pos += rdlength
            if key is None:
                # The scanner proved the framing sound, so only this RR is bad: its RDATA
                # does not read as its type says. Drop it, keep the rest.
                malformed.append(f"{name} {type_name(rtype)}: {rdlength} octets of RDATA "
                                 "do not fit the type")
                continue
            section.append(Record(name, rtype, rclass, ttl, key, rdata))
    return _message(scanned, question, *sections, tuple(malformed))


def _owner_name(data: bytes, pos: int, read: dict[int, str]) -> tuple[str, int]:
    """The canonical name at `pos` (validated by the scanner) and the offset after it."""
    start = pos
    labels: list[bytes] = []
    after = -1
    suffix = "."
    while True:
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            if after < 0:
                after = pos + 2
            target = ((length & 0x3F) << 8) | data[pos + 1]
            known = read.get(target)
            if known is not None:
                suffix = known
                break
            pos = target
            continue
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    if after < 0:
        after = pos
    if not labels:
        name = suffix
    else:
        joined = b".".join(labels).lower()
        if joined.count(b".") == len(labels) - 1 and _PLAIN_NAME.fullmatch(joined):
            text = joined.decode("ascii")
        else:  # a dot, backslash or other octet inside a label: escaped, never split
            text = presentation(labels)[:-1]
        name = text + ("." if suffix == "." else "." + suffix)
    read[start] = name
    return name, after
