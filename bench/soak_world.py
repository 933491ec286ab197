"""The authoritative world of `make soak`: a root and five zones on loopback, one UDP port.

Each server is a few lines of byte handling (no DNS library), so that the world costs
little CPU beside the resolver it feeds:

- 127.0.21.1, the root: refers every name below a zone to that zone's server, with glue.
- cached. (127.0.21.2): an A record for every name, TTL one day (the names clients repeat).
- nxd. (127.0.21.3): NXDOMAIN for every name below the apex, with its SOA (negative TTL one
  hour): new names fill the cache as random-subdomain traffic does.
- slow. (127.0.21.4): an A record, 2.5 s late (docs/reliability.md (d), slow authority).
- hole. (127.0.21.5): reads every query and never answers (black-holed).
- junk. (127.0.21.6): answers with the query's id and random octets (garbage).

Run: python bench/soak_world.py PORT (until killed). Loopback only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys

ROOT = "127.0.21.1"
ZONES = {
    "cached.": "127.0.21.2",
    "nxd.": "127.0.21.3",
    "slow.": "127.0.21.4",
    "hole.": "127.0.21.5",
    "junk.": "127.0.21.6",
}
SLOW_S = 2.5
DAY = 86_400
NEGATIVE_TTL = 3_600
_TYPE_A, _TYPE_NS, _TYPE_SOA = 1, 2, 6
_RR = struct.Struct("!HHIH")


def wire_name(name: str) -> bytes:
    return b"".join(bytes((len(label),)) + label.encode()
                    for label in name.split(".") if label) + b"\x00"


def record(owner: str, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return wire_name(owner) + _RR.pack(rtype, 1, ttl, len(rdata)) + rdata


def soa(zone: str) -> bytes:
    rdata = (wire_name("ns." + zone) + wire_name("hostmaster." + zone)
             + struct.pack("!5I", 1, 7200, 900, 1_209_600, NEGATIVE_TTL))
    return record(zone, _TYPE_SOA, NEGATIVE_TTL, rdata)


def address(ip: str) -> bytes:
    return bytes(int(part) for part in ip.split("."))


def parse_question(data: bytes) -> tuple[str, int, int] | None:
    """(lower-case name, type, end of question) of a query, or None."""
    try:
        pos, labels = 12, []
        while data[pos]:
            length = data[pos]
            labels.append(data[pos + 1 : pos + 1 + length].decode("ascii").lower())
            pos += length + 1
        rtype = (data[pos + 1] << 8) | data[pos + 2]
        return ".".join(labels) + ".", rtype, pos + 5
    except (IndexError, UnicodeDecodeError):
        return None


def reply(data: bytes, qend: int, rcode: int, answer: list[bytes], authority: list[bytes],
          additional: list[bytes], aa: bool = True) -> bytes:
    flags = 0x8000 | (0x0400 if aa else 0) | (data[2] & 0x01) << 8 | rcode
    return (data[:2] + struct.pack("!5H", flags, 1, len(answer), len(authority), len(additional))
            + data[12:qend] + b"".join(answer) + b"".join(authority) + b"".join(additional))


def zone_of(name: str) -> str | None:
    for zone in ZONES:
        if name == zone or name.endswith("." + zone):
            return zone
    return None


def referral(data: bytes, qend: int, zone: str) -> bytes:
    ns = "ns." + zone
    return reply(data, qend, 0, [], [record(zone, _TYPE_NS, DAY, wire_name(ns))],
                 [record(ns, _TYPE_A, DAY, address(ZONES[zone]))], aa=False)


def answer_root(data: bytes, name: str, rtype: int, qend: int) -> bytes | None:
    zone = zone_of(name)
    if zone is not None:
        return referral(data, qend, zone)
    if name == "." and rtype == _TYPE_NS:
        return reply(data, qend, 0, [record(".", _TYPE_NS, DAY, wire_name("a.root.soak."))], [],
                     [record("a.root.soak.", _TYPE_A, DAY, address(ROOT))])
    return reply(data, qend, 3, [], [soa(".")], [])


def answer_zone(data: bytes, zone: str, name: str, rtype: int, qend: int) -> bytes:
    """An authoritative answer in `zone`: the apex's NS and SOA, A records or NXDOMAIN."""
    if name == zone:
        if rtype == _TYPE_NS:
            return reply(data, qend, 0, [record(zone, _TYPE_NS, DAY, wire_name("ns." + zone))],
                         [], [record("ns." + zone, _TYPE_A, DAY, address(ZONES[zone]))])
        if rtype == _TYPE_SOA:
            return reply(data, qend, 0, [soa(zone)], [], [])
        return reply(data, qend, 0, [], [soa(zone)], [])
    if name == "ns." + zone and rtype == _TYPE_A:
        return reply(data, qend, 0, [record(name, _TYPE_A, DAY, address(ZONES[zone]))], [], [])
    if zone == "nxd.":
        return reply(data, qend, 3, [], [soa(zone)], [])
    if rtype != _TYPE_A:
        return reply(data, qend, 0, [], [soa(zone)], [])
    return reply(data, qend, 0, [record(name, _TYPE_A, DAY, address("192.0.2.1"))], [], [])


class Server(asyncio.DatagramProtocol):
    def __init__(self, zone: str | None) -> None:
        self.zone = zone  # None: the root
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None or len(data) < 12 or data[2] & 0x80:
            return
        if self.zone == "hole.":
            return
        if self.zone == "junk.":
            self.transport.sendto(data[:2] + b"\x84\x00" + os.urandom(20 + data[3] % 40), addr)
            return
        question = parse_question(data)
        if question is None:
            return
        name, rtype, qend = question
        if self.zone is None:
            out = answer_root(data, name, rtype, qend)
        else:
            out = answer_zone(data, self.zone, name, rtype, qend)
        if out is None:
            return
        if self.zone == "slow.":
            asyncio.get_running_loop().call_later(SLOW_S, self.transport.sendto, out, addr)
        else:
            self.transport.sendto(out, addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [(ROOT, None), *((ip, zone) for zone, ip in ZONES.items())]
    for ip, zone in servers:
        await loop.create_datagram_endpoint(lambda zone=zone: Server(zone),  # type: ignore[misc]
                                            local_addr=(ip, port))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(serve(int(sys.argv[1])))
    except ImportError:
        asyncio.run(serve(int(sys.argv[1])))
