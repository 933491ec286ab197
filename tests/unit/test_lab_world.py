"""The lab's world is consistent: zones load, glue matches the servers, all zones are reachable."""

from __future__ import annotations

import ipaddress
from importlib import resources

import pytest
from dnslib import QTYPE

from resolver.lab.authority import Zone, to_name
from resolver.lab.world import (
    LAME_DELEGATIONS,
    SERVERS,
    all_zones,
    root_servers,
    zone_file_name,
    zone_text,
)

ZONES = {origin: Zone.from_text(origin, zone_text(origin)) for origin in all_zones()}
BY_NAME = {s.name: s for s in SERVERS}
BY_ADDRESS = {s.address: s for s in SERVERS}


def _parent_of(origin: str) -> Zone:
    """The most specific other lab zone that contains `origin`."""
    name = to_name(origin)
    parents = [z for o, z in ZONES.items() if o != origin and z.contains(name)]
    return max(parents, key=lambda z: len(z.origin))


def test_world_server_addresses_are_distinct_loopback_addresses() -> None:
    """Every server has its own address, inside 127.0.0.0/8 and outside 127.0.0.0/24."""
    addresses = [s.address for s in SERVERS]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        ip = ipaddress.IPv4Address(address)
        assert ip in ipaddress.IPv4Network("127.0.0.0/8")
        assert ip not in ipaddress.IPv4Network("127.0.0.0/24")  # leave 127.0.0.1 & co alone


def test_world_has_several_root_servers_and_the_required_tlds() -> None:
    """At least three root servers; com, net, org, edu, fr, test and arpa are delegated."""
    assert len(root_servers()) >= 3
    root = ZONES["."]
    for tld in ("com.", "net.", "org.", "edu.", "fr.", "test.", "arpa."):
        assert to_name(tld) in root.cuts


def test_world_zone_files_match_the_served_zones() -> None:
    """Every packaged zone file is served by some server, and every served zone has a file."""
    files = {
        f.name
        for f in resources.files("resolver.lab").joinpath("zones").iterdir()
        if f.name.endswith(".zone")
    }
    assert files == {zone_file_name(origin) for origin in all_zones()}


@pytest.mark.parametrize("origin", all_zones())
def test_world_zone_has_a_realistic_soa(origin: str) -> None:
    """SOA timers are sane: refresh > retry, expire > refresh, negative TTL 60 s..1 day."""
    serial, refresh, retry, expire, minimum = ZONES[origin].soa.rdata.times
    assert serial >= 2025000000
    assert refresh > retry > 0
    assert expire > refresh
    assert 60 <= minimum <= 86400


@pytest.mark.parametrize("origin", [o for o in all_zones() if o != "."])
def test_world_zone_is_delegated_by_its_parent_to_its_servers(origin: str) -> None:
    """The parent has a cut at the zone, and each NS it lists serves the zone (unless lame)."""
    parent = _parent_of(origin)
    name = to_name(origin)
    assert name in parent.cuts, f"{origin} is not delegated from {parent.origin_text}"
    for ns in parent.rrset(name, QTYPE.NS):
        ns_name = str(ns.rdata.label).lower()
        glue = parent.rrset(to_name(ns_name), QTYPE.A)
        if (origin, ns_name) in LAME_DELEGATIONS:
            assert glue, "a lame NS in the lab must still lead to a lab server"
            assert origin not in BY_ADDRESS[str(glue[0].rdata)].zones
            continue
        assert ns_name in BY_NAME, f"{ns_name} (NS of {origin}) is not a lab server"
        assert origin in BY_NAME[ns_name].zones


@pytest.mark.parametrize("origin", all_zones())
def test_world_name_server_addresses_agree_with_the_server_list(origin: str) -> None:
    """An A record owned by a server's name holds that server's address; no AAAA for servers."""
    zone = ZONES[origin]
    for server in SERVERS:
        name = to_name(server.name)
        for rr in zone.rrset(name, QTYPE.A):
            assert str(rr.rdata) == server.address, f"{server.name} in {origin}"
        assert not zone.rrset(name, QTYPE.AAAA)


def test_world_textbook_records_are_present() -> None:
    """The textbook names hold the textbook data (networkutopia, ibm, the PTR of .2)."""
    utopia = ZONES["networkutopia.com."]
    assert [str(r.rdata) for r in utopia.rrset(to_name("www.networkutopia.com"), QTYPE.A)] == [
        "212.212.212.2"
    ]
    assert [
        str(r.rdata) for r in ZONES["com."].rrset(to_name("dns1.networkutopia.com"), QTYPE.A)
    ] == ["127.212.212.1"]
    ibm = ZONES["ibm.com."].rrset(to_name("www.ibm.com"), QTYPE.CNAME)
    assert str(ibm[0].rdata.label) == "servereast.backup2.ibm.com."
    ptr = ZONES["212.212.212.in-addr.arpa."].rrset(to_name("2.212.212.212.in-addr.arpa"), QTYPE.PTR)
    assert str(ptr[0].rdata.label) == "www.networkutopia.com."
