"""Local zones over real sockets: special-use and private names answered by the resolver
itself with zero upstream queries (counted by its own upstream counter at /metrics), local
data, a hosts file, a blocklist, and DNS-rebinding protection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RunningLab
from tests.integration.test_system_support import (
    Server,
    answers,
    dig,
    scrape,
    settled_upstream,
    start,
    status,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def local(lab: RunningLab, tmp_path: Path) -> Iterator[Server]:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.168.7.7 nas.home.arpa nas\n")
    server = start(
        lab, tmp_path,
        "--local-zone", "ads.example. always_nxdomain",
        "--local-zone", "tracker.example. redirect",
        "--local-data", "tracker.example. A 0.0.0.0",
        "--local-data", "printer.lan. A 192.168.1.20",
        "--local-zone", "networkutopia.com. typetransparent",
        "--local-data", "intranet.networkutopia.com. A 10.9.9.9",
        "--hosts-file", str(hosts),
        metrics=True,
    )
    yield server
    assert server.stop() == 0


LOCAL_QUESTIONS = [
    # (dig arguments, status, answer RDATA)
    (("localhost",), "NOERROR", ["127.0.0.1"]),
    (("localhost", "AAAA"), "NOERROR", ["::1"]),
    (("app.localhost",), "NOERROR", ["127.0.0.1"]),
    (("-x", "127.0.0.1"), "NOERROR", ["localhost."]),
    (("-x", "::1"), "NOERROR", ["localhost."]),
    (("-x", "10.1.2.3"), "NXDOMAIN", []),
    (("-x", "172.20.0.1"), "NXDOMAIN", []),
    (("-x", "192.168.1.1"), "NXDOMAIN", []),
    (("-x", "169.254.1.1"), "NXDOMAIN", []),
    (("-x", "fd12::1"), "NXDOMAIN", []),
    (("-x", "fe80::1"), "NXDOMAIN", []),
    (("www.invalid",), "NXDOMAIN", []),
    (("hidden.onion",), "NXDOMAIN", []),
    (("router.home.arpa",), "NXDOMAIN", []),
    (("x.ads.example",), "NXDOMAIN", []),
    (("pixel.tracker.example",), "NOERROR", ["0.0.0.0"]),
    (("printer.lan",), "NOERROR", ["192.168.1.20"]),
    (("nas.home.arpa",), "NOERROR", ["192.168.7.7"]),
    (("-x", "192.168.7.7"), "NOERROR", ["nas.home.arpa."]),
    (("intranet.networkutopia.com",), "NOERROR", ["10.9.9.9"]),
]


def test_system_local_zones_answered_with_zero_upstream_queries(local: Server) -> None:
    """Every local question is answered as expected and not one query leaves the resolver."""
    before = settled_upstream(local)
    for args, expected_status, expected in LOCAL_QUESTIONS:
        output = dig(local, *args)
        assert status(output) == expected_status, (args, output)
        assert answers(output) == expected, (args, output)
    metrics = scrape(local)
    assert metrics.get("resolver_upstream_queries_total,transport=udp", 0.0) == before
    assert metrics["resolver_local_answers_total"] >= len(LOCAL_QUESTIONS)


def test_system_local_zones_negative_answers_carry_the_zone_soa(local: Server) -> None:
    """NXDOMAIN from a private reverse zone has its RFC 6303 SOA in the authority section."""
    output = dig(local, "-x", "10.1.2.3")
    assert "10.in-addr.arpa.\t10800\tIN\tSOA\t10.in-addr.arpa. nobody.invalid." in output


def test_system_local_zones_test_tld_and_public_names_still_resolve(local: Server) -> None:
    """test. is the lab's and is resolved; typetransparent lets other names of a zone through."""
    assert status(dig(local, "example.test", "SOA")) == "NOERROR"
    assert answers(dig(local, "www.networkutopia.com")) == ["212.212.212.2"]


def test_system_rebinding_private_answers_removed_for_public_names(lab: RunningLab,
                                                                   tmp_path: Path) -> None:
    """With the lab's web block as private-address, www.networkutopia.com loses its A record,
    unless networkutopia.com is a private-domain."""
    guarded = start(lab, tmp_path, "--private-address", "212.212.212.0/24", metrics=True)
    allowed = start(lab, tmp_path, "--private-address", "212.212.212.0/24",
                    "--private-domain", "networkutopia.com")
    try:
        output = dig(guarded, "www.networkutopia.com")
        assert status(output) == "NOERROR" and answers(output) == []
        assert scrape(guarded)["resolver_rebinding_removed_total"] == 1
        assert answers(dig(guarded, "www.amazon.com")) != []  # public addresses stay
        assert answers(dig(allowed, "www.networkutopia.com")) == ["212.212.212.2"]
    finally:
        assert guarded.stop() == 0
        assert allowed.stop() == 0
