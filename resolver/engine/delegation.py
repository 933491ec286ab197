"""Zone cuts: which servers are authoritative for a zone, and the root hints.

A `Delegation` is a zone name plus its name servers, each with the addresses we know.
Forwarding is the same shape with `recursion_desired=True` (Unbound's forward zones).
A name server learnt from DNS data has IP addresses (glue, address records), asked on the
port every iterated server is asked on; a configured one (forward or stub zone) has its
`upstream`, a `ServerAddress` parsed from the operator's notation with its own port and
TLS name.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from resolver.dns import names
from resolver.dns.wire import Record, RRType, parse_records
from resolver.engine.network import ServerAddress


@dataclass(frozen=True, slots=True)
class NameServer:
    """One NS name and the addresses known for it (possibly none yet: glueless)."""

    name: str
    #: IP addresses learnt from DNS data (glue, A and AAAA records, root hints).
    addresses: tuple[str, ...] = ()
    #: A configured upstream (forward or stub zone server), with its own port and TLS name.
    upstream: ServerAddress | None = None

    @property
    def reachable(self) -> bool:
        """Whether there is an address to ask this server at (else it is glueless)."""
        return bool(self.addresses) or self.upstream is not None

    def address_texts(self) -> tuple[str, ...]:
        """Its addresses as traces and logs show them."""
        if self.upstream is not None:
            return (*self.addresses, self.upstream.notation())
        return self.addresses


class CutSource(enum.StrEnum):
    """Where a zone cut came from: traces say it, and the engine branches on it."""

    ROOT_HINTS = "root hints"
    REFERRAL = "referral"
    CACHE = "cache"
    MINIMISATION = "minimisation"  #: an NS answer for a minimised name (RFC 9156 §3)
    FORWARDERS = "forwarders"
    STUB_ZONE = "stub zone"
    PARENT_SIDE_FALLBACK = "parent-side fallback"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delegation:
    """A zone cut: `zone` is served by `servers` (RFC 1034 §4.2.2)."""

    zone: str
    servers: tuple[NameServer, ...]
    source: CutSource = CutSource.REFERRAL
    #: True for forwarders: the servers recurse for us (RD=1).
    recursion_desired: bool = False
    ttl: int = 0

    @property
    def has_addresses(self) -> bool:
        return any(ns.reachable for ns in self.servers)

    def names(self) -> list[str]:
        return [ns.name for ns in self.servers]


class RootHintsError(ValueError):
    """The root hints file is missing, unreadable or names no usable server."""


def parse_root_hints(text: str) -> Delegation:
    """Read a root hints file (the IANA named.root format) into the root delegation."""
    try:
        records = parse_records(text)
    except ValueError as exc:
        raise RootHintsError(str(exc)) from None
    return delegation_from_records(".", records, source=CutSource.ROOT_HINTS)


def load_root_hints(path: Path) -> Delegation:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RootHintsError(f"cannot read root hints {path}: {exc.strerror}") from None
    hints = parse_root_hints(text)
    if not hints.has_addresses:
        raise RootHintsError(f"root hints {path} name no server with an address")
    return hints


def delegation_from_records(
    zone: str, records: list[Record] | tuple[Record, ...], *, source: CutSource
) -> Delegation:
    """Build a delegation for `zone` from its NS records and any A/AAAA records among `records`."""
    # Dicts keep the first-seen order and make each membership test O(1): a hostile
    # referral with thousands of NS or glue records costs time linear in its size.
    addresses: dict[str, dict[str, None]] = {}
    ttl = 0
    for rr in records:
        if rr.rtype == RRType.NS and rr.name == zone:
            addresses.setdefault(rr.target, {})
            ttl = rr.ttl if not ttl else min(ttl, rr.ttl)
    for rr in records:
        known = addresses.get(rr.name)
        if rr.rtype in (RRType.A, RRType.AAAA) and known is not None:
            known.setdefault(rr.address)
    servers = tuple(NameServer(name, tuple(found)) for name, found in addresses.items())
    return Delegation(zone=zone, servers=servers, source=source, ttl=ttl)


def forwarders(upstreams: Iterable[ServerAddress], *, zone: str = ".") -> Delegation:
    """Recursive upstreams for `zone`: a delegation whose servers are asked with RD=1."""
    servers = tuple(NameServer(f"forwarder-{i}.", upstream=upstream)
                    for i, upstream in enumerate(upstreams, 1))
    return Delegation(
        zone=names.canonical(zone), servers=servers, source=CutSource.FORWARDERS,
        recursion_desired=True
    )


@functools.lru_cache(maxsize=4096)
def is_loopback_or_unspecified(address: str) -> bool:
    """127.0.0.0/8, ::1, 0.0.0.0/8 and :: — never asked unless configured (Unbound
    do-not-query-localhost)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    if ip.version == 4:
        return ip.is_loopback or ip in ipaddress.ip_network("0.0.0.0/8")
    return ip.is_loopback or ip.is_unspecified or (
        ip.ipv4_mapped is not None and is_loopback_or_unspecified(str(ip.ipv4_mapped))
    )


#: IPv4 networks that never hold a DNS server: "this network", multicast, reserved and the
#: limited broadcast (RFC 1122 §3.2.1.3, RFC 5771, RFC 1112 §4, RFC 919).
_NOT_UNICAST_V4 = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"))


@functools.lru_cache(maxsize=4096)
def is_never_a_server(address: str) -> bool:
    """An address no query should be sent to: unspecified, multicast, broadcast or
    reserved (Unbound refuses them as well). Asking one would reach nobody, or everybody."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return is_never_a_server(str(ip.ipv4_mapped))
        return ip.is_unspecified or ip.is_multicast
    return any(ip in network for network in _NOT_UNICAST_V4)


def is_ipv6(address: str) -> bool:
    return ":" in address
