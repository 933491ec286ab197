"""Presentation-format RR and question lines -> dnslib objects, for scenario files.

Peer-scenarios README §3.4 (RR defaults: TTL 3600, class IN, names relative to $ORIGIN) and
§3.11 (what dnslib 0.9.26 cannot parse by itself). On top of `dnslib.RR.fromZone` this adds:

* DNAME (RFC 6672): same RDATA shape as CNAME, but the target is never compressed when packed
  (RFC 6672 §2.5), so it gets its own `RD` subclass registered in dnslib's type map;
* SVCB (RFC 9460) parsed like HTTPS; `key="value"` SvcParams are unquoted first;
* RFC 3597 generic RDATA (`\\# <len> <hex>`) and `TYPE<n>` / `CLASS<n>` mnemonics (RFC 3597 §5);
* DNSSEC mnemonic algorithm names (RFC 4034 Appendix A.1) in DS/DNSKEY/RRSIG;
* NSEC3 and NSEC3PARAM (RFC 5155 §3.3, §4.3).

Registering the extra types is a process-wide side effect on dnslib; it happens once, on import.
"""

from __future__ import annotations

import base64
import re

import dnslib
from dnslib.dns import RDMAP, decode_type_bitmap, encode_type_bitmap

__all__ = ["RRTextError", "absolute_name", "parse_question", "parse_rr", "split_tokens"]


class RRTextError(ValueError):
    """A record or question line that cannot be turned into wire form."""


class DNAME(dnslib.CNAME):  # type: ignore[misc]
    """DNAME RDATA: one target name, packed without compression (RFC 6672 §2.5)."""

    def pack(self, buffer: dnslib.DNSBuffer) -> None:
        buffer.encode_name_nocompress(self.label)


_BASE32HEX = str.maketrans(
    "0123456789ABCDEFGHIJKLMNOPQRSTUV", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)
_BASE32STD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHIJKLMNOPQRSTUV"
)


def _b32hex_decode(text: str) -> bytes:
    """Base32 with the extended-hex alphabet, no padding (RFC 4648 §7, RFC 5155 §3.3)."""
    plain = text.upper().translate(_BASE32HEX)
    return base64.b32decode(plain + "=" * (-len(plain) % 8))


def _b32hex_encode(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").translate(_BASE32STD).lower()


def _salt(text: str) -> bytes:
    return b"" if text == "-" else bytes.fromhex(text)


class NSEC3PARAM(dnslib.RD):  # type: ignore[misc]
    """NSEC3PARAM RDATA (RFC 5155 §4.2): algorithm, flags, iterations, salt."""

    attrs: tuple[str, ...] = ("hash_alg", "flags", "iterations", "salt")

    def __init__(self, hash_alg: int, flags: int, iterations: int, salt: bytes) -> None:
        self.hash_alg, self.flags, self.iterations, self.salt = hash_alg, flags, iterations, salt

    @classmethod
    def parse(cls, buffer: dnslib.DNSBuffer, length: int) -> NSEC3PARAM:
        alg, flags, iterations, salt_len = buffer.unpack("!BBHB")
        return cls(alg, flags, iterations, bytes(buffer.get(salt_len)))

    @classmethod
    def fromZone(cls, rd: list[str], origin: object = None) -> NSEC3PARAM:
        return cls(int(rd[0]), int(rd[1]), int(rd[2]), _salt(rd[3]))

    def pack(self, buffer: dnslib.DNSBuffer) -> None:
        buffer.pack("!BBHB", self.hash_alg, self.flags, self.iterations, len(self.salt))
        buffer.append(self.salt)

    def __repr__(self) -> str:
        salt = self.salt.hex().upper() or "-"
        return f"{self.hash_alg} {self.flags} {self.iterations} {salt}"


class NSEC3(NSEC3PARAM):
    """NSEC3 RDATA (RFC 5155 §3.2): parameters, next hashed owner, type bit map."""

    attrs: tuple[str, ...] = ("hash_alg", "flags", "iterations", "salt", "next_hash", "rrlist")

    def __init__(
        self, hash_alg: int, flags: int, iterations: int, salt: bytes, next_hash: bytes,
        rrlist: list[str],
    ) -> None:
        super().__init__(hash_alg, flags, iterations, salt)
        self.next_hash, self.rrlist = next_hash, rrlist

    @classmethod
    def parse(cls, buffer: dnslib.DNSBuffer, length: int) -> NSEC3:
        end = buffer.offset + length
        alg, flags, iterations, salt_len = buffer.unpack("!BBHB")
        salt = bytes(buffer.get(salt_len))
        (hash_len,) = buffer.unpack("!B")
        next_hash = bytes(buffer.get(hash_len))
        rrlist = decode_type_bitmap(buffer.get(end - buffer.offset))
        return cls(alg, flags, iterations, salt, next_hash, rrlist)

    @classmethod
    def fromZone(cls, rd: list[str], origin: object = None) -> NSEC3:
        return cls(int(rd[0]), int(rd[1]), int(rd[2]), _salt(rd[3]), _b32hex_decode(rd[4]),
                   [t.upper() for t in rd[5:]])

    def pack(self, buffer: dnslib.DNSBuffer) -> None:
        super().pack(buffer)
        buffer.pack("!B", len(self.next_hash))
        buffer.append(self.next_hash)
        if self.rrlist:
            buffer.append(encode_type_bitmap(self.rrlist))

    def __repr__(self) -> str:
        types = " ".join(self.rrlist)
        return f"{super().__repr__()} {_b32hex_encode(self.next_hash)} {types}".rstrip()


class PX(dnslib.RD):  # type: ignore[misc]
    """PX RDATA (RFC 2163 §4): preference, MAP822 and MAPX400 names (no compression)."""

    attrs = ("preference", "map822", "mapx400")

    def __init__(self, preference: int, map822: str, mapx400: str) -> None:
        self.preference = preference
        self.map822, self.mapx400 = dnslib.DNSLabel(map822), dnslib.DNSLabel(mapx400)

    @classmethod
    def parse(cls, buffer: dnslib.DNSBuffer, length: int) -> PX:
        (preference,) = buffer.unpack("!H")
        return cls(preference, buffer.decode_name(), buffer.decode_name())

    @classmethod
    def fromZone(cls, rd: list[str], origin: object = None) -> PX:
        return cls(int(rd[0]), dnslib.dns.label(rd[1], origin), dnslib.dns.label(rd[2], origin))

    def pack(self, buffer: dnslib.DNSBuffer) -> None:
        buffer.pack("!H", self.preference)
        buffer.encode_name_nocompress(self.map822)
        buffer.encode_name_nocompress(self.mapx400)

    def __repr__(self) -> str:
        return f"{self.preference} {self.map822} {self.mapx400}"


def _register_dnslib_extensions() -> None:
    """Teach dnslib the types scenario files use but it cannot read (README §3.11)."""
    RDMAP["DNAME"] = DNAME
    RDMAP.setdefault("SVCB", dnslib.HTTPS)
    RDMAP.setdefault("NSEC3", NSEC3)
    RDMAP.setdefault("NSEC3PARAM", NSEC3PARAM)
    RDMAP.setdefault("PX", PX)
    for code, name in ((39, "DNAME"), (26, "PX")):
        dnslib.QTYPE.forward.setdefault(code, name)
        dnslib.QTYPE.reverse.setdefault(name, code)


_register_dnslib_extensions()

#: RFC 4034 Appendix A.1 (+ RFC 5155, 5702, 6605, 8080) algorithm mnemonics.
_ALGORITHMS = {
    "RSAMD5": 1, "DH": 2, "DSA": 3, "RSASHA1": 5, "DSA-NSEC3-SHA1": 6,
    "RSASHA1-NSEC3-SHA1": 7, "RSASHA256": 8, "RSASHA512": 10, "ECC-GOST": 12,
    "ECDSAP256SHA256": 13, "ECDSAP384SHA384": 14, "ED25519": 15, "ED448": 16,
    "INDIRECT": 252, "PRIVATEDNS": 253, "PRIVATEOID": 254,
}
#: Index of the algorithm field in the RDATA tokens of the types that carry one.
_ALGORITHM_FIELD = {"DS": 1, "CDS": 1, "RRSIG": 1, "DNSKEY": 2, "CDNSKEY": 2}
#: Index of the first base64 token of types whose RDATA ends in a base64 blob.
_BASE64_FROM = {"RRSIG": 8, "DNSKEY": 3, "CDNSKEY": 3}
_CLASSES = {"IN": 1, "CH": 3, "CS": 2, "HS": 4, "NONE": 254, "ANY": 255}
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def split_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens; a double-quoted string (with escapes) is one token."""
    return _TOKEN.findall(text)


def absolute_name(name: str, origin: str) -> str:
    """`name` made absolute against `origin` ('@' is the origin itself)."""
    if name == "@":
        return origin
    if name.endswith(".") and not name.endswith("\\."):
        return name
    return f"{name}." if origin == "." else f"{name}.{origin}"


def _rrtype(token: str) -> int | None:
    upper = token.upper()
    if upper.startswith("TYPE") and upper[4:].isdigit():
        return int(upper[4:])
    code = dnslib.QTYPE.reverse.get(upper)
    return int(code) if code is not None else None


def _rrclass(token: str) -> int | None:
    upper = token.upper()
    if upper.startswith("CLASS") and upper[5:].isdigit():
        return int(upper[5:])
    return _CLASSES.get(upper)


def parse_question(text: str, *, origin: str = ".") -> dnslib.DNSQuestion:
    """`<name> [class] <type>` (class and type in either order) -> DNSQuestion."""
    tokens = split_tokens(text)
    if len(tokens) < 2:
        raise RRTextError(f"question needs a name and a type: {text!r}")
    qclass, qtype = 1, None
    for token in tokens[1:]:
        if (code := _rrclass(token)) is not None and token.upper() not in ("ANY",):
            qclass = code
        elif (code := _rrtype(token)) is not None:
            qtype = code
        else:
            raise RRTextError(f"unknown class or type {token!r} in question {text!r}")
    if qtype is None:
        raise RRTextError(f"question without a type: {text!r}")
    return dnslib.DNSQuestion(absolute_name(tokens[0], origin), qtype, qclass)


def parse_rr(text: str, *, origin: str = ".", default_ttl: int = 3600) -> dnslib.RR:
    """`<owner> [ttl] [class] <type> <rdata>` -> RR (RFC 1035 §5.1 with RFC 3597 additions)."""
    tokens = split_tokens(text)
    if len(tokens) < 2:
        raise RRTextError(f"record needs at least an owner and a type: {text!r}")
    owner = absolute_name(tokens[0], origin)
    ttl, rclass, index = default_ttl, 1, 1
    while index < len(tokens) - 1:  # TTL and class may come in either order
        token = tokens[index]
        if token.isdigit():
            ttl = int(token)
        elif (code := _rrclass(token)) is not None:
            rclass = code
        else:
            break
        index += 1
    rtype = _rrtype(tokens[index])
    if rtype is None:
        raise RRTextError(f"unknown record type {tokens[index]!r} in {text!r}")
    # Parentheses only group lines in zone files; scenario records keep them on one line.
    rdata = [t.strip("()") for t in tokens[index + 1 :] if t.strip("()")]
    try:
        rd = _rdata(dnslib.QTYPE.get(rtype), rdata, origin)
        return dnslib.RR(rname=owner, rtype=rtype, rclass=rclass, ttl=ttl, rdata=rd)
    except RRTextError:
        raise
    except Exception as exc:  # dnslib raises a zoo of types for bad rdata
        raise RRTextError(f"cannot parse {text!r}: {exc!r}") from exc


def _character_string(token: str) -> bytes:
    """A <character-string> token without quotes, `\\X` / `\\DDD` decoded (RFC 1035 §5.1)."""
    if len(token) >= 2 and token[0] == token[-1] == '"':
        token = token[1:-1]
    out, i = bytearray(), 0
    raw = token.encode()
    while i < len(raw):
        if raw[i] == 0x5C and len(raw[i + 1 : i + 4]) == 3 and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4]))
            i += 4
        elif raw[i] == 0x5C and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _rdata(type_name: str, rdata: list[str], origin: str) -> dnslib.RD:
    if rdata and rdata[0] == "\\#":  # RFC 3597 §5 generic encoding
        if len(rdata) < 2 or not rdata[1].isdigit():
            raise RRTextError(f"bad generic rdata {' '.join(rdata)!r}")
        data = bytes.fromhex("".join(rdata[2:]))
        if len(data) != int(rdata[1]):
            raise RRTextError(f"generic rdata length {rdata[1]} != {len(data)} octets")
        return dnslib.RD(data)
    rd_class = RDMAP.get(type_name)
    if rd_class is None:
        raise RRTextError(f"no text parser for type {type_name} (use RFC 3597 \\# form)")
    fields = list(rdata)
    if (at := _ALGORITHM_FIELD.get(type_name)) is not None and len(fields) > at:
        fields[at] = str(_ALGORITHMS.get(fields[at].upper(), fields[at]))
    if (at := _BASE64_FROM.get(type_name)) is not None and len(fields) > at:
        blob = "".join(fields[at:])  # sldns also accepts unpadded base64
        fields = [*fields[:at], blob + "=" * (-len(blob) % 4)]
    if rd_class is dnslib.HTTPS:  # key="v,w" -> key=v,w (dnslib's lexer keeps the quotes)
        fields = [re.sub(r'^([\w-]+)="(.*)"$', r"\1=\2", f) for f in fields]
    elif type_name in ("TXT", "SPF"):
        return dnslib.TXT([_character_string(f) for f in fields])
    label_origin = "" if origin == "." else origin
    return rd_class.fromZone(fields, dnslib.DNSLabel(label_origin))
