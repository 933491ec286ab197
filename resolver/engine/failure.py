"""Why a resolution failed, as typed values that travel to the client's reply.

The engine says what went wrong with a `FailureKind`; the server picks the extended DNS
error (RFC 8914) from the kind and never from the words, which are for people (logs,
traces and the EDE's EXTRA-TEXT).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resolver.dns.extended_errors import ExtendedError


class FailureKind(enum.Enum):
    """The classes of SERVFAIL, each with the RFC 8914 info-code it is reported with."""

    #: No server of a zone (or no forwarder) gave a usable reply: timeouts, ICMP
    #: unreachable, lame or SERVFAIL/REFUSED from all of them (EDE 22).
    NO_REACHABLE_AUTHORITY = "no reachable authority"
    #: A work limit was reached: referrals, upstream queries, CNAME chain length, the
    #: depth of name-server lookups (EDE 0, Other).
    WORK_LIMIT = "work limit"
    #: The time budget of the resolution ran out while servers were still being tried.
    OUT_OF_TIME = "out of time"
    #: A CNAME chain that comes back to a name already on it.
    CNAME_LOOP = "CNAME loop"
    #: A forwarder handed our own query back to us.
    FORWARDING_LOOP = "forwarding loop"
    #: Too many resolutions in progress: new work is refused rather than queued.
    OVERLOADED = "overloaded"
    #: A fault of ours, logged with its traceback.
    INTERNAL_ERROR = "internal error"
    #: The data failed DNSSEC validation (RFC 4035 §5.5): the `Failure` carries the
    #: precise extended error (6 DNSSEC Bogus, 7 Signature Expired, 9 DNSKEY Missing...).
    DNSSEC_BOGUS = "DNSSEC bogus"

    @property
    def ede_code(self) -> ExtendedError:
        """The extended DNS error info-code (RFC 8914 §4)."""
        return _EDE_CODES[self]


_EDE_CODES: dict[FailureKind, ExtendedError] = {
    FailureKind.NO_REACHABLE_AUTHORITY: ExtendedError.NO_REACHABLE_AUTHORITY,
    FailureKind.OUT_OF_TIME: ExtendedError.NO_REACHABLE_AUTHORITY,
    FailureKind.WORK_LIMIT: ExtendedError.OTHER,
    FailureKind.CNAME_LOOP: ExtendedError.OTHER,
    FailureKind.FORWARDING_LOOP: ExtendedError.OTHER,
    FailureKind.OVERLOADED: ExtendedError.OTHER,
    FailureKind.INTERNAL_ERROR: ExtendedError.OTHER,
    FailureKind.DNSSEC_BOGUS: ExtendedError.DNSSEC_BOGUS,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A step of the resolution that could not get what it needed."""

    kind: FailureKind
    reason: str
    #: The extended error when it is more precise than the kind's (DNSSEC failures).
    extended_error: ExtendedError | None = None

    @property
    def ede_code(self) -> ExtendedError:
        return self.extended_error if self.extended_error is not None else self.kind.ede_code
