"""How an authoritative name server answers: zone data in, DNS messages out, no sockets.

`Zone` holds one zone loaded from master-file text (RFC 1035 §5). `Authority` is one
server's view of the zones it serves; `Authority.lookup` is the algorithm of RFC 1034
§4.3.2 and `Authority.respond` wraps it in the wire format with the rules every
server must follow:

1. Pick the most specific zone this server serves that contains the name; if there
   is none the question is not ours: REFUSED.
2. Walk down from the zone apex. A name with NS records below the apex is a zone cut:
   the data beyond it belongs to another server, so answer with a *referral* (AA=0,
   the child's NS records in authority, their addresses - the glue - in additional).
3. Data of the asked type at the name: an authoritative answer (AA=1).
4. A CNAME at the name: answer with it and, while the target has authoritative data in
   the same zone, go on with the target (RFC 1034 §3.6.2, §4.3.2 step 3a).
5. The name exists, without that type (or is an empty non-terminal): NODATA, that is
   NOERROR with no answer and the zone's SOA in authority (RFC 2308 §2.2).
6. The name does not exist: NXDOMAIN with the SOA (RFC 2308 §2.1).

The SOA in a negative answer has TTL min(SOA TTL, SOA MINIMUM), the time a resolver may
cache the negative answer (RFC 2308 §3, §5).
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.buffer import BufferError as DNSBufferError
from dnslib.label import DNSBuffer

from resolver.dns.header import EDNS_DO, MAX_MESSAGE_OCTETS, HeaderFlag
from resolver.dns.names import MAX_LABEL_OCTETS, MAX_NAME_OCTETS
from resolver.engine.network import Transport

log = logging.getLogger(__name__)

#: A domain name as a tuple of lower-cased labels, most specific first; () is the root.
Name = tuple[bytes, ...]

#: The UDP payload size we advertise and the most we ever send over UDP (DNS Flag Day 2020).
EDNS_UDP_SIZE = 1232
#: Without EDNS a UDP reply may not exceed 512 octets (RFC 1035 §4.2.1).
CLASSIC_UDP_SIZE = 512
_BADVERS = 16  # extended RCODE (RFC 6891 §6.1.3); dnslib has no name for it
_ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
#: RRSIGs are indexed by 65536 + the type they cover, apart from the types themselves.
_RRSIG_INDEX = 1 << 16
_DO_BIT = EDNS_DO  # in the OPT record's TTL field (RFC 6891 §6.1.3)


class ZoneError(ValueError):
    """A zone file is unusable; the message names the zone and the problem."""


class Outcome(enum.Enum):
    """The kind of answer a lookup produced (RFC 1034 §4.3.2, RFC 2308)."""

    ANSWER = "answer"  #: authoritative data (possibly a CNAME chain leaving the zone)
    REFERRAL = "referral"  #: the name is below a zone cut: NS + glue, AA=0
    NXDOMAIN = "nxdomain"  #: the name does not exist
    NODATA = "nodata"  #: the name exists, but not with this type
    REFUSED = "refused"  #: the name is in no zone this server serves


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What a server says about one question, before it becomes a message."""

    outcome: Outcome
    rcode: int
    aa: bool
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()


def to_name(name: str | DNSLabel) -> Name:
    """The lower-cased label tuple of a textual or dnslib name (DNS names ignore case)."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.lower() for part in label.label)


def order_key(name: Name) -> Name:
    """Sort key of the canonical name order (RFC 4034 §6.1): labels from the root down."""
    return tuple(reversed(name))


def _is_at_or_below(name: Name, zone: Name) -> bool:
    return len(name) >= len(zone) and name[len(name) - len(zone) :] == zone


class Zone:
    """The records of one zone, indexed by owner name and type."""

    def __init__(self, origin: str, records: Iterable[RR], *,
                 dnssec_records: Iterable[RR] = ()) -> None:
        self.origin_text = origin
        self.origin: Name = to_name(origin)
        self._rrsets: dict[Name, dict[int, list[RR]]] = {}
        # DNSKEY, DS, NSEC and RRSIG records of a signed zone, kept apart: only queries
        # with DO=1 see them (RFC 4035 §3.1), so DO=0 answers stay those of the plain zone.
        self._dnssec: dict[Name, dict[int, list[RR]]] = {}
        for rr in dnssec_records:
            owner = to_name(rr.rname)
            key = rr.rdata.covered if rr.rtype == QTYPE.RRSIG else rr.rtype
            kind = _RRSIG_INDEX + key if rr.rtype == QTYPE.RRSIG else key
            self._dnssec.setdefault(owner, {}).setdefault(kind, []).append(rr)
        #: Canonical-order keys of the NSEC owners (RFC 4034 §6.1), sorted, for proofs.
        self.nsec_owners: tuple[Name, ...] = tuple(sorted(
            (n for n, t in self._dnssec.items() if QTYPE.NSEC in t), key=order_key))
        for rr in records:
            owner = to_name(rr.rname)
            if not _is_at_or_below(owner, self.origin):
                raise ZoneError(f"zone {origin}: {rr.rname} is outside the zone")
            if rr.rclass != CLASS.IN:
                raise ZoneError(f"zone {origin}: {rr.rname} is not class IN")
            self._rrsets.setdefault(owner, {}).setdefault(rr.rtype, []).append(rr)
        apex = self._rrsets.get(self.origin, {})
        if len(apex.get(QTYPE.SOA, [])) != 1 or not apex.get(QTYPE.NS):
            raise ZoneError(f"zone {origin}: the apex needs exactly one SOA and some NS records")
        self.soa: RR = apex[QTYPE.SOA][0]
        # Zone cuts: names below the apex that own NS records (RFC 1034 §4.2.1).
        self.cuts = frozenset(
            n for n, t in self._rrsets.items() if n != self.origin and QTYPE.NS in t
        )
        # Every name that exists, including empty non-terminals (RFC 8020 §2).
        self._existing = {n[i:] for n in self._rrsets for i in range(len(n) - len(self.origin) + 1)}
        self._check(origin)

    @property
    def is_signed(self) -> bool:
        return bool(self._dnssec)

    def records(self) -> list[RR]:
        """Every record of the plain zone (glue included), without DNSSEC records."""
        return [rr for types in self._rrsets.values() for rrs in types.values() for rr in rrs]

    def signed(self, dnssec_records: Iterable[RR]) -> Zone:
        """This zone with the DNSKEY, DS, NSEC and RRSIG records a signer made for it."""
        return Zone(self.origin_text, self.records(), dnssec_records=dnssec_records)

    def dnssec_rrset(self, name: Name, rtype: int) -> list[RR]:
        """The DNSKEY, DS or NSEC records of one type at one name, or []."""
        return list(self._dnssec.get(name, {}).get(rtype, []))

    def rrsigs(self, name: Name, covered: int) -> list[RR]:
        """The RRSIGs at `name` over its RRset of type `covered`, or []."""
        return list(self._dnssec.get(name, {}).get(_RRSIG_INDEX + covered, []))

    @classmethod
    def from_text(cls, origin: str, text: str) -> Zone:
        """Parse master-file text (with `$ORIGIN`/`$TTL`) into a zone."""
        # dnslib's parser trips over lines holding only a comment or blanks; drop them.
        lines = [
            line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(";")
        ]
        try:
            records = RR.fromZone("\n".join(lines) + "\n", origin=origin)
        except Exception as exc:  # dnslib raises assorted errors on bad syntax
            raise ZoneError(f"zone {origin}: cannot parse: {exc}") from exc
        return cls(origin, records)

    def _check(self, origin: str) -> None:
        for owner, types in self._rrsets.items():
            if QTYPE.CNAME in types and (len(types) > 1 or len(types[QTYPE.CNAME]) > 1):
                raise ZoneError(
                    f"zone {origin}: a CNAME must be alone at its name (RFC 2181 §10.1)"
                )
            cut = self.cut_above(owner)
            if cut is not None and cut != owner and not set(types) <= set(_ADDRESS_TYPES):
                raise ZoneError(f"zone {origin}: only glue may sit below the zone cut {cut!r}")

    def contains(self, name: Name) -> bool:
        """Is the name at or below this zone's apex (whether or not it exists)?"""
        return _is_at_or_below(name, self.origin)

    def exists(self, name: Name) -> bool:
        """Does the name own records, or records below it (an empty non-terminal)?"""
        return name in self._existing

    def rrset(self, name: Name, rtype: int) -> list[RR]:
        """The records of one type at one name (glue included), or []."""
        return list(self._rrsets.get(name, {}).get(rtype, []))

    def rrsets_at(self, name: Name) -> list[RR]:
        """All the records at one name, for ANY queries."""
        return [rr for rrs in self._rrsets.get(name, {}).values() for rr in rrs]

    def cut_above(self, name: Name) -> Name | None:
        """The highest zone cut at or above `name` and below the apex, if any."""
        for depth in range(len(self.origin) + 1, len(name) + 1):
            candidate = name[len(name) - depth :]
            if candidate in self.cuts:
                return candidate
        return None

    def negative_soa(self) -> RR:
        """The SOA for a negative answer: TTL = min(SOA TTL, MINIMUM) (RFC 2308 §3)."""
        minimum = self.soa.rdata.times[4]
        return RR(self.soa.rname, QTYPE.SOA, ttl=min(self.soa.ttl, minimum), rdata=self.soa.rdata)

    def addresses_for(self, targets: Iterable[DNSLabel]) -> list[RR]:
        """A and AAAA records this zone holds (authoritative or glue) for the given names."""
        found: list[RR] = []
        for target in dict.fromkeys(to_name(t) for t in targets):
            for rtype in _ADDRESS_TYPES:
                found.extend(self.rrset(target, rtype))
        return found


def _targets(records: Iterable[RR]) -> list[DNSLabel]:
    """Names whose addresses belong in the additional section (RFC 1035 §3.3.9, §3.3.11)."""
    names: list[DNSLabel] = []
    for rr in records:
        if rr.rtype in (QTYPE.NS, QTYPE.MX):
            names.append(rr.rdata.label)
        elif rr.rtype == QTYPE.SRV:
            names.append(rr.rdata.target)
    return names


class Authority:
    """One authoritative server: the zones it serves and how it answers."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self.zones = tuple(zones)

    def zone_for(self, name: Name) -> Zone | None:
        """The most specific served zone containing the name (RFC 1034 §4.3.2 step 2)."""
        candidates = [z for z in self.zones if z.contains(name)]
        return max(candidates, key=lambda z: len(z.origin), default=None)

    def lookup(self, qname: str | DNSLabel, qtype: int, *, dnssec: bool = False) -> Answer:
        """Answer one question from this server's zones; with `dnssec` (the query's DO
        bit) a signed zone adds its RRSIGs, NSEC proofs and DS records."""
        if dnssec:
            # Imported here: signed_answers builds on this module's Zone and Answer.
            from resolver.lab.signed_answers import signed_lookup

            return signed_lookup(self, qname, qtype)
        name = to_name(qname)
        zone = self.zone_for(name)
        if zone is None:
            return Answer(outcome=Outcome.REFUSED, rcode=RCODE.REFUSED, aa=False)
        return _answer_in(zone, name, qtype)

    def respond(self, wire: bytes, *, transport: Transport) -> bytes | None:
        """Answer one query message; None means "send nothing". Never raises."""
        try:
            return self._respond(wire, transport)
        except Exception:  # a server must survive any input, even our own bugs
            log.exception("internal error answering a %d-octet query", len(wire))
            return None

    def _respond(self, wire: bytes, transport: Transport) -> bytes | None:
        if len(wire) < 12:
            return None  # too short to even echo an id
        qid, flags, qdcount, ancount, nscount, arcount = struct.unpack("!6H", wire[:12])
        if flags & HeaderFlag.QR:
            return None  # a response: never answer it (that is how reflection loops start)
        opcode = (flags >> 11) & 0xF
        rd = flags & HeaderFlag.RD
        if opcode != 0:
            return _header_only(qid, opcode, rd, RCODE.NOTIMP)  # RFC 1035 §4.1.1
        # A query has one question, no answers, and at most one OPT in additional (RFC 6891 §6.1.1).
        if qdcount != 1 or ancount or nscount or arcount > 1:
            return _header_only(qid, opcode, rd, RCODE.FORMERR)
        query = _well_formed_query(wire)
        if query is None:
            return _header_only(qid, opcode, rd, RCODE.FORMERR)

        question = query.q
        opt = query.ar[0] if query.ar else None
        client_size = CLASSIC_UDP_SIZE if opt is None else max(CLASSIC_UDP_SIZE, opt.rclass)
        dnssec_ok = opt is not None and bool(opt.ttl & _DO_BIT)  # RFC 3225 §3
        reply = DNSRecord(
            DNSHeader(id=qid, qr=1, rd=rd >> 8),
            q=DNSQuestion(question.qname, question.qtype, question.qclass),
        )
        if opt is not None and (opt.ttl >> 16) & 0xFF != 0:
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, ext_rcode=_BADVERS >> 4))  # RFC 6891 §6.1.3
            return bytes(reply.pack())
        self._answer_into(reply, question, dnssec_ok=dnssec_ok)
        if opt is not None:
            # RFC 3225 §3: the DO bit is copied into the reply.
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, flags="do" if dnssec_ok else ""))
        limit = (min(client_size, EDNS_UDP_SIZE) if transport is Transport.UDP
                 else MAX_MESSAGE_OCTETS)
        return _packed_within(reply, limit)

    def _answer_into(self, reply: DNSRecord, question: DNSQuestion, *, dnssec_ok: bool) -> None:
        """Set the rcode and fill the sections of `reply` to `question`."""
        if question.qclass != CLASS.IN:
            reply.header.rcode = RCODE.REFUSED  # the lab has class IN data only
        elif question.qtype == QTYPE.OPT:
            reply.header.rcode = RCODE.FORMERR  # a pseudo-type, not a question (RFC 6891 §6.1.1)
        elif question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            reply.header.rcode = RCODE.REFUSED  # zone transfers are not offered
        else:
            answer = self.lookup(question.qname, question.qtype, dnssec=dnssec_ok)
            reply.header.rcode = answer.rcode
            reply.header.aa = int(answer.aa)
            for rr in answer.answer:
                reply.add_answer(rr)
            for rr in answer.authority:
                reply.add_auth(rr)
            for rr in answer.additional:
                reply.add_ar(rr)


def _answer_in(zone: Zone, name: Name, qtype: int) -> Answer:
    """RFC 1034 §4.3.2 steps 2 to 6 in `zone`, which holds `name`, following CNAMEs while
    their targets stay in the zone."""
    answer: list[RR] = []
    seen = {name}
    while True:
        # Step 2: below a zone cut. (Without DO, DS at a cut is referred too; with DO the
        # parent answers it: signed_answers.)
        cut = zone.cut_above(name)
        if cut is not None:
            if answer:
                # A CNAME led below a cut: give the chain so far; the resolver follows it.
                return _cname_chain(answer)
            return _referral(zone, cut)
        if not zone.exists(name):  # step 6
            return _negative(zone, Outcome.NXDOMAIN, RCODE.NXDOMAIN, answer)
        found = zone.rrsets_at(name) if qtype == QTYPE.ANY else zone.rrset(name, qtype)
        if found:  # step 3
            answer.extend(found)
            return Answer(
                outcome=Outcome.ANSWER,
                rcode=RCODE.NOERROR,
                aa=True,
                answer=tuple(answer),
                additional=tuple(zone.addresses_for(_targets(found))),
            )
        cname = zone.rrset(name, QTYPE.CNAME)
        if not cname:  # step 5
            return _negative(zone, Outcome.NODATA, RCODE.NOERROR, answer)
        answer.extend(cname)  # step 4
        target = to_name(cname[0].rdata.label)
        if target in seen or not zone.contains(target):
            # Another zone (or a loop): stop here, the resolver restarts with the target.
            return _cname_chain(answer)
        seen.add(target)
        name = target


def _referral(zone: Zone, cut: Name) -> Answer:
    """The child's NS records, not authoritative, with the addresses the zone holds for them
    (the glue)."""
    ns = zone.rrset(cut, QTYPE.NS)
    return Answer(
        outcome=Outcome.REFERRAL,
        rcode=RCODE.NOERROR,
        aa=False,
        authority=tuple(ns),
        additional=tuple(zone.addresses_for(_targets(ns))),
    )


def _negative(zone: Zone, outcome: Outcome, rcode: int, cnames: list[RR]) -> Answer:
    """NXDOMAIN or NODATA, after the CNAMEs that led there, with the zone's SOA (RFC 2308 §2)."""
    return Answer(
        outcome=outcome,
        rcode=rcode,
        aa=True,
        answer=tuple(cnames),
        authority=(zone.negative_soa(),),
    )


def _cname_chain(cnames: list[RR]) -> Answer:
    """An authoritative answer of CNAMEs only: the resolver goes on with the last target."""
    return Answer(outcome=Outcome.ANSWER, rcode=RCODE.NOERROR, aa=True, answer=tuple(cnames))


def _packed_within(reply: DNSRecord, limit: int) -> bytes:
    """The reply's wire form, if it fits in `limit` octets; else header, question (and OPT)
    only, with TC=1, and the client retries over TCP (RFC 1035 §4.2.1, RFC 6891 §7,
    RFC 7766 §5)."""
    packed = bytes(reply.pack())
    if len(packed) <= limit:
        return packed
    reply.rr, reply.auth = [], []
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    reply.header.tc = 1
    return bytes(reply.pack())


class _OctetBuffer(DNSBuffer):  # type: ignore[misc]  # dnslib has no type hints
    """dnslib's message buffer, except that a label may hold any octets.

    Any binary string is a valid label (RFC 2181 §11); dnslib's own `decode_name` refuses
    a label that is not UTF-8, e.g. the `\\255` of `\\255.networkutopia.com.`, and such a
    query would get a FORMERR without its question, which resolvers discard.
    """

    offset: int  # the read position, kept by dnslib's Buffer

    def decode_name(self, last: int = -1) -> DNSLabel:
        labels: list[bytes] = []
        octets = 1
        resume: int | None = None
        while True:
            (length,) = self.unpack("!B")
            if length >= 0xC0:  # a compression pointer (RFC 1035 §4.1.4), backwards only
                here = self.offset - 1
                (low,) = self.unpack("!B")
                pointer = (length & 0x3F) << 8 | low
                if pointer >= here:
                    raise DNSBufferError(f"invalid pointer at offset {here}")
                if resume is None:
                    resume = self.offset
                self.offset = pointer
            elif length >= 0x40:  # extended or reserved label types (RFC 6891 §5)
                raise DNSBufferError(f"unknown label type {length:#04x}")
            elif length == 0:
                break
            else:
                octets += length + 1
                if octets > MAX_NAME_OCTETS:  # also ends pointer loops
                    raise DNSBufferError("name longer than 255 octets")
                labels.append(bytes(self.get(length)))
        if resume is not None:
            self.offset = resume
        return DNSLabel(labels)


def _parse_query(wire: bytes) -> DNSRecord:
    """The query as dnslib's record, read with `_OctetBuffer`; the caller has checked that
    it holds one question, no answer or authority records, and at most one additional."""
    buffer = _OctetBuffer(wire)
    header = DNSHeader.parse(buffer)
    question = DNSQuestion.parse(buffer)
    additional = [RR.parse(buffer) for _ in range(header.ar)]
    return DNSRecord(header, [question], [], auth=[], ar=additional)


def _well_formed_query(wire: bytes) -> DNSRecord | None:
    """The query, parsed, if its name is valid and its additional record, if any, an OPT
    owned by the root; None: FORMERR."""
    try:
        query = _parse_query(wire)
    except Exception:  # DNSError, but also RecursionError and others on crafted input
        return None
    if not _valid_name(query.q.qname):
        return None
    opt = query.ar[0] if query.ar else None
    if opt is not None and (opt.rtype != QTYPE.OPT or opt.rname.label):
        return None  # not an OPT, or not owned by root
    return query


def _valid_name(name: DNSLabel) -> bool:
    """Labels of at most 63 octets, names of at most 255 (RFC 1035 §2.3.4)."""
    labels = name.label
    return (
        all(0 < len(label) <= MAX_LABEL_OCTETS for label in labels)
        and sum(len(x) + 1 for x in labels) + 1 <= MAX_NAME_OCTETS
    )


def _header_only(qid: int, opcode: int, rd: int, rcode: int) -> bytes:
    """A reply with no sections, for queries we cannot or will not parse."""
    return struct.pack("!6H", qid, 0x8000 | (opcode << 11) | rd | rcode, 0, 0, 0, 0)
