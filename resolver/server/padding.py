"""EDNS(0) padding of replies on encrypted transports (RFC 7830, RFC 8467).

A reply is padded only when its query carried the Padding option (RFC 7830 §3: a responder
must pad then, and may not pad for a query without EDNS), and only on encrypted transports:
padding in clear text hides nothing. Replies are padded to a multiple of 468 octets, the
block length RFC 8467 §4.1 recommends for responses. The option is appended to the reply's
OPT record, which must be its last record: then no compression pointer moves.
"""

from __future__ import annotations

from resolver.dns.header import MAX_MESSAGE_OCTETS
from resolver.dns.scanner import MalformedMessage, scan_message

#: EDNS option code of Padding (RFC 7830 §4).
PADDING_OPTION = 12
#: RFC 8467 §4.1: responses padded to a multiple of 468 octets.
RESPONSE_BLOCK_OCTETS = 468
_OPT_FIXED = 11  # owner (root), TYPE, CLASS, TTL, RDLENGTH


def query_asks_padding(query: bytes) -> bool:
    """Whether the query's OPT record holds a Padding option."""
    try:
        scanned = scan_message(query)
    except MalformedMessage:
        return False
    return scanned.edns is not None and any(
        code == PADDING_OPTION for code, _ in scanned.edns.options)


def padded(reply: bytes, block: int = RESPONSE_BLOCK_OCTETS) -> bytes:
    """`reply` with a Padding option making its length a multiple of `block`; unchanged when
    it has no OPT record, its OPT is not the last record, or padding would pass 65535."""
    try:
        scanned = scan_message(reply)
    except MalformedMessage:
        return reply
    start = scanned.opt_offset
    if start is None:
        return reply
    rdlength = int.from_bytes(reply[start + 9 : start + 11], "big")
    if start + _OPT_FIXED + rdlength != len(reply):
        return reply
    fill = -(len(reply) + 4) % block
    if len(reply) + 4 + fill > MAX_MESSAGE_OCTETS:
        return reply
    option = PADDING_OPTION.to_bytes(2, "big") + fill.to_bytes(2, "big") + bytes(fill)
    return (reply[: start + 9] + (rdlength + 4 + fill).to_bytes(2, "big")
            + reply[start + _OPT_FIXED :] + option)
