"""`make soak`: the resolver under a steady mixed load, minute by minute.

The load of issue 20 (docs/reliability.md, "Soak"): 85% names already cached, 12% new names
that get NXDOMAIN (they fill the cache), 1% names of a slow zone (2.5 s), 1% of a black-holed
zone and 1% of a zone that answers garbage. The world (bench/soak_world.py) and the resolver
run on loopback; the resolver is started with a small byte budget (CACHE_SIZE, 64m) so that
its cache is full within the run.

1. Warm-up: every cached name asked once.
2. Full speed: cached and new names (85:12) with 64 queries outstanding for 10 s; the
   answered rate is "full speed" (RATE=... sets the soak's rate instead).
3. The soak: 70% of full speed, open loop (queries leave on schedule whatever the
   replies do), for DURATION seconds (180 unless set). A query unanswered after 5 s is lost.
4. Full speed once more, with the caches as the soak left them: the first figure is taken
   while the cache is still empty, and a full cache costs more per query.

Printed per minute: cached queries answered (%), the worst 10 s window of answered cached
queries (%), the worst 10 s window's cached p99 (ms), every query answered (%), the
resolver's RSS, event-loop stalls, collections (full / all generations) and the longest
collection, from its /metrics (resolver.daemon.runtime_watch), and what the record cache
and the answer cache are charged against the budget (resolver_cache_bytes,
resolver_answer_cache_bytes) beside the RSS growth over the empty-cache start. Targets
(issue 20): 99.9% cached answered, 99% in every window, p99 at most 50 ms. Figures, not assertions.

Run: .venv/bin/python bench/soak.py (ports 21053, 21080 and 21100 on 127.0.0.1 and
127.0.21.1-6). Bounded: DURATION plus about 40 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LISTEN = ("127.0.0.1", 21053)
METRICS = ("127.0.0.1", 21080)
WORLD_PORT = 21100
CACHED_NAMES = 5_000
#: NEW_SHARE (0.12 unless set) moves share from cached names to new NXDOMAIN names, to
#: fill a large cache within the run.
NEW_SHARE = float(os.environ.get("NEW_SHARE", "0.12"))
MIX = (("cached", 0.97 - NEW_SHARE), ("nx", NEW_SHARE), ("slow", 0.01), ("hole", 0.01),
       ("junk", 0.01))
WINDOW_S = 10
#: One query in PROBE_EVERY also goes straight to the world's nxd. server (not counted in
#: the resolver's columns).
PROBE_EVERY = 100
NXD_SERVER = "127.0.21.3"
LOST_AFTER_S = 5.0
SOCKETS = 8


def query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes((len(x),)) + x.encode() for x in name.split(".") if x)
    return (qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + labels + b"\x00\x00\x01\x00\x01")


@dataclass
class Window:
    sent: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)
    cached_ms: list[float] = field(default_factory=list)
    #: Reply times of the other kinds (new names, and the probes sent to the world itself).
    ms: dict[str, list[float]] = field(default_factory=dict)


class Load:
    """Queries out on UDP sockets, replies matched by (socket, id), results per window."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.socks = []
        # The last socket asks the world's nxd. server itself: how long the world takes to
        # answer, beside how long the resolver takes to answer the same kind of name.
        for target in [LISTEN] * SOCKETS + [(NXD_SERVER, WORLD_PORT)]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.connect(target)
            sock.setblocking(False)
            self.socks.append(sock)
        for index, sock in enumerate(self.socks):
            loop.add_reader(sock.fileno(), self._read, index)
        self.next_id = [0] * (SOCKETS + 1)
        self.turn = 0
        #: (socket, id) -> (sent at, kind, window)
        self.pending: dict[tuple[int, int], tuple[float, str, int]] = {}
        self.windows: dict[int, Window] = {}
        self.started = time.monotonic()
        self.serial = 0
        self.answered = 0
        #: (kind, rcode) -> replies in time: a new name answered SERVFAIL stores no entry.
        self.rcodes: dict[tuple[str, int], int] = {}

    def name(self, kind: str) -> str:
        self.serial += 1
        if kind == "cached":
            return f"h{random.randrange(CACHED_NAMES)}.cached."
        return {"nx": "r{}-{}.nxd.", "slow": "s{}-{}.slow.", "hole": "b{}-{}.hole.",
                "junk": "j{}-{}.junk.", "probe": "p{}-{}.nxd."}[kind].format(
                    self.serial, random.getrandbits(24))

    def send(self, kind: str, name: str | None = None) -> None:
        index = SOCKETS if kind == "probe" else (self.turn + 1) % SOCKETS
        if kind != "probe":
            self.turn = index
        qid = self.next_id[index] = (self.next_id[index] + 1) & 0xFFFF
        now = time.monotonic()
        window = int((now - self.started) // WINDOW_S)
        stats = self.windows.setdefault(window, Window())
        stats.sent[kind] = stats.sent.get(kind, 0) + 1
        self.pending[(index, qid)] = (now, kind, window)
        # Counted as sent; if the socket refuses it, it is lost, as a dropped datagram.
        with contextlib.suppress(BlockingIOError):
            self.socks[index].send(query(qid, name or self.name(kind)))

    def _read(self, index: int) -> None:
        sock = self.socks[index]
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                return
            entry = self.pending.pop((index, int.from_bytes(data[:2], "big")), None)
            if entry is None:
                continue
            sent_at, kind, window = entry
            if time.monotonic() - sent_at > LOST_AFTER_S:
                continue  # too late: the client gave up on it
            self.answered += 1
            rcode = (kind, data[3] & 0x0F)
            self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
            stats = self.windows[window]
            stats.answered[kind] = stats.answered.get(kind, 0) + 1
            if kind == "cached":
                stats.cached_ms.append((time.monotonic() - sent_at) * 1000)
            else:
                stats.ms.setdefault(kind, []).append((time.monotonic() - sent_at) * 1000)

    def reset(self) -> None:
        self.pending.clear()
        self.windows.clear()
        self.rcodes.clear()
        self.started = time.monotonic()
        self.answered = 0

    def pick(self, mix: tuple[tuple[str, float], ...] = MIX) -> str:
        roll = random.random() * sum(share for _, share in mix)
        for kind, share in mix:
            if roll < share:
                return kind
            roll -= share
        return "cached"


async def warm(load: Load) -> None:
    for start in range(0, CACHED_NAMES, 200):
        for i in range(start, min(start + 200, CACHED_NAMES)):
            load.send("cached", f"h{i}.cached.")
        await asyncio.sleep(0.3)


#: What full speed is measured with: the queries that cost the resolver work at once. The
#: slow, black-holed and garbage ones would hold the outstanding slots for seconds while
#: costing next to nothing, and measure the slots instead of the resolver.
FAST = (("cached", 0.85), ("nx", 0.12))


async def full_speed(load: Load, seconds: float = 10.0, outstanding: int = 64) -> float:
    """Answered per second of cached and new names (85:12) with `outstanding` in flight."""
    load.reset()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        live = sum(1 for sent, _, _ in load.pending.values() if now - sent < LOST_AFTER_S)
        for _ in range(max(0, outstanding - live)):
            load.send(load.pick(FAST))
        await asyncio.sleep(0.001)
    return load.answered / seconds


async def soak(load: Load, rate: float, duration: float, pid: int) -> list[dict[str, float]]:
    load.reset()
    minutes: list[dict[str, float]] = []
    sent = 0
    last_metrics = await asyncio.to_thread(scrape)
    next_minute = load.started + 60
    while True:
        now = time.monotonic()
        elapsed = now - load.started
        if elapsed >= duration:
            break
        for _ in range(int(elapsed * rate) - sent):
            load.send(load.pick())
            sent += 1
            if sent % PROBE_EVERY == 0:
                load.send("probe")
        if now >= next_minute:
            metrics = await asyncio.to_thread(scrape)
            minutes.append(runtime_delta(last_metrics, metrics, pid))
            last_metrics = metrics
            next_minute += 60
        await asyncio.sleep(0.002)
    await asyncio.sleep(LOST_AFTER_S)
    metrics = await asyncio.to_thread(scrape)
    minutes.append(runtime_delta(last_metrics, metrics, pid))
    return minutes


def scrape() -> dict[str, float]:
    """The resolver's runtime counters; empty when it did not answer within 20 s."""
    try:
        text = urllib.request.urlopen(f"http://{METRICS[0]}:{METRICS[1]}/metrics",
                                      timeout=20).read()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.decode().splitlines():
        match = re.match(r"^(resolver_(?:gc|loop|cache|answer_cache)_[a-z_]+)(\{[^}]*\})? (\S+)$",
                         line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def runtime_delta(before: dict[str, float], after: dict[str, float],
                  pid: int) -> dict[str, float]:
    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    full = 'resolver_gc_collections_total{generation="2"}'
    every = sum(delta(f'resolver_gc_collections_total{{generation="{g}"}}') for g in range(3))
    gc_ms = 1000 * sum(delta(f'resolver_gc_seconds_total{{generation="{g}"}}') for g in range(3))
    return {"rss_mb": rss_mb(pid), "stalls": delta("resolver_loop_stalls_total"),
            "stalled_ms": 1000 * delta("resolver_loop_stalled_seconds_total"), "gc_ms": gc_ms,
            "full_ms": 1000 * delta('resolver_gc_seconds_total{generation="2"}'),
            "gc_cpu_ms": 1000 * delta("resolver_gc_cpu_seconds_total"),
            "cyclic": delta("resolver_gc_collected_total"),
            "cpu_s": cpu_seconds(pid),
            "cache_mb": after.get("resolver_cache_bytes", 0.0) / 2**20,
            "cache_entries": after.get("resolver_cache_entries", 0.0),
            "answer_mb": after.get("resolver_answer_cache_bytes", 0.0) / 2**20,
            "answer_entries": after.get("resolver_answer_cache_entries", 0.0),
            "full": delta(full), "collections": every,
            "longest_gc_ms": after.get("resolver_gc_longest_seconds", 0.0) * 1000,
            "longest_gc_cpu_ms": after.get("resolver_gc_longest_cpu_seconds", 0.0) * 1000}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def udp_receive_errors() -> int:
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def p99(values: list[float]) -> float:
    return percentile(values, 0.99)


def table(load: Load, minutes: list[dict[str, float]], rate: float, baseline_mb: float) -> str:
    rows = ["| minute | queries | cached answered | worst 10 s | cached p99 (worst 10 s) | "
            "all answered | RSS (over empty) | record cache charged (entries) | "
            "answer cache charged (entries) | CPU | loop stalls (time) | "
            "full (time) / all collections (time) | longest collection | freed in cycles | "
            "new names p50 / p99 | world direct p50 / p99 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    totals = {"sent": 0, "answered": 0}
    cpu_before = 0.0
    for minute, runtime in enumerate(minutes):
        cpu = runtime["cpu_s"] - cpu_before
        cpu_before = runtime["cpu_s"]
        windows = [load.windows[w] for w in sorted(load.windows)
                   if w * WINDOW_S // 60 == minute]
        if not windows:
            continue
        sent = sum(n for w in windows for k, n in w.sent.items() if k != "probe")
        answered = sum(n for w in windows for k, n in w.answered.items() if k != "probe")
        new_ms = [t for w in windows for t in w.ms.get("nx", [])]
        probe_ms = [t for w in windows for t in w.ms.get("probe", [])]
        c_sent = sum(w.sent.get("cached", 0) for w in windows)
        c_answered = sum(w.answered.get("cached", 0) for w in windows)
        totals["sent"] += c_sent
        totals["answered"] += c_answered
        worst = min(100 * w.answered.get("cached", 0) / max(1, w.sent.get("cached", 0))
                    for w in windows)
        worst_p99 = max(p99(w.cached_ms) for w in windows)
        rows.append(
            f"| {minute + 1} | {sent} | {100 * c_answered / max(1, c_sent):.2f}% | {worst:.1f}% "
            f"| {worst_p99:.1f} ms | {100 * answered / max(1, sent):.2f}% "
            f"| {runtime['rss_mb']:.0f} MB (+{runtime['rss_mb'] - baseline_mb:.0f}) "
            f"| {runtime['cache_mb']:.1f} MB ({runtime['cache_entries']:.0f}) "
            f"| {runtime['answer_mb']:.1f} MB ({runtime['answer_entries']:.0f}) "
            f"| {100 * cpu / 60:.0f}% "
            f"| {runtime['stalls']:.0f} ({runtime['stalled_ms']:.0f} ms) "
            f"| {runtime['full']:.0f} ({runtime['full_ms']:.0f} ms) / {runtime['collections']:.0f} "
            f"({runtime['gc_ms']:.0f} ms, CPU {runtime['gc_cpu_ms']:.0f} ms) "
            f"| {runtime['longest_gc_ms']:.0f} ms (CPU {runtime['longest_gc_cpu_ms']:.0f} ms) "
            f"| {runtime['cyclic']:.0f} "
            f"| {percentile(new_ms, 0.5):.1f} / {percentile(new_ms, 0.99):.0f} ms "
            f"| {percentile(probe_ms, 0.5):.1f} / {percentile(probe_ms, 0.99):.0f} ms |")
    overall = 100 * totals["answered"] / max(1, totals["sent"])
    rows.append("")
    rows.append(f"rate {rate:.0f} queries/s; cached queries answered overall: {overall:.3f}%")
    return "\n".join(rows)


def start_resolver(hints: Path, cache_size: str, log: Path,
                   control: Path) -> subprocess.Popen[bytes]:
    resolver = os.environ.get("SOAK_RESOLVER", str(Path(sys.executable).with_name("resolver")))
    command = [*resolver.split(), "serve", "--listen", f"{LISTEN[0]}:{LISTEN[1]}",
               "--root-hints", str(hints), "--upstream-port", str(WORLD_PORT),
               "--cache-size", cache_size, "--metrics", f"{METRICS[0]}:{METRICS[1]}",
               "--no-dnssec", "--control-socket", str(control)]
    # Its log goes to a file: a pipe nobody reads would fill and block the resolver.
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)


def wait_for_metrics(process: subprocess.Popen[bytes], limit_s: float = 20.0) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit("the resolver exited")
        if scrape():
            return
        time.sleep(0.2)
    raise SystemExit("the resolver did not start")


async def run(duration: float, rate: float | None, pid: int) -> None:
    load = Load(asyncio.get_running_loop())
    baseline_mb = rss_mb(pid)
    print(f"RSS with an empty cache: {baseline_mb:.0f} MB; mix {dict(MIX)}", flush=True)
    await warm(load)
    await asyncio.sleep(1)
    full = await full_speed(load)
    await asyncio.sleep(LOST_AFTER_S)
    soak_rate = rate if rate is not None else 0.7 * full
    print(f"full speed (cached and new names): {full:.0f} answered/s; soak at {soak_rate:.0f}/s "
          f"for {duration:.0f} s", flush=True)
    errors_before = udp_receive_errors()
    minutes = await soak(load, soak_rate, duration, pid)
    print(table(load, minutes, soak_rate, baseline_mb))
    print("replies by kind and rcode: " + ", ".join(
        f"{kind} rcode {code}: {count}" for (kind, code), count in sorted(load.rcodes.items())))
    print(f"UDP receive-buffer errors on this host during the soak: "
          f"{udp_receive_errors() - errors_before}")
    # Full speed again, with the caches as the soak left them (full, when it ran long
    # enough): what the rate above is 70% of once memory is in steady state.
    after = await full_speed(load)
    print(f"full speed again after the soak (caches as it left them): {after:.0f} answered/s; "
          f"the soak ran at {100 * soak_rate / max(1.0, after):.0f}% of it")


def main() -> None:
    duration = float(os.environ.get("DURATION", "180"))
    rate = float(os.environ["RATE"]) if os.environ.get("RATE") else None
    cache_size = os.environ.get("CACHE_SIZE", "64m")
    gc.disable()  # the load's own objects are freed by reference counting; no pauses here
    with tempfile.TemporaryDirectory() as tmp:
        hints = Path(tmp) / "soak.hints"
        hints.write_text(". 3600000 NS a.root.soak.\na.root.soak. 3600000 A 127.0.21.1\n")
        world = subprocess.Popen([sys.executable, str(BENCH / "soak_world.py"), str(WORLD_PORT)],
                                 stdout=subprocess.PIPE)
        resolver = None
        try:
            assert world.stdout is not None
            world.stdout.readline()  # "ready"
            log = Path(os.environ.get("SOAK_LOG", Path(tmp) / "resolver.log"))
            resolver = start_resolver(hints, cache_size, log, Path(tmp) / "control.sock")
            wait_for_metrics(resolver)
            try:
                import uvloop

                uvloop.run(run(duration, rate, resolver.pid))
            except ImportError:
                asyncio.run(run(duration, rate, resolver.pid))
        finally:
            for process in (resolver, world):
                if process is not None:
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()


if __name__ == "__main__":
    main()
