"""The decoder against hostile octets: it raises MalformedMessage or returns a message that
encodes again, for any input; a record whose RDATA does not fit its type is dropped and
named, the rest of the reply stands."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.dns.decoding import decode
from resolver.dns.encoding import encode
from resolver.dns.scanner import MalformedMessage
from resolver.dns.wire import RRType
from tests.fuzz.decode_properties import check_decoded_message_round_trips

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[2]

LOC, NAPTR, SVCB = 29, 35, 64
#: Types whose RDATA dnslib parses field by field (names, counts, nested lengths).
PARSED_TYPES = [RRType.A, RRType.AAAA, RRType.NS, RRType.CNAME, RRType.SOA, RRType.PTR,
                RRType.MX, RRType.TXT, RRType.SRV, RRType.DNAME, RRType.DS, RRType.RRSIG,
                RRType.NSEC, RRType.DNSKEY, RRType.NSEC3, RRType.HTTPS, LOC, NAPTR, SVCB,
                13, 44, 51, 52, 257]


def reply(records: list[tuple[int, bytes]], *, trailer: bytes = b"") -> bytes:
    """A reply to "example. A" with one answer per (type, RDATA), owners pointing at the
    question name; `trailer` octets follow the last record (they are not part of it)."""
    out = struct.pack("!6H", 1, 0x8180, 1, len(records), 0, 0) + b"\x07example\x00\x00\x01\x00\x01"
    for rtype, rdata in records:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    return out + trailer


def decode_or_refuse(data: bytes) -> None:
    try:
        message = decode(data)
    except MalformedMessage as error:
        assert error.reason
        return
    check_decoded_message_round_trips(message)


@FUZZ
@given(st.binary(max_size=700))
def test_decode_of_any_octets_is_a_message_or_malformed_message(data: bytes) -> None:
    decode_or_refuse(data)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PARSED_TYPES), st.binary(max_size=48)),
                min_size=1, max_size=4))
def test_random_rdata_of_parsed_types_is_kept_or_dropped_never_raised(
    records: list[tuple[int, bytes]],
) -> None:
    """Every record is either in the answer or named in `malformed`; nothing escapes."""
    message = decode(reply(records))
    assert len(message.answer) + len(message.malformed) == len(records)
    check_decoded_message_round_trips(message)


@FUZZ
@given(st.binary(min_size=12, max_size=400), st.integers(0, 3), st.integers(0, 6))
def test_random_bodies_behind_plausible_counts_decode_or_are_malformed(
    body: bytes, qdcount: int, ancount: int
) -> None:
    decode_or_refuse(struct.pack("!6H", 1, 0x8000, qdcount, ancount, 0, 0) + body)


GOOD_A = (RRType.A, b"\xc0\x00\x02\x01")


def test_loc_with_a_size_exponent_over_nine_is_dropped_and_named() -> None:
    """RFC 1876 §2: each size nibble pair is a base and a power of ten, 0-9 both."""
    bad_loc = b"\x00\xff\x13\x13" + b"\x80\x00\x00\x00" * 3
    message = decode(reply([(LOC, bad_loc), GOOD_A]))
    assert [r.rtype for r in message.answer] == [RRType.A]
    assert message.malformed == ("example. LOC: 16 octets of RDATA do not fit the type",)


def test_https_with_a_parameter_running_past_its_rdata_is_dropped() -> None:
    """RFC 9460 §2.2: SvcParams must exactly fill the RDATA."""
    bad_https = b"\x00\x01\x00" + b"\x00\x01\x00\x09h2"  # ALPN claims 9 octets, 2 follow
    message = decode(reply([(RRType.HTTPS, bad_https), GOOD_A]))
    assert [r.rtype for r in message.answer] == [RRType.A]
    assert message.malformed[0].startswith("example. HTTPS:")


def test_naptr_with_a_character_string_past_its_rdata_is_dropped() -> None:
    """RFC 3403 §4.1: ORDER, PREFERENCE, three <character-string>s, then a name."""
    bad_naptr = b"\x00\x01\x00\x01" + b"\x05u"  # FLAGS claims 5 octets, 1 follows
    message = decode(reply([(NAPTR, bad_naptr), GOOD_A]))
    assert [r.rtype for r in message.answer] == [RRType.A]
    assert message.malformed[0].startswith("example. NAPTR:")


def test_rdata_name_pointing_into_octets_after_the_last_record_is_dropped() -> None:
    """Octets after the last counted record are no part of the message (RFC 1035 §4.1), so a
    CNAME target pointing there points at nothing."""
    records = [(RRType.CNAME, b"\xc0\x00"), GOOD_A]  # offset patched below
    data = bytearray(reply(records, trailer=b"\x03www\x00"))
    data[data.index(b"\xc0\x00", 30) + 1] = len(data) - 5  # the trailer's name
    message = decode(bytes(data))
    assert [r.rtype for r in message.answer] == [RRType.A]
    assert message.malformed[0].startswith("example. CNAME:")


def test_rdata_name_with_a_forward_pointer_loop_is_dropped() -> None:
    """A name in RDATA that points at itself would recurse in dnslib's reader."""
    data = bytearray(reply([(RRType.NS, b"\xc0\x00")]))
    data[-1] = len(data) - 2  # the pointer's own offset
    message = decode(bytes(data))
    assert message.answer == ()
    assert message.malformed[0].startswith("example. NS:")


def test_a_dot_inside_an_rdata_name_round_trips_escaped() -> None:
    message = decode(reply([(RRType.CNAME, b"\x03a.b\x07example\x00")]))
    assert message.answer[0].target == "a\\.b.example."
    assert decode(encode(message)) == message


def test_coverage_guided_fuzz_run_finds_no_decoder_crash(tmp_path: Path) -> None:
    """A bounded atheris run (3 s here, longer with RESOLVER_FUZZ_SECONDS / `make fuzz`),
    seeded with real replies; libFuzzer exits non-zero on the first crashing input."""
    pytest.importorskip("atheris")
    seconds = int(os.environ.get("RESOLVER_FUZZ_SECONDS", "3"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = [reply([GOOD_A]), reply([(RRType.CNAME, b"\x03a.b\xc0\x0c"), (NAPTR, b"\x00" * 8)]),
             reply([(RRType.HTTPS, b"\x00\x01\x00\x00\x01\x00\x03\x02h2"), (LOC, b"\x00" * 16)])]
    for index, seed in enumerate(seeds):
        (corpus / f"seed{index}").write_bytes(seed)
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.decode_target", f"-max_total_time={seconds}",
         "-rss_limit_mb=1024", "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=REPO, capture_output=True, text=True, timeout=seconds + 60, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr  # libFuzzer's closing line: the run really happened


def test_a_reply_counting_more_records_than_the_limit_is_malformed() -> None:
    """Limits.max_records_per_reply: refused from the header counts, the rest unread."""
    data = reply([GOOD_A] * 3)
    assert len(decode(data, max_records=3).answer) == 3
    with pytest.raises(MalformedMessage, match="more than 2 records"):
        decode(data, max_records=2)
