"""Extended DNS Errors (RFC 8914): the EDNS option and its info-codes, in one place."""

from __future__ import annotations

import enum
import struct

#: The EDNS option code of an extended error (RFC 8914 §2).
EDNS_OPTION_EDE = 15

#: Longest EXTRA-TEXT we send: the option is for a hint, not a report.
_MAX_EXTRA_TEXT = 200


class ExtendedError(enum.IntEnum):
    """RFC 8914 §4 info-codes (and later registrations in the IANA registry)."""

    OTHER = 0
    UNSUPPORTED_DNSKEY_ALGORITHM = 1
    UNSUPPORTED_DS_DIGEST_TYPE = 2
    STALE_ANSWER = 3
    FORGED_ANSWER = 4
    DNSSEC_INDETERMINATE = 5
    DNSSEC_BOGUS = 6
    SIGNATURE_EXPIRED = 7
    SIGNATURE_NOT_YET_VALID = 8
    DNSKEY_MISSING = 9
    RRSIGS_MISSING = 10
    NO_ZONE_KEY_BIT_SET = 11
    NSEC_MISSING = 12
    CACHED_ERROR = 13
    NOT_READY = 14
    BLOCKED = 15
    CENSORED = 16
    FILTERED = 17
    PROHIBITED = 18
    STALE_NXDOMAIN_ANSWER = 19
    NOT_AUTHORITATIVE = 20
    NOT_SUPPORTED = 21
    NO_REACHABLE_AUTHORITY = 22
    NETWORK_ERROR = 23
    INVALID_DATA = 24
    UNSUPPORTED_NSEC3_ITERATIONS = 27


def ede_option(code: ExtendedError, text: str = "") -> tuple[int, bytes]:
    """The EDNS option (code, data) for an extended error with optional EXTRA-TEXT."""
    extra = text.encode("utf-8", "replace")[:_MAX_EXTRA_TEXT]
    return EDNS_OPTION_EDE, struct.pack("!H", code) + extra
