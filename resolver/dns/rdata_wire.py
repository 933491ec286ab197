"""RDATA and names as uncompressed wire octets, for code that hashes or signs them.

DNSSEC signs the wire form of records (RFC 4034 §3.1.8.1, §5.1.4), never compressed
(RFC 4034 §6.2 item 2, RFC 3597 §7), so this module writes a `Record`'s RDATA with every
embedded name spelled out in full, and a presentation-form name as its wire labels.
Letter case is left as the record has it: which names to lower-case is DNSSEC's rule,
not the codec's.
"""

from __future__ import annotations

import enum
from typing import Any

import dnslib

from resolver.dns import names
from resolver.dns.names import MAX_LABEL_OCTETS
from resolver.dns.wire import Record

__all__ = [
    "NameFault", "UncompressedNameError", "name_labels", "name_wire", "rdata_wire",
    "read_uncompressed_labels",
]


class _UncompressedBuffer(dnslib.DNSBuffer):  # type: ignore[misc]  # dnslib has no hints
    """A dnslib buffer whose RDATA writers can never emit a compression pointer."""

    def encode_name(self, name: Any) -> None:
        self.encode_name_nocompress(name)


def rdata_wire(record: Record) -> bytes:
    """The RDATA of `record` as wire octets, names uncompressed; ValueError if unwritable."""
    buffer = _UncompressedBuffer()
    try:
        record.rdata.pack(buffer)
    except Exception as exc:  # dnslib raises several types for RDATA it cannot write
        raise ValueError(f"cannot write RDATA of {record.name}: {exc}") from None
    return bytes(buffer.data)


def name_labels(name: str) -> tuple[bytes, ...]:
    """The labels of a presentation-form name as octets, escapes (\\. \\DDD) undone.

    Unlike `names.labels`, an escaped dot stays inside its label. ValueError for a name
    that is not valid (an empty or over-long label, a name over 255 octets).
    """
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    text = name
    if text in ("", "."):
        return ()
    if "\\" not in text:  # no escapes: the common case, split without a character loop
        body = text[:-1] if text.endswith(".") else text
        plain = tuple(label.encode("latin-1") for label in body.split("."))
        if not all(0 < len(label) <= MAX_LABEL_OCTETS for label in plain) or (
                sum(len(label) + 1 for label in plain) + 1 > 255):
            raise ValueError(f"bad name {name!r}")
        return plain
    if not names.is_absolute(text):
        text += "."
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            digits = text[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit() and int(digits) <= 255:
                current.append(int(digits))
                i += 4
                continue
            if i + 1 >= len(text):
                raise ValueError(f"dangling escape in {name!r}")
            current += text[i + 1].encode("latin-1")
            i += 2
            continue
        if ch == ".":
            if not 0 < len(current) <= MAX_LABEL_OCTETS:
                raise ValueError(f"bad label in {name!r}")
            labels.append(bytes(current))
            current = bytearray()
        else:
            current += ch.encode("latin-1")
        i += 1
    if current:
        raise ValueError(f"bad name {name!r}")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ValueError(f"name too long: {name!r}")
    return tuple(labels)


class NameFault(enum.Enum):
    """Why the octets at an offset are not one uncompressed wire name."""

    RUNS_PAST = "the name runs past the data"
    COMPRESSED = "a compression pointer or a reserved label type"
    LABEL_RUNS_PAST = "a label runs past the data"


class UncompressedNameError(ValueError):
    """The octets are not one uncompressed name; `fault` says why, for the caller's message."""

    def __init__(self, fault: NameFault) -> None:
        super().__init__(fault.value)
        self.fault = fault


def read_uncompressed_labels(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the wire name at `pos` and the offset after it; UncompressedNameError
    if it is cut short or holds a pointer, which names in DNSSEC RDATA (RFC 4034 §6.2) and
    an SVCB target (RFC 9460 §2.2) may not. The 255-octet limit is the caller's to check."""
    labels: list[bytes] = []
    while True:
        if pos >= len(data):
            raise UncompressedNameError(NameFault.RUNS_PAST)
        length = data[pos]
        if length == 0:
            return labels, pos + 1
        if length > MAX_LABEL_OCTETS:
            raise UncompressedNameError(NameFault.COMPRESSED)
        if pos + 1 + length > len(data):
            raise UncompressedNameError(NameFault.LABEL_RUNS_PAST)
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


def name_wire(name: str) -> bytes:
    """`name` as uncompressed wire octets (RFC 1035 §3.1); ValueError if not valid."""
    out = bytearray()
    for label in name_labels(name):
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out)
