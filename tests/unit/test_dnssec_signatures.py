"""RRSIG verification over zones signed by ldns-signzone, for every algorithm we support."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

from resolver.dns.rdata_wire import rdata_wire
from resolver.dns.wire import Record, RRType, make_record, parse_record
from resolver.dnssec.canonical import signed_data
from resolver.dnssec.keys import Dnskey, key_tag
from resolver.dnssec.records import Rrsig
from resolver.dnssec.security import Failure, Security
from resolver.dnssec.signatures import verify_rrsig
from tests.support.signed_zones import (
    CHILD_ZONE,
    EXPIRATION_EPOCH,
    INCEPTION_EPOCH,
    NOW,
    SignedZone,
    cached_zone,
)

ZONE = "example.test."
#: ldns names, and the DNSKEY algorithm numbers they give (RFC 8624 §3.1).
ALGORITHMS = {
    "RSASHA256": 8,
    "ECDSAP256SHA256": 13,
    "ED25519": 15,
    "RSASHA1": 5,
    "RSASHA1-NSEC3-SHA1": 7,
    "RSASHA512": 10,
    "ECDSAP384SHA384": 14,
    "ED448": 16,
}


@pytest.fixture(params=list(ALGORITHMS), scope="module")
def signed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> SignedZone:
    nsec3 = request.param == "RSASHA1-NSEC3-SHA1"  # algorithm 7 exists for NSEC3 zones
    return cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, request.param, nsec3=nsec3)


def _key(zone: SignedZone) -> Dnskey:
    (record,) = zone.rrset(ZONE, RRType.DNSKEY)
    return Dnskey.from_record(record)


def _flip(record: Record, offset_from_end: int) -> Record:
    """`record` with one bit of its RDATA changed, `offset_from_end` octets from the end."""
    data = bytearray(rdata_wire(record))
    data[len(data) - offset_from_end] ^= 0x01
    return make_record(record.name, record.rtype, record.ttl, bytes(data))


def test_every_signature_of_the_zone_verifies(signed: SignedZone) -> None:
    key = _key(signed)
    assert key.algorithm == ALGORITHMS[key_name_algorithm(signed)]
    pairs = signed.signed_rrsets()
    assert len(pairs) >= 8
    for rrset, rrsig in pairs:
        check = verify_rrsig(rrset, rrsig, key, ZONE, NOW)
        assert check.verdict.security is Security.SECURE, (rrsig.to_text(), check.verdict)
        assert check.verdict.key_tag == key.key_tag


def key_name_algorithm(zone: SignedZone) -> str:
    number = int(zone.key_name.split("+")[1])
    return next(name for name, value in ALGORITHMS.items() if value == number)


def test_mixed_case_owner_and_target_verify_in_canonical_form(signed: SignedZone) -> None:
    mx = signed.rrset("mixed.example.test.", RRType.MX)
    assert "Mail.Example.test." in mx[0].rdata_text  # the case of the zone file is kept
    (rrsig,) = signed.rrsigs("mixed.example.test.", RRType.MX)
    assert verify_rrsig(mx, rrsig, _key(signed), ZONE, NOW).verdict.is_secure


def test_flipped_bit_in_rdata_is_bogus_with_ede_6(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    tampered = [_flip(www[0], 1), *www[1:]]
    verdict = verify_rrsig(tampered, rrsig, _key(signed), ZONE, NOW).verdict
    assert verdict.security is Security.BOGUS
    assert verdict.reason is Failure.DNSSEC_BOGUS and verdict.ede_code == 6


def test_flipped_bit_in_signature_is_bogus_with_ede_6(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    verdict = verify_rrsig(www, _flip(rrsig, 5), _key(signed), ZONE, NOW).verdict
    assert verdict.security is Security.BOGUS and verdict.ede_code == 6


def test_a_missing_record_of_the_rrset_is_bogus(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    assert len(www) == 2
    assert verify_rrsig(www[:1], rrsig, _key(signed), ZONE, NOW).verdict.ede_code == 6


def test_expired_signature_is_bogus_with_ede_7(signed: SignedZone) -> None:
    soa = signed.rrset(ZONE, RRType.SOA)
    (rrsig,) = signed.rrsigs(ZONE, RRType.SOA)
    verdict = verify_rrsig(soa, rrsig, _key(signed), ZONE, EXPIRATION_EPOCH + 1).verdict
    assert verdict.security is Security.BOGUS and verdict.ede_code == 7
    at_expiry = verify_rrsig(soa, rrsig, _key(signed), ZONE, EXPIRATION_EPOCH).verdict
    assert at_expiry.is_secure  # RFC 4034 §3.1.5: valid up to and including expiration


def test_signature_not_yet_valid_is_bogus_with_ede_8(signed: SignedZone) -> None:
    soa = signed.rrset(ZONE, RRType.SOA)
    (rrsig,) = signed.rrsigs(ZONE, RRType.SOA)
    verdict = verify_rrsig(soa, rrsig, _key(signed), ZONE, INCEPTION_EPOCH - 1).verdict
    assert verdict.security is Security.BOGUS and verdict.ede_code == 8


def test_ttl_is_clamped_to_original_ttl_and_to_expiration(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    key = _key(signed)
    raised = [r.with_ttl(86400) for r in www]  # a server may not raise the TTL
    assert verify_rrsig(raised, rrsig.with_ttl(86400), key, ZONE, NOW).ttl == 3600
    near_end = EXPIRATION_EPOCH - 100
    assert verify_rrsig(www, rrsig, key, ZONE, near_end).ttl == 100


def test_signature_from_another_zone_is_bogus(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    verdict = verify_rrsig(www, rrsig, _key(signed), "test.", NOW).verdict
    assert verdict.security is Security.BOGUS and "signer" in verdict.detail


def _with_dnskey_flags(key_record: Record, flags: int) -> Record:
    data = bytearray(rdata_wire(key_record))
    data[0:2] = struct.pack("!H", flags)
    return make_record(key_record.name, RRType.DNSKEY, key_record.ttl, bytes(data))


def test_key_without_the_zone_key_flag_is_not_used(signed: SignedZone) -> None:
    (key_record,) = signed.rrset(ZONE, RRType.DNSKEY)
    not_zone_key = Dnskey.from_record(_with_dnskey_flags(key_record, 0x0001))
    soa = signed.rrset(ZONE, RRType.SOA)
    (rrsig,) = signed.rrsigs(ZONE, RRType.SOA)
    assert verify_rrsig(soa, rrsig, not_zone_key, ZONE, NOW).verdict.security is Security.BOGUS


def test_wildcard_answer_verifies_under_the_name_it_was_expanded_to(
        signed: SignedZone) -> None:
    (txt,) = signed.rrset("*.wild.example.test.", RRType.TXT)
    (rrsig,) = signed.rrsigs("*.wild.example.test.", RRType.TXT)
    expanded = "a.b.wild.example.test."
    check = verify_rrsig([txt.with_name(expanded)], rrsig.with_name(expanded), _key(signed),
                         ZONE, NOW)
    assert check.verdict.is_secure


def test_labels_field_above_the_owner_label_count_is_bogus(signed: SignedZone) -> None:
    www = signed.rrset("www.example.test.", RRType.A)
    (rrsig,) = signed.rrsigs("www.example.test.", RRType.A)
    moved = [r.with_name("example.test.") for r in www]
    verdict = verify_rrsig(moved, rrsig.with_name("example.test."), _key(signed), ZONE,
                           NOW).verdict
    assert verdict.security is Security.BOGUS and "labels" in verdict.detail


def test_unsupported_algorithm_is_insecure_with_ede_1(signed: SignedZone) -> None:
    (key_record,) = signed.rrset(ZONE, RRType.DNSKEY)
    key_data = bytearray(rdata_wire(key_record))
    key_data[3] = 12  # ECC-GOST: not implemented (RFC 8624 §3.1: MUST NOT)
    gost_key = Dnskey.from_rdata(ZONE, bytes(key_data))
    soa = signed.rrset(ZONE, RRType.SOA)
    (rrsig,) = signed.rrsigs(ZONE, RRType.SOA)
    sig_data = bytearray(rdata_wire(rrsig))
    sig_data[2] = 12
    sig_data[16:18] = struct.pack("!H", key_tag(bytes(key_data)))
    gost_sig = make_record(rrsig.name, RRType.RRSIG, rrsig.ttl, bytes(sig_data))
    verdict = verify_rrsig(soa, gost_sig, gost_key, ZONE, NOW).verdict
    assert verdict.security is Security.INSECURE
    assert verdict.reason is Failure.UNSUPPORTED_DNSKEY_ALGORITHM and verdict.ede_code == 1


def test_malformed_rrsig_is_bogus_not_a_crash(signed: SignedZone) -> None:
    soa = signed.rrset(ZONE, RRType.SOA)
    for data in (b"", b"\x00" * 18, b"\x00\x06" + b"\x00" * 16 + b"\xc0\x0c"):
        broken = make_record(ZONE, RRType.RRSIG, 3600, data)
        verdict = verify_rrsig(soa, broken, _key(signed), ZONE, NOW).verdict
        assert verdict.security is Security.BOGUS


def test_rrsig_fields_read_from_ldns_output(signed: SignedZone) -> None:
    (rrsig,) = signed.rrsigs(ZONE, RRType.SOA)
    fields = Rrsig.from_record(rrsig)
    assert (fields.type_covered, fields.labels, fields.original_ttl) == (RRType.SOA, 2, 3600)
    assert (fields.inception, fields.expiration) == (INCEPTION_EPOCH, EXPIRATION_EPOCH)
    assert fields.key_tag == int(signed.key_name.split("+")[2])  # ldns's own key tag


def _python_signed(private: ed448.Ed448PrivateKey | ed25519.Ed25519PrivateKey,
                   algorithm: int) -> tuple[list[Record], Record, Dnskey]:
    """An A RRset signed here with a key made by `cryptography` (no ldns involved)."""
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    key = Dnskey.from_rdata(ZONE, struct.pack("!HBB", 257, 3, algorithm) + public)
    rrset = [parse_record("host.example.test. 300 IN A 192.0.2.7")]
    head = struct.pack("!HBBIIIH", RRType.A, algorithm, 3, 300, EXPIRATION_EPOCH,
                       INCEPTION_EPOCH, key.key_tag) + b"\x07example\x04test\x00"
    unsigned = make_record("host.example.test.", RRType.RRSIG, 300, head + b"\x00")
    data = signed_data(Rrsig.from_record(unsigned), rrset)
    rrsig = make_record("host.example.test.", RRType.RRSIG, 300, head + private.sign(data))
    return rrset, rrsig, key


@pytest.mark.parametrize(("algorithm", "make"), [
    (16, ed448.Ed448PrivateKey.generate),
    (15, ed25519.Ed25519PrivateKey.generate),
], ids=["ED448", "ED25519"])
def test_signature_made_with_cryptography_verifies_and_tampering_does_not(
        algorithm: int,
        make: Callable[[], ed448.Ed448PrivateKey | ed25519.Ed25519PrivateKey]) -> None:
    rrset, rrsig, key = _python_signed(make(), algorithm)
    assert verify_rrsig(rrset, rrsig, key, ZONE, NOW).verdict.is_secure
    other = [parse_record("host.example.test. 300 IN A 192.0.2.8")]
    assert verify_rrsig(other, rrsig, key, ZONE, NOW).verdict.security is Security.BOGUS
