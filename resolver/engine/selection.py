"""Which server to ask next: what we remember about every upstream address.

Shared by all resolutions (Unbound's infra cache). Per server address (IP, port and TLS
name, as Unbound's infra cache keys by address and port): a smoothed RTT and
its variance (RFC 6298 §2), timeouts in a row, and the zones it was lame for. Among
the candidates, those within `RTT_BAND_S` of the fastest are chosen at random so that
load spreads and an attacker cannot predict the server (RFC 5452 §4).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from resolver.engine.network import ServerAddress

#: Estimate for a server never measured (Unbound UNKNOWN_SERVER_NICENESS 376 ms).
UNKNOWN_RTT_S = 0.376
#: Servers this close to the fastest are equally good (Unbound's 400 ms band).
RTT_BAND_S = 0.400
#: Longest remembered back-off (the per-try timeout itself is capped by Limits.max_timeout_s).
MAX_BACKOFF_S = 12.0
#: Timeouts in a row after which a server is considered down (Unbound TIMEOUT_COUNT_MAX 3).
DOWN_AFTER_TIMEOUTS = 3
#: How long "down" and "lame" are remembered (Unbound infra-host-ttl 900 s).
MEMORY_S = 900.0
#: How long an address that answered ICMP unreachable is skipped: long enough that a burst
#: of client queries does not hammer it, short enough that a restarted server is soon used.
UNREACHABLE_HOLD_S = 5.0
#: Penalty that sorts down or lame servers after every healthy one.
_PENALTY_S = 1000.0


@dataclass(slots=True)
class _ServerState:
    srtt_s: float | None = None
    rttvar_s: float = 0.0
    #: After timeouts: the backed-off retransmission timeout (RFC 6298 §5.5), doubled
    #: per timeout until a reply resets it.
    backoff_s: float | None = None
    timeouts_in_row: int = 0
    down_until: float = 0.0
    #: While down: no query may probe the server before this time. One probe is in flight
    #: until it, and after a probe timed out the next waits its back-off.
    probe_after: float = 0.0
    #: After an ICMP unreachable or a refused connection: not asked before this time.
    unreachable_until: float = 0.0
    lame_zones: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One address of one name server that may be asked."""

    ns_name: str
    server: ServerAddress
    #: A configured upstream (forward or stub zone), not an address learnt while iterating.
    configured: bool = False

    @property
    def label(self) -> str:
        """The address as traces and messages show it: the IP of a learnt address, the
        operator's notation of a configured upstream."""
        return self.server.notation() if self.configured else self.server.ip


class ServerSelection:
    """Long-lived memory of upstream servers, and the choice it implies."""

    def __init__(self) -> None:
        self._servers: dict[ServerAddress, _ServerState] = {}
        #: Until when IPv6 as a whole is considered unreachable from here.
        self.ipv6_unreachable_until = 0.0

    def _state(self, server: ServerAddress) -> _ServerState:
        state = self._servers.get(server)
        if state is None:
            if len(self._servers) > 100_000:  # bounded memory: forget the oldest
                self._servers.pop(next(iter(self._servers)))
            state = self._servers[server] = _ServerState()
        return state

    def score(self, server: ServerAddress, zone: str, now: float) -> float:
        state = self._servers.get(server)
        if state is None:
            ipv6_down = server.is_ipv6 and self.ipv6_unreachable_until > now
            return UNKNOWN_RTT_S + (_PENALTY_S if ipv6_down else 0.0)
        score = state.srtt_s if state.srtt_s is not None else UNKNOWN_RTT_S
        if state.backoff_s is not None:
            score = max(score, state.backoff_s)
        if state.down_until > now:
            score += _PENALTY_S
        if state.lame_zones.get(zone, 0.0) > now:
            score += _PENALTY_S
        if server.is_ipv6 and self.ipv6_unreachable_until > now:
            score += _PENALTY_S
        return score

    def choose(
        self, candidates: list[Candidate], *, zone: str, now: float, rng: random.Random
    ) -> Candidate:
        """One of the fastest candidates, at random within the RTT band."""
        scored = [(self.score(c.server, zone, now), i, c) for i, c in enumerate(candidates)]
        best = min(s for s, _, _ in scored)
        band = [c for s, _, c in scored if s <= best + RTT_BAND_S]
        return band[rng.randrange(len(band))]

    def is_down(self, server: ServerAddress, now: float) -> bool:
        """Timed out DOWN_AFTER_TIMEOUTS times in a row, less than MEMORY_S ago."""
        state = self._servers.get(server)
        return state is not None and state.down_until > now

    def probe_held(self, server: ServerAddress, now: float) -> float:
        """Seconds before a down server may be probed again (0: it is not down, or it may
        be probed now). Unbound's one probe at a time for a host that timed out: while
        one query probes it, or during the back-off after a probe that timed out, every
        other query skips it, so a black-holed zone costs one query per back-off instead
        of every client question waiting out its whole budget."""
        state = self._servers.get(server)
        if state is None or state.down_until <= now:
            return 0.0
        return max(0.0, state.probe_after - now)

    def claim_probe(self, server: ServerAddress, timeout_s: float, now: float) -> None:
        """A query is about to ask `server`: if it is down, that query is its one probe
        for `timeout_s`."""
        state = self._servers.get(server)
        if state is not None and state.down_until > now:
            state.probe_after = now + timeout_s

    def is_known_bad(self, server: ServerAddress, zone: str, now: float) -> bool:
        return self.score(server, zone, now) >= _PENALTY_S

    def timeout_for(self, server: ServerAddress, *, first_s: float, max_s: float) -> float:
        """Retransmission timeout: srtt + 4*rttvar (RFC 6298 §2), within bounds."""
        state = self._servers.get(server)
        if state is not None and state.backoff_s is not None:
            return min(state.backoff_s, max_s)
        if state is None or state.srtt_s is None:
            return first_s
        rto = state.srtt_s + 4 * state.rttvar_s
        return min(max(rto, 0.05, first_s / 4), max_s)

    def record_rtt(self, server: ServerAddress, rtt_s: float) -> None:
        state = self._state(server)
        if state.srtt_s is None:
            state.srtt_s, state.rttvar_s = rtt_s, rtt_s / 2
        else:  # RFC 6298 §2.3 with alpha 1/8, beta 1/4
            state.rttvar_s = 0.75 * state.rttvar_s + 0.25 * abs(state.srtt_s - rtt_s)
            state.srtt_s = 0.875 * state.srtt_s + 0.125 * rtt_s
        state.timeouts_in_row = 0
        state.down_until = 0.0
        state.backoff_s = None

    def record_timeout(self, server: ServerAddress, timeout_s: float, now: float) -> None:
        state = self._state(server)
        state.timeouts_in_row += 1
        state.backoff_s = min(2 * max(timeout_s, state.backoff_s or 0.0), MAX_BACKOFF_S)
        if state.timeouts_in_row > DOWN_AFTER_TIMEOUTS:
            # A probe timed out: the next waits the back-off (RFC 6298 §5.5).
            state.probe_after = now + state.backoff_s
        if state.timeouts_in_row >= DOWN_AFTER_TIMEOUTS:
            # Just down: the next query to ask (the same resolution's retry, most often)
            # is its probe at once.
            state.down_until = now + MEMORY_S

    def record_ipv6_unreachable(self, now: float) -> None:
        """This host has no IPv6 route: prefer IPv4 servers for a while (Unbound's
        do-ip6 probing, Happy Eyeballs in spirit)."""
        self.ipv6_unreachable_until = now + MEMORY_S

    def record_unreachable(self, server: ServerAddress, now: float) -> None:
        """Nobody listens at `server` (ICMP port unreachable, connection refused): it is
        skipped for UNREACHABLE_HOLD_S, then asked again (it may have been restarted)."""
        self._state(server).unreachable_until = now + UNREACHABLE_HOLD_S

    def unreachable_for(self, server: ServerAddress, now: float) -> float:
        """Seconds the server is still held back after it was unreachable (0: not)."""
        state = self._servers.get(server)
        return max(0.0, state.unreachable_until - now) if state is not None else 0.0

    def record_lame(self, server: ServerAddress, zone: str, now: float) -> None:
        self._state(server).lame_zones[zone] = now + MEMORY_S

    def known_servers(self) -> int:
        return len(self._servers)
