"""The chain of trust over a parent and a child zone signed by ldns, the parent anchored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from resolver.dns.wire import RRType, parse_record
from resolver.dnssec.chain import ZoneEvidence, validate_dnskeys, validate_rrset, walk_chain
from resolver.dnssec.keys import Dnskey, Ds
from resolver.dnssec.security import Failure, Security
from tests.support.signed_zones import (
    CHILD_ZONE,
    EXPIRATION_EPOCH,
    NOW,
    PARENT_ZONE,
    SignedZone,
    cached_zone,
    evidence,
)

PARENT = "test."
CHILD = "example.test."


@pytest.fixture(scope="module", params=["ECDSAP256SHA256", "RSASHA256"])
def zones(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[SignedZone, SignedZone]:
    child = cached_zone(tmp_path_factory, CHILD, CHILD_ZONE, "ED25519")
    parent = cached_zone(tmp_path_factory, PARENT, PARENT_ZONE + child.ds_text, request.param)
    return parent, child


def _anchor(parent: SignedZone) -> list[Ds]:
    return [Ds.from_record(parse_record(parent.ds_text))]


def test_chain_from_anchor_to_child_is_secure_and_its_data_validates(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, child = zones
    chain = walk_chain(_anchor(parent), [evidence(parent), evidence(child, parent)], NOW)
    assert [s.verdict.security for s in chain.steps] == [Security.SECURE, Security.SECURE]
    assert [s.zone for s in chain.steps] == [PARENT, CHILD]
    child_tag = int(child.key_name.split("+")[2])
    assert chain.steps[1].dnskey_tag == child_tag and chain.steps[1].algorithm == 15
    assert chain.steps[1].ds_key_tag == child_tag
    www = child.rrset("www.example.test.", RRType.A)
    check = validate_rrset(www, child.rrsigs("www.example.test.", RRType.A),
                           chain.trusted_keys, CHILD, NOW)
    assert check.verdict.is_secure and check.ttl == 3600
    assert "example.test. DS" in chain.steps[1].describe()
    assert f"DNSKEY {child_tag} alg 15: secure" in chain.steps[1].describe()


def test_changed_ds_digest_is_bogus_with_ede_6(zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    (ds,) = _anchor(parent)
    changed = replace(ds, digest=bytes(len(ds.digest)))
    chain = walk_chain([changed], [evidence(parent)], NOW)
    assert chain.verdict.security is Security.BOGUS and chain.verdict.ede_code == 6
    assert chain.trusted_keys == ()


def test_ds_for_a_key_not_in_the_set_is_bogus_with_ede_9(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    (ds,) = _anchor(parent)
    chain = walk_chain([replace(ds, key_tag=(ds.key_tag + 1) % 65536)], [evidence(parent)],
                       NOW)
    assert chain.verdict.security is Security.BOGUS and chain.verdict.ede_code == 9


def test_only_unknown_digest_types_make_the_zone_insecure_with_ede_2(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    (ds,) = _anchor(parent)
    chain = walk_chain([replace(ds, digest_type=3)], [evidence(parent)], NOW)
    assert chain.verdict.security is Security.INSECURE and chain.verdict.ede_code == 2


def test_only_unsupported_algorithms_make_the_zone_insecure_with_ede_1(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    (ds,) = _anchor(parent)
    chain = walk_chain([replace(ds, algorithm=12)], [evidence(parent)], NOW)
    assert chain.verdict.security is Security.INSECURE and chain.verdict.ede_code == 1


def test_dnskey_rrset_without_rrsig_is_bogus_with_ede_10(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    step, keys = validate_dnskeys(PARENT, parent.rrset(PARENT, RRType.DNSKEY), [], NOW,
                                  trusted_ds=_anchor(parent))
    assert step.verdict.security is Security.BOGUS and step.verdict.ede_code == 10
    assert keys == ()


def test_expired_dnskey_signature_is_bogus_with_ede_7(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    chain = walk_chain(_anchor(parent), [evidence(parent)], EXPIRATION_EPOCH + 60)
    assert chain.verdict.ede_code == 7


def test_a_configured_dnskey_anchors_the_zone(zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    key = Dnskey.from_record(parse_record(parent.key_text.split(";")[0]))
    chain = walk_chain([], [evidence(parent)], NOW, anchor_keys=[key])
    assert chain.verdict.is_secure and chain.trusted_keys == (key,)


def test_unsigned_delegation_proven_by_nsec_is_insecure(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, _ = zones
    unsigned = ZoneEvidence("unsigned.test.", (), (),
                            ds_denial=tuple(parent.rrset("unsigned.test.", RRType.NSEC)))
    chain = walk_chain(_anchor(parent), [evidence(parent), unsigned], NOW)
    assert chain.verdict.security is Security.INSECURE and chain.zone == "unsigned.test."
    assert chain.trusted_keys == ()


def test_missing_ds_without_a_denial_is_bogus_with_ede_12(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, child = zones
    stripped = replace(evidence(child, parent), ds=(), ds_rrsigs=())
    chain = walk_chain(_anchor(parent), [evidence(parent), stripped], NOW)
    assert chain.verdict.security is Security.BOGUS
    assert chain.verdict.reason is Failure.NSEC_MISSING


def test_ds_rrset_not_signed_by_the_parent_is_bogus(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, child = zones
    unsigned_ds = replace(evidence(child, parent), ds_rrsigs=())
    chain = walk_chain(_anchor(parent), [evidence(parent), unsigned_ds], NOW)
    assert chain.verdict.security is Security.BOGUS and chain.verdict.ede_code == 10


def test_rrset_signed_by_a_key_that_is_not_trusted_is_bogus_with_ede_9(
        zones: tuple[SignedZone, SignedZone]) -> None:
    parent, child = zones
    parent_keys = [Dnskey.from_record(r) for r in parent.rrset(PARENT, RRType.DNSKEY)]
    www = child.rrset("www.example.test.", RRType.A)
    check = validate_rrset(www, child.rrsigs("www.example.test.", RRType.A), parent_keys,
                           CHILD, NOW)
    assert check.verdict.security is Security.BOGUS and check.verdict.ede_code == 9
