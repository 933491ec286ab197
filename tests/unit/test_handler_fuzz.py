"""The handler under arbitrary input: it never raises, and what it sends is a proper reply."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from resolver.engine.network import Transport
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from tests.support.labnet import FakeClock, LabNetwork, lab_service

UDP = Client(ip="127.0.0.1", port=5353, transport=Transport.UDP)
TCP = Client(ip="127.0.0.1", port=5353, transport=Transport.TCP)
_clock = FakeClock()
_HANDLER = QueryHandler(lab_service(_clock, LabNetwork(_clock)))


def _valid_query(name: str, rtype: int, edns: bool) -> bytes:
    return make_query(Question(name, rtype), query_id=0x1234, recursion_desired=True,
                      edns_udp_size=1232 if edns else None)


def _check(wire: bytes, client: Client) -> None:
    reply = asyncio.run(_HANDLER.handle(wire, client))
    if reply is None:
        return
    assert len(reply) >= 12
    assert reply[:2] == wire[:2]  # the id is echoed
    assert reply[2] & 0x80  # QR
    if client.transport is Transport.UDP and b"\x00\x00\x29" not in reply:
        assert len(reply) <= 512
    decode(reply)  # our own strict decoder accepts every reply we send


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=300), st.sampled_from([UDP, TCP]))
def test_handler_arbitrary_bytes_never_raise(data: bytes, client: Client) -> None:
    """Any octets: no exception, and any reply is a well-formed reply with the same id."""
    _check(data, client)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["www.networkutopia.com.", "nothere.crepes.fr.", "big.example.test.", "."]),
    st.sampled_from([RRType.A, RRType.AAAA, RRType.TXT, RRType.MX, 0, 41, 252, 255, 65400]),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
    st.sampled_from([UDP, TCP]),
)
def test_handler_mutated_queries_never_raise(
    name: str, rtype: int, edns: bool, flips: list[tuple[int, int]], client: Client
) -> None:
    """Valid queries with a few octets changed (flags, counts, lengths, names)."""
    wire = bytearray(_valid_query(name, rtype, edns))
    for position, value in flips:
        if position < len(wire):
            wire[position] = value
    _check(bytes(wire), client)


def test_handler_query_with_every_header_flag_is_answered_cleanly() -> None:
    """QR=0 with AA, TC, RD, RA, Z, AD and CD all set: answered, Z and AA clear, CD echoed."""
    wire = bytearray(_valid_query("www.networkutopia.com.", RRType.A, True))
    struct.pack_into("!H", wire, 2, 0x07F0)  # AA TC RD RA Z AD CD, opcode 0
    reply = asyncio.run(_HANDLER.handle(bytes(wire), UDP))
    assert reply is not None
    flags = struct.unpack_from("!H", reply, 2)[0]
    assert flags & 0x8000 and not flags & 0x0400 and not flags & 0x0040  # QR, no AA, no Z
    assert flags & 0x0010 and flags & 0x0100 and flags & 0x0080  # CD and RD echoed, RA set
