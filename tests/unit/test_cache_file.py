"""The cache file: what survives a restart, and what a bad file does (nothing).

Format and rules: resolver/daemon/cache_file.py. The record cache runs on a fake
monotonic clock, the file's "written" time on a fake wall clock, so the downtime between
writing and loading is exact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from resolver.daemon import cache_file
from resolver.daemon.cache_file import CacheFileError, CacheFileKeeper
from resolver.dns.record_text import exact_text, record_from_exact_text
from resolver.dns.wire import (
    Question,
    Rcode,
    Record,
    RRType,
    make_record,
    parse_record,
    parse_records,
)
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.settings import CacheSettings
from tests.support.labnet import FakeClock

SOA = parse_record("example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 300")
WALL_START = 1_700_000_000.0


class Clocks:
    """The cache's monotonic timer and the wall clock, moved together."""

    def __init__(self) -> None:
        self.monotonic = FakeClock()
        self.wall = FakeClock(WALL_START)

    def advance(self, seconds: float) -> None:
        self.monotonic.advance(seconds)
        self.wall.advance(seconds)


def make_cache(clocks: Clocks, **settings: Any) -> RecordCache:
    return RecordCache(CacheSettings(**settings), timer=clocks.monotonic)


def keeper(cache: RecordCache, path: Path, clocks: Clocks) -> CacheFileKeeper:
    return CacheFileKeeper(cache, path, interval_s=300, wall_clock=clocks.wall)


def save(cache: RecordCache, path: Path, clocks: Clocks) -> bool:
    return asyncio.run(keeper(cache, path, clocks).save())


def a_rrset(name: str = "www.example.", ttl: int = 300) -> list[Record]:
    return parse_records(f"{name} {ttl} IN A 192.0.2.1\n{name} {ttl} IN A 192.0.2.2")


def ttls(records: tuple[Record, ...] | None) -> set[int]:
    assert records is not None
    return {rr.ttl for rr in records}


def warm_cache(clocks: Clocks, **settings: Any) -> RecordCache:
    cache = make_cache(clocks, **settings)
    cache.store_rrset(a_rrset(), Rank.AUTHORITATIVE_ANSWER)
    cache.store_rrset(a_rrset("ns.example.", 3600), Rank.ADDITIONAL)
    cache.store_rrset(parse_records("example. 3600 IN NS ns.example."), Rank.AUTHORITY)
    cache.store_negative(Question("nope.example.", RRType.A), Rcode.NXDOMAIN, SOA)
    cache.store_negative(Question("www.example.", RRType.AAAA), Rcode.NOERROR, SOA)
    return cache


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


# -- exact record text -----------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "www.example. 300 IN A 192.0.2.1",
    "www.example. 300 IN AAAA 2001:db8::1",
    "example. 300 IN NS NS1.Example.",
    "example. 300 IN MX 10 mx.example.",
    "example. 300 IN SOA ns.example. host.example. 1 2 3 4 5",
    'example. 300 IN TXT "a b" "cd"',
    '_s._tcp.example. 300 IN SRV 1 2 3 t.example.',
    "example. 300 IN DS 1 2 3 abcd",
])
def test_exact_text_reads_back_the_same_record_octet_for_octet(text: str) -> None:
    """Every record written reads back equal, RDATA octets included (RFC 3597 §5 form for
    the types without a simple presentation)."""
    record = parse_record(text)
    back = record_from_exact_text(exact_text(record))
    assert back == record
    assert back.rdata_text == record.rdata_text


def test_exact_text_keeps_an_unknown_type_in_generic_form() -> None:
    """A type dnslib does not know travels as `\\# LENGTH HEX` (RFC 3597 §5)."""
    record = make_record("x.example.", 65280, 300, b"\x01\x02")
    line = exact_text(record)
    assert line.endswith("TYPE65280\t\\# 2 0102")
    assert record_from_exact_text(line).rdata_text == record.rdata_text


@pytest.mark.parametrize("line", [
    "www.example.\t300\tIN\tA\t192.0.2.300",
    "www.example.\t300\tIN\tCNAME\t\\# 2 0102",
    "www.example.\t300\tIN\tA\t\\# 5 c000020101",
    "www.example.\t-1\tIN\tA\t192.0.2.1",
    "www.example.\t300\tXX\tA\t192.0.2.1",
    "www.example. 300 IN A 192.0.2.1",
    "www.example.\t300\tIN\tTXT\t\"a\"",
])
def test_exact_text_refuses_a_line_that_does_not_fit_its_type(line: str) -> None:
    with pytest.raises(ValueError):
        record_from_exact_text(line)


# -- round trip and TTLs ---------------------------------------------------------------------


def test_round_trip_keeps_rrsets_ranks_and_negative_answers(tmp_path: Path,
                                                           clocks: Clocks) -> None:
    """What is saved comes back: RRsets with their ranks, NXDOMAIN and NODATA with SOA."""
    path = tmp_path / "cache"
    assert save(warm_cache(clocks), path, clocks)
    fresh = make_cache(clocks)
    assert keeper(fresh, path, clocks).load() == 5
    assert sorted(rr.address for rr in fresh.rrset("www.example.", RRType.A) or ()) == [
        "192.0.2.1", "192.0.2.2"]
    assert fresh.rank_of("www.example.", RRType.A) == Rank.AUTHORITATIVE_ANSWER
    assert fresh.rank_of("ns.example.", RRType.A) == Rank.ADDITIONAL
    assert fresh.rank_of("example.", RRType.NS) == Rank.AUTHORITY
    nx = fresh.negative(Question("below.nope.example.", RRType.MX))  # RFC 8020 still holds
    assert nx is not None and nx.rcode == Rcode.NXDOMAIN and nx.soa is not None
    nodata = fresh.negative(Question("www.example.", RRType.AAAA))
    assert nodata is not None and nodata.rcode == Rcode.NOERROR
    assert fresh.negative(Question("www.example.", RRType.TXT)) is None


RRSIG_A = parse_record("www.example. 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 "
                       "12345 example. AAAA")
RRSIG_SOA = parse_record("example. 300 IN RRSIG SOA 13 1 3600 20300101000000 20200101000000 "
                         "12345 example. AAAA")
NSEC = parse_record("example. 300 IN NSEC www.example. NS SOA RRSIG NSEC DNSKEY")


def test_validated_data_comes_back_with_its_status_and_signatures(tmp_path: Path,
                                                                  clocks: Clocks) -> None:
    """A validating resolver reloads secure data as secure (RFC 4035 §4.5): the RRSIGs of
    an RRset and the proof of a denial are written with it, and indeterminate data is not
    written at all."""
    path = tmp_path / "cache"
    cache = make_cache(clocks)
    cache.store_rrset(a_rrset(), Rank.AUTHORITATIVE_ANSWER, security=Security.SECURE,
                      rrsigs=(RRSIG_A,))
    cache.store_rrset(a_rrset("doubt.example."), Rank.AUTHORITATIVE_ANSWER,
                      security=Security.INDETERMINATE)
    cache.store_negative(Question("nope.example.", RRType.A), Rcode.NXDOMAIN, SOA,
                         security=Security.SECURE, proof=(RRSIG_SOA, NSEC))
    assert save(cache, path, clocks)
    assert "security=indeterminate" not in path.read_text()
    fresh = make_cache(clocks)
    assert keeper(fresh, path, clocks).load() == 2
    signed = fresh.signed_rrset("www.example.", RRType.A)
    assert signed is not None and signed.security is Security.SECURE
    assert [rr.rdata_key for rr in signed.rrsigs] == [RRSIG_A.rdata_key]
    assert fresh.rrset("doubt.example.", RRType.A) is None
    denial = fresh.negative(Question("nope.example.", RRType.A))
    assert denial is not None and denial.security is Security.SECURE
    assert [rr.rtype for rr in denial.proof] == [RRType.RRSIG, RRType.NSEC]


def test_a_negative_entry_with_a_record_that_is_no_proof_is_refused(tmp_path: Path,
                                                                    clocks: Clocks) -> None:
    path = tmp_path / "cache"
    cache = make_cache(clocks)
    cache.store_negative(Question("nope.example.", RRType.A), Rcode.NXDOMAIN, SOA)
    assert save(cache, path, clocks)
    lines = path.read_text().splitlines()
    soa_at = next(i for i, line in enumerate(lines) if "\tSOA\t" in line)
    lines.insert(soa_at + 1, exact_text(a_rrset()[0]))
    body = "\n".join(lines[:-1]) + "\n"
    import hashlib
    trailer = f";end entries=1 sha256={hashlib.sha256(body.encode()).hexdigest()}"
    path.write_text(body + trailer + "\n")
    with pytest.raises(CacheFileError, match="one SOA, then only its proof"):
        cache_file.read_file(path, now=clocks.wall(), max_entries=10)


def test_reload_does_not_promote_glue_to_answer_rank(tmp_path: Path, clocks: Clocks) -> None:
    """Glue stays glue after a reload: an authoritative answer may still replace it."""
    path = tmp_path / "cache"
    cache = make_cache(clocks)
    cache.store_rrset(a_rrset("ns.example.", 3600), Rank.ADDITIONAL)
    save(cache, path, clocks)
    fresh = make_cache(clocks)
    keeper(fresh, path, clocks).load()
    assert fresh.rank_of("ns.example.", RRType.A) == Rank.ADDITIONAL
    assert fresh.store_rrset(parse_records("ns.example. 60 IN A 192.0.2.9"),
                             Rank.AUTHORITATIVE_ANSWER)
    assert fresh.rrset("ns.example.", RRType.A, min_rank=Rank.ANSWER) is not None


def test_loaded_file_does_not_replace_live_data_of_a_higher_rank(
    tmp_path: Path, clocks: Clocks
) -> None:
    """`cache load` into a running cache: an authoritative answer outranks saved glue."""
    path = tmp_path / "cache"
    old = make_cache(clocks)
    old.store_rrset(parse_records("ns.example. 3600 IN A 192.0.2.66"), Rank.ADDITIONAL)
    save(old, path, clocks)
    running = make_cache(clocks)
    running.store_rrset(parse_records("ns.example. 300 IN A 192.0.2.9"),
                        Rank.AUTHORITATIVE_ANSWER)
    asyncio.run(cache_file.load_into(running, path, wall_clock=clocks.wall))
    assert [rr.address for rr in running.rrset("ns.example.", RRType.A) or ()] == ["192.0.2.9"]


def test_ttls_are_lowered_by_the_time_the_process_was_down(tmp_path: Path,
                                                           clocks: Clocks) -> None:
    """100 s in the cache before the save, 50 s down: 150 s fewer after the load."""
    path = tmp_path / "cache"
    cache = warm_cache(clocks)
    clocks.advance(100)
    save(cache, path, clocks)
    clocks.advance(50)
    fresh = make_cache(clocks)
    keeper(fresh, path, clocks).load()
    assert ttls(fresh.rrset("www.example.", RRType.A)) == {150}
    assert ttls(fresh.rrset("example.", RRType.NS)) == {3450}
    nx = fresh.negative(Question("nope.example.", RRType.A))
    assert nx is not None and nx.soa is not None and nx.soa.ttl == 150
    clocks.advance(150)
    assert fresh.rrset("www.example.", RRType.A) is None  # expires when it would have


def test_prefetch_sees_the_original_ttl_after_a_reload(tmp_path: Path, clocks: Clocks) -> None:
    """The TTL an RRset was stored with survives, so prefetch's 10% window still works."""
    path = tmp_path / "cache"
    cache = warm_cache(clocks)
    clocks.advance(280)
    save(cache, path, clocks)
    fresh = make_cache(clocks)
    keeper(fresh, path, clocks).load()
    info = fresh.rrset_info("www.example.", RRType.A)
    assert info is not None and info.original_ttl == 300 and info.ttl_left == 20


def test_data_that_expired_while_down_is_dropped(tmp_path: Path, clocks: Clocks) -> None:
    """Down longer than a TTL: that entry is gone, longer-lived ones stay."""
    path = tmp_path / "cache"
    save(warm_cache(clocks), path, clocks)
    clocks.advance(1000)
    fresh = make_cache(clocks)
    assert keeper(fresh, path, clocks).load() == 2  # the two RRsets of TTL 3600
    assert fresh.rrset("www.example.", RRType.A) is None
    assert fresh.stale_rrset("www.example.", RRType.A, ttl=30) is None
    assert fresh.negative(Question("nope.example.", RRType.A)) is None
    assert ttls(fresh.rrset("ns.example.", RRType.A)) == {2600}


def test_expired_data_is_kept_for_serve_stale_when_that_is_on(tmp_path: Path,
                                                             clocks: Clocks) -> None:
    """With serve-stale, expired data within max-stale-ttl is loaded as stale data only."""
    path = tmp_path / "cache"
    save(warm_cache(clocks, stale_answer_enable=True, max_stale_ttl_s=3600), path, clocks)
    clocks.advance(1000)
    fresh = make_cache(clocks, stale_answer_enable=True, max_stale_ttl_s=3600)
    assert keeper(fresh, path, clocks).load() == 5
    assert fresh.rrset("www.example.", RRType.A) is None  # not live
    assert ttls(fresh.stale_rrset("www.example.", RRType.A, ttl=30)) == {30}
    stale_nx = fresh.stale_negative(Question("nope.example.", RRType.A), ttl=30)
    assert stale_nx is not None and stale_nx.rcode == Rcode.NXDOMAIN


def test_stale_data_survives_a_second_restart_with_its_age(tmp_path: Path,
                                                          clocks: Clocks) -> None:
    """Entries already stale when saved keep counting: past max-stale-ttl they go."""
    path = tmp_path / "cache"
    cache = warm_cache(clocks, stale_answer_enable=True, max_stale_ttl_s=3600)
    clocks.advance(1000)  # www expired 700 s ago
    save(cache, path, clocks)
    assert "expired-ago=700" in path.read_text()
    clocks.advance(2000)
    fresh = make_cache(clocks, stale_answer_enable=True, max_stale_ttl_s=3600)
    keeper(fresh, path, clocks).load()
    assert fresh.stale_rrset("www.example.", RRType.A, ttl=30) is not None  # 2700 s ago
    clocks.advance(1000)
    later = tmp_path / "later"
    save(fresh, later, clocks)
    assert "www.example." not in later.read_text()  # 3700 s past expiry: no longer kept


def test_ttls_follow_the_cache_max_ttl_in_force_at_load(tmp_path: Path, clocks: Clocks) -> None:
    """A lower cache-max-ttl after the restart clamps what is loaded."""
    path = tmp_path / "cache"
    save(warm_cache(clocks), path, clocks)
    fresh = make_cache(clocks, max_ttl_s=60)
    keeper(fresh, path, clocks).load()
    assert ttls(fresh.rrset("ns.example.", RRType.A)) == {60}


def test_a_clock_set_back_never_lengthens_ttls(tmp_path: Path, clocks: Clocks) -> None:
    path = tmp_path / "cache"
    save(warm_cache(clocks), path, clocks)
    clocks.wall.advance(-5000)
    fresh = make_cache(clocks)
    keeper(fresh, path, clocks).load()
    assert ttls(fresh.rrset("www.example.", RRType.A)) == {300}


def test_file_records_are_zone_file_lines_with_remaining_ttls(tmp_path: Path,
                                                             clocks: Clocks) -> None:
    """Header with version and wall-clock time, rank on each RRset, TTL as remaining."""
    path = tmp_path / "cache"
    cache = warm_cache(clocks)
    clocks.advance(10)
    save(cache, path, clocks)
    lines = path.read_text().splitlines()
    assert lines[0] == f";resolver-cache 1 written={WALL_START + 10:.3f}"
    assert lines[-1].startswith(";end entries=5 sha256=")
    at = lines.index("www.example.\t290\tIN\tA\t192.0.2.1")
    assert lines[at - 1] == ";rrset authoritative_answer original-ttl=300"
    assert ";nxdomain nope.example. IN original-ttl=300" in lines
    assert ";nodata www.example. IN AAAA original-ttl=300" in lines


def test_the_file_holds_no_remembered_failures(tmp_path: Path, clocks: Clocks) -> None:
    """RFC 9520 failures last a second: not worth keeping, never written."""
    path = tmp_path / "cache"
    cache = make_cache(clocks, failure_ttl_s=30)
    cache.store_failure(Question("broken.example.", RRType.A), "timeout")
    save(cache, path, clocks)
    assert "broken" not in path.read_text()
    fresh = make_cache(clocks, failure_ttl_s=30)
    keeper(fresh, path, clocks).load()
    assert fresh.failure(Question("broken.example.", RRType.A)) is None


def test_concatenated_dumps_of_several_workers_all_load(tmp_path: Path, clocks: Clocks) -> None:
    """`cache dump` of two workers (each section under a ";; worker N" line) loads whole."""
    first, second = make_cache(clocks), make_cache(clocks)
    first.store_rrset(a_rrset("one.example."), Rank.ANSWER)
    second.store_rrset(a_rrset("two.example."), Rank.ANSWER)
    sections = [asyncio.run(cache_file.dump_lines(c, wall_clock=clocks.wall))
                for c in (first, second)]
    path = tmp_path / "dump"
    path.write_text("\n".join([";; worker 0", *sections[0], ";; worker 1", *sections[1]])
                    + "\n")
    fresh = make_cache(clocks)
    assert asyncio.run(cache_file.load_into(fresh, path, wall_clock=clocks.wall)) == 2
    assert fresh.rrset("two.example.", RRType.A) is not None


def test_a_file_larger_than_the_cache_keeps_its_last_entries(tmp_path: Path,
                                                            clocks: Clocks) -> None:
    path = tmp_path / "cache"
    save(warm_cache(clocks), path, clocks)
    entries = cache_file.read_file(path, now=clocks.wall(), max_entries=2)
    assert len(entries) == 2


# -- bad files: one log line, an empty cache --------------------------------------------------


def saved_text(tmp_path: Path, clocks: Clocks) -> str:
    path = tmp_path / "good"
    save(warm_cache(clocks), path, clocks)
    return path.read_text()


def load_bad(tmp_path: Path, clocks: Clocks, content: bytes | None,
             caplog: pytest.LogCaptureFixture) -> RecordCache:
    path = tmp_path / "bad"
    if content is not None:
        path.write_bytes(content)
    fresh = make_cache(clocks)
    with caplog.at_level(logging.INFO, logger="resolver"):
        assert keeper(fresh, path, clocks).load() == 0
    return fresh


def one_warning(caplog: pytest.LogCaptureFixture) -> str:
    records = [r for r in caplog.records if r.name == "resolver"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "\n" not in message and "starting with an empty cache" in message
    return message


def test_missing_file_is_one_log_line_and_an_empty_cache(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = load_bad(tmp_path, clocks, None, caplog)
    assert "no such file" in one_warning(caplog) and len(fresh) == 0


def test_truncated_file_is_refused_whole(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut anywhere, the file loads nothing: not even the entries before the cut."""
    text = saved_text(tmp_path, clocks).encode()
    for cut in (len(text) - 1, len(text) // 2, text.index(b"\n") + 1):
        caplog.clear()
        fresh = load_bad(tmp_path, clocks, text[:cut], caplog)
        assert "truncated" in one_warning(caplog) and len(fresh) == 0


def test_corrupted_file_is_refused_by_its_checksum(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    """One address changed, still a valid record: the checksum catches it."""
    text = saved_text(tmp_path, clocks).replace("192.0.2.2", "192.0.2.7")
    fresh = load_bad(tmp_path, clocks, text.encode(), caplog)
    assert "checksum" in one_warning(caplog) and len(fresh) == 0


@pytest.mark.parametrize("damage", [
    lambda t: t.replace("\tIN\tA\t192.0.2.1", "\tIN\tA\tnot-an-address"),
    lambda t: t.replace(";rrset authoritative_answer", ";rrset supreme"),
    lambda t: t.replace("original-ttl=300", "original-ttl=x", 1),
    lambda t: t.replace(";end entries=5", ";end entries=4"),
    lambda t: "garbage\n" + t,
    lambda t: t.encode("utf-8").replace(b"www", b"\xff\xfe").decode("latin-1"),
])
def test_damaged_file_is_one_log_line_and_an_empty_cache(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    text = damage(saved_text(tmp_path, clocks))
    fresh = load_bad(tmp_path, clocks, text.encode("latin-1"), caplog)
    one_warning(caplog)
    assert len(fresh) == 0


def test_file_of_another_version_is_refused_and_says_so(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    text = saved_text(tmp_path, clocks).replace(";resolver-cache 1 ", ";resolver-cache 2 ")
    fresh = load_bad(tmp_path, clocks, text.encode(), caplog)
    assert "format version 2" in one_warning(caplog) and len(fresh) == 0


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, os.urandom(4096), b"\n\n;;\n"])
def test_random_bytes_never_crash_the_reader(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    fresh = load_bad(tmp_path, clocks, content, caplog)
    one_warning(caplog)
    assert len(fresh) == 0


def test_every_single_line_removed_is_detected(tmp_path: Path, clocks: Clocks) -> None:
    """No line can go missing unnoticed (a lost record, header or trailer)."""
    lines = saved_text(tmp_path, clocks).splitlines(keepends=True)
    for index in range(len(lines)):
        damaged = [line.encode() for i, line in enumerate(lines) if i != index]
        with pytest.raises(CacheFileError):
            cache_file.parse_lines(damaged, now=WALL_START, max_entries=100)


# -- writing never leaves a broken file ------------------------------------------------------


def test_a_crash_mid_write_leaves_the_old_file_intact(
    tmp_path: Path, clocks: Clocks, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rename fails (as if the process died before it): the old file stays whole,
    no temporary file is left, the failure is one log line."""
    path = tmp_path / "cache"
    save(warm_cache(clocks), path, clocks)
    before = path.read_bytes()

    def failing_replace(_src: object, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_file.os, "replace", failing_replace)
    bigger = warm_cache(clocks)
    bigger.store_rrset(a_rrset("more.example."), Rank.ANSWER)
    with caplog.at_level(logging.WARNING, logger="resolver"):
        assert not save(bigger, path, clocks)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert "No space left on device" in one_line(caplog)
    monkeypatch.undo()
    fresh = make_cache(clocks)
    assert keeper(fresh, path, clocks).load() == 5


def one_line(caplog: pytest.LogCaptureFixture) -> str:
    (record,) = [r for r in caplog.records if r.name == "resolver"]
    return record.getMessage()


def test_an_unwritable_directory_is_one_log_line(
    tmp_path: Path, clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="resolver"):
        assert not save(warm_cache(clocks), tmp_path / "missing" / "cache", clocks)
    assert "not written" in one_line(caplog)


def test_periodic_saves_run_until_stopped(tmp_path: Path, clocks: Clocks) -> None:
    """save_until writes every interval, and a save under way ends before it returns."""
    path = tmp_path / "cache"
    cache = warm_cache(clocks)

    async def scenario() -> None:
        saver = CacheFileKeeper(cache, path, interval_s=0.05, wall_clock=clocks.wall)
        stop = asyncio.Event()
        task = asyncio.create_task(saver.save_until(stop))
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert path.read_text().startswith(";resolver-cache 1 ")


# -- the event loop keeps turning -------------------------------------------------------------


def test_saving_a_full_cache_lets_the_loop_go_on_turning(tmp_path: Path) -> None:
    """100,000 entries: the snapshot on the loop is one dict copy, the text is made and
    written in a thread, so other tasks keep running while the file is written. (How long
    the loop is held is a benchmark's figure, not a test's: bench/cache_bench.py.)"""
    cache = RecordCache(CacheSettings(), timer=time.monotonic)
    records = a_rrset()
    for i in range(100_000):
        cache.store_rrset([records[0].with_name(f"host{i}.example.")], Rank.ANSWER)
    path = tmp_path / "cache"
    gaps: list[float] = []

    async def scenario() -> None:
        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        gaps.clear()
        assert await CacheFileKeeper(cache, path, interval_s=300).save()
        ticking.cancel()

    asyncio.run(scenario())
    assert len(gaps) > 10  # the loop went on turning while the file was written
    assert path.read_text().count("\n") == 200_002
