"""DNS over HTTPS for clients (RFC 8484), over HTTP/2 (h2) and HTTP/1.1 (h11).

With TLS, ALPN picks the HTTP version ("h2" or "http/1.1"; none means HTTP/1.1). Plain HTTP
(`--listen-http`, for a reverse proxy that terminates TLS) speaks HTTP/1.1, or HTTP/2 when
the connection opens with the HTTP/2 preface (prior knowledge, RFC 9113 §3.3). What a
request means is resolver.server.doh_message's; this module moves HTTP.
Limits: requests above `max_request_octets` get 413; HTTP/2 connections advertise
`max_http2_streams` concurrent streams (RFC 9113 §5.1.2; a client opening more gets
h2's GOAWAY with PROTOCOL_ERROR and the connection closes); a connection idle for
`idle_timeout_s` is closed (GOAWAY on HTTP/2). HTTP/1.1 requests on one connection are
answered in order; HTTP/2 streams concurrently.
A query the handler gives no reply (access list deny, rate limit) gets 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from resolver.server.client import Channel, Client
from resolver.server.connection_limits import ConnectionGate
from resolver.server.doh_message import (
    DEFAULT_PATH,
    DohQuery,
    HttpRefusal,
    read_request,
    refusal_headers,
    response_headers,
)
from resolver.server.encrypted_answer import EncryptedAnswer
from resolver.server.tls_server import SecureStreamServer

ALPN_HTTP2 = "h2"
ALPN_HTTP1 = "http/1.1"
DEFAULT_HTTPS_PORT = 443
DEFAULT_HTTP_PORT = 80
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_READ_CHUNK = 65536
_MAX_HEADER_OCTETS = 16384
_NO_REPLY = HttpRefusal(403, "no reply for this query")


class DohListener(SecureStreamServer):
    """DNS over HTTPS (with a TLS context) or over plain HTTP (without) on a list of
    addresses."""

    def __init__(
        self,
        answer: EncryptedAnswer,
        addresses: list[tuple[str, int]],
        *,
        gate: ConnectionGate,
        context: ssl.SSLContext | None,
        path: str = DEFAULT_PATH,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(addresses, channel=Channel.DOH, session=self._session_for,
                         gate=gate, context=context, reuse_port=reuse_port)
        self._answer = answer
        self._gate = gate
        self.path = path
        self.requests = 0  #: HTTP requests read
        self.http_errors = 0  #: requests answered with an HTTP error

    async def _session_for(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           client: Client, alpn: str | None) -> None:
        first = b""
        if alpn is None and self._context is None:
            first = await self._read(reader)
            while first and len(first) < len(_HTTP2_PREFACE) and _HTTP2_PREFACE.startswith(
                    first):
                more = await self._read(reader)
                if not more:
                    break
                first += more
        if alpn == ALPN_HTTP2 or first.startswith(_HTTP2_PREFACE):
            await _Http2Session(self, reader, writer, client, first).serve()
        else:
            await _Http1Session(self, reader, writer, client, first).serve()

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        """Some octets, or b"" at EOF or after the idle timeout."""
        try:
            async with asyncio.timeout(self._gate.limits.idle_timeout_s):
                return await reader.read(_READ_CHUNK)
        except TimeoutError:
            return b""

    async def respond(self, request: DohQuery | HttpRefusal, client: Client
                      ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body for one parsed request."""
        self.requests += 1
        if isinstance(request, DohQuery):
            reply = await self._answer(request.wire, client)
            if reply is not None:
                return 200, response_headers(reply), reply
            request = _NO_REPLY
        self.http_errors += 1
        return request.status, refusal_headers(request), request.reason.encode() + b"\n"


class _Session:
    """One client connection of the DoH listener, whichever HTTP version it speaks."""

    def __init__(self, listener: DohListener, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, client: Client) -> None:
        self._listener = listener
        self._reader = reader
        self._writer = writer
        self._client = client


class _Http1Session(_Session):
    """One HTTP/1.1 connection: requests answered one after the other (h11)."""

    def __init__(self, listener: DohListener, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, client: Client, first: bytes) -> None:
        super().__init__(listener, reader, writer, client)
        self._connection = h11.Connection(h11.SERVER,
                                          max_incomplete_event_size=_MAX_HEADER_OCTETS)
        if first:
            self._connection.receive_data(first)

    async def serve(self) -> None:
        limit = self._listener._gate.limits.max_request_octets
        connection = self._connection
        request: h11.Request | None = None
        body = bytearray()
        while not self._listener.stopping:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                await self._send(HttpRefusal(400, "bad HTTP request"), close=True)
                return
            if event is h11.NEED_DATA:
                data = await self._listener._read(self._reader)
                if not data:
                    return
                connection.receive_data(data)
            elif isinstance(event, h11.Request):
                request, body = event, bytearray()
                length = _content_length(event.headers)
                if length is not None and length > limit:
                    await self._send(HttpRefusal(413, "query too large"), close=True)
                    return
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    await self._send(HttpRefusal(413, "query too large"), close=True)
                    return
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                parsed = read_request(
                    request.method.decode("ascii", "replace"),
                    request.target.decode("ascii", "replace"),
                    _header(request.headers, b"content-type"), bytes(body),
                    path=self._listener.path, max_octets=limit)
                status, headers, payload = await self._listener.respond(parsed, self._client)
                await self._write_response(status, headers, payload)
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
                request = None
            else:  # ConnectionClosed, PAUSED after a close: the exchange is over
                return

    async def _send(self, refusal: HttpRefusal, *, close: bool) -> None:
        self._listener.http_errors += 1
        headers = refusal_headers(refusal) + ([("connection", "close")] if close else [])
        with contextlib.suppress(h11.LocalProtocolError):  # a response had begun: just close
            await self._write_response(refusal.status, headers, refusal.reason.encode() + b"\n")

    async def _write_response(self, status: int, headers: list[tuple[str, str]],
                              payload: bytes) -> None:
        connection = self._connection
        out = connection.send(h11.Response(status_code=status, headers=headers)) or b""
        out += connection.send(h11.Data(data=payload)) or b""
        out += connection.send(h11.EndOfMessage()) or b""
        self._writer.write(out)
        async with asyncio.timeout(self._listener._gate.limits.idle_timeout_s):
            await self._writer.drain()


class _Http2Session(_Session):
    """One HTTP/2 connection: each stream one request, answered concurrently (h2)."""

    def __init__(self, listener: DohListener, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, client: Client, first: bytes) -> None:
        super().__init__(listener, reader, writer, client)
        self._first = first
        limits = listener._gate.limits
        # Our response headers are fixed, lower-case and valid: checking them again on every
        # response would be most of h2's cost per request. Requests are still validated.
        self._connection = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self._connection.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_http2_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_OCTETS,
        })
        #: Open request streams: stream id -> (headers, body so far).
        self._requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._window = asyncio.Event()

    async def serve(self) -> None:
        connection = self._connection
        connection.initiate_connection()
        self._flush()
        data = self._first
        try:
            while not self._listener.stopping:
                if not data:
                    data = await self._listener._read(self._reader)
                    if not data:
                        break
                try:
                    events = connection.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self._flush()  # h2 has queued its GOAWAY
                    return
                data = b""
                for event in events:
                    self._on_event(event)
                self._flush()
            if self._tasks:  # idle or half-closed: answer what was asked, then say goodbye
                await asyncio.wait(set(self._tasks.values()),
                                   timeout=self._listener._gate.limits.idle_timeout_s)
            with contextlib.suppress(h2.exceptions.ProtocolError):  # closed by the client already
                connection.close_connection()
            self._flush()
        finally:
            for task in self._tasks.values():
                task.cancel()

    def _on_event(self, event: h2.events.Event) -> None:
        limit = self._listener._gate.limits.max_request_octets
        if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
            headers = {str(k): str(v) for k, v in event.headers or []}
            self._requests[event.stream_id] = (headers, bytearray())
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            self._connection.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
            request = self._requests.get(event.stream_id)
            if request is not None:
                request[1].extend(event.data or b"")
                if len(request[1]) > limit:
                    del self._requests[event.stream_id]
                    self._start(event.stream_id, HttpRefusal(413, "query too large"))
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
            request = self._requests.pop(event.stream_id, None)
            if request is not None:
                headers, body = request
                self._start(event.stream_id, read_request(
                    headers.get(":method", ""), headers.get(":path", ""),
                    headers.get("content-type"), bytes(body), path=self._listener.path,
                    max_octets=limit))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self._requests.pop(event.stream_id, None)
            task = self._tasks.pop(event.stream_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(event, h2.events.WindowUpdated):
            self._window.set()

    def _start(self, stream_id: int, request: DohQuery | HttpRefusal) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(stream_id, request))
        self._tasks[stream_id] = task
        self._listener.query_tasks.add(task)
        task.add_done_callback(self._listener.query_tasks.discard)
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))

    async def _answer(self, stream_id: int, request: DohQuery | HttpRefusal) -> None:
        status, headers, payload = await self._listener.respond(request, self._client)
        connection = self._connection
        try:
            connection.send_headers(stream_id, [(":status", str(status)), *headers])
            while payload:
                window = min(connection.local_flow_control_window(stream_id),
                             connection.max_outbound_frame_size)
                if window <= 0:  # the client's window is full: wait for WINDOW_UPDATE
                    self._window.clear()
                    self._flush()
                    async with asyncio.timeout(self._listener._gate.limits.idle_timeout_s):
                        await self._window.wait()
                    continue
                connection.send_data(stream_id, payload[:window])
                payload = payload[window:]
            connection.end_stream(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return  # the client reset the stream or the connection went
        except TimeoutError:
            connection.reset_stream(stream_id)
        self._flush()

    def _flush(self) -> None:
        out = self._connection.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    text = _header(headers, b"content-length")
    return int(text) if text is not None and text.isdigit() else None
