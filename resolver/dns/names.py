"""Domain-name arithmetic on presentation-form names.

Rules: every name that crosses a module boundary is canonical — lower case (RFC 4343:
DNS names compare case-insensitively), absolute, with a trailing dot; the root is ".".
Nothing here knows about the wire format.
"""

from __future__ import annotations

ROOT = "."


def canonical(name: str) -> str:
    """Lower-case, absolute form of `name` ("WWW.Example.com" -> "www.example.com.")."""
    name = name.strip().lower()
    if name in ("", "."):
        return ROOT
    return name if name.endswith(".") else name + "."


def labels(name: str) -> list[str]:
    """Labels of a canonical name, leftmost first; the root has none."""
    if name == ROOT:
        return []
    return name[:-1].split(".")


def label_count(name: str) -> int:
    return len(labels(name))


def is_subdomain(name: str, zone: str) -> bool:
    """True when `name` is `zone` or below it (both canonical)."""
    if zone == ROOT:
        return True
    return name == zone or name.endswith("." + zone)


def parent(name: str) -> str:
    """The name one label up; the root's parent is the root."""
    if name == ROOT:
        return ROOT
    _, _, rest = name.partition(".")
    return rest or ROOT


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
    if origin != ROOT and name.endswith("." + origin):
        return name[: -len(origin) - 1]
    return name
