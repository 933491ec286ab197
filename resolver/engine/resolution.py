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

The parts of one resolution are mixins over `resolver.engine.resolution_core`: the zone cut
to start from (`zone_cut_choice`), what the cache answers (`cache_answers`), the QNAME
minimisation steps of the walk (`minimised_walk`), asking a zone's servers
(`server_asking`) and the chain of trust (`trust_fetching`).
The pure pieces live apart: `resolver.engine.classify` says what a reply is,
`resolver.engine.iterate` what to ask next (QNAME minimisation, glue that answers a lookup,
the DS side of a cut), `resolver.engine.admission` what a reply may put into the cache.
Every budget of `Limits` is enforced here, so each driver (daemon, trace, replay) behaves the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import replace

from resolver.dns import names
from resolver.dns.wire import (
    Question,
    Rcode,
    Record,
    RRType,
    rcode_name,
    type_name,
)
from resolver.dnssec.security import Security, Verdict
from resolver.dnssec.verification_budget import VerificationBudget
from resolver.engine.admission import admit
from resolver.engine.cache_answers import CacheAnswering, servfail
from resolver.engine.classify import (
    Classified,
    ResponseKind,
)
from resolver.engine.delegation import (
    Delegation,
    is_loopback_or_unspecified,
)
from resolver.engine.events import (
    Action,
    CnameFollowed,
    Finished,
    Outcome,
    ReferralFollowed,
    ResolutionFinished,
    ResolutionStarted,
    SendQuery,
    TraceEvent,
    ZoneCutChosen,
)
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.iterate import (
    Minimiser,
    from_child_side,
    glue_answering,
)
from resolver.engine.minimised_walk import MinimisedWalk
from resolver.engine.network import (
    ServerAddress,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.engine.resolution_core import OutOfBudget, Reply, SharedState
from resolver.engine.scrub import ScrubbedReply
from resolver.engine.server_asking import ServerAsking
from resolver.engine.settings import EngineSettings, ValidationSettings
from resolver.engine.trust_fetching import TrustFetching
from resolver.engine.validation import (
    worst,
)
from resolver.engine.zone_cut_choice import ZoneCutChoice

__all__ = ["Reply", "Resolution", "SharedState"]

#: Results whose data validation judges; referrals and failures are not data.
_VALIDATED_KINDS = frozenset((ResponseKind.ANSWER, ResponseKind.CNAME, ResponseKind.NXDOMAIN,
                              ResponseKind.NODATA))


class Resolution(CacheAnswering, ZoneCutChoice, MinimisedWalk, ServerAsking, TrustFetching):
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
        #: Epoch seconds when the resolution started: DNSSEC signature times are checked
        #: against it plus the monotonic time elapsed since (the engine reads no clock).
        self.wall_time = wall_time
        #: DO=1 upstream and DNSSEC records kept apart, whenever validation is configured.
        self._dnssec: ValidationSettings | None = settings.validation
        #: CD=1 (RFC 4035 §3.2.2): the client checks for itself; the data is not judged.
        self._validating = self._dnssec is not None and not checking_disabled
        self._trust_active: set[str] = set()
        self._answered_by: ServerAddress | None = None
        self._distrusted: dict[str, set[ServerAddress]] = {}
        self._trust_sources: dict[
            str, tuple[ServerAddress | None, ServerAddress | None, str]] = {}
        self._refetched: set[tuple[str, int]] = set()
        self._verifications = VerificationBudget(
            self._dnssec.verification_limits if self._dnssec is not None else None)
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

    # -- the algorithm ------------------------------------------------------------

    def _main(self) -> Generator[SendQuery, Reply, Outcome]:
        try:
            outcome = yield from self._resolve(self.question, 0, "client question",
                                               validate=self._validating)
        except OutOfBudget as exc:
            outcome = servfail(exc.failure)
            self.cache.store_failure(self.question, exc.failure)
        return outcome.with_queries_sent(self.queries_sent)

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
        remembered = self._remembered_failure(question, depth)
        if remembered is not None:
            return remembered
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
            result = yield from self._looked_up(current, cached, depth, validate)
            if isinstance(result, Failure):
                self.cache.store_failure(question, result)
                return servfail(result, chain)
            if validate and result.security is Security.BOGUS:
                bogus = self._bogus_failure(current, result)
                assert self._dnssec is not None
                self.cache.store_failure(question, bogus, self._dnssec.bogus_ttl_s)
                return servfail(bogus)  # nothing of a chain that ends bogus is given out
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
                return self._negative_outcome(result, chain, signatures, denial, security,
                                              fresh=cached is None)
            assert result.target is not None
            if result.target in seen:
                loop = Failure(FailureKind.CNAME_LOOP, f"CNAME loop at {result.target}")
                self.cache.store_failure(question, loop)
                return servfail(loop, chain)
            seen.add(result.target)
            if self._observer is not None:
                self._emit(CnameFollowed(
                    depth=depth, at_s=self._at_s(), from_name=current.name, to_name=result.target))
            current = Question(result.target, question.rtype, question.rclass)
        return servfail(Failure(FailureKind.WORK_LIMIT,
                                 f"CNAME chain longer than {self.limits.max_cname_chain}"), chain)

    def _looked_up(
        self, question: Question, cached: Classified | None, depth: int, validate: bool
    ) -> Generator[SendQuery, Reply, Classified | Failure]:
        """What is known of `question`: the cache's answer `cached`, judged now if it was kept
        unjudged, or else what iterating finds (RFC 1034 §5.3.3 steps 1-2)."""
        if cached is None:
            result = yield from self._iterate(question, depth, validate)
            if isinstance(result, Classified):  # fresh data, as the cache will keep it
                clamped = self._clamped(result.answer)
                if clamped is not result.answer:
                    result = replace(result, answer=clamped)
            return result
        if validate and cached.security is None and cached.kind in _VALIDATED_KINDS:
            hint = self.cache.closest_delegation(question.name)
            validated = yield from self._validated(
                question, cached, hint.zone if hint else names.ROOT, depth)
            self._store_verdict(question, validated)
            return validated
        return cached

    def _iterate(
        self, question: Question, depth: int, validate: bool = False
    ) -> Generator[SendQuery, Reply, Classified | Failure]:
        """Ask the closest zone cut and follow referrals down (RFC 1034 §5.3.3 step 2-4)."""
        is_ds = question.rtype == RRType.DS and question.name != names.ROOT
        cut, relocated = yield from self._first_cut(question, depth, is_ds)
        self._announce_cut(cut, depth)
        qmin = self._minimiser(is_ds)
        referrals = 0
        #: Servers whose replies were bogus, not asked again (RFC 4035 §5.5), and the last
        #: bogus result, the answer if no other server does better.
        bogus_servers: set[ServerAddress] = set()
        bogus: Classified | None = None
        for _ in range(self.limits.max_referrals + self.limits.max_minimised_queries + 1):
            asked = self._next_question(qmin, question, cut)
            result = yield from self._ask_zone(cut, asked, depth, self._avoided(cut, bogus_servers))
            if isinstance(result, Failure):
                after = self._after_failure(question, asked, result, bogus, cut, qmin, depth)
                if not isinstance(after, Delegation):
                    return after
                cut = after
                continue
            reply, classified = result
            answered_by = self._answered_by  # validation's own fetches change _answered_by
            if is_ds and from_child_side(question, classified) and not relocated:
                relocated = True  # the server answered from the child zone: ask the parent's
                parent_cut = yield from self._parent_cut(question, cut, depth)
                if parent_cut is not None:
                    cut = parent_cut
                    continue
            if is_ds and _refers_to_child(question, classified):
                # An insecure delegation: no DS at the parent (a signed one sends NSEC proof).
                return Classified(kind=ResponseKind.NODATA, denial=classified.denial)
            if validate and asked == question and classified.kind in _VALIDATED_KINDS:
                classified = yield from self._validated(question, classified, cut.zone, depth)
                if classified.security is Security.BOGUS:
                    bogus = classified
                    if self._ask_another(answered_by, bogus_servers):
                        continue  # RFC 4035 §5.5: another server of the zone may do better
                    return bogus
            if validate and asked != question and classified.kind is ResponseKind.NXDOMAIN:
                proven = yield from self._proven_nxdomain(asked, classified, reply, cut, depth)
                if proven is not None:
                    return proven
            admit(self.cache, reply, classified, cut, asked)
            if asked != question and classified.kind is not ResponseKind.REFERRAL:
                step = self._after_minimised(question, asked, classified, reply, qmin, depth)
                if isinstance(step, Classified):
                    return step
                cut = step or cut
                continue
            if classified.kind is not ResponseKind.REFERRAL:
                return classified
            assert classified.delegation is not None
            referrals += 1
            if referrals > self.limits.max_referrals:
                break
            led_to = self._after_referral(question, classified.delegation, reply, cut, qmin, depth)
            if isinstance(led_to, Classified):
                return led_to
            cut = led_to
        return Failure(FailureKind.WORK_LIMIT, f"more than {self.limits.max_referrals} referrals")

    def _avoided(self, cut: Delegation, bogus_servers: set[ServerAddress]) -> set[ServerAddress]:
        """Servers of `cut` not to ask: those whose replies were bogus, and those whose DS or
        DNSKEY for the zone did not verify."""
        distrusted = self._distrusted.get(cut.zone)
        return bogus_servers | distrusted if distrusted else bogus_servers

    def _after_failure(
        self, question: Question, asked: Question, failure: Failure, bogus: Classified | None,
        cut: Delegation, qmin: Minimiser, depth: int,
    ) -> Classified | Failure | Delegation:
        """What it means for the walk that no server of `cut` gave a usable reply: the bogus
        result, if a server gave one before; the same cut, asked the full name, after a
        minimised question; the parent side of the cut, once; or else the failure."""
        if bogus is not None:
            return bogus
        if asked != question:
            qmin.stop()  # RFC 9156 §3: broken servers; ask the full name instead
            return cut
        fallback = self._parent_side(cut)
        if fallback is None:
            return failure
        self._announce_cut(fallback, depth)
        return fallback

    def _parent_cut(
        self, question: Question, cut: Delegation, depth: int
    ) -> Generator[SendQuery, Reply, Delegation | None]:
        """The servers of the zone above a DS question's name, when they are not those of
        `cut` (RFC 4035 §3.1.4.1: a DS record lives on the parent side)."""
        parent_cut = yield from self._delegation_for(names.parent(question.name), depth)
        if parent_cut is None or parent_cut.zone == cut.zone:
            return None
        self._announce_cut(parent_cut, depth)
        return parent_cut

    def _ask_another(
        self, answered_by: ServerAddress | None, bogus_servers: set[ServerAddress]
    ) -> bool:
        """Whether another server of the zone is to be asked after `answered_by` sent bogus
        data (RFC 4035 §5.5); if so, `answered_by` joins the servers not asked again."""
        assert self._dnssec is not None
        if answered_by is None or len(bogus_servers) >= self._dnssec.max_bogus_retries:
            return False
        bogus_servers.add(answered_by)
        return True

    def _proven_nxdomain(
        self, asked: Question, classified: Classified, reply: ScrubbedReply, cut: Delegation,
        depth: int,
    ) -> Generator[SendQuery, Reply, Classified | None]:
        """The NXDOMAIN for a minimised name, validated and admitted, when it is proven secure;
        None when it is not, and the full name is to be asked."""
        checked = yield from self._validated(asked, classified, cut.zone, depth)
        if checked.security is not Security.SECURE:
            return None
        # A proven NXDOMAIN for a part of the name: nothing exists below it (RFC 8020 §2,
        # RFC 9156 §2.3; Unbound with harden-below-nxdomain), so the full name is not asked.
        admit(self.cache, reply, checked, cut, asked)
        return checked

    def _after_referral(
        self, question: Question, delegation: Delegation, reply: ScrubbedReply,
        cut: Delegation, qmin: Minimiser, depth: int,
    ) -> Classified | Delegation:
        """The cut a referral from `cut` leads to (RFC 1034 §5.3.3 step 4), or the answer at
        once when a name server's address is looked up and the referral carries it as glue."""
        qmin.new_cut()
        followed = self._with_known_addresses(delegation)
        self._announce_referral(cut.zone, followed, depth)
        glue = glue_answering(question, delegation, reply)
        if glue and depth > 0:
            return Classified(kind=ResponseKind.ANSWER, answer=tuple(glue))
        return followed

    def _announce_referral(self, previous: str, cut: Delegation, depth: int) -> None:
        if self._observer is not None:
            self._emit(ReferralFollowed(
                depth=depth, at_s=self._at_s(), from_zone=previous, to_zone=cut.zone,
                ttl=cut.ttl,
                nameservers=tuple(f"{ns.name} {','.join(ns.address_texts())}".strip()
                                  for ns in cut.servers)))

    def _first_cut(
        self, question: Question, depth: int, is_ds: bool
    ) -> Generator[SendQuery, Reply, tuple[Delegation, bool]]:
        """The cut to start from, and whether a DS question was already moved to the
        parent's servers (RFC 4035 §3.1.4.1: a DS record lives on the parent side)."""
        cut = yield from self._start_cut(
            names.parent(question.name) if is_ds else question.name, depth
        )
        # A cut above the parent is fine: its referrals lead down to the parent, whose
        # servers answer the DS (a referral to the child itself shows there is none).
        return cut, False

    def _announce_cut(self, cut: Delegation, depth: int) -> None:
        if self._observer is not None:
            self._emit(ZoneCutChosen(
                depth=depth, at_s=self._at_s(), zone=cut.zone, source=cut.source,
                nameservers=tuple(cut.names())))

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


def _refers_to_child(question: Question, classified: Classified) -> bool:
    """The reply to a DS question is a referral to the zone of that very name: the parent
    holds no DS there (an insecure delegation)."""
    return classified.kind is ResponseKind.REFERRAL and (
        classified.delegation is not None and classified.delegation.zone == question.name
    )


def _all_loopback(root_hints: Delegation) -> bool:
    """True when the root hints are themselves loopback: a lab or a test."""
    addresses = [a for ns in root_hints.servers for a in ns.addresses]
    return bool(addresses) and all(is_loopback_or_unspecified(a) for a in addresses)
