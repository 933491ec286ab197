"""The cache against the lab on real loopback sockets: fewer upstream queries, shared misses.

Each test starts the lab in-process (`Lab(port=0)`), builds the resolver with
`app.build` exactly as `resolver serve` does, and counts queries where they arrive: at
the lab's authoritative servers (`Lab.query_counts()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from resolver.daemon.app import App, build
from resolver.daemon.config import ServeConfig
from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.delegation import parse_root_hints
from resolver.engine.network import Transport
from resolver.engine.settings import CacheSettings, EngineSettings
from resolver.lab import Lab
from resolver.lab.world import root_servers
from resolver.server.listener import Client

pytestmark = pytest.mark.integration

T = TypeVar("T")
WWW = Question("www.networkutopia.com.", RRType.A)
AMAZON = Question("www.amazon.com.", RRType.A)
ROOTS = {s.address for s in root_servers()}
NETWORKUTOPIA_NS = "127.212.212.1"
CLIENT = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)


def with_lab(test: Callable[[Lab], Awaitable[T]]) -> T:
    """Run `test` with a fresh lab on a free port; the lab stops when it returns."""

    async def main() -> T:
        async with Lab(port=0) as lab:
            return await asyncio.wait_for(test(lab), timeout=60)

    return asyncio.run(main())


def resolver_for(lab: Lab, cache: CacheSettings | None = None) -> App:
    config = ServeConfig(engine=EngineSettings(upstream_port=lab.port),
                         cache=cache or CacheSettings())
    return build(config, root_hints=parse_root_hints(lab.hints_text()))


def delta(before: dict[str, int], after: dict[str, int], addresses: set[str] | None = None) -> int:
    return sum(after[a] - before[a] for a in after if addresses is None or a in addresses)


def test_cache_second_name_in_com_sends_nothing_to_the_root() -> None:
    """After one .com name, another .com name starts at the cached com delegation."""

    async def test(lab: Lab) -> tuple[int, int, Rcode]:
        app = resolver_for(lab)
        first = await app.service.resolve(WWW)
        assert first.rcode == Rcode.NOERROR
        before = lab.query_counts()
        second = await app.service.resolve(AMAZON)
        after = lab.query_counts()
        return delta(before, after, ROOTS), delta(before, after), second.rcode

    to_roots, total, rcode = with_lab(test)
    assert rcode == Rcode.NOERROR
    assert to_roots == 0 and total >= 1


def test_cache_answers_a_repeated_question_without_upstream_queries() -> None:
    """The same question again is answered from the cache: no query reaches any lab server."""

    async def test(lab: Lab) -> int:
        app = resolver_for(lab)
        await app.service.resolve(WWW)
        before = lab.query_counts()
        again = await app.service.resolve(WWW)
        assert again.rcode == Rcode.NOERROR and again.queries_sent == 0
        return delta(before, lab.query_counts())

    assert with_lab(test) == 0


def test_cache_200_concurrent_clients_cost_one_resolution_upstream() -> None:
    """200 simultaneous client queries for one uncached name: as many upstream queries as one."""

    async def test(lab: Lab) -> tuple[int, int, int, set[bytes]]:
        wire = make_query(WWW, query_id=1, recursion_desired=True)
        single = resolver_for(lab)
        before = lab.query_counts()
        assert await single.handler.handle(wire, CLIENT) is not None
        one = delta(before, lab.query_counts())

        crowd = resolver_for(lab)  # a cold cache again
        before = lab.query_counts()
        replies = await asyncio.gather(
            *(crowd.handler.handle(make_query(WWW, query_id=i, recursion_desired=True), CLIENT)
              for i in range(200))
        )
        after = lab.query_counts()
        answers = set()
        for reply in replies:
            assert reply is not None
            message = decode(reply)
            assert message.rcode == Rcode.NOERROR
            answers.add(message.answer[-1].rdata_key.encode())
        return one, delta(before, after), delta(before, after, {NETWORKUTOPIA_NS}), answers

    one, crowd, at_networkutopia, answers = with_lab(test)
    assert crowd == one > 0
    assert at_networkutopia == 1
    assert answers == {b"212.212.212.2"}


QUESTIONS = [
    (Question("www.networkutopia.com.", RRType.A), "212.212.212.2"),
    (Question("www.ibm.com.", RRType.A), "129.42.60.216"),
    (Question("www.crepes.fr.", RRType.A), None),
    (Question("glueless.org.", RRType.NS), None),
    (Question("gaia.cs.umass.edu.", RRType.A), None),
]


def test_cache_eviction_at_the_bound_never_breaks_a_resolution() -> None:
    """A 2-entry cache evicts mid-walk: each answer is right or SERVFAIL, never a crash."""

    async def test(lab: Lab) -> list[tuple[Question, str | None, Rcode, tuple[str, ...], str]]:
        app = resolver_for(lab, CacheSettings(max_entries=2))
        results = []
        for _ in range(2):  # sequentially, then all at once
            outcomes = []
            for question, _expected in QUESTIONS:
                outcomes.append(await app.service.resolve(question))
            outcomes += await asyncio.gather(*(app.service.resolve(q) for q, _ in QUESTIONS))
            for (question, expected), outcome in zip(QUESTIONS * 2, outcomes, strict=True):
                results.append((question, expected, outcome.rcode,
                                tuple(rr.rdata_key for rr in outcome.answer), outcome.reason))
        assert len(app.state.cache) <= 2
        return results

    for question, expected, rcode, answer, reason in with_lab(test):
        assert "internal error" not in reason, (question, reason)
        assert rcode in (Rcode.NOERROR, Rcode.SERVFAIL), (question, rcode)
        if rcode == Rcode.NOERROR:
            assert answer, question
            if expected is not None:
                assert expected in answer, (question, answer)


def test_cache_eviction_through_the_handler_always_replies() -> None:
    """Every client query gets a reply (NOERROR or SERVFAIL) from a 2-entry cache."""

    async def test(lab: Lab) -> list[int]:
        app = resolver_for(lab, CacheSettings(max_entries=2))
        wires = [make_query(q, query_id=i, recursion_desired=True)
                 for i, (q, _) in enumerate(QUESTIONS * 4)]
        replies = await asyncio.gather(*(app.handler.handle(w, CLIENT) for w in wires))
        rcodes = []
        for reply in replies:
            assert reply is not None
            rcodes.append(decode(reply).rcode)
        return rcodes

    rcodes = with_lab(test)
    assert len(rcodes) == 20 and set(rcodes) <= {Rcode.NOERROR, Rcode.SERVFAIL}
