"""`resolver serve --workers N` as one service: a worker that dies is restarted and logged
while the others keep serving, and a second server on the same port is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RunningLab, start_resolver
from tests.integration.test_workers import alive, children, dig

pytestmark = pytest.mark.integration


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


def test_a_killed_worker_is_restarted_and_logged_while_the_other_serves(
    lab: RunningLab,
) -> None:
    require_tool("dig")
    running = start_resolver(lab, "--workers", "2")
    proc = running.process
    try:
        first = children(proc.pid)
        assert len(first) == 2
        time.sleep(2.5)  # past MIN_UPTIME_S: a worker that dies now was serving
        victim, survivor = first
        os.kill(victim, signal.SIGKILL)
        answers = [dig(running.ip, running.port, "www.networkutopia.com", "+short").strip()
                   for _ in range(6)]  # the survivor (and soon the new worker) answer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = children(proc.pid)
            if len(now) == 2 and victim not in now and all(alive(pid) for pid in now):
                break
            time.sleep(0.1)
        replaced = children(proc.pid)
        assert survivor in replaced and victim not in replaced and len(replaced) == 2
        assert proc.poll() is None, "the parent must keep running"
        assert answers == ["212.212.212.2"] * 6
        for _ in range(4):
            assert dig(running.ip, running.port, "www.ibm.com", "+short").strip()
    finally:
        output = _stop(proc)
    assert proc.returncode == 0, output
    assert f"(pid {victim}) died with status -9" in output and "restarting it" in output


def test_a_second_server_on_the_port_our_workers_hold_is_refused(lab: RunningLab) -> None:
    running = start_resolver(lab, "--workers", "2")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "resolver", "serve", "--listen",
             f"{running.ip}:{running.port}", "--root-hints", str(lab.hints),
             "--upstream-port", str(lab.port), "--workers", "2"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert running.process.poll() is None
    finally:
        _stop(running.process)
    assert second.returncode == 2
    message = [line for line in second.stderr.splitlines() if "already in use" in line]
    assert len(message) == 1, second.stderr
    assert f"port {running.port}" in message[0]
