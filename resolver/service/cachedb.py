"""The shared second-level cache's vocabulary: keys, the stored record, TTL lowering.

Pure functions over bytes and an injected time, no I/O (the Redis glue is
`resolver.daemon.cachedb_redis`, the budget and the write queue `resolver.service.cachedb_tier`).
Modelled on Unbound's cachedb module:

- What is stored is a whole reply as this resolver encoded it (id zeroed, question lower-cased),
  behind a short header holding the wall-clock time it was stored. The TTLs in the reply are
  the original ones; a reader lowers each by the whole seconds since then, so every instance
  of a fleet shows the same countdown (RFC 1035 §3.2.1: a TTL counts down while cached).
- The key is a keyed hash (HMAC-SHA256) of the question (lower-cased name, type, class) and
  of what changes the reply: DO (RFC 3225: DNSSEC records included), CD (RFC 4035 §3.2.2:
  checking disabled) and whether the query had EDNS (an OPT record in the reply iff the query
  had one, RFC 6891 §7). The secret seed keeps tenants sharing one server from reading or
  planting each other's entries by computing keys.
- Never shared: anything but NOERROR and NXDOMAIN (no SERVFAIL), a truncated reply, a reply
  without records, a TTL of 0, and, once DNSSEC validation is wired in, bogus or
  indeterminate data (`refusal_to_share` takes the validation status already).
- What a reader gets back is checked as strictly as a reply from the network: wrong magic,
  a question other than the one asked, a record that does not parse: a miss, never a crash.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from resolver.dns.names import MAX_LABEL_OCTETS
from resolver.dns.wire import Question, RRType
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache

__all__ = [
    "KEY_PREFIX",
    "REFRESH_FRACTION",
    "Freshness",
    "NotShared",
    "ReplyVariant",
    "StoredReply",
    "cachedb_key",
    "decode_stored",
    "encode_stored",
    "freshness",
    "lowered_reply",
    "memory_knows",
    "refusal_to_share",
    "reply_for_client",
    "stale_reply",
]

#: Every key starts with this: the format's version, so a new format never reads an old one.
KEY_PREFIX = "resolver:reply:1:"
#: First octets of a stored value (format 1).
MAGIC = b"RDB1"
#: MAGIC, the wall-clock time stored (seconds since the epoch, a double).
_VALUE_HEADER = struct.Struct(">4sd")
_HEADER = 12
_TYPE_OPT = 41
_RCODE_NOERROR = 0
_RCODE_NXDOMAIN = 3
_QR = 0x80
_TC = 0x02
_RR_FIXED = struct.Struct(">HHIH")
_U32 = struct.Struct(">I")
#: RFC 2181 §8: TTLs are 31-bit; the top bit set means the sender broke the rules.
_TTL_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ReplyVariant:
    """The query bits that change the reply, besides the question."""

    do: bool = False
    cd: bool = False
    edns: bool = False
    #: AD in the query: such a client is told whether the data is secure (RFC 6840 §5.7).
    ad: bool = False

    def octet(self) -> bytes:
        return bytes(((1 if self.do else 0) | (2 if self.cd else 0) | (4 if self.edns else 0)
                      | (8 if self.ad else 0),))


def cachedb_key(secret: bytes, question: bytes, variant: ReplyVariant) -> str:
    """The key a reply to `question` is stored under.

    `question` is the question as `resolver.dns.scanner.question_key` gives it: the name's
    wire form lower-cased (RFC 4343), then QTYPE and QCLASS. HMAC-SHA256 keyed with the
    secret: without the secret the key of a name cannot be computed.
    """
    digest = hmac.new(secret, question + variant.octet(), hashlib.sha256).hexdigest()
    return KEY_PREFIX + digest


class NotShared(enum.Enum):
    """Why a reply is kept out of the shared cache."""

    NOT_A_REPLY = "not a reply this resolver can read back"
    FAILURE = "rcode other than NOERROR or NXDOMAIN"
    TRUNCATED = "truncated"
    NO_RECORDS = "no records"
    ZERO_TTL = "a TTL of 0"
    NOT_VALIDATED = "bogus or indeterminate (DNSSEC)"


def refusal_to_share(reply: bytes, security: Security | None) -> NotShared | None:
    """None if `reply` may go to the shared cache, else why not.

    `security` is the validation status of the answer; None while the resolver does not
    validate. Bogus and indeterminate answers are never shared (Unbound's cachedb stores
    only what passed validation): one instance's failure must not spread to the fleet.
    """
    if security in (Security.BOGUS, Security.INDETERMINATE):
        return NotShared.NOT_VALIDATED
    if len(reply) < _HEADER or not reply[2] & _QR:
        return NotShared.NOT_A_REPLY
    if reply[3] & 0xF not in (_RCODE_NOERROR, _RCODE_NXDOMAIN):
        return NotShared.FAILURE
    if reply[2] & _TC:
        return NotShared.TRUNCATED
    walked = _walk(reply)
    if walked is None:
        return NotShared.NOT_A_REPLY
    ttls, _opt = walked
    if not ttls:
        return NotShared.NO_RECORDS
    if min(ttl for _, ttl in ttls) <= 0:
        return NotShared.ZERO_TTL
    return None


def min_ttl(reply: bytes) -> int:
    """The shortest TTL of the reply's records (0 if it has none or cannot be walked)."""
    walked = _walk(reply)
    if walked is None or not walked[0]:
        return 0
    return min(ttl for _, ttl in walked[0])


@dataclass(frozen=True, slots=True)
class StoredReply:
    """A value of the shared cache: the reply with its original TTLs and when it was stored."""

    stored_at: float  #: wall-clock seconds since the epoch
    reply: bytes  #: id zeroed; TTLs as when stored


def encode_stored(reply: bytes, stored_at: float) -> bytes:
    """The value to store for `reply`, written at wall-clock time `stored_at`."""
    return _VALUE_HEADER.pack(MAGIC, stored_at) + b"\x00\x00" + reply[2:]


def decode_stored(value: bytes) -> StoredReply | None:
    """The stored reply in `value`, or None for anything that is not one of ours."""
    if len(value) < _VALUE_HEADER.size + _HEADER:
        return None
    magic, stored_at = _VALUE_HEADER.unpack_from(value)
    if magic != MAGIC or stored_at != stored_at:  # NaN compares unequal to itself
        return None
    return StoredReply(stored_at=stored_at, reply=value[_VALUE_HEADER.size :])


class Freshness(enum.Enum):
    """What a stored reply is worth now, for the question asked."""

    FRESH = "fresh"
    #: In the last tenth of its shortest TTL (Unbound's prefetch rule): served, and worth
    #: refreshing before it expires.
    DUE = "due"
    #: Its shortest TTL has run out (it stays stored for the serve-stale window).
    EXPIRED = "expired"
    #: Not a reply to this question, or not one that may be shared.
    UNUSABLE = "unusable"


#: A reply is due for a refresh when no more than this share of its TTL is left (prefetch).
REFRESH_FRACTION = 0.1


def freshness(stored: StoredReply, question: bytes, now: float) -> Freshness:
    """How usable `stored` is at wall-clock `now` as the reply to `question` (lower-cased
    name wire, QTYPE, QCLASS). A clock behind the writer's counts as no age."""
    reply = stored.reply
    if refusal_to_share(reply, None) is not None:
        return Freshness.UNUSABLE
    if reply[4:6] != b"\x00\x01" or reply[_HEADER : _HEADER + len(question)].lower() != question:
        return Freshness.UNUSABLE
    shortest = min_ttl(reply)
    left = shortest - max(0, int(now - stored.stored_at))
    if left < 1:
        return Freshness.EXPIRED
    return Freshness.DUE if left <= shortest * REFRESH_FRACTION else Freshness.FRESH


def lowered_reply(stored: StoredReply, question: bytes, now: float) -> bytes | None:
    """The stored reply with every TTL lowered by the whole seconds since it was stored.

    None when it is no longer usable (a TTL would reach 0: never served, the record has
    expired), when it does not answer `question` (lower-cased name wire, QTYPE, QCLASS) or
    when it is not a reply that may be shared. A clock behind the writer's counts as no age.
    """
    if freshness(stored, question, now) not in (Freshness.FRESH, Freshness.DUE):
        return None
    walked = _walk(stored.reply)
    assert walked is not None  # freshness walked it
    ttls, _opt = walked
    age = max(0, int(now - stored.stored_at))
    if age == 0:
        return stored.reply
    buffer = bytearray(stored.reply)
    for offset, ttl in ttls:
        _U32.pack_into(buffer, offset, ttl - age)
    return bytes(buffer)


def stale_reply(stored: StoredReply, question: bytes, now: float,
                stale_ttl_s: int) -> bytes | None:
    """The expired `stored` reply as served stale at wall-clock `now` (RFC 8767 §4), or None
    when it is not a usable reply to `question`.

    As Unbound applies serve-expired-reply-ttl: each record whose own TTL has run out shows
    `stale_ttl_s`; a record of the same reply still live (a CNAME longer-lived than its
    target) keeps its counted-down TTL.
    """
    if freshness(stored, question, stored.stored_at) is Freshness.UNUSABLE:
        return None
    walked = _walk(stored.reply)
    assert walked is not None
    age = max(0, int(now - stored.stored_at))
    buffer = bytearray(stored.reply)
    for offset, ttl in walked[0]:
        _U32.pack_into(buffer, offset, ttl - age if ttl - age >= 1 else stale_ttl_s)
    return bytes(buffer)


def reply_for_client(reply: bytes, query: bytes, qname_wire: bytes, max_size: int) -> bytes:
    """`reply` (one `lowered_reply` returned) as the answer to the client's `query`.

    The id and the question name's letter case come from the query (0x20 clients compare
    them); a reply longer than `max_size` goes out as header, question and OPT with TC=1
    (RFC 6891 §7, as the handler truncates).
    """
    name_end = _HEADER + len(qname_wire)
    data = query[:2] + reply[2:_HEADER] + qname_wire + reply[name_end:]
    if len(data) <= max_size:
        return data
    walked = _walk(reply)
    opt = walked[1] if walked is not None else b""
    flags = bytes((data[2] | _TC, data[3]))
    counts = b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
    return data[:2] + flags + counts + data[_HEADER : name_end + 4] + opt


def memory_knows(cache: RecordCache, question: Question) -> bool:
    """Whether the record cache can answer `question` by itself: a live RRset of the type,
    a CNAME to follow, or a live negative answer. Then the shared cache is not asked."""
    name, rtype, rclass = question.name, question.rtype, question.rclass
    return (cache.rrset(name, rtype, rclass) is not None
            or cache.rrset(name, RRType.CNAME, rclass) is not None
            or cache.negative(question) is not None)


def _walk(reply: bytes) -> tuple[list[tuple[int, int]], bytes] | None:
    """(offset and value of every record's TTL, the OPT record's octets) of a reply with
    one question; None if any part of it does not parse or octets are left over."""
    try:
        qdcount, an, ns, ar = struct.unpack_from(">HHHH", reply, 4)
        if qdcount != 1:
            return None
        pos = _skip_name(reply, _HEADER) + 4
        fields: list[tuple[int, int]] = []
        opt = b""
        count = an + ns + ar
        for index in range(count):
            start = pos
            pos = _skip_name(reply, pos)
            rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(reply, pos)
            end = pos + 10 + rdlength
            if end > len(reply):
                return None
            if rtype == _TYPE_OPT:
                if index != count - 1 or index < an + ns:
                    return None  # one OPT, last, in the additional section (RFC 6891 §6.1.1)
                opt = reply[start:end]
            else:
                fields.append((pos + 4, min(ttl, _TTL_MAX) if not ttl & 0x80000000 else 0))
            pos = end
    except (IndexError, struct.error):
        return None
    if pos != len(reply):
        return None
    return fields, opt


def _skip_name(reply: bytes, pos: int) -> int:
    """The offset after the name at `pos`: labels, then the root or one pointer."""
    while True:
        length = reply[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            if pos + 2 > len(reply):
                raise IndexError("pointer cut short")
            return pos + 2
        if length > MAX_LABEL_OCTETS:
            raise IndexError("bad label length")
        pos += length + 1
