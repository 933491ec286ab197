"""cache-max-ttl and cache-min-ttl (Unbound's options) bound every RRset the engine stores,
not only answers: the priming NS set, referral NS sets and glue too (issue #14 point 8)."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns.wire import Question, RRType
from resolver.engine.settings import CacheSettings
from tests.support.labnet import FakeClock, LabNetwork, lab_service

#: Where the lab's walk to www.networkutopia.com. leaves records: the root's NS set from
#: priming, com.'s and networkutopia.com.'s from referrals, their glue, and the answer.
STORED = [(".", RRType.NS), ("a.root-servers.net.", RRType.A), ("com.", RRType.NS),
          ("a.gtld-servers.net.", RRType.A), ("networkutopia.com.", RRType.NS),
          ("dns1.networkutopia.com.", RRType.A), ("www.networkutopia.com.", RRType.A)]


@pytest.mark.parametrize(("settings", "low", "high"), [
    (CacheSettings(max_ttl_s=300), 0, 300),
    (CacheSettings(min_ttl_s=200_000, max_ttl_s=300_000), 200_000 - 5, 300_000),
])
def test_ttl_clamps_bound_the_priming_ns_set_referrals_glue_and_answers(
        settings: CacheSettings, low: int, high: int) -> None:
    clock = FakeClock()
    service = lab_service(clock, LabNetwork(clock), cache_settings=settings)
    asyncio.run(service.resolve(Question("www.networkutopia.com.", RRType.A)))
    for name, rtype in STORED:
        rrset = service.state.cache.rrset(name, rtype)
        assert rrset, (name, rtype)
        assert all(low <= rr.ttl <= high for rr in rrset), (name, rtype, rrset[0].ttl)
