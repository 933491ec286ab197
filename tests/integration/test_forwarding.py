"""Forwarding as a user runs it: our resolver in front of a real Unbound that iterates the lab.

Unbound (started by tests/support/unbound.py on 127.53.0.1) also knows a name nobody else
does, `intranet.corp.example` (its local data), so an answer for it proves the query went
through Unbound. Small UDP relays on 127.53.x.y stand in for broken upstreams: a black hole,
a server that does not recurse, a counting middlebox, and a forwarder that sends our own
queries back to us.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RunningLab, RunningResolver, start_resolver
from tests.integration.test_dig import DigReply, dig
from tests.support.unbound import (
    CertificateFiles,
    RunningUnbound,
    free_port,
    make_certificates,
    start_unbound,
    stop_unbound,
)

pytestmark = pytest.mark.integration

UNBOUND_IP = "127.53.0.1"
TLS_NAME = "dot.resolver.test"
CORP_DATA = ['local-zone: "corp.example." static',
             'local-data: "intranet.corp.example. 300 IN A 10.1.2.3"']
HAMBURGER = "198.51.100.11"  # www.hamburger.edu in the lab


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certificates(tmp_path_factory.mktemp("certs"), server_name=TLS_NAME,
                             ip=UNBOUND_IP)


@pytest.fixture(scope="module")
def unbound(lab: RunningLab, certificates: CertificateFiles,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUnbound]:
    """Unbound iterating the lab, over UDP, TCP and DNS over TLS."""
    running = start_unbound(tmp_path_factory.mktemp("unbound"), ip=UNBOUND_IP,
                            lab_hints=lab.hints, lab_port=lab.port, certificates=certificates,
                            server_lines=CORP_DATA)
    try:
        yield running
    finally:
        stop_unbound(running)


@dataclass
class Served:
    resolver: RunningResolver
    output: str = ""


@contextmanager
def serving(lab: RunningLab, *extra: str) -> Iterator[Served]:
    """`resolver serve` with `extra` options; its log is in `.output` once stopped."""
    running = start_resolver(lab, *extra)
    served = Served(running)
    try:
        yield served
    finally:
        running.process.terminate()
        try:
            served.output, _ = running.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            served.output, _ = running.process.communicate()


@dataclass
class UdpRelay:
    """A UDP middlebox on `ip`: passes each query to `target` and the reply back (changed by
    `rewrite`); with no target it is a black hole. Records every query it receives.
    One query at a time, from a thread that ends by itself after `lifetime_s`."""

    ip: str
    target: tuple[str, int] | None
    rewrite: Callable[[bytes], bytes] = lambda reply: reply
    lifetime_s: float = 120.0
    port: int = 0
    queries: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> UdpRelay:
        self.port = free_port(self.ip)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.ip, self.port))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()

    @property
    def spec(self) -> str:
        return f"{self.ip}@{self.port}"

    def _serve(self) -> None:
        deadline = time.monotonic() + self.lifetime_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                query, client = self._sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.queries.append(query)
            if self.target is None:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(3.0)
                try:
                    upstream.sendto(query, self.target)
                    reply, _ = upstream.recvfrom(65535)
                except OSError:
                    continue
            self._sock.sendto(self.rewrite(reply), client)

    def asked_for(self, name: str) -> int:
        wire = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".") if p)
        return sum(1 for q in self.queries if wire.lower() in q.lower())


def _answer(reply: DigReply) -> list[str]:
    return reply.rdata("A")


# -- forwarding to Unbound ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_forward_to_unbound_dig_gets_the_answer(lab: RunningLab, unbound: RunningUnbound,
                                                transport: str) -> None:
    """`dig @us www.hamburger.edu` through our resolver forwarding to Unbound answers."""
    with serving(lab, "--forward", f"{UNBOUND_IP}@{unbound.port}") as served:
        reply = dig(served.resolver, transport, "www.hamburger.edu")
        assert reply.status == "NOERROR", reply.text
        assert _answer(reply) == [HAMBURGER]
        assert {"qr", "rd", "ra"} <= reply.flags
        corp = dig(served.resolver, transport, "intranet.corp.example")
        assert corp.status == "NOERROR", corp.text
        assert _answer(corp) == ["10.1.2.3"]  # only Unbound knows it: the query went there


def test_forward_answers_come_from_our_cache_the_second_time(
        lab: RunningLab, unbound: RunningUnbound) -> None:
    """Forwarded answers go through the same cache: one upstream query for two client queries."""
    with UdpRelay("127.53.1.1", (UNBOUND_IP, unbound.port)) as relay, \
            serving(lab, "--forward", relay.spec) as served:
        first = dig(served.resolver, "www.crepes.fr")
        second = dig(served.resolver, "www.crepes.fr")
        assert first.status == second.status == "NOERROR"
        assert _answer(first) == _answer(second) and _answer(first)
        assert relay.asked_for("www.crepes.fr") == 1
        assert all(q[2] & 0x01 for q in relay.queries)  # every query with RD=1


def test_forward_fails_over_from_a_black_hole(lab: RunningLab, unbound: RunningUnbound) -> None:
    """With a first upstream that never answers, every query is still answered by Unbound."""
    with UdpRelay("127.53.9.9", None) as black_hole, \
            serving(lab, "--forward", black_hole.spec,
                    "--forward", f"{UNBOUND_IP}@{unbound.port}") as served:
        for i in range(20):  # the selection picks at random among untried upstreams
            reply = dig(served.resolver, f"probe{i}.hamburger.edu")
            assert reply.status == "NXDOMAIN", reply.text
            if black_hole.queries:
                break
        assert black_hole.queries, "the black hole was never tried"
        assert _answer(dig(served.resolver, "www.hamburger.edu")) == [HAMBURGER]


def test_forwarding_to_an_authoritative_server_that_refers_is_servfail(
        lab: RunningLab) -> None:
    """A server that refers instead of recursing (the lab's root, given as a forwarder by
    mistake) is no forwarder: SERVFAIL, and the log says why."""
    root_ip = next(line.split()[-1] for line in lab.hints.read_text().splitlines()
                   if line.split()[2:3] == ["A"] or line.split()[3:4] == ["A"])
    with UdpRelay("127.53.1.2", (root_ip, lab.port)) as relay, \
            serving(lab, "--forward", relay.spec) as served:
        reply = dig(served.resolver, "www.hamburger.edu")
        assert reply.status == "SERVFAIL"
        assert relay.queries
    assert "does not recurse" in served.output


def test_a_forwarder_answer_without_ra_is_used(lab: RunningLab,
                                               unbound: RunningUnbound) -> None:
    """An answer from a forwarder that leaves RA clear is still an answer (as for Unbound)."""
    def clear_ra(reply: bytes) -> bytes:
        return reply[:3] + bytes([reply[3] & 0x7F]) + reply[4:]

    with UdpRelay("127.53.1.3", (UNBOUND_IP, unbound.port), rewrite=clear_ra) as relay, \
            serving(lab, "--forward", relay.spec) as served:
        assert _answer(dig(served.resolver, "www.hamburger.edu")) == [HAMBURGER]
        assert relay.queries


def test_forward_first_falls_back_to_iterating_the_lab(lab: RunningLab) -> None:
    """--forward-first: when every upstream fails, the name is iterated from the root hints."""
    with UdpRelay("127.53.9.8", None) as black_hole:
        zone = f"networkutopia.com={black_hole.spec}"
        with serving(lab, "--forward-zone", zone, "--forward-first") as served:
            reply = dig(served.resolver, "www.networkutopia.com")
            assert reply.status == "NOERROR", reply.text
            assert _answer(reply) == ["212.212.212.2"]
        assert black_hole.queries
        assert "forward-first" in served.output
        with serving(lab, "--forward-zone", zone) as served:
            assert dig(served.resolver, "www.networkutopia.com").status == "SERVFAIL"


def test_tcp_upstream_reaches_a_tcp_only_forwarder(lab: RunningLab,
                                                   tmp_path: Path) -> None:
    """--tcp-upstream sends the queries over TCP: an Unbound without UDP answers them."""
    tcp_only = start_unbound(tmp_path / "tcp-only", ip="127.53.0.2", lab_hints=lab.hints,
                             lab_port=lab.port, server_lines=["do-udp: no"])
    try:
        spec = f"127.53.0.2@{tcp_only.port}"
        with serving(lab, "--forward", spec, "--tcp-upstream") as served:
            reply = dig(served.resolver, "www.hamburger.edu")
            assert reply.status == "NOERROR", reply.text
            assert _answer(reply) == [HAMBURGER]
        with serving(lab, "--forward", spec) as served:  # over UDP nobody answers
            assert dig(served.resolver, "www.hamburger.edu").status == "SERVFAIL"
    finally:
        stop_unbound(tcp_only)


# -- per-zone routing ---------------------------------------------------------------------


def test_forward_zone_sends_only_its_names_to_the_upstream(
        lab: RunningLab, unbound: RunningUnbound) -> None:
    """--forward-zone corp.example: corp names go to Unbound (RD=1), the rest is iterated."""
    with UdpRelay("127.53.1.3", (UNBOUND_IP, unbound.port)) as relay, \
            serving(lab, "--forward-zone", f"corp.example={relay.spec}") as served:
        corp = dig(served.resolver, "intranet.corp.example")
        assert _answer(corp) == ["10.1.2.3"], corp.text
        other = dig(served.resolver, "www.hamburger.edu")
        assert _answer(other) == [HAMBURGER], other.text
        assert relay.asked_for("intranet.corp.example") == 1
        assert relay.asked_for("www.hamburger.edu") == 0
        assert all(q[2] & 0x01 for q in relay.queries)


def test_stub_zone_asks_its_servers_without_recursion(
        lab: RunningLab, unbound: RunningUnbound) -> None:
    """--stub-zone corp.example: corp names go to the given server with RD=0."""
    with UdpRelay("127.53.1.4", (UNBOUND_IP, unbound.port)) as relay, \
            serving(lab, "--stub-zone", f"corp.example={relay.spec}") as served:
        corp = dig(served.resolver, "intranet.corp.example")
        assert corp.status == "NOERROR", corp.text
        assert _answer(corp) == ["10.1.2.3"]
        assert relay.queries and not any(q[2] & 0x01 for q in relay.queries)


def test_stub_zone_at_a_lab_server_iterates_from_there(lab: RunningLab) -> None:
    """--stub-zone hamburger.edu at its lab server: answered without a referral from .edu."""
    with serving(lab, "--stub-zone", f"hamburger.edu=127.51.100.10@{lab.port}") as served:
        reply = dig(served.resolver, "www.hamburger.edu")
        assert _answer(reply) == [HAMBURGER], reply.text


# -- DNS over TLS -------------------------------------------------------------------------


def test_forward_tls_to_unbound_answers(lab: RunningLab, unbound: RunningUnbound,
                                        certificates: CertificateFiles) -> None:
    """--forward-tls ADDR@PORT#NAME with the test CA: answers come over DNS over TLS."""
    assert unbound.tls_port is not None
    with serving(lab, "--forward-tls", f"{UNBOUND_IP}@{unbound.tls_port}#{TLS_NAME}",
                 "--tls-ca-file", str(certificates.ca_file)) as served:
        for name, expected in (("www.hamburger.edu", HAMBURGER),
                               ("intranet.corp.example", "10.1.2.3"),
                               ("www.networkutopia.com", "212.212.212.2")):
            reply = dig(served.resolver, name)
            assert reply.status == "NOERROR", reply.text
            assert _answer(reply) == [expected]
    assert "rejected" not in served.output


def test_forward_tls_name_mismatch_is_rejected(lab: RunningLab, unbound: RunningUnbound,
                                               certificates: CertificateFiles) -> None:
    """A certificate not valid for the configured name: no answer, SERVFAIL, a clear log line."""
    assert unbound.tls_port is not None
    with serving(lab, "--forward-tls", f"{UNBOUND_IP}@{unbound.tls_port}#wrong.example",
                 "--tls-ca-file", str(certificates.ca_file)) as served:
        reply = dig(served.resolver, "www.hamburger.edu")
        assert reply.status == "SERVFAIL"
        assert not reply.answer
    rejected = [line for line in served.output.splitlines()
                if "DNS over TLS" in line and "rejected" in line]
    assert rejected, served.output
    assert "wrong.example" in rejected[0]
    assert "certificate" in rejected[0]


def test_forward_tls_untrusted_ca_is_rejected(lab: RunningLab, unbound: RunningUnbound) -> None:
    """Without --tls-ca-file the system's CAs do not trust the test CA: SERVFAIL."""
    assert unbound.tls_port is not None
    with serving(lab, "--forward-tls", f"{UNBOUND_IP}@{unbound.tls_port}#{TLS_NAME}") as served:
        assert dig(served.resolver, "www.hamburger.edu").status == "SERVFAIL"
    assert "certificate rejected" in served.output


# -- loops --------------------------------------------------------------------------------


def test_serve_refuses_to_forward_to_its_own_address(lab: RunningLab) -> None:
    """Forwarding to our own listen address: exit 1 and one line, before serving."""
    port = free_port("127.0.0.1")
    done = subprocess.run(
        [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{port}",
         "--root-hints", str(lab.hints), "--forward", f"127.0.0.1@{port}"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "forwarding loop" in lines[0], done.stderr


def test_forwarding_loop_at_run_time_answers_servfail(lab: RunningLab) -> None:
    """An upstream that hands our query back to us: SERVFAIL at once and a logged loop."""
    require_tool("dig")
    port = free_port("127.0.0.1")
    with UdpRelay("127.53.1.5", ("127.0.0.1", port)) as mirror:
        # The resolver must listen on `port`, which start_resolver picks itself: start it
        # directly instead.
        process = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{port}",
             "--root-hints", str(lab.hints), "--upstream-port", str(lab.port),
             "--forward", mirror.spec],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            resolver = RunningResolver(ip="127.0.0.1", port=port, process=process)
            reply = None
            for _ in range(50):  # wait until it serves
                try:
                    reply = dig(resolver, "www.hamburger.edu")
                    break
                except AssertionError:
                    time.sleep(0.1)
            assert reply is not None and reply.status == "SERVFAIL"
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=10)
    assert mirror.queries
    assert "forwarding loop" in output


def test_forward_to_another_port_of_our_own_listen_ip_is_not_a_loop(
        lab: RunningLab, unbound: RunningUnbound) -> None:
    """`--listen 127.0.0.1:P --forward 127.0.0.1@Q` (a local stubby or NSD beside us) answers:
    only the same address and port is a loop."""
    local_upstream = UdpRelay("127.0.0.1", (UNBOUND_IP, unbound.port))
    with local_upstream, serving(lab, "--forward", local_upstream.spec) as served:
        assert served.resolver.ip == "127.0.0.1"
        reply = dig(served.resolver, "intranet.corp.example")
        assert reply.status == "NOERROR", reply.text
        assert _answer(reply) == ["10.1.2.3"]
    assert local_upstream.asked_for("intranet.corp.example") >= 1
    assert "forwarding loop" not in served.output
