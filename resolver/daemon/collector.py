"""The garbage collector kept off the long-lived cache.

CPython's full (generation 2) collection walks every tracked object; with a full cache of
100,000 entries that is about 465,000 objects and 250 ms (bench/gc_pause_bench.py), during
which nothing is answered and the kernel drops datagrams. Cache entries live for minutes
and are freed by reference counting when evicted, so the collector finds nothing in them.
`gc.freeze()` moves every object alive at that moment to the permanent generation, which
collections skip: done once the server is up (the loaded cache file, the root data), after
every collection, and at intervals, so collections only walk what is young.

Cost: an object frozen and later part of unreachable reference cycles is not reclaimed.
Records and cache entries hold no cycles, nor do upstream failures any longer (`make soak`
counts what the collector frees: none a minute), so what stays behind is small.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("resolver")

#: How often objects alive are frozen: a full cache is built over minutes, and between two
#: freezes a full collection walks at most what one interval added.
FREEZE_INTERVAL_S = 60.0


def freeze_survivors() -> int:
    """Collect once, then freeze what survived; returns the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def freeze_at_intervals(stop: asyncio.Event, interval_s: float = FREEZE_INTERVAL_S) -> None:
    """Collect and freeze at once, then freeze (without collecting) every `interval_s`
    until `stop` is set.

    Only the first freeze collects: at start-up, before the load. A collection later is a
    full one, a pause of its own (about 100 ms a minute under `make soak`), and no longer
    needed: the survivors of the interpreter's own collections are frozen as they go
    (`freeze_after_collections`), and reference counting frees the rest.
    """
    first = True
    while not stop.is_set():
        if first:
            log.debug("garbage collector: %d objects frozen", freeze_survivors())
            first = False
        else:
            gc.freeze()  # (counting the frozen objects would walk them all)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            continue


#: How often a young collection is run whatever the interpreter's own count says.
YOUNG_INTERVAL_S = 0.1


async def collect_young_at_intervals(stop: asyncio.Event,
                                     interval_s: float = YOUNG_INTERVAL_S) -> None:
    """Run a young collection every `interval_s` until `stop` is set.

    The interpreter counts allocations minus deallocations, and the evicted cache entries
    that die are frozen objects: their deaths hold the count back while new entries keep
    arriving, so its own young collections come seldom and each walks many seconds of
    survivors (10 a minute of 65 ms each, up to 160 ms, under `make soak` with the cache
    full). Paced by time, each walks at most `interval_s` of them; the survivors are frozen
    at once (`freeze_after_collections`), so the total work stays the same.
    """
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            gc.collect(0)


def _freeze_after_collection(phase: str, info: dict[str, Any]) -> None:
    """gc callback: once a collection is over, freeze what survived it."""
    if phase == "stop":
        gc.freeze()


def freeze_after_collections() -> Callable[[], None]:
    """Freeze the survivors of every collection; returns what undoes it.

    Between two freezes at intervals the young objects pile up (a busy cache adds about a
    million a minute), and every full collection walked all of them again: measured under
    `make soak`, 10 a minute of up to 400 ms. Frozen after the survivors of the middle
    generation only, they still made that generation's collections the longest pauses
    (about 60 ms each, ten young collections' survivors walked at once, under `make soak`
    while the cache fills). Frozen as soon as they survive one young collection (cache
    entries, and the queries in flight), every object is examined once, by the young
    collection it survives; the older generations stay empty and their collections walk
    next to nothing. `gc.freeze()` splices lists: it costs the same whatever it freezes.

    Safe because the serving path makes next to no reference cycles (an upstream timeout
    used to make one, with its socket and frames; engine/driver.py and
    upstream/exchange.py say how they are avoided; `make soak` counts what collections
    free, none a minute): a frozen object that dies is freed by reference counting as any
    other; only one in a cycle would stay.
    """
    gc.callbacks.append(_freeze_after_collection)

    def undo() -> None:
        if _freeze_after_collection in gc.callbacks:
            gc.callbacks.remove(_freeze_after_collection)

    return undo


#: Net new tracked objects between two young collections (CPython's default is 700). A
#: young collection examines every young object still alive, and under load that is mostly
#: the queries in flight, the same set whatever the threshold: examined 700 at a time it
#: cost about 5 s of CPU a minute under `make soak` (4,000 queries/s). Counting to 10,000
#: examines that set 14 times less often; one young collection then takes a few ms.
YOUNG_THRESHOLD = 10_000


def raise_young_threshold() -> tuple[int, int, int]:
    """Collect the young generation every YOUNG_THRESHOLD objects; returns the old thresholds."""
    old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, old[1], old[2])
    return old
