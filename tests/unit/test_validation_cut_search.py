"""Finding the zone of data that came without RRSIGs (engine.validation): the names the DS
walk asks, which denials of a DS mark a zone cut (RFC 4035 §5.2, RFC 6840 §4.4), and which
answer RRsets need the walk at all."""

from __future__ import annotations

from resolver.dns.wire import Record, RRType, parse_records
from resolver.engine.classify import Classified, ResponseKind
from resolver.engine.validation import denial_marks_cut, names_below, unsigned_owners


def records(text: str) -> list[Record]:
    return list(parse_records(text))


def test_names_below_a_zone_run_top_down_to_the_owner() -> None:
    assert names_below(".", "www.plain.test.") == ["test.", "plain.test.", "www.plain.test."]
    assert names_below("test.", "www.plain.test.") == ["plain.test.", "www.plain.test."]


def test_names_below_is_empty_for_the_zone_itself_or_a_name_outside_it() -> None:
    assert names_below("plain.test.", "plain.test.") == []
    assert names_below("other.", "www.plain.test.") == []


def test_an_nsec_at_the_name_with_the_ns_bit_marks_a_cut() -> None:
    denial = records("plain.test. 300 IN NSEC q.test. NS RRSIG NSEC\n")
    assert denial_marks_cut("plain.test.", denial)


def test_an_nsec_at_the_name_without_the_ns_bit_marks_no_cut() -> None:
    denial = records("host.test. 300 IN NSEC q.test. A RRSIG NSEC\n")
    assert not denial_marks_cut("host.test.", denial)


def test_an_nsec_that_only_covers_the_name_marks_no_cut() -> None:
    # An empty non-terminal (or a name that does not exist) owns no NSEC: no delegation
    # is shown there, so it must not make the data below it insecure.
    denial = records("a.test. 300 IN NSEC x.ent.test. NS RRSIG NSEC\n")
    assert not denial_marks_cut("ent.test.", denial)


def test_no_denial_marks_no_cut() -> None:
    assert not denial_marks_cut("plain.test.", [])


def _answer(text: str) -> Classified:
    answer = [r for r in records(text) if r.rtype != RRType.RRSIG]
    sigs = [r for r in records(text) if r.rtype == RRType.RRSIG]
    return Classified(kind=ResponseKind.ANSWER, answer=tuple(answer), signatures=tuple(sigs))


def test_an_unsigned_rrset_below_the_zone_asked_needs_the_walk() -> None:
    classified = _answer("www.plain.test. 300 IN A 192.0.2.1\n")
    assert unsigned_owners(classified, ".") == ["www.plain.test."]


def test_an_unsigned_rrset_at_the_zone_asked_needs_no_walk() -> None:
    classified = _answer("test. 300 IN A 192.0.2.1\n")
    assert unsigned_owners(classified, "test.") == []


def test_a_signed_rrset_needs_no_walk() -> None:
    classified = _answer(
        "www.example.test. 300 IN A 192.0.2.1\n"
        "www.example.test. 300 IN RRSIG A 13 3 300 20250201000000 20250101000000 1 "
        "example.test. AAAA\n")
    assert unsigned_owners(classified, ".") == []


def test_an_unsigned_ds_rrset_is_the_parents_data_and_needs_no_walk() -> None:
    classified = _answer("child.test. 300 IN DS 1 13 2 "
                         "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF\n")
    assert unsigned_owners(classified, "test.") == []
