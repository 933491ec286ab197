"""The one error the wire layer raises for octets that are not a DNS message.

Every reader of untrusted octets (the scanner, the name reader, the decoder) raises only this,
with a fixed phrase as its reason, so that callers answer FORMERR or count the server as
broken without parsing text, and nothing else escapes (docs/reliability.md, the decoder's
contract).
"""

from __future__ import annotations

__all__ = ["MalformedMessage"]


class MalformedMessage(ValueError):
    """The octets are not a well-formed DNS message; answer FORMERR or discard.

    `reason` is a short fixed phrase (safe to log or count). `opt_seen` tells whether an OPT
    record had been recognised before the fault, because a FORMERR caused by a bad OPT still
    carries an OPT (RFC 6891 §7).
    """

    def __init__(self, reason: str, *, opt_seen: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.opt_seen = opt_seen
