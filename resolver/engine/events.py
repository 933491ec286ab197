"""The engine's vocabulary: actions it asks for, its outcome, and trace events.

Everything here is a frozen value. `SendQuery` and `Finished` flow from the engine to
its driver; trace events record every decision so that `resolver trace`, logs and
tests all show what the engine really did. Each trace event carries `depth`: 0 for
the client's question, 1 and more for nested lookups of name-server addresses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import Rcode, Record
from resolver.dnssec.security import Security
from resolver.engine.delegation import CutSource
from resolver.engine.failure import FailureKind
from resolver.engine.network import ServerAddress, Transport


@dataclass(frozen=True, slots=True, kw_only=True)
class SendQuery:
    """Send `wire` to `server` over `transport`; report back with the same `token`."""

    token: int
    server: ServerAddress
    transport: Transport
    wire: bytes
    timeout_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a resolution ended: what the client is told."""

    rcode: Rcode
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    #: Addresses of the name servers in `authority` (a referral from the cache).
    additional: tuple[Record, ...] = ()
    #: The answer as the record cache keeps it, when some TTL there is shorter than in the
    #: fresh reply (a ghost-domain clamp): what a cached copy of this reply must show.
    answer_as_cached: tuple[Record, ...] | None = None
    #: Why a SERVFAIL happened, in words, for logs and the extended error's text.
    reason: str = ""
    #: What kind of failure a SERVFAIL is: the extended error's code comes from it.
    failure: FailureKind | None = None
    #: A more precise extended error than the kind's (a DNSSEC failure's own code).
    extended_error: ExtendedError | None = None
    #: DNSSEC status of the whole answer (RFC 4035 §4.3); None when not validated
    #: (validation off, or CD=1 asked for the data unchecked).
    security: Security | None = None
    #: The RRSIGs over the RRsets of `answer` (and of the negative SOA), for DO clients
    #: (RFC 4035 §3.2.1).
    signatures: tuple[Record, ...] = ()
    #: NXDOMAIN/NODATA and wildcard answers: the NSEC/NSEC3 records and their RRSIGs
    #: that prove the denial, for the authority section of a DO client's reply.
    denial: tuple[Record, ...] = ()

    @property
    def ede_code(self) -> ExtendedError | None:
        """The extended error a SERVFAIL is reported with."""
        if self.extended_error is not None:
            return self.extended_error
        return self.failure.ede_code if self.failure is not None else None
    #: Upstream queries this resolution sent.
    queries_sent: int = 0
    #: Served from expired data (RFC 8767); the reply carries EDE 3 "Stale Answer".
    stale: bool = False
    #: The answer is in its prefetch window (the last 10% of its TTL): a background refresh
    #: is due, so the reply is not worth keeping as bytes.
    refreshing: bool = False

    def with_queries_sent(self, queries_sent: int) -> Outcome:
        """This outcome with `queries_sent` set. Built field by field: every resolution
        ends here, and dataclasses.replace costs twice as much (tests/unit/test_events.py
        checks that no field is left out)."""
        return Outcome(
            rcode=self.rcode, answer=self.answer, authority=self.authority,
            additional=self.additional, answer_as_cached=self.answer_as_cached,
            reason=self.reason, failure=self.failure, extended_error=self.extended_error,
            security=self.security, signatures=self.signatures, denial=self.denial,
            queries_sent=queries_sent, stale=self.stale, refreshing=self.refreshing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    outcome: Outcome


Action = SendQuery | Finished


# -- trace events -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEvent:
    depth: int
    #: Seconds since the resolution started (the engine's clock).
    at_s: float

    @property
    def event(self) -> str:
        """Stable event name used in JSON output ("query_sent", ...)."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.event}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = _jsonable(value)
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Transport):
        return value.value
    if isinstance(value, Rcode):
        return value.name
    if isinstance(value, ServerAddress):
        return asdict(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionStarted(TraceEvent):
    qname: str
    qtype: str
    purpose: str  #: "client question", "address of name server ns1.example.", "root priming"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheAnswered(TraceEvent):
    qname: str
    qtype: str
    what: str  #: "answer", "cname", "nxdomain", "nodata", "failure"
    ttl: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneCutChosen(TraceEvent):
    zone: str
    source: CutSource
    nameservers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySent(TraceEvent):
    zone: str
    server_name: str
    address: str
    port: int
    qname: str
    qtype: str
    recursion_desired: bool
    transport: str
    why: str  #: how the server was chosen: "glue", "resolved address", "fastest known", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyReceived(TraceEvent):
    address: str
    rtt_ms: float
    rcode: str
    aa: bool
    tc: bool
    answer_count: int
    authority_count: int
    additional_count: int
    kind: str  #: the classification: answer, referral, nxdomain, lame, ...
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryFailed(TraceEvent):
    address: str
    error: str  #: "timeout after 400 ms", "connection refused", "malformed reply: ..."


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSkipped(TraceEvent):
    server_name: str
    address: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralFollowed(TraceEvent):
    from_zone: str
    to_zone: str
    ttl: int
    #: "name addr,addr" per NS; names without addresses are glueless.
    nameservers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordsDropped(TraceEvent):
    #: "record text: reason" per dropped record (bailiwick scrubbing, RFC 2181 §5.4.1).
    records: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CnameFollowed(TraceEvent):
    from_name: str
    to_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainStepChecked(TraceEvent):
    """One zone of the chain of trust (RFC 4035 §5): the DS relied on, the DNSKEY it
    matched, and the verdict on the zone's keys."""

    zone: str
    ds_key_tag: int | None
    ds_digest_type: int | None
    dnskey_tag: int | None
    algorithm: int | None
    security: str
    ede: int | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataValidated(TraceEvent):
    """The verdict on the data of a reply: its status, the zone that signed it, why."""

    qname: str
    qtype: str
    zone: str
    security: str
    ede: int | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionFinished(TraceEvent):
    qname: str
    qtype: str
    rcode: str
    answer: tuple[str, ...]
    reason: str
    queries_sent: int
