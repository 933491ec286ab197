"""Scenario files (.rpl, Deckard and testbound dialects) -> immutable `Scenario` values.

Peer-scenarios README §3.2 (layout, comments, steps), §3.4 (ENTRY grammar) and §3.3 (CONFIG,
delegated to `rplconfig`). The dialect comes from the folder name: `deckard*` -> Deckard,
`unbound*` -> testbound (README §3.9). Parsing is strict: anything the grammar does not know
raises `RplSyntaxError` naming file and line, so a scenario never runs half-understood.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import dnslib

from tests.replay.rplconfig import Dialect, ScenarioConfig, dialect_for, parse_config
from tests.replay.rrtext import RRTextError, parse_question, parse_rr

__all__ = [
    "Entry", "Range", "RplSyntaxError", "Scenario", "Section", "Step", "StepKind",
    "dialect_for", "parse_scenario", "parse_scenario_file",
]


class RplSyntaxError(ValueError):
    """The file does not follow the scenario grammar (or uses an unsupported part of it)."""


class StepKind(Enum):
    """STEP types (README §3.7); the last group is parsed but cannot be replayed."""

    QUERY = "QUERY"
    CHECK_ANSWER = "CHECK_ANSWER"
    CHECK_OUT_QUERY = "CHECK_OUT_QUERY"
    REPLY = "REPLY"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    TIME_PASSES = "TIME_PASSES"
    TRAFFIC = "TRAFFIC"
    NOTHING = "NOTHING"
    ASSIGN = "ASSIGN"
    CHECK_AUTOTRUST = "CHECK_AUTOTRUST"
    CHECK_TEMPFILE = "CHECK_TEMPFILE"
    INFRA_RTT = "INFRA_RTT"
    FLUSH_MESSAGE = "FLUSH_MESSAGE"
    EXPIRE_MESSAGE = "EXPIRE_MESSAGE"


_ENTRY_STEPS = {StepKind.QUERY, StepKind.CHECK_ANSWER, StepKind.CHECK_OUT_QUERY, StepKind.REPLY}


class Section(Enum):
    QUESTION = "QUESTION"
    ANSWER = "ANSWER"
    AUTHORITY = "AUTHORITY"
    ADDITIONAL = "ADDITIONAL"


OPCODES = {"QUERY": 0, "IQUERY": 1, "STATUS": 2, "NOTIFY": 4, "UPDATE": 5}
RCODES = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "NOTIMPL": 4,
    "REFUSED": 5, "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
    "BADVERS": 16, "BADCOOKIE": 23,
}
HEADER_FLAGS = ("QR", "AA", "TC", "RD", "RA", "AD", "CD")
_KEYWORD = re.compile(r"^[A-Z][A-Z_]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One ENTRY_BEGIN..ENTRY_END block: match rules, adjustments and a message template."""

    lineno: int
    source: str  # the block as written, for failure messages
    match: frozenset[str]
    adjust: frozenset[str]
    opcode: int = 0
    rcode: int = 0  # values above 15 need the OPT extended-rcode bits
    flags: frozenset[str] = frozenset()
    do: bool = False
    mandatory: bool = False
    question: tuple[dnslib.DNSQuestion, ...] = ()
    answer: tuple[dnslib.RR, ...] = ()
    authority: tuple[dnslib.RR, ...] = ()
    additional: tuple[dnslib.RR, ...] = ()
    raw: bytes | None = None  # Deckard RAW
    hex_answer: bytes | None = None  # testbound HEX_ANSWER_BEGIN..END
    edns_data: bytes | None = None  # testbound HEX_EDNSDATA_BEGIN..END (OPT rdata)


@dataclass(frozen=True, slots=True, kw_only=True)
class Range:
    """RANGE_BEGIN a b: entries that answer upstream queries while a <= step id <= b."""

    lineno: int
    start: int
    end: int
    addresses: tuple[str, ...]
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """STEP n KIND [ADDRESS ip] [ELAPSE s] [+ entry]."""

    lineno: int
    id: int
    kind: StepKind
    entry: Entry | None = None
    address: str | None = None
    elapse: float | None = None
    text: str = ""  # the STEP line, for messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A parsed scenario file."""

    path: Path
    dialect: Dialect
    title: str
    config: ScenarioConfig
    ranges: tuple[Range, ...]
    steps: tuple[Step, ...]

    @property
    def suite(self) -> str:
        """The folder name (`deckard`, `unbound`, ...): one line in the run summary."""
        return self.path.parent.name


def _strip_comment(line: str) -> str:
    """Everything before a `;` outside double quotes (README §3.2)."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        elif char == ";" and not quoted:
            return line[:i]
    return line


def _keyword_args(text: str) -> list[str]:
    """Tokens of a MATCH/ADJUST/REPLY line; `#` also ends these lines in testbound."""
    words = text.split()[1:]
    for i, word in enumerate(words):
        if word.startswith("#"):
            return words[:i]
    return words


class _Parser:
    """Single pass over the lines after CONFIG_END, keeping $ORIGIN/$TTL state."""

    def __init__(self, path: Path, lines: list[str], first_lineno: int) -> None:
        self.path = path
        self.lines = lines
        self.pos = 0
        self.first_lineno = first_lineno
        self.origin = "."
        self.default_ttl = 3600

    def error(self, message: str, lineno: int | None = None) -> RplSyntaxError:
        at = lineno if lineno is not None else self.lineno
        return RplSyntaxError(f"{self.path.name}:{at}: {message}")

    @property
    def lineno(self) -> int:
        return self.first_lineno + self.pos

    def lines_left(self) -> Iterator[tuple[int, str, str]]:
        """(lineno, raw line, comment-free stripped text) for each remaining line."""
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            self.pos += 1
            yield self.first_lineno + self.pos - 1, raw, _strip_comment(raw).strip()

    def directive(self, text: str) -> bool:
        """Apply $ORIGIN / $TTL; True when the line was one."""
        words = text.split()
        if words[0] == "$ORIGIN" and len(words) > 1:
            self.origin = words[1] if words[1].endswith(".") else f"{words[1]}."
            return True
        if words[0] == "$TTL" and len(words) > 1:
            self.default_ttl = int(words[1])
            return True
        return False

    def scenario_body(self) -> tuple[str, list[Range], list[Step]]:
        title: str | None = None
        ranges: list[Range] = []
        steps: list[Step] = []
        for lineno, raw, text in self.lines_left():
            if not text or self.directive(text):
                continue
            word = text.split()[0]
            if word == "SCENARIO_BEGIN":
                title = raw.strip()[len("SCENARIO_BEGIN"):].strip()
            elif title is None:
                raise self.error(f"expected SCENARIO_BEGIN, got {text!r}", lineno)
            elif word == "RANGE_BEGIN":
                ranges.append(self.range_block(lineno, text))
            elif word == "STEP":
                step = self.step(lineno, text)
                if steps and step.id <= steps[-1].id:
                    raise self.error(f"STEP {step.id} does not increase", lineno)
                steps.append(step)
            elif word == "SCENARIO_END":
                return title, ranges, steps
            else:
                raise self.error(f"unexpected {text!r}", lineno)
        raise self.error("missing SCENARIO_END")

    def range_block(self, lineno: int, text: str) -> Range:
        words = text.split()
        if len(words) < 3:
            raise self.error("RANGE_BEGIN needs two step ids", lineno)
        addresses = words[3:4]  # Deckard: address on the RANGE_BEGIN line
        entries: list[Entry] = []
        for at, _raw, line in self.lines_left():
            if not line or self.directive(line):
                continue
            word = line.split()[0]
            if word == "ADDRESS":
                addresses.extend(line.split()[1:2])
            elif word == "ENTRY_BEGIN":
                entries.append(self.entry(at))
            elif word == "RANGE_END":
                try:
                    start, end = int(words[1]), int(words[2])
                except ValueError:
                    raise self.error(f"bad RANGE_BEGIN line {text!r}", lineno) from None
                return Range(lineno=lineno, start=start, end=end,
                             addresses=tuple(addresses), entries=tuple(entries))
            else:
                raise self.error(f"unexpected {line!r} in RANGE", at)
        raise self.error("missing RANGE_END", lineno)

    def step(self, lineno: int, text: str) -> Step:
        words = text.split()
        try:
            step_id, kind = int(words[1]), StepKind(words[2])
        except (IndexError, ValueError):
            raise self.error(f"bad STEP line {text!r}", lineno) from None
        address: str | None = None
        elapse: float | None = None
        rest = words[3:]
        if rest[:1] == ["ADDRESS"] and len(rest) > 1:
            address, rest = rest[1], rest[2:]
        if rest[:1] == ["ELAPSE"] and len(rest) > 1:
            elapse, rest = float(rest[1]), rest[2:]
        entry = None
        if kind in _ENTRY_STEPS:
            for at, _raw, line in self.lines_left():
                if not line or self.directive(line):
                    continue
                if line.split()[0] != "ENTRY_BEGIN":
                    raise self.error(f"STEP {step_id} {kind.value} needs an ENTRY", at)
                entry = self.entry(at)
                break
            else:
                raise self.error(f"STEP {step_id} {kind.value} needs an ENTRY", lineno)
        return Step(lineno=lineno, id=step_id, kind=kind, entry=entry, address=address,
                    elapse=elapse, text=text)

    def entry(self, lineno: int) -> Entry:
        builder = _EntryBuilder(self, lineno)
        for at, raw, line in self.lines_left():
            builder.source.append(raw.rstrip())
            if builder.feed(at, line):
                return builder.build()
        raise self.error("missing ENTRY_END", lineno)


class _EntryBuilder:
    """Accumulates one entry's lines (README §3.4)."""

    def __init__(self, parser: _Parser, lineno: int) -> None:
        self.parser = parser
        self.lineno = lineno
        self.source = [parser.lines[lineno - parser.first_lineno].rstrip()]
        self.match: set[str] = set()
        self.adjust: set[str] = set()
        self.flags: set[str] = set()
        self.opcode = 0
        self.rcode = 0
        self.do = False
        self.mandatory = False
        self.section = Section.QUESTION
        self.questions: list[dnslib.DNSQuestion] = []
        self.records: dict[Section, list[dnslib.RR]] = {s: [] for s in Section}
        self.blob: str | None = None  # "RAW" | "HEX_ANSWER" | "HEX_EDNSDATA" while collecting
        self.blobs: dict[str, list[str]] = {}

    def feed(self, lineno: int, line: str) -> bool:
        """Consume one line; True at ENTRY_END."""
        if not line:
            return False
        word = line.split()[0]
        if self.blob is not None:
            if word in (f"{self.blob}_END", "HEX_ANSWER_END", "HEX_EDNSDATA_END"):
                self.blob = None
                return False
            if self.blob != "RAW" or not _KEYWORD.match(word):
                self.blobs[self.blob].append(line)
                return False
            self.blob = None  # a keyword ends a RAW hex block
        if word == "ENTRY_END":
            return True
        if self.parser.directive(line):
            return False
        if word == "MATCH":
            self.match.update(_keyword_args(line))
        elif word == "ADJUST":
            self.adjust.update(_keyword_args(line))
        elif word == "REPLY":
            self.reply_line(lineno, _keyword_args(line))
        elif word == "MANDATORY":
            self.mandatory = True
        elif word == "SECTION":
            try:
                self.section = Section(line.split()[1])
            except (IndexError, ValueError):
                raise self.parser.error(f"bad section {line!r}", lineno) from None
        elif word in ("RAW", "HEX_ANSWER_BEGIN", "HEX_EDNSDATA_BEGIN"):
            self.blob = word.removesuffix("_BEGIN")
            self.blobs[self.blob] = line.split()[1:]
        elif word == "EXTRA_PACKET":
            raise self.parser.error("EXTRA_PACKET (multi-packet replies) is not supported", lineno)
        else:
            self.record_line(lineno, line)
        return False

    def reply_line(self, lineno: int, words: list[str]) -> None:
        for word in words:
            if word in OPCODES:
                self.opcode = OPCODES[word]
            elif word in RCODES:
                self.rcode = RCODES[word]
            elif word in HEADER_FLAGS:
                self.flags.add(word)
            elif word == "DO":
                self.do = True
            elif word != "FLAGS":
                raise self.parser.error(f"unknown REPLY token {word!r}", lineno)

    def record_line(self, lineno: int, line: str) -> None:
        try:
            if self.section is Section.QUESTION:
                self.questions.append(parse_question(line, origin=self.parser.origin))
            else:
                self.records[self.section].append(
                    parse_rr(line, origin=self.parser.origin,
                             default_ttl=self.parser.default_ttl))
        except RRTextError as exc:
            raise self.parser.error(str(exc), lineno) from None

    def hex_blob(self, name: str) -> bytes | None:
        if name not in self.blobs:
            return None
        digits = "".join("".join(self.blobs[name]).split())
        if len(digits) % 2:
            digits += "0"  # testbound pads an odd digit count
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise self.parser.error(f"bad hex in {name} block", self.lineno) from None

    def build(self) -> Entry:
        return Entry(
            lineno=self.lineno, source="\n".join(self.source), match=frozenset(self.match),
            adjust=frozenset(self.adjust), opcode=self.opcode, rcode=self.rcode,
            flags=frozenset(self.flags), do=self.do, mandatory=self.mandatory,
            question=tuple(self.questions), answer=tuple(self.records[Section.ANSWER]),
            authority=tuple(self.records[Section.AUTHORITY]),
            additional=tuple(self.records[Section.ADDITIONAL]), raw=self.hex_blob("RAW"),
            hex_answer=self.hex_blob("HEX_ANSWER"), edns_data=self.hex_blob("HEX_EDNSDATA"),
        )


def parse_scenario(text: str, path: Path, dialect: Dialect | None = None) -> Scenario:
    """Parse scenario text; `path` names the file (its folder gives the default dialect)."""
    dialect = dialect or dialect_for(path.parent)
    lines = text.splitlines()
    index = next((i for i, line in enumerate(lines) if line.strip().startswith("CONFIG_END")),
                 None)
    if index is None:
        raise RplSyntaxError(f"{path.name}: no CONFIG_END line")
    try:
        config = parse_config(lines[:index], dialect)
    except ValueError as exc:
        raise RplSyntaxError(f"{path.name}: CONFIG: {exc}") from None
    parser = _Parser(path, lines[index + 1 :], first_lineno=index + 2)
    title, ranges, steps = parser.scenario_body()
    return Scenario(path=path, dialect=dialect, title=title, config=config,
                    ranges=tuple(ranges), steps=tuple(steps))


def parse_scenario_file(path: Path) -> Scenario:
    """Read and parse one .rpl file (bytes that are not UTF-8 only occur in comments)."""
    return parse_scenario(path.read_text(encoding="utf-8", errors="replace"), path)
