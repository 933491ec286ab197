"""DNS over HTTPS to upstream resolvers (RFC 8484): HTTP/2 connections, reused, many streams.

Rules this module keeps:
- Each query is one HTTP/2 POST of `application/dns-message` to the upstream's path
  (RFC 8484 §4.1), its message id set to 0 (§4.1: "SHOULD use a DNS ID of 0") and put back in
  the reply, so the engine's matching by id and question works unchanged.
- The certificate is verified against the system's CA store or a given CA file (the same
  context as DNS over TLS, `tls.make_tls_context`), for the URL's host name or IP address;
  ALPN must settle on `h2` (RFC 9113 §3.2). Anything less fails the exchange: there is no
  fallback to HTTP/1.1 or to clear text (RFC 8310 §6.6, strict profile).
- One connection per upstream, shared by every query to it, each query its own stream, as
  many in flight as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows (RFC 9113 §5.1.2);
  queries beyond it wait for a stream to end.
- A reply counts only with status 200, content type `application/dns-message`, at most 65535
  octets (RFC 8484 §4.2.1, §6) and matching the question (RFC 5452 §9.1).
- A connection is closed after `idle_timeout_s` without an outstanding query; a GOAWAY or a
  connection the server closed sends the unanswered queries of a used connection once more
  on a new one (RFC 9113 §6.8: streams above the last stream id were not processed).
- Every failure is an `UpstreamError` or `UpstreamTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from resolver.dns.header import MAX_MESSAGE_OCTETS
from resolver.engine.network import ServerAddress, UpstreamError
from resolver.upstream.tls import make_tls_context
from resolver.upstream.tls_pool import ConnectionClosed, IdleClosingConnection, TlsConnectionPool

#: RFC 8484 §6: the media type of a DNS message in a request or a response body.
DNS_MESSAGE = "application/dns-message"
_READ_CHUNK = 65536


def make_doh_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The DNS over TLS client context, offering only HTTP/2 by ALPN."""
    context = make_tls_context(ca_file)
    context.set_alpn_protocols(["h2"])
    return context


class _Stream:
    """One query's stream: the status and body as they arrive, and the waiting caller."""

    __slots__ = ("body", "content_type", "done", "status")

    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.status: str | None = None
        self.content_type: str | None = None
        self.body = bytearray()
        self.done = done


class _Connection(IdleClosingConnection):
    """One HTTP/2 connection to one upstream, with its open streams."""

    def _set_up(self) -> None:
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self._h2.initiate_connection()
        self._writer.write(self._h2.data_to_send())
        self._streams: dict[int, _Stream] = {}
        self._room = asyncio.Event()  #: set when a stream ends or the server grants more

    async def ask(self, query: bytes) -> bytes:
        """POST `query` (id already 0) and return the reply body; ConnectionClosed if the
        connection ends before it, UpstreamError if the server answers but not with DNS."""
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._disarm_idle_timer()
        stream_id: int | None = None
        try:
            while True:
                if self.closed:
                    raise ConnectionClosed("connection already closed")
                limit = self._h2.remote_settings.max_concurrent_streams
                if self._h2.open_outbound_streams < limit:
                    break
                self._room.clear()
                await self._room.wait()
            try:
                stream_id = self._h2.get_next_available_stream_id()
            except h2.exceptions.NoAvailableStreamIDError:
                self.close()  # all 2^30 client stream ids used: a new connection takes over
                raise ConnectionClosed("stream ids exhausted") from None
            self._streams[stream_id] = _Stream(done)
            self._h2.send_headers(stream_id, [
                (":method", "POST"), (":scheme", "https"),
                (":authority", _authority(self.server)), (":path", self.server.doh_path or "/"),
                ("content-type", DNS_MESSAGE), ("accept", DNS_MESSAGE),
                ("content-length", str(len(query))),
            ])
            await self._send_body(stream_id, query)
            self.queries += 1
            return await done
        except (OSError, RuntimeError, h2.exceptions.ProtocolError) as exc:
            self.close()
            raise ConnectionClosed(str(exc) or type(exc).__name__) from None
        finally:
            done.cancel()
            if stream_id is not None and self._streams.pop(stream_id, None) is not None:
                # Given up before the reply (a timeout): tell the server to stop.
                with contextlib.suppress(h2.exceptions.ProtocolError,
                                         h2.exceptions.StreamClosedError):
                    self._h2.reset_stream(stream_id)
                    self._flush()
            self._room.set()
            if not self._streams:
                self._arm_idle_timer()

    async def _send_body(self, stream_id: int, query: bytes) -> None:
        sent = 0
        while True:
            # Flow control (RFC 9113 §5.2): a query is small, but a server may open with a
            # tiny window; what does not fit waits for a WINDOW_UPDATE.
            room = min(self._h2.local_flow_control_window(stream_id),
                       self._h2.max_outbound_frame_size, len(query) - sent)
            if room > 0 or sent == len(query):
                chunk = query[sent:sent + room]
                sent += len(chunk)
                self._h2.send_data(stream_id, chunk, end_stream=sent == len(query))
                self._flush()
                await self._writer.drain()
                if sent == len(query):
                    return
                continue
            self._room.clear()
            await self._room.wait()
            if self.closed:
                raise ConnectionClosed("connection closed while sending")

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self.closed:
            self._writer.write(data)

    async def _read_replies(self) -> None:
        reason = "closed by the server"
        try:
            while True:
                data = await self._reader.read(_READ_CHUNK)
                if not data:
                    break
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    reason = f"HTTP/2 protocol error: {exc}"
                    break
                for event in events:
                    self._handle(event)
                self._flush()
        except (OSError, ssl.SSLError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "closed"
        finally:
            self.closed = True
            for stream in list(self._streams.values()):
                if not stream.done.done():
                    stream.done.set_exception(ConnectionClosed(reason))
            self._room.set()
            self._disarm_idle_timer()
            self._writer.close()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                for name, value in event.headers:
                    if name == b":status":
                        stream.status = value.decode("ascii", "replace")
                    elif name == b"content-type":
                        stream.content_type = value.decode("ascii", "replace")
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
                if len(stream.body) > MAX_MESSAGE_OCTETS:
                    self._fail(event.stream_id, "reply body above 65535 octets")
                    with contextlib.suppress(h2.exceptions.StreamClosedError):
                        self._h2.reset_stream(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.done.done():
                # REFUSED_STREAM (RFC 9113 §8.7) means unprocessed: safe to send again.
                stream.done.set_exception(ConnectionClosed(f"stream reset ({event.error_code})"))
            self._room.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True  # GOAWAY: no new streams; the read loop's end fails the rest
            for stream_id, stream in list(self._streams.items()):
                if (event.last_stream_id is None or stream_id > event.last_stream_id) \
                        and not stream.done.done():
                    stream.done.set_exception(ConnectionClosed("GOAWAY"))
            self._room.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._room.set()

    def _finish(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        self._room.set()
        if stream is None or stream.done.done():
            return
        if stream.status != "200":
            self._fail_stream(stream, f"HTTP status {stream.status}")
        elif (stream.content_type or "").split(";")[0].strip().lower() != DNS_MESSAGE:
            self._fail_stream(stream, f"content type {stream.content_type!r}, not {DNS_MESSAGE}")
        else:
            stream.done.set_result(bytes(stream.body))

    def _fail(self, stream_id: int, reason: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._fail_stream(stream, reason)

    def _fail_stream(self, stream: _Stream, reason: str) -> None:
        if not stream.done.done():
            stream.done.set_exception(UpstreamError(f"{self.server} (https): {reason}"))

    def close(self) -> None:
        """Say GOAWAY and close; outstanding queries fail with ConnectionClosed."""
        if not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
                self._flush()
        self.closed = True
        if not self._reading.done():
            self._reading.cancel()
        self._writer.close()


def _authority(server: ServerAddress) -> str:
    host = server.tls_name or server.ip
    if ":" in host:
        host = f"[{host}]"
    return host if server.port == 443 else f"{host}:{server.port}"


class DohClient(TlsConnectionPool[_Connection]):
    """DNS over HTTPS exchanges with upstream resolvers, one HTTP/2 connection per upstream."""

    scheme = "https"
    protocol = "DNS over HTTPS"

    default_idle_timeout_s = 30.0

    def _new_context(self, ca_file: str | None) -> ssl.SSLContext:
        return make_doh_context(ca_file)

    async def exchange(self, query: bytes, server: ServerAddress, timeout_s: float) -> bytes:
        """POST `query` to `server`'s URL and return the matching reply, with the query's id.

        Raises UpstreamTimeout when no reply comes within `timeout_s` (connecting included),
        UpstreamError when the connection cannot be made or verified, the server does not
        answer with a DNS message, or the reply does not match.
        """
        if server.doh_path is None:
            raise UpstreamError(f"{server}: no URL path, not a DNS over HTTPS upstream")
        if len(query) > MAX_MESSAGE_OCTETS:
            raise UpstreamError(f"{server}: query of {len(query)} octets is too long")
        asked = b"\x00\x00" + query[2:]  # RFC 8484 §4.1: id 0, cache friendly
        matcher = self._matcher(server, asked)
        reply = await self._ask_in_time(server, timeout_s, lambda c: c.ask(asked))
        if not matcher.matches(reply):
            raise UpstreamError(f"{server} (https): the reply does not answer the query")
        return query[:2] + reply[2:]

    async def _connect(self, server: ServerAddress) -> _Connection:
        reader, writer = await self._open_tls(server, server.tls_name or server.ip)
        tls = writer.get_extra_info("ssl_object")
        protocol = tls.selected_alpn_protocol() if isinstance(tls, ssl.SSLObject) else None
        if protocol != "h2":
            writer.close()
            self._log_once(server, f"ALPN gave {protocol!r}, not h2")
            raise UpstreamError(f"{server} (https): the server does not speak HTTP/2 "
                                f"(ALPN {protocol!r})")
        self.connections_opened += 1
        return _Connection(server, reader, writer, self.idle_timeout_s)
