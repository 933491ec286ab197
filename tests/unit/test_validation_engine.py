"""DNSSEC validation in the engine and the handler, against signed zones served in memory.

The zones are signed with ldns-signzone (tests/support/signed_zones.py) and served by
tests/support/signed_authority.py: a signed root (the trust anchor is its DS), a signed
`test.` delegating to `example.test.` (NSEC), `nsec3.test.` (NSEC3) and `optout.test.`
(NSEC3 opt-out, with an unsigned child), and to `unsigned.test.` without a DS.
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.extended_errors import EDNS_OPTION_EDE, ExtendedError
from resolver.dns.wire import Message, Question, Rcode, RRType
from resolver.dnssec.anchors import parse_trust_anchors
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.delegation import parse_root_hints
from resolver.engine.events import ChainStepChecked, DataValidated, Outcome, TraceEvent
from resolver.engine.failure import FailureKind
from resolver.engine.network import Transport
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings, ValidationSettings
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.service.resolver_service import ResolverService
from tests.support.labnet import FakeClock
from tests.support.signed_authority import SignedAuthority, SignedNetwork, SignedZoneData
from tests.support.signed_zones import EXPIRATION_EPOCH, INCEPTION_EPOCH, NOW, sign_zone

ROOT_IP, TEST_IP, EXAMPLE_IP, UNSIGNED_IP, NSEC3_IP, OPTOUT_IP = (
    "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5", "127.0.1.6")
#: The address of www.example.test. in its signed A record, as it appears on the wire.
WWW_ADDRESS = bytes([192, 0, 2, 2])
CLIENT = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)

EXAMPLE = f"""\
$ORIGIN example.test.
$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@ IN NS ns1.example.test.
ns1 IN A {EXAMPLE_IP}
www IN A 192.0.2.2
*.wild IN TXT "wildcard"
alias IN CNAME www.example.test.
far IN CNAME www.nsec3.test.
"""
NSEC3_ZONE = f"""\
$ORIGIN nsec3.test.
$TTL 3600
@ IN SOA ns.nsec3.test. hostmaster.nsec3.test. 1 7200 3600 1209600 300
@ IN NS ns.nsec3.test.
ns IN A {NSEC3_IP}
www IN A 192.0.2.7
*.wild IN TXT "wildcard"
"""
OPTOUT_ZONE = f"""\
$ORIGIN optout.test.
$TTL 3600
@ IN SOA ns.optout.test. hostmaster.optout.test. 1 7200 3600 1209600 300
@ IN NS ns.optout.test.
ns IN A {OPTOUT_IP}
www IN A 192.0.2.8
child IN NS ns.unsigned.test.
"""
UNSIGNED_ZONE = f"""\
$ORIGIN unsigned.test.
$TTL 3600
@ IN SOA ns.unsigned.test. hostmaster.unsigned.test. 1 7200 3600 1209600 300
@ IN NS ns.unsigned.test.
ns IN A {UNSIGNED_IP}
www IN A 192.0.2.9
"""
UNSIGNED_CHILD = """\
$ORIGIN child.optout.test.
$TTL 3600
@ IN SOA ns.unsigned.test. hostmaster.unsigned.test. 1 7200 3600 1209600 300
@ IN NS ns.unsigned.test.
www IN A 192.0.2.10
"""


def _test_zone(ds_lines: str) -> str:
    return f"""\
$ORIGIN test.
$TTL 3600
@ IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300
@ IN NS ns.test.
ns IN A {TEST_IP}
example IN NS ns1.example.test.
ns1.example IN A {EXAMPLE_IP}
nsec3 IN NS ns.nsec3.test.
ns.nsec3 IN A {NSEC3_IP}
optout IN NS ns.optout.test.
ns.optout IN A {OPTOUT_IP}
unsigned IN NS ns.unsigned.test.
ns.unsigned IN A {UNSIGNED_IP}
{ds_lines}"""


def _root_zone(ds_line: str) -> str:
    return f"""\
$ORIGIN .
$TTL 3600
. IN SOA a.root. hostmaster.root. 1 7200 3600 1209600 300
. IN NS a.root.
a.root. IN A {ROOT_IP}
test. IN NS ns.test.
ns.test. IN A {TEST_IP}
{ds_line}"""


@dataclass(frozen=True)
class SignedWorld:
    zones: dict[str, SignedZoneData]
    anchor_text: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SignedWorld:
    base: Path = tmp_path_factory.mktemp("signed-world")
    example = sign_zone(base / "example", "example.test.", EXAMPLE, "ECDSAP256SHA256")
    nsec3 = sign_zone(base / "nsec3", "nsec3.test.", NSEC3_ZONE, "ECDSAP256SHA256",
                      nsec3=True)
    optout = sign_zone(base / "optout", "optout.test.", OPTOUT_ZONE, "ED25519", nsec3=True,
                       opt_out=True)
    ds_lines = example.ds_text + nsec3.ds_text + optout.ds_text
    test = sign_zone(base / "test", "test.", _test_zone(ds_lines), "ECDSAP256SHA256")
    root = sign_zone(base / "root", ".", _root_zone(test.ds_text), "ECDSAP256SHA256")
    from resolver.dns.wire import parse_records
    zones = {z.origin: SignedZoneData(z.origin, z.records)
             for z in (example, nsec3, optout, test, root)}
    zones["unsigned.test."] = SignedZoneData("unsigned.test.", parse_records(UNSIGNED_ZONE))
    zones["child.optout.test."] = SignedZoneData("child.optout.test.",
                                                 parse_records(UNSIGNED_CHILD))
    return SignedWorld(zones, root.ds_text)


@dataclass
class Rig:
    service: ResolverService
    network: SignedNetwork
    events: list[TraceEvent]

    def resolve(self, name: str, rtype: int = RRType.A, *, cd: bool = False) -> Outcome:
        return asyncio.run(self.service.resolve(
            Question(name, rtype), observer=self.events.append, checking_disabled=cd))

    def ask(self, name: str, rtype: int = RRType.A, *, do: bool = True, ad: bool = False,
            cd: bool = False) -> Message:
        """A client query through the handler, as a stub sends it."""
        wire = bytearray(make_query(Question(name, rtype), query_id=4242,
                                    recursion_desired=True, dnssec_ok=do,
                                    checking_disabled=cd))
        if ad:
            wire[3] |= 0x20
        handler = QueryHandler(self.service)
        reply = asyncio.run(handler.handle(bytes(wire), CLIENT))
        assert reply is not None
        return decode(reply)


def rig(world: SignedWorld, *, wall: float = NOW, validate: bool = True,
        insecure_domains: tuple[str, ...] = (),
        also_served_by: dict[str, tuple[str, ...]] | None = None) -> Rig:
    """`also_served_by` adds zones to a server's own (address -> zone origins): one
    authority for a parent and its child, as one NSD often is."""
    clock = FakeClock()
    servers = {
        ROOT_IP: SignedAuthority([world.zones["."]]),
        TEST_IP: SignedAuthority([world.zones["test."]]),
        EXAMPLE_IP: SignedAuthority([world.zones["example.test."]]),
        NSEC3_IP: SignedAuthority([world.zones["nsec3.test."]]),
        OPTOUT_IP: SignedAuthority([world.zones["optout.test."]]),
        UNSIGNED_IP: SignedAuthority([world.zones["unsigned.test."],
                                      world.zones["child.optout.test."]]),
    }
    for address, origins in (also_served_by or {}).items():
        servers[address] = SignedAuthority([*servers[address].zones,
                                            *(world.zones[o] for o in origins)])
    network = SignedNetwork(clock, servers)
    validation = ValidationSettings(anchors=parse_trust_anchors(world.anchor_text),
                                    insecure_domains=insecure_domains)
    settings = EngineSettings(validation=validation if validate else None)
    state = SharedState(cache=RecordCache(CacheSettings(), timer=clock),
                        selection=ServerSelection(),
                        root_hints=parse_root_hints(f". 3600000 NS a.root.\n"
                                                    f"a.root. 3600000 A {ROOT_IP}"))
    service = ResolverService(settings=settings, state=state, network=network, clock=clock,
                              rng=random.Random(7), wall_clock=lambda: wall)
    return Rig(service, network, [])


def ede_of(message: Message) -> list[int]:
    assert message.edns is not None
    return [struct.unpack("!H", data[:2])[0] for code, data in message.edns.options
            if code == EDNS_OPTION_EDE]


def tamper_www(reply: bytes) -> bytes:
    """Change the signed address of www.example.test.: its RRSIG no longer verifies."""
    return reply.replace(WWW_ADDRESS, bytes([192, 0, 2, 99]))


# -- positive answers ------------------------------------------------------------------


def test_signed_answer_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("www.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE
    assert [rr.address for rr in outcome.answer] == ["192.0.2.2"]
    assert any(rr.rtype == RRType.RRSIG for rr in outcome.signatures)


def test_upstream_queries_carry_the_do_bit_when_validating(world: SignedWorld) -> None:
    sent: list[bytes] = []
    test_rig = rig(world)
    original = test_rig.network.exchange

    async def recording(query: bytes, *args: object, **kwargs: object) -> bytes:
        sent.append(query)
        return await original(query, *args, **kwargs)  # type: ignore[arg-type]

    test_rig.network.exchange = recording  # type: ignore[method-assign]
    test_rig.resolve("www.example.test.")
    assert sent and all(decode(q).edns is not None and decode(q).edns.do  # type: ignore[union-attr]
                        for q in sent)


def test_without_validation_queries_have_no_do_bit_and_answers_no_status(
        world: SignedWorld) -> None:
    test_rig = rig(world, validate=False)
    outcome = test_rig.resolve("www.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is None
    assert not outcome.signatures
    asked_types = {q.rtype for _, q in test_rig.network.asked}
    assert RRType.DNSKEY not in asked_types and RRType.DS not in asked_types


def test_chain_of_trust_is_traced_from_the_root_down(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("www.example.test.")
    steps = [e for e in test_rig.events if isinstance(e, ChainStepChecked)]
    assert [s.zone for s in steps] == [".", "test.", "example.test."]
    assert all(s.security == "secure" and s.dnskey_tag is not None for s in steps)
    assert steps[1].ds_key_tag == steps[1].dnskey_tag  # the DS names the key that signs
    verdicts = [e for e in test_rig.events if isinstance(e, DataValidated)]
    assert verdicts[-1].security == "secure" and verdicts[-1].zone == "example.test."


def test_trust_is_cached_per_zone(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("www.example.test.")
    before = test_rig.network.received.copy()
    outcome = test_rig.resolve("alias.example.test.")
    assert outcome.security is Security.SECURE
    dnskey_queries = [q for _, q in test_rig.network.asked if q.rtype == RRType.DNSKEY]
    assert len(dnskey_queries) == 3, "one DNSKEY query per zone, none again"
    assert sum(test_rig.network.received.values()) - sum(before.values()) == 1


def test_cname_chain_across_zones_is_secure_when_every_link_is(world: SignedWorld) -> None:
    outcome = rig(world).resolve("far.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE
    assert [rr.rtype for rr in outcome.answer] == [RRType.CNAME, RRType.A]


def test_wildcard_expansion_with_nsec_proof_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("anything.wild.example.test.", RRType.TXT)
    assert outcome.security is Security.SECURE
    assert any(rr.rtype == RRType.NSEC for rr in outcome.denial)


def test_wildcard_expansion_with_nsec3_proof_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("anything.wild.nsec3.test.", RRType.TXT)
    assert outcome.security is Security.SECURE


def test_wildcard_expansion_without_its_proof_is_bogus(world: SignedWorld) -> None:
    test_rig = rig(world)

    def strip_authority(reply: bytes) -> bytes:
        message = decode(reply)
        if message.question and message.question.rtype == RRType.TXT:
            from dataclasses import replace

            from resolver.dns.encoding import encode
            return encode(replace(message, authority=()))
        return reply

    test_rig.network.rewrite[EXAMPLE_IP] = strip_authority
    outcome = test_rig.resolve("anything.wild.example.test.", RRType.TXT)
    assert outcome.rcode == Rcode.SERVFAIL and outcome.extended_error is ExtendedError.NSEC_MISSING


# -- negative answers -------------------------------------------------------------------


def test_nxdomain_proven_by_nsec_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("nothere.example.test.")
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.security is Security.SECURE
    assert any(rr.rtype == RRType.NSEC for rr in outcome.denial)


def test_nodata_proven_by_nsec_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("www.example.test.", RRType.AAAA)
    assert outcome.rcode == Rcode.NOERROR and not outcome.answer
    assert outcome.security is Security.SECURE


def test_nxdomain_proven_by_nsec3_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("nothere.nsec3.test.")
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.security is Security.SECURE
    assert any(rr.rtype == RRType.NSEC3 for rr in outcome.denial)


def test_nodata_proven_by_nsec3_is_secure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("www.nsec3.test.", RRType.AAAA)
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE


def test_proven_nxdomain_for_a_minimised_name_ends_the_walk(world: SignedWorld) -> None:
    """RFC 8020 §2, RFC 9156 §2.3: a secure NXDOMAIN for nothere.example.test. shows that
    nothing exists below it; the full name is not asked (Unbound harden-below-nxdomain)."""
    test_rig = rig(world)
    outcome = test_rig.resolve("a.b.nothere.example.test.")
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.security is Security.SECURE
    asked = [q.name for _, q in test_rig.network.asked]
    assert "nothere.example.test." in asked and "a.b.nothere.example.test." not in asked
    again = test_rig.resolve("c.nothere.example.test.")
    assert again.rcode == Rcode.NXDOMAIN
    assert "c.nothere.example.test." not in [q.name for _, q in test_rig.network.asked]


def test_unproven_nxdomain_for_a_minimised_name_asks_the_full_name(world: SignedWorld) -> None:
    """Without a proof the minimised NXDOMAIN may come from a server that mishandles empty
    non-terminals (RFC 9156 §3, relaxed): the full name is asked before SERVFAIL."""
    test_rig = rig(world)

    def drop_proof(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        if message.rcode != Rcode.NXDOMAIN:
            return reply
        kept = tuple(rr for rr in message.authority if rr.rtype not in (RRType.NSEC,
                                                                         RRType.RRSIG))
        return encode(replace(message, authority=kept))

    test_rig.network.rewrite[EXAMPLE_IP] = drop_proof
    test_rig.resolve("a.b.nothere.example.test.")
    assert "a.b.nothere.example.test." in [q.name for _, q in test_rig.network.asked]


def test_nxdomain_without_its_nsec_is_servfail_with_ede_12(world: SignedWorld) -> None:
    test_rig = rig(world)

    def drop_nsec(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        if message.rcode != Rcode.NXDOMAIN:
            return reply
        kept = tuple(rr for rr in message.authority if rr.rtype in (RRType.SOA, RRType.RRSIG))
        return encode(replace(message, authority=kept))

    test_rig.network.rewrite[EXAMPLE_IP] = drop_nsec
    outcome = test_rig.resolve("nothere.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.NSEC_MISSING


# -- insecure delegations ------------------------------------------------------------------


def test_unsigned_delegation_proven_by_nsec_is_insecure(world: SignedWorld) -> None:
    test_rig = rig(world)
    outcome = test_rig.resolve("www.unsigned.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE
    step = [e for e in test_rig.events if isinstance(e, ChainStepChecked)][-1]
    assert step.zone == "unsigned.test." and step.security == "insecure"


def test_unsigned_delegation_in_an_opt_out_span_is_insecure(world: SignedWorld) -> None:
    outcome = rig(world).resolve("www.child.optout.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE


def test_unsigned_delegation_proven_in_the_referral_needs_no_ds_query(world: SignedWorld) -> None:
    """RFC 4035 §5.2: the referral's NSEC already proves the DS absent (Unbound keeps it in
    its negative cache); asking the parent for the DS again would cost a query."""
    for name in ("www.unsigned.test.", "www.child.optout.test."):
        test_rig = rig(world)
        outcome = test_rig.resolve(name)
        assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE
        ds_queries = [q for _, q in test_rig.network.asked if q.rtype == RRType.DS]
        assert ds_queries == [], name


def test_referral_whose_ds_denial_does_not_verify_is_checked_against_the_ds_query(
        world: SignedWorld) -> None:
    """A forged proof in a referral is no shortcut: it fails, the DS is asked for, and the
    parent's own answer decides."""
    test_rig = rig(world)

    def break_referral_proof(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        if message.question is None or message.question.rtype == RRType.DS:
            return reply
        kept = tuple(rr for rr in message.authority if rr.rtype != RRType.RRSIG)
        return encode(replace(message, authority=kept))

    test_rig.network.rewrite[TEST_IP] = break_referral_proof
    outcome = test_rig.resolve("www.unsigned.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE
    assert ("unsigned.test.", RRType.DS) in {(q.name, q.rtype) for _, q in test_rig.network.asked}


def test_unsigned_child_answered_by_the_parents_server_is_insecure(world: SignedWorld) -> None:
    # test.'s server also serves unsigned.test.: asked as test., it answers from the child,
    # with no RRSIG and no referral. The DS walk finds the cut (no DS, the NSEC at
    # unsigned.test. has NS): insecure, as Unbound says, not bogus "RRSIGs missing".
    test_rig = rig(world, also_served_by={TEST_IP: ("unsigned.test.",)})
    outcome = test_rig.resolve("www.unsigned.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE
    assert [rr.address for rr in outcome.answer] == ["192.0.2.9"]
    asked = [q for _, q in test_rig.network.asked if q.rtype == RRType.DS]
    assert Question("unsigned.test.", RRType.DS) in asked


def test_an_answer_from_an_insecure_zone_asks_no_ds_below_it(world: SignedWorld) -> None:
    # Data below the zone asked is looked for a cut only when that zone is secure.
    test_rig = rig(world)
    outcome = test_rig.resolve("www.unsigned.test.")
    assert outcome.security is Security.INSECURE
    ds_asked = {q.name for _, q in test_rig.network.asked if q.rtype == RRType.DS}
    assert "www.unsigned.test." not in ds_asked


def test_unsigned_child_in_an_opt_out_span_answered_by_the_parents_server_is_insecure(
        world: SignedWorld) -> None:
    test_rig = rig(world, also_served_by={OPTOUT_IP: ("child.optout.test.",)})
    outcome = test_rig.resolve("www.child.optout.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.INSECURE


def test_stripped_answer_of_a_signed_child_from_the_parents_server_stays_bogus(
        world: SignedWorld) -> None:
    # The same shape with a signed child whose RRSIGs were stripped: the walk finds the DS
    # of example.test., so the data must be signed by it (RFC 4035 §5.3): EDE 10.
    test_rig = rig(world, also_served_by={TEST_IP: ("example.test.",)})

    def drop_rrsigs(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        if message.question and message.question.rtype == RRType.A:
            return encode(replace(message, answer=tuple(
                rr for rr in message.answer if rr.rtype != RRType.RRSIG)))
        return reply

    test_rig.network.rewrite[TEST_IP] = drop_rrsigs
    test_rig.network.rewrite[EXAMPLE_IP] = drop_rrsigs
    outcome = test_rig.resolve("www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.RRSIGS_MISSING


def test_delegation_whose_ds_denial_is_missing_is_bogus(world: SignedWorld) -> None:
    test_rig = rig(world)

    def drop_proof(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        kept = tuple(rr for rr in message.authority
                     if rr.rtype not in (RRType.NSEC, RRType.RRSIG))
        return encode(replace(message, authority=kept))

    test_rig.network.rewrite[TEST_IP] = drop_proof
    outcome = test_rig.resolve("www.unsigned.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.failure is FailureKind.DNSSEC_BOGUS


# -- bogus data ------------------------------------------------------------------------------


def test_bogus_signature_is_servfail_with_ede_6(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    outcome = test_rig.resolve("www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.DNSSEC_BOGUS
    assert "example.test." in outcome.reason


def test_bogus_answer_is_asked_again_a_bounded_number_of_times(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    test_rig.resolve("www.example.test.")
    asked = [q for _, q in test_rig.network.asked if q == Question("www.example.test.", 1)]
    # One server only: asked once, then no other server is left to try.
    assert 1 <= len(asked) <= 1 + ValidationSettings(anchors=parse_trust_anchors(
        world.anchor_text)).max_bogus_retries


def test_bogus_failure_is_remembered_for_val_bogus_ttl(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    test_rig.resolve("www.example.test.")
    del test_rig.network.rewrite[EXAMPLE_IP]
    count = sum(test_rig.network.received.values())
    again = test_rig.resolve("www.example.test.")
    assert again.rcode == Rcode.SERVFAIL and sum(test_rig.network.received.values()) == count
    test_rig.network.clock.advance(61)
    assert test_rig.resolve("www.example.test.").security is Security.SECURE


def test_bogus_data_is_never_cached(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    test_rig.resolve("www.example.test.")
    assert test_rig.service.state.cache.rrset("www.example.test.", RRType.A) is None


def test_expired_signature_is_servfail_with_ede_7(world: SignedWorld) -> None:
    outcome = rig(world, wall=EXPIRATION_EPOCH + 86400).resolve("www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.SIGNATURE_EXPIRED


def test_signature_not_yet_valid_is_servfail_with_ede_8(world: SignedWorld) -> None:
    outcome = rig(world, wall=INCEPTION_EPOCH - 86400).resolve("www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.SIGNATURE_NOT_YET_VALID


def test_missing_rrsig_in_a_signed_zone_is_servfail_with_ede_10(world: SignedWorld) -> None:
    test_rig = rig(world)

    def drop_rrsigs(reply: bytes) -> bytes:
        from dataclasses import replace

        from resolver.dns.encoding import encode
        message = decode(reply)
        if message.question and message.question.rtype == RRType.A:
            return encode(replace(message, answer=tuple(
                rr for rr in message.answer if rr.rtype != RRType.RRSIG)))
        return reply

    test_rig.network.rewrite[EXAMPLE_IP] = drop_rrsigs
    outcome = test_rig.resolve("www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert outcome.extended_error is ExtendedError.RRSIGS_MISSING


# -- client semantics (handler) -------------------------------------------------------------


def test_secure_answer_has_ad_for_a_do_client(world: SignedWorld) -> None:
    reply = rig(world).ask("www.example.test.", do=True)
    assert reply.rcode == Rcode.NOERROR and reply.ad
    assert any(rr.rtype == RRType.RRSIG for rr in reply.answer), "RFC 4035 §3.2.1"


def test_secure_answer_has_ad_for_an_ad_client_without_do(world: SignedWorld) -> None:
    reply = rig(world).ask("www.example.test.", do=False, ad=True)
    assert reply.ad
    assert all(rr.rtype != RRType.RRSIG for rr in reply.answer)


def test_secure_answer_has_no_ad_for_a_client_without_do_or_ad(world: SignedWorld) -> None:
    reply = rig(world).ask("www.example.test.", do=False, ad=False)
    assert reply.rcode == Rcode.NOERROR and not reply.ad


def test_insecure_answer_has_no_ad(world: SignedWorld) -> None:
    reply = rig(world).ask("www.unsigned.test.", do=True)
    assert reply.rcode == Rcode.NOERROR and not reply.ad and reply.answer


def test_secure_nxdomain_gives_a_do_client_the_nsec_proof(world: SignedWorld) -> None:
    reply = rig(world).ask("nothere.example.test.", do=True)
    assert reply.rcode == Rcode.NXDOMAIN and reply.ad
    assert {RRType.SOA, RRType.NSEC, RRType.RRSIG} <= {rr.rtype for rr in reply.authority}


def test_bogus_answer_is_servfail_with_ede_6_for_the_client(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    reply = test_rig.ask("www.example.test.")
    assert reply.rcode == Rcode.SERVFAIL and ede_of(reply) == [ExtendedError.DNSSEC_BOGUS]


def test_cd_client_gets_bogus_data_unvalidated(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    assert test_rig.ask("www.example.test.").rcode == Rcode.SERVFAIL
    reply = test_rig.ask("www.example.test.", cd=True)
    assert reply.rcode == Rcode.NOERROR and not reply.ad and reply.cd
    assert [rr.address for rr in reply.answer if rr.rtype == RRType.A] == ["192.0.2.99"]


def test_cached_secure_answer_keeps_ad_and_rrsigs(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.ask("www.example.test.")
    count = sum(test_rig.network.received.values())
    handler_reply = test_rig.ask("www.example.test.")  # a new handler: from the record cache
    assert sum(test_rig.network.received.values()) == count
    assert handler_reply.ad and any(rr.rtype == RRType.RRSIG for rr in handler_reply.answer)


def test_answer_cache_keys_replies_by_ad_and_do(world: SignedWorld) -> None:
    test_rig = rig(world)
    handler = QueryHandler(test_rig.service)

    def ask(do: bool, ad: bool) -> Message:
        wire = bytearray(make_query(Question("www.example.test.", RRType.A), query_id=1,
                                    recursion_desired=True, dnssec_ok=do))
        if ad:
            wire[3] |= 0x20
        reply = asyncio.run(handler.handle(bytes(wire), CLIENT))
        assert reply is not None
        return decode(reply)

    assert ask(do=True, ad=False).ad
    assert not ask(do=False, ad=False).ad
    assert ask(do=False, ad=True).ad
    plain = ask(do=False, ad=False)
    assert not plain.ad and all(rr.rtype != RRType.RRSIG for rr in plain.answer)
    assert any(rr.rtype == RRType.RRSIG for rr in ask(do=True, ad=False).answer)


def test_trace_shows_each_link_of_the_chain_and_the_verdict(world: SignedWorld) -> None:
    from resolver.cli.trace_render import TraceRenderer

    test_rig = rig(world)
    test_rig.resolve("www.example.test.")
    renderer = TraceRenderer(explain=True)
    text = "\n".join(line for event in test_rig.events for line in renderer.render(event))
    for zone in (".", "test.", "example.test."):
        assert re.search(rf"chain of trust {re.escape(zone)}  the (trust anchor|parent)'s DS "
                         r"\d+ \(SHA-256\) -> DNSKEY \d+ ECDSAP256SHA256 \(13\): secure",
                         text), text
    assert "DNSSEC www.example.test. A signed by example.test.: secure" in text


def test_trace_names_the_broken_link_of_a_bogus_chain(world: SignedWorld) -> None:
    from resolver.cli.trace_render import TraceRenderer

    test_rig = rig(world, wall=EXPIRATION_EPOCH + 86400)
    test_rig.resolve("www.example.test.")
    renderer = TraceRenderer()
    text = "\n".join(line for event in test_rig.events for line in renderer.render(event))
    assert re.search(r"chain of trust \.  the trust anchor's DS \d+ \(SHA-256\) -> DNSKEY \d+ "
                     r"ECDSAP256SHA256 \(13\): bogus EDE 7 \(Signature Expired\)", text), text


def test_a_cname_chain_that_ends_in_bogus_data_is_servfail_with_no_records(
        world: SignedWorld) -> None:
    """The CNAME verifies, its target does not: the client gets SERVFAIL and nothing of
    the chain (as Unbound: data of a failed validation is never given out)."""
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    message = test_rig.ask("alias.example.test.")
    assert message.rcode == Rcode.SERVFAIL
    assert message.answer == () and message.authority == ()
    assert ede_of(message) == [ExtendedError.DNSSEC_BOGUS]


# -- aggressive use of the validated cache (RFC 8198) ------------------------------------
# example.test.'s NSEC chain, in canonical order: the apex, alias, far, ns1, *.wild, www.


def upstream_queries(test_rig: Rig) -> int:
    return len(test_rig.network.asked)


def test_a_name_in_a_cached_nsec_range_is_nxdomain_without_asking(world: SignedWorld) -> None:
    test_rig = rig(world)
    assert test_rig.resolve("nothere.example.test.").rcode == Rcode.NXDOMAIN
    before = upstream_queries(test_rig)
    # Between far and ns1, like nothere; and the wildcard *.example.test. is denied
    # by the NSEC of the apex, which the first answer also brought.
    outcome = test_rig.resolve("nowhere.example.test.")
    assert outcome.rcode == Rcode.NXDOMAIN and outcome.security is Security.SECURE
    assert upstream_queries(test_rig) == before
    assert {rr.name for rr in outcome.denial if rr.rtype == RRType.NSEC} == {
        "far.example.test.", "example.test."}


def test_another_type_of_a_name_whose_nsec_is_cached_is_nodata_without_asking(
        world: SignedWorld) -> None:
    test_rig = rig(world)
    assert not test_rig.resolve("www.example.test.", RRType.AAAA).answer
    before = upstream_queries(test_rig)
    outcome = test_rig.resolve("www.example.test.", RRType.MX)
    assert outcome.rcode == Rcode.NOERROR and not outcome.answer
    assert outcome.security is Security.SECURE
    assert upstream_queries(test_rig) == before


def test_a_type_the_cached_nsec_lists_is_still_asked(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("www.example.test.", RRType.AAAA)
    before = upstream_queries(test_rig)
    outcome = test_rig.resolve("www.example.test.")  # the NSEC at www lists A
    assert upstream_queries(test_rig) > before and outcome.answer


def test_an_empty_non_terminal_inside_a_cached_range_is_nodata(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("paris.example.test.")  # brings the NSEC ns1 -> *.wild
    before = upstream_queries(test_rig)
    outcome = test_rig.resolve("wild.example.test.", RRType.TXT)
    assert outcome.rcode == Rcode.NOERROR and not outcome.answer
    assert outcome.security is Security.SECURE and upstream_queries(test_rig) == before


def test_a_name_a_cached_wildcard_could_answer_is_asked_not_denied(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("nothere.example.test.")
    test_rig.resolve("x.wild.example.test.", RRType.TXT)  # brings the NSEC *.wild -> www
    outcome = test_rig.resolve("other.wild.example.test.", RRType.TXT)
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE
    assert [rr.rtype for rr in outcome.answer if rr.rtype != RRType.RRSIG] == [RRType.TXT]


def test_a_cached_range_expires_with_the_negative_ttl(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("nothere.example.test.")
    test_rig.network.clock.advance(301)  # the SOA MINIMUM is 300
    before = upstream_queries(test_rig)
    assert test_rig.resolve("nowhere.example.test.").rcode == Rcode.NXDOMAIN
    assert upstream_queries(test_rig) > before


def test_a_synthesized_nxdomain_gives_a_do_client_ad_and_its_proof(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.ask("nothere.example.test.")
    before = upstream_queries(test_rig)
    reply = test_rig.ask("nowhere.example.test.")
    assert upstream_queries(test_rig) == before
    assert reply.rcode == Rcode.NXDOMAIN and reply.ad
    types = [rr.rtype for rr in reply.authority]
    assert types.count(RRType.NSEC) == 2 and RRType.SOA in types and RRType.RRSIG in types
    assert all(rr.ttl <= 300 for rr in reply.authority)


def test_flushing_a_zone_forgets_its_ranges(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("nothere.example.test.")
    test_rig.service.state.cache.flush("example.test.", subtree=True)
    before = upstream_queries(test_rig)
    test_rig.resolve("nowhere.example.test.")
    assert upstream_queries(test_rig) > before


def test_insecure_negative_answers_teach_no_ranges(world: SignedWorld) -> None:
    test_rig = rig(world, validate=False)
    test_rig.resolve("nothere.example.test.")
    before = upstream_queries(test_rig)
    test_rig.resolve("nowhere.example.test.")
    assert upstream_queries(test_rig) > before
    assert len(test_rig.service.state.cache.nsec_ranges) == 0


# -- the KeyTrap limits (CVE-2023-50387) --------------------------------------------------


def rrsig_flood(reply: bytes) -> bytes:
    """Each RRSIG of the answer joined by 40 copies whose signature does not verify."""
    from dataclasses import replace as replace_message

    from resolver.dns.encoding import encode
    from resolver.dns.record_text import rdata_octets, record_from_rdata

    message = decode(reply)
    flood = []
    for rr in message.answer:
        if rr.rtype == RRType.RRSIG:
            rdata = rdata_octets(rr)
            flood += [record_from_rdata(rr.name, RRType.RRSIG, rr.rclass, rr.ttl,
                                        rdata[:-1] + bytes([(rdata[-1] + n + 1) % 256]))
                      for n in range(40)]
    return encode(replace_message(message, answer=(*flood, *message.answer)))


def test_an_rrsig_flood_costs_at_most_the_resolution_budget_and_is_bogus(
        world: SignedWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from resolver.dnssec import signature_math

    calls = []
    real = signature_math.signature_holds
    monkeypatch.setattr(signature_math, "signature_holds",
                        lambda *args: calls.append(1) or real(*args))
    test_rig = rig(world)
    test_rig.network.rewrite[EXAMPLE_IP] = rrsig_flood
    reply = test_rig.ask("www.example.test.")
    limits = ValidationSettings(anchors=parse_trust_anchors(world.anchor_text)
                                ).verification_limits
    assert len(calls) <= limits.per_resolution  # without the limits: 41 for the answer alone
    # The genuine RRSIG comes after the flood: given up on, the data is bogus, not secure.
    assert reply.rcode == Rcode.SERVFAIL and ede_of(reply) == [ExtendedError.DNSSEC_BOGUS]


def test_a_cached_wildcard_answer_keeps_its_proof_for_do_clients(world: SignedWorld) -> None:
    """RFC 4035 §3.1.3.3: a wildcard expansion goes out with the NSEC proving that no
    closer name exists, from the cache as on the first answer."""
    test_rig = rig(world)
    first = test_rig.ask("x.wild.example.test.", RRType.TXT)
    before = upstream_queries(test_rig)
    again = test_rig.ask("x.wild.example.test.", RRType.TXT)
    assert upstream_queries(test_rig) == before and again.ad
    for reply in (first, again):
        assert [rr.rtype for rr in reply.authority if rr.rtype == RRType.NSEC] == [RRType.NSEC]


# -- negative trust anchors (RFC 7646, Unbound domain-insecure) ---------------------------


def test_a_negative_trust_anchor_turns_a_bogus_zone_into_an_insecure_answer(
        world: SignedWorld) -> None:
    test_rig = rig(world, insecure_domains=("example.test.",))
    test_rig.network.rewrite[EXAMPLE_IP] = tamper_www
    reply = test_rig.ask("www.example.test.")
    assert reply.rcode == Rcode.NOERROR and not reply.ad
    assert [rr.address for rr in reply.answer if rr.rtype == RRType.A] == ["192.0.2.99"]


def test_a_negative_trust_anchor_leaves_other_zones_validated(world: SignedWorld) -> None:
    test_rig = rig(world, insecure_domains=("example.test.",))
    assert test_rig.resolve("www.nsec3.test.").security is Security.SECURE
    assert test_rig.resolve("www.example.test.").security is Security.INSECURE


def test_another_name_under_a_cached_wildcard_is_answered_without_asking(
        world: SignedWorld) -> None:
    """RFC 8198 §5.3: the wildcard *.wild.example.test. and the NSEC proving no closer name,
    both cached from one expansion, answer other names it covers."""
    test_rig = rig(world)
    test_rig.resolve("x.wild.example.test.", RRType.TXT)
    before = upstream_queries(test_rig)
    reply = test_rig.ask("other.wild.example.test.", RRType.TXT)
    assert upstream_queries(test_rig) == before
    assert reply.rcode == Rcode.NOERROR and reply.ad
    txt = [rr for rr in reply.answer if rr.rtype == RRType.TXT]
    assert [rr.name for rr in txt] == ["other.wild.example.test."]
    assert any(rr.rtype == RRType.NSEC for rr in reply.authority)


def test_a_type_the_cached_wildcard_lacks_is_still_asked(world: SignedWorld) -> None:
    test_rig = rig(world)
    test_rig.resolve("x.wild.example.test.", RRType.TXT)
    before = upstream_queries(test_rig)
    outcome = test_rig.resolve("other.wild.example.test.", RRType.A)
    assert upstream_queries(test_rig) > before and not outcome.answer


def test_names_in_cached_nsec3_spans_are_nxdomain_without_asking(world: SignedWorld) -> None:
    """RFC 8198 with NSEC3 (RFC 5155 §8.4): once one NXDOMAIN of nsec3.test. brought its
    closest encloser and covering NSEC3 records, other names whose hashes fall in the same
    spans are answered from the cache, secure; the rest are still asked."""
    test_rig = rig(world)
    assert test_rig.resolve("nothere.nsec3.test.").rcode == Rcode.NXDOMAIN
    saved = 0
    for i in range(40):
        before = upstream_queries(test_rig)
        outcome = test_rig.resolve(f"n{i}.nsec3.test.")
        assert outcome.rcode == Rcode.NXDOMAIN and outcome.security is Security.SECURE
        if upstream_queries(test_rig) == before:
            saved += 1
            assert {rr.rtype for rr in outcome.denial} >= {RRType.NSEC3}
    assert 0 < saved < 40
