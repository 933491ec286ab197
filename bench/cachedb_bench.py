"""What the shared cache costs and saves, on this machine: one answer from memory, from Redis,
from upstream; then Redis killed under load: queries answered and the slowest answer.

Starts the lab, a redis-server on its own loopback port and two `resolver serve` instances
(A and B) sharing it, all on loopback, and asks them with a small UDP client:
- from upstream: A, cold, asked N names under networkutopia.com (NXDOMAIN: one upstream
  round trip each once the zone cut is known);
- from Redis: B, which never saw them, asked the same names (A wrote them behind);
- from memory: B asked them again (its answer cache now holds them).
Then `--load` queries go to B from 20 concurrent askers while Redis is killed halfway.
Run: `.venv/bin/python bench/cachedb_bench.py` (about 20 s).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import RESOLVER, _free_port, _wait_for_udp_dns
from tests.support.processes import stop_process
from tests.support.redis import kill_redis, start_redis, stop_redis

NAMES = 300
LOAD = 3000
ASKERS = 20


def query(name: str, qid: int) -> bytes:
    wire = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".") if x) + b"\x00"
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)


def ask(port: int, name: str, qid: int = 1, timeout_s: float = 3.0) -> float | None:
    """Seconds until the reply, or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        started = time.perf_counter()
        sock.sendto(query(name, qid), ("127.0.0.1", port))
        try:
            sock.recvfrom(4096)
        except TimeoutError:
            return None
        return time.perf_counter() - started


def start(hints: Path, lab_port: int, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(hints),
         "--upstream-port", str(lab_port),
         "--control-socket", f"/tmp/resolver-bench-{port}.sock", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _wait_for_udp_dns("127.0.0.1", port, proc)
    return proc, port


def summary(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (f"| {label} | {statistics.median(ms):.3f} | {ms[int(len(ms) * 0.9)]:.3f} | "
            f"{ms[-1]:.3f} |")


async def load(port: int, names: list[str], kill_after: int, on_kill: object) -> tuple[
        int, int, float]:
    """(answered, sent, slowest seconds) of `names` asked by ASKERS at once."""
    loop = asyncio.get_running_loop()
    answered, slowest, sent = 0, 0.0, 0
    queue = list(enumerate(names))

    async def asker() -> None:
        nonlocal answered, slowest, sent
        while queue:
            index, name = queue.pop()
            sent += 1
            if sent == kill_after:
                await loop.run_in_executor(None, on_kill)  # type: ignore[arg-type]
            took = await loop.run_in_executor(None, ask, port, name, index % 65536)
            if took is not None:
                answered += 1
                slowest = max(slowest, took)

    await asyncio.gather(*(asker() for _ in range(ASKERS)))
    return answered, sent, slowest


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="rdb-bench-"))
    hints = directory / "lab.hints"
    lab_port = _free_port("127.41.0.4")
    lab = subprocess.Popen([*RESOLVER, "lab", "--hints-file", str(hints), "--port",
                            str(lab_port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, text=True)
    _wait_for_udp_dns("127.41.0.4", lab_port, lab)  # type: ignore[arg-type]
    redis = start_redis(directory / "redis")
    shared = ("--cachedb", redis.url, "--cachedb-secret", "bench")
    a, a_port = start(hints, lab_port, *shared)
    b, b_port = start(hints, lab_port, *shared)
    try:
        time.sleep(1.0)  # root priming done
        ask(a_port, "networkutopia.com.")  # the zone cut, so each name is one round trip
        names = [f"n{i}.networkutopia.com." for i in range(NAMES)]
        upstream = [t for t in (ask(a_port, n) for n in names) if t is not None]
        time.sleep(0.5)  # written behind
        shared_hits = [t for t in (ask(b_port, n) for n in names) if t is not None]
        memory = [t for t in (ask(b_port, n) for n in names) if t is not None]
        print("| answer from | median ms | 90th percentile ms | slowest ms |")
        print("|---|---|---|---|")
        print(summary("memory (B's answer cache)", memory))
        print(summary("Redis (B, a name only A resolved)", shared_hits))
        print(summary("upstream (A, one round trip to the lab)", upstream))
        print(f"({len(memory)}, {len(shared_hits)}, {len(upstream)} answers of {NAMES})")

        fresh = [f"load{i}.networkutopia.com." for i in range(LOAD)]
        answered, sent, slowest = asyncio.run(
            load(b_port, fresh, LOAD // 2, lambda: kill_redis(redis)))
        print(f"Redis killed after {LOAD // 2} of {sent} queries from {ASKERS} askers: "
              f"{answered} answered, slowest {slowest * 1000:.1f} ms")
    finally:
        for proc in (a, b, lab):
            stop_process(proc)
        stop_redis(redis)


if __name__ == "__main__":
    main()
