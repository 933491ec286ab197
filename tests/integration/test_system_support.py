"""Helpers for the test_system_* tests: start `resolver serve` with its log in a file, ask it
with dig, scrape its metrics. (No tests here.)"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from resolver.server.metrics import parse_exposition
from tests.conftest import require_tool
from tests.integration.conftest import (
    RESOLVER,
    RunningLab,
    _free_port,
    _stop,
    _wait_for_udp_dns,
)


@dataclass
class Server:
    """A running `resolver serve` whose output goes to `log`."""

    ip: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 10.0) -> re.Match[str]:
        """The first match of `pattern` in the log, waiting for it to appear."""
        deadline = time.monotonic() + timeout_s
        while True:
            match = re.search(pattern, self.text())
            if match is not None:
                return match
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{pattern!r} never appeared in the log:\n{self.text()}")
            time.sleep(0.05)

    def stop(self) -> int:
        _stop(self.process)  # type: ignore[arg-type]
        return self.process.returncode


def start(lab: RunningLab, tmp_path: Path, *args: str, ip: str = "127.0.0.1",
          metrics: bool = False, with_lab: bool = True) -> Server:
    """`resolver serve` on a free port of `ip` against the lab (plus `args`)."""
    port = _free_port(ip)
    extra = list(args)
    metrics_port = None
    if metrics:
        metrics_port = _free_port("127.0.0.1")
        extra += ["--metrics", f"127.0.0.1:{metrics_port}"]
    if with_lab:
        extra = ["--root-hints", str(lab.hints), "--upstream-port", str(lab.port), *extra]
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*RESOLVER, "serve", "--listen", f"{ip}:{port}",
             "--control-socket", str(tmp_path / f"control-{port}.sock"), *extra],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = Server(ip=ip, port=port, process=process, log=log, metrics_port=metrics_port)
    try:
        _wait_for_udp_dns(ip, port, process)  # type: ignore[arg-type]
    except RuntimeError as exc:
        _stop(process)  # type: ignore[arg-type]
        raise AssertionError(f"{exc}\n{server.text()}") from None
    return server


def dig(server: Server, *args: str, source: str | None = None) -> str:
    """dig's full output for a query to `server`."""
    exe = require_tool("dig")
    bind = ["-b", source] if source else []
    return subprocess.run(
        [exe, f"@{server.ip}", "-p", str(server.port), "+time=3", "+tries=1", *bind, *args],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout


def status(output: str) -> str:
    match = re.search(r"status: (\w+)", output)
    return match.group(1) if match else "no reply"


def answers(output: str) -> list[str]:
    """The RDATA of the answer section, one string per record."""
    section = output.split(";; ANSWER SECTION:\n", 1)
    if len(section) < 2:
        return []
    lines = section[1].split("\n\n", 1)[0].splitlines()
    return [" ".join(line.split()[4:]) for line in lines if line and not line.startswith(";")]


def scrape(server: Server) -> dict[str, float]:
    """The server's metrics, {"name{labels}": value}, read over HTTP."""
    assert server.metrics_port is not None
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {s.name + "".join(f",{k}={v}" for k, v in s.labels): s.value
            for s in parse_exposition(text)}


def settled_upstream(server: Server) -> float:
    """The upstream query count once it stops moving (startup priming may still be running)."""
    last = scrape(server).get("resolver_upstream_queries_total,transport=udp", 0.0)
    for _ in range(50):
        time.sleep(0.1)
        now = scrape(server).get("resolver_upstream_queries_total,transport=udp", 0.0)
        if now == last:
            return now
        last = now
    return last
