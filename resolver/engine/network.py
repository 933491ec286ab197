"""The seam between the engine's decisions and the wire: what an upstream exchange is.

The engine says "send these bytes to this server over this transport"; a `Network`
carries that out and returns the reply bytes or raises one of the two failures
below. Production uses `resolver.upstream.exchange.AsyncioNetwork`; the replay tests use a
scripted network. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Transport(enum.Enum):
    """How a message travels (RFC 1035 §4.2)."""

    UDP = "udp"  #: one datagram each way
    TCP = "tcp"  #: a stream with a two-octet length prefix per message (RFC 7766)


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """One address of one name server; `port` is 53 except in labs and tests."""

    ip: str
    port: int = 53
    #: Set for DNS over TLS (RFC 7858): the name the server's certificate must carry (its IP
    #: address when no name was given). None: plain UDP/TCP.
    tls_name: str | None = None
    #: Set for DNS over HTTPS (RFC 8484): the URL's path, the queries POSTed to
    #: https://TLS_NAME:PORT/PATH at `ip`. None: not DoH.
    doh_path: str | None = None

    def __str__(self) -> str:
        where = f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"
        if self.doh_path is not None:
            return f"{where}#{self.tls_name}{self.doh_path}"
        return where if self.tls_name is None else f"{where}#{self.tls_name}"


def server_from_spec(spec: str, default_port: int) -> ServerAddress:
    """The server an engine address names: a bare IP on `default_port` (iteration), or a
    configured upstream in Unbound's notation "IP[@PORT][#TLSNAME]" (forwarders, stubs), or
    "IP@PORT#TLSNAME/PATH" for DNS over HTTPS (the path of its URL after the name)."""
    if "@" not in spec and "#" not in spec:
        return ServerAddress(spec, default_port)
    host, _, tls_part = spec.partition("#")
    tls_name, slash, path = tls_part.partition("/")
    ip, at, port = host.partition("@")
    return ServerAddress(ip, int(port) if at and port.isdigit() else default_port,
                         tls_name or None, f"/{path}" if slash else None)


class UpstreamTimeout(Exception):
    """No acceptable reply arrived before the deadline."""


class TransportProblem(enum.Enum):
    """What made an exchange fail at once, as far as the engine needs to know."""

    #: ICMP port unreachable or a refused connection: the host is there, the server not.
    NOBODY_LISTENS = "nobody listens"
    #: No route to the network or host (ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL): for an
    #: IPv6 server, a sign that this host has no working IPv6 at all.
    NETWORK_UNREACHABLE = "network unreachable"
    #: Anything else: a reset connection, a failed TLS handshake, no free socket.
    OTHER = "other"


class UpstreamError(Exception):
    """The exchange failed at once: connection refused or reset, network unreachable."""

    def __init__(self, message: str, problem: TransportProblem = TransportProblem.OTHER) -> None:
        super().__init__(message)
        self.problem = problem


class Network(Protocol):
    """Carries one query to one server and returns the matching reply.

    A reply is returned only when it matches the query (source address and port,
    id, QR=1 and question, RFC 5452 §9.1); anything else is discarded while the
    exchange keeps waiting until `timeout_s` has passed.
    """

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes: ...
