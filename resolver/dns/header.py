"""The message header and EDNS flag vocabulary (RFC 1035 §4.1.1, RFC 6891 §6.1.3), in one place.

Code that reads or writes header octets by hand (the scanner, the octet-level answer
cache, the handler's header-only replies, the reply matcher) names the bits it touches
here instead of writing masks inline.
"""

from __future__ import annotations

from typing import Final

#: Octets of the fixed header: id, flags, and the four section counts.
HEADER_OCTETS = 12
#: Largest DNS message: a TCP length prefix or a UDP datagram holds at most this.
MAX_MESSAGE_OCTETS = 0xFFFF
#: Without EDNS a UDP reply is at most 512 octets (RFC 1035 §4.2.1).
CLASSIC_UDP_REPLY = 512
#: Largest UDP reply we send (DNS Flag Day 2020; BIND max-udp-size 1232).
MAX_UDP_REPLY = 1232


class HeaderFlag:
    """Bits of the 16-bit flags word (RFC 1035 §4.1.1; AD and CD from RFC 4035 §3.2).

    Plain integers, not an enum.IntFlag: `flags & HeaderFlag.AA` on an IntFlag builds a
    flag object in Python code (about 1 µs), and every message read or written tests these.
    """

    QR: Final = 0x8000
    AA: Final = 0x0400
    TC: Final = 0x0200
    RD: Final = 0x0100
    RA: Final = 0x0080
    AD: Final = 0x0020
    CD: Final = 0x0010


#: The opcode field: (flags >> OPCODE_SHIFT) & OPCODE_MASK.
OPCODE_SHIFT = 11
OPCODE_MASK = 0xF
#: The low four bits of the rcode, in the flags word (the rest is in the OPT record).
RCODE_MASK = 0xF

#: DO in the OPT record's TTL field (RFC 3225 §3, RFC 6891 §6.1.3).
EDNS_DO = 0x8000

#: A TTL with its top bit set means zero (RFC 2181 §8).
TTL_SIGN_BIT = 0x80000000
