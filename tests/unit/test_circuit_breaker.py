"""The circuit breaker: open after failures in a row, one trial after the retry time."""

from __future__ import annotations

import pytest

from resolver.service.circuit_breaker import BreakerState, CircuitBreaker
from tests.support.labnet import FakeClock


def breaker(clock: FakeClock, moves: list[tuple[BreakerState, BreakerState]]) -> CircuitBreaker:
    return CircuitBreaker(clock=clock, failure_threshold=3, retry_s=5.0,
                          on_transition=lambda old, new: moves.append((old, new)))


def test_breaker_opens_after_three_failures_in_a_row_and_skips_until_retry() -> None:
    clock, moves = FakeClock(), []
    b = breaker(clock, moves)
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and b.opened == 1
    assert moves == [(BreakerState.CLOSED, BreakerState.OPEN)]
    clock.advance(4.9)
    assert not b.allow()


def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    clock, moves = FakeClock(), []
    b = breaker(clock, moves)
    for _ in range(5):
        b.failure()
        b.failure()
        b.success()
    assert b.state is BreakerState.CLOSED and moves == []


def test_after_the_retry_time_one_trial_goes_and_its_success_closes() -> None:
    clock, moves = FakeClock(), []
    b = breaker(clock, moves)
    for _ in range(3):
        b.failure()
    clock.advance(5.0)
    assert b.allow()  # the trial
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # only one at a time
    b.success()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert moves == [(BreakerState.CLOSED, BreakerState.OPEN),
                     (BreakerState.OPEN, BreakerState.HALF_OPEN),
                     (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_a_failed_trial_opens_again_for_the_retry_time_without_counting_a_new_outage() -> None:
    clock, moves = FakeClock(), []
    b = breaker(clock, moves)
    for _ in range(3):
        b.failure()
    clock.advance(5.0)
    assert b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and b.opened == 1
    clock.advance(4.0)
    assert not b.allow()
    clock.advance(1.0)
    assert b.allow()


def test_late_failures_while_open_do_not_push_the_retry_back() -> None:
    clock, moves = FakeClock(), []
    b = breaker(clock, moves)
    for _ in range(3):
        b.failure()
    clock.advance(4.0)
    b.failure()  # a request sent before it opened
    clock.advance(1.0)
    assert b.allow()


def test_state_gauge_numbers() -> None:
    assert [s.gauge for s in BreakerState] == [0, 2, 1]


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(clock=FakeClock(), failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(clock=FakeClock(), retry_s=0)
