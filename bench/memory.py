#!/usr/bin/env python3
"""Memory per cached entry at 100,000 entries: record cache RRsets and answer-cache replies.

Decodes 100,000 one-record A replies (as the engine receives them), stores their RRsets in a
RecordCache, then stores 100,000 replies in an AnswerCache, and prints the growth of the
resident set per entry as one JSON object (allocator overhead included, as the RSS column of
the benchmark counts it). About ten seconds; nothing on the network. Linux (/proc).
"""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.dns.decoding import decode
from resolver.dns.scanner import scan_query
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.settings import CacheSettings
from resolver.server.answer_cache import AnswerCache

ENTRIES = 100_000


def _query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in name.rstrip(".").split("."))
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def _reply(name: str, index: int, *, flags: int = 0x8400) -> bytes:
    """A reply with one A record: authoritative as NSD sends it, or (0x8180) as we send it."""
    query = _query(name, index & 0xFFFF)
    header = struct.pack("!6H", index & 0xFFFF, flags, 1, 1, 0, 0)
    address = bytes((198, 18, (index >> 8) & 0xFF, index & 0xFF))
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 86400, 4) + address
    return header + query[12:] + record


def _rss() -> int:
    """Resident bytes of this process, after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    names = [f"h{i % 10}.z{i // 10:05d}.com." for i in range(ENTRIES)]
    base = _rss()
    records = [decode(_reply(name, i)).answer for i, name in enumerate(names)]
    decoded = _rss()
    cache = RecordCache(CacheSettings(max_entries=ENTRIES), timer=lambda: 1000.0)
    for answer in records:
        cache.store_rrset(answer, Rank.AUTHORITATIVE_ANSWER)
    assert len(cache) == ENTRIES
    stored = _rss()
    answers = AnswerCache(clock=lambda: 1000.0, max_entries=ENTRIES)
    for i, name in enumerate(names):
        query = _query(name, i & 0xFFFF)
        answers.store(query, scan_query(query), _reply(name, i, flags=0x8180))
    assert len(answers) == ENTRIES
    answered = _rss()
    out = {
        "record cache: one-record RRset (entry + its decoded record)":
            (stored - base) / ENTRIES,
        "record cache: entry alone (records shared with the decoded reply)":
            (stored - decoded) / ENTRIES,
        "answer cache: one cached reply": (answered - stored) / ENTRIES,
    }
    print(json.dumps({k: round(v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
