"""What is wrong with one line of zone-file text, said in words a user can act on.

The codec (`resolver.dns.wire.parse_records`) reads whole texts and fails with the
library's own message; this module looks at a single line the way RFC 1035 §5.1 lays it
out (`[NAME] [TTL] [CLASS] TYPE RDATA`) and names the culprit: a missing or unknown type,
an address that is not one, a record without data. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from resolver.dns.wire import RRType, parse_records, type_from_text

#: RFC 1035 §3.2.4 classes as zone files write them.
_CLASSES = frozenset({"IN", "CH", "CS", "HS"})
#: Types whose RDATA is exactly one domain name.
_NAME_TYPES = frozenset({RRType.NS, RRType.CNAME, RRType.PTR, RRType.DNAME})


@dataclass(frozen=True, slots=True, kw_only=True)
class LineProblem:
    """One line that is not a record: its number (from 1), its text, and why."""

    number: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}: {self.text.strip()!r}"


def record_problem(line: str) -> str | None:
    """Why `line` is not one resource record, or None when it reads as one."""
    body = line.split(";", 1)[0]
    tokens = body.split()
    if not tokens:
        return None
    if not line[:1].isspace():
        tokens = tokens[1:]  # the owner name; a line starting with blanks reuses the last one
    while tokens and (tokens[0].isdigit() or tokens[0].upper() in _CLASSES):
        tokens = tokens[1:]
    if not tokens:
        return "no record type (expected NAME [TTL] [IN] TYPE DATA)"
    try:
        rtype = type_from_text(tokens[0])
    except ValueError:
        return (f"{tokens[0]!r} is not a record type (expected NAME [TTL] [IN] TYPE DATA)")
    data = tokens[1:]
    type_text = tokens[0].upper()
    if not data:
        return f"the {type_text} record has no data"
    if rtype == RRType.A:
        return _address_problem(data, ipaddress.IPv4Address, "an IPv4 address", type_text)
    if rtype == RRType.AAAA:
        return _address_problem(data, ipaddress.IPv6Address, "an IPv6 address", type_text)
    if rtype in _NAME_TYPES and len(data) != 1:
        return f"a {type_text} record holds one name, not {len(data)} words"
    try:
        parse_records(f"$TTL 3600\ncheck.invalid. IN {type_text} {' '.join(data)}")
    except ValueError:
        return f"the {type_text} data {' '.join(data)!r} cannot be read"
    return None


def _address_problem(
    data: list[str], kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], what: str,
    type_text: str,
) -> str | None:
    if len(data) != 1:
        return f"an {type_text} record holds one address, not {len(data)} words"
    try:
        kind(data[0])
    except ValueError:
        return f"{data[0]!r} is not {what} (the data of an {type_text} record)"
    return None


def first_problem(text: str) -> LineProblem | None:
    """The first line of a zone-file text that is not a record (comments and $ lines
    skipped), or None."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("$"):
            continue
        reason = record_problem(line)
        if reason is not None:
            return LineProblem(number=number, text=line, reason=reason)
    return None
