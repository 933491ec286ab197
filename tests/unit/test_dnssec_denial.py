"""NSEC and NSEC3 denial of existence over zones signed by ldns-signzone."""

from __future__ import annotations

import base64

import pytest

from resolver.dns.rdata_wire import rdata_wire
from resolver.dns.wire import Record, RRType, make_record
from resolver.dnssec.denial import nsec3_hash, prove_nodata, prove_nxdomain, prove_wildcard_answer
from resolver.dnssec.security import Failure, Security
from tests.support.signed_zones import CHILD_ZONE, SignedZone, cached_zone

ZONE = "example.test."
ABSENT = ["nothere.example.test.", "a.b.c.example.test.", "zzzz.example.test.",
          "0.example.test.", "x.www.example.test."]
PRESENT = ["www.example.test.", "mixed.example.test.", "example.test.", "ns1.example.test."]


@pytest.fixture(scope="module", params=["nsec", "nsec3"])
def signed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> SignedZone:
    return cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ECDSAP256SHA256",
                       nsec3=request.param == "nsec3")


@pytest.fixture(scope="module")
def opt_out(tmp_path_factory: pytest.TempPathFactory) -> SignedZone:
    return cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ED25519", nsec3=True,
                       opt_out=True)


def _denials(zone: SignedZone) -> list[Record]:
    return zone.of_type(RRType.NSEC) + zone.of_type(RRType.NSEC3)


@pytest.mark.parametrize("qname", ABSENT)
def test_nxdomain_proof_holds_for_a_name_that_does_not_exist(signed: SignedZone,
                                                             qname: str) -> None:
    verdict = prove_nxdomain(qname, ZONE, _denials(signed))
    assert verdict.security is Security.SECURE, verdict.detail


@pytest.mark.parametrize("qname", PRESENT)
def test_nxdomain_proof_fails_for_a_name_that_exists(signed: SignedZone, qname: str) -> None:
    assert prove_nxdomain(qname, ZONE, _denials(signed)).security is Security.BOGUS


def test_nxdomain_below_a_delegation_is_not_proven(signed: SignedZone) -> None:
    # The parent-side records at sub. say nothing about names below the cut.
    assert prove_nxdomain("x.sub.example.test.", ZONE, _denials(signed)).security \
        is Security.BOGUS


def test_nxdomain_under_a_wildcard_is_not_proven(signed: SignedZone) -> None:
    verdict = prove_nxdomain("x.wild.example.test.", ZONE, _denials(signed))
    assert verdict.security is Security.BOGUS and "should have been answered" in verdict.detail


def test_nxdomain_lacking_one_needed_record_is_nsec_missing_with_ede_12(
        signed: SignedZone) -> None:
    qname = "nothere.example.test."
    needed = _denials(signed)
    # Drop a record the proof needs (the span of the name, of its wildcard, or the
    # closest encloser's): what is left proves nothing.
    wildcard_denier = [r for r in needed if prove_nxdomain(
        qname, ZONE, [x for x in needed if x is not r]).security is Security.BOGUS]
    assert wildcard_denier  # some record is needed
    verdict = prove_nxdomain(qname, ZONE, [r for r in needed if r is not wildcard_denier[0]])
    assert verdict.reason is Failure.NSEC_MISSING and verdict.ede_code == 12


def test_no_records_prove_nothing() -> None:
    assert prove_nxdomain("nothere.example.test.", ZONE, []).ede_code == 12
    assert prove_nodata("www.example.test.", RRType.AAAA, ZONE, []).ede_code == 12


@pytest.mark.parametrize(("qname", "qtype"), [
    ("www.example.test.", RRType.AAAA),
    ("www.example.test.", RRType.MX),
    ("example.test.", RRType.A),
    ("wild.example.test.", RRType.A),       # an empty non-terminal
    ("x.wild.example.test.", RRType.A),     # a wildcard without that type
    ("sub.example.test.", RRType.DS),       # an unsigned delegation, from the parent side
])
def test_nodata_proof_holds_when_the_type_is_absent(signed: SignedZone, qname: str,
                                                    qtype: int) -> None:
    verdict = prove_nodata(qname, qtype, ZONE, _denials(signed))
    assert verdict.security is Security.SECURE, verdict.detail


@pytest.mark.parametrize(("qname", "qtype"), [
    ("www.example.test.", RRType.A),
    ("alias.example.test.", RRType.A),      # a CNAME answers every type
    ("x.wild.example.test.", RRType.TXT),   # the wildcard has TXT
    ("example.test.", RRType.SOA),
    ("sub.example.test.", RRType.A),        # parent side of a cut: only DS can be denied
    ("example.test.", RRType.DS),           # the apex record is the child's: not for DS
])
def test_nodata_proof_fails_when_the_type_exists(signed: SignedZone, qname: str,
                                                 qtype: int) -> None:
    assert prove_nodata(qname, qtype, ZONE, _denials(signed)).security is Security.BOGUS


def test_wildcard_expansion_is_proven_for_a_name_that_does_not_exist(
        signed: SignedZone) -> None:
    records = _denials(signed)
    for qname in ("x.wild.example.test.", "a.b.wild.example.test."):
        verdict = prove_wildcard_answer(qname, "*.wild.example.test.", ZONE, records)
        assert verdict.security is Security.SECURE, verdict.detail


def test_wildcard_expansion_is_refused_when_a_closer_name_exists(signed: SignedZone) -> None:
    records = _denials(signed)
    # www exists: an answer for www from the apex wildcard would be a forgery.
    assert prove_wildcard_answer("www.example.test.", "*.example.test.", ZONE,
                                 records).security is Security.BOGUS
    assert prove_wildcard_answer("x.example.test.", "*.wild.example.test.", ZONE,
                                 records).security is Security.BOGUS


def test_nsec3_hash_matches_the_owners_ldns_wrote(tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    zone = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ECDSAP256SHA256", nsec3=True)
    owners = {r.name.split(".")[0] for r in zone.of_type(RRType.NSEC3)}
    for name in ("example.test.", "www.example.test.", "wild.example.test."):
        label = base64.b32hexencode(nsec3_hash(name, bytes.fromhex("c0ffee"), 1)).decode()
        assert label.lower() in owners


def test_opt_out_span_makes_a_missing_ds_insecure_not_secure(opt_out: SignedZone,
                                                             signed: SignedZone) -> None:
    # "other" is not in the zone: with opt-out it may be an unsigned delegation.
    verdict = prove_nodata("other.example.test.", RRType.DS, ZONE, _denials(opt_out))
    assert verdict.security is Security.INSECURE and "opt-out" in verdict.detail
    nxdomain = prove_nxdomain("other.example.test.", ZONE, _denials(opt_out))
    assert nxdomain.security is Security.INSECURE
    if signed.of_type(RRType.NSEC3):  # without opt-out the same proofs are not insecure
        assert prove_nodata("other.example.test.", RRType.DS, ZONE,
                            _denials(signed)).security is Security.BOGUS
        assert prove_nxdomain("other.example.test.", ZONE,
                              _denials(signed)).security is Security.SECURE


def test_nsec3_iterations_above_the_limit_are_insecure_with_ede_27(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    zone = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ED25519", nsec3=True,
                       iterations=151)
    records = _denials(zone)
    verdict = prove_nxdomain("nothere.example.test.", ZONE, records)
    assert verdict.security is Security.INSECURE
    assert verdict.reason is Failure.UNSUPPORTED_NSEC3_ITERATIONS and verdict.ede_code == 27
    raised = prove_nxdomain("nothere.example.test.", ZONE, records, iterations_limit=200)
    assert raised.security is Security.SECURE  # the limit is configurable


def _with_nsec3_algorithm(record: Record, algorithm: int) -> Record:
    data = bytearray(rdata_wire(record))
    data[0] = algorithm
    return make_record(record.name, RRType.NSEC3, record.ttl, bytes(data))


def test_unknown_nsec3_hash_algorithm_is_insecure_not_bogus(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    zone = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ECDSAP256SHA256", nsec3=True)
    unknown = [_with_nsec3_algorithm(r, 2) for r in zone.of_type(RRType.NSEC3)]
    verdict = prove_nxdomain("nothere.example.test.", ZONE, unknown)
    assert verdict.security is Security.INSECURE


def test_malformed_denial_records_are_ignored_not_a_crash() -> None:
    junk = [make_record("abc.example.test.", RRType.NSEC3, 300, b"\x01"),
            make_record("www.example.test.", RRType.NSEC, 300, b"\xc0\x0c")]
    assert prove_nxdomain("nothere.example.test.", ZONE, junk).security is not Security.SECURE
    assert prove_nodata("www.example.test.", 1, ZONE, junk).security is not Security.SECURE


def test_opt_out_span_makes_wildcard_answers_and_nodata_insecure(opt_out: SignedZone,
                                                                 signed: SignedZone) -> None:
    """RFC 5155 §9.2 (Unbound's rule too): a proof that rests on an opt-out NSEC3 covering
    the next closer name sets no AD: a wildcard expansion, a NODATA from the wildcard, a
    NODATA for a name that has neither a matching NSEC3 nor a wildcard."""
    records = _denials(opt_out)
    expansion = prove_wildcard_answer("x.wild.example.test.", "*.wild.example.test.", ZONE,
                                      records)
    assert expansion.security is Security.INSECURE and "opt-out" in expansion.detail
    wildcard_nodata = prove_nodata("x.wild.example.test.", RRType.MX, ZONE, records)
    assert wildcard_nodata.security is Security.INSECURE
    plain_nodata = prove_nodata("other.example.test.", RRType.MX, ZONE, records)
    assert plain_nodata.security is Security.INSECURE
    if signed.of_type(RRType.NSEC3):  # the same zone without opt-out: secure, or no proof
        plain = _denials(signed)
        assert prove_wildcard_answer("x.wild.example.test.", "*.wild.example.test.", ZONE,
                                     plain).security is Security.SECURE
        assert prove_nodata("x.wild.example.test.", RRType.MX, ZONE,
                            plain).security is Security.SECURE
        assert prove_nodata("other.example.test.", RRType.MX, ZONE,
                            plain).security is Security.BOGUS


def test_nxdomain_for_an_empty_non_terminal_is_not_proven(signed: SignedZone) -> None:
    # wild.example.test. has no records but *.wild.example.test. lies below it: it exists.
    assert prove_nxdomain("wild.example.test.", ZONE, _denials(signed)).security \
        is Security.BOGUS


def test_an_nsec_whose_next_name_lies_below_shows_an_empty_non_terminal(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from resolver.dnssec.denial import shows_empty_non_terminal

    # With NSEC (NSEC3 chains carry a record for each empty non-terminal instead).
    zone = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ECDSAP256SHA256", nsec3=False)
    nsec = zone.of_type(RRType.NSEC)
    assert shows_empty_non_terminal("wild.example.test.", ZONE, nsec)
    assert not shows_empty_non_terminal("nothere.example.test.", ZONE, nsec)
    assert prove_nodata("wild.example.test.", RRType.A, ZONE, nsec).is_secure
