"""Forwarding over DNS over HTTPS (--forward-https) to real DoH servers on loopback.

The upstream is a second `resolver serve` with `--listen-https` iterating the lab, and Unbound's
own DoH listener (`https-port`); both present a certificate from a throwaway CA that the
forwarding resolver is given with `--tls-ca-file`.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from resolver.upstream.forwarding import parse_https_upstream
from resolver.upstream.https import DohClient, make_doh_context
from tests.integration.conftest import RESOLVER, RunningLab, _free_port, start_resolver
from tests.integration.test_encrypted_listeners import IP, NAME, Encrypted, start_encrypted
from tests.support.processes import stop_process
from tests.support.unbound import make_certificates, start_unbound, stop_unbound

pytestmark = pytest.mark.integration

UNBOUND_IP = "127.53.4.2"
UNBOUND_NAME = "doh.unbound.test"


@pytest.fixture(scope="module")
def upstream(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    """Our own resolver with a DoH listener, iterating the lab."""
    running = start_encrypted(lab, tmp_path_factory.mktemp("doh-upstream"), 0)
    try:
        yield running
    finally:
        stop_process(running.process)


def ask(ip: str, port: int, name: str, qtype: str = "A") -> DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(DNSRecord.question(name, qtype).pack(), (ip, port))
        return DNSRecord.parse(udp.recv(65535))


def answers(reply: DNSRecord) -> set[tuple[str, str]]:
    return {(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr}


def forwarding(lab: RunningLab, *urls: str, ca_file: Path) -> tuple[int, subprocess.Popen[str]]:
    args = [arg for url in urls for arg in ("--forward-https", url)]
    running = start_resolver(lab, *args, "--tls-ca-file", str(ca_file))
    return running.port, running.process


def output_of(process: subprocess.Popen[str]) -> str:
    stop_process(process)
    return process.stdout.read() if process.stdout is not None else ""


def test_forward_https_to_our_own_doh_listener_gives_the_udp_answer(
        lab: RunningLab, upstream: Encrypted) -> None:
    port, process = forwarding(lab, f"https://{IP}:{upstream.https}/dns-query",
                               ca_file=upstream.certs.ca_file)
    try:
        direct = ask(IP, upstream.udp, "www.ibm.com")
        forwarded = ask(IP, port, "www.ibm.com")
        assert forwarded.header.rcode == RCODE.NOERROR
        assert answers(forwarded) == answers(direct) != set()
        mx = ask(IP, port, "hamburger.edu", "MX")
        assert ("MX", "10 mail.hamburger.edu.") in answers(mx)
    finally:
        output_of(process)
    assert " doh www.ibm.com. A NOERROR" in upstream.log_text()


def test_forward_zone_entry_with_a_doh_url_routes_only_that_zone(
        lab: RunningLab, upstream: Encrypted) -> None:
    running = start_resolver(
        lab, "--forward-zone", f"hamburger.edu=https://{IP}:{upstream.https}/dns-query",
        "--tls-ca-file", str(upstream.certs.ca_file))
    try:
        reply = ask(IP, running.port, "www.hamburger.edu")
        assert reply.header.rcode == RCODE.NOERROR and reply.rr
    finally:
        output_of(running.process)
    assert " doh www.hamburger.edu. A NOERROR" in upstream.log_text()


def test_wrong_certificate_name_is_servfail_and_nothing_goes_in_clear_text(
        lab: RunningLab, upstream: Encrypted) -> None:
    # A UDP socket on the DoH port number: any clear-text fallback would land here.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as trap:
        trap.bind((IP, upstream.https))
        trap.setblocking(False)
        port, process = forwarding(
            lab, f"https://wrong.example:{upstream.https}/dns-query#{IP}",
            ca_file=upstream.certs.ca_file)
        try:
            reply = ask(IP, port, "www.crepes.fr")
            assert reply.header.rcode == RCODE.SERVFAIL
        finally:
            log = output_of(process)
        with pytest.raises(BlockingIOError):
            trap.recv(65535)
    assert "certificate rejected" in log, log


def test_failover_from_a_dead_doh_upstream_to_a_live_one(
        lab: RunningLab, upstream: Encrypted) -> None:
    dead = _free_port(IP)  # nobody listens: connection refused
    port, process = forwarding(lab, f"https://{IP}:{dead}/dns-query",
                               f"https://{IP}:{upstream.https}/dns-query",
                               ca_file=upstream.certs.ca_file)
    try:
        for name in ("www.cnn.com", "www.networkutopia.com", "www.crepes.fr"):
            reply = ask(IP, port, name)
            assert reply.header.rcode == RCODE.NOERROR and reply.rr, name
    finally:
        output_of(process)


def test_many_queries_in_flight_share_one_http2_connection(upstream: Encrypted) -> None:
    server = parse_https_upstream(f"https://{NAME}:{upstream.https}/dns-query#{IP}")
    names = ["www.ibm.com", "www.cnn.com", "www.crepes.fr", "www.networkutopia.com"] * 25

    async def run() -> tuple[list[bytes], int]:
        client = DohClient(context=make_doh_context(str(upstream.certs.ca_file)))
        try:
            queries = [make_query(Question(name + ".", RRType.A), query_id=1000 + i,
                                  recursion_desired=True) for i, name in enumerate(names)]
            replies = await asyncio.gather(*(client.exchange(q, server, 10) for q in queries))
            return list(replies), client.connections_opened
        finally:
            await client.close()

    started = time.monotonic()
    replies, opened = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert opened == 1
    for i, (name, reply) in enumerate(zip(names, replies, strict=True)):
        parsed = DNSRecord.parse(reply)
        assert parsed.header.id == 1000 + i  # the id is put back after the id-0 exchange
        assert str(parsed.q.qname) == name + "." and parsed.header.rcode == RCODE.NOERROR
    print(f"100 DoH queries on one connection: {elapsed * 1000:.0f} ms")


@pytest.fixture(scope="module")
def unbound_doh(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[int, Path]]:
    """Unbound with its DoH listener (needs Unbound built with libnghttp2)."""
    version = subprocess.run(["unbound", "-V"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    if "libnghttp2" not in version:
        pytest.skip("this Unbound is built without libnghttp2: no https-port")
    directory = tmp_path_factory.mktemp("unbound-doh")
    certs = make_certificates(directory / "certs", server_name=UNBOUND_NAME, ip=UNBOUND_IP)
    https_port = _free_port(UNBOUND_IP)
    running = start_unbound(directory, ip=UNBOUND_IP, lab_hints=lab.hints, lab_port=lab.port,
                            certificates=certs,
                            server_lines=[f"interface: {UNBOUND_IP}@{https_port}",
                                          f"https-port: {https_port}"])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((UNBOUND_IP, https_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, running.log_text()
                time.sleep(0.05)
        yield https_port, certs.ca_file
    finally:
        stop_unbound(running)


def test_forward_https_to_unbounds_doh_listener(
        lab: RunningLab, unbound_doh: tuple[int, Path], upstream: Encrypted) -> None:
    https_port, ca_file = unbound_doh
    port, process = forwarding(
        lab, f"https://{UNBOUND_NAME}:{https_port}/dns-query#{UNBOUND_IP}", ca_file=ca_file)
    try:
        forwarded = ask(IP, port, "www.cnn.com")
        assert forwarded.header.rcode == RCODE.NOERROR
        assert answers(forwarded) == answers(ask(IP, upstream.udp, "www.cnn.com")) != set()
    finally:
        output_of(process)


def test_forward_https_is_refused_at_start_when_the_url_has_a_name_and_no_address(
        lab: RunningLab) -> None:
    done = subprocess.run(
        [*RESOLVER, "serve", "--listen", f"{IP}:{_free_port(IP)}", "--root-hints",
         str(lab.hints), "--forward-https", "https://dns.example/dns-query"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "#ADDR" in done.stderr
