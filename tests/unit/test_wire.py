"""The DNS message format seen through frozen values (RFC 1035 §4, RFC 6891, RFC 3597)."""

from __future__ import annotations

import struct

import dnslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns import decoding, wire
from resolver.dns.decoding import decode
from resolver.dns.encoding import encode, make_query
from resolver.dns.rdata_wire import name_labels
from resolver.dns.scanner import scan_message
from resolver.dns.wire import (
    Edns,
    MalformedMessage,
    Message,
    Question,
    Rcode,
    RRType,
    parse_record,
    parse_records,
)


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


def _wire_labels_of(name_octets: bytes) -> tuple[bytes, ...]:
    """The labels of an uncompressed wire name, lower-cased (what canonical names keep)."""
    labels, pos = [], 0
    while name_octets[pos]:
        labels.append(name_octets[pos + 1 : pos + 1 + name_octets[pos]].lower())
        pos += 1 + name_octets[pos]
    return tuple(labels)


@settings(max_examples=300, deadline=None)
@given(
    owners=st.lists(_NAMES, min_size=1, max_size=5),
    targets=st.lists(_NAMES, min_size=5, max_size=5),
    ttls=st.lists(st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5),
)
def test_decode_keeps_the_exact_labels_of_every_owner_and_target(
    owners: list[bytes], targets: list[bytes], ttls: list[int]
) -> None:
    """Any octet in a label (RFC 2181 §11) survives decoding: the presentation name reads
    back as the labels sent, and the message encodes to one that decodes equal."""
    data = _compressed_message(owners, targets[: len(owners)], ttls[: len(owners)])
    try:
        scan_message(data)
    except MalformedMessage:
        return  # a name over 255 octets
    message = decode(data)
    assert [name_labels(r.name) for r in message.answer] == list(map(_wire_labels_of, owners))
    assert [name_labels(r.target) for r in message.answer] == [
        _wire_labels_of(t) for t in targets[: len(owners)]
    ]
    assert decode(encode(message)) == message


def test_decode_escapes_a_dot_inside_a_label_instead_of_splitting_it() -> None:
    """The one label b"a.b" is written "a\\.b." (RFC 1035 §5.1), never the two labels a, b."""
    data = _compressed_message([b"\x03a.b\x00"], [b"\x04c\\.d\x00"], [60])
    record = decode(data).answer[0]
    assert record.name == "a\\.b."
    assert record.target == "c\\\\\\.d."  # backslash and dot, both escaped
    assert name_labels(record.name) == (b"a.b",)
    assert encode(decode(data)) == data


def test_decode_reads_octets_above_0x7f_in_a_name_as_escapes() -> None:
    """RFC 2181 §11: a label may hold any octet. dnslib cannot read 0x80; we write \\128."""
    data = _compressed_message([b"\x04\x80ww1\x00"], [b"\x02ns\x00"], [60])
    message = decode(data)
    assert message.question is not None and message.question.name == "\\128ww1."
    assert message.answer[0].name == "\\128ww1." and message.answer[0].target == "ns."


def test_decode_drops_a_record_whose_rdata_is_longer_than_its_type_reads() -> None:
    """An A record of 5 octets is dropped and named; the message itself stands."""
    data = bytearray(make_query(Question("x.test.", RRType.A), query_id=1, edns_udp_size=None))
    data[2] |= 0x80
    data[7] = 1
    data += b"\xc0\x0c" + struct.pack("!HHIH", RRType.A, 1, 60, 5) + b"\x01\x02\x03\x04\x05"
    message = decoding.decode(bytes(data))
    assert message.answer == ()
    assert message.malformed == ("x.test. A: 5 octets of RDATA do not fit the type",)


def test_decode_reads_a_referral_with_glue() -> None:
    """A typical referral (NS in authority, A and AAAA glue) decodes to what was encoded."""
    reply = Message(
        id=3, qr=True, opcode=0, rcode=0, question=Question("www.example.com.", RRType.A),
        authority=tuple(parse_records("example.com. 172800 IN NS ns1.example.com.\n"
                                      "example.com. 172800 IN NS ns2.example.net.")),
        additional=tuple(parse_records("ns1.example.com. 172800 IN A 192.0.2.1\n"
                                       "ns1.example.com. 172800 IN AAAA 2001:db8::1")),
        edns=Edns(udp_size=1232),
    )
    data = encode(reply)
    plain = decode(data)
    assert plain == reply
    assert [r.target for r in plain.authority] == ["ns1.example.com.", "ns2.example.net."]
    assert [r.address for r in plain.additional] == ["192.0.2.1", "2001:db8::1"]


# --- the encoder against dnslib's ------------------------------------------------------------


def dnslib_encode(message: Message) -> bytes:
    """The reference: the same message packed by dnslib's DNSRecord."""
    header = dnslib.DNSHeader(
        id=message.id, qr=int(message.qr), opcode=message.opcode, aa=int(message.aa),
        tc=int(message.tc), rd=int(message.rd), ra=int(message.ra), ad=int(message.ad),
        cd=int(message.cd), rcode=message.rcode & 0xF,
    )
    record = dnslib.DNSRecord(header)
    if message.question is not None:
        q = message.question
        record.add_question(dnslib.DNSQuestion(q.name, q.rtype, q.rclass))

    def rr(r: wire.Record) -> dnslib.RR:
        rdata = r.rdata
        if isinstance(rdata, wire.Ipv4Rdata):  # ours: dnslib's own type for the reference
            rdata = dnslib.A(rdata.text)
        return dnslib.RR(rname=r.name, rtype=r.rtype, rclass=r.rclass, ttl=max(0, r.ttl),
                         rdata=rdata)

    for r in message.answer:
        record.add_answer(rr(r))
    for r in message.authority:
        record.add_auth(rr(r))
    for r in message.additional:
        record.add_ar(rr(r))
    if message.edns is not None:
        e = message.edns
        ttl = ((message.rcode >> 4) << 24) | (e.version << 16) | (0x8000 if e.do else 0)
        record.add_ar(dnslib.RR(rname=".", rtype=RRType.OPT, rclass=e.udp_size, ttl=ttl,
                                rdata=[dnslib.EDNSOption(c, d) for c, d in e.options]))
    return bytes(record.pack())


_TEXT_RECORDS = parse_records("""
www.example.com. 300 IN CNAME web.example.com.
web.example.com. 300 IN A 192.0.2.10
web.example.com. 300 IN AAAA 2001:db8::10
example.com. 86400 IN NS ns1.example.com.
example.com. 86400 IN NS ns.other.net.
ns1.example.com. 86400 IN A 192.0.2.53
example.com. 3600 IN MX 10 mail.example.com.
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 7 7200 900 1209600 300
example.com. 60 IN TXT "v=spf1 -all" "second string"
_sip._udp.example.com. 60 IN SRV 10 60 5060 sip.example.com.
10.2.0.192.in-addr.arpa. 60 IN PTR web.example.com.
odd\\032name.example.com. 60 IN A 192.0.2.99
""")
_DECODED_A = decode(b"\x00\x01\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01x\x04test\x00"
                    b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x07").answer[0]
_RECORDS = [*_TEXT_RECORDS, wire.make_record("example.com.", 65400, 60, b"\x01\x02\x03"),
            _DECODED_A]


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(_RECORDS) - 1), max_size=10),
    split=st.tuples(st.integers(0, 10), st.integers(0, 10)),
    edns=st.one_of(st.none(), st.builds(
        Edns, udp_size=st.integers(512, 4096), do=st.booleans(),
        options=st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=8)),
                         max_size=2).map(tuple))),
    rcode=st.sampled_from([0, 2, 3, 5, 16]),
    flags=st.lists(st.booleans(), min_size=7, max_size=7),
    with_question=st.booleans(),
)
def test_encode_writes_what_dnslib_writes(
    picks: list[int], split: tuple[int, int], edns: Edns | None, rcode: int,
    flags: list[bool], with_question: bool,
) -> None:
    """Same octets as dnslib's DNSRecord.pack, compression pointers included, for answers,
    referrals, negative answers, escapes, unknown types, OPT with options and ext. rcodes."""
    records = [_RECORDS[i] for i in picks]
    first, second = sorted(split)
    qr, aa, tc, rd, ra, ad, cd = flags
    message = Message(
        id=0xBEEF, qr=qr, opcode=0, rcode=rcode if edns is not None else rcode & 0xF,
        aa=aa, tc=tc, rd=rd, ra=ra, ad=ad, cd=cd,
        question=Question("www.example.com.", RRType.A) if with_question else None,
        answer=tuple(records[:first]), authority=tuple(records[first:second]),
        additional=tuple(records[second:]), edns=edns,
    )
    assert encode(message) == dnslib_encode(message)
    assert decode(encode(message)) == decode(dnslib_encode(message))


def test_encode_never_points_past_what_a_pointer_can_hold() -> None:
    """Names first written beyond offset 16383 are written out again, not pointed to."""
    filler = tuple(parse_records("\n".join(
        f'big.example. 60 IN TXT "{"x" * 200}{i}"' for i in range(90))))
    late = parse_records("late.example. 60 IN A 192.0.2.1\nlate.example. 60 IN A 192.0.2.2")
    message = Message(id=1, qr=True, opcode=0, rcode=0, answer=(*filler, *late))
    data = encode(message)
    assert len(data) > 0x4000
    assert [r.address for r in decode(data).answer[-2:]] == ["192.0.2.1", "192.0.2.2"]


# --- RDATA that is one name (NS, CNAME, PTR, DNAME), read without dnslib -------------------


def _answer_of(rtype: int, rdata: bytes, rdlength: int | None = None) -> bytes:
    """A reply to "x.test. A" whose one answer record has the given type and RDATA."""
    data = bytearray(make_query(Question("x.test.", RRType.A), query_id=1, edns_udp_size=None))
    data[2] |= 0x80
    data[7] = 1
    length = len(rdata) if rdlength is None else rdlength
    data += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 60, length) + rdata
    return bytes(data)


@pytest.mark.parametrize("rtype", [RRType.NS, RRType.CNAME, RRType.PTR, RRType.DNAME])
def test_a_name_in_rdata_keeps_its_case_on_the_wire_and_compares_canonical(rtype: int) -> None:
    data = _answer_of(rtype, b"\x03NS1\x07Example\x03COM\x00")
    record = decode(data).answer[0]
    assert record.rdata_key == record.target == "ns1.example.com."
    assert record.rdata_text == "NS1.Example.COM."
    assert encode(decode(data)) == data


def test_a_name_in_rdata_may_point_back_into_the_question() -> None:
    record = decode(_answer_of(RRType.CNAME, b"\x03www\xc0\x0c")).answer[0]
    assert record.target == "www.x.test."


@pytest.mark.parametrize(("rdata", "rdlength"), [
    (b"\x02ns\x00\x00", None),  # an octet after the name
    (b"\x02ns\x00", 2),  # the name runs past RDLENGTH
    (b"\x02ns\xc0\x30", None),  # a pointer forward, past the message
])
def test_an_ns_whose_rdata_is_not_exactly_one_name_is_dropped_and_named(
        rdata: bytes, rdlength: int | None) -> None:
    message = decode(_answer_of(RRType.NS, rdata, rdlength))
    assert message.answer == ()
    assert len(message.malformed) == 1 and message.malformed[0].startswith("x.test. NS:")
