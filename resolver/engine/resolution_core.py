"""What every part of one resolution shares: its state, its trace and its budget.

A `Resolution` (resolver.engine.resolution) is one object whose algorithm is split by
concept into mixins over `ResolutionCore`: choosing the zone cut to start from
(resolver.engine.zone_cut_choice), answering from the cache (resolver.engine.cache_answers),
asking a zone's servers (resolver.engine.server_asking) and fetching the chain of trust
(resolver.engine.trust_fetching). This module holds what
they all read: the attributes a resolution keeps, the trace hook, and the two steps the
parts call across (`_resolve` for nested lookups and `_ask_zone`), declared here and
defined by the part they belong to.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from resolver.dns import names
from resolver.dns.wire import (
    Question,
)
from resolver.dnssec.verification_budget import VerificationBudget
from resolver.engine.cache import RecordCache
from resolver.engine.classify import (
    Classified,
)
from resolver.engine.delegation import (
    Delegation,
)
from resolver.engine.events import (
    Outcome,
    SendQuery,
    TraceEvent,
)
from resolver.engine.failure import Failure
from resolver.engine.network import (
    ServerAddress,
    UpstreamError,
    UpstreamTimeout,
)
from resolver.engine.scrub import ScrubbedReply
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import EngineSettings, Limits, ValidationSettings
from resolver.engine.validation import (
    TrustCache,
)

log = logging.getLogger("resolver.engine.resolution")

#: What the driver reports for a `SendQuery`: reply bytes or the failure.
Reply = bytes | UpstreamTimeout | UpstreamError


class OutOfBudget(Exception):
    """One of our own work limits ran out; the client gets SERVFAIL."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


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


class ResolutionCore:
    """The state of one resolution, read and written by every part of the algorithm."""

    question: Question
    cache_only: bool
    settings: EngineSettings
    limits: Limits
    cache: RecordCache
    selection: ServerSelection
    state: SharedState
    rng: random.Random
    now: float
    started: float
    queries_sent: int
    wall_time: float
    _observer: Callable[[TraceEvent], None] | None
    _token: int
    _sent_at: float
    _pending_token: int | None
    _active: set[tuple[str, int]]
    _fell_back: set[str]
    _allow_loopback: bool
    _dnssec: ValidationSettings | None
    _validating: bool
    _trust_active: set[str]
    #: Signature verifications this resolution may still spend (KeyTrap, CVE-2023-50387).
    _verifications: VerificationBudget
    _answered_by: ServerAddress | None
    #: Zone -> servers whose DS or DNSKEY for it did not verify: not asked again in this
    #: resolution (RFC 4035 §5.5).
    _distrusted: dict[str, set[ServerAddress]]
    #: Zone -> (server of its DS, server of its DNSKEY, the parent zone) of the last fetch.
    _trust_sources: dict[str, tuple[ServerAddress | None, ServerAddress | None, str]]
    #: (zone, type) of trust data taken from the cache, failed, and fetched again.
    _refetched: set[tuple[str, int]]

    def _emit(self, event: TraceEvent) -> None:
        """Report a step to the observer; callers build the event only when one listens."""
        if self._observer is not None:
            self._observer(event)

    def _at_s(self) -> float:
        """Seconds since the resolution started, as trace events show it."""
        return round(self.now - self.started, 6)

    def _configured_zone(self, qname: str) -> str:
        """The closest configured (stub or forward) zone at or above `qname`, else the root."""
        return next((zone for zone in names.ancestors(qname)
                     if zone in self.state.configured_zones), names.ROOT)

    def _resolve(
        self, question: Question, depth: int, purpose: str, *, validate: bool = False
    ) -> Generator[SendQuery, Reply, Outcome]:
        """Answer `question` (resolver.engine.resolution)."""
        raise NotImplementedError

    def _ask_zone(
        self, cut: Delegation, question: Question, depth: int,
        excluded: set[ServerAddress] | frozenset[ServerAddress] = frozenset(),
    ) -> Generator[SendQuery, Reply, tuple[ScrubbedReply, Classified] | Failure]:
        """Get a usable reply from one of the zone's servers (resolver.engine.server_asking)."""
        raise NotImplementedError
