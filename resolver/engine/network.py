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
    """One address of one name server, parsed once: where it was configured (an upstream in
    the operator's notation) or learnt (glue, an address record) and carried as this value
    from then on. `port` is 53 except in labs, tests and configured upstreams.

    The transport follows from the fields: plain UDP/TCP, DNS over TLS when `tls_name` is
    set, DNS over HTTPS when `doh_path` is set as well.
    """

    ip: str
    port: int = 53
    #: Set for DNS over TLS (RFC 7858): the name the server's certificate must carry (its IP
    #: address when no name was given). None: plain UDP/TCP.
    tls_name: str | None = None
    #: Set for DNS over HTTPS (RFC 8484): the URL's path, the queries POSTed to
    #: https://TLS_NAME:PORT/PATH at `ip`. None: not DoH.
    doh_path: str | None = None

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    def __str__(self) -> str:
        where = f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"
        if self.doh_path is not None:
            return f"{where}#{self.tls_name}{self.doh_path}"
        return where if self.tls_name is None else f"{where}#{self.tls_name}"

    def notation(self) -> str:
        """The address in Unbound's forward-addr notation, as traces and logs show a
        configured upstream: `IP@PORT`, `IP@PORT#TLSNAME`, or `IP@PORT#TLSNAME/PATH` for
        DNS over HTTPS."""
        spec = f"{self.ip}@{self.port}"
        if self.doh_path is not None:
            return f"{spec}#{self.tls_name or self.ip}{self.doh_path}"
        return spec if self.tls_name is None else f"{spec}#{self.tls_name}"


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
