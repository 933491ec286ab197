"""The lab's authoritative servers as an in-memory network, for engine tests without sockets."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

from resolver.engine.cache import RecordCache
from resolver.engine.delegation import Delegation, parse_root_hints
from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings
from resolver.lab.authority import Authority, Zone
from resolver.lab.world import SERVERS, LabServer, zone_text
from resolver.service.resolver_service import ResolverService


class FakeClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LabNetwork:
    """Delivers each query to the lab server at that address; counts what each receives.

    `silent` addresses never answer (a black hole); `failing` ones fail at once with the
    given error (ICMP unreachable, no route); `rewrite` lets a test tamper with a server's
    reply bytes.
    """

    def __init__(
        self,
        clock: FakeClock,
        servers: Sequence[LabServer] = SERVERS,
        *,
        rtt_s: float = 0.001,
    ) -> None:
        zones = {z: Zone.from_text(z, zone_text(z)) for s in servers for z in s.zones}
        self.authorities = {s.address: Authority(zones[z] for z in s.zones) for s in servers}
        self.clock = clock
        self.rtt_s = rtt_s
        self.received: Counter[str] = Counter()
        self.log: list[tuple[str, Transport, bytes]] = []
        self.silent: set[str] = set()
        self.failing: dict[str, UpstreamError] = {}
        self.rewrite: dict[str, Callable[[bytes, bytes], bytes]] = {}

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        self.received[server.ip] += 1
        self.log.append((server.ip, transport, query))
        if server.ip in self.failing:
            raise self.failing[server.ip]
        authority = self.authorities.get(server.ip)
        if authority is None:
            raise UpstreamError(f"nothing listens on {server}")
        if server.ip in self.silent:
            self.clock.advance(timeout_s)
            raise UpstreamTimeout()
        self.clock.advance(self.rtt_s)
        reply = authority.respond(query, transport=transport)
        if reply is None:
            self.clock.advance(timeout_s)
            raise UpstreamTimeout()
        if server.ip in self.rewrite:
            reply = self.rewrite[server.ip](query, reply)
        return reply


def lab_root_hints() -> Delegation:
    lines = []
    for s in SERVERS:
        if s.zones and "." in s.zones:
            lines.append(f". 3600000 NS {s.name}")
            lines.append(f"{s.name} 3600000 A {s.address}")
    return parse_root_hints("\n".join(lines))


def lab_service(
    clock: FakeClock,
    network: LabNetwork,
    *,
    settings: EngineSettings | None = None,
    cache_settings: CacheSettings | None = None,
    seed: int = 0,
) -> ResolverService:
    state = SharedState(
        cache=RecordCache(cache_settings or CacheSettings(), timer=clock),
        selection=ServerSelection(),
        root_hints=lab_root_hints(),
    )
    return ResolverService(
        settings=settings or EngineSettings(),
        state=state,
        network=network,
        clock=clock,
        rng=random.Random(seed),
    )
