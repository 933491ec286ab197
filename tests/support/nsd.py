"""A real NSD for tests: authoritative for the zones it is given, on a loopback address.

`start_nsd` writes an nsd.conf, the zone files and a pid file into a test directory and
starts `nsd -d` under `timeout` (so it stops by itself even if the test run dies) on a
free port; `stop_nsd` stops it by pid. NSD answers as authorities in the wild do: AA set,
the zone's NS set in the authority section of every positive answer.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool
from tests.support.processes import stop_process
from tests.support.unbound import free_port

#: Longest an NSD started here may live (seconds), whatever happens to the test run.
LIFETIME_S = 600


@dataclass(frozen=True)
class RunningNsd:
    ip: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def spec(self) -> str:
        """The server in Unbound's notation, as --stub-zone and --forward take it."""
        return f"{self.ip}@{self.port}"


def start_nsd(directory: Path, zones: dict[str, str], *, ip: str = "127.0.0.1") -> RunningNsd:
    """NSD on `ip` and a free port serving `zones` (zone name -> zone file text)."""
    nsd = require_tool("nsd")
    timeout = require_tool("timeout")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(ip)
    lines = ["server:", f"  ip-address: {ip}", f"  port: {port}", "  username: \"\"",
             f"  zonesdir: \"{directory}\"", f"  pidfile: \"{directory}/nsd.pid\"",
             "  database: \"\"", f"  zonelistfile: \"{directory}/zone.list\"",
             f"  xfrdfile: \"{directory}/xfrd.state\"", f"  logfile: \"{directory}/nsd.log\"",
             "  server-count: 1", "  verbosity: 1", "remote-control:", "  control-enable: no"]
    for number, (zone, text) in enumerate(zones.items()):
        zone_file = directory / f"zone{number}.zone"
        zone_file.write_text(text)
        lines += ["zone:", f"  name: \"{zone}\"", f"  zonefile: \"{zone_file}\""]
    config = directory / "nsd.conf"
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([timeout, "-k", "5", str(LIFETIME_S), nsd, "-d", "-c",
                                str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    running = RunningNsd(ip=ip, port=port, process=process, directory=directory)
    _wait_until_it_answers(running)
    return running


def stop_nsd(running: RunningNsd) -> None:
    stop_process(running.process)


def _wait_until_it_answers(running: RunningNsd, timeout_s: float = 15.0) -> None:
    family = socket.AF_INET6 if ":" in running.ip else socket.AF_INET
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            log = running.directory / "nsd.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"nsd exited with {running.process.returncode}: {text[-500:]}")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((running.ip, running.port)) == 0:
                return
        time.sleep(0.05)
    stop_process(running.process)
    raise RuntimeError(f"nsd did not listen on {running.ip}:{running.port}")
