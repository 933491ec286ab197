"""`resolver trace` rendering, driven over the in-memory lab with a fake clock."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resolver.cli.trace_render import TraceRenderer, json_line, summarize
from resolver.cli.trace_run import TraceRequest, TraceResult, run_trace
from resolver.dns import names
from resolver.dns.wire import Question, type_from_text
from resolver.engine.events import QuerySent, ReplyReceived, ResolutionFinished
from tests.support.labnet import FakeClock, LabNetwork, lab_root_hints

#: Fields that depend on time or on the random choice of server; everything else is stable.
UNSTABLE = {"at_s", "rtt_ms", "why"}


@dataclass
class Traced:
    lines: list[str]
    result: TraceResult
    network: LabNetwork

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.result.events]


def trace(
    name: str,
    rtype: str = "A",
    *,
    seed: int = 0,
    setup: Callable[[LabNetwork], None] | None = None,
    **options: Any,
) -> Traced:
    clock = FakeClock()
    network = LabNetwork(clock)
    if setup is not None:
        setup(network)
    request = TraceRequest(
        question=Question(names.canonical(name), type_from_text(rtype)),
        root_hints=lab_root_hints(),
        hints_label="lab.hints",
        **options,
    )
    lines: list[str] = []
    result = asyncio.run(run_trace(request, emit=lines.append, network=network, clock=clock,
                                   rng=random.Random(seed)))
    return Traced(lines=lines, result=result, network=network)


def first_seed(predicate: Callable[[Traced], bool], name: str, **options: Any) -> Traced:
    """The trace of the first seed whose random server choices make `predicate` true."""
    for seed in range(100):
        traced = trace(name, seed=seed, **options)
        if predicate(traced):
            return traced
    raise AssertionError("no seed in 0..99 gives the wanted server choice")


def stable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in UNSTABLE} for e in events]


def depth0_zones(traced: Traced) -> list[str]:
    zones: list[str] = []
    for e in traced.result.events:
        if isinstance(e, QuerySent) and e.depth == 0 and e.zone not in zones:
            zones.append(e.zone)
    return zones


def line_index(lines: list[str], fragment: str) -> int:
    for i, line in enumerate(lines):
        if fragment in line:
            return i
    raise AssertionError(f"no line contains {fragment!r}:\n" + "\n".join(lines))


# -- human output ------------------------------------------------------------------


def test_trace_plain_name_shows_root_com_networkutopia_with_servers_glue_and_rtts() -> None:
    """www.networkutopia.com: each zone cut, the server asked, glue, RTT and the answer."""
    traced = trace("www.networkutopia.com")
    text = traced.text
    assert text.startswith("trace www.networkutopia.com. A: iterative queries (RD=0) from the "
                           "root hints in lab.hints, starting with an empty cache, UDP")
    assert "root-servers.net. 127." in text
    assert "referral to com. (NS TTL 172800 s):" in text
    assert "a.gtld-servers.net.  glue 127.5.6.30" in text
    assert "b.gtld-servers.net.  glue 127.33.14.30" in text
    assert "zone com.: ask " in text
    assert "referral to networkutopia.com. (NS TTL 172800 s):" in text
    assert "dns1.networkutopia.com.  glue 127.212.212.1" in text
    assert ("zone networkutopia.com.: ask dns1.networkutopia.com. 127.212.212.1 "
            "(address from referral)") in text
    assert "-> www.networkutopia.com. A  RD=0  UDP" in text
    assert "<- NOERROR  AA=1  answer 1, authority 0, additional 0  1.0 ms  answer" in text
    assert "answer: NOERROR" in text
    assert "www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2" in text
    assert traced.lines[-2] == ("summary: 4 queries sent, 4 servers contacted, 4.0 ms in total")
    assert traced.result.exit_code == 0


def test_trace_steps_are_numbered_in_the_order_the_queries_left() -> None:
    """Every query gets one "[n]" label, 1..queries sent."""
    traced = trace("www.networkutopia.com")
    steps = [line.lstrip("| ") for line in traced.lines]
    labels = [step.split()[0] for step in steps if step.startswith("[")]
    assert labels == ["[1]", "[2]", "[3]", "[4]"]


def test_trace_glueless_ns_lookup_is_nested_under_the_referral_that_needed_it() -> None:
    """www.glueless.org: the lookup of ns.hosting.net is indented between referral and use."""
    traced = trace("www.glueless.org")
    lines = traced.lines
    referral = line_index(lines, "referral to glueless.org.")
    assert "ns.hosting.net.  no glue: its address must be looked up" in lines[referral + 1]
    lookup = line_index(lines, "lookup ns.hosting.net. A: address of name server ns.hosting.net.")
    found = line_index(lines, "=> ns.hosting.net. A: 127.0.113.53")
    use = line_index(lines, "zone glueless.org.: ask ns.hosting.net. 127.0.113.53")
    assert referral < lookup < found < use
    nested = lines[lookup:found + 1]
    assert all(line.startswith("|   ") for line in nested)
    assert any("referral to net." in line for line in nested)
    # The referral to hosting.net. carries ns.hosting.net.'s address as glue: that is the answer.
    assert any("referral to hosting.net." in line for line in nested)
    assert any("ns.hosting.net.  glue 127.0.113.53" in line for line in nested)
    assert not lines[use].startswith("|")


def test_trace_root_priming_is_shown_as_a_nested_step() -> None:
    """The priming query (. NS) comes first, one level deep."""
    traced = trace("www.networkutopia.com")
    priming = line_index(traced.lines, "root priming: . NS")
    assert traced.lines[priming].startswith("|   ")
    assert "-> . NS  RD=0  UDP" in traced.lines[priming + 2]


def test_trace_cname_shows_where_resolution_restarts() -> None:
    """www.ibm.com: the CNAME, the restart at its target and the chain in the answer."""
    traced = trace("www.ibm.com")
    text = traced.text
    assert ("CNAME www.ibm.com. -> servereast.backup2.ibm.com.: resolution restarts at "
            "servereast.backup2.ibm.com.") in text
    assert "zone cut ibm.com. (in the cache, learnt earlier): ns.ibm.com." in text
    assert "referral to backup2.ibm.com. (NS TTL 3600 s):" in text
    assert "www.ibm.com.\t3600\tIN\tCNAME\tservereast.backup2.ibm.com." in text
    assert "servereast.backup2.ibm.com.\t3600\tIN\tA\t129.42.60.216" in text


def test_trace_nxdomain_ends_with_the_negative_answer_and_exit_zero() -> None:
    """nothere.networkutopia.com: NXDOMAIN with the zone's SOA, a normal exit."""
    traced = trace("nothere.networkutopia.com")
    assert "<- NXDOMAIN  AA=1" in traced.text
    assert "answer: NXDOMAIN (the name does not exist)" in traced.text
    assert "networkutopia.com.\t300\tIN\tSOA" in traced.text
    assert traced.result.exit_code == 0


def test_trace_lame_server_is_marked_and_the_next_server_is_tried() -> None:
    """www.lame.test: ns1 answers REFUSED, is marked lame, and ns2 gives the answer."""
    traced = first_seed(lambda t: "127.0.2.54" in t.network.received, "www.lame.test")
    lines = traced.lines
    lame = line_index(lines, "zone lame.test.: ask ns1.lame.test. 127.0.2.54")
    assert "<- REFUSED  AA=0" in lines[lame + 2]
    assert "LAME (REFUSED)" in lines[lame + 2]
    retry = line_index(lines, "zone lame.test.: ask ns2.lame.test. 127.0.2.55")
    assert "(another server, after a lame reply from ns1.lame.test.)" in lines[retry]
    assert "<- NOERROR  AA=1" in lines[retry + 2]


def test_trace_timeout_is_shown_and_another_server_is_tried() -> None:
    """A silent root server: its timeout, then the query to another root server."""

    def silence(network: LabNetwork) -> None:
        network.silent.add("127.41.0.4")

    traced = first_seed(lambda t: t.network.received["127.41.0.4"] > 0, "www.networkutopia.com",
                        setup=silence)
    timeout = line_index(traced.lines, "<- UNREACHABLE: timeout after")
    assert "a.root-servers.net. 127.41.0.4" in traced.lines[timeout - 2]
    assert "(another server, after a timeout)" in traced.lines[timeout + 1]
    assert "answer: NOERROR" in traced.text


def test_trace_unreachable_root_fails_with_one_clear_error() -> None:
    """No root server answers: exit 2 and one line naming the hints and the port."""

    def silence(network: LabNetwork) -> None:
        network.silent.update({"127.41.0.4", "127.247.170.2", "127.33.4.12"})

    traced = trace("www.networkutopia.com", setup=silence)
    assert traced.result.exit_code == 2
    assert traced.result.error.startswith("no server answered: the root servers in lab.hints "
                                          "(127.41.0.4, 127.247.170.2, 127.33.4.12) are "
                                          "unreachable on port 53")
    assert "\n" not in traced.result.error
    assert "answer: SERVFAIL" in traced.text


def test_trace_explain_adds_a_plain_sentence_to_each_step() -> None:
    """--explain: the iterated-query sentence at the root's referral, and the final answer."""
    traced = trace("www.networkutopia.com", explain=True)
    assert ("* The root server is not authoritative for com. (AA=0) and refers us to the "
            "servers of com.: the resolver asks them next. This is iteration.") in traced.text
    assert ("* dns1.networkutopia.com. is authoritative for networkutopia.com. (AA=1) and "
            "gives the answer itself") in traced.text
    sent = sum(1 for line in traced.lines if "-> " in line and "RD=0" in line)
    explained = sum(1 for line in traced.lines if line.lstrip("| ").startswith("* "))
    assert explained >= sent


def test_trace_explain_says_why_a_glueless_lookup_is_needed() -> None:
    """--explain on www.glueless.org names the missing glue and the zone that needs it."""
    text = trace("www.glueless.org", explain=True).text
    assert "cannot give their addresses (no glue: ns.hosting.net. lies outside org.)" in text
    assert "To ask the servers of glueless.org. the resolver first needs the address of" in text


def test_trace_without_explain_has_no_sentences() -> None:
    """Plain output carries no explanation lines."""
    traced = trace("www.glueless.org")
    assert not any(line.lstrip("| ").startswith("* ") for line in traced.lines)


def test_trace_colour_only_when_styled() -> None:
    """ANSI escapes appear with styled=True and never without."""
    assert "\x1b[" in trace("www.networkutopia.com", styled=True).text
    assert "\x1b[" not in trace("www.networkutopia.com").text


def test_trace_tcp_option_sends_every_query_over_tcp() -> None:
    """tcp=True: every query_sent says tcp and the header says TCP."""
    traced = trace("www.networkutopia.com", tcp=True)
    sent = [e for e in traced.result.events if isinstance(e, QuerySent)]
    assert sent and all(e.transport == "tcp" for e in sent)
    assert {transport.value for _, transport, _ in traced.network.log} == {"tcp"}
    assert "starting with an empty cache, TCP to port 53" in traced.lines[0]


# -- JSON output -------------------------------------------------------------------


def test_trace_json_is_exactly_one_to_json_object_per_event() -> None:
    """--json: each line parses to the event's to_json(), nothing added, nothing else printed."""
    traced = trace("www.glueless.org", as_json=True)
    assert [json.loads(line) for line in traced.lines] == traced.events()
    assert all(json_line(e) == line for e, line in zip(traced.result.events, traced.lines,
                                                       strict=True))


def test_trace_json_events_of_a_plain_name() -> None:
    """The stable fields of www.networkutopia.com's events, in order."""
    events = stable(trace("www.networkutopia.com", as_json=True).events())
    assert [e["event"] for e in events] == [
        "resolution_started", "resolution_started", "query_sent", "reply_received",
        "zone_cut_chosen", "query_sent", "reply_received", "referral_followed",
        "query_sent", "reply_received", "referral_followed", "query_sent", "reply_received",
        "resolution_finished",
    ]
    assert events[0] == {"event": "resolution_started", "depth": 0,
                         "qname": "www.networkutopia.com.", "qtype": "A",
                         "purpose": "client question"}
    assert events[1]["purpose"] == "root priming" and events[1]["depth"] == 1
    assert events[7] == {"event": "referral_followed", "depth": 0, "from_zone": ".",
                         "to_zone": "com.", "ttl": 172800,
                         "nameservers": ["a.gtld-servers.net. 127.5.6.30",
                                         "b.gtld-servers.net. 127.33.14.30"]}
    assert events[10]["nameservers"] == ["dns1.networkutopia.com. 127.212.212.1"]
    assert events[11] == {"event": "query_sent", "depth": 0, "zone": "networkutopia.com.",
                          "server_name": "dns1.networkutopia.com.", "address": "127.212.212.1",
                          "port": 53, "qname": "www.networkutopia.com.", "qtype": "A",
                          "recursion_desired": False, "transport": "udp"}
    assert events[12] == {"event": "reply_received", "depth": 0, "address": "127.212.212.1",
                          "rcode": "NOERROR", "aa": True, "tc": False, "answer_count": 1,
                          "authority_count": 0, "additional_count": 0, "kind": "answer",
                          "detail": ""}
    assert events[-1] == {"event": "resolution_finished", "depth": 0,
                          "qname": "www.networkutopia.com.", "qtype": "A", "rcode": "NOERROR",
                          "answer": ["www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2"],
                          "reason": "", "queries_sent": 4}


def test_trace_json_glueless_lookup_runs_at_depth_one() -> None:
    """www.glueless.org: a glueless referral, then ns.hosting.net resolved at depth 1."""
    traced = trace("www.glueless.org", as_json=True)
    events = stable(traced.events())
    referral = next(e for e in events if e["event"] == "referral_followed"
                    and e["to_zone"] == "glueless.org.")
    assert referral["nameservers"] == ["ns.hosting.net."]
    nested = [e for e in events if e["depth"] == 1 and e["event"] == "resolution_started"
              and e["purpose"] != "root priming"]
    assert nested == [{"event": "resolution_started", "depth": 1, "qname": "ns.hosting.net.",
                       "qtype": "A", "purpose": "address of name server ns.hosting.net."}]
    nested = [(e["zone"], e["qname"]) for e in events if e["event"] == "query_sent"
              and e["depth"] == 1 and e["qname"] != "."]
    # QNAME minimisation (RFC 9156): each level is asked one label more than it needs to
    # know; net.'s referral to hosting.net. carries ns.hosting.net.'s address as glue.
    assert nested == [(".", "net."), ("net.", "hosting.net.")]
    glue = next(e for e in events if e["event"] == "referral_followed" and e["depth"] == 1
                and e["to_zone"] == "hosting.net.")
    assert glue["nameservers"] == ["ns.hosting.net. 127.0.113.53"]
    assert depth0_zones(traced) == [".", "org.", "glueless.org."]


def test_trace_json_cname_across_zones() -> None:
    """www.ibm.com: cname_followed, then the target through backup2.ibm.com."""
    traced = trace("www.ibm.com", as_json=True)
    events = stable(traced.events())
    assert {"event": "cname_followed", "depth": 0, "from_name": "www.ibm.com.",
            "to_name": "servereast.backup2.ibm.com."} in events
    assert depth0_zones(traced) == [".", "com.", "ibm.com.", "backup2.ibm.com."]
    assert events[-1]["answer"] == [
        "www.ibm.com.\t3600\tIN\tCNAME\tservereast.backup2.ibm.com.",
        "servereast.backup2.ibm.com.\t3600\tIN\tA\t129.42.60.216",
    ]


def test_trace_json_nxdomain() -> None:
    """nothere.networkutopia.com: an NXDOMAIN reply and an NXDOMAIN finish."""
    events = stable(trace("nothere.networkutopia.com", as_json=True).events())
    reply = [e for e in events if e["event"] == "reply_received"][-1]
    assert (reply["rcode"], reply["aa"], reply["kind"]) == ("NXDOMAIN", True, "nxdomain")
    assert events[-1]["rcode"] == "NXDOMAIN" and events[-1]["answer"] == []


def test_trace_json_lame_server_reply_and_retry() -> None:
    """www.lame.test: REFUSED from 127.0.2.54 (server-error), then a query to 127.0.2.55."""
    traced = first_seed(lambda t: "127.0.2.54" in t.network.received, "www.lame.test",
                        as_json=True)
    events = traced.result.events
    refused = next(i for i, e in enumerate(events)
                   if isinstance(e, ReplyReceived) and e.address == "127.0.2.54")
    reply = events[refused]
    assert isinstance(reply, ReplyReceived)
    assert (reply.rcode, reply.kind, reply.detail) == ("REFUSED", "server-error", "REFUSED")
    retry = next(e for e in events[refused:] if isinstance(e, QuerySent))
    assert (retry.server_name, retry.address) == ("ns2.lame.test.", "127.0.2.55")
    finished = events[-1]
    assert isinstance(finished, ResolutionFinished) and finished.rcode == "NOERROR"


# -- the renderer on its own -------------------------------------------------------


def test_summarize_counts_queries_servers_and_time() -> None:
    """The summary counts queries and distinct addresses, and takes the last event's time."""
    traced = trace("www.glueless.org")
    summary = summarize(traced.result.events)
    addresses = {e.address for e in traced.result.events if isinstance(e, QuerySent)}
    assert summary.queries_sent == 6 == sum(traced.network.received.values())
    assert summary.servers_contacted == len(addresses) == len(traced.network.received)
    assert summary.total_ms == 6.0
    assert summary.rcode == "NOERROR"


def test_renderer_ignores_nothing_and_adds_no_lines_for_the_client_start() -> None:
    """Every event except the client's own start and finish yields at least one line."""
    traced = trace("www.glueless.org")
    renderer = TraceRenderer()
    for event in traced.result.events:
        lines = renderer.render(event)
        if event.depth == 0 and event.event in ("resolution_started", "resolution_finished"):
            assert lines == []
        else:
            assert lines, event


# -- teaching options: full names, reproducible walks, the path, several names ----------


def test_trace_no_qmin_sends_the_full_name_to_every_server() -> None:
    traced = trace("www.networkutopia.com", qname_minimisation=False)
    sent = [e for e in traced.result.events if isinstance(e, QuerySent) and e.depth == 0]
    assert sent and all(e.qname == "www.networkutopia.com." for e in sent)
    assert "full names (no QNAME minimisation)" in traced.lines[0]


def test_trace_explain_says_why_a_minimised_query_uses_type_a() -> None:
    traced = trace("www.networkutopia.com", explain=True)
    assert ("It is asked with type A (here also the type wanted in the end), not NS: an "
            "ordinary-looking question") in traced.text
    assert "not the type wanted" not in traced.text


def test_trace_explain_names_the_wanted_type_beside_the_minimised_one() -> None:
    traced = trace("networkutopia.com", "MX", explain=True)
    assert "It is asked with type A, not MX, the type wanted in the end" in traced.text


def test_trace_shows_each_skipped_dead_server_once() -> None:
    """Root servers that answered ICMP port unreachable at priming: the walk skips each,
    and the trace says so once per server, not once per pass over the list."""
    from resolver.engine.network import TransportProblem, UpstreamError

    roots = ("127.41.0.4", "127.247.170.2", "127.33.4.12")

    def unreachable(network: LabNetwork) -> None:
        for address in roots:
            network.failing[address] = UpstreamError(
                f"{address} (udp): port unreachable (ICMP)", TransportProblem.NOBODY_LISTENS)

    traced = trace("www.networkutopia.com", setup=unreachable)
    assert traced.result.exit_code == 2
    sent = [e for e in traced.result.events if isinstance(e, QuerySent)]
    assert sorted(e.address for e in sent) == sorted(roots)
    skips = [line for line in traced.lines if line.startswith("skip ")]
    assert sorted(line.split()[2].rstrip(":") for line in skips) == sorted(roots)


def test_trace_ends_with_a_one_line_path_summary() -> None:
    traced = trace("www.networkutopia.com")
    assert traced.lines[-1] == ("path: . -> com. -> networkutopia.com.: 2 referrals, "
                                "4 queries, 4.0 ms")


def test_trace_same_seed_gives_the_same_walk() -> None:
    first = stable(trace("www.glueless.org", seed=7).events())
    again = stable(trace("www.glueless.org", seed=7).events())
    assert first == again


def test_trace_second_name_starts_at_the_cut_the_first_left_in_the_cache() -> None:
    second = Question(names.canonical("mail.networkutopia.com"), type_from_text("A"))
    traced = trace("www.networkutopia.com", more=(second,))
    later = traced.result.more_events[0]
    sent = [e for e in later if isinstance(e, QuerySent)]
    assert [e.zone for e in sent] == ["networkutopia.com."]
    assert ("trace mail.networkutopia.com. A: with the cache the names before left: the walk "
            "starts at the closest zone cut already known") in traced.lines
    assert "zone cut networkutopia.com. (in the cache, learnt earlier)" in traced.text
    assert traced.lines[-2:] == [
        "summary: 1 query sent, 1 server contacted, 1.0 ms in total",
        "path: networkutopia.com.: 0 referrals, 1 query, 1.0 ms"]


def test_trace_root_cut_after_priming_says_priming_filled_the_cache() -> None:
    traced = trace("www.networkutopia.com")
    assert "root priming: . NS (a step before the walk starts)" in traced.text
    assert "zone cut . (in the cache since the root priming above)" in traced.text


def test_trace_legend_explains_the_nesting_guide_and_the_markers() -> None:
    from resolver.cli.trace_report import legend_lines

    text = "\n".join(legend_lines())
    for mark in ("[n]", "|  ", "=> NAME", "AA=1", "referral", "LAME"):
        assert mark in text
    # "starting with an empty cache" and "(address from cache)" in one trace: the legend
    # says how both hold.
    assert "the cache (an empty cache at the start fills" in text


def test_trace_full_name_after_a_minimised_nxdomain_is_no_retry() -> None:
    """The root denies the minimised name nothere-tld.: unproven, the engine asks the full
    name (RFC 9156 section 2.3); the trace says so instead of calling it a second try."""
    traced = trace("www.nothere-tld", explain=True)
    sent = [e for e in traced.result.events if isinstance(e, QuerySent) and e.depth == 0]
    assert [e.qname for e in sent] == ["nothere-tld.", "www.nothere-tld."]
    assert "(the full name, after NXDOMAIN for nothere-tld.)" in traced.text
    assert "(try 2 at this address)" not in traced.text
    assert ("* The root servers said nothere-tld. does not exist. Proven by DNSSEC, that "
            "would mean no name below it exists either") in traced.text
    assert "answer: NXDOMAIN" in traced.text


def test_trace_explains_minimised_queries_after_a_cname_restart() -> None:
    traced = trace("www.ibm.com", explain=True)
    assert ("* Only as much of servereast.backup2.ibm.com. as the ibm.com. servers need is "
            "sent") in traced.text


def test_trace_server_starts_at_that_root_server_without_priming() -> None:
    """--server b.root-servers.net: the hints cut to that server, priming skipped."""
    from resolver.cli.trace_run import one_root_server

    request = TraceRequest(
        question=Question("www.networkutopia.com.", type_from_text("A")),
        root_hints=one_root_server(lab_root_hints(), "b.root-servers.net"),
        hints_label="lab.hints", prime_root=False)
    lines: list[str] = []
    clock = FakeClock()
    result = asyncio.run(run_trace(request, emit=lines.append, network=LabNetwork(clock),
                                   clock=clock, rng=random.Random(0)))
    traced = Traced(lines=lines, result=result, network=LabNetwork(clock))
    sent = [e for e in traced.result.events if isinstance(e, QuerySent)]
    assert (sent[0].address, sent[0].qname) == ("127.247.170.2", "com.")
    assert "root priming" not in traced.text
    assert "zone cut . (from root hints): b.root-servers.net." in traced.text


def test_trace_says_the_root_refers_us_only_when_it_did() -> None:
    """The root denies nothere-tld.: it is authoritative there and refers us nowhere."""
    traced = trace("www.nothere-tld", explain=True)
    assert "refers us" not in traced.text and "referral to" not in traced.text
    assert "refers us to the servers of com." in trace("www.networkutopia.com",
                                                       explain=True).text
