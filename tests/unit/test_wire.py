"""The DNS message format seen through frozen values (RFC 1035 §4, RFC 6891, RFC 3597)."""

from __future__ import annotations

import struct

import dnslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver import wire
from resolver.wire import (
    Edns,
    MalformedMessage,
    Message,
    Question,
    Rcode,
    RRType,
    decode,
    encode,
    make_query,
    parse_record,
    parse_records,
)
from resolver.wirecheck import scan_message


def header(data: bytes) -> tuple[int, int, int, int, int, int]:
    """The six 16-bit header fields of a message."""
    return struct.unpack("!6H", data[:12])


def reply_with(records: str, *, edns: Edns | None = None, rcode: int = Rcode.NOERROR) -> Message:
    """A reply to "big.example. TXT" carrying the given records in its answer."""
    return Message(
        id=7,
        qr=True,
        opcode=0,
        rcode=rcode,
        aa=True,
        question=Question("big.example.", RRType.TXT),
        answer=tuple(parse_records(records)),
        edns=edns,
    )


# --- make_query -----------------------------------------------------------------------


def test_make_query_builds_one_question_with_the_given_id_and_flags() -> None:
    """A query has QDCOUNT=1, the id asked for, RD only when requested (RFC 1035 §4.1.1)."""
    data = make_query(Question("www.example.com.", RRType.A), query_id=0xBEEF, edns_udp_size=None)
    ident, flags, qd, an, ns, ar = header(data)
    assert (ident, flags, qd, an, ns, ar) == (0xBEEF, 0, 1, 0, 0, 0)
    assert data[12:] == b"\x03www\x07example\x03com\x00" + struct.pack("!HH", 1, 1)


def test_make_query_sets_rd_and_cd_when_asked() -> None:
    """recursion_desired sets RD (0x0100) and checking_disabled sets CD (0x0010)."""
    data = make_query(
        Question("a.test.", RRType.A),
        query_id=1,
        recursion_desired=True,
        checking_disabled=True,
        edns_udp_size=None,
    )
    assert header(data)[1] == 0x0110


def test_make_query_adds_an_opt_with_the_payload_size_and_do_bit() -> None:
    """With EDNS the query carries one OPT with our size and the DO bit (RFC 6891 §6.1.2)."""
    data = make_query(Question("a.test.", RRType.A), query_id=1, edns_udp_size=1232, dnssec_ok=True)
    assert header(data)[5] == 1
    message = decode(data)
    assert message.edns == Edns(udp_size=1232, version=0, do=True, ext_rcode=0, options=())


def test_make_query_round_trips_through_decode() -> None:
    """Decoding a query we built gives back the question and flags."""
    question = Question("mail.hamburger.edu.", RRType.AAAA)
    message = decode(make_query(question, query_id=4242, recursion_desired=True))
    assert message.id == 4242 and not message.qr and message.rd
    assert message.question == question
    assert message.edns is not None and message.edns.udp_size == 1232


def test_make_query_of_the_root_name_is_a_single_zero_octet() -> None:
    """The root name is encoded as the empty label alone (RFC 1035 §3.1)."""
    data = make_query(Question(".", RRType.NS), query_id=1, edns_udp_size=None)
    assert data[12:] == b"\x00" + struct.pack("!HH", RRType.NS, 1)


def test_make_query_refuses_a_label_longer_than_63_octets() -> None:
    """Labels are at most 63 octets (RFC 1035 §2.3.4)."""
    with pytest.raises(ValueError):
        make_query(Question("a" * 64 + ".test.", RRType.A), query_id=1)


def test_make_query_refuses_a_name_longer_than_255_octets() -> None:
    """Names are at most 255 octets on the wire (RFC 1035 §2.3.4)."""
    name = ".".join(["a" * 63] * 4) + "."
    with pytest.raises(ValueError):
        make_query(Question(name, RRType.A), query_id=1)


# --- decode -----------------------------------------------------------------------------


def test_decode_rejects_garbage_with_malformed_message() -> None:
    """Bytes that are not a DNS message raise MalformedMessage, never another error."""
    for data in (b"", b"\x00" * 5, b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"):
        with pytest.raises(MalformedMessage):
            decode(data)


def test_decode_lowercases_names() -> None:
    """Names are canonical after decoding, whatever case was sent (RFC 4343)."""
    data = make_query(Question("WwW.ExAmPlE.CoM.", RRType.A), query_id=1)
    assert decode(data).question == Question("www.example.com.", RRType.A)


def test_decode_reads_a_ttl_with_the_top_bit_set_as_zero() -> None:
    """A TTL with the most significant bit set is treated as zero (RFC 2181 §8)."""
    message = reply_with('big.example. 300 IN TXT "x"')
    data = bytearray(encode(message))
    ttl_offset = data.rindex(struct.pack("!HHI", RRType.TXT, 1, 300)) + 4
    data[ttl_offset : ttl_offset + 4] = struct.pack("!I", 0x80000005)
    (record,) = decode(bytes(data)).answer
    assert record.ttl == 0


def test_decode_combines_the_extended_rcode_from_the_opt() -> None:
    """The OPT's upper rcode bits extend the header's four (RFC 6891 §6.1.3): BADVERS is 16."""
    message = reply_with("", edns=Edns(), rcode=Rcode.BADVERS)
    data = encode(message)
    assert header(data)[1] & 0xF == 0
    assert decode(data).rcode == Rcode.BADVERS


def test_decode_keeps_the_opt_out_of_the_additional_section() -> None:
    """The OPT pseudo-record becomes `edns`, not an additional record."""
    message = decode(encode(reply_with('big.example. 60 IN TXT "a"', edns=Edns(udp_size=4000))))
    assert message.additional == ()
    assert message.edns is not None and message.edns.udp_size == 4000


# --- encode -----------------------------------------------------------------------------


def test_encode_round_trips_flags_and_sections() -> None:
    """What encode writes, decode reads back unchanged."""
    message = Message(
        id=99,
        qr=True,
        opcode=0,
        rcode=Rcode.NXDOMAIN,
        aa=True,
        rd=True,
        ra=True,
        cd=True,
        question=Question("nothere.example.", RRType.A),
        authority=(
            parse_record("example. 300 IN SOA ns.example. host.example. 1 7200 900 1209600 300"),
        ),
        additional=(parse_record("ns.example. 300 IN A 192.0.2.1"),),
        edns=Edns(options=((15, b"\x00\x16why"),)),
    )
    assert decode(encode(message)) == message


def test_encode_truncates_to_header_question_and_opt_with_tc() -> None:
    """A reply that does not fit is cut to header, question and OPT with TC=1 (RFC 6891 §7)."""
    text = "\n".join(f'big.example. 300 IN TXT "{i:02d} {"x" * 60}"' for i in range(12))
    message = reply_with(text, edns=Edns(udp_size=1232))
    data = encode(message, max_size=512)
    assert len(data) <= 512
    decoded = decode(data)
    assert decoded.tc
    assert decoded.answer == decoded.authority == decoded.additional == ()
    assert decoded.question == message.question
    assert decoded.edns is not None


def test_encode_does_not_truncate_what_fits() -> None:
    """A reply within max_size keeps all its records and TC=0."""
    message = reply_with('big.example. 300 IN TXT "small"')
    decoded = decode(encode(message, max_size=512))
    assert not decoded.tc and len(decoded.answer) == 1


def test_encode_without_edns_has_no_opt() -> None:
    """No Edns value means no OPT record in the message."""
    data = encode(reply_with('big.example. 300 IN TXT "small"'))
    assert header(data)[5] == 0


def test_encode_carries_an_unknown_type_untouched() -> None:
    """Unknown types travel as opaque RDATA (RFC 3597 §5)."""
    record = parse_record("unknown.example. 300 IN TYPE65400 \\# 4 0A000001")
    message = Message(
        id=1,
        qr=True,
        opcode=0,
        rcode=0,
        question=Question("unknown.example.", 65400),
        answer=(record,),
    )
    (decoded,) = decode(encode(message)).answer
    assert decoded.rtype == 65400 and decoded == record
    assert decoded.rdata_text == "\\# 4 0A000001"


# --- records and types ------------------------------------------------------------------


def test_record_target_reads_the_name_in_name_bearing_rdata() -> None:
    """NS, CNAME, DNAME, MX and SRV expose the domain name they point at, canonical."""
    assert parse_record("a.example. 60 IN CNAME B.Example.").target == "b.example."
    assert parse_record("example. 60 IN NS ns1.example.").target == "ns1.example."
    assert parse_record("example. 60 IN MX 10 mail.example.").target == "mail.example."
    assert parse_record("_s._udp.example. 60 IN SRV 1 2 5060 sip.example.").target == "sip.example."
    assert parse_record("a.example. 60 IN DNAME b.test.").target == "b.test."


def test_record_target_of_an_address_record_is_an_error() -> None:
    """An A record points at no name."""
    with pytest.raises(ValueError):
        _ = parse_record("a.example. 60 IN A 192.0.2.1").target


def test_record_with_ttl_returns_a_changed_copy() -> None:
    """with_ttl gives a new record with the new TTL and leaves the original alone."""
    record = parse_record("a.example. 60 IN A 192.0.2.1")
    lowered = record.with_ttl(10)
    assert lowered.ttl == 10 and record.ttl == 60
    assert lowered.rdata_key == record.rdata_key and lowered != record


def test_record_rdata_key_compares_names_in_rdata_case_insensitively() -> None:
    """Two CNAMEs whose targets differ only in case are the same record (RFC 4343)."""
    upper = parse_record("a.example. 60 IN CNAME WWW.TARGET.example.")
    lower = parse_record("a.example. 60 IN CNAME www.target.example.")
    assert upper == lower


def test_record_soa_minimum_is_the_last_soa_field() -> None:
    """SOA MINIMUM, the negative-caching TTL (RFC 2308 §4), is the fifth timer."""
    soa = parse_record("example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 300")
    assert soa.soa_minimum == 300


def test_record_owner_name_is_canonical() -> None:
    """Owner names from zone text are lower-cased and absolute."""
    assert parse_record("WWW.Example. 60 IN A 192.0.2.1").name == "www.example."


def test_type_name_uses_mnemonics_and_rfc3597_form() -> None:
    """Known types print as mnemonics, unknown ones as TYPEnnn (RFC 3597 §5)."""
    assert wire.type_name(1) == "A"
    assert wire.type_name(28) == "AAAA"
    assert wire.type_name(65400) == "TYPE65400"


@pytest.mark.parametrize(
    ("text", "number"), [("a", 1), ("AAAA", 28), ("TYPE65400", 65400), ("65400", 65400), ("mx", 15)]
)
def test_type_from_text_reads_mnemonics_and_numbers(text: str, number: int) -> None:
    """Type text may be a mnemonic (any case), TYPEnnn or a bare number."""
    assert wire.type_from_text(text) == number


@pytest.mark.parametrize("text", ["BOGUS", "TYPE70000", "70000", ""])
def test_type_from_text_refuses_unknown_or_out_of_range(text: str) -> None:
    """Unknown mnemonics and numbers above 65535 are errors."""
    with pytest.raises(ValueError):
        wire.type_from_text(text)


def test_parse_record_refuses_bad_or_multiple_records() -> None:
    """parse_record wants exactly one well-formed record."""
    with pytest.raises(ValueError):
        parse_record("a.example. 60 IN A not-an-address")
    with pytest.raises(ValueError):
        parse_record("a.example. 60 IN A 192.0.2.1\nb.example. 60 IN A 192.0.2.2")


# --- the plain decoder against dnslib's ------------------------------------------------------

_LABEL_OCTETS = st.one_of(
    st.sampled_from([b"www", b"example", b"com", b"Mail", b"_sip", b"xn--bcher-kva", b"*"]),
    st.binary(min_size=1, max_size=6),  # any octet: dots, backslashes, spaces, unprintables
)
_NAMES = st.lists(_LABEL_OCTETS, min_size=0, max_size=4).map(
    lambda labels: b"".join(bytes((len(x),)) + x for x in labels) + b"\x00"
)


def _compressed_message(owners: list[bytes], targets: list[bytes], ttls: list[int]) -> bytes:
    """A reply whose records point back to earlier names, as servers write them."""
    out = bytearray(struct.pack("!6H", 9, 0x8580, 1, len(owners), 0, 0))
    out += owners[0] + b"\x00\x01\x00\x01"
    offsets = {owners[0]: 12}
    for owner, target, ttl in zip(owners, targets, ttls, strict=True):
        if owner in offsets:
            out += struct.pack("!H", 0xC000 | offsets[owner])
        else:
            offsets[owner] = len(out)
            out += owner
        # an NS record: its target may also be a pointer to an earlier name
        rdata = struct.pack("!H", 0xC000 | offsets[target]) if target in offsets else target
        out += struct.pack("!HHIH", RRType.NS, 1, ttl, len(rdata)) + rdata
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(
    owners=st.lists(_NAMES, min_size=1, max_size=5),
    targets=st.lists(_NAMES, min_size=5, max_size=5),
    ttls=st.lists(st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5),
)
def test_decode_plain_reads_every_message_as_dnslib_does(
    owners: list[bytes], targets: list[bytes], ttls: list[int]
) -> None:
    """Where the plain decoder answers, its message equals dnslib's, RDATA octets included;
    where a name needs escapes, it declines and dnslib decodes."""
    data = _compressed_message(owners, targets[: len(owners)], ttls[: len(owners)])
    try:
        scanned = scan_message(data)
    except MalformedMessage:
        return  # a name over 255 octets: neither decoder sees it
    plain = wire._decode_plain(data, scanned)
    try:
        reference = wire._decode_with_dnslib(data, scanned)
    except MalformedMessage:  # dnslib cannot read octets above 0x7f in names
        if plain is None:  # nor could the plain decoder (in RDATA, which dnslib reads)
            with pytest.raises(MalformedMessage):
                decode(data)
        else:  # owner names only: written with \DDD escapes, as dnslib writes the others
            assert decode(data) == plain
        return
    assert decode(data) == (plain if plain is not None else reference)
    if plain is not None:
        assert plain == reference
        assert list(map(rdata_octets, plain.answer)) == list(map(rdata_octets, reference.answer))
        assert [r.target for r in plain.answer] == [r.target for r in reference.answer]


def rdata_octets(record: wire.Record) -> bytes:
    buffer = dnslib.DNSBuffer()
    record.rdata.pack(buffer)
    return bytes(buffer.data)


def test_decode_plain_declines_a_name_with_a_dot_inside_a_label() -> None:
    """dnslib would print b"a.b" as "a.b."; the full path keeps the two readings apart."""
    data = _compressed_message([b"\x03a.b\x00"], [b"\x02ns\x00"], [60])
    assert wire._decode_plain(data, scan_message(data)) is None
    assert decode(data).answer[0].rtype == RRType.NS


def test_decode_plain_reads_octets_above_0x7f_in_a_name_as_escapes() -> None:
    """RFC 2181 §11: a label may hold any octet. dnslib cannot read 0x80; we write \\128."""
    data = _compressed_message([b"\x04\x80ww1\x00"], [b"\x02ns\x00"], [60])
    message = decode(data)
    assert message.question is not None and message.question.name == "\\128ww1."
    assert message.answer[0].name == "\\128ww1." and message.answer[0].target == "ns."


def test_decode_plain_declines_rdata_longer_than_its_type_reads() -> None:
    """An A record of 5 octets is left to the full path, which decides as it always did."""
    data = bytearray(make_query(Question("x.test.", RRType.A), query_id=1, edns_udp_size=None))
    data[2] |= 0x80
    data[7] = 1
    data += b"\xc0\x0c" + struct.pack("!HHIH", RRType.A, 1, 60, 5) + b"\x01\x02\x03\x04\x05"
    assert wire._decode_plain(bytes(data), scan_message(bytes(data))) is None


def test_decode_plain_reads_a_referral_with_glue() -> None:
    """A typical referral (NS in authority, A and AAAA glue) takes the plain decoder."""
    reply = Message(
        id=3, qr=True, opcode=0, rcode=0, question=Question("www.example.com.", RRType.A),
        authority=tuple(parse_records("example.com. 172800 IN NS ns1.example.com.\n"
                                      "example.com. 172800 IN NS ns2.example.net.")),
        additional=tuple(parse_records("ns1.example.com. 172800 IN A 192.0.2.1\n"
                                       "ns1.example.com. 172800 IN AAAA 2001:db8::1")),
        edns=Edns(udp_size=1232),
    )
    data = encode(reply)
    plain = wire._decode_plain(data, scan_message(data))
    assert plain is not None and plain == decode(data) == reply
    assert [r.target for r in plain.authority] == ["ns1.example.com.", "ns2.example.net."]
    assert [r.address for r in plain.additional] == ["192.0.2.1", "2001:db8::1"]
