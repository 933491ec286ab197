"""Hostile answer sizes: an authority that answers with thousands of records must cost the
resolver time proportional to the records, and must not stall the other clients. A real
`resolver serve` against scripted fake servers on 127.74.0.0/16."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import RR, DNSHeader, DNSQuestion, DNSRecord
from dnslib import A as RecordA

from resolver.engine.settings import Limits
from tests.support.fakeauth import (
    FakeAuth,
    FakeNet,
    addresses,
    answer,
    raw,
    resolver_against,
    root_server,
    truncate,
    zone,
)

pytestmark = pytest.mark.integration

ROOT = "127.74.0.1"
HOSTILE = "127.74.0.2"
HONEST = "127.74.0.3"
LIMIT = Limits().max_records_per_reply


def _records(count: int) -> list[str]:
    return [f"{{qname}} 300 A 10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(count)]


@functools.cache
def _template(count: int) -> bytes:
    """A reply to "h00.huge.test. A" with `count` A records, owners compressed (about 16
    octets a record: 4,000 fill 64 KB). Built once; other names are patched in."""
    reply = DNSRecord(DNSHeader(id=0, qr=1, aa=1), q=DNSQuestion("h00.huge.test", 1))
    for i in range(count):
        address = RecordA(f"10.0.{i // 256}.{i % 256}")
        reply.add_answer(RR("h00.huge.test", 1, ttl=300, rdata=address))
    return bytes(reply.pack())


def _hostile_reply(index: int) -> bytes:
    return _template(4000).replace(b"\x03h00", b"\x03h%02d" % index)


def _nets() -> tuple[FakeNet, FakeNet]:
    """The root and the hostile zone's server in one loop, the honest one in its own (on
    the same port), so that the fake hostile server's own work delays no honest answer."""
    hostile = FakeAuth(HOSTILE, zones={"huge.test": zone("huge.test", "ns A " + HOSTILE,
                                                        ns=["ns.huge.test"])})
    for index in range(21):
        hostile.on(f"h{index:02d}.huge.test", "A", raw(_hostile_reply(index)))
    hostile.on("*.big.huge.test", "A", truncate(answer(*_records(LIMIT - 1))))  # + OPT
    honest = FakeAuth(HONEST, zones={"fine.test": zone("fine.test", "ns A " + HONEST,
                                                      ns=["ns.fine.test"])})
    honest.on("*.fine.test", "A", answer("{qname} 300 A 192.0.2.7"))
    root = root_server(ROOT, "huge NS ns.huge", "ns.huge A " + HOSTILE,
                       "fine NS ns.fine", "ns.fine A " + HONEST)
    first = FakeNet(root, hostile, lifetime_s=100)
    return first, FakeNet(honest, lifetime_s=100)


@contextlib.contextmanager
def _same_port(other: FakeNet, net: FakeNet) -> Iterator[FakeNet]:
    other.port = net.port
    with other:
        yield other


def test_an_answer_of_4000_records_is_refused_and_the_client_told_servfail(tmp_path: Path) -> None:
    """Over max_records_per_reply the reply counts as malformed: SERVFAIL, at once."""
    first, second = _nets()
    with first as net, _same_port(second, net), resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        reply = resolver.ask("h20.huge.test", tcp=True, timeout_s=10)
        elapsed = time.monotonic() - started
    print(f"4000-record answer: rcode {reply.header.rcode} after {elapsed:.2f} s")
    assert reply.header.rcode == 2  # SERVFAIL
    assert not reply.rr


def test_an_answer_at_the_record_limit_is_answered_whole(tmp_path: Path) -> None:
    """A large RRset within the limit is served, every record of it."""
    first, second = _nets()
    with first as net, _same_port(second, net), resolver_against(net, tmp_path) as resolver:
        started = time.monotonic()
        reply = resolver.ask("x.big.huge.test", tcp=True, timeout_s=10)
        elapsed = time.monotonic() - started
        again = resolver.ask("x.big.huge.test", tcp=True, timeout_s=10)
    print(f"{LIMIT}-record answer: {len(reply.rr)} records after {elapsed:.2f} s")
    assert len(addresses(reply)) == LIMIT - 1
    assert sorted(addresses(again)) == sorted(addresses(reply))


def test_twenty_4000_record_answers_at_once_leave_other_clients_answered(tmp_path: Path) -> None:
    """While 20 clients ask for 4,000-record answers at once, clients of an honest zone are
    all answered, each within the stub's patience (5 s, glibc's timeout)."""
    first, second = _nets()
    with (first as net, _same_port(second, net), resolver_against(net, tmp_path) as resolver,
          concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool):
        hostile = [pool.submit(resolver.ask, f"h{i:02d}.huge.test", timeout_s=15)
                   for i in range(20)]
        time.sleep(0.05)  # the hostile lookups under way first
        honest = [pool.submit(resolver.ask, f"c{i}.fine.test", timeout_s=5)
                  for i in range(10)]
        honest_answers = [addresses(f.result(timeout=20)) for f in honest]
        hostile_rcodes = [f.result(timeout=30).header.rcode for f in hostile]
    assert honest_answers == [["192.0.2.7"]] * 10
    assert hostile_rcodes == [2] * 20
