"""How the lab signs its world: keys per zone, children before parents, and the exceptions.

Every zone is signed with its own KSK and ZSK, derived from one seed per lab run (so a
seed gives the same keys and, with the same times, the same signatures). The root and
the top-level domains use ECDSA P-256 (algorithm 13), the other zones Ed25519 (15), so
that a trace shows two algorithms. Zones are signed deepest first, so that the DS of each
signed child is in its parent before the parent is signed; the root's DS is the lab's
trust anchor. Two zones are different on purpose, so that a class sees all three
outcomes of validation (RFC 4035 §4.3):

- `crepes.fr.` is not signed: fr has no DS for it, and fr's signed NSEC at the cut
  proves that, so its data is insecure (an insecure delegation, RFC 4035 §5.2);
- `cnn.com.` is signed and vouched for by a DS in com, but every signature except the
  one over its DNSKEY set has a corrupted octet: its keys are trusted, its data bogus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dnslib import RR, DNSLabel

from resolver.dns import names
from resolver.dns.rdata_wire import rdata_wire
from resolver.dns.record_text import record_from_rdata
from resolver.dns.wire import Record, RRType, record_from_rr
from resolver.dnssec.records import Rrsig
from resolver.dnssec.signatures import Algorithm
from resolver.dnssec.signer import KSK_FLAGS, ZSK_FLAGS, key_from_seed, sign_zone
from resolver.lab.authority import Zone, to_name

__all__ = ["BOGUS_ZONES", "UNSIGNED_ZONES", "SignedWorld", "sign_world"]

#: Zones left unsigned: their delegation is insecure.
UNSIGNED_ZONES = frozenset({"crepes.fr."})
#: Zones whose data signatures are broken: their answers are bogus.
BOGUS_ZONES = frozenset({"cnn.com."})
#: Seconds before "now" a signature starts to be valid: room for clocks a little behind.
INCEPTION_SLACK_S = 3600
#: How long the lab's signatures stay valid: longer than any class.
VALIDITY_S = 30 * 86400
#: What the signer adds to a zone (the children's DS included): served only with DO=1.
_DNSSEC_TYPES = frozenset({RRType.DS, RRType.DNSKEY, RRType.NSEC, RRType.RRSIG})


@dataclass(frozen=True, slots=True)
class SignedWorld:
    """The lab's zones with their DNSSEC records, and the root's DS (the trust anchor)."""

    zones: Mapping[str, Zone]
    root_ds: Record

    def anchor_text(self) -> str:
        """A trust-anchor file (Unbound's trust-anchor-file format) with the root's DS."""
        return ("; Trust anchor for the offline DNS lab: the DS of the lab root's KSK.\n"
                "; The keys are made afresh each time the lab starts.\n"
                f"{self.root_ds.to_text()}\n")


def _algorithm(origin: str) -> Algorithm:
    return Algorithm.ECDSAP256SHA256 if names.label_count(origin) <= 1 else Algorithm.ED25519


def _parent_of(origin: str, zones: Mapping[str, Zone]) -> str | None:
    """The lab zone that delegates `origin` (has a zone cut there), if any."""
    cut = to_name(origin)
    for other, zone in zones.items():
        if other != origin and cut in zone.cuts:
            return other
    return None


def sign_world(zones: Mapping[str, Zone], *, seed: bytes, now: int) -> SignedWorld:
    """Sign every zone but the unsigned ones, with signatures valid around `now`."""
    inception, expiration = now - INCEPTION_SLACK_S, now + VALIDITY_S
    child_ds: dict[str, list[Record]] = {}
    signed: dict[str, Zone] = {}
    root_ds: Record | None = None
    for origin in sorted(zones, key=names.label_count, reverse=True):
        zone = zones[origin]
        if origin in UNSIGNED_ZONES:
            signed[origin] = zone
            continue
        algorithm = _algorithm(origin)
        ksk = key_from_seed(seed + f"/{origin}/ksk".encode(), algorithm=algorithm,
                            flags=KSK_FLAGS)
        zsk = key_from_seed(seed + f"/{origin}/zsk".encode(), algorithm=algorithm,
                            flags=ZSK_FLAGS)
        records = [record_from_rr(rr) for rr in zone.records()] + child_ds.get(origin, [])
        result = sign_zone(origin, records, ksk=ksk, zsk=zsk, inception=inception,
                           expiration=expiration)
        extra = [r for r in result.records if r.rtype in _DNSSEC_TYPES]
        if origin in BOGUS_ZONES:
            extra = [_corrupted(r) for r in extra]
        signed[origin] = zone.signed(_as_rr(r) for r in extra)
        parent = _parent_of(origin, zones)
        if parent is not None:
            child_ds.setdefault(parent, []).append(result.ds)
        if origin == names.ROOT:
            root_ds = result.ds
    if root_ds is None:
        raise ValueError("the lab has no root zone to anchor trust in")
    return SignedWorld(signed, root_ds)


def _corrupted(record: Record) -> Record:
    """An RRSIG (not over DNSKEY) with the last octet of its signature flipped."""
    if record.rtype != RRType.RRSIG or Rrsig.from_record(record).type_covered == RRType.DNSKEY:
        return record
    octets = bytearray(rdata_wire(record))
    octets[-1] ^= 0xFF
    return record_from_rdata(record.name, record.rtype, record.rclass, record.ttl,
                             bytes(octets))


def _as_rr(record: Record) -> RR:
    return RR(DNSLabel(record.name), record.rtype, record.rclass, record.ttl, record.rdata)
