"""DNS over TLS for clients (RFC 7858): TCP's framing and rules inside TLS, ALPN "dot".

A connection passes the gate and the handshake (resolver.server.tls_server), then is served
exactly as a TCP connection is (resolver.server.stream_connection): length-prefixed
messages, concurrent queries, replies out of order, the idle timeout. A client that offered
ALPN must have chosen "dot" (RFC 7858 §3.2 leaves ALPN out; IANA registered "dot" for it).
"""

from __future__ import annotations

import asyncio
import ssl

from resolver.server.client import Channel, Client
from resolver.server.connection_limits import ConnectionGate
from resolver.server.encrypted_answer import EncryptedAnswer
from resolver.server.stream_connection import FramedConnection, StreamRules
from resolver.server.tls_server import SecureStreamServer

#: ALPN identifier of DNS over TLS.
ALPN_DOT = "dot"
DEFAULT_DOT_PORT = 853


class DotListener(SecureStreamServer):
    """DNS over TLS on a list of addresses."""

    def __init__(
        self,
        answer: EncryptedAnswer,
        addresses: list[tuple[str, int]],
        *,
        gate: ConnectionGate,
        context: ssl.SSLContext,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(addresses, channel=Channel.DOT, session=self._session_for,
                         gate=gate, context=context, reuse_port=reuse_port)
        self._rules = StreamRules(answer=answer, idle_timeout_s=gate.limits.idle_timeout_s,
                                  stopping=lambda: self.stopping, query_tasks=self.query_tasks)

    async def _session_for(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           client: Client, alpn: str | None) -> None:
        if alpn not in (None, ALPN_DOT):
            return
        await FramedConnection(self._rules, reader, writer, client).serve()
