"""The reply pipeline: decode once, scrub, classify, admit (RFC 2181 §5.4.1, Unbound's
iter_scrub.c). What a server may not say never reaches the cache or a client, and one bad
record costs that record, not the reply."""

from __future__ import annotations

import dnslib

from resolver.dns.wire import Rcode, RRType
from resolver.engine.events import RecordsDropped
from resolver.engine.settings import EngineSettings
from tests.unit.test_engine import IBM, UTOPIA, edit, lab, texts

QMIN = EngineSettings()  # the default: QNAME minimisation on


def _with_additional(*records: str):  # type: ignore[no-untyped-def]
    def rewrite(query: bytes, reply: bytes) -> bytes:
        def change(r: dnslib.DNSRecord) -> None:
            for text in records:
                r.add_ar(*dnslib.RR.fromZone(text))
        return edit(reply, change)
    return rewrite


def test_out_of_zone_a_in_the_additional_section_of_an_authoritative_answer_is_neither_cached_nor_served() -> None:  # noqa: E501
    for settings in (QMIN, EngineSettings(qname_minimisation=False)):
        lab_ = lab(settings=settings)
        lab_.network.rewrite[UTOPIA] = _with_additional(
            "www.ibm.com. 3600 IN A 6.6.6.6", "dns1.ibm.com. 3600 IN A 6.6.6.7",
            "com. 3600 IN A 6.6.6.8")
        outcome = lab_.resolve("www.networkutopia.com.")
        assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
        assert all(rr.name != "www.ibm.com." for rr in outcome.additional)
        assert lab_.cache.rrset("www.ibm.com.", RRType.A) is None
        assert lab_.cache.rrset("dns1.ibm.com.", RRType.A) is None
        assert lab_.cache.rrset("com.", RRType.A) is None
        later = lab_.resolve("www.ibm.com.")
        assert "6.6.6.6" not in {rr.address for rr in later.answer if rr.rtype == RRType.A}
        assert lab_.network.received[IBM] >= 1


def test_glue_outside_the_zone_in_an_ns_answer_is_not_used_as_a_server_address() -> None:
    """An NS answer for a minimised name is a zone apex (RFC 9156 §3); its addresses come
    only from within the zone asked, like a referral's glue."""
    lab_ = lab(settings=QMIN)
    lab_.network.rewrite[UTOPIA] = _with_additional("dns1.ibm.com. 3600 IN A 6.6.6.9")
    lab_.resolve("www.networkutopia.com.")
    assert lab_.cache.rrset("dns1.ibm.com.", RRType.A) is None
    assert all(address != "6.6.6.9" for address, _, _ in lab_.network.log)


def _append_raw_additional(rr_wire: bytes):  # type: ignore[no-untyped-def]
    """Append one record, given as wire octets, to the additional section of a reply."""
    def rewrite(query: bytes, reply: bytes) -> bytes:
        arcount = int.from_bytes(reply[10:12], "big")
        return reply[:10] + (arcount + 1).to_bytes(2, "big") + reply[12:] + rr_wire
    return rewrite


def _bad_a_record(owner: bytes, rdata: bytes) -> bytes:
    header = (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + (300).to_bytes(4, "big")
    return owner + header + len(rdata).to_bytes(2, "big") + rdata


def test_one_record_whose_rdlength_does_not_fit_its_type_is_dropped_not_the_reply() -> None:
    lab_ = lab(settings=QMIN)
    owner = b"\x04dns9\x0dnetworkutopia\x03com\x00"
    bad = _bad_a_record(owner, b"\x01\x02\x03\x04\x05")
    lab_.network.rewrite[UTOPIA] = _append_raw_additional(bad)
    events: list[object] = []
    outcome = lab_.resolve("www.networkutopia.com.", observer=events.append)
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    assert lab_.network.received[UTOPIA] == 1
    assert lab_.cache.rrset("dns9.networkutopia.com.", RRType.A) is None
    dropped = [e for e in events if isinstance(e, RecordsDropped)]
    assert any("dns9.networkutopia.com. A" in text for e in dropped for text in e.records)


def _with_authority(*records: str):  # type: ignore[no-untyped-def]
    def rewrite(query: bytes, reply: bytes) -> bytes:
        def change(r: dnslib.DNSRecord) -> None:
            for text in records:
                r.add_auth(*dnslib.RR.fromZone(text))
        return edit(reply, change)
    return rewrite


def test_an_ns_set_for_a_zone_above_the_one_asked_is_not_cached() -> None:
    """The networkutopia.com servers cannot speak for com (RFC 2181 §5.4.1): their NS set
    for com, and its address, are promiscuous data and never replace the real ones."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False))
    lab_.network.rewrite[UTOPIA] = edit_both(
        _with_authority("com. 3600 IN NS ns.evil.test."),
        _with_additional("ns.evil.test. 3600 IN A 6.6.6.10"))
    outcome = lab_.resolve("www.networkutopia.com.")
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    cached = lab_.cache.rrset("com.", RRType.NS)
    assert cached is None or all(rr.target != "ns.evil.test." for rr in cached)
    assert lab_.cache.rrset("ns.evil.test.", RRType.A) is None
    later = lab_.resolve("www.ibm.com.")
    assert later.rcode == Rcode.NOERROR and texts(later)  # resolved through the real com
    assert all(address != "6.6.6.10" for address, _, _ in lab_.network.log)


def test_out_of_zone_glue_for_an_in_zone_ns_name_is_not_cached_or_used() -> None:
    """An answer's NS set may name a server in another zone; its address in the additional
    section is then glue from outside the bailiwick (harden-glue) and is set aside."""
    lab_ = lab(settings=EngineSettings(qname_minimisation=False))
    lab_.network.rewrite[UTOPIA] = edit_both(
        _with_authority("networkutopia.com. 3600 IN NS ns.elsewhere.test."),
        _with_additional("ns.elsewhere.test. 3600 IN A 6.6.6.11"))
    events: list[object] = []
    outcome = lab_.resolve("www.networkutopia.com.", observer=events.append)
    assert texts(outcome) == ["www.networkutopia.com. A 212.212.212.2"]
    assert lab_.cache.rrset("ns.elsewhere.test.", RRType.A) is None
    dropped = [text for e in events if isinstance(e, RecordsDropped) for text in e.records]
    assert any("6.6.6.11" in text and "glue outside the zone" in text for text in dropped)


def edit_both(first, second):  # type: ignore[no-untyped-def]
    def rewrite(query: bytes, reply: bytes) -> bytes:
        return second(query, first(query, reply))
    return rewrite


def test_ns_answer_carries_the_cached_server_addresses_unless_turned_off() -> None:
    """RFC 1034 §3.7: what a client asking NS asks next is the servers' addresses; with
    ns_addresses_in_answer off the answer is as lean as Knot Resolver's."""
    full = lab(settings=QMIN).resolve("networkutopia.com.", RRType.NS)
    lean = lab(settings=EngineSettings(ns_addresses_in_answer=False)).resolve(
        "networkutopia.com.", RRType.NS)
    assert {rr.rtype for rr in full.answer} == {RRType.NS}
    assert [rr.to_text() for rr in lean.answer] == [rr.to_text() for rr in full.answer]
    servers = {rr.target for rr in full.answer}
    assert full.additional and {rr.name for rr in full.additional} <= servers
    assert lean.additional == ()
