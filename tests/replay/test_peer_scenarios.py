"""Replays every peer scenario file against the real resolver (README §3, §5 acceptance bars).

Cases come from `conftest.pytest_generate_tests` (one per file and QNAME-minimisation mode);
marks come from MANIFEST.csv and expectations.toml. The resolver is built by
`tests.replay.production.make_resolver`, imported here so that a missing or broken production
module fails these cases instead of the collection of the harness's own tests.
"""

from __future__ import annotations

from tests.replay.cases import ReplayCase
from tests.replay.rpl import parse_scenario_file
from tests.replay.runner import run_scenario


def test_peer_scenario(replay_case: ReplayCase) -> None:
    """The resolver reproduces the peer harness's verdict on this scenario run."""
    from tests.replay.production import make_resolver

    scenario = parse_scenario_file(replay_case.path)
    run_scenario(scenario, make_resolver, replay_case.options())
