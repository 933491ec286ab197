"""The configuration file with real processes: `resolver serve --config` with command-line
options over it, and `resolver check-config` on the shipped example."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import RESOLVER, RunningLab
from tests.integration.test_system_support import answers, dig, start, status

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resolver.toml"


def test_system_config_file_serves_and_flags_override(lab: RunningLab, tmp_path: Path) -> None:
    """Settings come from the file; --listen (given by `start`) and --log-queries win over it."""
    config = tmp_path / "resolver.toml"
    config.write_text(f"""
        interface = ["127.0.0.1:1"]        # overridden by --listen
        root-hints = "{lab.hints}"
        upstream-port = {lab.port}
        local-data = ["printer.lan. A 192.168.1.20"]
        access-control = ["127.0.0.0/8 refuse", "127.0.0.1/32 allow"]
        log-queries = false
    """)
    server = start(lab, tmp_path, "--config", str(config), "--log-queries", with_lab=False)
    try:
        assert answers(dig(server, "printer.lan")) == ["192.168.1.20"]
        assert answers(dig(server, "www.networkutopia.com")) == ["212.212.212.2"]
        assert status(dig(server, "www.networkutopia.com", source="127.0.0.9")) == "REFUSED"
        server.wait_for_log(r"query 127\.0\.0\.1:\d+ udp printer\.lan\. A NOERROR")
        assert f"listening on 127.0.0.1:{server.port}" in server.text()
    finally:
        assert server.stop() == 0


def test_system_config_bad_file_stops_serve_with_one_line_per_error(tmp_path: Path) -> None:
    """`resolver serve --config` refuses a bad file before binding anything: exit 1."""
    config = tmp_path / "resolver.toml"
    config.write_text('interface = ["127.0.0.1:99999"]\nip-ratelimit = -1\n')
    result = subprocess.run([*RESOLVER, "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 2, result.stderr
    assert "'interface'" in errors[0] and "'ip-ratelimit'" in errors[1]


def test_system_config_check_config_accepts_the_shipped_example(lab: RunningLab,
                                                               tmp_path: Path) -> None:
    """examples/resolver.toml passes check-config once its root hints exist."""
    (tmp_path / "root.hints").write_text(lab.hints.read_text())
    copy = tmp_path / "resolver.toml"
    copy.write_text(EXAMPLE.read_text())
    result = subprocess.run([*RESOLVER, "check-config", str(copy)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "ok"
    assert re.search(r"listen:\s+127\.0\.0\.1:53, \[::1\]:53", result.stdout)
    assert "access control:  loopback allowed, others refused" in result.stdout
