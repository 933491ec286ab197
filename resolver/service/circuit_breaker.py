"""A circuit breaker: stop using a dependency that keeps failing, try it again later.

The shared cache is an optimisation: when it is slow or down, every query that waits for it
loses its time budget for nothing. After `failure_threshold` failures in a row the breaker
opens and the dependency is skipped; after `retry_s` one request is let through (half
open): its success closes the breaker, its failure opens it for another `retry_s`.
The clock is injected (monotonic seconds); `on_transition` is told every change of state
once, so the caller can log one line per outage and one when it is over.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"  #: in use
    OPEN = "open"  #: skipped until the retry time
    HALF_OPEN = "half-open"  #: one trial request under way

    @property
    def gauge(self) -> int:
        """The state as a number for metrics: 0 closed, 1 half open, 2 open."""
        return {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}[self]


Transition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        failure_threshold: int = 3,
        retry_s: float = 5.0,
        on_transition: Transition | None = None,
    ) -> None:
        if failure_threshold < 1 or retry_s <= 0:
            raise ValueError("failure_threshold must be at least 1 and retry_s positive")
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.retry_s = retry_s
        self.on_transition = on_transition
        self.state = BreakerState.CLOSED
        self._failures = 0  #: in a row, while closed
        self._retry_at = 0.0
        #: How many times it opened from closed (outages).
        self.opened = 0

    def allow(self) -> bool:
        """Whether a request may go to the dependency now. In the open state, the first
        call after the retry time is the trial request (the state becomes half open)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() >= self._retry_at:
            self._move(BreakerState.HALF_OPEN)
            return True
        return False  # open, or a trial already under way

    def success(self) -> None:
        self._failures = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failure(self) -> None:
        if self.state is BreakerState.OPEN:
            return  # a request sent before it opened: the retry time stands
        if self.state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures < self.failure_threshold:
                return
            self.opened += 1
        self._failures = 0
        self._retry_at = self._clock() + self.retry_s
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if self.on_transition is not None:
            self.on_transition(old, new)
