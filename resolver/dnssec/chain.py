"""The chain of trust: from a trust anchor through DS and DNSKEY RRsets to an RRset.

RFC 4035 §5: a zone's DNSKEY RRset is trusted when a trusted DS (or a configured key)
names a key of the set and that key signs the set (§5.2); a child's DS RRset is trusted
when the parent's trusted keys sign it, and a proven absence of DS makes the child
insecure; an RRset is trusted when a trusted key of its zone signs it (§5.3). DS records
whose digest or algorithm we cannot use are ignored, and a zone with only such DS is
insecure (RFC 4035 §5.2, RFC 6840 §5.2); SHA-1 DS are ignored when SHA-256 ones exist
(RFC 4509 §3). These are pure functions over records: fetching them is the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Record, RRType
from resolver.dnssec.denial import DEFAULT_NSEC3_ITERATIONS_LIMIT, prove_nodata
from resolver.dnssec.keys import DigestType, Dnskey, Ds, ds_matches
from resolver.dnssec.records import MalformedRdata, Rrsig
from resolver.dnssec.security import Failure, Security, Verdict
from resolver.dnssec.signatures import SignatureCheck, is_supported, verify_rrsig
from resolver.dnssec.verification_budget import VerificationBudget

__all__ = ["ChainOfTrust", "ChainStep", "ZoneEvidence", "validate_dnskeys", "validate_rrset",
           "walk_chain"]


@dataclass(frozen=True, slots=True)
class ChainStep:
    """One zone on the chain: the DS (or anchor) relied on, the key that signed the
    DNSKEY RRset, its algorithm, and the verdict on the zone's keys."""

    zone: str
    ds_key_tag: int | None
    ds_digest_type: int | None
    dnskey_tag: int | None
    algorithm: int | None
    verdict: Verdict

    def describe(self) -> str:
        """One line for a trace: "example. DS 54488/2 -> DNSKEY 54488 alg 13: secure"."""
        ds = f"DS {self.ds_key_tag}/{self.ds_digest_type}" if self.ds_key_tag is not None \
            else "no DS"
        key = f"DNSKEY {self.dnskey_tag} alg {self.algorithm}" if self.dnskey_tag is not None \
            else "no DNSKEY"
        return f"{self.zone} {ds} -> {key}: {self.verdict.security.value} " \
               f"({self.verdict.detail})"


@dataclass(frozen=True, slots=True)
class ChainOfTrust:
    """The steps from the anchor down, and the keys trusted at the last zone reached."""

    steps: tuple[ChainStep, ...]
    trusted_keys: tuple[Dnskey, ...]

    @property
    def verdict(self) -> Verdict:
        return self.steps[-1].verdict

    @property
    def zone(self) -> str:
        return self.steps[-1].zone


@dataclass(frozen=True, slots=True)
class ZoneEvidence:
    """What was fetched for one zone of the chain: its DNSKEY RRset and RRSIGs, and
    from its parent its DS RRset and RRSIGs, or the NSEC/NSEC3 records (with the parent's
    RRSIGs over them already checked) that deny the DS."""

    zone: str
    dnskeys: tuple[Record, ...]
    dnskey_rrsigs: tuple[Record, ...]
    ds: tuple[Record, ...] = ()
    ds_rrsigs: tuple[Record, ...] = ()
    ds_denial: tuple[Record, ...] = ()


def validate_rrset(rrset: Sequence[Record], rrsigs: Sequence[Record],
                   keys: Sequence[Dnskey], zone: str, now: int, *,
                   budget: VerificationBudget | None = None) -> SignatureCheck:
    """RFC 4035 §5.3: `rrset` is secure if one RRSIG by one of `keys` (the zone's trusted
    keys) verifies; otherwise the most telling failure. The verifications tried are
    bounded per RRset, per key tag and by `budget` (the resolution's), against KeyTrap."""
    if not rrsigs:
        return SignatureCheck(Verdict.bogus(Failure.RRSIGS_MISSING, zone,
                                            f"no RRSIG over {_rrset_name(rrset)}"))
    budget = budget if budget is not None else VerificationBudget()
    limits = budget.limits
    failures: list[SignatureCheck] = []
    tried = 0
    for rrsig_record in rrsigs:
        try:
            rrsig = Rrsig.from_record(rrsig_record)
        except MalformedRdata as exc:
            failures.append(SignatureCheck(Verdict.bogus(Failure.DNSSEC_BOGUS, zone,
                                                         f"malformed RRSIG: {exc}")))
            continue
        same_tag = 0
        for key in keys:
            if key.key_tag != rrsig.key_tag or key.algorithm != rrsig.algorithm:
                continue
            if same_tag >= limits.per_key_tag:
                break  # further keys with this tag are not tried (KeyTrap)
            if tried >= limits.per_rrset or not budget.take():
                return SignatureCheck(Verdict.bogus(
                    Failure.DNSSEC_BOGUS, zone,
                    f"too many signatures to check for {_rrset_name(rrset)} (after {tried}; "
                    f"the KeyTrap limits, CVE-2023-50387)", rrsig.key_tag))
            same_tag += 1
            tried += 1
            check = verify_rrsig(rrset, rrsig_record, key, zone, now)
            if check.verdict.is_secure:
                return check
            failures.append(check)
    if not failures:
        return SignatureCheck(Verdict.bogus(
            Failure.DNSKEY_MISSING, zone,
            f"no trusted key of {zone} made the RRSIGs over {_rrset_name(rrset)}"))
    if all(f.verdict.security is Security.INSECURE for f in failures):
        return failures[0]  # signed only with algorithms we do not know
    return next(f for f in failures if f.verdict.security is not Security.INSECURE)


def validate_dnskeys(zone: str, dnskey_rrset: Sequence[Record], rrsigs: Sequence[Record],
                     now: int, *, trusted_ds: Sequence[Ds] = (),
                     trusted_keys: Sequence[Dnskey] = (),
                     budget: VerificationBudget | None = None,
                     ) -> tuple[ChainStep, tuple[Dnskey, ...]]:
    """RFC 4035 §5.2: whether `zone`'s DNSKEY RRset is trusted, from DS records (from the
    validated parent or an anchor) or configured keys. Returns the step and, when secure,
    the zone keys now trusted."""
    try:
        keys = [Dnskey.from_record(r) for r in dnskey_rrset]
    except MalformedRdata as exc:
        return _step(zone, Verdict.bogus(Failure.DNSSEC_BOGUS, zone, f"malformed DNSKEY: {exc}")
                     ), ()
    if not keys:
        return _step(zone, Verdict.bogus(Failure.DNSKEY_MISSING, zone, "no DNSKEY RRset")), ()
    entry_points, refusal = _entry_points(zone, keys, trusted_ds, trusted_keys)
    if refusal is not None:
        return refusal, ()
    first_failure: ChainStep | None = None
    budget = budget if budget is not None else VerificationBudget()  # shared by the keys
    for ds, key in entry_points:
        check = validate_rrset(dnskey_rrset, rrsigs, [key], zone, now, budget=budget)
        step = ChainStep(zone, ds.key_tag if ds else None, ds.digest_type if ds else None,
                         key.key_tag, key.algorithm, check.verdict)
        if check.verdict.is_secure:
            trusted = tuple(k for k in keys if k.is_zone_key and not k.is_revoked)
            return step, trusted
        if first_failure is None:
            first_failure = step
    assert first_failure is not None  # _entry_points returns pairs or a refusal
    if first_failure.verdict.reason is Failure.DNSKEY_MISSING:
        # The DS names a key that is present, but no RRSIG by it covers the DNSKEY set.
        return _replace_verdict(first_failure, Verdict.bogus(
            Failure.RRSIGS_MISSING, zone,
            f"no RRSIG by key {first_failure.dnskey_tag} over the DNSKEY RRset")), ()
    return first_failure, ()


def _entry_points(zone: str, keys: Sequence[Dnskey], trusted_ds: Sequence[Ds],
                  trusted_keys: Sequence[Dnskey],
                  ) -> tuple[list[tuple[Ds | None, Dnskey]], ChainStep | None]:
    """The keys of the set that the DS or configured keys vouch for, or why none are."""
    if trusted_keys:
        anchored = {k.rdata for k in trusted_keys}
        found: list[tuple[Ds | None, Dnskey]] = [(None, k) for k in keys if k.rdata in anchored]
        if found:
            return found, None
        return [], _step(zone, Verdict.bogus(Failure.DNSKEY_MISSING, zone,
                                             "no configured trust-anchor key in the set"))
    usable = [ds for ds in trusted_ds if ds.digest_supported and is_supported(ds.algorithm)]
    if not usable:
        reason = (Failure.UNSUPPORTED_DS_DIGEST_TYPE
                  if trusted_ds and all(not ds.digest_supported for ds in trusted_ds)
                  else Failure.UNSUPPORTED_DNSKEY_ALGORITHM)
        detail = "no DS with a digest type and algorithm we support"
        return [], _step(zone, Verdict.insecure(reason, zone, detail))
    if any(ds.digest_type != DigestType.SHA1 for ds in usable):
        usable = [ds for ds in usable if ds.digest_type != DigestType.SHA1]  # RFC 4509 §3
    pairs: list[tuple[Ds | None, Dnskey]] = [
        (ds, key) for ds in usable for key in keys if ds_matches(ds, key)]
    if pairs:
        return pairs, None
    tagged = [(ds, k) for ds in usable for k in keys
              if k.key_tag == ds.key_tag and k.algorithm == ds.algorithm]
    if tagged:
        ds, key = tagged[0]
        return [], ChainStep(zone, ds.key_tag, ds.digest_type, key.key_tag, key.algorithm,
                             Verdict.bogus(Failure.DNSSEC_BOGUS, zone,
                                           f"the DS digest does not match key {key.key_tag}",
                                           key.key_tag))
    ds = usable[0]
    return [], ChainStep(zone, ds.key_tag, ds.digest_type, None, None, Verdict.bogus(
        Failure.DNSKEY_MISSING, zone, f"no DNSKEY matches DS {ds.key_tag}", ds.key_tag))


def walk_chain(anchor_ds: Sequence[Ds], zones: Sequence[ZoneEvidence], now: int, *,
               anchor_keys: Sequence[Dnskey] = (),
               iterations_limit: int = DEFAULT_NSEC3_ITERATIONS_LIMIT) -> ChainOfTrust:
    """Walk from the anchored first zone of `zones` down to the last; stop at the first
    zone that is not secure (an insecure delegation or a failure)."""
    if not zones:
        raise ValueError("a chain of trust needs at least one zone")
    steps: list[ChainStep] = []
    first = zones[0]
    step, keys = validate_dnskeys(first.zone, first.dnskeys, first.dnskey_rrsigs, now,
                                  trusted_ds=anchor_ds, trusted_keys=anchor_keys)
    steps.append(step)
    parent = first.zone
    for zone in zones[1:]:
        if not step.verdict.is_secure:
            break
        if not names.is_subdomain(zone.zone, parent) or zone.zone == parent:
            steps.append(_step(zone.zone, Verdict.bogus(
                Failure.DNSSEC_BOGUS, zone.zone, f"{zone.zone} is not below {parent}")))
            break
        if not zone.ds:
            denial = prove_nodata(zone.zone, RRType.DS, parent, zone.ds_denial,
                                  iterations_limit=iterations_limit)
            if denial.security is Security.BOGUS:
                denial = Verdict.bogus(denial.reason or Failure.DNSSEC_BOGUS, zone.zone,
                                       f"DS of {zone.zone} neither present nor proven absent: "
                                       f"{denial.detail}")
            else:  # proven (or opted-out) absence of DS: an insecure delegation
                denial = Verdict.insecure(denial.reason, zone.zone,
                                          f"no DS for {zone.zone}: {denial.detail}")
            steps.append(_step(zone.zone, denial))
            keys = ()
            break
        ds_check = validate_rrset(zone.ds, zone.ds_rrsigs, keys, parent, now)
        if not ds_check.verdict.is_secure:
            steps.append(_step(zone.zone, ds_check.verdict))
            keys = ()
            break
        try:
            ds_set = [Ds.from_record(r) for r in zone.ds]
        except MalformedRdata as exc:
            steps.append(_step(zone.zone, Verdict.bogus(Failure.DNSSEC_BOGUS, zone.zone,
                                                        f"malformed DS: {exc}")))
            keys = ()
            break
        step, keys = validate_dnskeys(zone.zone, zone.dnskeys, zone.dnskey_rrsigs, now,
                                      trusted_ds=ds_set)
        steps.append(step)
        parent = zone.zone
    return ChainOfTrust(tuple(steps), keys if steps[-1].verdict.is_secure else ())


def _step(zone: str, verdict: Verdict) -> ChainStep:
    return ChainStep(zone, None, None, None, None, verdict)


def _replace_verdict(step: ChainStep, verdict: Verdict) -> ChainStep:
    return ChainStep(step.zone, step.ds_key_tag, step.ds_digest_type, step.dnskey_tag,
                     step.algorithm, verdict)


def _rrset_name(rrset: Sequence[Record]) -> str:
    return f"{rrset[0].name} type {rrset[0].rtype}" if rrset else "an empty RRset"

