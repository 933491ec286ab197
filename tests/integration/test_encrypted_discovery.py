"""Discovery of Designated Resolvers (RFC 9462) as dig and kdig see it.

One `resolver serve` with DoT, DoH and DoQ listeners and a throwaway CA's certificate for
`dns.test`: `_dns.resolver.arpa` SVCB, asked over UDP, TCP, TLS and HTTPS, lists the three
endpoints with the certificate's name as target, their ALPN ids, ports and the DoH path.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RESOLVER, RunningLab, _free_port, _wait_for_udp_dns
from tests.support.processes import stop_process
from tests.support.unbound import CertificateFiles, make_certificates

pytestmark = pytest.mark.integration

IP = "127.0.0.1"
NAME = "dns.test"


@dataclass(frozen=True)
class Announcing:
    udp: int
    tls: int
    https: int
    quic: int
    certs: CertificateFiles
    log: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((IP, 0))
        return int(s.getsockname()[1])


def _wait_for_tcp(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the resolver exited"
        try:
            socket.create_connection((IP, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {IP}:{port}")


def _serve(lab: RunningLab, directory: Path, *extra: str
           ) -> tuple[Announcing, subprocess.Popen[str]]:
    certs = make_certificates(directory / "certs", server_name=NAME, ip=IP)
    udp, tls, https = (_free_port(IP) for _ in range(3))
    quic = _free_udp_port()
    log = directory / "serve.log"
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"{IP}:{udp}", "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port), "--control-socket", str(directory / "control.sock"),
         "--listen-tls", f"{IP}:{tls}", "--listen-https", f"{IP}:{https}",
         "--listen-quic", f"{IP}:{quic}",
         "--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file), *extra],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_for_udp_dns(IP, udp, proc)
        _wait_for_tcp(tls, proc)
        _wait_for_tcp(https, proc)
    except BaseException:
        stop_process(proc)
        raise
    return Announcing(udp=udp, tls=tls, https=https, quic=quic, certs=certs, log=log), proc


@pytest.fixture(scope="module")
def server(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Announcing]:
    running, proc = _serve(lab, tmp_path_factory.mktemp("discovery"))
    try:
        yield running
    finally:
        stop_process(proc)


#: An SVCB line of dig or kdig: priority, target, then the SvcParams.
SVCB_LINE = re.compile(r"^_dns\.resolver\.arpa\.\s+\d+\s+IN\s+SVCB\s+(\d+)\s+(\S+)\s*(.*)$",
                       re.MULTILINE)


def _records(output: str) -> list[tuple[int, str, dict[str, str]]]:
    """(priority, target, {key: value}) of each SVCB answer, quotes removed; dig and kdig
    of this age print dohpath by its number, key7 (RFC 9461 §5)."""
    found = []
    for priority, target, params in SVCB_LINE.findall(output):
        values = dict(item.split("=", 1) for item in params.split())
        values = {("dohpath" if key == "key7" else key): value.strip('"')
                  for key, value in values.items()}
        found.append((int(priority), target, values))
    return sorted(found)


def _expected(server: Announcing) -> list[tuple[int, str, dict[str, str]]]:
    return [
        (1, "dns.test.", {"alpn": "dot", "port": str(server.tls)}),
        (2, "dns.test.", {"alpn": "h2", "port": str(server.https),
                          "dohpath": "/dns-query{?dns}"}),
        (3, "dns.test.", {"alpn": "doq", "port": str(server.quic)}),
    ]


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("transport", [[], ["+tcp"]])
def test_dig_gets_every_encrypted_endpoint_under_the_certificates_name(
        server: Announcing, transport: list[str]) -> None:
    dig = require_tool("dig")
    output = _run([dig, f"@{IP}", "-p", str(server.udp), "_dns.resolver.arpa", "SVCB",
                   *transport])
    assert "status: NOERROR" in output
    assert _records(output) == _expected(server)


def test_kdig_over_udp_reads_the_same_records(server: Announcing) -> None:
    kdig = require_tool("kdig")
    output = _run([kdig, f"@{IP}", "-p", str(server.udp), "_dns.resolver.arpa", "SVCB"])
    assert _records(output) == _expected(server)


@pytest.mark.parametrize("how", ["tls", "https"])
def test_kdig_over_the_announced_endpoints_reads_them_too(server: Announcing, how: str
                                                          ) -> None:
    """The client then checks the certificate against the announced name (RFC 9462 §4.2)."""
    kdig = require_tool("kdig")
    port = server.tls if how == "tls" else server.https
    output = _run([kdig, f"@{IP}", "-p", str(port), f"+{how}", f"+tls-ca={server.certs.ca_file}",
                   f"+tls-hostname={NAME}", "_dns.resolver.arpa", "SVCB"])
    assert _records(output) == _expected(server)


def test_other_types_at_the_discovery_name_are_nodata(server: Announcing) -> None:
    dig = require_tool("dig")
    output = _run([dig, f"@{IP}", "-p", str(server.udp), "_dns.resolver.arpa", "A"])
    assert "status: NOERROR" in output and "ANSWER: 0" in output


def test_tls_name_replaces_the_certificates_name(lab: RunningLab, tmp_path: Path) -> None:
    running, proc = _serve(lab, tmp_path, "--tls-name", "Resolver.Example")
    try:
        output = _run([require_tool("dig"), f"@{IP}", "-p", str(running.udp),
                       "_dns.resolver.arpa", "SVCB", "+short"])
    finally:
        stop_process(proc)
    assert [line.split()[1] for line in output.splitlines()] == ["resolver.example."] * 3
