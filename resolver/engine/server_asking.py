"""Asking a zone's servers: which one, how, and what its reply is worth.

`_ask_zone` chooses among the zone's servers (resolver.engine.selection), falls over to the
next on failure and looks up the addresses of name servers that came without glue;
`_query_server` retries over TCP when truncated and without EDNS after a FORMERR, then
runs the reply pipeline's first steps (scrub, classify); `_exchange` sends one query and
checks that the reply belongs to it (RFC 5452 §9.1). Every send counts against `Limits`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

from resolver.dns import names
from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import (
    MalformedMessage,
    Message,
    Question,
    Rcode,
    RRType,
    rcode_name,
    type_name,
)
from resolver.engine.classify import (
    EMPTY_REPLY,
    Classified,
    ResponseKind,
    classify,
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
    QueryFailed,
    QuerySent,
    RecordsDropped,
    ReplyReceived,
    SendQuery,
    ServerSkipped,
)
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.iterate import (
    mixed_case,
    reply_mismatch,
)
from resolver.engine.network import (
    ServerAddress,
    Transport,
    TransportProblem,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.engine.resolution_core import OutOfBudget, Reply, ResolutionCore
from resolver.engine.scrub import ScrubbedReply, scrub
from resolver.engine.selection import DOWN_AFTER_TIMEOUTS, Candidate, ServerSelection


@dataclass(slots=True)
class _Attempts:
    """Bookkeeping of one zone cut's servers during one `_ask_zone`."""

    servers: list[NameServer]
    tries: dict[ServerAddress, int] = field(default_factory=dict)
    looked_up: set[str] = field(default_factory=set)
    failed_lookups: int = 0


class ServerAsking(ResolutionCore):
    """Choosing a server, sending one query and reading its reply."""


    # -- choosing and asking servers --------------------------------------------

    def _ask_zone(
        self, cut: Delegation, question: Question, depth: int,
        excluded: set[ServerAddress] | frozenset[ServerAddress] = frozenset(),
    ) -> Generator[SendQuery, Reply, tuple[ScrubbedReply, Classified] | Failure]:
        """Get a usable reply from one of the zone's servers, trying the next on failure;
        `excluded` servers (their data was bogus) are not asked. `_answered_by` names the
        server whose reply is returned."""
        attempts = _Attempts(servers=list(cut.servers))
        for server in excluded:
            attempts.tries[server] = self._max_tries(cut)
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
            fewest = min(attempts.tries.get(c.server, 0) for c in candidates)
            fresh = [c for c in candidates if attempts.tries.get(c.server, 0) == fewest]
            chosen = self.selection.choose(fresh, zone=cut.zone, now=self.now, rng=self.rng)
            attempts.tries[chosen.server] = attempts.tries.get(chosen.server, 0) + 1
            sends += 1
            result = yield from self._query_server(cut, chosen, question, depth)
            if isinstance(result, Failure):
                last_problem = result.reason
                if isinstance(result, _Unreachable):
                    attempts.tries[chosen.server] = self._max_tries(cut)
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
                self.selection.record_lame(chosen.server, cut.zone, self.now)
                attempts.tries[chosen.server] = self._max_tries(cut)
                last_problem = f"{chosen.ns_name} ({chosen.label}) {classified.reason}"
                continue
            self._answered_by = chosen.server
            return reply, classified

    def _candidates(self, cut: Delegation, attempts: _Attempts, depth: int) -> list[Candidate]:
        found: list[Candidate] = []
        # Read once, not per address: this runs before every query sent.
        max_tries = self._max_tries(cut)
        tries = attempts.tries
        selection, now = self.selection, self.now
        for ns in attempts.servers:
            for candidate in self._addresses_to_ask(ns):
                server = candidate.server
                if tries.get(server, 0) >= max_tries:
                    continue
                reason = self._unusable(candidate)
                held = selection.unreachable_for(server, now)
                if held and not reason:
                    reason = f"unreachable a moment ago (asked again in {held:.1f} s)"
                probing = selection.probe_held(server, now)
                if probing and not reason:
                    reason = (f"down after {DOWN_AFTER_TIMEOUTS} timeouts in a row "
                              f"(probed again in {probing:.1f} s)")
                if reason:
                    if server not in tries:
                        tries[server] = max_tries
                        if self._observer is not None:
                            self._emit(ServerSkipped(
                                depth=depth, at_s=self._at_s(), server_name=ns.name,
                                address=candidate.label, reason=reason))
                    continue
                found.append(candidate)
        return found

    def _addresses_to_ask(self, ns: NameServer) -> list[Candidate]:
        """The server addresses of one name server: its configured upstream, or each
        address learnt for it on the port iterated servers are asked on."""
        port = self.settings.upstream_port
        found = [Candidate(ns.name, ServerAddress(ip, port)) for ip in ns.addresses]
        if ns.upstream is not None:
            found.append(Candidate(ns.name, ns.upstream, configured=True))
        return found

    def _max_tries(self, cut: Delegation) -> int:
        # Forwarders are few and recurse for us: give each more tries (Unbound
        # outbound-msg-retry 5) within the same total budget.
        if cut.recursion_desired:
            return self.limits.max_tries_per_forwarder
        return self.limits.max_tries_per_server

    def _unusable(self, candidate: Candidate) -> str:
        address = candidate.server.ip
        if is_ipv6(address):
            if not self.settings.do_ip6:
                return "IPv6 disabled (do-ip6: no)"
        elif not self.settings.do_ip4:
            return "IPv4 disabled (do-ip4: no)"
        if self._is_own_address(candidate):
            return "one of our own addresses"
        if is_never_a_server(address):
            return "not a unicast address (unspecified, multicast or broadcast)"
        if (not self._allow_loopback and not candidate.configured
                and is_loopback_or_unspecified(address)):
            return "loopback or unspecified address (do-not-query-localhost)"
        return ""

    def _is_own_address(self, candidate: Candidate) -> bool:
        """A server we must not ask because it is us.

        `never_query` holds our listen IPs (bare) and endpoints ("IP@PORT"). The same
        address and port is always a loop. A server learnt while iterating (glue, an
        NS address) is never one of our IPs on any port: a delegation pointing at us is
        an attack or a mistake. Only a configured upstream may sit on another port of
        our IP (a local stubby or NSD beside us).
        """
        own = self.settings.never_query
        server = candidate.server
        if f"{server.ip}@{server.port}" in own:
            return True
        return server.ip in own and not candidate.configured

    def _look_up_next_server(
        self, cut: Delegation, attempts: _Attempts, depth: int
    ) -> Generator[SendQuery, Reply, Failure | None]:
        """Resolve the address of one name server that came without glue."""
        if cut.recursion_desired:
            return Failure(FailureKind.NO_REACHABLE_AUTHORITY, "no forwarder answered")
        pending = [ns for ns in attempts.servers if ns.name not in attempts.looked_up
                   and not any(not self._unusable(c) for c in self._addresses_to_ask(ns))]
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
        attempts.servers[index] = replace(ns, addresses=(*ns.addresses, *addresses))
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
                    depth=depth, at_s=self._at_s(), address=server.label,
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
        timeout_s = self._timeout_for(cut, server)
        self.selection.claim_probe(server.server, timeout_s, self.now)
        self._token += 1
        self.queries_sent += 1
        self._sent_at = self.now
        target = server.server
        if self._observer is not None:
            self._emit(QuerySent(
                depth=depth, at_s=self._at_s(), zone=cut.zone, server_name=server.ns_name,
                address=target.ip, port=target.port, qname=question.name,
                qtype=type_name(question.rtype), recursion_desired=cut.recursion_desired,
                transport=transport.value, why=_why(cut, server, self.selection, self.now)))
        outcome = yield SendQuery(token=self._token, server=target, transport=transport,
                                  wire=wire, timeout_s=timeout_s)
        if isinstance(outcome, UpstreamTimeout):
            self.selection.record_timeout(server.server, timeout_s, self.now)
            return self._failed(depth, server, f"timeout after {round(timeout_s * 1000)} ms")
        if isinstance(outcome, UpstreamError):
            return self._transport_failed(cut, server, outcome, depth)
        try:
            reply = decode(outcome, max_records=self.limits.max_records_per_reply)
        except MalformedMessage as exc:
            return self._failed(depth, server, f"malformed reply: {exc.reason}")
        mismatch = reply_mismatch(reply, query_id, question)
        if mismatch:
            return self._failed(depth, server, f"reply does not match the query: {mismatch}")
        if style.caps and reply.question is not None and not _case_echoed(wire, outcome, style):
            if self._observer is not None:
                self._emit(QueryFailed(
                    depth=depth, at_s=self._at_s(), address=server.label,
                    error="reply does not echo the 0x20 letter case"))
            return _CaseNotEchoed(FailureKind.NO_REACHABLE_AUTHORITY,
                                  f"{server.ns_name} ({server.label}) ignores 0x20 case")
        self.selection.record_rtt(server.server, self.now - self._sent_at)
        return reply

    def _timeout_for(self, cut: Delegation, server: Candidate) -> float:
        """How long to wait for this server: its RTO (RFC 6298 §2; the back-off per retry
        lives in the server selection, §5.5), within the resolution's budget."""
        rto = self.selection.timeout_for(server.server, first_s=self.limits.first_timeout_s,
                                         max_s=self.limits.max_timeout_s)
        if cut.recursion_desired:  # a forwarder may have to recurse first: no tighter than usual
            rto = max(rto, self.limits.first_timeout_s)
        return min(
            rto,
            self.limits.max_timeout_s,
            max(0.05, self.limits.resolution_budget_s - (self.now - self.started)),
        )

    def _transport_failed(
        self, cut: Delegation, server: Candidate, error: UpstreamError, depth: int
    ) -> Failure:
        """An exchange that failed at once: remember what it says about the server."""
        self.selection.record_lame(server.server, cut.zone, self.now)
        if server.server.is_ipv6 and error.problem is TransportProblem.NETWORK_UNREACHABLE:
            self.selection.record_ipv6_unreachable(self.now)
        failed = self._failed(depth, server, f"transport error: {error}")
        if error.problem is TransportProblem.OTHER:
            return failed
        # Nobody listens there, or no route: asking again in a few ms changes nothing.
        self.selection.record_unreachable(server.server, self.now)
        return _Unreachable(failed.kind, failed.reason)

    def _failed(self, depth: int, server: Candidate, error: str) -> Failure:
        if self._observer is not None:
            self._emit(QueryFailed(
                depth=depth, at_s=self._at_s(), address=server.label, error=error))
        return Failure(FailureKind.NO_REACHABLE_AUTHORITY,
                       f"{server.ns_name} ({server.label}): {error}")

    def _check_budget(self) -> None:
        if self.queries_sent >= self.limits.max_upstream_queries:
            raise OutOfBudget(Failure(
                FailureKind.WORK_LIMIT,
                f"more than {self.limits.max_upstream_queries} upstream queries"))
        if self.now - self.started >= self.limits.resolution_budget_s:
            raise OutOfBudget(Failure(
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


def _case_echoed(query: bytes, reply: bytes, style: _QueryStyle) -> bool:
    """Whether the reply's question name has the query's letter case, octet for octet
    (draft-vixie-dnsext-dns0x20)."""
    name_end = len(query) - 4 - (11 if style.edns else 0)  # type, class, OPT after it
    return reply[12:name_end] == query[12:name_end]


def _why(cut: Delegation, server: Candidate, selection: ServerSelection, now: float) -> str:
    if cut.recursion_desired:
        return "forwarder"
    if cut.source is CutSource.ROOT_HINTS:
        return "root hints"
    return "chosen at random among the fastest known" if selection.score(
        server.server, cut.zone, now) < 0.376 else f"address from {cut.source}"
