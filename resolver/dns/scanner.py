"""Strict, linear-time validation of DNS wire-format messages before any full parser sees them.

The scanner walks the header, every question and every resource record once, checks the
structural rules of RFC 1035 §4.1 and RFC 6891 (EDNS), and extracts what the query handler
needs without building records: the header fields, the first question and the OPT record.
RDATA is skipped unread, apart from OPT's options.

Work is bounded by the length of the message: each section is walked once, and names are
read by `resolver.dns.wire_names`, which walks no octet as part of a name more than a
constant number of times. No recursion is used, so no input can raise RecursionError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from resolver.dns.header import EDNS_DO, HEADER_OCTETS, HeaderFlag
from resolver.dns.malformed import MalformedMessage
from resolver.dns.wire_names import (
    KnownSuffixes,
    follow_pointers,
    presentation,
    read_name,
    skip_name,
)

__all__ = [
    "EdnsInfo",
    "MalformedMessage",
    "ScannedMessage",
    "header_id",
    "question_key",
    "scan_message",
    "scan_query",
]

HEADER_LEN = HEADER_OCTETS
TYPE_OPT = 41
OPCODE_QUERY = 0
EDNS_OPTION_COOKIE = 10

_HEADER = struct.Struct(">HHHHHH")
_U16_PAIR = struct.Struct(">HH")
_RR_FIXED = struct.Struct(">HHIH")  # TYPE, CLASS, TTL, RDLENGTH (RFC 1035 §4.1.3)

_RR_TRUNCATED = "record runs past the end of the message"
_RDATA_TRUNCATED = "RDATA runs past the end of the message"

_FLAG_QR = HeaderFlag.QR
_EDNS_DO = EDNS_DO  # RFC 3225

# Smallest possible encodings: a question is a root name plus QTYPE/QCLASS, a record is a
# root name plus the 10 fixed octets. Lets absurd counts be refused before any loop runs.
_MIN_QUESTION = 5
_MIN_RR = 11

@dataclass(frozen=True, slots=True)
class EdnsInfo:
    """The OPT pseudo-record of a message (RFC 6891 §6.1)."""

    udp_size: int  #: the CLASS field: requestor's UDP payload size, unclamped
    version: int  #: EDNS version from the TTL field
    do: bool  #: DNSSEC OK bit (RFC 3225)
    ext_rcode: int  #: upper 8 bits of the 12-bit RCODE
    flags: int  #: the whole 16-bit flags field, DO included
    options: tuple[tuple[int, bytes], ...]  #: (code, data) in wire order


@dataclass(frozen=True, slots=True)
class ScannedMessage:
    """What the scanner learned about a message it accepted."""

    id: int
    flags: int  #: the 16-bit header flags word, opcode and rcode bits included
    opcode: int
    rcode: int  #: the 4 header bits only; see EdnsInfo.ext_rcode for the rest
    qr: bool
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    qname: str | None  #: first question, lower-cased presentation form, trailing dot
    qname_wire: bytes | None  #: first question name as sent (case preserved, never compressed)
    qtype: int | None
    qclass: int | None
    question_end: int  #: offset just after the question section
    edns: EdnsInfo | None
    opt_offset: int | None  #: offset of the OPT record's owner octet
    end: int  #: offset after the last counted record; later octets are ignored


def header_id(data: bytes) -> int | None:
    """Return the message ID, or None when fewer than 2 octets arrived."""
    if len(data) < 2:
        return None
    return (data[0] << 8) | data[1]


def _parse_opt(data: bytes, pos: int, end: int, udp_size: int, ttl: int) -> EdnsInfo:
    """Read OPT RDATA: options must exactly fill RDLENGTH (RFC 6891 §6.1.2)."""
    options: list[tuple[int, bytes]] = []
    unpack = _U16_PAIR.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise MalformedMessage("EDNS option header overruns the OPT record", opt_seen=True)
        code, length = unpack(data, pos)
        pos += 4
        option_end = pos + length
        if option_end > end:
            raise MalformedMessage("EDNS option overruns the OPT record", opt_seen=True)
        options.append((code, data[pos:option_end]))
        pos = option_end
    # Positional, in field order: udp_size, version, do, ext_rcode, flags, options.
    return EdnsInfo(
        udp_size, (ttl >> 16) & 0xFF, bool(ttl & _EDNS_DO), ttl >> 24, ttl & 0xFFFF, tuple(options)
    )


def scan_message(data: bytes) -> ScannedMessage:
    """Validate a whole message in time linear in its length; raise MalformedMessage if bad.

    Octets after the last counted record are allowed and ignored (see `ScannedMessage.end`).
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < HEADER_LEN:
        raise MalformedMessage("message shorter than the 12-octet header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    records = ancount + nscount + arcount
    if HEADER_LEN + _MIN_QUESTION * qdcount + _MIN_RR * records > size:
        raise MalformedMessage("section counts larger than the message")
    pos = HEADER_LEN
    qname: str | None = None
    qname_wire: bytes | None = None
    qtype: int | None = None
    qclass: int | None = None
    known: KnownSuffixes = {}
    if qdcount:
        # The first name sits at offset 12, where no prior name exists to point to, so it is
        # never compressed and its wire bytes are a plain slice.
        labels, pos = read_name(data, HEADER_LEN)
        if pos + 4 > size:
            raise MalformedMessage("question without QTYPE and QCLASS")
        qname_wire = data[HEADER_LEN:pos]
        qtype, qclass = _U16_PAIR.unpack_from(data, pos)
        qname = presentation(labels)
        pos += 4
        for _ in range(qdcount - 1):
            pos = skip_name(data, pos, known) + 4
            if pos > size:
                raise MalformedMessage("question without QTYPE and QCLASS")
    question_end = pos
    edns, opt_offset, end = _scan_records(data, question_end, records, ancount + nscount, known)
    # Positional arguments, in field order: keyword matching costs a third of the build time.
    return ScannedMessage(
        ident,
        flags,
        (flags >> 11) & 0xF,  # opcode
        flags & 0xF,  # rcode
        bool(flags & _FLAG_QR),
        qdcount,
        ancount,
        nscount,
        arcount,
        qname,
        qname_wire,
        qtype,
        qclass,
        question_end,
        edns,
        opt_offset,
        end,
    )


def _scan_records(
    data: bytes, pos: int, records: int, first_additional: int, known: KnownSuffixes
) -> tuple[EdnsInfo | None, int | None, int]:
    """Validate the `records` resource records from `pos` (RFC 1035 §4.1.3); return the OPT
    record's meaning and offset, if one is there, and the offset after the last record."""
    size = len(data)
    edns: EdnsInfo | None = None
    opt_offset: int | None = None
    unpack_rr = _RR_FIXED.unpack_from
    for index in range(records):
        owner = pos
        if pos >= size:
            raise MalformedMessage(_RR_TRUNCATED, opt_seen=edns is not None)
        lead = data[pos]
        if lead == 0:
            pos += 1
        elif lead >= 0xC0 and pos + 1 < size:
            # The owner is a single pointer. Commonly it lands on a suffix validated earlier,
            # which was itself reached through a pointer, so it has at most 254 octets and
            # MAX_POINTER_HOPS - 1 hops: one more hop keeps it valid. Such a suffix may lie
            # after this owner, though (a label read earlier can reach past it), so the
            # pointer must still go back.
            target = ((lead & 0x3F) << 8) | data[pos + 1]
            if target >= pos or target not in known:
                follow_pointers(data, pos, pos, 0, known)
            pos += 2
        else:
            pos = skip_name(data, pos, known)
        if pos + 10 > size:
            raise MalformedMessage(_RR_TRUNCATED, opt_seen=edns is not None)
        rtype, rclass, ttl, rdlength = unpack_rr(data, pos)
        pos += 10
        rdata_end = pos + rdlength
        if rdata_end > size:
            raise MalformedMessage(_RDATA_TRUNCATED, opt_seen=edns is not None)
        if rtype == TYPE_OPT:
            # RFC 6891 §6.1.1: one OPT at most, in the additional section, owned by the root.
            if index < first_additional:
                raise MalformedMessage("OPT record outside the additional section", opt_seen=True)
            if opt_offset is not None:
                raise MalformedMessage("more than one OPT record", opt_seen=True)
            if lead != 0:
                raise MalformedMessage("OPT owner is not the root name", opt_seen=True)
            edns = _parse_opt(data, pos, rdata_end, rclass, ttl)
            opt_offset = owner
        pos = rdata_end
    return edns, opt_offset, pos


def scan_query(data: bytes) -> ScannedMessage:
    """Validate a message received as a query; raise MalformedMessage if it is not one.

    Header rules are checked first, in Unbound's order (QR, then the counts of a QUERY), so
    a hopeless message costs nothing more. Opcodes other than QUERY pass on to the caller,
    which answers NOTIMP (RFC 1035 §4.1.1).
    """
    if len(data) < HEADER_LEN:
        raise MalformedMessage("message shorter than the 12-octet header")
    if data[2] & 0x80:
        raise MalformedMessage("QR set in a query")
    opcode = (data[2] >> 3) & 0xF
    if opcode == OPCODE_QUERY:
        _ident, _flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if qdcount != 1:
            raise MalformedMessage("query must have exactly one question")
        if ancount or nscount:
            raise MalformedMessage("query with answer or authority records")
        if arcount > 1:
            raise MalformedMessage("query with more than one additional record")
    scanned = scan_message(data)
    if opcode == OPCODE_QUERY and scanned.arcount and scanned.edns is None:
        raise MalformedMessage("additional record in a query is not OPT")
    if scanned.edns is not None:
        for code, value in scanned.edns.options:
            # RFC 7873 §5.2.2: client cookie alone (8) or with a server cookie (16-40).
            if code == EDNS_OPTION_COOKIE and not (len(value) == 8 or 16 <= len(value) <= 40):
                raise MalformedMessage("COOKIE option with an invalid length", opt_seen=True)
    return scanned


def question_key(data: bytes, scanned: ScannedMessage) -> bytes:
    """A cache key for the first question: lower-cased name wire + QTYPE + QCLASS octets.

    Length octets are at most 63, below 'A', so lower-casing the whole name is safe.
    """
    wire = scanned.qname_wire
    if wire is None:
        raise MalformedMessage("message has no question")
    end = HEADER_LEN + len(wire) + 4
    return wire.lower() + bytes(data[end - 4 : end])
