"""`resolver serve --workers N`: several processes on one address, one clean shutdown."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RunningLab, start_resolver

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    # A zombie is already gone; only its parent's wait is missing.
    return not (status.exists() and status.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def dig(ip: str, port: int, *args: str) -> str:
    exe = require_tool("dig")
    result = subprocess.run(
        [exe, f"@{ip}", "-p", str(port), "+time=2", "+tries=2", *args],
        capture_output=True, text=True, timeout=20,
    )
    return result.stdout


def test_workers_two_processes_answer_and_stop_on_sigterm(lab: RunningLab) -> None:
    """--workers 2: two workers answer dig over UDP and TCP; SIGTERM stops all and exits 0."""
    require_tool("dig")
    running = start_resolver(lab, "--workers", "2")
    proc = running.process
    try:
        workers = children(proc.pid)
        assert len(workers) == 2
        for _ in range(4):  # new source ports each time: the kernel spreads them over workers
            out = dig(running.ip, running.port, "www.networkutopia.com", "+short")
            assert out.strip() == "212.212.212.2"
        tcp = dig(running.ip, running.port, "+tcp", "www.ibm.com", "+short")
        assert "129.42.60.216" in tcp
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "a worker outlived the parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_refuse_port_zero(lab: RunningLab) -> None:
    """Several workers need a fixed port: with port 0 each would listen somewhere else."""
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "serve", "--listen", "127.0.0.1:0", "--root-hints",
         str(lab.hints), "--upstream-port", str(lab.port), "--workers", "2"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0
    assert "explicit ports" in result.stderr


def test_workers_each_have_a_control_socket_and_flush_reaches_all(lab: RunningLab) -> None:
    """With two workers, each caches on its own and has its own control socket; `resolver
    cache flush` empties the name in both, and both sockets are gone after SIGTERM."""
    require_tool("dig")
    directory = Path(tempfile.mkdtemp(prefix="rw-"))  # short: Unix socket paths are limited
    control = directory / "control.sock"
    running = start_resolver(lab, "--workers", "2", "--control-socket", str(control))
    proc = running.process
    try:
        sockets = [control, control.with_name("control.sock.1")]
        deadline = time.monotonic() + 10
        while not all(p.exists() for p in sockets) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(p.exists() for p in sockets)
        for _ in range(24):  # a new source port each time: the kernel spreads them over workers
            assert dig(running.ip, running.port, "www.networkutopia.com", "+short").strip() \
                == "212.212.212.2"
        cli = [sys.executable, "-m", "resolver", "cache"]
        shown = subprocess.run([*cli, "show", "www.networkutopia.com", "--control-socket",
                                str(control)], capture_output=True, text=True, timeout=30)
        assert ";; worker 0" in shown.stdout and ";; worker 1" in shown.stdout, shown.stdout
        flushed = subprocess.run([*cli, "flush", "www.networkutopia.com", "--control-socket",
                                  str(control)], capture_output=True, text=True, timeout=30)
        assert flushed.stdout.strip().endswith("from 2 workers"), flushed.stdout
        after = subprocess.run([*cli, "show", "www.networkutopia.com", "--control-socket",
                                str(control)], capture_output=True, text=True, timeout=30)
        assert after.stdout.startswith(";; nothing cached"), after.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not any(p.exists() for p in sockets)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
