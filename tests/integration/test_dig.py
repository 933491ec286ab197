"""The resolver as a stub client sees it: real `dig` over UDP and TCP against the lab."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
from dataclasses import dataclass, field

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import RunningResolver

pytestmark = pytest.mark.integration


@dataclass
class DigReply:
    status: str
    flags: set[str]
    answer: list[list[str]] = field(default_factory=list)
    authority: list[list[str]] = field(default_factory=list)
    edns: str | None = None
    text: str = ""

    def rdata(self, rtype: str) -> list[str]:
        return [" ".join(rr[4:]) for rr in self.answer if rr[3] == rtype]


def dig(resolver: RunningResolver, *args: str) -> DigReply:
    exe = require_tool("dig")
    out = subprocess.run(
        [exe, f"@{resolver.ip}", "-p", str(resolver.port), "+time=5", "+tries=1",
         "+nocookie", *args],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    assert status and flags, out
    reply = DigReply(status=status.group(1), flags=set(flags.group(1).split()), text=out)
    edns = re.search(r"; EDNS: (.*)", out)
    reply.edns = edns.group(1) if edns else None
    section = None
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = reply.answer
        elif line.startswith(";; AUTHORITY SECTION"):
            section = reply.authority
        elif line.startswith(";;") or not line.strip():
            section = None if line.startswith(";;") else section
        elif section is not None and not line.startswith(";"):
            section.append(line.split())
    return reply


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_a_record_walks_root_com_networkutopia(
    resolver: RunningResolver, transport: str
) -> None:
    """www.networkutopia.com A is answered over UDP and TCP with the lab's address."""
    reply = dig(resolver, transport, "www.networkutopia.com", "A")
    assert reply.status == "NOERROR"
    assert reply.rdata("A") == ["212.212.212.2"]
    assert {"qr", "rd", "ra"} <= reply.flags
    assert "aa" not in reply.flags


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_cname_chain_across_zones(resolver: RunningResolver, transport: str) -> None:
    """www.ibm.com is an alias in another zone; the answer carries the chain and the address."""
    reply = dig(resolver, transport, "www.ibm.com", "A")
    assert reply.status == "NOERROR"
    assert reply.rdata("CNAME") == ["servereast.backup2.ibm.com."]
    assert reply.rdata("A")
    assert reply.answer[0][3] == "CNAME"


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_mx_record(resolver: RunningResolver, transport: str) -> None:
    """MX records are returned with preference and exchange."""
    reply = dig(resolver, transport, "networkutopia.com", "MX")
    assert reply.status == "NOERROR"
    assert reply.rdata("MX") == ["10 mail.networkutopia.com."]


def test_dig_aaaa_record(resolver: RunningResolver) -> None:
    """AAAA records resolve like any other type."""
    reply = dig(resolver, "www.crepes.fr", "AAAA")
    assert reply.status == "NOERROR"
    assert reply.rdata("AAAA"), reply.text


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_nxdomain_carries_soa(resolver: RunningResolver, transport: str) -> None:
    """A name that does not exist gets NXDOMAIN with the zone's SOA in the authority section."""
    reply = dig(resolver, transport, "nothere.networkutopia.com", "A")
    assert reply.status == "NXDOMAIN"
    assert not reply.answer
    assert [rr[3] for rr in reply.authority] == ["SOA"]
    assert reply.authority[0][0] == "networkutopia.com."


def test_dig_nodata_carries_soa(resolver: RunningResolver) -> None:
    """A name without the asked type gets NOERROR, no answer, and the SOA (RFC 2308 §2.2)."""
    reply = dig(resolver, "mail.networkutopia.com", "TXT")
    assert reply.status == "NOERROR"
    assert not reply.answer
    assert [rr[3] for rr in reply.authority] == ["SOA"]


def test_dig_reverse_lookup(resolver: RunningResolver) -> None:
    """dig -x 212.212.212.2 finds www.networkutopia.com through in-addr.arpa."""
    reply = dig(resolver, "-x", "212.212.212.2")
    assert reply.status == "NOERROR"
    assert reply.rdata("PTR") == ["www.networkutopia.com."]


def test_dig_several_addresses(resolver: RunningResolver) -> None:
    """A name with several A records returns them all (load distribution)."""
    reply = dig(resolver, "www.cnn.com", "A")
    assert reply.status == "NOERROR"
    assert len(reply.rdata("A")) >= 2


def test_dig_five_times_sees_the_addresses_of_a_name_rotate(resolver: RunningResolver) -> None:
    """The lecture's load distribution, as Unbound's rrset-roundrobin does it: answers from
    the cache list www.cnn.com's four addresses in a rotating order."""
    orders = [tuple(dig(resolver, "www.cnn.com", "A").rdata("A")) for _ in range(5)]
    assert all(sorted(order) == sorted(orders[0]) and len(order) == 4 for order in orders)
    assert len(set(orders)) >= 3


def test_dig_glueless_delegation_in_other_tld(resolver: RunningResolver) -> None:
    """glueless.org's only name server lives in .net without glue; it is looked up first."""
    reply = dig(resolver, "www.glueless.org", "A")
    assert reply.status == "NOERROR"
    assert reply.rdata("A")


def test_dig_unknown_type(resolver: RunningResolver) -> None:
    """An unknown type is resolved like any other (RFC 3597): data or NODATA, never an error."""
    reply = dig(resolver, "www.networkutopia.com", "TYPE65400")
    assert reply.status == "NOERROR"


def test_dig_edns_reply_has_opt_and_our_size(resolver: RunningResolver) -> None:
    """An EDNS query gets an OPT of version 0 with our 1232-octet size (RFC 6891)."""
    reply = dig(resolver, "+edns=0", "www.networkutopia.com")
    assert reply.edns is not None and "version: 0" in reply.edns and "udp: 1232" in reply.edns


def test_dig_without_edns_gets_no_opt(resolver: RunningResolver) -> None:
    """A query without OPT gets a reply without OPT."""
    reply = dig(resolver, "+noedns", "www.networkutopia.com")
    assert reply.edns is None
    assert reply.status == "NOERROR"


def test_dig_edns_version_1_gets_badvers(resolver: RunningResolver) -> None:
    """EDNS version 1 is answered BADVERS with an OPT of version 0 (RFC 6891 §6.1.3)."""
    reply = dig(resolver, "+edns=1", "+noednsneg", "www.networkutopia.com")
    assert reply.status == "BADVERS"
    assert reply.edns is not None and "version: 0" in reply.edns
    assert not reply.answer


def test_dig_norecurse_is_refused(resolver: RunningResolver) -> None:
    """RD=0 never makes us recurse."""
    reply = dig(resolver, "+norecurse", "www.crepes.fr")
    assert reply.status == "REFUSED"


def test_dig_zone_transfer_is_refused(resolver: RunningResolver) -> None:
    """AXFR over TCP is REFUSED: a resolver has no zones to transfer."""
    exe = require_tool("dig")
    out = subprocess.run(
        [exe, f"@{resolver.ip}", "-p", str(resolver.port), "+time=5", "+tries=1",
         "networkutopia.com", "AXFR"],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout
    assert "REFUSED" in out or "Transfer failed" in out


def test_dig_chaos_class_is_refused(resolver: RunningResolver) -> None:
    """Classes other than IN are never sent upstream."""
    reply = dig(resolver, "-c", "CH", "version.bind", "TXT")
    assert reply.status == "REFUSED"


def test_dig_small_udp_size_truncates_and_tcp_gets_all(resolver: RunningResolver) -> None:
    """A reply that does not fit 512 octets comes back with TC=1; dig then retries over TCP."""
    truncated = dig(resolver, "+noedns", "+ignore", "big.example.test", "TXT")
    full = dig(resolver, "+noedns", "big.example.test", "TXT")
    assert "tc" in truncated.flags and not truncated.answer
    assert full.status == "NOERROR" and len(full.answer) >= 8


def _udp(resolver: RunningResolver, payload: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (resolver.ip, resolver.port))
        try:
            return s.recvfrom(65535)[0]
        except TimeoutError:
            return None


def test_garbage_datagrams_and_streams_never_kill_the_server(resolver: RunningResolver) -> None:
    """Junk over UDP and TCP gets FORMERR or silence; the next real query is still answered."""
    # 200 questions, each "a" + a pointer to the previous question's name: a pointer chain.
    pointer_chain = bytearray(bytes.fromhex("12340100") + struct.pack("!HHHH", 200, 0, 0, 0))
    previous = 12
    for i in range(200):
        start = len(pointer_chain)
        pointer_chain += b"\x01a" + (struct.pack("!H", 0xC000 | previous) if i else b"\x00")
        pointer_chain += b"\x00\x01\x00\x01"
        previous = start
    junk = [
        b"",
        b"\x00",
        b"\xff" * 11,
        bytes(range(256)),
        bytes.fromhex("123401000001000000000000") + b"\xc0\x0c\x00\x01\x00\x01",  # self pointer
        bytes.fromhex("123401000001000000000000") + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        bytes(pointer_chain),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for payload in junk:
        reply = _udp(resolver, payload, timeout=0.5)
        if reply is not None:
            assert len(reply) >= 12
            assert reply[3] & 0xF in (1, 4, 5)  # FORMERR, NOTIMP or REFUSED; never a crash
    for payload in junk:
        with socket.create_connection((resolver.ip, resolver.port), timeout=2) as conn:
            conn.sendall(struct.pack("!H", len(payload)) + payload if payload else b"\x00\x00")
            conn.settimeout(1)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                conn.recv(65535)
    reply = dig(resolver, "www.crepes.fr", "A")
    assert reply.status == "NOERROR"
    assert resolver.process.poll() is None


def test_malformed_query_gets_formerr_with_its_id(resolver: RunningResolver) -> None:
    """A query whose label is longer than 63 octets gets FORMERR echoing the id."""
    header = bytes.fromhex("beef01000001000000000000")
    query = header + b"\x50" + b"a" * 80 + b"\x00\x00\x01\x00\x01"
    reply = _udp(resolver, query)
    assert reply is not None
    assert reply[:2] == b"\xbe\xef"
    assert reply[2] & 0x80  # QR
    assert reply[3] & 0xF == 1  # FORMERR


def test_other_opcode_gets_notimp(resolver: RunningResolver) -> None:
    """Opcodes other than QUERY (here NOTIFY, 4) are answered NOTIMP."""
    query = bytes.fromhex("beef21000001000000000000") + b"\x00\x00\x06\x00\x01"
    reply = _udp(resolver, query)
    assert reply is not None and reply[3] & 0xF == 4
    assert (reply[2] >> 3) & 0xF == 4  # opcode echoed
