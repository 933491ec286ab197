"""SVCB RDATA (RFC 9460 §2.2) and the discovery answer of RFC 9462, read back by dnslib."""

from __future__ import annotations

import asyncio
import logging
import struct
import subprocess
from pathlib import Path

import dnslib
import pytest

from resolver.daemon.config import EncryptedSettings, ListenAddress
from resolver.daemon.encrypted import EncryptedListeners
from resolver.dns.encoding import make_query
from resolver.dns.svcb import (
    SVCB_TYPE,
    ServiceBinding,
    SvcbError,
    SvcParamKey,
    alpn_ids,
    alpn_value,
    decode_svcb,
    dohpath_value,
    encode_svcb,
    port_value,
)
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.network import Transport
from resolver.server.client import Client
from resolver.server.discovery import (
    DISCOVERY_NAME,
    EncryptedEndpoint,
    ResolverDiscovery,
    service_bindings,
)
from resolver.server.handler import QueryHandler
from resolver.server.local_zones import LocalZones
from tests.support.labnet import FakeClock, LabNetwork, lab_service
from tests.support.unbound import make_certificates


def dnslib_view(rdata: bytes) -> tuple[int, str, list[tuple[int, bytes]]]:
    """Priority, target and (key, value) pairs as dnslib's SVCB/HTTPS parser reads them."""
    parsed = dnslib.HTTPS.parse(dnslib.DNSBuffer(rdata), len(rdata))
    target = ".".join(bytes(label).decode() for label in parsed.target) + "."
    return parsed.priority, target, [(key, bytes(value)) for key, value in parsed.params]


def rdata_octets(rdata: dnslib.RD) -> bytes:
    """The RDATA as octets, whichever dnslib class parsed it (other tests register SVCB)."""
    buffer = dnslib.DNSBuffer()
    rdata.pack(buffer)
    return bytes(buffer.data)


def test_encoded_rdata_is_priority_uncompressed_target_then_params_in_key_order() -> None:
    binding = ServiceBinding(priority=2, target="dns.example.", params={
        SvcParamKey.DOHPATH: dohpath_value("/dns-query{?dns}"),
        SvcParamKey.PORT: port_value(8443),
        SvcParamKey.ALPN: alpn_value(["h2"]),
    })
    rdata = encode_svcb(binding)
    assert rdata == (b"\x00\x02" + b"\x03dns\x07example\x00"
                     + b"\x00\x01\x00\x03\x02h2"
                     + b"\x00\x03\x00\x02" + struct.pack("!H", 8443)
                     + b"\x00\x07\x00\x10/dns-query{?dns}")
    assert dnslib_view(rdata) == (2, "dns.example.", [
        (1, b"\x02h2"), (3, struct.pack("!H", 8443)), (7, b"/dns-query{?dns}")])


def test_decoding_an_encoded_binding_gives_it_back() -> None:
    binding = ServiceBinding(priority=1, target="dns.example.",
                             params={SvcParamKey.ALPN: alpn_value(["dot"]),
                                     SvcParamKey.PORT: port_value(853)})
    back = decode_svcb(encode_svcb(binding))
    assert back == binding
    assert (back.alpn, back.port, back.dohpath) == (("dot",), 853, None)


def test_alpn_value_holds_each_protocol_length_prefixed() -> None:
    assert alpn_value(["h2", "http/1.1"]) == b"\x02h2\x08http/1.1"
    assert alpn_ids(b"\x02h2\x08http/1.1") == ("h2", "http/1.1")


@pytest.mark.parametrize("protocols", [[], [""], ["x" * 256]])
def test_alpn_value_without_a_usable_protocol_is_refused(protocols: list[str]) -> None:
    with pytest.raises(SvcbError):
        alpn_value(protocols)


def test_dohpath_without_the_dns_variable_is_refused() -> None:
    with pytest.raises(SvcbError):
        dohpath_value("/dns-query")  # RFC 9461 §5: the template has a "dns" variable


def test_alias_mode_with_params_is_refused() -> None:
    with pytest.raises(SvcbError):
        encode_svcb(ServiceBinding(priority=0, target="x.", params={1: b"\x02h2"}))


@pytest.mark.parametrize("rdata", [
    b"\x00\x01\x00" + b"\x00\x03\x00\x02\x03\x55" + b"\x00\x01\x00\x03\x02h2",  # keys descend
    b"\x00\x01\x00" + b"\x00\x03\x00\x02\x03\x55" * 2,  # a key repeated
    b"\x00\x01\xc0\x0c",  # a compressed target
    b"\x00\x01\x00" + b"\x00\x01\x00\x09\x02h2",  # a value past the end
    b"\x00\x01\x03dns",  # a target with no end
])
def test_decoding_rdata_that_breaks_rfc9460_raises(rdata: bytes) -> None:
    with pytest.raises(SvcbError):
        decode_svcb(rdata)


ENDPOINTS = [EncryptedEndpoint(alpn="dot", port=853),
             EncryptedEndpoint(alpn="h2", port=443, https_path="/dns-query"),
             EncryptedEndpoint(alpn="doq", port=8853)]


def test_each_endpoint_is_one_service_mode_binding_in_priority_order() -> None:
    bindings = service_bindings("dns.example.", ENDPOINTS)
    assert [(b.priority, b.target, b.alpn, b.port, b.dohpath) for b in bindings] == [
        (1, "dns.example.", ("dot",), 853, None),
        (2, "dns.example.", ("h2",), 443, "/dns-query{?dns}"),
        (3, "dns.example.", ("doq",), 8853, None),
    ]


UDP = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)


def ask(discovery: ResolverDiscovery | None, rtype: int = SVCB_TYPE,
        name: str = "_DNS.Resolver.Arpa.") -> dnslib.DNSRecord:
    clock = FakeClock()
    handler = QueryHandler(lab_service(clock, LabNetwork(clock)), local_zones=LocalZones())
    handler.discovery = discovery
    reply = asyncio.run(handler.handle(
        make_query(Question(name, rtype), query_id=9, recursion_desired=True), UDP))
    assert reply is not None
    return dnslib.DNSRecord.parse(reply)


def test_discovery_query_is_answered_with_one_svcb_record_per_endpoint() -> None:
    reply = ask(ResolverDiscovery("Dns.Example", ENDPOINTS))
    assert reply.header.rcode == Rcode.NOERROR
    assert [(str(rr.rname), rr.rtype) for rr in reply.rr] == [("_DNS.Resolver.Arpa.", 64)] * 3
    bindings = [decode_svcb(rdata_octets(rr.rdata)) for rr in reply.rr]
    assert [(b.target, b.alpn, b.port) for b in bindings] == [
        ("dns.example.", ("dot",), 853), ("dns.example.", ("h2",), 443),
        ("dns.example.", ("doq",), 8853)]


def test_other_types_at_the_discovery_name_are_nodata() -> None:
    reply = ask(ResolverDiscovery("dns.example.", ENDPOINTS), rtype=RRType.A)
    assert reply.header.rcode == Rcode.NOERROR and not reply.rr
    assert [str(rr.rname).lower() for rr in reply.auth] == ["resolver.arpa."]


def test_with_no_tls_name_the_discovery_query_is_nodata() -> None:
    reply = ask(ResolverDiscovery(None, ENDPOINTS))  # RFC 9462 §4: NODATA, no designation
    assert reply.header.rcode == Rcode.NOERROR and not reply.rr and reply.auth


def test_other_names_under_resolver_arpa_stay_with_the_local_zone() -> None:
    reply = ask(ResolverDiscovery("dns.example.", ENDPOINTS), name="x._dns.resolver.arpa.")
    assert reply.header.rcode == Rcode.NXDOMAIN


def test_discovery_name_is_the_rfc9462_one() -> None:
    assert DISCOVERY_NAME == "_dns.resolver.arpa."


def _listeners(tmp_path: Path, tls_name: str | None, san: str | None) -> EncryptedListeners:
    """Listeners that are built but never started: the configured ports are announced."""
    certs = make_certificates(tmp_path, server_name=san or "unused.test", ip="127.0.0.1")
    if san is None:  # a certificate with no DNS name in its subjectAltName
        ext = tmp_path / "server.ext"
        ext.write_text(ext.read_text().replace("DNS:unused.test,", ""))
        subprocess.run(["openssl", "x509", "-req", "-in", str(tmp_path / "server.csr"),
                        "-CA", str(certs.ca_file), "-CAkey", str(tmp_path / "ca.key"),
                        "-out", str(certs.cert_file), "-days", "2", "-extfile", str(ext)],
                       check=True, capture_output=True, timeout=30)
    settings = EncryptedSettings(
        listen_tls=(ListenAddress.parse("127.0.0.1:8853", default_port=853),),
        listen_https=(ListenAddress.parse("127.0.0.1:8443", default_port=443),),
        listen_http=(ListenAddress.parse("127.0.0.1:8080", default_port=80),),
        tls_cert=str(certs.cert_file), tls_key=str(certs.key_file), tls_name=tls_name,
        https_path="/q")
    clock = FakeClock()
    return EncryptedListeners(QueryHandler(lab_service(clock, LabNetwork(clock))), settings)


def test_target_is_the_certificates_first_dns_name_when_no_tls_name_is_given(
        tmp_path: Path) -> None:
    discovery = _listeners(tmp_path, None, "dns.test").discovery()
    assert discovery.target == "dns.test."
    bindings = [decode_svcb(rdata_octets(record.rdata)) for record in discovery.records]
    # The plain-HTTP listener sits behind a proxy: not announced.
    assert [(b.alpn, b.port, b.dohpath) for b in bindings] == [
        (("dot",), 8853, None), (("h2",), 8443, "/q{?dns}")]


def test_tls_name_wins_over_the_certificates_name(tmp_path: Path) -> None:
    assert _listeners(tmp_path, "other.test.", "dns.test").discovery().target == "other.test."


def test_no_name_known_announces_nothing_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="resolver"):
        discovery = _listeners(tmp_path, None, None).discovery()
    assert discovery.records == ()
    assert [r.message for r in caplog.records if "_dns.resolver.arpa" in r.message] == [
        "no --tls-name and no DNS name in the certificate: the encrypted endpoints are not "
        "announced at _dns.resolver.arpa (RFC 9462)"]


def test_config_file_tls_name_must_be_a_domain_name(tmp_path: Path) -> None:
    from resolver.daemon import config_file

    values = config_file.check_table({"tls-name": "dns.example"}, source="t.toml",
                                     base=tmp_path)
    assert values["tls_name"] == "dns.example"
    with pytest.raises(config_file.ConfigFileError, match="'tls-name'"):
        config_file.check_table({"tls-name": "a..b"}, source="t.toml", base=tmp_path)


def test_tls_name_reaches_the_encrypted_settings_canonical() -> None:
    from resolver.cli.encrypted_options import with_encrypted_options
    from resolver.daemon.config import ServeConfig

    config = with_encrypted_options(ServeConfig(), {
        "listen_tls": ("127.0.0.1",), "tls_cert": "c.pem", "tls_key": "k.pem",
        "tls_name": "Dns.Example"})
    assert config.encrypted.tls_name == "dns.example."
