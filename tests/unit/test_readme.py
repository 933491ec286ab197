"""The README against the code: what it tells a newcomer to type exists.

Configuration keys it names (in prose and in its TOML examples) are keys of the file, and
the options of its `resolver trace` table are options of the command.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from resolver.cli.commands import main
from resolver.daemon.config_file import OPTIONS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_config_keys_are_keys_of_the_config_file() -> None:
    named = set(re.findall(r"(?:config key|config keys|config|TOML) `([a-z0-9-]+)", README))
    named |= set(re.findall(r"`([a-z0-9-]+) = ", README))
    for block in re.findall(r"```toml\n(.*?)```", README, re.DOTALL):
        named |= set(re.findall(r"^([a-z0-9-]+)\s*=", block, re.MULTILINE))
    assert len(named) >= 15
    assert sorted(named - set(OPTIONS)) == []


def test_readme_trace_options_table_names_options_trace_has() -> None:
    section = README.split("<!-- section: trace -->", 1)[1].split("\n## ", 1)[0]
    table = section.split("| option | what it adds |", 1)[1].split("\n\n", 1)[0]
    first_cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    named = {option for cell in first_cells for option in re.findall(r"`(--[a-z-]+)", cell)}
    assert len(named) >= 12
    help_text = CliRunner().invoke(main, ["trace", "--help"]).stdout
    assert sorted(option for option in named if option not in help_text) == []
