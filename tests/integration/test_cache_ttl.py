"""TTLs as a client sees them: counted down in cached answers, positive and negative.

The handler tests run the production handler, service, engine and cache over the
in-memory lab with a fake clock, so a day can pass in no time; one test asks a real
`resolver serve` twice with the real `dig`.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Message, Question, Rcode, RRType
from resolver.engine.network import Transport
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from tests.conftest import require_tool
from tests.integration.conftest import RunningResolver
from tests.support.labnet import FakeClock, LabNetwork, lab_service

CLIENT = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)
WWW = Question("www.networkutopia.com.", RRType.A)
NOTHERE = Question("nothere.networkutopia.com.", RRType.A)


def ask(handler: QueryHandler, question: Question) -> Message:
    reply = asyncio.run(handler.handle(make_query(question, query_id=1, recursion_desired=True),
                                       CLIENT))
    assert reply is not None
    return decode(reply)


def lab_handler() -> tuple[FakeClock, LabNetwork, QueryHandler]:
    clock = FakeClock()
    network = LabNetwork(clock)
    return clock, network, QueryHandler(lab_service(clock, network))


def test_cache_ttl_counts_down_between_two_client_queries() -> None:
    """Asked again 100 s later, the answer's TTL is 100 s lower and nothing goes upstream."""
    clock, network, handler = lab_handler()
    first = ask(handler, WWW)
    sent = sum(network.received.values())
    clock.advance(100)
    second = ask(handler, WWW)
    assert first.answer[0].ttl == 3600
    assert second.answer[0].ttl == 3500
    assert sum(network.received.values()) == sent


def test_cache_ttl_expiry_fetches_the_answer_again() -> None:
    """After the TTL has run out the answer comes from upstream again, with its full TTL."""
    clock, network, handler = lab_handler()
    ask(handler, WWW)
    clock.advance(3600)
    before = network.received["127.212.212.1"]
    again = ask(handler, WWW)
    assert again.answer[0].ttl == 3600
    assert network.received["127.212.212.1"] == before + 1


def test_cache_negative_answer_is_cached_with_its_soa_ttl_counting_down() -> None:
    """NXDOMAIN is cached for the SOA MINIMUM (300 s) and its SOA TTL counts down (RFC 2308)."""
    clock, network, handler = lab_handler()
    first = ask(handler, NOTHERE)
    sent = sum(network.received.values())
    clock.advance(120)
    second = ask(handler, NOTHERE)
    assert first.rcode == second.rcode == Rcode.NXDOMAIN
    assert [(rr.rtype, rr.ttl) for rr in first.authority] == [(RRType.SOA, 300)]
    assert [(rr.rtype, rr.ttl) for rr in second.authority] == [(RRType.SOA, 180)]
    assert sum(network.received.values()) == sent


def test_cache_negative_answer_covers_names_below_it() -> None:
    """A cached NXDOMAIN answers for a name below it without asking (RFC 8020)."""
    clock, network, handler = lab_handler()
    ask(handler, NOTHERE)
    sent = sum(network.received.values())
    clock.advance(10)
    below = ask(handler, Question("a.nothere.networkutopia.com.", RRType.AAAA))
    assert below.rcode == Rcode.NXDOMAIN and below.authority[0].ttl == 290
    assert sum(network.received.values()) == sent


def _dig_ttl(resolver: RunningResolver, name: str) -> int:
    exe = require_tool("dig")
    out = subprocess.run(
        [exe, f"@{resolver.ip}", "-p", str(resolver.port), "+time=5", "+tries=1", "+noall",
         "+answer", name, "A"],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout
    match = re.search(rf"^{re.escape(name)}\s+(\d+)\s+IN\s+A\s", out, re.MULTILINE)
    assert match, out
    return int(match.group(1))


@pytest.mark.integration
def test_cache_dig_twice_shows_the_ttl_decreasing(resolver: RunningResolver) -> None:
    """Real dig against `resolver serve`: the second answer's TTL is lower than the first."""
    name = "mail.networkutopia.com."  # asked by no other test of the shared resolver
    first = _dig_ttl(resolver, name)
    time.sleep(1.1)
    second = _dig_ttl(resolver, name)
    assert first <= 3600 and second < first
