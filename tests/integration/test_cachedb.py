"""`resolver serve --cachedb`: real servers on loopback sharing a real redis-server.

Each test starts its own redis-server (tests.support.redis: its own port, nothing on disk).
That an answer came from Redis is shown by the server's own upstream count (`stats` on the
control socket) staying put and by its TTL being lower than the first server's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RunningLab, RunningResolver, _free_port, start_resolver
from tests.integration.test_cache_file import (
    NAME,
    dig_a,
    stop_and_read,
    upstream_queries,
    wait_idle,
)
from tests.support.redis import RunningRedis, kill_redis, start_redis, stop_redis
from tests.support.unbound import make_certificates

pytestmark = pytest.mark.integration

#: The tests of sharing give reads 200 ms, not 5: on a loaded shared machine a fresh worker's
#: event loop alone can take longer than 5 ms, and what is tested here is what is shared.
ROOMY_BUDGET = ("--cachedb-budget", "200")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (Unix socket paths are limited to 108 octets)."""
    path = Path(tempfile.mkdtemp(prefix="rdb-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis_server(short_dir: Path) -> Iterator[RunningRedis]:
    running = start_redis(short_dir / "redis")
    try:
        yield running
    finally:
        stop_redis(running)


def keys_in(redis: RunningRedis, *, ca_file: Path | None = None) -> int:
    """How many keys the test's Redis holds (DBSIZE)."""
    import redis as redis_py

    client = redis_py.Redis(host=redis.ip, port=redis.port, password=redis.password,
                            ssl=redis.tls, ssl_ca_certs=str(ca_file) if ca_file else None,
                            socket_timeout=5)
    try:
        return int(client.dbsize())
    finally:
        client.close()


def wait_for_keys(redis: RunningRedis, count: int, **kwargs: Path) -> None:
    deadline = time.monotonic() + 5
    while keys_in(redis, **kwargs) < count:
        assert time.monotonic() < deadline, "the reply was not written to Redis"
        time.sleep(0.05)


def dig_status(resolver: RunningResolver, name: str) -> tuple[str, float]:
    """(status, seconds dig took) of one query."""
    exe = require_tool("dig")
    started = time.monotonic()
    out = subprocess.run(
        [exe, f"@{resolver.ip}", "-p", str(resolver.port), "+time=3", "+tries=1", name, "A"],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout
    elapsed = time.monotonic() - started
    match = re.search(r"status: (\w+)", out)
    return (match.group(1) if match else "NO ANSWER"), elapsed


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_instance_b_answers_from_redis_what_only_a_resolved_with_a_lowered_ttl(
    lab: RunningLab, short_dir: Path, redis_server: RunningRedis
) -> None:
    """A resolves and writes behind; B, cold, answers from Redis: the same address, the TTL
    lowered by the time in between, not one upstream query. C, with another secret, cannot
    read A's entries and resolves by itself."""
    shared = ("--cachedb", redis_server.url, "--cachedb-secret", "tenant-1", *ROOMY_BUDGET)
    a = start_resolver(lab, *shared, "--control-socket", str(short_dir / "a.sock"))
    b = start_resolver(lab, *shared, "--control-socket", str(short_dir / "b.sock"))
    c = start_resolver(lab, "--cachedb", redis_server.url, "--cachedb-secret", "tenant-2",
                       "--control-socket", str(short_dir / "c.sock"))
    try:
        ttl_a, address = dig_a(a)
        wait_for_keys(redis_server, 1)
        before_b = wait_idle(short_dir / "b.sock")
        time.sleep(2.1)
        ttl_b, address_b = dig_a(b)
        assert address_b == address
        assert ttl_b <= ttl_a - 2
        assert upstream_queries(short_dir / "b.sock") == before_b

        before_c = wait_idle(short_dir / "c.sock")
        _ttl, address_c = dig_a(c)
        assert address_c == address
        assert upstream_queries(short_dir / "c.sock") > before_c
    finally:
        logs = [stop_and_read(r) for r in (a, b, c)]
    assert all("Traceback" not in log for log in logs)
    assert "cachedb redis://127.0.0.1:" in logs[0]


def test_with_the_lab_stopped_instance_b_answers_from_redis_with_the_ttl_lowered(
    short_dir: Path, redis_server: RunningRedis
) -> None:
    """The issue's scenario as an operator runs it: A resolves, every name server is
    stopped, and B, started cold afterwards, still answers the name from Redis."""
    from tests.integration.conftest import private_lab, stop_lab

    shared = ("--cachedb", redis_server.url, *ROOMY_BUDGET)
    with private_lab(short_dir) as own_lab:
        a = start_resolver(own_lab, *shared, "--control-socket", str(short_dir / "a.sock"))
        try:
            ttl_a, address = dig_a(a)
            wait_for_keys(redis_server, 1)
        finally:
            stop_and_read(a)
        stop_lab(own_lab)
        time.sleep(2.1)
        b = start_resolver(own_lab, *shared, "--control-socket", str(short_dir / "b.sock"))
        try:
            ttl_b, address_b = dig_a(b)
        finally:
            log = stop_and_read(b)
    assert address_b == address and ttl_b <= ttl_a - 2
    assert "Traceback" not in log


def test_redis_killed_mid_run_answers_keep_flowing_and_the_breaker_closes_when_it_is_back(
    lab: RunningLab, short_dir: Path, redis_server: RunningRedis
) -> None:
    """Redis killed: every query is still answered (from upstream), quickly; the breaker
    opens with one log line; Redis started again on its port: the breaker closes and
    replies are written again."""
    metrics_port = _free_port()
    running = start_resolver(lab, "--cachedb", redis_server.url, "--cachedb-retry", "1",
                             "--metrics", f"127.0.0.1:{metrics_port}",
                             "--control-socket", str(short_dir / "r.sock"))
    try:
        assert dig_a(running)
        wait_for_keys(redis_server, 1)
        kill_redis(redis_server)
        slowest = 0.0
        for number in range(30):
            status, elapsed = dig_status(running, f"gone{number}.networkutopia.com.")
            assert status == "NXDOMAIN"
            slowest = max(slowest, elapsed)
        assert slowest < 1.0
        assert metric(metrics_port, "resolver_cachedb_breaker_state") == 2
        assert metric(metrics_port, "resolver_cachedb_breaker_opened_total") == 1

        back = start_redis(short_dir / "redis", port=redis_server.port)
        try:
            deadline = time.monotonic() + 10
            number = 100
            while metric(metrics_port, "resolver_cachedb_breaker_state") != 0:
                assert time.monotonic() < deadline, "the breaker did not close"
                number += 1
                assert dig_status(running, f"back{number}.networkutopia.com.")[0] == "NXDOMAIN"
                time.sleep(0.2)
            dig_status(running, "back-again.networkutopia.com.")
            wait_for_keys(back, 1)
        finally:
            stop_redis(back)
    finally:
        log = stop_and_read(running)
    assert len(re.findall(r"cachedb \S+ unavailable", log)) == 1, log
    assert "available again" in log
    assert "Traceback" not in log


def test_rediss_with_a_password_and_a_throwaway_ca_shares_the_cache(
    lab: RunningLab, short_dir: Path
) -> None:
    """rediss:// (TLS, verified against --cachedb-tls-ca-file) with the password in the URL;
    the log shows the URL without the password."""
    certificates = make_certificates(short_dir / "certs", server_name="redis.test",
                                     ip="127.0.0.1")
    redis = start_redis(short_dir / "redis", password="s3cret", certificates=certificates)
    options = ("--cachedb", redis.url, "--cachedb-tls-ca-file", str(certificates.ca_file),
               *ROOMY_BUDGET)
    try:
        a = start_resolver(lab, *options, "--control-socket", str(short_dir / "a.sock"))
        b = start_resolver(lab, *options, "--control-socket", str(short_dir / "b.sock"))
        try:
            _ttl, address = dig_a(a, NAME)
            wait_for_keys(redis, 1, ca_file=certificates.ca_file)
            before_b = wait_idle(short_dir / "b.sock")
            assert dig_a(b, NAME)[1] == address
            assert upstream_queries(short_dir / "b.sock") == before_b
        finally:
            logs = [stop_and_read(r) for r in (a, b)]
    finally:
        stop_redis(redis)
    assert "rediss://:***@127.0.0.1:" in logs[0]
    assert all("s3cret" not in log for log in logs)


def test_workers_of_one_service_share_the_cache_through_redis(
    lab: RunningLab, short_dir: Path, redis_server: RunningRedis
) -> None:
    """A resolves; a --workers 2 service started later answers from Redis in whichever
    worker gets the query: the TTL shows the age, which a fresh resolution would not."""
    shared = ("--cachedb", redis_server.url, *ROOMY_BUDGET)
    a = start_resolver(lab, *shared, "--control-socket", str(short_dir / "a.sock"))
    try:
        ttl_a, address = dig_a(a)
        wait_for_keys(redis_server, 1)
    finally:
        stop_and_read(a)
    time.sleep(2.1)
    workers = start_resolver(lab, *shared, "--workers", "2",
                             "--control-socket", str(short_dir / "w.sock"))
    try:
        for _ in range(4):  # new source ports: the kernel spreads the queries
            ttl, address_w = dig_a(workers)
            assert address_w == address and ttl <= ttl_a - 2
    finally:
        log = stop_and_read(workers)
    assert "Traceback" not in log


def test_a_bad_cachedb_url_stops_serve_with_one_line(lab: RunningLab) -> None:
    from tests.integration.conftest import RESOLVER

    done = subprocess.run([*RESOLVER, "serve", "--listen", "127.0.0.1:0", "--root-hints",
                           str(lab.hints), "--cachedb", "http://127.0.0.1:6379"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "redis:// or rediss://" in done.stderr


def test_cache_flush_on_one_instance_makes_the_fleet_forget_the_name(
    lab: RunningLab, short_dir: Path, redis_server: RunningRedis
) -> None:
    """`resolver cache flush NAME` on A writes a flush marker to Redis: B, cold, no longer gets
    A's copy and resolves the name upstream, and the reply B writes is shared again."""
    from tests.integration.test_cache_file import cache_cmd

    shared = ("--cachedb", redis_server.url, *ROOMY_BUDGET)
    a = start_resolver(lab, *shared, "--control-socket", str(short_dir / "a.sock"))
    b = start_resolver(lab, *shared, "--control-socket", str(short_dir / "b.sock"))
    c = start_resolver(lab, *shared, "--control-socket", str(short_dir / "c.sock"))
    try:
        dig_a(a)
        wait_for_keys(redis_server, 1)
        flushed = cache_cmd("flush", NAME, "--control-socket", str(short_dir / "a.sock"))
        assert flushed.returncode == 0, flushed.stderr
        assert "flushed from the shared cache" in flushed.stdout
        time.sleep(0.01)  # the reply B writes must be newer than the marker
        before_b = wait_idle(short_dir / "b.sock")
        dig_a(b)
        assert upstream_queries(short_dir / "b.sock") > before_b
        wait_for_keys(redis_server, 3)  # A's old reply, the marker, B's new reply
        before_c = wait_idle(short_dir / "c.sock")
        dig_a(c)
        assert upstream_queries(short_dir / "c.sock") == before_c
    finally:
        logs = [stop_and_read(r) for r in (a, b, c)]
    assert all("Traceback" not in log for log in logs)


def test_the_refresh_lock_on_redis_goes_to_one_holder_until_it_lapses(
    redis_server: RunningRedis,
) -> None:
    """SET NX PX as the fleet uses it: the first claim wins, a second is refused while the
    lock lives, and once it has lapsed the next claim wins again; reads and deletes of
    several keys are one round trip each."""
    import asyncio

    from resolver.daemon.cachedb_redis import CacheDbUrl, RedisReplyStore
    from resolver.service.cachedb_tier import StoreItem

    async def exercise() -> tuple[list[bool], list[bytes | None], list[bytes | None]]:
        store = RedisReplyStore(CacheDbUrl.parse(redis_server.url))
        try:
            claims = [await store.claim("k:refresh", "a:1", 300),
                      await store.claim("k:refresh", "b:2", 300)]
            await asyncio.sleep(0.4)
            claims.append(await store.claim("k:refresh", "b:2", 300))
            await store.put_many([StoreItem("x", b"1", 60), StoreItem("y", b"2", 60)])
            read = await store.get_many(["x", "nothing", "y"])
            await store.delete(["x", "y"])
            return claims, read, await store.get_many(["x", "y"])
        finally:
            await store.close()

    claims, read, after_delete = asyncio.run(exercise())
    assert claims == [True, False, True]
    assert read == [b"1", None, b"2"]
    assert after_delete == [None, None]
