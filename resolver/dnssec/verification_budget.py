"""Bounds on signature work, against the KeyTrap attacks (CVE-2023-50387).

A validator that tries every RRSIG against every DNSKEY with the RRSIG's key tag can be
made to verify hundreds of thousands of signatures by one reply: a DNSKEY RRset of many
keys that share one tag (key tags are a checksum, so collisions are cheap to make) and an
RRset with many RRSIGs that all fail. Each bound below caps one factor of that product,
as the peers patched in February 2024; past a bound the data is bogus, never secure.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VerificationBudget", "VerificationLimits"]


@dataclass(frozen=True, slots=True)
class VerificationLimits:
    """How many signature verifications the validator spends, and where."""

    #: Verifications for one RRset, whatever its RRSIGs and keys (Unbound 1.19.1
    #: MAX_VALIDATE_RRSIGS 8).
    per_rrset: int = 8
    #: Keys with the same tag and algorithm tried for one RRSIG (PowerDNS max-dnskeys 2;
    #: BIND 9.18.24 stops at the first failure). Honest zones collide rarely, and never
    #: more than twice during a key rollover.
    per_key_tag: int = 2
    #: Verifications for one client query, the chain of trust and the retries of bogus
    #: data included (PowerDNS max-signature-validations-per-query 30; a chain from the
    #: root through a CNAME into another zone costs about 12).
    per_resolution: int = 60


class VerificationBudget:
    """The verifications one resolution may still spend (see VerificationLimits)."""

    __slots__ = ("limits", "spent")

    def __init__(self, limits: VerificationLimits | None = None) -> None:
        self.limits = limits or VerificationLimits()
        self.spent = 0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limits.per_resolution

    def take(self) -> bool:
        """Spend one verification; False (and nothing spent) when none is left."""
        if self.exhausted:
            return False
        self.spent += 1
        return True
