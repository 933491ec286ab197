"""Composition root: build the resolver from its configuration, serve, shut down.

The only place that picks concrete implementations: the monotonic clock, the system's
unpredictable random source (RFC 5452 §9.2), the asyncio network. Tests and the
replay harness build the same objects with their own clock and network.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from resolver.answer_cache import AnswerCache
from resolver.cache import RecordCache
from resolver.config import ServeConfig
from resolver.control import ControlError, ControlServer, default_socket_path
from resolver.delegation import Delegation, load_root_hints
from resolver.driver import Clock
from resolver.engine import SharedState
from resolver.handler import QueryHandler
from resolver.network import Network
from resolver.prefetch import PREFETCH_FRACTION
from resolver.selection import ServerSelection
from resolver.service import ResolverService
from resolver.wire import Question, Rcode, RRType

log = logging.getLogger("resolver")
T = TypeVar("T")


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
    """Wire up cache, server selection, service and handler.

    Forward and stub zones come from `config.forwarding` unless `configured_zones` is given.
    """
    from resolver import forwarding

    if configured_zones is None:
        configured_zones = forwarding.configured_zones(
            config.forwarding, default_port=config.engine.upstream_port
        )
    if network is None:
        from resolver.transport import AsyncioNetwork

        network = AsyncioNetwork(tls_ca_file=config.forwarding.tls_ca_file)
    loop_guard = None
    if configured_zones:  # upstreams with their own port or TLS name; loop and RA checks
        loop_guard = forwarding.ForwardLoopGuard(clock=clock)
        network = forwarding.ForwardingNetwork(network, loop_guard)
    state = SharedState(
        cache=RecordCache(config.cache, timer=clock),
        selection=ServerSelection(),
        root_hints=root_hints,
        configured_zones=configured_zones,
    )
    forward_first = (forwarding.forward_zone_names(configured_zones)
                     if config.forwarding.forward_first else frozenset())
    service = ResolverService(
        settings=config.engine,
        state=state,
        network=network,
        clock=clock,
        rng=rng if rng is not None else random.SystemRandom(),
        forward_first_zones=forward_first,
    )
    answers = AnswerCache(
        clock=clock,
        max_entries=config.cache.max_entries,
        refresh_fraction=PREFETCH_FRACTION if config.cache.prefetch else 0.0,
    )
    state.cache.flush_listeners.append(answers.clear)
    handler = QueryHandler(service, loop_guard=loop_guard, answers=answers)
    return App(service=service, handler=handler, state=state)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on uvloop when it is installed, else on asyncio's own loop.

    RESOLVER_EVENT_LOOP=asyncio picks the standard loop anyway (to compare, or rule uvloop out).
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if os.environ.get("RESOLVER_EVENT_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def serve(
    config: ServeConfig, *, ready: asyncio.Event | None = None, reuse_port: bool = False
) -> None:
    """Run the resolver until SIGINT or SIGTERM (`reuse_port`: one of several workers)."""
    from resolver.workers import FastListener as Listener

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
        reuse_port=reuse_port,
    )
    await listener.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(sorted({_fmt(ip, port) for ip, port, _ in listener.bound_addresses}))
    log.info("resolver listening on %s (UDP and TCP), root hints %s",
             bound, config.root_hints_file)
    control = await _start_control(app, config)
    if ready is not None:
        ready.set()
    priming = asyncio.create_task(_check_root(app, config))
    try:
        await stop.wait()
    finally:
        priming.cancel()
        log.info("shutting down")
        await listener.stop(drain_s=2.0)
        if control is not None:
            await control.stop()
        close_network = getattr(app.service.network, "close", None)
        if close_network is not None:  # connections kept for reuse (DNS over TLS)
            await close_network()


async def _start_control(app: App, config: ServeConfig) -> ControlServer | None:
    """The local control channel (`resolver cache ...`); serving DNS does not depend on it."""
    path = Path(config.control_socket) if config.control_socket else default_socket_path()
    control = ControlServer(path, app.service, app.handler)
    try:
        await control.start()
    except ControlError as exc:
        log.warning("no control channel: %s", exc)
        return None
    log.info("control channel on %s", path)
    return control


def _with_engine(config: ServeConfig, never_query: frozenset[str]) -> ServeConfig:
    from dataclasses import replace

    return replace(config, engine=replace(config.engine, never_query=never_query))


async def _check_root(app: App, config: ServeConfig) -> None:
    """Tell the operator at once when no root server can be reached (RFC 8109 priming)."""
    outcome = await app.service.resolve(Question(".", RRType.NS))
    root = app.state.configured_zones.get(".")
    if root is not None and root.recursion_desired:
        if outcome.rcode != Rcode.NOERROR or not outcome.answer:
            log.warning("no upstream resolver answered the first query (%s); forwarding to %s",
                        outcome.reason or Rcode(outcome.rcode).name,
                        ", ".join(a for ns in root.servers for a in ns.addresses))
        else:
            log.info("forwarding: the upstream resolvers answer")
        return
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
