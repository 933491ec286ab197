"""The shared cache's vocabulary: keys, the stored record, TTL lowering, what is never shared."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.wire import Edns, Message, Question, Rcode, RRType, make_record
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import Rank
from resolver.engine.settings import CacheSettings
from resolver.service.cachedb import (
    KEY_PREFIX,
    NotShared,
    ReplyVariant,
    StoredReply,
    cachedb_key,
    decode_stored,
    encode_stored,
    lowered_reply,
    memory_knows,
    refusal_to_share,
    reply_for_client,
    stale_reply,
)

NAME = "www.example.com."
#: The question as scanner.question_key gives it: lower-cased name wire, QTYPE, QCLASS.
QUESTION = b"\x03www\x07example\x03com\x00" + struct.pack(">HH", RRType.A, 1)
STORED_AT = 1_700_000_000.0


def reply(*, ttls: tuple[int, ...] = (300, 60), rcode: Rcode = Rcode.NOERROR,
          edns: bool = True, name: str = NAME) -> bytes:
    answer = tuple(make_record(name, RRType.A, ttl, bytes((192, 0, 2, i + 1)))
                   for i, ttl in enumerate(ttls))
    return encode(Message(id=0x4242, qr=True, opcode=0, rcode=rcode, rd=True, ra=True,
                          question=Question(name, RRType.A), answer=answer,
                          edns=Edns(udp_size=1232) if edns else None))


def shown_ttls(data: bytes) -> list[int]:
    message = decode(data)
    return [rr.ttl for rr in (*message.answer, *message.authority)]


# -- keys ---------------------------------------------------------------------------------


def test_key_is_a_keyed_hash_that_changes_with_the_secret() -> None:
    plain = cachedb_key(b"tenant-a", QUESTION, ReplyVariant())
    assert plain.startswith(KEY_PREFIX)
    assert len(plain) == len(KEY_PREFIX) + 64  # SHA-256, hex
    assert plain == cachedb_key(b"tenant-a", QUESTION, ReplyVariant())
    assert plain != cachedb_key(b"tenant-b", QUESTION, ReplyVariant())
    assert b"example" not in plain.encode()  # the name cannot be read from the key


def test_key_separates_do_cd_and_edns_variants() -> None:
    variants = [ReplyVariant(do=do, cd=cd, edns=edns)
                for do in (False, True) for cd in (False, True) for edns in (False, True)]
    keys = {cachedb_key(b"s", QUESTION, variant) for variant in variants}
    assert len(keys) == len(variants)


def test_key_separates_types_and_names() -> None:
    aaaa = QUESTION[:-4] + struct.pack(">HH", RRType.AAAA, 1)
    other = b"\x03ww2" + QUESTION[4:]
    assert len({cachedb_key(b"s", q, ReplyVariant()) for q in (QUESTION, aaaa, other)}) == 3


# -- the stored record ---------------------------------------------------------------------


def test_stored_value_round_trips_time_and_reply_with_the_id_zeroed() -> None:
    data = reply()
    stored = decode_stored(encode_stored(data, STORED_AT))
    assert stored == StoredReply(stored_at=STORED_AT, reply=b"\x00\x00" + data[2:])


@given(st.binary(max_size=80))
def test_any_bytes_decode_to_a_stored_reply_or_none_without_raising(value: bytes) -> None:
    stored = decode_stored(value)
    if stored is not None:
        assert lowered_reply(stored, QUESTION, STORED_AT) is None or stored.reply


def test_value_with_another_magic_is_not_read() -> None:
    value = bytearray(encode_stored(reply(), STORED_AT))
    value[0:4] = b"XXXX"
    assert decode_stored(bytes(value)) is None


# -- TTL lowering ----------------------------------------------------------------------------


def test_reader_lowers_every_ttl_by_the_whole_seconds_since_stored() -> None:
    stored = decode_stored(encode_stored(reply(ttls=(300, 60)), STORED_AT))
    assert stored is not None
    lowered = lowered_reply(stored, QUESTION, STORED_AT + 42.9)
    assert lowered is not None
    assert shown_ttls(lowered) == [258, 18]


def test_reader_never_serves_ttl_0_an_entry_whose_shortest_ttl_ran_out_is_a_miss() -> None:
    stored = decode_stored(encode_stored(reply(ttls=(300, 60)), STORED_AT))
    assert stored is not None
    assert lowered_reply(stored, QUESTION, STORED_AT + 59.5) is not None
    assert lowered_reply(stored, QUESTION, STORED_AT + 60) is None


def test_reader_clock_behind_the_writer_counts_no_age() -> None:
    stored = decode_stored(encode_stored(reply(ttls=(300,)), STORED_AT))
    assert stored is not None
    lowered = lowered_reply(stored, QUESTION, STORED_AT - 100)
    assert lowered is not None and shown_ttls(lowered) == [300]


def test_stale_reply_gives_expired_records_the_reply_ttl_and_live_ones_their_own() -> None:
    """Unbound's serve-expired-reply-ttl: per record, not per reply (RFC 8767 §4)."""
    stored = decode_stored(encode_stored(reply(ttls=(600, 60)), STORED_AT))
    assert stored is not None
    stale = stale_reply(stored, QUESTION, STORED_AT + 100.5, 30)
    assert stale is not None and shown_ttls(stale) == [500, 30]


def test_stale_reply_ttl_is_given_even_above_the_records_original_ttl() -> None:
    stored = decode_stored(encode_stored(reply(ttls=(5,)), STORED_AT))
    assert stored is not None
    stale = stale_reply(stored, QUESTION, STORED_AT + 50, 30)
    assert stale is not None and shown_ttls(stale) == [30]


def test_reply_to_another_question_is_not_served() -> None:
    stored = decode_stored(encode_stored(reply(name="evil.example.com."), STORED_AT))
    assert stored is not None
    assert lowered_reply(stored, QUESTION, STORED_AT) is None


def test_stored_servfail_is_not_served_even_if_planted() -> None:
    planted = decode_stored(encode_stored(reply(rcode=Rcode.SERVFAIL), STORED_AT))
    assert planted is not None
    assert lowered_reply(planted, QUESTION, STORED_AT) is None


# -- never shared ---------------------------------------------------------------------------


def test_servfail_zero_ttl_and_empty_replies_are_never_shared() -> None:
    assert refusal_to_share(reply(), None) is None
    assert refusal_to_share(reply(rcode=Rcode.NXDOMAIN, ttls=(30,)), None) is None
    assert refusal_to_share(reply(rcode=Rcode.SERVFAIL), None) is NotShared.FAILURE
    assert refusal_to_share(reply(ttls=(300, 0)), None) is NotShared.ZERO_TTL
    assert refusal_to_share(reply(ttls=()), None) is NotShared.NO_RECORDS
    assert refusal_to_share(b"\x00" * 11, None) is NotShared.NOT_A_REPLY


def test_truncated_reply_is_never_shared() -> None:
    data = bytearray(reply())
    data[2] |= 0x02
    assert refusal_to_share(bytes(data), None) is NotShared.TRUNCATED


def test_bogus_or_indeterminate_answers_are_never_shared() -> None:
    assert refusal_to_share(reply(), Security.BOGUS) is NotShared.NOT_VALIDATED
    assert refusal_to_share(reply(), Security.INDETERMINATE) is NotShared.NOT_VALIDATED
    assert refusal_to_share(reply(), Security.SECURE) is None
    assert refusal_to_share(reply(), Security.INSECURE) is None


# -- serving -------------------------------------------------------------------------------


def test_reply_for_client_takes_its_id_and_letter_case() -> None:
    data = b"\x00\x00" + reply()[2:]
    query_name = b"\x03WwW\x07ExAmple\x03com\x00"
    query = b"\xbe\xef" + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + query_name + QUESTION[-4:]
    out = reply_for_client(data, query, query_name, 1232)
    assert out[:2] == b"\xbe\xef"
    assert out[12 : 12 + len(query_name)] == query_name
    assert out[12 + len(query_name) :] == data[12 + len(query_name) :]


def test_reply_for_client_too_big_for_udp_is_truncated_with_the_opt_kept() -> None:
    data = reply(ttls=tuple(300 for _ in range(40)))
    assert len(data) > 512
    out = reply_for_client(data, data, QUESTION[:-4], 512)
    message = decode(out)
    assert out[2] & 0x02 and not message.answer
    assert message.question == Question(NAME, RRType.A) and message.edns is not None


def test_memory_knows_a_live_rrset_cname_or_negative_answer() -> None:
    now = [0.0]
    cache = RecordCache(CacheSettings(), timer=lambda: now[0])
    question = Question(NAME, RRType.A)
    assert not memory_knows(cache, question)
    cache.store_rrset([make_record(NAME, RRType.A, 60, b"\xc0\x00\x02\x01")], Rank.ANSWER)
    assert memory_knows(cache, question)
    now[0] = 61.0
    assert not memory_knows(cache, question)
