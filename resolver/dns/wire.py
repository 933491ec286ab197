"""The DNS message format's values and vocabulary: `Question`, `Record`, `Message`, `Edns`,
`RRType`, `Rcode`, and records read from zone-file text.

With `decoding` (octets to a `Message`, after the strict scanner `resolver.dns.scanner`),
`encoding` (a `Message` or query to octets) and `record_text` (the cache file's exact record
lines), this is the only place that touches dnslib (besides the RDATA helpers `dnssec_rdata`
and `rdata_wire`). Everything else sees frozen values.

Names are canonical (lower case, trailing dot). Types and classes are plain ints so
that unknown types travel untouched (RFC 3597); `RRType`/`Rcode` name the ones the
resolver reasons about.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace
from typing import Any

import dnslib
import dnslib.dns

from resolver.dns import dnssec_rdata, names
from resolver.dns.header import TTL_SIGN_BIT
from resolver.dns.malformed import MalformedMessage
from resolver.dns.wire_names import presentation, presentation_as_sent

__all__ = [
    "Edns",
    "MalformedMessage",
    "Message",
    "Question",
    "RRType",
    "Rcode",
    "Record",
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
        return check_u16(int(upper[4:]))
    if upper.isdigit():
        return check_u16(int(upper))
    number = dnslib.QTYPE.reverse.get(upper)
    if number is None:
        raise ValueError(f"unknown record type {text!r}")
    return int(number)


def check_u16(value: int) -> int:
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
        fields = (self.name, str(self.ttl), class_name(self.rclass), type_name(self.rtype),
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


def class_name(rclass: int) -> str:
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


def rdata_key(rtype: int, rd: Any) -> str:
    if type(rd) is NameRdata:
        return presentation(rd.labels())
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
        rdata_key=rdata_key(rtype, rr.rdata),
        rdata=rr.rdata,
    )


def record_from_rr(rr: Any) -> Record:
    """A dnslib resource record (the lab's zone data, read by dnslib) as a `Record`."""
    return _record(rr)


#: TYPE, CLASS, TTL and RDLENGTH after a record's owner name (RFC 1035 §4.1.3).
RR_FIXED = struct.Struct("!HHIH")


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


class NameRdata:
    """The RDATA of NS, CNAME, PTR and DNAME: one domain name (RFC 1035 §3.3.1, §3.3.11,
    §3.3.12; RFC 6672 §2.1), kept as its uncompressed wire octets in the letter case it was
    sent in. The canonical text is the record's `rdata_key`. It offers what dnslib's RDATA
    objects offer the rest of this module (pack, toZone, str) in one bytes object, where
    dnslib's takes two objects, two dicts, a tuple and a bytes object per label, and it is
    read without them."""

    __slots__ = ("wire",)

    def __init__(self, wire: bytes) -> None:
        self.wire = wire

    @classmethod
    def of_labels(cls, labels: list[bytes]) -> NameRdata:
        return cls(b"".join([bytes((len(label),)) + label for label in labels]) + b"\x00")

    def labels(self) -> list[bytes]:
        wire, pos, out = self.wire, 0, []
        while wire[pos]:
            end = pos + 1 + wire[pos]
            out.append(wire[pos + 1 : end])
            pos = end
        return out

    def pack(self, buffer: Any) -> None:
        # The buffer's own name writer: it compresses, or not, as the buffer is meant to.
        buffer.encode_name(dnslib.DNSLabel(self.labels()))

    def toZone(self) -> str:  # dnslib's name: its encoder and Record.rdata_text call it
        return presentation_as_sent(self.labels())

    def __str__(self) -> str:
        return self.toZone()

    __repr__ = __str__


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

