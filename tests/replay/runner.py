"""Executes a scenario's steps against a resolver built by a factory (README §3.7).

One run = one fresh resolver, one `FakeClock`, one `MockUpstream`. Steps run in file order;
the first failing check stops the run with `ScenarioFailure`, whose message shows the step, the
expected entry, the received answer and the upstream log (README §3.10). At the end the
dialect's end-of-scenario rules apply: undefined answers and unfired MANDATORY entries
(Deckard), unchecked answers and unanswered upstream queries (testbound).
"""

from __future__ import annotations

import calendar
import random
import re
import time
from dataclasses import dataclass, field
from typing import NoReturn

import dnslib

from tests.replay.compare import answer_mismatches
from tests.replay.messages import MessageView, build_record, entry_view, view
from tests.replay.mock_upstream import MockUpstream, Timeline
from tests.replay.rpl import Scenario, Step, StepKind
from tests.replay.rplconfig import DEFAULT_START_TIME, IGNORE_SIGNATURE_DATES, Dialect
from tests.replay.seam import FakeClock, ReplayConfig, ResolverFactory, ResolverUnderTest

__all__ = ["RunOptions", "RunReport", "ScenarioFailure", "run_scenario"]


class ScenarioFailure(AssertionError):
    """The resolver did not reproduce the scenario's verdict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to run one scenario (README §3.6.5, §3.8, §3.10)."""

    qmin: bool
    lenient_timeouts: bool = False  # MANIFEST `needs: lenient-timeouts`
    ignore_ede: bool = False  # MANIFEST `needs: ignore-ede`


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A client answer, with the query that produced it."""

    step: Step
    query: MessageView | None
    reply: MessageView
    tcp: bool


@dataclass(slots=True, kw_only=True)
class RunReport:
    """What a finished run observed (for harness tests and diagnostics)."""

    config: ReplayConfig
    mock: MockUpstream
    answers: list[Answer] = field(default_factory=list)
    checked: int = 0


_RRSIG_DATES = re.compile(r"\bRRSIG\s+\S+\s+\d+\s+\d+\s+\d+\s+(\d{14})\s+(\d{14})")


def _start_time(scenario: Scenario) -> float:
    """The scenario's clock. Where it asks for signature dates to be ignored, a time inside
    the validity window of every RRSIG it holds has the same effect on the verdicts."""
    start = scenario.config.start_time
    if start != IGNORE_SIGNATURE_DATES:
        return start or DEFAULT_START_TIME
    windows = [(_epoch(inception), _epoch(expiration))
               for expiration, inception in _RRSIG_DATES.findall(scenario.path.read_text())]
    if not windows:
        return DEFAULT_START_TIME
    latest_inception = max(inception for inception, _ in windows)
    if latest_inception >= min(expiration for _, expiration in windows):
        raise ValueError(f"{scenario.path.name}: no time lies inside every RRSIG's validity")
    return latest_inception + 1


def _epoch(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%S")))


class _Run:
    def __init__(self, scenario: Scenario, factory: ResolverFactory, options: RunOptions) -> None:
        self.scenario = scenario
        self.dialect = scenario.dialect
        self.options = options
        self.timeline = Timeline(scenario.steps)
        self.mock = MockUpstream(scenario, self.timeline,
                                 lenient_timeouts=options.lenient_timeouts)
        self.clock = FakeClock(_start_time(scenario))
        self.config = scenario.config.for_qmin(options.qmin)
        self.rng = random.Random(scenario.path.name)  # reproducible Deckard query IDs
        self.report = RunReport(config=self.config, mock=self.mock)
        self.unchecked: list[Answer] = []  # testbound: answers not yet matched
        self.last: Answer | None = None  # Deckard: the answer to the latest QUERY
        try:
            self.resolver: ResolverUnderTest = factory(self.config, self.mock, self.clock)
        except Exception as exc:  # e.g. a configuration the resolver does not support
            self.fail(None, f"the resolver factory raised {exc!r}")

    # -- failure reporting --------------------------------------------------------------------

    def fail(self, step: Step | None, message: str, *, answer: Answer | None = None) -> NoReturn:
        parts = [f"{self.scenario.suite}/{self.scenario.path.name}"
                 f" (qmin {'on' if self.options.qmin else 'off'}): {message}"]
        if step is not None:
            parts.append(f"--- step (line {step.lineno}): {step.text or step.kind.value}")
            if step.entry is not None:
                parts.append(f"--- expected entry:\n{step.entry.source}")
        if answer is not None:
            parts.append(f"--- received answer (step {answer.step.id}):\n{answer.reply.text()}")
        parts.append(f"--- upstream log:\n{self.mock.log_text()}")
        raise ScenarioFailure("\n".join(parts))

    # -- steps --------------------------------------------------------------------------------

    def run(self) -> RunReport:
        if self.dialect is Dialect.DECKARD:
            for index, step in enumerate(self.scenario.steps):
                self.timeline.cursor = index
                self.execute(step)
        else:
            while (current := self.timeline.current) is not None:
                self.execute(current)
        self.finish()
        return self.report

    def advance(self, step: Step) -> None:
        """testbound: move the cursor past `step` (Deckard sets the cursor per step)."""
        if self.dialect is Dialect.TESTBOUND and self.timeline.current is step:
            self.timeline.cursor += 1

    def execute(self, step: Step) -> None:
        kind = step.kind
        if kind is StepKind.QUERY:
            self.query(step)
        elif kind is StepKind.CHECK_ANSWER:
            self.check_answer(step)
            self.advance(step)
        elif kind is StepKind.TIME_PASSES and step.elapse is not None:
            self.clock.advance(step.elapse)
            self.advance(step)
            self.background(step)
        elif kind is StepKind.TRAFFIC:
            # testbound lets the queued traffic flow while the cursor is on this step.
            self.background(step)
            self.advance(step)
        elif kind is StepKind.NOTHING:
            self.advance(step)
        elif self.dialect is Dialect.DECKARD and kind in (StepKind.REPLY,
                                                          StepKind.CHECK_OUT_QUERY):
            pass  # one-shot mocks / ignored by Deckard (README §3.7)
        elif kind is StepKind.CHECK_OUT_QUERY:
            self.fail(step, "the resolver did not send the expected upstream query")
        elif kind is StepKind.REPLY:
            self.fail(step, "REPLY step reached with no pending upstream query")
        elif kind in (StepKind.TIMEOUT, StepKind.ERROR):
            if not self.options.lenient_timeouts:
                self.fail(step, f"{kind.value} step reached with no pending upstream query")
            self.advance(step)
        else:
            self.fail(step, f"step type {kind.value} is implementation-specific; "
                      "the harness cannot replay it")

    def background(self, step: Step) -> None:
        try:
            self.resolver.run_background()
        except Exception as exc:
            self.fail(step, f"run_background() raised {exc!r}")

    def client_query(self, step: Step) -> tuple[bytes, MessageView | None, bool]:
        """Wire form of a QUERY step's message per dialect (README §3.4, §3.7)."""
        entry = step.entry
        assert entry is not None
        tcp = "TCP" in entry.match
        if entry.raw is not None:  # Deckard RAW: bytes as they are, no answer expected
            return entry.raw, None, tcp
        if entry.hex_answer is not None:  # testbound: hex bytes as the query
            return entry.hex_answer, view(entry.hex_answer), tcp
        record = build_record(entry, self.dialect)
        if self.dialect is Dialect.DECKARD:
            record.header.id = self.rng.randrange(1, 0x10000)
        wire = bytes(record.pack())
        return wire, view(wire), tcp

    def query(self, step: Step) -> None:
        self.background(step)  # finish refreshes triggered earlier, with the ranges of now
        wire, query, tcp = self.client_query(step)
        self.advance(step)  # testbound: upstream queries now see the next step's id
        client_ip = step.address or "127.0.0.1"
        try:
            reply = self.resolver.handle(wire, tcp=tcp, client_ip=client_ip)
        except Exception as exc:
            self.fail(step, f"resolver.handle() raised {exc!r}")
        if query is None:
            return  # Deckard RAW garbage: no answer expected, none checked
        self.last = None
        if reply is None:
            return
        answer = Answer(step=step, query=query, reply=view(bytes(reply)), tcp=tcp)
        self.report.answers.append(answer)
        self.unchecked.append(answer)
        self.last = answer

    def check_answer(self, step: Step) -> None:
        entry = step.entry
        assert entry is not None
        expected = entry_view(entry, self.dialect)
        candidates = self.unchecked
        if self.dialect is Dialect.DECKARD:  # Deckard compares the last answer only
            candidates = [self.last] if self.last is not None else []
        if not candidates:
            self.fail(step, "no answer to check: the resolver did not reply")
        first_problems: list[str] = []
        for answer in candidates:
            problems = answer_mismatches(
                entry.match, expected, answer.reply, answer.query, dialect=self.dialect,
                tcp=answer.tcp, full_sections=self.scenario.config.full_sections,
                ignore_ede=self.options.ignore_ede)
            if not problems:
                if answer in self.unchecked:
                    self.unchecked.remove(answer)
                self.report.checked += 1
                return
            first_problems = first_problems or problems
        self.fail(step, "answer does not match:\n  " + "\n  ".join(first_problems),
                  answer=candidates[0])

    # -- end of scenario ----------------------------------------------------------------------

    def finish(self) -> None:
        problems = list(self.mock.problems)
        if self.dialect is Dialect.DECKARD:
            problems += [f"MANDATORY entry at line {e.lineno} was never used"
                         for e in self.mock.unfired_mandatory()]
        else:
            problems += [f"answer to STEP {a.step.id} QUERY was never checked: "
                         f"{dnslib.RCODE.get(a.reply.rcode)} {a.reply.qname}"
                         for a in self.unchecked]
        if problems:
            title = ("scenario does not define all necessary answers"
                     if self.dialect is Dialect.DECKARD else "scenario ended with problems")
            self.fail(None, title + ":\n  " + "\n  ".join(problems))


def run_scenario(scenario: Scenario, factory: ResolverFactory, options: RunOptions) -> RunReport:
    """Replay `scenario` against a fresh resolver from `factory`; raise ScenarioFailure."""
    return _Run(scenario, factory, options).run()
