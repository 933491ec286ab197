"""Processes the tests start: stopped by their own pid, politely first."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], *, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`; no-op if already gone."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
