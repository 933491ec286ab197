"""Strict, linear-time validation of DNS wire-format messages before any full parser sees them.

The scanner walks the header, every question and every resource record once, checks the
structural rules of RFC 1035 §4.1 and RFC 6891 (EDNS), and extracts what the query handler
needs without building records: the header fields, the first question and the OPT record.
RDATA is skipped unread, apart from OPT's options.

Work is bounded by the length of the message: a compression pointer must go strictly back,
before the start of the name (or suffix) being read, a name has at most 255 octets and a
bounded number of pointer hops, and every suffix already validated is remembered so that
no octet of the message is walked as part of a name more than a constant number of times.
No recursion is used, so no input can raise RecursionError.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from resolver.dns.header import EDNS_DO, HEADER_OCTETS, HeaderFlag
from resolver.dns.names import MAX_NAME_OCTETS

__all__ = [
    "MAX_LABELS",
    "MAX_POINTER_HOPS",
    "EdnsInfo",
    "MalformedMessage",
    "ScannedMessage",
    "header_id",
    "question_key",
    "scan_labels",
    "scan_message",
    "scan_name",
    "scan_query",
]

HEADER_LEN = HEADER_OCTETS
#: Follows from MAX_NAME_OCTETS: every non-root label costs at least two octets.
MAX_LABELS = 127
#: Every hop that does not land on another pointer is followed by at least one label, so a
#: name never needs more hops than this; longer chains are pointers to pointers, which no
#: encoder emits and which would let a name cost more work than its length.
MAX_POINTER_HOPS = MAX_LABELS + 1

TYPE_OPT = 41
OPCODE_QUERY = 0
EDNS_OPTION_COOKIE = 10

_HEADER = struct.Struct(">HHHHHH")
_U16_PAIR = struct.Struct(">HH")
_RR_FIXED = struct.Struct(">HHIH")  # TYPE, CLASS, TTL, RDLENGTH (RFC 1035 §4.1.3)

# Error phrases shared by several checks.
_PAST_END = "name runs past the end of the message"
_TOO_LONG = "name longer than 255 octets"
_TOO_MANY_HOPS = "too many compression pointers in a name"
_BAD_LABEL = "label longer than 63 octets or unknown label type"
_RR_TRUNCATED = "record runs past the end of the message"
_RDATA_TRUNCATED = "RDATA runs past the end of the message"

_FLAG_QR = HeaderFlag.QR
_EDNS_DO = EDNS_DO  # RFC 3225

# Smallest possible encodings: a question is a root name plus QTYPE/QCLASS, a record is a
# root name plus the 10 fixed octets. Lets absurd counts be refused before any loop runs.
_MIN_QUESTION = 5
_MIN_RR = 11

# Presentation form (RFC 1035 §5.1): printable ASCII other than '.' and '\' stands for
# itself, a '.' or '\' inside a label is written '\.' or '\\' (as dig and Unbound write
# them), everything else, space included, becomes \DDD, so the text is unambiguous.
_PLAIN_DOTTED = re.compile(rb"[\x21-\x5b\x5d-\x7e]*")
_ESCAPED = tuple(
    "\\." if c == 0x2E else "\\\\" if c == 0x5C
    else chr(c) if 0x21 <= c <= 0x7E else f"\\{c:03d}"
    for c in range(256)
)


class MalformedMessage(ValueError):
    """The octets are not a well-formed DNS message; answer FORMERR or discard.

    `reason` is a short fixed phrase (safe to log or count). `opt_seen` tells whether an OPT
    record had been recognised before the fault, because a FORMERR caused by a bad OPT still
    carries an OPT (RFC 6891 §7).
    """

    def __init__(self, reason: str, *, opt_seen: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.opt_seen = opt_seen


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


def _bad_pointer(target: int, segment_start: int, size: int) -> MalformedMessage:
    """Explain why a compression pointer was refused (RFC 1035 §4.1.4)."""
    if target >= size:
        return MalformedMessage("compression pointer past the end of the message")
    if target >= segment_start:
        return MalformedMessage("compression pointer does not point to a prior name")
    return MalformedMessage("compression pointer into the header")


def _bad_suffix(first_target: int, segment_start: int, octets: int) -> MalformedMessage:
    """Explain why a name cannot end with a suffix validated before: its first pointer does
    not go back from here, or with it the name is too long or takes too many hops."""
    if first_target >= segment_start:
        return MalformedMessage("compression pointer does not point to a prior name")
    if octets >= MAX_NAME_OCTETS:
        return MalformedMessage(_TOO_LONG)
    return MalformedMessage(_TOO_MANY_HOPS)


def _read_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """Decode and validate the name at `pos`; return its labels and the offset after it."""
    size = len(data)
    labels: list[bytes] = []
    segment_start = pos  # pointers must land strictly before this
    end = -1  # offset after the name in its original position, once known
    octets = 1  # the root label
    hops = 0
    while True:
        if pos >= size:
            raise MalformedMessage(_PAST_END)
        length = data[pos]
        if length == 0:
            break
        if length < 0x40:
            after = pos + 1 + length
            if after > size:
                raise MalformedMessage(_PAST_END)
            octets += length + 1
            if octets > MAX_NAME_OCTETS:
                raise MalformedMessage(_TOO_LONG)
            labels.append(data[pos + 1 : after])
            pos = after
        elif length >= 0xC0:
            if pos + 1 >= size:
                raise MalformedMessage(_PAST_END)
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= segment_start or target < HEADER_LEN:
                raise _bad_pointer(target, segment_start, size)
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise MalformedMessage(_TOO_MANY_HOPS)
            if end < 0:
                end = pos + 2
            segment_start = pos = target
        else:
            raise MalformedMessage(_BAD_LABEL)  # see _skip_name
    return labels, (pos + 1 if end < 0 else end)


#: Validated suffixes: offset -> (label octets from there on, pointer hops from there on,
#: target of the first pointer after that offset or -1 when the root comes first).
_Known = dict[int, tuple[int, int, int]]


def _skip_name(data: bytes, pos: int, known: _Known) -> int:
    """Validate the name at `pos` and return the offset after it (in its original position).

    The labels at the name's own position are walked by a tight loop; each octet of the
    message is read there once, since names in sections follow one another. Pointers are
    followed by `_follow_pointers`, which records what it validated in `known`.
    """
    start = pos
    limit = pos + MAX_NAME_OCTETS - 1  # label octets before the root at most 254
    try:
        length = data[pos]
        while 0 < length < 0x40:
            pos += length + 1
            if pos > limit:
                raise MalformedMessage(_TOO_LONG)
            length = data[pos]
    except IndexError:
        raise MalformedMessage(_PAST_END) from None
    if length == 0:
        return pos + 1
    if length < 0xC0:
        # 0x40-0x7F: labels over 63 octets or extended label types (RFC 6891 §5);
        # 0x80-0xBF: reserved (RFC 1035 §4.1.4).
        raise MalformedMessage(_BAD_LABEL)
    try:
        target = ((length & 0x3F) << 8) | data[pos + 1]
    except IndexError:
        raise MalformedMessage(_PAST_END) from None
    suffix = known.get(target)
    if suffix is not None and target < start:
        # A pointer to a known suffix, as dnslib and most encoders write: only the length can
        # still fail (see the owner fast path in _scan_records for why the hops cannot).
        if pos - start + suffix[0] >= MAX_NAME_OCTETS:
            raise MalformedMessage(_TOO_LONG)
    else:
        _follow_pointers(data, pos, start, pos - start, known)
    return pos + 2


def _follow_pointers(data: bytes, pos: int, segment_start: int, octets: int, known: _Known) -> None:
    """Validate the rest of a name from the compression pointer at `pos`.

    Every label or pointer visited here is recorded in `known` with the suffix it starts, and
    any recorded offset met again finishes the name at once, so each octet is visited here at
    most once per message however many later names point at it. A recorded suffix is valid
    from any entry point at or after the start of its run, provided its first pointer still
    lands before the current segment, which is checked.
    """
    size = len(data)
    hops = 0
    # Offsets visited, with octets and hops counted before each and the number of their run
    # (the labels between two hops); run_ends[n] is what run n led to: a pointer target, or -1
    # for the root. Run 0 is the name's own labels, which are not recorded.
    trail: list[tuple[int, int, int, int]] = []
    run_ends: list[int] = []
    complete = False
    while not complete:
        # `pos` holds a compression pointer (RFC 1035 §4.1.4).
        if pos + 1 >= size:
            raise MalformedMessage(_PAST_END)
        target = ((data[pos] & 0x3F) << 8) | data[pos + 1]
        if target >= segment_start or target < HEADER_LEN:
            raise _bad_pointer(target, segment_start, size)
        hops += 1
        if hops > MAX_POINTER_HOPS:
            raise MalformedMessage(_TOO_MANY_HOPS)
        run_ends.append(target)
        run = len(run_ends)
        segment_start = pos = target
        while True:
            suffix = known.get(pos)
            if suffix is not None:
                octets += suffix[0]
                hops += suffix[1]
                if (suffix[2] >= segment_start or octets >= MAX_NAME_OCTETS
                        or hops > MAX_POINTER_HOPS):
                    raise _bad_suffix(suffix[2], segment_start, octets)
                run_ends.append(suffix[2])
                complete = True
                break
            if pos >= size:
                raise MalformedMessage(_PAST_END)
            length = data[pos]
            if length == 0:
                run_ends.append(-1)
                complete = True
                break
            trail.append((pos, octets, hops, run))
            if length < 0x40:
                octets += length + 1
                if octets >= MAX_NAME_OCTETS:
                    raise MalformedMessage(_TOO_LONG)
                pos += length + 1
            elif length >= 0xC0:
                break  # the next hop
            else:
                raise MalformedMessage(_BAD_LABEL)
    for offset, octets_before, hops_before, run_number in trail:
        known[offset] = (octets - octets_before, hops - hops_before, run_ends[run_number])


def presentation(labels: list[bytes]) -> str:
    """Lower-cased presentation form with a trailing dot; "." for the root."""
    if not labels:
        return "."
    joined = b".".join(labels).lower()  # ASCII-only case folding, as DNS requires
    if _PLAIN_DOTTED.fullmatch(joined) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii") + "."
    escaped = _ESCAPED
    return "".join("".join([escaped[c] for c in label.lower()]) + "." for label in labels)


def presentation_as_sent(labels: list[bytes]) -> str:
    """Presentation form with a trailing dot and the letter case the labels have."""
    if not labels:
        return "."
    joined = b".".join(labels)
    if _PLAIN_DOTTED.fullmatch(joined.lower()) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii") + "."
    escaped = _ESCAPED
    return "".join("".join([escaped[c] for c in label]) + "." for label in labels)


def scan_labels(data: bytes, offset: int) -> tuple[list[bytes], int]:
    """Validate the name at `offset`; return its labels (octets as sent) and the offset after
    it. Pointers must go strictly back (RFC 1035 §4.1.4), so none reaches past `data`."""
    if offset < 0:
        raise MalformedMessage("name offset outside the message")
    return _read_name(data, offset)


def scan_name(data: bytes, offset: int) -> tuple[str, int]:
    """Validate the name at `offset`; return its presentation form and the offset after it."""
    if type(data) is not bytes:
        data = bytes(data)
    if offset < 0:
        raise MalformedMessage("name offset outside the message")
    labels, end = _read_name(data, offset)
    return presentation(labels), end


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
    known: _Known = {}
    if qdcount:
        # The first name sits at offset 12, where no prior name exists to point to, so it is
        # never compressed and its wire bytes are a plain slice.
        labels, pos = _read_name(data, HEADER_LEN)
        if pos + 4 > size:
            raise MalformedMessage("question without QTYPE and QCLASS")
        qname_wire = data[HEADER_LEN:pos]
        qtype, qclass = _U16_PAIR.unpack_from(data, pos)
        qname = presentation(labels)
        pos += 4
        for _ in range(qdcount - 1):
            pos = _skip_name(data, pos, known) + 4
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
    data: bytes, pos: int, records: int, first_additional: int, known: _Known
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
                _follow_pointers(data, pos, pos, 0, known)
            pos += 2
        else:
            pos = _skip_name(data, pos, known)
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
