"""Serving processes: N worker processes on one address.

`run_workers` runs N copies of the server, each in its own process with its own caches, all
bound to the same addresses with SO_REUSEPORT, so the kernel spreads clients over them
(Unbound's num-threads with so-reuseport). The parent only supervises: it forwards SIGTERM
and SIGINT to every worker, waits for them, and exits 0; SIGHUP (reload) is passed on too.
A worker that stops on its own (it could not bind, say) makes the parent stop the others
and fail: a half-served address is worse than a restart by the service manager. Workers
whose parent vanishes stop too. The cached UDP fast path each worker serves with is
resolver/server/fast_path.py.
"""

from __future__ import annotations

import asyncio
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
    try:
        for index in range(workers):
            if received:
                break
            process = context.Process(
                target=_worker_main,
                args=(config, index, os.getpid(), reload),
                name=f"resolver-worker-{index}",
            )
            process.start()
            processes.append(process)
            log.info("worker %d started (pid %d)", index, process.pid)
        failed = False
        while not received:
            ready = wait([wake_read, *(p.sentinel for p in processes)])
            if any(p.exitcode is not None for p in processes) and not received:
                gone = [p for p in processes if p.exitcode is not None]
                for p in gone:
                    log.error("worker %s (pid %d) stopped on its own with status %s; stopping all",
                              p.name, p.pid, p.exitcode)
                failed = True
                break
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
