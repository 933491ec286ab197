"""RFC 7766 framing on a real loopback connection: replies ready together leave together."""

from __future__ import annotations

import asyncio
from typing import Any

from resolver.engine.network import Transport
from resolver.server.client import Client
from resolver.server.stream_connection import FramedConnection, StreamRules


class CountingWriter:
    """A StreamWriter that counts its writes; everything else goes to the real one."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def query(qid: int) -> bytes:
    return qid.to_bytes(2, "big") + bytes(10) + b"question"


async def serve_and_ask(count: int, *, delay_s: float, half_close: bool
                        ) -> tuple[list[int], int]:
    """`count` queries sent in one segment; the reply ids in arrival order, and the number
    of writes the server made."""
    writers: list[CountingWriter] = []
    tasks: set[asyncio.Task[None]] = set()

    async def answer(wire: bytes, _client: Client) -> bytes:
        if delay_s:
            await asyncio.sleep(delay_s)
        return wire[:2] + b"\x80" + wire[3:]

    rules = StreamRules(answer=answer, idle_timeout_s=5, stopping=lambda: False,
                        query_tasks=tasks)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counting = CountingWriter(writer)
        writers.append(counting)
        client = Client(ip="127.0.0.1", port=0, transport=Transport.TCP)
        await FramedConnection(rules, reader, counting, client).serve()  # type: ignore[arg-type]

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(len(q).to_bytes(2, "big") + q for q in map(query, range(count))))
    if half_close:
        writer.write_eof()
    ids = []
    for _ in range(count):
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
        ids.append(int.from_bytes((await reader.readexactly(size))[:2], "big"))
    writer.close()
    server.close()
    await server.wait_closed()
    return ids, writers[0].writes


def test_replies_ready_in_one_turn_of_the_loop_leave_in_one_write() -> None:
    ids, writes = asyncio.run(serve_and_ask(20, delay_s=0, half_close=False))
    assert sorted(ids) == list(range(20))
    assert writes == 1


def test_replies_still_queued_when_the_client_half_closes_are_all_sent() -> None:
    ids, _writes = asyncio.run(serve_and_ask(5, delay_s=0.01, half_close=True))
    assert sorted(ids) == list(range(5))
