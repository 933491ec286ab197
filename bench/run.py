#!/usr/bin/env python3
"""`make bench`: our resolver and Unbound side by side on the NSD lab, one table of ratios.

It reuses the shared harness (../shared/bench, see its README): the lab is 2023 zones served by
four NSD instances on 127.53.*.*, dnsperf drives the load, upstream queries are counted by the
NSD servers themselves. In one run, on this machine:

  unbound        Unbound, 1 thread, iterator only (the harness's peer settings)
  ours           `resolver serve` with 1 worker
  python-ceiling the harness's trivial asyncio+uvloop responder, cached load only: what any
                 Python server can do on this machine
  ours-2w        `resolver serve --workers 2`, cached load only (scaling)

Per peer: cached (100 warmed names, dnsperf -c 10 -q 100 -l 10: QPS, CPU per query; a second
run with -v for p99; "QPS at a full core" is 10⁶ / CPU µs per query, the figure to compare when
dnsperf, not the resolver, is what saturates, as the CPU % in the JSON then shows), cold
(10,000 new names once, -q 20: names/s, upstream queries per name, RSS after it). Peers run
on CPU 0, dnsperf and the lab on CPU 1 (ours-2w on both CPUs: on two cores its workers share
CPU 1 with dnsperf). Then, in this process, the memory a cached RRset and
a cached answer take at 100,000 entries; then, if time is left, bench/encrypted_load.py
with 2 s a way in (UDP, TCP, DoT and DoH, ours beside Unbound). Everything is bounded in
time (BENCH_TIMEOUT, default 420 s) and only processes started here are stopped.

Usage: bench/run.py [--quick] [--no-workers] [--out FILE.md]
Env: BENCH_WORK (default /tmp/resolver-bench), SHARED_BENCH (default ../shared/bench),
     CACHED_SECONDS, COLD_NAMES and the other knobs of the shared harness.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from shared_path import shared_bench  # noqa: E402

SHARED = shared_bench()
os.environ.setdefault("BENCH_WORK", "/tmp/resolver-bench")
os.environ.setdefault("COLD_REPEAT", "1")
os.environ.setdefault("BENCH_PY", sys.executable)
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT", "420"))
OURS_PORT = 5310
OURS_2W_PORT = 5311

#: The targets of the performance issue, as (label, row key, comparison, factor of Unbound's).
TARGETS = [
    ("cached QPS, 1 worker", "qps", ">=", 0.8),
    ("cached QPS at one full core (10⁶ / CPU µs per query)", "core_qps", ">=", 0.8),
    ("p99 latency", "p99_ms", "<=", 2.0),
    ("upstream queries per name", "per_name", "<=", 1.0),
    ("cold names/s", "cold_qps", ">=", 0.25),
    ("RSS after the cold names", "rss_mb", "<=", 2.0),
]


def _import_harness() -> tuple[Any, Any, Any]:
    if not (SHARED / "run_peers.py").exists():
        raise SystemExit(f"the shared benchmark harness is not at {SHARED} (set SHARED_BENCH)")
    sys.path.insert(0, str(SHARED))
    sys.path.insert(0, str(SHARED / "lab"))
    import benchlib
    import labctl
    import run_peers

    return benchlib, labctl, run_peers


def bound_in_time(run_peers: Any, timeout_s: float) -> None:
    """A hard deadline for this run (SIGALRM raises TimeoutError, SIGTERM stops it as
    Ctrl-C would, so that the caller's cleanup runs) and this process on the load CPU."""
    def on_alarm(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"the benchmark ran past BENCH_TIMEOUT={timeout_s:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.alarm(int(timeout_s))
    os.sched_setaffinity(0, {int(c) for c in run_peers.LOAD_CPU.split(",")})


def stop_what_was_started(benchlib: Any, labctl: Any, *, stop_lab: bool) -> None:
    """The deadline off, every peer this run started stopped (by pid), and the lab if it
    started it."""
    signal.alarm(0)
    for tag in benchlib.tags("peer-"):
        benchlib.stop(tag)
    if stop_lab:
        labctl.stop(quiet=True)


def _ours(run_peers: Any, name: str, port: int, *extra: str) -> Any:
    def make(workdir: str, port: int) -> tuple[list[str], str]:
        argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"{run_peers.ADDR}:{port}",
                "--root-hints", run_peers.hints(), "--upstream-port", "53",
                "--control-socket", f"/tmp/resolver-bench-{port}.sock", *extra]
        return argv, f"--listen {run_peers.ADDR}:{port}"

    note = "resolver serve " + " ".join(extra) if extra else "resolver serve, 1 worker"
    return run_peers.Peer(name, port, make, note)


def _cached_only(run_peers: Any, benchlib: Any, peer: Any, cpu: str) -> dict[str, Any]:
    """Warm up and measure the cached load only (the scaling row)."""
    saved = run_peers.RES_CPU
    run_peers.RES_CPU = cpu
    try:
        pid = run_peers.start_peer(peer, "cached")
        try:
            cached = os.path.join(run_peers.LAB, "names", "cached.txt")
            run_peers.dnsperf(peer.port, cached, ["-n", "2", "-q", "10", "-t", "5", "-l", "60"],
                              90, False, f"{peer.name}-warm")
            return {"peer": peer.name, "note": peer.note,
                    "cached": run_peers.measure_cached(peer.port, peer.name, pid)}
        finally:
            run_peers.stop_peer(peer)
    finally:
        run_peers.RES_CPU = saved


def _python_ceiling(run_peers: Any, benchlib: Any) -> dict[str, Any]:
    """The shared harness's trivial asyncio+uvloop responder: what Python can do at all here."""
    script = str(SHARED / "ceiling" / "uvloop_responder.py")
    port = 5398
    benchlib.start("peer-ceiling", [sys.executable, script, run_peers.ADDR, str(port)], script,
                   cpu=run_peers.RES_CPU, logfile=os.path.join(benchlib.WORK, "ceiling.log"))
    try:
        if not benchlib.wait_until(lambda: benchlib.udp_listening(run_peers.ADDR, port), 20):
            return {"peer": "python-ceiling", "error": "the responder did not start"}
        measured = run_peers.measure_cached(port, "python-ceiling", benchlib.pid_of("peer-ceiling"))
        return {"peer": "python-ceiling", "cached": measured,
                "note": "trivial asyncio+uvloop responder (no cache, no checks)"}
    finally:
        benchlib.stop("peer-ceiling")


def _memory() -> dict[str, float]:
    """Bytes per cached RRset and per cached answer at 100,000 entries (bench/memory.py)."""
    result = subprocess.run([sys.executable, str(REPO / "bench" / "memory.py")], cwd=REPO,
                            capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-300:]}  # type: ignore[dict-item]
    return dict(json.loads(result.stdout))


def _encrypted() -> str:
    """The table of bench/encrypted_load.py, 2 s a way in; empty if it could not run."""
    try:
        result = subprocess.run([sys.executable, str(REPO / "bench" / "encrypted_load.py"),
                                 "--seconds", "2"], cwd=REPO, capture_output=True, text=True,
                                timeout=150)
    except subprocess.TimeoutExpired:
        return ""
    start = result.stdout.find("| way in")
    return result.stdout[start:].strip() if start >= 0 else ""


def _row(r: dict[str, Any]) -> dict[str, float | None]:
    c, k = r.get("cached", {}), r.get("cold", {})
    rss = r.get("rss_kb")
    return {
        "qps": c.get("qps"),
        "cpu_us": c.get("cpu_us_per_query"),
        "core_qps": 1e6 / c["cpu_us_per_query"] if c.get("cpu_us_per_query") else None,
        "p99_ms": c.get("p99_ms"),
        "lost": c.get("lost_total"),
        "cold_qps": k.get("qps"),
        "cold_lost": k.get("lost"),
        "per_name": r.get("upstream", {}).get("per_name"),
        "cold_cpu_us": k.get("cpu_us_per_name"),
        "rss_mb": rss / 1024 if rss else None,
    }


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict[str, Any]], memory: dict[str, float], elapsed: float,
           encrypted: str = "") -> str:
    table = {r["peer"]: _row(r) for r in rows if "error" not in r}
    lines = [
        "| peer | cached QPS | CPU µs/query | QPS at a full core | p99 ms | lost | cold names/s | "
        "cold lost | upstream q/name | cold CPU µs/name | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['peer']} | failed: {r['error'][:120]} |" + " |" * 9)
            continue
        t = table[r["peer"]]
        lines.append(
            f"| {r['peer']} | {_fmt(t['qps'], ',.0f')} | {_fmt(t['cpu_us'], '.1f')} | "
            f"{_fmt(t['core_qps'], ',.0f')} | "
            f"{_fmt(t['p99_ms'], '.3f')} | {_fmt(t['lost'], 'd')} | "
            f"{_fmt(t['cold_qps'], ',.0f')} | "
            f"{_fmt(t['cold_lost'], 'd')} | {_fmt(t['per_name'], '.2f')} | "
            f"{_fmt(t['cold_cpu_us'], '.0f')} | {_fmt(t['rss_mb'], '.1f')} |"
        )
    ours, unbound = table.get("ours"), table.get("unbound")
    if ours and unbound:
        lines += ["", "| target | ours | Unbound | ours / Unbound | wanted | met |",
                  "|---|---|---|---|---|---|"]
        for label, key, op, factor in TARGETS:
            a, b = ours.get(key), unbound.get(key)
            if a is None or not b:
                lines.append(f"| {label} | {a} | {b} | - | {op} {factor:g}x | - |")
                continue
            ratio = a / b
            # Compared as printed: equal figures meet a "<=" target.
            met = round(ratio, 2) >= factor if op == ">=" else round(ratio, 2) <= factor
            lines.append(f"| {label} | {a:,.2f} | {b:,.2f} | {ratio:.2f}x | {op} {factor:g}x | "
                         f"{'yes' if met else 'no'} |")
        lost = ours.get("lost")
        lines.append(f"| cached queries lost | {lost} | {unbound.get('lost')} | - | 0 | "
                     f"{'yes' if lost == 0 else 'no'} |")
        two = table.get("ours-2w")
        if two and ours.get("qps") and two.get("qps"):
            lines.append(f"| --workers 2, cached QPS | {two['qps']:,.0f} | - | "
                         f"{two['qps'] / ours['qps']:.2f}x of 1 worker | (scaling) | - |")
    if memory:
        lines += ["", "| memory at 100,000 entries | bytes each |", "|---|---|"]
        lines += [f"| {k} | {v:,.0f} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                  for k, v in memory.items()]
    if encrypted:
        lines += ["", "Cached answers by way in (bench/encrypted_load.py, 2 s each):", "",
                  encrypted]
    lines += ["", f"{elapsed:.0f} s; notes: " + "; ".join(f"{r['peer']}: {r.get('note', '')}"
                                                        for r in rows)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke settings: 3 s loads, 2000 cold names")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 2 row")
    parser.add_argument("--out", default="", help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        for knob, value in (("CACHED_SECONDS", "3"), ("LATENCY_SECONDS", "2"),
                            ("IDLE_SECONDS", "1"), ("COLD_NAMES", "2000")):
            os.environ.setdefault(knob, value)
    benchlib, labctl, run_peers = _import_harness()
    for tool in ("nsd", "nsd-control", "dnsperf", "unbound", "dig", "taskset"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise SystemExit(f"missing tool: {tool} (make bench installs nsd, dnsperf, unbound)")
    os.chdir(REPO)  # `python -m resolver` runs this checkout
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    started = time.time()
    deadline = started + TIMEOUT_S

    bound_in_time(run_peers, TIMEOUT_S)
    rows: list[dict[str, Any]] = []
    memory: dict[str, float] = {}
    encrypted = ""
    lab_started = not all(benchlib.alive(f"lab-nsd-{level}") for level in labctl.LEVELS)
    try:
        if lab_started:
            labctl.start()
        with open(os.path.join(run_peers.LAB, "names", "cold-pool.txt")) as f:
            pool = f.readlines()
        with open(os.path.join(benchlib.WORK, "cold-names.txt"), "w") as f:
            f.writelines(pool[: run_peers.COLD_NAMES])
        unbound = next(p for p in run_peers.PEERS if p.name == "unbound")
        for peer in (unbound, _ours(run_peers, "ours", OURS_PORT)):
            benchlib.log(f"peer {peer.name} on {run_peers.ADDR}:{peer.port}")
            try:
                rows.append(run_peers.bench_peer(peer))
            except (run_peers.PeerFailed, subprocess.SubprocessError, OSError, RuntimeError,
                    KeyError, ValueError) as exc:
                rows.append({"peer": peer.name, "error": str(exc)})
                benchlib.log(f"  FAILED: {exc}")
        if time.time() < deadline - 60:
            benchlib.log("python-ceiling (cached only)")
            rows.append(_python_ceiling(run_peers, benchlib))
        if not args.no_workers and time.time() < deadline - 60:
            peer = _ours(run_peers, "ours-2w", OURS_2W_PORT, "--workers", "2")
            benchlib.log("peer ours-2w (cached only, CPUs 0 and 1)")
            try:
                rows.append(_cached_only(run_peers, benchlib, peer, "0,1"))
            except (run_peers.PeerFailed, subprocess.SubprocessError, OSError) as exc:
                rows.append({"peer": peer.name, "error": str(exc)})
        if time.time() < deadline - 60:
            benchlib.log("memory per cached entry")
            memory = _memory()
        if time.time() < deadline - 90:
            benchlib.log("UDP, TCP, DoT and DoH beside Unbound (bench/encrypted_load.py)")
            encrypted = _encrypted()
    except (KeyboardInterrupt, TimeoutError) as exc:
        benchlib.log(f"stopped early: {exc!r}; cleaning up")
    finally:
        stop_what_was_started(benchlib, labctl, stop_lab=lab_started)
    text = report(rows, memory, time.time() - started, encrypted)
    print("\n" + text)
    results = Path(benchlib.WORK) / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"bench-{stamp}.md").write_text(text + "\n")
    (results / f"bench-{stamp}.json").write_text(json.dumps(rows, indent=1, default=str))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
