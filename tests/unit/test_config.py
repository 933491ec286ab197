"""Settings: listen addresses and the work limits (docs/reliability.md defaults)."""

from __future__ import annotations

import dataclasses

import pytest

from resolver.daemon.config import ListenAddress, ServeConfig
from resolver.engine.settings import CacheSettings, EngineSettings, Limits


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [
        ("127.0.0.1:5300", "127.0.0.1", 5300),
        ("127.0.0.1", "127.0.0.1", 53),
        ("[::1]:5300", "::1", 5300),
        ("[::1]", "::1", 53),
        ("::1", "::1", 53),
        ("  127.0.0.2:0  ", "127.0.0.2", 0),
        ("127.0.0.1:65535", "127.0.0.1", 65535),
    ],
)
def test_listen_address_parse_reads_ip_and_port(text: str, ip: str, port: int) -> None:
    """IPv4 with or without port, IPv6 bare or in brackets with a port."""
    assert ListenAddress.parse(text) == ListenAddress(ip=ip, port=port)


def test_listen_address_parse_uses_the_given_default_port() -> None:
    """Without a port the caller's default applies."""
    assert ListenAddress.parse("::1", default_port=5353).port == 5353
    assert ListenAddress.parse("127.0.0.1", default_port=5353).port == 5353


@pytest.mark.parametrize(
    "text",
    [
        "localhost:53",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:port",
        "127.0.0.1:",
        "[::1",
        "[::1]5300",
        "[::1]:99999",
        "300.0.0.1",
        "",
    ],
)
def test_listen_address_parse_refuses_bad_text(text: str) -> None:
    """Host names, bad ports and broken brackets are errors, not guesses."""
    with pytest.raises(ValueError):
        ListenAddress.parse(text)


def test_listen_address_str_round_trips() -> None:
    """str() writes the form parse() reads, with brackets for IPv6."""
    for text in ("127.0.0.1:5300", "[::1]:53"):
        address = ListenAddress.parse(text)
        assert str(address) == text
        assert ListenAddress.parse(str(address)) == address


def test_limits_defaults_follow_the_trusted_resolvers() -> None:
    """Default budgets are the peers' values (Unbound, BIND, PowerDNS)."""
    limits = Limits()
    assert limits.max_upstream_queries == 200
    assert limits.max_sends_per_name == 32
    assert limits.max_referrals == 130
    assert limits.max_cname_chain == 11
    assert limits.max_dependency_depth == 4
    assert limits.max_ns_names_per_delegation == 13
    assert limits.max_failed_ns_lookups == 5


def test_limits_time_budget_ends_before_the_stub_gives_up() -> None:
    """The whole budget is below glibc's 5 s so the stub sees our SERVFAIL; tries fit inside it."""
    limits = Limits()
    assert limits.total_budget_s < 5.0
    assert 0 < limits.first_timeout_s <= limits.max_timeout_s < limits.total_budget_s


def test_limits_are_frozen_and_keyword_only() -> None:
    """Limits cannot change after construction and take keywords only."""
    limits = Limits(max_referrals=3)
    assert limits.max_referrals == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_referrals = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        Limits(200)  # type: ignore[call-arg]


def test_cache_settings_defaults_cap_ttls() -> None:
    """One day for data, one hour for negative answers, failures at least 1 s (RFC 9520)."""
    settings = CacheSettings()
    assert settings.max_ttl_s == 86_400
    assert settings.max_negative_ttl_s == 3_600
    assert settings.failure_ttl_s >= 1
    assert settings.min_ttl_s <= settings.max_ttl_s


def test_engine_settings_defaults_are_safe() -> None:
    """EDNS 1232 upstream, localhost never asked, root priming and harden-glue on."""
    settings = EngineSettings()
    assert settings.edns_udp_size == 1232
    assert settings.do_not_query_localhost
    assert settings.prime_root
    assert settings.harden_glue
    assert settings.limits == Limits()


def test_serve_config_listens_on_loopback_only_by_default() -> None:
    """By default the resolver serves only the local host (RFC 5358)."""
    config = ServeConfig()
    assert {a.ip for a in config.listen} == {"127.0.0.1", "::1"}
