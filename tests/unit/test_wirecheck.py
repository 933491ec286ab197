"""Specification of the wire scanner that guards the parser (docs/reliability.md (0) and (b))."""

from __future__ import annotations

import struct

import pytest
from dnslib import (
    CNAME,
    EDNS0,
    NS,
    QTYPE,
    RR,
    A,
    DNSHeader,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)

from resolver.dns.scanner import (
    EdnsInfo,
    MalformedMessage,
    ScannedMessage,
    header_id,
    question_key,
    scan_message,
    scan_query,
)
from resolver.dns.wire_names import MAX_POINTER_HOPS, scan_name

# Offset of the first RDATA octet of a record with a root owner right after the header.
FIRST_RDATA = 12 + 1 + 10


def header(
    *, ident: int = 0x1234, flags: int = 0x0100, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    """A 12-octet header; the default flags are RD=1, QR=0, opcode QUERY."""
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def question(name: bytes = b"\x07example\x03com\x00", qtype: int = 1, qclass: int = 1) -> bytes:
    """One question entry with `name` already in wire form."""
    return name + struct.pack(">HH", qtype, qclass)


def rr(owner: bytes, rtype: int = 1, rdata: bytes = b"\xc0\x00\x02\x01", rclass: int = 1) -> bytes:
    """One resource record with `owner` already in wire form."""
    return owner + struct.pack(">HHIH", rtype, rclass, 300, len(rdata)) + rdata


def opt(options: bytes = b"", *, udp: int = 1232, ttl: int = 0, owner: bytes = b"\x00") -> bytes:
    """An OPT pseudo-record (RFC 6891 §6.1.2) with raw option octets."""
    return owner + struct.pack(">HHIH", 41, udp, ttl, len(options)) + options


def option(code: int, data: bytes) -> bytes:
    """One EDNS option in wire form."""
    return struct.pack(">HH", code, len(data)) + data


def ptr(offset: int) -> bytes:
    """A compression pointer to `offset` (RFC 1035 §4.1.4)."""
    return struct.pack(">H", 0xC000 | offset)


def reason_of(data: bytes, scan: object = scan_message) -> str:
    """The reason the scanner gives for refusing `data`."""
    with pytest.raises(MalformedMessage) as caught:
        scan(data)  # type: ignore[operator]
    return caught.value.reason


QUERY = header(qd=1) + question()


# --- header -------------------------------------------------------------------------------


def test_scan_message_rejects_truncated_header() -> None:
    """Fewer than 12 octets is not a message (docs/reliability.md (b) row 1)."""
    for length in (0, 1, 2, 11):
        assert "header" in reason_of(QUERY[:length])


def test_header_id_reads_the_id_of_a_broken_message() -> None:
    """The id can be had from 2 octets on, so FORMERR can carry it; below that it is None."""
    assert header_id(b"") is None
    assert header_id(b"\x12") is None
    assert header_id(b"\x12\x34") == 0x1234
    assert header_id(QUERY[:5]) == 0x1234


def test_scan_message_reads_the_header_fields() -> None:
    """id, flags word, opcode, rcode, QR and the four counts come from the header."""
    flags = 0x8000 | (2 << 11) | 0x0400 | 0x0100 | 0x0080 | 0x0003  # QR, opcode 2, AA, RD, RA, NX
    scanned = scan_message(header(ident=0xBEEF, flags=flags, qd=1) + question())
    assert (scanned.id, scanned.flags, scanned.opcode, scanned.rcode, scanned.qr) == (
        0xBEEF,
        flags,
        2,
        3,
        True,
    )
    assert (scanned.qdcount, scanned.ancount, scanned.nscount, scanned.arcount) == (1, 0, 0, 0)


def test_scan_message_rejects_counts_larger_than_the_data() -> None:
    """Counts that the octets cannot hold are refused (row 9)."""
    assert "counts" in reason_of(header(qd=1, an=5) + question())
    assert "counts" in reason_of(header(qd=65535) + question())
    # Small enough to pass the quick size check, but the records are still missing.
    cut_record = b"\x01a\x00" + b"\x00" * 8  # owner, then only 8 of the 10 fixed octets
    assert "past the end" in reason_of(header(qd=1, an=1) + question() + cut_record)


def test_scan_message_rejects_question_without_type_and_class() -> None:
    """A question name with no QTYPE/QCLASS after it is refused (row 10)."""
    assert "QTYPE" in reason_of(header(qd=1) + b"\x07example\x03com\x00\x00\x01\x00")


# --- names and compression pointers ---------------------------------------------------------


def test_scan_message_rejects_self_pointer_at_offset_12() -> None:
    """`c00c` as the first question name points at itself (row 11)."""
    assert "prior" in reason_of(header(qd=1) + ptr(12) + b"\x00\x01\x00\x01")


def test_scan_message_rejects_pointer_into_the_header() -> None:
    """No name lives in the header, so a pointer below offset 12 is refused."""
    assert "header" in reason_of(header(qd=1) + ptr(0) + b"\x00\x01\x00\x01")


def test_scan_message_rejects_forward_pointer() -> None:
    """A pointer must go to a prior occurrence (RFC 1035 §4.1.4; row 12)."""
    later = 12 + len(question()) + 2 + 10  # where the next record's owner will start
    data = header(qd=1, an=2) + question() + rr(ptr(later), rdata=b"") + rr(b"\x01a\x00")
    assert "prior" in reason_of(data)


def test_scan_message_rejects_pointer_into_own_name() -> None:
    """A pointer back into the labels of the name being read would loop; it is refused."""
    owner_at = 12 + len(question())
    assert "prior" in reason_of(header(qd=1, an=1) + question() + rr(b"\x01a" + ptr(owner_at)))


def test_scan_message_rejects_pointer_past_the_end() -> None:
    """A pointer beyond the last octet is refused (row 12)."""
    data = header(qd=1, an=1) + question() + rr(ptr(0x3FFF))
    assert "past the end" in reason_of(data)


def test_scan_message_rejects_pointer_cut_in_half() -> None:
    """A pointer whose second octet is missing is refused, not read past the end."""
    assert "past the end" in reason_of(header(qd=2) + question(b"\x01a\x00") + b"\x01a\xc0")


def test_scan_message_rejects_1000_hop_backward_chain_without_recursion() -> None:
    """The §0 attack: question i is a label plus a pointer to question i-1 (row 13)."""
    body = bytearray(question(b"\x01a\x00"))
    starts = [12]
    for _ in range(1000):
        starts.append(12 + len(body))
        body += question(b"\x01a" + ptr(starts[-2]))
    reason = reason_of(header(qd=len(starts)) + bytes(body))
    assert reason in {"name longer than 255 octets", "too many compression pointers in a name"}


def test_scan_message_rejects_1000_hop_pure_pointer_chain() -> None:
    """Pointers to pointers add no labels; a chain longer than the hop bound is refused."""
    rdata = bytearray(b"\x00")
    for _ in range(1000):
        rdata += ptr(FIRST_RDATA + len(rdata) - (2 if len(rdata) > 1 else 1))
    top = FIRST_RDATA + len(rdata) - 2
    data = header(an=2) + rr(b"\x00", rtype=10, rdata=bytes(rdata)) + rr(ptr(top))
    assert "too many compression pointers" in reason_of(data)


@pytest.mark.parametrize(
    ("hops", "accepted"), [(MAX_POINTER_HOPS, True), (MAX_POINTER_HOPS + 1, False)]
)
def test_scan_message_bounds_pointer_hops(hops: int, accepted: bool) -> None:
    """A name may take at most MAX_POINTER_HOPS pointer hops."""
    # RDATA: "\x01a\x00" then hops-1 pointers, each to the one before (the first to the name).
    rdata = bytearray(b"\x01a\x00")
    targets = [FIRST_RDATA]
    for _ in range(hops - 1):
        targets.append(FIRST_RDATA + len(rdata))
        rdata += ptr(targets[-2])
    data = header(an=2) + rr(b"\x00", rtype=10, rdata=bytes(rdata)) + rr(ptr(targets[-1]))
    if accepted:
        assert scan_message(data).end == len(data)
    else:
        assert "too many compression pointers" in reason_of(data)


@pytest.mark.parametrize("length_octet", [0x40, 0x41, 0x7F, 0x80, 0xBF])
def test_scan_message_rejects_label_length_octet_0x40_to_0xbf(length_octet: int) -> None:
    """Labels over 63 octets and extended/reserved label types are refused (row 14)."""
    name = bytes([length_octet]) + b"a" * (length_octet & 0x3F) + b"\x00"
    assert "63 octets" in reason_of(header(qd=1) + question(name))
    # The same in a record owner, which goes through the fast skipping path.
    assert "63 octets" in reason_of(header(qd=1, an=1) + question() + rr(name))


def test_scan_message_accepts_63_octet_label() -> None:
    """63 octets is the longest label allowed (RFC 1035 §2.3.4)."""
    scanned = scan_message(header(qd=1) + question(b"\x3f" + b"a" * 63 + b"\x00"))
    assert scanned.qname == "a" * 63 + "."


def long_name(octets: int) -> bytes:
    """A wire name of exactly `octets` octets, root label included."""
    labels = b""
    remaining = octets - 1
    while remaining:
        size = min(63, remaining - 1) if remaining != 1 else 0
        if remaining - (size + 1) == 1:  # never leave a 1-octet gap: labels need 2 octets
            size -= 1
        labels += bytes([size]) + b"x" * size
        remaining -= size + 1
    assert len(labels) + 1 == octets
    return labels + b"\x00"


def test_scan_message_rejects_name_over_255_octets() -> None:
    """255 octets is accepted, 256 is refused (RFC 1035 §2.3.4; row 15)."""
    assert len(scan_message(header(qd=1) + question(long_name(255))).qname or "") == 254
    assert "255 octets" in reason_of(header(qd=1) + question(long_name(256)))
    assert "255 octets" in reason_of(header(qd=1, an=1) + question() + rr(long_name(256)))


def test_scan_message_rejects_name_over_255_octets_made_by_compression() -> None:
    """Labels in place plus a pointed-to suffix count together."""
    suffix = long_name(200)
    data = header(qd=1, an=1) + question(suffix) + rr(long_name(57)[:-1] + ptr(12))
    assert "255 octets" in reason_of(data)
    fits = header(qd=1, an=1) + question(suffix) + rr(long_name(56)[:-1] + ptr(12))
    assert scan_message(fits).end == len(fits)


def test_scan_message_counts_octets_of_a_suffix_seen_before() -> None:
    """A name ending in a pointer to an already validated suffix still obeys 255 octets."""
    suffix = long_name(200)
    first = rr(b"\x00", rtype=10, rdata=suffix) + rr(ptr(FIRST_RDATA))
    too_long = header(an=3) + first + rr(long_name(57)[:-1] + ptr(FIRST_RDATA))
    assert "255 octets" in reason_of(too_long)
    fits = header(an=3) + first + rr(long_name(56)[:-1] + ptr(FIRST_RDATA))
    assert scan_message(fits).end == len(fits)
    # Reached through a further pointer to the in-place labels of that 255-octet owner.
    third_owner = 12 + len(first)
    one_more = header(an=4) + fits[12:] + rr(b"\x01c" + ptr(third_owner))
    assert "255 octets" in reason_of(one_more)


def test_scan_message_counts_hops_of_a_suffix_seen_before() -> None:
    """Pointer hops through an already validated suffix still count towards the bound."""
    rdata = bytearray(b"\x01a\x00")
    targets = [FIRST_RDATA]
    for _ in range(MAX_POINTER_HOPS - 1):
        targets.append(FIRST_RDATA + len(rdata))
        rdata += ptr(targets[-2])
    chain = rr(b"\x00", rtype=10, rdata=bytes(rdata))
    # Owner 1 points at the top of the chain: MAX_POINTER_HOPS hops, accepted and remembered.
    # Owner 2 adds a label, same hop count. Owner 3 points at owner 2's pointer: one too many.
    records = chain + rr(ptr(targets[-1]), rdata=b"")
    accepted = header(an=3) + records + rr(b"\x01b" + ptr(targets[-1]), rdata=b"")
    assert scan_message(accepted).end == len(accepted)
    second_owner = 12 + len(records)
    refused = accepted[:6] + struct.pack(">H", 4) + accepted[8:] + rr(ptr(second_owner + 2))
    assert "too many compression pointers" in reason_of(refused)


def test_scan_message_rejects_forward_pointer_to_a_remembered_suffix() -> None:
    """A suffix validated earlier may lie after a later owner; pointing forward to it is refused."""
    # Record 1's RDATA is one octet, 14: read as a label length from offset 23 it spans
    # records 2 and 3's owners and lands on record 3's TYPE field, 0x01 0x7a 0x00, which reads
    # as the name "z.". Record 2's owner points at 23, so offset 38 becomes a known suffix.
    # Record 3's owner, at 36, points forward to 38.
    data = (
        header(an=3)
        + rr(b"\x00", rtype=10, rdata=b"\x0e")
        + rr(ptr(23), rdata=b"")
        + rr(ptr(38), rtype=0x017A, rdata=b"")
    )
    assert data[38:41] == b"\x01z\x00"
    assert "prior" in reason_of(data)
    name, end = scan_name(data, 24)  # record 2's owner, read on its own
    assert name.startswith("\\192\\023") and name.endswith(".z.") and end == 26


def test_scan_message_rejects_more_than_127_labels() -> None:
    """127 one-octet labels fit in 255 octets; 128 do not."""
    assert scan_message(header(qd=1) + question(b"\x01a" * 127 + b"\x00")).qname == "a." * 127
    assert "255 octets" in reason_of(header(qd=1) + question(b"\x01a" * 128 + b"\x00"))


def test_scan_message_rejects_name_running_past_the_end() -> None:
    """A label whose octets are missing is refused."""
    assert "past the end" in reason_of(header(qd=1) + b"\x07exam")
    assert "past the end" in reason_of(header(qd=1, an=1) + question() + b"\x07exam" + b"\x00" * 7)


def test_scan_message_keeps_loop_rule_when_suffix_was_seen_before() -> None:
    """A suffix validated for one owner does not excuse a pointer into another name's segment."""
    # RDATA at s: [01 00] [01 62] [pointer to s+1]. From s+2 the name is "b." followed through a
    # pointer to the root at s+1, which is fine. From s the pointer lands inside the segment
    # that began at s, which RFC 1035 §4.1.4 does not allow.
    s = FIRST_RDATA
    rdata = b"\x01\x00\x01b" + ptr(s + 1)
    records = rr(b"\x00", rtype=10, rdata=rdata)
    first_seen = header(an=3) + records + rr(ptr(s + 2)) + rr(ptr(s))
    assert "prior" in reason_of(first_seen)
    alone = header(an=2) + records + rr(ptr(s))
    assert "prior" in reason_of(alone)
    with pytest.raises(MalformedMessage):
        scan_name(alone, s)
    assert scan_name(alone, s + 2) == ("b.", s + 6)


# --- presentation form ------------------------------------------------------------------------


def test_scan_message_gives_lower_cased_presentation_name() -> None:
    """qname is lower-cased with a trailing dot; qname_wire keeps the case as sent."""
    wire = b"\x03WwW\x07ExAmple\x03COM\x00"
    scanned = scan_message(header(qd=1) + question(wire, qtype=28, qclass=1))
    assert scanned.qname == "www.example.com."
    assert scanned.qname_wire == wire
    assert (scanned.qtype, scanned.qclass) == (28, 1)
    assert scanned.question_end == 12 + len(wire) + 4


def test_scan_message_gives_root_as_a_dot() -> None:
    """The root name is "."."""
    scanned = scan_message(header(qd=1) + question(b"\x00", qtype=2))
    assert (scanned.qname, scanned.qname_wire) == (".", b"\x00")


def test_scan_message_accepts_binary_label_and_escapes_it() -> None:
    """Any octet may appear in a label (RFC 2181 §11); non-printable ones become \\DDD (row 16)."""
    scanned = scan_message(header(qd=1) + question(b"\x02\xffA\x07example\x00"))
    assert scanned.qname == "\\255a.example."


def test_scan_name_escapes_dot_backslash_and_space() -> None:
    """'.' and '\\' inside a label are escaped with a backslash, space as \\DDD (RFC 1035
    §5.1), so the text stays unambiguous."""
    data = header(qd=1) + question(b"\x05a.b\\ \x03C-D\x00")
    assert scan_name(data, 12) == ("a\\.b\\\\\\032.c-d.", 12 + 11)


def test_scan_name_follows_pointers_and_returns_end_in_place() -> None:
    """The end offset is just after the pointer, not after the pointed-to labels."""
    data = header(qd=1, an=1) + question() + rr(b"\x03www" + ptr(12))
    owner_at = 12 + len(question())
    assert scan_name(data, owner_at) == ("www.example.com.", owner_at + 6)


def test_scan_name_rejects_offset_outside_the_message() -> None:
    """An offset past the end, or negative, is malformed rather than an IndexError."""
    with pytest.raises(MalformedMessage):
        scan_name(QUERY, len(QUERY))
    with pytest.raises(MalformedMessage):
        scan_name(QUERY, -1)


# --- EDNS / OPT -------------------------------------------------------------------------------


def test_scan_message_reads_the_opt_record() -> None:
    """udp_size, version, DO, extended rcode, flags and options come from OPT (RFC 6891 §6.1.3)."""
    ttl = (1 << 24) | (1 << 16) | 0x8000 | 0x0080  # ext-rcode 1, version 1, DO, unknown flag
    options = option(10, b"\x01" * 8) + option(65001, b"")
    data = header(qd=1, ar=1) + question() + opt(options, udp=4096, ttl=ttl)
    scanned = scan_message(data)
    assert scanned.edns == EdnsInfo(
        udp_size=4096,
        version=1,
        do=True,
        ext_rcode=1,
        flags=0x8080,
        options=((10, b"\x01" * 8), (65001, b"")),
    )
    assert scanned.opt_offset == 12 + len(question())
    assert scanned.end == len(data)


def test_scan_message_without_opt_has_no_edns() -> None:
    """No OPT means edns and opt_offset are None."""
    scanned = scan_message(QUERY)
    assert (scanned.edns, scanned.opt_offset) == (None, None)


def test_scan_message_rejects_two_opt_records() -> None:
    """At most one OPT (RFC 6891 §6.1.1; row 29); the error says an OPT was seen."""
    with pytest.raises(MalformedMessage) as caught:
        scan_message(header(qd=1, ar=2) + question() + opt() + opt())
    assert caught.value.reason == "more than one OPT record"
    assert caught.value.opt_seen


def test_scan_message_rejects_opt_owner_other_than_root() -> None:
    """OPT's owner must be the root name (RFC 6891 §6.1.2; row 30), even via a pointer."""
    assert "root" in reason_of(header(qd=1, ar=1) + question() + opt(owner=b"\x01a\x00"))
    assert "root" in reason_of(header(qd=1, ar=1) + question() + opt(owner=ptr(12)))


def test_scan_message_rejects_edns_option_overrunning_rdata() -> None:
    """Options must exactly fill RDLENGTH (RFC 6891 §6.1.2; row 31)."""
    overrun = struct.pack(">HH", 10, 8) + b"\x01" * 4
    with pytest.raises(MalformedMessage) as caught:
        # Extra octets after the OPT so RDATA ends inside the message, only the option overruns.
        scan_message(header(qd=1, ar=1) + question() + opt(overrun) + b"\x01" * 8)
    assert caught.value.reason == "EDNS option overruns the OPT record"
    assert caught.value.opt_seen
    partial_header = option(10, b"\x01" * 8) + b"\x00\x0a"
    assert "option header" in reason_of(header(qd=1, ar=1) + question() + opt(partial_header))


def test_scan_message_rejects_opt_rdata_past_the_end() -> None:
    """An RDLENGTH beyond the message is refused for OPT as for any record."""
    data = header(qd=1, ar=1) + question() + opt(option(10, b"\x01" * 8))[:-3]
    assert "RDATA" in reason_of(data)


@pytest.mark.parametrize("section", ["answer", "authority"])
def test_scan_message_rejects_opt_outside_additional(section: str) -> None:
    """OPT belongs in the additional section only (RFC 6891 §6.1.1)."""
    counts = {"an": 1} if section == "answer" else {"ns": 1}
    assert "additional" in reason_of(header(flags=0x8180, qd=1, **counts) + question() + opt())


# --- query rules --------------------------------------------------------------------------------


def test_scan_query_rejects_qr_set() -> None:
    """A message with QR=1 is not a query (row 2)."""
    assert "QR" in reason_of(header(flags=0x8100, qd=1) + question(), scan_query)


def test_scan_query_rejects_qdcount_zero() -> None:
    """A QUERY without a question is malformed (row 5); scan_message alone accepts it."""
    assert "one question" in reason_of(header(qd=0), scan_query)
    scanned = scan_message(header(qd=0))
    assert (scanned.qname, scanned.qname_wire, scanned.qtype, scanned.question_end) == (
        None,
        None,
        None,
        12,
    )


def test_scan_query_rejects_qdcount_two() -> None:
    """A QUERY with two questions is malformed (row 6); scan_message alone accepts it."""
    data = header(qd=2) + question() + question(b"\x03www" + ptr(12))
    assert "one question" in reason_of(data, scan_query)
    scanned = scan_message(data)
    assert scanned.qname == "example.com."
    assert scanned.question_end == len(data)


def test_scan_query_rejects_answer_or_authority_records() -> None:
    """ANCOUNT or NSCOUNT non-zero in a QUERY is malformed (row 7)."""
    assert "answer or authority" in reason_of(
        header(qd=1, an=1) + question() + rr(b"\x00"), scan_query
    )
    assert "answer or authority" in reason_of(
        header(qd=1, ns=1) + question() + rr(b"\x00"), scan_query
    )


def test_scan_query_rejects_additional_other_than_one_opt() -> None:
    """ARCOUNT above 1, or one additional record that is not OPT, is malformed (row 8)."""
    two = header(qd=1, ar=2) + question() + opt() + rr(b"\x00", rtype=250, rdata=b"")
    assert "more than one" in reason_of(two, scan_query)
    tsig_only = header(qd=1, ar=1) + question() + rr(b"\x00", rtype=250, rdata=b"")
    assert "not OPT" in reason_of(tsig_only, scan_query)


def test_scan_query_passes_other_opcodes_through() -> None:
    """Opcode 15 with no question is left to the handler, which answers NOTIMP (row 4)."""
    scanned = scan_query(header(ident=77, flags=15 << 11, qd=0))
    assert (scanned.id, scanned.opcode, scanned.qname) == (77, 15, None)
    notify = scan_query(header(flags=4 << 11, qd=1, an=1) + question() + rr(ptr(12)))
    assert notify.opcode == 4


def test_scan_query_rejects_cookie_of_wrong_length() -> None:
    """COOKIE must be 8 octets or 16-40 (RFC 7873 §5.2.2; row 37)."""
    for size in (0, 7, 9, 15, 41):
        data = header(qd=1, ar=1) + question() + opt(option(10, b"\x01" * size))
        assert "COOKIE" in reason_of(data, scan_query)
    for size in (8, 16, 40):
        data = header(qd=1, ar=1) + question() + opt(option(10, b"\x01" * size))
        assert scan_query(data).edns is not None


def test_scan_query_accepts_trailing_garbage() -> None:
    """Octets after the last counted record are ignored (row 17); `end` marks where they start."""
    data = QUERY + b"\xde\xad\xbe\xef"
    scanned = scan_query(data)
    assert scanned.end == len(QUERY)
    assert scanned.end < len(data)


def test_scan_query_reads_a_dig_query_with_cookie() -> None:
    """`dig www.Example.com AAAA` (RD, AD, EDNS 1232, client cookie) is read correctly."""
    cookie = bytes.fromhex("0f1e2d3c4b5a6978")
    name = b"\x03www\x07Example\x03com\x00"
    data = (
        header(ident=0xA1B2, flags=0x0120, qd=1, ar=1)
        + question(name, qtype=28)
        + opt(option(10, cookie))
    )
    scanned = scan_query(data)
    assert scanned == ScannedMessage(
        id=0xA1B2,
        flags=0x0120,
        opcode=0,
        rcode=0,
        qr=False,
        qdcount=1,
        ancount=0,
        nscount=0,
        arcount=1,
        qname="www.example.com.",
        qname_wire=name,
        qtype=28,
        qclass=1,
        question_end=12 + len(name) + 4,
        edns=EdnsInfo(
            udp_size=1232, version=0, do=False, ext_rcode=0, flags=0, options=((10, cookie),)
        ),
        opt_offset=12 + len(name) + 4,
        end=len(data),
    )


def test_scan_query_matches_dnslib_built_query() -> None:
    """A query packed by dnslib with EDNS and a cookie scans to the same fields dnslib reads."""
    query = DNSRecord.question("mail.example.org", "MX")
    query.add_ar(EDNS0(udp_len=1232, flags="do", opts=[EDNSOption(10, b"\x02" * 8)]))
    data = query.pack()
    scanned = scan_query(data)
    assert (scanned.id, scanned.qname, scanned.qtype) == (query.header.id, "mail.example.org.", 15)
    assert scanned.edns is not None
    assert (scanned.edns.udp_size, scanned.edns.do, scanned.edns.options) == (
        1232,
        True,
        ((10, b"\x02" * 8),),
    )


def test_scan_message_reads_a_compressed_response() -> None:
    """A dnslib-built response with compression, glue and OPT scans fully and correctly."""
    response = DNSRecord(
        DNSHeader(id=0x4242, qr=1, ra=1, rd=1), q=DNSQuestion("www.example.com", QTYPE.A)
    )
    response.add_answer(RR("www.example.com", QTYPE.CNAME, rdata=CNAME("web.example.com"), ttl=60))
    response.add_answer(RR("web.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    response.add_auth(RR("example.com", QTYPE.NS, rdata=NS("ns1.example.com"), ttl=60))
    response.add_ar(RR("ns1.example.com", QTYPE.A, rdata=A("192.0.2.53"), ttl=60))
    response.add_ar(EDNS0(udp_len=1232, flags="do"))
    data = response.pack()
    assert ptr(12) in data  # dnslib compressed the owner names
    scanned = scan_message(data)
    assert (scanned.id, scanned.qr, scanned.qname, scanned.qtype, scanned.qclass) == (
        0x4242,
        True,
        "www.example.com.",
        QTYPE.A,
        1,
    )
    assert (scanned.ancount, scanned.nscount, scanned.arcount) == (2, 1, 2)
    assert scanned.edns is not None
    assert (scanned.edns.udp_size, scanned.edns.do, scanned.edns.version) == (1232, True, 0)
    assert scanned.opt_offset is not None and data[scanned.opt_offset] == 0
    assert scanned.end == len(data)
    first_owner, after_owner = scan_name(data, scanned.question_end)
    (rdlength,) = struct.unpack_from(">H", data, after_owner + 8)
    assert first_owner == "www.example.com."
    assert scan_name(data, after_owner + 10 + rdlength)[0] == "web.example.com."


def test_scan_message_accepts_bytearray_and_memoryview() -> None:
    """Buffers that are not bytes scan the same way, and the result holds bytes."""
    expected = scan_message(QUERY)
    assert scan_message(bytearray(QUERY)) == expected  # type: ignore[arg-type]
    assert scan_message(memoryview(QUERY)) == expected  # type: ignore[arg-type]


# --- cache key ----------------------------------------------------------------------------------


def test_question_key_ignores_case_and_keeps_type_and_class() -> None:
    """Differently cased names share a key; another QTYPE gives another key."""
    upper = header(qd=1) + question(b"\x07EXAMPLE\x03Com\x00", qtype=0x41)
    lower = header(ident=9, qd=1) + question(b"\x07example\x03com\x00", qtype=0x41)
    key = question_key(upper, scan_query(upper))
    assert (
        key == question_key(lower, scan_query(lower)) == b"\x07example\x03com\x00\x00\x41\x00\x01"
    )
    other = header(qd=1) + question(qtype=1)
    assert question_key(other, scan_query(other)) != key


def test_question_key_refuses_message_without_question() -> None:
    """No question, no key."""
    data = header(qd=0)
    with pytest.raises(MalformedMessage):
        question_key(data, scan_message(data))


# --- adversarial sizes ----------------------------------------------------------------------------


def test_scan_message_finishes_64k_backward_chain() -> None:
    """A 64 KB message of 8,000+ chained questions is refused without RecursionError (§0)."""
    body = bytearray(question(b"\x01a\x00"))
    starts = [12]
    while 12 + len(body) + 8 <= 65535:
        starts.append(12 + len(body))
        body += question(b"\x01a" + ptr(starts[-2]))
    assert len(starts) > 8000
    with pytest.raises(MalformedMessage):
        scan_message(header(qd=len(starts)) + bytes(body))


def test_scan_message_finishes_64k_of_owners_pointing_at_long_names() -> None:
    """Thousands of owners pointing at 255-octet names are all accepted, each walked once."""
    name = b"\x01a" * 127 + b"\x00"
    rdata = name * (16000 // len(name))
    starts = range(FIRST_RDATA, FIRST_RDATA + len(rdata), len(name))
    first = rr(b"\x00", rtype=10, rdata=rdata)
    count = (65535 - 12 - len(first)) // 12
    owners = b"".join(
        rr(ptr(starts[i % len(starts)] + 2 * (i % 127)), rdata=b"") for i in range(count)
    )
    data = header(flags=0x8000, an=count + 1) + first + owners
    assert scan_message(data).end == len(data)


def test_scan_query_finishes_1000_edns_options() -> None:
    """1000 EDNS options parse linearly (row 36)."""
    options = b"".join(option(65001, b"abcd") for _ in range(1000))
    scanned = scan_query(header(qd=1, ar=1) + question() + opt(options))
    assert scanned.edns is not None and len(scanned.edns.options) == 1000
