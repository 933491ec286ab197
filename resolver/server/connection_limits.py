"""Admission of connections on the encrypted listeners: access list, total and per-client caps.

Every DoT, DoH and DoQ connection asks the one `ConnectionGate` before its TLS handshake,
so a client the access list denies, or one holding its share of connections already, costs
no handshake. Limits per client keep one address from taking every slot (Unbound's
incoming-num-tcp, per IP as in tcp-connection-limit).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from resolver.dns.header import MAX_MESSAGE_OCTETS


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """Bounds on what encrypted clients may hold."""

    #: Open connections over all encrypted listeners at once.
    max_connections: int = 512
    #: Open connections of one client address at once.
    max_per_client: int = 16
    #: A connection without a complete request this long is closed (RFC 7766 §6.2.3,
    #: RFC 7858 §3.4); so is a peer that reads none of its replies for this long.
    idle_timeout_s: float = 10.0
    #: The TLS (or QUIC) handshake must finish within this.
    handshake_timeout_s: float = 5.0
    #: HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS).
    max_http2_streams: int = 100
    #: Largest DNS message a request may carry (RFC 8484 §6: at most 65535).
    max_request_octets: int = MAX_MESSAGE_OCTETS


class Rejection(enum.Enum):
    """Why a connection was closed before its handshake."""

    ACCESS = "access-control"  #: the access list denies the address
    TOTAL = "max-connections"  #: every slot is taken
    PER_CLIENT = "max-per-client"  #: this address holds its share already


class ConnectionGate:
    """Counts open connections by client address and says which new ones may stay."""

    def __init__(self, limits: ConnectionLimits, admits: Callable[[str], bool]) -> None:
        self.limits = limits
        #: Whether the access list lets this address connect at all (deny: no).
        self._admits = admits
        self._by_client: dict[str, int] = {}
        self.open_connections = 0
        self.accepted = 0
        self.rejected: dict[Rejection, int] = {reason: 0 for reason in Rejection}

    def enter(self, ip: str) -> Rejection | None:
        """Take a slot for a new connection from `ip`, or say why it may not have one."""
        reason = None
        if not self._admits(ip):
            reason = Rejection.ACCESS
        elif self.open_connections >= self.limits.max_connections:
            reason = Rejection.TOTAL
        elif self._by_client.get(ip, 0) >= self.limits.max_per_client:
            reason = Rejection.PER_CLIENT
        if reason is not None:
            self.rejected[reason] += 1
            return reason
        self._by_client[ip] = self._by_client.get(ip, 0) + 1
        self.open_connections += 1
        self.accepted += 1
        return None

    def leave(self, ip: str) -> None:
        """Give back the slot of a connection `enter` admitted."""
        left = self._by_client.pop(ip, 0) - 1
        if left > 0:
            self._by_client[ip] = left
        self.open_connections = max(0, self.open_connections - 1)
