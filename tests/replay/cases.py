"""Which scenario runs become pytest cases, and how each is marked (README §3.10).

A case is one scenario file in one QNAME-minimisation mode: a file that pins qmin runs in that
mode; a Deckard file that leaves it unset runs twice (on and off, as Deckard does); a testbound
file that leaves it unset runs once, in the `--qmin-default` mode. Case ids look like
`deckard/iter_resolve-qminoff`.

MANIFEST.csv (next to the scenario folders) supplies each file's category and `needs`;
expectations.toml turns known gaps into strict xfails (`xfail = "<feature needed>"`) or skips
with a written waiver (`waiver = "<WAIVERS.md heading>"`). Keys are a case id or `suite/stem`
(all modes); `[category]` marks every file of a MANIFEST category with a non-strict xfail (many
DNSSEC files pass without a validator). Files without a MANIFEST row
run with the flags their own CONFIG section implies.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.replay.rplconfig import Dialect, config_only, dialect_for
from tests.replay.runner import RunOptions

__all__ = [
    "DEFAULT_SUITES", "EXPECTATIONS_FILE", "OWN_SCENARIOS", "Expectation", "Expectations",
    "ManifestRow",
    "ReplayCase", "default_scenario_root", "discover_cases", "load_expectations",
    "load_manifest",
]

DEFAULT_SUITES = ("deckard", "unbound", "deckard-dnssec", "unbound-dnssec")
HERE = Path(__file__).resolve().parent
#: Scenarios written for this project in the testbound format, from the RFCs and the
#: peers' documentation: replayed beside the shared ones.
OWN_SCENARIOS = HERE / "scenarios" / "unbound-own"
EXPECTATIONS_FILE = HERE / "expectations.toml"
WAIVERS_FILE = HERE / "WAIVERS.md"


def default_scenario_root() -> Path:
    """`../shared/peer-scenarios` next to the project root, else the shared work area."""
    beside_repo = Path(__file__).resolve().parents[2].parent / "shared" / "peer-scenarios"
    return beside_repo if beside_repo.is_dir() else Path("/work/shared/peer-scenarios")


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestRow:
    """One MANIFEST.csv line (README §2)."""

    suite: str
    file: str
    category: str
    needs: str
    harness_flags: str


@cache
def load_manifest(root: Path) -> dict[tuple[str, str], ManifestRow]:
    """MANIFEST.csv rows under `root`, keyed by (folder, file name); empty when absent."""
    path = root / "MANIFEST.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            (row["dir"], row["file"]): ManifestRow(
                suite=row["dir"], file=row["file"], category=row["category"],
                needs=row["needs"] or "", harness_flags=row["harness_flags"] or "")
            for row in csv.DictReader(handle)
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """A known gap: strict xfail naming the missing feature, or a waiver (skip)."""

    xfail: str | None = None
    waiver: str | None = None
    strict: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectations:
    cases: dict[str, Expectation] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)


def load_expectations(path: Path = EXPECTATIONS_FILE) -> Expectations:
    """Read expectations.toml, rejecting keys and combinations it does not define."""
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    unknown = set(data) - {"case", "category"}
    if unknown:
        raise ValueError(f"{path.name}: unknown tables {sorted(unknown)}")
    cases: dict[str, Expectation] = {}
    for key, spec in data.get("case", {}).items():
        if set(spec) - {"xfail", "waiver", "strict"} or ("xfail" in spec) == ("waiver" in spec):
            raise ValueError(f"{path.name}: case {key!r} needs exactly one of xfail/waiver "
                             "(plus optional strict)")
        cases[key] = Expectation(xfail=spec.get("xfail"), waiver=spec.get("waiver"),
                                 strict=bool(spec.get("strict", True)))
    return Expectations(cases=cases, categories=dict(data.get("category", {})))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayCase:
    """One pytest case: a scenario file in one qmin mode, with its marks."""

    case_id: str
    path: Path
    suite: str
    qmin: bool
    lenient_timeouts: bool = False
    ignore_ede: bool = False
    xfail: str | None = None
    xfail_strict: bool = True
    waiver: str | None = None

    def options(self) -> RunOptions:
        return RunOptions(qmin=self.qmin, lenient_timeouts=self.lenient_timeouts,
                          ignore_ede=self.ignore_ede)


def _modes(path: Path, dialect: Dialect, qmin_default: bool) -> list[bool]:
    try:
        pinned = config_only(path).pinned_qmin
    except ValueError:
        pinned = None  # the run itself reports the CONFIG error
    if pinned is not None:
        return [pinned]
    return [True, False] if dialect is Dialect.DECKARD else [qmin_default]


def _expectation(case_id: str, stem_key: str, row: ManifestRow | None,
                 expectations: Expectations) -> Expectation | None:
    found = expectations.cases.get(case_id) or expectations.cases.get(stem_key)
    if found is not None:
        return found
    if row is not None and row.category in expectations.categories:
        # A blanket mark cannot know which files pass without the feature: not strict.
        reason = expectations.categories[row.category]
        return Expectation(xfail=f"{reason} (needs: {row.needs})" if row.needs else reason,
                           strict=False)
    return None


def discover_cases(folders: Iterable[Path], *, qmin_default: bool = False,
                   expectations: Expectations | None = None) -> list[ReplayCase]:
    """All cases for the .rpl files in `folders`, in folder then file order."""
    expectations = expectations if expectations is not None else load_expectations()
    cases: list[ReplayCase] = []
    for folder in folders:
        folder = folder.resolve()
        dialect = dialect_for(folder)
        manifest = load_manifest(folder.parent)
        for path in sorted(folder.glob("*.rpl")):
            row = manifest.get((folder.name, path.name))
            needs = row.needs if row else ""
            for qmin in _modes(path, dialect, qmin_default):
                stem_key = f"{folder.name}/{path.stem}"
                case_id = f"{stem_key}-qmin{'on' if qmin else 'off'}"
                known = _expectation(case_id, stem_key, row, expectations)
                cases.append(ReplayCase(
                    case_id=case_id, path=path, suite=folder.name, qmin=qmin,
                    lenient_timeouts="lenient-timeouts" in needs, ignore_ede="ignore-ede" in needs,
                    xfail=known.xfail if known else None,
                    xfail_strict=known.strict if known else True,
                    waiver=known.waiver if known else None,
                ))
    return cases
