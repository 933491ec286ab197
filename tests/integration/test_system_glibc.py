"""The resolver as the system resolver, for real: on 127.0.0.1 port 53, named by
/etc/resolv.conf, asked by glibc's stub resolver (`getent ahosts` and Python's
`socket.getaddrinfo`, which send A and AAAA in parallel from one socket).

/etc/resolv.conf is replaced only inside a private mount namespace (`unshare -m` and a bind
mount), so the machine's own resolver configuration is never touched. The resolver binds
port 53 as root and then runs as `nobody` (--user), as Unbound does with `username`.
Needs root (port 53 and mount namespaces) and a free port 53 on 127.0.0.1.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RESOLVER, RunningLab, _stop, _wait_for_udp_dns

pytestmark = pytest.mark.integration

NAME = "www.networkutopia.com"
ADDRESS = "212.212.212.2"


def cannot_run(reason: str) -> None:
    """Fail under CI=true (the test must run there), skip elsewhere, always saying why."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def check_port_53_is_free() -> None:
    for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", 53))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    cannot_run(f"port 53 ({name}) on 127.0.0.1 is taken by another process "
                               f"(see `ss -lnup 'sport = :53'` / `ss -lntp 'sport = :53'`); "
                               f"stop it to run the glibc system-resolver test")
                raise


@pytest.fixture
def on_port_53(lab: RunningLab, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`resolver serve` on 127.0.0.1:53 for the lab (which runs on its own port), as nobody."""
    if os.geteuid() != 0:
        cannot_run("the glibc test needs root: port 53 and a private mount namespace")
    for tool in ("unshare", "mount", "getent"):
        require_tool(tool)
    check_port_53_is_free()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*RESOLVER, "serve", "--listen", "127.0.0.1:53", "--root-hints", str(lab.hints),
             "--upstream-port", str(lab.port), "--user", "nobody", "--log-queries",
             "--control-socket", str(tmp_path / "control.sock")],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for_udp_dns("127.0.0.1", 53, process)  # type: ignore[arg-type]
    except RuntimeError:
        _stop(process)  # type: ignore[arg-type]
        text = log.read_text()
        if "already in use" in text:
            cannot_run(f"port 53 on 127.0.0.1 is taken by another process: {text}")
        raise AssertionError(f"the resolver did not start on 127.0.0.1:53:\n{text}") from None
    try:
        yield process, log
    finally:
        _stop(process)  # type: ignore[arg-type]
        assert process.returncode == 0, log.read_text()


PYTHON_STUB = f"""
import socket
for family, _, _, _, address in socket.getaddrinfo({NAME!r}, 80, type=socket.SOCK_STREAM):
    print(family.name, address[0])
"""


def run_in_namespace(tmp_path: Path) -> str:
    """getent and getaddrinfo in a mount namespace whose /etc/resolv.conf names 127.0.0.1."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    nsswitch = tmp_path / "nsswitch.conf"  # hosts: files, then DNS (no other NSS module)
    nsswitch.write_text("hosts: files dns\n")
    script = (
        f"mount --bind {resolv} /etc/resolv.conf && "
        f"mount --bind {nsswitch} /etc/nsswitch.conf && "
        f"echo '$ getent ahosts {NAME}' && getent ahosts {NAME} && "
        f"echo '$ python -c socket.getaddrinfo(...)' && {sys.executable} -c \"$PY_STUB\""
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PY_STUB": PYTHON_STUB})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def test_system_glibc_resolves_through_resolv_conf(
        on_port_53: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    """glibc, told by resolv.conf to ask 127.0.0.1, gets the lab's address from us."""
    _process, log = on_port_53
    outside = Path("/etc/resolv.conf").read_bytes()
    output = run_in_namespace(tmp_path)
    print(output)
    getent, python = output.split("$ python", 1)
    assert re.search(rf"^{re.escape(ADDRESS)}\s+STREAM {re.escape(NAME)}$", getent, re.MULTILINE)
    assert f"AF_INET {ADDRESS}" in python
    assert Path("/etc/resolv.conf").read_bytes() == outside  # only the namespace saw ours

    # glibc asked A and AAAA from one socket (same client port), in parallel.
    queries = re.findall(rf"query 127\.0\.0\.1:(\d+) udp {re.escape(NAME)}\. (A|AAAA) NOERROR",
                         log.read_text())
    print("\n".join(line for line in log.read_text().splitlines() if f" {NAME}. " in line))
    types_by_port: dict[str, set[str]] = {}
    for port, rtype in queries:
        types_by_port.setdefault(port, set()).add(rtype)
    assert any(types == {"A", "AAAA"} for types in types_by_port.values()), log.read_text()


def test_system_glibc_server_runs_as_nobody_after_binding(
        on_port_53: tuple[subprocess.Popen[bytes], Path]) -> None:
    """--user nobody: port 53 is bound, then every uid and gid of the process is nobody's."""
    process, log = on_port_53
    status = Path(f"/proc/{process.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.MULTILINE)
    assert uids is not None and gids is not None
    import pwd

    nobody = pwd.getpwnam("nobody")
    assert set(uids.group(1).split()) == {str(nobody.pw_uid)}
    assert set(gids.group(1).split()) == {str(nobody.pw_gid)}
    assert "running as user nobody" in log.read_text()
