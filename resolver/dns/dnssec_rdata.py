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


class _HashParameters(dnslib.RD):  # type: ignore[misc]  # dnslib has no type hints
    """The fields NSEC3 and NSEC3PARAM RDATA both begin with (RFC 5155 §3.2, §4.2): hash
    algorithm, flags, iterations and salt, read, written and presented the same way."""

    def __init__(self, algorithm: int, flags: int, iterations: int, salt: bytes) -> None:
        self.algorithm = algorithm
        self.flags = flags
        self.iterations = iterations
        self.salt = salt

    @staticmethod
    def _read_parameters(buffer: Any) -> tuple[int, int, int, bytes]:
        """The four leading fields at `buffer`'s offset; dnslib's BufferError when cut short."""
        algorithm, flags, iterations, salt_length = buffer.unpack("!BBHB")
        return algorithm, flags, iterations, bytes(buffer.get(salt_length))

    @staticmethod
    def _parameters_from_zone(rd: list[str]) -> tuple[int, int, int, bytes]:
        """The four leading fields from presentation form; the salt "-" is empty (§3.3)."""
        salt = b"" if rd[3] == "-" else bytes.fromhex(rd[3])
        return int(rd[0]), int(rd[1]), int(rd[2]), salt

    def _packed_parameters(self) -> bytes:
        return _NSEC3_FIXED.pack(self.algorithm, self.flags, self.iterations,
                                 len(self.salt)) + self.salt

    def _parameters_text(self) -> list[str]:
        salt = self.salt.hex() if self.salt else "-"
        return [str(self.algorithm), str(self.flags), str(self.iterations), salt]


class Nsec3Rdata(_HashParameters):
    """NSEC3 RDATA: hash algorithm, flags, iterations, salt, next hashed owner, types."""

    attrs = ("algorithm", "flags", "iterations", "salt", "next_hashed", "bitmap")

    def __init__(self, algorithm: int, flags: int, iterations: int, salt: bytes,
                 next_hashed: bytes, bitmap: bytes) -> None:
        super().__init__(algorithm, flags, iterations, salt)
        self.next_hashed = next_hashed
        self.bitmap = bitmap

    @classmethod
    def parse(cls, buffer: Any, length: int) -> Nsec3Rdata:
        end = buffer.offset + length
        try:
            algorithm, flags, iterations, salt = cls._read_parameters(buffer)
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
        next_hashed = base64.b32hexdecode(rd[4].upper())
        bitmap = type_bitmap([_type_number(t) for t in rd[5:]])
        return cls(*cls._parameters_from_zone(rd), next_hashed, bitmap)

    def pack(self, buffer: Any) -> None:
        buffer.append(self._packed_parameters() + bytes((len(self.next_hashed),))
                      + self.next_hashed + self.bitmap)

    def __repr__(self) -> str:
        next_text = base64.b32hexencode(self.next_hashed).decode("ascii").lower()
        fields = [*self._parameters_text(), next_text]
        fields += [_type_text(t) for t in types_in_bitmap(self.bitmap)]
        return " ".join(fields)


class Nsec3ParamRdata(_HashParameters):
    """NSEC3PARAM RDATA: hash algorithm, flags, iterations, salt (RFC 5155 §4.2)."""

    attrs = ("algorithm", "flags", "iterations", "salt")

    @classmethod
    def parse(cls, buffer: Any, length: int) -> Nsec3ParamRdata:
        try:
            algorithm, flags, iterations, salt = cls._read_parameters(buffer)
        except dnslib.buffer.BufferError as exc:
            raise dnslib.DNSError(f"Error unpacking NSEC3PARAM: {exc}") from None
        if 5 + len(salt) != length:
            raise dnslib.DNSError("NSEC3PARAM length does not match its salt")
        return cls(algorithm, flags, iterations, salt)

    @classmethod
    def fromZone(cls, rd: list[str], origin: Any = None) -> Nsec3ParamRdata:
        return cls(*cls._parameters_from_zone(rd))

    def pack(self, buffer: Any) -> None:
        buffer.append(self._packed_parameters())

    def __repr__(self) -> str:
        return " ".join(self._parameters_text())


def register() -> None:
    """Make dnslib read NSEC3 and NSEC3PARAM with these classes (idempotent)."""
    dnslib.dns.RDMAP.setdefault("NSEC3", Nsec3Rdata)
    dnslib.dns.RDMAP.setdefault("NSEC3PARAM", Nsec3ParamRdata)
