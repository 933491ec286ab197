"""What the encrypted listeners decide without a socket: padding (RFC 7830, RFC 8467), DoH
requests and responses (RFC 8484), connection admission, certificate reloads."""

from __future__ import annotations

import base64
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RR, SOA, A, DNSRecord, EDNSOption

from resolver.dns.scanner import scan_message
from resolver.server.connection_limits import ConnectionGate, ConnectionLimits, Rejection
from resolver.server.doh_message import (
    DohQuery,
    HttpRefusal,
    cache_max_age,
    check_https_path,
    read_request,
    response_headers,
)
from resolver.server.padding import PADDING_OPTION, padded, query_asks_padding
from resolver.server.tls_context import CertificateError, CertificateFiles, ServerCertificates


def dns_query(name: str = "www.example.", *, padding: int | None = None, edns: bool = True
              ) -> bytes:
    record = DNSRecord.question(name)
    record.header.id = 0
    if edns:
        options = [EDNSOption(PADDING_OPTION, bytes(padding))] if padding is not None else []
        record.add_ar(EDNS0(udp_len=1232, opts=options))
    return bytes(record.pack())


def dns_reply(*ttls: int, edns: bool = True, soa_ttl: int | None = None) -> bytes:
    record = DNSRecord.question("www.example.").reply()
    for ttl in ttls:
        record.add_answer(RR("www.example.", QTYPE.A, rdata=A("192.0.2.1"), ttl=ttl))
    if soa_ttl is not None:
        record.add_auth(RR("example.", QTYPE.SOA, ttl=soa_ttl, rdata=SOA(
            "ns.example.", "admin.example.", (1, 3600, 600, 86400, 300))))
    if edns:
        record.add_ar(EDNS0(udp_len=1232))
    return bytes(record.pack())


# -- padding -------------------------------------------------------------------------------


def test_padded_reply_is_a_multiple_of_468_octets_with_a_padding_option() -> None:
    reply = dns_reply(300)
    out = padded(reply)
    assert len(out) % 468 == 0 and len(out) == 468
    scanned = scan_message(out)
    assert scanned.edns is not None
    codes = [code for code, _ in scanned.edns.options]
    assert codes == [PADDING_OPTION]
    assert scanned.edns.options[0][1] == bytes(len(out) - len(reply) - 4)
    assert out[: len(reply) - 2][:12] == reply[:12]  # header (counts included) unchanged


def test_reply_of_more_than_one_block_is_padded_to_the_next_block() -> None:
    out = padded(dns_reply(*range(300, 330)))
    assert len(out) % 468 == 0 and len(out) > 468


def test_reply_without_opt_is_never_padded() -> None:
    reply = dns_reply(300, edns=False)
    assert padded(reply) == reply


def test_garbage_is_returned_unchanged_by_padding() -> None:
    assert padded(b"\x00" * 5) == b"\x00" * 5


def test_only_queries_with_the_padding_option_ask_for_padding() -> None:
    assert query_asks_padding(dns_query(padding=100))
    assert not query_asks_padding(dns_query())
    assert not query_asks_padding(dns_query(edns=False))
    assert not query_asks_padding(b"\xff" * 3)


# -- DoH requests --------------------------------------------------------------------------


def b64url(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).decode().rstrip("=")


def test_get_carries_the_query_base64url_without_padding_in_dns() -> None:
    wire = dns_query()
    got = read_request("GET", f"/dns-query?dns={b64url(wire)}", None, b"",
                       path="/dns-query", max_octets=65535)
    assert got == DohQuery(wire)


def test_post_needs_content_type_dns_message() -> None:
    wire = dns_query()
    assert read_request("POST", "/dns-query", "application/dns-message", wire,
                        path="/dns-query", max_octets=65535) == DohQuery(wire)
    refused = read_request("POST", "/dns-query", "text/plain", wire, path="/dns-query",
                           max_octets=65535)
    assert isinstance(refused, HttpRefusal) and refused.status == 415


@pytest.mark.parametrize(("method", "target", "body", "status"), [
    ("GET", "/other?dns=AAAA", b"", 404),
    ("GET", "/dns-query", b"", 400),
    ("GET", "/dns-query?dns=***", b"", 400),
    ("GET", "/dns-query?dns=AAAA", b"", 400),  # three octets: no DNS header
    ("PUT", "/dns-query", b"x" * 20, 405),
    ("POST", "/dns-query", b"x" * 600, 413),
])
def test_bad_requests_get_an_http_error(method: str, target: str, body: bytes,
                                        status: int) -> None:
    got = read_request(method, target, "application/dns-message", body, path="/dns-query",
                       max_octets=512)
    assert isinstance(got, HttpRefusal) and got.status == status


def test_oversized_get_parameter_is_413_before_decoding() -> None:
    got = read_request("GET", "/dns-query?dns=" + "A" * 2000, None, b"", path="/dns-query",
                       max_octets=512)
    assert isinstance(got, HttpRefusal) and got.status == 413


def test_max_age_is_the_smallest_ttl_of_the_reply() -> None:
    assert cache_max_age(dns_reply(3600, 120, 900)) == 120
    assert cache_max_age(dns_reply(soa_ttl=60)) == 60  # negative answer: the SOA's TTL
    assert cache_max_age(dns_reply()) == 0  # no records: not to be cached


def test_response_headers_name_type_length_and_freshness() -> None:
    reply = dns_reply(42)
    assert dict(response_headers(reply)) == {
        "content-type": "application/dns-message", "content-length": str(len(reply)),
        "cache-control": "max-age=42"}


def test_https_path_must_be_a_plain_path() -> None:
    assert check_https_path("/resolve") == "/resolve"
    for bad in ("dns-query", "/a?b", "/a b"):
        with pytest.raises(ValueError):
            check_https_path(bad)


# -- connection admission ------------------------------------------------------------------


def test_gate_caps_connections_per_client_and_in_total() -> None:
    gate = ConnectionGate(ConnectionLimits(max_connections=3, max_per_client=2),
                          admits=lambda ip: True)
    assert gate.enter("127.0.0.1") is None
    assert gate.enter("127.0.0.1") is None
    assert gate.enter("127.0.0.1") is Rejection.PER_CLIENT
    assert gate.enter("127.0.0.2") is None
    assert gate.enter("127.0.0.3") is Rejection.TOTAL
    gate.leave("127.0.0.1")
    assert gate.enter("127.0.0.1") is None
    assert gate.rejected[Rejection.PER_CLIENT] == 1 and gate.rejected[Rejection.TOTAL] == 1
    assert gate.open_connections == 3


def test_gate_refuses_what_the_access_list_denies() -> None:
    gate = ConnectionGate(ConnectionLimits(), admits=lambda ip: ip != "192.0.2.9")
    assert gate.enter("192.0.2.9") is Rejection.ACCESS
    assert gate.open_connections == 0


# -- certificates --------------------------------------------------------------------------


def test_certificate_reload_that_fails_keeps_the_old_certificate(tmp_path: Path) -> None:
    from tests.support.unbound import make_certificates

    made = make_certificates(tmp_path / "a", server_name="dns.test", ip="127.0.0.1")
    files = CertificateFiles(cert_file=str(made.cert_file), key_file=str(made.key_file))
    certificates = ServerCertificates(files)
    context = certificates.context(["dot"])
    other = make_certificates(tmp_path / "b", server_name="dns.test", ip="127.0.0.1")
    mismatched = CertificateFiles(cert_file=str(made.cert_file), key_file=str(other.key_file))
    with pytest.raises(CertificateError, match="cannot use certificate"):
        certificates.reload(mismatched)
    assert certificates.files == files and certificates.reloads == 0
    certificates.reload(CertificateFiles(cert_file=str(other.cert_file),
                                         key_file=str(other.key_file)))
    assert certificates.reloads == 1 and certificates.files.key_file == str(other.key_file)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_missing_certificate_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no such file"):
        ServerCertificates(CertificateFiles(cert_file=str(tmp_path / "none.pem"),
                                            key_file=str(tmp_path / "none.key")))


def test_padding_keeps_the_message_parseable_by_a_stub() -> None:
    out = padded(dns_reply(300))
    parsed = DNSRecord.parse(out)
    assert [str(rr.rdata) for rr in parsed.rr] == ["192.0.2.1"]
    assert struct.unpack_from("!H", out, 10)[0] == 1  # still one additional record: the OPT


# -- configuration -------------------------------------------------------------------------


def test_config_file_sets_encrypted_listeners_with_paths_beside_the_file(tmp_path: Path) -> None:
    from resolver.daemon import config_file

    values = config_file.check_table(
        {"listen-tls": "127.0.0.1", "listen-https": ["127.0.0.1:8443"], "tls-cert": "c.pem",
         "tls-key": "k.pem", "https-path": "/q", "tls-idle-timeout": 3},
        source="t.toml", base=tmp_path)
    assert values["listen_tls"] == ("127.0.0.1",)
    assert values["tls_cert"] == str(tmp_path / "c.pem")
    with pytest.raises(config_file.ConfigFileError, match="'https-path'"):
        config_file.check_table({"https-path": "q"}, source="t.toml", base=tmp_path)


def test_command_line_encrypted_addresses_take_the_protocol_default_ports() -> None:
    from resolver.cli.encrypted_options import with_encrypted_options
    from resolver.daemon.config import ServeConfig

    config = with_encrypted_options(ServeConfig(), {
        "listen_tls": ("127.0.0.1",), "listen_https": ("[::1]",), "listen_http": (),
        "listen_quic": ("127.0.0.1",), "tls_cert": "c.pem", "tls_key": "k.pem"})
    encrypted = config.encrypted
    assert [a.port for a in encrypted.listen_tls] == [853]
    assert [a.port for a in encrypted.listen_https] == [443]
    assert [a.port for a in encrypted.listen_quic] == [853]
    assert encrypted.tls_cert == "c.pem" and encrypted.limits.max_per_client == 16


def test_a_server_without_encrypted_listeners_never_loads_the_http2_and_quic_stacks() -> None:
    """h2, aioquic and the TLS stack they pull in cost about 18 MB of RSS: a resolver that
    serves only UDP and TCP does not import them (in a fresh interpreter, so that other
    tests' imports do not count)."""
    code = (
        "import asyncio, sys\n"
        "from resolver.daemon.config import EncryptedSettings\n"
        "from resolver.daemon.startup import start_encrypted_listeners\n"
        "started = asyncio.run(start_encrypted_listeners(None, EncryptedSettings(), None))\n"
        "print(started, sorted(m for m in ('aioquic', 'h2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["None", "[]"]
