"""NSEC3 and NSEC3PARAM RDATA (RFC 5155 §3.2, §4.2) for the codec, which dnslib lacks.

dnslib reads these types only as opaque octets from the wire and cannot read them from
zone-file text at all; registering these classes with dnslib (done once, by `wire` at
import) lets signed zones be read and NSEC3 records print in presentation form. The type
bitmap is written here too (RFC 4034 §4.1.2), since dnslib's own writer fails on an
empty list, which an NSEC3 of an empty non-terminal has.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import dnslib
import dnslib.buffer
import dnslib.dns

__all__ = ["Nsec3ParamRdata", "Nsec3Rdata", "register", "type_bitmap", "types_in_bitmap"]

_NSEC3_FIXED = struct.Struct("!BBHB")


def type_bitmap(types: list[int]) -> bytes:
    """The windowed type bitmap of RFC 4034 §4.1.2 for `types` (may be empty)."""
    windows: dict[int, bytearray] = {}
    for rtype in sorted(set(types)):
        window = windows.setdefault(rtype >> 8, bytearray(32))
        window[(rtype & 0xFF) >> 3] |= 0x80 >> (rtype & 7)
    out = bytearray()
    for number in sorted(windows):
        bits = windows[number].rstrip(b"\x00")
        out += bytes((number, len(bits))) + bits
    return bytes(out)


def types_in_bitmap(bitmap: bytes) -> list[int]:
    """Type numbers of a windowed bitmap; ValueError if its framing is broken."""
    types: list[int] = []
    pos = 0
    last_window = -1
    while pos < len(bitmap):
        if pos + 2 > len(bitmap):
            raise ValueError("truncated type bitmap window")
        window, length = bitmap[pos], bitmap[pos + 1]
        if window <= last_window or not 1 <= length <= 32 or pos + 2 + length > len(bitmap):
            raise ValueError("malformed type bitmap window")  # RFC 4034 §4.1.2: ascending
        last_window = window
        for index, octet in enumerate(bitmap[pos + 2 : pos + 2 + length]):
            for bit in range(8):
                if octet & (0x80 >> bit):
                    types.append((window << 8) | (index << 3) | bit)
        pos += 2 + length
    return types


def _type_number(text: str) -> int:
    upper = text.upper()
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return int(upper[4:])
    return int(dnslib.QTYPE.reverse[upper])


def _type_text(rtype: int) -> str:
    name = dnslib.QTYPE.forward.get(rtype)
    return str(name) if name is not None else f"TYPE{rtype}"


class Nsec3Rdata(dnslib.RD):  # type: ignore[misc]  # dnslib has no type hints
    """NSEC3 RDATA: hash algorithm, flags, iterations, salt, next hashed owner, types."""

    attrs = ("algorithm", "flags", "iterations", "salt", "next_hashed", "bitmap")

    def __init__(self, algorithm: int, flags: int, iterations: int, salt: bytes,
                 next_hashed: bytes, bitmap: bytes) -> None:
        self.algorithm = algorithm
        self.flags = flags
        self.iterations = iterations
        self.salt = salt
        self.next_hashed = next_hashed
        self.bitmap = bitmap

    @classmethod
    def parse(cls, buffer: Any, length: int) -> Nsec3Rdata:
        end = buffer.offset + length
        try:
            algorithm, flags, iterations, salt_length = buffer.unpack("!BBHB")
            salt = bytes(buffer.get(salt_length))
            (hash_length,) = buffer.unpack("!B")
            next_hashed = bytes(buffer.get(hash_length))
            if buffer.offset > end:
                raise dnslib.DNSError("NSEC3 fields run past its RDATA")
            bitmap = bytes(buffer.get(end - buffer.offset))
            types_in_bitmap(bitmap)  # reject a broken bitmap here, as a malformed record
        except (dnslib.buffer.BufferError, ValueError) as exc:
            raise dnslib.DNSError(f"Error unpacking NSEC3: {exc}") from None
        return cls(algorithm, flags, iterations, salt, next_hashed, bitmap)

    @classmethod
    def fromZone(cls, rd: list[str], origin: Any = None) -> Nsec3Rdata:
        salt = b"" if rd[3] == "-" else bytes.fromhex(rd[3])
        next_hashed = base64.b32hexdecode(rd[4].upper())
        bitmap = type_bitmap([_type_number(t) for t in rd[5:]])
        return cls(int(rd[0]), int(rd[1]), int(rd[2]), salt, next_hashed, bitmap)

    def pack(self, buffer: Any) -> None:
        buffer.append(_NSEC3_FIXED.pack(self.algorithm, self.flags, self.iterations,
                                        len(self.salt)) + self.salt
                      + bytes((len(self.next_hashed),)) + self.next_hashed + self.bitmap)

    def __repr__(self) -> str:
        salt = self.salt.hex() if self.salt else "-"
        next_text = base64.b32hexencode(self.next_hashed).decode("ascii").lower()
        fields = [str(self.algorithm), str(self.flags), str(self.iterations), salt, next_text]
        fields += [_type_text(t) for t in types_in_bitmap(self.bitmap)]
        return " ".join(fields)


class Nsec3ParamRdata(dnslib.RD):  # type: ignore[misc]  # dnslib has no type hints
    """NSEC3PARAM RDATA: hash algorithm, flags, iterations, salt (RFC 5155 §4.2)."""

    attrs = ("algorithm", "flags", "iterations", "salt")

    def __init__(self, algorithm: int, flags: int, iterations: int, salt: bytes) -> None:
        self.algorithm = algorithm
        self.flags = flags
        self.iterations = iterations
        self.salt = salt

    @classmethod
    def parse(cls, buffer: Any, length: int) -> Nsec3ParamRdata:
        try:
            algorithm, flags, iterations, salt_length = buffer.unpack("!BBHB")
            salt = bytes(buffer.get(salt_length))
        except dnslib.buffer.BufferError as exc:
            raise dnslib.DNSError(f"Error unpacking NSEC3PARAM: {exc}") from None
        if 5 + salt_length != length:
            raise dnslib.DNSError("NSEC3PARAM length does not match its salt")
        return cls(algorithm, flags, iterations, salt)

    @classmethod
    def fromZone(cls, rd: list[str], origin: Any = None) -> Nsec3ParamRdata:
        salt = b"" if rd[3] == "-" else bytes.fromhex(rd[3])
        return cls(int(rd[0]), int(rd[1]), int(rd[2]), salt)

    def pack(self, buffer: Any) -> None:
        buffer.append(_NSEC3_FIXED.pack(self.algorithm, self.flags, self.iterations,
                                        len(self.salt)) + self.salt)

    def __repr__(self) -> str:
        salt = self.salt.hex() if self.salt else "-"
        return f"{self.algorithm} {self.flags} {self.iterations} {salt}"


def register() -> None:
    """Make dnslib read NSEC3 and NSEC3PARAM with these classes (idempotent)."""
    dnslib.dns.RDMAP.setdefault("NSEC3", Nsec3Rdata)
    dnslib.dns.RDMAP.setdefault("NSEC3PARAM", Nsec3ParamRdata)
