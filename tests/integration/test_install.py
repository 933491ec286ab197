"""The install path the README gives: `pipx install .` puts a working `resolver` on PATH,
where the systemd unit looks for it.

A real install from a copy of the source tree (pipx builds a wheel in its own venv and
pulls the dependencies from the package index, as on a user's machine), into a private
PIPX_HOME and PIPX_BIN_DIR: nothing outside the test's directory is touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(target: Path) -> Path:
    """The tracked source (no .venv, no build leftovers) in `target`."""
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".mypy_cache",
        ".ruff_cache", ".pytest_cache", "*.pyc"))
    return target


def test_pipx_install_gives_a_resolver_command_that_runs(tmp_path: Path) -> None:
    pipx = require_tool("pipx")
    source = _source_copy(tmp_path / "src")
    bin_dir = tmp_path / "bin"
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(bin_dir),
           "PIPX_MAN_DIR": str(tmp_path / "man")}
    done = subprocess.run([pipx, "install", str(source)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    command = bin_dir / "resolver"
    assert command.is_file()
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    pyproject = (ROOT / "pyproject.toml").read_text()
    expected = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert expected is not None
    assert version.returncode == 0 and expected.group(1) in version.stdout, version
    config = subprocess.run([str(command), "check-config", str(ROOT / "examples" /
                                                               "resolver.toml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_systemd_unit_runs_the_command_where_the_readme_installs_it() -> None:
    unit = (ROOT / "deploy" / "resolver.service").read_text()
    readme = (ROOT / "README.md").read_text()
    starts = re.findall(r"^ExecStart(?:Pre)?=(\S+)", unit, re.MULTILINE)
    assert starts and set(starts) == {"/usr/local/bin/resolver"}
    assert "PIPX_BIN_DIR=/usr/local/bin pipx install ." in readme
