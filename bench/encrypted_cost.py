#!/usr/bin/env python3
"""What each way in costs the server per cached query, and per new connection: CPU time.

Starts the lab and one `resolver serve` with every listener (UDP/TCP, DoT, DoH over HTTP/2
and HTTP/1.1, DoQ) on loopback with a throwaway certificate, warms one name, then for each
transport asks it QUERIES times over one connection, one query after the other, and reads the
server's CPU time (utime + stime from /proc) before and after: CPU µs per query. Then
CONNECTIONS new connections with one query each: CPU µs per connection (handshake included).
The clients run in this process, so their CPU is not counted. It is a measurement, not a
test: nothing asserts on the figures.

Usage: bench/encrypted_cost.py [--queries N] [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import (  # noqa: E402
    RESOLVER,
    _free_port,
    _wait_for_udp_dns,
)
from tests.support.processes import stop_process  # noqa: E402
from tests.support.unbound import make_certificates  # noqa: E402

IP = "127.0.0.1"
NAME = "www.networkutopia.com"


def query_wire(qid: int = 0) -> bytes:
    from dnslib import DNSRecord

    record = DNSRecord.question(NAME)
    record.header.id = qid
    return bytes(record.pack())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, count: int, run: Callable[[], None]) -> float:
    before = cpu_seconds(pid)
    run()
    return (cpu_seconds(pid) - before) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="resolver-encrypted-bench-"))
    certs = make_certificates(work / "certs", server_name="dns.test", ip=IP)
    hints = work / "lab.hints"
    lab_port = _free_port("127.41.0.4")
    lab = subprocess.Popen([*RESOLVER, "lab", "--hints-file", str(hints), "--port",
                            str(lab_port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = None
    try:
        _wait_for_udp_dns("127.41.0.4", lab_port, lab)  # type: ignore[arg-type]
        udp, tls, https, quic = (_free_port(IP) for _ in range(4))
        server = subprocess.Popen(
            ["timeout", "600", *RESOLVER, "serve", "--listen", f"{IP}:{udp}", "--root-hints",
             str(hints), "--upstream-port", str(lab_port),
             "--control-socket", str(work / "c.sock"),
             "--listen-tls", f"{IP}:{tls}", "--listen-https", f"{IP}:{https}",
             "--listen-quic", f"{IP}:{quic}", "--tls-cert", str(certs.cert_file),
             "--tls-key", str(certs.key_file), "--tls-max-connections-per-client", "1000",
             "--tls-max-connections", "5000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_for_udp_dns(IP, udp, server)  # type: ignore[arg-type]
        time.sleep(0.5)
        pid = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
        context = ssl.create_default_context(cafile=str(certs.ca_file))
        wire = query_wire()
        clients = Clients(wire, context, udp=udp, tls=tls, https=https, quic=quic)
        clients.udp(10)  # warm the cache
        rows: list[tuple[str, float, float | None]] = []
        n, c = args.queries, args.connections
        for label, per_query, per_connection in (
            ("UDP", clients.udp, None),
            ("TCP", clients.tcp, clients.tcp_connections),
            ("DoT", clients.dot, clients.dot_connections),
            ("DoH HTTP/1.1", clients.doh1, clients.doh1_connections),
            ("DoH HTTP/2", clients.doh2, clients.doh2_connections),
            ("DoQ", clients.doq, clients.doq_connections),
        ):
            query_cost = measure(pid, n, lambda f=per_query: f(n))  # type: ignore[misc]
            connection_cost = (measure(pid, c, lambda f=per_connection: f(c))  # type: ignore[misc]
                               if per_connection is not None else None)
            rows.append((label, query_cost, connection_cost))
        print(f"| way in | CPU µs per cached query ({n} on one connection) | "
              f"CPU µs per new connection with one query ({c}) |")
        print("|---|---|---|")
        for label, query_cost, connection_cost in rows:
            print(f"| {label} | {query_cost:.0f} | "
                  f"{'-' if connection_cost is None else f'{connection_cost:.0f}'} |")
    finally:
        if server is not None:
            stop_process(server)  # type: ignore[arg-type]
        stop_process(lab)  # type: ignore[arg-type]


class Clients:
    """One client per transport, each asking the same cached question `count` times."""

    def __init__(self, wire: bytes, context: ssl.SSLContext, *, udp: int, tls: int,
                 https: int, quic: int) -> None:
        self.wire, self.context = wire, context
        self.ports = {"udp": udp, "tls": tls, "https": https, "quic": quic}

    def udp(self, count: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            for _ in range(count):
                sock.sendto(self.wire, (IP, self.ports["udp"]))
                sock.recv(4096)

    def _stream(self, sock: socket.socket, count: int) -> None:
        framed = len(self.wire).to_bytes(2, "big") + self.wire
        for _ in range(count):
            sock.sendall(framed)
            size = int.from_bytes(_exactly(sock, 2), "big")
            _exactly(sock, size)

    def tcp(self, count: int) -> None:
        with socket.create_connection((IP, self.ports["udp"])) as sock:
            self._stream(sock, count)

    def tcp_connections(self, count: int) -> None:
        for _ in range(count):
            self.tcp(1)

    def dot(self, count: int) -> None:
        with socket.create_connection((IP, self.ports["tls"])) as raw, \
                self.context.wrap_socket(raw, server_hostname=IP) as sock:
            self._stream(sock, count)

    def dot_connections(self, count: int) -> None:
        for _ in range(count):
            self.dot(1)

    def doh1(self, count: int) -> None:
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=_ca_text(self.context))
        context.set_alpn_protocols(["http/1.1"])
        connection = http.client.HTTPSConnection(IP, self.ports["https"], context=context)
        for _ in range(count):
            connection.request("POST", "/dns-query", body=self.wire,
                               headers={"content-type": "application/dns-message"})
            connection.getresponse().read()
        connection.close()

    def doh1_connections(self, count: int) -> None:
        for _ in range(count):
            self.doh1(1)

    def doh2(self, count: int) -> None:
        import h2.connection
        import h2.events

        context = ssl.create_default_context()
        context.load_verify_locations(cadata=_ca_text(self.context))
        context.set_alpn_protocols(["h2"])
        with socket.create_connection((IP, self.ports["https"])) as raw, \
                context.wrap_socket(raw, server_hostname=IP) as sock:
            # As curl and browsers do: no Nagle delay between our window update and the
            # next request.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = h2.connection.H2Connection()
            connection.initiate_connection()
            sock.sendall(connection.data_to_send())
            for _ in range(count):
                stream = connection.get_next_available_stream_id()
                connection.send_headers(stream, [
                    (":method", "POST"), (":path", "/dns-query"), (":scheme", "https"),
                    (":authority", IP), ("content-type", "application/dns-message")])
                connection.send_data(stream, self.wire, end_stream=True)
                sock.sendall(connection.data_to_send())
                ended = False
                while not ended:
                    for event in connection.receive_data(sock.recv(65536)):
                        if isinstance(event, h2.events.DataReceived):
                            connection.acknowledge_received_data(
                                event.flow_controlled_length, stream)
                        if isinstance(event, h2.events.StreamEnded):
                            ended = True
                    sock.sendall(connection.data_to_send())

    def doh2_connections(self, count: int) -> None:
        for _ in range(count):
            self.doh2(1)

    def doq(self, count: int) -> None:
        asyncio.run(self._doq(count, 1))

    def doq_connections(self, count: int) -> None:
        asyncio.run(self._doq(1, count))

    async def _doq(self, per_connection: int, connections: int) -> None:
        from aioquic.asyncio.client import connect
        from aioquic.quic.configuration import QuicConfiguration

        configuration = QuicConfiguration(is_client=True, alpn_protocols=["doq"],
                                          server_name="dns.test")
        configuration.load_verify_locations(cadata=_ca_text(self.context).encode())
        framed = len(self.wire).to_bytes(2, "big") + self.wire
        for _ in range(connections):
            async with connect(IP, self.ports["quic"], configuration=configuration) as proto:
                for _ in range(per_connection):
                    reader, writer = await proto.create_stream()
                    writer.write(framed)
                    writer.write_eof()
                    await reader.read()


def _ca_text(context: ssl.SSLContext) -> str:
    return "\n".join(ssl.DER_cert_to_PEM_cert(der)
                     for der in context.get_ca_certs(binary_form=True))


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


if __name__ == "__main__":
    main()
