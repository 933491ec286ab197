"""DNSKEY and DS RDATA as typed values, key tags, DS digests, and DS-to-DNSKEY matching.

RFC 4034 §2.1 (DNSKEY), §5.1 (DS), Appendix B (key tag); digests SHA-1 (RFC 4034
§5.1.4), SHA-256 (RFC 4509 §2.1) and SHA-384 (RFC 6605 §3). A DS matches a DNSKEY when
key tag and algorithm agree and the digest of owner name | DNSKEY RDATA is the DS digest.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from resolver.dns.rdata_wire import rdata_wire
from resolver.dns.wire import Record, RRType
from resolver.dnssec.canonical import canonical_name_wire
from resolver.dnssec.records import MalformedRdata

__all__ = ["DigestType", "Dnskey", "Ds", "ds_digest", "key_tag", "matching_keys"]

_DNSKEY_FIXED = struct.Struct("!HBB")
_DS_FIXED = struct.Struct("!HBB")

#: RFC 4034 §2.1.1: bit 7 marks a zone key, bit 15 the secure entry point; RFC 5011 §7
#: bit 8 a revoked key.
ZONE_KEY_FLAG = 0x0100
SEP_FLAG = 0x0001
REVOKE_FLAG = 0x0080
#: RFC 4034 §2.1.2: the protocol field must be 3.
DNSSEC_PROTOCOL = 3


class DigestType(enum.IntEnum):
    """DS digest algorithms we can compute (IANA "Delegation Signer Digest Algorithms")."""

    SHA1 = 1
    SHA256 = 2
    SHA384 = 4


_HASHES = {DigestType.SHA1: "sha1", DigestType.SHA256: "sha256", DigestType.SHA384: "sha384"}


def key_tag(rdata: bytes) -> int:
    """The key tag of DNSKEY RDATA (RFC 4034 Appendix B; B.1 for algorithm 1)."""
    if len(rdata) >= 4 and rdata[3] == 1:
        return int.from_bytes(rdata[-3:-1], "big")
    total = 0
    for index, octet in enumerate(rdata):
        total += octet << 8 if index % 2 == 0 else octet
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


@dataclass(frozen=True, slots=True)
class Dnskey:
    """A DNSKEY: owner, flags, protocol, algorithm, public key octets, key tag, RDATA."""

    owner: str
    flags: int
    protocol: int
    algorithm: int
    public_key: bytes
    key_tag: int
    rdata: bytes

    @property
    def is_zone_key(self) -> bool:
        return bool(self.flags & ZONE_KEY_FLAG)

    @property
    def is_secure_entry_point(self) -> bool:
        return bool(self.flags & SEP_FLAG)

    @property
    def is_revoked(self) -> bool:
        return bool(self.flags & REVOKE_FLAG)

    @classmethod
    def from_rdata(cls, owner: str, rdata: bytes) -> Dnskey:
        if len(rdata) <= _DNSKEY_FIXED.size:
            raise MalformedRdata(f"DNSKEY of {owner} too short")
        flags, protocol, algorithm = _DNSKEY_FIXED.unpack_from(rdata)
        return cls(owner, flags, protocol, algorithm, rdata[_DNSKEY_FIXED.size :],
                   key_tag(rdata), rdata)

    @classmethod
    def from_record(cls, record: Record) -> Dnskey:
        return cls.from_rdata(record.name, _rdata_of(record, RRType.DNSKEY))


@dataclass(frozen=True, slots=True)
class Ds:
    """A DS: owner (the child zone), key tag, algorithm, digest type, digest."""

    owner: str
    key_tag: int
    algorithm: int
    digest_type: int
    digest: bytes

    @property
    def digest_supported(self) -> bool:
        return self.digest_type in _HASHES

    @classmethod
    def from_rdata(cls, owner: str, rdata: bytes) -> Ds:
        if len(rdata) <= _DS_FIXED.size:
            raise MalformedRdata(f"DS of {owner} too short")
        tag, algorithm, digest_type = _DS_FIXED.unpack_from(rdata)
        return cls(owner, tag, algorithm, digest_type, rdata[_DS_FIXED.size :])

    @classmethod
    def from_record(cls, record: Record) -> Ds:
        return cls.from_rdata(record.name, _rdata_of(record, RRType.DS))


def _rdata_of(record: Record, rtype: RRType) -> bytes:
    """The RDATA octets of `record`, which must be of type `rtype`; MalformedRdata if not."""
    if record.rtype != rtype:
        raise MalformedRdata(f"{record.name} is not a {rtype.name} record")
    try:
        return rdata_wire(record)
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None


def ds_digest(key: Dnskey, digest_type: int) -> bytes | None:
    """digest(canonical owner name | DNSKEY RDATA) (RFC 4034 §5.1.4); None if unknown."""
    try:
        algorithm = _HASHES[DigestType(digest_type)]
    except (ValueError, KeyError):
        return None
    return hashlib.new(algorithm, canonical_name_wire(key.owner) + key.rdata).digest()


def ds_matches(ds: Ds, key: Dnskey) -> bool:
    """True when `ds` names `key`: same owner, tag, algorithm, and the digest agrees."""
    if ds.key_tag != key.key_tag or ds.algorithm != key.algorithm or ds.owner != key.owner:
        return False
    digest = ds_digest(key, ds.digest_type)
    return digest is not None and hmac.compare_digest(digest, ds.digest)


def matching_keys(ds_set: Iterable[Ds], keys: Iterable[Dnskey]) -> list[tuple[Ds, Dnskey]]:
    """Every (DS, DNSKEY) pair of the two sets where the DS names the key."""
    candidates = list(keys)
    return [(ds, key) for ds in ds_set for key in candidates if ds_matches(ds, key)]
