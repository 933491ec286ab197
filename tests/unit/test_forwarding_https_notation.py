"""DNS over HTTPS upstream URLs: how the operator writes them and how the engine carries them."""

from __future__ import annotations

import pytest

from resolver.engine.network import ServerAddress
from resolver.engine.settings import ForwardingSettings
from resolver.upstream.forwarding import (
    ForwardingError,
    configured_zones,
    parse_https_upstream,
    parse_upstream,
    parse_zone_upstreams,
)


def test_url_with_ip_host_port_and_path_names_the_ip_as_tls_name() -> None:
    assert parse_https_upstream("https://127.0.0.1:8443/dns-query") == ServerAddress(
        "127.0.0.1", 8443, tls_name="127.0.0.1", doh_path="/dns-query")


def test_url_without_port_or_path_is_443_and_dns_query() -> None:
    assert parse_https_upstream("https://[::1]") == ServerAddress(
        "::1", 443, tls_name="::1", doh_path="/dns-query")


def test_url_with_a_name_connects_to_the_address_after_the_hash() -> None:
    server = parse_https_upstream("https://DNS.Example:8443/q{?dns}#127.0.0.7")
    assert server == ServerAddress("127.0.0.7", 8443, tls_name="dns.example", doh_path="/q")


@pytest.mark.parametrize("text", [
    "https://dns.example/dns-query",  # a name and no address: nothing to connect to
    "http://127.0.0.1/dns-query",  # clear text is never an upstream transport
    "https://127.0.0.1/dns-query?dns=AAAB",  # queries are POSTed
    "https://user@127.0.0.1/dns-query",
    "https://127.0.0.1:99999/dns-query",
    "https://127.0.0.1/dns-query#not-an-ip",
    "https:///dns-query",
])
def test_unusable_urls_are_refused_with_a_forwarding_error(text: str) -> None:
    with pytest.raises(ForwardingError):
        parse_https_upstream(text)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:8443/dns-query",
    "https://[::1]:8443/a/b",
    "https://dns.example/dns-query#10.0.0.1",
])
def test_notation_of_a_doh_upstream_reads_back_as_the_same_server(url: str) -> None:
    server = parse_https_upstream(url)
    assert parse_upstream(server.notation()) == server


def test_forward_zone_entry_may_be_a_doh_url_beside_a_plain_address() -> None:
    zone, servers = parse_zone_upstreams(
        "corp.example=https://127.0.0.1:8443/dns-query,10.0.0.1")
    assert zone == "corp.example."
    assert servers == (ServerAddress("127.0.0.1", 8443, tls_name="127.0.0.1",
                                     doh_path="/dns-query"), ServerAddress("10.0.0.1", 53))


def test_forward_https_makes_the_root_a_forward_zone_after_the_others() -> None:
    zones = configured_zones(ForwardingSettings(
        forward=("127.0.0.1@5301",),
        forward_https=("https://127.0.0.2:8443/dns-query", "https://127.0.0.3/q")),
        default_port=53)
    root = zones["."]
    assert root.recursion_desired
    assert [a for ns in root.servers for a in ns.address_texts()] == [
        "127.0.0.1@5301", "127.0.0.2@8443#127.0.0.2/dns-query", "127.0.0.3@443#127.0.0.3/q"]


def test_doh_and_dot_to_the_same_address_stay_two_upstreams() -> None:
    dot = parse_upstream("127.0.0.1@853#dns.example")
    doh = parse_upstream("127.0.0.1@853#dns.example/dns-query")
    assert dot.doh_path is None and doh.doh_path == "/dns-query"
    assert dot != doh
