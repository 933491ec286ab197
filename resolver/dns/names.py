"""Domain-name arithmetic on presentation-form names.

Rules: every name that crosses a module boundary is canonical — lower case (RFC 4343:
DNS names compare case-insensitively), absolute, with a trailing dot; the root is ".".
Nothing here reads or writes the wire format; its size limits (RFC 1035 §2.3.4) live here
because they are rules of names: `within_size_limits` checks them. A label may hold any
octet (RFC 2181 §11): a dot or backslash inside one is written `\\.` or `\\\\`, other octets
may be `\\DDD` (RFC 1035 §5.1), so every split here is on unescaped dots only.
"""

from __future__ import annotations

ROOT = "."
#: RFC 1035 §2.3.4: a name is at most 255 octets on the wire, root label included.
MAX_NAME_OCTETS = 255
#: RFC 1035 §2.3.4: a label is at most 63 octets (the two high bits of its length octet
#: mark a compression pointer, RFC 1035 §4.1.4).
MAX_LABEL_OCTETS = 63


def canonical(name: str) -> str:
    """Lower-case, absolute form of `name` ("WWW.Example.com" -> "www.example.com.")."""
    name = name.strip().lower()
    if name in ("", "."):
        return ROOT
    if name[-1] == "." and name[-2] != "\\":  # the common case, decided without a count
        return name
    return name if is_absolute(name) else name + "."


def is_absolute(name: str) -> bool:
    """True when `name` ends with a dot that ends a label (not an escaped `\\.`)."""
    if not name.endswith("."):
        return False
    backslashes = len(name) - 1 - len(name[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _split(body: str) -> list[str]:
    """`body` split at its unescaped dots, escapes kept in the labels."""
    if "\\" not in body:
        return body.split(".")
    out: list[str] = []
    start = i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2  # the escaped character (or the first digit of \DDD) is never a separator
            continue
        if ch == ".":
            out.append(body[start:i])
            start = i + 1
        i += 1
    out.append(body[start:])
    return out


def labels(name: str) -> list[str]:
    """Labels of a canonical name, leftmost first; the root has none."""
    if name == ROOT:
        return []
    return _split(name[:-1])


def within_size_limits(name: str) -> bool:
    """True if the canonical `name` has labels of 1 to 63 octets and is at most 255 octets
    on the wire (one octet more than its presentation form, RFC 1035 §2.3.4)."""
    return len(name) < MAX_NAME_OCTETS and all(
        0 < len(label) <= MAX_LABEL_OCTETS for label in labels(name))


def label_count(name: str) -> int:
    return len(labels(name))


def is_subdomain(name: str, zone: str) -> bool:
    """True when `name` is `zone` or below it (both canonical)."""
    if zone == ROOT:
        return True
    if name == zone:
        return True
    if not name.endswith("." + zone):
        return False
    if "\\" not in name:
        return True
    # The dot before `zone` must end a label: "a\\.example." is not below "example.".
    zone_labels = labels(zone)
    return labels(name)[-len(zone_labels):] == zone_labels


def parent(name: str) -> str:
    """The name one label up; the root's parent is the root."""
    if name == ROOT:
        return ROOT
    if "\\" not in name:
        _, _, rest = name.partition(".")
        return rest or ROOT
    rest_labels = labels(name)[1:]
    return ".".join(rest_labels) + "." if rest_labels else ROOT


def ancestors(name: str) -> list[str]:
    """`name` and every name above it, nearest first, ending with the root."""
    chain = [name]
    while name != ROOT:
        name = parent(name)
        chain.append(name)
    return chain


def relativize(name: str, origin: str) -> str:
    """`name` written relative to `origin` when below it (for compact display)."""
    if name == origin:
        return "@"
    if origin != ROOT and is_subdomain(name, origin):
        return name[: -len(origin) - 1]
    return name


def wildcard_at(encloser: str) -> str:
    """The wildcard name directly below `encloser` (RFC 4592 §2.1.1): `*.` at the root."""
    return "*." if encloser == "." else "*." + encloser
