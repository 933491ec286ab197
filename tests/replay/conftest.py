"""pytest wiring for the replay suite: options, one case per scenario run, per-suite summary.

Options (README §3.10): `--scenarios DIR` (repeatable; default: the four folders `deckard/`,
`unbound/`, `deckard-dnssec/` and `unbound-dnssec/` of the shared peer scenarios, and this
project's own scenarios in `tests/replay/scenarios/unbound-own/`) and
`--qmin-default {on,off}` (mode of testbound files that leave QNAME minimisation unset). At
the end of the session one line per suite is printed, e.g.
`replay deckard: 30 passed, 8 xfailed, 0 waived, 2 failed`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.replay.cases import (
    DEFAULT_SUITES,
    OWN_SCENARIOS,
    ReplayCase,
    default_scenario_root,
    discover_cases,
)
from tests.replay.runner import ScenarioFailure

_CASE_TEST = "test_peer_scenario["
#: suite -> node id -> final outcome of that case
_RESULTS: dict[str, dict[str, str]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replay", "peer scenario replay")
    group.addoption("--scenarios", action="append", default=[], metavar="DIR",
                    help="scenario folder to replay (repeatable; folder name picks the "
                         "dialect: deckard* or unbound*). Default: all four shared folders.")
    group.addoption("--qmin-default", choices=("on", "off"), default="off",
                    help="QNAME-minimisation mode for testbound files that leave it unset.")


def scenario_folders(config: pytest.Config) -> list[Path]:
    given = config.getoption("--scenarios", default=None) or []
    if given:
        return [Path(folder) for folder in given]
    root = default_scenario_root()
    return [root / suite for suite in DEFAULT_SUITES] + [OWN_SCENARIOS]


def _marks(case: ReplayCase) -> list[pytest.MarkDecorator]:
    if case.waiver is not None:
        return [pytest.mark.skip(reason=f"waived: {case.waiver} (see tests/replay/WAIVERS.md)")]
    if case.xfail is not None:
        return [pytest.mark.xfail(strict=case.xfail_strict, raises=ScenarioFailure,
                                  reason=case.xfail)]
    return []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "replay_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    cases = discover_cases(scenario_folders(config),
                           qmin_default=config.getoption("--qmin-default", "off") == "on")
    metafunc.parametrize(
        "replay_case", [pytest.param(c, id=c.case_id, marks=_marks(c)) for c in cases])


def _outcome(report: pytest.TestReport) -> str | None:
    if report.failed:
        return "failed"  # includes strict XPASS
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return "xfailed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        return "waived" if "waived:" in str(reason) else "skipped"
    if report.when == "call":
        return "xpassed" if hasattr(report, "wasxfail") else "passed"
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _CASE_TEST not in report.nodeid or (outcome := _outcome(report)) is None:
        return
    suite = report.nodeid.split(_CASE_TEST, 1)[1].split("/", 1)[0]
    results = _RESULTS.setdefault(suite, {})
    if results.get(report.nodeid) != "failed":  # a failing phase decides the case
        results[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    always = ("passed", "xfailed", "waived", "failed")
    for suite, results in _RESULTS.items():
        counts = Counter(results.values())
        others = sorted(name for name in counts if name not in always)
        text = ", ".join(f"{counts[name]} {name}" for name in (*always, *others))
        terminalreporter.write_line(f"replay {suite}: {text}")
