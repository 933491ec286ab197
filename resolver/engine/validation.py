"""The validation step of the reply pipeline: classified data in, a security status out.

It sits between classification and admission (README "Architecture"). Given a
`Classified` result and the trust in the zones that signed it, it says whether the data
is secure, insecure, bogus or indeterminate (RFC 4035 §5, RFC 4033 §5), with the
library's `Verdict` (reason and RFC 8914 code). Fetching the DS and DNSKEY RRsets of the
chain of trust is the resolution's (sub-resolutions through the engine, like name-server
addresses); this module holds the pure parts:

- `ZoneTrust`, what is known of one zone: its validated keys, or why it has none
  (insecure delegation, bogus chain), with the chain's steps for the trace;
- `TrustCache`, the zones' trust kept with TTLs in `SharedState` (Unbound's key cache);
- `zone_trust_below`, one link of the chain (RFC 4035 §5.2): the parent's trust and the
  child's DS (or its proven absence) and DNSKEY RRsets give the child's trust;
- `check_data`, the verdict on the RRsets and the proof of one `Classified`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Record, RRType
from resolver.dnssec.canonical import wildcard_source
from resolver.dnssec.chain import ChainStep, validate_dnskeys, validate_rrset
from resolver.dnssec.denial import (
    nsec3_hash,
    prove_nodata,
    prove_nxdomain,
    prove_wildcard_answer,
)
from resolver.dnssec.keys import Dnskey, Ds
from resolver.dnssec.records import MalformedRdata, Nsec, Nsec3, Rrsig
from resolver.dnssec.security import Failure, Security, Verdict
from resolver.dnssec.verification_budget import VerificationBudget
from resolver.engine.classify import (
    Classified,
    ResponseKind,
    is_wildcard_expansion,
    synthesize_cname,
)

__all__ = ["TrustCache", "ZoneTrust", "anchored_trust", "check_data", "denial_marks_cut",
           "names_below", "signer_of", "unsigned_owners",
           "worst", "zone_trust_below"]

#: Worst first: the status of data made of several parts is the worst of theirs.
_SEVERITY = {Security.BOGUS: 3, Security.INDETERMINATE: 2, Security.INSECURE: 1,
             Security.SECURE: 0}
#: Zones whose trust the cache holds at most (Unbound key-cache-size is in bytes; a zone's
#: keys take a few hundred octets).
DEFAULT_TRUST_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ZoneTrust:
    """What validation knows of one zone: its trusted keys when secure, and the chain."""

    zone: str
    verdict: Verdict
    keys: tuple[Dnskey, ...]
    steps: tuple[ChainStep, ...]
    #: How long this may be kept (seconds): the DS and DNSKEY TTLs, or val-bogus-ttl.
    ttl_s: int

    @property
    def security(self) -> Security:
        return self.verdict.security


def worst(verdicts: Sequence[Verdict], zone: str) -> Verdict:
    """The least secure of `verdicts` (secure when there are none to doubt)."""
    if not verdicts:  # nothing signed to judge (an RRSIG answer): never AD
        return Verdict.insecure(None, zone, "no signed data to validate")
    return max(verdicts, key=lambda v: _SEVERITY[v.security])


class TrustCache:
    """Validated zone trust by zone name, each entry for its TTL (monotonic seconds)."""

    def __init__(self, max_entries: int = DEFAULT_TRUST_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[ZoneTrust, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, zone: str, now: float) -> ZoneTrust | None:
        found = self._entries.get(zone)
        if found is None:
            return None
        if found[1] <= now:
            del self._entries[zone]
            return None
        return found[0]

    def put(self, trust: ZoneTrust, now: float) -> None:
        if trust.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries and trust.zone not in self._entries:
            del self._entries[next(iter(self._entries))]  # the oldest stored
        self._entries[trust.zone] = (trust, now + trust.ttl_s)

    def clear(self) -> None:
        self._entries.clear()


def signer_of(rrsigs: Sequence[Record], owner: str) -> str | None:
    """The zone that signed an RRset at `owner`: the first RRSIG's signer that is at or
    above the owner (RFC 4035 §5.3.1); None when no RRSIG names one."""
    for record in rrsigs:
        try:
            signer = Rrsig.from_record(record).signer
        except MalformedRdata:
            continue
        if names.is_subdomain(owner, signer):
            return signer
    return None


def anchored_trust(zone: str, dnskeys: Sequence[Record], rrsigs: Sequence[Record],
                   anchor_ds: Sequence[Ds], anchor_keys: Sequence[Dnskey], now: int,
                   bogus_ttl_s: int, max_ttl_s: int,
                   budget: VerificationBudget | None = None) -> ZoneTrust:
    """The trust of an anchored zone from its DNSKEY RRset (RFC 4035 §5.2 with a trust
    anchor for the DS)."""
    step, keys = validate_dnskeys(zone, dnskeys, rrsigs, now, trusted_ds=anchor_ds,
                                  trusted_keys=anchor_keys, budget=budget)
    return _trust(zone, step, keys, (), dnskeys, bogus_ttl_s, max_ttl_s)


def zone_trust_below(parent: ZoneTrust, zone: str, ds: Sequence[Record],
                     ds_rrsigs: Sequence[Record], ds_denial: Sequence[Record],
                     dnskeys: Sequence[Record], dnskey_rrsigs: Sequence[Record], now: int, *,
                     bogus_ttl_s: int, max_ttl_s: int, iterations_limit: int,
                     budget: VerificationBudget | None = None) -> ZoneTrust:
    """One link of the chain (RFC 4035 §5.2): `zone`'s trust from its secure `parent`."""
    if not parent.verdict.is_secure:
        return ZoneTrust(zone, parent.verdict, (), parent.steps, parent.ttl_s)
    if not ds:
        verdict = _denial_of_ds(parent, zone, ds_denial, now, iterations_limit, budget)
        step = ChainStep(zone, None, None, None, None, verdict)
        ttl = min((r.ttl for r in ds_denial), default=bogus_ttl_s)
        return ZoneTrust(zone, verdict, (), (*parent.steps, step),
                         bogus_ttl_s if verdict.security is Security.BOGUS
                         else min(ttl, max_ttl_s))
    ds_check = validate_rrset(ds, ds_rrsigs, parent.keys, parent.zone, now, budget=budget)
    if not ds_check.verdict.is_secure:
        step = ChainStep(zone, None, None, None, None, ds_check.verdict)
        return _trust(zone, step, (), parent.steps, ds, bogus_ttl_s, max_ttl_s)
    try:
        ds_set = [Ds.from_record(r) for r in ds]
    except MalformedRdata as exc:
        step = ChainStep(zone, None, None, None, None, Verdict.bogus(
            Failure.DNSSEC_BOGUS, zone, f"malformed DS: {exc}"))
        return _trust(zone, step, (), parent.steps, ds, bogus_ttl_s, max_ttl_s)
    step, keys = validate_dnskeys(zone, dnskeys, dnskey_rrsigs, now, trusted_ds=ds_set,
                                  budget=budget)
    return _trust(zone, step, keys, parent.steps, (*ds, *dnskeys), bogus_ttl_s, max_ttl_s)


def _trust(zone: str, step: ChainStep, keys: tuple[Dnskey, ...], above: tuple[ChainStep, ...],
           records: Sequence[Record], bogus_ttl_s: int, max_ttl_s: int) -> ZoneTrust:
    if step.verdict.security is Security.BOGUS:
        ttl = bogus_ttl_s
    else:
        ttl = min((r.ttl for r in records), default=bogus_ttl_s)
    return ZoneTrust(zone, step.verdict, keys, (*above, step), min(ttl, max_ttl_s))


def _denial_of_ds(parent: ZoneTrust, zone: str, denial: Sequence[Record], now: int,
                  iterations_limit: int, budget: VerificationBudget | None) -> Verdict:
    """RFC 4035 §5.2: no DS for `zone`, proven by the parent's signed NSEC/NSEC3, makes the
    delegation insecure; anything less is bogus. The proof must also show a delegation
    there (RFC 6840 §4.4): a signer name that is no zone cut must not turn data insecure."""
    proof = verified_proof(denial, parent, now, budget)
    if isinstance(proof, Verdict):
        return proof
    verdict = prove_nodata(zone, RRType.DS, parent.zone, proof,
                           iterations_limit=iterations_limit)
    if verdict.security is Security.BOGUS:
        return Verdict.bogus(verdict.reason or Failure.DNSSEC_BOGUS, zone,
                             f"the DS of {zone} is neither present nor proven absent: "
                             f"{verdict.detail}")
    if verdict.is_secure and not _shows_delegation(zone, proof):
        return Verdict.bogus(Failure.DNSSEC_BOGUS, zone,
                             f"{zone} is no zone cut of {parent.zone}")
    return Verdict.insecure(verdict.reason, zone, f"no DS for {zone}: {verdict.detail}")


def _shows_delegation(zone: str, proof: Sequence[Record]) -> bool:
    found = _ns_bit_at(zone, proof)
    # No record at the name: an opt-out span (RFC 5155 §6), judged by the proof.
    return True if found is None else found


def _ns_bit_at(name: str, proof: Sequence[Record]) -> bool | None:
    """Whether the NSEC or NSEC3 record at `name` among `proof` lists NS; None when no
    record of `proof` is at the name."""
    for record in proof:
        try:
            if record.rtype == RRType.NSEC and record.name == name:
                return RRType.NS in Nsec.from_record(record).types
            if record.rtype == RRType.NSEC3:
                parsed = Nsec3.from_record(record)
                if nsec3_hash(name, parsed.salt, parsed.iterations) == parsed.owner_hash:
                    return RRType.NS in parsed.types
        except MalformedRdata:
            continue
    return None


def verified_proof(denial: Sequence[Record], trust: ZoneTrust, now: int,
                   budget: VerificationBudget | None = None) -> list[Record] | Verdict:
    """The NSEC/NSEC3 records of `denial` whose RRSIGs by `trust`'s keys verify, or the
    verdict on the first that does not (RFC 4035 §5.4: a proof is only as good as its
    signatures)."""
    sets: dict[tuple[str, int], list[Record]] = {}
    sigs: dict[tuple[str, int], list[Record]] = {}
    for record in denial:
        if record.rtype == RRType.RRSIG:
            try:
                covered = Rrsig.from_record(record).type_covered
            except MalformedRdata:
                continue
            sigs.setdefault((record.name, covered), []).append(record)
        elif record.rtype in (RRType.NSEC, RRType.NSEC3):
            sets.setdefault((record.name, record.rtype), []).append(record)
    verified: list[Record] = []
    for key, rrset in sets.items():
        if is_wildcard_expansion(key[0], sigs.get(key, ())):
            # Signed as *.<zone>: the owner is the asker's name, not where the NSEC lies,
            # so its span proves nothing (CVE-2017-15105; RFC 4035 §5.3.4).
            return Verdict.bogus(Failure.DNSSEC_BOGUS, trust.zone,
                                 f"the {RRType(key[1]).name} at {key[0]} is a wildcard "
                                 f"expansion and proves no denial")
        check = validate_rrset(rrset, sigs.get(key, ()), trust.keys, trust.zone, now,
                               budget=budget)
        if not check.verdict.is_secure:
            return check.verdict
        verified.extend(rrset)
    return verified


def check_data(question_name: str, question_type: int, classified: Classified,
               trust_of: Callable[[str], ZoneTrust], zone_hint: str, now: int, *,
               iterations_limit: int, budget: VerificationBudget | None = None,
               unsigned_zones: Mapping[str, str] | None = None) -> Verdict:
    """The verdict on `classified`: every RRset of its answer chain signed by a trusted
    key of its zone (RFC 4035 §5.3), a wildcard expansion proven (§5.3.4), and an
    NXDOMAIN or NODATA proven by NSEC/NSEC3 (§5.4, RFC 5155 §8).

    `trust_of(zone)` gives the trust of a zone; the caller has fetched it beforehand
    (see `zones_needed`). `unsigned_zones` names, by owner, the zone an RRset without
    RRSIGs lies in when that is below `zone_hint` (see `unsigned_owners`)."""
    below = unsigned_zones or {}
    verdicts: list[Verdict] = []
    answer = classified.answer
    for rrset in _rrsets(answer):
        first = rrset[0]
        if first.rtype == RRType.RRSIG:
            continue  # RFC 4035 §5.3: RRSIGs are not signed themselves
        if first.rtype == RRType.CNAME and _synthesized(first, answer):
            continue  # RFC 6672 §5.3.1: trusted through the signed DNAME it comes from
        sigs = [r for r in classified.signatures if r.name == first.name
                and _covers(r, first.rtype)]
        signer = signer_of(sigs, first.name) or below.get(first.name, zone_hint)
        trust = trust_of(signer)
        if not trust.verdict.is_secure:
            verdicts.append(trust.verdict)
            continue
        check = validate_rrset(rrset, sigs, trust.keys, signer, now, budget=budget)
        verdicts.append(check.verdict)
        if check.verdict.is_secure:
            wildcard = _wildcard_of(first.name, sigs)
            if wildcard is not None:
                proof = verified_proof(classified.denial, trust, now, budget)
                verdicts.append(proof if isinstance(proof, Verdict) else prove_wildcard_answer(
                    first.name, wildcard, signer, proof, iterations_limit=iterations_limit))
    kind = classified.kind
    if kind in (ResponseKind.NXDOMAIN, ResponseKind.NODATA):
        end = classified.target or _chain_end(question_name, answer)
        zone = classified.soa.name if classified.soa is not None else zone_hint
        trust = trust_of(zone)
        if not trust.verdict.is_secure:
            verdicts.append(trust.verdict)
        else:
            if classified.soa is not None:
                soa_sigs = [r for r in classified.signatures if r.name == zone
                            and _covers(r, RRType.SOA)]
                verdicts.append(validate_rrset([classified.soa], soa_sigs, trust.keys, zone,
                                               now, budget=budget).verdict)
            if kind is ResponseKind.NXDOMAIN:
                verdicts.append(_proven(
                    classified.denial, trust, now, budget, lambda proof: prove_nxdomain(
                        end, zone, proof, iterations_limit=iterations_limit)))
            else:
                verdicts.append(_proven(
                    classified.denial, trust, now, budget, lambda proof: prove_nodata(
                        end, question_type, zone, proof, iterations_limit=iterations_limit)))
    return worst(verdicts, zone_hint)


def zones_needed(question_name: str, classified: Classified, zone_hint: str,
                 unsigned_zones: Mapping[str, str] | None = None) -> list[str]:
    """The zones whose trust `check_data` will ask for, in order."""
    below = unsigned_zones or {}
    needed: list[str] = []
    for rrset in _rrsets(classified.answer):
        first = rrset[0]
        if first.rtype == RRType.RRSIG or (
                first.rtype == RRType.CNAME and _synthesized(first, classified.answer)):
            continue
        sigs = [r for r in classified.signatures if r.name == first.name
                and _covers(r, first.rtype)]
        needed.append(signer_of(sigs, first.name) or below.get(first.name, zone_hint))
    if classified.kind in (ResponseKind.NXDOMAIN, ResponseKind.NODATA):
        needed.append(classified.soa.name if classified.soa is not None else zone_hint)
    return list(dict.fromkeys(needed))


def unsigned_owners(classified: Classified, zone_hint: str) -> list[str]:
    """Owners of answer RRsets that no RRSIG covers, below `zone_hint`: data a server
    authoritative for both a zone and its child (one NSD for parent and child) may give
    from the child when asked as the parent. Which zone holds it is found by the DS walk
    (RFC 4035 §5.2; BIND's `proveunsecure` for data without signatures). A DS
    RRset is the parent's own data (RFC 4035 §2.4), never the child's."""
    owners: list[str] = []
    for rrset in _rrsets(classified.answer):
        first = rrset[0]
        if first.rtype in (RRType.RRSIG, RRType.DS) or first.name == zone_hint:
            continue
        if not names.is_subdomain(first.name, zone_hint) or (
                first.rtype == RRType.CNAME and _synthesized(first, classified.answer)):
            continue
        sigs = [r for r in classified.signatures if r.name == first.name
                and _covers(r, first.rtype)]
        if signer_of(sigs, first.name) is None and first.name not in owners:
            owners.append(first.name)
    return owners


def names_below(zone: str, owner: str) -> list[str]:
    """The names from just below `zone` down to `owner`, top down: where a zone cut
    between them can be."""
    chain = names.ancestors(owner)
    return list(reversed(chain[:chain.index(zone)])) if zone in chain else []


def denial_marks_cut(name: str, denial: Sequence[Record]) -> bool:
    """Whether the denial of `name`'s DS shows a delegation there: an NSEC or NSEC3 at
    the name with the NS bit (RFC 4035 §5.2, RFC 6840 §4.4), or, with no NSEC3 at the
    name, an opt-out NSEC3 whose span may hide an unsigned delegation (RFC 5155 §6). An
    NSEC that only covers the name (an empty non-terminal) marks no cut. This only picks
    the candidate: its trust is proven afterwards like any zone's."""
    found = _ns_bit_at(name, denial)
    if found is not None:
        return found
    return any(_is_opt_out(record) for record in denial if record.rtype == RRType.NSEC3)


def _is_opt_out(record: Record) -> bool:
    try:
        return Nsec3.from_record(record).opt_out
    except MalformedRdata:
        return False


def _proven(denial: Sequence[Record], trust: ZoneTrust, now: int,
            budget: VerificationBudget | None,
            prove: Callable[[list[Record]], Verdict]) -> Verdict:
    proof = verified_proof(denial, trust, now, budget)
    if isinstance(proof, Verdict):
        return proof
    return prove(proof)


def _covers(rrsig: Record, rtype: int) -> bool:
    if rrsig.rtype != RRType.RRSIG:
        return False
    try:
        return Rrsig.from_record(rrsig).type_covered == rtype
    except MalformedRdata:
        return False


def _wildcard_of(owner: str, rrsigs: Sequence[Record]) -> str | None:
    """The wildcard the RRset was expanded from (RFC 4035 §5.3.2), by its RRSIG labels."""
    for record in rrsigs:
        try:
            source = wildcard_source(owner, Rrsig.from_record(record).labels)
        except MalformedRdata:
            continue
        if source is not None:
            return source
    return None


def _synthesized(cname: Record, answer: Sequence[Record]) -> bool:
    """Whether `cname` is what a DNAME of the answer implies (RFC 6672 §2.2): only then
    is it trusted through the DNAME's signature; any other CNAME needs its own."""
    for rr in answer:
        if rr.rtype == RRType.DNAME and cname.name != rr.name and names.is_subdomain(
                cname.name, rr.name):
            implied = synthesize_cname(rr, cname.name)
            return implied is not None and names.canonical(implied.target) == names.canonical(
                cname.target)
    return False


def _rrsets(records: Sequence[Record]) -> list[list[Record]]:
    groups: dict[tuple[str, int, int], list[Record]] = {}
    for rr in records:
        groups.setdefault((rr.name, rr.rtype, rr.rclass), []).append(rr)
    return list(groups.values())


def _chain_end(qname: str, chain: Sequence[Record]) -> str:
    current = qname
    for rr in chain:
        if rr.rtype == RRType.CNAME and rr.name == current:
            current = rr.target
    return current
