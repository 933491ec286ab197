"""The DNS message format: the only module that imports dnslib (besides the RDATA helpers
`dnssec_rdata` and `rdata_wire`).

Everything else sees frozen values: `Question`, `Record`, `Message`, `Edns`. Decoding
first runs the strict linear-time scanner (`resolver.dns.scanner`) and only then hands
the bytes to dnslib, because dnslib alone accepts over-long labels and names and
burns quadratic time on pointer chains (see docs/reliability.md (0)).

Names are canonical (lower case, trailing dot). Types and classes are plain ints so
that unknown types travel untouched (RFC 3597); `RRType`/`Rcode` name the ones the
resolver reasons about.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field, replace
from typing import Any

import dnslib
import dnslib.dns

from resolver.dns import dnssec_rdata, names
from resolver.dns.header import EDNS_DO, TTL_SIGN_BIT, HeaderFlag
from resolver.dns.scanner import (
    HEADER_LEN,
    MalformedMessage,
    ScannedMessage,
    presentation,
    scan_labels,
    scan_message,
)

__all__ = [
    "Edns",
    "MalformedMessage",
    "Message",
    "Question",
    "RRType",
    "Rcode",
    "Record",
    "decode",
    "encode",
    "make_query",
    "parse_record",
    "record_from_rr",
]

# dnslib has no DNAME parser; its RDATA has the shape of a CNAME's (RFC 6672 §2.1).
dnslib.dns.RDMAP.setdefault("DNAME", dnslib.CNAME)
dnssec_rdata.register()  # NSEC3, NSEC3PARAM: dnslib cannot read them from zone text


class RRType(enum.IntEnum):
    """Record types the engine treats specially; any other int is carried as is."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    DNAME = 39
    OPT = 41
    DS = 43
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    NSEC3 = 50
    HTTPS = 65
    IXFR = 251
    AXFR = 252
    ANY = 255


class Rcode(enum.IntEnum):
    """Response codes (RFC 1035 §4.1.1, RFC 6891 §9 for the extended BADVERS)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6
    BADVERS = 16


CLASS_IN = 1
OPCODE_QUERY = 0

#: Types whose RDATA is a single domain name: their `rdata_key` is that name, canonical.
_TARGET_IS_KEY = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME

#: Types whose RDATA holds a domain name that resolution follows or compares.
_NAME_RDATA = {RRType.NS, RRType.CNAME, RRType.DNAME, RRType.PTR, RRType.MX, RRType.SRV}


def rcode_name(rcode: int) -> str:
    """Mnemonic of a response code ("NXDOMAIN", "RCODE11" for unassigned ones)."""
    try:
        return Rcode(rcode).name
    except ValueError:
        return f"RCODE{rcode}"


def type_name(rtype: int) -> str:
    """Mnemonic of a type ("A", "TYPE65400" for unknown ones, RFC 3597 §5)."""
    value = dnslib.QTYPE.forward.get(rtype)
    return str(value) if value is not None else f"TYPE{rtype}"


def type_from_text(text: str) -> int:
    """Type number for a mnemonic or TYPEnnn; raises ValueError for unknown text."""
    upper = text.upper()
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return _check_u16(int(upper[4:]))
    if upper.isdigit():
        return _check_u16(int(upper))
    number = dnslib.QTYPE.reverse.get(upper)
    if number is None:
        raise ValueError(f"unknown record type {text!r}")
    return int(number)


def _check_u16(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"type {value} is outside 0-65535")
    return value


@dataclass(frozen=True, slots=True)
class Question:
    """What is asked: name, type, class (RFC 1035 §4.1.2)."""

    name: str
    rtype: int
    rclass: int = CLASS_IN

    def __str__(self) -> str:
        return f"{self.name} {type_name(self.rtype)}"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. `rdata` is opaque outside this module; `rdata_key` compares."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata_key: str
    rdata: Any = field(compare=False, hash=False, repr=False)

    def with_ttl(self, ttl: int) -> Record:
        if ttl == self.ttl:
            return self  # immutable: a copy would only cost time
        # Direct construction: dataclasses.replace costs several times more on this path.
        return Record(self.name, self.rtype, self.rclass, ttl, self.rdata_key, self.rdata)

    def with_name(self, name: str) -> Record:
        return replace(self, name=name)

    @property
    def target(self) -> str:
        """The domain name inside NS/CNAME/DNAME/PTR/MX/SRV RDATA, canonical."""
        if self.rtype in _TARGET_IS_KEY and type(self.rdata) is not dnslib.RD:  # not opaque
            return self.rdata_key  # the name in presentation form, lower-cased: canonical
        rd = self.rdata
        label = None
        for attribute in ("label", "target", "mx"):  # NS/CNAME/DNAME/PTR, SRV, MX in dnslib
            label = getattr(rd, attribute, None)
            if label is not None:
                break
        if label is None:
            raise ValueError(f"{type_name(self.rtype)} has no target name")
        return _label_text(label)

    @property
    def address(self) -> str:
        """The address in A/AAAA RDATA."""
        return str(self.rdata)

    @property
    def soa_minimum(self) -> int:
        return int(self.rdata.times[4])

    def to_text(self) -> str:
        fields = (self.name, str(self.ttl), _class_name(self.rclass), type_name(self.rtype),
                  self.rdata_text)
        return "\t".join(fields)

    @property
    def rdata_text(self) -> str:
        if self.rtype == 13 and type(self.rdata) is dnslib.RD:  # HINFO: dnslib has no class
            return _character_strings(bytes(self.rdata.data))
        return str(self.rdata.toZone())


def _character_strings(data: bytes) -> str:
    """RDATA made of <character-string>s (RFC 1035 §3.3) in zone-file form."""
    out, i = [], 0
    while i < len(data):
        length = data[i]
        text = data[i + 1 : i + 1 + length].decode("ascii", "backslashreplace")
        out.append('"' + text.replace('"', '\\"') + '"')
        i += 1 + length
    return " ".join(out)


def _class_name(rclass: int) -> str:
    value = dnslib.CLASS.forward.get(rclass)
    return str(value) if value is not None else f"CLASS{rclass}"


@dataclass(frozen=True, slots=True)
class Edns:
    """The OPT pseudo-record's meaning (RFC 6891 §6.1.3)."""

    udp_size: int = 1232
    version: int = 0
    do: bool = False
    ext_rcode: int = 0
    options: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded DNS message with canonical names."""

    id: int
    qr: bool
    opcode: int
    rcode: int
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    ad: bool = False
    cd: bool = False
    question: Question | None = None
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    edns: Edns | None = None
    #: Records left out because their RDATA does not fit their type ("owner TYPE: why");
    #: the rest of the message stands (RFC 2181 §5.4.1: one bad record is not a bad reply).
    malformed: tuple[str, ...] = ()


def _label_text(label: Any) -> str:
    """A dnslib name as canonical presentation text, escapes as the decoder writes them."""
    return presentation(list(label.label))


def _rdata_key(rtype: int, rd: Any) -> str:
    if rtype in _TARGET_IS_KEY and type(rd) is not dnslib.RD:
        return _label_text(rd.label)  # exact: dnslib's text would split a dotted label
    text = str(rd.toZone()) if hasattr(rd, "toZone") else str(rd)
    if rtype in _NAME_RDATA or rtype == RRType.SOA:
        return text.lower()
    return text


def _record(rr: Any) -> Record:
    rtype = int(rr.rtype)
    ttl = int(rr.ttl)
    return Record(
        name=_label_text(rr.rname),
        rtype=rtype,
        rclass=int(rr.rclass),
        ttl=0 if ttl & TTL_SIGN_BIT else ttl,  # RFC 2181 §8: a TTL with the top bit set means 0
        rdata_key=_rdata_key(rtype, rr.rdata),
        rdata=rr.rdata,
    )


def record_from_rr(rr: Any) -> Record:
    """A dnslib resource record (the lab's zone data, read by dnslib) as a `Record`."""
    return _record(rr)


def decode(data: bytes, *, max_records: int | None = None) -> Message:
    """Decode `data`; raises MalformedMessage (and nothing else) for anything not well formed.

    Header, names and record fields are read here; dnslib reads only RDATA, through a buffer
    whose names follow the scanner's rules. A record whose RDATA does not read as its type
    says is dropped and named in `Message.malformed` (RFC 2181 §5.4.1 spirit, as Unbound's
    scrubber drops a malformed RR); the rest of the message stands. A message counting more
    than `max_records` records (OPT included) is refused whole.
    """
    if max_records is not None and len(data) >= HEADER_LEN:
        # Refused before any record is read, so an oversized reply costs nothing.
        ancount, nscount, arcount = struct.unpack_from("!3H", data, 6)
        if ancount + nscount + arcount > max_records:
            raise MalformedMessage(f"more than {max_records} records")
    scanned = scan_message(data)
    if type(data) is not bytes:
        data = bytes(data)
    if scanned.end < len(data):
        # Octets after the last record are ignored, so no name may point into them either.
        data = data[: scanned.end]
    return _decode_records(data, scanned)


def _message(
    scanned: ScannedMessage, question: Question | None, answer: list[Record],
    authority: list[Record], additional: list[Record], malformed: tuple[str, ...] = (),
) -> Message:
    flags = scanned.flags
    edns = None
    if scanned.edns is not None:
        e = scanned.edns
        edns = Edns(udp_size=e.udp_size, version=e.version, do=e.do, ext_rcode=e.ext_rcode,
                    options=e.options)
    return Message(
        id=scanned.id,
        qr=scanned.qr,
        opcode=scanned.opcode,
        rcode=scanned.rcode | ((edns.ext_rcode << 4) if edns else 0),
        aa=bool(flags & HeaderFlag.AA),
        tc=bool(flags & HeaderFlag.TC),
        rd=bool(flags & HeaderFlag.RD),
        ra=bool(flags & HeaderFlag.RA),
        ad=bool(flags & HeaderFlag.AD),
        cd=bool(flags & HeaderFlag.CD),
        question=question,
        answer=tuple(answer),
        authority=tuple(authority),
        additional=tuple(additional),
        edns=edns,
        malformed=malformed,
    )


#: dnslib's RDATA class for each type it knows (DNAME added above); others are opaque RD.
_RDATA_CLASSES: dict[int, Any] = {
    int(dnslib.QTYPE.reverse[name]): rdata_class
    for name, rdata_class in dnslib.dns.RDMAP.items()
    if name in dnslib.QTYPE.reverse
}
_RR_FIXED = struct.Struct("!HHIH")
#: Labels of only these octets need no escapes in presentation form (dnslib's or ours).
_PLAIN_NAME = re.compile(rb"[\x21-\x2d\x2f-\x5b\x5d-\x7e]+(?:\.[\x21-\x2d\x2f-\x5b\x5d-\x7e]+)*")


class Ipv4Rdata:
    """A record RDATA (RFC 1035 §3.4.1) as its four octets and their dotted-quad text: what
    dnslib's A object offers the rest of this module (pack, toZone, str), in half the memory
    of it and its tuple of four ints. The text is also the record's `rdata_key`."""

    __slots__ = ("octets", "text")

    def __init__(self, octets: bytes) -> None:
        self.octets = octets
        self.text = f"{octets[0]}.{octets[1]}.{octets[2]}.{octets[3]}"

    def pack(self, buffer: Any) -> None:
        buffer.append(self.octets)

    def toZone(self) -> str:  # dnslib's name: its encoder and Record.rdata_text call it
        return self.text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


#: Types whose dnslib RDATA always writes back what it read (fixed fields, names, strings).
_REPACKS = frozenset({RRType.AAAA, RRType.NS, RRType.CNAME, RRType.SOA, RRType.PTR, RRType.MX,
                      RRType.TXT, RRType.SRV, RRType.DNAME})


def _writes_back(rtype: int, rdata: Any, octets: bytes, key: str) -> bool:
    """Whether `rdata` writes back to what was read: dnslib reads some RDATA it cannot
    write (an NSEC without a type bitmap) or writes differently (bitmap windows out of
    the order RFC 4034 §4.1.2 requires, which it sorts). Such a record could never be sent
    on or cached as received. Raises what dnslib raises when it cannot write at all."""
    buffer = dnslib.DNSBuffer()
    buffer.encode_name = buffer.encode_name_nocompress
    rdata.pack(buffer)
    written = bytes(buffer.data)
    if written == octets:
        return True
    # Differently written: equal only if it reads back the same (a compressed name in
    # the RDATA is written out in full here).
    again = _RDATA_CLASSES.get(rtype, dnslib.RD).parse(_StrictNameBuffer(written), len(written))
    return bool(_rdata_key(rtype, again) == key)


class _StrictNameBuffer(dnslib.DNSBuffer):  # type: ignore[misc]  # dnslib has no hints
    """A dnslib buffer whose RDATA readers read names by the scanner's rules: pointers only
    strictly back, bounded hops, 255 octets at most, any octet in a label (RFC 2181 §11).
    dnslib's own reader recurses once per pointer and refuses octets above 0x7f."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.octets = data
        self.offset: int = 0

    def decode_name(self, last: int = -1) -> Any:  # dnslib's signature
        labels, end = scan_labels(self.octets, self.offset)
        self.offset = end
        return dnslib.DNSLabel(labels)


def _decode_records(data: bytes, scanned: ScannedMessage) -> Message:
    """Decode a message the scanner accepted.

    The scanner has proven every owner name, pointer and length sound, so this only reads.
    Names are kept by offset: a compression pointer to a name read before costs one lookup.
    """
    try:
        return _read_records(data, scanned)
    except (IndexError, struct.error):
        # Every length was proven sound, but a name reached through a pointer may run on
        # into the octets after the last record, which are no part of the message.
        raise MalformedMessage("name runs past the last record") from None


def _read_records(data: bytes, scanned: ScannedMessage) -> Message:
    read: dict[int, str] = {}
    question = None
    if scanned.qdcount and scanned.qname is not None:
        qname = scanned.qname
        read[HEADER_LEN] = qname
        question = Question(qname, scanned.qtype or 0, scanned.qclass or 0)
    buffer = _StrictNameBuffer(data)
    sections: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    malformed: list[str] = []
    pos = scanned.question_end
    unpack = _RR_FIXED.unpack_from
    for section, count in zip(sections, (scanned.ancount, scanned.nscount, scanned.arcount),
                              strict=True):
        for _ in range(count):
            name, pos = _owner_name(data, pos, read)
            rtype, rclass, ttl, rdlength = unpack(data, pos)
            pos += 10
            ttl = 0 if ttl & TTL_SIGN_BIT else ttl  # RFC 2181 §8: the top bit set means 0
            if rtype == RRType.OPT:  # the scanner read it: Message.edns
                pos += rdlength
                continue
            if rtype == RRType.A and rdlength == 4:
                address = Ipv4Rdata(data[pos : pos + 4])
                pos += 4
                section.append(Record(name, rtype, rclass, ttl, address.text, address))
                continue
            buffer.offset = pos
            try:
                rdata = _RDATA_CLASSES.get(rtype, dnslib.RD).parse(buffer, rdlength)
                # The key prints the RDATA: dnslib may parse values it cannot print (a LOC
                # size exponent over 9, say), so printing belongs to the same test.
                key = _rdata_key(rtype, rdata) if buffer.offset == pos + rdlength else None
                if (key is not None and rtype not in _REPACKS
                        and not _writes_back(rtype, rdata, data[pos : pos + rdlength], key)):
                    key = None
            except Exception:  # dnslib raises many kinds (and RecursionError) on bad RDATA
                key = None
            pos += rdlength
            if key is None:
                # The scanner proved the framing sound, so only this RR is bad: its RDATA
                # does not read as its type says. Drop it, keep the rest.
                malformed.append(f"{name} {type_name(rtype)}: {rdlength} octets of RDATA "
                                 "do not fit the type")
                continue
            section.append(Record(name, rtype, rclass, ttl, key, rdata))
    return _message(scanned, question, *sections, tuple(malformed))


def _owner_name(data: bytes, pos: int, read: dict[int, str]) -> tuple[str, int]:
    """The canonical name at `pos` (validated by the scanner) and the offset after it."""
    start = pos
    labels: list[bytes] = []
    after = -1
    suffix = "."
    while True:
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            if after < 0:
                after = pos + 2
            target = ((length & 0x3F) << 8) | data[pos + 1]
            known = read.get(target)
            if known is not None:
                suffix = known
                break
            pos = target
            continue
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    if after < 0:
        after = pos
    if not labels:
        name = suffix
    else:
        joined = b".".join(labels).lower()
        if joined.count(b".") == len(labels) - 1 and _PLAIN_NAME.fullmatch(joined):
            text = joined.decode("ascii")
        else:  # a dot, backslash or other octet inside a label: escaped, never split
            text = presentation(labels)[:-1]
        name = text + ("." if suffix == "." else "." + suffix)
    read[start] = name
    return name, after


def _name_wire(name: str) -> bytes:
    out = bytearray()
    for label in names.labels(name):
        raw = _unescape(label)
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


def _unescape(label: str) -> bytes:
    if "\\" not in label:
        return label.encode("ascii", "strict")
    out = bytearray()
    i = 0
    while i < len(label):
        ch = label[i]
        if ch == "\\" and label[i + 1 : i + 4].isdigit() and len(label[i + 1 : i + 4]) == 3:
            out.append(int(label[i + 1 : i + 4]))
            i += 4
        elif ch == "\\" and i + 1 < len(label):
            out += label[i + 1].encode("ascii")
            i += 2
        else:
            out += ch.encode("ascii")
            i += 1
    return bytes(out)


def make_query(
    question: Question,
    *,
    query_id: int,
    recursion_desired: bool = False,
    edns_udp_size: int | None = 1232,
    dnssec_ok: bool = False,
    checking_disabled: bool = False,
) -> bytes:
    """A query message for `question` (RFC 1035 §4.1; OPT per RFC 6891 §6.1.2)."""
    flags = (HeaderFlag.RD if recursion_desired else 0) | (
        HeaderFlag.CD if checking_disabled else 0)
    arcount = 1 if edns_udp_size is not None else 0
    out = struct.pack("!HHHHHH", query_id, flags, 1, 0, 0, arcount)
    out += _name_wire(question.name) + struct.pack("!HH", question.rtype, question.rclass)
    if edns_udp_size is not None:
        do_bit = EDNS_DO if dnssec_ok else 0
        out += b"\x00" + struct.pack("!HHIH", RRType.OPT, edns_udp_size, do_bit, 0)
    return out


def encode(message: Message, *, max_size: int = 65535) -> bytes:
    """Encode `message`; if larger than `max_size`, send header, question and OPT with TC=1.

    RFC 1035 §4.2.1 and RFC 6891 §7: a reply that does not fit is truncated and
    the client retries over TCP, which is cheaper and safer than a partial RRset.

    Header, names and record fields are written here; each RDATA writes itself into the same
    dnslib buffer, so names inside RDATA and owner names share one compression table
    (RFC 1035 §4.1.4). Pointers only go to offsets below 2**14, the most they can hold.
    """
    flags = ((message.qr << 15) | ((message.opcode & 0xF) << 11) | (message.aa << 10)
             | (message.tc << 9) | (message.rd << 8) | (message.ra << 7) | (message.ad << 5)
             | (message.cd << 4) | (message.rcode & 0xF))
    additional = len(message.additional) + (message.edns is not None)
    buffer = dnslib.DNSBuffer()
    buffer.append(_HEADER.pack(message.id, flags, message.question is not None,
                               len(message.answer), len(message.authority), additional))
    if message.question is not None:
        q = message.question
        _put_name(buffer, q.name)
        buffer.append(_QUESTION_FIXED.pack(q.rtype, q.rclass))
    for section in (message.answer, message.authority, message.additional):
        for rr in section:
            _put_name(buffer, rr.name)
            buffer.append(_RR_FIXED.pack(rr.rtype, rr.rclass, max(0, rr.ttl), 0))
            start = buffer.offset
            rr.rdata.pack(buffer)
            buffer.update(start - 2, "!H", buffer.offset - start)
    if message.edns is not None:
        edns = message.edns
        ttl = ((message.rcode >> 4) << 24) | (edns.version << 16) | (EDNS_DO if edns.do else 0)
        options = b"".join(_OPTION_HEAD.pack(code, len(data)) + data
                           for code, data in edns.options)
        buffer.append(b"\x00" + _RR_FIXED.pack(RRType.OPT, edns.udp_size, ttl, len(options))
                      + options)
    data = bytes(buffer.data)
    if len(data) <= max_size:
        return data
    truncated = replace(message, tc=True, answer=(), authority=(), additional=())
    return encode(truncated)


_HEADER = struct.Struct("!6H")
_QUESTION_FIXED = struct.Struct("!HH")
_OPTION_HEAD = struct.Struct("!HH")
#: Offsets a compression pointer can reach (14 bits).
_POINTER_LIMIT = 0x4000


def _put_name(buffer: Any, name: str) -> None:
    """Write `name` into `buffer`, compressed against the names written before (dnslib's
    table: label tuples to offsets, as its RDATA writers use it)."""
    labels = _wire_labels(name)
    known = buffer.names
    for index in range(len(labels)):
        suffix = labels[index:]
        pointer = known.get(suffix)
        if pointer is not None:
            buffer.append((0xC000 | pointer).to_bytes(2, "big"))
            return
        if buffer.offset < _POINTER_LIMIT:
            known[suffix] = buffer.offset
        label = labels[index]
        buffer.append(bytes((len(label),)) + label)
    buffer.append(b"\x00")


def _wire_labels(name: str) -> tuple[bytes, ...]:
    """The labels of a canonical name as octets (escapes undone); ValueError if invalid."""
    if name in (".", ""):
        return ()
    if "\\" in name:
        labels = tuple(_unescape(label) for label in names.labels(names.canonical(name)))
    else:
        labels = tuple(name.rstrip(".").encode("ascii").split(b"."))
    if not all(0 < len(label) <= 63 for label in labels) or (
        sum(map(len, labels)) + len(labels) + 1 > 255
    ):
        raise ValueError(f"not a valid domain name: {name!r}")
    return labels


def make_record(name: str, rtype: int, ttl: int, rdata: bytes, *, rclass: int = CLASS_IN) -> Record:
    """A record from raw RDATA octets (for types dnslib has no class for, RFC 3597)."""
    rd = dnslib.RD(rdata)
    return Record(
        name=names.canonical(name), rtype=rtype, rclass=rclass, ttl=ttl,
        rdata_key=rdata.hex(), rdata=rd,
    )


def parse_record(text: str) -> Record:
    """One record in zone-file syntax ("www.example. 300 IN A 192.0.2.1")."""
    try:
        rrs = dnslib.RR.fromZone(text)
    except Exception as exc:
        raise ValueError(f"cannot parse record {text!r}: {exc}") from None
    if len(rrs) != 1:
        raise ValueError(f"expected one record in {text!r}")
    return _record(rrs[0])


def parse_records(text: str) -> list[Record]:
    """Records in zone-file syntax (several lines)."""
    try:
        return [_record(rr) for rr in dnslib.RR.fromZone(text)]
    except Exception as exc:
        raise ValueError(f"cannot parse records: {exc}") from None


# -- exact record text (the cache file) -----------------------------------------------------

#: Types whose RDATA is written in presentation form by `exact_text`; the RDATA of every
#: other type is written in the generic form of RFC 3597 §5, which reads back octet for octet.
_PRESENTED_TYPES = frozenset({
    RRType.A, RRType.AAAA, RRType.NS, RRType.CNAME, RRType.DNAME, RRType.PTR, RRType.MX,
    RRType.SOA,
})
#: Names whose text is unambiguous: letters, digits, '-', '_' and '*' only (dnslib does not
#: escape a '.' inside a label, so other names go in generic form).
_PLAIN_RDATA_NAME = re.compile(r"^(?:[A-Za-z0-9_*-]+\.)+$|^\.$")
_GENERIC_RDATA = re.compile(r"^\\#\s+(\d+)\s*([0-9A-Fa-f\s]*)$")


def rdata_octets(record: Record) -> bytes:
    """The RDATA of `record` as octets, names uncompressed (RFC 3597 §4: the generic form
    never holds compression pointers)."""
    buffer = dnslib.DNSBuffer()
    buffer.encode_name = buffer.encode_name_nocompress
    record.rdata.pack(buffer)
    return bytes(buffer.data)


def exact_text(record: Record) -> str:
    """`record` as one zone-file line that `record_from_exact_text` reads back unchanged.

    Owner, TTL, class, type and RDATA separated by tabs; the RDATA in presentation form
    for the common types, in RFC 3597 §5 generic form (`\\# LENGTH HEX`) for the rest.
    """
    rdata = record.rdata_text if record.rtype in _PRESENTED_TYPES else ""
    if rdata and record.rtype != RRType.A and record.rtype != RRType.AAAA:
        fields = rdata.split()
        names_in = fields[-1:] if record.rtype != RRType.SOA else fields[:2]
        if not all(_PLAIN_RDATA_NAME.match(name) for name in names_in):
            rdata = ""
    if not rdata or type(record.rdata) is dnslib.RD:
        octets = rdata_octets(record)
        rdata = f"\\# {len(octets)} {octets.hex()}" if octets else "\\# 0"
    return "\t".join((record.name, str(record.ttl), _class_name(record.rclass),
                      type_name(record.rtype), rdata))


def record_from_exact_text(line: str) -> Record:
    """Read one line written by `exact_text`; ValueError when it is not one."""
    parts = line.split("\t")
    if len(parts) != 5:
        raise ValueError("not five tab-separated fields")
    owner, ttl_text, class_text, type_text, rdata_text = parts
    if not ttl_text.isdigit() or int(ttl_text) > 2**31 - 1:
        raise ValueError(f"bad TTL {ttl_text!r}")
    rclass = _class_from_text(class_text)
    rtype = type_from_text(type_text)
    name = names.canonical(owner)
    _name_wire(name)  # ValueError when it is no valid name
    generic = _GENERIC_RDATA.match(rdata_text)
    if generic is not None:
        octets = bytes.fromhex("".join(generic.group(2).split()))
        if len(octets) != int(generic.group(1)):
            raise ValueError("generic RDATA length does not match its octets")
    elif rtype in _PRESENTED_TYPES:
        octets = _presented_rdata(rtype, rdata_text.split())
    else:
        raise ValueError(f"{type_name(rtype)} RDATA must be in generic form")
    return record_from_rdata(name, rtype, rclass, int(ttl_text), octets)


def _presented_rdata(rtype: int, fields: list[str]) -> bytes:
    import ipaddress

    if rtype == RRType.A and len(fields) == 1:
        return ipaddress.IPv4Address(fields[0]).packed
    if rtype == RRType.AAAA and len(fields) == 1:
        return ipaddress.IPv6Address(fields[0]).packed
    if rtype == RRType.MX and len(fields) == 2 and fields[0].isdigit():
        return _check_u16(int(fields[0])).to_bytes(2, "big") + _name_wire(fields[1])
    if rtype == RRType.SOA and len(fields) == 7 and all(f.isdigit() for f in fields[2:]):
        times = b"".join(int(f).to_bytes(4, "big") for f in fields[2:])
        return _name_wire(fields[0]) + _name_wire(fields[1]) + times
    if rtype in (RRType.NS, RRType.CNAME, RRType.DNAME, RRType.PTR) and len(fields) == 1:
        return _name_wire(fields[0])
    raise ValueError(f"cannot read {type_name(rtype)} RDATA {' '.join(fields)!r}")


def record_from_rdata(name: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> Record:
    """A record from uncompressed RDATA octets, decoded for its type (opaque when unknown);
    ValueError when the octets do not fit the type."""
    if rtype == RRType.A and len(rdata) == 4:  # the decoder's compact form (Ipv4Rdata)
        return Record(names.canonical(name), rtype, rclass, ttl, Ipv4Rdata(rdata).text,
                      Ipv4Rdata(rdata))
    parser = dnslib.RDMAP.get(type_name(rtype), dnslib.RD)
    buffer = dnslib.DNSBuffer(rdata)
    try:
        rd = parser.parse(buffer, len(rdata))
    except Exception as exc:  # dnslib raises several kinds on bad RDATA
        raise ValueError(f"{type_name(rtype)} RDATA does not fit its type: {exc}") from None
    if buffer.remaining() != 0:
        raise ValueError(f"{type_name(rtype)} RDATA has {buffer.remaining()} octets too many")
    return Record(name=names.canonical(name), rtype=rtype, rclass=rclass, ttl=ttl,
                  rdata_key=_rdata_key(rtype, rd), rdata=rd)


def _class_from_text(text: str) -> int:
    upper = text.upper()
    if upper.startswith("CLASS") and upper[5:].isdigit():
        return _check_u16(int(upper[5:]))
    number = dnslib.CLASS.reverse.get(upper)
    if number is None:
        raise ValueError(f"unknown class {text!r}")
    return int(number)
