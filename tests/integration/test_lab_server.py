"""The lab on real loopback sockets: UDP, TCP framing, referrals walked by hand, dig, `run`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, DNSRecord

from resolver.lab import Lab, run
from resolver.lab.world import SERVERS
from tests.conftest import require_tool

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One lab for the module, served by an event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    the_lab = Lab(port=0)
    asyncio.run_coroutine_threadsafe(the_lab.start(), loop).result(10)
    try:
        yield the_lab
    finally:
        asyncio.run_coroutine_threadsafe(the_lab.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def udp(lab: Lab, address: str, name: str, qtype: str = "A", *, edns: bool = False) -> DNSRecord:
    """One query over UDP with dnslib, RD=0 as a resolver sends it to an authority."""
    query = DNSRecord.question(name, qtype)
    query.header.rd = 0
    if edns:
        query.add_ar(EDNS0(udp_len=1232))
    reply = DNSRecord.parse(query.send(address, lab.port, timeout=TIMEOUT_S))
    assert reply.header.id == query.header.id
    return reply


def tcp(lab: Lab, address: str, name: str, qtype: str = "A") -> DNSRecord:
    """One query over TCP with dnslib."""
    query = DNSRecord.question(name, qtype)
    query.header.rd = 0
    return DNSRecord.parse(query.send(address, lab.port, tcp=True, timeout=TIMEOUT_S))


def root_addresses(lab: Lab) -> list[str]:
    """The root server addresses, read back from the hints text the lab writes."""
    records = RR.fromZone(lab.hints_text())
    assert {QTYPE[r.rtype] for r in records} == {"NS", "A"}
    return [str(r.rdata) for r in records if r.rtype == QTYPE.A]


def test_lab_walks_root_to_networkutopia_by_following_referrals(lab: Lab) -> None:
    """root -> com -> networkutopia.com, using only the glue from each referral."""
    address = root_addresses(lab)[0]
    path = []
    for _ in range(5):
        path.append(address)
        reply = udp(lab, address, "www.networkutopia.com")
        if reply.header.aa:
            break
        assert reply.header.rcode == RCODE.NOERROR and reply.auth[0].rtype == QTYPE.NS
        address = str(reply.ar[0].rdata)  # in-bailiwick glue
    assert path == ["127.41.0.4", "127.5.6.30", "127.212.212.1"]
    assert [str(r.rdata) for r in reply.rr] == ["212.212.212.2"]


def resolve(lab: Lab, name: str, qtype: str = "A", depth: int = 0) -> list[str]:
    """A tiny iterative resolver: referrals, glueless NS, CNAMEs, lame servers skipped."""
    assert depth < 4, "too deep"
    servers = root_addresses(lab)
    for _ in range(12):
        for address in servers:
            reply = udp(lab, address, name, qtype)
            if reply.header.rcode != RCODE.REFUSED:
                break  # a lame server refuses; try the next one
        else:
            raise AssertionError(f"every server refused {name}")
        if reply.header.aa:
            if reply.header.rcode == RCODE.NXDOMAIN:
                return ["NXDOMAIN"]
            last = reply.rr[-1] if reply.rr else None
            if last is not None and last.rtype == QTYPE.CNAME and qtype != "CNAME":
                return resolve(lab, str(last.rdata.label), qtype, depth)
            return [str(r.rdata) for r in reply.rr if QTYPE[r.rtype] == qtype]
        glue = {str(r.rname): str(r.rdata) for r in reply.ar if r.rtype == QTYPE.A}
        servers = []
        for ns in reply.auth:
            target = str(ns.rdata.label)
            servers += [glue[target]] if target in glue else resolve(lab, target, "A", depth + 1)
    raise AssertionError("too many referrals")


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("www.networkutopia.com", "A", ["212.212.212.2"]),
        ("networkutopia.com", "MX", ["10 mail.networkutopia.com."]),
        ("gaia.cs.umass.edu", "A", ["128.119.245.12"]),
        ("www.ibm.com", "A", ["129.42.60.216"]),  # CNAME across a zone cut
        ("alias.example.test", "A", ["129.42.60.216"]),  # CNAME chain across three zones
        ("www.glueless.org", "A", ["203.0.113.81"]),  # glueless delegation
        ("www.lame.test", "A", ["192.0.2.81"]),  # one lame server of two
        ("2.212.212.212.in-addr.arpa", "PTR", ["www.networkutopia.com."]),
        ("12.245.119.128.in-addr.arpa", "PTR", ["gaia.cs.umass.edu."]),
        ("www.crepes.fr", "AAAA", ["2001:db8:21::80"]),
        ("nope.hamburger.edu", "A", ["NXDOMAIN"]),
    ],
)
def test_lab_every_textbook_name_resolves_from_the_root(
    lab: Lab, name: str, qtype: str, expected: list[str]
) -> None:
    """Walking from the hints reaches each textbook answer."""
    assert resolve(lab, name, qtype) == expected


def test_lab_answers_on_one_port_for_every_server(lab: Lab) -> None:
    """With port=0 one free port serves all addresses; each server answers its own SOA."""
    assert lab.port > 0
    for spec in SERVERS:
        reply = udp(lab, spec.address, spec.zones[0], "SOA")
        assert reply.header.aa == 1 and reply.rr[0].rtype == QTYPE.SOA


def test_lab_counts_the_queries_each_server_receives(lab: Lab) -> None:
    """query_counts grows by one per query, at the right address only."""
    before = lab.query_counts()
    udp(lab, "127.42.60.53", "servereast.backup2.ibm.com")
    tcp(lab, "127.42.60.53", "servereast.backup2.ibm.com")
    after = lab.query_counts()
    assert after["127.42.60.53"] == before["127.42.60.53"] + 2
    assert {a: n for a, n in after.items() if a != "127.42.60.53"} == {
        a: n for a, n in before.items() if a != "127.42.60.53"
    }


def test_lab_lame_server_refuses_and_the_other_answers(lab: Lab) -> None:
    """ns1.lame.test's glue leads to a server that refuses lame.test; ns2 answers."""
    assert udp(lab, "127.0.2.54", "www.lame.test").header.rcode == RCODE.REFUSED
    assert udp(lab, "127.0.2.55", "www.lame.test").header.aa == 1


def test_lab_udp_truncates_and_tcp_gives_the_whole_answer(lab: Lab) -> None:
    """A 1900-octet answer: TC=1 over UDP even with EDNS, complete over TCP."""
    truncated = udp(lab, "127.0.2.54", "huge.example.test", "TXT", edns=True)
    assert truncated.header.tc == 1 and truncated.rr == []
    full = tcp(lab, "127.0.2.54", "huge.example.test", "TXT")
    assert full.header.tc == 0 and len(full.rr) == 24


def _framed(name: str, qid: int) -> bytes:
    query = DNSRecord.question(name)
    query.header.id = qid
    wire = bytes(query.pack())
    return struct.pack("!H", len(wire)) + wire


def _read_framed(sock: socket.socket) -> DNSRecord:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed early"
            data += chunk
        return data

    (size,) = struct.unpack("!H", exactly(2))
    return DNSRecord.parse(exactly(size))


def test_lab_tcp_answers_pipelined_queries_on_one_connection(lab: Lab) -> None:
    """Three queries in one write, three framed replies on the same connection (RFC 7766)."""
    with socket.create_connection(("127.212.212.1", lab.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(
            _framed("www.networkutopia.com", 1)
            + _framed("mail.networkutopia.com", 2)
            + _framed("nope.networkutopia.com", 3)
        )
        replies = {r.header.id: r for r in (_read_framed(sock) for _ in range(3))}
        sock.sendall(_framed("www.networkutopia.com", 4))  # and the connection stays usable
        replies[4] = _read_framed(sock)
    assert str(replies[1].rr[0].rdata) == "212.212.212.2"
    assert str(replies[2].rr[0].rdata) == "212.212.212.3"
    assert replies[3].header.rcode == RCODE.NXDOMAIN
    assert replies[4].header.rcode == RCODE.NOERROR


def test_lab_answers_a_name_with_binary_labels_over_udp_and_tcp(lab: Lab) -> None:
    """`\\255.networkutopia.com` (any octets may make up a label, RFC 2181 §11): NXDOMAIN
    with the SOA at once, the question echoed octet for octet, over UDP and TCP."""
    address = lab.servers["dns1.networkutopia.com"]
    question = b"\x01\xff\x05a\x00.\\b\x0dnetworkutopia\x03com\x00\x00\x01\x00\x01"
    query = struct.pack("!6H", 0x5EED, 0, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendto(query, (address, lab.port))
        udp_reply = sock.recv(2048)
    with socket.create_connection((address, lab.port), timeout=TIMEOUT_S) as conn:
        conn.sendall(len(query).to_bytes(2, "big") + query)
        size = int.from_bytes(conn.recv(2), "big")
        tcp_reply = b""
        while len(tcp_reply) < size:
            chunk = conn.recv(size - len(tcp_reply))
            assert chunk
            tcp_reply += chunk
    for reply in (udp_reply, tcp_reply):
        qid, flags, qdcount, ancount, nscount, _ = struct.unpack("!6H", reply[:12])
        assert qid == 0x5EED and flags & 0x8000 and flags & 0x0400  # QR, AA
        assert flags & 0xF == RCODE.NXDOMAIN
        assert qdcount == 1 and ancount == 0 and nscount == 1  # the SOA (RFC 2308 §2.1)
        assert reply[12 : 12 + len(question)] == question


def test_lab_survives_garbage_on_udp_and_tcp(lab: Lab) -> None:
    """Junk datagrams and a junk TCP stream get FORMERR or nothing; the server keeps working."""
    address = "127.41.0.4"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for junk in (
            b"\x00",
            b"\xff" * 11,
            os.urandom(300),
            b"\x12\x34" + b"\x00\x01" * 5 + b"\xc0",
        ):
            sock.sendto(junk, (address, lab.port))
            try:
                reply = sock.recv(2048)
            except TimeoutError:
                continue  # dropping junk is allowed
            assert reply[:2] == junk[:2]
    with socket.create_connection((address, lab.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # read as a 0x4745-octet message that never ends
    with socket.create_connection((address, lab.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"\x00\x05hello")  # shorter than a header: the server hangs up
        assert sock.recv(10) == b""
    assert udp(lab, address, ".", "NS").header.aa == 1


def test_lab_closes_idle_tcp_connections() -> None:
    """A client that sends nothing is disconnected after the idle timeout."""

    async def scenario() -> float:
        async with Lab(port=0, servers=SERVERS[:1], tcp_idle_timeout_s=0.2) as small:
            reader, writer = await asyncio.open_connection(SERVERS[0].address, small.port)
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 2


def test_lab_port_in_use_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run() reports the taken port on one line, suggests --port 5353 and returns 1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind((SERVERS[0].address, 0))
        port = blocker.getsockname()[1]
        assert run(hints_file=tmp_path / "hints", port=port) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"port {port}" in err and "--port 5353" in err and "Traceback" not in err
    assert not (tmp_path / "hints").exists()


def test_lab_run_serves_until_sigterm(tmp_path: Path) -> None:
    """The command writes the hints, prints the map and the resolver command, exits 0 on SIGTERM."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((SERVERS[0].address, 0))
        port = probe.getsockname()[1]
    hints = tmp_path / "root.hints"
    code = (
        "import signal, sys; from pathlib import Path; from resolver.lab import run\n"
        "signal.alarm(30)  # never outlive a stuck test\n"
        f"sys.exit(run(hints_file=Path({str(hints)!r}), port={port}))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        watchdog = threading.Timer(20, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            while not lines or not lines[-1].startswith("serving"):
                line = proc.stdout.readline()
                assert line, "the lab exited before serving"
                lines.append(line)
            output = "".join(lines)
            assert "dns1.networkutopia.com." in output and "127.212.212.1" in output
            assert f"--root-hints {hints} --upstream-port {port}" in output
            assert "a.root-servers.net.      3600000    A     127.41.0.4" in hints.read_text()
            query = DNSRecord.question("www.networkutopia.com")
            reply = DNSRecord.parse(query.send("127.212.212.1", port, timeout=TIMEOUT_S))
            assert str(reply.rr[0].rdata) == "212.212.212.2"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()


def test_lab_answers_dig(lab: Lab) -> None:
    """dig sees an authoritative answer, and the reverse lookup of 212.212.212.2."""
    base = [require_tool("dig"), "@127.212.212.1", "-p", str(lab.port), "+norec", "+tries=1",
            "+time=2"]
    forward = subprocess.run(
        [*base, "www.networkutopia.com", "A"], capture_output=True, text=True, timeout=10
    )
    assert "status: NOERROR" in forward.stdout and "flags: qr aa;" in forward.stdout
    assert "212.212.212.2" in forward.stdout
    reverse = subprocess.run(
        [*base, "+short", "-x", "212.212.212.2"], capture_output=True, text=True, timeout=10
    )
    assert reverse.stdout.strip() == "www.networkutopia.com."
    tcp_big = subprocess.run(
        ["dig", "@127.0.2.54", "-p", str(lab.port), "+norec", "+tries=1", "+time=2", "+noedns",
         "+short", "big.example.test", "TXT"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert len(tcp_big.stdout.splitlines()) == 8  # truncated over UDP, dig retried over TCP
