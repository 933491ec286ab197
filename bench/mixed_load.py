#!/usr/bin/env python3
"""`make bench-mixed` (and the last part of `make bench`): a realistic query stream at rising
rates, ours beside Unbound on the NSD lab, until 1% of the queries go unanswered.

The stream (fixed seed), one query in:
- 90: a name drawn from a Zipf distribution (s = 1.0) over the lab's 20,000 bulk names and its
  featured names, in a random order of popularity: the popular names repeat (cache hits), the
  long tail keeps bringing names not yet asked;
- 7: a new name under a random bulk zone, never asked before: NXDOMAIN;
- 1: a new name under wild.example.com (a wildcard: NOERROR, a miss each time);
- 1: a new name under slow.com (its server answers after 250 ms);
- 1: a new name under halfdead.net (one of its two servers is a black hole).

Per resolver, fresh: 8 s of the stream at 4,000 queries/s as warm-up, then steps of STEP_S
seconds (dnsperf -Q RATE, each step its own part of the stream, so new names stay new), the
rate rising by a quarter per step from 2,000 until a step is not held: more than 1% of its
queries lost (no reply within 2 s: what resperf reports as the point where loss begins), or
under 90% of its rate answered (dnsperf sends no more once its outstanding queries wait),
or the rate passes MAX_RATE. Printed per resolver: the highest rate held with its achieved
queries/s and p99 there, and every step; then the ratio ours / Unbound. Resolvers on CPU 0,
dnsperf and the lab on CPU 1, as in bench/run.py. Bounded: TIMEOUT_S (default 300 s).

Usage: bench/mixed_load.py [--max-rate N] [--step-seconds S]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from run import (  # noqa: E402
    OURS_PORT,
    _import_harness,
    _ours,
    bound_in_time,
    stop_what_was_started,
)

TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT", "300"))
START_RATE = 2_000
RATE_STEP = 1.25
LOSS_LIMIT = 0.01
#: A step is held only if this share of its target rate was answered: dnsperf stops
#: sending once its outstanding queries are all unanswered, so a server that falls
#: behind loses nothing and simply gets fewer queries than the rate asked for.
ANSWERED_SHARE = 0.9
WARM_RATE = 4_000
WARM_S = 8.0
#: The stream's shares, out of 100 (see the docstring).
MIX = (("zipf", 90), ("nx", 7), ("wild", 1), ("slow", 1), ("halfdead", 1))
NEW_NAME_PARENTS = {"wild": "wild.example.com.", "slow": "slow.com.",
                    "halfdead": "halfdead.net."}


class Stream:
    """The query stream: an endless, reproducible sequence of "name type" lines."""

    def __init__(self, names: list[str], seed: int = 53) -> None:
        self.rng = random.Random(seed)
        self.names = names[:]
        self.rng.shuffle(self.names)  # popularity order: a random one
        weights = [1.0 / rank for rank in range(1, len(self.names) + 1)]  # Zipf, s = 1
        self.cumulative = list(itertools.accumulate(weights))
        self.zones = sorted({name.split(".", 1)[1] for name in names if name.startswith("h")})
        self.serial = 0
        self.kinds = [kind for kind, share in MIX for _ in range(share)]

    def line(self) -> str:
        kind = self.kinds[self.rng.randrange(len(self.kinds))]
        if kind == "zipf":
            point = self.rng.random() * self.cumulative[-1]
            return f"{self.names[bisect.bisect_left(self.cumulative, point)]} A"
        self.serial += 1
        label = f"m{self.serial}x{self.rng.getrandbits(20):05x}"
        if kind == "nx":
            return f"{label}.{self.zones[self.rng.randrange(len(self.zones))]} A"
        return f"{label}.{NEW_NAME_PARENTS[kind]} A"

    def write(self, path: Path, count: int) -> Path:
        with path.open("w") as out:
            out.writelines(self.line() + "\n" for _ in range(count))
        return path


def lab_names(lab: str) -> list[str]:
    """The names the lab answers: its bulk names and the featured names of cached.txt."""
    names = []
    for file in ("all.txt", "cached.txt"):
        path = Path(lab) / "names" / file
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == "A":
                names.append(parts[0])
    return sorted(set(names))


def step(run_peers: Any, port: int, datafile: Path, rate: float, seconds: float,
         tag: str) -> dict[str, Any]:
    args = ["-c", "10", "-q", "5000", "-Q", f"{rate:.0f}", "-l", f"{seconds:g}", "-t", "2"]
    result: dict[str, Any] = run_peers.dnsperf(port, str(datafile), args, seconds + 30, True, tag)
    sent = result.get("sent", 0)
    result["rate"] = rate
    result["loss"] = result.get("lost", 0) / sent if sent else 1.0
    result["held"] = (result["loss"] <= LOSS_LIMIT
                      and result.get("qps", 0) >= ANSWERED_SHARE * rate)
    return result


def measure(run_peers: Any, benchlib: Any, peer: Any, work: Path, max_rate: float,
            step_s: float) -> dict[str, Any]:
    stream = Stream(lab_names(run_peers.LAB))
    pid = run_peers.start_peer(peer, "mixed")
    steps: list[dict[str, Any]] = []
    try:
        warm = stream.write(work / f"{peer.name}-warm.txt", int(WARM_RATE * WARM_S))
        step(run_peers, peer.port, warm, WARM_RATE, WARM_S, f"{peer.name}-mixed-warm")
        rate = float(START_RATE)
        while rate <= max_rate:
            data = stream.write(work / f"{peer.name}-{rate:.0f}.txt", int(rate * step_s))
            result = step(run_peers, peer.port, data, rate, step_s,
                          f"{peer.name}-mixed-{rate:.0f}")
            steps.append(result)
            benchlib.log(f"  {peer.name} at {rate:.0f}/s: {result.get('qps', 0):.0f} answered/s, "
                         f"{100 * result['loss']:.2f}% lost, p99 {result.get('p99_ms', 0):.1f} ms")
            if not result["held"]:
                break
            rate *= RATE_STEP
        rss = benchlib.rss_kb(pid) / 1024
    finally:
        run_peers.stop_peer(peer)
    held = [s for s in steps if s["held"]]
    return {"peer": peer.name, "steps": steps, "held": held[-1] if held else None, "rss_mb": rss}


def report(rows: list[dict[str, Any]]) -> str:
    lines = ["| resolver | rate held | answered/s there | lost there | "
             "p99 there | first step not held | RSS after |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        held, first = row["held"], row["steps"][0] if row["steps"] else None
        over = next((s for s in row["steps"] if not s["held"]), None)
        over_text = (f"{over['rate']:.0f}/s ({100 * over['loss']:.1f}% lost, "
                     f"{over.get('qps', 0):.0f} answered/s)" if over else "none")
        if held is None:
            start = (f"{100 * first['loss']:.1f}% lost at {first['rate']:.0f}/s" if first
                     else "no step ran")
            lines.append(f"| {row['peer']} | none: {start} | | | | {over_text} | "
                         f"{row['rss_mb']:.0f} MB |")
            continue
        lines.append(f"| {row['peer']} | {held['rate']:.0f}/s | {held.get('qps', 0):.0f} | "
                     f"{100 * held['loss']:.2f}% | {held.get('p99_ms', 0):.1f} ms | "
                     f"{over_text} | {row['rss_mb']:.0f} MB |")
    by_name = {row["peer"]: row for row in rows}
    ours, unbound = by_name.get("ours"), by_name.get("unbound")
    if ours and unbound and ours["held"] and unbound["held"]:
        lines.append("")
        ratio = ours["held"]["rate"] / unbound["held"]["rate"]
        lines.append(f"ours / Unbound: rate held {ratio:.2f}x (target >= 0.5x); p99 there "
                     f"{ours['held'].get('p99_ms', 0):.1f} ms beside "
                     f"{unbound['held'].get('p99_ms', 0):.1f} ms")
    lines.append("")
    lines.append("steps (rate: answered/s, lost, p99):")
    for row in rows:
        lines.append(f"- {row['peer']}: " + "; ".join(
            f"{s['rate']:.0f}: {s.get('qps', 0):.0f}, {100 * s['loss']:.2f}%, "
            f"{s.get('p99_ms', 0):.1f} ms" for s in row["steps"]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-rate", type=float, default=60_000)
    parser.add_argument("--step-seconds", type=float, default=5.0)
    args = parser.parse_args()
    benchlib, labctl, run_peers = _import_harness()

    bound_in_time(run_peers, TIMEOUT_S)
    work = Path(benchlib.WORK) / "mixed"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    lab_started = not all(benchlib.alive(f"lab-nsd-{level}") for level in labctl.LEVELS)
    try:
        if lab_started:
            labctl.start()
        unbound = next(p for p in run_peers.PEERS if p.name == "unbound")
        for peer in (unbound, _ours(run_peers, "ours", OURS_PORT)):
            benchlib.log(f"mixed workload: {peer.name}")
            try:
                rows.append(measure(run_peers, benchlib, peer, work, args.max_rate,
                                    args.step_seconds))
            except (run_peers.PeerFailed, subprocess.SubprocessError, OSError) as exc:
                benchlib.log(f"  FAILED: {exc}")
    except (KeyboardInterrupt, TimeoutError) as exc:
        benchlib.log(f"stopped early: {exc!r}; cleaning up")
    finally:
        stop_what_was_started(benchlib, labctl, stop_lab=lab_started)
    if rows:
        print("\nMixed workload (Zipf popularity, new and NXDOMAIN names, slow and dead servers; "
              f"steps of {args.step_seconds:g} s):\n")
        print(report(rows))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
