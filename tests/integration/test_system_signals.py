"""Lifecycle over real processes: SIGHUP reloads the config file and keeps the cache; SIGTERM
stops accepting, lets queries in flight finish (up to 2 s) and exits 0; a taken or forbidden
port is one clear line and exit 1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.wire import Edns, Message, Record, RRType, parse_record
from tests.conftest import require_tool
from tests.integration.conftest import RESOLVER, RunningLab, _free_port
from tests.integration.test_system_support import (
    Server,
    answers,
    dig,
    scrape,
    settled_upstream,
    start,
    status,
)

pytestmark = pytest.mark.integration


# -- SIGHUP -----------------------------------------------------------------------------


def write_config(path: Path, lab: RunningLab, extra: str = "") -> None:
    path.write_text(f'root-hints = "{lab.hints}"\nupstream-port = {lab.port}\n{extra}')


@pytest.fixture
def configured(lab: RunningLab, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    config = tmp_path / "resolver.toml"
    write_config(config, lab, 'local-data = ["old.example. A 192.0.2.1"]\n')
    server = start(lab, tmp_path, "--config", str(config), with_lab=False, metrics=True)
    yield server, config
    assert server.stop() == 0


def reload(server: Server, count: int) -> None:
    """Send SIGHUP and wait for the `count`-th reload report in the log."""
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while server.text().count("reload") < count:
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.05)


def test_system_sighup_applies_the_new_policy_and_keeps_the_cache(
        configured: tuple[Server, Path], lab: RunningLab) -> None:
    """New local data, access control and query log apply at once; cached answers stay."""
    server, config = configured
    assert answers(dig(server, "www.networkutopia.com")) == ["212.212.212.2"]
    assert answers(dig(server, "old.example")) == ["192.0.2.1"]
    write_config(config, lab, 'local-data = ["new.example. A 192.0.2.44"]\n'
                              'access-control = ["127.0.0.0/8 refuse", "127.0.0.1/32 allow"]\n'
                              "log-queries = true\ncache-size = 5000\n")
    reload(server, 1)
    server.wait_for_log(r"configuration reloaded from .*resolver\.toml")
    assert answers(dig(server, "new.example")) == ["192.0.2.44"]
    assert answers(dig(server, "old.example")) == []  # no longer local: resolved, NXDOMAIN
    assert status(dig(server, "www.networkutopia.com", source="127.0.0.2")) == "REFUSED"
    upstream = settled_upstream(server)
    assert answers(dig(server, "www.networkutopia.com")) == ["212.212.212.2"]
    assert scrape(server).get("resolver_upstream_queries_total,transport=udp") == upstream
    server.wait_for_log(r"query 127\.0\.0\.1:\d+ udp new\.example\. A NOERROR")
    server.wait_for_log(r"reload: cache changed, but takes effect only after a restart")


def test_system_sighup_with_workers_reloads_every_worker(lab: RunningLab,
                                                        tmp_path: Path) -> None:
    """`--workers 2`: SIGHUP to the parent reaches both workers (README, "Signals"): each
    logs its reload, and the new local data answers whichever worker the kernel picks."""
    config = tmp_path / "resolver.toml"
    write_config(config, lab, 'workers = 2\nlocal-data = ["old.example. A 192.0.2.1"]\n')
    server = start(lab, tmp_path, "--config", str(config), with_lab=False)
    try:
        server.wait_for_log(r"(?s)(listening on .*){2}")  # both workers are up
        write_config(config, lab, 'workers = 2\nlocal-data = ["new.example. A 192.0.2.44"]\n')
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log(r"(?s)(configuration reloaded from .*){2}")
        # Each dig has a fresh source port, so SO_REUSEPORT spreads them over both workers.
        assert {tuple(answers(dig(server, "new.example"))) for _ in range(16)} == {
            ("192.0.2.44",)}
    finally:
        assert server.stop() == 0


def test_system_sighup_with_a_broken_file_keeps_the_running_configuration(
        configured: tuple[Server, Path]) -> None:
    """A reload that fails says why, one line per error, and changes nothing."""
    server, config = configured
    config.write_text(config.read_text() + 'cache-sise = 10\nmetrics = "nowhere"\n')
    reload(server, 2)
    server.wait_for_log(r"ERROR reload failed, nothing changed: .*unknown key 'cache-sise'")
    server.wait_for_log(r"ERROR reload failed, nothing changed: .*'metrics'")
    assert answers(dig(server, "old.example")) == ["192.0.2.1"]
    assert server.process.poll() is None


def test_system_sighup_without_a_config_file_changes_nothing(lab: RunningLab,
                                                             tmp_path: Path) -> None:
    """With only command-line options, SIGHUP says there is nothing to reload, and serves on."""
    server = start(lab, tmp_path)
    try:
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log("SIGHUP: nothing to reload")
        assert status(dig(server, "localhost")) == "NOERROR"
    finally:
        assert server.stop() == 0


# -- SIGTERM ----------------------------------------------------------------------------


class SlowRoot:
    """A root server on 127.77.0.1 that answers every name itself (AA), after `delay_s`;
    names under `never.` are never answered. `asked` is set when a client question arrives."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.77.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.asked = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def hints(self, directory: Path) -> Path:
        path = directory / "slow.hints"
        path.write_text(". 3600000 NS a.slow.\na.slow. 3600000 A 127.77.0.1\n")
        return path

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = decode(data)
            question = query.question
            if question is None:
                continue
            if question.name.endswith("slow.") or question.name == ".":
                self._send(query, peer)  # priming and the server's own address: at once
                continue
            self.asked.set()
            if not question.name.endswith("never."):
                threading.Timer(self.delay_s, self._send, (query, peer)).start()

    def _send(self, query: Message, peer: tuple[str, int]) -> None:
        question = query.question
        assert question is not None
        answer: tuple[Record, ...] = ()
        additional: tuple[Record, ...] = ()
        if question.name == "." and question.rtype == RRType.NS:
            answer = (parse_record(". 3600 IN NS a.slow."),)
            additional = (parse_record("a.slow. 3600 IN A 127.77.0.1"),)
        elif question.rtype == RRType.A:
            address = "127.77.0.1" if question.name == "a.slow." else "192.0.2.7"
            answer = (parse_record(f"{question.name} 300 IN A {address}"),)
        reply = Message(id=query.id, qr=True, opcode=0, rcode=0, aa=True, rd=query.rd,
                        question=question, answer=answer, additional=additional,
                        edns=Edns() if query.edns is not None else None)
        with contextlib.suppress(OSError):  # the resolver may have gone already
            self.sock.sendto(encode(reply), peer)

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def slow_server(lab: RunningLab, tmp_path: Path) -> Iterator[tuple[Server, SlowRoot]]:
    root = SlowRoot(delay_s=0.3)  # below the first upstream timeout (0.4 s)
    server = start(lab, tmp_path, "--root-hints", str(root.hints(tmp_path)),
                   "--upstream-port", str(root.port), with_lab=False)
    try:
        yield server, root
    finally:
        server.stop()
        root.close()


def ask_in_background(server: Server, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["dig", f"@{server.ip}", "-p", str(server.port), "+time=6", "+tries=1", name],
        stdout=subprocess.PIPE, text=True)


def test_system_sigterm_lets_a_query_in_flight_finish_and_exits_0(
        slow_server: tuple[Server, SlowRoot]) -> None:
    """SIGTERM while a query waits on its upstream: the client still gets its answer."""
    server, root = slow_server
    client = ask_in_background(server, "www.slow-site.example")
    assert root.asked.wait(10), "the query never reached the upstream"
    server.process.send_signal(signal.SIGTERM)
    out, _ = client.communicate(timeout=15)
    assert status(out) == "NOERROR" and answers(out) == ["192.0.2.7"]
    assert server.process.wait(timeout=10) == 0
    assert "shutting down" in server.text()


def test_system_sigterm_gives_up_on_a_stuck_query_and_still_exits_0(
        slow_server: tuple[Server, SlowRoot]) -> None:
    """A query whose upstream never answers does not hold the exit beyond the drain deadline."""
    server, root = slow_server
    client = ask_in_background(server, "stuck.never")
    assert root.asked.wait(10)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    client.kill()
    client.communicate()


def test_system_sigterm_stops_accepting_new_queries(slow_server: tuple[Server, SlowRoot]
                                                    ) -> None:
    """After SIGTERM, nothing is served any more: a new query gets no reply."""
    server, root = slow_server
    client = ask_in_background(server, "first.never")
    assert root.asked.wait(10)
    server.process.send_signal(signal.SIGTERM)
    server.wait_for_log("shutting down")
    late = dig(server, "+time=1", "localhost")
    assert status(late) == "no reply"
    assert server.process.wait(timeout=10) == 0
    client.kill()
    client.communicate()


# -- ports that cannot be used ----------------------------------------------------------


def test_system_taken_port_is_one_clear_line(lab: RunningLab, tmp_path: Path) -> None:
    """Another process on the port: 'already in use', exit 1, no traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*RESOLVER, "serve", "--listen", f"127.0.0.1:{port}", "--root-hints", str(lab.hints),
             "--upstream-port", str(lab.port), "--control-socket", str(tmp_path / "c.sock")],
            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert (f"Error: cannot listen on 127.0.0.1:{port}: the address is already in use"
            in result.stderr)
    assert "Traceback" not in result.stderr


def test_system_forbidden_port_is_one_clear_line(lab: RunningLab, tmp_path: Path) -> None:
    """Port 53 without the right to bind it: 'permission denied', exit 1, no traceback."""
    command = [*RESOLVER, "serve", "--listen", "127.0.0.1:53", "--root-hints", str(lab.hints),
               "--control-socket", str(tmp_path / "c.sock")]
    if os.geteuid() == 0:  # root keeps its uid but loses CAP_NET_BIND_SERVICE
        setpriv = require_tool("setpriv")
        command = [setpriv, "--bounding-set", "-net_bind_service", "--inh-caps",
                   "-net_bind_service", *command]
    elif int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 53:
        pytest.skip("this kernel lets every user bind port 53 (ip_unprivileged_port_start)")
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1, result.stderr
    assert "Error: cannot listen on 127.0.0.1:53: permission denied" in result.stderr
    assert "Traceback" not in result.stderr


def test_system_unknown_user_is_refused_before_binding(lab: RunningLab) -> None:
    """--user with a name that does not exist: a usage error naming the option."""
    result = subprocess.run(
        [*RESOLVER, "serve", "--listen", f"127.0.0.1:{_free_port()}", "--root-hints",
         str(lab.hints), "--user", "no-such-user-here"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "--user" in result.stderr and "no user 'no-such-user-here'" in result.stderr
