"""Per-client rate limiting (Unbound's ip-ratelimit): a token bucket per address, on a fake
clock so that no test sleeps."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from resolver.engine.network import Transport
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.server.metrics import Metrics
from resolver.server.ratelimit import IpRateLimiter
from tests.support.labnet import FakeClock, LabNetwork, lab_service


def test_ratelimit_allows_one_second_of_burst_then_drops() -> None:
    """With 5 qps, five queries at once pass and the sixth is dropped."""
    clock = FakeClock()
    limiter = IpRateLimiter(5, clock=clock)
    assert [limiter.allow("192.0.2.1") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.dropped == 1


def test_ratelimit_refills_at_the_configured_rate() -> None:
    """After 0.2 s at 5 qps one more query passes; after a whole second, five."""
    clock = FakeClock()
    limiter = IpRateLimiter(5, clock=clock)
    for _ in range(5):
        limiter.allow("192.0.2.1")
    clock.advance(0.2)
    assert limiter.allow("192.0.2.1") and not limiter.allow("192.0.2.1")
    clock.advance(10.0)  # a long pause never banks more than one second of burst
    assert sum(limiter.allow("192.0.2.1") for _ in range(10)) == 5


def test_ratelimit_counts_each_client_separately() -> None:
    """One client over its limit does not slow another down."""
    clock = FakeClock()
    limiter = IpRateLimiter(1, clock=clock)
    assert limiter.allow("192.0.2.1") and not limiter.allow("192.0.2.1")
    assert limiter.allow("192.0.2.2")


def test_ratelimit_table_is_bounded() -> None:
    """A flood from many sources keeps at most max_clients buckets, oldest evicted first."""
    clock = FakeClock()
    limiter = IpRateLimiter(1, clock=clock, max_clients=3)
    for n in range(10):
        limiter.allow(f"192.0.2.{n}")
    assert limiter.tracked_clients == 3
    assert limiter.allow("192.0.2.0")  # evicted, so it starts afresh


def test_ratelimit_rejects_a_rate_below_one() -> None:
    """0 means off and is never built; a limiter needs at least 1 query per second."""
    with pytest.raises(ValueError, match="at least 1"):
        IpRateLimiter(0)


def test_ratelimit_handler_drops_queries_over_the_limit() -> None:
    """Over the limit the handler sends no reply and counts the drop."""
    clock = FakeClock()
    metrics = Metrics()
    handler = QueryHandler(lab_service(clock, LabNetwork(clock)),
                           ratelimit=IpRateLimiter(2, clock=clock), metrics=metrics)
    client = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
    wire = make_query(Question("www.networkutopia.com.", RRType.A), query_id=1,
                      recursion_desired=True)
    replies = [asyncio.run(handler.handle(wire, client)) for _ in range(3)]
    assert [r is not None for r in replies] == [True, True, False]
    assert metrics.dropped.value("ip-ratelimit") == 1
    # The answer cache fast path leaves rate-limited clients to `handle`, which counts them.
    assert handler.answer_from_cache(wire, "127.0.0.1") is None
