"""The README's quick start, followed as a newcomer follows it: `make run` on the lab,
the `dig` lines of the quick start answering as their comments say, and the trace and
its picture. Offline: the lab's servers on 127.x.y.z, the resolver on 127.0.0.1.

The README's ports (lab 5353, resolver 5300) become free ports here; everything else is
the README's own text, read from the file, so a quick start that drifts from what the
resolver does fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import (
    RESOLVER,
    RunningLab,
    _free_port,
    _wait_for_udp_dns,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def quick_start() -> str:
    """The first shell block of the README's "Quick start" section."""
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the quick start has no shell block"
    return block.group(1)


def quick_start_digs() -> list[tuple[list[str], str]]:
    """(dig's arguments after `-p PORT`, the comment beside them) of each dig line."""
    found = []
    for line in quick_start().splitlines():
        match = re.match(r"dig @127\.0\.0\.1 -p 5300 (.*?)\s+# (.*)$", line)
        if match:
            found.append((shlex.split(match.group(1)), match.group(2)))
    return found


def _make_is_set_up() -> None:
    """`make run` must not build the virtual environment here (that needs the index)."""
    require_tool("make")
    done = subprocess.run(["make", "-q", "-C", str(ROOT), ".venv/.installed"],
                          capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        message = "the project's .venv is not set up (run `make .venv/.installed`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _make_run(lab: RunningLab, port: int, log: Path, *args: str) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen(
            # No LAB_PORT: make run reads the port the lab wrote into its hints file.
            ["make", "-s", "-C", str(ROOT), "run", f"LAB_HINTS={lab.hints}",
             f"LISTEN=127.0.0.1:{port}", *args],
            stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the process group `make` leads (make, its shell, the resolver)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class MakeRun:
    port: int
    control: Path
    log: Path


@pytest.fixture(scope="module")
def make_run(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    """`make run` on the lab, with extra options through ARGS, as the README shows."""
    _make_is_set_up()
    port = _free_port()
    directory = tmp_path_factory.mktemp("make-run")
    running = MakeRun(port=port, control=directory / "control.sock",
                      log=directory / "make-run.log")
    process = _make_run(lab, port, running.log,
                        f"ARGS=--log-queries --control-socket {running.control}")
    try:
        _wait_for_udp_dns("127.0.0.1", port, process)
        yield running
    finally:
        _stop_group(process)


def dig_at(port: int, *args: str) -> str:
    exe = require_tool("dig")
    return subprocess.run([exe, "@127.0.0.1", "-p", str(port), "+time=5", "+tries=1",
                           "+nocookie", *args],
                          capture_output=True, text=True, timeout=20, check=False).stdout


def test_make_run_without_the_lab_says_to_start_it_first(tmp_path: Path) -> None:
    _make_is_set_up()
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "run", f"LAB_HINTS={tmp_path / 'lab.hints'}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert (f"{tmp_path / 'lab.hints'} is missing: start the lab first, in another terminal: "
            "make lab") in done.stderr


def test_the_quick_start_puts_the_lab_before_the_resolver_and_names_no_real_root() -> None:
    block = quick_start()
    assert block.index("make lab") < block.index("make run") < block.index("dig @127.0.0.1")
    assert "root.hints" not in block.replace("lab.hints", "")
    assert "make run-internet" not in block


def test_every_dig_of_the_quick_start_answers_as_its_comment_says(make_run: MakeRun) -> None:
    digs = quick_start_digs()
    assert len(digs) >= 6
    for args, comment in digs:
        out = dig_at(make_run.port, *args)
        status = re.search(r"status: (\w+)", out)
        flags = re.search(r";; flags: ([a-z ]*);", out)
        assert status is not None and flags is not None, (args, out)
        expected = next((rcode for rcode in ("NXDOMAIN", "SERVFAIL") if rcode in comment),
                        "NOERROR")
        assert status.group(1) == expected, (args, comment, out)
        if expected == "NOERROR":
            assert re.search(r"ANSWER: [1-9]", out), (args, out)
        if "EDE 6" in comment:
            assert "EDE: 6 (DNSSEC Bogus)" in out, (args, out)
        if "flags: ad" in comment:
            assert "ad" in flags.group(1).split(), (args, out)
        if "+tcp" in args:
            assert "(TCP)" in out, (args, out)


def test_make_run_validates_with_the_lab_anchor_and_passes_args(make_run: MakeRun,
                                                               lab: RunningLab) -> None:
    """ARGS="--log-queries --control-socket PATH" reach `resolver serve`, and validation
    is on from the lab.anchor beside lab.hints without being asked for."""
    assert "NOERROR" in dig_at(make_run.port, "www.crepes.fr")
    assert make_run.control.is_socket()
    stats = subprocess.run([*RESOLVER, "stats", "--control-socket", str(make_run.control)],
                           capture_output=True, text=True, timeout=20, check=False)
    assert stats.returncode == 0, stats.stderr
    assert re.search(r"^queries received\s+[1-9]", stats.stdout, re.MULTILINE), stats.stdout
    log = make_run.log.read_text()
    assert re.search(r"query 127\.0\.0\.1:\d+ udp www\.crepes\.fr\. A NOERROR", log), log
    # The port came from lab.hints: no warning that the lab listens elsewhere.
    assert "come from the lab, whose servers listen on port" not in log, log
    anchor = lab.hints.with_suffix(".anchor")
    assert f"DNSSEC validation on, trust anchors for . from {anchor}" in log, log


def test_the_quick_start_trace_and_picture_work_on_the_lab(lab: RunningLab,
                                                          tmp_path: Path) -> None:
    traces = [line for line in quick_start().replace("\\\n", " ").splitlines()
              if line.startswith(".venv/bin/resolver trace ")]
    assert len(traces) == 2
    for line in traces:
        words = shlex.split(line.split("#", 1)[0])[1:]  # from "trace" on
        words = [str(lab.hints) if w == "lab.hints" else str(lab.port) if w == "5353"
                 else str(tmp_path / w) if w.endswith(".html") else w for w in words]
        done = subprocess.run([*RESOLVER, *words], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "path: . -> org. -> glueless.org.: 2 referrals" in done.stdout
    page = (tmp_path / "glueless.html").read_text()
    assert "<svg " in page and "ns.hosting.net." in page
    # Under the picture and its legend, the same lookup as text.
    assert page.index("<svg ") < page.index("<h2>Legend</h2>") < page.index(
        "<h2>The trace as text</h2>")
    assert "path: . -&gt; org. -&gt; glueless.org.: 2 referrals" in page
