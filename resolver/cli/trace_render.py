"""Rendering the resolution engine's own trace events for people and for programs.

`resolver trace` shows what the engine really did, never a re-enactment: it watches
one cold resolution through the service's observer and turns each `TraceEvent` into
lines as it arrives. Rules:

- Human output is an indented tree: every line of a nested lookup (depth 1 and more:
  root priming, addresses of glueless name servers) carries one guide per level, so the
  lookup hangs under the referral that needed it.
- JSON output is exactly `event.to_json()`, one object per line; nothing is added to an
  engine event (docs/trace-json.md documents every name and field).
- Numbers that depend on the clock (RTTs, totals) come from the events themselves, so
  a fake clock gives a reproducible rendering.

The run itself (fresh service, options, fan-out, recursive contrast) lives in
`resolver.cli.trace_run`; the fan-out and the recursive query in `resolver.cli.trace_probe`;
the blocks after the walk (answer, summary, legend, chain of trust) in
`resolver.cli.trace_report`, and the wording they share in `resolver.cli.trace_words`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resolver.cli.trace_words import (
    chain_step_text,
    ede_text,
    paint,
    record_rdata,
    record_type,
    style_rcode,
)
from resolver.engine.delegation import CutSource
from resolver.engine.events import (
    CacheAnswered,
    ChainStepChecked,
    CnameFollowed,
    DataValidated,
    QueryFailed,
    QuerySent,
    RecordsDropped,
    ReferralFollowed,
    ReplyReceived,
    ResolutionFinished,
    ResolutionStarted,
    ServerSkipped,
    TraceEvent,
    ZoneCutChosen,
)

#: One guide per nesting level; ASCII so any terminal and any log shows it.
_GUIDE = "|   "
#: Detail lines of a step sit under its "[n]" label.
_DETAIL = "      "
#: Reply kinds after which the engine gives up on the server and asks another.
_LAME_KINDS = frozenset({"lame", "server-error"})


def json_line(event: TraceEvent) -> str:
    """The event as one line of JSON: `to_json()` and nothing else."""
    return json.dumps(event.to_json(), ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSummary:
    """What one traced resolution cost."""

    queries_sent: int
    #: Distinct server addresses that were sent at least one query.
    servers_contacted: int
    #: From the start of the resolution to its last event, on the engine's clock.
    total_ms: float
    rcode: str
    #: The zones asked for the client's name itself, in order (". -> com. -> ...").
    path: tuple[str, ...] = ()
    #: Referrals followed for the client's name (nested lookups not counted).
    referrals: int = 0


def summarize(events: Sequence[TraceEvent]) -> TraceSummary:
    """Count queries and servers and take the total time from a finished trace."""
    sent = [e for e in events if isinstance(e, QuerySent)]
    finished = [e for e in events if isinstance(e, ResolutionFinished) and e.depth == 0]
    last = finished[-1] if finished else None
    return TraceSummary(
        queries_sent=last.queries_sent if last else len(sent),
        servers_contacted=len({e.address for e in sent}),
        total_ms=round((events[-1].at_s if events else 0.0) * 1000, 3),
        rcode=last.rcode if last else "SERVFAIL",
        path=tuple(dict.fromkeys(e.zone for e in sent if e.depth == 0)),
        referrals=sum(1 for e in events if isinstance(e, ReferralFollowed) and e.depth == 0),
    )


class TraceRenderer:
    """Turns trace events into the lines of the human trace, one event at a time.

    Feed every event in order to `render`; it keeps what later lines need (the server
    name behind an address, which addresses came from nested lookups, retries).
    """

    def __init__(self, *, explain: bool = False, styled: bool = False) -> None:
        self.explain = explain
        #: The name being resolved at each nesting level (to spot minimised queries).
        self._resolving: dict[int, str] = {}
        #: The type each depth's resolution wants in the end (the client's, or A for a
        #: name server's address), beside the type its minimised queries carry.
        self._wanted_type: dict[int, str] = {}
        #: Skips already shown per depth: a second pass over the same dead servers in one
        #: resolution repeats them word for word (the --json output keeps every event).
        self._skips_shown: dict[int, set[tuple[str, str]]] = {}
        #: Per depth, the minimised name a server has just called nonexistent: the engine
        #: then asks the full name (RFC 9156 section 2.3), which is no retry.
        self._minimised_nxdomain: dict[int, str] = {}
        self.styled = styled
        self._step = 0
        #: depth -> the query in flight there (a reply names only the address).
        self._pending: dict[int, QuerySent] = {}
        #: depth -> a failure or lame reply happened there; the next query is a retry.
        self._after_failure: dict[int, str] = {}
        #: (depth, zone, address) -> tries so far.
        self._tries: dict[tuple[int, str, str, str, str], int] = {}
        #: NS name -> addresses learnt by a nested lookup (not glue).
        self._looked_up: dict[str, set[str]] = {}
        #: depth -> zone of the last referral followed there (what a nested lookup serves).
        self._referral_zone: dict[int, str] = {}
        #: Root priming was shown: the root's servers in the cache came from it.
        self._primed = False

    # -- styling ------------------------------------------------------------------

    def _s(self, text: str, **style: object) -> str:
        return paint(text, self.styled, **style)

    def _zone(self, zone: str) -> str:
        return self._s(zone, bold=True)

    def _server(self, name: str) -> str:
        return self._s(name, fg="cyan")

    def _rcode(self, rcode: str) -> str:
        return style_rcode(rcode, self.styled)

    def _bad(self, text: str) -> str:
        return self._s(text, fg="red", bold=True)

    def _prefix(self, depth: int) -> str:
        return self._s(_GUIDE * depth, dim=True) if depth else ""

    def _lines(self, depth: int, *texts: str, detail: bool = False) -> list[str]:
        pad = self._prefix(depth) + (_DETAIL if detail else "")
        return [pad + text for text in texts]

    def _explained(self, depth: int, sentence: str, *, detail: bool = True) -> list[str]:
        if not self.explain or not sentence:
            return []
        return self._lines(depth, self._s("* " + sentence, italic=True, dim=True), detail=detail)

    # -- events -------------------------------------------------------------------

    def render(self, event: TraceEvent) -> list[str]:
        """The lines that `event` adds to the trace (possibly none)."""
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler is not None else []

    def _new_attempts(self, depth: int) -> None:
        """The engine counts tries per zone cut and resolution (`_ask_zone`): so do we."""
        self._tries = {k: v for k, v in self._tries.items() if k[0] != depth}
        self._after_failure.pop(depth, None)

    def _started(self, event: ResolutionStarted) -> list[str]:
        self._new_attempts(event.depth)
        self._resolving[event.depth] = event.qname
        self._wanted_type[event.depth] = event.qtype
        self._skips_shown.pop(event.depth, None)
        if event.depth == 0:
            return []  # the header already names the client's question
        if event.purpose == "root priming":
            self._primed = True
            lines = self._lines(event.depth, self._s("root priming: . NS", bold=True)
                                + " (a step before the walk starts)")
            return lines + self._explained(
                event.depth,
                "Before iterating at all the resolver asks one root server for the current "
                "list of root servers (priming, RFC 8109), since a hints file may be out of "
                "date; the walk for the name begins after it.",
                detail=False,
            )
        lines = self._lines(
            event.depth,
            self._s(f"lookup {event.qname} {event.qtype}", bold=True) + f": {event.purpose}",
        )
        needed_by = self._referral_zone.get(event.depth - 1)
        if needed_by is not None and event.purpose.startswith("address of name server"):
            lines += self._explained(
                event.depth,
                f"To ask the servers of {needed_by} the resolver first needs the address of "
                f"{event.qname}, which the referral did not include: it looks it up as a "
                "separate resolution, starting again from the best zone it knows.",
                detail=False,
            )
        return lines

    def _cache(self, event: CacheAnswered) -> list[str]:
        lines = self._lines(
            event.depth,
            f"cache: {event.qname} {event.qtype} -> {event.what} (TTL {event.ttl} s left), "
            "no query needed",
        )
        return lines + self._explained(
            event.depth,
            "An earlier step already brought this into the cache, so nobody needs to be asked.",
            detail=False,
        )

    def _zone_cut(self, event: ZoneCutChosen) -> list[str]:
        self._new_attempts(event.depth)
        servers = ", ".join(self._server(ns) for ns in event.nameservers) or "(none)"
        if event.source is CutSource.CACHE:
            # The trace starts with an empty cache: say what filled it.
            source = ("in the cache since the root priming above"
                      if event.zone == "." and self._primed else "in the cache, learnt earlier")
        else:
            source = f"from {event.source}"
        lines = self._lines(
            event.depth, f"zone cut {self._zone(event.zone)} ({source}): {servers}"
        )
        if event.zone == ".":
            why = ("The resolver starts at the closest zone whose servers it knows; with an "
                   "empty cache that is the root.")
        else:
            why = (f"The resolver already knows the servers of {event.zone} from an earlier "
                   "step, so it starts there instead of at the root.")
        return lines + self._explained(event.depth, why, detail=False)

    def _sent(self, event: QuerySent) -> list[str]:
        self._step += 1
        self._pending[event.depth] = event
        # A try is the same question again; the full name after a minimised one is not.
        key = (event.depth, event.zone, event.address, event.qname, event.qtype)
        tries = self._tries[key] = self._tries.get(key, 0) + 1
        note = ""
        previous = self._after_failure.pop(event.depth, None)
        denied = self._minimised_nxdomain.pop(event.depth, None)
        if denied is not None and event.qname != denied:
            note = self._s(f" (the full name, after NXDOMAIN for {denied})", fg="yellow")
        elif tries > 1:
            note = self._s(f" (try {tries} at this address)", fg="yellow")
        elif previous is not None:
            note = self._s(f" (another server, after {previous})", fg="yellow")
        label = self._s(f"[{self._step}]", bold=True)
        head = (f"{label} zone {self._zone(event.zone)}: ask {self._server(event.server_name)} "
                f"{event.address} ({event.why}){note}")
        flags = "RD=1" if event.recursion_desired else "RD=0"
        query = f"-> {event.qname} {event.qtype}  {flags}  {event.transport.upper()}"
        lines = self._lines(event.depth, head) + self._lines(event.depth, query, detail=True)
        full = self._resolving.get(event.depth, event.qname)
        if denied is not None and event.qname != denied:
            servers = "root" if event.zone == "." else event.zone
            lines += self._explained(
                event.depth,
                f"The {servers} servers said {denied} does not exist. Proven by DNSSEC, that "
                "would mean no name below it exists either (RFC 8020 section 2); unproven, it "
                "may come from a server that wrongly denies a name with only names below it, "
                "so the resolver asks once more with the full name (RFC 9156 section 2.3).",
            )
        if event.qname != full and full.endswith(event.qname):
            lines += self._explained(
                event.depth,
                f"Only as much of {full} as the "
                f"{'root' if event.zone == '.' else event.zone} servers need is sent "
                "(QNAME minimisation, RFC 9156): they learn where to refer us, not the "
                f"whole name. {self._why_minimised_type(event)}",
            )
        return lines

    def _why_minimised_type(self, event: QuerySent) -> str:
        """Why a minimised query carries the type it does (RFC 9156 section 3)."""
        wanted = self._wanted_type.get(event.depth, event.qtype)
        if wanted == event.qtype:
            return (f"It is asked with type {event.qtype} (here also the type wanted in the "
                    "end), not NS: an ordinary-looking question that every server answers with "
                    "the same referral (RFC 9156 section 3).")
        return (f"It is asked with type {event.qtype}, not {wanted}, the type wanted in the "
                "end: an ordinary-looking question that every server answers with the same "
                "referral (RFC 9156 section 3).")

    def _reply(self, event: ReplyReceived) -> list[str]:
        sent = self._pending.get(event.depth)
        server = sent.server_name if sent is not None else event.address
        zone = sent.zone if sent is not None else "?"
        kind = event.kind
        if kind in _LAME_KINDS:
            self._after_failure[event.depth] = f"a lame reply from {server}"
            shown = self._bad(f"LAME ({event.detail or kind})")
        elif kind == "truncated":
            shown = self._s("truncated (TC=1)", fg="yellow")
        else:
            shown = self._s(kind, fg="magenta") + (f" ({event.detail})" if event.detail else "")
        text = (f"<- {self._rcode(event.rcode)}  AA={int(event.aa)}  "
                f"answer {event.answer_count}, authority {event.authority_count}, "
                f"additional {event.additional_count}  {event.rtt_ms:.1f} ms  {shown}")
        lines = self._lines(event.depth, text, detail=True)
        if sent is not None and kind == "nxdomain":
            full = self._resolving.get(event.depth, sent.qname)
            if sent.qname != full and full.endswith(sent.qname):
                self._minimised_nxdomain[event.depth] = sent.qname
        return lines + self._explained(event.depth, _explain_reply(event, server, zone))

    def _failed(self, event: QueryFailed) -> list[str]:
        sent = self._pending.get(event.depth)
        server = sent.server_name if sent is not None else event.address
        timeout = event.error.startswith("timeout")
        self._after_failure[event.depth] = "a timeout" if timeout else "a failure"
        label = "UNREACHABLE" if timeout or "refused" in event.error else "FAILED"
        lines = self._lines(event.depth, f"<- {self._bad(label)}: {event.error}", detail=True)
        if timeout:
            why = (f"{server} did not answer in time; the resolver tries again, with another "
                   "server of the zone or the same one with a longer timeout.")
        else:
            why = f"The exchange with {server} failed; the resolver tries another server."
        return lines + self._explained(event.depth, why)

    def _skipped(self, event: ServerSkipped) -> list[str]:
        shown = self._skips_shown.setdefault(event.depth, set())
        if (event.address, event.reason) in shown:
            return []
        shown.add((event.address, event.reason))
        lines = self._lines(
            event.depth,
            f"skip {self._server(event.server_name)} {event.address}: {event.reason}",
        )
        return lines + self._explained(
            event.depth, "The resolver will not send queries to this address.", detail=False
        )

    def _dropped(self, event: RecordsDropped) -> list[str]:
        lines = self._lines(event.depth, self._s("dropped:", fg="yellow"), detail=True)
        lines += self._lines(event.depth, *(f"  x {r}" for r in event.records), detail=True)
        return lines + self._explained(
            event.depth,
            "The server sent records it has no authority for; they are thrown away so that "
            "they cannot poison the cache (RFC 2181 section 5.4.1).",
        )

    def _referral(self, event: ReferralFollowed) -> list[str]:
        self._new_attempts(event.depth)
        self._referral_zone[event.depth] = event.to_zone
        sent = self._pending.get(event.depth)
        from_zone = sent.zone if sent is not None else event.from_zone
        lines = self._lines(
            event.depth,
            f"referral to {self._zone(event.to_zone)} (NS TTL {event.ttl} s):", detail=True,
        )
        glueless: list[str] = []
        for entry in event.nameservers:
            name, _, addresses = entry.partition(" ")
            found = [a for a in addresses.split(",") if a]
            if not found:
                glueless.append(name)
                where = self._s("no glue: its address must be looked up", fg="yellow")
            elif set(found) <= self._looked_up.get(name, set()):
                where = "address known from an earlier lookup " + ", ".join(found)
            else:
                where = "glue " + ", ".join(found)
            lines += self._lines(event.depth, f"  {self._server(name)}  {where}", detail=True)
        asker = "The root server" if from_zone == "." else f"The {from_zone} server"
        if glueless and len(glueless) == len(event.nameservers):
            why = (f"{asker} refers us to the servers of {event.to_zone} but cannot give their "
                   f"addresses (no glue: {', '.join(glueless)} lies outside {from_zone}), so "
                   "the resolver must look one of them up first.")
        else:
            asked = sent.qname if sent is not None else "the name"
            why = (f"{asker} is not authoritative for {asked} (AA=0) and refers us to the "
                   f"servers of {event.to_zone}: the resolver asks them next. This is "
                   "iteration.")
        return lines + self._explained(event.depth, why)

    def _chain_step(self, event: ChainStepChecked) -> list[str]:
        colour = {"secure": "green", "insecure": "yellow"}.get(event.security, "red")
        lines = self._lines(event.depth, self._s("chain of trust", bold=True)
                            + f" {chain_step_text(event)}: "
                            + self._s(event.security, fg=colour, bold=True)
                            + ede_text(event.ede),
                            f"  {event.detail}")
        return lines + self._explained(
            event.depth,
            f"The keys of {event.zone} are trusted when a DS record from the parent zone (or "
            "the trust anchor) names one of them and that key signs the zone's DNSKEY set "
            "(RFC 4035 §5.2); no DS, proven by the parent, makes the zone insecure.")

    def _validated(self, event: DataValidated) -> list[str]:
        colour = {"secure": "green", "insecure": "yellow"}.get(event.security, "red")
        return self._lines(event.depth, self._s("DNSSEC", bold=True)
                           + f" {event.qname} {event.qtype} signed by {event.zone}: "
                           + self._s(event.security, fg=colour, bold=True)
                           + ede_text(event.ede) + f" ({event.detail})")

    def _cname(self, event: CnameFollowed) -> list[str]:
        self._resolving[event.depth] = event.to_name  # what minimised queries now cut down
        lines = self._lines(
            event.depth,
            self._s("CNAME", fg="magenta", bold=True)
            + f" {event.from_name} -> {event.to_name}: resolution restarts at {event.to_name}",
        )
        return lines + self._explained(
            event.depth,
            f"{event.from_name} is an alias; the resolver starts again with its canonical name "
            f"{event.to_name}, from the closest zone cut it already knows (RFC 1034 section "
            "5.3.3).",
            detail=False,
        )

    def _finished(self, event: ResolutionFinished) -> list[str]:
        if event.depth == 0:
            return []  # the answer section and summary follow the trace
        addresses = [record_rdata(rr) for rr in event.answer if record_type(rr) == event.qtype]
        if addresses:
            self._looked_up.setdefault(event.qname, set()).update(addresses)
            result = ", ".join(addresses)
        else:
            result = event.rcode + (f": {event.reason}" if event.reason else ", no address")
        return self._lines(event.depth, f"=> {event.qname} {event.qtype}: {result}")


_HANDLERS: dict[type[TraceEvent], Callable[[TraceRenderer, Any], list[str]]] = {
    ResolutionStarted: TraceRenderer._started,
    CacheAnswered: TraceRenderer._cache,
    ZoneCutChosen: TraceRenderer._zone_cut,
    QuerySent: TraceRenderer._sent,
    ReplyReceived: TraceRenderer._reply,
    QueryFailed: TraceRenderer._failed,
    ServerSkipped: TraceRenderer._skipped,
    RecordsDropped: TraceRenderer._dropped,
    ReferralFollowed: TraceRenderer._referral,
    CnameFollowed: TraceRenderer._cname,
    ResolutionFinished: TraceRenderer._finished,
    ChainStepChecked: TraceRenderer._chain_step,
    DataValidated: TraceRenderer._validated,
}


def _explain_reply(event: ReplyReceived, server: str, zone: str) -> str:
    """One sentence on what a reply means; referrals are explained with their NS set."""
    kind = event.kind
    if kind == "answer":
        if event.aa:
            return (f"{server} is authoritative for {zone} (AA=1) and gives the answer itself: "
                    "the iteration ends here.")
        return "The reply carries the answer, though without the authoritative flag (AA=0)."
    if kind == "cname":
        return (f"{server} answers with an alias (CNAME) whose target lies outside what it "
                "serves, so the resolver must look the target up.")
    if kind == "nxdomain":
        return ("The authoritative server says the name does not exist (NXDOMAIN); the SOA "
                "record it adds says how long that may be remembered (RFC 2308).")
    if kind == "nodata":
        return "The name exists but has no records of this type (NODATA, RFC 2308)."
    if kind in _LAME_KINDS:
        return (f"{server} is listed as a server of {zone} but does not serve it properly "
                f"({event.detail or event.rcode}): a lame server. The resolver remembers that "
                "and asks another server of the zone.")
    if kind == "truncated":
        return ("The reply did not fit in a UDP datagram (TC=1), so the resolver asks the same "
                "server again over TCP (RFC 7766).")
    return ""


