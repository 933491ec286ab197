"""Who sent a query and how it reached us: the value every listener hands the handler."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resolver.engine.network import Transport


class Channel(enum.Enum):
    """An encrypted way in for clients; `Client.transport` still says how messages are sized
    (every one of these is a stream: replies are never cut to a UDP size)."""

    DOT = "dot"  #: DNS over TLS (RFC 7858)
    DOH = "doh"  #: DNS over HTTPS (RFC 8484), also plain HTTP behind a TLS-terminating proxy
    DOQ = "doq"  #: DNS over QUIC (RFC 9250)


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """Where a query came from and how it travelled, as the handler sees it."""

    ip: str
    port: int
    transport: Transport
    #: None: plain DNS over UDP or TCP.
    channel: Channel | None = None

    @property
    def via(self) -> str:
        """The way in, as logs and counters name it: udp, tcp, dot, doh or doq."""
        return self.channel.value if self.channel is not None else self.transport.value
