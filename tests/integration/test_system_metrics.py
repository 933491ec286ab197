"""Observability over real sockets: /metrics scraped over HTTP, `resolver stats`, the query log,
one log line per SERVFAIL, and the extended DNS error (RFC 8914) in SERVFAIL replies."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RESOLVER, RunningLab, _free_port
from tests.integration.test_system_support import Server, dig, scrape, start, status

pytestmark = pytest.mark.integration


@pytest.fixture
def observed(lab: RunningLab, tmp_path: Path) -> Iterator[Server]:
    server = start(lab, tmp_path, "--log-queries", metrics=True)
    yield server
    assert server.stop() == 0


def test_system_metrics_scraped_over_http_count_what_happened(observed: Server) -> None:
    """Queries, rcodes, cache hits and misses, upstream queries and latency are counted."""
    before = scrape(observed)
    for _ in range(3):
        assert status(dig(observed, "www.crepes.fr")) == "NOERROR"
    assert status(dig(observed, "nothere.networkutopia.com")) == "NXDOMAIN"
    after = scrape(observed)
    assert after["resolver_queries_total"] - before.get("resolver_queries_total", 0) == 4
    assert after["resolver_responses_total,rcode=NXDOMAIN"] >= 1
    assert after["resolver_cache_hits_total"] - before.get("resolver_cache_hits_total", 0) >= 2
    assert after["resolver_cache_misses_total"] > before.get("resolver_cache_misses_total", 0)
    assert (after["resolver_upstream_queries_total,transport=udp"]
            > before.get("resolver_upstream_queries_total,transport=udp", 0))
    assert after["resolver_query_duration_seconds_count"] >= 4
    assert after["resolver_query_duration_seconds_bucket,le=+Inf"] == after[
        "resolver_query_duration_seconds_count"]


def test_system_metrics_never_reset_on_read(observed: Server) -> None:
    """Scraping twice without queries in between reads the same counters."""
    dig(observed, "www.hamburger.edu")
    first, second = scrape(observed), scrape(observed)
    counters = [k for k in first if k.endswith("_total") or "_bucket" in k]
    assert counters and all(first[k] == second[k] for k in counters)


def test_system_metrics_stats_command_prints_the_counters(observed: Server) -> None:
    """`resolver stats --metrics ADDR:PORT` prints a summary and the counters."""
    dig(observed, "www.networkutopia.com")
    dig(observed, "www.networkutopia.com")
    result = subprocess.run(
        [*RESOLVER, "stats", "--metrics", f"127.0.0.1:{observed.metrics_port}"],
        capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    assert re.search(r"queries received\s+\d+", result.stdout)
    assert re.search(r"cache hit rate\s+\d+\.\d%", result.stdout)
    assert "resolver_upstream_queries_total{transport=\"udp\"}" in result.stdout
    raw = subprocess.run(
        [*RESOLVER, "stats", "--raw", "--metrics", f"127.0.0.1:{observed.metrics_port}"],
        capture_output=True, text=True, timeout=20, check=False)
    assert "# TYPE resolver_queries_total counter" in raw.stdout


@pytest.mark.parametrize("channel", ["metrics", "control socket"])
def test_system_stats_hit_rate_counts_client_questions_only(lab: RunningLab, tmp_path: Path,
                                                           channel: str) -> None:
    """Every client question is one hit or one miss, and nothing else is: the priming
    check at start is no client's, and a reply-bytes hit is counted once. One new name,
    then the same twice (from the reply bytes, then with DO=1 from the record cache)
    adds 3 questions and 2 hits, on both ways of reading."""
    server = start(lab, tmp_path, metrics=True)
    where = (["--metrics", f"127.0.0.1:{server.metrics_port}"] if channel == "metrics"
             else ["--control-socket", str(tmp_path / f"control-{server.port}.sock")])

    def table() -> tuple[int, int, int]:
        """(queries received, hits, hits + misses) as `resolver stats` prints them."""
        result = subprocess.run([*RESOLVER, "stats", *where], capture_output=True, text=True,
                                timeout=20, check=False)
        assert result.returncode == 0, result.stderr
        queries = re.search(r"^queries received\s+(\d+)$", result.stdout, re.MULTILINE)
        rate = re.search(r"^cache hit rate\s+[\d.]+% \((\d+) of (\d+)\)$", result.stdout,
                         re.MULTILINE)
        assert queries is not None and rate is not None, result.stdout
        return int(queries.group(1)), int(rate.group(1)), int(rate.group(2))

    try:
        queries, hits, counted = table()  # the start-up check's own query may be in it
        assert counted == queries
        assert status(dig(server, "www.crepes.fr")) == "NOERROR"
        assert status(dig(server, "www.crepes.fr")) == "NOERROR"
        assert status(dig(server, "+dnssec", "www.crepes.fr")) == "NOERROR"
        assert table() == (queries + 3, hits + 2, queries + 3)
    finally:
        assert server.stop() == 0


def test_system_metrics_stats_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    """Nothing listening: exit 1 and a line saying where it looked and what to do."""
    port = _free_port("127.0.0.1")
    result = subprocess.run(
        [*RESOLVER, "stats", "--metrics", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert f"cannot read metrics at http://127.0.0.1:{port}/metrics" in result.stderr
    assert "Traceback" not in result.stderr


def test_system_metrics_stats_falls_back_to_the_control_channel(lab: RunningLab,
                                                               tmp_path: Path) -> None:
    """No metrics endpoint at the default address: `resolver stats` asks the control socket."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9153)) == 0:
            pytest.skip("something listens on 127.0.0.1:9153, the default metrics address")
    server = start(lab, tmp_path)
    try:
        dig(server, "www.networkutopia.com")
        result = subprocess.run(
            [*RESOLVER, "stats", "--control-socket", str(tmp_path / f"control-{server.port}.sock")],
            capture_output=True, text=True, timeout=20, check=False)
        assert result.returncode == 0, result.stderr
        # The same readable table as through --metrics, then the engine's own counters.
        out = result.stdout
        assert re.search(r"^queries received\s+[1-9]\d*$", out, re.MULTILINE), out
        assert re.search(r"^cache hit rate\s+\d+\.\d% \(\d+ of [1-9]\d*\)$", out, re.MULTILINE)
        assert re.search(r"^upstream queries\s+[1-9]\d* \(0 timed out\)$", result.stdout,
                         re.MULTILINE)
        assert 'resolver_responses_total{rcode="NOERROR"}' in result.stdout
        assert re.search(r"^  upstream_queries\s+[1-9]\d*$", result.stdout, re.MULTILINE)
        as_json = subprocess.run(
            [*RESOLVER, "stats", "--json",
             "--control-socket", str(tmp_path / f"control-{server.port}.sock")],
            capture_output=True, text=True, timeout=20, check=False)
        assert as_json.returncode == 0, as_json.stderr
        record = json.loads(as_json.stdout)
        assert record["samples"]["resolver_queries_total"] >= 1
        assert record["samples"]['resolver_responses_total{rcode="NOERROR"}'] >= 1
        assert record["engine"]["workers"] == 1
        assert record["source"].startswith("control socket ")
    finally:
        assert server.stop() == 0


def test_system_metrics_query_log_has_one_line_per_query(observed: Server) -> None:
    """--log-queries logs client, transport, name, type, rcode and milliseconds."""
    dig(observed, "www.ibm.com", "AAAA")
    dig(observed, "+tcp", "localhost")
    line = observed.wait_for_log(
        r"query 127\.0\.0\.1:\d+ udp www\.ibm\.com\. AAAA NOERROR \d+\.\dms")
    assert line is not None
    observed.wait_for_log(r"query 127\.0\.0\.1:\d+ tcp localhost\. A NOERROR \d+\.\dms")


def test_system_metrics_servfail_has_one_log_line_and_an_extended_error(
        lab: RunningLab, tmp_path: Path) -> None:
    """With no upstream reachable: SERVFAIL with EDE 22, and one INFO line giving the reason."""
    dead_port = _free_port("127.0.0.1")  # nothing listens there: every upstream query fails
    server = start(lab, tmp_path, "--root-hints", str(lab.hints), "--upstream-port",
                   str(dead_port), with_lab=False, metrics=True)
    try:
        output = dig(server, "+time=8", "www.networkutopia.com")
        assert status(output) == "SERVFAIL"
        assert re.search(r"; EDE: 22 \(No Reachable Authority\)", output), output
        match = server.wait_for_log(r"SERVFAIL for www\.networkutopia\.com\. A from "
                                    r"127\.0\.0\.1: (.+)")
        assert match.group(1).strip() and "\n" not in match.group(0)
        assert scrape(server)["resolver_upstream_errors_total"] >= 1
    finally:
        assert server.stop() == 0


def test_system_metrics_port_taken_is_a_clear_error(lab: RunningLab, tmp_path: Path) -> None:
    """--metrics on a taken port: one line naming the metrics address, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen_port = _free_port("127.0.0.1")
        result = subprocess.run(
            [*RESOLVER, "serve", "--listen", f"127.0.0.1:{listen_port}", "--root-hints",
             str(lab.hints), "--upstream-port", str(lab.port), "--metrics", f"127.0.0.1:{port}",
             "--control-socket", str(tmp_path / "c.sock")],
            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}: the address is already in use" \
        in result.stderr
    assert "Traceback" not in result.stderr
