"""The collector kept off long-lived objects: what is alive at a freeze is no longer
walked by full collections."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from resolver.daemon.collector import freeze_at_intervals, freeze_survivors


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
