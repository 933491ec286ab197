"""The wire-level answer cache: whole replies kept as bytes and served without a DNS library.

A cached answer must not pay for decoding, resolution or encoding (docs/architecture.md, "The hot
path"). The handler stores each reply it built from a resolution; a later query for the same
question is answered from the stored bytes after a short linear scan of the query. Rules:

- The key is the question as the client sent it, lower-cased (RFC 4343: names compare without
  case), plus what changes the reply: RD, CD, AD, DO and whether the query carried EDNS
  (AD and DO decide the reply's AD bit and its RRSIGs, RFC 6840 §5.7-5.8). Replies are
  stored whole; the client's UDP size is applied when serving (below), not kept in the key.
- Only ordinary queries are served here: QR=0, opcode QUERY, RD=1, one question, no answer or
  authority records, at most one additional record which is a well-formed OPT of version 0 with
  valid options. Everything else (and every doubt) goes to the full handler, which answers with
  the strict scanner's verdict. The scan here accepts a subset of what `scanner.scan_query`
  accepts: a question matches a key only if its bytes, lower-cased, equal a question that was
  validated when it was stored, so the name needs no second validation.
- The reply echoes the client's id and its question bytes exactly, letter case included
  (0x20 clients compare them); every other octet comes from the stored reply.
- TTLs count down: the offset of every TTL field is recorded when the reply is stored, and each
  is lowered by the whole seconds elapsed, counted as the record cache counts them. An entry
  lives as long as its shortest TTL; a negative answer's SOA counts down like any record,
  and a negative answer is retired as soon as the record cache holds a newer negative SOA
  for its zone (a different SOA, such as a new serial: an equal one stays as cached, so
  every negative answer of a zone shows the SOA the record cache keeps).
- Only NOERROR and NXDOMAIN replies with at least one record and a positive TTL are stored;
  SERVFAIL never is (a failure is remembered, briefly, by the record cache).
- UDP replies longer than the client accepts (512 without EDNS; its EDNS size, 512 to 1232,
  RFC 6891 §6.2.5) are served in the truncated form the handler would send: header with TC=1,
  the question and the OPT record (RFC 6891 §7).
- With prefetch on, an entry stops being served when its shortest TTL is in the last
  `refresh_fraction` of its life, so that the service sees the query and refreshes the data.
- Round robin (Unbound's rrset-roundrobin, on by default): each hit serves the address
  RRsets of the answer section rotated by one more record, so that clients spread over a
  name's addresses. Only runs of A or AAAA records of one owner written as a compression
  pointer are rotated: their records have the same length and no name points into them,
  so rotating their octets moves no pointer and no TTL field.
- The cache is bounded in entries, or in bytes (`max_bytes`, the reply cache's share of
  `--cache-size 64m`, resolver.engine.cache_budget); an entry's bytes are its octets plus
  `ENTRY_OVERHEAD`, measured with tracemalloc (tests/unit/test_entry_size.py). Beyond the
  bound the cache evicts with the second-chance (CLOCK) approximation of LRU, which costs a
  hit one attribute write instead of a reordering, in batches of 1/64 of the entries.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable

from resolver.dns.header import (
    CLASSIC_UDP_REPLY,
    HEADER_OCTETS,
    MAX_UDP_REPLY,
    HeaderFlag,
)
from resolver.dns.names import MAX_LABEL_OCTETS
from resolver.dns.scanner import ScannedMessage, question_key
from resolver.server.reply_octets import address_runs, ttl_field_offsets

__all__ = ["AnswerCache"]

DEFAULT_MAX_ENTRIES = 100_000
#: Bytes an entry costs beyond its key, body and TTL fields: the _Entry object, three bytes
#: objects' headers, the expiry float and TTL integers, and the dict slot (measured on
#: CPython 3.11; tests/unit/test_entry_size.py checks it within 25%).
ENTRY_OVERHEAD = 360
#: A full cache evicts max_entries / this many entries at once.
_EVICTION_BATCH_DIVISOR = 64

_HEADER = HEADER_OCTETS
_EDNS_OPTION_COOKIE = 10
_RCODE_NOERROR = 0
_RCODE_NXDOMAIN = 3
_TC = 0x02  # in the third header octet
#: A reply body (everything after the id) longer than this does not fit 512 octets.
_MAX_BODY_CLASSIC = CLASSIC_UDP_REPLY - 2
#: Third header octet of a query we serve: QR=0, opcode QUERY, RD=1 (AA and TC are ignored).
_QUERY_BITS_MASK = 0xF9
_QUERY_BITS = 0x01
#: QDCOUNT=1, ANCOUNT=0, NSCOUNT=0 and the high octet of ARCOUNT.
_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00"
#: Owner (root) and TYPE of an OPT record.
_OPT_START = b"\x00\x00\x29"
_U32 = struct.Struct(">I")
#: A TTL field to count down: its offset in the stored reply and the TTL stored there. Packed,
#: a one-record entry's fields take 6 octets instead of a tuple of Python ints.
_TTL_FIELD = struct.Struct(">HI")

# Key variants: one octet appended to the question. CD and AD have the values of their
# bits in the fourth header octet, so that one mask takes both from a query.
_V_RD = 0x01
_V_DO = 0x04
_V_EDNS = 0x08
_V_CD = 0x10
_V_AD = 0x20
_CD_AD_BITS = _V_CD | _V_AD
_VARIANT_OCTET = tuple(bytes((v,)) for v in range(64))


class _Entry:
    """One stored reply after its id, with the TTL fields to count down (kept small: RSS)."""

    __slots__ = ("body", "expires_at", "floor", "left", "min_ttl", "opt_size", "runs",
                 "size", "stamp", "ttl_fields", "turn", "used", "zone")

    def __init__(
        self,
        *,
        body: bytes,
        expires_at: float,
        min_ttl: int,
        ttl_fields: bytes,
        opt_size: int,
        floor: int,
    ) -> None:
        self.body = body  #: the reply without its id, lower-case question, TTLs for `left`
        self.expires_at = expires_at
        self.min_ttl = min_ttl  #: the shortest TTL when stored
        self.left = min_ttl  #: the shortest TTL that `body` shows
        self.ttl_fields = ttl_fields  #: (offset in `body`, TTL as stored) packed by _TTL_FIELD
        self.opt_size = opt_size  #: octets of the OPT record that ends `body` (0: none)
        self.floor = floor  #: the entry is dropped once its shortest TTL falls below this
        self.used = False  #: hit since the eviction hand last passed (second chance)
        #: Negative answers: the zone of their SOA and the record cache's stamp of that
        #: zone's negative SOA when stored; a newer one there retires this reply.
        self.zone: str | None = None
        self.stamp: float | None = None
        #: Address RRsets to rotate: (offset in `body`, octets per record, records).
        self.runs: tuple[tuple[int, int, int], ...] = ()
        self.turn = 0  #: how many hits have rotated this entry's RRsets
        self.size = 0  #: bytes counted against the cache's budget (with its key)

    def rotated(self) -> bytes:
        """`body` with each run of address records rotated by one more record than last time."""
        self.turn += 1
        body = self.body
        parts: list[bytes] = []
        done = 0
        for start, size, count in self.runs:
            cut = start + size * (self.turn % count)
            end = start + size * count
            parts += (body[done:start], body[cut:end], body[start:cut])
            done = end
        parts.append(body[done:])
        return b"".join(parts)

    def render(self, left: int) -> None:
        """Rewrite the TTLs for `left` seconds left on the shortest one."""
        elapsed = self.min_ttl - left
        buffer = bytearray(self.body)
        for offset, ttl in _TTL_FIELD.iter_unpack(self.ttl_fields):
            _U32.pack_into(buffer, offset, ttl - elapsed)
        self.body = bytes(buffer)
        self.left = left

    def truncated(self, question: bytes) -> bytes:
        """The TC=1 form after the id: header, question and OPT, no records (RFC 6891 §7)."""
        body = self.body
        opt = body[len(body) - self.opt_size :] if self.opt_size else b""
        return (
            bytes((body[0] | _TC, body[1])) + b"\x00\x01\x00\x00\x00\x00"
            + (b"\x00\x01" if opt else b"\x00\x00") + question + opt
        )


class AnswerCache:
    """Reply bytes by question and flags; `lookup` answers, `store` remembers."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        max_entries: int = DEFAULT_MAX_ENTRIES,
        refresh_fraction: float = 0.0,
        negative_stamp: Callable[[str], float | None] | None = None,
        round_robin: bool = True,
        max_bytes: int | None = None,
        max_udp_reply: int = MAX_UDP_REPLY,
    ) -> None:
        self._clock = clock
        #: Largest UDP reply sent, whatever a client offers (max-udp-size).
        self.max_udp_reply = max_udp_reply
        #: Rotate the order of address RRsets on every hit (Unbound rrset-roundrobin).
        self.round_robin = round_robin
        #: The record cache's stamp of a zone's latest negative SOA (RecordCache.
        #: negative_soa_stamp): a negative answer shows the zone's current SOA, as the
        #: record cache's own negative answers do (testbound ttl_msg).
        self._negative_stamp = negative_stamp
        self.max_entries = max_entries if max_bytes is None else sys.maxsize
        #: The budget in bytes, or None when bounded in entries.
        self.max_bytes = max_bytes
        #: What the stored entries cost, as `_Entry.size` counts it.
        self.size_bytes = 0
        #: With prefetch on, stop serving an entry once its shortest TTL is within this share
        #: of what it was stored with, so the query reaches the service, which refreshes it.
        self.refresh_fraction = refresh_fraction
        #: A plain dict (insertion order is age): an OrderedDict costs ~50 octets more an entry.
        self._entries: dict[bytes, _Entry] = {}
        self.hits = 0
        self.misses = 0  #: well-formed ordinary queries whose key was not stored (or expired)
        self.stored = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every reply (after the record cache was flushed, for instance)."""
        self._entries.clear()
        self.size_bytes = 0

    def lookup(self, data: bytes, tcp: bool = False) -> bytes | None:
        """The reply to the query `data`, or None when the full handler must answer it.

        Never raises, whatever the bytes (an IndexError from a short message means "not here").
        """
        body = self.reply_body(data, tcp)
        return None if body is None else data[:2] + body

    def reply_body(self, data: bytes, tcp: bool = False) -> bytes | None:
        """`lookup` without the id: the reply's octets after it (batched sends reuse the
        query's buffer, whose first two octets already are the id)."""
        try:
            if data[2] & _QUERY_BITS_MASK != _QUERY_BITS or not data.startswith(_COUNTS, 4):
                return None
            variant = _V_RD | (data[3] & _CD_AD_BITS)
            # First guess where the question ends, as almost every stub writes its query: the
            # question fills the message, or an OPT without options follows it. A guess can only
            # hit when the question octets equal a validated one, which proves the guess right.
            size = len(data)
            edns_size = 0
            entry = None
            qend = 0  # no guess
            if not data[11]:
                qend = size
            elif (
                data[11] == 1
                and data.startswith(_OPT_START, size - 11)
                and data.endswith(b"\x00\x00")  # RDLENGTH 0
                and not data[size - 5]  # version 0
            ):
                qend = size - 11
                edns_size = (data[qend + 3] << 8) | data[qend + 4]
                variant |= _V_EDNS | _V_DO if data[qend + 7] & 0x80 else _V_EDNS
            if qend > _HEADER:
                question = data[_HEADER:qend]
                lowered = question.lower()
                key = lowered + _VARIANT_OCTET[variant]
                entry = self._entries.get(key)
            if entry is None:
                located = _locate(data)
                if located is None:
                    return None
                question, lowered, key, edns_size = located
                entry = self._entries.get(key)
                if entry is None:
                    self.misses += 1
                    return None
        except IndexError:
            return None
        left = int(entry.expires_at - self._clock() + 1e-9)
        if left < entry.floor or (
            entry.zone is not None
            and self._negative_stamp is not None
            and self._negative_stamp(entry.zone) != entry.stamp
        ):
            self._retire(key)
            return None
        if left != entry.left:
            entry.render(left)
        entry.used = True
        self.hits += 1
        body = entry.body
        if (not tcp and len(body) > _MAX_BODY_CLASSIC
                and len(body) > _udp_limit(edns_size, self.max_udp_reply) - 2):
            return entry.truncated(question)
        if entry.runs:
            body = entry.rotated()
        if question == lowered:  # as stored
            return body
        return body[:10] + question + body[10 + len(question) :]

    def _retire(self, key: bytes) -> None:
        """Drop an entry found expired, due for a refresh or superseded: the query is a miss."""
        self.size_bytes -= self._entries.pop(key).size
        self.misses += 1

    def store(
        self, query: bytes, scanned: ScannedMessage, reply: bytes, *,
        negative_zone: str | None = None,
    ) -> bool:
        """Remember `reply` (whole, never truncated) as the answer to `query`.

        `scanned` is the strict scanner's view of `query`. Returns False when the reply is not
        one to keep: not NOERROR/NXDOMAIN, truncated, without records or with a zero TTL.
        """
        if self.max_entries <= 0 or len(reply) < _HEADER or reply[2] & _TC:
            return False
        if reply[3] & 0xF not in (_RCODE_NOERROR, _RCODE_NXDOMAIN):
            return False
        if scanned.qdcount != 1 or scanned.qname_wire is None or not scanned.flags & HeaderFlag.RD:
            return False
        question = question_key(query, scanned)
        qend = _HEADER + len(question)
        if reply[_HEADER:qend].lower() != question or reply[4:6] != b"\x00\x01":
            return False
        records = ttl_field_offsets(reply, qend)
        if records is None:
            return False
        ttl_fields, opt = records
        if not ttl_fields:
            return False
        min_ttl = min(ttl for _, ttl in ttl_fields)
        if min_ttl <= 0:
            return False
        variant = _V_RD | (scanned.flags & _CD_AD_BITS)
        if scanned.edns is not None:
            variant |= _V_EDNS | (_V_DO if scanned.edns.do else 0)
        entry = _Entry(
            body=reply[2:],
            expires_at=self._clock() + min_ttl,
            min_ttl=min_ttl,
            ttl_fields=b"".join(_TTL_FIELD.pack(offset - 2, ttl) for offset, ttl in ttl_fields),
            opt_size=len(opt),
            floor=int(min_ttl * self.refresh_fraction) + 1,
        )
        if negative_zone is not None and self._negative_stamp is not None:
            entry.zone, entry.stamp = negative_zone, self._negative_stamp(negative_zone)
        if self.round_robin:
            entry.runs = address_runs(reply, qend)
        key = question + _VARIANT_OCTET[variant]
        entry.size = (ENTRY_OVERHEAD + len(key) + len(entry.body) + len(entry.ttl_fields)
                      + len(entry.runs) * 64)
        if self.max_bytes is not None and entry.size > self.max_bytes:
            return False
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.size_bytes -= old.size
        if self._over(entry.size):
            self._evict(entry.size)
        entries[key] = entry
        self.size_bytes += entry.size
        self.stored += 1
        return True

    def _over(self, incoming: int) -> bool:
        """Whether an entry of `incoming` bytes does not fit beside the stored ones."""
        if len(self._entries) >= self.max_entries:
            return True
        return self.max_bytes is not None and self.size_bytes + incoming > self.max_bytes

    def _evict(self, incoming: int) -> None:
        """Drop a batch of the oldest entries not hit since the hand last passed them (CLOCK).

        The dict keeps insertion order, so its start is the oldest entry. A batch at a time:
        iteration restarts at the start of the dict's table, so one entry at a time would walk
        the slots freed before it again and again until the dict is next compacted.
        """
        entries = self._entries
        now = self._clock()
        bound = self.max_entries if self.max_bytes is None else len(entries)
        batch = max(1, bound // _EVICTION_BATCH_DIVISOR)
        while entries and self._over(incoming):
            spared: list[bytes] = []
            doomed: list[bytes] = []
            for key, entry in entries.items():
                if entry.used and entry.expires_at - now >= entry.floor:
                    spared.append(key)
                else:
                    doomed.append(key)
                    if len(doomed) >= batch:
                        break
            for key in spared:  # a second chance, at the back
                entry = entries.pop(key)
                entry.used = False
                entries[key] = entry
            for key in doomed:
                self.size_bytes -= entries.pop(key).size
            self.evicted += len(doomed)


def _locate(data: bytes) -> tuple[bytes, bytes, bytes, int] | None:
    """Scan a query whose header passed: its question as sent and lower-cased, its key, and
    its EDNS size; or None.

    None for anything the full handler must judge: a compressed or bad name, a question cut
    short, an additional record that is not a plain OPT of version 0 with valid options.
    """
    pos = _HEADER
    length = data[pos]
    while length:
        if length > MAX_LABEL_OCTETS:  # a pointer or a bad label: the full scanner decides
            return None
        pos += length + 1
        length = data[pos]
    qend = pos + 5
    size = len(data)
    if qend > size:
        return None
    variant = _V_RD | (data[3] & _CD_AD_BITS)
    edns_size = 0
    if data[11]:
        if data[11] != 1 or data[qend : qend + 3] != _OPT_START or qend + 11 > size:
            return None
        if data[qend + 6]:  # EDNS version above 0: BADVERS from the handler
            return None
        rdlength = (data[qend + 9] << 8) | data[qend + 10]
        if rdlength and not _options_valid(data, qend + 11, qend + 11 + rdlength):
            return None
        edns_size = (data[qend + 3] << 8) | data[qend + 4]
        variant |= _V_EDNS | _V_DO if data[qend + 7] & 0x80 else _V_EDNS
    question = data[_HEADER:qend]
    lowered = question.lower()
    return question, lowered, lowered + _VARIANT_OCTET[variant], edns_size


def _udp_limit(edns_size: int, max_udp_reply: int) -> int:
    """The largest UDP reply the client takes (RFC 6891 §6.2.5: below 512 counts as 512)."""
    if edns_size <= CLASSIC_UDP_REPLY:
        return CLASSIC_UDP_REPLY
    return min(edns_size, max_udp_reply)


def _options_valid(data: bytes, pos: int, end: int) -> bool:
    """Options fill the OPT RDATA exactly (RFC 6891 §6.1.2); COOKIE lengths (RFC 7873 §5.2.2)."""
    if end > len(data):
        return False
    while pos < end:
        if pos + 4 > end:
            return False
        code = (data[pos] << 8) | data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + length
        if pos > end:
            return False
        if code == _EDNS_OPTION_COOKIE and not (length == 8 or 16 <= length <= 40):
            return False
    return True
