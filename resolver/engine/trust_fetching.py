"""Fetching the chain of trust (RFC 4035 §5): DS from the parent, DNSKEY from the zone.

With validation on, `_validated` judges a reply's data with the keys of the zone that
signed it; `_zone_trust` finds those keys from the trust anchor down, each link fetched
with sub-resolutions (as name-server addresses are) and kept in the shared `TrustCache`.
The judgement itself is pure: resolver.engine.validation and resolver.dnssec.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

from resolver.dns import names
from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import (
    Question,
    Rcode,
    Record,
    RRType,
    type_name,
)
from resolver.dnssec.denial import shows_empty_non_terminal
from resolver.dnssec.security import Failure as DnssecFailure
from resolver.dnssec.security import Security, Verdict
from resolver.engine.admission import rrsets
from resolver.engine.classify import (
    Classified,
    ResponseKind,
    covered_type,
    is_wildcard_expansion,
)
from resolver.engine.events import (
    ChainStepChecked,
    DataValidated,
    Outcome,
    SendQuery,
)
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.network import ServerAddress
from resolver.engine.resolution_core import Reply, ResolutionCore, log
from resolver.engine.settings import ValidationSettings
from resolver.engine.validation import (
    ZoneTrust,
    anchored_trust,
    check_data,
    denial_marks_cut,
    names_below,
    signer_of,
    unsigned_owners,
    zone_trust_below,
    zones_needed,
)


class TrustFetching(ResolutionCore):
    """The DNSSEC part of a resolution: trust fetched and data judged."""


    # -- DNSSEC validation (RFC 4035 §5) -------------------------------------------

    def _wall_now(self) -> int:
        """Epoch seconds now: the start's wall time plus the monotonic time since."""
        return int(self.wall_time + (self.now - self.started))

    def _validated(
        self, question: Question, classified: Classified, zone_hint: str, depth: int
    ) -> Generator[SendQuery, Reply, Classified]:
        """`classified` with its security status: the trust of each zone that signed
        it fetched (or taken from the trust cache), then its signatures and proofs checked."""
        assert self._dnssec is not None
        negative_anchor = self._negative_anchor(question.name)
        if negative_anchor is not None:  # RFC 7646 §1.1: not validated at all
            verdict = Verdict.insecure(None, negative_anchor,
                                       f"{negative_anchor} is configured insecure "
                                       f"(a negative trust anchor)")
            return replace(classified, security=verdict.security, verdict=verdict)
        if (classified.kind is ResponseKind.NXDOMAIN and not classified.answer
                and classified.soa is not None and shows_empty_non_terminal(
                    question.name, classified.soa.name, classified.denial)):
            # An NXDOMAIN for a name with names below it: the proof shows an empty
            # non-terminal, which exists (RFC 8020 §2 would otherwise deny the names
            # below). Judged, and answered, as the NODATA it is (as Unbound does).
            classified = replace(classified, kind=ResponseKind.NODATA)
        unsigned_zones: dict[str, str] = {}
        owners = unsigned_owners(classified, zone_hint)
        if owners:
            hint_trust = yield from self._zone_trust(zone_hint, depth)
            # Below an insecure or bogus zone no cut can change the verdict: no DS asked.
            dnames = {rr.name for rr in classified.answer if rr.rtype == RRType.DNAME}
            for owner in owners if hint_trust.verdict.is_secure else ():
                unsigned_zones[owner] = yield from self._zone_of_unsigned(
                    owner, zone_hint, depth, dnames)
        trusts: dict[str, ZoneTrust] = {}
        for zone in zones_needed(question.name, classified, zone_hint, unsigned_zones):
            trusts[zone] = yield from self._zone_trust(zone, depth)
        verdict = check_data(question.name, question.rtype, classified,
                             lambda zone: trusts[zone], zone_hint, self._wall_now(),
                             iterations_limit=self._dnssec.nsec3_iterations_limit,
                             budget=self._verifications, unsigned_zones=unsigned_zones)
        if self._observer is not None:
            self._emit(DataValidated(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), zone=verdict.zone,
                security=verdict.security.value,
                ede=int(verdict.ede_code) if verdict.ede_code is not None else None,
                detail=verdict.detail))
        return replace(classified, security=verdict.security, verdict=verdict)

    def _zone_of_unsigned(self, owner: str, zone_hint: str, depth: int,
                          dnames: set[str]) -> Generator[SendQuery, Reply, str]:
        """The deepest zone cut between `zone_hint` and `owner` of an RRset that came
        without RRSIGs, found by asking the DS of each name on the way down (RFC 4035
        §5.2; BIND's validator, given data without signatures, does the same in its
        `proveunsecure`): a DS there is a signed cut, to go on below; a denial that shows
        a delegation (`denial_marks_cut`) is the cut whose DS is absent, where the search
        stops. Its insecurity is then proven by `_zone_trust` like any zone's, so data a
        signed zone left unsigned stays bogus.
        A DNAME on the way (in the answer or the cache) ends the search: nothing lies below
        a DNAME but what it synthesizes, and no zone cut (RFC 6672 §2.3)."""
        zone = zone_hint
        for name in names_below(zone_hint, owner)[:self.limits.max_cut_search]:
            if name != owner and (name in dnames or self.cache.rrset(name, RRType.DNAME)):
                break
            outcome, _ = yield from self._fetched(Question(name, RRType.DS), depth,
                                                  f"DS of {name} (a zone cut above {owner}?)")
            if _of_type(outcome.answer, name, RRType.DS):
                zone = name
                continue
            if outcome.rcode != Rcode.NOERROR or outcome.answer:
                break
            if denial_marks_cut(name, outcome.denial):
                return name
        return zone

    def _negative_anchor(self, name: str) -> str | None:
        """The configured insecure domain (negative trust anchor) holding `name`, if any."""
        assert self._dnssec is not None
        return next((d for d in self._dnssec.insecure_domains if names.is_subdomain(name, d)),
                    None)

    def _store_verdict(self, question: Question, validated: Classified) -> None:
        """Keep the status of cached data just validated (bogus data leaves the cache)."""
        if validated.security is Security.BOGUS:
            self.cache.flush(question.name, rtype=question.rtype)
            return
        for rrset in rrsets(validated.answer):
            rank = self.cache.rank_of(rrset[0].name, rrset[0].rtype, rrset[0].rclass)
            if rank is not None:
                sigs = tuple(rr for rr in validated.signatures if rr.name == rrset[0].name
                             and covered_type(rr) == rrset[0].rtype)
                proof = validated.denial if is_wildcard_expansion(rrset[0].name, sigs) else ()
                self.cache.store_rrset(rrset, rank, security=validated.security, rrsigs=sigs,
                                       proof=proof)

    def _bogus_failure(self, question: Question, bogus: Classified) -> Failure:
        """The SERVFAIL of bogus data, logged with the zone and the reason (RFC 4035 §5.5)."""
        verdict = bogus.verdict
        assert verdict is not None
        reason = f"DNSSEC bogus in zone {verdict.zone}: {verdict.detail}"
        log.warning("validation failed for %s %s: %s", question.name,
                    type_name(question.rtype), reason)
        return Failure(FailureKind.DNSSEC_BOGUS, reason,
                       verdict.ede_code or ExtendedError.DNSSEC_BOGUS)

    def _zone_trust(self, zone: str, depth: int) -> Generator[SendQuery, Reply, ZoneTrust]:
        """The trust of `zone` (RFC 4035 §5.2): from the trust anchor down, each zone's
        DS from its parent and DNSKEY from itself, fetched by sub-resolutions."""
        settings = self._dnssec
        assert settings is not None
        cached = self.state.trust.get(zone, self.now)
        if cached is not None:
            return cached
        negative_anchor = self._negative_anchor(zone)
        if negative_anchor is not None:
            return ZoneTrust(zone, Verdict.insecure(None, zone, f"{negative_anchor} is "
                                                    f"configured insecure"),
                             (), (), settings.max_trust_ttl_s)
        anchors = settings.anchors
        anchor = anchors.closest_to(zone)
        if anchor is None:
            return ZoneTrust(zone, Verdict.insecure(None, zone, "no trust anchor above it"),
                             (), (), settings.max_trust_ttl_s)
        if zone in self._trust_active:  # a chain that comes back to itself
            return ZoneTrust(zone, Verdict.bogus(DnssecFailure.DNSSEC_BOGUS, zone,
                                                 "chain of trust loops"), (), (), 0)
        self._trust_active.add(zone)
        try:
            trust = yield from self._fetch_trust(zone, anchor, depth, settings)
        finally:
            self._trust_active.discard(zone)
        self.state.trust.put(trust, self.now)
        if self._observer is not None and trust.steps:
            step = trust.steps[-1]
            self._emit(ChainStepChecked(
                depth=depth + 1, at_s=self._at_s(), zone=step.zone,
                ds_key_tag=step.ds_key_tag, ds_digest_type=step.ds_digest_type,
                dnskey_tag=step.dnskey_tag, algorithm=step.algorithm,
                security=step.verdict.security.value,
                ede=int(step.verdict.ede_code) if step.verdict.ede_code is not None else None,
                detail=step.verdict.detail))
        if trust.security is Security.BOGUS:
            log.warning("DNSSEC: the keys of %s are bogus: %s", zone, trust.verdict.detail)
        return trust

    def _fetch_trust(self, zone: str, anchor: str, depth: int,
                     settings: ValidationSettings) -> Generator[SendQuery, Reply, ZoneTrust]:
        """The trust of `zone`, fetched again from other servers when the DS or DNSKEY one
        server gave does not verify (RFC 4035 §5.5; Unbound blacklists that server for the
        zone and retries): a bounded number of times, then the bogus verdict stands."""
        first = trust = yield from self._fetch_trust_once(zone, anchor, depth, settings)
        for _ in range(settings.max_bogus_retries):
            if trust.security is not Security.BOGUS or not self._distrust_culprit(zone, trust):
                break
            trust = yield from self._fetch_trust_once(zone, anchor, depth, settings)
        # Still bogus: the first failure says what is wrong (a retry that found no other
        # server to ask would only say that).
        return first if trust.security is Security.BOGUS else trust

    def _distrust_culprit(self, zone: str, trust: ZoneTrust) -> bool:
        """After a bogus link: stop asking the server whose DS (the parent's data) or DNSKEY
        (the zone's) failed, and forget what it gave. False when the data did not come
        from a server just asked and was fetched again already, so asking again cannot help."""
        fetched = self._trust_sources.get(zone)
        if fetched is None:
            return False
        ds_server, dnskey_server, parent_zone = fetched
        if trust.verdict.zone != zone and trust.verdict.zone == parent_zone:
            server, served_zone, rtype = ds_server, parent_zone, RRType.DS
        else:
            server, served_zone, rtype = dnskey_server, zone, RRType.DNSKEY
        if server is None:
            # It came from the cache (a DS with a referral, for instance): fetched once more
            # from the network, the server that gives it is then known.
            if (zone, rtype) in self._refetched:
                return False
            self._refetched.add((zone, rtype))
            self.cache.flush(zone, rtype=rtype)
            return True
        if server in self._distrusted.get(served_zone, set()):
            return False
        self._distrusted.setdefault(served_zone, set()).add(server)
        self.cache.flush(zone, rtype=rtype)
        log.info("DNSSEC: the %s of %s from %s did not verify (%s); asking another server",
                 type_name(rtype), zone, server, trust.verdict.detail)
        return True

    def _fetch_trust_once(self, zone: str, anchor: str, depth: int,
                          settings: ValidationSettings) -> Generator[SendQuery, Reply, ZoneTrust]:
        now = self._wall_now()
        ttls = {"bogus_ttl_s": settings.bogus_ttl_s, "max_ttl_s": settings.max_trust_ttl_s}
        if zone == anchor:
            keys, server = yield from self._fetched(Question(zone, RRType.DNSKEY), depth,
                                                    f"DNSKEY of {zone} (trust anchor)")
            self._trust_sources[zone] = (None, server, "")
            return anchored_trust(zone, _of_type(keys.answer, zone, RRType.DNSKEY),
                                  keys.signatures, settings.anchors.ds_for(zone),
                                  settings.anchors.dnskeys_for(zone), now, **ttls,
                                  budget=self._verifications)
        proof = self.cache.ds_denial(zone)
        if proof is not None:  # the referral proved it absent: nothing to ask
            ds_outcome, ds_server = Outcome(rcode=Rcode.NOERROR, denial=proof), None
        else:
            ds_outcome, ds_server = yield from self._fetched(Question(zone, RRType.DS), depth,
                                                             f"DS of {zone}")
        ds = _of_type(ds_outcome.answer, zone, RRType.DS)
        parent_zone = self._parent_zone(zone, anchor, ds_outcome)
        parent = yield from self._zone_trust(parent_zone, depth)
        self._trust_sources[zone] = (ds_server, None, parent_zone)
        if not parent.verdict.is_secure:
            return ZoneTrust(zone, parent.verdict, (), parent.steps, parent.ttl_s)
        if ds_outcome.rcode == Rcode.SERVFAIL:
            return ZoneTrust(zone, Verdict.bogus(DnssecFailure.DNSKEY_MISSING, zone,
                                                 f"no DS RRset for {zone}: {ds_outcome.reason}"),
                             (), parent.steps, settings.bogus_ttl_s)
        dnskeys: tuple[Record, ...] = ()
        dnskey_sigs: tuple[Record, ...] = ()
        if ds:
            keys, dnskey_server = yield from self._fetched(Question(zone, RRType.DNSKEY),
                                                           depth, f"DNSKEY of {zone}")
            self._trust_sources[zone] = (ds_server, dnskey_server, parent_zone)
            dnskeys = tuple(_of_type(keys.answer, zone, RRType.DNSKEY))
            dnskey_sigs = keys.signatures
        return zone_trust_below(
            parent, zone, ds, [rr for rr in ds_outcome.signatures if rr.name == zone],
            ds_outcome.denial, dnskeys, dnskey_sigs, now,
            iterations_limit=settings.nsec3_iterations_limit, **ttls,
            budget=self._verifications)

    def _fetched(self, question: Question, depth: int, purpose: str
                 ) -> Generator[SendQuery, Reply, tuple[Outcome, ServerAddress | None]]:
        """The outcome of a sub-resolution for trust data, and the server whose reply gave
        it (None when it came from the cache, without a query)."""
        sent = self.queries_sent
        self._answered_by = None
        outcome = yield from self._resolve(question, depth + 1, purpose)
        return outcome, (self._answered_by if self.queries_sent > sent else None)

    def _parent_zone(self, zone: str, anchor: str, ds_outcome: Outcome) -> str:
        """The zone above `zone` that answered for its DS: the DS's signer, else the SOA
        of the negative answer, else the closest cut above it, bounded by the anchor."""
        candidates = [signer_of(ds_outcome.signatures, zone)]
        candidates += [rr.name for rr in ds_outcome.authority if rr.rtype == RRType.SOA]
        cut = self.cache.closest_delegation(names.parent(zone))
        candidates.append(cut.zone if cut is not None else None)
        for candidate in candidates:
            if (candidate is not None and candidate != zone
                    and names.is_subdomain(zone, candidate)
                    and names.is_subdomain(candidate, anchor)):
                return candidate
        return anchor


def _of_type(records: tuple[Record, ...], name: str, rtype: int) -> list[Record]:
    return [rr for rr in records if rr.name == name and rr.rtype == rtype]
