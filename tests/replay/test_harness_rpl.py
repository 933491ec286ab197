"""Scenario parsing: every shipped file, ENTRY grammar, CONFIG mapping (README §3.2-3.4)."""

from __future__ import annotations

from pathlib import Path

import dnslib
import pytest

from tests.replay.cases import default_scenario_root
from tests.replay.harness_support import make_scenario
from tests.replay.rpl import RplSyntaxError, StepKind, dialect_for, parse_scenario_file
from tests.replay.rplconfig import Dialect, parse_config

ROOT = default_scenario_root()


@pytest.mark.parametrize("suite", ["deckard", "unbound", "deckard-dnssec", "unbound-dnssec"])
def test_parse_every_shipped_file(suite: str) -> None:
    """Every copied scenario file parses, with steps and the dialect of its folder."""
    files = sorted((ROOT / suite).glob("*.rpl"))
    assert files, f"no scenario files in {ROOT / suite}"
    failures = []
    for path in files:
        try:
            scenario = parse_scenario_file(path)
        except RplSyntaxError as exc:
            failures.append(str(exc))
            continue
        assert scenario.steps and scenario.dialect is dialect_for(path.parent)
    assert not failures, "\n".join(failures)


def test_parse_dialect_follows_folder_name() -> None:
    """deckard* folders are Deckard, unbound* folders testbound, anything else is refused."""
    assert dialect_for("deckard-dnssec") is Dialect.DECKARD
    assert dialect_for(Path("/x/unbound")) is Dialect.TESTBOUND
    with pytest.raises(ValueError):
        dialect_for("knot")


def test_parse_ranges_with_addresses(tmp_path: Path) -> None:
    """Deckard allows the address on RANGE_BEGIN; ADDRESS lines add more."""
    scenario = make_scenario(tmp_path, "deckard", """
RANGE_BEGIN 0 100 1.2.3.1
    ADDRESS 1.2.3.2
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR NOERROR
SECTION QUESTION
example. IN A
ENTRY_END
RANGE_END
STEP 10 QUERY
ENTRY_BEGIN
REPLY RD
SECTION QUESTION
example. IN A
ENTRY_END
""")
    (rng,) = scenario.ranges
    assert (rng.start, rng.end, rng.addresses) == (0, 100, ("1.2.3.1", "1.2.3.2"))
    assert rng.entries[0].match == {"opcode", "qtype", "qname"}


def test_parse_entry_grammar(tmp_path: Path) -> None:
    """MATCH lines form a union; REPLY sets opcode, rcode, flags and DO; comments are dropped."""
    scenario = make_scenario(tmp_path, "unbound", """
STEP 1 CHECK_ANSWER
ENTRY_BEGIN
MATCH opcode qname  # trailing remark
MATCH ttl ; comment
ADJUST copy_id copy_query
REPLY QR AA RD NXDOMAIN DO
MANDATORY
SECTION QUESTION
www.example.com. IN A
SECTION ANSWER
www.example.com. 300 IN TXT "a;b" ;{id = 2854 (zsk)}
SECTION AUTHORITY
example.com. IN SOA ns.example.com. h.example.com. 1 2 3 4 5
SECTION ADDITIONAL
ENTRY_END
""")
    entry = scenario.steps[0].entry
    assert entry is not None
    assert entry.match == {"opcode", "qname", "ttl"}
    assert entry.adjust == {"copy_id", "copy_query"}
    assert (entry.rcode, entry.flags, entry.do, entry.mandatory) == (
        3, frozenset({"QR", "AA", "RD"}), True, True)
    assert entry.answer[0].rdata.data == [b"a;b"] and entry.answer[0].ttl == 300
    assert entry.authority[0].ttl == 3600  # default TTL
    assert "trailing remark" in entry.source


def test_parse_origin_and_ttl_directives(tmp_path: Path) -> None:
    """$ORIGIN makes owners absolute and $TTL sets the default TTL (README §3.4)."""
    scenario = make_scenario(tmp_path, "unbound", """
$ORIGIN example.com.
$TTL 60
STEP 1 REPLY
ENTRY_BEGIN
SECTION QUESTION
www IN A
SECTION ANSWER
www IN CNAME host
@ IN A 192.0.2.1
ENTRY_END
""")
    entry = scenario.steps[0].entry
    assert entry is not None
    assert str(entry.question[0].qname) == "www.example.com."
    cname, apex = entry.answer
    assert (str(cname.rname), str(cname.rdata.label), cname.ttl) == (
        "www.example.com.", "host.example.com.", 60)
    assert str(apex.rname) == "example.com."


def test_parse_raw_and_hex_blocks(tmp_path: Path) -> None:
    """RAW and HEX_ANSWER blocks become bytes; hex comments are ignored."""
    scenario = make_scenario(tmp_path, "deckard", """
STEP 1 QUERY
ENTRY_BEGIN
RAW
b5c9ca3d501043
ENTRY_END
STEP 2 CHECK_ANSWER
ENTRY_BEGIN
MATCH rcode
HEX_ANSWER_BEGIN
  00 01 81 80 ; id, flags
  0000 0000 0000 0000
HEX_ANSWER_END
ENTRY_END
""")
    raw_entry, hex_entry = (step.entry for step in scenario.steps)
    assert raw_entry is not None and raw_entry.raw == bytes.fromhex("b5c9ca3d501043")
    assert hex_entry is not None and hex_entry.hex_answer == bytes.fromhex("00018180" + "00" * 8)


def test_parse_dname_and_generic_rdata(tmp_path: Path) -> None:
    """DNAME parses and packs its target uncompressed; RFC 3597 `\\#` RDATA is kept as bytes."""
    scenario = make_scenario(tmp_path, "unbound", r"""
STEP 1 REPLY
ENTRY_BEGIN
SECTION ANSWER
example.com. IN DNAME example.net.
x.example.net. IN TYPE4001 \# 2 0102
x.example.net. IN HTTPS \# 3 000100
ENTRY_END
""")
    entry = scenario.steps[0].entry
    assert entry is not None
    dname, generic, https = entry.answer
    assert dname.rtype == 39 and str(dname.rdata.label) == "example.net."
    record = dnslib.DNSRecord(rr=[dname, dnslib.RR("a.example.net.", rdata=dnslib.CNAME(
        "example.net."))])
    assert b"\x07example\x03net\x00" in bytes(record.pack())  # not a pointer
    assert (generic.rtype, generic.rdata.data) == (4001, b"\x01\x02")
    assert https.rdata.data == b"\x00\x01\x00"


def test_parse_step_line_options(tmp_path: Path) -> None:
    """STEP lines carry ADDRESS and ELAPSE; TIMEOUT/ERROR/TRAFFIC need no entry."""
    scenario = make_scenario(tmp_path, "unbound", """
STEP 1 QUERY ADDRESS 10.0.0.1
ENTRY_BEGIN
SECTION QUESTION
a. IN A
ENTRY_END
STEP 2 TIMEOUT
STEP 3 TIME_PASSES ELAPSE 1.5
STEP 4 TRAFFIC
""")
    query, timeout, time_passes, traffic = scenario.steps
    assert query.address == "10.0.0.1" and query.entry is not None
    assert (timeout.kind, time_passes.elapse, traffic.kind) == (
        StepKind.TIMEOUT, 1.5, StepKind.TRAFFIC)


@pytest.mark.parametrize(("body", "message"), [
    ("STEP 2 NOTHING\nSTEP 1 NOTHING", "does not increase"),
    ("STEP 1 REPLY\nENTRY_BEGIN\nREPLY BOGUS\nENTRY_END", "unknown REPLY token"),
    ("STEP 1 REPLY\nENTRY_BEGIN\nSECTION ANSWER\na. IN A not-an-ip\nENTRY_END", "cannot parse"),
    ("STEP 1 FROBNICATE", "bad STEP line"),
])
def test_parse_rejects_bad_input(tmp_path: Path, body: str, message: str) -> None:
    """Grammar errors name file and line instead of running a half-understood scenario."""
    with pytest.raises(RplSyntaxError, match=message):
        make_scenario(tmp_path, "unbound", body)


def test_config_deckard_mapping() -> None:
    """Deckard keys map to ReplayConfig; qmin pinned; `;`/`#` comments ignored (README §3.3)."""
    config = parse_config([
        "do-ip6: no", "; comment", "\tstub-addr: 193.0.14.129 \t# K.ROOT-SERVERS.NET.",
        "query-minimization: off ; cache test", "harden-glue: off",
        'trust-anchor: ". IN DS 1 8 2 AB"', "features: min_ttl = 5 ; kresd",
        'val-override-date: "20070916134226"', "mystery-key: 1",
    ], Dialect.DECKARD)
    replay = config.replay
    assert replay.root_hints == [("k.root-servers.net.", "193.0.14.129")]
    assert (replay.do_ip6, replay.harden_glue, replay.cache_min_ttl) == (False, False, 5)
    assert config.pinned_qmin is False and replay.qmin_qtype == "NS"
    assert replay.trust_anchors == [". IN DS 1 8 2 AB"] and replay.validate
    assert config.start_time == 1189950146.0
    assert replay.extra == {"mystery-key": "1"}
    assert config.for_qmin(True).qmin is True


def test_config_deckard_walks_from_the_hints_without_priming() -> None:
    """Deckard's kresd template turns root priming off; testbound runs Unbound, which primes."""
    deckard = parse_config(["stub-addr: 193.0.14.129"], Dialect.DECKARD)
    testbound = parse_config(["server:", "stub-zone:", 'name: "."', "stub-addr: 1.2.3.4"],
                             Dialect.TESTBOUND)
    assert deckard.replay.prime_root is False
    assert testbound.replay.prime_root is True


def test_config_ns_answers_carry_addresses_for_unbound_not_for_kresd() -> None:
    """Unbound adds the servers' addresses to an NS answer; kresd does not."""
    deckard = parse_config(["stub-addr: 193.0.14.129"], Dialect.DECKARD)
    testbound = parse_config(["server:", "stub-zone:", 'name: "."', "stub-addr: 1.2.3.4"],
                             Dialect.TESTBOUND)
    assert deckard.replay.ns_addresses_in_answer is False
    assert testbound.replay.ns_addresses_in_answer is True


def test_config_testbound_mapping() -> None:
    """unbound.conf clauses: root stub -> hints, zones, one-line forms, server keys (§3.3)."""
    config = parse_config([
        "server:", '\ttarget-fetch-policy: "0 0 0 0 0"', '\tqname-minimisation: "no"',
        "\tminimal-responses: no", "\tcache-max-negative-ttl: 10", "\tprefetch: yes",
        "\tmodule-config: \"iterator\"", "\toutbound-msg-retry: 0",
        "stub-zone:", '\tname: "."', "\tstub-addr: 193.0.14.129 # K.ROOT",
        "stub-zone:", '\tname: "example.com"', "\tstub-addr: 1.2.3.4@53",
        'forward-zone: name: "example.net" forward-addr: 10.0.0.1',
        'forward-zone: name: "." forward-addr: 216.0.0.1',
    ], Dialect.TESTBOUND)
    replay = config.replay
    assert replay.root_hints == [("k.root-servers.net.", "193.0.14.129")]
    assert replay.stub_zones == {"example.com.": ["1.2.3.4"]}
    assert replay.forward_zones == {"example.net.": ["10.0.0.1"]}
    assert replay.forwarders == ["216.0.0.1"]
    assert config.pinned_qmin is False and replay.qmin_qtype == "A"
    assert config.full_sections and not replay.minimal_responses
    assert (replay.cache_max_negative_ttl, replay.prefetch, replay.validate) == (10, True, False)
    assert replay.extra == {"outbound-msg-retry": "0"}


def test_config_testbound_defaults() -> None:
    """Unset qname-minimisation stays unset; minimal responses are the default."""
    config = parse_config(["server:", "stub-zone:", 'name: "."', "stub-addr: 1.2.3.4"],
                          Dialect.TESTBOUND)
    assert config.pinned_qmin is None and not config.full_sections
    assert config.start_time is None
