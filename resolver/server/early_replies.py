"""Replies made from the query alone, before any resolution: the rules for what a query
gets without resolving (FORMERR, REFUSED), header-only and question-only error replies
(FORMERR, NOTIMP, BADVERS, SERVFAIL), and the minimal answer to ANY (RFC 8482 §4.2).
"""

from __future__ import annotations

import struct

from resolver.dns.header import EDNS_DO, MAX_UDP_REPLY, HeaderFlag
from resolver.dns.scanner import ScannedMessage
from resolver.dns.wire import CLASS_IN, Question, Rcode, RRType, make_record
from resolver.engine.events import Outcome

_TYPES_REFUSED = {RRType.AXFR, RRType.IXFR}
_TYPES_FORMERR = {0, RRType.OPT, 249, 250, 253, 254}  # TKEY, TSIG, MAILB, MAILA


def refusal(query: ScannedMessage, *, cache_only_allowed: bool = False) -> Rcode | None:
    """The rcode a query gets without resolving: FORMERR for meta and reserved types,
    REFUSED for zone transfers, other classes and RD=0 (unless allowed to snoop)."""
    qtype, qclass = query.qtype, query.qclass
    if qtype in _TYPES_FORMERR or (qtype is not None and 128 <= qtype <= 248):
        return Rcode.FORMERR
    if qtype in _TYPES_REFUSED or qclass != CLASS_IN:
        return Rcode.REFUSED
    if not query.flags & HeaderFlag.RD and not cache_only_allowed:
        return Rcode.REFUSED  # RD=0: only clients allowed to snoop get the cache's view
    return None



def rfc8482_answer(question: Question) -> Outcome:
    """The minimal answer to ANY (RFC 8482 §4.2): one synthesized HINFO record."""
    # HINFO (type 13) with CPU "RFC8482" and an empty OS: two character-strings.
    hinfo = make_record(question.name, 13, 3789, b"\x07RFC8482\x00")
    return Outcome(rcode=Rcode.NOERROR, answer=(hinfo,))



def header_reply(wire: bytes, rcode: Rcode, *, with_opt: bool) -> bytes:
    """A header-only reply (FORMERR, NOTIMP, BADVERS) echoing id, opcode and RD."""
    ident = struct.unpack_from("!H", wire)[0]
    opcode_rd = wire[2] & 0x79  # opcode bits and RD; QR set below, AA/TC cleared
    flags = ((0x80 | opcode_rd) << 8) | (rcode & 0xF)
    if not with_opt:
        return struct.pack("!HHHHHH", ident, flags, 0, 0, 0, 0)
    opt_ttl = (rcode >> 4) << 24  # extended rcode, version 0 (RFC 6891 §6.1.3)
    opt = b"\x00" + struct.pack("!HHIH", RRType.OPT, MAX_UDP_REPLY, opt_ttl, 0)
    return struct.pack("!HHHHHH", ident, flags, 0, 0, 0, 1) + opt


def ends_with_opt(wire: bytes) -> bool:
    """Whether a query the scanner rejected before reaching its records still ends with an
    OPT record, as clients place it: then the FORMERR carries an OPT too (RFC 6891 §7)."""
    if len(wire) < 23 or wire[10:12] == b"\x00\x00":  # ARCOUNT 0
        return False
    for start in range(len(wire) - 11, 11, -1):
        if wire[start] == 0 and wire[start + 1 : start + 3] == b"\x00\x29":
            rdlength = int.from_bytes(wire[start + 9 : start + 11], "big")
            if start + 11 + rdlength == len(wire):
                return True
    return False


def notimp_reply(wire: bytes, query: ScannedMessage) -> bytes:
    """NOTIMP for an opcode we do not implement (RFC 1035 §4.1.1): opcode and RD echoed,
    the question copied when there is exactly one, every other flag clear."""
    return question_reply(wire, query, Rcode.NOTIMP, flags_kept=0x79)


def badvers_reply(wire: bytes, query: ScannedMessage) -> bytes:
    """BADVERS for an EDNS version above 0 (RFC 6891 §6.1.3): the question, RD and RA kept,
    an OPT of version 0 carrying the extended rcode."""
    return question_reply(wire, query, Rcode.BADVERS, flags_kept=0x79, ra=True)


def question_reply(
    wire: bytes, query: ScannedMessage, rcode: Rcode, *, flags_kept: int, ra: bool = False
) -> bytes:
    """A reply with the query's question and no records: `flags_kept` of the query's third
    octet (opcode, RD), QR set; an OPT (with DO copied, RFC 3225 §3) if the query had one."""
    ident = struct.unpack_from("!H", wire)[0]
    flags = ((0x80 | (wire[2] & flags_kept)) << 8) | (0x80 if ra else 0) | (rcode & 0xF)
    question = wire[12 : query.question_end] if query.qdcount == 1 else b""
    arcount = 1 if query.edns is not None else 0
    header = struct.pack("!HHHHHH", ident, flags, 1 if question else 0, 0, 0, arcount)
    if not arcount:
        return header + question
    assert query.edns is not None
    opt_ttl = ((rcode >> 4) << 24) | (EDNS_DO if query.edns.do else 0)
    return header + question + b"\x00" + struct.pack("!HHIH", RRType.OPT, MAX_UDP_REPLY,
                                                      opt_ttl, 0)


def servfail_for(wire: bytes) -> bytes | None:
    """A header-only SERVFAIL for a query (None for a reply or fewer than 12 octets)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    return header_reply(wire, Rcode.SERVFAIL, with_opt=False)
