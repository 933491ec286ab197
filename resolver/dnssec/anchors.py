"""Trust anchors: the root's built in, others read from a file of DS or DNSKEY records.

The file format is Unbound's `trust-anchor-file`: DS or DNSKEY records in zone-file
syntax, `;` comments, records continued over lines in parentheses, `$ORIGIN` and `$TTL`.
A file that does not read raises `AnchorFileError` with one line naming the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Record, RRType, parse_record
from resolver.dnssec.keys import Dnskey, Ds
from resolver.dnssec.records import MalformedRdata

__all__ = ["ROOT_ANCHORS", "AnchorFileError", "TrustAnchors", "parse_trust_anchors"]


class AnchorFileError(ValueError):
    """A trust-anchor file that cannot be used; the message names the line."""


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """Configured trust: DS records and DNSKEYs taken as authentic without proof."""

    ds: tuple[Ds, ...] = ()
    dnskeys: tuple[Dnskey, ...] = ()

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(a.owner for a in self.ds) | frozenset(k.owner for k in self.dnskeys)

    def ds_for(self, zone: str) -> tuple[Ds, ...]:
        return tuple(a for a in self.ds if a.owner == zone)

    def dnskeys_for(self, zone: str) -> tuple[Dnskey, ...]:
        return tuple(k for k in self.dnskeys if k.owner == zone)

    def closest_to(self, name: str) -> str | None:
        """The anchored zone nearest above `name` (or at it), if any."""
        anchored = self.zones
        return next((zone for zone in names.ancestors(name) if zone in anchored), None)


def parse_trust_anchors(text: str) -> TrustAnchors:
    """Read a trust-anchor file; AnchorFileError ("line 3: ...") for what does not read."""
    ds: list[Ds] = []
    dnskeys: list[Dnskey] = []
    origin: str | None = None
    ttl = 3600
    for number, entry in _entries(text):
        fields = entry.split()
        directive = fields[0].upper()
        if directive == "$ORIGIN":
            if len(fields) != 2:
                raise AnchorFileError(f"line {number}: $ORIGIN needs one name")
            origin = names.canonical(_absolute(fields[1], origin, number))
            continue
        if directive == "$TTL":
            if len(fields) != 2 or not fields[1].isdigit():
                raise AnchorFileError(f"line {number}: $TTL needs a number of seconds")
            ttl = int(fields[1])
            continue
        if directive.startswith("$"):
            raise AnchorFileError(f"line {number}: unknown directive {fields[0]}")
        fields[0] = _absolute(fields[0], origin, number)
        if not fields[1].isdigit():  # no TTL given: the file's
            fields.insert(1, str(ttl))
        record = _record(" ".join(fields), number)
        try:
            if record.rtype == RRType.DS:
                ds.append(Ds.from_record(record))
            elif record.rtype == RRType.DNSKEY:
                dnskeys.append(Dnskey.from_record(record))
            else:
                raise AnchorFileError(f"line {number}: a trust anchor is a DS or DNSKEY "
                                      "record")
        except MalformedRdata as exc:
            raise AnchorFileError(f"line {number}: {exc}") from None
    if not ds and not dnskeys:
        raise AnchorFileError("line 1: no DS or DNSKEY record in the file")
    return TrustAnchors(tuple(ds), tuple(dnskeys))


def _record(text: str, number: int) -> Record:
    try:
        record = parse_record(text)
    except ValueError:
        raise AnchorFileError(f"line {number}: not a record: {text[:60]}") from None
    if record.rclass != 1:
        raise AnchorFileError(f"line {number}: trust anchors are of class IN")
    return record


def _absolute(owner: str, origin: str | None, number: int) -> str:
    if owner == "@":
        if origin is None:
            raise AnchorFileError(f"line {number}: @ without $ORIGIN")
        return origin
    if owner.endswith("."):
        return owner
    if origin is None:
        raise AnchorFileError(f"line {number}: relative name {owner} without $ORIGIN")
    return owner + "." + origin if origin != names.ROOT else owner + "."


def _entries(text: str) -> list[tuple[int, str]]:
    """Logical entries with the line each starts on: comments cut, parentheses joined."""
    entries: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0]
        if not pending:
            start = number
        depth += line.count("(") - line.count(")")
        if depth < 0:
            raise AnchorFileError(f"line {number}: ')' without '('")
        pending.append(line.replace("(", " ").replace(")", " "))
        if depth == 0:
            joined = " ".join(pending).strip()
            if joined:
                entries.append((start, joined))
            pending = []
    if depth:
        raise AnchorFileError(f"line {start}: '(' is never closed")
    return entries


def _root_anchors() -> TrustAnchors:
    # The root zone KSKs as DS records (SHA-256), from IANA's root-anchors.xml
    # (https://data.iana.org/root-anchors/root-anchors.xml): KSK-2017, in use since
    # 2018, and KSK-2024, published for the rollover.
    return parse_trust_anchors(
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
        ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16\n"
    )


#: The root's trust anchors, built in (RFC 7958 describes IANA's publication).
ROOT_ANCHORS = _root_anchors()
