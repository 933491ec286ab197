"""Serving processes: N worker processes on one address.

`run_workers` runs N copies of the server, each in its own process with its own caches, all
bound to the same addresses with SO_REUSEPORT, so the kernel spreads clients over them
(Unbound's num-threads with so-reuseport). The parent only supervises: it forwards SIGTERM
and SIGINT to every worker, waits for them, and exits 0; SIGHUP (reload) is passed on too.
A worker that dies after it was serving (killed, say) is logged and restarted in its slot
while the others keep serving; one that stops within MIN_UPTIME_S of its start (it could
not bind, say), or restarts beyond MAX_RESTARTS_PER_MINUTE, makes the parent stop the
others and fail: a crash loop is the service manager's to see. Before any worker starts,
every address is bound once without SO_REUSEPORT: if another server (ours included, whose
workers would otherwise share the port silently) holds it, the command is refused. Workers
whose parent vanishes stop too. The cached UDP fast path each worker serves with is
resolver/server/fast_path.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from resolver.daemon.config import ServeConfig

if TYPE_CHECKING:  # multiprocessing costs megabytes of RSS: imported only to start workers
    from multiprocessing.context import ForkContext
    from multiprocessing.process import BaseProcess

log = logging.getLogger("resolver")

#: What signal.signal returns: the handler a signal had.
_Handler = Callable[[int, FrameType | None], Any] | int | None

#: How long workers get to drain and exit after the parent forwarded a stop signal.
STOP_GRACE_S = 10.0
#: How often a worker checks that its parent is still there.
_PARENT_CHECK_S = 1.0
#: A worker that stops sooner than this after its start could not start: no restart.
MIN_UPTIME_S = 2.0
#: Restarts allowed within a minute before the parent gives up (systemd's default
#: StartLimitBurst is 5 in 10 s; a worker that dies more often than this is broken).
MAX_RESTARTS_PER_MINUTE = 10


class AddressInUse(Exception):
    """A listen address is already held by another socket (another server on our port)."""


def probe_addresses_free(config: ServeConfig) -> None:
    """Bind every listen address, UDP and TCP, without SO_REUSEPORT, and release it at once.

    Sockets bound with SO_REUSEPORT by the same user let another SO_REUSEPORT socket bind
    beside them, so a second `resolver serve --workers` would start silently and split the
    traffic; a socket without the option is refused while any other holds the port.
    """
    for address in config.listen:
        family = socket.AF_INET6 if ":" in address.ip else socket.AF_INET
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    # Lets a port in TIME_WAIT after our own last run be reused, as the server
                    # itself does; a listening socket still refuses the bind.
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address.ip, address.port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        transport = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                        raise AddressInUse(
                            f"{address.ip} port {address.port} ({transport}) is already in use "
                            "by another server; refusing to share it") from None
                    raise


def run_workers(
    config: ServeConfig, workers: int, *, reload: Callable[[], ServeConfig] | None = None
) -> int:
    """Serve with `workers` processes until SIGTERM/SIGINT; the exit status for the command.

    SIGHUP is passed on to every worker, which reloads its configuration with `reload`.
    """
    import multiprocessing

    if any(address.port == 0 for address in config.listen):
        log.error("--workers needs explicit ports: with port 0 each worker would get its own")
        return 2
    # fork: the workers start from this process's configuration, with no event loop running yet.
    context = multiprocessing.get_context("fork")
    # Signals are caught before any worker exists, so none can be orphaned by an early one.
    signals = _CaughtSignals.install()
    pool = _Pool(context, config, reload)
    try:
        try:
            probe_addresses_free(config)
        except AddressInUse as exc:
            log.error("%s", exc)
            return 2
        except OSError as exc:
            log.error("cannot bind the listen addresses: %s", exc.strerror or exc)
            return 2
        for index in range(workers):
            if signals.stops:
                break
            pool.add(index)
        return 1 if _supervise(pool, signals) else 0
    finally:
        _stop_all(pool.processes)
        signals.restore()


@dataclass(frozen=True, slots=True)
class _CaughtSignals:
    """SIGTERM, SIGINT and SIGHUP as the parent catches them: each noted in a list, and the
    interpreter writes a byte to `wake_write` (signal.set_wakeup_fd) to end the wait."""

    wake_read: socket.socket
    wake_write: socket.socket
    stops: list[int]  # SIGTERM and SIGINT received
    reloads: list[int]  # SIGHUPs not yet passed on
    previous: dict[signal.Signals, _Handler]  # the handlers before, put back at the end
    previous_fd: int

    @classmethod
    def install(cls) -> _CaughtSignals:
        """Catch the three signals from now on, in place of their handlers until `restore`."""
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        stops: list[int] = []
        reloads: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            (reloads if signum == signal.SIGHUP else stops).append(signum)

        previous = {sig: signal.signal(sig, on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        previous_fd = signal.set_wakeup_fd(wake_write.fileno())
        return cls(wake_read, wake_write, stops, reloads, previous, previous_fd)

    def restore(self) -> None:
        """The handlers and wake-up descriptor as they were; the wake-up sockets closed."""
        signal.set_wakeup_fd(self.previous_fd)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.wake_read.close()
        self.wake_write.close()


class _Pool:
    """The worker processes, one per slot, with when each started and the recent restarts."""

    def __init__(self, context: ForkContext, config: ServeConfig,
                 reload: Callable[[], ServeConfig] | None) -> None:
        self._context = context
        self._config = config
        self._reload = reload
        self.processes: list[BaseProcess] = []
        self._started_at: list[float] = []
        self._restarts: list[float] = []

    def add(self, index: int) -> None:
        """Start the worker of a new slot, `index`."""
        self.processes.append(self._start(index))
        self._started_at.append(time.monotonic())

    def _start(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self._config, index, os.getpid(), self._reload),
            name=f"resolver-worker-{index}",
        )
        process.start()
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

    def restart_dead(self, stops: list[int]) -> bool:
        """Restart each worker that died after it was serving, unless a stop signal came;
        True when one stopped within MIN_UPTIME_S of its start, or restarts come more often
        than MAX_RESTARTS_PER_MINUTE: then the parent stops them all."""
        for index, process in enumerate(self.processes):
            if process.exitcode is None or stops:
                continue
            now = time.monotonic()
            lived = now - self._started_at[index]
            self._restarts[:] = [t for t in self._restarts if now - t < 60.0]
            if lived < MIN_UPTIME_S or len(self._restarts) >= MAX_RESTARTS_PER_MINUTE:
                log.error("worker %s (pid %d) stopped with status %s after %.1f s; "
                          "stopping all", process.name, process.pid, process.exitcode, lived)
                return True
            log.error("worker %s (pid %d) died with status %s after %.0f s; restarting it",
                      process.name, process.pid, process.exitcode, lived)
            self._restarts.append(now)
            self.processes[index] = self._start(index)
            self._started_at[index] = now
        return False

    def pass_on_sighup(self) -> None:
        """SIGHUP to every live worker: each reloads its own configuration."""
        for worker in self.processes:
            if worker.exitcode is None and worker.pid is not None:
                os.kill(worker.pid, signal.SIGHUP)


def _supervise(pool: _Pool, signals: _CaughtSignals) -> bool:
    """Wait for a signal or a worker's end until a stop signal; True if the workers failed."""
    from multiprocessing.connection import wait

    failed = False
    while not signals.stops and not failed:
        ready = wait([signals.wake_read, *(p.sentinel for p in pool.processes)])
        failed = pool.restart_dead(signals.stops)
        if signals.wake_read in ready:
            _drain(signals.wake_read)
        while signals.reloads and not signals.stops:
            signals.reloads.pop()
            pool.pass_on_sighup()
    return failed


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(512):
            pass
    except OSError:
        pass


def _stop_all(processes: list[BaseProcess]) -> None:
    """SIGTERM every live worker, wait up to STOP_GRACE_S, SIGKILL what is left, reap all."""
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.exitcode is None:
            log.warning("worker %s (pid %d) ignored SIGTERM; killing it", process.name, process.pid)
            process.kill()
            process.join(5.0)


def _worker_main(
    config: ServeConfig, index: int, parent_pid: int, reload: Callable[[], ServeConfig] | None
) -> None:
    """One worker: the normal server with SO_REUSEPORT; exits 1 if it cannot serve."""
    # A forked worker inherits the parent's handlers and wake-up socket: back to defaults, the
    # server installs its own on its event loop.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    from resolver.daemon.app import StartupError, run

    try:
        run(_serve_while_parent_lives(config, parent_pid, reload, index))
    except StartupError as exc:
        log.error("worker %d cannot start: %s", index, exc)
        sys.exit(1)
    except OSError as exc:
        log.error("worker %d cannot serve: %s", index, exc.strerror or exc)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


async def _serve_while_parent_lives(
    config: ServeConfig, parent_pid: int, reload: Callable[[], ServeConfig] | None, index: int
) -> None:
    from resolver.daemon.app import serve

    server = asyncio.create_task(
        serve(config, reuse_port=True, reload=reload, worker_index=index)
    )
    while True:
        done, _ = await asyncio.wait({server}, timeout=_PARENT_CHECK_S)
        if done:
            break
        if os.getppid() != parent_pid:
            log.warning("the parent process is gone; worker (pid %d) stops", os.getpid())
            os.kill(os.getpid(), signal.SIGTERM)  # the server's own handler stops it cleanly
            parent_pid = os.getppid()
    server.result()
