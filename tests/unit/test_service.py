"""The resolving service: one resolution per distinct question in flight (RFC 5452 §5)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.events import Outcome, TraceEvent
from resolver.engine.failure import FailureKind
from resolver.engine.network import ServerAddress, Transport
from resolver.engine.settings import EngineSettings, Limits
from resolver.service.resolver_service import ResolverService
from tests.support.labnet import FakeClock, LabNetwork, lab_service

WWW = Question("www.networkutopia.com.", RRType.A)


class YieldingNetwork(LabNetwork):
    """The lab network, but every exchange lets other tasks run first, as real I/O does."""

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        await asyncio.sleep(0)
        return await super().exchange(query, server, transport, timeout_s)


class StuckNetwork(LabNetwork):
    """A network whose exchanges wait until released."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        self.entered.set()
        await self.release.wait()
        return await super().exchange(query, server, transport, timeout_s)


class ExplodingNetwork(LabNetwork):
    """A network with a bug of its own: every exchange raises an unexpected error."""

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        await asyncio.sleep(0)
        raise RuntimeError("network bug")


def single_resolution_queries() -> int:
    """Upstream queries one resolution of WWW needs on a cold cache."""
    clock = FakeClock()
    network = LabNetwork(clock)
    asyncio.run(lab_service(clock, network).resolve(WWW))
    return sum(network.received.values())


def test_service_shares_one_resolution_among_identical_questions() -> None:
    """50 concurrent identical questions cause one resolution and one set of upstream queries."""
    clock = FakeClock()
    network = YieldingNetwork(clock)
    service = lab_service(clock, network)

    async def main() -> list[Outcome]:
        return await asyncio.gather(*(service.resolve(WWW) for _ in range(50)))

    outcomes = asyncio.run(main())
    assert service.resolutions == 1 and service.shared_waits == 49
    assert sum(network.received.values()) == single_resolution_queries()
    assert all(o == outcomes[0] for o in outcomes)
    assert outcomes[0].rcode == Rcode.NOERROR


def test_service_does_not_share_different_questions() -> None:
    """Questions differing in type are separate resolutions."""
    clock = FakeClock()
    service = lab_service(clock, YieldingNetwork(clock))

    async def main() -> None:
        await asyncio.gather(service.resolve(WWW), service.resolve(Question(WWW.name, RRType.AAAA)))

    asyncio.run(main())
    assert service.resolutions == 2 and service.shared_waits == 0


def test_service_traced_question_runs_its_own_resolution() -> None:
    """A question with an observer is never merged, so the trace shows real work."""
    clock = FakeClock()
    service = lab_service(clock, YieldingNetwork(clock))
    events: list[TraceEvent] = []

    async def main() -> None:
        await asyncio.gather(service.resolve(WWW), service.resolve(WWW, observer=events.append))

    asyncio.run(main())
    assert service.resolutions == 2
    assert events


def test_service_forgets_finished_resolutions() -> None:
    """Once answered, a question leaves the in-flight table: the next is a new, cached one."""
    clock = FakeClock()
    network = YieldingNetwork(clock)
    service = lab_service(clock, network)
    asyncio.run(service.resolve(WWW))
    before = sum(network.received.values())
    outcome = asyncio.run(service.resolve(WWW))
    assert service.resolutions == 2 and outcome.queries_sent == 0
    assert sum(network.received.values()) == before


def test_service_counts_upstream_queries() -> None:
    """The service adds up the upstream queries of its resolutions."""
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network)
    asyncio.run(service.resolve(WWW))
    assert service.upstream_queries == sum(network.received.values()) > 0


def test_service_internal_error_is_servfail_for_everyone_waiting() -> None:
    """An unexpected exception becomes SERVFAIL for the owner and every waiter; nothing hangs."""
    clock = FakeClock()
    service = lab_service(clock, ExplodingNetwork(clock))

    async def main() -> list[Outcome]:
        return await asyncio.wait_for(
            asyncio.gather(*(service.resolve(WWW) for _ in range(5))), timeout=5
        )

    outcomes = asyncio.run(main())
    assert all(o.rcode == Rcode.SERVFAIL for o in outcomes)
    assert "internal error" in outcomes[0].reason
    assert service._in_flight == {}


def waiter_after_owner_cancelled(service: ResolverService, network: StuckNetwork) -> str:
    """Start an owner and a waiter for WWW, cancel the owner, report what the waiter got."""

    async def main() -> str:
        owner = asyncio.create_task(service.resolve(WWW))
        await network.entered.wait()
        waiter = asyncio.create_task(service.resolve(WWW))
        await asyncio.sleep(0)
        owner.cancel()
        network.release.set()
        try:
            outcome = await asyncio.wait_for(waiter, timeout=0.5)
        except TimeoutError:
            return "hung"
        except asyncio.CancelledError:
            return "cancelled"
        return Rcode(outcome.rcode).name

    return asyncio.run(main())


def test_service_waiters_do_not_hang_when_the_owner_is_cancelled() -> None:
    """If the client that started a resolution goes away, the others still get a reply."""
    clock = FakeClock()
    network = StuckNetwork(clock)
    service = lab_service(clock, network)
    assert waiter_after_owner_cancelled(service, network) in {"NOERROR", "SERVFAIL"}


def test_client_past_the_budget_gets_out_of_time_and_the_resolution_still_caches() -> None:
    """A client waiting longer than total_budget_s is answered SERVFAIL (out of time); the
    resolution is not cancelled with it: it finishes, leaves the in-flight table, and the
    next client is answered from the cache without an upstream query."""
    clock = FakeClock()
    network = StuckNetwork(clock)
    settings = EngineSettings(limits=replace(Limits(), total_budget_s=0.05))
    service = lab_service(clock, network, settings=settings)

    async def main() -> tuple[Outcome, Outcome]:
        first = await service.resolve(WWW)
        assert service._in_flight, "the resolution goes on after the client's budget"
        network.release.set()
        while service._in_flight:
            await asyncio.sleep(0.01)
        return first, await service.resolve(WWW)

    first, second = asyncio.run(asyncio.wait_for(main(), 5))
    assert first.rcode == Rcode.SERVFAIL and first.failure is FailureKind.OUT_OF_TIME
    assert second.rcode == Rcode.NOERROR and second.queries_sent == 0
    assert service.resolutions == 2
