"""One DNS-over-stream connection (RFC 7766 framing), shared by plain TCP and DNS over TLS.

Each message travels with a two-octet length prefix (RFC 1035 §4.2.2); RFC 7858 §3.3 keeps
the same framing inside TLS, so both listeners hand their accepted streams to this class.
Rules: queries on one connection are handled concurrently (RFC 7766 §6.2.1.1), at most 64 at
a time; replies may leave out of order, each written whole. The replies that are ready in
one turn of the event loop go out in one write: one send (and, over TLS, one record) per
burst instead of one per reply. A length prefix below a DNS header
closes the connection; so does `idle_timeout_s` without a complete message (RFC 7766 §6.2.3).
A peer that stops reading is cut off after the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from resolver.dns.header import HEADER_OCTETS, MAX_MESSAGE_OCTETS
from resolver.server.client import Client

logger = logging.getLogger(__name__)

MAX_INFLIGHT_PER_CONNECTION = 64

#: Answers one query for one client; None means no reply. Never raises.
Answer = Callable[[bytes, Client], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRules:
    """What a connection needs from the listener that accepted it."""

    answer: Answer
    idle_timeout_s: float
    #: True once the listener stops: no more queries are read.
    stopping: Callable[[], bool]
    #: Every query task is added here too, so the listener can drain or cancel them.
    query_tasks: set[asyncio.Task[None]]
    #: The wait for the next query, if it depends on the listener's load (plain TCP);
    #: otherwise `idle_timeout_s`.
    next_query_timeout_s: Callable[[], float] | None = None


class FramedConnection:
    """One client connection: framed queries in, handled concurrently, framed replies out."""

    def __init__(
        self,
        rules: StreamRules,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: Client,
    ) -> None:
        self._rules = rules
        self._reader = reader
        self._writer = writer
        self._client = client
        self._slots = asyncio.Semaphore(MAX_INFLIGHT_PER_CONNECTION)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Framed replies waiting for the end of this turn of the event loop.
        self._pending: list[bytes] = []
        self._flush_scheduled = False

    async def serve(self) -> None:
        try:
            if await self._read_queries() and self._tasks:
                # The client went quiet or half-closed: still answer what it asked.
                await asyncio.wait(set(self._tasks))
        finally:
            for task in self._tasks:
                task.cancel()
            self._flush()  # replies queued in this turn go out before the close
            close_stream(self._writer, self._rules.idle_timeout_s)

    async def _read_queries(self) -> bool:
        """Read until the client stops; True if it stopped politely (EOF or idle)."""
        rules = self._rules
        while not rules.stopping():
            await self._slots.acquire()  # with 64 queries in flight, stop reading until one ends
            try:
                wait = (rules.next_query_timeout_s() if rules.next_query_timeout_s is not None
                        else rules.idle_timeout_s)
                async with asyncio.timeout(wait):
                    size = int.from_bytes(await self._reader.readexactly(2), "big")
                    # A length that cannot hold a DNS header: a broken client, close.
                    wire = await self._reader.readexactly(size) if size >= HEADER_OCTETS else None
            except (TimeoutError, asyncio.IncompleteReadError):
                wire, polite = None, True
            except OSError:  # reset by the client (or a TLS failure): nobody left to answer
                wire, polite = None, False
            else:
                polite = wire is not None
            if wire is None or rules.stopping():
                self._slots.release()
                return polite
            task = asyncio.get_running_loop().create_task(self._answer(wire))
            for tasks in (self._tasks, rules.query_tasks):
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        return True

    async def _answer(self, wire: bytes) -> None:
        try:
            reply = await self._rules.answer(wire, self._client)
            if reply is None or self._writer.is_closing():
                return
            if len(reply) > MAX_MESSAGE_OCTETS:
                logger.warning("reply of %d octets cannot be framed for TCP; dropped", len(reply))
                return
            self._queue(len(reply).to_bytes(2, "big") + reply)
            # A client that never reads must not pin this task forever.
            async with asyncio.timeout(self._rules.idle_timeout_s):
                await self._writer.drain()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:  # the client reset or closed before its reply: nothing to do
            pass
        finally:
            self._slots.release()

    def _queue(self, frame: bytes) -> None:
        """Send `frame` with every other reply made ready in this turn of the loop."""
        self._pending.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        frames = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        if not self._writer.is_closing():
            self._writer.write(frames)


def close_stream(writer: asyncio.StreamWriter, grace_s: float) -> None:
    """Close after flushing what is queued; a peer that never reads is aborted after `grace_s`."""
    transport = writer.transport
    # Asked before closing: a closed TLS transport cannot tell its buffer size any more.
    pending = not transport.is_closing() and transport.get_write_buffer_size() > 0
    writer.close()
    if pending:
        asyncio.get_running_loop().call_later(grace_s, transport.abort)
