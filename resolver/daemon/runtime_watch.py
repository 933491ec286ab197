"""What the interpreter does to a running server: collections and event-loop stalls.

A client sees a pause of the whole process, whatever caused it: a full collection of the
garbage collector (docs/reliability.md, issue "no collector pauses a client can see"), a
long callback, a blocking call. Two counters make them visible at /metrics, and `make soak`
prints them per minute:

- collections per generation, and the time spent in them (gc.callbacks, which the
  interpreter calls at the start and end of every collection);
- loop stalls: a timer asked for every TICK_S fires more than STALL_S late. Unbound has no
  such figure; the 100 ms threshold is well below what a stub waits before it retries
  (glibc's timeout:5, dig's 5 s) and well above a healthy loop's jitter (under 5 ms).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from resolver.server.metrics import Family, Sample, counter, gauge

__all__ = ["RuntimeWatch"]

#: How often the loop is asked to run the stall timer.
TICK_S = 0.02
#: A timer this late is a stall.
STALL_S = 0.1


class RuntimeWatch:
    """Counts collections (per generation, with their time) and event-loop stalls."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.collection_seconds = [0.0, 0.0, 0.0]
        #: CPU time of the collections: below the wall time when the process was preempted.
        self.collection_cpu_seconds = 0.0
        #: Objects the collector freed: garbage in reference cycles, which reference
        #: counting alone cannot free (each one makes collections longer).
        self.collected = 0
        self._started_cpu = 0.0
        self.longest_collection_cpu_s = 0.0
        self.longest_collection_s = 0.0
        self.stalls = 0
        self.stalled_seconds = 0.0
        self.longest_stall_s = 0.0
        self._started = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.callbacks.append(self._on_collection)
        self._task = asyncio.get_running_loop().create_task(self._watch_loop())

    def stop(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        if self._task is not None:
            self._task.cancel()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        self.collection_cpu_seconds += cpu
        self.longest_collection_cpu_s = max(self.longest_collection_cpu_s, cpu)
        generation = int(info.get("generation", 2))
        self.collections[generation] += 1
        self.collected += int(info.get("collected", 0))
        self.collection_seconds[generation] += took
        self.longest_collection_s = max(self.longest_collection_s, took)

    async def _watch_loop(self) -> None:
        expected = time.monotonic() + TICK_S
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            late = now - expected
            if late > STALL_S:
                self.stalls += 1
                self.stalled_seconds += late
                self.longest_stall_s = max(self.longest_stall_s, late)
            expected = now + TICK_S

    def families(self) -> list[Family]:
        return [
            _per_generation("resolver_gc_collections_total",
                            "Garbage-collector runs per generation (2: full collections).",
                            self.collections),
            _per_generation("resolver_gc_seconds_total",
                            "Time spent collecting, per generation.", self.collection_seconds),
            counter("resolver_gc_cpu_seconds_total", "CPU time spent collecting.",
                    self.collection_cpu_seconds),
            counter("resolver_gc_collected_total",
                    "Objects freed by the collector (garbage in reference cycles).",
                    self.collected),
            gauge("resolver_gc_longest_seconds", "The longest collection so far.",
                  self.longest_collection_s),
            gauge("resolver_gc_longest_cpu_seconds", "CPU time of the longest collection.",
                  self.longest_collection_cpu_s),
            counter("resolver_loop_stalls_total",
                    f"Times the event loop ran a timer over {STALL_S * 1000:.0f} ms late.",
                    self.stalls),
            counter("resolver_loop_stalled_seconds_total", "Time lost in those stalls.",
                    self.stalled_seconds),
            gauge("resolver_loop_longest_stall_seconds", "The longest stall so far.",
                  self.longest_stall_s),
        ]


def _per_generation(name: str, help_text: str, values: list[int] | list[float]) -> Family:
    return Family(name=name, help=help_text, type="counter", samples=tuple(
        Sample(name=name, labels=(("generation", str(g)),), value=float(v))
        for g, v in enumerate(values)))
