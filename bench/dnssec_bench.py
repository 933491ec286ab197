#!/usr/bin/env python3
"""The validating cold and cached paths on a signed copy of the benchmark lab, ours beside Unbound.

Called by `make bench` after bench/run.py (which runs the unsigned lab on the same addresses).
It generates the lab of ../shared/bench into its own directory and signs every zone, root
and all, with ldns-signzone from apt: one ECDSA P-256 SHA-256 key per zone (algorithm 13,
RFC 6605; a combined signing key with the SEP flag, NSEC denial), children first so each
parent carries its children's DS (ldns-keygen writes it). The signed lab is kept and reused
for six days (signatures last four weeks). The four NSD instances serve the signed zones on
127.53.*.*, as the unsigned lab does.

Four peers, one at a time, pinned to CPU 0 (dnsperf and NSD on CPU 1), on 127.0.24.1:
  unbound      Unbound, module-config "iterator" (the shared harness's peer settings)
  unbound-val  the same with module-config "validator iterator" and the signed root's DS
               as trust-anchor-file
  ours         resolver serve --no-dnssec
  ours-val     resolver serve --trust-anchor-file (the same DS)
Each: cached QPS (100 warmed names, dnsperf -c 10 -q 100), then cold (COLD_NAMES new names
once, default 3,000, -q 20: names/s, upstream queries per name counted by NSD). The shared
harness's run_peers.bench_peer does both. Bounded by BENCH_TIMEOUT (default 300 s); only
processes started here are stopped.

Usage: bench/dnssec_bench.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("BENCH_WORK", "/tmp/resolver-bench-dnssec")
os.environ.setdefault("COLD_REPEAT", "1")
os.environ.setdefault("COLD_NAMES", "3000")
os.environ.setdefault("CACHED_SECONDS", "6")
os.environ.setdefault("LATENCY_SECONDS", "3")
os.environ.setdefault("IDLE_SECONDS", "1")
os.environ.setdefault("BENCH_PY", sys.executable)

from run import SHARED, _import_harness, bound_in_time, stop_what_was_started  # noqa: E402

TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT", "300"))
ADDR = "127.0.24.1"
PORTS = {"unbound": 24101, "unbound-val": 24102, "ours": 24103, "ours-val": 24104}
SIGNED_FOR_S = 6 * 86400


def _zone_of(path: Path) -> str:
    return "." if path.name == "root.zone" else path.name[: -len(".zone")] + "."


def _parent(origin: str, origins: set[str]) -> str | None:
    if origin == ".":
        return None
    labels = origin.rstrip(".").split(".")
    for i in range(1, len(labels)):
        candidate = ".".join(labels[i:]) + "."
        if candidate in origins:
            return candidate
    return "."


def _sign_one(zonefile: Path, origin: str, keys: Path, children_ds: list[Path]) -> Path:
    """Key, DS of the children appended, signed in place; returns the zone's DS file."""
    made = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", origin], cwd=keys,
                          capture_output=True, text=True, check=True, timeout=60)
    base = keys / made.stdout.strip()
    with zonefile.open("a") as f:
        for ds in children_ds:
            f.write(ds.read_text())
    unsigned = zonefile.with_suffix(".unsigned")
    zonefile.rename(unsigned)
    subprocess.run(["ldns-signzone", "-o", origin, "-f", str(zonefile), str(unsigned),
                    str(base)], check=True, capture_output=True, timeout=120)
    return Path(f"{base}.ds")


def sign_lab(lab: Path) -> Path:
    """Sign every zone of the generated lab at `lab`, children first; the root's DS file."""
    zones = {_zone_of(p): p for p in (lab / "zones").glob("*.zone")}
    keys = lab / "keys"
    keys.mkdir(exist_ok=True)
    origins = set(zones)
    children: dict[str, list[str]] = {o: [] for o in origins}
    for origin in origins:
        parent = _parent(origin, origins)
        if parent is not None:
            children[parent].append(origin)
    depth = {o: (0 if o == "." else o.rstrip(".").count(".") + 1) for o in origins}
    ds: dict[str, Path] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for level in sorted(set(depth.values()), reverse=True):
            batch = [o for o in origins if depth[o] == level]
            futures = {o: pool.submit(_sign_one, zones[o], o, keys,
                                      [ds[c] for c in children[o]]) for o in batch}
            for origin, future in futures.items():
                ds[origin] = future.result()
    anchor = lab / "root.anchor"
    anchor.write_text(ds["."].read_text())
    return anchor


def signed_lab(labctl: Any, benchlib: Any) -> dict[str, Any]:
    """The generated and signed lab (reused while its signatures are young)."""
    lab = Path(labctl.LAB)
    stamp = lab / "signed.stamp"
    if stamp.exists() and time.time() - float(stamp.read_text()) < SIGNED_FOR_S:
        return dict(labctl.meta())
    subprocess.run(["rm", "-rf", str(lab)], check=True)
    subprocess.run([sys.executable, str(SHARED / "lab" / "gen_lab.py"), str(lab)], check=True)
    started = time.time()
    sign_lab(lab)
    benchlib.log(f"signed {len(list((lab / 'zones').glob('*.zone')))} zones with ldns-signzone "
                 f"(algorithm 13) in {time.time() - started:.0f} s")
    stamp.write_text(str(time.time()))
    return dict(labctl.meta())


def _peers(run_peers: Any, anchor: Path) -> list[Any]:
    def unbound(validating: bool) -> Any:
        def make(workdir: str, port: int) -> tuple[list[str], str]:
            argv, conf = run_peers.mk_unbound(workdir, port)
            text = Path(conf).read_text()
            if validating:
                text = text.replace('module-config: "iterator"',
                                    'module-config: "validator iterator"\n'
                                    f'    trust-anchor-file: "{anchor}"')
            Path(conf).write_text(text)
            return list(argv), str(conf)
        return make

    def ours(*extra: str) -> Any:
        def make(workdir: str, port: int) -> tuple[list[str], str]:
            argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"{ADDR}:{port}",
                    "--root-hints", run_peers.hints(), "--upstream-port", "53",
                    "--control-socket", f"/tmp/resolver-bench-{port}.sock", *extra]
            return argv, f"--listen {ADDR}:{port}"
        return make

    return [
        run_peers.Peer("unbound", PORTS["unbound"], unbound(False), 'module-config "iterator"'),
        run_peers.Peer("unbound-val", PORTS["unbound-val"], unbound(True),
                       'module-config "validator iterator", trust-anchor-file'),
        run_peers.Peer("ours", PORTS["ours"], ours("--no-dnssec"), "resolver serve --no-dnssec"),
        run_peers.Peer("ours-val", PORTS["ours-val"], ours("--trust-anchor-file", str(anchor)),
                       "resolver serve --trust-anchor-file"),
    ]


def _figures(row: dict[str, Any]) -> dict[str, float | None]:
    cached, cold = row.get("cached", {}), row.get("cold", {})
    checks = row.get("checks", [])
    return {"qps": cached.get("qps"), "cpu_us": cached.get("cpu_us_per_query"),
            "cold_qps": cold.get("qps"), "per_name": row.get("upstream", {}).get("per_name"),
            "cold_lost": cold.get("lost"),
            "checks": sum(1 for c in checks if c.get("ok")) if checks else None}


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def report(rows: list[dict[str, Any]], elapsed: float, cold_names: int) -> str:
    f = {r["peer"]: _figures(r) for r in rows if "error" not in r}
    lines = ["| peer | cached QPS | CPU µs/query | cold names/s | cold lost | upstream q/name | "
             "checks ok |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['peer']} | failed: {r['error'][:100]} | | | | | |")
            continue
        t = f[r["peer"]]
        lines.append(f"| {r['peer']} | {_fmt(t['qps'], ',.0f')} | {_fmt(t['cpu_us'], '.1f')} | "
                     f"{_fmt(t['cold_qps'], ',.0f')} | {_fmt(t['cold_lost'], 'd')} | "
                     f"{_fmt(t['per_name'], '.2f')} | {_fmt(t['checks'], 'd')}/14 |")
    lines += ["", "| ratio (same run) | cached QPS | cached CPU µs/query | cold names/s | "
              "upstream q/name |", "|---|---|---|---|---|"]
    pairs = [("validating / not, Unbound", "unbound-val", "unbound"),
             ("validating / not, ours", "ours-val", "ours"),
             ("ours / Unbound, not validating", "ours", "unbound"),
             ("ours / Unbound, validating", "ours-val", "unbound-val")]
    for label, a, b in pairs:
        if a in f and b in f:
            lines.append(f"| {label} | " + " | ".join(
                _ratio(f[a][k], f[b][k]) for k in ("qps", "cpu_us", "cold_qps", "per_name")) + " |")
    lines += ["", f"Signed lab: 2023 zones, ldns-signzone, algorithm 13 (ECDSA P-256 SHA-256), "
              f"one key per zone, NSEC. {cold_names} cold names; {elapsed:.0f} s."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s loads, 1000 cold names")
    parser.add_argument("--out", default="", help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        os.environ.update(CACHED_SECONDS="3", LATENCY_SECONDS="2", COLD_NAMES="1000")
    for tool in ("nsd", "nsd-control", "dnsperf", "unbound", "ldns-keygen", "ldns-signzone"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise SystemExit(f"missing tool: {tool} (apt: nsd dnsperf unbound ldnsutils)")
    benchlib, labctl, run_peers = _import_harness()
    run_peers.ADDR = ADDR
    os.chdir(REPO)
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    started = time.time()

    bound_in_time(run_peers, TIMEOUT_S)
    rows: list[dict[str, Any]] = []
    try:
        signed_lab(labctl, benchlib)
        anchor = Path(labctl.LAB) / "root.anchor"
        labctl.gen = lambda: labctl.meta()  # start() serves the signed zones as they are
        labctl.start()
        with open(os.path.join(run_peers.LAB, "names", "cold-pool.txt")) as f:
            pool = f.readlines()
        with open(os.path.join(benchlib.WORK, "cold-names.txt"), "w") as f:
            f.writelines(pool[: run_peers.COLD_NAMES])
        for peer in _peers(run_peers, anchor):
            if time.time() > started + TIMEOUT_S - 45:
                rows.append({"peer": peer.name, "error": "no time left"})
                continue
            benchlib.log(f"peer {peer.name} on {ADDR}:{peer.port} (signed lab)")
            try:
                rows.append(run_peers.bench_peer(peer))
            except (run_peers.PeerFailed, subprocess.SubprocessError, OSError, RuntimeError,
                    KeyError, ValueError) as exc:
                rows.append({"peer": peer.name, "error": str(exc)})
                benchlib.log(f"  FAILED: {exc}")
    except (KeyboardInterrupt, TimeoutError) as exc:
        benchlib.log(f"stopped early: {exc!r}; cleaning up")
    finally:
        stop_what_was_started(benchlib, labctl, stop_lab=True)
    text = report(rows, time.time() - started, run_peers.COLD_NAMES)
    print("\n" + text)
    results = Path(benchlib.WORK) / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"dnssec-{stamp}.md").write_text(text + "\n")
    (results / f"dnssec-{stamp}.json").write_text(json.dumps(rows, indent=1, default=str))
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
