#!/usr/bin/env python3
"""`make bench-encrypted`: queries/s and server CPU µs per query over UDP, TCP, DoT and DoH,
ours beside Unbound's, both answering the same cached names.

Unbound (one thread, `tls-port` and `https-port`, a throwaway CA's certificate made by
openssl) serves NAMES names from local-data. Our `resolver serve` (one process) forwards
to Unbound's UDP port and is warmed once over UDP, so every measured query is a cache hit on
both sides. Then dnsperf drives each way in for SECONDS seconds with CLIENTS connections and
OUTSTANDING queries in flight (`dnsperf -m udp|tcp|dot|doh`; DoH is HTTP/2 POST), the server
pinned to CPU 0 and dnsperf to CPU 1. CPU µs per query is the server's utime + stime from
/proc over the run, divided by the queries answered.

Nothing leaves loopback: both servers' root hints name an unused loopback address, and
Unbound is never asked anything outside its local zone. Only processes started here are
stopped, by pid. It is a measurement, not a test: nothing asserts on the figures.

Usage: bench/encrypted_load.py [--seconds S] [--clients N] [--outstanding N] [--port BASE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import RESOLVER, _wait_for_udp_dns  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402
from tests.support.unbound import CertificateFiles, make_certificates  # noqa: E402

IP = "127.0.0.1"
ZONE = "bench.test."
NAMES = 100
#: Where both servers' root hints point: a loopback address nothing listens on.
NOWHERE = "127.255.255.253"
SERVER_CPU, LOAD_CPU = "0", "1"
MODES = ("udp", "tcp", "dot", "doh")


@dataclass(frozen=True)
class Ports:
    udp: int
    tls: int
    https: int

    def of(self, mode: str) -> int:
        return {"udp": self.udp, "tcp": self.udp, "dot": self.tls, "doh": self.https}[mode]


@dataclass(frozen=True)
class Run:
    qps: float
    cpu_us: float
    completed: int
    lost: int


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_tcp(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection((IP, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {IP}:{port}")


def unbound_conf(work: Path, ports: Ports, certs: CertificateFiles, hints: Path) -> str:
    lines = [
        "server:",
        "    verbosity: 0",
        *(f"    interface: {IP}@{port}" for port in (ports.udp, ports.tls, ports.https)),
        f"    port: {ports.udp}",
        f"    tls-port: {ports.tls}",
        f"    https-port: {ports.https}",
        f'    tls-service-key: "{certs.key_file}"',
        f'    tls-service-pem: "{certs.cert_file}"',
        "    do-daemonize: no",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{work}"',
        f'    pidfile: "{work / "unbound.pid"}"',
        '    logfile: ""',
        "    use-syslog: no",
        "    do-ip6: no",
        f'    root-hints: "{hints}"',
        "    do-not-query-localhost: yes",  # the hints' loopback address is never asked
        "    access-control: 127.0.0.0/8 allow",
        '    module-config: "iterator"',
        "    num-threads: 1",
        "    so-reuseport: no",
        "    incoming-num-tcp: 64",
        f'    local-zone: "{ZONE}" static',
        *(f'    local-data: "n{i}.{ZONE} 3600 IN A 192.0.2.{i % 250 + 1}"' for i in range(NAMES)),
        "remote-control:",
        "    control-enable: no",
    ]
    return "\n".join(lines) + "\n"


def dnsperf(mode: str, port: int, names: Path, seconds: float, clients: int,
            outstanding: int, pid: int) -> Run:
    argv = ["taskset", "-c", LOAD_CPU, "dnsperf", "-m", mode, "-s", IP, "-p", str(port),
            "-d", str(names), "-c", str(clients), "-q", str(outstanding), "-l", str(seconds),
            "-t", "5"]
    if mode == "doh":
        argv += ["-O", f"doh-uri=https://{IP}:{port}/dns-query", "-O", "doh-method=POST"]
    before = cpu_seconds(pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                          check=False)
    used = cpu_seconds(pid) - before
    text = done.stdout + done.stderr

    def figure(label: str) -> float:
        found = re.search(rf"{label}:\s+([\d.]+)", text)
        if found is None:
            raise RuntimeError(f"dnsperf -m {mode} printed no {label!r}: {text[-400:]}")
        return float(found.group(1))

    completed = int(figure("Queries completed"))
    return Run(qps=figure("Queries per second"), cpu_us=used * 1e6 / max(completed, 1),
               completed=completed, lost=int(figure("Queries lost")))


def start_unbound(work: Path, ports: Ports, certs: CertificateFiles, hints: Path
                  ) -> subprocess.Popen[bytes]:
    conf = work / "unbound.conf"
    conf.write_text(unbound_conf(work, ports, certs, hints))
    log = (work / "unbound.log").open("wb")
    process = subprocess.Popen(["taskset", "-c", SERVER_CPU, "timeout", "-k", "5", "600",
                                "unbound", "-d", "-c", str(conf)],
                               stdout=log, stderr=subprocess.STDOUT)
    for port in (ports.udp, ports.tls, ports.https):
        wait_for_tcp(port, process)
    return process


def start_ours(work: Path, ports: Ports, upstream: int, certs: CertificateFiles, hints: Path
               ) -> subprocess.Popen[bytes]:
    log = (work / "ours.log").open("wb")
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *RESOLVER, "serve", "--listen", f"{IP}:{ports.udp}",
         "--root-hints", str(hints), "--upstream-port", "53", "--no-dnssec",
         "--forward", f"{IP}@{upstream}", "--control-socket", str(work / "control.sock"),
         "--listen-tls", f"{IP}:{ports.tls}", "--listen-https", f"{IP}:{ports.https}",
         "--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file),
         "--tls-max-connections-per-client", "64"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    _wait_for_udp_dns(IP, ports.udp, process)  # type: ignore[arg-type]
    for port in (ports.tls, ports.https):
        wait_for_tcp(port, process)
    return process


def server_pid(process: subprocess.Popen[bytes]) -> int:
    """The server's own pid: Unbound runs as the child of `timeout`, ours is the process."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return int(children[0]) if children else process.pid


def table(results: dict[str, dict[str, Run]]) -> str:
    lines = ["| way in | ours q/s | ours CPU µs/query | Unbound q/s | Unbound CPU µs/query | "
             "lost (ours / Unbound) |", "|---|---|---|---|---|---|"]
    label = {"udp": "UDP", "tcp": "TCP", "dot": "DoT", "doh": "DoH (HTTP/2)"}
    for mode in MODES:
        ours, unbound = results["ours"].get(mode), results["unbound"].get(mode)

        def cells(run: Run | None) -> str:
            return "- | -" if run is None else f"{run.qps:,.0f} | {run.cpu_us:,.0f}"

        lost = f"{ours.lost if ours else '-'} / {unbound.lost if unbound else '-'}"
        lines.append(f"| {label[mode]} | {cells(ours)} | {cells(unbound)} | {lost} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4, help="each dnsperf run")
    parser.add_argument("--clients", type=int, default=4, help="connections (dnsperf -c)")
    parser.add_argument("--outstanding", type=int, default=40,
                        help="queries in flight (dnsperf -q)")
    parser.add_argument("--port", type=int, default=int(os.environ.get(
        "BENCH_ENCRYPTED_PORT", "20100")), help="first of the six ports used")
    args = parser.parse_args()
    for tool in ("unbound", "dnsperf", "openssl", "taskset", "timeout"):
        if shutil.which(tool) is None:
            raise SystemExit(f"missing tool: {tool} (apt-get install unbound dnsperf openssl)")
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench")))
    signal.alarm(int(60 + 8 * (args.seconds + 10)))
    base = args.port
    peers = {"unbound": Ports(base, base + 1, base + 2), "ours": Ports(base + 3, base + 4,
                                                                       base + 5)}
    results: dict[str, dict[str, Run]] = {"unbound": {}, "ours": {}}
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-encrypted-") as tmp:
        work = Path(tmp)
        certs = make_certificates(work / "certs", server_name="dns.bench.test", ip=IP)
        hints = work / "root.hints"
        hints.write_text(f". 3600000 NS a.root.invalid.\na.root.invalid. 3600000 A {NOWHERE}\n")
        names = work / "names.txt"
        names.write_text("".join(f"n{i}.{ZONE} A\n" for i in range(NAMES)))
        try:
            unbound = start_unbound(work, peers["unbound"], certs, hints)
            started.append(unbound)
            ours = start_ours(work, peers["ours"], peers["unbound"].udp, certs, hints)
            started.append(ours)
            dnsperf("udp", peers["ours"].udp, names, 1, 1, 10, ours.pid)  # fills our cache
            for peer, process in (("unbound", unbound), ("ours", ours)):
                for mode in MODES:
                    run = dnsperf(mode, peers[peer].of(mode), names, args.seconds,
                                  args.clients, args.outstanding, server_pid(process))
                    results[peer][mode] = run
                    print(f"{peer:8} {mode:4} {run.qps:9,.0f} q/s {run.cpu_us:7,.0f} µs/query"
                          f"  ({run.completed} answered, {run.lost} lost)", flush=True)
        except (TimeoutError, RuntimeError, subprocess.SubprocessError, OSError) as exc:
            print(f"stopped early: {exc}", file=sys.stderr)
        finally:
            signal.alarm(0)
            for process in reversed(started):
                stop_process(process)
    print(f"\n{args.clients} connections, {args.outstanding} queries in flight, "
          f"{args.seconds:g} s per run, {NAMES} cached names, servers on CPU {SERVER_CPU}, "
          f"dnsperf on CPU {LOAD_CPU}:\n")
    print(table(results))
    return 0 if all(len(runs) == len(MODES) for runs in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
