"""What an operator sees at start: a clear line when no root server can be reached."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from resolver.daemon.hints_file import LAB_PORT_NOTE
from tests.integration.conftest import RESOLVER, _free_port, _stop, _wait_for_udp_dns

pytestmark = pytest.mark.integration


def test_serve_says_so_when_no_root_server_answers_priming(tmp_path: Path) -> None:
    """Root hints naming a server that does not answer: one warning line pointing at the lab."""
    hints = tmp_path / "dead.hints"
    hints.write_text(". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.99.0.1\n")
    port = _free_port()
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(hints),
         "--upstream-port", str(_free_port("127.99.0.1"))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for_udp_dns("127.0.0.1", port, proc)
        time.sleep(1.5)  # priming fails fast: nothing listens there (ICMP port unreachable)
    finally:
        _stop(proc)
    output = proc.stdout.read() if proc.stdout else ""
    warnings = [line for line in output.splitlines() if "no root server answered" in line]
    assert len(warnings) == 1, output
    assert "resolver lab" in warnings[0]


def _serve_output(tmp_path: Path, hints: Path, *args: str) -> str:
    """The first 1.5 s of `resolver serve` from `hints` (priming fails fast on loopback)."""
    port = _free_port()
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(hints),
         "--control-socket", str(tmp_path / "control.sock"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for_udp_dns("127.0.0.1", port, proc)
        time.sleep(1.5)
    finally:
        _stop(proc)
    return proc.stdout.read() if proc.stdout else ""


def _lab_hints(tmp_path: Path, port: int) -> Path:
    """Hints as `resolver lab` writes them, naming a root where nothing listens."""
    hints = tmp_path / "lab.hints"
    hints.write_text(LAB_PORT_NOTE.format(port=port) + "\n"
                     ". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A "
                     "127.99.0.1\n")
    return hints


def test_serve_with_the_labs_hints_and_no_upstream_port_names_the_port(tmp_path: Path) -> None:
    """Started as a newcomer starts it, without --upstream-port: the warning at start and
    the failed priming both say which port the lab's hints state."""
    lab_port = _free_port("127.99.0.1")
    hints = _lab_hints(tmp_path, lab_port)
    output = _serve_output(tmp_path, hints)
    assert (f"WARNING root hints {hints} come from the lab, whose servers listen on port "
            f"{lab_port}, but queries would go to port 53: add --upstream-port {lab_port}"
            ) in output
    priming = [line for line in output.splitlines() if "no root server answered" in line]
    assert len(priming) == 1, output
    assert priming[0].endswith(f"but queries go to port 53: restart with --upstream-port "
                               f"{lab_port}"), output


def test_serve_with_the_labs_port_when_the_lab_is_not_running_asks_if_it_is(
        tmp_path: Path) -> None:
    lab_port = _free_port("127.99.0.1")
    hints = _lab_hints(tmp_path, lab_port)
    output = _serve_output(tmp_path, hints, "--upstream-port", str(lab_port))
    priming = [line for line in output.splitlines() if "no root server answered" in line]
    assert len(priming) == 1, output
    assert priming[0].endswith(f"the root hints in {hints} come from the lab on port "
                               f"{lab_port}: is it running? (`resolver lab --hints-file "
                               f"{hints} --port {lab_port}`)"), output
    assert "add --upstream-port" not in output


def test_serve_with_missing_root_hints_exits_with_one_line(tmp_path: Path) -> None:
    """A missing hints file is one clear error line and exit status 1, no traceback."""
    result = subprocess.run(
        [*RESOLVER, "serve", "--listen", "127.0.0.1:0", "--root-hints",
         str(tmp_path / "nope.hints")],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 1
    assert "cannot read root hints" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_exits_with_one_line(tmp_path: Path) -> None:
    """A port already in use is named in one line; exit status 1, no traceback."""
    import socket

    hints = tmp_path / "lab.hints"
    hints.write_text(". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.99.0.1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(hints)],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_root_servers_answering_port_unreachable_are_asked_once_each(tmp_path: Path) -> None:
    """Three root servers where nothing listens (ICMP port unreachable): priming asks each
    once, and a client question soon after sends nothing more to them (issue 19 found 36
    queries in 5.7 ms to 3 dead servers). SERVFAIL, EDE 22."""
    from tests.integration.test_system_support import Server, dig, scrape

    dead_port = _free_port("127.99.0.1")
    hints = tmp_path / "dead.hints"
    hints.write_text("".join(f". 3600000 NS {n}.dead.\n{n}.dead. 3600000 A 127.99.0.{i}\n"
                             for i, n in enumerate("abc", start=1)))
    port, metrics_port = _free_port(), _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(hints),
             "--upstream-port", str(dead_port), "--metrics", f"127.0.0.1:{metrics_port}",
             "--control-socket", str(tmp_path / "control.sock")],
            stdout=out, stderr=subprocess.STDOUT)
    server = Server(ip="127.0.0.1", port=port, process=proc, log=log,
                    metrics_port=metrics_port)
    try:
        server.wait_for_log("no root server answered the priming query")
        assert scrape(server)["resolver_upstream_queries_total,transport=udp"] == 3
        reply = dig(server, "www.example.com")
        assert "status: SERVFAIL" in reply and "EDE: 22" in reply, reply
        # Held as unreachable for 5 s: nothing more, or one more query each should a busy
        # machine delay the dig past that.
        assert scrape(server)["resolver_upstream_queries_total,transport=udp"] in (3, 6)
    finally:
        assert server.stop() == 0
