"""Which reply answers which upstream query (RFC 5452 §9.1): the id, QR=1, the opcode, one
question, and the same question, the name compared case-insensitively (RFC 4343).

Every upstream transport (UDP, TCP, DoT, DoH) and the test servers match replies by this one
value, built once from the query we sent; `matches` never raises, whatever the octets.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.dns.header import HEADER_OCTETS
from resolver.dns.names import MAX_LABEL_OCTETS

__all__ = ["ReplyMatcher"]


@dataclass(frozen=True, slots=True)
class ReplyMatcher:
    """What a reply must echo to count as the answer to one query (RFC 5452 §9.1)."""

    query_id: bytes  #: the two id octets
    opcode: int
    qname: bytes  #: the question name in wire form, lower-cased
    qtype_qclass: bytes  #: the four octets after the name

    @classmethod
    def for_query(cls, query: bytes) -> ReplyMatcher:
        """Read the question of a query we built (uncompressed, QDCOUNT=1); ValueError otherwise."""
        if len(query) < HEADER_OCTETS or query[4:6] != b"\x00\x01":
            raise ValueError("a query must have a header and exactly one question")
        pos = HEADER_OCTETS
        while True:
            if pos >= len(query):
                raise ValueError("the query's question name runs past the end")
            length = query[pos]
            if length == 0:
                break
            if length > MAX_LABEL_OCTETS:
                raise ValueError("the query's question name is compressed or malformed")
            pos += 1 + length
        name_end = pos + 1
        if name_end + 4 > len(query):
            raise ValueError("the query's question has no type and class")
        return cls(
            query_id=query[:2],
            opcode=(query[2] >> 3) & 0xF,
            # bytes.lower() only touches A-Z (65..90); length octets are <= 63, so they survive.
            qname=query[HEADER_OCTETS:name_end].lower(),
            qtype_qclass=query[name_end : name_end + 4],
        )

    def matches(self, reply: bytes) -> bool:
        """True if `reply` answers the query; never raises, whatever the bytes."""
        if len(reply) < HEADER_OCTETS:
            return False
        name_end = HEADER_OCTETS + len(self.qname)
        return (
            reply[:2] == self.query_id
            and reply[2] & 0x80 != 0  # QR=1: a response, not a reflected query
            and (reply[2] >> 3) & 0xF == self.opcode
            and reply[4:6] == b"\x00\x01"
            and reply[HEADER_OCTETS:name_end].lower() == self.qname
            and reply[name_end : name_end + 4] == self.qtype_qclass
        )
