"""Cache benchmark: resident memory per cached RRset, and the latency of a cached answer.

Run with `make bench-cache` (or `.venv/bin/python bench/cache_bench.py [--rrsets N]`).
It prints figures and asserts nothing: speed and size depend on the machine.

1. Memory: the growth of the process's resident set (VmRSS) while N one-record A RRsets
   are stored, divided by N.
2. Latency: wire query in, wire reply out through the production handler for a name
   already cached; sequential, one event loop, mean and percentiles in microseconds.
   Measured twice: with the handler's answer cache (reply bytes, the hot path), and
   without it, so that every query goes through the service, the engine and this record
   cache. Serve-stale and prefetch on are measured too, since they add work to a miss of
   the answer cache.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from dataclasses import replace

from resolver.daemon.app import build
from resolver.daemon.config import ServeConfig
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType, parse_records
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.delegation import parse_root_hints
from resolver.engine.network import ServerAddress, Transport, UpstreamError
from resolver.engine.settings import CacheSettings
from resolver.server.answer_cache import AnswerCache
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client

CHUNK = 5_000
CLIENT = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
HINTS = ". 3600000 NS a.root.bench.\na.root.bench. 3600000 A 127.0.0.9"


def resident_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def memory_per_rrset(count: int) -> tuple[int, float]:
    """Resident bytes the cache grows by for `count` one-record RRsets, and bytes per RRset."""
    cache = RecordCache(CacheSettings(max_entries=count), timer=time.monotonic)
    gc.collect()
    before = resident_bytes()
    for start in range(0, count, CHUNK):
        text = "\n".join(
            f"host{i}.bench.example. 3600 IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            for i in range(start, min(start + CHUNK, count))
        )
        for record in parse_records(text):
            cache.store_rrset((record,), Rank.AUTHORITATIVE_ANSWER)
    gc.collect()
    grown = resident_bytes() - before
    assert len(cache) == count
    return grown, grown / count


class NoNetwork:
    """Cached answers never reach the network; anything else is a benchmark bug."""

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        raise UpstreamError("the benchmark has no network")


def cached_answer_latency(queries: int, cache: CacheSettings, *, answer_cache: bool
                          ) -> list[float]:
    """Microseconds per cached answer through the handler, one per query."""
    app = build(ServeConfig(cache=cache), root_hints=parse_root_hints(HINTS), network=NoNetwork())
    handler = app.handler
    if not answer_cache:  # a handler that stores no reply bytes: every query reaches the engine
        handler = QueryHandler(app.service, answers=AnswerCache(clock=time.monotonic,
                                                                  max_entries=0))
    app.state.cache.store_rrset(
        parse_records("www.bench.example. 86400 IN A 192.0.2.80"), Rank.AUTHORITATIVE_ANSWER
    )
    wire = make_query(Question("www.bench.example.", RRType.A), query_id=1,
                      recursion_desired=True)

    async def run() -> list[float]:
        timings = []
        for _ in range(queries):
            started = time.perf_counter()
            reply = await handler.handle(wire, CLIENT)
            timings.append((time.perf_counter() - started) * 1e6)
            assert reply is not None and reply[3] & 0xF == 0
        return timings

    return asyncio.run(run())


def report(label: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[int(len(ordered) * 0.99)]
    print(f"  {label:<28} mean {statistics.fmean(timings):7.1f} µs   "
          f"p50 {p50:7.1f} µs   p99 {p99:7.1f} µs   ({1e6 / statistics.fmean(timings):,.0f} q/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rrsets", type=int, default=100_000, help="RRsets for the memory test")
    parser.add_argument("--queries", type=int, default=20_000, help="queries for the latency test")
    args = parser.parse_args()

    grown, per_rrset = memory_per_rrset(args.rrsets)
    print(f"memory: {args.rrsets:,} cached RRsets (one A record each) grow the resident set by "
          f"{grown / 2**20:.1f} MiB = {per_rrset:,.0f} bytes per RRset")

    print(f"cached answer through the handler ({args.queries:,} sequential queries, "
          f"after {args.queries // 10:,} warm-up):")
    plain = CacheSettings()
    both = replace(plain, stale_answer_enable=True, prefetch=True)
    for label, settings, answer_cache in [
        ("answer cache (reply bytes)", plain, True),
        ("record cache via the engine", plain, False),
        ("  + serve-stale and prefetch", both, False),
    ]:
        cached_answer_latency(args.queries // 10, settings, answer_cache=answer_cache)  # warm-up
        report(label, cached_answer_latency(args.queries, settings, answer_cache=answer_cache))


if __name__ == "__main__":
    main()
