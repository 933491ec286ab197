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
from typing import TYPE_CHECKING

from resolver.daemon.config import ServeConfig

if TYPE_CHECKING:  # multiprocessing costs megabytes of RSS: imported only to start workers
    from multiprocessing.process import BaseProcess

log = logging.getLogger("resolver")

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
    from multiprocessing.connection import wait

    if any(address.port == 0 for address in config.listen):
        log.error("--workers needs explicit ports: with port 0 each worker would get its own")
        return 2
    # fork: the workers start from this process's configuration, with no event loop running yet.
    context = multiprocessing.get_context("fork")
    # Signals are caught before any worker exists, so none can be orphaned by an early one.
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    received: list[int] = []
    reloads: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        (reloads if signum == signal.SIGHUP else received).append(signum)

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    previous_fd = signal.set_wakeup_fd(wake_write.fileno())
    processes: list[BaseProcess] = []
    started_at: list[float] = []
    restarts: list[float] = []

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_worker_main,
            args=(config, index, os.getpid(), reload),
            name=f"resolver-worker-{index}",
        )
        process.start()
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

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
            if received:
                break
            processes.append(start(index))
            started_at.append(time.monotonic())
        failed = False
        while not received and not failed:
            ready = wait([wake_read, *(p.sentinel for p in processes)])
            for index, process in enumerate(processes):
                if process.exitcode is None or received:
                    continue
                now = time.monotonic()
                lived = now - started_at[index]
                restarts[:] = [t for t in restarts if now - t < 60.0]
                if lived < MIN_UPTIME_S or len(restarts) >= MAX_RESTARTS_PER_MINUTE:
                    log.error("worker %s (pid %d) stopped with status %s after %.1f s; "
                              "stopping all", process.name, process.pid, process.exitcode, lived)
                    failed = True
                    break
                log.error("worker %s (pid %d) died with status %s after %.0f s; restarting it",
                          process.name, process.pid, process.exitcode, lived)
                restarts.append(now)
                processes[index] = start(index)
                started_at[index] = now
            if wake_read in ready:
                _drain(wake_read)
            while reloads and not received:
                reloads.pop()
                for worker in processes:
                    if worker.exitcode is None and worker.pid is not None:
                        os.kill(worker.pid, signal.SIGHUP)
        return 1 if failed else 0
    finally:
        _stop_all(processes)
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_read.close()
        wake_write.close()


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
