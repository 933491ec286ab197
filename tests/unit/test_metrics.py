"""Counters, the Prometheus text exposition (format 0.0.4), the small /metrics HTTP server,
the upstream counting network and the `resolver stats` formatting."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from resolver.daemon.metrics import CountingNetwork, MetricsServer
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.server.acl import AccessControl
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.server.metrics import (
    CONTENT_TYPE,
    Counter,
    Histogram,
    Metrics,
    core_families,
    format_stats,
    parse_exposition,
)
from tests.support.labnet import FakeClock, LabNetwork, lab_service


def test_metrics_counter_renders_help_type_and_labelled_samples() -> None:
    """A labelled counter renders one sample per label value, sorted, in text format 0.0.4."""
    metrics = Metrics()
    metrics.upstream_queries.inc("udp", amount=3)
    metrics.upstream_queries.inc("tcp")
    text = metrics.render()
    assert "# HELP resolver_upstream_queries_total " in text
    assert "# TYPE resolver_upstream_queries_total counter" in text
    assert ('resolver_upstream_queries_total{transport="tcp"} 1\n'
            'resolver_upstream_queries_total{transport="udp"} 3\n') in text
    assert text.endswith("\n")


def test_metrics_label_values_are_escaped() -> None:
    """Backslash, double quote and newline in a label value are escaped."""
    counter = Counter("x_total", "help", ("reason",))
    counter.inc('a"b\\c\nd')
    sample = counter.family().samples[0].render()
    assert sample == 'x_total{reason="a\\"b\\\\c\\nd"} 1'
    assert parse_exposition(sample)[0].labels == (("reason", 'a"b\\c\nd'),)


def test_metrics_histogram_buckets_are_cumulative() -> None:
    """Each bucket counts observations at or below its bound; +Inf counts all; sum and count."""
    histogram = Histogram("t_seconds", "help", (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    rendered = [s.render() for s in histogram.family().samples]
    assert rendered == ['t_seconds_bucket{le="0.1"} 2', 't_seconds_bucket{le="1"} 3',
                        't_seconds_bucket{le="+Inf"} 4', "t_seconds_sum 3.65",
                        "t_seconds_count 4"]


def test_metrics_reading_never_resets_counters() -> None:
    """Two scrapes in a row read the same values: counters only grow."""
    metrics = Metrics()
    metrics.local_answers.inc(amount=5)
    assert metrics.render() == metrics.render()
    assert metrics.local_answers.value() == 5


def test_metrics_collectors_add_families_and_a_broken_one_is_skipped() -> None:
    """Collectors are read at every scrape; one that raises costs only its own families."""
    metrics = Metrics()
    state = {"queries": 1}
    metrics.add_collector(lambda: core_families(
        queries=state["queries"], rcodes={"NOERROR": 2, "SERVFAIL": 1},
        service={"cache_hits": 3, "cache_misses": 4, "cache_entries": 9},
        answer_cache_hits=2, answer_cache_entries=1))

    def broken() -> list[object]:
        raise RuntimeError("boom")

    metrics.add_collector(broken)  # type: ignore[arg-type]
    state["queries"] = 7
    samples = {(s.name, s.labels): s.value for s in parse_exposition(metrics.render())}
    assert samples[("resolver_queries_total", ())] == 7
    assert samples[("resolver_responses_total", (("rcode", "SERVFAIL"),))] == 1
    assert samples[("resolver_cache_hits_total", ())] == 5  # record cache + answer cache
    assert samples[("resolver_cache_misses_total", ())] == 4
    assert samples[("resolver_cache_entries", ())] == 9


def test_metrics_cache_bytes_gauges_show_what_each_cache_is_charged() -> None:
    """The record cache's and the answer cache's charged bytes are gauges of their own, so
    a soak can compare them with the process's memory (docs/reliability.md, "The soak")."""
    metrics = Metrics()
    metrics.add_collector(lambda: core_families(
        queries=0, rcodes={}, service={"cache_entries": 3, "cache_bytes": 123_456},
        answer_cache_hits=0, answer_cache_entries=2, answer_cache_bytes=7_890))
    samples = {(s.name, s.labels): s.value for s in parse_exposition(metrics.render())}
    assert samples[("resolver_cache_bytes", ())] == 123_456
    assert samples[("resolver_answer_cache_bytes", ())] == 7_890
    assert samples[("resolver_cache_entries", ())] == 3


def test_metrics_extra_counter_is_exposed() -> None:
    """A feature may register its own counter with the registry."""
    metrics = Metrics()
    metrics.counter("resolver_widgets_total", "Widgets.").inc(amount=2)
    assert "resolver_widgets_total 2\n" in metrics.render()


def test_metrics_parse_exposition_skips_comments_and_garbage() -> None:
    """Comment lines and unreadable lines are ignored; values may be floats or +Inf."""
    samples = parse_exposition("# HELP a b\na_total 3\nnot a sample line\nb{le=\"+Inf\"} +Inf\n")
    assert [(s.name, s.value) for s in samples] == [("a_total", 3.0), ("b", float("inf"))]


def test_metrics_format_stats_summarises() -> None:
    """`resolver stats` shows the hit rate, the mean reply time and every non-bucket sample."""
    metrics = Metrics()
    metrics.add_collector(lambda: core_families(
        queries=10, rcodes={"NOERROR": 10}, service={"cache_hits": 3, "cache_misses": 1},
        answer_cache_hits=0, answer_cache_entries=0))
    metrics.latency.observe(0.002)
    metrics.latency.observe(0.004)
    lines = format_stats(parse_exposition(metrics.render()), now=metrics.started_at + 3725)
    text = "\n".join(lines)
    assert "up for                01:02:05" in text
    assert "cache hit rate        75.0% (3 of 4)" in text
    assert "mean reply time       3.0 ms" in text
    assert "resolver_queries_total" in text and "_bucket" not in text


def test_metrics_format_stats_counts_a_reply_cache_hit_once() -> None:
    """resolver_cache_hits_total already holds the reply-bytes hits: 4 questions, 1 miss,
    2 record-cache hits and 1 reply-bytes hit are 3 hits of 4, not 4 of 5."""
    metrics = Metrics()
    metrics.add_collector(lambda: core_families(
        queries=4, rcodes={"NOERROR": 4}, service={"cache_hits": 2, "cache_misses": 1},
        answer_cache_hits=1, answer_cache_entries=1))
    text = "\n".join(format_stats(parse_exposition(metrics.render())))
    assert "cache hit rate        75.0% (3 of 4)" in text
    assert "queries received      4" in text


class Scripted:
    """An upstream network that answers, times out or fails as told."""

    def __init__(self, result: str) -> None:
        self.result = result

    async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                       timeout_s: float) -> bytes:
        if self.result == "timeout":
            raise UpstreamTimeout()
        if self.result == "error":
            raise UpstreamError("refused")
        return b"reply"

    async def close(self) -> None:
        """Something only this network has."""


@pytest.mark.parametrize(("result", "timeouts", "errors"), [
    ("ok", 0, 0), ("timeout", 1, 0), ("error", 0, 1)])
def test_metrics_counting_network_counts_sends_timeouts_and_errors(
        result: str, timeouts: int, errors: int) -> None:
    """Every exchange is counted by transport; timeouts and errors are counted and re-raised."""
    metrics = Metrics()
    network = CountingNetwork(Scripted(result), metrics)

    async def run() -> None:
        with contextlib.suppress(UpstreamTimeout, UpstreamError):
            await network.exchange(b"q", ServerAddress("127.0.0.1"), Transport.TCP, 1.0)

    asyncio.run(run())
    assert metrics.upstream_queries.value("tcp") == 1
    assert metrics.upstream_timeouts.value() == timeouts
    assert metrics.upstream_errors.value() == errors
    assert getattr(network, "close", None) is not None  # the wrapped network stays reachable


# -- the HTTP endpoint ------------------------------------------------------------------


async def http(server: MetricsServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def serve_and_send(*requests: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        metrics = Metrics()
        metrics.local_answers.inc(amount=4)
        server = MetricsServer(metrics, "127.0.0.1", 0)
        await server.start()
        try:
            return [await http(server, request) for request in requests]
        finally:
            await server.stop()
    return asyncio.run(run())


def test_metrics_server_get_metrics() -> None:
    """GET /metrics is 200 with the exposition and the Prometheus content type."""
    (reply,) = serve_and_send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Type: {CONTENT_TYPE}".encode() in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"resolver_local_answers_total 4\n" in body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.1\r\n\r\n", b"404"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"garbage\r\n\r\n", b"400"),
])
def test_metrics_server_other_requests(request_bytes: bytes, status: bytes) -> None:
    """Other paths are 404, other methods 405, unreadable requests 400."""
    (reply,) = serve_and_send(request_bytes)
    assert reply.split(b" ")[1] == status


def test_metrics_server_head_has_no_body() -> None:
    """HEAD /metrics is the headers of GET without the body."""
    (reply,) = serve_and_send(b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\n")


def test_metrics_server_survives_an_oversized_request_and_serves_the_next() -> None:
    """A request head over 8 KB is dropped without a reply; the server keeps serving."""
    replies = serve_and_send(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
                             b"GET /metrics HTTP/1.1\r\n\r\n")
    assert replies[0] == b""
    assert replies[1].startswith(b"HTTP/1.1 200")


# -- counted by the handler -------------------------------------------------------------


def test_metrics_handler_counts_latency_and_refusals() -> None:
    """Every reply is timed; refused clients are counted."""
    clock = FakeClock()
    metrics = Metrics()
    handler = QueryHandler(lab_service(clock, LabNetwork(clock)), metrics=metrics,
                           access=AccessControl())
    wire = make_query(Question("www.networkutopia.com.", RRType.A), query_id=1,
                      recursion_desired=True)
    for ip in ("127.0.0.1", "192.0.2.1"):
        asyncio.run(handler.handle(wire, Client(ip=ip, port=1, transport=Transport.UDP)))
    assert metrics.latency.count == 2
    assert metrics.refused_by_acl.value() == 1
    assert handler.rcodes == {"NOERROR": 1, "REFUSED": 1}
