"""Counters of what the resolver does, and their Prometheus text exposition.

Rules:
- Counters only ever grow: reading them (a scrape, `resolver stats`) never resets them, so any
  number of scrapers can read at once (the objection raised against reset-on-read statistics).
- The exposition is the Prometheus text format 0.0.4: `# HELP`, `# TYPE`, one sample a line,
  label values escaped; histograms as cumulative `_bucket{le=...}`, `_sum` and `_count`.
- Values that only exist elsewhere (cache size, listener counters) are read at scrape time
  through collectors registered with `add_collector`.
The HTTP endpoint and the upstream counting wrapper are the daemon's
(`resolver.daemon.metrics`).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Where `--metrics` and `resolver stats` meet unless told otherwise (CoreDNS's port).
DEFAULT_METRICS_PORT = 9153
#: Client query latency buckets in seconds: a cache hit is well under a millisecond, a cold
#: resolution tens of milliseconds, and the resolution budget ends at 4 s.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.0, 4.0, 8.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One line of the exposition."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    value: float

    def render(self) -> str:
        return f"{self.name}{_labels(self.labels)} {_number(self.value)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Family:
    """Samples of one metric with its help text and type (counter, gauge, histogram)."""

    name: str
    help: str
    type: str
    samples: tuple[Sample, ...]


class Counter:
    """A monotonically increasing count, optionally split by one or more labels."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...] = (),
                 *, known: tuple[tuple[str, ...], ...] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}
        for labels in known:  # series that exist from the start, at 0 (no gaps in graphs)
            self._values[labels] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def family(self) -> Family:
        samples = tuple(
            Sample(name=self.name, labels=tuple(zip(self.labelnames, key, strict=True)), value=v)
            for key, v in sorted(self._values.items())
        )
        return Family(name=self.name, help=self.help, type="counter", samples=samples)


class Histogram:
    """Observations counted into cumulative buckets (Prometheus histogram)."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.sum += value

    def observe_many(self, value: float, times: int) -> None:
        """`times` observations of `value` (a batch measured as a whole, per item)."""
        self._counts[bisect.bisect_left(self.buckets, value)] += times
        self.count += times
        self.sum += value * times

    def family(self) -> Family:
        samples = []
        running = 0
        for bound, count in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += count
            samples.append(Sample(name=f"{self.name}_bucket", labels=(("le", _number(bound)),),
                                  value=running))
        samples.append(Sample(name=f"{self.name}_sum", value=self.sum))
        samples.append(Sample(name=f"{self.name}_count", value=self.count))
        return Family(name=self.name, help=self.help, type="histogram", samples=tuple(samples))


Collector = Callable[[], Iterable[Family]]


class Metrics:
    """Every counter the resolver keeps; one instance per process, kept across reloads."""

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        # Queries, replies by rcode and cache hits are counted where they happen (handler,
        # service, answer cache) and read by a collector; these are the rest.
        self.dropped = Counter("resolver_dropped_total",
                               "Queries given no reply on purpose, by reason.", ("reason",),
                               known=(("access-control",), ("ip-ratelimit",)))
        self.refused_by_acl = Counter("resolver_acl_refused_total",
                                      "Queries answered REFUSED by access control.")
        self.local_answers = Counter("resolver_local_answers_total",
                                     "Questions answered from local zones and local data.")
        self.rebinding_removed = Counter(
            "resolver_rebinding_removed_total",
            "Private addresses removed from answers for public names (private-address).")
        self.upstream_queries = Counter("resolver_upstream_queries_total",
                                        "Queries sent to authoritative servers or forwarders.",
                                        ("transport",), known=(("tcp",), ("udp",)))
        self.upstream_timeouts = Counter("resolver_upstream_timeouts_total",
                                         "Upstream queries that got no acceptable reply in time.")
        self.upstream_errors = Counter("resolver_upstream_errors_total",
                                       "Upstream queries that failed at once (refused, reset).")
        self.latency = Histogram("resolver_query_duration_seconds",
                                 "Time from a client's query to our reply.", LATENCY_BUCKETS_S)
        self._instruments: list[Counter | Histogram] = [
            self.dropped, self.refused_by_acl, self.local_answers, self.rebinding_removed,
            self.upstream_queries, self.upstream_timeouts, self.upstream_errors, self.latency,
        ]
        self._collectors: list[Collector] = []
        self.started_at = wall_clock()

    def counter(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> Counter:
        """A further counter, exposed with the others (for features that count their own)."""
        counter = Counter(name, help_text, labelnames)
        self._instruments.append(counter)
        return counter

    def add_collector(self, collector: Collector) -> None:
        """Call `collector` at every scrape for values kept elsewhere (gauges, listener counts)."""
        self._collectors.append(collector)

    def families(self) -> list[Family]:
        out = [instrument.family() for instrument in self._instruments]
        out.append(gauge("resolver_start_time_seconds",
                         "When the resolver started, in seconds since the epoch.",
                         self.started_at))
        for collector in self._collectors:
            try:
                out.extend(collector())
            except Exception:  # a broken collector must not break the scrape
                log.exception("metrics collector failed")
        return out

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines: list[str] = []
        for family in self.families():
            lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.type}")
            lines.extend(sample.render() for sample in family.samples)
        return "\n".join(lines) + "\n"


def gauge(name: str, help_text: str, value: float,
          labels: tuple[tuple[str, str], ...] = ()) -> Family:
    """A one-sample gauge family, for collectors."""
    return Family(name=name, help=help_text, type="gauge",
                  samples=(Sample(name=name, labels=labels, value=value),))


def counter(name: str, help_text: str, value: float,
            labels: tuple[tuple[str, str], ...] = ()) -> Family:
    """A one-sample counter family, for collectors of counts kept elsewhere."""
    return Family(name=name, help=help_text, type="counter",
                  samples=(Sample(name=name, labels=labels, value=value),))


def core_families(
    *,
    queries: int,
    rcodes: Mapping[str, int],
    service: Mapping[str, int],
    answer_cache_hits: int,
    answer_cache_entries: int,
    answer_cache_bytes: int = 0,
) -> list[Family]:
    """The counters the handler, the service and the answer cache keep, as metric families."""
    hits = service.get("cache_hits", 0) + answer_cache_hits
    responses = Family(
        name="resolver_responses_total", help="Replies sent to clients, by response code.",
        type="counter",
        samples=tuple(Sample(name="resolver_responses_total", labels=(("rcode", rcode),),
                             value=count) for rcode, count in sorted(rcodes.items())))
    return [
        counter("resolver_queries_total", "Queries received from clients.", queries),
        responses,
        counter("resolver_cache_hits_total",
                "Client questions answered from the cache, without an upstream query.", hits),
        counter("resolver_cache_misses_total",
                "Client questions that needed at least one upstream query.",
                service.get("cache_misses", 0)),
        counter("resolver_answer_cache_hits_total",
                "Replies served as stored bytes (part of the cache hits).", answer_cache_hits),
        counter("resolver_stale_answers_total", "Answers served from expired data (RFC 8767).",
                service.get("stale_answers", 0)),
        counter("resolver_prefetches_total", "Background refreshes of expiring entries.",
                service.get("prefetches", 0)),
        counter("resolver_resolutions_total", "Resolutions started.",
                service.get("resolutions", 0)),
        counter("resolver_shared_waits_total",
                "Questions that joined an identical resolution already under way.",
                service.get("shared_waits", 0)),
        gauge("resolver_cache_entries", "RRsets and negative answers in the cache.",
              service.get("cache_entries", 0)),
        gauge("resolver_cache_bytes",
              "Bytes the record cache's entries are charged against --cache-size "
              "(engine/entry_size.py); 0 when bounded in entries.",
              service.get("cache_bytes", 0)),
        gauge("resolver_answer_cache_entries", "Whole replies in the answer cache.",
              answer_cache_entries),
        gauge("resolver_answer_cache_bytes",
              "Bytes the answer cache's entries are charged against its share of "
              "--cache-size.", answer_cache_bytes),
        gauge("resolver_in_flight_resolutions", "Resolutions under way.",
              service.get("in_flight", 0)),
    ]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")



_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> list[Sample]:
    """The samples of a text exposition (comments skipped, unreadable lines ignored)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or match is None:
            continue
        labels = tuple((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                       for k, v in _LABEL.findall(match.group(2) or ""))
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        samples.append(Sample(name=match.group(1), labels=labels, value=value))
    return samples


def format_stats(samples: list[Sample], *, now: float | None = None) -> list[str]:
    """Lines for `resolver stats`: a short summary, then every sample but histogram buckets."""
    now = time.time() if now is None else now
    by_name: dict[str, float] = {}
    for s in samples:
        by_name[s.name] = by_name.get(s.name, 0.0) + s.value
    # A hit is a question answered without an upstream query: from the reply-bytes cache
    # in front, or from the record cache behind it. resolver_cache_hits_total counts
    # both already (resolver_answer_cache_hits_total is the part of it from the front).
    hits = by_name.get("resolver_cache_hits_total", 0.0)
    misses = by_name.get("resolver_cache_misses_total", 0.0)
    answered = by_name.get("resolver_query_duration_seconds_count", 0.0)
    total_s = by_name.get("resolver_query_duration_seconds_sum", 0.0)
    started = by_name.get("resolver_start_time_seconds")
    lines = [
        f"up for                {_duration(now - started) if started else '-'}",
        f"queries received      {_number(by_name.get('resolver_queries_total', 0.0))}",
        f"cache hit rate        {_percent(hits, hits + misses)}",
        f"mean reply time       {total_s / answered * 1000:.1f} ms" if answered else
        "mean reply time       -",
        f"upstream queries      {_number(by_name.get('resolver_upstream_queries_total', 0.0))}"
        f" ({_number(by_name.get('resolver_upstream_timeouts_total', 0.0))} timed out)",
        "",
    ]
    shown = [s for s in samples if not s.name.endswith("_bucket")]
    width = max((len(s.name + _labels(s.labels)) for s in shown), default=0)
    for s in shown:
        lines.append(f"{s.name + _labels(s.labels):<{width}}  {_number(s.value)}")
    return lines


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}% ({_number(part)} of {_number(whole)})" if whole else "-"
