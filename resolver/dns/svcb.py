"""SVCB RDATA (RFC 9460) as wire octets, and back.

Wire format (RFC 9460 §2.2): SvcPriority (16 bits), TargetName (uncompressed, RFC 9460 §2.2
"MUST NOT be compressed"), then SvcParams, each SvcParamKey (16 bits), the length of its
value (16 bits) and the value. Keys appear in strictly increasing order, each once
(RFC 9460 §2.2). The values written here: `alpn` (§7.1.1: length-prefixed protocol ids),
`port` (§7.2: 16 bits) and `dohpath` (RFC 9461 §5: a URI template in UTF-8, relative,
with a `dns` variable).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from resolver.dns.rdata_wire import (
    NameFault,
    UncompressedNameError,
    name_wire,
    read_uncompressed_labels,
)

#: The SVCB record type (RFC 9460 §14.1); the HTTPS type (65) shares its RDATA format.
SVCB_TYPE = 64


class SvcParamKey(enum.IntEnum):
    """SvcParamKeys (RFC 9460 §14.3.2; dohpath: RFC 9461 §5)."""

    MANDATORY = 0
    ALPN = 1
    NO_DEFAULT_ALPN = 2
    PORT = 3
    IPV4HINT = 4
    ECH = 5
    IPV6HINT = 6
    DOHPATH = 7


class SvcbError(ValueError):
    """RDATA that RFC 9460 does not allow, to write or as read."""


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """One SVCB record's RDATA: `params` maps each key to its value's octets."""

    priority: int
    target: str  #: presentation form; "." is the owner name itself (RFC 9460 §2.5)
    params: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def alpn(self) -> tuple[str, ...]:
        value = self.params.get(SvcParamKey.ALPN)
        return () if value is None else alpn_ids(value)

    @property
    def port(self) -> int | None:
        value = self.params.get(SvcParamKey.PORT)
        return None if value is None else int(struct.unpack("!H", value)[0])

    @property
    def dohpath(self) -> str | None:
        value = self.params.get(SvcParamKey.DOHPATH)
        return None if value is None else value.decode("utf-8")


def alpn_value(protocols: Iterable[str]) -> bytes:
    """The `alpn` value: each id as a length octet and its octets (RFC 9460 §7.1.1)."""
    out = bytearray()
    for protocol in protocols:
        octets = protocol.encode("ascii")
        if not 0 < len(octets) <= 255:
            raise SvcbError(f"ALPN id {protocol!r} must be 1 to 255 octets")
        out.append(len(octets))
        out += octets
    if not out:
        raise SvcbError("alpn needs at least one protocol id")
    return bytes(out)


def alpn_ids(value: bytes) -> tuple[str, ...]:
    """The protocol ids of an `alpn` value; SvcbError if it is not one."""
    ids: list[str] = []
    at = 0
    while at < len(value):
        length = value[at]
        if length == 0 or at + 1 + length > len(value):
            raise SvcbError("alpn value with an empty or cut protocol id")
        ids.append(value[at + 1 : at + 1 + length].decode("latin-1"))
        at += 1 + length
    if not ids:
        raise SvcbError("alpn value with no protocol id")
    return tuple(ids)


def port_value(port: int) -> bytes:
    """The `port` value (RFC 9460 §7.2)."""
    if not 0 <= port <= 0xFFFF:
        raise SvcbError(f"port {port} is out of range")
    return struct.pack("!H", port)


def dohpath_value(template: str) -> bytes:
    """The `dohpath` value (RFC 9461 §5): a relative URI template with a `dns` variable."""
    if not template.startswith("/") or "{?dns}" not in template:
        raise SvcbError(f"dohpath {template!r} must be a path with the {{?dns}} variable")
    return template.encode("utf-8")


def encode_svcb(binding: ServiceBinding) -> bytes:
    """The RDATA of `binding` on the wire, its SvcParams in increasing key order."""
    if not 0 <= binding.priority <= 0xFFFF:
        raise SvcbError(f"SvcPriority {binding.priority} is out of range")
    if binding.priority == 0 and binding.params:  # AliasMode has no SvcParams (§2.4.2)
        raise SvcbError("AliasMode (priority 0) takes no SvcParams")
    out = bytearray(struct.pack("!H", binding.priority))
    try:
        out += name_wire(binding.target)
    except ValueError as exc:
        raise SvcbError(f"target {binding.target!r}: {exc}") from None
    for key in sorted(binding.params):
        value = binding.params[key]
        if not 0 <= key <= 0xFFFF or len(value) > 0xFFFF:
            raise SvcbError(f"SvcParam key{key} does not fit its fields")
        out += struct.pack("!HH", key, len(value))
        out += value
    return bytes(out)


_TARGET_FAULTS = {
    NameFault.RUNS_PAST: "SVCB target runs past the RDATA",
    NameFault.COMPRESSED: "SVCB target is compressed or has a bad label",
    NameFault.LABEL_RUNS_PAST: "SVCB target label runs past the RDATA",
}


def decode_svcb(rdata: bytes) -> ServiceBinding:
    """The RDATA octets as a `ServiceBinding`; SvcbError for any RFC 9460 §2.2 violation:
    a cut field, a compressed target, keys out of order or repeated."""
    if len(rdata) < 3:
        raise SvcbError("SVCB RDATA shorter than its priority and target")
    priority = int(struct.unpack_from("!H", rdata)[0])
    try:
        raw_labels, at = read_uncompressed_labels(rdata, 2)
    except UncompressedNameError as exc:
        raise SvcbError(_TARGET_FAULTS[exc.fault]) from None
    labels = [label.decode("latin-1").replace("\\", "\\\\").replace(".", "\\.")
              for label in raw_labels]
    target = ".".join(labels) + "." if labels else "."
    params: dict[int, bytes] = {}
    last = -1
    while at < len(rdata):
        if at + 4 > len(rdata):
            raise SvcbError("SvcParam header cut short")
        key, length = struct.unpack_from("!HH", rdata, at)
        if key <= last:
            raise SvcbError(f"SvcParam key{key} out of order or repeated")
        if at + 4 + length > len(rdata):
            raise SvcbError(f"SvcParam key{key} value runs past the RDATA")
        params[int(key)] = rdata[at + 4 : at + 4 + length]
        last = key
        at += 4 + length
    return ServiceBinding(priority=priority, target=target, params=params)
