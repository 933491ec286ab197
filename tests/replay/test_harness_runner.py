"""The step runner end to end, with stand-in resolvers (README §3.7, §3.10)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from tests.replay.cases import default_scenario_root
from tests.replay.harness_support import make_scenario
from tests.replay.messages import view
from tests.replay.rpl import parse_scenario_file
from tests.replay.rplconfig import DEFAULT_START_TIME
from tests.replay.runner import RunOptions, ScenarioFailure, run_scenario
from tests.replay.seam import FakeClock, ReplayConfig, Transport
from tests.replay.toy_resolvers import Relay, make_mini_iterator

OFF = RunOptions(qmin=False)


class RecordingRelay(Relay):
    """A Relay that remembers what the harness handed it."""

    instances: ClassVar[list[RecordingRelay]] = []

    def __init__(self, config: ReplayConfig, transport: Transport, clock: FakeClock) -> None:
        super().__init__(config, transport, clock)
        self.config, self.clock = config, clock
        self.calls: list[tuple[bytes, bool, str]] = []
        self.background_times: list[float] = []
        RecordingRelay.instances.append(self)

    def handle(self, wire: bytes, *, tcp: bool = False,
               client_ip: str = "127.0.0.1") -> bytes | None:
        self.calls.append((wire, tcp, client_ip))
        return super().handle(wire, tcp=tcp, client_ip=client_ip)

    def run_background(self) -> None:
        self.background_times.append(self.clock.now())


def relay(config: ReplayConfig, transport: Transport, clock: FakeClock) -> RecordingRelay:
    return RecordingRelay(config, transport, clock)


CONFIG = "stub-addr: 193.0.14.129"
UNBOUND_CONFIG = 'server:\nstub-zone:\n\tname: "."\n\tstub-addr: 193.0.14.129'
RANGE = """RANGE_BEGIN 0 1000
    ADDRESS 193.0.14.129
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id
REPLY QR RD RA NOERROR
SECTION QUESTION
www.example.com. IN A
SECTION ANSWER
www.example.com. IN A 10.20.30.40
ENTRY_END
RANGE_END
"""


def query(step: int, name: str = "www.example.com.", extra: str = "", line: str = "") -> str:
    return (f"STEP {step} QUERY{line}\nENTRY_BEGIN\n{extra}REPLY RD\nSECTION QUESTION\n"
            f"{name} IN A\nENTRY_END\n")


def check(step: int, address: str = "10.20.30.40", match: str = "all",
          name: str = "www.example.com.", rcode: str = "NOERROR") -> str:
    answer = f"{name} IN A {address}" if address else ""
    return (f"STEP {step} CHECK_ANSWER\nENTRY_BEGIN\nMATCH {match}\nREPLY QR RD RA {rcode}\n"
            f"SECTION QUESTION\n{name} IN A\nSECTION ANSWER\n{answer}\nENTRY_END\n")


def test_runner_deckard_relay_scenario_passes(tmp_path: Path) -> None:
    """Queries, checks and TIME_PASSES run in order; background work is pumped (README §3.7)."""
    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10) + check(20)
                             + "STEP 30 TIME_PASSES ELAPSE 10\n" + query(40) + check(50), CONFIG)
    report = run_scenario(scenario, relay, OFF)
    resolver = RecordingRelay.instances[-1]
    assert report.checked == 2 and len(report.answers) == 2
    start = DEFAULT_START_TIME
    assert resolver.background_times == [start, start + 10, start + 10]
    sent = view(resolver.calls[0][0])
    assert sent.id != 0 and sent.edns is not None and sent.edns.payload == 4096  # README §3.4
    assert resolver.config.root_hints == [("k.root-servers.net.", "193.0.14.129")]


def test_runner_testbound_client_query_shape(tmp_path: Path) -> None:
    """testbound queries: ID 0, no OPT unless DO, MATCH TCP and QUERY ADDRESS honoured."""
    scenario = make_scenario(
        tmp_path, "unbound",
        RANGE + query(10, extra="MATCH TCP\n", line=" ADDRESS 10.1.2.3") + check(20),
        UNBOUND_CONFIG)
    run_scenario(scenario, relay, OFF)
    wire, tcp, client_ip = RecordingRelay.instances[-1].calls[0]
    sent = view(wire)
    assert (sent.id, sent.edns, tcp, client_ip) == (0, None, True, "10.1.2.3")


def test_runner_failure_shows_step_entry_answer_and_log(tmp_path: Path) -> None:
    """A failed check names the step, the expected entry, the answer and the upstream log."""
    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10) + check(20, "10.20.30.99"),
                             CONFIG)
    with pytest.raises(ScenarioFailure) as failure:
        run_scenario(scenario, relay, OFF)
    text = str(failure.value)
    for expected in ("deckard/t.rpl (qmin off)", "STEP 20 CHECK_ANSWER", "--- expected entry",
                     "www.example.com. IN A 10.20.30.99", "--- received answer",
                     "10.20.30.40", "--- upstream log", "#1 step 10 -> 193.0.14.129 UDP"):
        assert expected in text


def test_runner_testbound_checks_any_unchecked_answer(tmp_path: Path) -> None:
    """testbound CHECK_ANSWER consumes the first not-yet-checked answer that matches."""
    other = RANGE.replace("www.example.com.", "other.example.com.").replace("30.40", "30.41")
    scenario = make_scenario(
        tmp_path, "unbound",
        RANGE + other + query(10) + query(20, "other.example.com.")
        + check(30, "10.20.30.41", name="other.example.com.") + check(40), UNBOUND_CONFIG)
    report = run_scenario(scenario, relay, OFF)
    assert report.checked == 2


def test_runner_testbound_unchecked_answer_fails(tmp_path: Path) -> None:
    """An answer no CHECK_ANSWER consumed fails the testbound scenario at its end."""
    scenario = make_scenario(tmp_path, "unbound", RANGE + query(10) + query(20) + check(30),
                             UNBOUND_CONFIG)
    with pytest.raises(ScenarioFailure, match="answer to STEP 20 QUERY was never checked"):
        run_scenario(scenario, relay, OFF)


def test_runner_deckard_undefined_answer_fails_at_end(tmp_path: Path) -> None:
    """Deckard answers an unscripted query with SERVFAIL and fails the scenario at its end."""
    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10, "nope.example.com.")
                             + check(20, "", match="rcode", name="nope.example.com.",
                                     rcode="SERVFAIL"), CONFIG)
    with pytest.raises(ScenarioFailure, match="does not define all necessary answers"):
        run_scenario(scenario, relay, OFF)


def test_runner_timeout_without_pending_query(tmp_path: Path) -> None:
    """A TIMEOUT step nothing consumed fails strict runs and is skipped in lenient mode."""
    scenario = make_scenario(tmp_path, "unbound", RANGE + query(10) + "STEP 15 TIMEOUT\n"
                             + check(20), UNBOUND_CONFIG)
    with pytest.raises(ScenarioFailure, match="TIMEOUT step reached with no pending"):
        run_scenario(scenario, relay, OFF)
    report = run_scenario(scenario, relay, RunOptions(qmin=False, lenient_timeouts=True))
    assert report.checked == 1


def test_runner_missing_upstream_query_fails(tmp_path: Path) -> None:
    """A CHECK_OUT_QUERY the resolver never satisfied fails the run."""
    out_query = ("STEP 15 CHECK_OUT_QUERY\nENTRY_BEGIN\nMATCH qname\nSECTION QUESTION\n"
                 "elsewhere. IN A\nENTRY_END\n")
    scenario = make_scenario(tmp_path, "unbound", RANGE + query(10) + out_query + check(20),
                             UNBOUND_CONFIG)
    with pytest.raises(ScenarioFailure, match="did not send the expected upstream query"):
        run_scenario(scenario, relay, OFF)


def test_runner_raw_query_expects_no_answer(tmp_path: Path) -> None:
    """Deckard RAW queries go to the resolver as bytes; no answer is stored or checked."""
    class Silent(RecordingRelay):
        def handle(self, wire: bytes, *, tcp: bool = False,
                   client_ip: str = "127.0.0.1") -> bytes | None:
            self.calls.append((wire, tcp, client_ip))
            return None

    scenario = make_scenario(tmp_path, "deckard", "STEP 1 QUERY\nENTRY_BEGIN\nRAW\n"
                             "b5c9ca3d5010\nENTRY_END\n", CONFIG)
    report = run_scenario(scenario, Silent, OFF)
    assert report.answers == [] and RecordingRelay.instances[-1].calls[0][0] == bytes.fromhex(
        "b5c9ca3d5010")


def test_runner_resolver_exception_is_a_failure(tmp_path: Path) -> None:
    """handle() must never raise: if it does, the scenario fails with the exception."""
    class Exploding(Relay):
        def handle(self, wire: bytes, *, tcp: bool = False,
                   client_ip: str = "127.0.0.1") -> bytes | None:
            raise RuntimeError("boom")

    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10) + check(20), CONFIG)
    with pytest.raises(ScenarioFailure, match=r"handle\(\) raised RuntimeError\('boom'\)"):
        run_scenario(scenario, Exploding, OFF)


def test_runner_clock_starts_at_val_override_date(tmp_path: Path) -> None:
    """The virtual clock starts at val-override-date when the file sets one (README §3.7)."""
    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10) + check(20),
                             CONFIG + '\nval-override-date: "20070916134226"')
    run_scenario(scenario, relay, OFF)
    assert RecordingRelay.instances[-1].background_times == [1189950146.0]


@pytest.mark.parametrize("case", ["deckard/iter_resolve", "unbound/iter_resolve",
                                  "deckard/iter_tcbit", "unbound/iter_cname_cache",
                                  "deckard/iter_lame_root"])
def test_runner_mini_iterator_passes_simple_peer_files(case: str) -> None:
    """A naive iterator reproduces the verdict of simple peer files in both dialects."""
    scenario = parse_scenario_file(default_scenario_root() / f"{case}.rpl")
    report = run_scenario(scenario, make_mini_iterator, OFF)
    assert report.checked >= 1 and report.mock.log


def test_runner_mini_iterator_fails_where_priming_is_required() -> None:
    """testbound enforces CHECK_OUT_QUERY: no root priming query -> the scenario fails."""
    scenario = parse_scenario_file(default_scenario_root() / "unbound/iter_lame_noaa.rpl")
    with pytest.raises(ScenarioFailure, match="STEP 20 CHECK_OUT_QUERY"):
        run_scenario(scenario, make_mini_iterator, OFF)


def test_runner_deckard_checks_only_the_latest_answer(tmp_path: Path) -> None:
    """Deckard compares the answer to the latest QUERY; a query without reply has none."""
    class SecondSilent(RecordingRelay):
        def handle(self, wire: bytes, *, tcp: bool = False,
                   client_ip: str = "127.0.0.1") -> bytes | None:
            reply = super().handle(wire, tcp=tcp, client_ip=client_ip)
            return reply if len(self.calls) == 1 else None

    scenario = make_scenario(tmp_path, "deckard", RANGE + query(10) + check(20) + query(30)
                             + check(40), CONFIG)
    with pytest.raises(ScenarioFailure, match="STEP 40 CHECK_ANSWER") as failure:
        run_scenario(scenario, SecondSilent, OFF)
    assert "no answer to check" in str(failure.value)
