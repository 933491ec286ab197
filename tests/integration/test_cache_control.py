"""`resolver cache show|flush|dump` against a real `resolver serve` process on the lab.

The commands run as separate processes, as an operator types them, and reach the server
through its private control socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.daemon.control import request
from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType
from tests.integration.conftest import (
    RESOLVER,
    RunningLab,
    RunningResolver,
    _free_port,
    _stop,
    _wait_for_udp_dns,
    start_resolver,
)

pytestmark = pytest.mark.integration

WWW = Question("www.networkutopia.com.", RRType.A)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (Unix socket paths are limited to 108 octets)."""
    path = Path(tempfile.mkdtemp(prefix="rctl-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def udp_query(resolver: RunningResolver, question: Question) -> Rcode:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(make_query(question, query_id=4242, recursion_desired=True),
                    (resolver.ip, resolver.port))
        return Rcode(decode(sock.recv(4096)).rcode)


def cache_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RESOLVER, "cache", *args], capture_output=True, text=True,
                          timeout=30, check=False, env=env)


def test_cache_commands_show_flush_and_dump_a_running_server(
    lab: RunningLab, short_dir: Path
) -> None:
    """show lists the cached name, flush --subtree removes it, dump lists the rest."""
    sock = short_dir / "control.sock"
    running = start_resolver(lab, "--control-socket", str(sock))
    try:
        assert udp_query(running, WWW) == Rcode.NOERROR
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        show = cache_cmd("show", "www.networkutopia.com", "--control-socket", str(sock))
        assert show.returncode == 0, show.stderr
        assert "www.networkutopia.com.\t" in show.stdout and "212.212.212.2" in show.stdout

        ns = cache_cmd("show", "networkutopia.com", "--type", "NS", "--control-socket", str(sock))
        assert "\tNS\tdns1.networkutopia.com." in ns.stdout and "\tA\t" not in ns.stdout

        flush = cache_cmd("flush", "networkutopia.com", "--subtree", "--control-socket", str(sock))
        assert flush.returncode == 0 and flush.stdout.startswith("removed ")
        assert int(flush.stdout.split()[1]) >= 2

        gone = cache_cmd("show", "www.networkutopia.com", "--control-socket", str(sock))
        assert gone.stdout.strip() == ";; nothing cached for www.networkutopia.com."

        dump = cache_cmd("dump", "--control-socket", str(sock))
        owners = {line.split("\t")[0] for line in dump.stdout.splitlines()}
        assert "com." in owners and "www.networkutopia.com." not in owners

        assert udp_query(running, WWW) == Rcode.NOERROR  # fetched again after the flush
        stats = request(sock, {"cmd": "stats"})["stats"]
        assert stats["resolutions"] >= 2 and stats["upstream_queries"] > 0
        assert stats["queries"] >= 2 and stats["cache_entries"] > 0
    finally:
        _stop(running.process)
    assert running.process.returncode == 0
    assert not sock.exists()  # removed on shutdown


def test_cache_commands_find_a_server_started_with_default_settings(
    lab: RunningLab, short_dir: Path
) -> None:
    """Without --control-socket on either side, the commands reach the server."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(short_dir), "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        _wait_for_udp_dns("127.0.0.1", port, proc)
        running = RunningResolver(ip="127.0.0.1", port=port, process=proc)
        assert udp_query(running, WWW) == Rcode.NOERROR
        assert (short_dir / "resolver" / "control.sock").exists()
        show = cache_cmd("show", "www.networkutopia.com", env=env)
        assert show.returncode == 0 and "212.212.212.2" in show.stdout
    finally:
        _stop(proc)


def test_cache_command_without_a_server_prints_one_line_and_exits_1(short_dir: Path) -> None:
    """Nothing listening: exit status 1 and one clear line on stderr, no traceback."""
    result = cache_cmd("dump", "--control-socket", str(short_dir / "none.sock"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no resolver is running" in lines[0]
    assert "Traceback" not in result.stderr
