"""Composition root: build the resolver from its configuration, serve, shut down.

The only place that picks concrete implementations: the monotonic clock, the system's
unpredictable random source (RFC 5452 §9.2), the asyncio network. Tests and the
replay harness build the same objects with their own clock and network.
"""

from __future__ import annotations

import asyncio
import errno
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
from resolver.daemon.config import ListenAddress, ServeConfig, SystemSettings
from resolver.daemon.control import (
    ControlError,
    ControlServer,
    default_socket_path,
    worker_socket_path,
)
from resolver.daemon.metrics import CountingNetwork, MetricsServer
from resolver.daemon.runtime_watch import RuntimeWatch
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.cache import RecordCache
from resolver.engine.cache_budget import split_bytes
from resolver.engine.delegation import Delegation, load_root_hints
from resolver.engine.driver import Clock
from resolver.engine.network import Network
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.server.acl import AccessControl
from resolver.server.answer_cache import AnswerCache
from resolver.server.handler import QueryHandler
from resolver.server.local_zones import LocalZones, RebindingGuard
from resolver.server.metrics import (
    DEFAULT_METRICS_PORT,
    Family,
    Metrics,
    core_families,
    counter,
)
from resolver.server.ratelimit import IpRateLimiter
from resolver.service.prefetch import PREFETCH_FRACTION
from resolver.service.resolver_service import ResolverService
from resolver.upstream.randomness import PooledSystemRandom

if TYPE_CHECKING:
    from resolver.daemon.encrypted import EncryptedListeners
    from resolver.server.fast_path import FastListener

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
    if network is None:
        from resolver.upstream.exchange import MAX_OUTSTANDING, AsyncioNetwork

        _raise_descriptor_limit(2 * MAX_OUTSTANDING + 1024)
        network = AsyncioNetwork(tls_ca_file=config.forwarding.tls_ca_file)
    loop_guard = None
    if configured_zones:  # upstreams with their own port or TLS name; loop and RA checks
        loop_guard = forwarding.ForwardLoopGuard(clock=clock)
        network = forwarding.ForwardingNetwork(network, loop_guard)
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
    answers = AnswerCache(
        clock=clock,
        max_entries=config.cache.max_entries,
        max_bytes=(split_bytes(config.cache.max_bytes)[1]
                   if config.cache.max_bytes is not None else None),
        refresh_fraction=PREFETCH_FRACTION if config.cache.prefetch else 0.0,
        negative_stamp=state.cache.negative_soa_stamp,
        round_robin=config.cache.rrset_roundrobin,
        max_udp_reply=config.max_udp_size,
    )
    state.cache.flush_listeners.append(answers.clear)
    handler = QueryHandler(service, loop_guard=loop_guard, answers=answers, metrics=metrics,
                           max_udp_reply=config.max_udp_size)
    if config.cachedb is not None:
        from resolver.daemon.cachedb_redis import start_cachedb

        stale_window = config.cache.max_stale_ttl_s if config.cache.stale_answer_enable else 0
        handler.cachedb = start_cachedb(config.cachedb, stale_window_s=stale_window,
                                        stale_ttl_s=config.cache.stale_answer_ttl_s,
                                        max_ttl_s=config.cache.max_ttl_s, metrics=metrics)
    install_policy(handler, config.system)
    metrics.add_collector(lambda: core_families(
        queries=handler.queries, rcodes=handler.rcodes, service=service.stats(),
        answer_cache_hits=answers.hits, answer_cache_entries=len(answers),
        answer_cache_bytes=answers.size_bytes))
    return App(service=service, handler=handler, state=state)


def install_policy(handler: QueryHandler, system: SystemSettings) -> None:
    """Put the access control, local zones, rebinding protection, rate limit and query log of
    `system` in force, at start and on SIGHUP. Everything is built before anything is
    installed: a bad setting (ValueError, OSError) leaves the handler as it was."""
    access = AccessControl.from_texts(system.access_control)
    local_zones = LocalZones.from_settings(system.local_zones, system.local_data,
                                           system.hosts_files)
    rebinding = RebindingGuard.from_settings(system.private_addresses, system.private_domains)
    ratelimit = handler.ratelimit
    if ratelimit is None or ratelimit.qps != system.ip_ratelimit:  # same rate: keep the buckets
        ratelimit = IpRateLimiter(system.ip_ratelimit) if system.ip_ratelimit else None
    handler.access, handler.local_zones, handler.rebinding = access, local_zones, rebinding
    handler.ratelimit, handler.log_queries = ratelimit, system.log_queries
    handler.answers.clear()  # replies stored under the previous policy


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
    from resolver.server.fast_path import FastListener as Listener

    as_started = config
    config, root_hints = _prepared(config)
    app = build(config, root_hints=root_hints)
    keeper = _cache_file_keeper(app, config, worker_index)
    if keeper is not None:
        keeper.load()  # before the listener answers: the first clients see the old cache
    if app.handler.cachedb is not None:  # connected before the first client asks
        await app.handler.cachedb.warm_up(timeout_s=2.0)
    listener = Listener(
        app.handler,
        [(addr.ip, addr.port) for addr in config.listen],
        tcp_idle_timeout_s=config.tcp_idle_timeout_s,
        max_tcp_clients=config.max_tcp_clients,
        reuse_port=reuse_port,
    )
    await listener.start()
    try:
        encrypted = await _start_encrypted(app, config, (worker_index or 0) if reuse_port else None)
    except BaseException:
        await listener.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(sorted({_fmt(ip, port) for ip, port, _ in listener.bound_addresses}))
    log.info("resolver listening on %s (UDP and TCP), root hints %s",
             bound, config.root_hints_file)
    metrics = app.handler.metrics or Metrics()
    watch = RuntimeWatch()
    watch.start()
    metrics.add_collector(watch.families)
    metrics.add_collector(lambda: _listener_counters(listener))
    try:
        metrics_server = await _start_metrics(app, config, reuse_port)
    except StartupError:
        await listener.stop()
        raise
    control = await _start_control(app, config, worker_index)
    if config.system.username is not None:
        try:  # every privileged socket is bound by now (Unbound's username)
            drop_privileges(config.system.username)
        except StartupError:
            await listener.stop()
            raise
        log.info("running as user %s", config.system.username)
    def on_sighup() -> None:
        _reload(app, as_started, reload)
        if encrypted is not None:
            encrypted.reload_certificates()

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    if ready is not None:
        ready.set()
    priming = asyncio.create_task(_check_root(app, config))
    saving = asyncio.create_task(keeper.save_until(stop)) if keeper is not None else None
    freezing = asyncio.create_task(freeze_at_intervals(stop))  # no full-collection pauses
    pacing = asyncio.create_task(collect_young_at_intervals(stop))  # short young ones
    unfreeze = freeze_after_collections()
    thresholds = raise_young_threshold()
    cachedb = app.handler.cachedb
    writing = asyncio.create_task(cachedb.run_writer()) if cachedb is not None else None
    if cachedb is not None:
        log.info("cachedb %s: read on a miss, within %g ms; written behind",
                 cachedb.store.description, cachedb.settings.read_budget_ms)
    try:
        await stop.wait()
    finally:
        priming.cancel()
        freezing.cancel()
        pacing.cancel()
        unfreeze()
        gc.set_threshold(*thresholds)
        watch.stop()
        stop.set()  # also when leaving on an error: the timed saves end
        log.info("shutting down: no new queries; up to 2 s for those in flight")
        await listener.stop(drain_s=2.0)
        if encrypted is not None:
            await encrypted.stop()
        if keeper is not None and saving is not None:
            await saving  # a timed save under way is finished, then the final one
            if await keeper.save():
                log.info("cache saved to %s", keeper.path)
        if metrics_server is not None:
            await metrics_server.stop()
        if control is not None:
            await control.stop()
        if cachedb is not None and writing is not None:
            writing.cancel()
            await cachedb.close(drain_s=1.0)
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


class StartupError(Exception):
    """The server cannot start as configured; the message is one line for the operator."""


async def _start_encrypted(app: App, config: ServeConfig, worker_index: int | None
                           ) -> EncryptedListeners | None:
    """DoT, DoH and DoQ listeners (resolver.daemon.encrypted), if configured; a worker
    (`worker_index` not None) shares their addresses with the others."""
    from resolver.daemon.encrypted import start_encrypted
    from resolver.server.tls_context import CertificateError

    try:
        return await start_encrypted(app.handler, config.encrypted, worker_index=worker_index)
    except CertificateError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:  # the message names the listener and the address
        raise StartupError(exc.strerror or str(exc)) from None


async def _start_metrics(app: App, config: ServeConfig, worker: bool) -> MetricsServer | None:
    """The Prometheus endpoint (`--metrics ADDR:PORT`), if configured."""
    if config.system.metrics is None or app.handler.metrics is None:
        return None
    if worker:  # the workers would race for the one port, each with only its own counts
        log.warning("--metrics is not served with --workers above 1 (each worker counts "
                    "alone); run one worker to scrape it")
        return None
    address = ListenAddress.parse(config.system.metrics, default_port=DEFAULT_METRICS_PORT)
    server = MetricsServer(app.handler.metrics, address.ip, address.port)
    try:
        await server.start()
    except OSError as exc:
        reason = ("the address is already in use" if exc.errno == errno.EADDRINUSE
                  else exc.strerror or str(exc))
        raise StartupError(f"cannot serve metrics on {address}: {reason}") from None
    log.info("metrics on http://%s/metrics", _fmt(address.ip, server.port))
    return server


def drop_privileges(username: str) -> None:
    """Become `username` (its uid, gid and groups) for good; StartupError if that fails."""
    import pwd

    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        raise StartupError(f"cannot run as user {username!r}: no such user") from None
    if os.geteuid() == entry.pw_uid:
        return
    if os.geteuid() != 0:
        raise StartupError(f"cannot switch to user {username!r}: only root can (start as "
                           f"root, or leave out --user)")
    try:
        os.initgroups(username, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)  # last: after it nothing can be taken back
    except OSError as exc:
        raise StartupError(f"cannot switch to user {username!r}: {exc.strerror}") from None


def _reload(app: App, as_started: ServeConfig, reload: Callable[[], ServeConfig] | None) -> None:
    """SIGHUP: re-read the configuration; apply the policy, keep the caches."""
    from resolver.daemon.config_file import ConfigFileError, needs_restart

    if reload is None:
        log.info("SIGHUP: nothing to reload (the configuration came from the command line; "
                 "use --config FILE)")
        return
    try:
        new = reload()
        install_policy(app.handler, new.system)
        # Stored replies were shaped by the old policy (local data, private addresses).
        app.handler.answers.clear()
    except Exception as exc:  # the running configuration stays: say why, one line each
        lines = exc.errors if isinstance(exc, ConfigFileError) else [str(exc)]
        for line in lines:
            log.error("reload failed, nothing changed: %s", line)
        return
    logging.getLogger().setLevel(logging.DEBUG if new.system.verbose else logging.INFO)
    for name in needs_restart(as_started, new):
        log.warning("reload: %s changed, but takes effect only after a restart (listen "
                    "addresses, ports, caches and upstreams are set up at start)", name)
    system = new.system
    log.info("configuration reloaded from %s: %d access-control rules, %d local zones, "
             "%d local-data records, ip-ratelimit %s, log-queries %s; the cache is kept",
             system.config_file or "the command line", len(system.access_control),
             len(system.local_zones), len(system.local_data), system.ip_ratelimit or "off",
             "on" if system.log_queries else "off")


async def _start_control(
    app: App, config: ServeConfig, worker_index: int | None
) -> ControlServer | None:
    """The local control channel (`resolver cache ...`); serving DNS does not depend on it.

    With several workers, each has its own: worker 0 on the configured path, worker N on
    that path with ".N" appended (control.worker_socket_path); the client asks them all.
    """
    path = Path(config.control_socket) if config.control_socket else default_socket_path()
    if worker_index:
        path = worker_socket_path(path, worker_index)
    control = ControlServer(path, app.service, app.handler)
    try:
        await control.start()
    except ControlError as exc:
        log.warning("no control channel: %s", exc)
        return None
    log.info("control channel on %s", path)
    return control


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


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
