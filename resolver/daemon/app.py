"""Composition root: build the resolver from its configuration, serve, shut down.

The only place that picks concrete implementations: the monotonic clock, the system's
unpredictable random source (RFC 5452 §9.2), the asyncio network. Tests and the
replay harness build the same objects with their own clock and network. The start-up
steps that can fail on the operator's setup are in resolver.daemon.startup, the policy
put in force at start and on SIGHUP in resolver.daemon.policy.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from resolver.daemon.cache_file import CacheFileKeeper, worker_cache_path
from resolver.daemon.collector import (
    collect_young_at_intervals,
    freeze_after_collections,
    freeze_at_intervals,
    raise_young_threshold,
)
from resolver.daemon.config import ServeConfig, SystemSettings
from resolver.daemon.control import ControlServer
from resolver.daemon.metrics import CountingNetwork, MetricsServer
from resolver.daemon.policy import install_policy, reload_policy
from resolver.daemon.runtime_watch import RuntimeWatch
from resolver.daemon.startup import (
    StartupError,
    drop_privileges,
    host_port,
    start_control,
    start_encrypted_listeners,
    start_metrics,
)
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.cache import RecordCache
from resolver.engine.cache_budget import split_bytes
from resolver.engine.delegation import Delegation, load_root_hints
from resolver.engine.driver import Clock
from resolver.engine.network import Network
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.server.answer_cache import AnswerCache
from resolver.server.handler import QueryHandler
from resolver.server.metrics import (
    Family,
    Metrics,
    core_families,
    counter,
)
from resolver.service.prefetch import PREFETCH_FRACTION
from resolver.service.resolver_service import ResolverService
from resolver.upstream.randomness import PooledSystemRandom

if TYPE_CHECKING:
    from resolver.daemon.encrypted import EncryptedListeners
    from resolver.server.fast_path import FastListener
    from resolver.service.cachedb_tier import CacheDbSettings, CacheDbTier
    from resolver.upstream.forwarding import ForwardLoopGuard

# StartupError, drop_privileges and install_policy live in resolver.daemon.startup and
# resolver.daemon.policy; the callers of the composition root find them here too.
__all__ = ["App", "StartupError", "build", "drop_privileges", "install_policy", "run", "serve"]

log = logging.getLogger("resolver")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class App:
    service: ResolverService
    handler: QueryHandler
    state: SharedState


def _raise_descriptor_limit(wanted: int) -> None:
    """Raise the soft limit on open files toward `wanted`, within the hard limit, as
    Unbound does for its outgoing-range: upstream sockets may use half of it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit to %d: %s", target, exc)


def build(
    config: ServeConfig,
    *,
    root_hints: Delegation,
    network: Network | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    configured_zones: dict[str, Delegation] | None = None,
    wall_clock: Clock = time.time,
) -> App:
    """Wire up cache, server selection, service and handler.

    Forward and stub zones come from `config.forwarding` unless `configured_zones` is given.
    """
    from resolver.upstream import forwarding

    if configured_zones is None:
        configured_zones = forwarding.configured_zones(
            config.forwarding, default_port=config.engine.upstream_port
        )
    network, loop_guard = _upstream_network(config, network, configured_zones, clock)
    metrics = Metrics()
    network = CountingNetwork(network, metrics)
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
        rng=rng if rng is not None else PooledSystemRandom(),
        forward_first_zones=forward_first,
        wall_clock=wall_clock,
    )
    answers = _answer_cache(config, state, clock)
    state.cache.flush_listeners.append(answers.clear)
    handler = QueryHandler(service, loop_guard=loop_guard, answers=answers, metrics=metrics,
                           max_udp_reply=config.max_udp_size)
    if config.cachedb is not None:
        handler.cachedb = _start_cachedb(config, config.cachedb, metrics)
    install_policy(handler, config.system)
    metrics.add_collector(lambda: core_families(
        queries=handler.queries, rcodes=handler.rcodes, service=service.stats(),
        answer_cache_hits=answers.hits, answer_cache_entries=len(answers),
        answer_cache_bytes=answers.size_bytes))
    return App(service=service, handler=handler, state=state)


def _upstream_network(
    config: ServeConfig, network: Network | None, configured_zones: dict[str, Delegation],
    clock: Clock,
) -> tuple[Network, ForwardLoopGuard | None]:
    """The network the engine asks through (the asyncio one unless given) and, with forward
    or stub zones, the guard against forwarding loops that it then goes through."""
    from resolver.upstream import forwarding

    if network is None:
        from resolver.upstream.exchange import MAX_OUTSTANDING, AsyncioNetwork

        _raise_descriptor_limit(2 * MAX_OUTSTANDING + 1024)
        network = AsyncioNetwork(tls_ca_file=config.forwarding.tls_ca_file)
    if not configured_zones:
        return network, None
    # Upstreams with their own port or TLS name; loop and RA checks.
    loop_guard = forwarding.ForwardLoopGuard(clock=clock)
    return forwarding.ForwardingNetwork(network, loop_guard), loop_guard


def _answer_cache(config: ServeConfig, state: SharedState, clock: Clock) -> AnswerCache:
    """The cache of whole replies in front of the engine, with its share of the cache bytes."""
    return AnswerCache(
        clock=clock,
        max_entries=config.cache.max_entries,
        max_bytes=(split_bytes(config.cache.max_bytes)[1]
                   if config.cache.max_bytes is not None else None),
        refresh_fraction=PREFETCH_FRACTION if config.cache.prefetch else 0.0,
        negative_stamp=state.cache.negative_soa_stamp,
        round_robin=config.cache.rrset_roundrobin,
        max_udp_reply=config.max_udp_size,
    )


def _start_cachedb(config: ServeConfig, settings: CacheDbSettings, metrics: Metrics
                   ) -> CacheDbTier:
    """The shared second-level cache (`--cachedb`), with the stale window of the cache."""
    from resolver.daemon.cachedb_redis import start_cachedb

    stale_window = config.cache.max_stale_ttl_s if config.cache.stale_answer_enable else 0
    return start_cachedb(settings, stale_window_s=stale_window,
                         stale_ttl_s=config.cache.stale_answer_ttl_s,
                         max_ttl_s=config.cache.max_ttl_s, metrics=metrics)


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
    config: ServeConfig,
    *,
    ready: asyncio.Event | None = None,
    reuse_port: bool = False,
    reload: Callable[[], ServeConfig] | None = None,
    worker_index: int | None = None,
) -> None:
    """Run the resolver until SIGINT or SIGTERM (`reuse_port`: one of several workers,
    `worker_index` its number, which names its control socket).

    SIGHUP calls `reload` for the configuration as it now reads (the file re-read, the
    command line over it) and puts its policy in force without touching the caches.
    """
    as_started = config
    config, root_hints = _prepared(config)
    app = build(config, root_hints=root_hints)
    keeper = _cache_file_keeper(app, config, worker_index)
    if keeper is not None:
        keeper.load()  # before the listener answers: the first clients see the old cache
    if app.handler.cachedb is not None:  # connected before the first client asks
        await app.handler.cachedb.warm_up(timeout_s=2.0)
    listener, encrypted = await _start_listeners(app, config, reuse_port, worker_index)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _log_listening(listener, config.root_hints_file)
    watch = _watch_runtime(app.handler.metrics or Metrics(), listener)
    try:
        metrics_server = await start_metrics(app.handler, config.system, reuse_port)
        control = await start_control(app.service, app.handler, config.control_socket,
                                      worker_index)
        _run_as_configured_user(config.system)  # every privileged socket is bound by now
    except StartupError:
        await listener.stop()
        raise

    def on_sighup() -> None:
        reload_policy(app.handler, as_started, reload)
        if encrypted is not None:
            encrypted.reload_certificates()

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    if ready is not None:
        ready.set()
    chores = _Chores.start(app, config, keeper, stop)
    try:
        await stop.wait()
    finally:
        chores.end_timed()
        watch.stop()
        stop.set()  # also when leaving on an error: the timed saves end
        await _shut_down(app, _Servers(listener, encrypted, metrics_server, control),
                         keeper, chores)


async def _start_listeners(
    app: App, config: ServeConfig, reuse_port: bool, worker_index: int | None
) -> tuple[FastListener, EncryptedListeners | None]:
    """The UDP and TCP listener, then the encrypted ones; if these fail, the first stops."""
    from resolver.server.fast_path import FastListener as Listener

    listener = Listener(
        app.handler,
        [(addr.ip, addr.port) for addr in config.listen],
        tcp_idle_timeout_s=config.tcp_idle_timeout_s,
        max_tcp_clients=config.max_tcp_clients,
        reuse_port=reuse_port,
    )
    await listener.start()
    try:
        encrypted = await start_encrypted_listeners(
            app.handler, config.encrypted, (worker_index or 0) if reuse_port else None)
    except BaseException:
        await listener.stop()
        raise
    return listener, encrypted


def _log_listening(listener: FastListener, root_hints_file: str) -> None:
    bound = ", ".join(sorted({host_port(ip, port) for ip, port, _ in listener.bound_addresses}))
    log.info("resolver listening on %s (UDP and TCP), root hints %s", bound, root_hints_file)


def _run_as_configured_user(system: SystemSettings) -> None:
    """Switch to `--user` (Unbound's username), if given; StartupError if that fails."""
    if system.username is not None:
        drop_privileges(system.username)
        log.info("running as user %s", system.username)


def _watch_runtime(metrics: Metrics, listener: FastListener) -> RuntimeWatch:
    """Collections and loop stalls (resolver.daemon.runtime_watch) and the listener's own
    counters, counted for /metrics from now on."""
    watch = RuntimeWatch()
    watch.start()
    metrics.add_collector(watch.families)
    metrics.add_collector(lambda: _listener_counters(listener))
    return watch


@dataclass(frozen=True, slots=True)
class _Servers:
    """What serves clients and operators once started, stopped at shutdown in this order."""

    listener: FastListener
    encrypted: EncryptedListeners | None
    metrics: MetricsServer | None
    control: ControlServer | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Chores:
    """What runs beside the servers until the stop: the root check, the timed cache saves,
    the collector's pacing (no full-collection pauses, short young ones) and the writer
    of the shared cache."""

    priming: asyncio.Task[None]
    saving: asyncio.Task[None] | None
    freezing: asyncio.Task[None]
    pacing: asyncio.Task[None]
    unfreeze: Callable[[], None]
    thresholds: tuple[int, int, int]  # the collector's own, put back at the end
    cachedb: CacheDbTier | None
    writing: asyncio.Task[None] | None

    @classmethod
    def start(cls, app: App, config: ServeConfig, keeper: CacheFileKeeper | None,
              stop: asyncio.Event) -> _Chores:
        cachedb = app.handler.cachedb
        chores = cls(
            priming=asyncio.create_task(_check_root(app, config)),
            saving=asyncio.create_task(keeper.save_until(stop)) if keeper is not None else None,
            freezing=asyncio.create_task(freeze_at_intervals(stop)),
            pacing=asyncio.create_task(collect_young_at_intervals(stop)),
            unfreeze=freeze_after_collections(),
            thresholds=raise_young_threshold(),
            cachedb=cachedb,
            writing=asyncio.create_task(cachedb.run_writer()) if cachedb is not None else None,
        )
        if cachedb is not None:
            log.info("cachedb %s: read on a miss, within %g ms; written behind",
                     cachedb.store.description, cachedb.settings.read_budget_ms)
        return chores

    def end_timed(self) -> None:
        """Cancel the root check and the collector's pacing; the collector as it was."""
        self.priming.cancel()
        self.freezing.cancel()
        self.pacing.cancel()
        self.unfreeze()
        gc.set_threshold(*self.thresholds)


async def _shut_down(app: App, servers: _Servers, keeper: CacheFileKeeper | None,
                     chores: _Chores) -> None:
    """Stop listening, give the queries in flight up to 2 s, save the cache, close the rest."""
    log.info("shutting down: no new queries; up to 2 s for those in flight")
    await servers.listener.stop(drain_s=2.0)
    if servers.encrypted is not None:
        await servers.encrypted.stop()
    if keeper is not None and chores.saving is not None:
        await chores.saving  # a timed save under way is finished, then the final one
        if await keeper.save():
            log.info("cache saved to %s", keeper.path)
    if servers.metrics is not None:
        await servers.metrics.stop()
    if servers.control is not None:
        await servers.control.stop()
    if chores.cachedb is not None and chores.writing is not None:
        chores.writing.cancel()
        await chores.cachedb.close(drain_s=1.0)
    close_network = getattr(app.service.network, "close", None)
    if close_network is not None:  # connections kept for reuse (DNS over TLS)
        await close_network()


def _prepared(config: ServeConfig) -> tuple[ServeConfig, Delegation]:
    """The configuration as the engine runs it, and the root hints: our own listen
    addresses are never asked, and DNSSEC validation is set up."""
    root_hints = load_root_hints(Path(config.root_hints_file))
    # Our listen IPs (never asked while iterating) and endpoints (never asked at all).
    never_query = frozenset(addr.ip for addr in config.listen) | frozenset(
        f"{addr.ip}@{addr.port}" for addr in config.listen)
    config = _with_engine(config, never_query | config.engine.never_query)
    from resolver.daemon.validation_setup import TrustAnchorError, with_validation

    try:
        return with_validation(config, root_hints), root_hints
    except TrustAnchorError as exc:
        raise StartupError(str(exc)) from None


def _listener_counters(listener: FastListener) -> list[Family]:
    """The listener's own counters, for /metrics."""
    return [
        counter("resolver_udp_dropped_total", "Datagrams dropped: too many pending, or stopping.",
                listener.udp_dropped),
        counter("resolver_tcp_connections_total", "TCP connections served.",
                listener.tcp_connections),
        counter("resolver_tcp_rejected_total", "TCP connections closed at once: too many open.",
                listener.tcp_rejected),
    ]


def _cache_file_keeper(
    app: App, config: ServeConfig, worker_index: int | None
) -> CacheFileKeeper | None:
    """The keeper of `--cache-file`: worker N of several keeps its own cache in PATH.N."""
    if config.cache_file is None:
        return None
    path = worker_cache_path(Path(config.cache_file), worker_index or 0)
    return CacheFileKeeper(app.state.cache, path, interval_s=config.cache_save_interval_s)


def _with_engine(config: ServeConfig, never_query: frozenset[str]) -> ServeConfig:
    from dataclasses import replace

    return replace(config, engine=replace(config.engine, never_query=never_query))


async def _check_root(app: App, config: ServeConfig) -> None:
    """Tell the operator at once when no root server can be reached (RFC 8109 priming)."""
    outcome = await app.service.resolve(Question(".", RRType.NS), counted=False)
    root = app.state.configured_zones.get(".")
    if root is not None and root.recursion_desired:
        if outcome.rcode != Rcode.NOERROR or not outcome.answer:
            log.warning("no upstream resolver answered the first query (%s); forwarding to %s",
                        outcome.reason or Rcode(outcome.rcode).name,
                        ", ".join(a for ns in root.servers for a in ns.address_texts()))
        else:
            log.info("forwarding: the upstream resolvers answer")
        return
    if outcome.rcode != Rcode.NOERROR or not outcome.answer:
        log.warning("no root server answered the priming query (%s); %s",
                    outcome.reason or Rcode(outcome.rcode).name,
                    _unreachable_hints_advice(config))
    else:
        log.info("root priming succeeded: %d root servers", len(outcome.answer))


def _unreachable_hints_advice(config: ServeConfig) -> str:
    """What to do when no server of the root hints answers: for the lab's own hints,
    the port it wrote into them, or that it is not running; for others, the lab."""
    from resolver.daemon.hints_file import stated_port

    path = config.root_hints_file
    try:
        lab_port = stated_port(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        lab_port = None
    if lab_port is not None and lab_port != config.engine.upstream_port:
        return (f"the root hints in {path} come from the lab, whose servers listen on port "
                f"{lab_port}, but queries go to port {config.engine.upstream_port}: restart "
                f"with --upstream-port {lab_port}")
    if lab_port is not None:
        return (f"the root hints in {path} come from the lab on port {lab_port}: is it "
                f"running? (`resolver lab --hints-file {path} --port {lab_port}`)")
    return (f"the root hints in {path} are unreachable from here. To try the resolver "
            "offline, run `resolver lab --hints-file lab.hints` and start it with "
            "--root-hints lab.hints")
