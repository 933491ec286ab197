"""Real processes on loopback: the lab and the resolver, started as a user would start them."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import stop_process

RESOLVER = [sys.executable, "-m", "resolver"]


@dataclass(frozen=True)
class RunningLab:
    port: int
    hints: Path


@dataclass(frozen=True)
class RunningResolver:
    ip: str
    port: int
    process: subprocess.Popen[str]


def _free_port(ip: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `ip` right now."""
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind((ip, port))
                tcp.bind((ip, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def _wait_for_udp_dns(
    ip: str, port: int, proc: subprocess.Popen[str], timeout_s: float = 10.0
) -> None:
    """Wait until something answers a DNS query on ip:port (any rcode)."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x00\x00\x02\x00\x01"  # ". NS"
    deadline = time.monotonic() + timeout_s
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited early with {proc.returncode}: {out}")
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            try:
                s.sendto(query, (ip, port))
                s.recvfrom(4096)
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"nothing answers on {ip}:{port}")


def _stop(proc: subprocess.Popen[str]) -> None:
    stop_process(proc)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """`resolver lab` on a free port, as a separate process."""
    with private_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@contextlib.contextmanager
def private_lab(directory: Path) -> Iterator[RunningLab]:
    """A lab of the test's own (one it may stop: `stop_lab`), hints in `directory`."""
    hints = directory / "lab.hints"
    for _ in range(5):
        port = _free_port("127.41.0.4")
        proc = subprocess.Popen(
            [*RESOLVER, "lab", "--hints-file", str(hints), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            _wait_for_udp_dns("127.41.0.4", port, proc)
        except RuntimeError:
            _stop(proc)
            continue
        _lab_processes[port] = proc
        try:
            yield RunningLab(port=port, hints=hints)
        finally:
            _stop(proc)
            _lab_processes.pop(port, None)
        return
    raise RuntimeError("could not start the lab")


_lab_processes: dict[int, subprocess.Popen[str]] = {}


def stop_lab(lab: RunningLab) -> None:
    """Stop a lab `private_lab` started: its name servers answer nothing any more."""
    _stop(_lab_processes[lab.port])


def start_resolver(lab: RunningLab, *extra: str, ip: str = "127.0.0.1") -> RunningResolver:
    port = _free_port(ip)
    listen = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", listen, "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    _wait_for_udp_dns(ip, port, proc)
    return RunningResolver(ip=ip, port=port, process=proc)


@pytest.fixture(scope="session")
def resolver(lab: RunningLab) -> Iterator[RunningResolver]:
    """`resolver serve` against the lab, shared by the read-only dig tests."""
    running = start_resolver(lab)
    try:
        yield running
    finally:
        _stop(running.process)
        assert running.process.returncode == 0, "the resolver did not exit cleanly on SIGTERM"
