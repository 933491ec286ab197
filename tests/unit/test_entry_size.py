"""The byte budget of the caches: per-entry estimates checked against what Python allocates.

tracemalloc counts every block allocated while entries are stored (records, their RDATA
objects, keys, the cache's own bookkeeping); the estimate the cache charged for them must be
within 25% of it. These are size checks, not timings.
"""

from __future__ import annotations

import gc
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dnslib
import pytest

from resolver.dns.decoding import decode
from resolver.dns.scanner import scan_query
from resolver.dns.wire import Question, Rcode, Record, RRType, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_budget import CacheSize, parse_cache_size, split_bytes
from resolver.engine.cache_entries import CachedRRset, Rank
from resolver.engine.entry_size import deep_size, entry_size, record_cache_entry_size
from resolver.engine.settings import CacheSettings
from resolver.server.answer_cache import AnswerCache
from tests.support.labnet import FakeClock

ENTRIES = 2_000
TOLERANCE = 0.25


@contextmanager
def allocated() -> Iterator[list[int]]:
    """Bytes allocated (and still held) inside the block, in a one-item list."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    found = [0]
    try:
        yield found
    finally:
        gc.collect()
        found[0] = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()


def big_record_cache(clock: FakeClock) -> RecordCache:
    return RecordCache(CacheSettings(max_bytes=1 << 30), timer=clock)


def store_addresses(cache: RecordCache, i: int) -> None:
    cache.store_rrset(parse_records(
        f"host{i}.example.com. 3600 IN A 192.0.{i >> 8 & 255}.{i & 255}\n"
        f"host{i}.example.com. 3600 IN A 198.51.{i >> 8 & 255}.{i & 255}"),
        Rank.AUTHORITATIVE_ANSWER)


def store_nxdomain(cache: RecordCache, i: int) -> None:
    soa = parse_records(f"zone{i % 40}.example. 3600 IN SOA ns1.zone{i % 40}.example. "
                        f"hostmaster.zone{i % 40}.example. {i} 7200 3600 1209600 900")[0]
    cache.store_negative(Question(f"random{i}.zone{i % 40}.example.", 1), Rcode.NXDOMAIN, soa)


def store_mail(cache: RecordCache, i: int) -> None:
    mx, txt = parse_records(f"m{i}.example.com. 3600 IN MX 10 mail{i}.example.com.\n"
                            f'm{i}.example.com. 3600 IN TXT "v=spf1 include:_spf{i}.example ~all"')
    cache.store_rrset((mx,), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset((txt,), Rank.AUTHORITATIVE_ANSWER)


@pytest.mark.parametrize("store", [store_addresses, store_nxdomain, store_mail],
                         ids=["address RRsets", "NXDOMAIN with SOA", "MX and TXT"])
def test_record_cache_charges_within_a_quarter_of_what_its_entries_allocate(
        store: Callable[[RecordCache, int], None]) -> None:
    clock = FakeClock()
    cache = big_record_cache(clock)
    with allocated() as measured:
        for i in range(ENTRIES):
            store(cache, i)
    charged = cache.size_bytes
    assert charged is not None
    assert abs(charged - measured[0]) <= TOLERANCE * measured[0], (charged, measured[0])


def reply_to(query: bytes, i: int, nxdomain: bool) -> bytes:
    """A reply as the handler encodes one: the question, then an A record (pointer owner) or
    an SOA in the authority section."""
    flags = 0x8183 if nxdomain else 0x8180
    counts = (1, 0, 1, 0) if nxdomain else (1, 1, 0, 0)
    out = query[:2] + struct.pack("!5H", flags, *counts) + query[12:]
    if nxdomain:
        mname = b"\x03ns1\xc0\x14"
        rname = b"\x0ahostmaster\xc0\x14"
        rdata = mname + rname + struct.pack("!5I", i, 7200, 3600, 1209600, 900)
        out += b"\xc0\x14" + struct.pack("!HHIH", 6, 1, 900, len(rdata)) + rdata
    else:
        out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 3600, 4) + struct.pack("!I", i)
    return out


def client_query(i: int) -> bytes:
    label = f"name{i}".encode()
    return (struct.pack("!6H", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + bytes([len(label)]) + label
            + b"\x07example\x03com\x00" + struct.pack("!HH", 1, 1))


@pytest.mark.parametrize("nxdomain", [False, True], ids=["address reply", "NXDOMAIN reply"])
def test_reply_cache_charges_within_a_quarter_of_what_its_entries_allocate(
        nxdomain: bool) -> None:
    clock = FakeClock()
    answers = AnswerCache(clock=clock, max_bytes=1 << 30, round_robin=False)
    wires = [client_query(i) for i in range(ENTRIES)]
    scanned = [scan_query(wire) for wire in wires]
    replies = [reply_to(wire, i, nxdomain) for i, wire in enumerate(wires)]
    with allocated() as measured:
        for wire, scan, reply in zip(wires, scanned, replies, strict=True):
            assert answers.store(wire, scan, reply)
    assert abs(answers.size_bytes - measured[0]) <= TOLERANCE * measured[0], (
        answers.size_bytes, measured[0])


def test_record_cache_in_bytes_stays_within_its_share_of_the_budget() -> None:
    clock = FakeClock()
    budget = 1 << 20
    cache = RecordCache(CacheSettings(max_bytes=budget), timer=clock)
    for i in range(5_000):
        store_addresses(cache, i)
    charged = cache.size_bytes
    assert charged is not None and charged <= split_bytes(budget)[0]
    assert 0 < len(cache) < 5_000
    assert cache.rrset("host4999.example.com.", 1) is not None  # the newest stays


def test_record_cache_refuses_an_rrset_larger_than_its_budget() -> None:
    clock = FakeClock()
    cache = RecordCache(CacheSettings(max_bytes=256 * 1024), timer=clock)
    huge = parse_records("\n".join(f"big.example. 300 IN A 10.0.{i >> 8}.{i & 255}"
                                   for i in range(4_000)))
    assert not cache.store_rrset(huge, Rank.AUTHORITATIVE_ANSWER) or cache.rrset(
        "big.example.", 1) is None
    assert cache.rrset("big.example.", 1) is None


def test_reply_cache_in_bytes_stays_within_its_budget() -> None:
    clock = FakeClock()
    answers = AnswerCache(clock=clock, max_bytes=256 * 1024)
    for i in range(5_000):
        wire = client_query(i)
        answers.store(wire, scan_query(wire), reply_to(wire, i, False))
    assert answers.size_bytes <= 256 * 1024
    assert 0 < len(answers) < 5_000


def decoded_reply_records() -> list[Record]:
    """Records as the decoder builds them (A RDATA as octets, names shared by offset)."""
    reply = dnslib.DNSRecord.question("www.example.com").reply()
    reply.add_answer(*dnslib.RR.fromZone("www.example.com. 300 IN A 192.0.2.1\n"
                                         "www.example.com. 300 IN A 192.0.2.2"))
    reply.add_auth(*dnslib.RR.fromZone("example.com. 86400 IN NS ns1.example.com.\n"
                                       "example.com. 86400 IN NS ns2.example.com."))
    reply.add_ar(*dnslib.RR.fromZone("ns1.example.com. 86400 IN AAAA 2001:db8::1"))
    message = decode(reply.pack())
    return [*message.answer, *message.authority, *message.additional]


@pytest.mark.parametrize("rtype", [RRType.A, RRType.NS, RRType.AAAA])
def test_a_cached_rrsets_size_counted_field_by_field_equals_the_generic_walk(
        rtype: RRType) -> None:
    records = tuple(r for r in decoded_reply_records() if r.rtype == rtype)
    signature = parse_records("www.example.com. 300 IN RRSIG A 13 3 300 20300101000000 "
                              "20200101000000 12345 example.com. AAAA")[0]
    for entry in (CachedRRset(records, Rank.AUTHORITATIVE_ANSWER, 1.0, 301.0),
                  CachedRRset(records, Rank.ANSWER, 1.0, 301.0, rrsigs=(signature,),
                              proof=records[:1])):
        key = ("rr", records[0].name, int(rtype), 1)
        assert record_cache_entry_size(key, entry) == entry_size(key, entry)


def test_deep_size_counts_a_shared_object_once() -> None:
    name = "www.example.com." * 4
    assert deep_size((name, name)) == deep_size((name,)) + 8


@pytest.mark.parametrize(("text", "size"), [
    (7, CacheSize(entries=7)), ("7", CacheSize(entries=7)),
    ("512k", CacheSize(max_bytes=512 * 1024)), ("64m", CacheSize(max_bytes=64 << 20)),
    ("64M", CacheSize(max_bytes=64 << 20)), ("1g", CacheSize(max_bytes=1 << 30)),
    ("100000b", CacheSize(max_bytes=100_000)),
])
def test_cache_size_is_entries_as_a_plain_number_and_bytes_with_a_unit(
        text: int | str, size: CacheSize) -> None:
    assert parse_cache_size(text) == size


@pytest.mark.parametrize("text", [0, "0", "-1", "64x", "m", "1.5m", "", "10k"])
def test_cache_size_refuses_what_is_not_a_count_or_a_size_of_64k_or_more(
        text: int | str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_cache_size(text)


def test_a_byte_budget_gives_two_thirds_to_records_and_a_third_to_replies() -> None:
    assert split_bytes(300 << 20) == (200 << 20, 100 << 20)
