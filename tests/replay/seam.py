"""The three seams a replay injects into the resolver: upstream transport, clock, client front end.

Peer-scenarios README §3.1. The harness answers every upstream query through a `Transport`
callable, owns a `FakeClock` that only moves on TIME_PASSES, and talks to the resolver through
`ResolverUnderTest.handle()` exactly as the UDP/TCP listener would. `ReplayConfig` is the CONFIG
section of a scenario file mapped to resolver settings (§3.3). `tests.replay.production` builds
the real resolver behind these interfaces; nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from resolver.engine.network import UpstreamError, UpstreamTimeout

__all__ = [
    "FakeClock",
    "ReplayConfig",
    "ResolverFactory",
    "ResolverUnderTest",
    "Transport",
    "UpstreamError",
    "UpstreamTimeout",
]

#: (server_ip, wire_query, tcp) -> wire_reply; the port is always 53. Raises `UpstreamTimeout`
#: (no answer: TIMEOUT step, do_not_answer, unscripted query) or `UpstreamError` (ERROR step).
Transport = Callable[[str, bytes, bool], bytes]


class FakeClock:
    """Virtual wall-clock seconds since the epoch; moves only when the harness says (§3.7)."""

    __slots__ = ("_now",)

    def __init__(self, start: float) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward; scenarios never move it back."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards ({seconds} s)")
        self._now += float(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayConfig:
    """Resolver settings taken from a scenario's CONFIG section (README §3.3).

    Root hints are (name, ip) pairs; forwarders forward the root zone (RD=1); forward/stub zones
    map a zone name to server addresses. `extra` keeps the keys the harness could not map, so a
    failure can be explained ("needs forward-first") rather than guessed at.
    """

    root_hints: list[tuple[str, str]]
    forwarders: list[str]
    forward_zones: dict[str, list[str]]
    stub_zones: dict[str, list[str]]
    qmin: bool
    qmin_qtype: str  # "NS" (Deckard) | "A" (testbound): QTYPE used for intermediate labels
    do_ip4: bool = True
    do_ip6: bool = True
    do_not_query_localhost: bool = True
    harden_glue: bool = True
    #: RFC 8109 priming before the first walk from the hints; Deckard's kresd template turns it off.
    prime_root: bool = True
    #: Largest UDP reply (max-udp-size).
    max_udp_size: int = 1232
    #: Addresses of the servers in an NS answer: Unbound adds them, kresd never does.
    ns_addresses_in_answer: bool = True
    cache_min_ttl: int = 0
    cache_max_ttl: int = 86400
    cache_min_negative_ttl: int = 0
    cache_max_negative_ttl: int = 3600
    prefetch: bool = False
    serve_stale: bool = False
    serve_stale_ttl: int = 0
    serve_stale_reply_ttl: int = 30
    serve_stale_client_timeout_ms: int = 1800
    serve_stale_ttl_reset: bool = False
    minimal_responses: bool = True
    trust_anchors: list[str] = field(default_factory=list)  # DS or DNSKEY presentation text
    negative_trust_anchors: list[str] = field(default_factory=list)
    validate: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class ResolverUnderTest(Protocol):
    """The resolver as a replay sees it: the client front end plus a background-work pump."""

    def handle(
        self, wire: bytes, *, tcp: bool = False, client_ip: str = "127.0.0.1"
    ) -> bytes | None:
        """Answer one client message (same code path as the listeners); None = no reply."""
        ...

    def run_background(self) -> None:
        """Finish queued prefetch / serve-stale refreshes synchronously."""
        ...


#: Builds a fresh resolver with an empty cache for one replay run.
ResolverFactory = Callable[[ReplayConfig, Transport, FakeClock], ResolverUnderTest]
