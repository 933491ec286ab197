"""DNS over QUIC for clients (RFC 9250), on aioquic: ALPN "doq", one stream per query.

Rules (RFC 9250 §4.2): a client opens one bidirectional stream per query, sends the message
with a two-octet length prefix and ends the stream; the reply goes back on the same stream,
also length-prefixed, and ends it. The message id of a query must be 0; anything else, a
message that does not fill its stream exactly or a server-initiated stream is a
DOQ_PROTOCOL_ERROR that closes the connection (§4.3). Reply ids are the query's (0).
A new connection asks the `ConnectionGate` on its first datagram (access list, total and
per-client caps) and is closed at once, without a handshake, when refused. QUIC's own idle
timeout closes a quiet connection (`idle_timeout_s`). The TLS inside QUIC is 1.3 (RFC 9001).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from resolver.dns.header import HEADER_OCTETS
from resolver.engine.network import Transport
from resolver.server.client import Channel, Client
from resolver.server.connection_limits import ConnectionGate
from resolver.server.encrypted_answer import EncryptedAnswer
from resolver.server.tls_context import CertificateFiles

logger = logging.getLogger(__name__)
# aioquic logs every connection's open and close at INFO: per-client noise in our log.
logging.getLogger("quic").setLevel(logging.WARNING)

ALPN_DOQ = "doq"
DEFAULT_DOQ_PORT = 853
#: RFC 9250 §4.3: error codes.
DOQ_NO_ERROR = 0x0
DOQ_PROTOCOL_ERROR = 0x2
DOQ_EXCESSIVE_LOAD = 0x4
_HEADER_OCTETS = HEADER_OCTETS


class DoqListener:
    """DNS over QUIC on a list of UDP addresses."""

    def __init__(
        self,
        answer: EncryptedAnswer,
        addresses: list[tuple[str, int]],
        *,
        gate: ConnectionGate,
        certificates: CertificateFiles,
    ) -> None:
        self._answer = answer
        self._addresses = list(addresses)
        self.gate = gate
        self.configuration = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN_DOQ],
            idle_timeout=gate.limits.idle_timeout_s)
        self.load_certificates(certificates)
        self._servers: list[QuicServer] = []
        self.bound_addresses: list[tuple[str, int]] = []
        self.query_tasks: set[asyncio.Task[None]] = set()
        self.protocol_errors = 0  #: connections closed with DOQ_PROTOCOL_ERROR
        self.stopping = False

    def load_certificates(self, files: CertificateFiles) -> None:
        """New connections use these from now on (resolver.server.tls_context reloads)."""
        self.configuration.load_cert_chain(files.cert_file, files.key_file)

    async def start(self) -> None:
        try:
            for ip, port in self._addresses:
                try:
                    server = await serve(ip, port, configuration=self.configuration,
                                         create_protocol=self._protocol)
                except OSError as exc:
                    where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                    raise OSError(exc.errno, f"cannot bind DOQ on {where}: "
                                             f"{exc.strerror or exc}") from exc
                self._servers.append(server)
                transport = server._transport
                if transport is not None:
                    bound = transport.get_extra_info("sockname")
                    self.bound_addresses.append((str(bound[0]), int(bound[1])))
        except BaseException:
            await self.stop()
            raise

    async def stop(self, drain_s: float = 0.0) -> None:
        self.stopping = True
        if self.query_tasks and drain_s > 0:
            await asyncio.wait(set(self.query_tasks), timeout=drain_s)
        for task in self.query_tasks:
            task.cancel()
        if self.query_tasks:
            await asyncio.gather(*self.query_tasks, return_exceptions=True)
        for server in self._servers:
            server.close()
        self._servers.clear()

    def _protocol(self, *args: Any, **kwargs: Any) -> _DoqConnection:
        return _DoqConnection(self, *args, **kwargs)


class _DoqConnection(QuicConnectionProtocol):
    """One client's QUIC connection: streams in, one query each."""

    def __init__(self, listener: DoqListener, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listener = listener
        self._client: Client | None = None
        self._refused = False
        self._streams: dict[int, bytearray] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self._client is None and not self._refused:
            client = Client(ip=str(addr[0]), port=int(addr[1]), transport=Transport.TCP,
                            channel=Channel.DOQ)
            if self._listener.stopping or self._listener.gate.enter(client.ip) is not None:
                self._refused = True
                self._quic.close(error_code=DOQ_EXCESSIVE_LOAD, reason_phrase="refused")
                self.transmit()
                return
            self._client = client
        if self._refused:
            return
        super().datagram_received(data, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._client is not None:
            self._listener.gate.leave(self._client.ip)
            self._client = None
            self._refused = True  # late datagrams of a finished connection are ignored
        for task in self._tasks.values():
            task.cancel()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._on_data(event)
        elif isinstance(event, StreamReset):
            self._streams.pop(event.stream_id, None)
            task = self._tasks.pop(event.stream_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(event, ConnectionTerminated):
            self._release()

    def _on_data(self, event: StreamDataReceived) -> None:
        stream_id = event.stream_id
        if stream_id % 4 != 0:  # only client-initiated bidirectional streams carry queries
            self._protocol_error("query on a stream that is not client bidirectional")
            return
        buffer = self._streams.setdefault(stream_id, bytearray())
        buffer.extend(event.data)
        if len(buffer) > 2 + self._listener.gate.limits.max_request_octets:
            self._protocol_error("query too large")
            return
        if not event.end_stream:
            return
        del self._streams[stream_id]
        size = int.from_bytes(buffer[:2], "big")
        wire = bytes(buffer[2:])
        if len(buffer) < 2 or size != len(wire) or size < _HEADER_OCTETS:
            self._protocol_error("message does not fill its stream")
            return
        if wire[:2] != b"\x00\x00":
            self._protocol_error("message id is not 0")
            return
        task = asyncio.get_running_loop().create_task(self._answer(stream_id, wire))
        self._tasks[stream_id] = task
        self._listener.query_tasks.add(task)
        task.add_done_callback(self._listener.query_tasks.discard)
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))

    async def _answer(self, stream_id: int, wire: bytes) -> None:
        client = self._client
        if client is None:
            return
        reply = await self._listener._answer(wire, client)
        try:
            if reply is None:
                # No reply for this query (access list, rate limit): cancel the stream (§4.3).
                self._quic.reset_stream(stream_id, DOQ_NO_ERROR)
            else:
                self._quic.send_stream_data(stream_id, len(reply).to_bytes(2, "big") + reply,
                                            end_stream=True)
        except (RuntimeError, ValueError) as exc:  # aioquic: the stream or connection ended
            logger.debug("DNS over QUIC reply to %s not sent: %r", client.ip, exc)
            return
        self.transmit()

    def _protocol_error(self, reason: str) -> None:
        self._listener.protocol_errors += 1
        logger.debug("DNS over QUIC protocol error from %s: %s",
                     self._client.ip if self._client else "?", reason)
        self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase=reason)
        self.transmit()
