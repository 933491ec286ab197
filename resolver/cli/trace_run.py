"""One `resolver trace` run: a cold resolution watched event by event, then the extras.

The resolver is built exactly as `resolver query` builds it (`app.build`, a fresh cache,
root priming on), with the service's observer printing each event as it happens; the
fan-out and the recursive contrast run afterwards (`resolver.cli.trace_probe`). Rules:

- Every fault the user can cause ends in one line on stderr and a non-zero exit:
  1 for bad input or an unanswered recursive query, 2 when the resolution fails
  (SERVFAIL, as `resolver query`), 130 on Ctrl-C. Never a traceback.
- Network, clock and random source can be injected, so tests drive the very same code
  over the in-memory lab.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from resolver.cli.trace_picture import PictureFiles, write_pictures
from resolver.cli.trace_probe import (
    CutReport,
    Prober,
    ProbeStatus,
    RecursiveResult,
    ask_recursive,
    cuts_on_path,
    fanout_json,
    parse_server,
    recursive_json,
)
from resolver.cli.trace_render import TraceRenderer, json_line, summarize
from resolver.cli.trace_report import chain_of_trust_lines, outcome_lines, summary_lines
from resolver.cli.trace_words import paint, style_rcode
from resolver.daemon.config import ServeConfig
from resolver.daemon.hints_file import load_checked
from resolver.dns.wire import Question, Rcode, RRType, type_name
from resolver.engine.delegation import Delegation, RootHintsError
from resolver.engine.events import Outcome, ReplyReceived, TraceEvent
from resolver.engine.network import Network, ServerAddress, Transport
from resolver.engine.settings import EngineSettings, ValidationSettings
from resolver.service.resolver_service import ResolverService

Clock = Callable[[], float]
Emit = Callable[[str], None]

EXIT_BAD_INPUT = 1
EXIT_SERVFAIL = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRequest:
    """Everything one trace needs besides the network."""

    question: Question
    root_hints: Delegation
    #: How the hints are named in the header (the file's path).
    hints_label: str = "root hints"
    upstream_port: int = 53
    tcp: bool = False
    as_json: bool = False
    explain: bool = False
    styled: bool = False
    fanout: bool = False
    recursive: ServerAddress | None = None
    #: Further names resolved afterwards with the same cache (`resolver trace A B`): each
    #: starts at the closest zone cut the earlier ones left in the cache.
    more: tuple[Question, ...] = ()
    #: QNAME minimisation (RFC 9156); off shows the textbook's full-name queries.
    qname_minimisation: bool = True
    #: Ask root priming first (RFC 8109); off when the walk is pinned to one root server.
    prime_root: bool = True
    #: DNSSEC validation, decided as for `resolver serve` (None: off).
    validation: ValidationSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceResult:
    exit_code: int
    #: The one line for stderr when exit_code != 0.
    error: str = ""
    events: tuple[TraceEvent, ...] = ()
    outcome: Outcome | None = None
    fanout: tuple[CutReport, ...] = ()
    recursive: RecursiveResult | None = None
    lines: list[str] = field(default_factory=list)
    #: The events of each name of `TraceRequest.more`, in order.
    more_events: tuple[tuple[TraceEvent, ...], ...] = ()


async def run_trace(
    request: TraceRequest,
    *,
    emit: Emit,
    network: Network | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
) -> TraceResult:
    """Trace `request.question` from the root hints, writing each line through `emit`."""
    from resolver.daemon.app import build

    if network is None:
        from resolver.upstream.exchange import AsyncioNetwork

        network = AsyncioNetwork()
    settings = EngineSettings(upstream_port=request.upstream_port, tcp_upstream=request.tcp,
                              qname_minimisation=request.qname_minimisation,
                              prime_root=request.prime_root, validation=request.validation)
    app = build(ServeConfig(engine=settings), root_hints=request.root_hints, network=network,
                clock=clock, rng=rng)

    events, outcome = await _traced(app.service, request, emit, request.question,
                                    _header(request))
    summary = summarize(events)
    more_events: list[tuple[TraceEvent, ...]] = []
    worst = outcome
    for later in request.more:
        if not request.as_json:
            emit("")
        seen, result = await _traced(app.service, request, emit, later,
                                     _later_header(request, later))
        more_events.append(tuple(seen))
        if result.rcode == Rcode.SERVFAIL:
            worst = result

    transport = Transport.TCP if request.tcp else Transport.UDP
    prober = Prober(network=network, clock=clock, port=request.upstream_port,
                    transport=transport, timeout_s=settings.limits.max_timeout_s)
    reports: tuple[CutReport, ...] = ()
    if request.fanout:
        reports = await _fan_out(app.service, prober, events, request, emit)

    recursive: RecursiveResult | None = None
    if request.recursive is not None:
        recursive = await ask_recursive(prober, request.question, request.recursive)
        if request.as_json:
            emit(_dumps(recursive_json(recursive)))
        else:
            for line in recursive_lines(recursive, summary.queries_sent, summary.total_ms,
                                        styled=request.styled, explain=request.explain):
                emit(line)

    exit_code, error = _verdict(request, events, worst, recursive)
    return TraceResult(exit_code=exit_code, error=error, events=tuple(events), outcome=outcome,
                       fanout=reports, recursive=recursive, more_events=tuple(more_events))


async def _traced(service: ResolverService, request: TraceRequest, emit: Emit,
                  question: Question, header: str) -> tuple[list[TraceEvent], Outcome]:
    """Resolve `question`, emitting each event as it comes, then the answer, the chain of
    trust (when validating) and the summary."""
    renderer = TraceRenderer(explain=request.explain, styled=request.styled)
    seen: list[TraceEvent] = []

    def observe(event: TraceEvent) -> None:
        seen.append(event)
        if request.as_json:
            emit(json_line(event))
        else:
            for line in renderer.render(event):
                emit(line)

    if not request.as_json:
        emit(header)
        emit("")
    result = await service.resolve(question, observer=observe)
    if not request.as_json:
        for line in outcome_lines(result, styled=request.styled):
            emit(line)
        if request.validation is not None:
            for line in chain_of_trust_lines(seen, result, styled=request.styled):
                emit(line)
        for line in summary_lines(summarize(seen)):
            emit(line)
    return seen, result


async def _fan_out(service: ResolverService, prober: Prober, events: list[TraceEvent],
                   request: TraceRequest, emit: Emit) -> tuple[CutReport, ...]:
    """Ask every server of every cut on the path (`--fanout`) and emit what each said."""

    async def addresses_of(name: str) -> tuple[str, ...]:
        found: list[str] = []
        for rtype in (RRType.A, RRType.AAAA):
            answer = await service.resolve(Question(name, rtype))
            found += [rr.address for rr in answer.answer if rr.rtype == rtype]
        return tuple(found)

    reports = tuple(await prober.fan_out(cuts_on_path(events, request.root_hints),
                                         addresses_of))
    for report in reports:
        if request.as_json:
            for record in fanout_json(report):
                emit(_dumps(record))
        else:
            for line in fanout_lines(report, styled=request.styled, explain=request.explain):
                emit(line)
    return reports


def _header(request: TraceRequest) -> str:
    q = request.question
    transport = "TCP" if request.tcp else "UDP"
    qmin = "" if request.qname_minimisation else ", full names (no QNAME minimisation)"
    return (f"trace {q.name} {type_name(q.rtype)}: iterative queries (RD=0) from the root hints "
            f"in {request.hints_label}, starting with an empty cache{qmin}, {transport} to "
            f"port {request.upstream_port}")


def _later_header(request: TraceRequest, question: Question) -> str:
    return (f"trace {question.name} {type_name(question.rtype)}: with the cache the names "
            "before left: the walk starts at the closest zone cut already known")


def _verdict(
    request: TraceRequest,
    events: list[TraceEvent],
    outcome: Outcome,
    recursive: RecursiveResult | None,
) -> tuple[int, str]:
    if outcome.rcode == Rcode.SERVFAIL:
        if not any(isinstance(e, ReplyReceived) for e in events):
            servers = ", ".join(a for ns in request.root_hints.servers for a in ns.addresses)
            return EXIT_SERVFAIL, (
                f"no server answered: the root servers in {request.hints_label} ({servers}) "
                f"are unreachable on port {request.upstream_port} ({outcome.reason})"
            )
        return EXIT_SERVFAIL, f"resolution failed: {outcome.reason or 'SERVFAIL'}"
    if recursive is not None and recursive.reply is None:
        return EXIT_BAD_INPUT, (
            f"the recursive server {recursive.server} did not answer: {recursive.error}"
        )
    return 0, ""


def validation_for(hints: Delegation, upstream_port: int, *, dnssec: bool,
                   trust_anchor_file: Path | None) -> ValidationSettings | None:
    """Validation as `resolver serve` decides it (resolver.daemon.validation_setup); a
    trust-anchor file that does not read is one line of error (ClickException)."""
    from resolver.daemon.validation_setup import TrustAnchorError, decide

    config = ServeConfig(engine=EngineSettings(upstream_port=upstream_port), dnssec=dnssec,
                         trust_anchor_file=None if trust_anchor_file is None
                         else str(trust_anchor_file))
    try:
        settings, _ = decide(config, hints)
    except TrustAnchorError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def one_root_server(hints: Delegation, wanted: str) -> Delegation:
    """The hints cut down to the one root server named (by name or address), so that the
    walk starts there; ValueError naming the servers there are."""
    key = wanted.lower().rstrip(".")
    for server in hints.servers:
        if server.name.rstrip(".").lower() == key or wanted in server.addresses:
            return replace(hints, servers=(server,))
    known = ", ".join(ns.name for ns in hints.servers)
    raise ValueError(f"{wanted!r} is not a root server of the hints (they name {known})")


def _dumps(record: object) -> str:
    import json

    return json.dumps(record, ensure_ascii=False)


# -- human rendering of the extras -------------------------------------------------


def fanout_lines(report: CutReport, *, styled: bool = False, explain: bool = False) -> list[str]:
    """An RTT table for one zone cut, lame and unreachable servers marked, NS sets compared."""

    def s(text: str, **style: object) -> str:
        return paint(text, styled, **style)

    q = report.question
    lines = ["", s(f"fan-out: zone {report.zone}", bold=True)
             + f", every server asked {q.name} {type_name(q.rtype)} (RD=0)"]
    rows = [("server", "address", "RTT", "rcode", "AA", "result")]
    for p in report.probes:
        rtt = f"{p.rtt_ms:.1f} ms" if p.rtt_ms is not None else "-"
        aa = "-" if p.aa is None else str(int(p.aa))
        if p.status is ProbeStatus.OK:
            result = p.detail
        else:
            result = f"{p.status.value.upper()} ({p.detail})"
        rows.append((p.server_name, p.address, rtt, p.rcode or "-", aa, result))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for index, row in enumerate(rows):
        text = "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5]))
        result = row[5]
        if index == 0:
            lines.append(s(text + "  " + result, dim=True))
            continue
        status = report.probes[index - 1].status
        if status is not ProbeStatus.OK:
            result = s(result, fg="red", bold=True)
        lines.append(text + "  " + result)
    if not report.child_ns:
        lines.append("  NS sets: no server of the zone gave its own NS set (parent lists "
                     + ", ".join(report.parent_ns) + ")")
    elif report.only_in_parent or report.only_in_child:
        lines.append(s("  NS sets differ:", fg="yellow", bold=True)
                     + f" parent ({report.parent_source}) lists {', '.join(report.parent_ns)};"
                     f" the zone itself lists {', '.join(report.child_ns)}")
        if report.only_in_parent:
            lines.append(f"    only in the parent: {', '.join(report.only_in_parent)}")
        if report.only_in_child:
            lines.append(f"    only in the child: {', '.join(report.only_in_child)}")
    else:
        lines.append(f"  NS sets: parent ({report.parent_source}) and child agree: "
                     + ", ".join(report.child_ns))
    bad = [p for p in report.probes if p.status is not ProbeStatus.OK]
    if explain:
        if bad:
            sentence = (f"{len(bad)} of {len(report.probes)} server addresses of {report.zone} "
                        "did not answer properly; a resolver copes by asking the others, but "
                        "each bad one costs time.")
        else:
            sentence = (f"Every server of {report.zone} gives a proper reply; the resolver "
                        "prefers the fastest ones.")
        lines.append(s("  * " + sentence, italic=True, dim=True))
    return lines


def recursive_lines(
    result: RecursiveResult,
    iterative_queries: int,
    iterative_ms: float,
    *,
    styled: bool = False,
    explain: bool = False,
) -> list[str]:
    """What one recursive query brought back, beside the cost of the iterative trace."""

    def s(text: str, **style: object) -> str:
        return paint(text, styled, **style)

    q = result.question
    lines = ["", s(f"recursive contrast: one query with RD=1 to {result.server}", bold=True),
             f"  -> {q.name} {type_name(q.rtype)}  RD=1  {result.transport.upper()}"]
    reply = result.reply
    if reply is None:
        lines.append("  <- " + s("NO REPLY", fg="red", bold=True) + f": {result.error}")
        return lines
    rcode = recursive_json(result)["rcode"]
    rtt = result.rtt_ms or 0.0
    lines.append(f"  <- {style_rcode(rcode, styled)}  RA={int(reply.ra)}  AA={int(reply.aa)}  "
                 f"{rtt:.1f} ms")
    lines += [f"     {rr.to_text()}" for rr in reply.answer]
    lines.append(f"  iterative: {iterative_queries} queries, {iterative_ms:.1f} ms; "
                 f"recursive: 1 query, {rtt:.1f} ms")
    if explain:
        if reply.ra:
            sentence = ("The recursive resolver walks the same referrals for us (or answers "
                        "from its cache) and returns only the result: this is a recursive query.")
        else:
            sentence = ("RA=0: this server does not offer recursion, so it answers only from "
                        "what it serves itself.")
        lines.append(s("  * " + sentence, italic=True, dim=True))
    return lines


# -- the command line ----------------------------------------------------------------


def run_cli(
    question: Question,
    *,
    root_hints: Path,
    upstream_port: int,
    tcp: bool,
    as_json: bool,
    no_color: bool,
    explain: bool,
    recursive: str | None,
    fanout: bool,
    more: tuple[Question, ...] = (),
    qname_minimisation: bool = True,
    server_name: str | None = None,
    seed: int | None = None,
    picture: PictureFiles | None = None,
    dnssec: bool = True,
    trust_anchor_file: Path | None = None,
) -> int:
    """`resolver trace`: bad input raises ClickException (one line); returns the exit code."""
    try:
        hints, warning = load_checked(root_hints, upstream_port)
    except RootHintsError as exc:
        raise click.ClickException(str(exc)) from None
    validation = validation_for(hints, upstream_port, dnssec=dnssec,
                                trust_anchor_file=trust_anchor_file)
    if warning is not None:
        click.echo(f"Warning: {warning}", err=True)
    if server_name is not None:
        hints = _pinned_root(hints, server_name)
    styled = not no_color and not as_json and sys.stdout.isatty()
    request = TraceRequest(
        question=question, root_hints=hints, hints_label=str(root_hints),
        upstream_port=upstream_port, tcp=tcp, as_json=as_json, explain=explain,
        styled=styled, fanout=fanout, recursive=_recursive_server(recursive), more=more,
        qname_minimisation=qname_minimisation, prime_root=server_name is None,
        validation=validation,
    )
    rng = random.Random(seed) if seed is not None else None
    output = _Output(styled=styled, keep=picture is not None and picture.html is not None)
    try:
        result = asyncio.run(run_trace(request, emit=output.emit, rng=rng))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if picture is not None:
        error = write_pictures(picture, result.events, question.name, type_name(question.rtype),
                               text_trace=output.printed)
        if error:
            click.echo(f"Error: {error}", err=True)
            return EXIT_BAD_INPUT
    if result.error:
        click.echo(f"Error: {result.error}", err=True)
    return result.exit_code


def _pinned_root(hints: Delegation, server_name: str) -> Delegation:
    """`--server`: the hints cut down to that one root server (ClickException if unknown)."""
    try:
        return one_root_server(hints, server_name)
    except ValueError as exc:
        raise click.ClickException(f"--server: {exc}") from None


def _recursive_server(recursive: str | None) -> ServerAddress | None:
    """`--recursive ADDR[@PORT]`: the server of the recursive contrast (ClickException if bad)."""
    if recursive is None:
        return None
    try:
        return parse_server(recursive)
    except ValueError as exc:
        raise click.ClickException(f"--recursive: {exc}") from None


class _Output:
    """The trace's lines on stdout, as they come; `keep` also keeps them, unstyled, for the
    HTML page under the picture."""

    def __init__(self, *, styled: bool, keep: bool) -> None:
        self.styled = styled
        self.keep = keep
        self.printed: list[str] = []
        self.closed = False

    def emit(self, line: str) -> None:
        if self.keep:
            self.printed.append(click.unstyle(line))
        if self.closed:
            return
        try:
            click.echo(line, color=self.styled)
        except BrokenPipeError:
            # The reader left (`| head`): stop writing, quietly, like other tools.
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
