"""DNS over HTTPS requests and responses as values (RFC 8484), without any I/O.

The HTTP/1.1 and HTTP/2 sessions (resolver.server.https_listener) give `read_request` what
they parsed and send what it and `response_headers` return. Rules:
- Only the configured path (`/dns-query` by default); anything else is 404.
- GET carries the query base64url-encoded without padding in `dns=` (RFC 8484 §4.1, §6);
  POST carries it as the body with `Content-Type: application/dns-message` (415 otherwise).
  Other methods are 405; a message shorter than a DNS header, or longer than the limit, 400
  or 413.
- A response is 200 with `application/dns-message` whatever the DNS rcode (RFC 8484 §4.2.1)
  and `Cache-Control: max-age` of the smallest TTL in it (RFC 8484 §5.1), 0 without records.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from resolver.dns.header import HEADER_OCTETS
from resolver.dns.scanner import MalformedMessage, scan_message
from resolver.server.reply_octets import record_ttls

DNS_MESSAGE = "application/dns-message"
DEFAULT_PATH = "/dns-query"
_HEADER_OCTETS = HEADER_OCTETS


@dataclass(frozen=True, slots=True)
class DohQuery:
    """A request that carries a DNS query."""

    wire: bytes


@dataclass(frozen=True, slots=True)
class HttpRefusal:
    """A request answered with an HTTP error, and no DNS."""

    status: int
    reason: str


def check_https_path(text: str) -> str:
    """The path DoH is served at, as configured; ValueError if it is not a plain URL path."""
    if not text.startswith("/") or any(c in text for c in "?# "):
        raise ValueError(f"must be a URL path starting with '/', without '?', '#' or spaces, "
                         f"not {text!r}")
    return text


def read_request(
    method: str, target: str, content_type: str | None, body: bytes, *, path: str,
    max_octets: int,
) -> DohQuery | HttpRefusal:
    """What one HTTP request asks, or the HTTP error it gets."""
    parts = urlsplit(target)
    if parts.path != path:
        return HttpRefusal(404, "not found")
    if method == "GET":
        values = parse_qs(parts.query).get("dns")
        if not values:
            return HttpRefusal(400, "no dns parameter")
        text = values[0]
        if len(text) > (max_octets * 4 + 2) // 3:
            return HttpRefusal(413, "query too large")
        try:
            wire = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return HttpRefusal(400, "dns parameter is not base64url")
    elif method == "POST":
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != DNS_MESSAGE:
            return HttpRefusal(415, f"content type must be {DNS_MESSAGE}")
        wire = body
    else:
        return HttpRefusal(405, "only GET and POST")
    if len(wire) > max_octets:
        return HttpRefusal(413, "query too large")
    if len(wire) < _HEADER_OCTETS:
        return HttpRefusal(400, "not a DNS message")
    return DohQuery(wire)


def cache_max_age(reply: bytes) -> int:
    """Seconds an HTTP cache may keep `reply`: its smallest TTL (RFC 8484 §5.1)."""
    try:
        ttls = record_ttls(reply, scan_message(reply).question_end)
    except MalformedMessage:
        return 0
    return min(ttls) if ttls else 0


def response_headers(reply: bytes) -> list[tuple[str, str]]:
    """The headers of the 200 response that carries `reply`."""
    return [
        ("content-type", DNS_MESSAGE),
        ("content-length", str(len(reply))),
        ("cache-control", f"max-age={cache_max_age(reply)}"),
    ]


def refusal_headers(refusal: HttpRefusal) -> list[tuple[str, str]]:
    """The headers of an error response, whose body is `refusal.reason` in plain text."""
    return [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(refusal.reason.encode()) + 1)),
        ("cache-control", "no-store"),
    ]
