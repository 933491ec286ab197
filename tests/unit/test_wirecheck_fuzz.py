"""Property tests of the wire-format scanner: any input is scanned or refused cleanly, and
valid messages are read as dnslib reads them."""

from __future__ import annotations

import struct

from dnslib import CNAME as RecordCNAME
from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord
from dnslib import MX as RecordMX
from dnslib import NS as RecordNS
from dnslib import TXT as RecordTXT
from dnslib import A as RecordA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns.scanner import (
    MalformedMessage,
    ScannedMessage,
    question_key,
    scan_message,
    scan_query,
)
from resolver.dns.wire_names import scan_name

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scan_or_refuse(data: bytes) -> ScannedMessage | None:
    """Scan `data`; None when refused. Any exception other than MalformedMessage escapes."""
    try:
        scanned = scan_message(data)
    except MalformedMessage as error:
        assert error.reason
        return None
    assert 12 <= scanned.question_end <= scanned.end <= len(data)
    return scanned


@FUZZ
@given(st.binary(max_size=600))
def test_scan_message_on_arbitrary_bytes_returns_or_raises_malformed(data: bytes) -> None:
    """No input makes the scanner raise anything but MalformedMessage."""
    scan_or_refuse(data)


@FUZZ
@given(st.binary(min_size=12, max_size=300), st.integers(0, 5), st.integers(0, 3))
def test_scan_message_on_arbitrary_bodies_with_small_counts(
    body: bytes, qdcount: int, records: int
) -> None:
    """Random bodies behind plausible counts reach the name and record code, not just the
    count check."""
    data = struct.pack(">HHHHHH", 1, 0, qdcount, records, 0, 1) + body
    scanned = scan_or_refuse(data)
    if scanned is not None and scanned.qname_wire is not None:
        assert question_key(data, scanned).endswith(
            data[scanned.question_end - 4 : scanned.question_end]
        )


@FUZZ
@given(st.binary(max_size=300), st.integers(-2, 310))
def test_scan_name_and_scan_query_on_arbitrary_bytes(data: bytes, offset: int) -> None:
    """scan_name at any offset and scan_query raise nothing but MalformedMessage."""
    try:
        name, end = scan_name(data, offset)
        assert name.endswith(".") and offset < end <= len(data)
    except MalformedMessage:
        pass
    try:
        scanned = scan_query(data)
        assert not scanned.qr
    except MalformedMessage:
        pass


# --- messages whose names are built from random labels and pointers ------------------------


# Label contents favour octets that also parse as lengths, roots and pointers, so that a
# pointer landing inside a label finds something to read.
LABEL_OCTET = st.one_of(st.sampled_from([0, 1, 2, 0x61, 0xC0, 0x0C]), st.integers(0, 255))


@st.composite
def name_at(draw: st.DrawFn, offset: int, starts: list[int], *, compress: bool = True) -> bytes:
    """A wire name that starts at `offset`: a few labels, then the root or a pointer.

    Pointers mostly go to an offset in `starts` (where a label or pointer of an earlier name
    sits), sometimes just past such an offset, and sometimes anywhere up to a little past the
    name itself. The offsets of this name's labels are added to `starts`.
    """
    earlier = list(starts)
    wire = b""
    for _ in range(draw(st.integers(0, 3))):
        starts.append(offset + len(wire))
        size = draw(st.sampled_from([1, 1, 2, 3, 63] * 4 + [64]))
        if size <= 3:
            content = bytes(draw(st.lists(LABEL_OCTET, min_size=size, max_size=size)))
        else:
            content = draw(st.binary(min_size=size, max_size=size))
        wire += bytes([size]) + content
    if not compress or draw(st.integers(0, 3)) == 0:
        return wire + b"\x00"
    starts.append(offset + len(wire))
    choice = draw(st.integers(0, 9))
    if earlier and choice < 6:
        target = draw(st.sampled_from(earlier))
    elif choice < 8:
        # Just inside an earlier label or this name: where loops and overlapping parses hide.
        target = draw(st.sampled_from(starts)) + draw(st.integers(1, 2))
    else:
        target = draw(st.integers(0, offset + len(wire) + 4))
    return wire + struct.pack(">H", 0xC000 | target)


@st.composite
def messages_with_pointers(draw: st.DrawFn) -> bytes:
    """A header, one question and up to 8 records whose owners and RDATA hold random names."""
    count = draw(st.integers(1, 8))
    starts: list[int] = []
    data = struct.pack(">HHHHHH", 7, 0x8180, 1, count, 0, 0)
    # The first name cannot be compressed: nothing precedes it.
    data += draw(name_at(len(data), starts, compress=False)) + b"\x00\x01\x00\x01"
    for _ in range(count):
        data += draw(name_at(len(data), starts))
        rdata = b""
        for _ in range(draw(st.integers(0, 3))):
            rdata += draw(name_at(len(data) + 10 + len(rdata), starts))
        data += struct.pack(">HHIH", draw(st.sampled_from([1, 5, 10])), 1, 0, len(rdata)) + rdata
    return data


def reference_end(data: bytes) -> int | None:
    """Slow reference: every name checked independently by scan_name, no shared state."""
    try:
        if len(data) < 12:
            return None
        qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHH", data, 4)
        pos = 12
        for _ in range(qdcount):
            pos = scan_name(data, pos)[1] + 4
            if pos > len(data):
                return None
        for _ in range(ancount + nscount + arcount):
            pos = scan_name(data, pos)[1] + 10
            if pos > len(data):
                return None
            pos += struct.unpack_from(">H", data, pos - 2)[0]
            if pos > len(data):
                return None
        return pos
    except MalformedMessage:
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages_with_pointers())
def test_scan_message_agrees_with_independent_name_checks(data: bytes) -> None:
    """Remembering validated suffixes never changes the verdict on a name."""
    scanned = scan_or_refuse(data)
    assert (None if scanned is None else scanned.end) == reference_end(data)


# --- messages built by dnslib -------------------------------------------------------------------

LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join(labels) + ".")
QTYPES = st.sampled_from([QTYPE.A, QTYPE.AAAA, QTYPE.MX, QTYPE.TXT, QTYPE.NS, QTYPE.CNAME, 666])


@st.composite
def dnslib_messages(draw: st.DrawFn) -> DNSRecord:
    """A response with compression opportunities: records owned by a small pool of names."""
    pool = draw(st.lists(NAME, min_size=1, max_size=4))
    qname = draw(st.sampled_from(pool))
    record = DNSRecord(
        DNSHeader(id=draw(st.integers(0, 0xFFFF)), qr=1, rd=draw(st.booleans())),
        q=DNSQuestion(qname, draw(QTYPES)),
    )
    makers = [
        lambda: (QTYPE.A, RecordA(draw(st.ip_addresses(v=4)).exploded)),
        lambda: (QTYPE.CNAME, RecordCNAME(draw(st.sampled_from(pool)))),
        lambda: (QTYPE.NS, RecordNS(draw(st.sampled_from(pool)))),
        lambda: (QTYPE.MX, RecordMX(draw(st.sampled_from(pool)), draw(st.integers(0, 100)))),
        lambda: (QTYPE.TXT, RecordTXT(draw(st.text(alphabet="abc xyz", max_size=30)))),
    ]
    for add in (record.add_answer, record.add_auth, record.add_ar):
        for _ in range(draw(st.integers(0, 3))):
            rtype, rdata = draw(st.sampled_from(makers))()
            add(RR(draw(st.sampled_from(pool)), rtype, rdata=rdata, ttl=60))
    if draw(st.booleans()):
        flags = "do" if draw(st.booleans()) else ""
        record.add_ar(EDNS0(udp_len=draw(st.integers(512, 4096)), flags=flags))
    return record


@FUZZ
@given(dnslib_messages())
def test_scan_message_agrees_with_dnslib_on_valid_messages(record: DNSRecord) -> None:
    """On dnslib-built messages the scanner reads the same id, question, counts and EDNS."""
    data = record.pack()
    scanned = scan_message(data)
    parsed = DNSRecord.parse(data)
    assert scanned.id == parsed.header.id
    assert scanned.qname == str(parsed.q.qname).lower()
    assert (scanned.qtype, scanned.qclass) == (parsed.q.qtype, parsed.q.qclass)
    assert (scanned.ancount, scanned.nscount) == (len(parsed.rr), len(parsed.auth))
    assert scanned.arcount == len(parsed.ar)
    assert scanned.end == len(data)
    opts = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    if opts:
        assert scanned.edns is not None
        assert scanned.edns.udp_size == opts[0].rclass
        assert scanned.edns.do == bool(opts[0].ttl & 0x8000)
    else:
        assert scanned.edns is None


@FUZZ
@given(dnslib_messages(), st.data())
def test_scan_message_on_mutated_valid_messages_returns_or_raises_malformed(
    record: DNSRecord, data: st.DataObject
) -> None:
    """Valid messages with a few octets changed, or cut short, are scanned or refused cleanly."""
    wire = bytearray(record.pack())
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire = wire[: data.draw(st.integers(0, len(wire)))]
    scan_or_refuse(bytes(wire))
