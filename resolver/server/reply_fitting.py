"""How a reply fits the query that asked it: the reply's OPT record and extended error
(RFC 6891 §7, RFC 8914), the largest reply the client takes (RFC 6891 §6.2.5), the question
name in the client's own letter case (for 0x20 clients), and which variant of a shared-cache
reply the query needs (DO, CD, AD, EDNS).

Pure functions of the scanned query and the outcome: the handler calls them, nothing here
holds state.
"""

from __future__ import annotations

from resolver.dns.decoding import decode
from resolver.dns.extended_errors import ExtendedError, ede_option
from resolver.dns.header import CLASSIC_UDP_REPLY, MAX_MESSAGE_OCTETS, HeaderFlag
from resolver.dns.scanner import MalformedMessage, ScannedMessage
from resolver.dns.wire import Edns, Rcode
from resolver.engine.events import Outcome
from resolver.engine.network import Transport
from resolver.server.client import Client
from resolver.service.cachedb import ReplyVariant

__all__ = ["max_reply_size", "reply_edns", "reply_variant", "stale_outcome", "with_client_case"]


def reply_edns(query: ScannedMessage, outcome: Outcome, max_udp_reply: int) -> Edns | None:
    """The reply's OPT record, for a query that had one (RFC 6891 §7), with the extended
    error that explains a failure, a refusal or a stale answer (RFC 8914)."""
    if query.edns is None:
        return None
    options: tuple[tuple[int, bytes], ...] = ()
    ede = outcome.ede_code if outcome.rcode == Rcode.SERVFAIL else None
    if ede is not None:
        options = (ede_option(ede, outcome.reason),)
    elif outcome.rcode == Rcode.REFUSED:
        # RFC 8914 §4.19: the client may not ask this (REFUSED by policy).
        options = (ede_option(ExtendedError.PROHIBITED),)
    elif outcome.stale:  # RFC 8767 §4 / RFC 8914 §5.2: say the answer is stale
        options = (ede_option(ExtendedError.STALE_ANSWER),)
    # RFC 3225 §3: the DO bit of the query is copied into the reply.
    return Edns(udp_size=max_udp_reply, do=query.edns.do, options=options)


def stale_outcome(reply: bytes) -> Outcome | None:
    """A stale reply from the shared cache as an outcome, so that it goes out as the record
    cache's stale answers do (EDE 3 "Stale Answer", never kept as fresh bytes)."""
    try:
        message = decode(reply)
    except MalformedMessage:
        return None
    return Outcome(rcode=Rcode(message.rcode), answer=message.answer,
                   authority=message.authority, additional=message.additional, stale=True)


def reply_variant(query: ScannedMessage) -> ReplyVariant:
    """The query bits besides the question that change the reply (DO, CD, AD, EDNS)."""
    edns = query.edns
    return ReplyVariant(do=edns is not None and edns.do, cd=bool(query.flags & HeaderFlag.CD),
                        edns=edns is not None, ad=bool(query.flags & HeaderFlag.AD))


def max_reply_size(query: ScannedMessage, client: Client, max_udp_reply: int) -> int:
    if client.transport is Transport.TCP:
        return MAX_MESSAGE_OCTETS
    if query.edns is None:
        return CLASSIC_UDP_REPLY
    # RFC 6891 §6.2.5: sizes below 512 are treated as 512.
    return max(CLASSIC_UDP_REPLY, min(query.edns.udp_size, max_udp_reply))


def with_client_case(data: bytes, query: ScannedMessage) -> bytes:
    """Put the question name back exactly as the client wrote it (0x20 clients check it)."""
    name = query.qname_wire
    if name is None or data[12 : 12 + len(name)].lower() != name.lower():
        return data
    return data[:12] + name + data[12 + len(name) :]
