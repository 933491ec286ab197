"""Where a resolution starts: the deepest zone cut known, configured or primed.

Configured stub and forward zones say where their names are asked (Unbound stub-zone,
forward-zone); below them, or without them, the closest delegation in the cache is used;
at the root, the root hints after priming (RFC 8109). A cached cut whose servers all fail
falls back once to the parent's view (parent-side fallback).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

from resolver.dns import names
from resolver.dns.wire import (
    Question,
    RRType,
)
from resolver.engine.admission import admit
from resolver.engine.classify import (
    ResponseKind,
)
from resolver.engine.delegation import (
    CutSource,
    Delegation,
    NameServer,
)
from resolver.engine.events import (
    ResolutionStarted,
    SendQuery,
)
from resolver.engine.failure import Failure
from resolver.engine.resolution_core import Reply, ResolutionCore


class ZoneCutChoice(ResolutionCore):
    """Choosing the zone cut to ask, and the root priming."""


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
            if ns.reachable:
                servers.append(ns)
                continue
            known = tuple(
                rr.address
                for rtype in (RRType.A, RRType.AAAA)
                for rr in self.cache.rrset(ns.name, rtype) or ()
            )
            servers.append(NameServer(ns.name, known))
        return replace(delegation, servers=tuple(servers))
