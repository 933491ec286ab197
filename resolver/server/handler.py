"""Inbound query bytes -> reply bytes: every rule a stub client relies on.

Rules, in the order they apply (docs/reliability.md (b) and (c)):
- Fewer than 12 octets, or QR=1: no reply (a reply to a reply feeds loops).
- Access control (resolver.server.acl) before anything else, the answer cache included: `deny`
  drops the query, `refuse` answers REFUSED. Then the per-client rate limit (ip-ratelimit):
  over it, no reply.
- Malformed (strict scanner): FORMERR echoing the id and opcode, header only.
- Opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1).
- EDNS version above 0: BADVERS with an OPT of version 0 (RFC 6891 §6.1.3).
- Meta types OPT/TSIG/TKEY/MAILA/MAILB, reserved 0 and 128-248: FORMERR; AXFR/IXFR:
  REFUSED (a resolver does not transfer zones); classes other than IN: REFUSED.
- RD=0: REFUSED — we never recurse unasked (Unbound's default for allowed clients).
- ANY: the minimal RFC 8482 §4.2 reply, so we are no amplifier.
- One of our own forwarded queries coming back (same id and question): SERVFAIL, logged
  as a forwarding loop.
- `_dns.resolver.arpa` (RFC 9462 discovery, resolver.server.discovery), then local zones and
  local data (resolver.server.local_zones) are answered here, never resolved.
- Otherwise resolve; with private-address set, private A/AAAA records of public names are
  removed from the outcome (DNS-rebinding protection).
- Replies echo id, question (letter case as sent), RD and CD; set RA; never AA. AD only
  on data validated secure, and only to clients that set DO or AD (RFC 6840 §5.7-5.8);
  RRSIGs and NSEC/NSEC3 proofs only to DO clients (RFC 4035 §3.2.1); CD=1 gets the data
  unvalidated (RFC 4035 §3.2.2). Bogus data is SERVFAIL with its extended error.
  OPT in the reply iff the query had one. UDP replies are cut to the client's size
  (512 without EDNS, at most 1232) with TC=1 (RFC 6891 §7).
- A resolution failure is SERVFAIL, never NXDOMAIN, with an extended error (RFC 8914).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from resolver.dns.encoding import encode
from resolver.dns.header import MAX_UDP_REPLY, HeaderFlag
from resolver.dns.scanner import MalformedMessage, ScannedMessage, question_key, scan_query
from resolver.dns.wire import (
    Message,
    Question,
    Rcode,
    RRType,
    rcode_name,
    type_name,
)
from resolver.dnssec.security import Security
from resolver.engine.events import Outcome
from resolver.engine.failure import FailureKind
from resolver.engine.network import Transport
from resolver.server.acl import AccessControl, AclAction
from resolver.server.answer_cache import AnswerCache
from resolver.server.client import Client
from resolver.server.early_replies import (
    badvers_reply,
    ends_with_opt,
    header_reply,
    notimp_reply,
    refusal,
    rfc8482_answer,
    servfail_for,
)
from resolver.server.reply_fitting import (
    max_reply_size,
    reply_edns,
    reply_variant,
    stale_outcome,
    with_client_case,
)
from resolver.service.cachedb import memory_knows, reply_for_client
from resolver.service.resolver_service import ResolverService

if TYPE_CHECKING:
    from resolver.server.discovery import ResolverDiscovery
    from resolver.server.local_zones import LocalZones, RebindingGuard
    from resolver.server.metrics import Metrics
    from resolver.server.ratelimit import IpRateLimiter
    from resolver.service.cachedb_tier import CacheDbTier
    from resolver.upstream.forwarding import ForwardLoopGuard

log = logging.getLogger(__name__)
#: `--log-queries`: one line per query (client, transport, name, type, rcode, time).
query_log = logging.getLogger("resolver.queries")

#: Queries of one client address waiting for resolution at once (Unbound wait-limit 1000).
MAX_WAITING_PER_CLIENT = 1000
#: Shared-cache entries refreshed in the background at once; more wait for their expiry.
MAX_SHARED_REFRESHES = 100


class QueryHandler:
    """Turns one query's bytes into the reply's bytes (or None for no reply)."""

    def __init__(
        self,
        service: ResolverService,
        *,
        answers: AnswerCache | None = None,
        loop_guard: ForwardLoopGuard | None = None,
        access: AccessControl | None = None,
        ratelimit: IpRateLimiter | None = None,
        local_zones: LocalZones | None = None,
        rebinding: RebindingGuard | None = None,
        metrics: Metrics | None = None,
        log_queries: bool = False,
        cachedb: CacheDbTier | None = None,
        max_udp_reply: int = MAX_UDP_REPLY,
    ) -> None:
        self.service = service
        #: Largest UDP reply, whatever EDNS size a client offers (max-udp-size); also the
        #: size our OPT records advertise.
        self.max_udp_reply = max_udp_reply
        #: Recognises our own forwarded queries coming back to us (resolver.upstream.forwarding).
        self.loop_guard = loop_guard
        # The policy below is replaced as a whole on SIGHUP (resolver.daemon.app); None = none.
        #: Who may ask (resolver.server.acl); None lets every client through.
        self.access = access
        #: Queries per second per client (resolver.server.ratelimit).
        self.ratelimit = ratelimit
        #: Names answered locally (resolver.server.local_zones).
        self.local_zones = local_zones
        #: Private addresses kept out of public answers (private-address).
        self.rebinding = rebinding
        #: One log line per query on the "resolver.queries" logger.
        self.log_queries = log_queries
        #: Counters exposed at /metrics (resolver.daemon.metrics); kept across reloads.
        self.metrics = metrics
        #: The shared second-level cache (--cachedb): read on a miss of both memory caches,
        #: written behind every reply the answer cache keeps (resolver.service.cachedb_tier).
        self.cachedb = cachedb
        #: `_dns.resolver.arpa` SVCB (RFC 9462), set by the encrypted listeners when they start.
        self.discovery: ResolverDiscovery | None = None
        self.queries = 0
        #: Client address -> its queries waiting for a resolution now (wait-limit).
        self._waiting: dict[str, int] = {}
        #: Background refreshes of shared-cache entries this instance holds the lock for.
        self._refreshes: set[asyncio.Future[None]] = set()
        self.rcodes: dict[str, int] = {}
        #: Replies as bytes, looked up before anything is decoded (answer_cache.py).
        self.answers = answers if answers is not None else AnswerCache(
            clock=getattr(service, "clock", time.monotonic), max_udp_reply=max_udp_reply
        )

    def answer_from_cache(self, wire: bytes, client_ip: str) -> bytes | None:
        """The UDP fast path: the cached reply to `wire`, or None to go through `handle`.

        The listener calls it before `handle`, for every datagram: a check on who the client
        is (access control) must be made here too.
        """
        if not (self.cached_path_open() and self.client_may_use_cache(client_ip)):
            return None  # `handle` applies these, once
        started = time.monotonic()
        body = self.answers.reply_body(wire)
        if body is None:
            return None
        self.queries += 1
        if self.metrics is not None:
            self.metrics.latency.observe(time.monotonic() - started)
        return self._count(wire[:2] + body)

    # The batched listener asks the answer cache itself and uses these three: the first once
    # a batch, the second once per client address until `access` changes, the last once a batch.

    def cached_path_open(self) -> bool:
        """Whether cached answers may skip `handle` now: not with a rate limit or a query log,
        which `handle` applies to every query."""
        return self.ratelimit is None and not self.log_queries

    def client_may_use_cache(self, client_ip: str) -> bool:
        """Whether access control lets this client's queries be answered straight from cache."""
        return self.access is None or self.access.action_for(client_ip) is AclAction.ALLOW

    def count_cached(self, by_rcode: list[int], seconds: float) -> int:
        """Count fast-path answers: `by_rcode[r]` answers with rcode r, `seconds` for all.
        Returns how many there were."""
        answered = sum(by_rcode)
        if not answered:
            return 0
        self.queries += answered
        for rcode, count in enumerate(by_rcode):
            if count:
                name = _RCODE_NAMES[rcode]
                self.rcodes[name] = self.rcodes.get(name, 0) + count
        if self.metrics is not None:
            self.metrics.latency.observe_many(seconds / answered, answered)
        return answered

    async def handle(self, wire: bytes, client: Client) -> bytes | None:
        started = time.monotonic()
        try:
            if self.access is None and self.ratelimit is None:
                reply = await self._handle(wire, client)
            else:
                reply = await self._admit(wire, client)
        except Exception:  # the last line of defence: never let one query stop the server
            log.exception("internal error answering a query from %s", client.ip)
            reply = servfail_for(wire)
        if self.metrics is not None and reply is not None:
            self.metrics.latency.observe(time.monotonic() - started)
        if self.log_queries:
            self._log_query(wire, client, reply, time.monotonic() - started)
        return reply

    async def _admit(self, wire: bytes, client: Client) -> bytes | None:
        """Access control, then the rate limit, before anything in the query is looked at."""
        if len(wire) < 12 or wire[2] & 0x80:
            return None
        action = AclAction.ALLOW if self.access is None else self.access.action_for(client.ip)
        if action is AclAction.DENY:
            self._drop("access-control")
            return None
        if self.ratelimit is not None and not self.ratelimit.allow(client.ip):
            self._drop("ip-ratelimit")  # no reply: even REFUSED would feed a reflection
            return None
        if action in (AclAction.ALLOW, AclAction.ALLOW_SNOOP):
            return await self._handle(wire, client, snoop=action is AclAction.ALLOW_SNOOP)
        self.queries += 1
        if self.metrics is not None:
            self.metrics.refused_by_acl.inc()
        return self._count(self._refused(wire, client))

    def _drop(self, reason: str) -> None:
        self.queries += 1
        if self.metrics is not None:
            self.metrics.dropped.inc(reason)

    def _refused(self, wire: bytes, client: Client) -> bytes:
        """REFUSED for a client that may not ask, echoing its question when it is readable."""
        try:
            query = scan_query(wire)
        except MalformedMessage as exc:
            return header_reply(wire, Rcode.REFUSED, with_opt=exc.opt_seen)
        plain = query.opcode == 0 and (query.edns is None or query.edns.version == 0)
        if not plain or query.qname is None or query.qtype is None or query.qclass is None:
            return header_reply(wire, Rcode.REFUSED, with_opt=query.edns is not None)
        # RA set: we do recurse, only not for this client; EDE 18 says so (RFC 8914 §4.19).
        return self._reply(wire, query, client, Outcome(rcode=Rcode.REFUSED))

    def _log_query(
        self, wire: bytes, client: Client, reply: bytes | None, elapsed_s: float
    ) -> None:
        try:
            query = scan_query(wire)
            name = query.qname or "-"
            qtype = type_name(query.qtype) if query.qtype is not None else "-"
        except MalformedMessage:
            name = qtype = "-"
        rcode = _RCODE_NAMES[reply[3] & 0xF] if reply is not None and len(reply) >= 4 else "DROPPED"
        where = f"[{client.ip}]:{client.port}" if ":" in client.ip else f"{client.ip}:{client.port}"
        query_log.info("query %s %s %s %s %s %.1fms", where, client.via, name, qtype,
                       rcode, elapsed_s * 1000)

    async def _handle(self, wire: bytes, client: Client, *, snoop: bool = False) -> bytes | None:
        if len(wire) < 12 or wire[2] & 0x80:
            return None
        self.queries += 1
        cached = self.answers.lookup(wire, client.transport is Transport.TCP)
        if cached is not None:
            return self._count(cached)
        try:
            query = scan_query(wire)
        except MalformedMessage as exc:
            with_opt = exc.opt_seen or ends_with_opt(wire)
            return self._count(header_reply(wire, Rcode.FORMERR, with_opt=with_opt))
        if query.opcode != 0:
            return self._count(notimp_reply(wire, query))
        if query.edns is not None and query.edns.version > 0:
            return self._count(badvers_reply(wire, query))
        assert query.qname is not None and query.qtype is not None and query.qclass is not None
        question = Question(query.qname, query.qtype, query.qclass)
        rcode = refusal(query, cache_only_allowed=snoop)
        if rcode is not None:  # a refusal of the question, not of the client: RA stays clear
            return self._count(
                self._reply(wire, query, client, Outcome(rcode=rcode), recursion_available=False)
            )
        if question.rtype == RRType.ANY:
            return self._count(self._reply(wire, query, client, rfc8482_answer(question)))
        if self.loop_guard is not None and self.loop_guard.is_own(wire):
            # Resolving it again would forward it again: break the loop here.
            log.warning("forwarding loop: our own query for %s came back from %s; "
                        "answering SERVFAIL (check the upstreams' configuration)",
                        question, client.ip)
            failed = Outcome(rcode=Rcode.SERVFAIL, reason="forwarding loop",
                             failure=FailureKind.FORWARDING_LOOP)
            return self._count(self._reply(wire, query, client, failed))
        if self.discovery is not None:
            found = self.discovery.answer(question)
            if found is not None:
                return self._count(self._reply(wire, query, client, found))
        local = self.local_zones.answer(question) if self.local_zones is not None else None
        if local is not None:  # never sent upstream (RFC 6761, RFC 6303)
            if self.metrics is not None:
                self.metrics.local_answers.inc()
            if local.outcome is None:  # local-zone type deny
                return None
            return self._count(self._reply(wire, query, client, local.outcome))
        return await self._resolve_for(wire, query, question, client)

    async def _resolve_for(
        self, wire: bytes, query: ScannedMessage, question: Question, client: Client
    ) -> bytes | None:
        """Reply with what resolving `question` gives (the shared cache asked first, when
        there is one); None when the client already has as many queries waiting as it may."""
        recursion_desired = bool(query.flags & HeaderFlag.RD)
        waiting = self._waiting.get(client.ip, 0)
        if waiting >= MAX_WAITING_PER_CLIENT:  # one address may not hold every slot
            if self.metrics is not None:
                self.metrics.dropped.inc("wait-limit")
            return None
        self._waiting[client.ip] = waiting + 1
        try:
            if self.cachedb is not None and recursion_desired:
                shared = await self._from_cachedb(self.cachedb, wire, query, question, client)
                if shared is not None:
                    return self._count(shared)
            outcome = await self.service.resolve(
                question, cache_only=not recursion_desired,
                checking_disabled=bool(query.flags & HeaderFlag.CD))
        finally:
            left = self._waiting.pop(client.ip) - 1
            if left:
                self._waiting[client.ip] = left
        if self.rebinding is not None:
            outcome, removed = self.rebinding.filter(outcome)
            if removed and self.metrics is not None:
                self.metrics.rebinding_removed.inc(amount=removed)
        if outcome.rcode == Rcode.SERVFAIL:
            log.info("SERVFAIL for %s from %s: %s", question, client.ip, outcome.reason)
        return self._count(self._reply(wire, query, client, outcome, cache=True))

    async def _from_cachedb(self, cachedb: CacheDbTier, wire: bytes, query: ScannedMessage,
                            question: Question, client: Client) -> bytes | None:
        """The reply from the shared cache, or None to resolve. Asked only when neither the
        answer cache (already missed) nor the record cache knows the answer; a hit is kept
        in the answer cache, so the next query is answered from memory."""
        if memory_knows(self.service.state.cache, question):
            return None
        shared = await cachedb.fetch(question_key(wire, query), reply_variant(query))
        if shared is None:
            return None
        if shared.stale:  # another instance is refreshing it (RFC 8767 §4: EDE 3, short TTL)
            stale = stale_outcome(shared.reply)
            return self._reply(wire, query, client, stale) if stale is not None else None
        assert query.qname_wire is not None
        self.answers.store(wire, query, shared.reply)
        if shared.refresh:  # this instance holds the fleet's refresh lock
            self._refresh_shared(wire, query, question, client)
        return reply_for_client(shared.reply, wire, query.qname_wire,
                                max_reply_size(query, client, self.max_udp_reply))

    def _refresh_shared(self, wire: bytes, query: ScannedMessage, question: Question,
                        client: Client) -> None:
        """Resolve `question` again in the background; its reply replaces the shared one
        (written behind, as every reply is) before that one expires."""
        if len(self._refreshes) >= MAX_SHARED_REFRESHES:
            return  # a burst of due entries: the rest are refreshed when they expire

        async def refresh() -> None:
            outcome = await self.service.resolve(
                question, checking_disabled=bool(query.flags & HeaderFlag.CD))
            if outcome.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN):
                self._reply(wire, query, client, outcome, cache=True)

        task = asyncio.ensure_future(refresh())
        self._refreshes.add(task)
        task.add_done_callback(self._refresh_done)

    @property
    def shared_refreshes(self) -> int:
        """Background refreshes of shared-cache entries running now."""
        return len(self._refreshes)

    def _refresh_done(self, task: asyncio.Future[None]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refresh of a shared-cache entry failed: %s", task.exception())

    def _count(self, reply: bytes | None) -> bytes | None:
        if reply is not None and len(reply) >= 4:
            name = _RCODE_NAMES[reply[3] & 0xF]
            self.rcodes[name] = self.rcodes.get(name, 0) + 1
        return reply

    def _reply(
        self,
        wire: bytes,
        query: ScannedMessage,
        client: Client,
        outcome: Outcome,
        *,
        recursion_available: bool = True,
        cache: bool = False,
    ) -> bytes:
        assert query.qname is not None and query.qtype is not None and query.qclass is not None
        edns = reply_edns(query, outcome, self.max_udp_reply)
        dnssec_ok = query.edns is not None and query.edns.do
        answer, authority = outcome.answer, outcome.authority
        if dnssec_ok and (outcome.signatures or outcome.denial):
            # RFC 4035 §3.2.1: a DO client gets the RRSIGs, and the proof of a denial.
            answer = answer + outcome.signatures
            authority = authority + outcome.denial
        message = Message(
            id=query.id,
            qr=True,
            opcode=0,
            rcode=outcome.rcode,
            rd=bool(query.flags & HeaderFlag.RD),
            ra=recursion_available,
            # RFC 6840 §5.7-5.8: AD for secure data, to a client that shows it reads it.
            ad=outcome.security is Security.SECURE and (
                dnssec_ok or bool(query.flags & HeaderFlag.AD)),
            cd=bool(query.flags & HeaderFlag.CD),
            question=Question(query.qname, query.qtype, query.qclass),
            answer=answer,
            authority=authority,
            additional=outcome.additional,
            edns=edns,
        )
        max_size = max_reply_size(query, client, self.max_udp_reply)
        if (cache and outcome.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN) and not outcome.stale
                and not outcome.refreshing):
            # Store the whole reply (never a stale one: the next query must try to refresh);
            # the answer cache truncates per client when it serves it.
            data = encode(message)
            self._store_reply(wire, query, outcome, message, data)
            if len(data) > max_size:
                data = encode(message, max_size=max_size)
        else:
            data = encode(message, max_size=max_size)
        return with_client_case(data, query)

    def _store_reply(
        self, wire: bytes, query: ScannedMessage, outcome: Outcome, message: Message, data: bytes
    ) -> None:
        """Keep the encoded reply `data` in the answer cache (with the answer as the record
        cache keeps it, where that differs) and queue it for the shared cache, if there is one."""
        negative_zone = (outcome.authority[0].name if outcome.authority
                         and outcome.authority[0].rtype == RRType.SOA else None)
        kept = data if outcome.answer_as_cached is None else encode(
            replace(message, answer=outcome.answer_as_cached))
        stored = self.answers.store(wire, query, kept, negative_zone=negative_zone)
        if stored and self.cachedb is not None:  # queued: the client does not wait
            # Bogus or indeterminate data is never shared (resolver.service.cachedb).
            self.cachedb.submit(question_key(wire, query), reply_variant(query), kept,
                                security=outcome.security)


#: Names of the 16 header rcodes, computed once: counting must stay cheap on the hot path.
_RCODE_NAMES = tuple(rcode_name(code) for code in range(16))
