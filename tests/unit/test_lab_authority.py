"""How a lab server answers (RFC 1034 §4.3.2, RFC 2308, RFC 6891), without sockets."""

from __future__ import annotations

import struct

import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, A, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns.decoding import decode
from resolver.engine.network import Transport
from resolver.lab.authority import Answer, Authority, Outcome, Zone, ZoneError
from resolver.lab.world import SERVERS, zone_text

_ZONES: dict[str, Zone] = {}


def server(name: str) -> Authority:
    """The Authority of one lab server, by host name."""
    (spec,) = [s for s in SERVERS if s.name == name]
    for origin in spec.zones:
        if origin not in _ZONES:
            _ZONES[origin] = Zone.from_text(origin, zone_text(origin))
    return Authority(_ZONES[o] for o in spec.zones)


ROOT = server("a.root-servers.net.")
GTLD = server("a.gtld-servers.net.")
ORG = server("b0.org.afilias-nst.org.")
UTOPIA = server("dns1.networkutopia.com.")
IBM = server("ns.ibm.com.")
EXAMPLE = server("ns1.example.test.")
CS = server("dns.cs.umass.edu.")


def data(records: tuple[RR, ...]) -> list[str]:
    """Records as 'owner TYPE rdata' strings, for readable assertions."""
    return [f"{r.rname} {QTYPE[r.rtype]} {r.rdata}" for r in records]


def ask(authority: Authority, query: DNSRecord, transport: Transport = Transport.UDP) -> DNSRecord:
    """Send a query through `respond` and parse the reply."""
    wire = authority.respond(query.pack(), transport=transport)
    assert wire is not None
    return DNSRecord.parse(wire)


# --- lookup: the RFC 1034 §4.3.2 cases ---------------------------------------------------


def test_lookup_exact_data_is_an_authoritative_answer() -> None:
    """Data of the asked type at the name: AA=1, the RRset in answer."""
    answer = UTOPIA.lookup("www.networkutopia.com", QTYPE.A)
    assert answer.outcome is Outcome.ANSWER and answer.aa and answer.rcode == RCODE.NOERROR
    assert data(answer.answer) == ["www.networkutopia.com. A 212.212.212.2"]
    assert answer.authority == ()


def test_lookup_ignores_case() -> None:
    """Names compare case-insensitively (RFC 4343)."""
    answer = UTOPIA.lookup("WWW.NetworkUtopia.COM.", QTYPE.A)
    assert data(answer.answer) == ["www.networkutopia.com. A 212.212.212.2"]


def test_lookup_mx_adds_the_mail_server_address() -> None:
    """Additional section processing: the A record of the MX target (RFC 1035 §3.3.9)."""
    answer = UTOPIA.lookup("networkutopia.com", QTYPE.MX)
    assert data(answer.answer) == ["networkutopia.com. MX 10 mail.networkutopia.com."]
    assert data(answer.additional) == ["mail.networkutopia.com. A 212.212.212.3"]


def test_lookup_several_addresses_for_one_name() -> None:
    """Load distribution: the whole RRset is returned."""
    answer = server("dns.amazon.com.").lookup("www.cnn.com", QTYPE.A)
    assert len(answer.answer) == 4 and answer.aa


def test_lookup_unknown_type_is_served_as_stored() -> None:
    """A TYPE65400 record (RFC 3597) is answered like any other type."""
    answer = EXAMPLE.lookup("unknown.example.test", 65400)
    assert answer.outcome is Outcome.ANSWER
    assert answer.answer[0].rdata.data == bytes.fromhex("0A000001")


def test_lookup_cname_inside_the_zone_is_followed() -> None:
    """A CNAME chain inside the zone ends in the data (RFC 1034 §4.3.2 step 3a)."""
    answer = EXAMPLE.lookup("chain.example.test", QTYPE.A)
    assert data(answer.answer)[:2] == [
        "chain.example.test. CNAME step.example.test.",
        "step.example.test. CNAME cdn.example.test.",
    ]
    assert [QTYPE[r.rtype] for r in answer.answer[2:]] == ["A", "A", "A"]
    assert answer.aa


def test_lookup_cname_leaving_the_zone_stops_at_the_cname() -> None:
    """A CNAME to another zone: the CNAME alone, AA=1; the resolver follows the target."""
    answer = EXAMPLE.lookup("alias.example.test", QTYPE.A)
    assert answer.outcome is Outcome.ANSWER and answer.aa
    assert data(answer.answer) == ["alias.example.test. CNAME www.ibm.com."]


def test_lookup_cname_below_a_zone_cut_stops_at_the_cname() -> None:
    """www.ibm.com's target is in the delegated backup2.ibm.com: no referral is mixed in."""
    answer = IBM.lookup("www.ibm.com", QTYPE.A)
    assert data(answer.answer) == ["www.ibm.com. CNAME servereast.backup2.ibm.com."]
    assert answer.authority == () and answer.aa


def test_lookup_asking_for_the_cname_itself_does_not_follow_it() -> None:
    """qtype CNAME returns the CNAME record only."""
    answer = EXAMPLE.lookup("chain.example.test", QTYPE.CNAME)
    assert data(answer.answer) == ["chain.example.test. CNAME step.example.test."]


def test_lookup_below_a_cut_is_a_referral_with_glue() -> None:
    """The root refers to com: AA=0, com's NS in authority, their addresses in additional."""
    answer = ROOT.lookup("www.networkutopia.com", QTYPE.A)
    assert answer.outcome is Outcome.REFERRAL and not answer.aa and answer.rcode == RCODE.NOERROR
    assert answer.answer == ()
    assert data(answer.authority) == [
        "com. NS a.gtld-servers.net.",
        "com. NS b.gtld-servers.net.",
    ]
    assert data(answer.additional) == [
        "a.gtld-servers.net. A 127.5.6.30",
        "b.gtld-servers.net. A 127.33.14.30",
    ]


def test_lookup_referral_from_com_carries_the_registrar_glue() -> None:
    """com refers to networkutopia.com with dns1's loopback address as glue."""
    answer = GTLD.lookup("www.networkutopia.com", QTYPE.A)
    assert data(answer.authority) == ["networkutopia.com. NS dns1.networkutopia.com."]
    assert data(answer.additional) == ["dns1.networkutopia.com. A 127.212.212.1"]
    assert answer.authority[0].ttl == 172800


def test_lookup_glueless_referral_has_no_additional() -> None:
    """org cannot give ns.hosting.net's address: the referral has NS only."""
    answer = ORG.lookup("www.glueless.org", QTYPE.A)
    assert answer.outcome is Outcome.REFERRAL
    assert data(answer.authority) == ["glueless.org. NS ns.hosting.net."]
    assert answer.additional == ()


def test_lookup_at_the_cut_itself_is_a_referral() -> None:
    """Even NS at the delegation point is answered by referral: the child is authoritative."""
    answer = GTLD.lookup("networkutopia.com", QTYPE.NS)
    assert answer.outcome is Outcome.REFERRAL and not answer.aa


def test_lookup_uses_the_most_specific_zone_served() -> None:
    """A root server is authoritative for root-servers.net, so it answers instead of referring."""
    answer = ROOT.lookup("b.root-servers.net", QTYPE.A)
    assert answer.outcome is Outcome.ANSWER and answer.aa
    assert data(answer.answer) == ["b.root-servers.net. A 127.247.170.2"]
    reverse = ROOT.lookup("2.212.212.212.in-addr.arpa", QTYPE.PTR)
    assert data(reverse.authority) == ["in-addr.arpa. NS a.in-addr-servers.arpa."]


def test_lookup_missing_name_is_nxdomain_with_the_soa() -> None:
    """NXDOMAIN, AA=1, the zone's SOA in authority with TTL min(TTL, MINIMUM) (RFC 2308 §3)."""
    answer = UTOPIA.lookup("nope.networkutopia.com", QTYPE.A)
    assert answer.outcome is Outcome.NXDOMAIN and answer.rcode == RCODE.NXDOMAIN and answer.aa
    assert answer.answer == ()
    (soa,) = answer.authority
    assert soa.rtype == QTYPE.SOA and str(soa.rname) == "networkutopia.com."
    assert soa.ttl == 300 == soa.rdata.times[4]


def test_lookup_missing_tld_is_nxdomain_from_the_root() -> None:
    """The root says a TLD does not exist."""
    answer = ROOT.lookup("www.example.invalid", QTYPE.A)
    assert answer.outcome is Outcome.NXDOMAIN
    assert str(answer.authority[0].rname) == "."


def test_lookup_cname_to_a_missing_name_is_nxdomain_with_the_cname() -> None:
    """The rcode describes the end of the chain (RFC 6604 §2.1)."""
    answer = EXAMPLE.lookup("dangling.example.test", QTYPE.A)
    assert answer.rcode == RCODE.NXDOMAIN
    assert data(answer.answer) == ["dangling.example.test. CNAME missing.example.test."]
    assert answer.authority[0].rtype == QTYPE.SOA


def test_lookup_name_without_the_type_is_nodata() -> None:
    """The name exists but has no AAAA: NOERROR, empty answer, SOA (RFC 2308 §2.2)."""
    answer = UTOPIA.lookup("www.networkutopia.com", QTYPE.AAAA)
    assert answer.outcome is Outcome.NODATA and answer.rcode == RCODE.NOERROR and answer.aa
    assert answer.answer == () and answer.authority[0].rtype == QTYPE.SOA


def test_lookup_empty_non_terminal_is_nodata() -> None:
    """deep.example.test owns nothing but has a child: it exists (RFC 8020)."""
    answer = EXAMPLE.lookup("deep.example.test", QTYPE.A)
    assert answer.outcome is Outcome.NODATA
    assert EXAMPLE.lookup("host.deep.example.test", QTYPE.A).outcome is Outcome.ANSWER


def test_lookup_name_outside_every_served_zone_is_refused() -> None:
    """ns1.example.test does not serve lame.test (the lame delegation): REFUSED, AA=0."""
    answer = EXAMPLE.lookup("www.lame.test", QTYPE.A)
    assert answer == Answer(outcome=Outcome.REFUSED, rcode=RCODE.REFUSED, aa=False)


def test_lookup_any_returns_every_rrset_at_the_name() -> None:
    """QTYPE ANY (255) returns all the records at the name."""
    answer = server("dns.hamburger.edu.").lookup("hamburger.edu", QTYPE.ANY)
    assert {QTYPE[r.rtype] for r in answer.answer} == {"SOA", "NS", "MX", "TXT"}


def test_lookup_reverse_name_gives_the_ptr() -> None:
    """128.119.245.12 maps back to gaia.cs.umass.edu."""
    answer = CS.lookup("12.245.119.128.in-addr.arpa", QTYPE.PTR)
    assert data(answer.answer) == ["12.245.119.128.in-addr.arpa. PTR gaia.cs.umass.edu."]


# --- zone loading ---------------------------------------------------------------------


def test_zone_rejects_data_below_a_cut() -> None:
    """Below a delegation only glue addresses may appear."""
    text = """$ORIGIN z.test.
@ 3600 IN SOA ns.z.test. h.z.test. 1 2 3 4 5
@ 3600 IN NS ns.z.test.
sub 3600 IN NS ns.sub.z.test.
www.sub 3600 IN TXT "occluded"
"""
    with pytest.raises(ZoneError, match="below the zone cut"):
        Zone.from_text("z.test.", text)


def test_zone_rejects_a_cname_with_other_data() -> None:
    """A CNAME must be alone at its name (RFC 2181 §10.1)."""
    text = """$ORIGIN z.test.
@ 3600 IN SOA ns.z.test. h.z.test. 1 2 3 4 5
@ 3600 IN NS ns.z.test.
www 3600 IN CNAME z.test.
www 3600 IN A 192.0.2.1
"""
    with pytest.raises(ZoneError, match="CNAME"):
        Zone.from_text("z.test.", text)


def test_zone_requires_soa_and_ns_at_the_apex() -> None:
    """A zone without its SOA is refused at load time."""
    with pytest.raises(ZoneError, match="SOA"):
        Zone.from_text("z.test.", "z.test. 3600 IN NS ns.z.test.\n")


# --- respond: the wire rules ------------------------------------------------------------


def test_respond_echoes_id_question_and_rd_and_never_sets_ra() -> None:
    """The reply copies id, the question as sent (case kept) and RD; RA stays 0."""
    query = DNSRecord.question("WWW.networkutopia.com", "A")
    query.header.id = 4242
    query.header.rd = 1
    reply = ask(UTOPIA, query)
    assert reply.header.id == 4242 and reply.header.qr == 1
    assert reply.header.rd == 1 and reply.header.ra == 0 and reply.header.aa == 1
    assert str(reply.q.qname) == "WWW.networkutopia.com."
    assert [str(r.rdata) for r in reply.rr] == ["212.212.212.2"]


def test_respond_referral_has_aa_clear() -> None:
    """A referral on the wire: AA=0, NOERROR, NS in authority, glue in additional."""
    reply = ask(GTLD, DNSRecord.question("www.networkutopia.com", "A"))
    assert reply.header.aa == 0 and reply.header.rcode == RCODE.NOERROR
    assert [QTYPE[r.rtype] for r in reply.auth] == ["NS"]
    assert [str(r.rdata) for r in reply.ar] == ["127.212.212.1"]


def test_respond_adds_an_opt_only_when_the_query_has_one() -> None:
    """EDNS is answered with OPT udp 1232; a plain query gets no OPT (RFC 6891 §7)."""
    plain = ask(UTOPIA, DNSRecord.question("www.networkutopia.com"))
    assert all(r.rtype != QTYPE.OPT for r in plain.ar)
    query = DNSRecord.question("www.networkutopia.com")
    query.add_ar(EDNS0(udp_len=4096))
    (opt,) = [r for r in ask(UTOPIA, query).ar if r.rtype == QTYPE.OPT]
    assert opt.rclass == 1232 and opt.ttl == 0


def test_respond_truncates_a_udp_reply_larger_than_512_without_edns() -> None:
    """TC=1 and empty sections; over TCP the same question gets the whole answer."""
    query = DNSRecord.question("big.example.test", "TXT")
    truncated = ask(EXAMPLE, query)
    assert truncated.header.tc == 1 and truncated.rr == [] and truncated.auth == []
    assert str(truncated.q.qname) == "big.example.test."
    full = ask(EXAMPLE, query, Transport.TCP)
    assert full.header.tc == 0 and len(full.rr) == 8


def test_respond_edns_size_lets_a_bigger_udp_reply_through() -> None:
    """With EDNS 1232 a 600-octet reply fits; a 1900-octet one is still truncated (OPT kept)."""
    big = DNSRecord.question("big.example.test", "TXT")
    big.add_ar(EDNS0(udp_len=1232))
    assert len(ask(EXAMPLE, big).rr) == 8
    huge = DNSRecord.question("huge.example.test", "TXT")
    huge.add_ar(EDNS0(udp_len=65535))  # our own limit of 1232 still applies
    reply = ask(EXAMPLE, huge)
    assert reply.header.tc == 1 and reply.rr == []
    assert [r.rtype for r in reply.ar] == [QTYPE.OPT]


def test_respond_edns_size_below_512_counts_as_512() -> None:
    """A tiny advertised size is read as 512 (RFC 6891 §6.2.5)."""
    query = DNSRecord.question("www.cnn.com", "A")
    query.add_ar(EDNS0(udp_len=100))
    assert len(ask(server("dns.amazon.com."), query).rr) == 4


def test_respond_unknown_edns_version_is_badvers() -> None:
    """EDNS version 1: BADVERS (extended rcode 16), OPT version 0, no answer (RFC 6891 §6.1.3)."""
    query = DNSRecord.question("www.networkutopia.com")
    query.add_ar(EDNS0(version=1, udp_len=1232))
    reply = ask(UTOPIA, query)
    (opt,) = reply.ar
    assert reply.header.rcode == 0 and (opt.ttl >> 24) == 1 and (opt.ttl >> 16) & 0xFF == 0
    assert reply.rr == []


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_respond_other_opcodes_are_notimp(opcode: int) -> None:
    """Only QUERY is implemented: NOTIMP with the opcode echoed."""
    query = DNSRecord.question("networkutopia.com", "SOA")
    query.header.opcode = opcode
    reply = ask(UTOPIA, query)
    assert reply.header.rcode == RCODE.NOTIMP and reply.header.opcode == opcode


def test_respond_refuses_other_classes_and_zone_transfers() -> None:
    """Class CH and AXFR are not served by the lab: REFUSED."""
    chaos = DNSRecord(q=DNSQuestion("version.bind", QTYPE.TXT, CLASS.CH))
    assert ask(UTOPIA, chaos).header.rcode == RCODE.REFUSED
    axfr = DNSRecord.question("networkutopia.com", "AXFR")
    assert ask(UTOPIA, axfr, Transport.TCP).header.rcode == RCODE.REFUSED


def test_respond_out_of_zone_query_is_refused_on_the_wire() -> None:
    """REFUSED, AA=0, nothing in any section."""
    reply = ask(UTOPIA, DNSRecord.question("www.ibm.com"))
    assert reply.header.rcode == RCODE.REFUSED and reply.header.aa == 0
    assert reply.rr == reply.auth == reply.ar == []


def _header(flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", 0xBEEF, flags, qd, an, ns, ar)


_QUESTION = b"\x03www\x0dnetworkutopia\x03com\x00\x00\x01\x00\x01"


@pytest.mark.parametrize(
    "wire",
    [
        _header(0, qd=0),  # no question
        _header(0, qd=2) + _QUESTION * 2,  # two questions
        _header(0, an=1) + _QUESTION,  # an answer in a query
        _header(0, ar=2) + _QUESTION,  # more than one additional record
        _header(0) + b"\x03www",  # the question is cut short
        _header(0) + b"\xc0\x0c\x00\x01\x00\x01",  # a name that points at itself
        _header(0) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # a 64-octet label
        _header(0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # > 255
    ],
)
def test_respond_malformed_query_is_formerr(wire: bytes) -> None:
    """Queries that break the format get FORMERR with the id echoed (RFC 1035 §4.1.1)."""
    reply = UTOPIA.respond(wire, transport=Transport.UDP)
    assert reply is not None
    qid, flags = struct.unpack("!2H", reply[:4])
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0xF == RCODE.FORMERR


def _binary_query(*labels: bytes, edns: bool = False) -> bytes:
    """A query for A at a name given label by label, octets as they are (no escapes)."""
    name = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" if edns else b""
    return _header(0, ar=1 if edns else 0) + name + b"\x00\x01\x00\x01" + opt


@pytest.mark.parametrize("label", [b"\xff", b"\x00", b"\x80abc", b"a.b", b"a\\b", b"\xc3("])
@pytest.mark.parametrize("edns", [False, True])
def test_respond_binary_label_missing_is_nxdomain_with_the_soa(label: bytes, edns: bool) -> None:
    """Any octets may make up a label (RFC 2181 §11): `\\255.networkutopia.com` is asked like
    any other name, NXDOMAIN with the SOA and the question echoed octet for octet."""
    wire = _binary_query(label, b"networkutopia", b"com", edns=edns)
    reply = UTOPIA.respond(wire, transport=Transport.UDP)
    assert reply is not None
    question_end = len(wire) - (11 if edns else 0)
    assert reply[12:question_end] == wire[12:question_end]
    message = decode(reply)
    assert message.id == 0xBEEF and message.rcode == RCODE.NXDOMAIN and message.aa
    assert [rr.to_text().split()[3] for rr in message.authority] == ["SOA"]
    assert message.answer == ()


def test_respond_binary_label_with_data_is_answered() -> None:
    """A name with arbitrary octets that the zone holds gets its data (RFC 2181 §11),
    matched without regard to ASCII case (RFC 4343)."""
    base = Zone.from_text("networkutopia.com.", zone_text("networkutopia.com."))
    owner = DNSLabel([b"\xffX", b"networkutopia", b"com"])
    record = RR(owner, QTYPE.A, ttl=300, rdata=A("192.0.2.55"))
    authority = Authority([Zone("networkutopia.com.", [*base.rrsets_at(base.origin), record])])
    reply = authority.respond(_binary_query(b"\xffx", b"networkutopia", b"com"),
                              transport=Transport.UDP)
    assert reply is not None
    message = decode(reply)
    assert message.rcode == RCODE.NOERROR and message.aa
    assert [rr.address for rr in message.answer] == ["192.0.2.55"]


@pytest.mark.parametrize("wire", [b"", b"\x00" * 11, _header(0x8000) + _QUESTION])
def test_respond_drops_short_messages_and_responses(wire: bytes) -> None:
    """Under 12 octets there is nothing to answer; a response is never answered."""
    assert UTOPIA.respond(wire, transport=Transport.UDP) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_respond_never_raises_on_arbitrary_bytes(wire: bytes) -> None:
    """Any input gives None or a reply that echoes the id, within the UDP limit."""
    reply = ROOT.respond(wire, transport=Transport.UDP)
    if reply is not None:
        assert len(reply) <= 1232 and reply[:2] == wire[:2]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=40), st.binary(min_size=1, max_size=8))
def test_respond_never_raises_on_mutated_queries(offset: int, patch: bytes) -> None:
    """A valid EDNS query with some octets overwritten still gets a reply or nothing."""
    query = DNSRecord.question("www.networkutopia.com", "A")
    query.add_ar(EDNS0(udp_len=1232))
    wire = bytearray(query.pack())
    wire[offset : offset + len(patch)] = patch
    reply = GTLD.respond(bytes(wire), transport=Transport.UDP)
    assert reply is None or reply[:2] == bytes(wire[:2])
