"""The wire-level answer cache: cached replies served as bytes, exactly as the full path says them.

The reference for every reply is the handler's full path (scanner, engine, record cache,
encoder) over the same service and clock: a hit must be byte for byte what it would have sent.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.scanner import MalformedMessage, scan_query
from resolver.dns.wire import Edns, Message, Question, RRType, parse_record
from resolver.engine.cache import RecordCache
from resolver.engine.network import Transport
from resolver.engine.settings import CacheSettings
from resolver.server import handler as handler_module
from resolver.server.answer_cache import AnswerCache
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from tests.support.labnet import FakeClock, LabNetwork, lab_service

UDP = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
TCP = Client(ip="127.0.0.1", port=40001, transport=Transport.TCP)
RD, CD, TC = 0x0100, 0x0010, 0x0200


def name_wire(name: str) -> bytes:
    labels = [label for label in name.split(".") if label]
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\x00"


def query(
    name: str = "www.networkutopia.com.",
    qtype: int = RRType.A,
    *,
    qid: int = 0x1234,
    flags: int = RD,
    edns: int | None = None,
    do: bool = False,
    version: int = 0,
    options: bytes = b"",
    arcount: int | None = None,
) -> bytes:
    """A query built by hand, every bit under the test's control."""
    count = (0 if edns is None else 1) if arcount is None else arcount
    out = struct.pack("!6H", qid, flags, 1, 0, 0, count)
    out += name_wire(name) + struct.pack("!HH", qtype, 1)
    if edns is not None:
        ttl = (version << 16) | (0x8000 if do else 0)
        out += b"\x00" + struct.pack("!HHIH", RRType.OPT, edns, ttl, len(options)) + options
    return out


class Setup:
    """A handler with an answer cache, and a reference handler without one, on one service."""

    def __init__(self, cache_settings: CacheSettings | None = None) -> None:
        self.clock = FakeClock()
        self.network = LabNetwork(self.clock)
        self.service = lab_service(self.clock, self.network, cache_settings=cache_settings)
        self.answers = AnswerCache(clock=self.clock)
        self.handler = QueryHandler(self.service, answers=self.answers)
        no_cache = AnswerCache(clock=self.clock, max_entries=0)
        self.reference = QueryHandler(self.service, answers=no_cache)

    def ask(self, wire: bytes, client: Client = UDP) -> bytes:
        reply = asyncio.run(self.handler.handle(wire, client))
        assert reply is not None
        return reply

    def full_path(self, wire: bytes, client: Client = UDP) -> bytes:
        reply = asyncio.run(self.reference.handle(wire, client))
        assert reply is not None
        return reply

    def upstream(self) -> int:
        return sum(self.network.received.values())


@pytest.fixture
def setup() -> Setup:
    return Setup()


def ttls(reply: bytes) -> list[int]:
    message = decode(reply)
    return [rr.ttl for rr in (*message.answer, *message.authority)]


# --- hits ---------------------------------------------------------------------------------------


def test_answer_cache_hit_is_the_full_path_reply_without_upstream_queries(setup: Setup) -> None:
    """A second identical query is answered from the cache, byte for byte as the full path would."""
    setup.ask(query())
    sent = setup.upstream()
    hit = setup.answers.lookup(query(qid=0x4242))
    assert hit is not None
    assert hit == setup.full_path(query(qid=0x4242))
    assert setup.upstream() == sent
    assert setup.answers.hits == 1


CNN = "www.cnn.com."  # four A records in the lab (cnn.com: load distribution)


def _addresses(reply: bytes) -> list[str]:
    return [rr.address for rr in decode(reply).answer if rr.rtype == RRType.A]


def test_answers_from_the_cache_rotate_the_order_of_an_address_rrset(setup: Setup) -> None:
    """Unbound's rrset-roundrobin: each hit lists the name's addresses rotated by one more,
    so four hits in a row give the four rotations; the records and TTLs stay the same."""
    first = _addresses(setup.ask(query(CNN)))
    assert len(first) == 4
    hits = [setup.answers.lookup(query(CNN, qid=0x5000 + n)) for n in range(5)]
    orders = [_addresses(hit) for hit in hits if hit is not None]
    assert len(orders) == 5
    rotations = [first[k:] + first[:k] for k in range(4)]
    assert all(order in rotations for order in orders)
    assert len({tuple(order) for order in orders[:4]}) == 4
    reference = decode(setup.full_path(query(CNN)))
    for hit in hits:
        assert hit is not None
        message = decode(hit)
        assert sorted(rr.to_text() for rr in message.answer) == sorted(
            rr.to_text() for rr in reference.answer)


def test_round_robin_off_serves_the_addresses_in_the_stored_order() -> None:
    """rrset-roundrobin: no: every hit is byte for byte the full path's reply."""
    setup = Setup()
    setup.answers.round_robin = False
    setup.ask(query(CNN))
    hits = {setup.answers.lookup(query(CNN, qid=0x6000)) for _ in range(4)}
    assert hits == {setup.full_path(query(CNN, qid=0x6000))}


def test_round_robin_rotates_only_runs_of_address_records() -> None:
    """A reply whose address records follow a CNAME keeps the CNAME first; a single record
    is served as stored."""
    from resolver.server.reply_octets import address_runs

    answer = (parse_record("alias.example. 60 IN CNAME www.example."),
              *(parse_record(f"www.example. 60 IN A 192.0.2.{n}") for n in (1, 2, 3)))
    reply = encode(Message(id=1, qr=True, opcode=0, rcode=0, rd=True, ra=True,
                           question=Question("alias.example.", RRType.A), answer=answer))
    question_end = 12 + len(name_wire("alias.example.")) + 4
    runs = address_runs(reply, question_end)
    assert len(runs) == 1 and runs[0][1:] == (16, 3)
    single = encode(Message(id=1, qr=True, opcode=0, rcode=0, question=Question(
        "www.example.", RRType.A), answer=(answer[1],)))
    assert address_runs(single, 12 + len(name_wire("www.example.")) + 4) == ()


def test_answer_cache_copies_id_and_question_case(setup: Setup) -> None:
    """The reply carries the client's id and its question bytes as sent (0x20 letter case)."""
    setup.ask(query("www.networkutopia.com."))
    mixed = query("WwW.NetWorkUtopia.COM.", qid=0xBEEF)
    hit = setup.answers.lookup(mixed)
    assert hit is not None
    assert hit[:2] == b"\xbe\xef"
    sent = name_wire("WwW.NetWorkUtopia.COM.")
    assert hit[12 : 12 + len(sent)] == sent
    assert hit == setup.full_path(mixed)


def test_answer_cache_hit_skips_scanner_and_dnslib(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the handler, a hit neither scans the query again nor decodes or encodes anything."""
    setup.ask(query())
    calls: list[str] = []

    def forbidden(name: str):  # type: ignore[no-untyped-def]
        def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            raise AssertionError(f"{name} called on a cache hit")

        return fail

    monkeypatch.setattr(handler_module, "scan_query", forbidden("scan_query"))
    monkeypatch.setattr(handler_module, "encode", forbidden("encode"))
    monkeypatch.setattr(handler_module, "Question", forbidden("Question"))
    reply = setup.ask(query(qid=7))
    assert calls == []
    assert reply[:2] == b"\x00\x07"
    assert setup.handler.rcodes["NOERROR"] == 2


def test_answer_cache_udp_fast_path_counts_the_query(setup: Setup) -> None:
    """`answer_from_cache` answers hits and counts them like `handle` does; misses give None."""
    assert setup.handler.answer_from_cache(query(), "127.0.0.1") is None
    setup.ask(query())
    assert setup.handler.answer_from_cache(query(qid=9), "127.0.0.1") is not None
    assert setup.handler.queries == 2
    assert setup.handler.rcodes == {"NOERROR": 2}


# --- TTLs and expiry ----------------------------------------------------------------------------


def test_answer_cache_ttls_count_down_with_the_clock(setup: Setup) -> None:
    """TTLs are lowered by the whole seconds elapsed, exactly as the record cache lowers them."""
    first = setup.ask(query("www.ibm.com."))  # CNAME + A, TTL 3600 each
    assert ttls(first) == [3600, 3600]
    setup.clock.advance(100.5)
    hit = setup.answers.lookup(query("www.ibm.com."))
    assert hit is not None
    assert ttls(hit) == [3499, 3499]
    assert hit == setup.full_path(query("www.ibm.com."))
    setup.clock.advance(0.4)  # the same whole second: the same bytes
    assert setup.answers.lookup(query("www.ibm.com.")) == hit


def test_answer_cache_negative_answer_soa_ttl_counts_down(setup: Setup) -> None:
    """An NXDOMAIN's SOA TTL counts down too (RFC 2308 §5), and the entry dies with it."""
    wire = query("nothere.networkutopia.com.")
    first = setup.ask(wire)
    assert first[3] & 0xF == 3
    (soa_ttl,) = ttls(first)
    setup.clock.advance(60)
    hit = setup.answers.lookup(wire)
    assert hit is not None and ttls(hit) == [soa_ttl - 60]
    assert hit == setup.full_path(wire)
    setup.clock.advance(soa_ttl - 60)
    assert setup.answers.lookup(wire) is None


def test_answer_cache_entry_expires_with_its_shortest_ttl() -> None:
    """An entry whose records have TTLs 300 and 60 is gone after 60 s, not 300."""
    clock = FakeClock()
    answers = AnswerCache(clock=clock)
    wire = query("a.example.")
    reply = encode_reply(
        wire, ["a.example. 300 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1"]
    )
    assert answers.store(wire, scan_query(wire), reply)
    clock.advance(58.5)
    hit = answers.lookup(wire)
    assert hit is not None and ttls(hit) == [241, 1]
    clock.advance(1.5)  # 60 s: the A record's TTL is used up
    assert answers.lookup(wire) is None
    assert len(answers) == 0


def test_answer_cache_prefetch_stops_serving_in_the_last_tenth() -> None:
    """With refresh_fraction 0.1, a 100 s entry is no longer served when 10 s or less are left."""
    clock = FakeClock()
    answers = AnswerCache(clock=clock, refresh_fraction=0.1)
    wire = query("a.example.")
    answers.store(wire, scan_query(wire), encode_reply(wire, ["a.example. 100 IN A 192.0.2.1"]))
    clock.advance(89)
    assert answers.lookup(wire) is not None
    clock.advance(1)
    assert answers.lookup(wire) is None


# --- what is stored -----------------------------------------------------------------------------


def encode_reply(wire: bytes, records: list[str], *, rcode: int = 0, edns: bool = False) -> bytes:
    scanned = scan_query(wire)
    assert scanned.qname is not None and scanned.qtype is not None
    message = Message(
        id=scanned.id, qr=True, opcode=0, rcode=rcode, rd=True, ra=True,
        question=Question(scanned.qname, scanned.qtype),
        answer=tuple(parse_record(text) for text in records),
        edns=Edns() if edns else None,
    )
    return encode(message)


def store_a(answers: AnswerCache, wire: bytes, *, edns: bool = False) -> None:
    """Store a reply with one A record, TTL 60, for the query `wire`."""
    name = scan_query(wire).qname
    assert name is not None
    reply = encode_reply(wire, [f"{name} 60 IN A 192.0.2.1"], edns=edns)
    assert answers.store(wire, scan_query(wire), reply)


def test_answer_cache_never_stores_servfail_or_zero_ttl(setup: Setup) -> None:
    """SERVFAIL, replies without records, TTL 0 and truncated replies are not kept."""
    answers = AnswerCache(clock=FakeClock())
    wire = query("a.example.")
    scanned = scan_query(wire)
    assert not answers.store(wire, scanned, encode_reply(wire, [], rcode=2))
    assert not answers.store(wire, scanned, encode_reply(wire, []))
    assert not answers.store(wire, scanned, encode_reply(wire, ["a.example. 0 IN A 192.0.2.1"]))
    truncated = bytearray(encode_reply(wire, ["a.example. 60 IN A 192.0.2.1"]))
    truncated[2] |= TC >> 8
    assert not answers.store(wire, scanned, bytes(truncated))
    assert len(answers) == 0
    setup.network.silent.add("127.212.212.1")
    assert setup.ask(query())[3] & 0xF == 2
    assert len(setup.answers) == 0


def test_answer_cache_keys_by_rd_cd_do_and_edns(setup: Setup) -> None:
    """Each of RD, CD, DO and EDNS presence has its own entry; RD=0 is never served from here."""
    variants = [
        query(),
        query(flags=RD | CD),
        query(edns=1232),
        query(edns=1232, do=True),
        query(flags=RD | CD, edns=1232, do=True),
    ]
    for index, wire in enumerate(variants):
        for other in variants[index:]:
            assert setup.answers.lookup(other) is None
        setup.ask(wire)
    for wire in variants:
        hit = setup.answers.lookup(wire)
        assert hit is not None and hit == setup.full_path(wire)
    assert setup.answers.lookup(query(flags=0)) is None
    assert setup.ask(query(flags=0))[3] & 0xF == 5  # REFUSED, from the full path


def test_answer_cache_edns_size_changes_truncation_not_the_entry(setup: Setup) -> None:
    """One stored reply serves every EDNS size; each client gets what its size allows."""
    setup.ask(query("big.example.test.", RRType.TXT, edns=1232))  # about 600 octets
    for size in (100, 512, 700, 1232, 4096):
        wire = query("big.example.test.", RRType.TXT, edns=size, qid=size)
        hit = setup.answers.lookup(wire)
        assert hit is not None
        assert hit == setup.full_path(wire)
        assert bool(hit[2] & (TC >> 8)) == (size < 700)


def test_answer_cache_truncates_for_udp_and_not_for_tcp(setup: Setup) -> None:
    """A reply longer than 512 octets: TC form over UDP without EDNS, whole over TCP."""
    setup.ask(query("big.example.test.", RRType.TXT), TCP)
    wire = query("big.example.test.", RRType.TXT, qid=77)
    udp = setup.answers.lookup(wire)
    assert udp is not None and udp[2] & (TC >> 8) and len(udp) <= 512
    assert struct.unpack("!4H", udp[4:12]) == (1, 0, 0, 0)
    assert udp == setup.full_path(wire)
    tcp = setup.answers.lookup(wire, tcp=True)
    assert tcp is not None and not tcp[2] & (TC >> 8)
    assert tcp == setup.full_path(wire, TCP)
    assert setup.ask(wire, TCP) == tcp


def test_answer_cache_over_1232_is_truncated_even_for_large_edns(setup: Setup) -> None:
    """A client offering 65535 still gets at most 1232 octets over UDP, with its OPT."""
    setup.ask(query("huge.example.test.", RRType.TXT, edns=1232), TCP)
    wire = query("huge.example.test.", RRType.TXT, edns=65535)
    hit = setup.answers.lookup(wire)
    assert hit is not None and hit[2] & (TC >> 8) and len(hit) <= 1232
    assert hit == setup.full_path(wire)


def test_answer_cache_is_bounded_and_keeps_entries_in_use() -> None:
    """Beyond max_entries the oldest unused entry goes; an entry hit since is kept (CLOCK)."""
    clock = FakeClock()
    answers = AnswerCache(clock=clock, max_entries=3)
    wires = [query(f"n{i}.example.") for i in range(5)]
    for wire in wires[:3]:
        store_a(answers, wire)
    assert answers.lookup(wires[0]) is not None  # n0 used: it gets a second chance
    for wire in wires[3:]:
        store_a(answers, wire)
    assert len(answers) == 3
    assert answers.lookup(wires[0]) is not None
    assert answers.lookup(wires[1]) is None and answers.lookup(wires[2]) is None
    assert answers.evicted == 2


def test_answer_cache_evicts_the_oldest_in_batches_and_stays_bounded() -> None:
    """A large cache evicts 1/64 of its bound at a time, oldest first, never exceeding it."""
    answers = AnswerCache(clock=FakeClock(), max_entries=128)
    wires = [query(f"n{i}.example.") for i in range(200)]
    for wire in wires:
        store_a(answers, wire)
        assert len(answers) <= 128
    assert answers.lookup(wires[0]) is None
    assert answers.lookup(wires[-1]) is not None
    assert answers.evicted == 200 - len(answers)


def test_answer_cache_cleared_when_the_record_cache_is_flushed() -> None:
    """A flush of the record cache empties the answer cache built on it."""
    clock = FakeClock()
    records = RecordCache(CacheSettings(), timer=clock)
    answers = AnswerCache(clock=clock)
    records.flush_listeners.append(answers.clear)
    wire = query("a.example.")
    answers.store(wire, scan_query(wire), encode_reply(wire, ["a.example. 60 IN A 192.0.2.1"]))
    records.flush("a.example.")
    assert answers.lookup(wire) is None


# --- what is never served from here ------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        query(qid=1)[:11],  # short
        query(flags=RD | 0x8000),  # a response
        query(flags=RD | (2 << 11)),  # opcode STATUS
        query(edns=1232, version=1),  # BADVERS
        query(edns=1232, options=struct.pack("!HH", 10, 5) + b"12345"),  # bad COOKIE length
        query(edns=1232, options=struct.pack("!HH", 8, 9) + b"123"),  # option overruns OPT
        query(arcount=2, edns=1232),  # two additional records
        query(arcount=1),  # ARCOUNT 1 without a record
        query()[:-2],  # question cut short
        struct.pack("!6H", 0x1234, RD, 1, 1, 0, 0) + query()[12:],  # an answer record
        query()[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # compressed question
    ],
)
def test_answer_cache_leaves_unusual_queries_to_the_full_path(setup: Setup, wire: bytes) -> None:
    """Queries the full path answers with an error, or that are not plain, are never hits."""
    setup.ask(query())
    setup.ask(query(edns=1232))
    assert setup.answers.lookup(wire) is None


def test_answer_cache_accepts_valid_cookies_and_trailing_octets(setup: Setup) -> None:
    """A client COOKIE (8 octets) and octets after the last record change nothing."""
    setup.ask(query(edns=1232))
    with_cookie = query(edns=1232, options=struct.pack("!HH", 10, 8) + b"abcdefgh", qid=5)
    hit = setup.answers.lookup(with_cookie)
    assert hit is not None and hit == setup.full_path(with_cookie)
    setup.ask(query())
    trailing = query(qid=6) + b"\x00\x00"
    assert setup.answers.lookup(trailing) == setup.full_path(trailing)


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=60),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=70),
)
def test_answer_cache_hits_only_what_the_strict_scanner_accepts(
    position: int, value: int, cut: int
) -> None:
    """Any damage to a cached query gives a miss or a hit for a query the scanner accepts."""
    clock = FakeClock()
    answers = AnswerCache(clock=clock)
    for edns in (None, 1232):
        wire = query("a.example.", edns=edns)
        store_a(answers, wire, edns=edns is not None)
    for base in (query("a.example."), query("a.example.", edns=1232)):
        damaged = bytearray(base[:cut] if cut < len(base) else base)
        if position < len(damaged):
            damaged[position] = value
        hit = answers.lookup(bytes(damaged))
        if hit is not None:
            try:
                scanned = scan_query(bytes(damaged))
            except MalformedMessage as exc:
                pytest.fail(f"hit for a query the scanner refuses: {exc}")
            assert scanned.opcode == 0 and scanned.flags & RD
            assert scanned.edns is None or scanned.edns.version == 0


# --- the UDP fast path in the listener --------------------------------------------------------


class FakeEndpoint:
    """Records what the listener sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False


def test_fast_listener_answers_a_hit_in_the_datagram_callback(setup: Setup) -> None:
    """A hit is sent at once, with no task; a miss is left to the listener's usual path."""
    from resolver.server.fast_path import FastListener

    setup.ask(query())
    listener = FastListener(setup.handler, [("127.0.0.1", 0)])
    endpoint = FakeEndpoint()
    listener._on_datagram(query(qid=0x0102), ("127.0.0.1", 40000), endpoint)  # type: ignore[arg-type]
    sent = [(data[:2], addr) for data, addr in endpoint.sent]
    assert sent == [(b"\x01\x02", ("127.0.0.1", 40000))]
    assert listener.udp_received == 1 and not listener._udp_tasks

    async def miss() -> int:
        listener._on_datagram(query("www.ibm.com."), ("127.0.0.1", 40000), endpoint)  # type: ignore[arg-type]
        pending = len(listener._udp_tasks)
        await asyncio.gather(*listener._udp_tasks)
        return pending

    assert asyncio.run(miss()) == 1  # the miss went through a task and the full handler
    assert len(endpoint.sent) == 2


def test_fast_listener_survives_a_failing_fast_path(setup: Setup) -> None:
    """An exception in the fast path costs nothing: the full path answers the query."""
    from resolver.server.fast_path import FastListener

    def broken(wire: bytes, client_ip: str) -> bytes | None:
        raise RuntimeError("boom")

    listener = FastListener(setup.handler, [("127.0.0.1", 0)])
    listener._from_cache = broken
    endpoint = FakeEndpoint()

    async def run() -> None:
        listener._on_datagram(query(), ("127.0.0.1", 40000), endpoint)  # type: ignore[arg-type]
        await asyncio.gather(*listener._udp_tasks)

    asyncio.run(run())
    assert len(endpoint.sent) == 1 and endpoint.sent[0][0][3] & 0xF == 0
