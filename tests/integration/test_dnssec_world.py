"""A signed world on real servers, compared case by case with a validating Unbound.

One NSD serves a signed root, `test.` and one zone per case (tests/support/dnssec_world.py,
signed with ldns-signzone); one Unbound 1.17 (validator iterator, `ede: yes`) and one
`resolver serve` iterate it with the same trust anchor. Each case is asked of both with
`dig +dnssec`; ours must give the outcome the RFCs call for (RFC 4035 §3.2.3 and §5,
RFC 6840 §5.7-5.8 for AD and CD, RFC 8914 for the EDE code, RFC 9276 §3.2 for NSEC3
iterations) and agree with Unbound on rcode and AD. Bogus cases are also asked with CD=1,
which must return the data without AD (RFC 4035 §3.2.2).

The EDE codes agree too (Unbound 1.17.1 as Debian packages it; asserted below): 6 for a
signature that does not verify, 7 expired, 8 not yet valid, 9 for a DS that matches no key
and for a missing DNSKEY RRset, 10 for missing RRSIGs (also where the key the DS names
signs nothing), 12 for an NXDOMAIN without its NSEC; none on secure or insecure answers
(RFC 8914 defines 1, 2 and 27 but neither attaches them to an insecure answer). Two
differences show outside this table, on repeats: Unbound answers a failure it has cached
with a plain 6, where we repeat the first code ("recently failed: ..."); and Unbound allows
a clock skew of up to a day (`val-sig-skew-max`), so the validity windows here are three
days off.

Unbound learns every zone cut of this world from its stub zones (it sends what referrals
teach it to port 53); ours follows the hints alone, and where NSD answers a child's name as
the parent's server (it serves them all), it finds the cut by the DS walk of
`TrustFetching._zone_of_unsigned` (the insecure cases, opt-out and the CNAME into an
unsigned zone were SERVFAIL with EDE 10 before it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dnssec_world import CASES, Answer, Case, World, running_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("dnssec-world")) as running:
        yield running


def _ids(case: Case) -> str:
    return case.name


def _outcome(answer: Answer) -> tuple[str, bool]:
    return answer.rcode, answer.ad


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_case_has_the_rfc_outcome_and_agrees_with_unbound(world: World, case: Case) -> None:
    ours = world.ask("ours", case)
    unbound = world.ask("unbound", case)
    assert _outcome(ours) == (case.rcode, case.ad), ours.text
    if case.ede is None:
        assert ours.ede == (), ours.text
    else:
        assert ours.ede == (case.ede,), ours.text
    assert _outcome(ours) == _outcome(unbound), f"ours:\n{ours.text}\nunbound:\n{unbound.text}"
    assert ours.ede == unbound.ede, f"ours:\n{ours.text}\nunbound:\n{unbound.text}"


@pytest.mark.parametrize("case", [c for c in CASES if c.bogus], ids=_ids)
def test_bogus_case_with_cd_returns_the_data_without_ad(world: World, case: Case) -> None:
    ours = world.ask("ours", case, cd=True)
    unbound = world.ask("unbound", case, cd=True)
    assert ours.rcode == "NOERROR" and not ours.ad, ours.text
    assert f"{case.qname}\t" in ours.text and "\tIN\tA\t192.0.2." in ours.text, ours.text
    assert _outcome(ours) == _outcome(unbound), f"ours:\n{ours.text}\nunbound:\n{unbound.text}"


def test_every_signed_zone_of_the_world_carries_rrsigs_from_the_signer(world: World) -> None:
    signed = {p.name: p for p in world.directory.rglob("*.zone.signed")}
    assert {".zone.signed", "test.zone.signed", "alg8.test.zone.signed",
            "iter200.test.zone.signed"} <= set(signed)
    for name in (".zone.signed", "alg16.test.zone.signed", "optout.test.zone.signed"):
        assert "\tRRSIG\t" in signed[name].read_text(), name
