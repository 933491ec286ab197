"""The aggressive-NSEC store (RFC 8198) stays bounded whatever zones feed it."""

from __future__ import annotations

import base64

import pytest

from resolver.dns.wire import Rcode, Record, RRType, parse_record
from resolver.dnssec.denial import nsec3_hash
from resolver.dnssec.records import Nsec3
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


# -- NSEC3 (RFC 5155 §8, RFC 8198 §5) ------------------------------------------------------

ZONE = "hashed.test."
SALT = "aabb"


def nsec3_chain(names_and_types: dict[str, str], *, flags: int = 0,
                iterations: int = 1) -> tuple[Record, ...]:
    """The whole NSEC3 chain of a zone holding these names, in hash order (RFC 5155 §7.1)."""
    hashed = sorted((nsec3_hash(name, bytes.fromhex(SALT), iterations), types)
                    for name, types in names_and_types.items())
    chain = []
    for i, (digest, types) in enumerate(hashed):
        after = hashed[(i + 1) % len(hashed)][0]
        owner = base64.b32hexencode(digest).decode().lower()
        chain.append(parse_record(
            f"{owner}.{ZONE} 300 IN NSEC3 1 {flags} {iterations} {SALT} "
            f"{base64.b32hexencode(after).decode()} {types}"))
    return tuple(chain)


ZONE_NAMES = {ZONE: "SOA NS DNSKEY NSEC3PARAM RRSIG", f"www.{ZONE}": "A RRSIG",
              f"mail.{ZONE}": "A MX RRSIG", f"ftp.{ZONE}": "AAAA RRSIG"}


def learn_hashed(chain: tuple[Record, ...]) -> NsecRanges:
    ranges = NsecRanges()
    soa = parse_record(f"{ZONE} 300 IN SOA ns.{ZONE} h.{ZONE} 1 2 3 4 300")
    ranges.learn(ZONE, soa, chain, 0.0, 300)
    return ranges


def test_cached_nsec3_chain_proves_a_new_name_absent() -> None:
    """Closest encloser matched, next closer and wildcard covered: NXDOMAIN (§8.4)."""
    ranges = learn_hashed(nsec3_chain(ZONE_NAMES))
    found = ranges.synthesize(f"nothere.{ZONE}", RRType.A, 1.0)
    assert found is not None and found.rcode == Rcode.NXDOMAIN
    assert {rr.rtype for rr in found.proof} == {RRType.NSEC3}
    below = ranges.synthesize(f"a.b.nothere.{ZONE}", RRType.TXT, 1.0)
    assert below is not None and below.rcode == Rcode.NXDOMAIN


def test_cached_nsec3_at_a_name_proves_the_types_it_lacks() -> None:
    ranges = learn_hashed(nsec3_chain(ZONE_NAMES))
    nodata = ranges.synthesize(f"www.{ZONE}", RRType.TXT, 1.0)
    assert nodata is not None and nodata.rcode == Rcode.NOERROR
    assert ranges.synthesize(f"www.{ZONE}", RRType.A, 1.0) is None  # it has an A


def test_cached_nsec3_opt_out_span_proves_no_name_absent() -> None:
    """An opt-out span may hide unsigned delegations (RFC 5155 §6): no NXDOMAIN from it."""
    ranges = learn_hashed(nsec3_chain(ZONE_NAMES, flags=1))
    assert ranges.synthesize(f"nothere.{ZONE}", RRType.A, 1.0) is None


def test_cached_nsec3_with_too_many_iterations_answers_nothing() -> None:
    """RFC 9276 §3.2: above 150 iterations the proof is insecure, so nothing is kept."""
    ranges = learn_hashed(nsec3_chain(ZONE_NAMES, iterations=200))
    assert ranges.synthesize(f"nothere.{ZONE}", RRType.A, 1.0) is None


def test_cached_nsec3_chain_answers_nothing_once_expired() -> None:
    ranges = learn_hashed(nsec3_chain(ZONE_NAMES))
    assert ranges.synthesize(f"nothere.{ZONE}", RRType.A, 301.0) is None


def test_partial_nsec3_chain_without_the_wildcard_cover_proves_nothing() -> None:
    chain = nsec3_chain(ZONE_NAMES)
    wildcard_hash = nsec3_hash(f"*.{ZONE}", bytes.fromhex(SALT), 1)
    kept = tuple(rr for rr in chain
                 if not _spans(rr, wildcard_hash) or _spans(rr, nsec3_hash(
                     f"nothere.{ZONE}", bytes.fromhex(SALT), 1)))
    assert len(kept) < len(chain)  # the wildcard's span is another than the name's
    assert learn_hashed(kept).synthesize(f"nothere.{ZONE}", RRType.A, 1.0) is None


def _spans(record: Record, digest: bytes) -> bool:
    nsec3 = Nsec3.from_record(record)
    owner, after = nsec3.owner_hash, nsec3.next_hash
    return owner < digest < after if owner < after else digest > owner or digest < after
