"""The cached UDP fast path: answering datagrams from the answer cache, before any task.

`FastListener` answers a datagram from the answer cache inside the datagram callback itself:
no task, no `Client` value, no await (each of those costs more than the answer). Where
recvmmsg/sendmmsg can be called (datagram_batch.py), each UDP socket is read in batches
straight from the event loop's readiness callback and the cached replies of a batch leave in
one call; access control, rate limiting and the query log apply through the handler's
cached-path calls. A miss, or anything the answer cache does not recognise, takes the
listener's usual path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Unpack

from resolver.server.datagram_batch import DatagramBatch, batching_available
from resolver.server.handler import QueryHandler
from resolver.server.listener import DatagramSink, Listener, ListenerOptions

__all__ = ["FastListener"]

log = logging.getLogger("resolver")

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
        batch_datagrams: bool = True,
        **options: Unpack[ListenerOptions],
    ) -> None:
        super().__init__(handler, addresses, **options)
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
