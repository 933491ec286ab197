"""The zone signer: what it signs, what it leaves unsigned, its NSEC chain and DS, checked
with the validation library and with ldns-verify-zone."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from resolver.dns.wire import Record, RRType, parse_records
from resolver.dnssec.chain import validate_dnskeys, validate_rrset
from resolver.dnssec.denial import prove_nodata, prove_nxdomain
from resolver.dnssec.keys import Dnskey, Ds
from resolver.dnssec.records import Nsec, Rrsig
from resolver.dnssec.security import Security
from resolver.dnssec.signatures import Algorithm
from resolver.dnssec.signer import (
    KSK_FLAGS,
    SignedZone,
    SigningError,
    ds_record,
    key_from_seed,
    sign_zone,
)
from tests.conftest import require_tool

INCEPTION = 1_750_000_000
EXPIRATION = INCEPTION + 30 * 86400
NOW = INCEPTION + 86400
#: NOW as ldns-verify-zone -t wants it (YYYYMMDDhhmmss, UTC).
LDNS_NOW = datetime.fromtimestamp(NOW, tz=UTC).strftime("%Y%m%d%H%M%S")

ZONE = """\
example. 3600 IN SOA ns1.example. admin.example. 1 7200 3600 1209600 300
example. 3600 IN NS ns1.example.
example. 3600 IN MX 10 mail.example.
ns1.example. 3600 IN A 127.0.0.1
www.example. 3600 IN A 192.0.2.1
www.example. 3600 IN A 192.0.2.2
deep.a.b.example. 3600 IN TXT "below an empty non-terminal"
child.example. 3600 IN NS ns.child.example.
ns.child.example. 3600 IN A 127.0.0.2
"""


def _zone(text: str = ZONE, *, algorithm: Algorithm = Algorithm.ED25519,
          seed: bytes = b"example") -> SignedZone:
    records = parse_records(text)
    ksk = key_from_seed(seed + b"/ksk", algorithm=algorithm, flags=KSK_FLAGS)
    zsk = key_from_seed(seed + b"/zsk", algorithm=algorithm)
    return sign_zone("example.", records, ksk=ksk, zsk=zsk, inception=INCEPTION,
                     expiration=EXPIRATION)


def _of(zone: SignedZone, name: str, rtype: int) -> list[Record]:
    return [r for r in zone.records if r.name == name and r.rtype == rtype]


def _sigs(zone: SignedZone, name: str, covered: int) -> list[Record]:
    return [r for r in _of(zone, name, RRType.RRSIG)
            if Rrsig.from_record(r).type_covered == covered]


def _trusted_keys(zone: SignedZone) -> list[Dnskey]:
    step, keys = validate_dnskeys("example.", _of(zone, "example.", RRType.DNSKEY),
                                  _sigs(zone, "example.", RRType.DNSKEY), NOW,
                                  trusted_ds=[Ds.from_record(zone.ds)])
    assert step.verdict.security is Security.SECURE, step.verdict
    return list(keys)


@pytest.mark.parametrize("algorithm", [Algorithm.ED25519, Algorithm.ECDSAP256SHA256])
def test_the_ds_vouches_for_the_dnskey_set_and_every_authoritative_rrset_verifies(
        algorithm: Algorithm) -> None:
    zone = _zone(algorithm=algorithm)
    keys = _trusted_keys(zone)
    for name, rtype in [("example.", RRType.SOA), ("example.", RRType.NS),
                        ("example.", RRType.MX), ("www.example.", RRType.A),
                        ("ns1.example.", RRType.A), ("deep.a.b.example.", RRType.TXT)]:
        check = validate_rrset(_of(zone, name, rtype), _sigs(zone, name, rtype), keys,
                               "example.", NOW)
        assert check.verdict.security is Security.SECURE, (name, rtype, check.verdict)


def test_signing_is_reproducible_from_the_seed_and_the_times() -> None:
    assert [r.to_text() for r in _zone().records] == [r.to_text() for r in _zone().records]
    assert _zone(seed=b"other").ds.rdata_key != _zone().ds.rdata_key


def test_the_dnskey_set_is_signed_by_the_ksk_and_the_data_by_the_zsk() -> None:
    zone = _zone()
    [dnskey_sig] = _sigs(zone, "example.", RRType.DNSKEY)
    assert Rrsig.from_record(dnskey_sig).key_tag == zone.ksk.key_tag
    [a_sig] = _sigs(zone, "www.example.", RRType.A)
    assert Rrsig.from_record(a_sig).key_tag == zone.zsk.key_tag
    assert zone.ksk.is_secure_entry_point and not zone.zsk.is_secure_entry_point


def test_delegation_ns_and_glue_are_not_signed_but_a_childs_ds_is() -> None:
    unsigned_child = _zone()
    assert _sigs(unsigned_child, "child.example.", RRType.NS) == []
    assert _of(unsigned_child, "ns.child.example.", RRType.RRSIG) == []
    child_ds = ds_record("child.example.", key_from_seed(b"child", flags=KSK_FLAGS)
                         .dnskey("child.example."), 3600)
    with_ds = _zone(ZONE + child_ds.to_text() + "\n")
    keys = _trusted_keys(with_ds)
    check = validate_rrset(_of(with_ds, "child.example.", RRType.DS),
                           _sigs(with_ds, "child.example.", RRType.DS), keys,
                           "example.", NOW)
    assert check.verdict.security is Security.SECURE
    assert _sigs(with_ds, "child.example.", RRType.NS) == []


def test_the_nsec_chain_runs_in_canonical_order_and_closes_at_the_apex() -> None:
    zone = _zone()
    chain = {r.name: Nsec.from_record(r) for r in zone.records if r.rtype == RRType.NSEC}
    # No NSEC for glue (ns.child.example.) or the empty non-terminals a.b / b.example.
    assert list(chain) == ["example.", "deep.a.b.example.", "child.example.",
                           "ns1.example.", "www.example."]
    assert [chain[name].next_name for name in chain] == [
        "deep.a.b.example.", "child.example.", "ns1.example.", "www.example.", "example."]
    assert chain["example."].types == {RRType.SOA, RRType.NS, RRType.MX, RRType.DNSKEY,
                                       RRType.RRSIG, RRType.NSEC}
    assert chain["child.example."].types == {RRType.NS, RRType.RRSIG, RRType.NSEC}
    assert all(r.ttl == 300 for r in zone.records if r.rtype == RRType.NSEC)


def test_the_nsec_chain_proves_a_name_error_and_no_data_and_the_missing_ds() -> None:
    zone = _zone()
    nsecs = [r for r in zone.records if r.rtype == RRType.NSEC]
    assert prove_nxdomain("nope.example.", "example.", nsecs).security is Security.SECURE
    assert prove_nodata("www.example.", RRType.AAAA, "example.", nsecs).security \
        is Security.SECURE
    assert prove_nodata("child.example.", RRType.DS, "example.", nsecs).security \
        is Security.SECURE


def test_records_outside_the_zone_or_already_signed_are_refused() -> None:
    with pytest.raises(SigningError, match="outside the zone"):
        _zone(ZONE + "www.other. 3600 IN A 192.0.2.9\n")
    signed = _zone()
    ksk = key_from_seed(b"k", flags=KSK_FLAGS)
    with pytest.raises(SigningError, match="signed already"):
        sign_zone("example.", signed.records, ksk=ksk, zsk=key_from_seed(b"z"),
                  inception=INCEPTION, expiration=EXPIRATION)
    with pytest.raises(SigningError, match="SEP"):
        sign_zone("example.", parse_records(ZONE), ksk=key_from_seed(b"z"), zsk=ksk,
                  inception=INCEPTION, expiration=EXPIRATION)


@pytest.mark.parametrize("algorithm", [Algorithm.ED25519, Algorithm.ECDSAP256SHA256])
def test_ldns_verify_zone_accepts_the_signed_zone(tmp_path: Path, algorithm: Algorithm) -> None:
    zone = _zone(algorithm=algorithm)
    path = tmp_path / "example.zone"
    path.write_text("".join(r.to_text() + "\n" for r in zone.records), encoding="utf-8")
    # -t: verify at the given time, so the test does not depend on today's date.
    done = subprocess.run([require_tool("ldns-verify-zone"), "-t", LDNS_NOW, str(path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Zone is verified and complete" in done.stdout + done.stderr


def test_ldns_verify_zone_rejects_a_tampered_record(tmp_path: Path) -> None:
    zone = _zone()
    lines = [r.to_text() for r in zone.records]
    lines = [line.replace("192.0.2.1", "192.0.2.66") for line in lines]
    path = tmp_path / "tampered.zone"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([require_tool("ldns-verify-zone"), "-t", LDNS_NOW, str(path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
