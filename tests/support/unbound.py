"""A real Unbound for tests: on a loopback address and a free port, iterating the lab.

`start_unbound` writes an unbound.conf into a test directory and starts `unbound -d` with it:
its root is the lab (`stub-zone: name "." stub-addr: ...@port`, `do-not-query-localhost: no`).
Unbound sends every query learned from a referral to port 53, and the lab runs on a free
port, so each lab zone also gets a stub zone naming its servers with the lab's port: Unbound
still iterates (RD=0 to the authoritative servers), only without needing the referrals' port.
It validates nothing (the lab is unsigned), and it can also serve DNS over TLS with a test
certificate from `make_certificates` (a throwaway CA and server certificate, made with the
`openssl` command line at test time). Unbound runs under `timeout`, so it stops by itself
even if the test run dies; `stop_unbound` stops it by pid.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.engine.delegation import load_root_hints
from resolver.lab.world import SERVERS
from tests.conftest import require_tool
from tests.support.processes import stop_process

#: Longest an Unbound started here may live (seconds), whatever happens to the test run.
LIFETIME_S = 900


@dataclass(frozen=True)
class CertificateFiles:
    """A throwaway CA and a server certificate it signed, valid for `server_name` and `ip`."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str


@dataclass(frozen=True)
class RunningUnbound:
    ip: str
    port: int
    #: The DNS over TLS port, when started with certificates.
    tls_port: int | None
    process: subprocess.Popen[bytes]
    config_file: Path
    log_file: Path

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def make_certificates(directory: Path, *, server_name: str, ip: str) -> CertificateFiles:
    """A CA and a server certificate (P-256 keys, valid two days) in `directory`."""
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName=DNS:{server_name},IP:{ip}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        [openssl, "req", "-x509", *new_key, "-keyout", str(ca_key), "-out", str(ca_pem),
         "-days", "2", "-subj", "/CN=Resolver Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *new_key, "-keyout", str(key), "-out", str(csr),
         "-subj", f"/CN={server_name}"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(pem), "-days", "2", "-extfile", str(extensions)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stderr.strip()}")
    return CertificateFiles(ca_file=ca_pem, cert_file=pem, key_file=key, server_name=server_name)


def free_port(ip: str) -> int:
    """A port free for both UDP and TCP on `ip` right now."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(family, socket.SOCK_DGRAM) as udp, \
                socket.socket(family, socket.SOCK_STREAM) as tcp:
            try:
                udp.bind((ip, port))
                tcp.bind((ip, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {ip}")


def lab_stub_zones(lab_hints: Path, lab_port: int) -> dict[str, list[str]]:
    """One stub zone per lab zone, root included, naming its servers on the lab's port."""
    stubs: dict[str, list[str]] = {
        ".": [f"{a}@{lab_port}" for ns in load_root_hints(lab_hints).servers for a in ns.addresses]
    }
    for server in SERVERS:
        for zone in server.zones:
            if zone != ".":
                stubs.setdefault(zone, []).append(f"{server.address}@{lab_port}")
    return stubs


def unbound_config(
    directory: Path,
    *,
    ip: str,
    port: int,
    stub_zones: Mapping[str, Sequence[str]],
    certificates: CertificateFiles | None = None,
    tls_port: int | None = None,
    server_lines: Sequence[str] = (),
) -> str:
    """The text of an unbound.conf for a test instance (see the module docstring):
    `stub_zones` maps each zone to its servers, `ADDRESS@PORT`."""
    lines = [
        "server:",
        "    verbosity: 1",
        f"    interface: {ip}@{port}",
        f"    port: {port}",
        "    do-daemonize: no",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{directory}"',
        f'    pidfile: "{directory / "unbound.pid"}"',
        '    logfile: ""',
        "    use-syslog: no",
        "    log-servfail: yes",
        "    do-ip6: no",
        "    do-not-query-localhost: no",
        "    access-control: 127.0.0.0/8 allow",
        '    module-config: "iterator"',
        "    qname-minimisation: no",
        "    num-threads: 1",
        "    so-reuseport: no",
        "    outgoing-range: 64",
        "    num-queries-per-thread: 32",
    ]
    if certificates is not None and tls_port is not None:
        lines += [
            f"    interface: {ip}@{tls_port}",
            f"    tls-port: {tls_port}",
            f'    tls-service-key: "{certificates.key_file}"',
            f'    tls-service-pem: "{certificates.cert_file}"',
        ]
    lines += [f"    {line}" for line in server_lines]
    lines += ["remote-control:", "    control-enable: no"]
    for zone, addresses in sorted(stub_zones.items()):
        lines += ["stub-zone:", f'    name: "{zone}"']
        lines += [f"    stub-addr: {address}" for address in addresses]
    return "\n".join(lines) + "\n"


def start_unbound(
    directory: Path,
    *,
    ip: str,
    lab_hints: Path | None = None,
    lab_port: int | None = None,
    stub_zones: Mapping[str, Sequence[str]] | None = None,
    certificates: CertificateFiles | None = None,
    server_lines: Sequence[str] = (),
) -> RunningUnbound:
    """Start Unbound on `ip` (a free port; with `certificates`, also DNS over TLS) and wait
    until it accepts connections. It iterates the lab (`lab_hints`, `lab_port`) or the
    servers named in `stub_zones`."""
    if stub_zones is None:
        if lab_hints is None or lab_port is None:
            raise ValueError("start_unbound needs the lab's hints and port, or stub zones")
        stub_zones = lab_stub_zones(lab_hints, lab_port)
    unbound = require_tool("unbound")
    timeout = require_tool("timeout")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(ip)
    tls_port = free_port(ip) if certificates is not None else None
    config_file = directory / "unbound.conf"
    config_file.write_text(unbound_config(
        directory, ip=ip, port=port, stub_zones=stub_zones, certificates=certificates,
        tls_port=tls_port, server_lines=server_lines,
    ))
    checkconf = Path(unbound).with_name("unbound-checkconf")
    if checkconf.exists():
        checked = subprocess.run([str(checkconf), str(config_file)], capture_output=True,
                                 text=True, timeout=30, check=False)
        if checked.returncode != 0:
            raise RuntimeError(f"bad unbound.conf: {checked.stdout}{checked.stderr}")
    log_file = directory / "unbound.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [timeout, "-k", "5", str(LIFETIME_S), unbound, "-d", "-c", str(config_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    running = RunningUnbound(ip=ip, port=port, tls_port=tls_port, process=process,
                             config_file=config_file, log_file=log_file)
    try:
        for wanted in (port, tls_port):
            if wanted is not None:
                _wait_for_tcp(ip, wanted, running)
    except RuntimeError:
        stop_unbound(running)
        raise
    return running


def _wait_for_tcp(ip: str, port: int, running: RunningUnbound, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"unbound exited with {running.process.returncode}: "
                               f"{running.log_text()}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"unbound does not listen on {ip}:{port}: {running.log_text()}")


def stop_unbound(running: RunningUnbound) -> None:
    """Stop the instance by its pid (SIGTERM, then SIGKILL after 5 s)."""
    stop_process(running.process)
