"""The resolving service: questions in, outcomes out, with identical misses shared.

It owns nothing but the wiring: each question gets a fresh `Resolution` over the
shared cache and server selection, driven over the network. Identical questions that
arrive while one is being resolved wait for that one instead of starting their own
(RFC 5452 §5: fewer outstanding queries, no birthday attack; Unbound's mesh).

Around the engine, and only when enabled in the cache settings:
- serve-stale (RFC 8767 §5): when a resolution fails or outlasts the client timeout,
  expired data kept by the cache is served with stale-answer-ttl; the resolution goes
  on and refreshes the cache;
- prefetch (Unbound): an answer from the cache in the last 10% of its TTL starts a
  background resolution through a cache view that hides the RRsets being refreshed.
Background work runs as tasks, or waits for `run_background` when `defer_background`
is set (drivers whose event loop lives for one call only).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from resolver.dns import names
from resolver.dns.wire import Question, Rcode
from resolver.engine.driver import Clock, drive
from resolver.engine.events import Outcome, TraceEvent
from resolver.engine.failure import FailureKind
from resolver.engine.network import Network
from resolver.engine.resolution import Resolution, SharedState
from resolver.engine.settings import EngineSettings
from resolver.service import prefetch
from resolver.service.stale import stale_answer

log = logging.getLogger(__name__)

BackgroundWork = Callable[[], Coroutine[Any, Any, None]]

#: After a failed prefetch, the same question is not prefetched again for this long
#: (the cached data still answers meanwhile; Unbound also holds back, iter_prefetch_fail).
PREFETCH_RETRY_S = 5.0
#: Bound on the remembered prefetch failures (a flood of failing names costs no memory).
_MAX_PREFETCH_FAILURES = 10_000


class ResolverService:
    def __init__(
        self,
        *,
        settings: EngineSettings,
        state: SharedState,
        network: Network,
        clock: Clock,
        rng: random.Random,
        forward_first_zones: frozenset[str] = frozenset(),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.state = state
        self.network = network
        self.clock = clock
        #: Epoch seconds, for DNSSEC signature validity (tests pass a fixed time).
        self.wall_clock = wall_clock
        self.rng = rng
        self._in_flight: dict[Question, asyncio.Future[Outcome]] = {}
        #: When each resolution under way started (insertion order: oldest first).
        self._started: dict[Question, float] = {}
        #: Resolutions cancelled to make room for a newer question (jostle-timeout).
        self._jostled: set[Question] = set()
        self.jostled = 0
        self.resolutions = 0
        self.shared_waits = 0
        #: Resolutions refused because max_concurrent_resolutions were under way.
        self.overloaded = 0
        self.upstream_queries = 0
        #: Client questions answered without an upstream query / with one or after a failure.
        self.cache_hits = 0
        self.cache_misses = 0
        self.stale_answers = 0
        self.prefetches = 0
        #: Queue background work until `run_background` instead of starting tasks.
        self.defer_background = False
        self._background: set[asyncio.Task[Any]] = set()
        self._deferred: list[BackgroundWork] = []
        self._prefetching: set[Question] = set()
        #: Questions whose last prefetch failed, and when one may be tried again.
        self._prefetch_failed: dict[Question, float] = {}
        #: Forward zones whose failures fall back to iteration (Unbound forward-first).
        self.forward_first_zones = forward_first_zones
        self.forward_first_fallbacks = 0

    async def resolve(
        self,
        question: Question,
        *,
        observer: Callable[[TraceEvent], None] | None = None,
        cache_only: bool = False,
        checking_disabled: bool = False,
        counted: bool = True,
    ) -> Outcome:
        """Resolve `question`: share identical resolutions, serve stale data, prefetch.

        `counted=False` for the server's own questions (the priming check at start):
        they are no client's, so they are neither a cache hit nor a miss.

        A traced question (with an observer) always runs its own resolution and neither
        serves stale data nor prefetches, so the trace shows the real work. With
        validation on, a CD=1 question (RFC 4035 §3.2.2) runs its own resolution that
        does not validate: its outcome must not be shared with validating ones.
        """
        if checking_disabled and self.settings.validation is not None and not cache_only:
            return self._account(question, await self._run_safely(
                question, observer, checking_disabled=True))
        if cache_only:  # RD=0 from a client allowed to snoop: the cache's view, no upstream
            return await self._run(question, observer, cache_only=True)
        if observer is not None or not counted:
            return await self._resolve_shared(question, observer)
        if self.state.cache.settings.stale_answer_enable:
            outcome = await self._resolve_or_stale(question)
        else:
            outcome = await self._resolve_shared(question, None)
        return self._account(question, outcome)

    def stats(self) -> dict[str, int]:
        """Counters for the operator (`{"cmd": "stats"}` on the control channel)."""
        return {
            "cache_entries": len(self.state.cache),
            "cache_bytes": self.state.cache.size_bytes or 0,
            "cache_max_entries": self.state.cache.settings.max_entries,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "stale_answers": self.stale_answers,
            "prefetches": self.prefetches,
            "resolutions": self.resolutions,
            "shared_waits": self.shared_waits,
            "upstream_queries": self.upstream_queries,
            "in_flight": len(self._in_flight),
            "overloaded": self.overloaded,
            "jostled": self.jostled,
            "background": len(self._background) + len(self._deferred),
        }

    async def run_background(self) -> int:
        """Run queued background work and wait for running work; returns how many jobs."""
        done = 0
        while self._deferred or self._background:
            while self._deferred:
                await self._deferred.pop(0)()
                done += 1
            running = list(self._background)
            await asyncio.gather(*running, return_exceptions=True)
            done += len(running)
            self._background.difference_update(running)
        return done

    # -- serve-stale (RFC 8767) ---------------------------------------------------

    async def _resolve_or_stale(self, question: Question) -> Outcome:
        """RFC 8767 §5: answer from expired data when resolving fails or takes too long."""
        if self._stale(question, "") is None:  # nothing to fall back on: the plain path
            return await self._resolve_shared(question, None)
        timeout_ms = self.state.cache.settings.stale_answer_client_timeout_ms
        if timeout_ms <= 0:  # serve stale at once, refresh in the background
            stale = self._stale(question, "served at once; refreshing in the background")
            if stale is not None:
                if question not in self._in_flight:  # one refresh, however many clients
                    self._spawn(lambda: self._refresh(question))
                return stale
        future = self._shared(question)
        try:
            outcome = await _wait_shielded(future, max(timeout_ms, 1) / 1000)
        except TimeoutError:
            stale = self._stale(question, f"no answer within {timeout_ms} ms")
            if stale is not None:
                if isinstance(future, asyncio.Task):  # it goes on and refreshes the cache
                    self._background.add(future)
                    future.add_done_callback(self._background.discard)
                return stale
            outcome = await asyncio.shield(future)
        if outcome.rcode == Rcode.SERVFAIL:
            stale = self._stale(question, f"resolution failed: {outcome.reason}")
            if stale is not None:
                return stale
        return outcome

    def _stale(self, question: Question, why: str) -> Outcome | None:
        found = stale_answer(
            self.state.cache, question, ttl=self.state.cache.settings.stale_answer_ttl_s,
            max_chain=self.settings.limits.max_cname_chain,
        )
        return replace(found, reason=f"stale answer: {why}") if found is not None else None

    def _shared(self, question: Question) -> asyncio.Future[Outcome]:
        """The resolution of `question` under way, or a new one started as a task."""
        pending = self._in_flight.get(question)
        if pending is not None:
            self.shared_waits += 1
            return pending
        loop = asyncio.get_running_loop()
        if len(self._in_flight) >= self.settings.limits.max_concurrent_resolutions:
            self._jostle_oldest()
        if len(self._in_flight) >= self.settings.limits.max_concurrent_resolutions:
            # Overload (Unbound num-queries-per-thread): refuse new work quickly rather
            # than queue without bound; cached answers never get here.
            self.overloaded += 1
            busy: asyncio.Future[Outcome] = loop.create_future()
            busy.set_result(Outcome(rcode=Rcode.SERVFAIL, failure=FailureKind.OVERLOADED, reason=(
                f"resolver busy: {len(self._in_flight)} resolutions in progress")))
            return busy
        # One start time for both records: the task's cleanup removes the entry only if it is
        # still its own (a later resolution of the same question may have replaced it).
        started = self.clock()
        task = loop.create_task(self._run_registered(question, started))
        self._in_flight[question] = task
        self._started[question] = started
        return task

    def _jostle_oldest(self) -> None:
        """Cancel the oldest resolution if it has run longer than jostle-timeout (Unbound's
        rule against slow queries holding every slot); its waiters get SERVFAIL."""
        oldest = next((q for q in self._started if q not in self._jostled), None)
        if oldest is None:
            return
        if self.clock() - self._started[oldest] < self.settings.limits.jostle_timeout_s:
            return
        task = self._in_flight.get(oldest)
        if task is None or task.done():
            return
        self._jostled.add(oldest)
        self.jostled += 1
        task.cancel()
        # Its slot is free now: the cancellation lands at the task's next step.
        del self._in_flight[oldest]

    async def _run_registered(self, question: Question, started: float) -> Outcome:
        try:
            outcome = await self._run(question, None)
            if outcome.rcode != Rcode.SERVFAIL:  # what it found supersedes the expired data
                self.state.cache.forget_stale(question)
            return outcome
        except asyncio.CancelledError:
            if question not in self._jostled:
                raise  # shutting down
            return Outcome(rcode=Rcode.SERVFAIL, failure=FailureKind.OVERLOADED, reason=(
                f"resolver busy: replaced by a newer question after "
                f"{self.clock() - started:.1f} s (jostle-timeout)"))
        except Exception as exc:  # never leave waiters hanging
            log.exception("internal error resolving %s", question)
            return Outcome(rcode=Rcode.SERVFAIL, failure=FailureKind.INTERNAL_ERROR,
                           reason=f"internal error: {exc!r}")
        finally:
            self._jostled.discard(question)
            if self._started.get(question) == started:
                del self._started[question]
            if self._in_flight.get(question) is asyncio.current_task():
                del self._in_flight[question]

    async def _refresh(self, question: Question) -> None:
        await asyncio.shield(self._shared(question))

    # -- prefetch and accounting ----------------------------------------------------

    def _account(self, question: Question, outcome: Outcome) -> Outcome:
        """Count the answer; start a prefetch when it is due (and say so in the outcome)."""
        if outcome.stale:
            self.stale_answers += 1
        elif outcome.queries_sent == 0 and outcome.rcode != Rcode.SERVFAIL:
            self.cache_hits += 1
        else:
            self.cache_misses += 1
        if not self.state.cache.settings.prefetch:
            return outcome
        due = prefetch.rrsets_due(self.state.cache, outcome)
        if not due:
            return outcome
        if question not in self._prefetching and not self._backing_off(question):
            self._prefetching.add(question)
            self._spawn(lambda: self._prefetch(question, due))
        return replace(outcome, refreshing=True)  # not worth keeping as reply bytes

    def _backing_off(self, question: Question) -> bool:
        """True for a while after a failed prefetch: do not hammer a failing authority."""
        retry_at = self._prefetch_failed.get(question)
        if retry_at is None:
            return False
        if self.clock() < retry_at:
            return True
        del self._prefetch_failed[question]
        return False

    async def _prefetch(self, question: Question, rrsets: tuple[prefetch.RRsetKey, ...]) -> None:
        """Resolve `question` again through a cache view that cannot answer from `rrsets`."""
        self.prefetches += 1
        failed = True
        try:
            state = replace(self.state, cache=self.state.cache.hiding(rrsets))
            outcome = await self._run(question, None, state=state)
            failed = outcome.rcode == Rcode.SERVFAIL
        except Exception:
            log.exception("prefetch of %s failed", question)
        finally:
            self._prefetching.discard(question)
        if failed:
            if len(self._prefetch_failed) >= _MAX_PREFETCH_FAILURES:
                now = self.clock()
                self._prefetch_failed = {q: t for q, t in self._prefetch_failed.items() if t > now}
            if len(self._prefetch_failed) < _MAX_PREFETCH_FAILURES:
                self._prefetch_failed[question] = self.clock() + PREFETCH_RETRY_S

    def _spawn(self, work: BackgroundWork) -> None:
        if self.defer_background:
            self._deferred.append(work)
            return
        task = asyncio.get_running_loop().create_task(work())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the shared resolution ---------------------------------------------------------

    async def _resolve_shared(
        self, question: Question, observer: Callable[[TraceEvent], None] | None
    ) -> Outcome:
        """Resolve `question`, joining an identical resolution already under way."""
        if observer is not None:
            return await self._run_safely(question, observer)
        # The resolution is a task of its own: a client that goes away (a TCP reset
        # cancels its handler) neither strands the waiters nor loses the result for
        # the cache (docs/reliability.md (b) row 45); nor does a client that we stop waiting
        # for at the client budget: the late answer is still cached.
        budget = self.settings.limits.total_budget_s
        try:
            return await _wait_shielded(self._shared(question), budget)
        except TimeoutError:
            return Outcome(rcode=Rcode.SERVFAIL, failure=FailureKind.OUT_OF_TIME, reason=(
                f"no answer within {budget:g} s: no reachable authority (still trying)"))

    async def _run_safely(
        self, question: Question, observer: Callable[[TraceEvent], None] | None,
        *, checking_disabled: bool = False,
    ) -> Outcome:
        try:
            return await self._run(question, observer, checking_disabled=checking_disabled)
        except Exception as exc:  # an engine bug must not take the listener down
            log.exception("internal error resolving %s", question)
            return Outcome(rcode=Rcode.SERVFAIL, failure=FailureKind.INTERNAL_ERROR,
                           reason=f"internal error: {exc!r}")

    async def _run(
        self, question: Question, observer: Callable[[TraceEvent], None] | None,
        *, state: SharedState | None = None, cache_only: bool = False,
        checking_disabled: bool = False,
    ) -> Outcome:
        self.resolutions += 1
        resolution = Resolution(
            question,
            settings=self.settings,
            state=state if state is not None else self.state,
            rng=self.rng,
            now=self.clock(),
            observer=observer,
            cache_only=cache_only,
            wall_time=self.wall_clock(),
            checking_disabled=checking_disabled,
        )
        outcome = await drive(resolution, self.network, self.clock)
        self.upstream_queries += outcome.queries_sent
        if outcome.rcode == Rcode.SERVFAIL and self.forward_first_zones:
            outcome = await self._forward_first(question, observer, resolution.state, outcome)
        return outcome

    async def _forward_first(
        self, question: Question, observer: Callable[[TraceEvent], None] | None,
        state: SharedState, failed: Outcome,
    ) -> Outcome:
        """Unbound's forward-first: when the upstreams of the question's forward zone fail,
        resolve it again without forward zones, iterating from the root hints."""
        zone = next((z for z in names.ancestors(question.name) if z in state.configured_zones),
                    None)
        if zone is None or zone not in self.forward_first_zones:
            return failed
        log.info("forward-first: the upstreams of %s failed for %s (%s); iterating instead",
                 zone, question, failed.reason)
        self.forward_first_fallbacks += 1
        state.cache.forget_failure(question)
        iterating = replace(state, configured_zones={
            z: cut for z, cut in state.configured_zones.items() if not cut.recursion_desired})
        self.resolutions += 1
        resolution = Resolution(question, settings=self.settings, state=iterating, rng=self.rng,
                                now=self.clock(), observer=observer,
                                wall_time=self.wall_clock())
        outcome = await drive(resolution, self.network, self.clock)
        self.upstream_queries += outcome.queries_sent
        return replace(outcome, queries_sent=failed.queries_sent + outcome.queries_sent)


async def _wait_shielded(resolution: asyncio.Future[Outcome], timeout_s: float) -> Outcome:
    """The outcome of `resolution` if it comes within `timeout_s`, else TimeoutError.

    Neither the timeout nor a cancelled waiter cancels `resolution` (as
    `wait_for(shield(...))` would not), but this costs one future, one callback and one
    timer per waiter instead of shield's and wait_for's futures, callbacks and coroutine:
    every cache miss waits here.
    """
    if resolution.done():
        return resolution.result()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_resolution: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    resolution.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        resolution.remove_done_callback(wake)
    if not resolution.done():
        raise TimeoutError
    return resolution.result()
