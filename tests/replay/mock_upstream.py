"""The scripted authoritative servers: answers `transport(server_ip, wire, tcp)` calls.

README §3.5 (building replies: copy_id, copy_query, EDNS mirroring, raw/hex bytes) and §3.6
(which entry answers: Deckard ranges in file order without fall-through plus one-shot REPLY
steps; testbound CHECK_OUT_QUERY/REPLY/TIMEOUT/ERROR steps at the cursor, then ranges in reverse
file order with fall-through). Every query is logged (§3.6.3); queries no script answers are
recorded as problems that fail the scenario at its end (§3.6.1 #5, §3.6.2 #3) unless the run
is lenient about timeouts (§3.6.5).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import dnslib

from tests.replay.compare import match_mismatches
from tests.replay.messages import (
    PAYLOAD,
    MessageView,
    build_record,
    entry_view,
    make_opt,
    servfail_for,
    summarize,
    view,
)
from tests.replay.rpl import Entry, Range, Scenario, Step, StepKind
from tests.replay.rplconfig import Dialect
from tests.replay.seam import UpstreamError, UpstreamTimeout

__all__ = ["MockUpstream", "Timeline", "UpstreamRecord", "build_reply"]


class Timeline:
    """The step list and its cursor, shared by the runner and the mock (README §3.6.4).

    Deckard: the cursor is the step being executed. testbound: the cursor is the next step not
    yet consumed; the mock moves it when CHECK_OUT_QUERY / REPLY / TIMEOUT / ERROR steps answer.
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)
        self.cursor = 0

    @property
    def current(self) -> Step | None:
        return self.steps[self.cursor] if self.cursor < len(self.steps) else None

    def sid(self) -> int:
        """Step id that selects ranges now; past the last step, one more than its id."""
        if (step := self.current) is not None:
            return step.id
        return self.steps[-1].id + 1 if self.steps else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRecord:
    """One upstream query and what the script did with it (README §3.6.3)."""

    seq: int
    sid: int
    server_ip: str
    tcp: bool
    query: MessageView
    outcome: str

    def __str__(self) -> str:
        transport = "TCP" if self.tcp else "UDP"
        return (f"#{self.seq} step {self.sid} -> {self.server_ip} {transport}: "
                f"{summarize(self.query)} => {self.outcome}")


class _NoAnswer(Exception):
    """Internal: the script answers with a timeout or an error instead of bytes."""

    def __init__(self, failure: type[Exception], how: str) -> None:
        super().__init__(how)
        self.failure = failure
        self.how = how


def _copy_question_wire(data: bytes, query: bytes) -> bytes:
    """testbound `copy_query` on raw bytes: splice in the query's question (README §3.5)."""
    def question_end(packet: bytes) -> int | None:
        at = 12
        while at < len(packet) and packet[at] != 0:
            if packet[at] & 0xC0:
                return None  # compressed or extended label: testbound leaves it alone
            at += packet[at] + 1
        return at + 5 if at + 5 <= len(packet) else None

    if len(data) < 12 or len(query) < 12 or query[4:6] == b"\0\0":
        return data
    query_end = question_end(query)
    if query_end is None:
        return data
    if data[4:6] == b"\0\0":
        return data[:4] + b"\0\1" + data[6:12] + query[12:query_end] + data[12:]
    data_end = question_end(data)
    if data_end is None:
        return data
    return data[:12] + query[12:query_end] + data[data_end:]


def build_reply(entry: Entry, query: MessageView, dialect: Dialect) -> bytes:
    """The mock's reply to `query` from `entry`, adjusted per dialect (README §3.5)."""
    if "do_not_answer" in entry.adjust:
        raise _NoAnswer(UpstreamTimeout, "do_not_answer")
    if entry.raw is not None or entry.hex_answer is not None:
        data = entry.raw if entry.raw is not None else entry.hex_answer
        assert data is not None
        if dialect is Dialect.TESTBOUND and "copy_query" in entry.adjust:
            data = _copy_question_wire(data, query.wire)
        if {"raw_id", "copy_id"} & entry.adjust and len(data) >= 2:
            data = struct.pack("!H", query.id) + data[2:]
        return data
    record = build_record(entry, dialect)
    if "copy_id" in entry.adjust:
        record.header.id = query.id
        if dialect is Dialect.DECKARD and record.questions and query.question:
            template = record.questions[0]
            record.questions[0] = dnslib.DNSQuestion(query.question[0].qname, template.qtype,
                                                     template.qclass)
    if "copy_query" in entry.adjust:
        record.questions = list(query.question)
    if dialect is Dialect.DECKARD and {"copy_id", "copy_query"} & entry.adjust:
        # Deckard mirrors the query's EDNS: OPT iff the query had one, its version and DO.
        record.ar = [rr for rr in record.ar if rr.rtype != 41]
        if query.edns is not None:
            record.ar.append(make_opt(payload=PAYLOAD[dialect], do=query.edns.do,
                                      version=query.edns.version, ext_rcode=entry.rcode >> 4))
    return bytes(record.pack())


class MockUpstream:
    """A `Transport` answering from the scenario's ranges and steps."""

    def __init__(self, scenario: Scenario, timeline: Timeline, *,
                 lenient_timeouts: bool = False) -> None:
        self.scenario = scenario
        self.dialect = scenario.dialect
        self.timeline = timeline
        self.lenient_timeouts = lenient_timeouts
        self.log: list[UpstreamRecord] = []
        self.problems: list[str] = []  # fail the scenario at its end
        self._fired: set[int] = set()  # id() of entries that answered at least once
        self._used_replies: set[int] = set()  # Deckard one-shot REPLY steps, by index
        self._views: dict[int, MessageView] = {}
        self._known = {a for r in scenario.ranges for a in r.addresses}

    # -- the Transport ---------------------------------------------------------------------

    def __call__(self, server_ip: str, wire: bytes, tcp: bool) -> bytes:
        query = view(bytes(wire))
        sid = self.timeline.sid()
        try:
            if self.dialect is Dialect.DECKARD:
                reply, how = self._deckard(server_ip, query, tcp, sid)
            else:
                reply, how = self._testbound(server_ip, query, tcp, sid)
        except _NoAnswer as no_answer:
            self._record(sid, server_ip, tcp, query, no_answer.how)
            raise no_answer.failure(no_answer.how) from None
        except Exception as exc:  # a harness defect must fail the run, not hide in the resolver
            self.problems.append(f"harness error answering {summarize(query)}: {exc!r}")
            self._record(sid, server_ip, tcp, query, f"harness error {exc!r}")
            raise UpstreamTimeout("harness error") from exc
        self._record(sid, server_ip, tcp, query, how)
        return reply

    def _record(self, sid: int, server_ip: str, tcp: bool, query: MessageView, how: str) -> None:
        self.log.append(UpstreamRecord(seq=len(self.log) + 1, sid=sid, server_ip=server_ip,
                                       tcp=tcp, query=query, outcome=how))

    # -- helpers ----------------------------------------------------------------------------

    def _matches(self, entry: Entry, query: MessageView, tcp: bool) -> bool:
        expected = self._views.get(id(entry))
        if expected is None:
            expected = self._views[id(entry)] = entry_view(entry, self.dialect)
        return not match_mismatches(entry.match, expected, query, tcp=tcp, dialect=self.dialect)

    def _answer(self, entry: Entry, query: MessageView, how: str) -> tuple[bytes, str]:
        self._fired.add(id(entry))
        return build_reply(entry, query, self.dialect), how

    def _unanswered(self, sid: int, server_ip: str, query: MessageView, tcp: bool) -> str:
        transport = "TCP" if tcp else "UDP"
        return (f"step {sid}: nothing in the scenario answers {summarize(query)} "
                f"sent to {server_ip} over {transport}")

    @staticmethod
    def _range_name(rng: Range, entry: Entry) -> str:
        return f"RANGE {rng.start}-{rng.end} (line {rng.lineno}), entry line {entry.lineno}"

    # -- Deckard (README §3.6.1) ------------------------------------------------------------

    def _deckard(self, server_ip: str, query: MessageView, tcp: bool,
                 sid: int) -> tuple[bytes, str]:
        known = server_ip in self._known
        for rng in self.scenario.ranges:
            if not rng.start <= sid <= rng.end:
                continue
            if known and rng.addresses and server_ip not in rng.addresses:
                continue
            for entry in rng.entries:  # first eligible range only: no fall-through
                if self._matches(entry, query, tcp):
                    return self._answer(entry, query, self._range_name(rng, entry))
            self.problems.append("undefined answer: " + self._unanswered(sid, server_ip, query,
                                                                         tcp))
            return servfail_for(query), f"UNDEFINED in RANGE line {rng.lineno} -> SERVFAIL"
        for index, step in enumerate(self.timeline.steps):
            if (step.kind is StepKind.REPLY and step.id >= sid and step.entry is not None
                    and index not in self._used_replies
                    and self._matches(step.entry, query, tcp)):
                self._used_replies.add(index)
                return self._answer(step.entry, query, f"STEP {step.id} REPLY (one-shot)")
        self.problems.append("undefined answer: " + self._unanswered(sid, server_ip, query, tcp))
        return servfail_for(query), "UNDEFINED -> SERVFAIL"

    # -- testbound (README §3.6.2) ----------------------------------------------------------

    def _testbound(self, server_ip: str, query: MessageView, tcp: bool,
                   sid: int) -> tuple[bytes, str]:
        step = self.timeline.current
        if (step is not None and step.kind is StepKind.CHECK_OUT_QUERY and step.entry
                and step.address in (None, server_ip)
                and self._matches(step.entry, query, tcp)):
            self.timeline.cursor += 1
            how = f"CHECK_OUT_QUERY step {step.id}"
            if "copy_id" in step.entry.adjust:
                return self._answer(step.entry, query, f"{how} (copy_id)")
            answered = self._step_answer(query, how)
            if answered is not None:
                return answered
        sid = self.timeline.sid()
        for rng in reversed(self.scenario.ranges):  # testbound prepends: last range first
            if not rng.start <= sid <= rng.end:
                continue
            if rng.addresses and rng.addresses[-1] != server_ip:
                continue
            for entry in rng.entries:  # no match here: fall through to the next range
                if self._matches(entry, query, tcp):
                    return self._answer(entry, query, self._range_name(rng, entry))
        answered = self._step_answer(query, "pending query")
        if answered is not None:
            return answered
        if self.lenient_timeouts:
            raise _NoAnswer(UpstreamTimeout, "unanswered -> timeout (lenient)")
        self.problems.append(self._unanswered(sid, server_ip, query, tcp))
        raise _NoAnswer(UpstreamTimeout, "UNANSWERED -> timeout")

    def _step_answer(self, query: MessageView, how: str) -> tuple[bytes, str] | None:
        """REPLY / TIMEOUT / ERROR at the cursor answer the most recent pending query."""
        step = self.timeline.current
        if step is None:
            return None
        if step.kind is StepKind.REPLY and step.entry is not None:
            self.timeline.cursor += 1
            return self._answer(step.entry, query, f"{how}: STEP {step.id} REPLY")
        if step.kind in (StepKind.TIMEOUT, StepKind.ERROR):
            self.timeline.cursor += 1
            failure = UpstreamTimeout if step.kind is StepKind.TIMEOUT else UpstreamError
            raise _NoAnswer(failure, f"{how}: STEP {step.id} {step.kind.value}")
        return None

    # -- end of scenario --------------------------------------------------------------------

    def unfired_mandatory(self) -> list[Entry]:
        """MANDATORY entries that never answered (README §3.6.1 #5)."""
        entries = [e for r in self.scenario.ranges for e in r.entries]
        entries += [s.entry for s in self.timeline.steps if s.entry is not None]
        return [e for e in entries if e.mandatory and id(e) not in self._fired]

    def log_text(self, limit: int = 120) -> str:
        """The upstream log, newest last; long logs keep their tail."""
        lines = [str(record) for record in self.log[-limit:]]
        if len(self.log) > limit:
            lines.insert(0, f"... {len(self.log) - limit} earlier queries omitted")
        return "\n".join(lines) or "(no upstream queries)"
