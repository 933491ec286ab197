"""Serving processes: the cached UDP fast path, and N worker processes on one address.

- `FastListener` answers a datagram from the answer cache inside the datagram callback itself:
  no task, no `Client` value, no await (each of those costs more than the answer). A miss, or
  anything the answer cache does not recognise, takes the listener's usual path.
- `run_workers` runs N copies of the server, each in its own process with its own caches, all
  bound to the same addresses with SO_REUSEPORT, so the kernel spreads clients over them
  (Unbound's num-threads with so-reuseport). The parent only supervises: it forwards SIGTERM
  and SIGINT to every worker, waits for them, and exits 0; SIGHUP (reload) is passed on too.
  A worker that stops on its own (it could not bind, say) makes the parent stop the others
  and fail: a half-served address is worse than a restart by the service manager. Workers
  whose parent vanishes stop too.
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
from resolver.server.datagram_batch import DatagramBatch, batching_available
from resolver.server.handler import QueryHandler
from resolver.server.listener import DatagramSink, Listener

if TYPE_CHECKING:  # multiprocessing costs megabytes of RSS: imported only to start workers
    from multiprocessing.process import BaseProcess

log = logging.getLogger("resolver")

#: How long workers get to drain and exit after the parent forwarded a stop signal.
STOP_GRACE_S = 10.0
#: How often a worker checks that its parent is still there.
_PARENT_CHECK_S = 1.0
#: Batches read per readiness callback before the event loop gets control back.
_BATCHES_PER_WAKEUP = 8
#: Client addresses whose access decision is remembered (cleared when full).
_MAX_REMEMBERED_SOURCES = 4096
_NO_ANSWERS = [0] * 16


class FastListener(Listener):
    """A `Listener` whose UDP datagrams first try the handler's answer cache, synchronously.

    Where recvmmsg/sendmmsg can be called (datagram_batch.py), each UDP socket is read in
    batches straight from the event loop's readiness callback, and the cached replies of a
    batch leave in one call; otherwise the event loop's datagram transport delivers them one
    at a time. Either way, a miss goes to the listener's usual path, as a task.
    """

    def __init__(
        self,
        handler: QueryHandler,
        addresses: list[tuple[str, int]],
        *,
        tcp_idle_timeout_s: float = 10.0,
        max_tcp_clients: int = 128,
        reuse_port: bool = False,
        batch_datagrams: bool = True,
    ) -> None:
        super().__init__(
            handler,
            addresses,
            tcp_idle_timeout_s=tcp_idle_timeout_s,
            max_tcp_clients=max_tcp_clients,
            reuse_port=reuse_port,
        )
        self._from_cache = handler.answer_from_cache
        self._handler_ref = handler
        self.batching = batch_datagrams and batching_available()
        self.batches: list[DatagramBatch] = []

    async def _serve_udp(self, sock: socket.socket) -> Callable[[], None]:
        if not self.batching:
            return await super()._serve_udp(sock)
        loop = asyncio.get_running_loop()
        batch = DatagramBatch(sock)
        self.batches.append(batch)
        fd = sock.fileno()
        loop.add_reader(fd, self._batch_reader(batch, _SocketEndpoint(sock)))

        def close() -> None:
            loop.remove_reader(fd)
            sock.close()

        return close

    def _batch_reader(self, batch: DatagramBatch, endpoint: _SocketEndpoint) -> Callable[[], None]:
        """The readiness callback of one batched socket."""
        handler = self._handler_ref
        slow_path = super()._on_datagram
        #: Source address -> may its queries be answered from cache (access control), valid
        #: while `handler.access` is the same object (a reload replaces it).
        permitted: dict[int | bytes, bool] = {}
        permitted_under: list[object] = [handler.access]
        by_rcode = [0] * 16
        reply_body = handler.answers.reply_body
        open_now = True

        def permission(address: int | bytes, slot: int) -> bool:
            if len(permitted) >= _MAX_REMEMBERED_SOURCES:  # a spoofed-source flood: bounded
                permitted.clear()
            allowed = permitted[address] = handler.client_may_use_cache(batch.source(slot)[0])
            return allowed

        def answer(data: bytes, address: int | bytes, slot: int) -> bytes | None:
            if open_now:
                allowed = permitted.get(address)
                if allowed is None:
                    allowed = permission(address, slot)
                if allowed:
                    body = reply_body(data)
                    if body is not None:
                        by_rcode[body[1] & 0xF] += 1  # the reply's fourth octet
                        return body
            if self._closing:  # the listener's own rule: once stopping, datagrams are dropped
                self.udp_received += 1
                self.udp_dropped += 1
                return None
            slow_path(data, batch.source(slot), endpoint)
            return None

        def on_readable() -> None:
            nonlocal open_now, reply_body
            for _ in range(_BATCHES_PER_WAKEUP):  # then let other callbacks and tasks run
                open_now = handler.cached_path_open() and not self._closing
                reply_body = handler.answers.reply_body
                if permitted_under[0] is not handler.access:
                    permitted.clear()
                    permitted_under[0] = handler.access
                started = time.monotonic()
                try:
                    received = batch.exchange(answer)
                except OSError as exc:
                    log.debug("UDP receive failed: %r", exc)
                    return
                except Exception:  # never let one batch stop the socket from being served
                    log.warning("batched UDP answering failed", exc_info=True)
                    return
                self.udp_received += handler.count_cached(by_rcode, time.monotonic() - started)
                by_rcode[:] = _NO_ANSWERS
                if received < batch.slots:
                    return

        return on_readable

    def _on_datagram(
        self, data: bytes, addr: tuple[str | int, ...], endpoint: DatagramSink
    ) -> None:
        reply = None
        if not self._closing:  # once stopping, the listener's own rule (drop) applies
            try:
                reply = self._from_cache(data, str(addr[0]))
            except Exception:  # never let the fast path cost a query: the full path answers
                log.debug("answer cache lookup failed", exc_info=True)
        if reply is None:
            super()._on_datagram(data, addr, endpoint)
            return
        self.udp_received += 1
        try:
            endpoint.sendto(reply, addr)
        except Exception as exc:  # a closing or failing endpoint: the client will retry
            log.debug("cached reply not sent: %r", exc)


class _SocketEndpoint:
    """The two calls of a datagram transport the listener's slow path makes, on a plain
    non-blocking socket: a reply the kernel cannot take at once is dropped (UDP: the client
    retries), never queued."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def is_closing(self) -> bool:
        return self._sock.fileno() < 0

    def sendto(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._sock.sendto(data, addr)


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
