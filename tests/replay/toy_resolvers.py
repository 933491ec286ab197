"""Two stand-in resolvers for testing the harness itself (not the project's resolver).

* `Relay`: sends the client's query unchanged to the first root hint and returns the reply;
  enough to test plumbing (transport calls, step ids, answer checks).
* `MiniIterator`: a deliberately naive iterative resolver (no cache, no qmin, no retries beyond
  trying the next server): follows referrals with glue or by resolving NS addresses, chases
  CNAMEs, answers minimally. Enough to replay simple peer scenarios end to end, so that the
  harness's verdicts can be checked against files whose outcome is known.
"""

from __future__ import annotations

import dnslib

from tests.replay.seam import (
    FakeClock,
    ReplayConfig,
    Transport,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = ["MiniIterator", "Relay", "make_mini_iterator", "make_relay"]


class Relay:
    """Forwards each client message verbatim to the first root hint."""

    def __init__(self, config: ReplayConfig, transport: Transport, clock: FakeClock) -> None:
        self.server = (config.forwarders or [ip for _, ip in config.root_hints])[0]
        self.transport = transport
        self.background_runs = 0

    def handle(self, wire: bytes, *, tcp: bool = False,
               client_ip: str = "127.0.0.1") -> bytes | None:
        try:
            return self.transport(self.server, wire, tcp)
        except (UpstreamTimeout, UpstreamError):
            return None

    def run_background(self) -> None:
        self.background_runs += 1


def make_relay(config: ReplayConfig, transport: Transport, clock: FakeClock) -> Relay:
    return Relay(config, transport, clock)


class MiniIterator:
    """Iterative resolution in its simplest form (RFC 1034 §5.3.3, without the cache)."""

    max_steps = 40

    def __init__(self, config: ReplayConfig, transport: Transport, clock: FakeClock) -> None:
        self.roots = [ip for _, ip in config.root_hints if ":" not in ip or config.do_ip6]
        self.transport = transport
        self.steps = 0

    def handle(self, wire: bytes, *, tcp: bool = False,
               client_ip: str = "127.0.0.1") -> bytes | None:
        try:
            query = dnslib.DNSRecord.parse(wire)
        except Exception:
            return None
        reply = query.reply(ra=1, aa=0)
        reply.header.rd = query.header.rd
        if not query.questions:
            reply.header.rcode = dnslib.RCODE.FORMERR
            return bytes(reply.pack())
        self.steps = 0
        question = query.questions[0]
        rcode, answer, authority = self.resolve(question.qname, question.qtype)
        reply.header.rcode = rcode
        reply.rr, reply.auth = answer, authority
        return bytes(reply.pack())

    def run_background(self) -> None:
        pass

    def ask(self, servers: list[str], qname: dnslib.DNSLabel,
            qtype: int) -> dnslib.DNSRecord | None:
        for server in servers:
            self.steps += 1
            if self.steps > self.max_steps:
                return None
            query = dnslib.DNSRecord(dnslib.DNSHeader(id=self.steps, rd=0),
                                     q=dnslib.DNSQuestion(qname, qtype))
            try:
                reply = dnslib.DNSRecord.parse(self.transport(server, bytes(query.pack()),
                                                              False))
            except (UpstreamTimeout, UpstreamError, dnslib.DNSError):
                continue
            if reply.header.tc:
                try:
                    reply = dnslib.DNSRecord.parse(self.transport(server, bytes(query.pack()),
                                                                  True))
                except (UpstreamTimeout, UpstreamError, dnslib.DNSError):
                    continue
            if reply.header.rcode in (0, 3):
                return reply
        return None

    def resolve(self, qname: dnslib.DNSLabel, qtype: int,
                depth: int = 0) -> tuple[int, list[dnslib.RR], list[dnslib.RR]]:
        servers, chain = list(self.roots), list[dnslib.RR]()
        while depth < 8 and self.steps < self.max_steps:
            reply = self.ask(servers, qname, qtype)
            if reply is None:
                return 2, [], []
            owned = [rr for rr in reply.rr if rr.rname == qname]
            data = [rr for rr in owned if rr.rtype == qtype]
            cnames = [rr for rr in owned if rr.rtype == dnslib.QTYPE.CNAME]
            if data:
                return 0, chain + data, []
            if cnames and qtype != dnslib.QTYPE.CNAME:
                chain.append(cnames[0])
                qname, servers, depth = cnames[0].rdata.label, list(self.roots), depth + 1
                continue
            soa = [rr for rr in reply.auth if rr.rtype == dnslib.QTYPE.SOA]
            ns = [rr for rr in reply.auth if rr.rtype == dnslib.QTYPE.NS]
            if reply.header.rcode == 3 or soa or not ns:
                return int(reply.header.rcode), chain, soa
            servers = self.addresses(ns, reply, depth)
            if not servers:
                return 2, [], []
        return 2, [], []

    def addresses(self, ns: list[dnslib.RR], reply: dnslib.DNSRecord, depth: int) -> list[str]:
        names = [rr.rdata.label for rr in ns]
        glue = [str(rr.rdata) for rr in reply.ar
                if rr.rtype == dnslib.QTYPE.A and rr.rname in names]
        if glue:
            return glue
        for name in names:
            _, answer, _ = self.resolve(name, dnslib.QTYPE.A, depth + 1)
            found = [str(rr.rdata) for rr in answer if rr.rtype == dnslib.QTYPE.A]
            if found:
                return found
        return []


def make_mini_iterator(config: ReplayConfig, transport: Transport,
                       clock: FakeClock) -> MiniIterator:
    return MiniIterator(config, transport, clock)
