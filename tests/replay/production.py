"""The real resolver behind the replay seams: production code, scripted network, fake clock.

Only two things differ from `resolver serve`: the `Network` hands each upstream query to
the scenario's transport callable, and the clock is the scenario's virtual clock. The
handler, service, engine, cache and server selection are the production objects.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

from resolver.daemon.app import build
from resolver.daemon.config import ServeConfig, SystemSettings
from resolver.dnssec.anchors import AnchorFileError, parse_trust_anchors
from resolver.engine.delegation import Delegation, forwarders, parse_root_hints
from resolver.engine.network import ServerAddress, Transport
from resolver.engine.settings import CacheSettings, EngineSettings, ValidationSettings
from resolver.server.listener import Client
from resolver.upstream.forwarding import parse_upstream
from tests.replay.seam import FakeClock, ReplayConfig, ResolverUnderTest
from tests.replay.seam import Transport as ScriptedTransport


class ScriptedNetwork:
    """A `Network` whose every exchange is answered by the scenario (port is always 53)."""

    def __init__(self, transport: ScriptedTransport) -> None:
        self._transport = transport

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        return self._transport(server.ip, query, transport is Transport.TCP)


class ReplayedResolver:
    def __init__(self, cfg: ReplayConfig, transport: ScriptedTransport, clock: FakeClock) -> None:
        access = tuple(rule.strip() for rule in cfg.extra.get("access-control", "").split(";")
                       if rule.strip())
        config = ServeConfig(
            # Unbound's access-control lines as written (e.g. "127.0.0.1 allow_snoop").
            system=SystemSettings(access_control=access),
            max_udp_size=cfg.max_udp_size,
            engine=EngineSettings(
                do_ip4=cfg.do_ip4,
                do_ip6=cfg.do_ip6,
                do_not_query_localhost=cfg.do_not_query_localhost,
                qname_minimisation=cfg.qmin,
                qname_minimisation_qtype=2 if cfg.qmin_qtype == "NS" else 1,
                harden_glue=cfg.harden_glue,
                prime_root=cfg.prime_root,
                ns_addresses_in_answer=cfg.ns_addresses_in_answer,
                validation=_validation(cfg),
            ),
            cache=CacheSettings(
                min_ttl_s=cfg.cache_min_ttl,
                max_ttl_s=cfg.cache_max_ttl,
                min_negative_ttl_s=cfg.cache_min_negative_ttl,
                max_negative_ttl_s=cfg.cache_max_negative_ttl,
                stale_answer_enable=cfg.serve_stale,
                stale_answer_ttl_s=cfg.serve_stale_reply_ttl,
                # Unbound's serve-expired-ttl 0 means "no limit".
                max_stale_ttl_s=cfg.serve_stale_ttl or 86_400 * 365,
                stale_answer_client_timeout_ms=cfg.serve_stale_client_timeout_ms,
                prefetch=cfg.prefetch,
            ),
        )
        zones: dict[str, Delegation] = {}
        if cfg.forwarders:
            zones["."] = forwarders(map(parse_upstream, cfg.forwarders))
        for zone, addresses in cfg.forward_zones.items():
            zones[zone] = forwarders(map(parse_upstream, addresses), zone=zone)
        for zone, addresses in cfg.stub_zones.items():
            stub = forwarders(map(parse_upstream, addresses), zone=zone)
            zones[stub.zone] = replace(stub, recursion_desired=False, source="stub zone")
        hints = parse_root_hints(
            "\n".join(f". 3600000 NS {name}\n{name} 3600000 {'AAAA' if ':' in ip else 'A'} {ip}"
                      for name, ip in cfg.root_hints)
        )
        self.app = build(
            config,
            root_hints=hints,
            network=ScriptedNetwork(transport),
            clock=clock.now,
            rng=random.Random(5452),
            configured_zones=zones,
            # The scenario's clock is epoch seconds (val-override-date): signatures too.
            wall_clock=clock.now,
        )
        # Each client query runs its own event loop here: background work (prefetch,
        # refreshes after a stale answer) waits for run_background().
        self.app.service.defer_background = True

    def handle(
        self, wire: bytes, *, tcp: bool = False, client_ip: str = "127.0.0.1"
    ) -> bytes | None:
        client = Client(ip=client_ip, port=53000, transport=Transport.TCP if tcp else Transport.UDP)
        return asyncio.run(self.app.handler.handle(wire, client))

    def run_background(self) -> None:
        """Finish prefetches and stale-answer refreshes queued by earlier queries."""
        asyncio.run(self.app.service.run_background())


def _validation(cfg: ReplayConfig) -> ValidationSettings | None:
    """The scenario's trust anchors when it runs the validator module."""
    if not cfg.validate:
        return None
    try:
        anchors = parse_trust_anchors("\n".join(cfg.trust_anchors))
    except AnchorFileError:
        return None
    return ValidationSettings(anchors=anchors,
                              insecure_domains=tuple(cfg.negative_trust_anchors))


def make_resolver(
    cfg: ReplayConfig, transport: ScriptedTransport, clock: FakeClock
) -> ResolverUnderTest:
    return ReplayedResolver(cfg, transport, clock)
