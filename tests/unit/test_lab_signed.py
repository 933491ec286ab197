"""The signed lab: DO=1 answers carry RRSIGs, NSEC proofs and DS (RFC 4035 §3.1), DO=0
answers are those of the plain zones, and the three zones of a class's three outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Message, Question, Record, RRType
from resolver.dnssec.chain import validate_dnskeys, validate_rrset
from resolver.dnssec.denial import prove_nodata, prove_nxdomain
from resolver.dnssec.keys import Dnskey, Ds
from resolver.dnssec.security import Security
from resolver.engine.network import Transport
from resolver.lab.authority import Authority, Zone
from resolver.lab.server import anchor_path
from resolver.lab.signing import SignedWorld, sign_world
from resolver.lab.world import SERVERS, LabServer, zone_text

NOW = 1_750_000_000
_PLAIN = {z: Zone.from_text(z, zone_text(z)) for s in SERVERS for z in s.zones}
WORLD: SignedWorld = sign_world(_PLAIN, seed=b"test", now=NOW)


def _server(name: str, zones: dict[str, Zone]) -> Authority:
    spec: LabServer = next(s for s in SERVERS if s.name == name)
    return Authority(zones[z] for z in spec.zones)


def _ask(server: str, qname: str, qtype: int, *, do: bool = True,
         zones: dict[str, Zone] | None = None) -> Message:
    query = make_query(Question(qname, qtype), query_id=7, dnssec_ok=do)
    reply = _server(server, dict(WORLD.zones) if zones is None else zones).respond(
        query, transport=Transport.TCP)
    assert reply is not None
    return decode(reply)


def _keys(server: str, zone: str, ds: list[Ds]) -> list[Dnskey]:
    reply = _ask(server, zone, RRType.DNSKEY)
    dnskeys = [r for r in reply.answer if r.rtype == RRType.DNSKEY]
    sigs = [r for r in reply.answer if r.rtype == RRType.RRSIG]
    step, keys = validate_dnskeys(zone, dnskeys, sigs, NOW, trusted_ds=ds)
    assert step.verdict.security is Security.SECURE, step.verdict
    return list(keys)


def _split(records: tuple[Record, ...], rtype: int) -> tuple[list[Record], list[Record]]:
    return ([r for r in records if r.rtype == rtype],
            [r for r in records if r.rtype == RRType.RRSIG])


@pytest.mark.parametrize(("server", "qname", "qtype"), [
    ("a.root-servers.net.", "www.networkutopia.com.", RRType.A),
    ("a.root-servers.net.", "nope.", RRType.A),
    ("a.gtld-servers.net.", "networkutopia.com.", RRType.DS),
    ("dns1.networkutopia.com.", "www.networkutopia.com.", RRType.A),
    ("dns1.networkutopia.com.", "networkutopia.com.", RRType.ANY),
    ("dns1.networkutopia.com.", "networkutopia.com.", RRType.DNSKEY),
])
def test_without_do_the_signed_lab_answers_exactly_as_the_plain_one(
        server: str, qname: str, qtype: int) -> None:
    assert _ask(server, qname, qtype, do=False) == _ask(server, qname, qtype, do=False,
                                                       zones=_PLAIN)
    assert not any(r.rtype in (RRType.RRSIG, RRType.NSEC, RRType.DNSKEY, RRType.DS)
                   for r in _ask(server, qname, qtype, do=False).authority)


def test_the_chain_root_com_networkutopia_verifies_from_the_anchor() -> None:
    root_keys = _keys("a.root-servers.net.", ".", [Ds.from_record(WORLD.root_ds)])
    referral = _ask("a.root-servers.net.", "www.networkutopia.com.", RRType.A)
    ds, sigs = _split(referral.authority, RRType.DS)
    assert validate_rrset(ds, sigs, root_keys, ".", NOW).verdict.is_secure
    com_keys = _keys("a.gtld-servers.net.", "com.", [Ds.from_record(r) for r in ds])
    referral = _ask("a.gtld-servers.net.", "www.networkutopia.com.", RRType.A)
    ds, sigs = _split(referral.authority, RRType.DS)
    assert validate_rrset(ds, sigs, com_keys, "com.", NOW).verdict.is_secure
    keys = _keys("dns1.networkutopia.com.", "networkutopia.com.", [Ds.from_record(r) for r in ds])
    reply = _ask("dns1.networkutopia.com.", "www.networkutopia.com.", RRType.A)
    assert reply.edns is not None and reply.edns.do
    answer, sigs = _split(reply.answer, RRType.A)
    assert validate_rrset(answer, sigs, keys, "networkutopia.com.", NOW).verdict.is_secure


def test_the_referral_to_the_unsigned_crepes_fr_proves_there_is_no_ds() -> None:
    referral = _ask("d.nic.fr.", "www.crepes.fr.", RRType.A)
    assert not [r for r in referral.authority if r.rtype == RRType.DS]
    nsec = [r for r in referral.authority if r.rtype == RRType.NSEC]
    assert nsec and [r for r in referral.authority if r.rtype == RRType.RRSIG]
    assert prove_nodata("crepes.fr.", RRType.DS, "fr.", nsec).security is Security.SECURE
    assert not [r for r in _ask("dns.crepes.fr.", "www.crepes.fr.", RRType.A).answer
                if r.rtype == RRType.RRSIG]


def test_cnn_com_has_trusted_keys_but_bogus_data_signatures() -> None:
    referral = _ask("a.gtld-servers.net.", "www.cnn.com.", RRType.A)
    ds, _ = _split(referral.authority, RRType.DS)
    keys = _keys("dns.amazon.com.", "cnn.com.", [Ds.from_record(r) for r in ds])
    answer, sigs = _split(_ask("dns.amazon.com.", "www.cnn.com.", RRType.A).answer, RRType.A)
    verdict = validate_rrset(answer, sigs, keys, "cnn.com.", NOW).verdict
    assert verdict.security is Security.BOGUS and verdict.ede_code == 6


def test_a_name_error_comes_with_the_nsec_proof_of_name_and_wildcard() -> None:
    reply = _ask("dns1.networkutopia.com.", "nope.networkutopia.com.", RRType.A)
    nsec = [r for r in reply.authority if r.rtype == RRType.NSEC]
    assert prove_nxdomain("nope.networkutopia.com.", "networkutopia.com.", nsec).is_secure
    assert any(r.rtype == RRType.RRSIG for r in reply.authority)


def test_no_data_comes_with_the_nsec_at_the_name() -> None:
    reply = _ask("dns1.networkutopia.com.", "www.networkutopia.com.", RRType.TXT)
    nsec = [r for r in reply.authority if r.rtype == RRType.NSEC]
    assert [r.name for r in nsec] == ["www.networkutopia.com."]
    assert prove_nodata("www.networkutopia.com.", RRType.TXT, "networkutopia.com.",
                        nsec).is_secure


def test_an_empty_non_terminal_is_proven_by_the_nsec_covering_it() -> None:
    reply = _ask("ns1.example.test.", "deep.example.test.", RRType.A)
    nsec = [r for r in reply.authority if r.rtype == RRType.NSEC]
    assert prove_nodata("deep.example.test.", RRType.A, "example.test.", nsec).is_secure


def test_the_root_server_answers_ds_for_arpa_from_the_root_zone() -> None:
    reply = _ask("a.root-servers.net.", "arpa.", RRType.DS)
    assert reply.aa and [r for r in reply.answer if r.rtype == RRType.DS]
    root_keys = _keys("a.root-servers.net.", ".", [Ds.from_record(WORLD.root_ds)])
    ds, sigs = _split(reply.answer, RRType.DS)
    assert validate_rrset(ds, sigs, root_keys, ".", NOW).verdict.is_secure


def test_the_anchor_file_holds_the_roots_ds_and_sits_beside_the_hints() -> None:
    assert WORLD.root_ds.to_text() in WORLD.anchor_text()
    assert anchor_path(Path("/tmp/lab.hints")) == Path("/tmp/lab.anchor")
    assert anchor_path(Path("x.anchor")) == Path("x.anchor.anchor")


def test_the_same_seed_and_time_sign_the_same_world() -> None:
    again = sign_world(_PLAIN, seed=b"test", now=NOW)
    assert again.root_ds == WORLD.root_ds
    assert sign_world(_PLAIN, seed=b"other", now=NOW).root_ds != WORLD.root_ds
