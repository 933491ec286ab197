"""QNAME minimisation (RFC 9156), relaxed as in Unbound: what each server is told."""

from __future__ import annotations

import asyncio
import struct

from resolver.dns.decoding import decode
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.settings import EngineSettings
from tests.support.labnet import FakeClock, LabNetwork, lab_service

ROOTS = {"127.41.0.4", "127.247.170.2", "127.33.4.12"}
GTLD = {"127.5.6.30", "127.33.14.30"}
UTOPIA = "127.212.212.1"
EXAMPLE_TEST = "127.0.2.54"


def _run(name: str, *, network: LabNetwork | None = None, clock: FakeClock | None = None,
         settings: EngineSettings | None = None) -> tuple[LabNetwork, Rcode, list[str]]:
    clock = clock or FakeClock()
    network = network or LabNetwork(clock)
    service = lab_service(clock, network, settings=settings or EngineSettings())
    outcome = asyncio.run(service.resolve(Question(name, RRType.A)))
    return network, Rcode(outcome.rcode), [rr.to_text() for rr in outcome.answer]


def _asked(network: LabNetwork) -> list[tuple[str, str]]:
    return [(ip, str(decode(query).question)) for ip, _, query in network.log]


def test_qmin_is_on_by_default_and_each_level_sees_one_more_label() -> None:
    """The root is asked about com., com. about networkutopia.com., only the zone gets the name."""
    network, rcode, _ = _run("www.networkutopia.com.")
    assert rcode == Rcode.NOERROR
    asked = [(ip, q) for ip, q in _asked(network) if q != ". NS"]
    assert [q for _, q in asked] == [
        "com. A", "networkutopia.com. A", "www.networkutopia.com. A"
    ]
    assert asked[0][0] in ROOTS and asked[1][0] in GTLD and asked[2][0] == UTOPIA


def test_qmin_empty_non_terminal_goes_one_label_deeper() -> None:
    """deep.example.test exists without data (NODATA): the next label is asked of the same zone."""
    network, rcode, answer = _run("host.deep.example.test.")
    assert rcode == Rcode.NOERROR and answer
    to_zone = [q for ip, q in _asked(network) if ip == EXAMPLE_TEST]
    assert to_zone == ["deep.example.test. A", "host.deep.example.test. A"]


def test_qmin_with_qtype_ns_walks_an_empty_non_terminal_and_asks_the_full_name_last() -> None:
    """Knot's minimised type, NS (RFC 9156 §2.1 names it): the empty non-terminal answers
    NODATA to NS as to A, the walk goes one label deeper in the same zone, and only the
    full name is asked with the client's type."""
    ns_settings = EngineSettings(qname_minimisation_qtype=int(RRType.NS))
    network, rcode, answer = _run("host.deep.example.test.", settings=ns_settings)
    assert rcode == Rcode.NOERROR and answer
    asked = [q for _, q in _asked(network) if q != ". NS"]
    assert asked[0] == "test. NS"
    to_zone = [q for ip, q in _asked(network) if ip == EXAMPLE_TEST]
    assert to_zone == ["deep.example.test. NS", "host.deep.example.test. A"]


def test_qmin_nxdomain_for_an_empty_non_terminal_falls_back_to_the_full_name() -> None:
    """A broken server that says NXDOMAIN for an empty non-terminal is asked the full name
    (RFC 9156 §3 relaxed, as Unbound does), and the answer still comes."""
    clock = FakeClock()
    network = LabNetwork(clock)

    def nxdomain_for_ents(query: bytes, reply: bytes) -> bytes:
        if decode(query).question == Question("deep.example.test.", RRType.A):
            flags = struct.unpack("!H", reply[2:4])[0] & ~0xF | Rcode.NXDOMAIN
            return reply[:2] + struct.pack("!H", flags) + reply[4:]
        return reply

    network.rewrite[EXAMPLE_TEST] = nxdomain_for_ents
    network, rcode, answer = _run("host.deep.example.test.", network=network, clock=clock)
    assert rcode == Rcode.NOERROR and answer
    to_zone = [q for ip, q in _asked(network) if ip == EXAMPLE_TEST]
    assert to_zone == ["deep.example.test. A", "host.deep.example.test. A"]


def test_qmin_refused_minimised_query_falls_back_to_the_full_name() -> None:
    """A server that refuses minimised queries still gets asked the full question."""
    clock = FakeClock()
    network = LabNetwork(clock)

    def refuse_minimised(query: bytes, reply: bytes) -> bytes:
        if decode(query).question != Question("www.networkutopia.com.", RRType.A):
            flags = struct.unpack("!H", reply[2:4])[0] & ~0xF | Rcode.REFUSED
            return reply[:2] + struct.pack("!H", flags) + reply[4:]
        return reply

    for address in GTLD:
        network.rewrite[address] = refuse_minimised
    network, rcode, answer = _run("www.networkutopia.com.", network=network, clock=clock)
    assert rcode == Rcode.NOERROR
    assert answer == ["www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2"]
    to_gtld = [q for ip, q in _asked(network) if ip in GTLD]
    assert "networkutopia.com. A" in to_gtld and to_gtld[-1] == "www.networkutopia.com. A"


def test_qmin_off_asks_every_level_the_full_name() -> None:
    """With minimisation off, every server sees the full question (the classic walk)."""
    network, _, _ = _run("www.networkutopia.com.",
                         settings=EngineSettings(qname_minimisation=False))
    assert {q for q in (q for _, q in _asked(network)) if q != ". NS"} == {
        "www.networkutopia.com. A"
    }


def test_qmin_does_not_ask_again_for_a_label_the_cache_knows() -> None:
    """Names below cdn.example.test.: after the first, the zone is asked the full name
    at once, since the cache already knows cdn.example.test. exists (one query each)."""
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network)
    asyncio.run(service.resolve(Question("a.cdn.example.test.", RRType.A)))
    before = len(network.log)
    asyncio.run(service.resolve(Question("b.cdn.example.test.", RRType.A)))
    assert [str(decode(q).question) for _, _, q in network.log[before:]] == [
        "b.cdn.example.test. A"
    ]
