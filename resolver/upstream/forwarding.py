"""Forward and stub zones: from the operator's notation to configured delegations, and loops.

The operator writes upstreams in Unbound's notation, `ADDR[@PORT][#TLSNAME]` (IPv6 needs no
brackets: `::1@5301`), and DNS over HTTPS upstreams as URLs,
`https://HOST[:PORT][/PATH][#ADDR]` (port 443 and path /dns-query by default; a HOST that is
a name needs the `#ADDR` to connect to, since no name is looked up to reach an upstream).
A forward zone (Unbound `forward-zone`) is a delegation whose servers
are asked with RD=1 and recurse for us; a stub zone (`stub-zone`) is a delegation to
authoritative servers, asked with RD=0, from which we iterate on. The engine picks the
deepest configured zone that contains the question name, so `corp.example` can go to an
internal server while everything else is iterated or forwarded elsewhere.

Each upstream is parsed here, once, into a `ServerAddress` (IP, port, TLS name, DoH path)
that the engine carries as it is: each upstream keeps its own port and TLS name, and server
selection keeps its health and RTT separately. Text comes back only in messages
(`ServerAddress.notation`).

Loops (Unbound and CoreDNS users' most common forwarding mistake): an upstream that is one
of our own listen addresses is refused at start (`check_no_self_forwarding`); at run time
`ForwardLoopGuard` remembers the (id, question) of every query we forwarded for a few
seconds, so the handler can recognise one of them coming back to us and answer SERVFAIL
instead of waiting on itself.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace

from resolver.dns import names
from resolver.dns.names import MAX_LABEL_OCTETS
from resolver.engine.delegation import CutSource, Delegation, forwarders
from resolver.engine.network import Network, ServerAddress, Transport
from resolver.engine.settings import ForwardingSettings
from resolver.upstream.reply_matching import ReplyMatcher

#: Port of plain DNS (RFC 1035 §4.2).
DNS_PORT = 53
#: Port of DNS over TLS (RFC 7858 §3.1).
DOT_PORT = 853
#: Port of DNS over HTTPS (RFC 8484 §3: HTTPS, so 443).
DOH_PORT = 443
#: The path of a DoH URL written without one (the usual one, and RFC 9462's examples).
DOH_PATH = "/dns-query"
_URL_PATH_FORBIDDEN = frozenset(" ,#?\"\t\r\n")
_MAX_NAME_OCTETS = 253


class ForwardingError(ValueError):
    """A forward or stub zone setting that cannot be used; the message is one line for the user."""


# -- notation ---------------------------------------------------------------------------


def parse_upstream(text: str, *, default_port: int = DNS_PORT, tls: bool = False) -> ServerAddress:
    """Read `ADDR[@PORT][#TLSNAME]`, Unbound's forward-addr notation.

    A `#TLSNAME`, or `tls=True` (Unbound's forward-tls-upstream), asks for DNS over TLS: the
    default port is then 853 and the server's certificate must be valid for TLSNAME, or for
    the address itself when no name is given (RFC 8310 §8). Brackets around an IPv6 address
    are accepted but not needed.
    """
    raw = text.strip()
    if raw.lower().startswith("https://"):
        return parse_https_upstream(raw)
    rest, hash_sign, tls_name = raw.partition("#")
    tls_name, slash, path = tls_name.partition("/")
    host, at_sign, port_text = rest.partition("@")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        raise ForwardingError(
            f"upstream {raw!r}: {host!r} is not an IP address (write ADDR[@PORT][#TLSNAME])"
        ) from None
    use_tls = tls or bool(hash_sign)
    port = DOT_PORT if use_tls else default_port
    if at_sign:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ForwardingError(f"upstream {raw!r}: bad port {port_text!r}")
        port = int(port_text)
    if hash_sign:
        tls_name = _tls_name(tls_name, raw) if tls_name != ip else ip
    if slash:  # a DoH upstream in `ServerAddress.notation`: IP@PORT#TLSNAME/PATH
        return ServerAddress(ip, port, tls_name=tls_name or ip,
                             doh_path=_doh_path("/" + path, raw))
    return ServerAddress(ip, port, tls_name=(tls_name or ip) if use_tls else None)


def parse_https_upstream(text: str) -> ServerAddress:
    """Read a DNS over HTTPS upstream, `https://HOST[:PORT][/PATH][#ADDR]` (RFC 8484).

    HOST is an IP address (the certificate must then be valid for it) or a name, which the
    certificate must carry; a name needs `#ADDR`, the address to connect to, because no
    name is looked up to reach an upstream. A URI template's `{?dns}` is accepted and
    dropped: queries are POSTed (RFC 8484 §4.1).
    """
    raw = text.strip()
    try:
        url = urllib.parse.urlsplit(raw.replace("{?dns}", "", 1))
        port = url.port
    except ValueError as exc:
        raise ForwardingError(f"DoH upstream {raw!r}: {exc}") from None
    if url.scheme.lower() != "https" or not url.hostname:
        raise ForwardingError(f"DoH upstream {raw!r}: write https://HOST[:PORT][/PATH][#ADDR]")
    if url.username is not None or url.query:
        raise ForwardingError(f"DoH upstream {raw!r}: no user or query part (queries are POSTed)")
    host = url.hostname
    try:
        host_ip: str | None = str(ipaddress.ip_address(host))
    except ValueError:
        host_ip = None
    if url.fragment:
        try:
            ip = str(ipaddress.ip_address(url.fragment.strip("[]")))
        except ValueError:
            raise ForwardingError(
                f"DoH upstream {raw!r}: {url.fragment!r} after '#' is not an IP address"
            ) from None
    elif host_ip is not None:
        ip = host_ip
    else:
        raise ForwardingError(
            f"DoH upstream {raw!r}: {host!r} is a name: add the address to connect to, "
            f"{raw}#ADDR"
        )
    tls_name = host_ip if host_ip is not None else _tls_name(host, raw)
    path = url.path or DOH_PATH
    return ServerAddress(ip, DOH_PORT if port is None else port, tls_name=tls_name,
                         doh_path=_doh_path(path, raw))


def _doh_path(path: str, raw: str) -> str:
    if (not path.startswith("/") or not path.isascii()
            or any(c in _URL_PATH_FORBIDDEN for c in path)):
        raise ForwardingError(f"DoH upstream {raw!r}: {path!r} is not a usable URL path")
    return path


def _tls_name(text: str, raw: str) -> str:
    name = text.strip().lower().rstrip(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > _MAX_NAME_OCTETS
        or any(not 0 < len(label) <= MAX_LABEL_OCTETS for label in labels)
        or any(not (c.isascii() and (c.isalnum() or c in "-_")) for c in name.replace(".", ""))
    ):
        raise ForwardingError(f"upstream {raw!r}: {text!r} is not a valid TLS server name")
    return name


def parse_zone_upstreams(
    text: str, *, default_port: int = DNS_PORT, option: str = "--forward-zone"
) -> tuple[str, tuple[ServerAddress, ...]]:
    """Read `ZONE=ADDR[@PORT][#TLSNAME][,ADDR...]` into the zone and its upstreams; each may
    also be a DNS over HTTPS URL (`corp.example=https://10.0.0.1/dns-query`)."""
    zone_text, equals, addresses = text.partition("=")
    if not equals or not addresses.strip():
        raise ForwardingError(f"{option} {text!r}: write ZONE=ADDR[@PORT][,ADDR...]")
    zone = _zone_name(zone_text, option)
    servers = tuple(
        parse_upstream(part, default_port=default_port)
        for part in addresses.split(",")
        if part.strip()
    )
    if not servers:
        raise ForwardingError(f"{option} {text!r}: no upstream address")
    return zone, servers


def _zone_name(text: str, option: str) -> str:
    if not text.strip():
        raise ForwardingError(f"{option}: no zone before '=' (the root is '.')")
    zone = names.canonical(text)
    try:
        zone.encode("ascii")
    except UnicodeEncodeError:
        raise ForwardingError(f"{option}: zone {text!r} is not ASCII (use its xn-- form)") from None
    labels = names.labels(zone)
    if len(zone) > _MAX_NAME_OCTETS + 1 or any(
        not 0 < len(label) <= MAX_LABEL_OCTETS for label in labels
    ):
        raise ForwardingError(f"{option}: {text!r} is not a valid zone name")
    return zone


# -- configured zones ---------------------------------------------------------------------


def configured_zones(settings: ForwardingSettings, *, default_port: int) -> dict[str, Delegation]:
    """The forward and stub zones of `settings`, by zone name, as the engine reads them.

    `default_port` is the port of an upstream written without `@PORT` (the port of every
    other upstream server, 53 unless `--upstream-port` says otherwise); TLS upstreams
    default to 853.
    """
    forward: dict[str, list[ServerAddress]] = {}
    stub: dict[str, list[ServerAddress]] = {}
    root = forward.setdefault(names.ROOT, [])
    root.extend(parse_upstream(text, default_port=default_port) for text in settings.forward)
    root.extend(
        parse_upstream(text, default_port=default_port, tls=True) for text in settings.forward_tls
    )
    root.extend(parse_https_upstream(text) for text in settings.forward_https)
    for text in settings.forward_zones:
        zone, found = parse_zone_upstreams(text, default_port=default_port)
        forward.setdefault(zone, []).extend(found)
    for text in settings.stub_zones:
        zone, found = parse_zone_upstreams(text, default_port=default_port, option="--stub-zone")
        stub.setdefault(zone, []).extend(found)
    zones: dict[str, Delegation] = {}
    for zone, servers in forward.items():
        if servers:
            zones[zone] = forwarders(dict.fromkeys(servers), zone=zone)
    for zone, servers in stub.items():
        if zone in zones:
            raise ForwardingError(f"zone {zone} is both a forward zone and a stub zone")
        delegation = forwarders(dict.fromkeys(servers), zone=zone)
        # Stub servers are authorities, not forwarders: their names in logs and EDE text
        # say so.
        named = tuple(replace(server, name=f"stub-server-{number}.")
                      for number, server in enumerate(delegation.servers, 1))
        zones[zone] = replace(delegation, servers=named, recursion_desired=False,
                              source=CutSource.STUB_ZONE)
    return zones


def forward_zone_names(zones: dict[str, Delegation]) -> frozenset[str]:
    """The zones whose servers recurse for us (RD=1)."""
    return frozenset(zone for zone, cut in zones.items() if cut.recursion_desired)


def configured_upstreams(zones: dict[str, Delegation]) -> list[ServerAddress]:
    """Every server address of the configured zones."""
    return [ns.upstream for cut in zones.values() for ns in cut.servers
            if ns.upstream is not None]


def check_no_self_forwarding(
    upstreams: Iterable[ServerAddress], listen: Iterable[tuple[str, int]]
) -> None:
    """Refuse an upstream that is one of our own listen addresses: every query would loop.

    A wildcard listen address (0.0.0.0, ::) stands for every address of this host.
    """
    listening = [(_normal_ip(ip), port) for ip, port in listen]
    for server in upstreams:
        ip = _normal_ip(server.ip)
        for own_ip, own_port in listening:
            if own_port != server.port:
                continue
            if ip == own_ip or (_is_unspecified(own_ip) and _is_own_host_address(ip)) or (
                _is_unspecified(ip)
            ):
                raise ForwardingError(
                    f"forwarding loop: upstream {server.notation()} is our own listen "
                    f"address {_fmt(own_ip, own_port)}; forward to another server"
                )


def _normal_ip(ip: str) -> str:
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _is_unspecified(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_unspecified
    except ValueError:
        return False


def _is_own_host_address(ip: str) -> bool:
    """True when `ip` belongs to this host: binding a socket to it succeeds (no packet is sent)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- run time: loops and recursion-available --------------------------------------------


class ForwardLoopGuard:
    """Remembers the (id, question) of queries we forwarded in the last `window_s` seconds.

    A client query that matches one is our own query coming back (a forwarder that forwards
    to us, or to itself through us): answering it by resolving again would feed the loop.
    Memory is bounded by `max_entries`; the oldest entries go first.
    """

    def __init__(
        self,
        *,
        window_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._sent: OrderedDict[tuple[bytes, bytes, bytes], float] = OrderedDict()
        self.loops_detected = 0

    def remember(self, query: bytes) -> None:
        """Note a query we are about to send to an upstream resolver."""
        key = _loop_key(query)
        if key is None:
            return
        now = self._clock()
        self._expire(now)
        self._sent[key] = now + self.window_s
        self._sent.move_to_end(key)
        while len(self._sent) > self.max_entries:
            self._sent.popitem(last=False)

    def is_own(self, query: bytes) -> bool:
        """True when `query` (a client's) is one we forwarded moments ago; never raises."""
        key = _loop_key(query)
        if key is None:
            return False
        expires = self._sent.get(key)
        if expires is None or expires <= self._clock():
            return False
        self.loops_detected += 1
        return True

    def _expire(self, now: float) -> None:
        while self._sent:
            key, expires = next(iter(self._sent.items()))
            if expires > now:
                break
            del self._sent[key]

    def __len__(self) -> int:
        return len(self._sent)


def _loop_key(query: bytes) -> tuple[bytes, bytes, bytes] | None:
    try:
        matcher = ReplyMatcher.for_query(query)
    except ValueError:
        return None
    return matcher.query_id, matcher.qname, matcher.qtype_qclass


class ForwardingNetwork:
    """A `Network` in front of another, for configured upstreams.

    It sends each query to the server the engine chose (its port and TLS name included), notes each
    forwarded query (RD=1) in the loop guard, and refuses a forwarder's reply without
    RA: a server that does not recurse for us cannot answer as a forwarder (RFC 1035 §4.1.1),
    so the engine moves on to the next upstream. Queries with RD=0 pass untouched.
    """

    def __init__(self, inner: Network, guard: ForwardLoopGuard) -> None:
        self.inner = inner
        self.guard = guard

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        forwarded = len(query) > 2 and bool(query[2] & 0x01)
        if forwarded:
            self.guard.remember(query)
        # Whether the reply is of use (a forwarder that only refers is not) is the engine's
        # judgement, on the decoded reply (engine/classify.py).
        return await self.inner.exchange(query, server, transport, timeout_s)

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()
