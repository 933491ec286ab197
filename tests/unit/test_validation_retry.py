"""Bogus data from one server is asked again of another (RFC 4035 §5.5, Unbound's
blacklisting of a server for the zone): the answer itself, and the DNSKEY or DS of the
chain of trust. A zone with two servers, one of which breaks its signatures.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.wire import Question, Rcode, Record, RRType, parse_record
from resolver.dnssec.anchors import parse_trust_anchors
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.delegation import parse_root_hints
from resolver.engine.events import Outcome
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings, ValidationSettings
from resolver.service.resolver_service import ResolverService
from tests.support.labnet import FakeClock
from tests.support.signed_authority import SignedAuthority, SignedNetwork, SignedZoneData
from tests.support.signed_zones import NOW, sign_zone

ROOT_IP, TEST_IP, GOOD_IP, BROKEN_IP = "127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4"
TEST_GOOD_IP, TEST_BROKEN_IP = TEST_IP, "127.0.2.5"

EXAMPLE = f"""\
$ORIGIN example.test.
$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@ IN NS ns1.example.test.
@ IN NS ns2.example.test.
ns1 IN A {GOOD_IP}
ns2 IN A {BROKEN_IP}
www IN A 192.0.2.2
"""


def _test_zone(ds_lines: str) -> str:
    return f"""\
$ORIGIN test.
$TTL 3600
@ IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300
@ IN NS ns.test.
@ IN NS ns2.test.
ns IN A {TEST_GOOD_IP}
ns2 IN A {TEST_BROKEN_IP}
example IN NS ns1.example.test.
example IN NS ns2.example.test.
ns1.example IN A {GOOD_IP}
ns2.example IN A {BROKEN_IP}
{ds_lines}"""


def _root_zone(ds_line: str) -> str:
    return f"""\
$ORIGIN .
$TTL 3600
. IN SOA a.root. hostmaster.root. 1 7200 3600 1209600 300
. IN NS a.root.
a.root. IN A {ROOT_IP}
test. IN NS ns.test.
test. IN NS ns2.test.
ns.test. IN A {TEST_GOOD_IP}
ns2.test. IN A {TEST_BROKEN_IP}
{ds_line}"""


@dataclass(frozen=True)
class World:
    zones: dict[str, SignedZoneData]
    anchor_text: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base: Path = tmp_path_factory.mktemp("retry-world")
    example = sign_zone(base / "example", "example.test.", EXAMPLE, "ECDSAP256SHA256")
    test = sign_zone(base / "test", "test.", _test_zone(example.ds_text), "ECDSAP256SHA256")
    root = sign_zone(base / "root", ".", _root_zone(test.ds_text), "ECDSAP256SHA256")
    zones = {z.origin: SignedZoneData(z.origin, z.records) for z in (example, test, root)}
    return World(zones, root.ds_text)


def rig(world: World, *, seed: int) -> tuple[ResolverService, SignedNetwork]:
    clock = FakeClock()
    servers = {
        ROOT_IP: SignedAuthority([world.zones["."]]),
        TEST_GOOD_IP: SignedAuthority([world.zones["test."]]),
        TEST_BROKEN_IP: SignedAuthority([world.zones["test."]]),
        GOOD_IP: SignedAuthority([world.zones["example.test."]]),
        BROKEN_IP: SignedAuthority([world.zones["example.test."]]),
    }
    network = SignedNetwork(clock, servers)
    settings = EngineSettings(validation=ValidationSettings(
        anchors=parse_trust_anchors(world.anchor_text)))
    state = SharedState(cache=RecordCache(CacheSettings(), timer=clock),
                        selection=ServerSelection(),
                        root_hints=parse_root_hints(f". 3600000 NS a.root.\n"
                                                    f"a.root. 3600000 A {ROOT_IP}"))
    service = ResolverService(settings=settings, state=state, network=network, clock=clock,
                              rng=random.Random(seed), wall_clock=lambda: NOW)
    return service, network


def resolve(service: ResolverService, name: str, rtype: int = RRType.A) -> Outcome:
    return asyncio.run(service.resolve(Question(name, rtype)))


def broken_signatures(of_type: int) -> Callable[[bytes], bytes]:
    """A rewrite that spoils every RRSIG over `of_type` in a reply (one base64 character
    of the signature changed, through its presentation form)."""

    def rewrite(reply: bytes) -> bytes:
        message = decode(reply)

        def spoil(records: tuple[Record, ...]) -> tuple[Record, ...]:
            out: list[Record] = []
            for rr in records:
                text = rr.to_text()
                if rr.rtype == RRType.RRSIG and text.split()[4] == RRType(of_type).name:
                    # Ten characters from the end: inside the signature, clear of the
                    # base64 padding (whose spare bits a change might not touch).
                    at = len(text) - 10
                    swapped = "A" if text[at] != "A" else "B"
                    rr = parse_record(text[:at] + swapped + text[at + 1:])
                out.append(rr)
            return tuple(out)

        return encode(replace(message, answer=spoil(message.answer),
                              authority=spoil(message.authority)))

    return rewrite


SEEDS = range(6)  # server choice is random: each seed starts with one server or the other


@pytest.mark.parametrize("seed", SEEDS)
def test_a_bogus_answer_from_one_server_is_asked_of_the_other_and_is_secure(
        world: World, seed: int) -> None:
    service, network = rig(world, seed=seed)
    network.rewrite[BROKEN_IP] = broken_signatures(RRType.A)
    outcome = resolve(service, "www.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE
    a_queries = [ip for ip, q in network.asked if q.rtype == RRType.A
                 and q.name == "www.example.test."]
    assert a_queries.count(BROKEN_IP) <= 1 and a_queries[-1] == GOOD_IP


@pytest.mark.parametrize("seed", SEEDS)
def test_a_dnskey_set_that_does_not_verify_is_fetched_from_the_other_server(
        world: World, seed: int) -> None:
    service, network = rig(world, seed=seed)
    network.rewrite[BROKEN_IP] = broken_signatures(RRType.DNSKEY)
    outcome = resolve(service, "www.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE
    dnskey_queries = [ip for ip, q in network.asked if q.rtype == RRType.DNSKEY
                      and q.name == "example.test."]
    assert dnskey_queries.count(BROKEN_IP) <= 1 and dnskey_queries[-1] == GOOD_IP


@pytest.mark.parametrize("seed", SEEDS)
def test_a_ds_that_does_not_verify_is_fetched_again_from_another_parent_server(
        world: World, seed: int) -> None:
    service, network = rig(world, seed=seed)
    network.rewrite[TEST_BROKEN_IP] = broken_signatures(RRType.DS)
    outcome = resolve(service, "www.example.test.")
    assert outcome.rcode == Rcode.NOERROR and outcome.security is Security.SECURE


def test_when_every_server_breaks_its_signatures_the_answer_is_servfail_and_bounded(
        world: World) -> None:
    service, network = rig(world, seed=1)
    network.rewrite[GOOD_IP] = broken_signatures(RRType.DNSKEY)
    network.rewrite[BROKEN_IP] = broken_signatures(RRType.DNSKEY)
    outcome = resolve(service, "www.example.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    dnskey_queries = [q for _, q in network.asked if q.rtype == RRType.DNSKEY
                      and q.name == "example.test."]
    assert 2 <= len(dnskey_queries) <= 3  # max_bogus_retries 2: at most three fetches
