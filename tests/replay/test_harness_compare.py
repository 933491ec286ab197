"""CHECK_ANSWER profiles and MATCH rules on hand-built messages (README §3.4, §3.8)."""

from __future__ import annotations

import dnslib

from tests.replay.compare import answer_mismatches, match_mismatches, rr_key
from tests.replay.messages import MessageView, make_opt, view
from tests.replay.rplconfig import Dialect
from tests.replay.rrtext import parse_rr

DECKARD, TESTBOUND = Dialect.DECKARD, Dialect.TESTBOUND


def message(qname: str = "www.example.com.", qtype: str = "A", *, ident: int = 7,
            flags: str = "QR RD RA", rcode: int = 0, answer: tuple[str, ...] = (),
            authority: tuple[str, ...] = (), additional: tuple[str, ...] = (),
            ede: int | None = None) -> MessageView:
    header = dnslib.DNSHeader(id=ident, rcode=rcode, **{f.lower(): 1 for f in flags.split()})
    record = dnslib.DNSRecord(header, q=dnslib.DNSQuestion(qname, getattr(dnslib.QTYPE, qtype)))
    record.rr = [parse_rr(line) for line in answer]
    record.auth = [parse_rr(line) for line in authority]
    record.ar = [parse_rr(line) for line in additional]
    if ede is not None:
        record.ar.append(make_opt(payload=1232, do=False, options=((15, ede.to_bytes(2, "big")),)))
    return view(bytes(record.pack()))


QUERY = message(flags="RD")
A_RECORD = "www.example.com. 3600 IN A 10.20.30.40"
NS_RECORD = "example.com. 3600 IN NS ns1.example.com."
GLUE = "ns1.example.com. 3600 IN A 192.0.2.53"
SOA = "example.com. 3600 IN SOA ns1.example.com. host.example.com. 1 2 3 4 5"


def test_rr_key_ignores_owner_case_name_case_and_ttl() -> None:
    """Owner and embedded names compare case-insensitively; TTL only on request."""
    upper = parse_rr("WWW.Example.COM. 10 IN CNAME Target.EXAMPLE.com.")
    lower = parse_rr("www.example.com. 99 IN CNAME target.example.com.")
    assert rr_key(upper) == rr_key(lower)
    assert rr_key(upper, with_ttl=True) != rr_key(lower, with_ttl=True)
    assert rr_key(parse_rr('a. TXT "Hello"')) != rr_key(parse_rr('a. TXT "hello"'))


def test_deckard_all_ignores_ttl_and_order() -> None:
    """Deckard `all`: sections as multisets, TTLs never compared (README §3.8 item 1)."""
    expected = message(answer=(A_RECORD, "www.example.com. IN A 10.20.30.41"))
    answer = message(answer=("www.example.com. 5 IN A 10.20.30.41", "www.example.com. 7 IN A "
                             "10.20.30.40"))
    assert answer_mismatches({"all"}, expected, answer, QUERY, dialect=DECKARD, tcp=False) == []


def test_deckard_all_reports_each_difference() -> None:
    """Flags, rcode and extra records are each named in the mismatch list."""
    expected = message(answer=(A_RECORD,))
    answer = message(flags="QR AA RD RA", answer=(A_RECORD,), authority=(NS_RECORD,))
    problems = answer_mismatches({"all"}, expected, answer, QUERY, dialect=DECKARD, tcp=False)
    assert any(p.startswith("flags: expected QR RD RA, got QR AA RD RA") for p in problems)
    assert any("authority section differs" in p and "unexpected: example.com." in p
               for p in problems)
    assert len(problems) == 2


def test_deckard_sections_count_duplicates() -> None:
    """A record sent twice is not the same as a record sent once (multiset, not set)."""
    expected = message(answer=(A_RECORD,))
    answer = message(answer=(A_RECORD, A_RECORD))
    assert answer_mismatches({"answer"}, expected, answer, QUERY, dialect=DECKARD, tcp=False)


def test_testbound_relaxed_projects_full_sections() -> None:
    """With minimal-responses: no the expected NS/glue are dropped before comparing."""
    expected = message(answer=(A_RECORD,), authority=(NS_RECORD,), additional=(GLUE,))
    minimal = message(answer=(A_RECORD,))
    assert answer_mismatches({"all"}, expected, minimal, QUERY, dialect=TESTBOUND, tcp=False,
                             full_sections=True) == []
    problems = answer_mismatches({"all"}, expected, minimal, QUERY, dialect=TESTBOUND,
                                 tcp=False, full_sections=False)
    assert any("authority section differs" in p for p in problems)


def test_testbound_relaxed_keeps_negative_proof() -> None:
    """Projection keeps the SOA of a negative answer, so a missing SOA still fails."""
    expected = message(rcode=3, authority=(SOA, NS_RECORD))
    without_soa = message(rcode=3)
    problems = answer_mismatches({"all"}, expected, without_soa, QUERY, dialect=TESTBOUND,
                                 tcp=False, full_sections=True)
    assert problems and "missing:    example.com. 3600 IN SOA" in problems[0]


def test_testbound_match_ttl_compares_ttls() -> None:
    """`MATCH all ttl` makes TTLs part of record identity (README §3.8 item 3)."""
    expected = message(answer=(A_RECORD,))
    aged = message(answer=("www.example.com. 3590 IN A 10.20.30.40",))
    assert answer_mismatches({"all"}, expected, aged, QUERY, dialect=TESTBOUND, tcp=False) == []
    problems = answer_mismatches({"all", "ttl"}, expected, aged, QUERY, dialect=TESTBOUND,
                                 tcp=False)
    assert problems and "TTLs compared" in problems[0]


def test_testbound_relaxed_checks_question() -> None:
    """The question section must match the expected one (case-insensitively)."""
    expected = message(qname="www.example.com.")
    other = message(qname="mail.example.com.")
    problems = answer_mismatches({"all"}, expected, other, None, dialect=TESTBOUND, tcp=False)
    assert any(p.startswith("question:") for p in problems)


def test_sanity_id_and_question_are_echoed() -> None:
    """Every profile checks that the answer echoes the query ID and question (§3.8 item 4)."""
    expected = message()
    wrong_id = message(ident=8)
    assert any("does not echo query ID" in p for p in answer_mismatches(
        {"opcode"}, expected, wrong_id, QUERY, dialect=DECKARD, tcp=False))
    wrong_case = message(qname="WWW.example.com.")
    assert any("does not echo the query's" in p for p in answer_mismatches(
        {"opcode"}, expected, wrong_case, QUERY, dialect=TESTBOUND, tcp=False))


def test_qname_match_case_rules_per_dialect() -> None:
    """Deckard qname ignores case; testbound compares the presentation string."""
    expected, upper = message(), message(qname="WWW.EXAMPLE.COM.")
    assert match_mismatches({"qname"}, expected, upper, tcp=False, dialect=DECKARD) == []
    assert match_mismatches({"qname"}, expected, upper, tcp=False, dialect=TESTBOUND)
    assert match_mismatches({"qcase"}, expected, upper, tcp=False, dialect=DECKARD)


def test_subdomain_and_transport_elements() -> None:
    """`subdomain` accepts names at or below the entry's; TCP/UDP compare the transport."""
    parent = message(qname="example.com.")
    assert match_mismatches({"subdomain"}, parent, message(), tcp=False, dialect=DECKARD) == []
    assert match_mismatches({"subdomain"}, message(), parent, tcp=False, dialect=DECKARD)
    assert match_mismatches({"TCP"}, parent, parent, tcp=False, dialect=TESTBOUND)
    assert match_mismatches({"TCP"}, parent, parent, tcp=True, dialect=TESTBOUND) == []


def test_ede_checked_unless_ignored() -> None:
    """`ede=N` needs an Extended DNS Error N unless the run ignores EDE (README §3.8 item 3)."""
    expected = message(rcode=2)
    stale = message(rcode=2, ede=3)
    plain = message(rcode=2)
    assert answer_mismatches({"rcode", "ede=3"}, expected, stale, QUERY, dialect=TESTBOUND,
                             tcp=False) == []
    assert answer_mismatches({"rcode", "ede=3"}, expected, plain, QUERY, dialect=TESTBOUND,
                             tcp=False)
    assert answer_mismatches({"rcode", "ede=3"}, expected, plain, QUERY, dialect=TESTBOUND,
                             tcp=False, ignore_ede=True) == []


def test_undecodable_answer_and_unknown_element_are_reported() -> None:
    """Garbage answers and MATCH elements the harness lacks never pass silently."""
    garbage = view(b"\x00\x07\x81\x80\x00\x01")
    problems = answer_mismatches({"answer"}, message(), garbage, QUERY, dialect=DECKARD,
                                 tcp=False)
    assert any("could not be decoded" in p for p in problems)
    assert match_mismatches({"client_cookie"}, message(), message(), tcp=False,
                            dialect=TESTBOUND) == [
        "MATCH element 'client_cookie' is not supported by the harness"]
