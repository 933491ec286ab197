"""The scripted upstream: range selection, step consumption, reply adjustments (README §3.5-3.6)."""

from __future__ import annotations

from pathlib import Path

import dnslib
import pytest

from tests.replay.harness_support import make_scenario, wire_query
from tests.replay.messages import view
from tests.replay.mock_upstream import MockUpstream, Timeline
from tests.replay.rpl import Scenario
from tests.replay.seam import UpstreamError, UpstreamTimeout


def entry(qname: str, answer: str, *, match: str = "opcode qtype qname",
          adjust: str = "copy_id", reply: str = "QR AA NOERROR", qtype: str = "A") -> str:
    return f"""ENTRY_BEGIN
MATCH {match}
ADJUST {adjust}
REPLY {reply}
SECTION QUESTION
{qname} IN {qtype}
SECTION ANSWER
{answer}
ENTRY_END
"""


def rng(start: int, end: int, *entries: str, address: str | None = None) -> str:
    head = f"RANGE_BEGIN {start} {end}\n" + (f"ADDRESS {address}\n" if address else "")
    return head + "".join(entries) + "RANGE_END\n"


STEPS = """
STEP 10 QUERY
ENTRY_BEGIN
SECTION QUESTION
a.example. IN A
ENTRY_END
STEP 20 CHECK_ANSWER
ENTRY_BEGIN
MATCH opcode
ENTRY_END
STEP 30 NOTHING
"""


def mock_for(scenario: Scenario, cursor: int = 0, **options: bool) -> MockUpstream:
    timeline = Timeline(scenario.steps)
    timeline.cursor = cursor
    return MockUpstream(scenario, timeline, **options)


def answer_of(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in dnslib.DNSRecord.parse(reply).rr]


# --- Deckard (README §3.6.1) -------------------------------------------------------------------

def test_deckard_first_eligible_range_wins_without_fall_through(tmp_path: Path) -> None:
    """Only the first eligible range is searched; no match there -> SERVFAIL + undefined."""
    scenario = make_scenario(tmp_path, "deckard", STEPS
                             + rng(0, 100, entry("a.example.", "a.example. IN A 10.0.0.1"))
                             + rng(0, 100, entry("b.example.", "b.example. IN A 10.0.0.2")))
    mock = mock_for(scenario)
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.1"]
    servfail = view(mock("192.0.2.1", wire_query("b.example."), False))
    assert servfail.rcode == 2 and servfail.qname == "b.example."
    assert len(mock.problems) == 1 and "b.example. A" in mock.problems[0]


def test_deckard_address_selects_range_unless_unknown(tmp_path: Path) -> None:
    """A listed server uses its range; an address no range lists may use any range."""
    scenario = make_scenario(tmp_path, "deckard", STEPS
                             + rng(0, 100, entry("a.example.", "a.example. IN A 10.0.0.1"),
                                   address="192.0.2.1")
                             + rng(0, 100, entry("a.example.", "a.example. IN A 10.0.0.2"),
                                   address="192.0.2.2"))
    mock = mock_for(scenario)
    assert answer_of(mock("192.0.2.2", wire_query("a.example."), False)) == ["10.0.0.2"]
    assert answer_of(mock("198.51.100.9", wire_query("a.example."), False)) == ["10.0.0.1"]


def test_deckard_sid_is_the_executing_step(tmp_path: Path) -> None:
    """During STEP 10 ranges covering 10 answer; at STEP 30 ranges covering 30 (README §3.6.4)."""
    scenario = make_scenario(tmp_path, "deckard", STEPS
                             + rng(0, 15, entry("a.example.", "a.example. IN A 10.0.0.1"))
                             + rng(16, 40, entry("a.example.", "a.example. IN A 10.0.0.2")))
    mock = mock_for(scenario, cursor=0)
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.1"]
    mock.timeline.cursor = 2
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.2"]


def test_deckard_reply_steps_are_one_shot(tmp_path: Path) -> None:
    """Without an eligible range, the first later matching REPLY step answers once."""
    scenario = make_scenario(tmp_path, "deckard", STEPS.replace(
        "STEP 30 NOTHING", "STEP 30 REPLY\n" + entry("a.example.", "a.example. IN A 10.0.0.3")))
    mock = mock_for(scenario)
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.3"]
    assert view(mock("192.0.2.1", wire_query("a.example."), False)).rcode == 2
    assert len(mock.problems) == 1


def test_deckard_copy_id_copies_id_and_question_name(tmp_path: Path) -> None:
    """copy_id: query ID and the query's qname spelling; EDNS mirrors the query (README §3.5)."""
    scenario = make_scenario(tmp_path, "deckard", STEPS + rng(
        0, 100, entry("a.example.", "a.example. IN A 10.0.0.1", reply="QR AA NOERROR")))
    mock = mock_for(scenario)
    reply = view(mock("192.0.2.1", wire_query("A.ExAmple.", ident=777, do=True), False))
    assert (reply.id, reply.qname, reply.do) == (777, "A.ExAmple.", True)
    plain = view(mock("192.0.2.1", wire_query("a.example.", ident=778), False))
    assert plain.edns is None and plain.flags == {"QR", "AA"}  # RD is not copied


def test_deckard_do_not_answer_and_raw_id(tmp_path: Path) -> None:
    """do_not_answer times out; raw_id sends the RAW bytes with the query's ID."""
    raw = "ENTRY_BEGIN\nMATCH opcode\nADJUST raw_id\nRAW\nffff8180000000000000000\nENTRY_END\n"
    silent = entry("b.example.", "", adjust="do_not_answer")
    scenario = make_scenario(tmp_path, "deckard", STEPS
                             + rng(0, 100, raw, address="192.0.2.7")
                             + rng(0, 100, silent, address="192.0.2.1"))
    mock = mock_for(scenario)
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.1", wire_query("b.example."), False)
    assert mock("192.0.2.7", wire_query("x.", ident=0x1234), False)[:4] == b"\x12\x34\x81\x80"


def test_deckard_unused_mandatory_entry_is_reported(tmp_path: Path) -> None:
    """MANDATORY entries that never answered are listed for the end-of-scenario check."""
    mandatory = entry("b.example.", "b.example. IN A 10.0.0.2").replace(
        "ENTRY_BEGIN\n", "ENTRY_BEGIN\nMANDATORY\n")
    scenario = make_scenario(tmp_path, "deckard", STEPS + rng(
        0, 100, entry("a.example.", "a.example. IN A 10.0.0.1"), mandatory))
    mock = mock_for(scenario)
    mock("192.0.2.1", wire_query("a.example."), False)
    assert [e.lineno for e in mock.unfired_mandatory()] == [scenario.ranges[0].entries[1].lineno]


# --- testbound (README §3.6.2) -----------------------------------------------------------------

def test_testbound_ranges_in_reverse_order_with_fall_through(tmp_path: Path) -> None:
    """The last range is searched first; without a match the search falls through."""
    scenario = make_scenario(tmp_path, "unbound", STEPS
                             + rng(0, 100, entry("a.example.", "a.example. IN A 10.0.0.1"),
                                   entry("b.example.", "b.example. IN A 10.0.0.2"))
                             + rng(0, 100, entry("a.example.", "a.example. IN A 10.0.0.9")))
    mock = mock_for(scenario)
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.9"]
    assert answer_of(mock("192.0.2.1", wire_query("b.example."), False)) == ["10.0.0.2"]
    assert not mock.problems


def test_testbound_range_address_must_equal_server(tmp_path: Path) -> None:
    """A range with an ADDRESS only answers that server; unanswered queries time out."""
    scenario = make_scenario(tmp_path, "unbound", STEPS + rng(
        0, 100, entry("a.example.", "a.example. IN A 10.0.0.1"), address="192.0.2.1"))
    mock = mock_for(scenario)
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.2", wire_query("a.example."), False)
    assert "192.0.2.2" in mock.problems[0]
    assert "UNANSWERED" in str(mock.log[0])


def test_testbound_qname_match_is_case_sensitive(tmp_path: Path) -> None:
    """testbound compares presentation strings, so letter case matters (README §3.4)."""
    scenario = make_scenario(tmp_path, "unbound", STEPS + rng(
        0, 100, entry("K.ROOT-SERVERS.NET.", "K.ROOT-SERVERS.NET. IN A 10.0.0.1")))
    mock = mock_for(scenario, lenient_timeouts=True)
    assert answer_of(mock("192.0.2.1", wire_query("K.ROOT-SERVERS.NET."), False))
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.1", wire_query("k.root-servers.net."), False)
    assert not mock.problems  # lenient: unanswered queries are not problems


CHECKED_STEPS = """
STEP 10 QUERY
ENTRY_BEGIN
SECTION QUESTION
a.example. IN A
ENTRY_END
STEP 20 CHECK_OUT_QUERY
ENTRY_BEGIN
MATCH qname qtype opcode
SECTION QUESTION
a.example. IN A
ENTRY_END
STEP 30 REPLY
{reply}
STEP 40 CHECK_OUT_QUERY
ENTRY_BEGIN
MATCH qname qtype opcode
SECTION QUESTION
a.example. IN A
ENTRY_END
STEP 50 TIMEOUT
STEP 60 CHECK_OUT_QUERY
ENTRY_BEGIN
MATCH qname qtype opcode
SECTION QUESTION
a.example. IN A
ENTRY_END
STEP 70 ERROR
STEP 80 CHECK_ANSWER
ENTRY_BEGIN
MATCH opcode
ENTRY_END
"""


def test_testbound_check_out_query_consumes_following_steps(tmp_path: Path) -> None:
    """CHECK_OUT_QUERY + REPLY / TIMEOUT / ERROR answer in turn and move the cursor."""
    body = CHECKED_STEPS.format(reply=entry("a.example.", "a.example. IN A 10.0.0.5"))
    scenario = make_scenario(tmp_path, "unbound", body)
    mock = mock_for(scenario, cursor=1)
    assert answer_of(mock("192.0.2.1", wire_query("a.example."), False)) == ["10.0.0.5"]
    assert mock.timeline.current is not None and mock.timeline.current.id == 40
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.1", wire_query("a.example."), False)
    with pytest.raises(UpstreamError):
        mock("192.0.2.1", wire_query("a.example."), False)
    assert mock.timeline.current is not None and mock.timeline.current.id == 80
    assert [r.sid for r in mock.log] == [20, 40, 60]


def test_testbound_timeout_step_answers_unmatched_query(tmp_path: Path) -> None:
    """A query no range answers is given the TIMEOUT step at the cursor (README §3.6.2 #3)."""
    scenario = make_scenario(tmp_path, "unbound", "STEP 1 QUERY\nENTRY_BEGIN\nSECTION QUESTION\n"
                             "a. IN A\nENTRY_END\nSTEP 2 TIMEOUT\nSTEP 3 NOTHING\n")
    mock = mock_for(scenario, cursor=1)
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.1", wire_query("zzz."), False)
    assert mock.timeline.cursor == 2 and not mock.problems


def test_testbound_copy_id_copies_only_the_id(tmp_path: Path) -> None:
    """testbound copy_id keeps the entry's question; OPT only when the entry says DO."""
    scenario = make_scenario(tmp_path, "unbound", STEPS + rng(
        0, 100, entry("a.example.", "a.example. IN A 10.0.0.1", match="opcode qtype"),
        entry("b.example.", "b.example. IN A 10.0.0.2", match="qname", reply="QR DO")))
    mock = mock_for(scenario)
    reply = view(mock("192.0.2.1", wire_query("other.example.", ident=99, do=True), False))
    assert (reply.id, reply.qname, reply.edns) == (99, "a.example.", None)
    with_do = view(mock("192.0.2.1", wire_query("b.example.", qtype="MX"), False))
    assert with_do.edns is not None and with_do.do and with_do.edns.payload == 1232


def test_testbound_match_tcp_and_copy_query(tmp_path: Path) -> None:
    """MATCH TCP only answers TCP queries; copy_query copies the question (README §3.5)."""
    scenario = make_scenario(tmp_path, "unbound", STEPS + rng(
        0, 100, entry("x.", "x. IN A 10.0.0.1", match="TCP", adjust="copy_id copy_query")))
    mock = mock_for(scenario, lenient_timeouts=True)
    with pytest.raises(UpstreamTimeout):
        mock("192.0.2.1", wire_query("q.example."), False)
    reply = view(mock("192.0.2.1", wire_query("q.example.", qtype="MX"), True))
    assert (reply.qname, reply.qtype) == ("q.example.", 15)


def test_testbound_hex_answer_gets_query_id(tmp_path: Path) -> None:
    """HEX answers are sent as bytes with the query ID written over bytes 0-1."""
    hex_entry = ("ENTRY_BEGIN\nMATCH opcode\nADJUST copy_id\nHEX_ANSWER_BEGIN\n"
                 "0000 8180 0000 0000 0000 0000 ; header only\nHEX_ANSWER_END\nENTRY_END\n")
    scenario = make_scenario(tmp_path, "unbound", STEPS + rng(0, 100, hex_entry))
    mock = mock_for(scenario)
    assert mock("192.0.2.1", wire_query("a.", ident=0xBEEF), False) == bytes.fromhex(
        "beef81800000000000000000")


def test_log_records_every_query_with_outcome(tmp_path: Path) -> None:
    """Each transport call is logged with step id, server, transport and what answered."""
    scenario = make_scenario(tmp_path, "deckard", STEPS + rng(
        0, 100, entry("a.example.", "a.example. IN A 10.0.0.1")))
    mock = mock_for(scenario)
    mock("192.0.2.1", wire_query("a.example.", do=True), True)
    (record,) = mock.log
    text = str(record)
    assert "step 10 -> 192.0.2.1 TCP" in text and "a.example. A" in text and "DO" in text
    assert "RANGE 0-100" in text and "RANGE 0-100" in mock.log_text()
