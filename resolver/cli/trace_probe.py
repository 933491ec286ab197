"""Queries `resolver trace` sends beside the engine: the fan-out over every server and the
recursive contrast.

Both send ordinary queries through a `Network` (in production `AsyncioNetwork`), each
with a fresh id from an unpredictable random source (RFC 5452 §9.2). Rules:

- Fan-out (`--fanout`): for each zone cut on the traced path, every address of every
  NS name (IPv4 and IPv6) gets the question that the trace asked of that cut, and also
  `zone NS` (RD=0 both). A server is *lame* when it answers REFUSED, SERVFAIL or another
  error, or an empty reply without authority (RFC 1034 §4.2.2, RFC 1912 §2.8), and
  *unreachable* when nothing comes back. The NS set in the parent's referral is compared
  with the one the child's own servers give for `zone NS` (RFC 2181 §5.4.1: the child's
  is the authoritative one).
- Recursive (`--recursive`): one query with RD=1 to the given resolver; whatever comes
  back is shown as it is.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import (
    MalformedMessage,
    Message,
    Question,
    Rcode,
    RRType,
    rcode_name,
    type_from_text,
    type_name,
)
from resolver.engine.classify import ResponseKind, classify
from resolver.engine.delegation import Delegation
from resolver.engine.events import QuerySent, ReferralFollowed, TraceEvent, ZoneCutChosen
from resolver.engine.network import (
    Network,
    ServerAddress,
    Transport,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.engine.scrub import scrub
from resolver.upstream.randomness import PooledSystemRandom

Clock = Callable[[], float]
#: Addresses (IPv4 and IPv6) of one name-server name.
AddressLookup = Callable[[str], Awaitable[tuple[str, ...]]]

#: Most addresses asked per zone cut: a hostile NS set must not turn a trace into a flood.
MAX_ADDRESSES_PER_CUT = 26
#: Queries of the fan-out in flight at once.
MAX_PARALLEL = 16


class ProbeStatus(enum.Enum):
    """How one server fared in the fan-out."""

    OK = "ok"  #: an answer, referral or negative answer from a server that serves the zone
    LAME = "lame"  #: REFUSED, SERVFAIL or another error, or an empty non-authoritative reply
    UNREACHABLE = "unreachable"  #: timeout or connection refused
    BAD_REPLY = "bad-reply"  #: a reply that could not be decoded


@dataclass(frozen=True, slots=True, kw_only=True)
class CutOnPath:
    """One zone cut of the traced path as the trace met it: what a cut to probe and its
    report both begin with."""

    zone: str
    #: The question the trace asked of this cut first.
    question: Question
    #: NS names as the parent listed them (its referral), or the root hints for the root.
    parent_ns: tuple[str, ...]
    #: Where `parent_ns` comes from: "root hints" or "referral from com.".
    parent_source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CutToProbe(CutOnPath):
    """One zone cut of the traced path and what the trace knew about it."""

    #: Addresses the trace already knew per NS name (glue, hints).
    known: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerProbe:
    """One address of one name server, asked the cut's question."""

    server_name: str
    address: str
    status: ProbeStatus
    rtt_ms: float | None = None
    rcode: str | None = None
    aa: bool | None = None
    #: The reply's kind (answer, referral, nxdomain, ...) or the failure, in words.
    detail: str = ""
    #: The NS set this server gave for `zone NS` (empty if it gave none).
    child_ns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CutReport(CutOnPath):
    """One cut's fan-out: every server's probe and how the child's NS set compares."""

    probes: tuple[ServerProbe, ...]
    #: NS names the zone's own authoritative servers list for `zone NS` (union).
    child_ns: tuple[str, ...]

    @property
    def only_in_parent(self) -> tuple[str, ...]:
        return tuple(n for n in self.parent_ns if self.child_ns and n not in self.child_ns)

    @property
    def only_in_child(self) -> tuple[str, ...]:
        return tuple(n for n in self.child_ns if n not in self.parent_ns)


def cuts_on_path(events: Sequence[TraceEvent], root_hints: Delegation) -> list[CutToProbe]:
    """The zone cuts the client's question went through (depth 0), in order, each once."""
    parents: dict[str, tuple[tuple[str, ...], str, tuple[tuple[str, tuple[str, ...]], ...]]] = {}
    hints = tuple((ns.name, ns.addresses) for ns in root_hints.servers)
    parents["."] = (tuple(root_hints.names()), "root hints", hints)
    cuts: dict[str, CutToProbe] = {}
    for event in events:
        if event.depth != 0:
            continue
        if isinstance(event, ReferralFollowed):
            known = tuple(_split_ns(entry) for entry in event.nameservers)
            parents[event.to_zone] = (
                tuple(name for name, _ in known), f"referral from {event.from_zone}", known
            )
        elif isinstance(event, ZoneCutChosen) and event.zone not in parents:
            # A cut that started from the cache: its own NS set is all we know.
            parents[event.zone] = (event.nameservers, f"cache ({event.source})", ())
        elif isinstance(event, QuerySent) and event.zone not in cuts:
            names, source, known = parents.get(event.zone, ((), "unknown", ()))
            cuts[event.zone] = CutToProbe(
                zone=event.zone,
                question=Question(event.qname, type_from_text(event.qtype)),
                parent_ns=names,
                parent_source=source,
                known=known,
            )
    return list(cuts.values())


def _split_ns(entry: str) -> tuple[str, tuple[str, ...]]:
    name, _, addresses = entry.partition(" ")
    return name, tuple(a for a in addresses.split(",") if a)


class Prober:
    """Sends the trace's side queries over `network`, timing them on `clock`."""

    def __init__(
        self,
        *,
        network: Network,
        clock: Clock,
        port: int,
        transport: Transport = Transport.UDP,
        timeout_s: float = 1.5,
        rng: random.Random | None = None,
    ) -> None:
        self.network = network
        self.clock = clock
        self.port = port
        self.transport = transport
        self.timeout_s = timeout_s
        self.rng = rng if rng is not None else PooledSystemRandom()
        self._slots = asyncio.Semaphore(MAX_PARALLEL)

    async def ask(
        self, question: Question, server: ServerAddress, *, recursion_desired: bool
    ) -> tuple[Message | None, float, str]:
        """(reply or None, RTT in ms, failure text); over TCP again when truncated."""
        transport = self.transport
        async with self._slots:
            while True:
                wire = make_query(question, query_id=self.rng.randrange(0x10000),
                                  recursion_desired=recursion_desired)
                started = self.clock()
                try:
                    data = await self.network.exchange(wire, server, transport, self.timeout_s)
                except UpstreamTimeout:
                    return None, 0.0, f"timeout after {round(self.timeout_s * 1000)} ms"
                except (UpstreamError, OSError) as exc:
                    return None, 0.0, f"transport error: {exc}"
                rtt_ms = round((self.clock() - started) * 1000, 3)
                try:
                    reply = decode(data)
                except MalformedMessage as exc:
                    return None, rtt_ms, f"malformed reply: {exc.reason}"
                if reply.tc and transport is Transport.UDP:
                    transport = Transport.TCP  # RFC 7766 §5: the full answer needs TCP
                    continue
                return reply, rtt_ms, ""

    async def probe_server(self, cut: CutToProbe, name: str, address: str) -> ServerProbe:
        """Ask one address the cut's question and `zone NS`."""
        server = ServerAddress(address, self.port)
        (reply, rtt_ms, error), (ns_reply, _, _) = await asyncio.gather(
            self.ask(cut.question, server, recursion_desired=False),
            self.ask(Question(cut.zone, RRType.NS), server, recursion_desired=False),
        )
        if reply is None:
            status = ProbeStatus.BAD_REPLY if error.startswith("malformed") else (
                ProbeStatus.UNREACHABLE)
            return ServerProbe(server_name=name, address=address, status=status,
                               rtt_ms=rtt_ms or None, detail=error)
        classified = classify(cut.question, scrub(cut.question, reply, cut.zone))
        lame = classified.kind in (ResponseKind.LAME, ResponseKind.SERVER_ERROR)
        child: tuple[str, ...] = ()
        if ns_reply is not None and ns_reply.aa and ns_reply.rcode == Rcode.NOERROR:
            child = tuple(sorted({rr.target for rr in ns_reply.answer
                                  if rr.rtype == RRType.NS and rr.name == cut.zone}))
        return ServerProbe(
            server_name=name,
            address=address,
            status=ProbeStatus.LAME if lame else ProbeStatus.OK,
            rtt_ms=rtt_ms,
            rcode=rcode_name(reply.rcode),
            aa=reply.aa,
            detail=classified.reason or classified.kind.value,
            child_ns=child,
        )

    async def fan_out(
        self, cuts: Sequence[CutToProbe], addresses_of: AddressLookup
    ) -> list[CutReport]:
        """Probe every server of every cut at once; reports in path order."""
        return list(await asyncio.gather(*(self._fan_out_cut(c, addresses_of) for c in cuts)))

    async def _fan_out_cut(self, cut: CutToProbe, addresses_of: AddressLookup) -> CutReport:
        known = dict(cut.known)
        targets: list[tuple[str, str]] = []
        for name in cut.parent_ns:
            found = list(known.get(name, ()))
            for address in await addresses_of(name):
                if address not in found:
                    found.append(address)
            targets.extend((name, address) for address in found)
            if not found:
                targets.append((name, ""))
        targets = targets[:MAX_ADDRESSES_PER_CUT]
        probes = await asyncio.gather(*(
            self.probe_server(cut, name, address) if address else _no_address(name)
            for name, address in targets
        ))
        child = sorted({ns for p in probes if p.status is ProbeStatus.OK for ns in p.child_ns})
        return CutReport(zone=cut.zone, question=cut.question, parent_ns=cut.parent_ns,
                         parent_source=cut.parent_source, probes=tuple(probes),
                         child_ns=tuple(child))


async def _no_address(name: str) -> ServerProbe:
    return ServerProbe(server_name=name, address="-", status=ProbeStatus.UNREACHABLE,
                       detail="no address found for this name")



# -- the recursive contrast ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecursiveResult:
    """What one recursive query (RD=1) to one resolver brought back."""

    server: ServerAddress
    question: Question
    transport: str
    rtt_ms: float | None = None
    reply: Message | None = None
    error: str = ""


def parse_server(text: str) -> ServerAddress:
    """"127.0.0.1", "127.0.0.1@5300", "::1@5300" or "[::1]@5300"; ValueError otherwise."""
    host, sep, port_text = text.strip().rpartition("@")
    if not sep:
        host, port_text = port_text, "53"
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (use SERVER[@PORT], "
                         "e.g. 127.0.0.1@5300)") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port {port_text!r} in {text!r}")
    return ServerAddress(host, int(port_text))


async def ask_recursive(
    prober: Prober, question: Question, server: ServerAddress
) -> RecursiveResult:
    """Send one recursive query (RD=1) to `server` and keep what comes back."""
    reply, rtt_ms, error = await prober.ask(question, server, recursion_desired=True)
    return RecursiveResult(server=server, question=question, transport=prober.transport.value,
                           rtt_ms=rtt_ms if reply is not None else None, reply=reply,
                           error=error)


# -- JSON records of the tool (not engine events) -----------------------------------


def fanout_json(report: CutReport) -> list[dict[str, Any]]:
    """One "fanout_probe" per server address and one "fanout_ns_sets" per cut."""
    records: list[dict[str, Any]] = [
        {
            "event": "fanout_probe",
            "zone": report.zone,
            "qname": report.question.name,
            "qtype": type_name(report.question.rtype),
            "server_name": p.server_name,
            "address": p.address,
            "status": p.status.value,
            "rtt_ms": p.rtt_ms,
            "rcode": p.rcode,
            "aa": p.aa,
            "detail": p.detail,
            "child_ns": list(p.child_ns),
        }
        for p in report.probes
    ]
    records.append({
        "event": "fanout_ns_sets",
        "zone": report.zone,
        "parent_source": report.parent_source,
        "parent_ns": list(report.parent_ns),
        "child_ns": list(report.child_ns),
        "only_in_parent": list(report.only_in_parent),
        "only_in_child": list(report.only_in_child),
    })
    return records


def recursive_json(result: RecursiveResult) -> dict[str, Any]:
    reply = result.reply
    return {
        "event": "recursive_reply",
        "address": result.server.ip,
        "port": result.server.port,
        "qname": result.question.name,
        "qtype": type_name(result.question.rtype),
        "transport": result.transport,
        "rtt_ms": result.rtt_ms,
        "rcode": rcode_name(reply.rcode) if reply else None,
        "aa": reply.aa if reply else None,
        "ra": reply.ra if reply else None,
        "answer": [rr.to_text() for rr in reply.answer] if reply else [],
        "error": result.error,
    }
