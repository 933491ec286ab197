"""Verifying one RRSIG over one RRset with one DNSKEY (RFC 4035 §5.3).

The checks of RFC 4035 §5.3.1 come first (owner, class, type, signer, labels, key tag,
algorithm, zone key flag, validity window in RFC 1982 serial arithmetic, RFC 4034
§3.1.5), then the signature itself with the `cryptography` package: RSA/SHA-1 and
RSA/SHA-2 (RFC 3110, RFC 5702), ECDSA P-256 and P-384 (RFC 6605), Ed25519 and Ed448
(RFC 8080); the algorithms of RFC 8624 §3.1 a validator must or should support. An
algorithm not in that list is reported as unsupported, which the caller treats as
insecure (RFC 4035 §5.2, RFC 6840 §5.2). `now` is given, never read from a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Record
from resolver.dnssec.canonical import owner_label_count, signed_data
from resolver.dnssec.keys import DNSSEC_PROTOCOL, Dnskey
from resolver.dnssec.records import MalformedRdata, Rrsig
from resolver.dnssec.security import Failure, Verdict

__all__ = ["Algorithm", "SignatureCheck", "is_supported", "verify_rrsig"]


class Algorithm(enum.IntEnum):
    """DNSSEC signing algorithms this validator verifies (IANA registry numbers)."""

    RSASHA1 = 5
    RSASHA1_NSEC3_SHA1 = 7
    RSASHA256 = 8
    RSASHA512 = 10
    ECDSAP256SHA256 = 13
    ECDSAP384SHA384 = 14
    ED25519 = 15
    ED448 = 16


_SERIAL_HALF = 1 << 31
_SERIAL_MOD = 1 << 32


def is_supported(algorithm: int) -> bool:
    return algorithm in Algorithm._value2member_map_


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one RRSIG and, when secure, the TTL the RRset may be kept for."""

    verdict: Verdict
    ttl: int | None = None


def serial_before(a: int, b: int) -> bool:
    """a < b in RFC 1982 serial arithmetic with 32 bits (RFC 4034 §3.1.5)."""
    a %= _SERIAL_MOD
    b %= _SERIAL_MOD
    return a != b and ((a < b and b - a < _SERIAL_HALF) or (a > b and a - b > _SERIAL_HALF))


def verify_rrsig(rrset: Sequence[Record], rrsig_record: Record, key: Dnskey, zone: str,
                 now: int) -> SignatureCheck:
    """Whether `rrsig_record` by `key` proves `rrset` (all RRs of one owner, type, class)
    authentic on behalf of `zone` at time `now` (seconds since the epoch)."""
    try:
        rrsig = Rrsig.from_record(rrsig_record)
    except MalformedRdata as exc:
        return _bogus(Failure.DNSSEC_BOGUS, zone, key, f"malformed RRSIG: {exc}")
    problem = _field_problem(rrset, rrsig_record, rrsig, key, zone)
    if problem is not None:
        return _bogus(Failure.DNSSEC_BOGUS, zone, key, problem)
    if not is_supported(rrsig.algorithm):
        return SignatureCheck(Verdict.insecure(
            Failure.UNSUPPORTED_DNSKEY_ALGORITHM, zone,
            f"algorithm {rrsig.algorithm} is not supported", key.key_tag))
    window = _window_problem(rrsig, now, zone, key)
    if window is not None:
        return window
    try:
        data = signed_data(rrsig, rrset)
    except MalformedRdata as exc:
        return _bogus(Failure.DNSSEC_BOGUS, zone, key, f"cannot form the signed data: {exc}")
    # The mathematics (and the `cryptography` package, 10 MB of memory) are loaded only
    # by a resolver that validates.
    from resolver.dnssec.signature_math import signature_holds

    if not signature_holds(rrsig.algorithm, key.public_key, rrsig.signature, data):
        return _bogus(Failure.DNSSEC_BOGUS, zone, key,
                      f"signature over {rrset[0].name} does not verify")
    # RFC 4035 §5.3.3 and RFC 4034 §3.1.4: no longer than the original TTL, the RRSIG's
    # own TTL, or the time left until the signature expires.
    left = (rrsig.expiration - now) % _SERIAL_MOD
    ttl = min(min(r.ttl for r in rrset), rrsig_record.ttl, rrsig.original_ttl, left)
    return SignatureCheck(Verdict.secure(zone, f"signed by key {key.key_tag}", key.key_tag),
                          ttl)


def _bogus(reason: Failure, zone: str, key: Dnskey, detail: str) -> SignatureCheck:
    return SignatureCheck(Verdict.bogus(reason, zone, detail, key.key_tag))


def _field_problem(rrset: Sequence[Record], rrsig_record: Record, rrsig: Rrsig,
                   key: Dnskey, zone: str) -> str | None:
    """The first RFC 4035 §5.3.1 condition that does not hold, or None."""
    if not rrset:
        return "no records to verify"
    owner, rtype, rclass = rrset[0].name, rrset[0].rtype, rrset[0].rclass
    if any((r.name, r.rtype, r.rclass) != (owner, rtype, rclass) for r in rrset):
        return "the records are not one RRset"
    if rrsig_record.name != owner or rrsig_record.rclass != rclass:
        return "the RRSIG's owner or class differs from the RRset's"
    if rrsig.type_covered != rtype:
        return f"the RRSIG covers type {rrsig.type_covered}, not {rtype}"
    if rrsig.signer != zone:
        return f"signer {rrsig.signer} is not the zone {zone}"
    if not names.is_subdomain(owner, rrsig.signer):
        return f"signer {rrsig.signer} is not an ancestor of {owner}"
    if rrsig.labels > owner_label_count(owner):
        return f"labels field {rrsig.labels} exceeds the owner's label count"
    if key.owner != rrsig.signer:
        return f"key {key.key_tag} belongs to {key.owner}, not to the signer"
    if rrsig.key_tag != key.key_tag or rrsig.algorithm != key.algorithm:
        return f"RRSIG names key {rrsig.key_tag}/{rrsig.algorithm}, not {key.key_tag}"
    if not key.is_zone_key or key.protocol != DNSSEC_PROTOCOL:
        return f"key {key.key_tag} is not a DNSSEC zone key"
    if key.is_revoked:
        return f"key {key.key_tag} is revoked (RFC 5011 §2.1)"
    return None


def _window_problem(rrsig: Rrsig, now: int, zone: str, key: Dnskey) -> SignatureCheck | None:
    if serial_before(rrsig.expiration, now):
        return _bogus(Failure.SIGNATURE_EXPIRED, zone, key,
                      f"signature expired at {rrsig.expiration}, now is {now}")
    if serial_before(now, rrsig.inception):
        return _bogus(Failure.SIGNATURE_NOT_YET_VALID, zone, key,
                      f"signature valid only from {rrsig.inception}, now is {now}")
    return None
