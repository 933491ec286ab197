"""Signing a zone: DNSKEY RRset, RRSIGs, the NSEC chain and the DS for the parent.

Pure functions over `Record`s: keys come in (`key_from_seed` derives one from seed octets),
inception and expiration times come in (seconds since the epoch; nothing here reads a
clock), signed records go out. What is signed follows RFC 4035 §2:

- the DNSKEY RRset at the apex holds the key-signing key (flags 257, SEP) and the
  zone-signing key (flags 256) and is signed by the KSK (§2.1, RFC 6781 §3.1);
- every other authoritative RRset is signed by the ZSK (§2.2); the NS RRset at a
  delegation point and glue below it are not authoritative and stay unsigned, while a
  DS RRset at a delegation point belongs to the parent and is signed (§2.4);
- each owner name with authoritative data or a delegation point gets one NSEC naming the
  next owner in canonical order (RFC 4034 §6.1), the last pointing back at the apex, with
  the types present plus RRSIG and NSEC, and the TTL of the SOA's negative TTL (§2.3,
  RFC 9077 §3.3); empty non-terminals and glue get none.

Signed data and name order are the validation library's own (`canonical.signed_data`,
`canonical.name_order_key`), so what is signed here is what `signatures.verify_rrsig`
checks. Ed25519 (RFC 8080) and ECDSA P-256 with deterministic nonces (RFC 6605, RFC 6979)
give the same signatures for the same keys and times.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from resolver.dns import names
from resolver.dns.dnssec_rdata import type_bitmap
from resolver.dns.rdata_wire import name_wire
from resolver.dns.record_text import record_from_rdata
from resolver.dns.wire import CLASS_IN, Record, RRType
from resolver.dnssec.canonical import (
    canonical_name_wire,
    name_order_key,
    owner_label_count,
    signed_data,
)
from resolver.dnssec.keys import (
    DNSSEC_PROTOCOL,
    SEP_FLAG,
    ZONE_KEY_FLAG,
    DigestType,
    Dnskey,
    ds_digest,
)
from resolver.dnssec.records import Rrsig
from resolver.dnssec.signatures import Algorithm

__all__ = ["KSK_FLAGS", "ZSK_FLAGS", "SignedZone", "SigningError", "SigningKey", "ds_record",
           "key_from_seed", "sign_rrset", "sign_zone"]

#: RFC 4034 §2.1.1: a zone key (bit 7); the KSK also carries the SEP bit (bit 15).
ZSK_FLAGS = ZONE_KEY_FLAG
KSK_FLAGS = ZONE_KEY_FLAG | SEP_FLAG
_RRSIG_FIXED = struct.Struct("!HBBIIIH")
_DS_FIXED = struct.Struct("!HBB")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SERIAL_MOD = 1 << 32
#: Types a signer writes itself; a zone handed in with them is already signed.
_SIGNER_TYPES = frozenset({RRType.RRSIG, RRType.NSEC, RRType.NSEC3, RRType.DNSKEY})
_SIGNING_ALGORITHMS = frozenset({Algorithm.ED25519, Algorithm.ECDSAP256SHA256})


class SigningError(ValueError):
    """The records cannot be signed as a zone; the message says why."""


_PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with the DNSKEY fields that go with it."""

    algorithm: Algorithm
    flags: int
    private_key: _PrivateKey = field(compare=False, repr=False)

    @property
    def public_key(self) -> bytes:
        """The DNSKEY public key field: Ed25519's 32 octets (RFC 8080 §3), or P-256's
        x | y (RFC 6605 §4)."""
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        point = public.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
        return point[1:]  # without the 0x04 "uncompressed" prefix

    @property
    def dnskey_rdata(self) -> bytes:
        return struct.pack("!HBB", self.flags, DNSSEC_PROTOCOL, self.algorithm) + self.public_key

    def dnskey(self, zone: str) -> Dnskey:
        """This key as the DNSKEY of `zone` (with its key tag)."""
        return Dnskey.from_rdata(names.canonical(zone), self.dnskey_rdata)

    def dnskey_record(self, zone: str, ttl: int) -> Record:
        return record_from_rdata(zone, RRType.DNSKEY, CLASS_IN, ttl, self.dnskey_rdata)

    def sign(self, data: bytes) -> bytes:
        """The DNSSEC signature field over `data` (RFC 8080 §4, RFC 6605 §4: r | s)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        der = self.private_key.sign(
            data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def key_from_seed(seed: bytes, *, algorithm: Algorithm = Algorithm.ED25519,
                  flags: int = ZSK_FLAGS) -> SigningKey:
    """A key derived from `seed` alone (SHA-256 of it): the same seed, the same key.
    For labs and tests; real zones want keys from the system's random source."""
    if algorithm not in _SIGNING_ALGORITHMS:
        raise SigningError(f"algorithm {algorithm} cannot sign here (Ed25519 or ECDSA P-256)")
    material = hashlib.sha256(seed).digest()
    private: _PrivateKey
    if algorithm == Algorithm.ED25519:
        private = ed25519.Ed25519PrivateKey.from_private_bytes(material)
    else:
        scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
        private = ec.derive_private_key(scalar, ec.SECP256R1())
    return SigningKey(algorithm, flags, private)


@dataclass(frozen=True, slots=True)
class SignedZone:
    """A signed zone: every record to serve, and the DS its parent should publish."""

    origin: str
    #: The zone's own records, then DNSKEYs, NSECs and RRSIGs.
    records: tuple[Record, ...]
    #: The DS (SHA-256) of the KSK, for the parent zone (RFC 4509 §2).
    ds: Record
    ksk: Dnskey
    zsk: Dnskey


def ds_record(zone: str, key: Dnskey, ttl: int,
              digest_type: DigestType = DigestType.SHA256) -> Record:
    """The DS record naming `key` of `zone` (RFC 4034 §5.1)."""
    digest = ds_digest(key, digest_type)
    if digest is None:  # every DigestType member has a hash: this cannot happen
        raise SigningError(f"digest type {digest_type} has no hash")
    rdata = _DS_FIXED.pack(key.key_tag, key.algorithm, digest_type) + digest
    return record_from_rdata(zone, RRType.DS, CLASS_IN, ttl, rdata)


def sign_rrset(rrset: Sequence[Record], key: SigningKey, zone: str, *, inception: int,
               expiration: int) -> Record:
    """The RRSIG of `key` (a key of `zone`) over `rrset` (RFC 4034 §3.1, §3.1.8.1)."""
    if not rrset:
        raise SigningError("no records to sign")
    first = rrset[0]
    if any((r.name, r.rtype, r.rclass) != (first.name, first.rtype, first.rclass)
           for r in rrset):
        raise SigningError(f"the records at {first.name} are not one RRset")
    if not expiration > inception:
        raise SigningError("the signature must expire after its inception")
    original_ttl = min(r.ttl for r in rrset)
    signer = names.canonical(zone)
    dnskey = key.dnskey(signer)
    head = _RRSIG_FIXED.pack(first.rtype, key.algorithm, owner_label_count(first.name),
                             original_ttl, expiration % _SERIAL_MOD, inception % _SERIAL_MOD,
                             dnskey.key_tag) + canonical_name_wire(signer)
    unsigned = Rrsig(first.rtype, key.algorithm, owner_label_count(first.name), original_ttl,
                     expiration % _SERIAL_MOD, inception % _SERIAL_MOD, dnskey.key_tag, signer,
                     b"", head)
    signature = key.sign(signed_data(unsigned, rrset))
    return record_from_rdata(first.name, RRType.RRSIG, first.rclass, original_ttl,
                             head + signature)


def sign_zone(origin: str, records: Iterable[Record], *, ksk: SigningKey, zsk: SigningKey,
              inception: int, expiration: int, dnskey_ttl: int = 3600) -> SignedZone:
    """Sign the zone `origin` made of `records` (with any DS records for its secure
    children already at their delegation points)."""
    origin = names.canonical(origin)
    rrsets = _rrsets(origin, records)
    apex = rrsets.get(origin, {})
    soa = apex.get(RRType.SOA)
    if soa is None or len(soa) != 1 or RRType.NS not in apex:
        raise SigningError(f"zone {origin}: the apex needs one SOA and an NS RRset")
    if not ksk.flags & SEP_FLAG or zsk.flags & SEP_FLAG:
        raise SigningError("the KSK must carry the SEP flag (257) and the ZSK not (256)")
    dnskeys = [ksk.dnskey_record(origin, dnskey_ttl), zsk.dnskey_record(origin, dnskey_ttl)]
    apex[RRType.DNSKEY] = dnskeys
    cuts = {owner for owner, types in rrsets.items() if owner != origin and RRType.NS in types}
    # RFC 4035 §2.3 and RFC 9077 §3.3: the NSEC TTL is the SOA's negative TTL.
    nsec_ttl = min(soa[0].ttl, soa[0].soa_minimum)
    signed: list[Record] = [r for types in rrsets.values() for rrset in types.values()
                            for r in rrset]
    chain = _nsec_chain(origin, rrsets, cuts, nsec_ttl)
    signed.extend(chain)
    times = {"inception": inception, "expiration": expiration}
    for owner, types in rrsets.items():
        if _below_cut(owner, cuts):
            continue  # glue: not the zone's data (RFC 4035 §2.2)
        for rtype, rrset in types.items():
            if owner in cuts and rtype != RRType.DS:
                continue  # a delegation's NS (and glue at the cut) stay unsigned (§2.2)
            key = ksk if rtype == RRType.DNSKEY else zsk
            signed.append(sign_rrset(rrset, key, origin, **times))
    for nsec in chain:
        signed.append(sign_rrset([nsec], zsk, origin, **times))
    return SignedZone(origin, tuple(signed), ds_record(origin, ksk.dnskey(origin), dnskey_ttl),
                      ksk.dnskey(origin), zsk.dnskey(origin))


def _rrsets(origin: str, records: Iterable[Record]) -> dict[str, dict[int, list[Record]]]:
    rrsets: dict[str, dict[int, list[Record]]] = {}
    for record in records:
        if not names.is_subdomain(record.name, origin):
            raise SigningError(f"zone {origin}: {record.name} is outside the zone")
        if record.rtype in _SIGNER_TYPES:
            raise SigningError(f"zone {origin}: {record.name} has a "
                               f"{RRType(record.rtype).name} record: is it signed already?")
        if record.rtype == RRType.DS and record.name == origin:
            raise SigningError(f"zone {origin}: a DS belongs in the parent, not at the apex")
        rrsets.setdefault(record.name, {}).setdefault(record.rtype, []).append(record)
    return rrsets


def _below_cut(owner: str, cuts: set[str]) -> bool:
    return any(owner != cut and names.is_subdomain(owner, cut) for cut in cuts)


def _nsec_chain(origin: str, rrsets: dict[str, dict[int, list[Record]]], cuts: set[str],
                ttl: int) -> list[Record]:
    """One NSEC per authoritative owner or delegation point, in canonical order, the last
    one pointing back at the apex (RFC 4034 §4.1.1, RFC 4035 §2.3)."""
    owners = sorted((owner for owner in rrsets if not _below_cut(owner, cuts)),
                    key=name_order_key)
    chain: list[Record] = []
    for index, owner in enumerate(owners):
        following = owners[(index + 1) % len(owners)]
        present = set(rrsets[owner])
        if owner in cuts:
            present &= {RRType.NS, RRType.DS}  # glue at the cut is not the parent's data
        bitmap = type_bitmap([*present, RRType.RRSIG, RRType.NSEC])
        chain.append(record_from_rdata(owner, RRType.NSEC, CLASS_IN, ttl,
                                       name_wire(following) + bitmap))
    return chain
