"""Composition root: build the resolver from its configuration, serve, shut down.

The only place that picks concrete implementations: the monotonic clock, the system's
unpredictable random source (RFC 5452 §9.2), the asyncio network. Tests and the
replay harness build the same objects with their own clock and network.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from resolver.cache import RecordCache
from resolver.config import ServeConfig
from resolver.delegation import Delegation, load_root_hints
from resolver.driver import Clock
from resolver.engine import SharedState
from resolver.handler import QueryHandler
from resolver.network import Network
from resolver.selection import ServerSelection
from resolver.service import ResolverService
from resolver.wire import Question, Rcode, RRType

log = logging.getLogger("resolver")


@dataclass(frozen=True, slots=True)
class App:
    service: ResolverService
    handler: QueryHandler
    state: SharedState


def build(
    config: ServeConfig,
    *,
    root_hints: Delegation,
    network: Network | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    configured_zones: dict[str, Delegation] | None = None,
) -> App:
    """Wire up cache, server selection, service and handler."""
    if network is None:
        from resolver.transport import AsyncioNetwork

        network = AsyncioNetwork()
    state = SharedState(
        cache=RecordCache(config.cache, timer=clock),
        selection=ServerSelection(),
        root_hints=root_hints,
        configured_zones=configured_zones or {},
    )
    service = ResolverService(
        settings=config.engine,
        state=state,
        network=network,
        clock=clock,
        rng=rng if rng is not None else random.SystemRandom(),
    )
    return App(service=service, handler=QueryHandler(service), state=state)


async def serve(config: ServeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the resolver until SIGINT or SIGTERM."""
    from resolver.listener import Listener

    root_hints = load_root_hints(Path(config.root_hints_file))
    never_query = frozenset(addr.ip for addr in config.listen)
    engine = config.engine
    config = _with_engine(config, never_query | engine.never_query)
    app = build(config, root_hints=root_hints)
    listener = Listener(
        app.handler,
        [(addr.ip, addr.port) for addr in config.listen],
        tcp_idle_timeout_s=config.tcp_idle_timeout_s,
        max_tcp_clients=config.max_tcp_clients,
    )
    await listener.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(sorted({_fmt(ip, port) for ip, port, _ in listener.bound_addresses}))
    log.info("resolver listening on %s (UDP and TCP), root hints %s",
             bound, config.root_hints_file)
    if ready is not None:
        ready.set()
    priming = asyncio.create_task(_check_root(app, config))
    try:
        await stop.wait()
    finally:
        priming.cancel()
        log.info("shutting down")
        await listener.stop(drain_s=2.0)


def _with_engine(config: ServeConfig, never_query: frozenset[str]) -> ServeConfig:
    from dataclasses import replace

    return replace(config, engine=replace(config.engine, never_query=never_query))


async def _check_root(app: App, config: ServeConfig) -> None:
    """Tell the operator at once when no root server can be reached (RFC 8109 priming)."""
    outcome = await app.service.resolve(Question(".", RRType.NS))
    if outcome.rcode != Rcode.NOERROR or not outcome.answer:
        log.warning(
            "no root server answered the priming query (%s); the root hints in %s are "
            "unreachable from here. To try the resolver offline, run `resolver lab "
            "--hints-file lab.hints` and start it with --root-hints lab.hints",
            outcome.reason or Rcode(outcome.rcode).name, config.root_hints_file,
        )
    else:
        log.info("root priming succeeded: %d root servers", len(outcome.answer))


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
