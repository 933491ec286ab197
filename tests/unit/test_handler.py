"""Query bytes in, reply bytes out: the rules a stub client relies on.

RFC 1035 §4.1.1 (header), RFC 6891 (EDNS, BADVERS, truncation), RFC 8482 (ANY),
RFC 8914 (extended errors), docs/reliability.md tables (b) and (c).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

import pytest

from resolver.dns.decoding import decode
from resolver.dns.extended_errors import EDNS_OPTION_EDE, ExtendedError
from resolver.dns.wire import Message, Question, Rcode, RRType
from resolver.engine.events import Outcome
from resolver.engine.failure import FailureKind
from resolver.engine.network import Transport
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from tests.support.labnet import FakeClock, LabNetwork, lab_service

UDP = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
TCP = Client(ip="127.0.0.1", port=40001, transport=Transport.TCP)

QR, AA, TC, RD, RA, Z, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010


def name_wire(name: str) -> bytes:
    """Wire form of a name, letter case kept."""
    labels = [label for label in name.split(".") if label]
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\x00"


def query(
    name: str = "www.networkutopia.com.",
    qtype: int = RRType.A,
    *,
    qid: int = 0x1234,
    rd: bool = True,
    opcode: int = 0,
    qclass: int = 1,
    edns: int | None = None,
    version: int = 0,
    extra_flags: int = 0,
    options: bytes = b"",
    do: bool = False,
) -> bytes:
    """A query message built by hand, so every bit is under the test's control."""
    flags = (opcode << 11) | (RD if rd else 0) | extra_flags
    out = struct.pack("!6H", qid, flags, 1, 0, 0, 0 if edns is None else 1)
    out += name_wire(name) + struct.pack("!HH", qtype, qclass)
    if edns is not None:
        out += (
            b"\x00"
            + struct.pack("!HHIH", RRType.OPT, edns, (version << 16) | (0x8000 if do else 0),
                          len(options))
            + options
        )
    return out


@dataclass
class Reply:
    """A reply's raw header fields plus its decoded form."""

    data: bytes

    @property
    def id(self) -> int:
        return int(struct.unpack_from("!H", self.data)[0])

    @property
    def flags(self) -> int:
        return int(struct.unpack_from("!H", self.data, 2)[0])

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return struct.unpack_from("!4H", self.data, 4)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def message(self) -> Message:
        return decode(self.data)


class Setup:
    """A handler over the lab's in-memory network."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.network = LabNetwork(self.clock)
        self.handler = QueryHandler(lab_service(self.clock, self.network))

    def ask(self, wire: bytes, client: Client = UDP) -> Reply | None:
        data = asyncio.run(self.handler.handle(wire, client))
        return None if data is None else Reply(data)

    def answer(self, wire: bytes, client: Client = UDP) -> Reply:
        reply = self.ask(wire, client)
        assert reply is not None
        return reply

    def upstream(self) -> int:
        return sum(self.network.received.values())


@pytest.fixture
def setup() -> Setup:
    return Setup()


# --- no reply at all -----------------------------------------------------------------------------


def test_handler_ignores_a_message_shorter_than_a_header(setup: Setup) -> None:
    """Fewer than 12 octets cannot even carry an id: no reply."""
    assert setup.ask(b"\x12\x34\x01\x00\x00\x01") is None


def test_handler_ignores_a_response(setup: Setup) -> None:
    """A message with QR=1 gets no reply, so servers cannot loop (docs/reliability.md (b) #2)."""
    assert setup.ask(query(extra_flags=QR)) is None
    assert setup.upstream() == 0


# --- header-only error replies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        query()[:-3],  # question cut short
        struct.pack("!6H", 0x1234, RD, 2, 0, 0, 0) + name_wire("a.test") + b"\x00\x01\x00\x01" * 2,
        struct.pack("!6H", 0x1234, RD, 0, 0, 0, 0),  # no question
        query()[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        query(name="a" * 64 + ".test."),  # label too long
    ],
)
def test_handler_malformed_query_gets_formerr_header_only(setup: Setup, wire: bytes) -> None:
    """Malformed queries get FORMERR with the id echoed and no sections (RFC 1035 §4.1.1)."""
    reply = setup.answer(wire)
    assert reply.id == 0x1234
    assert reply.flags & QR and reply.flags & 0xF == Rcode.FORMERR
    assert reply.counts == (0, 0, 0, 0)
    assert setup.upstream() == 0


def test_handler_formerr_for_a_broken_opt_still_carries_an_opt(setup: Setup) -> None:
    """A FORMERR caused by the OPT itself includes an OPT (RFC 6891 §7)."""
    # RDATA of 4 octets holding an option header that claims 16 octets of data.
    broken = query(edns=1232)[:-2] + struct.pack("!HHH", 4, 10, 16)
    reply = setup.answer(broken)
    assert reply.flags & 0xF == Rcode.FORMERR
    assert reply.counts[3] == 1


@pytest.mark.parametrize("opcode", [1, 2, 4, 5, 15])
def test_handler_other_opcodes_get_notimp(setup: Setup, opcode: int) -> None:
    """Only QUERY is implemented: NOTIMP with the opcode echoed (RFC 1035 §4.1.1)."""
    reply = setup.answer(query(opcode=opcode))
    assert reply.flags & 0xF == Rcode.NOTIMP
    assert reply.opcode == opcode and reply.id == 0x1234
    assert not reply.flags & (AA | TC)


def test_handler_notimp_wins_over_a_missing_question(setup: Setup) -> None:
    """Opcode 15 with QDCOUNT=0 is NOTIMP, not FORMERR (docs/reliability.md (b) #4)."""
    reply = setup.answer(struct.pack("!6H", 7, 15 << 11, 0, 0, 0, 0))
    assert reply.flags & 0xF == Rcode.NOTIMP and reply.opcode == 15


@pytest.mark.parametrize("version", [1, 255])
def test_handler_unknown_edns_version_gets_badvers(setup: Setup, version: int) -> None:
    """EDNS version above 0: BADVERS = header rcode 0 plus OPT extended rcode 1, OPT version 0
    (RFC 6891 §6.1.3)."""
    reply = setup.answer(query(edns=1232, version=version))
    assert reply.flags & 0xF == 0
    assert reply.counts == (1, 0, 0, 1)  # the question is kept
    assert reply.message.question is not None and reply.message.ra and reply.message.rd
    edns = reply.message.edns
    assert edns is not None and edns.version == 0 and edns.ext_rcode == 1
    assert reply.message.rcode == Rcode.BADVERS
    assert setup.upstream() == 0


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", [0, RRType.OPT, 128, 200, 248, 249, 250, 253, 254])
def test_handler_meta_and_reserved_types_get_formerr(setup: Setup, qtype: int) -> None:
    """OPT, TKEY, TSIG, MAILA, MAILB, 0 and 128-248 are no questions: FORMERR, never upstream."""
    reply = setup.answer(query(qtype=qtype))
    assert reply.flags & 0xF == Rcode.FORMERR
    assert setup.upstream() == 0


@pytest.mark.parametrize("qtype", [RRType.AXFR, RRType.IXFR])
def test_handler_zone_transfers_are_refused(setup: Setup, qtype: int) -> None:
    """A resolver does not transfer zones: REFUSED."""
    reply = setup.answer(query(qtype=qtype))
    assert reply.flags & 0xF == Rcode.REFUSED
    assert setup.upstream() == 0


@pytest.mark.parametrize("qclass", [0, 3, 4, 254, 255])
def test_handler_classes_other_than_in_are_refused(setup: Setup, qclass: int) -> None:
    """Only class IN is resolved; CH, HS, NONE, ANY get REFUSED."""
    reply = setup.answer(query(qclass=qclass))
    assert reply.flags & 0xF == Rcode.REFUSED
    assert setup.upstream() == 0


def test_handler_refused_zone_transfer_carries_ede_18_prohibited(setup: Setup) -> None:
    """A refused question says why, as EDE 18 (RFC 8914 §4.19); RA stays clear there, as
    Unbound answers AXFR (testbound refuse_xfr)."""
    reply = setup.answer(query(qtype=RRType.AXFR, edns=1232))
    assert reply.flags & 0xF == Rcode.REFUSED
    assert not reply.message.ra
    edns = reply.message.edns
    assert edns is not None
    assert [(code, data[:2]) for code, data in edns.options] == [(15, b"\x00\x12")]


@pytest.mark.parametrize(
    "wire",
    [query(edns=1232, do=True), query(qtype=RRType.AXFR, edns=1232, do=True),
     query(opcode=4, edns=1232, do=True), query(edns=1232, version=1, do=True)],
    ids=["answer", "refused", "notimp", "badvers"],
)
def test_handler_copies_the_do_bit_into_every_reply(setup: Setup, wire: bytes) -> None:
    """RFC 3225 §3: the DO bit of the query is copied into the response."""
    reply = setup.answer(wire)
    assert reply.message.edns is not None and reply.message.edns.do


def test_handler_formerr_to_a_query_with_edns_carries_an_opt(setup: Setup) -> None:
    """RFC 6891 §7: a query with an OPT gets an OPT in its FORMERR, even when the fault
    (here two questions) is found before the OPT record is read."""
    wire = bytearray(query(edns=1232))
    wire[5] = 2  # QDCOUNT 2, the question given once more
    question = query()[12:]
    wire = wire[:-11] + question + wire[-11:]
    reply = setup.answer(bytes(wire))
    assert reply.flags & 0xF == Rcode.FORMERR
    assert reply.counts[3] == 1


def test_handler_rd_zero_is_refused_without_recursing(setup: Setup) -> None:
    """RD=0: we never recurse unasked, so REFUSED and no upstream query."""
    reply = setup.answer(query(rd=False))
    assert reply.flags & 0xF == Rcode.REFUSED
    assert not reply.flags & RD
    assert setup.upstream() == 0


# --- normal replies ---------------------------------------------------------------------------


def test_handler_answer_echoes_id_and_question_and_sets_ra(setup: Setup) -> None:
    """A resolved reply: QR=1, same id, RD echoed, RA=1, the question, the answer."""
    reply = setup.answer(query(qid=0xBEEF))
    message = reply.message
    assert reply.id == 0xBEEF and message.qr and message.rd and message.ra
    assert message.rcode == Rcode.NOERROR
    assert message.question == Question("www.networkutopia.com.", RRType.A)
    assert [rr.address for rr in message.answer] == ["212.212.212.2"]


def test_handler_never_sets_aa_or_ad(setup: Setup) -> None:
    """A resolver is not authoritative and does not validate: AA=0 and AD=0, even if asked."""
    reply = setup.answer(query(extra_flags=AA | AD))
    assert not reply.flags & (AA | AD)
    assert reply.message.answer


def test_handler_clears_z(setup: Setup) -> None:
    """The Z bit is zero in replies whatever the query held (genreport `zflag`)."""
    reply = setup.answer(query(extra_flags=Z))
    assert not reply.flags & Z
    assert reply.flags & 0xF == Rcode.NOERROR


def test_handler_echoes_cd(setup: Setup) -> None:
    """CD is copied into the reply (RFC 4035 §3.2.2)."""
    assert setup.answer(query(extra_flags=CD)).flags & CD
    assert not setup.answer(query()).flags & CD


def test_handler_query_with_tc_is_answered_normally(setup: Setup) -> None:
    """TC=1 in a query is ignored (genreport `tc` expects NOERROR)."""
    reply = setup.answer(query(extra_flags=TC))
    assert reply.flags & 0xF == Rcode.NOERROR and reply.message.answer


def test_handler_opt_in_reply_iff_opt_in_query(setup: Setup) -> None:
    """An OPT appears in the reply exactly when the query had one (RFC 6891 §7)."""
    with_opt = setup.answer(query(edns=1232))
    without = setup.answer(query())
    assert with_opt.message.edns is not None and with_opt.message.edns.version == 0
    assert without.message.edns is None and without.counts[3] == 0


def test_handler_unknown_edns_option_is_not_echoed(setup: Setup) -> None:
    """Options the resolver does not know are ignored, not echoed (RFC 6891 §6.1.2)."""
    reply = setup.answer(query(edns=1232, options=struct.pack("!HH", 100, 2) + b"hi"))
    edns = reply.message.edns
    assert edns is not None and edns.options == ()


def test_handler_keeps_the_client_letter_case(setup: Setup) -> None:
    """The question comes back exactly as sent, so 0x20 clients can check it."""
    mixed = "WwW.NeTwOrKuToPiA.CoM."
    reply = setup.answer(query(name=mixed))
    assert reply.data[12 : 12 + len(name_wire(mixed))] == name_wire(mixed)
    assert reply.message.answer


def test_handler_trailing_garbage_is_not_echoed(setup: Setup) -> None:
    """Octets after the last record are ignored and never copied into the reply."""
    reply = setup.answer(query() + b"GARBAGE!")
    assert b"GARBAGE!" not in reply.data
    assert reply.message.answer


def test_handler_nxdomain_is_passed_through_with_soa(setup: Setup) -> None:
    """A name that does not exist: NXDOMAIN with the zone's SOA in authority."""
    message = setup.answer(query(name="nothere.networkutopia.com.")).message
    assert message.rcode == Rcode.NXDOMAIN
    assert [rr.rtype for rr in message.authority] == [RRType.SOA]


def test_handler_unknown_type_is_resolved(setup: Setup) -> None:
    """An unknown type is resolved normally, never FORMERR or NOTIMP (RFC 3597)."""
    message = setup.answer(query(name="unknown.example.test.", qtype=65400)).message
    assert message.rcode == Rcode.NOERROR
    assert [rr.rtype for rr in message.answer] == [65400]


def any_answer(reply: Reply, qname: str) -> tuple[int, int, bytes]:
    """(type, TTL, RDATA) of the single answer record, read straight from the wire."""
    assert reply.counts[:2] == (1, 1)
    pos = 12 + len(name_wire(qname)) + 4
    assert reply.data[pos : pos + 2] == b"\xc0\x0c"  # owner: pointer to the question name
    rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", reply.data, pos + 2)
    start = pos + 12
    return rtype, ttl, reply.data[start : start + rdlength]


def test_handler_any_gets_one_hinfo_without_upstream(setup: Setup) -> None:
    """ANY gets one synthesised HINFO (RFC 8482 §4.2) and nothing is asked upstream."""
    reply = setup.answer(query(qtype=RRType.ANY))
    assert reply.flags & 0xF == Rcode.NOERROR
    rtype, ttl, _ = any_answer(reply, "www.networkutopia.com.")
    assert rtype == 13 and ttl > 0
    assert len(reply.data) <= 512
    assert setup.upstream() == 0


def test_handler_any_hinfo_rdata_says_rfc8482(setup: Setup) -> None:
    """The HINFO's CPU is "RFC8482" and its OS is empty (RFC 8482 §4.2), well-formed on the wire."""
    reply = setup.answer(query(qtype=RRType.ANY))
    _, _, rdata = any_answer(reply, "www.networkutopia.com.")
    assert rdata == b"\x07RFC8482\x00"
    (hinfo,) = reply.message.answer
    assert "RFC8482" in hinfo.rdata_text


# --- sizes and truncation ---------------------------------------------------------------------


def test_handler_udp_without_edns_is_cut_at_512_with_tc(setup: Setup) -> None:
    """A 600-octet answer to plain UDP: TC=1, at most 512 octets, no records (RFC 1035 §4.2.1)."""
    reply = setup.answer(query(name="big.example.test.", qtype=RRType.TXT))
    assert len(reply.data) <= 512
    assert reply.flags & TC
    assert reply.counts == (1, 0, 0, 0)


def test_handler_udp_with_edns_fits_the_advertised_size(setup: Setup) -> None:
    """With EDNS 1232 the same 600-octet answer fits and comes whole."""
    reply = setup.answer(query(name="big.example.test.", qtype=RRType.TXT, edns=1232))
    assert not reply.flags & TC
    assert len(reply.message.answer) == 8


def test_handler_tcp_is_never_truncated(setup: Setup) -> None:
    """Over TCP the whole answer comes, even without EDNS."""
    reply = setup.answer(query(name="huge.example.test.", qtype=RRType.TXT), TCP)
    assert not reply.flags & TC
    assert len(reply.message.answer) == 24


def test_handler_edns_size_below_512_counts_as_512(setup: Setup) -> None:
    """An advertised size under 512 is treated as 512 (RFC 6891 §6.2.5)."""
    small = setup.answer(query(name="www.networkutopia.com.", edns=100))
    assert small.message.answer and not small.flags & TC
    big = setup.answer(query(name="big.example.test.", qtype=RRType.TXT, edns=100))
    assert big.flags & TC and len(big.data) <= 512


def test_handler_udp_replies_never_exceed_1232(setup: Setup) -> None:
    """Even a client offering 65535 gets at most 1232 octets over UDP (DNS Flag Day 2020)."""
    reply = setup.answer(query(name="huge.example.test.", qtype=RRType.TXT, edns=65535))
    assert reply.flags & TC and len(reply.data) <= 1232
    assert reply.message.edns is not None


def test_handler_udp_replies_grow_to_max_udp_size_when_configured(setup: Setup) -> None:
    """max-udp-size 4096 (Unbound's option): a client offering 4096 gets the whole answer,
    from the resolution and from the answer cache alike, and our OPT says 4096."""
    setup.handler = QueryHandler(setup.handler.service, max_udp_reply=4096)
    for _ in range(2):  # resolved, then cached
        reply = setup.answer(query(name="huge.example.test.", qtype=RRType.TXT, edns=4096))
        assert not reply.flags & TC and len(reply.message.answer) == 24
        assert 1232 < len(reply.data) <= 4096  # more than the default allows
        assert reply.message.edns is not None and reply.message.edns.udp_size == 4096
    small = setup.answer(query(name="huge.example.test.", qtype=RRType.TXT, edns=1232))
    assert small.flags & TC and len(small.data) <= 1232


# --- failures ---------------------------------------------------------------------------------


def test_handler_resolution_failure_is_servfail_with_extended_error(setup: Setup) -> None:
    """An unreachable zone gives SERVFAIL with an EDE option (RFC 8914, option code 15)."""
    setup.network.silent.add("127.212.212.1")
    reply = setup.answer(query(edns=1232))
    message = reply.message
    assert message.rcode == Rcode.SERVFAIL
    assert message.edns is not None
    codes = {code: data for code, data in message.edns.options}
    assert 15 in codes
    info_code = struct.unpack("!H", codes[15][:2])[0]
    assert info_code == 22  # No Reachable Authority (RFC 8914 §4.23)


@pytest.mark.parametrize(("kind", "words", "code"), [
    (FailureKind.WORK_LIMIT, "no server could be reached, timeout", ExtendedError.OTHER),
    (FailureKind.NO_REACHABLE_AUTHORITY, "something else", ExtendedError.NO_REACHABLE_AUTHORITY),
    (FailureKind.OUT_OF_TIME, "", ExtendedError.NO_REACHABLE_AUTHORITY),
    (FailureKind.CNAME_LOOP, "CNAME loop at a.example.", ExtendedError.OTHER),
])
def test_extended_error_code_comes_from_the_failure_kind_never_from_its_words(
        kind: FailureKind, words: str, code: ExtendedError) -> None:
    """RFC 8914: the info-code follows the kind of failure; the words go to EXTRA-TEXT."""

    class Failing:
        async def resolve(self, question: Question, **_: object) -> Outcome:
            return Outcome(rcode=Rcode.SERVFAIL, reason=words, failure=kind)

    handler = QueryHandler(Failing())  # type: ignore[arg-type]
    data = asyncio.run(handler.handle(query(edns=1232), UDP))
    assert data is not None
    message = decode(data)
    assert message.rcode == Rcode.SERVFAIL and message.edns is not None
    options = [payload for option, payload in message.edns.options if option == EDNS_OPTION_EDE]
    assert options == [struct.pack("!H", code) + words.encode()]


def test_handler_servfail_without_edns_has_no_opt(setup: Setup) -> None:
    """Without EDNS in the query there is no OPT, so no EDE either; still SERVFAIL."""
    setup.network.silent.add("127.212.212.1")
    reply = setup.answer(query())
    assert reply.flags & 0xF == Rcode.SERVFAIL and reply.counts[3] == 0


def test_handler_internal_error_becomes_servfail(setup: Setup) -> None:
    """An exception inside resolution never escapes: the client gets SERVFAIL with its id."""

    class Broken:
        async def resolve(self, question: Question) -> None:
            raise RuntimeError("boom")

    handler = QueryHandler(Broken())  # type: ignore[arg-type]
    data = asyncio.run(handler.handle(query(qid=0x4321), UDP))
    assert data is not None
    reply = Reply(data)
    assert reply.id == 0x4321 and reply.flags & QR and reply.flags & 0xF == Rcode.SERVFAIL


def test_handler_counts_queries_and_rcodes(setup: Setup) -> None:
    """Every query answered is counted by rcode."""
    setup.ask(query())
    setup.ask(query(rd=False))
    setup.ask(query(name="nothere.networkutopia.com."))
    assert setup.handler.queries == 3
    assert setup.handler.rcodes == {"NOERROR": 1, "REFUSED": 1, "NXDOMAIN": 1}
