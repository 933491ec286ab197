"""Local zones and local data (Unbound's local-zone/local-data), the RFC 6761/6303 defaults,
hosts files, and DNS-rebinding protection (private-address)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType, type_from_text
from resolver.engine.events import Outcome
from resolver.engine.network import Transport
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from resolver.server.local_zones import (
    BUILTIN_ZONES,
    LocalZones,
    RebindingGuard,
    ZoneSpec,
    ZoneType,
    check_name,
    parse_local_data,
    read_hosts_file,
)
from resolver.server.metrics import Metrics
from tests.support.labnet import FakeClock, LabNetwork, lab_service

DEFAULTS = LocalZones()


def ask(zones: LocalZones, name: str, rtype: str = "A") -> Outcome | None:
    """The local outcome; None when the question would be resolved."""
    answer = zones.answer(Question(check_name(name), type_from_text(rtype)))
    if answer is None:
        return None
    assert answer.outcome is not None
    return answer.outcome


def rdata(outcome: Outcome | None) -> list[str]:
    assert outcome is not None
    return [rr.rdata_text for rr in outcome.answer]


def soa_owner(outcome: Outcome | None) -> str:
    assert outcome is not None and len(outcome.authority) == 1
    assert outcome.authority[0].rtype == RRType.SOA
    return outcome.authority[0].name


# -- the built-in zones -----------------------------------------------------------------


def test_local_zones_localhost_is_loopback() -> None:
    """localhost. answers 127.0.0.1 and ::1 (RFC 6761 §6.3), and so does every name below."""
    assert rdata(ask(DEFAULTS, "localhost")) == ["127.0.0.1"]
    assert rdata(ask(DEFAULTS, "localhost", "AAAA")) == ["::1"]
    below = ask(DEFAULTS, "app.dev.localhost")
    assert rdata(below) == ["127.0.0.1"] and below is not None
    assert below.answer[0].name == "app.dev.localhost."


def test_local_zones_localhost_other_types_are_nodata() -> None:
    """localhost. MX is NOERROR with no answer and the zone's SOA."""
    outcome = ask(DEFAULTS, "localhost", "MX")
    assert outcome is not None and outcome.rcode == Rcode.NOERROR and not outcome.answer
    assert soa_owner(outcome) == "localhost."


def test_local_zones_loopback_reverse_names_are_localhost() -> None:
    """1.0.0.127.in-addr.arpa. and the ::1 reverse name are PTR localhost."""
    assert rdata(ask(DEFAULTS, "1.0.0.127.in-addr.arpa", "PTR")) == ["localhost."]
    ip6 = "1." + "0." * 31 + "ip6.arpa"
    assert rdata(ask(DEFAULTS, ip6, "PTR")) == ["localhost."]


@pytest.mark.parametrize("name", [
    "3.2.1.10.in-addr.arpa", "1.1.16.172.in-addr.arpa", "1.1.31.172.in-addr.arpa",
    "1.1.168.192.in-addr.arpa", "2.0.0.127.in-addr.arpa", "1.0.0.0.in-addr.arpa",
    "1.1.254.169.in-addr.arpa", "1.2.0.192.in-addr.arpa", "1.100.51.198.in-addr.arpa",
    "1.113.0.203.in-addr.arpa", "x.255.255.255.255.in-addr.arpa", "1.1.64.100.in-addr.arpa",
    "1.1.127.100.in-addr.arpa", "1.0.d.f.ip6.arpa", "1.0.8.e.f.ip6.arpa", "1.0.b.e.f.ip6.arpa",
    "1.8.b.d.0.1.0.0.2.ip6.arpa", "www.invalid", "anything.onion", "printer.home.arpa",
    "_dns.resolver.arpa", "x.service.arpa",
])
def test_local_zones_special_use_names_never_leave(name: str) -> None:
    """Private, link-local, documentation reverse zones and special-use names are NXDOMAIN here."""
    outcome = ask(DEFAULTS, name, "PTR")
    assert outcome is not None and outcome.rcode == Rcode.NXDOMAIN
    assert soa_owner(outcome).endswith(".") and name.endswith(soa_owner(outcome).rstrip("."))


def test_local_zones_apex_has_rfc6303_soa_and_ns() -> None:
    """Each built-in zone answers SOA and NS at its apex (RFC 6303 §3)."""
    soa = ask(DEFAULTS, "10.in-addr.arpa", "SOA")
    assert rdata(soa) == ["10.in-addr.arpa. nobody.invalid. 1 3600 1200 604800 10800"]
    assert rdata(ask(DEFAULTS, "10.in-addr.arpa", "NS")) == ["10.in-addr.arpa."]


@pytest.mark.parametrize("name", [
    "www.networkutopia.com", "example.test", "test", "1.1.15.172.in-addr.arpa",
    "2.212.212.212.in-addr.arpa", "1.1.32.172.in-addr.arpa", "1.1.128.100.in-addr.arpa",
    "localhost.example.com",
])
def test_local_zones_ordinary_names_are_resolved(name: str) -> None:
    """Public names, the lab's test. TLD and addresses next to private blocks are not local."""
    assert ask(DEFAULTS, name) is None


def test_local_zones_builtin_list_excludes_test() -> None:
    """test. is the lab's top-level domain: never a built-in local zone."""
    assert "test." not in BUILTIN_ZONES
    assert {"localhost.", "onion.", "invalid.", "home.arpa.", "127.in-addr.arpa."} <= set(
        BUILTIN_ZONES)


def test_local_zones_nodefault_removes_a_builtin_zone() -> None:
    """local-zone 'onion. nodefault' lets onion names be resolved again."""
    zones = LocalZones([ZoneSpec.parse("onion. nodefault")])
    assert ask(zones, "x.onion") is None
    assert ask(zones, "x.invalid") is not None


def test_local_zones_configured_zone_replaces_the_builtin_of_that_name() -> None:
    """A configured 10.in-addr.arpa. transparent zone lets those PTR queries through."""
    zones = LocalZones([ZoneSpec.parse("10.in-addr.arpa. transparent")])
    assert ask(zones, "3.2.1.10.in-addr.arpa", "PTR") is None


# -- zone types -------------------------------------------------------------------------


def zones_with(kind: str, *data: str) -> LocalZones:
    return LocalZones([ZoneSpec.parse(f"example.com. {kind}")],
                      [parse_local_data(text) for text in data])


def test_local_zones_static_answers_data_nodata_and_nxdomain() -> None:
    """static: data is answered; a known name with another type is NODATA; others NXDOMAIN."""
    zones = zones_with("static", "www.example.com. A 192.0.2.1",
                       "example.com. SOA ns.example.com. admin.example.com. 1 2 3 4 300")
    assert rdata(ask(zones, "www.example.com")) == ["192.0.2.1"]
    nodata = ask(zones, "www.example.com", "AAAA")
    assert nodata is not None and nodata.rcode == Rcode.NOERROR and not nodata.answer
    nxdomain = ask(zones, "nope.example.com")
    assert nxdomain is not None and nxdomain.rcode == Rcode.NXDOMAIN
    assert nxdomain.authority[0].ttl == 300  # RFC 2308 §3: capped at the SOA minimum


def test_local_zones_static_empty_non_terminal_is_nodata() -> None:
    """A name that exists only because data sits below it is NODATA, not NXDOMAIN (RFC 8020)."""
    zones = zones_with("static", "a.b.example.com. A 192.0.2.1")
    outcome = ask(zones, "b.example.com")
    assert outcome is not None and outcome.rcode == Rcode.NOERROR


def test_local_zones_transparent_resolves_names_without_data() -> None:
    """transparent: data answered, other types of that name NODATA, other names resolved."""
    zones = zones_with("transparent", "www.example.com. A 192.0.2.1")
    assert rdata(ask(zones, "www.example.com")) == ["192.0.2.1"]
    nodata = ask(zones, "www.example.com", "TXT")
    assert nodata is not None and nodata.rcode == Rcode.NOERROR and not nodata.answer
    assert ask(zones, "mail.example.com") is None


def test_local_zones_typetransparent_resolves_other_types() -> None:
    """typetransparent: only the exact name and type are local."""
    zones = zones_with("typetransparent", "www.example.com. A 192.0.2.1")
    assert rdata(ask(zones, "www.example.com")) == ["192.0.2.1"]
    assert ask(zones, "www.example.com", "AAAA") is None


def test_local_zones_redirect_answers_every_name_with_the_apex_data() -> None:
    """redirect: a blocklist entry sends every name below to one address."""
    zones = zones_with("redirect", "example.com. A 0.0.0.0")
    outcome = ask(zones, "tracker.ads.example.com")
    assert rdata(outcome) == ["0.0.0.0"] and outcome is not None
    assert outcome.answer[0].name == "tracker.ads.example.com."
    nodata = ask(zones, "tracker.example.com", "AAAA")
    assert nodata is not None and nodata.rcode == Rcode.NOERROR and not nodata.answer


def test_local_zones_refuse_and_deny_except_for_local_data() -> None:
    """refuse answers REFUSED, deny sends nothing; local data in them is still answered."""
    refuse = zones_with("refuse", "ok.example.com. A 192.0.2.1")
    outcome = ask(refuse, "x.example.com")
    assert outcome is not None and outcome.rcode == Rcode.REFUSED
    assert rdata(ask(refuse, "ok.example.com")) == ["192.0.2.1"]
    deny = zones_with("deny")
    answer = deny.answer(Question("x.example.com.", RRType.A))
    assert answer is not None and answer.outcome is None and answer.type is ZoneType.DENY


def test_local_zones_always_types_ignore_local_data() -> None:
    """always_nxdomain and always_refuse win over data; always_null answers 0.0.0.0 and ::."""
    nx = ask(zones_with("always_nxdomain", "www.example.com. A 192.0.2.1"), "www.example.com")
    assert nx is not None and nx.rcode == Rcode.NXDOMAIN
    refused = ask(zones_with("always_refuse"), "www.example.com")
    assert refused is not None and refused.rcode == Rcode.REFUSED
    null = zones_with("always_null")
    assert rdata(ask(null, "x.example.com")) == ["0.0.0.0"]
    assert rdata(ask(null, "x.example.com", "AAAA")) == ["::"]
    mx = ask(null, "x.example.com", "MX")
    assert mx is not None and mx.rcode == Rcode.NOERROR and not mx.answer


def test_local_zones_most_specific_zone_decides() -> None:
    """A zone below another decides for its own names."""
    zones = LocalZones([ZoneSpec.parse("example.com. always_nxdomain"),
                        ZoneSpec.parse("ok.example.com. transparent")])
    assert ask(zones, "ok.example.com") is None
    outcome = ask(zones, "bad.example.com")
    assert outcome is not None and outcome.rcode == Rcode.NXDOMAIN


def test_local_zones_data_outside_zones_gets_a_transparent_zone() -> None:
    """local-data alone answers its name; other names beside it are resolved."""
    zones = LocalZones([], [parse_local_data("printer.lan. A 192.168.1.20")])
    assert rdata(ask(zones, "printer.lan")) == ["192.168.1.20"]
    assert ask(zones, "other.lan") is None


def test_local_zones_cname_is_answered_not_followed() -> None:
    """A local CNAME answers any type at its name."""
    zones = LocalZones([], [parse_local_data("alias.example. CNAME www.networkutopia.com.")])
    assert rdata(ask(zones, "alias.example", "AAAA")) == ["www.networkutopia.com."]


def test_local_zones_data_ttl_defaults_to_3600_and_one_per_rrset() -> None:
    """local-data without a TTL gets 3600; records of one RRset share one TTL."""
    zones = LocalZones([], [parse_local_data("a.example. A 192.0.2.1"),
                            parse_local_data("a.example. 60 A 192.0.2.2")])
    outcome = ask(zones, "a.example")
    assert outcome is not None and [rr.ttl for rr in outcome.answer] == [3600, 3600]


def test_local_zones_counts_and_description() -> None:
    """The summary counts built-in zones, configured zones and records."""
    zones = zones_with("static", "www.example.com. A 192.0.2.1")
    assert zones.builtin_count == len(BUILTIN_ZONES)
    assert zones.zone_count == len(BUILTIN_ZONES) + 1
    assert zones.describe() == ["example.com. static"]
    assert zones.record_count > len(BUILTIN_ZONES)


@pytest.mark.parametrize(("text", "message"), [
    ("example.com.", "is not 'NAME TYPE'"),
    ("example.com. block", "unknown local-zone type 'block'"),
    ("a..b static", "is not a valid domain name"),
    ("x" * 64 + ".com static", "is not a valid domain name"),
])
def test_local_zones_zone_spec_errors(text: str, message: str) -> None:
    """A bad local-zone names its fault."""
    with pytest.raises(ValueError) as error:
        ZoneSpec.parse(text)
    assert message in str(error.value)


@pytest.mark.parametrize("text", ["www.example. A 192.0.2.300", "www.example. FOO bar",
                                  "www.example. A", "", "www.example. CH A 192.0.2.1"])
def test_local_zones_bad_local_data_is_an_error(text: str) -> None:
    """Records that do not parse, or are not class IN, are refused with their text."""
    with pytest.raises(ValueError, match="local-data"):
        parse_local_data(text)


# -- hosts files ------------------------------------------------------------------------


def test_local_zones_hosts_file_gives_addresses_and_one_ptr_per_address(tmp_path: Path) -> None:
    """Each name gets A/AAAA; the first line naming an address gives its PTR."""
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n192.168.1.5  nas.lan nas  # trailing comment\n"
                     "192.168.1.5 other.lan\nfd00::5 nas.lan\n\n"
                     "300.1.1.1 broken.lan\n10.0.0.1\n")
    read = read_hosts_file(hosts)
    assert len(read.skipped) == 2 and all(str(hosts) in line for line in read.skipped)
    zones = LocalZones([], read.records)
    assert rdata(ask(zones, "nas.lan")) == ["192.168.1.5"]
    assert rdata(ask(zones, "nas")) == ["192.168.1.5"]
    assert rdata(ask(zones, "nas.lan", "AAAA")) == ["fd00::5"]
    assert rdata(ask(zones, "5.1.168.192.in-addr.arpa", "PTR")) == ["nas.lan."]
    assert ask(zones, "broken.lan") is None


def test_local_zones_from_settings_reads_hosts_files(tmp_path: Path) -> None:
    """from_settings combines zones, data and hosts files; a missing file is an OSError."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.9 box.example\n")
    zones = LocalZones.from_settings(["blocked.example. always_nxdomain"],
                                     ["www.example. A 192.0.2.1"], [str(hosts)])
    assert rdata(ask(zones, "box.example")) == ["192.0.2.9"]
    assert rdata(ask(zones, "www.example")) == ["192.0.2.1"]
    with pytest.raises(OSError):
        LocalZones.from_settings([], [], [str(tmp_path / "missing")])


# -- DNS-rebinding protection -----------------------------------------------------------


def outcome_with(*records: str) -> Outcome:
    return Outcome(rcode=Rcode.NOERROR, answer=tuple(parse_local_data(r) for r in records))


def test_local_zones_rebinding_removes_private_addresses_of_public_names() -> None:
    """A public name pointing into 192.168.0.0/16 or fd00::/8 loses those records."""
    guard = RebindingGuard.from_settings(["192.168.0.0/16", "fd00::/8"], ["home.lan"])
    assert guard is not None
    outcome, removed = guard.filter(outcome_with(
        "evil.example. A 192.168.1.1", "evil.example. A 203.0.113.5",
        "evil.example. AAAA fd00::1", "evil.example. TXT hello"))
    assert removed == 2
    assert [rr.rdata_text for rr in outcome.answer] == ["203.0.113.5", '"hello"']


def test_local_zones_rebinding_keeps_private_domains() -> None:
    """Names at or below a private-domain may resolve into private space."""
    guard = RebindingGuard.from_settings(["10.0.0.0/8"], ["home.lan."])
    assert guard is not None
    original = outcome_with("nas.home.lan. A 10.0.0.5", "home.lan. A 10.0.0.1")
    outcome, removed = guard.filter(original)
    assert removed == 0 and outcome is original


def test_local_zones_rebinding_off_without_private_addresses() -> None:
    """No private-address, no guard."""
    assert RebindingGuard.from_settings([], ["home.lan"]) is None


# -- in the handler ---------------------------------------------------------------------

UDP = Client(ip="127.0.0.1", port=40000, transport=Transport.UDP)


def handler_with(zones: LocalZones | None = None, guard: RebindingGuard | None = None
                 ) -> tuple[QueryHandler, LabNetwork, Metrics]:
    clock = FakeClock()
    network = LabNetwork(clock)
    metrics = Metrics()
    handler = QueryHandler(lab_service(clock, network), local_zones=zones, rebinding=guard,
                           metrics=metrics)
    return handler, network, metrics


def query(name: str, rtype: int = RRType.A) -> bytes:
    return make_query(Question(name, rtype), query_id=7, recursion_desired=True)


def test_local_zones_handler_answers_without_any_upstream_query() -> None:
    """Local names are answered by the handler with zero queries to the lab's servers."""
    handler, network, metrics = handler_with(LocalZones())
    for name, rtype in (("localhost.", RRType.A), ("1.0.0.127.in-addr.arpa.", RRType.PTR),
                        ("3.2.1.10.in-addr.arpa.", RRType.PTR), ("x.onion.", RRType.A)):
        reply = asyncio.run(handler.handle(query(name, rtype), UDP))
        assert reply is not None and decode(reply).rcode in (Rcode.NOERROR, Rcode.NXDOMAIN)
    assert sum(network.received.values()) == 0
    assert metrics.local_answers.value() == 4


def test_local_zones_handler_deny_zone_sends_nothing() -> None:
    """A deny zone's names get no reply at all."""
    handler, _, _ = handler_with(LocalZones([ZoneSpec.parse("ads.example. deny")]))
    assert asyncio.run(handler.handle(query("x.ads.example."), UDP)) is None


def test_local_zones_handler_filters_private_answers() -> None:
    """With private-address covering the lab's web server, its A record is removed."""
    guard = RebindingGuard.from_settings(["212.212.212.0/24"], [])
    handler, _, metrics = handler_with(guard=guard)
    reply = asyncio.run(handler.handle(query("www.networkutopia.com."), UDP))
    assert reply is not None
    message = decode(reply)
    assert message.rcode == Rcode.NOERROR and message.answer == ()
    assert metrics.rebinding_removed.value() == 1
