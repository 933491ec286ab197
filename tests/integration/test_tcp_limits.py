"""TCP limits of the listener with real sockets on loopback: connections per client
address, and an idle timeout that shrinks as the connection slots fill (RFC 7766 §6.2.3,
Unbound's tcp-idle-timeout rule)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_listener import (
    closed_within,
    frame,
    make_query,
    read_frame,
    reply_id,
    run,
    serving,
)

pytestmark = pytest.mark.integration


async def connect_from(source_ip: str, address: tuple[str, int]) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address, local_addr=(source_ip, 0))


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, qid: int) -> bool:
    writer.write(frame(make_query(qid=qid)))
    await writer.drain()
    try:
        return reply_id(await asyncio.wait_for(read_frame(reader), 3)) == qid
    except (asyncio.IncompleteReadError, ConnectionError):
        return False


def test_one_address_gets_at_most_max_tcp_per_address_connections() -> None:
    """The 4th connection from 127.0.0.1 is closed at once; 127.0.0.2 is still served."""

    async def body() -> None:
        async with serving(max_tcp_per_address=3, tcp_idle_timeout_s=10) as (listener, _, addr):
            held = [await connect_from("127.0.0.1", addr) for _ in range(3)]
            extra_reader, extra_writer = await connect_from("127.0.0.1", addr)
            other = await connect_from("127.0.0.2", addr)
            assert not await answered(extra_reader, extra_writer, 1)
            assert await answered(*other, 2)
            assert all([await answered(r, w, 10 + i) for i, (r, w) in enumerate(held)])
            assert listener.tcp_rejected_per_address == 1
            held[0][1].close()  # a slot freed: the address may connect again
            await asyncio.sleep(0.2)
            assert await answered(*await connect_from("127.0.0.1", addr), 3)
            for _, writer in [*held[1:], other]:
                writer.close()

    run(body())


def test_idle_timeout_shrinks_when_more_than_half_the_slots_are_taken() -> None:
    """With 10 slots and 10 s idle: a lone client stays connected past 2 s; with 6 other
    connections open (40% free) an idle one is closed within a second or two."""

    async def body() -> None:
        async with serving(max_tcp_clients=10, max_tcp_per_address=10,
                           tcp_idle_timeout_s=10) as (listener, _, addr):
            reader, writer = await connect_from("127.0.0.1", addr)
            assert await answered(reader, writer, 1)
            assert listener.idle_timeout_s() == 10
            with pytest.raises(TimeoutError):
                await closed_within(reader, 2.0)
            others = [await connect_from(f"127.0.0.{2 + i}", addr) for i in range(6)]
            await asyncio.sleep(0.1)
            assert listener.idle_timeout_s() < 1.0
            assert await answered(reader, writer, 2)  # the next wait uses the short timeout
            await closed_within(reader, 2.0)
            for _, other in others:
                other.close()

    run(body())
