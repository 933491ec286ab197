"""DNSKEY and DS values: DS digests against ldns-key2ds, key flags, malformed RDATA."""

from __future__ import annotations

import pytest

from resolver.dns.wire import RRType, parse_record
from resolver.dnssec.keys import Dnskey, Ds, ds_digest, ds_matches, matching_keys
from resolver.dnssec.records import MalformedRdata
from tests.support.signed_zones import CHILD_ZONE, SignedZone, cached_zone

ZONE = "example.test."


@pytest.fixture(params=["RSASHA256", "ECDSAP256SHA256", "ED25519"], scope="module")
def signed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> SignedZone:
    return cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, request.param)


def _key(zone: SignedZone) -> Dnskey:
    (record,) = zone.rrset(ZONE, RRType.DNSKEY)
    return Dnskey.from_record(record)


@pytest.mark.parametrize("digest_flag", ["-1", "-2", "-4"], ids=["sha1", "sha256", "sha384"])
def test_ds_from_ldns_key2ds_matches_its_key(signed: SignedZone, digest_flag: str) -> None:
    ds = Ds.from_record(parse_record(signed.ds_from_ldns(digest_flag)))
    key = _key(signed)
    assert ds.digest_type == {"-1": 1, "-2": 2, "-4": 4}[digest_flag]
    assert ds_digest(key, ds.digest_type) == ds.digest
    assert ds_matches(ds, key)
    assert matching_keys([ds], [key]) == [(ds, key)]


def test_a_changed_digest_does_not_match(signed: SignedZone) -> None:
    ds = Ds.from_record(parse_record(signed.ds_text))
    changed = Ds(ds.owner, ds.key_tag, ds.algorithm, ds.digest_type,
                 bytes([ds.digest[0] ^ 0x80]) + ds.digest[1:])
    assert not ds_matches(changed, _key(signed))
    assert matching_keys([changed], [_key(signed)]) == []


def test_an_unknown_digest_type_matches_nothing(signed: SignedZone) -> None:
    ds = Ds.from_record(parse_record(signed.ds_text))
    gost = Ds(ds.owner, ds.key_tag, ds.algorithm, 3, ds.digest)  # GOST R 34.11-94
    assert not gost.digest_supported
    assert ds_digest(_key(signed), 3) is None
    assert not ds_matches(gost, _key(signed))


def test_ksk_flags_are_read(signed: SignedZone) -> None:
    key = _key(signed)
    assert key.flags == 257 and key.protocol == 3
    assert key.is_zone_key and key.is_secure_entry_point and not key.is_revoked


@pytest.mark.parametrize("rdata", [b"", b"\x01\x01\x03", b"\x01\x01\x03\x08"])
def test_truncated_dnskey_rdata_is_malformed(rdata: bytes) -> None:
    with pytest.raises(MalformedRdata):
        Dnskey.from_rdata(ZONE, rdata)


def test_truncated_ds_rdata_is_malformed() -> None:
    with pytest.raises(MalformedRdata):
        Ds.from_rdata(ZONE, b"\x00\x01\x08\x02")
