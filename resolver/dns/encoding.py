"""Encoding DNS messages: queries (`make_query`) and whole messages (`encode`), names
compressed (RFC 1035 §4.1.4) and a reply that does not fit truncated (RFC 1035 §4.2.1).
"""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import dnslib

from resolver.dns import names
from resolver.dns.header import EDNS_DO, MAX_MESSAGE_OCTETS, HeaderFlag
from resolver.dns.names import MAX_LABEL_OCTETS
from resolver.dns.wire import RR_FIXED, Message, Question, RRType


def name_wire(name: str) -> bytes:
    """The uncompressed wire form of a canonical name (escapes undone); ValueError if invalid."""
    out = bytearray()
    for label in names.labels(name):
        raw = _unescape(label)
        if not 0 < len(raw) <= MAX_LABEL_OCTETS:
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
    out += name_wire(question.name) + struct.pack("!HH", question.rtype, question.rclass)
    if edns_udp_size is not None:
        do_bit = EDNS_DO if dnssec_ok else 0
        out += b"\x00" + struct.pack("!HHIH", RRType.OPT, edns_udp_size, do_bit, 0)
    return out


def encode(message: Message, *, max_size: int = MAX_MESSAGE_OCTETS) -> bytes:
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
            buffer.append(RR_FIXED.pack(rr.rtype, rr.rclass, max(0, rr.ttl), 0))
            start = buffer.offset
            rr.rdata.pack(buffer)
            buffer.update(start - 2, "!H", buffer.offset - start)
    if message.edns is not None:
        edns = message.edns
        ttl = ((message.rcode >> 4) << 24) | (edns.version << 16) | (EDNS_DO if edns.do else 0)
        options = b"".join(_OPTION_HEAD.pack(code, len(data)) + data
                           for code, data in edns.options)
        buffer.append(b"\x00" + RR_FIXED.pack(RRType.OPT, edns.udp_size, ttl, len(options))
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
    if not all(0 < len(label) <= MAX_LABEL_OCTETS for label in labels) or (
        sum(map(len, labels)) + len(labels) + 1 > 255
    ):
        raise ValueError(f"not a valid domain name: {name!r}")
    return labels
