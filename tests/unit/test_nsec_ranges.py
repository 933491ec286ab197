"""The aggressive-NSEC store (RFC 8198) stays bounded whatever zones feed it."""

from __future__ import annotations

import pytest

from resolver.dns.wire import parse_record
from resolver.engine import nsec_ranges
from resolver.engine.nsec_ranges import NsecRanges


def learn_zone(ranges: NsecRanges, zone: str, count: int, now: float = 0.0) -> None:
    soa = parse_record(f"{zone} 300 IN SOA ns.{zone} h.{zone} 1 2 3 4 300")
    nsecs = tuple(parse_record(f"n{i:04d}.{zone} 300 IN NSEC n{i + 1:04d}.{zone} A RRSIG NSEC")
                  for i in range(count))
    ranges.learn(zone, soa, nsecs, now, 300)


def test_ranges_in_all_zones_stay_under_the_total_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsec_ranges, "MAX_RANGES_TOTAL", 500)
    ranges = NsecRanges()
    for z in range(40):
        learn_zone(ranges, f"zone{z}.test.", 50)
    assert len(ranges) <= 500
    # The zones asked about last are the ones kept.
    assert ranges.synthesize("n0001x.zone39.test.", 1, 1.0) is None  # no wildcard proof
    assert ranges.synthesize("n0001.zone39.test.", 16, 1.0) is not None  # NODATA at n0001


def test_one_zone_keeps_at_most_its_share_of_ranges() -> None:
    ranges = NsecRanges()
    learn_zone(ranges, "big.test.", nsec_ranges.MAX_RANGES_PER_ZONE + 200)
    assert len(ranges) == nsec_ranges.MAX_RANGES_PER_ZONE
