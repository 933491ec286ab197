"""Serve-stale TTLs side by side with a real Unbound (issue 14 point 8).

Unbound's `serve-expired-reply-ttl` is the TTL of the expired records in a reply served from
expired data; records of the same reply that are still live keep their own counted-down TTL
(RFC 8767 §4). Both resolvers fill their caches from one scripted zone with 2 s TTLs beside
600 s ones, the zone's server then stops answering, and after the short TTLs have run out
both are asked again: every answer must carry the same records with the same TTLs as
Unbound's (±1 s for the counted-down ones), and the same rcode.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakeauth import (
    FakeAuth,
    FakeNet,
    ResolverUnderTest,
    ask,
    drop,
    resolver_against,
    root_server,
    zone,
)
from tests.support.unbound import RunningUnbound, start_unbound, stop_unbound

pytestmark = pytest.mark.integration

ROOT = "127.74.0.1"
ZONE_SERVER = "127.74.0.2"
UNBOUND_IP = "127.74.0.10"
#: Longer than every short TTL of the zone, so that those records are expired when asked.
SHORT_TTL_S = 2
#: The reply TTL both resolvers are given: above SHORT_TTL_S, so it cannot pass for a
#: counted-down TTL.
REPLY_TTL_S = 7

ZONE = zone(
    "stale.test",
    f"short {SHORT_TTL_S} A 192.0.2.1",
    f"pair {SHORT_TTL_S} A 192.0.2.2",
    f"pair {SHORT_TTL_S} A 192.0.2.3",
    "alias 600 CNAME short",  # a live CNAME to an expired A
    f"brief {SHORT_TTL_S} CNAME long",  # an expired CNAME to a live A
    "long 600 A 192.0.2.4",
    f"chain {SHORT_TTL_S} CNAME brief",  # expired, then expired, then live
    ns=["ns1.stale.test"],
    negative_ttl=SHORT_TTL_S,
)

QUESTIONS = [
    ("short.stale.test.", "A"),
    ("pair.stale.test.", "A"),
    ("alias.stale.test.", "A"),
    ("brief.stale.test.", "A"),
    ("chain.stale.test.", "A"),
    ("short.stale.test.", "AAAA"),  # NODATA
    ("missing.stale.test.", "A"),  # NXDOMAIN
]


def _zone_server() -> FakeAuth:
    return FakeAuth(ZONE_SERVER, zones={
        "stale.test": ZONE + f"ns1 {SHORT_TTL_S * 300} A {ZONE_SERVER}\n"})


def _root() -> FakeAuth:
    return root_server(ROOT, "stale NS ns1.stale", f"ns1.stale A {ZONE_SERVER}")


def _unbound(directory: Path, port: int) -> RunningUnbound:
    stubs = {".": [f"{ROOT}@{port}"], "test.": [f"{ROOT}@{port}"],
             "stale.test.": [f"{ZONE_SERVER}@{port}"]}
    return start_unbound(directory, ip=UNBOUND_IP, stub_zones=stubs, server_lines=[
        'local-zone: "test." nodefault',  # Unbound blocks RFC 6761 names by default
        "serve-expired: yes",
        f"serve-expired-reply-ttl: {REPLY_TTL_S}",
        "serve-expired-client-timeout: 0",
        "prefetch: no",
        "minimal-responses: yes",
    ])


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[FakeNet, ResolverUnderTest, RunningUnbound]]:
    zone_server = _zone_server()
    with FakeNet(_root(), zone_server, lifetime_s=120) as net, resolver_against(
        net, tmp_path, "--stale-answer-enable", "--stale-answer-ttl", str(REPLY_TTL_S),
        "--stale-answer-client-timeout", "0",
    ) as ours:
        unbound = _unbound(tmp_path / "unbound", net.port)
        try:
            yield net, ours, unbound
        finally:
            stop_unbound(unbound)


def _records(reply: Any) -> list[tuple[str, str, int, str]]:
    """(name, type, TTL, data) of the answer and authority sections, in a stable order."""
    rows = [(str(rr.rname).lower(), str(rr.rtype), rr.ttl, str(rr.rdata))
            for rr in [*reply.rr, *reply.auth]]
    return sorted(rows)


def _ask_both(ours: ResolverUnderTest, unbound: RunningUnbound,
              name: str, qtype: str) -> tuple[Any, Any]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        mine = pool.submit(ours.ask, name, qtype)
        theirs = pool.submit(ask, unbound.ip, unbound.port, name, qtype)
        return mine.result(), theirs.result()


def _same_records(mine: list[tuple[str, str, int, str]],
                  theirs: list[tuple[str, str, int, str]]) -> bool:
    if [(n, t, d) for n, t, _, d in mine] != [(n, t, d) for n, t, _, d in theirs]:
        return False
    return all(abs(a[2] - b[2]) <= 1 for a, b in zip(mine, theirs, strict=True))


def test_expired_records_carry_the_reply_ttl_and_live_ones_their_own_as_unbound_does(
        both: tuple[FakeNet, ResolverUnderTest, RunningUnbound]) -> None:
    net, ours, unbound = both
    for name, qtype in QUESTIONS:
        mine, theirs = _ask_both(ours, unbound, name, qtype)
        assert mine.header.rcode == theirs.header.rcode, (name, qtype)
    ours.wait_idle()
    net[ZONE_SERVER].on(None, None, drop())
    time.sleep(SHORT_TTL_S + 1.5)

    differences = []
    unbound_ttls: set[int] = set()
    for name, qtype in QUESTIONS:
        mine, theirs = _ask_both(ours, unbound, name, qtype)
        rows_mine, rows_theirs = _records(mine), _records(theirs)
        unbound_ttls.update(ttl for _, _, ttl, _ in rows_theirs)
        print(f"{name} {qtype}: ours rcode {mine.header.rcode} {rows_mine}\n"
              f"{' ' * len(name)}  unbound rcode {theirs.header.rcode} {rows_theirs}")
        if mine.header.rcode != theirs.header.rcode or not _same_records(rows_mine, rows_theirs):
            differences.append((name, qtype, rows_mine, rows_theirs))
    assert differences == []
    # The comparison means something only if Unbound did serve expired data.
    assert REPLY_TTL_S in unbound_ttls
