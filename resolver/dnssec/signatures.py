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
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

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


_RSA_HASH: dict[int, type[hashes.HashAlgorithm]] = {
    Algorithm.RSASHA1: hashes.SHA1,
    Algorithm.RSASHA1_NSEC3_SHA1: hashes.SHA1,
    Algorithm.RSASHA256: hashes.SHA256,
    Algorithm.RSASHA512: hashes.SHA512,
}
_EC_CURVE: dict[int, tuple[ec.EllipticCurve, type[hashes.HashAlgorithm], int]] = {
    Algorithm.ECDSAP256SHA256: (ec.SECP256R1(), hashes.SHA256, 32),
    Algorithm.ECDSAP384SHA384: (ec.SECP384R1(), hashes.SHA384, 48),
}
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
    if not _signature_holds(rrsig.algorithm, key.public_key, rrsig.signature, data):
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


def _signature_holds(algorithm: int, public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        verifier = _public_key(algorithm, public_key)
    except ValueError:
        return False  # a key that does not decode proves nothing
    try:
        if algorithm in _RSA_HASH:
            assert isinstance(verifier, rsa.RSAPublicKey)
            verifier.verify(signature, data, padding.PKCS1v15(), _RSA_HASH[algorithm]())
        elif algorithm in _EC_CURVE:
            assert isinstance(verifier, ec.EllipticCurvePublicKey)
            _, digest, size = _EC_CURVE[algorithm]
            if len(signature) != 2 * size:  # RFC 6605 §4: r | s, each of the curve's size
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            verifier.verify(der, data, ec.ECDSA(digest()))
        else:
            assert isinstance(verifier, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
            verifier.verify(signature, data)
    except InvalidSignature:
        return False
    return True


_PublicKey = (rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
              | ed448.Ed448PublicKey)


@functools.lru_cache(maxsize=1024)
def _public_key(algorithm: int, octets: bytes) -> _PublicKey:
    """The key object of DNSKEY key octets; ValueError if they do not form a key.
    Cached: a zone's few keys verify many signatures."""
    if algorithm in _RSA_HASH:
        return _rsa_key(octets)
    if algorithm in _EC_CURVE:
        curve, _, size = _EC_CURVE[algorithm]
        if len(octets) != 2 * size:  # RFC 6605 §4: x | y
            raise ValueError("ECDSA key of the wrong length")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + octets)
    if algorithm == Algorithm.ED25519:
        return ed25519.Ed25519PublicKey.from_public_bytes(octets)
    if algorithm == Algorithm.ED448:
        return ed448.Ed448PublicKey.from_public_bytes(octets)
    raise ValueError(f"algorithm {algorithm} is not supported")


def _rsa_key(octets: bytes) -> rsa.RSAPublicKey:
    """RFC 3110 §2: exponent length (one octet, or zero then two), exponent, modulus."""
    if not octets:
        raise ValueError("empty RSA key")
    if octets[0]:
        length, start = octets[0], 1
    else:
        if len(octets) < 3:
            raise ValueError("truncated RSA exponent length")
        length, start = int.from_bytes(octets[1:3], "big"), 3
    exponent = int.from_bytes(octets[start : start + length], "big")
    modulus_octets = octets[start + length :]
    if start + length > len(octets) or not modulus_octets or exponent < 3:
        raise ValueError("malformed RSA key")
    # RFC 3110 §2 allows up to 4096 bits; larger moduli only cost time.
    if len(modulus_octets) > 512:
        raise ValueError("RSA modulus over 4096 bits")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus_octets, "big")).public_key()
