"""Signed zones served in memory as an authoritative server would (RFC 4035 §3.1), for
engine tests of DNSSEC validation without sockets.

`SignedAuthority` answers from the records `ldns-signzone` made (tests/support/
signed_zones.py): with DO=1, RRSIGs with every RRset, the DS (or the NSEC/NSEC3 proof of
its absence) with a referral, and NSEC or NSEC3 proofs of NXDOMAIN, NODATA and wildcard
expansions (RFC 4035 §3.1.3, RFC 5155 §7.2). `SignedNetwork` delivers queries to the
authority at each address, like tests/support/labnet.py; `rewrite` tampers with replies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from resolver.dns import names
from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.wire import Message, Question, Rcode, Record, RRType
from resolver.dnssec.canonical import name_order_key
from resolver.dnssec.denial import nsec3_hash
from resolver.dnssec.records import Nsec3, Rrsig
from resolver.engine.network import ServerAddress, Transport, UpstreamError
from tests.support.labnet import FakeClock


class SignedZoneData:
    """One zone's records, indexed for answering."""

    def __init__(self, origin: str, records: Sequence[Record]) -> None:
        self.origin = origin
        self.rrsets: dict[tuple[str, int], list[Record]] = {}
        self.sigs: dict[tuple[str, int], list[Record]] = {}
        for rr in records:
            if rr.rtype == RRType.RRSIG:
                covered = Rrsig.from_record(rr).type_covered
                self.sigs.setdefault((rr.name, covered), []).append(rr)
            else:
                self.rrsets.setdefault((rr.name, rr.rtype), []).append(rr)
        self.owners = {name for name, rtype in self.rrsets if rtype != RRType.NSEC3}
        self.cuts = {name for name, rtype in self.rrsets
                     if rtype == RRType.NS and name != origin}
        self.nsec = [rrs[0] for (_, rtype), rrs in self.rrsets.items() if rtype == RRType.NSEC]
        self.nsec3 = [(Nsec3.from_record(rrs[0]), rrs[0])
                      for (_, rtype), rrs in self.rrsets.items() if rtype == RRType.NSEC3]

    def signed(self, name: str, rtype: int, do: bool) -> list[Record]:
        rrset = list(self.rrsets.get((name, rtype), ()))
        if do and rrset:
            rrset += self.sigs.get((name, rtype), [])
        return rrset

    def exists(self, name: str) -> bool:
        """The name owns records or is an empty non-terminal."""
        return name in self.owners or any(
            o != name and names.is_subdomain(o, name) for o in self.owners)

    # -- proofs (RFC 4035 §3.1.3, RFC 5155 §7.2) ---------------------------------------

    def _nsec_record(self, record: Record) -> list[Record]:
        return [record, *self.sigs.get((record.name, record.rtype), [])]

    def nsec_matching(self, name: str) -> list[Record]:
        if self.nsec3:
            found = [rec for parsed, rec in self.nsec3
                     if nsec3_hash(name, parsed.salt, parsed.iterations) == parsed.owner_hash]
            return self._nsec_record(found[0]) if found else []
        found = [rec for rec in self.nsec if rec.name == name]
        return self._nsec_record(found[0]) if found else []

    def nsec_covering(self, name: str) -> list[Record]:
        if self.nsec3:
            for parsed, rec in self.nsec3:
                value = nsec3_hash(name, parsed.salt, parsed.iterations)
                if _between(parsed.owner_hash, value, parsed.next_hash):
                    return self._nsec_record(rec)
            return []
        key = name_order_key(name)
        for rec in self.nsec:
            next_name = rec.rdata_text.split()[0].lower()
            if _between(name_order_key(rec.name), key, name_order_key(next_name)):
                return self._nsec_record(rec)
        return []

    def closest_encloser(self, name: str) -> str:
        for ancestor in names.ancestors(name)[1:]:
            if self.exists(ancestor) or ancestor == self.origin:
                return ancestor
        return self.origin

    def denial_of_name(self, name: str) -> list[Record]:
        encloser = self.closest_encloser(name)
        if self.nsec3:
            keep = names.label_count(encloser) + 1
            next_closer = ".".join(names.labels(name)[-keep:]) + "."
            proof = (self.nsec_matching(encloser) + self.nsec_covering(next_closer)
                     + self.nsec_covering("*." + encloser))
        else:
            proof = self.nsec_covering(name) + self.nsec_covering("*." + encloser)
        return _unique(proof)

    def denial_of_type(self, name: str) -> list[Record]:
        match = self.nsec_matching(name)
        if match or not self.nsec3:
            return match or self.nsec_covering(name)
        # RFC 5155 §7.2.4: no NSEC3 at the name (opt-out): the closest encloser proof.
        encloser = self.closest_encloser(name)
        keep = names.label_count(encloser) + 1
        next_closer = ".".join(names.labels(name)[-keep:]) + "."
        return _unique(self.nsec_matching(encloser) + self.nsec_covering(next_closer))


def _between(owner: object, value: object, after: object) -> bool:
    if owner < after:  # type: ignore[operator]
        return owner < value < after  # type: ignore[operator]
    return value > owner or value < after  # type: ignore[operator]


def _unique(records: list[Record]) -> list[Record]:
    seen: list[Record] = []
    for rr in records:
        if rr not in seen:
            seen.append(rr)
    return seen


class SignedAuthority:
    """Answers for the zones it serves (the deepest one that holds the name)."""

    def __init__(self, zones: Sequence[SignedZoneData]) -> None:
        self.zones = list(zones)

    def respond(self, wire: bytes) -> bytes:
        query = decode(wire)
        assert query.question is not None
        question = query.question
        do = query.edns is not None and query.edns.do
        zone = self._zone_for(question)
        if zone is None:
            return encode(Message(id=query.id, qr=True, opcode=0, rcode=Rcode.REFUSED,
                                  question=question, edns=query.edns))
        rcode, aa, answer, authority, additional = self._answer(zone, question, do)
        return encode(Message(id=query.id, qr=True, opcode=0, rcode=rcode, aa=aa,
                              question=question, answer=tuple(answer),
                              authority=tuple(authority), additional=tuple(additional),
                              edns=query.edns))

    def _zone_for(self, question: Question) -> SignedZoneData | None:
        name = question.name
        if question.rtype == RRType.DS and name != names.ROOT:
            name = names.parent(name)  # RFC 4035 §3.1.4.1: the parent answers for DS
        held = [z for z in self.zones if names.is_subdomain(name, z.origin)]
        return max(held, key=lambda z: names.label_count(z.origin)) if held else None

    def _answer(self, zone: SignedZoneData, question: Question, do: bool,
                ) -> tuple[int, bool, list[Record], list[Record], list[Record]]:
        qname, qtype = question.name, question.rtype
        soa = zone.signed(zone.origin, RRType.SOA, do)
        cut = next((c for c in sorted(zone.cuts, key=names.label_count)
                    if names.is_subdomain(qname, c)
                    and not (qtype == RRType.DS and qname == c)), None)
        if cut is not None:
            ns = zone.rrsets[(cut, RRType.NS)]
            authority = list(ns)
            if do:
                ds = zone.signed(cut, RRType.DS, do)
                authority += ds if ds else zone.denial_of_type(cut)
            glue = [rr for n in ns for t in (RRType.A, RRType.AAAA)
                    for rr in zone.rrsets.get((n.target, t), ())]
            return Rcode.NOERROR, False, [], authority, glue
        if zone.exists(qname):
            data = zone.signed(qname, qtype, do)
            if data:
                return Rcode.NOERROR, True, data, [], []
            cname = zone.signed(qname, RRType.CNAME, do)
            if cname:
                return Rcode.NOERROR, True, cname, [], []
            proof = zone.denial_of_type(qname) if do else []
            return Rcode.NOERROR, True, [], soa + proof, []
        wildcard = "*." + zone.closest_encloser(qname)
        if (wildcard, qtype) in zone.rrsets:
            expanded = [rr.with_name(qname) for rr in zone.rrsets[(wildcard, qtype)]]
            if do:
                expanded += [rr.with_name(qname) for rr in zone.sigs.get((wildcard, qtype), [])]
            proof: list[Record] = []
            if do:  # RFC 4035 §3.1.3.3, RFC 5155 §7.2.6: no closer name exists
                proof = (_next_closer_cover(zone, qname) if zone.nsec3
                         else zone.nsec_covering(qname))
            return Rcode.NOERROR, True, expanded, proof, []
        if zone.exists(wildcard):
            proof = _unique(zone.denial_of_name(qname) + zone.nsec_matching(wildcard))
            return Rcode.NOERROR, True, [], soa + (proof if do else []), []
        proof = zone.denial_of_name(qname) if do else []
        return Rcode.NXDOMAIN, True, [], soa + proof, []


def _next_closer_cover(zone: SignedZoneData, qname: str) -> list[Record]:
    encloser = zone.closest_encloser(qname)
    keep = names.label_count(encloser) + 1
    return zone.nsec_covering(".".join(names.labels(qname)[-keep:]) + ".")


class SignedNetwork:
    """Queries delivered to the signed authority at each address; replies may be rewritten."""

    def __init__(self, clock: FakeClock, servers: dict[str, SignedAuthority]) -> None:
        self.clock = clock
        self.servers = servers
        self.received: Counter[str] = Counter()
        self.asked: list[tuple[str, Question]] = []
        self.rewrite: dict[str, Callable[[bytes], bytes]] = {}

    async def exchange(self, query: bytes, server: ServerAddress, transport: Transport,
                       timeout_s: float) -> bytes:
        authority = self.servers.get(server.ip)
        if authority is None:
            raise UpstreamError(f"nothing listens on {server}")
        self.received[server.ip] += 1
        asked = decode(query).question
        assert asked is not None
        self.asked.append((server.ip, asked))
        self.clock.advance(0.001)
        reply = authority.respond(query)
        if server.ip in self.rewrite:
            reply = self.rewrite[server.ip](reply)
        return reply
