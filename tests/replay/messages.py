"""DNS messages in the replay: entry templates -> wire, and wire -> a tolerant read-only view.

README §3.4 (message defaults and EDNS per dialect) and §3.5 (mock reply adjustments). A
`MessageView` never raises on bad input: when dnslib cannot decode a message, the header fields
still come from the raw bytes and `error` says why the sections are missing, so matching and
failure messages keep working on garbage (RAW and HEX scenarios send garbage on purpose).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dnslib

from tests.replay.rpl import HEADER_FLAGS, Entry
from tests.replay.rplconfig import Dialect

__all__ = [
    "Edns", "MessageView", "build_record", "entry_view", "entry_wire", "flags_text",
    "make_opt", "rcode_text", "servfail_for", "summarize", "view",
]

_FLAG_BITS = {"QR": 15, "AA": 10, "TC": 9, "RD": 8, "RA": 7, "AD": 5, "CD": 4}
OPT = 41
EDE_OPTION = 15  # RFC 8914 §2
DO_BIT = 0x8000
#: Payload of the OPT record each harness puts on the messages it builds (README §3.4).
PAYLOAD = {Dialect.DECKARD: 4096, Dialect.TESTBOUND: 1232}


@dataclass(frozen=True, slots=True, kw_only=True)
class Edns:
    """The OPT pseudo-record of a message (RFC 6891 §6.1)."""

    version: int
    payload: int
    do: bool
    options: tuple[tuple[int, bytes], ...]

    @property
    def rdata(self) -> bytes:
        return b"".join(struct.pack("!HH", code, len(data)) + data for code, data in self.options)

    def ede_codes(self) -> tuple[int, ...]:
        """INFO-CODEs of the Extended DNS Error options present (RFC 8914 §2)."""
        return tuple(int.from_bytes(d[:2], "big") for c, d in self.options if c == EDE_OPTION)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageView:
    """What the harness compares: header, sections without OPT, EDNS, and the raw bytes."""

    wire: bytes
    id: int
    opcode: int
    rcode: int  # including the OPT extended-rcode bits
    flags: frozenset[str]
    question: tuple[dnslib.DNSQuestion, ...] = ()
    answer: tuple[dnslib.RR, ...] = ()
    authority: tuple[dnslib.RR, ...] = ()
    additional: tuple[dnslib.RR, ...] = ()
    edns: Edns | None = None
    record: dnslib.DNSRecord | None = None
    error: str | None = None  # set when the sections could not be decoded

    @property
    def qname(self) -> str | None:
        return str(self.question[0].qname) if self.question else None

    @property
    def qtype(self) -> int | None:
        return int(self.question[0].qtype) if self.question else None

    @property
    def do(self) -> bool:
        return self.edns is not None and self.edns.do

    def text(self) -> str:
        """dig-like rendering, or hex when the message does not decode."""
        if self.record is not None:
            return str(self.record)
        return f";; undecodable message ({self.error}): {self.wire.hex()}"


def flags_text(flags: frozenset[str]) -> str:
    return " ".join(f for f in HEADER_FLAGS if f in flags)


def rcode_text(rcode: int) -> str:
    return str(dnslib.RCODE.get(rcode))


def _flags_from_bitmap(bitmap: int) -> frozenset[str]:
    return frozenset(name for name, bit in _FLAG_BITS.items() if bitmap >> bit & 1)


def _edns_of(rr: dnslib.RR) -> Edns:
    options = tuple((int(o.code), bytes(o.data)) for o in (rr.rdata or []))
    return Edns(version=rr.ttl >> 16 & 0xFF, payload=int(rr.rclass), do=bool(rr.ttl & DO_BIT),
                options=options)


def view(wire: bytes) -> MessageView:
    """Decode `wire` as far as possible; never raises."""
    header = wire[:12].ljust(12, b"\0")
    ident, bitmap = struct.unpack("!HH", header[:4])
    opcode, rcode, flags = bitmap >> 11 & 0xF, bitmap & 0xF, _flags_from_bitmap(bitmap)
    try:
        record = dnslib.DNSRecord.parse(wire)
    except Exception as exc:  # dnslib raises several unrelated types on bad input
        reason = "shorter than a header" if len(wire) < 12 else f"{type(exc).__name__}: {exc}"
        # Keep the question when only later records are bad (testbound reads a malformed
        # RDATA as opaque octets, so such an entry still matches by question).
        return MessageView(wire=wire, id=ident, opcode=opcode, rcode=rcode, flags=flags,
                           question=_questions_only(wire), error=reason)
    opts = [rr for rr in record.ar if rr.rtype == OPT]
    edns = _edns_of(opts[0]) if opts else None
    if opts:
        rcode |= (opts[0].ttl >> 24 & 0xFF) << 4
    return MessageView(
        wire=wire, id=ident, opcode=opcode, rcode=rcode, flags=flags,
        question=tuple(record.questions), answer=tuple(record.rr), authority=tuple(record.auth),
        additional=tuple(rr for rr in record.ar if rr.rtype != OPT), edns=edns, record=record,
    )


def _questions_only(wire: bytes) -> tuple[dnslib.DNSQuestion, ...]:
    try:
        buffer = dnslib.DNSBuffer(wire)
        header = dnslib.DNSHeader.parse(buffer)
        return tuple(dnslib.DNSQuestion.parse(buffer) for _ in range(header.q))
    except Exception:  # the question itself is broken: nothing to keep
        return ()


def make_opt(*, payload: int, do: bool, version: int = 0, ext_rcode: int = 0,
             options: tuple[tuple[int, bytes], ...] = ()) -> dnslib.RR:
    """An OPT pseudo-RR (RFC 6891 §6.1.2); dnslib packs `rdata` as a list of options."""
    ttl = ext_rcode << 24 | version << 16 | (DO_BIT if do else 0)
    return dnslib.RR(rname=".", rtype=OPT, rclass=payload, ttl=ttl,
                     rdata=[dnslib.EDNSOption(code, data) for code, data in options])


def _options(rdata: bytes) -> tuple[tuple[int, bytes], ...]:
    """OPT RDATA bytes -> (code, data) pairs (RFC 6891 §6.1.2)."""
    options, at = [], 0
    while at + 4 <= len(rdata):
        code, length = struct.unpack("!HH", rdata[at : at + 4])
        options.append((code, rdata[at + 4 : at + 4 + length]))
        at += 4 + length
    return tuple(options)


def build_record(entry: Entry, dialect: Dialect) -> dnslib.DNSRecord:
    """The entry's message template: ID 0, listed flags, EDNS per dialect (README §3.4)."""
    bitmap = entry.opcode << 11 | (entry.rcode & 0xF)
    for flag in entry.flags:
        bitmap |= 1 << _FLAG_BITS[flag]
    record = dnslib.DNSRecord(
        dnslib.DNSHeader(id=0, bitmap=bitmap), questions=list(entry.question),
        rr=list(entry.answer), auth=list(entry.authority), ar=list(entry.additional),
    )
    # Deckard puts OPT on every message; testbound only with DO or explicit EDNS data.
    if dialect is Dialect.DECKARD or entry.do or entry.edns_data is not None:
        record.ar.append(make_opt(
            payload=PAYLOAD[dialect], do=entry.do, ext_rcode=entry.rcode >> 4,
            options=_options(entry.edns_data or b""),
        ))
    return record


def entry_wire(entry: Entry, dialect: Dialect) -> bytes:
    """Wire form of the entry: its RAW/HEX bytes when given, else the packed template."""
    if entry.raw is not None:
        return entry.raw
    if entry.hex_answer is not None:
        return entry.hex_answer
    return bytes(build_record(entry, dialect).pack())


def entry_view(entry: Entry, dialect: Dialect) -> MessageView:
    """The entry as the harness compares it (what a CHECK_ANSWER or RANGE entry expects)."""
    return view(entry_wire(entry, dialect))


def servfail_for(query: MessageView) -> bytes:
    """Deckard's reply to an unscripted query: SERVFAIL, QR, RD and question copied (§3.6.1)."""
    bitmap = 1 << 15 | (1 << 8 if "RD" in query.flags else 0) | 2
    record = dnslib.DNSRecord(dnslib.DNSHeader(id=query.id, bitmap=bitmap),
                              questions=list(query.question))
    return bytes(record.pack())


def summarize(message: MessageView) -> str:
    """One line for logs: `qname QTYPE flags [DO] [edns]` or the rcode for replies."""
    if message.error is not None and not message.question:
        return f"<undecodable: {message.error}>"
    question = (f"{message.qname} {dnslib.QTYPE.get(message.qtype)}"
                if message.question else "<no question>")
    parts = [question, f"[{flags_text(message.flags)}]"]
    if "QR" in message.flags:
        parts.append(rcode_text(message.rcode))
    if message.edns is None:
        parts.append("noedns")
    else:
        parts.append(f"edns{message.edns.version}/{message.edns.payload}"
                     + (" DO" if message.edns.do else ""))
    return " ".join(parts)
