#!/usr/bin/env python3
"""Memory per cached entry at 100,000 entries: record cache RRsets and answer-cache replies.

Fills a RecordCache with 100,000 one-record A RRsets decoded from wire replies (as the engine
stores them) and an AnswerCache with 100,000 replies as the handler encodes them, and prints the
traced allocation per entry as one JSON object. Runs in a few seconds; nothing on the network.
"""

from __future__ import annotations

import gc
import json
import struct
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.answer_cache import AnswerCache  # noqa: E402
from resolver.cache import Rank, RecordCache  # noqa: E402
from resolver.config import CacheSettings  # noqa: E402
from resolver.wire import Message, Question, decode, encode  # noqa: E402
from resolver.wirecheck import scan_query  # noqa: E402

ENTRIES = 100_000


def _query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split("."))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def _reply(name: str, index: int) -> bytes:
    """An authoritative reply with one A record, as an NSD server of the lab sends it."""
    query = _query(name, index & 0xFFFF)
    header = struct.pack("!6H", index & 0xFFFF, 0x8400, 1, 1, 0, 0)
    address = bytes((198, 18, (index >> 8) & 0xFF, index & 0xFF))
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 86400, 4) + address
    return header + query[12:] + record


def _traced(fill: object) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = fill()  # type: ignore[operator]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return after - before


def main() -> None:
    names = [f"h{i % 10}.z{i // 10:05d}.com." for i in range(ENTRIES)]
    replies = [decode(_reply(name, i)) for i, name in enumerate(names)]

    def fill_records() -> RecordCache:
        cache = RecordCache(CacheSettings(max_entries=ENTRIES), timer=lambda: 1000.0)
        for message in replies:
            cache.store_rrset(message.answer, Rank.AUTHORITATIVE_ANSWER)
        assert len(cache) == ENTRIES
        return cache

    # The records themselves are shared with `replies`; count what a fresh decode costs too.
    def fill_records_with_decode() -> RecordCache:
        cache = RecordCache(CacheSettings(max_entries=ENTRIES), timer=lambda: 1000.0)
        for i, name in enumerate(names):
            cache.store_rrset(decode(_reply(name, i)).answer, Rank.AUTHORITATIVE_ANSWER)
        return cache

    def fill_answers() -> AnswerCache:
        cache = AnswerCache(clock=lambda: 1000.0, max_entries=ENTRIES)
        for i, (name, message) in enumerate(zip(names, replies, strict=True)):
            query = _query(name, i & 0xFFFF)
            reply = encode(Message(id=i & 0xFFFF, qr=True, opcode=0, rcode=0, rd=True, ra=True,
                                   question=Question(name, 1), answer=message.answer))
            cache.store(query, scan_query(query), reply)
        assert len(cache) == ENTRIES
        return cache

    out = {
        "record cache, bytes per one-record RRset (entry + cached record)":
            _traced(fill_records_with_decode) / ENTRIES,
        "record cache, bytes per RRset entry (records shared)": _traced(fill_records) / ENTRIES,
        "answer cache, bytes per cached reply": _traced(fill_answers) / ENTRIES,
    }
    print(json.dumps({k: round(v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
