"""Canonical form and order (RFC 4034 §6), and DNSSEC records through the codec."""

from __future__ import annotations

import dnslib
import pytest

from resolver.dns import decoding, encoding, wire
from resolver.dns.rdata_wire import name_wire, rdata_wire
from resolver.dns.wire import RRType, parse_record
from resolver.dnssec.canonical import (
    canonical_name_wire,
    canonical_rdata,
    name_order_key,
    wildcard_source,
)
from resolver.dnssec.keys import Dnskey
from tests.support.signed_zones import CHILD_ZONE, cached_zone

ZONE = "example.test."


def test_names_sort_in_the_canonical_order_of_rfc_4034_section_6_1() -> None:
    # The example list of RFC 4034 §6.1, in its order.
    ordered = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.",
               "zABC.a.EXAMPLE.", "z.example.", "\\001.z.example.", "*.z.example.",
               "\\200.z.example."]
    assert sorted(ordered, key=name_order_key) == ordered
    assert sorted(reversed(ordered), key=name_order_key) == ordered


def test_canonical_name_is_lower_case_uncompressed_wire() -> None:
    assert canonical_name_wire("WWW.Example.COM.") == b"\x03www\x07example\x03com\x00"
    assert canonical_name_wire(".") == b"\x00"
    assert name_wire("a\\.b.c.") == b"\x03a.b\x01c\x00"  # an escaped dot stays in its label


def test_embedded_names_are_lower_cased_for_mx_but_not_for_nsec() -> None:
    mx = parse_record("x.example. 300 IN MX 10 Mail.Example.")
    assert canonical_rdata(mx) == b"\x00\x0a\x04mail\x07example\x00"
    nsec = parse_record("x.example. 300 IN NSEC Next.Example. A RRSIG NSEC")
    assert canonical_rdata(nsec).startswith(b"\x04Next\x07Example\x00")  # RFC 6840 §5.1


def test_soa_names_are_written_uncompressed_and_lower_cased() -> None:
    soa = parse_record("example. 300 IN SOA NS.example. Host.example. 1 2 3 4 5")
    data = canonical_rdata(soa)
    assert data.startswith(b"\x02ns\x07example\x00\x04host\x07example\x00")
    assert len(data) == 12 + 14 + 20  # two names, then five 32-bit counters


@pytest.mark.parametrize(("owner", "labels", "source"), [
    ("a.b.wild.example.", 2, "*.wild.example."),
    ("a.b.wild.example.", 1, "*.example."),
    ("x.wild.example.", 2, "*.wild.example."),
    ("x.wild.example.", 3, None),
    ("*.wild.example.", 2, None),
    ("x.", 0, "*."),
])
def test_wildcard_owner_is_rebuilt_from_the_labels_field(owner: str, labels: int,
                                                         source: str | None) -> None:
    assert wildcard_source(owner, labels) == source


@pytest.mark.parametrize("nsec3", [False, True], ids=["nsec", "nsec3"])
def test_signed_zone_records_round_trip_through_the_wire(
        tmp_path_factory: pytest.TempPathFactory, nsec3: bool) -> None:
    signed = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ECDSAP256SHA256", nsec3=nsec3)
    wanted = {RRType.DNSKEY, RRType.RRSIG, RRType.NSEC3 if nsec3 else RRType.NSEC}
    if nsec3:
        wanted.add(51)  # NSEC3PARAM
    seen = set()
    for record in signed.records:
        if record.rtype not in wanted:
            continue
        seen.add(record.rtype)
        octets = rdata_wire(record)
        rdata_class = decoding._RDATA_CLASSES[record.rtype]
        again = rdata_class.parse(dnslib.DNSBuffer(octets), len(octets))
        assert again.toZone() == record.rdata.toZone()
        assert rdata_wire(wire.Record(record.name, record.rtype, 1, 0, "", again)) == octets
    assert seen == wanted


def test_nsec3_from_a_message_decodes_to_the_same_record(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    signed = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, "ED25519", nsec3=True)
    nsec3 = signed.of_type(RRType.NSEC3)
    message = wire.Message(id=1, qr=True, opcode=0, rcode=3, authority=tuple(nsec3))
    decoded = decoding.decode(encoding.encode(message))
    assert [r.rdata_text for r in decoded.authority] == [r.rdata_text for r in nsec3]
    assert [rdata_wire(r) for r in decoded.authority] == [rdata_wire(r) for r in nsec3]


def test_key_tag_agrees_with_ldns(tmp_path_factory: pytest.TempPathFactory) -> None:
    for algorithm in ("RSASHA256", "ECDSAP256SHA256", "ED25519"):
        signed = cached_zone(tmp_path_factory, ZONE, CHILD_ZONE, algorithm)
        (record,) = signed.rrset(ZONE, RRType.DNSKEY)
        assert Dnskey.from_record(record).key_tag == int(signed.key_name.split("+")[2])


def test_malformed_nsec3_rdata_from_the_wire_is_dropped_not_a_crash() -> None:
    record = wire.make_record("abc.example.", RRType.NSEC3, 300, b"\x01\x00\x00\x01\x05")
    message = wire.Message(id=1, qr=True, opcode=0, rcode=0, authority=(record,))
    decoded = decoding.decode(encoding.encode(message))
    assert decoded.authority == ()
    assert decoded.malformed and "NSEC3" in decoded.malformed[0]
