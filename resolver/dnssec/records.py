"""The DNSSEC RDATA that validation reads, as typed values: RRSIG, NSEC, NSEC3.

Each is decoded from the record's uncompressed RDATA octets (RFC 4034 §3.1, §4.1,
RFC 5155 §3.2), not from dnslib's objects, so that what is verified is exactly what was
received. Malformed RDATA raises `MalformedRdata`; callers turn it into a bogus verdict.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.dnssec_rdata import types_in_bitmap
from resolver.dns.rdata_wire import (
    NameFault,
    UncompressedNameError,
    rdata_wire,
    read_uncompressed_labels,
)
from resolver.dns.wire import Record, RRType

__all__ = ["MalformedRdata", "Nsec", "Nsec3", "Rrsig", "read_name"]

_RRSIG_FIXED = struct.Struct("!HBBIIIH")
_NSEC3_FIXED = struct.Struct("!BBHB")
#: Octets a label may hold in presentation form without an escape.
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*/+=")


class MalformedRdata(ValueError):
    """RDATA whose octets do not fit its type."""


_NAME_FAULTS = {
    NameFault.RUNS_PAST: "name runs past the RDATA",
    NameFault.COMPRESSED: "compressed or invalid name in DNSSEC RDATA",
    NameFault.LABEL_RUNS_PAST: "label runs past the RDATA",
}


def read_name(data: bytes, pos: int) -> tuple[str, bytes, int]:
    """The uncompressed name at `pos`: canonical text, wire octets, offset after it."""
    try:
        labels, end = read_uncompressed_labels(data, pos)
    except UncompressedNameError as exc:
        raise MalformedRdata(_NAME_FAULTS[exc.fault]) from None
    if end - pos > 255:
        raise MalformedRdata("name longer than 255 octets")
    text_labels = ["".join(chr(o) if o in _PLAIN else f"\\{o:03d}" for o in label.lower())
                   for label in labels]
    text = ".".join(text_labels) + "." if text_labels else names.ROOT
    return text, data[pos:end], end


@dataclass(frozen=True, slots=True)
class Rrsig:
    """RRSIG RDATA (RFC 4034 §3.1). `fields_wire` is the RDATA without the signature,
    with the signer's name in canonical (lower-case) form: the head of the signed data."""

    type_covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: str
    signature: bytes
    fields_wire: bytes

    @classmethod
    def from_record(cls, record: Record) -> Rrsig:
        if record.rtype != RRType.RRSIG:
            raise MalformedRdata(f"{record.name} is not an RRSIG record")
        data = _octets(record)
        if len(data) < _RRSIG_FIXED.size + 1:
            raise MalformedRdata("RRSIG RDATA too short")
        covered, algorithm, labels, ttl, expiration, inception, key_tag = (
            _RRSIG_FIXED.unpack_from(data))
        signer, signer_wire, end = read_name(data, _RRSIG_FIXED.size)
        signature = data[end:]
        if not signature:
            raise MalformedRdata("RRSIG without a signature")
        # RFC 4034 §3.1.8.1 and RFC 6840 §5.1: the signer's name is in canonical form.
        head = data[: _RRSIG_FIXED.size] + signer_wire.lower()
        return cls(covered, algorithm, labels, ttl, expiration, inception, key_tag,
                   signer, signature, head)


@dataclass(frozen=True, slots=True)
class Nsec:
    """NSEC RDATA (RFC 4034 §4.1): the owner, the next owner name and the types present."""

    owner: str
    next_name: str
    types: frozenset[int]

    @classmethod
    def from_record(cls, record: Record) -> Nsec:
        if record.rtype != RRType.NSEC:
            raise MalformedRdata(f"{record.name} is not an NSEC record")
        data = _octets(record)
        next_name, _, end = read_name(data, 0)
        return cls(record.name, next_name, _types(data[end:]))


@dataclass(frozen=True, slots=True)
class Nsec3:
    """NSEC3 RDATA (RFC 5155 §3.2) with its owner's hash (the first label, decoded)."""

    owner: str
    zone: str
    owner_hash: bytes
    algorithm: int
    flags: int
    iterations: int
    salt: bytes
    next_hash: bytes
    types: frozenset[int]

    @property
    def opt_out(self) -> bool:
        """RFC 5155 §3.1.2.1: this NSEC3 may cover unsigned delegations."""
        return bool(self.flags & 0x01)

    @classmethod
    def from_record(cls, record: Record) -> Nsec3:
        if record.rtype != RRType.NSEC3:
            raise MalformedRdata(f"{record.name} is not an NSEC3 record")
        data = _octets(record)
        if len(data) < _NSEC3_FIXED.size:
            raise MalformedRdata("NSEC3 RDATA too short")
        algorithm, flags, iterations, salt_length = _NSEC3_FIXED.unpack_from(data)
        pos = _NSEC3_FIXED.size
        salt = data[pos : pos + salt_length]
        pos += salt_length
        if len(salt) != salt_length or pos >= len(data):
            raise MalformedRdata("NSEC3 salt runs past the RDATA")
        hash_length = data[pos]
        next_hash = data[pos + 1 : pos + 1 + hash_length]
        if hash_length == 0 or len(next_hash) != hash_length:
            raise MalformedRdata("NSEC3 next hashed owner runs past the RDATA")
        label, _, zone = record.name.partition(".")
        try:
            owner_hash = base64.b32hexdecode(label.upper())
        except ValueError:
            raise MalformedRdata(f"NSEC3 owner {record.name} is not a base32hex hash") from None
        return cls(record.name, zone or names.ROOT, owner_hash, algorithm, flags, iterations,
                   salt, next_hash, _types(data[pos + 1 + hash_length :]))


def _octets(record: Record) -> bytes:
    try:
        return rdata_wire(record)
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None


def _types(bitmap: bytes) -> frozenset[int]:
    try:
        return frozenset(types_in_bitmap(bitmap))
    except ValueError as exc:
        raise MalformedRdata(str(exc)) from None
