"""The record cache's store: entries live until their own expiry, the least recently used go
first when the bound is reached, and a byte bound counts what the sizer says."""

from __future__ import annotations

from typing import Any

from resolver.engine.expiring_store import ExpiringStore
from tests.support.labnet import FakeClock


def expires_after(key: Any, value: Any, now: float) -> float:
    """Each value is its own lifetime in seconds."""
    return now + float(value)


def store(maxsize: float, clock: FakeClock, sizer: Any = None) -> ExpiringStore[str]:
    return ExpiringStore(maxsize, expires_after, timer=clock, sizer=sizer)


def test_an_entry_is_read_until_its_expiry_and_not_after() -> None:
    clock = FakeClock()
    entries = store(10, clock)
    entries["a"] = 30
    clock.advance(29.9)
    assert entries.get("a") == 30
    clock.advance(0.1)
    assert entries.get("a") is None
    assert entries.get("a", "gone") == "gone"


def test_the_least_recently_read_entry_is_evicted_first() -> None:
    clock = FakeClock()
    entries = store(2, clock)
    entries["a"] = 60
    entries["b"] = 60
    assert entries.get("a") == 60  # "b" is now the least recently used
    entries["c"] = 60
    assert sorted(entries.keys()) == ["a", "c"]


def test_expired_entries_are_swept_before_anything_live_is_evicted() -> None:
    clock = FakeClock()
    entries = store(2, clock)
    entries["short"] = 5
    entries["long"] = 600
    clock.advance(10)
    entries["new"] = 600
    assert sorted(entries.keys()) == ["long", "new"]
    assert len(entries) == 2


def test_a_byte_bound_evicts_until_the_new_entry_fits() -> None:
    clock = FakeClock()
    entries = store(100, clock, sizer=lambda key, value: 40)
    for key in ("a", "b", "c"):
        entries[key] = 60
    assert entries.keys() == ["b", "c"]
    assert entries.currsize == 80


def test_an_entry_larger_than_the_bound_is_refused_and_the_old_value_goes() -> None:
    clock = FakeClock()
    sizes = {"small": 10, "huge": 1000}
    entries: ExpiringStore[str] = ExpiringStore(
        100, lambda key, value, now: now + 60, timer=clock,
        sizer=lambda key, value: sizes[value])
    entries["k"] = "small"
    entries["k"] = "huge"
    assert entries.get("k") is None
    assert entries.currsize == 0


def test_an_already_expired_entry_is_not_stored() -> None:
    clock = FakeClock()
    entries = store(10, clock)
    entries["k"] = 60
    entries["k"] = 0
    assert entries.get("k") is None
    assert len(entries) == 0


def test_replacing_one_key_many_times_keeps_the_expiry_heap_bounded() -> None:
    clock = FakeClock()
    entries = store(10, clock)
    for _ in range(10_000):
        entries["k"] = 600
    assert entries.heap_length <= 20
    assert entries.get("k") == 600


def test_a_replaced_entry_expires_at_its_new_time_not_its_old_one() -> None:
    clock = FakeClock()
    entries = store(10, clock)
    entries["k"] = 5
    entries["k"] = 600
    clock.advance(10)
    entries["other"] = 600  # a store sweeps: the old expiry must not take the new value
    assert entries.get("k") == 600


def test_pop_returns_a_live_value_and_frees_its_size() -> None:
    clock = FakeClock()
    entries = store(100, clock, sizer=lambda key, value: 30)
    entries["k"] = 60
    assert entries.pop("k") == 60
    assert entries.pop("k", "none") == "none"
    assert entries.currsize == 0


def test_stored_items_include_expired_entries_without_changing_the_order() -> None:
    clock = FakeClock()
    entries = store(10, clock)
    entries["old"] = 5
    entries["new"] = 600
    clock.advance(10)
    assert entries.stored_items() == {"old": 5, "new": 600}
    assert entries.keys() == ["new"]
