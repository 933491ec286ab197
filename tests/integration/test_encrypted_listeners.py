"""DoT, DoH and DoQ listeners against real clients on loopback, with a throwaway CA.

kdig (+tls, +https, +https-get), dig (+tls, +https, +http-plain), curl --doh-url, aioquic's
QUIC client and h2 as an HTTP/2 client, against one `resolver serve` iterating the lab. The
access list, the connection limits, the idle timeout, padding and certificate reloads are
checked from the outside, as a client sees them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import http.server
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from tests.conftest import require_tool
from tests.integration.conftest import RESOLVER, RunningLab, _free_port, _wait_for_udp_dns
from tests.support.processes import stop_process
from tests.support.unbound import CertificateFiles, make_certificates

pytestmark = pytest.mark.integration

IP = "127.0.0.1"
REFUSED_IP = "127.0.0.2"  # the access list answers it REFUSED
DENIED_IP = "127.0.0.3"  # the access list drops it
NAME = "dns.test"
WEB_NAME = "web.encrypted.test."  # local data pointing at a test web server on IP


@dataclass(frozen=True)
class Encrypted:
    udp: int
    tls: int
    https: int
    http: int
    quic: int
    certs: CertificateFiles
    process: subprocess.Popen[str]
    log: Path
    web_port: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_udp_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _wait_for_tcp(port: int, proc: subprocess.Popen[str], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the resolver exited"
        try:
            socket.create_connection((IP, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {IP}:{port}")


class _Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"reached through DoH\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((IP, 0), _Web)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def start_encrypted(lab: RunningLab, directory: Path, web_port: int, *extra: str
                    ) -> Encrypted:
    certs = make_certificates(directory / "certs", server_name=NAME, ip=IP)
    udp, tls, https, http_port = (_free_port(IP) for _ in range(4))
    quic = _free_udp_port(IP)
    log = directory / "serve.log"
    proc = subprocess.Popen(
        [*RESOLVER, "serve", "--listen", f"{IP}:{udp}", "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port), "--control-socket", str(directory / "control.sock"),
         "--listen-tls", f"{IP}:{tls}", "--listen-https", f"{IP}:{https}",
         "--listen-http", f"{IP}:{http_port}", "--listen-quic", f"{IP}:{quic}",
         "--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file),
         "--access-control", f"{REFUSED_IP}/32 refuse",
         "--access-control", f"{DENIED_IP}/32 deny",
         "--local-data", f"{WEB_NAME} A {IP}", "--log-queries", *extra],
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
    return Encrypted(udp=udp, tls=tls, https=https, http=http_port, quic=quic, certs=certs,
                     process=proc, log=log, web_port=web_port)


@pytest.fixture(scope="module")
def server(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory, web: int
           ) -> Iterator[Encrypted]:
    running = start_encrypted(lab, tmp_path_factory.mktemp("encrypted"), web,
                              "--tls-max-connections-per-client", "8")
    try:
        yield running
    finally:
        stop_process(running.process)


def kdig(server: Encrypted, *args: str) -> str:
    tool = require_tool("kdig")
    done = subprocess.run(
        [tool, f"@{IP}", f"+tls-ca={server.certs.ca_file}", f"+tls-hostname={NAME}",
         "+timeout=5", "+retry=0", *args],
        capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def dig(server: Encrypted, *args: str) -> str:
    tool = require_tool("dig")
    done = subprocess.run(
        [tool, f"@{IP}", f"+tls-ca={server.certs.ca_file}", f"+tls-hostname={NAME}",
         "+time=5", "+tries=1", *args], capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def client_context(server: Encrypted, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.certs.ca_file))
    context.set_alpn_protocols(alpn)
    return context


def wire_query(name: str, *, qid: int = 0, padding: bool = False) -> bytes:
    record = DNSRecord.question(name)
    record.header.id = qid
    record.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(12, bytes(16))] if padding else []))
    return bytes(record.pack())


def doh_post(server: Encrypted, wire: bytes, *, source: str = IP, port: int | None = None,
             tls: bool = True, path: str = "/dns-query",
             content_type: str = "application/dns-message") -> http.client.HTTPResponse:
    port = port or (server.https if tls else server.http)
    connection: http.client.HTTPConnection
    if tls:  # the certificate names IP too
        connection = http.client.HTTPSConnection(
            IP, port, timeout=10, source_address=(source, 0),
            context=client_context(server, ["http/1.1"]))
    else:
        connection = http.client.HTTPConnection(IP, port, timeout=10,
                                                source_address=(source, 0))
    connection.request("POST", path, body=wire, headers={"content-type": content_type})
    return connection.getresponse()


# -- real clients --------------------------------------------------------------------------


def test_kdig_over_tls_gets_the_answer_padded_to_468_octets(server: Encrypted) -> None:
    out = kdig(server, "-p", str(server.tls), "+tls", "www.networkutopia.com")
    assert "status: NOERROR" in out, out
    assert "212.212.212.2" in out
    assert "Received 468 B" in out and "PADDING:" in out, out
    assert " dot www.networkutopia.com. A NOERROR" in server.log_text()


@pytest.mark.parametrize("method", ["+https", "+https-get"])
def test_kdig_over_https_post_and_get_over_http2(server: Encrypted, method: str) -> None:
    out = kdig(server, "-p", str(server.https), method, "www.ibm.com")
    assert "HTTP/2" in out and "status: 200" in out, out
    assert "servereast.backup2.ibm.com." in out and "129.42.60.216" in out
    assert "Received 468 B" in out, out


def test_dig_over_tls(server: Encrypted) -> None:
    out = dig(server, "-p", str(server.tls), "+tls", "www.crepes.fr")
    assert "status: NOERROR" in out and "(TLS)" in out, out
    assert "\tA\t" in out


def test_dig_over_https_and_plain_http(server: Encrypted) -> None:
    out = dig(server, "-p", str(server.https), "+https", "hamburger.edu", "MX")
    assert "status: NOERROR" in out and "(HTTPS)" in out, out
    assert "MX" in out and "mail.hamburger.edu." in out
    plain = dig(server, "-p", str(server.http), "+http-plain", "www.hamburger.edu")
    assert "status: NOERROR" in plain and "(HTTP)" in plain, plain


def test_curl_resolves_through_doh_url_and_reaches_the_site(server: Encrypted) -> None:
    curl = require_tool("curl")
    url = f"http://{WEB_NAME.rstrip('.')}:{server.web_port}/"
    done = subprocess.run(
        [curl, "-sS", "--max-time", "10", "--noproxy", "*", "--cacert",
         str(server.certs.ca_file), "--doh-url", f"https://{NAME}:{server.https}/dns-query",
         "--resolve", f"{NAME}:{server.https}:{IP}", url],
        capture_output=True, text=True, timeout=20)
    assert done.stdout == "reached through DoH\n", done.stderr
    assert f" doh {WEB_NAME} A NOERROR" in server.log_text()


def test_doq_answers_with_aioquic_client_and_message_id_0(server: Encrypted) -> None:
    reply = asyncio.run(doq_exchange(server, wire_query("www.cnn.com", padding=True)))
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == 0 and parsed.header.rcode == 0
    assert len(parsed.rr) >= 1
    assert len(reply) % 468 == 0  # the query was padded, so the reply is (RFC 8467)


def test_doq_query_with_nonzero_id_closes_the_connection_with_protocol_error(
        server: Encrypted) -> None:
    code = asyncio.run(doq_error(server, wire_query("www.cnn.com", qid=4242)))
    assert code == 0x2  # DOQ_PROTOCOL_ERROR (RFC 9250 §4.2.1)


async def doq_exchange(server: Encrypted, wire: bytes, *, source: str = IP) -> bytes:
    """One query over a new DoQ connection from `source`, with aioquic's client protocol."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    configuration = QuicConfiguration(is_client=True, alpn_protocols=["doq"],
                                      server_name=NAME)
    configuration.load_verify_locations(str(server.certs.ca_file))
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: QuicConnectionProtocol(QuicConnection(configuration=configuration)),
        local_addr=(source, 0))
    try:
        async with asyncio.timeout(10):
            protocol.connect((IP, server.quic))
            await protocol.wait_connected()
            reader, writer = await protocol.create_stream()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            writer.write_eof()
            data = await reader.read()
            protocol.close()
            await protocol.wait_closed()
    finally:
        transport.close()
    assert int.from_bytes(data[:2], "big") == len(data) - 2
    return data[2:]


async def doq_error(server: Encrypted, wire: bytes) -> int | None:
    from aioquic.asyncio.client import connect
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ConnectionTerminated

    configuration = QuicConfiguration(is_client=True, alpn_protocols=["doq"],
                                      server_name=NAME)
    configuration.load_verify_locations(str(server.certs.ca_file))
    async with asyncio.timeout(10), connect(IP, server.quic,
                                            configuration=configuration) as protocol:
        terminated: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        handle = protocol.quic_event_received

        def watch(event: object) -> None:
            if isinstance(event, ConnectionTerminated) and not terminated.done():
                terminated.set_result(event.error_code)
            handle(event)  # type: ignore[arg-type]

        protocol.quic_event_received = watch  # type: ignore[method-assign]
        _, writer = await protocol.create_stream()
        writer.write(len(wire).to_bytes(2, "big") + wire)
        writer.write_eof()
        return await terminated


# -- HTTP rules ----------------------------------------------------------------------------


def test_doh_response_carries_cache_control_max_age_from_the_smallest_ttl(
        server: Encrypted) -> None:
    response = doh_post(server, wire_query("www.networkutopia.com"))
    body = response.read()
    assert response.status == 200
    assert response.getheader("content-type") == "application/dns-message"
    max_age = int(response.getheader("cache-control", "").removeprefix("max-age="))
    ttls = [rr.ttl for rr in DNSRecord.parse(body).rr]
    assert ttls and max_age == min(ttls) and 0 < max_age <= 3600


def test_doh_over_http11_get_is_answered(server: Encrypted) -> None:
    encoded = base64.urlsafe_b64encode(wire_query("www.crepes.fr")).decode().rstrip("=")
    connection = http.client.HTTPConnection(IP, server.http, timeout=10)
    connection.request("GET", f"/dns-query?dns={encoded}",
                       headers={"accept": "application/dns-message"})
    response = connection.getresponse()
    assert response.status == 200
    assert DNSRecord.parse(response.read()).header.rcode == 0


def test_doh_post_with_wrong_content_type_is_415_and_other_paths_404(
        server: Encrypted) -> None:
    wire = wire_query("www.crepes.fr")
    assert doh_post(server, wire, tls=False, content_type="text/plain").status == 415
    assert doh_post(server, wire, tls=False, path="/other").status == 404


def test_doh_request_above_65535_octets_is_413(server: Encrypted) -> None:
    assert doh_post(server, b"\x00" * 70_000, tls=False).status == 413


def test_http2_connection_advertises_the_stream_limit(server: Encrypted) -> None:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    context = client_context(server, ["h2"])
    with socket.create_connection((IP, server.https), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=NAME) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        tls.sendall(connection.data_to_send())
        settings = None
        while settings is None:
            for event in connection.receive_data(tls.recv(65536)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings = event.changed_settings
    limit = settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value
    assert limit == 100


# -- access list and limits ----------------------------------------------------------------


def test_refused_client_over_doh_gets_refused(server: Encrypted) -> None:
    response = doh_post(server, wire_query("www.networkutopia.com"), source=REFUSED_IP)
    assert response.status == 200
    reply = DNSRecord.parse(response.read())
    assert reply.header.rcode == 5  # REFUSED
    assert reply.header.ra == 1 and not reply.rr


def test_refused_client_over_doq_gets_refused(server: Encrypted) -> None:
    reply = asyncio.run(doq_exchange(server, wire_query("www.crepes.fr"), source=REFUSED_IP))
    assert DNSRecord.parse(reply).header.rcode == 5  # REFUSED


def test_refused_client_over_dot_gets_refused(server: Encrypted) -> None:
    out = kdig(server, "-p", str(server.tls), "+tls", "-b", REFUSED_IP, "www.crepes.fr")
    assert "status: REFUSED" in out, out


def test_denied_client_is_closed_before_the_tls_handshake(server: Encrypted) -> None:
    with socket.create_connection((IP, server.tls), timeout=5,
                                  source_address=(DENIED_IP, 0)) as sock:
        sock.settimeout(5)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
    assert data == b""  # closed at once, no ServerHello


def test_connections_beyond_the_per_client_limit_are_closed_at_once(
        server: Encrypted) -> None:
    held = [socket.create_connection((IP, server.tls), source_address=("127.0.0.9", 0))
            for _ in range(8)]
    try:
        time.sleep(0.2)
        with socket.create_connection((IP, server.tls), timeout=5,
                                      source_address=("127.0.0.9", 0)) as extra:
            extra.settimeout(5)
            try:
                data = extra.recv(100)
            except ConnectionResetError:
                data = b""
        assert data == b""
        # another address still gets in
        out = kdig(server, "-p", str(server.tls), "+tls", "-b", "127.0.0.10", "www.crepes.fr")
        assert "status: NOERROR" in out, out
    finally:
        for sock in held:
            sock.close()


def test_closed_doq_connections_give_back_their_slot(server: Encrypted) -> None:
    """Twelve DoQ connections one after another from one address, whose cap is 8: each
    closed connection frees its slot."""
    for _ in range(12):
        reply = asyncio.run(doq_exchange(server, wire_query("www.crepes.fr"),
                                         source="127.0.0.11"))
        assert DNSRecord.parse(reply).header.rcode == 0


def test_slow_encrypted_clients_do_not_delay_udp_clients(server: Encrypted) -> None:
    """Many connections that never finish a handshake or a request, and one trickling an
    HTTP request a byte at a time: UDP answers keep coming at once."""
    slow = [socket.create_connection((IP, port), source_address=(f"127.0.1.{i}", 0))
            for i in range(1, 7) for port in (server.tls, server.https, server.http)]
    trickle = socket.create_connection((IP, server.http))
    try:
        query = wire_query("www.networkutopia.com", qid=7)
        worst = 0.0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2)
            for octet in b"POST /dns-query HTTP/1.1\r\nhost: x\r\n":
                trickle.send(bytes([octet]))
                started = time.monotonic()
                udp.sendto(query, (IP, server.udp))
                assert DNSRecord.parse(udp.recv(4096)).header.id == 7
                worst = max(worst, time.monotonic() - started)
        assert worst < 0.2, f"a UDP answer took {worst * 1000:.0f} ms"
    finally:
        trickle.close()
        for sock in slow:
            sock.close()


IDLE_CONNECTIONS = 1000


async def _open_idle_tls(running: Encrypted, count: int) -> list[
        tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`count` DoT connections, handshakes done, nothing sent; 25 handshakes at a time."""
    context = client_context(running, ["dot"])
    gate = asyncio.Semaphore(25)

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            return await asyncio.wait_for(asyncio.open_connection(
                IP, running.tls, ssl=context, server_hostname=NAME), 20)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _ask_on_each(connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
                       ) -> list[int]:
    """One query on every connection (RFC 7858 framing); the rcode of each reply."""
    async def ask(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                  ) -> int:
        wire = wire_query("www.networkutopia.com", qid=index)
        writer.write(len(wire).to_bytes(2, "big") + wire)
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 20), "big")
        reply = DNSRecord.parse(await asyncio.wait_for(reader.readexactly(length), 20))
        assert reply.header.id == index
        return int(reply.header.rcode)

    return list(await asyncio.gather(*(ask(i, r, w) for i, (r, w) in enumerate(connections))))


def test_a_thousand_idle_tls_connections_leave_every_udp_client_answered(
        lab: RunningLab, tmp_path: Path, web: int) -> None:
    """1,000 DoT connections opened and then held silent, while a UDP client keeps asking:
    every UDP query is answered, and all 1,000 connections are still open at the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * IDLE_CONNECTIONS  # our client ends, the server's ends, and some to spare
    if soft < wanted:  # the resolver started below inherits it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    limit = str(IDLE_CONNECTIONS + 10)
    running = start_encrypted(lab, tmp_path, web, "--tls-max-connections", limit,
                              "--tls-max-connections-per-client", limit,
                              "--tls-idle-timeout", "120")
    udp_answers: list[int] = []
    udp_missing: list[int] = []
    stop = threading.Event()

    def ask_over_udp() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(3)
            qid = 0
            while not stop.is_set():
                qid = (qid + 1) & 0xFFFF
                udp.sendto(wire_query("www.networkutopia.com", qid=qid), (IP, running.udp))
                try:
                    while DNSRecord.parse(udp.recv(4096)).header.id != qid:
                        pass
                    udp_answers.append(qid)
                except TimeoutError:
                    udp_missing.append(qid)
                time.sleep(0.005)

    asker = threading.Thread(target=ask_over_udp, daemon=True)

    async def hold() -> list[int]:
        connections = await _open_idle_tls(running, IDLE_CONNECTIONS)
        try:
            await asyncio.sleep(2)  # held idle, the UDP client still asking
            return await _ask_on_each(connections)  # each one still open and served
        finally:
            for _reader, writer in connections:
                writer.close()

    try:
        asker.start()
        rcodes = asyncio.run(hold())
        stop.set()
        asker.join(10)
    finally:
        stop.set()
        stop_process(running.process)
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert rcodes == [0] * IDLE_CONNECTIONS
    assert udp_missing == [] and len(udp_answers) > 20


def test_idle_encrypted_connection_is_closed_after_the_idle_timeout(
        lab: RunningLab, tmp_path: Path, web: int) -> None:
    running = start_encrypted(lab, tmp_path, web, "--tls-idle-timeout", "1")
    try:
        context = client_context(running, ["dot"])
        with socket.create_connection((IP, running.tls), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            started = time.monotonic()
            tls.settimeout(10)
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):  # a close either way
                assert tls.recv(100) == b""
            waited = time.monotonic() - started
        assert 0.8 < waited < 5
    finally:
        stop_process(running.process)


def test_sighup_reloads_the_certificate(lab: RunningLab, tmp_path: Path, web: int) -> None:
    running = start_encrypted(lab, tmp_path, web)
    try:
        new = make_certificates(tmp_path / "new", server_name=NAME, ip=IP)
        (Path(running.certs.cert_file)).write_bytes(Path(new.cert_file).read_bytes())
        (Path(running.certs.key_file)).write_bytes(Path(new.key_file).read_bytes())
        old_ca = ssl.create_default_context(cafile=str(running.certs.ca_file))
        new_ca = ssl.create_default_context(cafile=str(new.ca_file))
        with socket.create_connection((IP, running.tls), timeout=5) as raw, \
                old_ca.wrap_socket(raw, server_hostname=NAME):
            pass  # before SIGHUP: the old certificate
        running.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "certificate reloaded" not in running.log_text():
            assert time.monotonic() < deadline, running.log_text()
            time.sleep(0.05)
        with socket.create_connection((IP, running.tls), timeout=5) as raw, \
                new_ca.wrap_socket(raw, server_hostname=NAME) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(ssl.SSLCertVerificationError), \
                socket.create_connection((IP, running.tls), timeout=5) as raw, \
                old_ca.wrap_socket(raw, server_hostname=NAME):
            pass
    finally:
        stop_process(running.process)


def test_workers_share_the_encrypted_addresses(lab: RunningLab, tmp_path: Path,
                                              web: int) -> None:
    running = start_encrypted(lab, tmp_path, web, "--workers", "2")
    try:
        for _ in range(4):  # new connections, spread over both workers by the kernel
            out = kdig(running, "-p", str(running.tls), "+tls", "www.crepes.fr")
            assert "status: NOERROR" in out, out
        reply = asyncio.run(doq_exchange(running, wire_query("www.crepes.fr")))
        assert DNSRecord.parse(reply).header.rcode == 0
        assert running.log_text().count("DNS over TLS on") == 2
        assert running.log_text().count("DNS over QUIC on") == 1  # worker 0 only
    finally:
        stop_process(running.process)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused(server: Encrypted) -> None:
    context = client_context(server, ["dot"])
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)), \
            socket.create_connection((IP, server.tls), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=NAME):
        pass


def test_serve_refuses_tls_listener_without_certificate(lab: RunningLab) -> None:
    done = subprocess.run(
        [*RESOLVER, "serve", "--listen", f"{IP}:{_free_port(IP)}", "--root-hints",
         str(lab.hints), "--listen-tls", f"{IP}:{_free_port(IP)}"],
        capture_output=True, text=True, timeout=20)
    assert done.returncode != 0
    assert "--tls-cert" in done.stderr and "Traceback" not in done.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_garbage_on_every_encrypted_way_in_leaves_the_server_answering(
        server: Encrypted) -> None:
    """Junk inside TLS, junk HTTP/1.1 and HTTP/2, junk QUIC datagrams: each connection ends,
    nothing in the log is a traceback, and the next real client is answered."""
    junk = bytes(range(256)) * 8
    context = client_context(server, ["dot"])
    with socket.create_connection((IP, server.tls), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=NAME) as tls:
        tls.sendall(b"\x00\x05abcde" + junk)  # a frame below a DNS header, then junk
        with contextlib.suppress(OSError, ssl.SSLError):
            assert tls.recv(100) == b""
    for opening in (b"GET /dns-query?dns=%%% HTTP/1.1\r\n\r\n", b"NOT HTTP AT ALL\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + junk):
        with socket.create_connection((IP, server.http), timeout=5) as sock:
            sock.sendall(opening)
            with contextlib.suppress(OSError):
                sock.recv(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for size in (1, 20, 1200):
            udp.sendto(junk[:size], (IP, server.quic))
    out = kdig(server, "-p", str(server.https), "+https", "www.networkutopia.com")
    assert "status: NOERROR" in out, out
    reply = asyncio.run(doq_exchange(server, wire_query("www.networkutopia.com")))
    assert DNSRecord.parse(reply).header.rcode == 0
    assert "Traceback" not in server.log_text()
