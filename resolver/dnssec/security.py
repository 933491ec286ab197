"""The outcome of validation: security status, failure reason and its EDE code, verdict.

`Security` is the four states of RFC 4033 §5 (and RFC 4035 §4.3); `Failure` names why a
result is not secure, each with the extended DNS error code of RFC 8914 §4 the resolver
reports for it; `Verdict` carries both with the zone and key they concern.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resolver.dns.extended_errors import ExtendedError


class Security(enum.Enum):
    """RFC 4033 §5: the security status of data."""

    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"
    INDETERMINATE = "indeterminate"


class Failure(enum.IntEnum):
    """Why data is not secure; the value is the RFC 8914 §4 extended DNS error code."""

    UNSUPPORTED_DNSKEY_ALGORITHM = 1
    UNSUPPORTED_DS_DIGEST_TYPE = 2
    DNSSEC_BOGUS = 6
    SIGNATURE_EXPIRED = 7
    SIGNATURE_NOT_YET_VALID = 8
    DNSKEY_MISSING = 9
    RRSIGS_MISSING = 10
    NSEC_MISSING = 12
    UNSUPPORTED_NSEC3_ITERATIONS = 27

    @property
    def ede_code(self) -> ExtendedError:
        """The RFC 8914 info-code, from the one home of EDE codes (dns.extended_errors)."""
        return ExtendedError(self.value)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One validation result: status, reason (None when secure), zone, key tag, detail."""

    security: Security
    reason: Failure | None
    zone: str
    key_tag: int | None = None
    detail: str = ""

    @property
    def ede_code(self) -> ExtendedError | None:
        """The extended DNS error to report with this result, if any."""
        return self.reason.ede_code if self.reason is not None else None

    @classmethod
    def secure(cls, zone: str, detail: str, key_tag: int | None = None) -> Verdict:
        return cls(Security.SECURE, None, zone, key_tag, detail)

    @classmethod
    def bogus(cls, reason: Failure, zone: str, detail: str,
              key_tag: int | None = None) -> Verdict:
        return cls(Security.BOGUS, reason, zone, key_tag, detail)

    @classmethod
    def insecure(cls, reason: Failure | None, zone: str, detail: str,
                 key_tag: int | None = None) -> Verdict:
        return cls(Security.INSECURE, reason, zone, key_tag, detail)

    @property
    def is_secure(self) -> bool:
        return self.security is Security.SECURE
