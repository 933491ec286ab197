"""Stub zones as operators run them: our resolver in front of a real NSD on loopback.

NSD answers as authorities do, with the zone's NS set in the authority section of every
answer; the NS names live in another zone and have no address we could find. A configured
stub zone is where its queries go (Unbound stub-zone, stub-prime: no): those NS sets never
replace the configured address, and the lab's root is never asked for names below it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RunningLab, _free_port
from tests.integration.test_dig import dig
from tests.integration.test_forwarding import serving
from tests.support.nsd import RunningNsd, start_nsd, stop_nsd

pytestmark = pytest.mark.integration


def _zone(name: str, address: str) -> str:
    return (f"$ORIGIN {name}\n$TTL 300\n"
            f"@ IN SOA ns1.hosting.example. hostmaster.{name} 1 7200 900 1209600 60\n"
            "@ IN NS ns1.hosting.example.\n"
            f"www IN A {address}\nmail IN A {address}\ndeep.sub IN A {address}\n")


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNsd]:
    running = start_nsd(tmp_path_factory.mktemp("nsd"), {
        "a.corp.example.": _zone("a.corp.example.", "10.9.0.1"),
        "b.corp.example.": _zone("b.corp.example.", "10.10.0.1"),
    }, ip="127.53.2.1")
    try:
        yield running
    finally:
        stop_nsd(running)


def test_two_stub_zones_on_nsd_keep_answering_after_the_first_answer(
        lab: RunningLab, nsd: RunningNsd, tmp_path: Path) -> None:
    with serving(lab, "--stub-zone", f"a.corp.example={nsd.spec}",
                 "--stub-zone", f"b.corp.example={nsd.spec}", "--verbose") as served:
        for name, address in (("www.a.corp.example", "10.9.0.1"),
                              ("mail.a.corp.example", "10.9.0.1"),
                              ("deep.sub.a.corp.example", "10.9.0.1"),
                              ("www.b.corp.example", "10.10.0.1"),
                              ("mail.b.corp.example", "10.10.0.1")):
            reply = dig(served.resolver, name, "A")
            assert reply.status == "NOERROR", reply.text
            assert reply.rdata("A") == [address], reply.text
        missing = dig(served.resolver, "nothere.a.corp.example", "A")
        assert missing.status == "NXDOMAIN"
        again = dig(served.resolver, "www.a.corp.example", "A")
        assert again.rdata("A") == ["10.9.0.1"]


def test_a_dead_stub_zone_server_is_named_a_stub_server_in_the_ede(lab: RunningLab) -> None:
    """Nothing listens at the stub zone's address: SERVFAIL whose extended error names the
    configured server as a stub server, not as a forwarder (it is asked with RD=0)."""
    dead = f"127.53.2.9@{_free_port('127.53.2.9')}"
    with serving(lab, "--stub-zone", f"dead.example={dead}") as served:
        reply = dig(served.resolver, "www.dead.example")
    assert reply.status == "SERVFAIL"
    ede = re.search(r"; EDE: 22 \(No Reachable Authority\): \((.*)\)", reply.text)
    assert ede is not None, reply.text
    assert ede.group(1).startswith(f"stub-server-1. ({dead}): ")
    assert "no more servers to try for dead.example." in ede.group(1)
    assert "forward" not in reply.text
