"""The blocks of the human trace around the walk: the answer, the summary line, the legend
and the chain of trust with its verdict (`resolver trace`, resolver.cli.trace_run).
"""

from __future__ import annotations

from collections.abc import Sequence

from resolver.cli.trace_render import TraceSummary
from resolver.cli.trace_words import chain_step_text, ede_text, paint, style_rcode
from resolver.dns import names
from resolver.dns.wire import Rcode, RRType
from resolver.engine.events import ChainStepChecked, DataValidated, Outcome, TraceEvent

#: Least to most severe (RFC 4033 §5 states as the trace events spell them).
_SEVERITY = ("secure", "insecure", "indeterminate", "bogus")


def outcome_lines(outcome: Outcome, *, styled: bool = False) -> list[str]:
    """The result of the client's question: status, answer records, negative SOA."""
    try:
        status = Rcode(outcome.rcode).name
    except ValueError:
        status = f"RCODE{outcome.rcode}"
    head = f"answer: {style_rcode(status, styled)}"
    if outcome.reason:
        head += f" ({outcome.reason})"
    elif outcome.rcode == Rcode.NXDOMAIN:
        head += " (the name does not exist)"
    elif outcome.rcode == Rcode.NOERROR and not any(
        rr.rtype not in (RRType.CNAME, RRType.DNAME) for rr in outcome.answer
    ):
        head += " (no records of this type: NODATA)"
    lines = ["", head]
    lines += [f"  {rr.to_text()}" for rr in outcome.answer]
    lines += [f"  {rr.to_text()}  (authority)" for rr in outcome.authority]
    return lines


def summary_lines(summary: TraceSummary) -> list[str]:
    """The closing line: queries sent, servers contacted, total time."""
    queries = _counted(summary.queries_sent, "query", "queries")
    lines = [
        f"summary: {queries} sent, {_counted(summary.servers_contacted, 'server', 'servers')} "
        f"contacted, {summary.total_ms:.1f} ms in total"
    ]
    if summary.path:
        referrals = _counted(summary.referrals, "referral", "referrals")
        lines.append(f"path: {' -> '.join(summary.path)}: {referrals}, {queries}, "
                     f"{summary.total_ms:.1f} ms")
    return lines


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def legend_lines() -> list[str]:
    """What the marks of the human trace mean (`resolver trace --legend`)."""
    return [
        "legend:",
        "  [n]          the n-th query the resolver sent, in order; after the server, in",
        "               (...), why it was chosen or where its address came from: the root",
        "               hints, a referral, or the cache (an empty cache at the start fills",
        "               as the trace goes: priming and each referral put records in it)",
        "  -> / <-      the query as sent (name, type, RD flag, transport) / the reply",
        "  |            one per level of nesting: a lookup the walk needed first (root",
        "               priming before the walk; the address of a name server given",
        "               without glue), hanging under the step that needed it",
        "  => NAME: X   what such a nested lookup found",
        "  zone cut Z   where the walk (re)starts: the closest zone whose servers are known;",
        "               '(root hints)' from the file, '(in the cache ...)' learnt earlier",
        "  cache:       answered from the cache: no query sent",
        "  AA=1         the server is authoritative for the name: the walk ends there",
        "  referral     AA=0 and NS records: 'ask these servers instead' (iterated query)",
        "  LAME, UNREACHABLE, FAILED   a server that did not serve the zone, or did not reply",
        "",
    ]


def chain_of_trust_lines(events: Sequence[TraceEvent], outcome: Outcome, *,
                         styled: bool = False) -> list[str]:
    """After the answer: the chain of trust from the anchor down to the zone that signed
    the answer, one line per zone, and the verdict with its reason."""
    steps: dict[str, ChainStepChecked] = {}
    data: list[DataValidated] = []
    for event in events:
        if isinstance(event, ChainStepChecked):
            steps[event.zone] = event
        elif isinstance(event, DataValidated) and event.depth == 0:
            data.append(event)
    if outcome.security is not None:
        security = outcome.security.value
    elif data:  # a bogus answer ends in SERVFAIL, which carries no status of its own
        security = max((d.security for d in data), key=_SEVERITY.index)
    else:
        security = "not validated"
    colour = {"secure": "green", "insecure": "yellow"}.get(security, "red")
    zones: list[str] = []
    for checked in data:
        for zone in reversed(names.ancestors(checked.zone)):
            if zone in steps and zone not in zones:
                zones.append(zone)
    width = max((len(zone) for zone in zones), default=0)
    lines = ["", paint("chain of trust", styled, bold=True)
             + (": " + " -> ".join(zones) if zones else ": no zone was checked")]
    for zone in zones:
        step = steps[zone]
        mark = {"secure": "green", "insecure": "yellow"}.get(step.security, "red")
        lines.append(f"  {chain_step_text(step, width)}: "
                     + paint(step.security, styled, fg=mark, bold=True)
                     + ede_text(step.ede) + (f" ({step.detail})" if step.detail else ""))
    for checked in data:
        mark = {"secure": "green", "insecure": "yellow"}.get(checked.security, "red")
        lines.append(f"  {checked.qname} {checked.qtype} signed by {checked.zone}: "
                     + paint(checked.security, styled, fg=mark, bold=True)
                     + ede_text(checked.ede) + f" ({checked.detail})")
    meaning = {
        "secure": "every link verifies from the trust anchor: a validating resolver sets AD=1",
        "insecure": "a signed parent proves the zone unsigned: the answer is served, no AD",
        "bogus": "a link is broken: a validating resolver answers SERVFAIL",
        "indeterminate": "no trust anchor covers the name",
    }.get(security, "validation was off or skipped (CD=1)")
    ede = outcome.ede_code
    lines.append(paint("security: ", styled, bold=True) + paint(security, styled, fg=colour,
                                                                 bold=True)
                 + ede_text(int(ede) if ede is not None and security == "bogus" else None)
                 + f": {meaning}")
    return lines
