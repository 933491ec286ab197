"""The collector kept off long-lived objects: what is alive at a freeze is no longer
walked by full collections."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest

from resolver.daemon.collector import (
    collect_young_at_intervals,
    freeze_after_collections,
    freeze_at_intervals,
    freeze_survivors,
)
from resolver.daemon.runtime_watch import STALL_S, RuntimeWatch


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_objects_alive_at_a_freeze_are_left_out_of_collections() -> None:
    entries = [{"entry": i} for i in range(1000)]  # tracked containers, like cache entries
    assert any(obj is entries for obj in gc.get_objects())
    assert freeze_survivors() >= 1000
    assert not any(obj is entries for obj in gc.get_objects())  # the permanent generation
    young = [{"young": 1}]
    assert any(obj is young for obj in gc.get_objects())


def test_freezing_repeats_until_stopped() -> None:
    async def body() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(freeze_at_intervals(stop, interval_s=0.01))
        await asyncio.sleep(0.05)
        frozen = gc.get_freeze_count()
        stop.set()
        await asyncio.wait_for(task, 1)
        return frozen

    assert asyncio.run(body()) > 0


def test_the_survivors_of_a_full_collection_are_frozen() -> None:
    undo = freeze_after_collections()
    try:
        entries = [{"entry": i} for i in range(1000)]
        gc.collect()  # a full collection, as the interpreter's own would be
        assert not any(obj is entries for obj in gc.get_objects())
    finally:
        undo()


def test_the_survivors_of_a_young_collection_are_frozen_and_never_walked_again() -> None:
    gc.unfreeze()
    undo = freeze_after_collections()
    try:
        entries = [{"entry": i} for i in range(1000)]
        gc.collect(0)
        assert gc.get_freeze_count() >= 1000
        assert not any(obj is entries for obj in gc.get_objects())  # in no generation
    finally:
        undo()


def test_runtime_watch_counts_collections_per_generation_and_loop_stalls() -> None:
    async def scenario() -> RuntimeWatch:
        watch = RuntimeWatch()
        watch.start()
        try:
            await asyncio.sleep(0.05)
            gc.collect()
            gc.collect(0)
            time.sleep(STALL_S * 3)  # a callback that blocks the loop
            await asyncio.sleep(0.05)
        finally:
            watch.stop()
        return watch

    watch = asyncio.run(scenario())
    assert watch.collections[2] >= 1 and watch.collections[0] >= 1
    assert watch.stalls >= 1
    names = {family.name for family in watch.families()}
    assert {"resolver_gc_collections_total", "resolver_loop_stalls_total"} <= names


def test_young_collections_run_at_intervals_whatever_the_count_until_stopped() -> None:
    """Paced by time: young collections come every interval even when the interpreter's
    count of new objects stays under its threshold (freed old objects hold it back)."""
    seen: list[int] = []

    def on_collection(phase: str, info: dict[str, object]) -> None:
        if phase == "stop":
            seen.append(int(info["generation"]))  # type: ignore[call-overload]

    old = gc.get_threshold()
    gc.set_threshold(10**9, old[1], old[2])  # the interpreter's own never comes here
    gc.callbacks.append(on_collection)
    try:
        async def body() -> int:
            stop = asyncio.Event()
            task = asyncio.create_task(collect_young_at_intervals(stop, interval_s=0.01))
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.wait_for(task, 1)
            during = len(seen)
            await asyncio.sleep(0.05)
            assert len(seen) == during  # none after the stop
            return during

        assert asyncio.run(body()) >= 5
        assert set(seen) == {0}
    finally:
        gc.callbacks.remove(on_collection)
        gc.set_threshold(*old)
