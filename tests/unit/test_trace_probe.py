"""`resolver trace --fanout` and `--recursive`, over the in-memory lab."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from resolver.cli.trace_probe import (
    CutReport,
    Prober,
    ProbeStatus,
    cuts_on_path,
    fanout_json,
    parse_server,
    recursive_json,
)
from resolver.cli.trace_run import TraceRequest, TraceResult, fanout_lines, run_trace
from resolver.dns import names
from resolver.dns.wire import Question, RRType, type_from_text
from resolver.engine.network import ServerAddress, Transport
from tests.support.labnet import FakeClock, LabNetwork, lab_root_hints


def trace(name: str, *, network_setup: Any = None, **options: Any) -> tuple[list[str], TraceResult]:
    clock = FakeClock()
    network = LabNetwork(clock)
    if network_setup is not None:
        network_setup(network)
    request = TraceRequest(question=Question(names.canonical(name), type_from_text("A")),
                           root_hints=lab_root_hints(), hints_label="lab.hints", **options)
    lines: list[str] = []
    result = asyncio.run(run_trace(request, emit=lines.append, network=network, clock=clock,
                                   rng=random.Random(0)))
    return lines, result


def report(result: TraceResult, zone: str) -> CutReport:
    return next(r for r in result.fanout if r.zone == zone)


# -- the path ------------------------------------------------------------------------


def test_cuts_on_path_lists_each_depth0_zone_once_with_the_parent_ns_set() -> None:
    """www.ibm.com: root, com, ibm.com, backup2.ibm.com, each with its parent's NS names."""
    _, result = trace("www.ibm.com")
    cuts = cuts_on_path(result.events, lab_root_hints())
    assert [c.zone for c in cuts] == [".", "com.", "ibm.com.", "backup2.ibm.com."]
    root, com, ibm, backup2 = cuts
    assert root.parent_source == "root hints"
    assert root.parent_ns == ("a.root-servers.net.", "b.root-servers.net.", "c.root-servers.net.")
    assert com.parent_source == "referral from ."
    assert dict(com.known)["a.gtld-servers.net."] == ("127.5.6.30",)
    assert ibm.question == Question("www.ibm.com.", RRType.A)
    assert backup2.question == Question("servereast.backup2.ibm.com.", RRType.A)
    assert backup2.parent_ns == ("ns.backup2.ibm.com.",)


def test_cuts_on_path_skips_nested_lookups() -> None:
    """www.glueless.org: the zones of the ns.hosting.net lookup (net, hosting.net) are not cuts."""
    _, result = trace("www.glueless.org")
    cuts = cuts_on_path(result.events, lab_root_hints())
    assert [c.zone for c in cuts] == [".", "org.", "glueless.org."]
    assert cuts[2].known == (("ns.hosting.net.", ()),)


# -- fan-out -------------------------------------------------------------------------


def test_fanout_marks_the_lame_server_and_the_parent_child_difference() -> None:
    """www.lame.test: ns1 (REFUSED) is lame, ns2 answers; ns1 is only in the parent's set."""
    lines, result = trace("www.lame.test", fanout=True)
    lame = report(result, "lame.test.")
    by_name = {p.server_name: p for p in lame.probes}
    assert by_name["ns1.lame.test."].status is ProbeStatus.LAME
    assert by_name["ns1.lame.test."].rcode == "REFUSED"
    assert by_name["ns2.lame.test."].status is ProbeStatus.OK
    assert (by_name["ns2.lame.test."].rcode, by_name["ns2.lame.test."].aa) == ("NOERROR", True)
    assert by_name["ns2.lame.test."].rtt_ms == 1.0
    assert lame.parent_ns == ("ns1.lame.test.", "ns2.lame.test.")
    assert lame.child_ns == ("ns2.lame.test.",)
    assert lame.only_in_parent == ("ns1.lame.test.",)
    assert lame.only_in_child == ()
    text = "\n".join(lines)
    assert "fan-out: zone lame.test., every server asked www.lame.test. A (RD=0)" in text
    assert "only in the parent: ns1.lame.test." in text
    table = lines[lines.index(fanout_lines(lame)[1]):]
    row = next(line for line in table if line.strip().startswith("ns1.lame.test."))
    assert "127.0.2.54" in row and "REFUSED" in row and "LAME (REFUSED)" in row


def test_fanout_asks_every_address_of_every_cut() -> None:
    """Each root server, both gtld servers and dns1 get the question; every one is fine."""
    _, result = trace("www.networkutopia.com", fanout=True)
    assert [r.zone for r in result.fanout] == [".", "com.", "networkutopia.com."]
    assert [p.address for p in report(result, ".").probes] == [
        "127.41.0.4", "127.247.170.2", "127.33.4.12"]
    assert [p.address for p in report(result, "com.").probes] == ["127.5.6.30", "127.33.14.30"]
    for cut in result.fanout:
        assert all(p.status is ProbeStatus.OK for p in cut.probes)
        assert cut.only_in_parent == cut.only_in_child == ()
        assert set(cut.child_ns) == set(cut.parent_ns)
    assert [p.detail for p in report(result, "com.").probes] == ["referral", "referral"]
    assert report(result, "networkutopia.com.").probes[0].detail == "answer"


def test_fanout_finds_the_address_of_a_glueless_name_server() -> None:
    """glueless.org's only server has no glue: the fan-out looks its address up and asks it."""
    _, result = trace("www.glueless.org", fanout=True)
    probes = report(result, "glueless.org.").probes
    assert [(p.server_name, p.address, p.status) for p in probes] == [
        ("ns.hosting.net.", "127.0.113.53", ProbeStatus.OK)]


def test_fanout_marks_a_silent_server_unreachable() -> None:
    """A root server that never answers is listed as unreachable, with its timeout."""
    lines, result = trace("www.networkutopia.com", fanout=True,
                          network_setup=lambda n: n.silent.add("127.33.4.12"))
    probe = next(p for p in report(result, ".").probes if p.address == "127.33.4.12")
    assert probe.status is ProbeStatus.UNREACHABLE
    assert probe.detail.startswith("timeout after")
    assert probe.rtt_ms is None
    table = lines[lines.index(fanout_lines(report(result, "."))[1]):]
    row = next(line for line in table if line.strip().startswith("c.root-servers.net."))
    assert "UNREACHABLE (timeout after" in row


def test_fanout_json_records() -> None:
    """--json --fanout: one fanout_probe per address and one fanout_ns_sets per cut."""
    lines, result = trace("www.lame.test", fanout=True, as_json=True)
    records = [json.loads(line) for line in lines]
    engine = len(result.events)
    assert records[:engine] == [e.to_json() for e in result.events]
    extra = records[engine:]
    assert {r["event"] for r in extra} == {"fanout_probe", "fanout_ns_sets"}
    sets = next(r for r in extra if r["event"] == "fanout_ns_sets" and r["zone"] == "lame.test.")
    assert sets == {"event": "fanout_ns_sets", "zone": "lame.test.",
                    "parent_source": "referral from test.",
                    "parent_ns": ["ns1.lame.test.", "ns2.lame.test."],
                    "child_ns": ["ns2.lame.test."], "only_in_parent": ["ns1.lame.test."],
                    "only_in_child": []}
    probe = next(r for r in extra if r["event"] == "fanout_probe"
                 and r["address"] == "127.0.2.54")
    assert probe["status"] == "lame" and probe["rcode"] == "REFUSED"
    assert set(probe) == {"event", "zone", "qname", "qtype", "server_name", "address", "status",
                          "rtt_ms", "rcode", "aa", "detail", "child_ns"}
    assert fanout_json(report(result, "lame.test."))[-1] == sets


def test_fanout_lines_report_agreement() -> None:
    """When parent and child list the same servers the table says so."""
    _, result = trace("www.networkutopia.com", fanout=True)
    lines = fanout_lines(report(result, "networkutopia.com."))
    assert lines[-1] == ("  NS sets: parent (referral from com.) and child agree: "
                         "dns1.networkutopia.com.")


# -- recursive contrast ------------------------------------------------------------------


def test_recursive_query_is_sent_with_rd_and_shown() -> None:
    """--recursive to a lab server: one RD=1 query; the reply and its time are printed."""
    lines, result = trace("www.networkutopia.com", recursive=ServerAddress("127.212.212.1", 53),
                          explain=True)
    assert result.recursive is not None and result.recursive.reply is not None
    assert result.recursive.reply.rcode == 0
    text = "\n".join(lines)
    assert "recursive contrast: one query with RD=1 to 127.212.212.1:53" in text
    assert "-> www.networkutopia.com. A  RD=1  UDP" in text
    assert "<- NOERROR  RA=0  AA=1  1.0 ms" in text
    assert "www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2" in text
    assert "iterative: 4 queries, 4.0 ms; recursive: 1 query, 1.0 ms" in text
    assert "RA=0: this server does not offer recursion" in text
    assert result.exit_code == 0


def test_recursive_query_sets_the_rd_bit_on_the_wire() -> None:
    """The query that leaves has RD=1 and a question equal to the trace's."""
    clock = FakeClock()
    network = LabNetwork(clock)
    prober = Prober(network=network, clock=clock, port=53, rng=random.Random(1))
    reply, rtt_ms, error = asyncio.run(prober.ask(Question("www.lame.test.", RRType.A),
                                                  ServerAddress("127.0.2.55", 53),
                                                  recursion_desired=True))
    (address, transport, wire), = network.log
    assert (address, transport) == ("127.0.2.55", Transport.UDP)
    assert wire[2] & 0x01 == 0x01
    assert reply is not None and reply.aa and error == "" and rtt_ms == 1.0


def test_recursive_server_that_does_not_answer_gives_exit_one_and_one_line() -> None:
    """Nothing at the recursive address: the trace still prints, then exit 1 with one line."""
    lines, result = trace("www.networkutopia.com", recursive=ServerAddress("127.9.9.9", 5300))
    assert result.exit_code == 1
    assert result.error.startswith("the recursive server 127.9.9.9:5300 did not answer: "
                                   "transport error")
    assert any("<- NO REPLY" in line for line in lines)


def test_recursive_json_record() -> None:
    """--json --recursive: one recursive_reply record after the engine events."""
    lines, result = trace("www.networkutopia.com", recursive=ServerAddress("127.212.212.1", 53),
                          as_json=True)
    record = json.loads(lines[-1])
    assert record == {"event": "recursive_reply", "address": "127.212.212.1", "port": 53,
                      "qname": "www.networkutopia.com.", "qtype": "A", "transport": "udp",
                      "rtt_ms": 1.0, "rcode": "NOERROR", "aa": True, "ra": False,
                      "answer": ["www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2"],
                      "error": ""}
    assert result.recursive is not None and recursive_json(result.recursive) == record


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", ServerAddress("127.0.0.1", 53)),
    ("127.0.0.1@5300", ServerAddress("127.0.0.1", 5300)),
    ("::1@5300", ServerAddress("::1", 5300)),
    ("[::1]@53", ServerAddress("::1", 53)),
])
def test_parse_server_reads_server_and_port(text: str, expected: ServerAddress) -> None:
    """SERVER[@PORT] with IPv4 or IPv6; the port defaults to 53."""
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["resolver.example", "127.0.0.1@0", "127.0.0.1@70000",
                                  "127.0.0.1@x", ""])
def test_parse_server_rejects_bad_input(text: str) -> None:
    """Names, bad ports and empty text are refused with ValueError."""
    with pytest.raises(ValueError):
        parse_server(text)
