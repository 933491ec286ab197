#!/usr/bin/env python3
"""What one upstream UDP exchange costs the resolver: CPU µs, beside the floor of its socket work.

A responder in a child process (pinned to the last CPU when there are two) answers every query
on loopback at once. This process (pinned to CPU 0) runs EXCHANGES exchanges, CONCURRENCY at
a time, two ways, in interleaved rounds:

  floor     the least a fresh-socket exchange can do: socket, connect, send, a reader, a
            call_later timer, one future, recv, close; no checks
  exchange  `AsyncioNetwork.exchange` as the resolver runs it: the fd budget, the socket cap,
            IP_PMTUDISC_OMIT, the RFC 5452 §9.1 reply checks, the typed failures

and prints the process's CPU time (user + system) per exchange for each, and their ratio. The
machine may be shared: compare the two figures of one round, and look at the spread over the
rounds. It is a measurement, not a test: nothing asserts on the figures.

Usage: bench/exchange_cost.py [--exchanges N] [--concurrency N] [--rounds N] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from resolver.engine.network import ServerAddress, Transport  # noqa: E402
from resolver.upstream.exchange import AsyncioNetwork  # noqa: E402

#: The responder: sets QR and echoes the query (enough for the reply checks), nothing else.
_RESPONDER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    data, client = sock.recvfrom(4096)
    if len(data) >= 12:
        sock.sendto(data[:2] + bytes([data[2] | 0x80]) + data[3:], client)
"""

Exchange = Callable[[bytes, ServerAddress], Awaitable[bytes]]


def make_query(number: int) -> bytes:
    """An uncompressed A query for a distinct name, id = number mod 2^16."""
    labels = [f"h{number % 10}".encode(), f"z{number % 2000:04d}".encode(), b"com"]
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    header = (number & 0xFFFF).to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    return header + name + b"\x00\x01\x00\x01"


async def floor_exchange(query: bytes, server: ServerAddress) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    sock.connect((server.ip, server.port))
    sock.send(query)
    reply: asyncio.Future[bytes] = loop.create_future()

    def on_readable() -> None:
        data = sock.recv(65535)
        if data[:2] == query[:2] and not reply.done():
            reply.set_result(data)

    fd = sock.fileno()
    loop.add_reader(fd, on_readable)
    timer = loop.call_later(2.0, reply.cancel)
    try:
        return await reply
    finally:
        loop.remove_reader(fd)
        timer.cancel()
        sock.close()


async def cpu_per_exchange(exchange: Exchange, server: ServerAddress, count: int,
                           concurrency: int) -> float:
    """CPU µs of this process per exchange, over `count` exchanges `concurrency` at a time."""
    queries: Iterator[bytes] = (make_query(n) for n in range(count))

    async def worker() -> None:
        for query in queries:
            await exchange(query, server)

    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / count * 1e6


async def measure(server: ServerAddress, args: argparse.Namespace) -> None:
    network = AsyncioNetwork(max_outstanding=max(512, args.concurrency))

    async def resolver_exchange(query: bytes, to: ServerAddress) -> bytes:
        return await network.exchange(query, to, Transport.UDP, 2.0)

    ways: dict[str, Exchange] = {"floor": floor_exchange, "exchange": resolver_exchange}
    for exchange in ways.values():  # warm-up: imports, allocator, the responder's first reads
        await cpu_per_exchange(exchange, server, 500, args.concurrency)
    print(f"{args.exchanges} exchanges, {args.concurrency} at a time, {args.loop} loop; "
          "CPU µs per exchange:")
    for round_number in range(1, args.rounds + 1):
        figures = {name: await cpu_per_exchange(exchange, server, args.exchanges,
                                                args.concurrency)
                   for name, exchange in ways.items()}
        print(f"  round {round_number}: floor {figures['floor']:.1f}, "
              f"exchange {figures['exchange']:.1f} "
              f"({figures['exchange'] / figures['floor']:.2f}x the floor)")
    print(f"  sent {network.sent}, timeouts {network.timeouts}, errors {network.errors}, "
          f"mismatched {network.mismatched}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    responder = subprocess.Popen([sys.executable, "-c", _RESPONDER], stdout=subprocess.PIPE,
                                 text=True)
    try:
        if len(cpus) > 1:
            os.sched_setaffinity(responder.pid, {cpus[-1]})
            os.sched_setaffinity(0, {cpus[0]})
        assert responder.stdout is not None
        server = ServerAddress("127.0.0.1", int(responder.stdout.readline()))
        started = time.monotonic()

        async def bounded() -> None:
            async with asyncio.timeout(300):
                await measure(server, args)

        if args.loop == "uvloop":
            import uvloop

            uvloop.run(bounded())
        else:
            asyncio.run(bounded())
        print(f"  {time.monotonic() - started:.0f} s")
    finally:
        responder.terminate()
        responder.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
