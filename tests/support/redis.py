"""A real redis-server for tests: on a loopback address and its own port, nothing kept on disk.

`start_redis` starts `redis-server` from the Debian package with `--save ''` and
`--appendonly no` in a test directory, bound to one loopback address, optionally with a
password and optionally serving TLS only (a certificate from
tests.support.unbound.make_certificates). It runs under `timeout`, so it stops by itself even
if the test run dies; `stop_redis` stops it by pid, `kill_redis` at once (an outage).
Never the system's service: each test gets a server of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool
from tests.support.processes import stop_process
from tests.support.unbound import CertificateFiles, free_port

#: Longest a redis-server started here may live (seconds), whatever happens to the test run.
LIFETIME_S = 900


@dataclass(frozen=True)
class RunningRedis:
    ip: str
    port: int
    tls: bool
    password: str | None
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}{self.ip}:{self.port}/0"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def start_redis(
    directory: Path,
    *,
    ip: str = "127.0.0.1",
    port: int | None = None,
    password: str | None = None,
    certificates: CertificateFiles | None = None,
) -> RunningRedis:
    """Start redis-server on `ip` (a free port unless `port` is given: a restart after
    `kill_redis`) and wait until it accepts connections. A free port another process takes
    before redis binds it is replaced by another one, up to three times."""
    if port is not None:
        return _start_redis(directory, ip=ip, port=port, password=password,
                            certificates=certificates)
    for _ in range(2):
        try:
            return _start_redis(directory, ip=ip, port=free_port(ip), password=password,
                                certificates=certificates)
        except PortTaken:
            continue
    return _start_redis(directory, ip=ip, port=free_port(ip), password=password,
                        certificates=certificates)


class PortTaken(RuntimeError):
    """redis-server could not bind the port it was given."""


def _start_redis(directory: Path, *, ip: str, port: int, password: str | None,
                 certificates: CertificateFiles | None) -> RunningRedis:
    server = require_tool("redis-server")
    timeout = require_tool("timeout")
    directory.mkdir(parents=True, exist_ok=True)
    args = [server, "--bind", ip, "--save", "", "--appendonly", "no", "--dir", str(directory),
            "--daemonize", "no", "--databases", "4", "--loglevel", "notice"]
    if certificates is None:
        args += ["--port", str(port)]
    else:
        args += ["--port", "0", "--tls-port", str(port),
                 "--tls-cert-file", str(certificates.cert_file),
                 "--tls-key-file", str(certificates.key_file),
                 "--tls-ca-cert-file", str(certificates.ca_file),
                 "--tls-auth-clients", "no"]
    if password is not None:
        args += ["--requirepass", password]
    log_file = directory / f"redis-{port}.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen([timeout, "-k", "5", str(LIFETIME_S), *args],
                                   stdout=log, stderr=subprocess.STDOUT)
    running = RunningRedis(ip=ip, port=port, tls=certificates is not None, password=password,
                           process=process, log_file=log_file)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = running.log_text()
            kind = PortTaken if "Address already in use" in text else RuntimeError
            raise kind(f"redis-server exited with {process.returncode}: {text}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                if "Ready to accept connections" in running.log_text():
                    return running
        except OSError:
            pass
        time.sleep(0.05)
    stop_redis(running)
    raise RuntimeError(f"redis-server on {ip}:{port} did not start: {running.log_text()}")


def stop_redis(running: RunningRedis) -> None:
    stop_process(running.process)


def kill_redis(running: RunningRedis) -> None:
    """SIGKILL to redis-server itself (not to `timeout` above it), as a crash: connections
    reset, nothing said goodbye."""
    if running.process.poll() is not None:
        return
    pid = running.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    running.process.wait(timeout=10)
