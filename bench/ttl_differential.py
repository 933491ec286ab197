#!/usr/bin/env python3
"""`make bench-ttl`: 5,000 names asked of ours and of Unbound on the NSD lab, TTLs compared.

Both resolvers iterate the unsigned lab of ../shared/bench (2023 zones on 127.53.*.*; every
zone's SOA has TTL 86400 and MINIMUM 3600, so a negative answer lives min(86400, 3600) =
3600 s by RFC 2308 §5). The names: existing names of several types (A, AAAA, MX, TXT, NS,
SOA, CNAME chains, a wildcard, the servers' own addresses), NXDOMAIN names (ten or more per
zone in 120 bulk zones, under TLDs and under the root) and NODATA names (AAAA, MX, TXT of
existing A names, in the same zones as the NXDOMAIN names, so negative answers of one zone
follow each other). Every name is asked ROUNDS times (default 3), each round in its own
shuffled order with GAP_S seconds (default 8) between rounds; each question goes to both
resolvers at the same moment.

For every answer it keeps the rcode and the TTL of each RRset of the answer section, and
for a negative answer the TTL of the SOA in the authority section. It reports:

1. growth: a later answer for the same (name, type) from the same resolver in which an RRset
   shows a TTL above the earlier TTL minus the seconds elapsed plus 1 s (a cached TTL that
   counts up, or is reset by unrelated traffic); elapsed is counted from the receipt of the
   earlier answer to the sending of the later question, the least time that can have passed
   between the resolver making the two (the 1 s covers clocks kept in whole seconds);
2. ours beside Unbound, per answer: rcode disagreements, and whether the TTLs of the RRsets
   both show are equal (within 1 s), lower or higher in ours.

Bounded: ROUNDS x 5,000 questions with at most 40 outstanding per resolver, 4 s per
question, a hard alarm at TIMEOUT_S (default 230 s). Only processes started here are
stopped. Addresses: Unbound on 127.0.24.1:24001, ours on 127.0.24.2:24002.

Usage: bench/ttl_differential.py [--names 5000] [--rounds 3] [--gap 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import string
import struct
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENCH_WORK", "/tmp/resolver-bench-ttl")
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from shared_path import shared_bench  # noqa: E402

from resolver.dns.decoding import decode  # noqa: E402
from resolver.dns.encoding import make_query  # noqa: E402
from resolver.dns.wire import Question, RRType, type_name  # noqa: E402

SHARED = shared_bench()

UNBOUND = ("127.0.24.1", 24001)
OURS = ("127.0.24.2", 24002)
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "230"))
OUTSTANDING = 40
QUERY_TIMEOUT_S = 4.0
SOA_IN_AUTHORITY = "SOA(authority)"
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
BULK_TLDS = ["com", "net", "org", "edu", "fr"]


def _import_harness() -> tuple[Any, Any]:
    if not (SHARED / "benchlib.py").exists():
        raise SystemExit(f"the shared benchmark harness is not at {SHARED} (set SHARED_BENCH)")
    sys.path.insert(0, str(SHARED))
    sys.path.insert(0, str(SHARED / "lab"))
    import benchlib
    import labctl

    return benchlib, labctl


def _zone(i: int) -> str:
    return f"z{i:04d}.{BULK_TLDS[i % len(BULK_TLDS)]}."


def workload(count: int, seed: int = 14) -> list[tuple[str, str]]:
    """`count` distinct (name, type) questions from the lab, in a fixed pseudo-random mix."""
    rng = random.Random(seed)
    featured = [
        ("www.example.com.", "A"), ("www.example.com.", "AAAA"), ("example.com.", "MX"),
        ("example.com.", "TXT"), ("example.com.", "NS"), ("example.com.", "SOA"),
        ("example.com.", "A"), ("mail.example.com.", "A"), ("ftp.example.com.", "A"),
        ("www.chain.net.", "A"), ("step1.chain.net.", "A"), ("www.rr.org.", "A"),
        ("www.glueless.org.", "A"), ("www.cs.hamburger.edu.", "A"),
        ("gaia.cs.hamburger.edu.", "A"), ("hamburger.edu.", "MX"), ("www.crepes.fr.", "A"),
        ("crepes.fr.", "MX"), ("www.networkutopia.com.", "A"), ("networkutopia.com.", "MX"),
        ("com.", "NS"), ("com.", "SOA"), (".", "NS"), (".", "SOA"), ("net.", "NS"),
        ("mail.example.com.", "AAAA"), ("ftp.example.com.", "AAAA"),
    ]
    featured += [(f"w{k}.wild.example.com.", "A") for k in range(40)]
    negative_zones = rng.sample(range(2000), 120)
    nxdomain = [(f"nx{k}.{_zone(i)}", "A") for i in negative_zones for k in range(10)]
    nxdomain += [(f"nx{k}.{tld}.", "A") for tld in BULK_TLDS for k in range(20)]
    nxdomain += [(f"nx{k}.example.com.", "A") for k in range(30)]
    nxdomain += [(f"nosuchtld{k}.", "A") for k in range(30)]
    nodata = [(f"h{j}.{_zone(i)}", t) for i in negative_zones for j in range(2)
              for t in ("AAAA", "MX", "TXT")]
    nodata += [(f"{_zone(i)}", "AAAA") for i in negative_zones]
    servers = [(f"ns1.{_zone(i)}", "A") for i in range(0, 2000, 10)]
    servers += [(f"ns{n}.host{k}.net.", "A") for n in (1, 2) for k in range(4)]
    servers += [(_zone(i), "NS") for i in range(1, 2000, 20)]
    fixed = featured + nxdomain + nodata + servers
    taken = set(fixed)
    bulk = [(f"h{j}.{_zone(i)}", "A") for i in range(2000) for j in range(10)]
    rng.shuffle(bulk)
    fixed += [q for q in bulk if q not in taken][: max(0, count - len(fixed))]
    return fixed[:count]


@dataclass
class Answer:
    rcode: str
    at: float  # received
    sent: float = 0.0
    ttls: dict[str, int] = field(default_factory=dict)


class Client(asyncio.DatagramProtocol):
    """One UDP socket to one resolver; answers matched by query id and question."""

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 2:
            return
        waiter = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    async def ask(self, name: str, rtype: str, ids: random.Random) -> Answer:
        query_id = ids.randrange(65536)
        while query_id in self.pending:
            query_id = ids.randrange(65536)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[query_id] = waiter
        assert self.transport is not None
        sent = time.monotonic()
        self.transport.sendto(make_query(Question(name, TYPES[rtype]), query_id=query_id,
                                         recursion_desired=True))
        try:
            data = await asyncio.wait_for(waiter, QUERY_TIMEOUT_S)
        except TimeoutError:
            self.pending.pop(query_id, None)
            return Answer("TIMEOUT", time.monotonic(), sent)
        at = time.monotonic()
        message = decode(data)
        ttls: dict[str, int] = {}
        for rr in message.answer:
            key = f"{rr.name} {type_name(rr.rtype)}"
            ttls[key] = min(ttls.get(key, rr.ttl), rr.ttl)
        if not message.answer:
            for rr in message.authority:
                if rr.rtype == RRType.SOA:
                    ttls[f"{rr.name} {SOA_IN_AUTHORITY}"] = rr.ttl
        rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(
            message.rcode, str(message.rcode))
        if message.rcode == 0 and not message.answer:
            rcode = "NODATA"
        return Answer(rcode, at, sent, ttls)


async def run_rounds(questions: list[tuple[str, str]], rounds: int, gap_s: float,
                     seed: int) -> dict[str, dict[tuple[str, str], list[Answer]]]:
    loop = asyncio.get_running_loop()
    clients: dict[str, Client] = {}
    for label, addr in (("unbound", UNBOUND), ("ours", OURS)):
        _, protocol = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        clients[label] = protocol
    answers: dict[str, dict[tuple[str, str], list[Answer]]] = {
        label: defaultdict(list) for label in clients}
    rng = random.Random(seed)
    limit = asyncio.Semaphore(OUTSTANDING)

    async def both(question: tuple[str, str]) -> None:
        async with limit:
            got = await asyncio.gather(*(c.ask(*question, rng) for c in clients.values()))
        for label, answer in zip(clients, got, strict=True):
            answers[label][question].append(answer)

    for n in range(rounds):
        order = list(questions)
        rng.shuffle(order)
        started = time.monotonic()
        await asyncio.gather(*(both(q) for q in order))
        print(f"round {n + 1}: {len(order)} questions to both in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        if n + 1 < rounds:
            await asyncio.sleep(gap_s)
    for client in clients.values():
        if client.transport is not None:
            client.transport.close()
    return answers


def growth(history: dict[tuple[str, str], list[Answer]]) -> list[dict[str, Any]]:
    """Every RRset whose TTL in a later answer exceeds the earlier TTL minus elapsed + 1 s."""
    found = []
    for (name, rtype), seen in history.items():
        for i, later in enumerate(seen):
            for earlier in seen[:i]:
                # The least time that can have passed between the two answers being made.
                elapsed = later.sent - earlier.at
                for key, ttl in later.ttls.items():
                    before = earlier.ttls.get(key)
                    if before is not None and ttl > before - elapsed + 1:
                        found.append({"q": f"{name} {rtype}", "rrset": key, "earlier": before,
                                      "later": ttl, "elapsed_s": round(elapsed, 1),
                                      "excess_s": round(ttl - (before - elapsed), 1)})
    return found


def compare(ours: dict[tuple[str, str], list[Answer]],
            theirs: dict[tuple[str, str], list[Answer]],
            spread: Counter[int]) -> tuple[Counter[str], list[str]]:
    """Per answer: rcode agreement, then the TTLs of the RRsets both show (`spread` counts
    each RRset's TTL difference, ours minus Unbound's, in seconds, capped at ±99)."""
    counts: Counter[str] = Counter({"rcode differs": 0, "timeouts (either)": 0})
    examples: list[str] = []
    lower: list[tuple[int, str]] = []
    for question, mine in ours.items():
        for n, (a, b) in enumerate(zip(mine, theirs[question], strict=True)):
            counts["answers"] += 1
            if "TIMEOUT" in (a.rcode, b.rcode):
                counts["timeouts (either)"] += 1
                continue
            if a.rcode != b.rcode:
                counts["rcode differs"] += 1
                if len(examples) < 12:
                    examples.append(f"{question[0]} {question[1]} round {n + 1}: ours "
                                    f"{a.rcode}, Unbound {b.rcode}")
                continue
            shared = set(a.ttls) & set(b.ttls)
            if set(a.ttls) != set(b.ttls):
                counts["RRsets shown differ"] += 1
            # Both were asked at once; whole-second clocks and the moments each answer was
            # made (within the two round trips) allow 1 s plus that window either way.
            allowance = 1 + max(a.at, b.at) - min(a.sent, b.sent)
            diffs = [a.ttls[k] - b.ttls[k] for k in shared]
            for d in diffs:
                spread[max(-99, min(99, d))] += 1
            if any(d > allowance for d in diffs):
                counts["TTL higher in ours"] += 1
                if len(examples) < 20:
                    worst = max(shared, key=lambda k: a.ttls[k] - b.ttls[k])
                    examples.append(f"{question[0]} {question[1]} round {n + 1}: {worst} "
                                    f"ours {a.ttls[worst]}, Unbound {b.ttls[worst]}")
            elif any(d < -allowance for d in diffs):
                counts["TTL lower in ours"] += 1
                worst = min(shared, key=lambda k: a.ttls[k] - b.ttls[k])
                lower.append((a.ttls[worst] - b.ttls[worst],
                              f"{question[0]} {question[1]} round {n + 1}: {worst} "
                              f"ours {a.ttls[worst]}, Unbound {b.ttls[worst]}"))
            else:
                counts["TTL equal (within 1 s)"] += 1
    # The largest differences first: they are the ones worth explaining.
    return counts, examples + [text for _, text in sorted(lower)[:12]]


def _unbound_conf(workdir: Path, hints: str) -> Path:
    template = (SHARED / "peers" / "unbound.conf.tmpl").read_text()
    conf = workdir / "unbound.conf"
    conf.write_text(string.Template(template).safe_substitute(
        addr=UNBOUND[0], port=UNBOUND[1], workdir=str(workdir), hints=hints))
    return conf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between rounds")
    parser.add_argument("--json", default="", help="write every growth and count here")
    args = parser.parse_args()
    benchlib, labctl = _import_harness()
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")

    def on_alarm(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"past TIMEOUT_S={TIMEOUT_S:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.alarm(int(TIMEOUT_S))
    lab_started = not all(benchlib.alive(f"lab-nsd-{level}") for level in labctl.LEVELS)
    work = Path(benchlib.WORK) / "ttl"
    work.mkdir(parents=True, exist_ok=True)
    questions = workload(args.names)
    answers: dict[str, dict[tuple[str, str], list[Answer]]] = {}
    started = time.time()
    try:
        if lab_started:
            labctl.start()
        hints = str(Path(labctl.LAB) / "root.hints")
        conf = _unbound_conf(work, hints)
        benchlib.start("peer-ttl-unbound", ["unbound", "-d", "-c", str(conf)], str(conf),
                       cpu="0", logfile=str(work / "unbound.stdout"))
        ours_argv = [sys.executable, "-m", "resolver", "serve", "--listen",
                     f"{OURS[0]}:{OURS[1]}", "--root-hints", hints, "--upstream-port", "53",
                     "--control-socket", str(work / "control.sock")]
        benchlib.start("peer-ttl-ours", ours_argv, f"{OURS[0]}:{OURS[1]}", cpu="0",
                       logfile=str(work / "ours.log"))
        for addr, port in (UNBOUND, OURS):
            def bound(addr: str = addr, port: int = port) -> bool:
                return bool(benchlib.udp_listening(addr, port))

            if not benchlib.wait_until(bound, 20):
                raise SystemExit(f"no resolver listening on {addr}:{port}; see {work}")
        answers = asyncio.run(run_rounds(questions, args.rounds, args.gap, seed=14))
    except (KeyboardInterrupt, TimeoutError) as exc:
        print(f"stopped early: {exc!r}", flush=True)
    finally:
        signal.alarm(0)
        for tag in ("peer-ttl-ours", "peer-ttl-unbound"):
            benchlib.stop(tag)
        if lab_started:
            labctl.stop(quiet=True)
    if not answers:
        return 1
    kinds = Counter(a[0].rcode for a in answers["unbound"].values())
    grown = {label: growth(history) for label, history in answers.items()}
    spread: Counter[int] = Counter()
    counts, examples = compare(answers["ours"], answers["unbound"], spread)
    lines = [f"{len(questions)} names x {args.rounds} rounds, {args.gap:g} s apart, "
             f"{time.time() - started:.0f} s; Unbound's first answers: "
             + ", ".join(f"{k} {v}" for k, v in kinds.most_common()),
             "", "| resolver | answers | RRset TTLs that grow | answers with a growing TTL | "
             "largest excess s |", "|---|---|---|---|---|"]
    for label, found in grown.items():
        total = sum(len(v) for v in answers[label].values())
        distinct = len({(g["q"], g["later"]) for g in found})
        worst = max((g["excess_s"] for g in found), default=0)
        lines.append(f"| {label} | {total} | {len(found)} | {distinct} | {worst} |")
    lines += ["", "| ours beside Unbound (same question, same moment) | answers |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.most_common()]
    lines += ["", "RRset TTL, ours minus Unbound's (s): " + ", ".join(
        f"{d:+d}: {n}" for d, n in sorted(spread.items()))]
    for label, found in grown.items():
        for g in found[:8]:
            examples.append(f"growth in {label}: {g}")
    text = "\n".join(lines)
    print("\n" + text)
    if examples:
        print("\nexamples:\n  " + "\n  ".join(examples))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"counts": counts, "spread": spread, "growth": grown}, indent=1))
    clean = not any(grown.values()) and not counts["rcode differs"]
    return 0 if clean else 2


if __name__ == "__main__":
    sys.exit(main())
