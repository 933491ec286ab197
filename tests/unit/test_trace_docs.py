"""docs/trace-json.md documents every event name and field that `--json` can print."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from resolver.cli.trace_probe import (
    CutReport,
    ProbeStatus,
    RecursiveResult,
    ServerProbe,
    fanout_json,
    recursive_json,
)
from resolver.dns.wire import Question, RRType
from resolver.engine import events
from resolver.engine.network import ServerAddress

DOC = Path(__file__).resolve().parents[2] / "docs" / "trace-json.md"


def _sections() -> dict[str, str]:
    """Text of each "### `name`" section, by name."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### `([a-z_]+)`.*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _documented_fields(section: str) -> set[str]:
    return {name for cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE)
            for name in re.findall(r"`([a-z_]+)`", cell)}


def test_trace_docs_cover_every_engine_event_and_field() -> None:
    """Each TraceEvent subclass has a section listing all of its own fields."""
    sections = _sections()
    classes = [c for c in vars(events).values()
               if isinstance(c, type) and issubclass(c, events.TraceEvent)
               and c is not events.TraceEvent]
    assert len(classes) == 13
    for cls in classes:
        name = re.sub(r"(?<!^)([A-Z])", r"_\1", cls.__name__).lower()  # QuerySent -> query_sent
        assert name in sections, name
        own = {f.name for f in fields(cls)} - {"depth", "at_s"}
        assert own <= _documented_fields(sections[name]), (name, own)


def test_trace_docs_cover_the_tool_records() -> None:
    """fanout_probe, fanout_ns_sets and recursive_reply are documented field by field."""
    sections = _sections()
    probe = ServerProbe(server_name="a.", address="127.0.0.1", status=ProbeStatus.OK)
    report = CutReport(zone=".", question=Question(".", RRType.NS), parent_ns=("a.",),
                       parent_source="root hints", probes=(probe,), child_ns=("a.",))
    recursive = RecursiveResult(server=ServerAddress("127.0.0.1", 53),
                                question=Question(".", RRType.NS), transport="udp")
    for record in [*fanout_json(report), recursive_json(recursive)]:
        documented = _documented_fields(sections[record["event"]])
        assert set(record) - {"event"} <= documented, record["event"]
