"""Full garbage-collector pauses with a full cache: before and after gc.freeze().

Fills a RecordCache with 100,000 NXDOMAIN entries (each with its SOA, as the issue's
realistic entry) plus as many positive A RRsets, then times full collections (gc.collect(),
generation 2) the way the interpreter would run them, first with every object tracked, then
after gc.freeze() moved them to the permanent generation. Bounded: a few seconds.
Run: .venv/bin/python bench/gc_pause_bench.py [entries]
"""

from __future__ import annotations

import gc
import sys
import time

from resolver.dns.wire import Question, Rcode, parse_record
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.settings import CacheSettings


def fill(cache: RecordCache, count: int) -> None:
    soa = parse_record("example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 300")
    for i in range(count // 2):
        cache.store_negative(Question(f"n{i}.example.", 1), Rcode.NXDOMAIN, soa)
        cache.store_rrset([parse_record(f"a{i}.example. 3600 IN A 10.{i >> 16 & 255}."
                                        f"{i >> 8 & 255}.{i & 255}")], Rank.ANSWER)


def full_collection_ms(rounds: int = 5) -> float:
    worst = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        worst = max(worst, time.perf_counter() - started)
    return worst * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    gc.disable()  # the filling itself is not what is measured
    cache = RecordCache(CacheSettings(max_entries=count), timer=time.monotonic)
    fill(cache, count)
    gc.enable()
    print(f"entries: {len(cache)}, tracked objects: {len(gc.get_objects())}")
    print(f"full collection, all objects tracked: {full_collection_ms():.1f} ms (worst of 5)")
    gc.freeze()
    print(f"full collection after gc.freeze():    {full_collection_ms():.1f} ms (worst of 5), "
          f"{gc.get_freeze_count()} objects frozen")
    gc.unfreeze()


if __name__ == "__main__":
    main()
