"""The resolving service: questions in, outcomes out, with identical misses shared.

It owns nothing but the wiring: each question gets a fresh `Resolution` over the
shared cache and server selection, driven over the network. Identical questions that
arrive while one is being resolved wait for that one instead of starting their own
(RFC 5452 §5: fewer outstanding queries, no birthday attack; Unbound's mesh).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from resolver.config import EngineSettings
from resolver.driver import Clock, drive
from resolver.engine import Resolution, SharedState
from resolver.events import Outcome, TraceEvent
from resolver.network import Network
from resolver.wire import Question, Rcode


class ResolverService:
    def __init__(
        self,
        *,
        settings: EngineSettings,
        state: SharedState,
        network: Network,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.state = state
        self.network = network
        self.clock = clock
        self.rng = rng
        self._in_flight: dict[Question, asyncio.Future[Outcome]] = {}
        self.resolutions = 0
        self.shared_waits = 0
        self.upstream_queries = 0

    async def resolve(
        self, question: Question, *, observer: Callable[[TraceEvent], None] | None = None
    ) -> Outcome:
        """Resolve `question`, joining an identical resolution already under way."""
        pending = self._in_flight.get(question)
        if pending is not None and observer is None:
            self.shared_waits += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if observer is None:
            self._in_flight[question] = future
        try:
            outcome = await self._run(question, observer)
        except Exception as exc:  # never leave waiters hanging
            outcome = Outcome(rcode=Rcode.SERVFAIL, reason=f"internal error: {exc!r}")
        finally:
            if self._in_flight.get(question) is future:
                del self._in_flight[question]
        future.set_result(outcome)
        return outcome

    async def _run(
        self, question: Question, observer: Callable[[TraceEvent], None] | None
    ) -> Outcome:
        self.resolutions += 1
        resolution = Resolution(
            question,
            settings=self.settings,
            state=self.state,
            rng=self.rng,
            now=self.clock(),
            observer=observer,
        )
        outcome = await drive(resolution, self.network, self.clock)
        self.upstream_queries += outcome.queries_sent
        return outcome
