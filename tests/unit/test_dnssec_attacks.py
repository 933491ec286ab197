"""Attacks on the validator.

The KeyTrap limits (CVE-2023-50387): however many keys share a tag and however many
RRSIGs an RRset carries, the validator verifies a bounded number of signatures, and data
it gave up on is bogus, never secure. Key tags are a checksum of the DNSKEY RDATA
(RFC 4034 Appendix B), so swapping two 16-bit words of a public key makes another key
with the same tag: the attacker's cheapest trick, reproduced here. And a wildcard's
NSEC replayed under another owner (CVE-2017-15105) proves no denial.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from resolver.dns.record_text import rdata_octets, record_from_rdata
from resolver.dns.wire import Record, RRType, parse_record
from resolver.dnssec import signature_math
from resolver.dnssec.chain import validate_rrset
from resolver.dnssec.keys import Dnskey
from resolver.dnssec.security import Security
from resolver.dnssec.signer import key_from_seed, sign_rrset
from resolver.dnssec.verification_budget import VerificationBudget, VerificationLimits

ZONE = "keytrap.test."
INCEPTION, EXPIRATION, NOW = 1_700_000_000, 1_800_000_000, 1_750_000_000
SIGNING_KEY = key_from_seed(b"keytrap")
GENUINE = SIGNING_KEY.dnskey(ZONE)
RRSET = [parse_record(f"www.{ZONE} 300 IN A 192.0.2.1")]
RRSIG = sign_rrset(RRSET, SIGNING_KEY, ZONE, inception=INCEPTION, expiration=EXPIRATION)


def colliding_keys(count: int) -> list[Dnskey]:
    """`count` other keys with the genuine key's tag: two words of its key swapped."""
    rdata = GENUINE.rdata
    words = [rdata[i:i + 2] for i in range(4, len(rdata), 2)]
    found: list[Dnskey] = []
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if words[i] == words[j]:
                continue
            swapped = list(words)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            found.append(Dnskey.from_rdata(ZONE, rdata[:4] + b"".join(swapped)))
            if len(found) == count:
                return found
    raise AssertionError("the key has too few distinct words")


def spoiled(rrsig: Record, variant: int) -> Record:
    """The RRSIG with its last signature octet changed: it no longer verifies."""
    rdata = bytearray(rdata_octets(rrsig))
    rdata[-1] = (rdata[-1] + 1 + variant) % 256
    return record_from_rdata(rrsig.name, RRType.RRSIG, rrsig.rclass, rrsig.ttl, bytes(rdata))


@dataclass
class Counter:
    calls: int = 0


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Counts the signature verifications (the cryptographic work) performed."""
    counter = Counter()
    real = signature_math.signature_holds

    def counting(*args: object) -> bool:
        counter.calls += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(signature_math, "signature_holds", counting)
    yield counter


def test_colliding_keys_share_the_genuine_key_tag() -> None:
    impostors = colliding_keys(30)
    assert len({k.rdata for k in impostors}) == 30
    assert {k.key_tag for k in impostors} == {GENUINE.key_tag}


def test_the_genuine_key_verifies_among_colliding_keys_when_tried_within_the_limit(
        verifications: Counter) -> None:
    check = validate_rrset(RRSET, [RRSIG], [colliding_keys(1)[0], GENUINE, *colliding_keys(30)],
                           ZONE, NOW)
    assert check.verdict.security is Security.SECURE
    assert verifications.calls == 2


def test_keys_sharing_a_tag_are_tried_at_most_per_key_tag_limit_and_the_data_is_bogus(
        verifications: Counter) -> None:
    keys = [*colliding_keys(50), GENUINE]
    check = validate_rrset(RRSET, [RRSIG], keys, ZONE, NOW)
    assert check.verdict.security is Security.BOGUS
    assert verifications.calls == VerificationLimits().per_key_tag


def test_many_failing_rrsigs_cost_at_most_per_rrset_verifications(
        verifications: Counter) -> None:
    rrsigs = [spoiled(RRSIG, n) for n in range(40)] + [RRSIG]
    check = validate_rrset(RRSET, rrsigs, [GENUINE], ZONE, NOW)
    assert check.verdict.security is Security.BOGUS
    assert "KeyTrap" in check.verdict.detail
    assert verifications.calls == VerificationLimits().per_rrset


def test_keytrap_product_of_keys_and_rrsigs_stays_within_the_rrset_limit(
        verifications: Counter) -> None:
    rrsigs = [spoiled(RRSIG, n) for n in range(40)]
    validate_rrset(RRSET, rrsigs, colliding_keys(50), ZONE, NOW)
    assert verifications.calls == VerificationLimits().per_rrset  # not 40 x 50 = 2,000


def test_a_resolution_budget_stops_verifying_once_spent(verifications: Counter) -> None:
    budget = VerificationBudget(VerificationLimits(per_resolution=20))
    verdicts = [validate_rrset(RRSET, [spoiled(RRSIG, n) for n in range(4)], [GENUINE], ZONE,
                               NOW, budget=budget).verdict for _ in range(10)]
    assert verifications.calls == 20 and budget.exhausted
    assert all(v.security is Security.BOGUS for v in verdicts)
    # Once spent, even good data is not verified, so it cannot be called secure.
    last = validate_rrset(RRSET, [RRSIG], [GENUINE], ZONE, NOW, budget=budget)
    assert last.verdict.security is Security.BOGUS and verifications.calls == 20


def test_an_honest_rrset_costs_one_verification(verifications: Counter) -> None:
    budget = VerificationBudget()
    assert validate_rrset(RRSET, [RRSIG], [GENUINE], ZONE, NOW, budget=budget).verdict.is_secure
    assert verifications.calls == 1 and budget.spent == 1


# -- a wildcard-expanded NSEC proves nothing (CVE-2017-15105) ------------------------------


def test_a_wildcard_expanded_nsec_is_no_proof_of_denial() -> None:
    """An NSEC signed at *.keytrap.test. and served under another owner verifies (a
    wildcard's expansion does), but its span says nothing about that owner."""
    from resolver.dnssec.security import Verdict
    from resolver.engine.validation import ZoneTrust, verified_proof

    nsec = parse_record(f"*.{ZONE} 300 IN NSEC www.{ZONE} TXT RRSIG NSEC")
    rrsig = sign_rrset([nsec], SIGNING_KEY, ZONE, inception=INCEPTION, expiration=EXPIRATION)
    trust = ZoneTrust(ZONE, Verdict.secure(ZONE, "test"), (GENUINE,), (), 300)
    assert verified_proof([nsec, rrsig], trust, NOW) == [nsec]  # at its own name: a proof

    expanded = [parse_record(r.to_text().replace(f"*.{ZONE}", f"!.{ZONE}", 1))
                for r in (nsec, rrsig)]
    assert validate_rrset(expanded[:1], expanded[1:], [GENUINE], ZONE, NOW).verdict.is_secure
    verdict = verified_proof(expanded, trust, NOW)
    assert isinstance(verdict, Verdict) and verdict.security is Security.BOGUS
    assert "wildcard expansion" in verdict.detail
