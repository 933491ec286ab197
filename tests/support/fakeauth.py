"""Scripted fake authoritative name servers on loopback, for attack and fault tests.

A `FakeAuth` is one server address (127.0.0.N) answering DNS over UDP and TCP on a port
that every fake server of a test shares, so that a resolver started with
`--upstream-port PORT` reaches all of them. Per question it follows a *script*, a `Rule`:

    answer(records), refer(zone, ns, glue), rcode(X), drop(), raw(bytes), from_zones()
    delay(s, rule)        the reply goes out s seconds late
    truncate(rule)        TC=1 over UDP, the full reply over TCP
    spoof_first(k, rule)  k forged messages (wrong id, wrong question, QR=0, short header,
                          garbage) go out before the real reply
    lowercase_qname(rule) the reply does not echo the letter case of the question (0x20)
    no_edns(rule)         FORMERR without OPT to queries that carry one (a pre-EDNS server)
    drop_edns(rule)       no reply to queries that carry OPT (EDNS eaten on the way)
    drop_tcp(rule)        TCP connections accepted, queries on them never answered

Rules are keyed by (qname, qtype); a qname of "*.zone." matches every name below the
zone, None matches every name and every type. What no rule covers is answered from the
server's zone files (`resolver.lab.authority`), or REFUSED when it has none. A server
made with `tcp_only=True` sets TC=1 on every UDP reply; `udp=False` / `tcp=False` leave
that socket closed, so that the kernel answers with ICMP port unreachable or a reset.

Every server records what it receives (`Received`: name, type, transport, source port,
id, EDNS size), so a test can count upstream queries per name, type and transport.

Servers run inside a test's own event loop (`async with FakeAuth(...)`, `start_all`), or
in a background thread with a loop of its own (`FakeNet`), for a resolver subprocess.
`ScriptedNetwork` delivers queries to the same scripts without sockets, for engine tests
with a fake clock. `root_server` and `zone` write the zone files of a small fake internet;
`resolver_against(net, dir)` starts `resolver serve` on it (loopback only) and `ask` is a
minimal stub client. Everything stops by itself: `FakeNet` ends its loop after
`lifetime_s` at the most.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import random
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from resolver.dns.wire import Rcode, type_from_text
from resolver.engine.network import ServerAddress, Transport, UpstreamError, UpstreamTimeout
from resolver.lab.authority import Authority, Zone
from resolver.upstream.reply_matching import ReplyMatcher
from tests.support.processes import stop_process

#: The EDNS payload size the fake servers advertise (DNS Flag Day 2020).
EDNS_SIZE = 1232
#: Without EDNS a UDP reply is at most 512 octets (RFC 1035 §4.2.1).
CLASSIC_SIZE = 512
#: The address forged replies carry: seeing it in an answer means the forgery was taken.
POISON_ADDRESS = "6.6.6.6"

Section = tuple[str, ...]


class SpoofKind(enum.Enum):
    """Forged messages a server sends before its real reply (RFC 5452 §9.1, TuDoor)."""

    WRONG_ID = "wrong id"
    WRONG_QUESTION = "wrong question"
    QR_ZERO = "QR=0"
    SHORT_HEADER = "truncated header"
    GARBAGE = "garbage"


# -- scripts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """How a fake server answers the questions one script entry matches.

    Records are zone-file lines; "{qname}" in them stands for the question's name and
    "{label}" for its first label.
    """

    #: Where the reply comes from: literal records, the zone files, raw bytes, or nothing.
    source: Literal["records", "zones", "raw", "drop"] = "records"
    rcode: int = 0
    aa: bool = True
    answer: Section = ()
    authority: Section = ()
    additional: Section = ()
    #: OPT in the reply: None = iff the query had one.
    opt: bool | None = None
    raw: bytes = b""
    #: Put the query's id into the raw bytes (Deckard's copy_id).
    copy_id: bool = True
    delay_s: float = 0.0
    #: TC=1, header and question only, over UDP; the full reply over TCP.
    truncate_udp: bool = False
    spoofs: int = 0
    spoof_kinds: tuple[SpoofKind, ...] = tuple(SpoofKind)
    qname_case: Literal["echo", "lower", "upper"] = "echo"
    #: FORMERR without OPT to a query with OPT: a server from before EDNS (RFC 6891 §7).
    formerr_on_edns: bool = False
    #: No reply to a query with OPT (a middlebox eating EDNS); queries without OPT answered.
    drop_on_edns: bool = False
    #: No reply over TCP: the connection is accepted, then nothing is said.
    drop_on_tcp: bool = False


def answer(
    *records: str, authority: Iterable[str] = (), additional: Iterable[str] = (),
    aa: bool = True, rcode: int | str = 0,
) -> Rule:
    """A reply with these records (NOERROR, AA=1 unless told)."""
    return Rule(answer=tuple(records), authority=tuple(authority),
                additional=tuple(additional), aa=aa, rcode=_rcode(rcode))


def refer(
    zone: str, ns: Sequence[str], glue: Mapping[str, str | Sequence[str]] | None = None,
    *, ttl: int = 300,
) -> Rule:
    """A referral: `zone` is served by the `ns` names; `glue` gives addresses (AA=0)."""
    authority = tuple(f"{zone} {ttl} NS {name}" for name in ns)
    additional = []
    for name, addresses in (glue or {}).items():
        for address in [addresses] if isinstance(addresses, str) else addresses:
            rtype = "AAAA" if ":" in address else "A"
            additional.append(f"{name} {ttl} {rtype} {address}")
    return Rule(aa=False, authority=authority, additional=tuple(additional))


def rcode(code: int | str, *, authority: Iterable[str] = (), opt: bool | None = None,
          aa: bool = True) -> Rule:
    """A reply with this rcode and no answer (e.g. `rcode("NXDOMAIN", authority=[soa])`)."""
    return Rule(rcode=_rcode(code), authority=tuple(authority), opt=opt, aa=aa)


def drop() -> Rule:
    """No reply at all: a black hole."""
    return Rule(source="drop")


def raw(data: bytes, *, copy_id: bool = True) -> Rule:
    """These bytes as the reply (with the query's id in the first two octets if `copy_id`)."""
    return Rule(source="raw", raw=data, copy_id=copy_id)


def from_zones() -> Rule:
    """The reply the server's zone files give (to combine with delay, spoof_first, ...)."""
    return Rule(source="zones")


def delay(seconds: float, rule: Rule) -> Rule:
    return replace(rule, delay_s=seconds)


def truncate(rule: Rule) -> Rule:
    return replace(rule, truncate_udp=True)


def spoof_first(k: int, rule: Rule, kinds: Sequence[SpoofKind] = tuple(SpoofKind)) -> Rule:
    """`k` forged messages, cycling through `kinds`, before the real reply."""
    return replace(rule, spoofs=k, spoof_kinds=tuple(kinds))


def lowercase_qname(rule: Rule) -> Rule:
    return replace(rule, qname_case="lower")


def uppercase_qname(rule: Rule) -> Rule:
    return replace(rule, qname_case="upper")


def no_edns(rule: Rule) -> Rule:
    return replace(rule, formerr_on_edns=True)


def drop_edns(rule: Rule) -> Rule:
    return replace(rule, drop_on_edns=True)


def drop_tcp(rule: Rule) -> Rule:
    return replace(rule, drop_on_tcp=True)


def _rcode(code: int | str) -> int:
    return int(Rcode[code.upper()]) if isinstance(code, str) else int(code)


# -- zone-file helpers --------------------------------------------------------------------


def zone(origin: str, *records: str, ns: Sequence[str] = (), ttl: int = 300,
         negative_ttl: int = 300) -> str:
    """Zone-file text: SOA and NS at the apex (`ns`, default ns1.<origin>), then `records`."""
    origin = _absolute(origin)
    apex_ns = [_absolute(n) for n in ns] or [f"ns1.{origin}" if origin != "." else "ns1."]
    lines = [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ SOA {apex_ns[0]} hostmaster.{origin.lstrip('.')} 1 3600 600 86400 {negative_ttl}",
        *(f"@ NS {name}" for name in apex_ns),
        *records,
    ]
    return "\n".join(lines) + "\n"


def soa(origin: str, *, negative_ttl: int = 300) -> str:
    """The SOA line of `zone(origin)`, for NXDOMAIN / NODATA authority sections."""
    origin = _absolute(origin)
    return (f"{origin} {negative_ttl} SOA ns1.{origin.lstrip('.')} hostmaster.{origin.lstrip('.')}"
            f" 1 3600 600 86400 {negative_ttl}")


#: The name of the single root server of a fake internet.
ROOT_NS = "root-ns."


def root_hints_text(*addresses: str) -> str:
    """A root hints file naming the fake root server(s) at `addresses`."""
    lines = [f". 3600000 NS {ROOT_NS}"]
    lines += [f"{ROOT_NS} 3600000 {'AAAA' if ':' in a else 'A'} {a}" for a in addresses]
    return "\n".join(lines) + "\n"


def root_zone(address: str, *records: str) -> str:
    """The root zone of a fake internet: served at `address` as ROOT_NS, plus `records`."""
    return zone(".", f"{ROOT_NS} A {address}", *records, ns=[ROOT_NS], ttl=86400)


def root_server(address: str, *test_records: str,
                other_tlds: Mapping[str, Sequence[str]] | None = None,
                **options: Any) -> FakeAuth:
    """The root and the `test.` zone on one server; `test_records` are lines of `test.`
    (its delegations: "a NS ns1.a", "ns1.a A 127.0.0.9"). `other_tlds` adds more top-level
    zones on the same server, by name, with their lines."""
    tlds = {"test.": list(test_records), **{_absolute(k): list(v)
                                             for k, v in (other_tlds or {}).items()}}
    zones = {".": root_zone(address, *(f"{tld} NS {ROOT_NS}" for tld in tlds))}
    zones.update({tld: zone(tld, *lines, ns=[ROOT_NS]) for tld, lines in tlds.items()})
    return FakeAuth(address, zones=zones, **options)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


@functools.lru_cache(maxsize=4096)
def _parse_records(lines: Section, qname: str) -> tuple[Any, ...]:
    if not lines:
        return ()
    label = qname.split(".", 1)[0]
    text = "\n".join(line.replace("{qname}", qname).replace("{label}", label)
                     for line in lines) + "\n"
    return tuple(RR.fromZone(text, ttl=300))


# -- one server ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One query as a fake server received it."""

    qname: str  #: as sent, letter case kept, with the trailing dot
    qtype: int
    transport: Transport
    source: tuple[str, int]
    query_id: int
    #: The EDNS payload size, or None for a query without OPT.
    edns_size: int | None
    rd: bool
    at: float = field(compare=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send back for one query: messages in order (forgeries first), and when."""

    messages: tuple[bytes, ...] = ()
    delay_s: float = 0.0


class FakeAuth:
    """One scripted authoritative server (see the module docstring)."""

    def __init__(
        self,
        address: str,
        port: int = 0,
        *,
        zones: Mapping[str, str] | None = None,
        default: Rule | None = None,
        udp: bool = True,
        tcp: bool = True,
        tcp_only: bool = False,
    ) -> None:
        self.address = address
        self.port = port
        self.udp = udp
        self.tcp = tcp
        #: TC=1 on every UDP reply (a server that only answers over TCP).
        self.tcp_only = tcp_only
        self._zone_texts = dict(zones or {})
        self._authority = Authority(
            Zone.from_text(_absolute(origin), text) for origin, text in self._zone_texts.items()
        )
        self._rules: dict[tuple[str | None, int | None], Rule] = {}
        if default is not None:
            self._rules[(None, None)] = default
        self.queries: list[Received] = []
        #: Datagrams or TCP messages that were no readable query.
        self.malformed = 0
        self._udp_sock: socket.socket | None = None
        self._tcp_sock: socket.socket | None = None
        self._udp_endpoint: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._connections: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"FakeAuth({self.address}:{self.port}, {len(self.queries)} queries)"

    # -- scripting and counting

    def on(self, qname: str | None, qtype: str | int | None, rule: Rule) -> FakeAuth:
        """Answer (qname, qtype) by `rule`; None for either matches all. Returns self."""
        name = None if qname is None else _absolute(qname.lower())
        rtype = type_from_text(qtype) if isinstance(qtype, str) else qtype
        self._rules[(name, rtype)] = rule
        return self

    def rule_for(self, qname: str, qtype: int) -> Rule:
        """The rule that answers (qname, qtype): exact, then "*." patterns, then catch-alls."""
        name = _absolute(qname.lower())
        keys: list[tuple[str | None, int | None]] = [(name, qtype), (name, None)]
        labels = name.split(".")
        for i in range(1, len(labels)):
            pattern = "*." + ".".join(labels[i:]) if labels[i:] != [""] else "*."
            keys += [(pattern, qtype), (pattern, None)]
        keys += [(None, qtype), (None, None)]
        for key in keys:
            found = self._rules.get(key)
            if found is not None:
                return found
        return from_zones()

    def count(
        self, qname: str | None = None, qtype: str | int | None = None,
        transport: Transport | None = None, *, since: int = 0,
    ) -> int:
        """Queries received (from index `since` on) for that name, type and transport."""
        name = None if qname is None else _absolute(qname.lower())
        rtype = type_from_text(qtype) if isinstance(qtype, str) else qtype
        return sum(
            1 for q in self.queries[since:]
            if (name is None or q.qname.lower() == name)
            and (rtype is None or q.qtype == rtype)
            and (transport is None or q.transport is transport)
        )

    # -- answering (pure: no sockets)

    def plan(self, wire: bytes, transport: Transport, source: tuple[str, int]) -> Plan:
        """Record the query and decide the reply; never raises."""
        try:
            query = DNSRecord.parse(wire)
            question = query.q
            qname = str(question.qname)
        except Exception:
            self.malformed += 1
            return Plan()
        opt = next((rr for rr in query.ar if rr.rtype == QTYPE.OPT), None)
        self.queries.append(Received(
            qname=qname, qtype=int(question.qtype), transport=transport, source=source,
            query_id=query.header.id, edns_size=None if opt is None else int(opt.rclass),
            rd=bool(query.header.rd), at=time.monotonic(),
        ))
        try:
            return self._plan(query, opt, transport)
        except Exception:  # a script error must not take the server down; the query times out
            self.malformed += 1
            return Plan()

    def _plan(self, query: Any, opt: Any, transport: Transport) -> Plan:
        question = query.q
        rule = self.rule_for(str(question.qname), int(question.qtype))
        if rule.source == "drop" or (rule.drop_on_edns and opt is not None) or (
                rule.drop_on_tcp and transport is Transport.TCP):
            return Plan()
        if rule.source == "raw":
            data = rule.raw
            if rule.copy_id and len(data) >= 2:
                data = struct.pack("!H", query.header.id) + data[2:]
            return Plan(messages=(data,), delay_s=rule.delay_s)
        reply = self._reply(query, rule, opt)
        with_opt = opt is not None if rule.opt is None else rule.opt
        if rule.formerr_on_edns and opt is not None:
            reply = DNSRecord(DNSHeader(id=query.header.id, qr=1, rd=query.header.rd,
                                        rcode=int(Rcode.FORMERR)), q=reply.q)
            with_opt = False
        if with_opt:
            reply.add_ar(EDNS0(udp_len=EDNS_SIZE))
        data = bytes(reply.pack())
        if transport is Transport.UDP:
            limit = CLASSIC_SIZE if opt is None else max(CLASSIC_SIZE, min(int(opt.rclass),
                                                                           EDNS_SIZE))
            if rule.truncate_udp or self.tcp_only or len(data) > limit:
                # RFC 1035 §4.2.1 / RFC 6891 §7: header and question only, TC=1.
                reply.rr, reply.auth = [], []
                reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
                reply.header.tc = 1
                data = bytes(reply.pack())
        spoofs = tuple(
            _forge(rule.spoof_kinds[i % len(rule.spoof_kinds)], reply, data)
            for i in range(rule.spoofs)
        ) if rule.spoof_kinds else ()
        return Plan(messages=(*spoofs, data), delay_s=rule.delay_s)

    def _reply(self, query: Any, rule: Rule, opt: Any) -> Any:
        question = query.q
        qname_text = str(question.qname)
        if rule.qname_case == "lower":
            qname_text = qname_text.lower()
        elif rule.qname_case == "upper":
            qname_text = qname_text.upper()
        reply = DNSRecord(
            DNSHeader(id=query.header.id, qr=1, rd=query.header.rd),
            q=DNSQuestion(DNSLabel(qname_text), question.qtype, question.qclass),
        )
        if rule.source == "zones":
            found = self._authority.lookup(question.qname, question.qtype)
            reply.header.rcode = found.rcode
            reply.header.aa = int(found.aa)
            sections: tuple[Iterable[Any], Iterable[Any], Iterable[Any]] = (
                found.answer, found.authority, found.additional)
        else:
            name = str(question.qname).lower()
            reply.header.rcode = rule.rcode
            reply.header.aa = int(rule.aa)
            sections = (_parse_records(rule.answer, name), _parse_records(rule.authority, name),
                        _parse_records(rule.additional, name))
        for rr in sections[0]:
            reply.add_answer(rr)
        for rr in sections[1]:
            reply.add_auth(rr)
        for rr in sections[2]:
            reply.add_ar(rr)
        return reply

    # -- sockets

    def bind(self, port: int) -> None:
        """Open the sockets on `port` (OSError if taken); `start` serves them."""
        self.close_sockets()
        try:
            if self.udp:
                self._udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._udp_sock.bind((self.address, port))
                port = self._udp_sock.getsockname()[1]
            else:  # check that nothing listens there: the kernel must refuse (ICMP)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind((self.address, port))
                    port = port or probe.getsockname()[1]
            if self.tcp:
                self._tcp_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._tcp_sock.bind((self.address, port))
                self._tcp_sock.listen(64)
        except OSError:
            self.close_sockets()
            raise
        self.port = port

    def close_sockets(self) -> None:
        for sock in (self._udp_sock, self._tcp_sock):
            if sock is not None:
                sock.close()
        self._udp_sock = self._tcp_sock = None

    async def start(self) -> None:
        """Serve on the bound sockets (binding `self.port` first if `bind` was not called)."""
        if self._udp_sock is None and self._tcp_sock is None:
            self.bind(self.port)
        loop = asyncio.get_running_loop()
        if self._udp_sock is not None:
            self._udp_sock.setblocking(False)
            self._udp_endpoint, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), sock=self._udp_sock)
        if self._tcp_sock is not None:
            self._tcp_sock.setblocking(False)
            self._tcp_server = await asyncio.start_server(self._serve_tcp, sock=self._tcp_sock)

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._udp_endpoint is not None:
            self._udp_endpoint.abort()
            self._udp_endpoint = None
        if self._tcp_server is not None:
            self._tcp_server.close()
            self._tcp_server = None
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        self._udp_sock = self._tcp_sock = None

    async def __aenter__(self) -> FakeAuth:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _send_udp(self, messages: tuple[bytes, ...], addr: tuple[str, int]) -> None:
        if self._udp_endpoint is None:
            return
        for message in messages:
            self._udp_endpoint.sendto(message, addr)

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        plan = self.plan(data, Transport.UDP, addr)
        if not plan.messages:
            return
        if plan.delay_s <= 0:
            self._send_udp(plan.messages, addr)
            return
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            self._send_udp(plan.messages, addr)

        timer = loop.call_later(plan.delay_s, fire)
        self._timers.add(timer)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
                plan = self.plan(wire, Transport.TCP, (str(peer[0]), int(peer[1])))
                if not plan.messages:
                    continue  # a black hole keeps the connection open and says nothing
                if plan.delay_s > 0:
                    await asyncio.sleep(plan.delay_s)
                for message in plan.messages:
                    writer.write(len(message).to_bytes(2, "big") + message)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, auth: FakeAuth) -> None:
        self.auth = auth

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.auth._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about earlier replies: nothing to do


def _forge(kind: SpoofKind, reply: Any, real: bytes) -> bytes:
    """A forged message of `kind` built from the real reply; it carries POISON_ADDRESS."""
    if kind is SpoofKind.SHORT_HEADER:
        return real[:11]
    if kind is SpoofKind.GARBAGE:
        return real[:2] + bytes(random.getrandbits(8) for _ in range(40))
    owner = str(reply.q.qname)
    if kind is SpoofKind.WRONG_QUESTION:
        owner = "poison." + owner
    poison = DNSRecord(DNSHeader(id=reply.header.id, qr=1, aa=1, rd=reply.header.rd),
                       q=DNSQuestion(DNSLabel(owner), reply.q.qtype, reply.q.qclass))
    if kind is SpoofKind.WRONG_ID:
        poison.header.id = reply.header.id ^ 0x5A5A
    elif kind is SpoofKind.QR_ZERO:
        poison.header.qr = 0
    poison.add_answer(*RR.fromZone(f"{owner} 3600 A {POISON_ADDRESS}\n"))
    return bytes(poison.pack())


# -- several servers on one port ----------------------------------------------------------


async def start_all(servers: Sequence[FakeAuth], port: int = 0) -> int:
    """Bind every server on one port (a free one if 0) and serve; returns the port."""
    for _ in range(50):
        chosen = port or random.randint(20000, 60000)
        bound: list[FakeAuth] = []
        try:
            for server in servers:
                server.bind(chosen)
                bound.append(server)
        except OSError:
            for server in bound:
                server.close_sockets()
            if port:
                raise
            continue
        for server in servers:
            await server.start()
        return chosen
    raise RuntimeError("no port is free on every fake server address")


async def stop_all(servers: Iterable[FakeAuth]) -> None:
    for server in servers:
        await server.stop()


class FakeNet:
    """Fake servers on one shared port, served by an event loop in a background thread.

    For a resolver in another process: `with FakeNet(root, a, b) as net:` then start the
    resolver with `net.write_hints(path)` and `--upstream-port net.port`. The loop stops at
    exit, or by itself after `lifetime_s`.
    """

    def __init__(self, *servers: FakeAuth, port: int = 0, lifetime_s: float = 120.0) -> None:
        self.servers = servers
        self.port = port
        self.lifetime_s = lifetime_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fakenet", daemon=True)

    def __getitem__(self, address: str) -> FakeAuth:
        return next(s for s in self.servers if s.address == address)

    def __enter__(self) -> FakeNet:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"fake servers did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.port = await start_all(self.servers, self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.lifetime_s)
        finally:
            await stop_all(self.servers)

    def total(self, qname: str | None = None, qtype: str | int | None = None,
              transport: Transport | None = None) -> int:
        """Queries received by all servers together."""
        return sum(s.count(qname, qtype, transport) for s in self.servers)

    def received(self) -> list[Received]:
        """Every query received, in order of arrival."""
        return sorted((q for s in self.servers for q in list(s.queries)), key=lambda q: q.at)

    def write_hints(self, path: Path, root: str | None = None) -> Path:
        """A root hints file naming the root server (`root`, default the first server)."""
        path.write_text(root_hints_text(root or self.servers[0].address))
        return path


# -- the same scripts without sockets -----------------------------------------------------


class AdvancingClock(Protocol):
    def advance(self, seconds: float) -> None: ...


class ScriptedNetwork:
    """A `Network` that hands each query to the fake server at that address, in memory.

    Replies are matched as `resolver.upstream.exchange` matches them (forgeries are skipped); a
    dropped query advances `clock` by the timeout and raises UpstreamTimeout; an address
    without a fake server raises UpstreamError (nothing listens there).
    """

    def __init__(self, servers: Iterable[FakeAuth], clock: AdvancingClock,
                 *, rtt_s: float = 0.001) -> None:
        self.servers = {s.address: s for s in servers}
        self.clock = clock
        self.rtt_s = rtt_s
        self.sent: list[ServerAddress] = []

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        self.sent.append(server)
        auth = self.servers.get(server.ip)
        if auth is None or (transport is Transport.UDP and not auth.udp) or (
                transport is Transport.TCP and not auth.tcp):
            raise UpstreamError(f"nothing listens on {server}")
        matcher = ReplyMatcher.for_query(query)
        plan = auth.plan(query, transport, ("in-memory", 0))
        reply = next((m for m in plan.messages if matcher.matches(m)), None)
        if reply is None or plan.delay_s >= timeout_s:
            self.clock.advance(timeout_s)
            raise UpstreamTimeout(f"{server}: no matching reply")
        self.clock.advance(max(self.rtt_s, plan.delay_s))
        return reply


# -- the resolver under test --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolverUnderTest:
    """A `resolver serve` process whose upstreams are the fake servers."""

    ip: str
    port: int
    process: subprocess.Popen[str]
    metrics_port: int

    def ask(self, name: str, qtype: str = "A", **options: Any) -> Any:
        return ask(self.ip, self.port, name, qtype, **options)

    def wait_idle(self, timeout_s: float = 15.0) -> float:
        """Wait until no resolution is under way (a client may have been answered SERVFAIL
        while its resolution goes on, for the cache); returns the seconds waited."""
        started = time.monotonic()
        while self.metrics().get("resolver_in_flight_resolutions", 0.0) > 0:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"resolutions still under way after {timeout_s} s")
            time.sleep(0.05)
        return time.monotonic() - started

    def metrics(self) -> dict[str, float]:
        """The resolver's Prometheus counters (label sets summed per name)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            name = name.split("{")[0]
            with contextlib.suppress(ValueError):
                values[name] = values.get(name, 0.0) + float(value)
        return values


@contextlib.contextmanager
def resolver_against(net: FakeNet, workdir: Path, *extra: str) -> Iterator[ResolverUnderTest]:
    """`resolver serve` started from `net`'s root hints on `net`'s port (loopback only);
    stopped at exit, when it must have exited cleanly without a traceback."""
    from tests.integration.conftest import RunningLab, start_resolver

    hints = net.write_hints(workdir / "fake.hints")
    metrics_port = _free_tcp_port()
    running = start_resolver(
        RunningLab(port=net.port, hints=hints),
        "--control-socket", str(workdir / "control.sock"),
        "--metrics", f"127.0.0.1:{metrics_port}", *extra,
    )
    proc = running.process
    try:
        yield ResolverUnderTest(ip=running.ip, port=running.port, process=proc,
                                metrics_port=metrics_port)
    finally:
        stop_process(proc)
        output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output, output
    assert proc.returncode == 0, f"the resolver exited with {proc.returncode}:\n{output}"


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a minimal stub client ----------------------------------------------------------------


def make_stub_query(name: str, qtype: str = "A", *, edns: bool = True, bufsize: int = EDNS_SIZE,
                    qid: int | None = None) -> bytes:
    """A recursive query (RD=1) as a stub resolver sends it."""
    query = DNSRecord.question(name, qtype)
    query.header.id = random.randrange(0x10000) if qid is None else qid
    if edns:
        query.add_ar(EDNS0(udp_len=bufsize))
    return bytes(query.pack())


def ask(ip: str, port: int, name: str, qtype: str = "A", *, tcp: bool = False,
        edns: bool = True, bufsize: int = EDNS_SIZE, timeout_s: float = 8.0) -> Any:
    """Ask the resolver at ip:port one question; the parsed reply (a dnslib DNSRecord)."""
    wire = make_stub_query(name, qtype, edns=edns, bufsize=bufsize)
    if tcp:
        with socket.create_connection((ip, port), timeout=timeout_s) as conn:
            conn.sendall(len(wire).to_bytes(2, "big") + wire)
            size = int.from_bytes(_read_exactly(conn, 2), "big")
            return DNSRecord.parse(_read_exactly(conn, size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect((ip, port))
        sock.send(wire)
        while True:
            data = sock.recv(65535)
            if data[:2] == wire[:2]:
                return DNSRecord.parse(data)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed before the whole reply")
        data += chunk
    return data


def addresses(reply: Any) -> list[str]:
    """The A/AAAA addresses in a reply's answer section."""
    return [str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA)]


def ede_codes(reply: Any) -> list[int]:
    """The extended DNS error info-codes of a reply (RFC 8914)."""
    codes = []
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            for option in rr.rdata:
                if option.code == 15 and len(option.data) >= 2:
                    codes.append(int.from_bytes(option.data[:2], "big"))
    return codes

