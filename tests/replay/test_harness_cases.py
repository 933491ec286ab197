"""Case generation, marks, expectations and the run summary (README §3.10)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.replay.cases import (
    EXPECTATIONS_FILE,
    WAIVERS_FILE,
    Expectation,
    Expectations,
    default_scenario_root,
    discover_cases,
    load_expectations,
    load_manifest,
)
from tests.replay.seam import FakeClock

ROOT = default_scenario_root()
REPO = Path(__file__).resolve().parents[2]
BODY = "\nCONFIG_END\nSCENARIO_BEGIN t\nSTEP 1 NOTHING\nSCENARIO_END\n"


def write(folder: Path, name: str, config: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(config + BODY)
    return path


def test_cases_qmin_modes_per_dialect(tmp_path: Path) -> None:
    """Deckard unset -> both modes; testbound unset -> --qmin-default; pinned -> that mode."""
    write(tmp_path / "deckard", "unset.rpl")
    write(tmp_path / "deckard", "pinned.rpl", "query-minimization: on")
    write(tmp_path / "unbound", "unset.rpl", "server:")
    write(tmp_path / "unbound", "pinned.rpl", "server:\n\tqname-minimisation: no")
    folders = [tmp_path / "deckard", tmp_path / "unbound"]
    ids = [c.case_id for c in discover_cases(folders, expectations=Expectations())]
    assert ids == ["deckard/pinned-qminon", "deckard/unset-qminon", "deckard/unset-qminoff",
                   "unbound/pinned-qminoff", "unbound/unset-qminoff"]
    on = discover_cases([tmp_path / "unbound"], qmin_default=True, expectations=Expectations())
    assert [c.case_id for c in on] == ["unbound/pinned-qminoff", "unbound/unset-qminon"]


def test_cases_expectations_by_case_stem_and_category(tmp_path: Path) -> None:
    """Exact case ids win over `suite/stem` keys; MANIFEST categories mark the rest."""
    write(tmp_path / "deckard", "a.rpl")
    write(tmp_path / "deckard", "b.rpl")
    (tmp_path / "MANIFEST.csv").write_text(
        "dir,file,category,topic,needs,format,harness_flags,upstream_path,title\n"
        "deckard,b.rpl,dnssec,x,lenient-timeouts,deckard,,p,t\n")
    load_manifest.cache_clear()
    expectations = Expectations(
        cases={"deckard/a-qminon": Expectation(waiver="why"),
               "deckard/a": Expectation(xfail="forwarding", strict=False)},
        categories={"dnssec": "DNSSEC validation"})
    by_id = {c.case_id: c for c in discover_cases([tmp_path / "deckard"],
                                                  expectations=expectations)}
    assert by_id["deckard/a-qminon"].waiver == "why"
    assert (by_id["deckard/a-qminoff"].xfail, by_id["deckard/a-qminoff"].xfail_strict) == (
        "forwarding", False)
    b = by_id["deckard/b-qminoff"]
    assert b.xfail == "DNSSEC validation (needs: lenient-timeouts)" and b.lenient_timeouts
    assert not b.xfail_strict


def test_cases_without_manifest_row_use_file_flags(tmp_path: Path) -> None:
    """A folder outside the shared set runs strict, unmarked, with its own CONFIG flags."""
    write(tmp_path / "unbound-extra", "x.rpl", "server:\n\tqname-minimisation: yes")
    (case,) = discover_cases([tmp_path / "unbound-extra"], expectations=Expectations())
    assert (case.case_id, case.qmin, case.xfail, case.lenient_timeouts) == (
        "unbound-extra/x-qminon", True, None, False)


def test_cases_default_folders_follow_manifest() -> None:
    """Shipped folders: optional features are xfailed, lenient/ignore-ede flags come along."""
    cases = {c.case_id: c for c in discover_cases([ROOT / "deckard", ROOT / "unbound"])}
    assert len([c for c in cases if c.startswith("deckard/")]) == 73  # 33 files run twice
    assert cases["unbound/fwd_error-qminoff"].lenient_timeouts
    assert cases["unbound/serve_expired-qminoff"].ignore_ede
    assert cases["unbound/serve_expired-qminoff"].xfail is not None
    assert cases["deckard/iter_resolve-qminoff"].xfail is None
    assert cases["deckard/iter_resolve-qminon"].xfail is None  # QNAME minimisation exists


def test_expectations_file_names_existing_files() -> None:
    """Every expectations.toml key names a shipped scenario file (keeps the list honest)."""
    expectations = load_expectations()
    assert expectations.cases
    for key in expectations.cases:
        stem = re.sub(r"-qmin(on|off)$", "", key)
        assert (ROOT / f"{stem}.rpl").is_file(), key


def test_expectations_waivers_are_written_down() -> None:
    """A waiver needs a `## <anchor>` section in WAIVERS.md."""
    headings = {line[3:].strip() for line in WAIVERS_FILE.read_text().splitlines()
                if line.startswith("## ")}
    for key, expectation in load_expectations().cases.items():
        if expectation.waiver is not None:
            assert expectation.waiver in headings, key


def test_expectations_reject_ambiguous_entries(tmp_path: Path) -> None:
    """An entry must carry exactly one of xfail / waiver."""
    bad = tmp_path / "e.toml"
    bad.write_text('[case."deckard/x"]\nxfail = "a"\nwaiver = "b"\n')
    with pytest.raises(ValueError, match="exactly one"):
        load_expectations(bad)
    assert EXPECTATIONS_FILE.is_file()


def test_fake_clock_moves_only_forward() -> None:
    """The virtual clock starts where told and moves only when advanced."""
    clock = FakeClock(100.0)
    clock.advance(2.5)
    assert clock.now() == 102.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_summary_line_per_suite(tmp_path: Path) -> None:
    """The session ends with `replay <suite>: N passed, N xfailed, N waived, N failed`."""
    write(tmp_path / "deckard", "t.rpl", "stub-addr: 192.0.2.1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/replay/test_peer_scenarios.py", "-q",
         "-p", "no:cacheprovider", "--scenarios", str(tmp_path / "deckard")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert re.search(r"^replay deckard: \d+ passed, \d+ xfailed, \d+ waived, \d+ failed",
                     result.stdout, re.MULTILINE), result.stdout[-2000:]
