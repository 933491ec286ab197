"""`make bench-hostile`: one figure per hostile case of issue 20 (docs/reliability.md,
"Hostile servers: figures").

Scripted fake servers (tests/support/fakeauth.py) on 127.0.22.1-8, port 21200, and a real
`resolver serve` on 127.0.0.1:21253 (metrics 21280); the worker cases use 127.0.0.1:21353.
Nothing listens on 127.0.21.1-255 and 127.0.22.11-255 at port 21200: the 500 name servers
of one referral get ICMP port unreachable there.

Cases, one row each:
1. one reply of 4,000 A records: the client's rcode and time, the resolver's CPU for it;
2. 20 such lookups at once: cached-name p99 and losses of another client meanwhile;
3. malformed replies (bad LOC, HTTPS, NAPTR RDATA; a name pointer into octets after the
   last record) from one of a zone's two servers: the client's rcode and time, the queries
   each server got, and no traceback in the log;
4. a referral to 500 name servers that answer ICMP unreachable: upstream queries per
   client query (Unbound's max-sent-count is 32);
5. one address holding 200 idle TCP sockets: legitimate TCP clients served (RFC 7766
   §6.2.3; per-address cap and idle timeout in server/listener.py);
6. `--workers 2` and `kill -9` of one worker: the longest gap in answers and the time
   until the replacement runs;
7. a second `resolver serve` on the same port: its exit status and message.

Figures, not assertions (a shared 2-core machine). Bounded: about 1-2 minutes.
Run: .venv/bin/python bench/hostile.py
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from dnslib import RR, DNSHeader, DNSQuestion, DNSRecord  # noqa: E402
from dnslib import A as RecordA  # noqa: E402

from resolver.engine.settings import Limits  # noqa: E402
from tests.support.fakeauth import (  # noqa: E402
    FakeAuth,
    FakeNet,
    answer,
    ask,
    raw,
    rcode,
    root_server,
    soa,
    truncate,
    zone,
)

LIMIT = Limits().max_records_per_reply

WORLD_PORT = 21200
LISTEN = ("127.0.0.1", 21253)
METRICS = ("127.0.0.1", 21280)
WORKERS_LISTEN = ("127.0.0.1", 21353)
ROOT, HUGE, HONEST, GOOD = (f"127.0.22.{i}" for i in range(1, 5))
MALFORMED_KINDS = ("LOC", "HTTPS", "NAPTR", "pointer")
#: One malformed server per kind, each one of its zone's two (the other is GOOD): a server
#: a malformed reply counted against is avoided afterwards, so the kinds must not share one.
BAD = {kind: f"127.0.22.{5 + i}" for i, kind in enumerate(MALFORMED_KINDS)}
PER_KIND = 8
UNREACHABLE = ([f"127.0.21.{i}" for i in range(1, 256)]
               + [f"127.0.22.{i}" for i in range(11, 256)])
HOLDER = "127.0.22.200"
LEGITIMATE = [f"127.0.22.{i}" for i in range(201, 221)]
CACHED = [f"c{i}.fine.test" for i in range(50)]
RESOLVER = os.environ.get("HOSTILE_RESOLVER", str(Path(sys.executable).with_name("resolver")))


# -- replies ----------------------------------------------------------------------------

def _name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\0"


def _reply(qname: str, qtype: int, rtype: int, rdata: bytes, trailer: bytes = b"") -> bytes:
    """A reply with one answer record whose owner points at the question (0xC00C)."""
    header = struct.pack("!HHHHHH", 0, 0x8400, 1, 1, 0, 0)
    question = _name(qname) + struct.pack("!HH", qtype, 1)
    record = b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    return header + question + record + trailer


def malformed(kind: str, qname: str) -> bytes:
    if kind == "LOC":  # RFC 1876: 16 octets; these are 5
        return _reply(qname, 29, 29, b"\x00\x12\x16\x13\x00")
    if kind == "HTTPS":  # RFC 9460: priority 1, then a target label longer than the RDATA
        return _reply(qname, 65, 65, b"\x00\x01\x07abc")
    if kind == "NAPTR":  # RFC 3403: a flags string of 10 octets with 2 present
        return _reply(qname, 35, 35, b"\x00\x64\x00\x0a\x0aab")
    # A CNAME whose target is a pointer past the last record, into trailing octets.
    head = _reply(qname, 1, 5, b"\xc0\x00")
    target = len(head)
    return _reply(qname, 1, 5, struct.pack("!H", 0xC000 | target), _name("evil.test"))


def _huge_template() -> bytes:
    reply = DNSRecord(DNSHeader(id=0, qr=1, aa=1), q=DNSQuestion("h00.huge.test", 1))
    for i in range(4000):
        address = RecordA(f"10.0.{i // 256}.{i % 256}")
        reply.add_answer(RR("h00.huge.test", 1, ttl=300, rdata=address))
    return bytes(reply.pack())




def world() -> FakeNet:
    template = _huge_template()
    huge = FakeAuth(HUGE, zones={"huge.test": zone("huge.test", "ns A " + HUGE,
                                                  ns=["ns.huge.test"])})
    for i in range(21):
        huge.on(f"h{i:02d}.huge.test", "A", raw(template.replace(b"\x03h00", b"\x03h%02d" % i)))
    honest = FakeAuth(HONEST, zones={"fine.test": zone("fine.test", "ns A " + HONEST,
                                                      ns=["ns.fine.test"])})
    honest.on("*.fine.test", "A", answer("{qname} 300 A 192.0.2.7"))
    zones = {f"{kind.lower()}.test": zone(f"{kind.lower()}.test", "ns1 A " + BAD[kind],
                                          "ns2 A " + GOOD)
             for kind in MALFORMED_KINDS}
    good = FakeAuth(GOOD, zones=zones)
    bad_servers = []
    referrals = []
    for kind in MALFORMED_KINDS:
        origin = f"{kind.lower()}.test"
        bad = FakeAuth(BAD[kind], zones={origin: zones[origin]})
        bad_servers.append(bad)
        qtype = "A" if kind == "pointer" else kind
        for i in range(PER_KIND):
            qname = f"m{i}.{origin}"
            bad.on(qname, qtype, raw(malformed(kind, qname)))
            good.on(qname, qtype, rcode(0, authority=[soa(origin)]))
        label = kind.lower()
        referrals += [f"{label} NS ns1.{label}", f"{label} NS ns2.{label}",
                      f"ns1.{label} A {BAD[kind]}", f"ns2.{label} A {GOOD}"]
    at_limit = truncate(answer(*(f"{{qname}} 300 A 10.{i // 65536}.{i // 256 % 256}.{i % 256}"
                                 for i in range(LIMIT - 1))))
    for i in range(3):
        huge.on(f"big{i}.huge.test", "A", at_limit)
    delegation = [line for i, ip in enumerate(UNREACHABLE)
                  for line in (f"icmp NS ns{i}.icmp", f"ns{i}.icmp A {ip}")]
    root = root_server(ROOT, "huge NS ns.huge", "ns.huge A " + HUGE,
                       "fine NS ns.fine", "ns.fine A " + HONEST, *referrals, *delegation)
    return FakeNet(root, huge, honest, good, *bad_servers, port=WORLD_PORT, lifetime_s=300)


# -- the resolver -----------------------------------------------------------------------

def start(hints: Path, log: Path, listen: tuple[str, int], *extra: str) -> subprocess.Popen[bytes]:
    command = [*RESOLVER.split(), "serve", "--listen", f"{listen[0]}:{listen[1]}",
               "--root-hints", str(hints), "--upstream-port", str(WORLD_PORT), "--no-dnssec",
               "--control-socket", f"/tmp/resolver-bench-{listen[1]}.sock", *extra]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the resolver exited: {log.read_text()[-2000:]}")
        try:
            ask(listen[0], listen[1], "c0.fine.test", timeout_s=1)
            return process
        except (OSError, ValueError):
            time.sleep(0.2)
    raise SystemExit("the resolver did not start")


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def metrics() -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{METRICS[0]}:{METRICS[1]}/metrics",
                                  timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            with contextlib.suppress(ValueError):
                values[key] = values.get(key, 0.0) + float(value)
    return values


def wait_idle(limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while metrics().get("resolver_in_flight_resolutions", 0.0) > 0:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, 1000 * (time.monotonic() - started)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def rcode_name(reply: Any) -> str:
    return {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(
        reply.header.rcode, str(reply.header.rcode))


# -- the cases --------------------------------------------------------------------------

def case_huge(pid: int) -> list[str]:
    for name in CACHED:
        ask(*LISTEN, name)
    cpu = cpu_seconds(pid)
    reply, elapsed = timed(lambda: ask(*LISTEN, "h20.huge.test", tcp=True, timeout_s=15))
    wait_idle()
    cpu_ms = 1000 * (cpu_seconds(pid) - cpu)
    rows = [f"| One reply of 4,000 A records (64 KB, over TCP) | {rcode_name(reply)} with "
            f"{len(reply.rr)} records after {elapsed:.0f} ms; resolver CPU {cpu_ms:.0f} ms |"]
    for i in range(3):
        cpu = cpu_seconds(pid)
        reply, elapsed = timed(lambda n=i: ask(*LISTEN, f"big{n}.huge.test", tcp=True,
                                               timeout_s=15))
        wait_idle()
        cpu_ms = 1000 * (cpu_seconds(pid) - cpu)
        rows.append(f"| One reply of {LIMIT - 1} A records (the limit, "
                    f"max_records_per_reply {LIMIT}, with OPT), TC over UDP then TCP, name {i + 1} "
                    f"| {rcode_name(reply)} with {len(reply.rr)} records after {elapsed:.0f} ms; "
                    f"resolver CPU {cpu_ms:.0f} ms |")

    with concurrent.futures.ThreadPoolExecutor(max_workers=21) as pool:
        cpu = cpu_seconds(pid)
        started = time.monotonic()
        hostile = [pool.submit(ask, *LISTEN, f"h{i:02d}.huge.test", timeout_s=20)
                   for i in range(20)]
        latencies: list[float] = []
        lost = 0
        while not all(f.done() for f in hostile) or len(latencies) + lost < 50:
            name = CACHED[(len(latencies) + lost) % len(CACHED)]
            try:
                latencies.append(timed(lambda n=name: ask(*LISTEN, n, timeout_s=2))[1])
            except (OSError, ValueError):
                lost += 1
            if time.monotonic() - started > 30:
                break
        rcodes = [rcode_name(f.result(timeout=30)) for f in hostile]
        hostile_s = time.monotonic() - started
        wait_idle()
        cpu_ms = 1000 * (cpu_seconds(pid) - cpu)
    rows.append(f"| 20 such lookups at once, another client asking cached names | the 20: "
                f"{rcodes.count('SERVFAIL')} SERVFAIL in {hostile_s:.1f} s (resolver CPU "
                f"{cpu_ms:.0f} ms); the other client: {len(latencies)} answered, {lost} lost, "
                f"p99 {p99(latencies):.1f} ms, max {max(latencies, default=0):.1f} ms |")
    return rows


def case_malformed(net: FakeNet, log: Path) -> list[str]:
    rows = []
    for kind in MALFORMED_KINDS:
        qtype = "A" if kind == "pointer" else kind
        results = []
        times = []
        bad_queries = good_queries = 0
        for i in range(PER_KIND):
            qname = f"m{i}.{kind.lower()}.test"
            reply, elapsed = timed(lambda q=qname, t=qtype: ask(*LISTEN, q, t, timeout_s=10))
            results.append(rcode_name(reply))
            times.append(elapsed)
            bad_queries += net[BAD[kind]].count(qname, qtype)
            good_queries += net[GOOD].count(qname, qtype)
        label = {"LOC": "bad LOC RDATA (5 of 16 octets)",
                 "HTTPS": "bad HTTPS RDATA (target label past the RDATA)",
                 "NAPTR": "bad NAPTR RDATA (flags string cut short)",
                 "pointer": "CNAME target pointing into octets after the last record"}[kind]
        summary = ", ".join(f"{results.count(r)} {r}" for r in sorted(set(results)))
        rows.append(f"| Malformed: {label}, {PER_KIND} names | {summary}; "
                    f"{min(times):.0f}-{max(times):.0f} ms; queries to the bad server "
                    f"{bad_queries}, to the good one {good_queries} |")
    text = log.read_text(errors="replace")
    rows.append(f"| Malformed: the resolver's log | {text.count('Traceback')} tracebacks, "
                f"{len(re.findall(r'internal error', text, re.I))} internal errors |")
    return rows


def case_unreachable() -> list[str]:
    costs = []
    times = []
    results = []
    for i in range(3):
        before = metrics()["resolver_upstream_queries_total"]
        reply, elapsed = timed(lambda n=i: ask(*LISTEN, f"host{n}.icmp.test", timeout_s=15))
        wait_idle()
        costs.append(int(metrics()["resolver_upstream_queries_total"] - before))
        times.append(elapsed)
        results.append(rcode_name(reply))
    _, cached_ms = timed(lambda: ask(*LISTEN, CACHED[0]))
    return [f"| Referral to 500 name servers answering ICMP unreachable, 3 names | "
            f"{', '.join(results)}; upstream queries per client query {costs} (limit 32, "
            f"Unbound max-sent-count); {min(times):.0f}-{max(times):.0f} ms; a cached name "
            f"meanwhile {cached_ms:.1f} ms |"]


def _tcp_query(source: str, name: str, qid: int, timeout_s: float = 3.0) -> bool:
    query = DNSRecord.question(name)
    query.header.id = qid
    data = bytes(query.pack())
    try:
        with socket.create_connection(LISTEN, timeout=timeout_s,
                                      source_address=(source, 0)) as sock:
            sock.sendall(struct.pack("!H", len(data)) + data)
            length = struct.unpack("!H", _read(sock, 2))[0]
            return DNSRecord.parse(_read(sock, length)).header.id == qid
    except (OSError, ValueError):
        return False


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def case_tcp() -> list[str]:
    held: list[socket.socket] = []
    for _ in range(200):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.bind((HOLDER, 0))
            sock.connect(LISTEN)
            held.append(sock)
        except OSError:
            sock.close()
    time.sleep(0.5)
    open_after = 0
    for sock in held:
        sock.setblocking(False)
        try:
            open_after += sock.recv(1) != b""
        except BlockingIOError:
            open_after += 1
        except OSError:
            pass
    started = time.monotonic()
    served = sum(_tcp_query(source, CACHED[i], 1000 + i) for i, source in enumerate(LEGITIMATE))
    elapsed = time.monotonic() - started
    for sock in held:
        sock.close()
    return [f"| One address opens 200 idle TCP sockets; 20 other addresses ask over TCP | "
            f"{open_after} of the 200 still open after 0.5 s; legitimate clients served "
            f"{served}/{len(LEGITIMATE)} in {elapsed:.2f} s |"]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def case_workers(hints: Path, log: Path) -> list[str]:
    process = start(hints, log, WORKERS_LISTEN, "--workers", "2")
    rows = []
    try:
        deadline = time.monotonic() + 20
        while len(children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = children(process.pid)
        time.sleep(3)  # past the supervisor's minimum uptime
        for name in CACHED[:10]:
            for _ in range(4):  # both workers' caches
                ask(*WORKERS_LISTEN, name, timeout_s=2)
        victim = first[0]
        answers: list[float] = []
        lost = 0
        started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        restarted_s = None
        while time.monotonic() - started < 6:
            try:
                ask(*WORKERS_LISTEN, CACHED[len(answers) % 10], timeout_s=0.5)
                answers.append(time.monotonic() - started)
            except (OSError, ValueError):
                lost += 1
            now = children(process.pid)
            if restarted_s is None and len(now) == 2 and victim not in now:
                restarted_s = time.monotonic() - started
            time.sleep(0.01)
        gaps = [b - a for a, b in zip([0.0, *answers], answers, strict=False)]
        rows.append(f"| `--workers 2`, `kill -9` of one worker, a client asking every 10 ms "
                    f"for 6 s | {len(answers)} answered, {lost} lost (0.5 s timeout); longest "
                    f"gap {1000 * max(gaps, default=0):.0f} ms; replacement running after "
                    f"{restarted_s if restarted_s is None else f'{restarted_s:.2f} s'}; "
                    f"log: {'restarting it' in log.read_text(errors='replace')} |")
        second = subprocess.run(
            [*RESOLVER.split(), "serve", "--listen", f"{WORKERS_LISTEN[0]}:{WORKERS_LISTEN[1]}",
             "--root-hints", str(hints), "--upstream-port", str(WORLD_PORT), "--no-dnssec"],
            capture_output=True, text=True, timeout=30)
        message = next((line for line in second.stderr.splitlines() if "in use" in line),
                       second.stderr.strip().splitlines()[-1] if second.stderr.strip() else "")
        rows.append(f"| A second `resolver serve` on the same port | exit status "
                    f"{second.returncode}: \"{message.strip()}\"; the first still serving: "
                    f"{process.poll() is None} |")
    finally:
        stop(process)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, world() as net:
        hints = net.write_hints(Path(tmp) / "hostile.hints")
        log = Path(tmp) / "resolver.log"
        process = start(hints, log, LISTEN, "--metrics", f"{METRICS[0]}:{METRICS[1]}")
        rows = ["| case | figure |", "|---|---|"]
        try:
            for case in (lambda: case_huge(process.pid), lambda: case_malformed(net, log),
                         case_unreachable, case_tcp):
                started = time.monotonic()
                new = case()
                rows.extend(new)
                print("\n".join(new), f"({time.monotonic() - started:.0f} s)", flush=True)
        finally:
            code = stop(process)
        rows.append(f"| The resolver after these cases | exit status {code} on SIGTERM |")
        new = case_workers(hints, Path(tmp) / "workers.log")
        rows.extend(new)
        print("\n".join(new), flush=True)
        print()
        print("\n".join(rows))


if __name__ == "__main__":
    main()
