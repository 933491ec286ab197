"""The resolution engine: a sans-I/O state machine that answers one question.

Theory of operation. A `Resolution` is driven from outside: `next_action()` says what
to do next (`SendQuery` to a server, or `Finished` with the outcome); the driver
performs the exchange and reports back with `on_reply`, `on_timeout` or `on_error`.
The engine never opens a socket, never reads a clock and never draws randomness of
its own: `now` comes with every input and `rng` is given (RFC 5452 requires an
unpredictable one in production; tests pass a seeded one).

Inside, the iteration is written as plain sequential code in generators that yield
`SendQuery` and receive the reply: resolving a glueless name server's address is just
a nested `yield from self._resolve(...)`, so the algorithm of RFC 1034 §5.3.3 reads
top to bottom:

    _resolve     one question: cache, then iterate; follow CNAMEs (restart)
    _iterate     from the closest known zone cut, follow referrals down to an answer
    _ask_zone    choose a server of the zone cut, fall over to the next on failure,
                 look up name-server addresses that came without glue
    _exchange    one query to one server and the checks on its reply

With DNSSEC validation on (`EngineSettings.validation`), queries carry DO=1 and the
client's answer goes through `resolver.engine.validation` between classification and
admission: `_zone_trust` fetches the DS and DNSKEY RRsets of the chain of trust with
sub-resolutions (as name-server addresses are fetched), `_validated` judges the data, a
bogus reply is asked again of another server, and a bogus result is SERVFAIL with the
failure's extended error. Signature times are checked against `wall_time` (epoch
seconds, passed in like `now`).

The pure pieces live apart: `resolver.engine.classify` says what a reply is,
`resolver.engine.iterate` what to ask next (QNAME minimisation, glue that answers a lookup,
the DS side of a cut), `resolver.engine.admission` what a reply may put into the cache.
Every budget of `Limits` is enforced here, so each driver (daemon, trace, replay) behaves the same.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

from resolver.dns import names
from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import (
    MalformedMessage,
    Message,
    Question,
    Rcode,
    Record,
    RRType,
    decode,
    make_query,
    rcode_name,
    type_name,
)
from resolver.dnssec.security import Failure as DnssecFailure
from resolver.dnssec.security import Security, Verdict
from resolver.engine.admission import admit, rrsets
from resolver.engine.cache import Rank, RecordCache
from resolver.engine.classify import (
    EMPTY_REPLY,
    Classified,
    ResponseKind,
    classify,
    covered_type,
)
from resolver.engine.delegation import (
    CutSource,
    Delegation,
    NameServer,
    is_ipv6,
    is_loopback_or_unspecified,
    is_never_a_server,
)
from resolver.engine.events import (
    Action,
    CacheAnswered,
    ChainStepChecked,
    CnameFollowed,
    DataValidated,
    Finished,
    Outcome,
    QueryFailed,
    QuerySent,
    RecordsDropped,
    ReferralFollowed,
    ReplyReceived,
    ResolutionFinished,
    ResolutionStarted,
    SendQuery,
    ServerSkipped,
    TraceEvent,
    ZoneCutChosen,
)
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.iterate import (
    Minimiser,
    from_child_side,
    glue_answering,
    mixed_case,
    reply_mismatch,
    zone_in_answer,
)
from resolver.engine.network import (
    ServerAddress,
    Transport,
    TransportProblem,
    UpstreamError,
    UpstreamTimeout,
    server_from_spec,
)
from resolver.engine.scrub import ScrubbedReply, scrub
from resolver.engine.selection import Candidate, ServerSelection
from resolver.engine.settings import EngineSettings, ValidationSettings
from resolver.engine.validation import (
    TrustCache,
    ZoneTrust,
    anchored_trust,
    check_data,
    signer_of,
    worst,
    zone_trust_below,
    zones_needed,
)

log = logging.getLogger(__name__)

#: What the driver reports for a `SendQuery`: reply bytes or the failure.
Reply = bytes | UpstreamTimeout | UpstreamError


class _OutOfBudget(Exception):
    """One of our own work limits ran out; the client gets SERVFAIL."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass(slots=True)
class _Attempts:
    """Bookkeeping of one zone cut's servers during one `_ask_zone`."""

    servers: list[NameServer]
    tries: dict[str, int] = field(default_factory=dict)
    looked_up: set[str] = field(default_factory=set)
    failed_lookups: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedState:
    """The process-wide state every resolution reads and feeds."""

    cache: RecordCache
    selection: ServerSelection
    root_hints: Delegation
    #: Forward and stub zones (Unbound forward-zone / stub-zone), by zone name.
    configured_zones: dict[str, Delegation] = field(default_factory=dict)
    #: Validated zone keys and insecure delegations (DNSSEC), by zone, with TTLs.
    trust: TrustCache = field(default_factory=TrustCache)


#: Results whose data validation judges; referrals and failures are not data.
_VALIDATED_KINDS = frozenset((ResponseKind.ANSWER, ResponseKind.CNAME, ResponseKind.NXDOMAIN,
                              ResponseKind.NODATA))


class Resolution:
    """Resolves one question; see the module docstring for how it is driven."""

    def __init__(
        self,
        question: Question,
        *,
        settings: EngineSettings,
        state: SharedState,
        rng: random.Random,
        now: float,
        observer: Callable[[TraceEvent], None] | None = None,
        cache_only: bool = False,
        wall_time: float = 0.0,
        checking_disabled: bool = False,
    ) -> None:
        self.question = question
        #: Answer from the cache alone, a referral to the closest known cut on a miss
        #: (RD=0 queries from clients allowed to snoop, Unbound allow_snoop).
        self.cache_only = cache_only
        self.settings = settings
        self.limits = settings.limits
        self.cache = state.cache
        self.selection = state.selection
        self.state = state
        self.rng = rng
        self.now = now
        self.started = now
        self.queries_sent = 0
        self._observer = observer
        self._token = 0
        self._sent_at = now
        self._pending_token: int | None = None
        self._active: set[tuple[str, int]] = set()
        self._fell_back: set[str] = set()
        # Loopback servers are asked only in a lab (root hints on loopback) or when the
        # operator configured that very address as a stub or forwarder.
        self._allow_loopback = not settings.do_not_query_localhost or _all_loopback(
            state.root_hints
        )
        self._configured = {a for d in state.configured_zones.values() for ns in d.servers
                            for a in ns.addresses}
        #: Epoch seconds when the resolution started: DNSSEC signature times are checked
        #: against it plus the monotonic time elapsed since (the engine reads no clock).
        self.wall_time = wall_time
        #: DO=1 upstream and DNSSEC records kept apart, whenever validation is configured.
        self._dnssec: ValidationSettings | None = settings.validation
        #: CD=1 (RFC 4035 §3.2.2): the client checks for itself; the data is not judged.
        self._validating = self._dnssec is not None and not checking_disabled
        self._trust_active: set[str] = set()
        self._answered_by = ""
        self._steps = self._main()
        self._action: Action = self._advance(None)

    # -- the driver's interface ---------------------------------------------------

    def next_action(self) -> Action:
        return self._action

    def on_reply(self, token: int, data: bytes, now: float) -> None:
        self._deliver(token, data, now)

    def on_timeout(self, token: int, now: float) -> None:
        self._deliver(token, UpstreamTimeout(), now)

    def on_error(self, token: int, error: Exception, now: float) -> None:
        if not isinstance(error, UpstreamError):
            error = UpstreamError(str(error) or type(error).__name__)
        self._deliver(token, error, now)

    def _deliver(self, token: int, reply: Reply, now: float) -> None:
        if token != self._pending_token:
            raise ValueError(f"no query with token {token} is pending")
        self.now = now
        self._action = self._advance(reply)

    def _advance(self, reply: Reply | None) -> Action:
        try:
            action = self._steps.send(reply) if reply is not None else next(self._steps)
        except StopIteration as stop:
            return Finished(outcome=stop.value)
        self._pending_token = action.token
        return action

    def _emit(self, event: TraceEvent) -> None:
        """Report a step to the observer; callers build the event only when one listens."""
        if self._observer is not None:
            self._observer(event)

    def _at_s(self) -> float:
        """Seconds since the resolution started, as trace events show it."""
        return round(self.now - self.started, 6)

    # -- the algorithm ------------------------------------------------------------

    def _main(self) -> Generator[SendQuery, Reply, Outcome]:
        try:
            outcome = yield from self._resolve(self.question, 0, "client question",
                                               validate=self._validating)
        except _OutOfBudget as exc:
            outcome = _servfail(exc.failure)
            self.cache.store_failure(self.question, exc.failure)
        return replace(outcome, queries_sent=self.queries_sent)

    def _resolve(
        self, question: Question, depth: int, purpose: str, *, validate: bool = False
    ) -> Generator[SendQuery, Reply, Outcome]:
        """Answer `question`, following CNAMEs across zones (RFC 1034 §5.3.3 step 3)."""
        if self._observer is not None:
            self._emit(ResolutionStarted(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), purpose=purpose))
        outcome = yield from self._resolve_chain(question, depth, validate)
        if self._observer is not None:
            self._emit(ResolutionFinished(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), rcode=rcode_name(outcome.rcode),
                answer=tuple(rr.to_text() for rr in outcome.answer),
                reason=outcome.reason, queries_sent=self.queries_sent))
        return outcome

    def _resolve_chain(
        self, question: Question, depth: int, validate: bool = False
    ) -> Generator[SendQuery, Reply, Outcome]:
        failure = self.cache.failure(question)
        if failure is not None and failure.kind is FailureKind.DNSSEC_BOGUS and (
                not self._validating):
            failure = None  # CD=1: the client takes the data unchecked (RFC 4035 §3.2.2)
        if failure is not None:
            if self._observer is not None:
                self._emit(CacheAnswered(
                    depth=depth, at_s=self._at_s(), qname=question.name,
                    qtype=type_name(question.rtype), what="failure", ttl=0))
            return _servfail(Failure(failure.kind, f"recently failed: {failure.reason}",
                                     failure.extended_error))
        chain: list[Record] = []
        signatures: list[Record] = []
        denial: list[Record] = []
        verdicts: list[Verdict] = []
        current = question
        seen = {question.name}
        for _ in range(self.limits.max_cname_chain + 1):
            cached = self._from_cache(current, depth)
            if cached is None and self.cache_only:
                return self._referral_from_cache(current, chain)
            if cached is not None:
                result: Classified | Failure = cached
                if (validate and cached.security is None
                        and cached.kind in _VALIDATED_KINDS):
                    hint = self.cache.closest_delegation(current.name)
                    result = yield from self._validated(
                        current, cached, hint.zone if hint else names.ROOT, depth)
                    self._store_verdict(current, result)
            else:
                result = yield from self._iterate(current, depth, validate)
                if isinstance(result, Classified):  # fresh data, as the cache will keep it
                    result = replace(result, answer=self._clamped(result.answer))
            if isinstance(result, Failure):
                self.cache.store_failure(question, result)
                return _servfail(result, chain)
            if validate and result.security is Security.BOGUS:
                bogus = self._bogus_failure(current, result)
                assert self._dnssec is not None
                self.cache.store_failure(question, bogus, self._dnssec.bogus_ttl_s)
                return _servfail(bogus, chain)
            if validate and result.security is not None:
                verdicts.append(result.verdict or Verdict(result.security, None, ""))
            # Ordered, linear deduplication: a hostile RRset of thousands stays cheap.
            chain = list(dict.fromkeys((*chain, *result.answer)))
            signatures = list(dict.fromkeys((*signatures, *result.signatures)))
            denial = list(dict.fromkeys((*denial, *result.denial)))
            security = worst(verdicts, "").security if validate and verdicts else None
            if result.kind is ResponseKind.ANSWER:
                return Outcome(rcode=Rcode.NOERROR, answer=tuple(chain),
                               additional=self._addresses_for_ns(chain, depth),
                               answer_as_cached=self._as_cached(chain), security=security,
                               signatures=tuple(signatures), denial=tuple(denial))
            if result.kind is ResponseKind.YXDOMAIN:
                return Outcome(rcode=Rcode.YXDOMAIN, answer=tuple(chain))
            if result.kind in (ResponseKind.NXDOMAIN, ResponseKind.NODATA):
                rcode = Rcode.NXDOMAIN if result.kind is ResponseKind.NXDOMAIN else Rcode.NOERROR
                # RFC 2308 §3: the SOA of a negative answer lives for min(TTL, MINIMUM).
                soa = result.soa
                authority: tuple[Record, ...] = ()
                if soa is not None:
                    settings = self.cache.settings
                    ttl = min(soa.ttl, soa.soa_minimum, settings.max_negative_ttl_s)
                    if cached is None:  # fresh: as the cache keeps it (cache-min-negative-ttl)
                        ttl = max(ttl, settings.min_negative_ttl_s)
                    authority = (soa.with_ttl(ttl),)
                    over_soa = [rr for rr in signatures
                                if rr.name == soa.name and rr.rtype == RRType.RRSIG
                                and covered_type(rr) == RRType.SOA]
                    # The SOA's RRSIGs go with it into the authority section, same TTL.
                    denial = [rr.with_ttl(ttl) for rr in over_soa] + [
                        rr for rr in denial if rr not in over_soa]
                    signatures = [rr for rr in signatures if rr not in over_soa]
                return Outcome(rcode=rcode, answer=tuple(chain), authority=authority,
                               security=security, signatures=tuple(signatures),
                               denial=tuple(denial))
            assert result.target is not None
            if result.target in seen:
                loop = Failure(FailureKind.CNAME_LOOP, f"CNAME loop at {result.target}")
                self.cache.store_failure(question, loop)
                return _servfail(loop, chain)
            seen.add(result.target)
            if self._observer is not None:
                self._emit(CnameFollowed(
                    depth=depth, at_s=self._at_s(), from_name=current.name, to_name=result.target))
            current = Question(result.target, question.rtype, question.rclass)
        return _servfail(Failure(FailureKind.WORK_LIMIT,
                                 f"CNAME chain longer than {self.limits.max_cname_chain}"), chain)

    def _as_cached(self, chain: list[Record]) -> tuple[Record, ...] | None:
        """`chain` with the TTLs the cache keeps, if any is shorter (None: all the same)."""
        kept = []
        for rr in chain:
            info = self.cache.rrset_info(rr.name, rr.rtype, rr.rclass)
            clamped = info is not None and info.original_ttl < rr.ttl
            kept.append(rr.with_ttl(info.ttl_left) if clamped and info else rr)
        return tuple(kept) if kept != chain else None

    def _addresses_for_ns(self, chain: list[Record], depth: int) -> tuple[Record, ...]:
        """For an NS answer, the cached addresses of those servers: what a client asking
        for NS will ask next (RFC 1034 §3.7 additional section processing)."""
        if depth > 0:
            return ()
        return tuple(rr for ns in chain if ns.rtype == RRType.NS
                     for rtype in (RRType.A, RRType.AAAA)
                     for rr in self.cache.rrset(ns.target, rtype) or ())

    def _referral_from_cache(self, question: Question, chain: list[Record]) -> Outcome:
        """What the cache knows of the way to `question`: the closest cached zone cut."""
        cut = self.cache.closest_delegation(question.name)
        if cut is None:
            return Outcome(rcode=Rcode.NOERROR, answer=tuple(chain))
        ns_set = self.cache.rrset(cut.zone, RRType.NS) or ()
        glue = tuple(rr for ns in cut.servers for rtype in (RRType.A, RRType.AAAA)
                     for rr in self.cache.rrset(ns.name, rtype) or ())
        return Outcome(rcode=Rcode.NOERROR, answer=tuple(chain), authority=ns_set,
                       additional=glue)

    def _clamped(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        """Answer TTLs as the cache would keep them (cache-min-ttl, cache-max-ttl), so the
        first answer and the cached ones agree."""
        low, high = self.cache.settings.min_ttl_s, self.cache.settings.max_ttl_s
        return tuple(rr if low <= rr.ttl <= high else rr.with_ttl(max(low, min(rr.ttl, high)))
                     for rr in records)

    def _from_cache(self, question: Question, depth: int) -> Classified | None:
        """A cached answer, CNAME or negative answer for `question`, if live."""
        # RFC 2181 §5.4.1: glue and referral NS sets may steer our own lookups but are
        # never given to a client as an answer.
        min_rank = Rank.ANSWER if depth == 0 else Rank.ADDITIONAL
        if self._dnssec is not None:
            return self._signed_from_cache(question, depth, min_rank)
        rrset = self.cache.rrset(question.name, question.rtype, question.rclass, min_rank=min_rank)
        if rrset:
            self._cache_event(question, depth, "answer", rrset[0].ttl)
            return Classified(kind=ResponseKind.ANSWER, answer=rrset)
        if question.rtype != RRType.CNAME:
            cname = self.cache.rrset(question.name, RRType.CNAME, question.rclass,
                                     min_rank=min_rank)
            if cname:
                self._cache_event(question, depth, "cname", cname[0].ttl)
                return Classified(kind=ResponseKind.CNAME, answer=cname, target=cname[0].target)
        # An NXDOMAIN above a configured zone says nothing of it: the operator's zone wins.
        within = self._configured_zone(question.name) if self.state.configured_zones else "."
        negative = self.cache.negative(question, within=within)
        if negative is not None:
            nxdomain = negative.rcode == Rcode.NXDOMAIN
            kind = ResponseKind.NXDOMAIN if nxdomain else ResponseKind.NODATA
            ttl = negative.soa.ttl if negative.soa else 0
            self._cache_event(question, depth, kind.value, ttl)
            return Classified(kind=kind, soa=negative.soa)
        return None

    def _signed_from_cache(self, question: Question, depth: int,
                           min_rank: Rank) -> Classified | None:
        """`_from_cache` with the RRSIGs, NSEC proofs and security kept in the cache."""
        found = self.cache.signed_rrset(question.name, question.rtype, question.rclass,
                                        min_rank=min_rank)
        if found is not None:
            self._cache_event(question, depth, "answer", found.records[0].ttl)
            return Classified(kind=ResponseKind.ANSWER, answer=found.records,
                              signatures=found.rrsigs, security=found.security)
        if question.rtype != RRType.CNAME:
            cname = self.cache.signed_rrset(question.name, RRType.CNAME, question.rclass,
                                            min_rank=min_rank)
            if cname is not None:
                self._cache_event(question, depth, "cname", cname.records[0].ttl)
                return Classified(kind=ResponseKind.CNAME, answer=cname.records,
                                  target=cname.records[0].target, signatures=cname.rrsigs,
                                  security=cname.security)
        negative = self.cache.negative(question)
        if negative is None:
            return None
        nxdomain = negative.rcode == Rcode.NXDOMAIN
        kind = ResponseKind.NXDOMAIN if nxdomain else ResponseKind.NODATA
        self._cache_event(question, depth, kind.value, negative.soa.ttl if negative.soa else 0)
        soa_sigs = tuple(rr for rr in negative.proof if rr.rtype == RRType.RRSIG
                         and covered_type(rr) == RRType.SOA)
        return Classified(kind=kind, soa=negative.soa, signatures=soa_sigs,
                          denial=tuple(rr for rr in negative.proof if rr not in soa_sigs),
                          security=negative.security)

    def _cache_event(self, question: Question, depth: int, what: str, ttl: int) -> None:
        if self._observer is not None:
            self._emit(CacheAnswered(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), what=what, ttl=ttl))

    def _iterate(
        self, question: Question, depth: int, validate: bool = False
    ) -> Generator[SendQuery, Reply, Classified | Failure]:
        """Ask the closest zone cut and follow referrals down (RFC 1034 §5.3.3 step 2-4)."""
        is_ds = question.rtype == RRType.DS and question.name != names.ROOT
        # RFC 4035 §3.1.4.1: a DS record lives on the parent side of the zone cut.
        cut = yield from self._start_cut(
            names.parent(question.name) if is_ds else question.name, depth
        )
        relocated = False
        if is_ds and cut.zone != names.parent(question.name):
            # Only the parent's own servers can tell; find them first (Unbound's DS locate).
            relocated = True
            parent_cut = yield from self._delegation_for(names.parent(question.name), depth)
            if parent_cut is not None and names.is_subdomain(parent_cut.zone, cut.zone):
                cut = parent_cut
        if self._observer is not None:
            self._emit(ZoneCutChosen(
                depth=depth, at_s=self._at_s(), zone=cut.zone, source=cut.source,
                nameservers=tuple(cut.names())))
        qmin = Minimiser(
            enabled=self.settings.qname_minimisation and not is_ds,
            qtype=self.settings.qname_minimisation_qtype,
        )
        referrals = 0
        #: Servers whose replies were bogus, not asked again (RFC 4035 §5.5), and the last
        #: bogus result, the answer if no other server does better.
        bogus_servers: set[str] = set()
        bogus: Classified | None = None
        for _ in range(self.limits.max_referrals + self.limits.max_minimised_queries + 1):
            asked = qmin.question_for(question, cut)
            while asked != question and self._exists_without_cut(asked):
                qmin.deeper()  # the cache already knows this label: no need to ask again
                asked = qmin.question_for(question, cut)
            result = yield from self._ask_zone(cut, asked, depth, bogus_servers)
            if isinstance(result, Failure) and bogus is not None:
                return bogus
            if isinstance(result, Failure) and asked != question:
                qmin.stop()  # RFC 9156 §3: broken servers; ask the full name instead
                continue
            if isinstance(result, Failure):
                fallback = self._parent_side(cut)
                if fallback is None:
                    return result
                cut = fallback
                if self._observer is not None:
                    self._emit(ZoneCutChosen(
                        depth=depth, at_s=self._at_s(), zone=cut.zone, source=cut.source,
                        nameservers=tuple(cut.names())))
                continue
            reply, classified = result
            if is_ds and from_child_side(question, classified) and not relocated:
                # The server answered from the child zone; find the parent's servers.
                relocated = True
                parent_cut = yield from self._delegation_for(names.parent(question.name), depth)
                if parent_cut is not None and parent_cut.zone != cut.zone:
                    cut = parent_cut
                    if self._observer is not None:
                        self._emit(ZoneCutChosen(
                            depth=depth, at_s=self._at_s(), zone=cut.zone, source=cut.source,
                            nameservers=tuple(cut.names())))
                    continue
            if is_ds and classified.kind is ResponseKind.REFERRAL and (
                classified.delegation is not None and classified.delegation.zone == question.name
            ):
                # The parent refers us to the child: it holds no DS there (insecure
                # delegation); a signed parent sends the NSEC proof with the referral.
                return Classified(kind=ResponseKind.NODATA, denial=classified.denial)
            if validate and asked == question and classified.kind in _VALIDATED_KINDS:
                classified = yield from self._validated(question, classified, cut.zone, depth)
                if classified.security is Security.BOGUS:
                    bogus = classified
                    assert self._dnssec is not None
                    if len(bogus_servers) < self._dnssec.max_bogus_retries:
                        bogus_servers.add(self._answered_by)
                        continue  # RFC 4035 §5.5: another server of the zone may do better
                    return bogus
            admit(self.cache, reply, classified, cut, asked)
            if asked != question and classified.kind is not ResponseKind.REFERRAL:
                found = zone_in_answer(asked, classified, reply)
                if found is not None:  # the minimised name is a zone apex
                    glue = glue_answering(question, found, reply)
                    if glue and depth > 0:
                        return Classified(kind=ResponseKind.ANSWER, answer=tuple(glue))
                    cut = found
                    qmin.new_cut()
                elif classified.kind in (ResponseKind.NODATA, ResponseKind.ANSWER):
                    qmin.deeper()  # an empty non-terminal or a name without a cut: go on
                else:
                    qmin.stop()  # NXDOMAIN or CNAME for a part of the name: ask in full
                continue
            if classified.kind is not ResponseKind.REFERRAL:
                return classified
            assert classified.delegation is not None
            referrals += 1
            if referrals > self.limits.max_referrals:
                break
            qmin.new_cut()
            previous = cut.zone
            cut = self._with_known_addresses(classified.delegation)
            if self._observer is not None:
                self._emit(ReferralFollowed(
                    depth=depth, at_s=self._at_s(), from_zone=previous, to_zone=cut.zone,
                    ttl=cut.ttl, nameservers=tuple(f"{ns.name} {','.join(ns.addresses)}".strip()
                                                   for ns in cut.servers)))
            glue = glue_answering(question, classified.delegation, reply)
            if glue and depth > 0:
                # Looking up a name server's address and the referral carries it as glue.
                return Classified(kind=ResponseKind.ANSWER, answer=tuple(glue))
        return Failure(FailureKind.WORK_LIMIT, f"more than {self.limits.max_referrals} referrals")

    # -- DNSSEC validation (RFC 4035 §5) -------------------------------------------

    def _wall_now(self) -> int:
        """Epoch seconds now: the start's wall time plus the monotonic time since."""
        return int(self.wall_time + (self.now - self.started))

    def _validated(
        self, question: Question, classified: Classified, zone_hint: str, depth: int
    ) -> Generator[SendQuery, Reply, Classified]:
        """`classified` with its security status: the trust of each zone that signed
        it fetched (or taken from the trust cache), then its signatures and proofs checked."""
        assert self._dnssec is not None
        trusts: dict[str, ZoneTrust] = {}
        for zone in zones_needed(question.name, classified, zone_hint):
            trusts[zone] = yield from self._zone_trust(zone, depth)
        verdict = check_data(question.name, question.rtype, classified,
                             lambda zone: trusts[zone], zone_hint, self._wall_now(),
                             iterations_limit=self._dnssec.nsec3_iterations_limit)
        if self._observer is not None:
            self._emit(DataValidated(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), zone=verdict.zone,
                security=verdict.security.value,
                ede=int(verdict.ede_code) if verdict.ede_code is not None else None,
                detail=verdict.detail))
        return replace(classified, security=verdict.security, verdict=verdict)

    def _store_verdict(self, question: Question, validated: Classified) -> None:
        """Keep the status of cached data just validated (bogus data leaves the cache)."""
        if validated.security is Security.BOGUS:
            self.cache.flush(question.name, rtype=question.rtype)
            return
        for rrset in rrsets(validated.answer):
            rank = self.cache.rank_of(rrset[0].name, rrset[0].rtype, rrset[0].rclass)
            if rank is not None:
                sigs = tuple(rr for rr in validated.signatures if rr.name == rrset[0].name
                             and covered_type(rr) == rrset[0].rtype)
                self.cache.store_rrset(rrset, rank, security=validated.security, rrsigs=sigs)

    def _bogus_failure(self, question: Question, bogus: Classified) -> Failure:
        """The SERVFAIL of bogus data, logged with the zone and the reason (RFC 4035 §5.5)."""
        verdict = bogus.verdict
        assert verdict is not None
        reason = f"DNSSEC bogus in zone {verdict.zone}: {verdict.detail}"
        log.warning("validation failed for %s %s: %s", question.name,
                    type_name(question.rtype), reason)
        return Failure(FailureKind.DNSSEC_BOGUS, reason,
                       verdict.ede_code or ExtendedError.DNSSEC_BOGUS)

    def _zone_trust(self, zone: str, depth: int) -> Generator[SendQuery, Reply, ZoneTrust]:
        """The trust of `zone` (RFC 4035 §5.2): from the trust anchor down, each zone's
        DS from its parent and DNSKEY from itself, fetched by sub-resolutions."""
        settings = self._dnssec
        assert settings is not None
        cached = self.state.trust.get(zone, self.now)
        if cached is not None:
            return cached
        anchors = settings.anchors
        anchor = anchors.closest_to(zone)
        if anchor is None:
            return ZoneTrust(zone, Verdict.insecure(None, zone, "no trust anchor above it"),
                             (), (), settings.max_trust_ttl_s)
        if zone in self._trust_active:  # a chain that comes back to itself
            return ZoneTrust(zone, Verdict.bogus(DnssecFailure.DNSSEC_BOGUS, zone,
                                                 "chain of trust loops"), (), (), 0)
        self._trust_active.add(zone)
        try:
            trust = yield from self._fetch_trust(zone, anchor, depth, settings)
        finally:
            self._trust_active.discard(zone)
        self.state.trust.put(trust, self.now)
        if self._observer is not None and trust.steps:
            step = trust.steps[-1]
            self._emit(ChainStepChecked(
                depth=depth + 1, at_s=self._at_s(), zone=step.zone,
                ds_key_tag=step.ds_key_tag, ds_digest_type=step.ds_digest_type,
                dnskey_tag=step.dnskey_tag, algorithm=step.algorithm,
                security=step.verdict.security.value,
                ede=int(step.verdict.ede_code) if step.verdict.ede_code is not None else None,
                detail=step.verdict.detail))
        if trust.security is Security.BOGUS:
            log.warning("DNSSEC: the keys of %s are bogus: %s", zone, trust.verdict.detail)
        return trust

    def _fetch_trust(self, zone: str, anchor: str, depth: int,
                     settings: ValidationSettings) -> Generator[SendQuery, Reply, ZoneTrust]:
        now = self._wall_now()
        ttls = {"bogus_ttl_s": settings.bogus_ttl_s, "max_ttl_s": settings.max_trust_ttl_s}
        if zone == anchor:
            keys = yield from self._resolve(Question(zone, RRType.DNSKEY), depth + 1,
                                            f"DNSKEY of {zone} (trust anchor)")
            return anchored_trust(zone, _of_type(keys.answer, zone, RRType.DNSKEY),
                                  keys.signatures, settings.anchors.ds_for(zone),
                                  settings.anchors.dnskeys_for(zone), now, **ttls)
        ds_outcome = yield from self._resolve(Question(zone, RRType.DS), depth + 1,
                                              f"DS of {zone}")
        ds = _of_type(ds_outcome.answer, zone, RRType.DS)
        parent_zone = self._parent_zone(zone, anchor, ds_outcome)
        parent = yield from self._zone_trust(parent_zone, depth)
        if not parent.verdict.is_secure:
            return ZoneTrust(zone, parent.verdict, (), parent.steps, parent.ttl_s)
        if ds_outcome.rcode == Rcode.SERVFAIL:
            return ZoneTrust(zone, Verdict.bogus(DnssecFailure.DNSKEY_MISSING, zone,
                                                 f"no DS RRset for {zone}: {ds_outcome.reason}"),
                             (), parent.steps, settings.bogus_ttl_s)
        dnskeys: tuple[Record, ...] = ()
        dnskey_sigs: tuple[Record, ...] = ()
        if ds:
            keys = yield from self._resolve(Question(zone, RRType.DNSKEY), depth + 1,
                                            f"DNSKEY of {zone}")
            dnskeys = tuple(_of_type(keys.answer, zone, RRType.DNSKEY))
            dnskey_sigs = keys.signatures
        return zone_trust_below(
            parent, zone, ds, [rr for rr in ds_outcome.signatures if rr.name == zone],
            ds_outcome.denial, dnskeys, dnskey_sigs, now,
            iterations_limit=settings.nsec3_iterations_limit, **ttls)

    def _parent_zone(self, zone: str, anchor: str, ds_outcome: Outcome) -> str:
        """The zone above `zone` that answered for its DS: the DS's signer, else the SOA
        of the negative answer, else the closest cut above it, bounded by the anchor."""
        candidates = [signer_of(ds_outcome.signatures, zone)]
        candidates += [rr.name for rr in ds_outcome.authority if rr.rtype == RRType.SOA]
        cut = self.cache.closest_delegation(names.parent(zone))
        candidates.append(cut.zone if cut is not None else None)
        for candidate in candidates:
            if (candidate is not None and candidate != zone
                    and names.is_subdomain(zone, candidate)
                    and names.is_subdomain(candidate, anchor)):
                return candidate
        return anchor

    def _exists_without_cut(self, asked: Question) -> bool:
        """The cache shows data or a NODATA for a minimised name: it exists, and (as the
        cut in use is the closest cached one) it is no zone cut we know of."""
        if asked.rtype != RRType.NS and self.cache.rrset(asked.name, asked.rtype, asked.rclass):
            return True  # (an NS set there would be a cut, not a mere name)
        negative = self.cache.negative(asked)
        return negative is not None and negative.rcode == Rcode.NOERROR

    def _delegation_for(
        self, zone: str, depth: int
    ) -> Generator[SendQuery, Reply, Delegation | None]:
        """The servers of the zone that contains `zone` (found by asking for its NS set)."""
        key = (zone, int(RRType.NS))
        if key in self._active:
            return None
        self._active.add(key)
        try:
            yield from self._resolve(Question(zone, RRType.NS), depth + 1, f"servers of {zone}")
        finally:
            self._active.discard(key)
        return self.cache.closest_delegation(zone)

    def _start_cut(self, qname: str, depth: int) -> Generator[SendQuery, Reply, Delegation]:
        """The deepest zone cut we can start from: configured, cached or the root hints."""
        configured = self._configured_cut(qname)
        if configured.recursion_desired:
            return configured
        cached = self.cache.closest_delegation(qname)
        if cached is not None and self._may_replace(configured, cached):
            return cached
        if configured is self.state.root_hints and self.settings.prime_root:
            primed = yield from self._prime(depth)
            if primed is not None:
                cached = self.cache.closest_delegation(qname)
                if cached is not None:
                    return cached
        return configured

    def _parent_side(self, failed: Delegation) -> Delegation | None:
        """When a cached zone cut's servers all fail, ask the parent again (once per zone).

        The child's own NS set and addresses outrank the parent's referral in the cache
        (RFC 2181 §5.4.1), but they may be wrong where the parent is right; the parent's
        fresh referral is then the way back (Unbound's parent-side fallback).
        """
        if (failed.source is not CutSource.CACHE or failed.zone == "."
                or failed.zone in self._fell_back):
            return None
        self._fell_back.add(failed.zone)
        above = names.parent(failed.zone)
        configured = self._configured_cut(above)
        if configured.recursion_desired:
            return None
        cached = self.cache.closest_delegation(above)
        if cached is not None and self._may_replace(configured, cached):
            return replace(cached, source=CutSource.PARENT_SIDE_FALLBACK)
        return replace(configured, source=CutSource.PARENT_SIDE_FALLBACK)

    def _may_replace(self, configured: Delegation, cached: Delegation) -> bool:
        """Whether a cached cut is closer than the configured one (or the root hints).

        A stub zone is where its queries go (Unbound stub-zone, stub-prime: no): the NS set
        its servers state for the zone itself never replaces the configured addresses; only
        delegations below it, learnt from those servers, are followed.
        """
        if configured is self.state.root_hints:
            return True
        return cached.zone != configured.zone and names.is_subdomain(cached.zone,
                                                                      configured.zone)

    def _configured_zone(self, qname: str) -> str:
        """The closest configured (stub or forward) zone at or above `qname`, else the root."""
        return next((zone for zone in names.ancestors(qname)
                     if zone in self.state.configured_zones), names.ROOT)

    def _configured_cut(self, qname: str) -> Delegation:
        for zone in names.ancestors(qname):
            found = self.state.configured_zones.get(zone)
            if found is not None:
                return found
        return self.state.root_hints

    def _prime(self, depth: int) -> Generator[SendQuery, Reply, Delegation | None]:
        """Ask a root server for the root NS set and cache it (RFC 8109 §3)."""
        question = Question(".", RRType.NS)
        if (".", RRType.NS) in self._active:
            return None
        self._active.add((".", RRType.NS))
        try:
            if self._observer is not None:
                self._emit(ResolutionStarted(
                    depth=depth + 1, at_s=self._at_s(), qname=".", qtype="NS",
                    purpose="root priming"))
            result = yield from self._ask_zone(self.state.root_hints, question, depth + 1)
        finally:
            self._active.discard((".", RRType.NS))
        if isinstance(result, Failure):
            return None
        reply, classified = result
        if classified.kind is not ResponseKind.ANSWER:
            return None
        admit(self.cache, reply, classified, self.state.root_hints, question)
        return self.cache.closest_delegation(".")

    def _with_known_addresses(self, delegation: Delegation) -> Delegation:
        """Fill in addresses the cache already knows for glueless name servers."""
        servers = []
        for ns in delegation.servers:
            if ns.addresses:
                servers.append(ns)
                continue
            known = tuple(
                rr.address
                for rtype in (RRType.A, RRType.AAAA)
                for rr in self.cache.rrset(ns.name, rtype) or ()
            )
            servers.append(NameServer(ns.name, known))
        return replace(delegation, servers=tuple(servers))

    # -- choosing and asking servers --------------------------------------------

    def _ask_zone(
        self, cut: Delegation, question: Question, depth: int,
        excluded: set[str] | frozenset[str] = frozenset(),
    ) -> Generator[SendQuery, Reply, tuple[ScrubbedReply, Classified] | Failure]:
        """Get a usable reply from one of the zone's servers, trying the next on failure;
        `excluded` servers (their data was bogus) are not asked. `_answered_by` names the
        server whose reply is returned."""
        attempts = _Attempts(servers=list(cut.servers))
        for address in excluded:
            attempts.tries[address] = self._max_tries(cut)
        sends = 0
        last_problem = f"no server of {cut.zone} could be reached"
        last_resort: tuple[ScrubbedReply, Classified] | None = None
        while True:
            candidates = self._candidates(cut, attempts, depth)
            if not candidates:
                found = yield from self._look_up_next_server(cut, attempts, depth)
                if isinstance(found, Failure):
                    if last_resort is not None:
                        return last_resort  # every server recursion-lame: take what we have
                    return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                                   f"{last_problem}; {found.reason}")
                continue
            if sends >= self.limits.max_sends_per_name:
                return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                               f"{sends} queries to {cut.zone} without an answer")
            fewest = min(attempts.tries.get(c.address, 0) for c in candidates)
            fresh = [c for c in candidates if attempts.tries.get(c.address, 0) == fewest]
            chosen = self.selection.choose(fresh, zone=cut.zone, now=self.now, rng=self.rng)
            attempts.tries[chosen.address] = attempts.tries.get(chosen.address, 0) + 1
            sends += 1
            result = yield from self._query_server(cut, chosen, question, depth)
            if isinstance(result, Failure):
                last_problem = result.reason
                if isinstance(result, _Unreachable):
                    attempts.tries[chosen.address] = self._max_tries(cut)
                continue
            reply, classified = result
            if classified.kind is ResponseKind.LAME and last_resort is None:
                # Recursion-lame and empty replies are set aside, used only if no
                # server of the zone does better (as Unbound does).
                if classified.reason == EMPTY_REPLY:
                    last_resort = (reply, Classified(kind=ResponseKind.NODATA))
                elif reply.ra:
                    relaxed = classify(question, reply, accept_recursive=True,
                                       dnssec=self._dnssec is not None)
                    if relaxed.kind not in (ResponseKind.LAME, ResponseKind.SERVER_ERROR):
                        last_resort = (reply, relaxed)
            if classified.kind in (ResponseKind.LAME, ResponseKind.SERVER_ERROR):
                # RFC 1034 §4.2.2 / RFC 2308 §7.1: try the next server; remember the lameness.
                self.selection.record_lame(chosen.address, cut.zone, self.now)
                attempts.tries[chosen.address] = self._max_tries(cut)
                last_problem = f"{chosen.ns_name} ({chosen.address}) {classified.reason}"
                continue
            self._answered_by = chosen.address
            return reply, classified

    def _candidates(self, cut: Delegation, attempts: _Attempts, depth: int) -> list[Candidate]:
        found: list[Candidate] = []
        for ns in attempts.servers:
            for address in ns.addresses:
                if attempts.tries.get(address, 0) >= self._max_tries(cut):
                    continue
                reason = self._unusable(address)
                held = self.selection.unreachable_for(address, self.now)
                if held and not reason:
                    reason = f"unreachable a moment ago (asked again in {held:.1f} s)"
                if reason:
                    if address not in attempts.tries:
                        attempts.tries[address] = self._max_tries(cut)
                        if self._observer is not None:
                            self._emit(ServerSkipped(
                                depth=depth, at_s=self._at_s(), server_name=ns.name,
                                address=address, reason=reason))
                    continue
                found.append(Candidate(ns.name, address))
        return found

    def _max_tries(self, cut: Delegation) -> int:
        # Forwarders are few and recurse for us: give each more tries (Unbound
        # outbound-msg-retry 5) within the same total budget.
        if cut.recursion_desired:
            return self.limits.max_tries_per_forwarder
        return self.limits.max_tries_per_server

    def _unusable(self, spec: str) -> str:
        server = server_from_spec(spec, self.settings.upstream_port)
        address = server.ip
        if is_ipv6(address) and not self.settings.do_ip6:
            return "IPv6 disabled (do-ip6: no)"
        if not is_ipv6(address) and not self.settings.do_ip4:
            return "IPv4 disabled (do-ip4: no)"
        if self._is_own_address(spec, server):
            return "one of our own addresses"
        if is_never_a_server(address):
            return "not a unicast address (unspecified, multicast or broadcast)"
        if (not self._allow_loopback and spec not in self._configured
                and is_loopback_or_unspecified(address)):
            return "loopback or unspecified address (do-not-query-localhost)"
        return ""

    def _is_own_address(self, spec: str, server: ServerAddress) -> bool:
        """A server we must not ask because it is us.

        `never_query` holds our listen IPs (bare) and endpoints ("IP@PORT"). The same
        address and port is always a loop. A server learnt while iterating (glue, an
        NS address) is never one of our IPs on any port: a delegation pointing at us is
        an attack or a mistake. Only a configured upstream may sit on another port of
        our IP (a local stubby or NSD beside us).
        """
        own = self.settings.never_query
        if spec in own or f"{server.ip}@{server.port}" in own:
            return True
        return server.ip in own and spec not in self._configured

    def _look_up_next_server(
        self, cut: Delegation, attempts: _Attempts, depth: int
    ) -> Generator[SendQuery, Reply, Failure | None]:
        """Resolve the address of one name server that came without glue."""
        if cut.recursion_desired:
            return Failure(FailureKind.NO_REACHABLE_AUTHORITY, "no forwarder answered")
        pending = [ns for ns in attempts.servers if ns.name not in attempts.looked_up
                   and not any(not self._unusable(a) for a in ns.addresses)]
        allowed = self.limits.max_ns_names_per_delegation - len(attempts.looked_up)
        pending = pending[: max(0, allowed)]
        if not pending:
            return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                           f"no more servers to try for {cut.zone}")
        if depth + 1 > self.limits.max_dependency_depth:
            deepest = self.limits.max_dependency_depth
            return Failure(FailureKind.WORK_LIMIT,
                           f"name-server lookups nested deeper than {deepest}")
        # Prefer names outside the zone: names inside need glue that was not given.
        pending.sort(key=lambda ns: names.is_subdomain(ns.name, cut.zone))
        ns = pending[0]
        attempts.looked_up.add(ns.name)
        addresses = yield from self._addresses_of(ns.name, depth + 1)
        if not addresses:
            attempts.failed_lookups += 1
            if attempts.failed_lookups > self.limits.max_failed_ns_lookups:
                return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                               f"{attempts.failed_lookups} name-server lookups failed")
            return None
        index = attempts.servers.index(ns)
        attempts.servers[index] = NameServer(ns.name, (*ns.addresses, *addresses))
        return None

    def _addresses_of(self, ns_name: str, depth: int) -> Generator[SendQuery, Reply, list[str]]:
        """IPv4, then IPv6 addresses of a name server (a nested resolution)."""
        found: list[str] = []
        types = [RRType.A] if self.settings.do_ip4 else []
        if self.settings.do_ip6:
            types.append(RRType.AAAA)
        for rtype in types:
            key = (ns_name, int(rtype))
            if key in self._active:  # a dependency cycle (TsuNAME): give up on this name
                continue
            self._active.add(key)
            try:
                outcome = yield from self._resolve(
                    Question(ns_name, rtype), depth, f"address of name server {ns_name}"
                )
            finally:
                self._active.discard(key)
            found.extend(rr.address for rr in outcome.answer if rr.rtype == rtype)
            if found:
                break
        return found

    def _query_server(
        self, cut: Delegation, server: Candidate, question: Question, depth: int
    ) -> Generator[SendQuery, Reply, tuple[ScrubbedReply, Classified] | Failure]:
        """One server: UDP first, TCP when truncated, without EDNS after a FORMERR.

        The reply pipeline starts here: the decoded reply is scrubbed at once and only
        the scrubbed reply travels on (classify, then admission).
        """
        transport = Transport.TCP if self.settings.tcp_upstream else Transport.UDP
        use_edns = True
        use_caps = self.settings.use_caps_for_id and not cut.recursion_desired
        while True:
            reply = yield from self._exchange(
                cut, server, question, depth, transport, _QueryStyle(use_edns, use_caps)
            )
            if isinstance(reply, _CaseNotEchoed) and use_caps:
                use_caps = False  # a server that does not echo 0x20 case: ask it plainly
                continue
            if isinstance(reply, Failure):
                return reply
            scrubbed = scrub(question, reply, cut.zone, forwarding=cut.recursion_desired,
                             harden_glue=self.settings.harden_glue)
            classified = classify(question, scrubbed, forwarding=cut.recursion_desired,
                                  dnssec=self._dnssec is not None)
            if self._observer is not None:
                self._emit(ReplyReceived(
                    depth=depth, at_s=self._at_s(), address=server.address,
                    rtt_ms=round((self.now - self._sent_at) * 1000, 3),
                    rcode=rcode_name(reply.rcode), aa=reply.aa, tc=reply.tc,
                    answer_count=len(reply.answer), authority_count=len(reply.authority),
                    additional_count=len(reply.additional), kind=classified.kind.value,
                    detail=classified.reason))
            if classified.kind is ResponseKind.TRUNCATED and transport is Transport.UDP:
                transport = Transport.TCP  # RFC 7766 §5: retry the same server over TCP
                continue
            if classified.kind is ResponseKind.TRUNCATED:
                return scrubbed, replace(classified, kind=ResponseKind.SERVER_ERROR,
                                         reason="truncated over TCP")
            if reply.rcode == Rcode.FORMERR and reply.edns is None and use_edns:
                use_edns = False  # RFC 6891 §7: a server that does not know EDNS
                continue
            if scrubbed.dropped and self._observer is not None:
                self._emit(RecordsDropped(
                    depth=depth, at_s=self._at_s(),
                    records=tuple(d.describe() for d in scrubbed.dropped)))
            return scrubbed, classified

    def _exchange(
        self,
        cut: Delegation,
        server: Candidate,
        question: Question,
        depth: int,
        transport: Transport,
        style: _QueryStyle,
    ) -> Generator[SendQuery, Reply, Message | Failure]:
        """Send one query and check the reply belongs to it (RFC 5452 §9.1)."""
        self._check_budget()
        query_id = self.rng.randrange(0x10000)
        sent = question
        if style.caps:  # draft-vixie-dnsext-dns0x20: more bits an off-path forger must guess
            sent = Question(mixed_case(question.name, self.rng), question.rtype, question.rclass)
        wire = make_query(
            sent,
            query_id=query_id,
            recursion_desired=cut.recursion_desired,
            edns_udp_size=self.settings.edns_udp_size if style.edns else None,
            # RFC 4035 §4.1: a validating resolver sets DO to get RRSIG, NSEC and DS.
            dnssec_ok=self._dnssec is not None and style.edns,
        )
        rto = self.selection.timeout_for(server.address, first_s=self.limits.first_timeout_s,
                                         max_s=self.limits.max_timeout_s)
        if cut.recursion_desired:  # a forwarder may have to recurse first: no tighter than usual
            rto = max(rto, self.limits.first_timeout_s)
        # The back-off per retry lives in the server selection (RFC 6298 §5.5).
        timeout_s = min(
            rto,
            self.limits.max_timeout_s,
            max(0.05, self.limits.resolution_budget_s - (self.now - self.started)),
        )
        self._token += 1
        self.queries_sent += 1
        self._sent_at = self.now
        target = server_from_spec(server.address, self.settings.upstream_port)
        if self._observer is not None:
            self._emit(QuerySent(
                depth=depth, at_s=self._at_s(), zone=cut.zone, server_name=server.ns_name,
                address=target.ip, port=target.port, qname=question.name,
                qtype=type_name(question.rtype), recursion_desired=cut.recursion_desired,
                transport=transport.value, why=_why(cut, server, self.selection, self.now)))
        outcome = yield SendQuery(
            token=self._token,
            server=target,
            transport=transport,
            wire=wire,
            timeout_s=timeout_s,
        )
        if isinstance(outcome, UpstreamTimeout):
            self.selection.record_timeout(server.address, timeout_s, self.now)
            return self._failed(depth, server, f"timeout after {round(timeout_s * 1000)} ms")
        if isinstance(outcome, UpstreamError):
            self.selection.record_lame(server.address, cut.zone, self.now)
            if (is_ipv6(server.address)
                    and outcome.problem is TransportProblem.NETWORK_UNREACHABLE):
                self.selection.record_ipv6_unreachable(self.now)
            failed = self._failed(depth, server, f"transport error: {outcome}")
            if outcome.problem is TransportProblem.OTHER:
                return failed
            # Nobody listens there, or no route: asking again in a few ms changes nothing.
            self.selection.record_unreachable(server.address, self.now)
            return _Unreachable(failed.kind, failed.reason)
        try:
            reply = decode(outcome, max_records=self.limits.max_records_per_reply)
        except MalformedMessage as exc:
            return self._failed(depth, server, f"malformed reply: {exc.reason}")
        mismatch = reply_mismatch(reply, query_id, question)
        if mismatch:
            return self._failed(depth, server, f"reply does not match the query: {mismatch}")
        if style.caps and reply.question is not None:
            name_end = len(wire) - 4 - (11 if style.edns else 0)  # type, class, OPT after it
            if outcome[12:name_end] != wire[12:name_end]:
                if self._observer is not None:
                    self._emit(QueryFailed(
                        depth=depth, at_s=self._at_s(), address=server.address,
                        error="reply does not echo the 0x20 letter case"))
                return _CaseNotEchoed(FailureKind.NO_REACHABLE_AUTHORITY,
                                      f"{server.ns_name} ({server.address}) ignores 0x20 case")
        self.selection.record_rtt(server.address, self.now - self._sent_at)
        return reply

    def _failed(self, depth: int, server: Candidate, error: str) -> Failure:
        if self._observer is not None:
            self._emit(QueryFailed(
                depth=depth, at_s=self._at_s(), address=server.address, error=error))
        return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                       f"{server.ns_name} ({server.address}): {error}")

    def _check_budget(self) -> None:
        if self.queries_sent >= self.limits.max_upstream_queries:
            raise _OutOfBudget(Failure(
                FailureKind.WORK_LIMIT,
                f"more than {self.limits.max_upstream_queries} upstream queries"))
        if self.now - self.started >= self.limits.resolution_budget_s:
            raise _OutOfBudget(Failure(
                FailureKind.OUT_OF_TIME, f"no answer within {self.limits.resolution_budget_s:g} s"))

@dataclass(frozen=True, slots=True)
class _QueryStyle:
    edns: bool
    caps: bool


@dataclass(frozen=True, slots=True)
class _CaseNotEchoed(Failure):
    """The reply matched but for the letter case of the question (0x20)."""


@dataclass(frozen=True, slots=True)
class _Unreachable(Failure):
    """ICMP unreachable or a refused connection: the address is not tried again now."""


def _servfail(failure: Failure, chain: list[Record] | None = None) -> Outcome:
    return Outcome(rcode=Rcode.SERVFAIL, answer=tuple(chain or ()), reason=failure.reason,
                   failure=failure.kind, extended_error=failure.extended_error)


def _of_type(records: tuple[Record, ...], name: str, rtype: int) -> list[Record]:
    return [rr for rr in records if rr.name == name and rr.rtype == rtype]



def _why(cut: Delegation, server: Candidate, selection: ServerSelection, now: float) -> str:
    if cut.recursion_desired:
        return "forwarder"
    if cut.source is CutSource.ROOT_HINTS:
        return "root hints"
    return "chosen at random among the fastest known" if selection.score(
        server.address, cut.zone, now) < 0.376 else f"address from {cut.source}"



def _all_loopback(root_hints: Delegation) -> bool:
    """True when the root hints are themselves loopback: a lab or a test."""
    addresses = [server_from_spec(a, 53).ip for ns in root_hints.servers for a in ns.addresses]
    return bool(addresses) and all(is_loopback_or_unspecified(a) for a in addresses)
