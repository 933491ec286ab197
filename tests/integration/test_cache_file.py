"""`resolver serve --cache-file`: a real server on loopback keeps its cache across a restart.

The lab is the only upstream. That an answer came from the saved cache is shown by the
server's own upstream query count (`stats` on the control socket) staying put, and by the
TTL dig sees being lower than before the restart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.daemon.control import request
from tests.conftest import require_tool
from tests.integration.conftest import (
    RESOLVER,
    RunningLab,
    RunningResolver,
    _stop,
    start_resolver,
)

pytestmark = pytest.mark.integration

NAME = "www.networkutopia.com."


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (Unix socket paths are limited to 108 octets)."""
    path = Path(tempfile.mkdtemp(prefix="rcf-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def dig_a(resolver: RunningResolver, name: str = NAME) -> tuple[int, str]:
    """(TTL, address) of the first A record dig gets for `name`."""
    exe = require_tool("dig")
    out = subprocess.run(
        [exe, f"@{resolver.ip}", "-p", str(resolver.port), "+time=5", "+tries=1", "+noall",
         "+answer", name, "A"],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout
    match = re.search(rf"^{re.escape(name)}\s+(\d+)\s+IN\s+A\s+(\S+)", out, re.MULTILINE)
    assert match, out
    return int(match.group(1)), match.group(2)


def upstream_queries(sock: Path) -> int:
    return int(request(sock, {"cmd": "stats"})["stats"]["upstream_queries"])


def stop_and_read(running: RunningResolver) -> str:
    _stop(running.process)
    assert running.process.returncode == 0, "the resolver did not exit cleanly on SIGTERM"
    return running.process.stdout.read() if running.process.stdout else ""


def wait_idle(sock: Path) -> int:
    """The upstream count once the start-up priming has finished (it no longer changes)."""
    count, deadline = upstream_queries(sock), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = upstream_queries(sock)
        if now == count:
            return count
        count = now
    return count


def cache_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RESOLVER, "cache", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_restart_with_cache_file_answers_from_the_saved_cache(
    lab: RunningLab, short_dir: Path
) -> None:
    """dig, SIGTERM (the cache is saved), start again with the same --cache-file: the
    answer comes without one upstream query, its TTL lowered by the time in between."""
    path, sock = short_dir / "cache.txt", short_dir / "c.sock"
    options = ("--cache-file", str(path), "--control-socket", str(sock))
    first = start_resolver(lab, *options)
    try:
        ttl_before, address = dig_a(first)
    finally:
        log = stop_and_read(first)
    assert "cache saved to" in log
    text = path.read_text()
    assert text.startswith(";resolver-cache 1 written=")
    assert f"{NAME}\t" in text and re.search(r"^;end entries=\d+ sha256=", text, re.MULTILINE)

    time.sleep(2.1)  # down for two seconds: the TTLs must show it
    second = start_resolver(lab, *options)
    try:
        before = wait_idle(sock)
        ttl_after, address_after = dig_a(second)
        assert address_after == address
        assert ttl_after <= ttl_before - 2
        assert upstream_queries(sock) == before  # answered from the loaded cache
        show = cache_cmd("show", NAME, "--control-socket", str(sock))
        assert show.returncode == 0 and address in show.stdout
    finally:
        log = stop_and_read(second)
    assert re.search(rf"cache file {re.escape(str(path))}: \d+ entries loaded", log), log


def test_damaged_cache_file_is_logged_once_and_the_server_starts_empty(
    lab: RunningLab, short_dir: Path
) -> None:
    """A corrupted file: one log line, an empty cache, a server that answers anyway."""
    path, sock = short_dir / "cache.txt", short_dir / "c.sock"
    path.write_text(";resolver-cache 1 written=1\n;rrset answer original-ttl=300\n"
                    f"{NAME}\t300\tIN\tA\t192.0.2.1\n;end entries=1 sha256={'0' * 64}\n")
    running = start_resolver(lab, "--cache-file", str(path), "--control-socket", str(sock))
    try:
        before = wait_idle(sock)
        _ttl, address = dig_a(running)
        assert address != "192.0.2.1"  # the damaged file's record was not used
        assert upstream_queries(sock) > before
    finally:
        log = stop_and_read(running)
    lines = [line for line in log.splitlines() if "not loaded" in line]
    assert len(lines) == 1 and "checksum mismatch" in lines[0]
    assert "Traceback" not in log
    assert path.read_text().count(NAME) >= 1  # replaced by a good file at exit


def test_cache_load_puts_a_dump_into_a_running_server(lab: RunningLab, short_dir: Path) -> None:
    """`resolver cache dump` of one server, `resolver cache load FILE` into a cold one: the
    cold one then answers from it without asking upstream."""
    warm_sock, cold_sock = short_dir / "w.sock", short_dir / "c.sock"
    warm = start_resolver(lab, "--control-socket", str(warm_sock))
    try:
        _ttl, address = dig_a(warm)
        dump = cache_cmd("dump", "--control-socket", str(warm_sock))
        assert dump.returncode == 0, dump.stderr
    finally:
        stop_and_read(warm)
    dump_file = short_dir / "dump.txt"
    dump_file.write_text(dump.stdout)

    cold = start_resolver(lab, "--control-socket", str(cold_sock))
    try:
        before = wait_idle(cold_sock)
        loaded = cache_cmd("load", str(dump_file), "--control-socket", str(cold_sock))
        assert loaded.returncode == 0, loaded.stderr
        assert re.fullmatch(r"loaded \d+ entries\n", loaded.stdout)
        assert int(loaded.stdout.split()[1]) > 3
        _ttl, address_after = dig_a(cold)
        assert address_after == address
        assert upstream_queries(cold_sock) == before
        bad = short_dir / "bad.txt"
        bad.write_text("hello\n")
        refused = cache_cmd("load", str(bad), "--control-socket", str(cold_sock))
        assert refused.returncode == 1 and "not a resolver cache file" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        stop_and_read(cold)


def test_workers_each_keep_their_own_cache_file(lab: RunningLab, short_dir: Path) -> None:
    """--workers 2: worker 0 saves PATH, worker 1 saves PATH.1, and each loads its own."""
    path = short_dir / "cache.txt"
    options = ("--workers", "2", "--cache-file", str(path),
               "--control-socket", str(short_dir / "c.sock"))
    running = start_resolver(lab, *options)
    try:
        for _ in range(4):  # new source ports: the kernel spreads the queries
            dig_a(running)
    finally:
        stop_and_read(running)
    files = sorted(p.name for p in short_dir.iterdir() if p.name.startswith("cache.txt"))
    assert files == ["cache.txt", "cache.txt.1"]
    texts = [(short_dir / name).read_text() for name in files]
    assert all(t.startswith(";resolver-cache 1 ") for t in texts)
    assert any(f"{NAME}\t" in t for t in texts)

    again = start_resolver(lab, *options)
    try:
        time.sleep(0.5)
    finally:
        log = stop_and_read(again)
    assert re.search(rf"cache file {re.escape(str(path))}: \d+ entries loaded", log), log
    assert re.search(rf"cache file {re.escape(str(path))}\.1: \d+ entries loaded", log), log


def test_a_validating_restart_keeps_signed_answers_secure_with_no_upstream_query(
    lab: RunningLab, short_dir: Path
) -> None:
    """The signed lab, validation on: the cache file keeps each RRset's RRSIGs and status,
    so after the restart the answer still has AD=1 (not SERVFAIL for missing signatures),
    and comes from the loaded cache."""
    from tests.integration.test_signed_lab import _anchor, _dig, _flags

    path, sock = short_dir / "cache.txt", short_dir / "v.sock"
    options = ("--trust-anchor-file", str(_anchor(lab)), "--cache-file", str(path),
               "--control-socket", str(sock))
    first = start_resolver(lab, *options)
    try:
        before = _dig(first.ip, first.port, "+dnssec", NAME, "A")
        missing = _dig(first.ip, first.port, "+dnssec", "nope." + NAME, "A")
    finally:
        stop_and_read(first)
    assert "ad" in _flags(before) and "status: NXDOMAIN" in missing, (before, missing)
    text = path.read_text()
    assert "security=secure" in text and "\tRRSIG\t" in text
    second = start_resolver(lab, *options)
    try:
        queries = wait_idle(sock)
        after = _dig(second.ip, second.port, "+dnssec", NAME, "A")
        denied = _dig(second.ip, second.port, "+dnssec", "nope." + NAME, "A")
        assert upstream_queries(sock) == queries
    finally:
        log = stop_and_read(second)
    assert "status: NOERROR" in after and "ad" in _flags(after), after
    assert "RRSIG" in after
    assert "status: NXDOMAIN" in denied and "ad" in _flags(denied), denied
    assert "bogus" not in log, log
