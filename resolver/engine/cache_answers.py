"""Answering from the record cache inside a resolution: what the cache says of a question.

A mixin of `resolver.engine.resolution.Resolution`: a live answer, CNAME or negative answer
(with the RRSIGs, NSEC proofs and security it was stored with when validating, and
answers synthesized from cached NSEC ranges, RFC 8198), a failure remembered for a moment
(RFC 9520 §3.2), the negative answer a client gets (RFC 2308 §3), and the TTL clamps that
make a first answer agree with the cached ones.
"""

from __future__ import annotations

from resolver.dns.wire import Question, Rcode, Record, RRType, type_name
from resolver.dnssec.security import Security
from resolver.engine.cache_entries import Rank
from resolver.engine.classify import Classified, ResponseKind, covered_type
from resolver.engine.events import CacheAnswered, Outcome
from resolver.engine.failure import Failure, FailureKind
from resolver.engine.resolution_core import ResolutionCore


class CacheAnswering(ResolutionCore):
    """What the record cache answers for a question of this resolution."""

    def _remembered_failure(self, question: Question, depth: int) -> Outcome | None:
        """A recent failure of `question`, answered again at once (RFC 9520 §3.2)."""
        failure = self.cache.failure(question)
        if failure is not None and failure.kind is FailureKind.DNSSEC_BOGUS and (
                not self._validating):
            failure = None  # CD=1: the client takes the data unchecked (RFC 4035 §3.2.2)
        if failure is None:
            return None
        if self._observer is not None:
            self._emit(CacheAnswered(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), what="failure", ttl=0))
        return servfail(Failure(failure.kind, f"recently failed: {failure.reason}",
                                 failure.extended_error))

    def _negative_outcome(
        self, result: Classified, chain: list[Record], signatures: list[Record],
        denial: list[Record], security: Security | None, *, fresh: bool,
    ) -> Outcome:
        """NXDOMAIN or NODATA at the end of `chain`, with its SOA (RFC 2308 §3: it lives for
        min(TTL, MINIMUM)) and, for DNSSEC, the SOA's RRSIGs beside it."""
        rcode = Rcode.NXDOMAIN if result.kind is ResponseKind.NXDOMAIN else Rcode.NOERROR
        soa = result.soa
        authority: tuple[Record, ...] = ()
        if soa is not None:
            settings = self.cache.settings
            ttl = min(soa.ttl, soa.soa_minimum, settings.max_negative_ttl_s)
            if fresh:  # as the cache keeps it (cache-min-negative-ttl)
                ttl = max(ttl, settings.min_negative_ttl_s)
                # The zone's SOA cached by an earlier negative answer stays (same data): this
                # answer already shows it counted down, as every later one from the cache will.
                left = self.cache.negative_soa_left(soa)
                if left is not None:
                    ttl = min(ttl, left)
            authority = (soa.with_ttl(ttl),)
            over_soa = [rr for rr in signatures
                        if rr.name == soa.name and rr.rtype == RRType.RRSIG
                        and covered_type(rr) == RRType.SOA]
            # The SOA's RRSIGs go with it into the authority section, same TTL.
            denial = [rr.with_ttl(ttl) for rr in over_soa] + [
                rr for rr in denial if rr not in over_soa]
            signatures = [rr for rr in signatures if rr not in over_soa]
        return Outcome(rcode=rcode, answer=tuple(chain), authority=authority,
                       security=security, signatures=tuple(signatures), denial=tuple(denial))

    def _as_cached(self, chain: list[Record]) -> tuple[Record, ...] | None:
        """`chain` with the TTLs the cache keeps, if any is shorter (None: all the same)."""
        kept = []
        for rr in chain:
            info = self.cache.rrset_info(rr.name, rr.rtype, rr.rclass)
            clamped = info is not None and info.original_ttl < rr.ttl
            kept.append(rr.with_ttl(info.ttl_left) if clamped and info else rr)
        return tuple(kept) if kept != chain else None

    def _addresses_for_ns(self, chain: list[Record], depth: int) -> tuple[Record, ...]:
        """For an NS answer, the cached addresses of those servers: what a client asking
        for NS will ask next (RFC 1034 §3.7 additional section processing)."""
        if depth > 0 or not self.settings.ns_addresses_in_answer:
            return ()
        return tuple(rr for ns in chain if ns.rtype == RRType.NS
                     for rtype in (RRType.A, RRType.AAAA)
                     for rr in self.cache.rrset(ns.target, rtype) or ())

    def _referral_from_cache(self, question: Question, chain: list[Record]) -> Outcome:
        """What the cache knows of the way to `question`: the closest cached zone cut."""
        cut = self.cache.closest_delegation(question.name)
        if cut is None:
            return Outcome(rcode=Rcode.NOERROR, answer=tuple(chain))
        ns_set = self.cache.rrset(cut.zone, RRType.NS) or ()
        glue = tuple(rr for ns in cut.servers for rtype in (RRType.A, RRType.AAAA)
                     for rr in self.cache.rrset(ns.name, rtype) or ())
        return Outcome(rcode=Rcode.NOERROR, answer=tuple(chain), authority=ns_set,
                       additional=glue)

    def _clamped(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        """Answer TTLs as the cache would keep them (cache-min-ttl, cache-max-ttl), so the
        first answer and the cached ones agree."""
        low, high = self.cache.settings.min_ttl_s, self.cache.settings.max_ttl_s
        if all(low <= rr.ttl <= high for rr in records):
            return records  # the common case: nothing to copy, and nothing to replace
        return tuple(rr if low <= rr.ttl <= high else rr.with_ttl(max(low, min(rr.ttl, high)))
                     for rr in records)

    def _from_cache(self, question: Question, depth: int) -> Classified | None:
        """A cached answer, CNAME or negative answer for `question`, if live."""
        # RFC 2181 §5.4.1: glue and referral NS sets may steer our own lookups but are
        # never given to a client as an answer.
        min_rank = Rank.ANSWER if depth == 0 else Rank.ADDITIONAL
        if self._dnssec is not None:
            return self._signed_from_cache(question, depth, min_rank)
        rrset = self.cache.rrset(question.name, question.rtype, question.rclass, min_rank=min_rank)
        if rrset:
            self._cache_event(question, depth, "answer", rrset[0].ttl)
            return Classified(kind=ResponseKind.ANSWER, answer=rrset)
        if question.rtype != RRType.CNAME:
            cname = self.cache.rrset(question.name, RRType.CNAME, question.rclass,
                                     min_rank=min_rank)
            if cname:
                self._cache_event(question, depth, "cname", cname[0].ttl)
                return Classified(kind=ResponseKind.CNAME, answer=cname, target=cname[0].target)
        # An NXDOMAIN above a configured zone says nothing of it: the operator's zone wins.
        within = self._configured_zone(question.name) if self.state.configured_zones else "."
        negative = self.cache.negative(question, within=within)
        if negative is not None:
            nxdomain = negative.rcode == Rcode.NXDOMAIN
            kind = ResponseKind.NXDOMAIN if nxdomain else ResponseKind.NODATA
            ttl = negative.soa.ttl if negative.soa else 0
            self._cache_event(question, depth, kind.value, ttl)
            return Classified(kind=kind, soa=negative.soa)
        return None

    def _signed_from_cache(self, question: Question, depth: int,
                           min_rank: Rank) -> Classified | None:
        """`_from_cache` with the RRSIGs, NSEC proofs and security kept in the cache."""
        found = self.cache.signed_rrset(question.name, question.rtype, question.rclass,
                                        min_rank=min_rank)
        if found is not None:
            self._cache_event(question, depth, "answer", found.records[0].ttl)
            return Classified(kind=ResponseKind.ANSWER, answer=found.records,
                              signatures=found.rrsigs, denial=found.proof,
                              security=found.security)
        if question.rtype != RRType.CNAME:
            cname = self.cache.signed_rrset(question.name, RRType.CNAME, question.rclass,
                                            min_rank=min_rank)
            if cname is not None:
                self._cache_event(question, depth, "cname", cname.records[0].ttl)
                return Classified(kind=ResponseKind.CNAME, answer=cname.records,
                                  target=cname.records[0].target, signatures=cname.rrsigs,
                                  denial=cname.proof, security=cname.security)
        # An NXDOMAIN above a configured zone says nothing of it: the operator's zone wins.
        within = self._configured_zone(question.name) if self.state.configured_zones else "."
        aggressive = self._validating and self._dnssec is not None and (
            self._dnssec.aggressive_nsec)
        negative = self.cache.negative(question, within=within)
        expanded = self.cache.synthesized_answer(question, within=within) if (
            aggressive and negative is None) else None
        if expanded is not None:  # RFC 8198 §5.3: from a cached wildcard
            first = expanded.records[0]
            is_cname = first.rtype == RRType.CNAME and question.rtype != RRType.CNAME
            self._cache_event(question, depth, "cname" if is_cname else "answer", first.ttl)
            return Classified(kind=ResponseKind.CNAME if is_cname else ResponseKind.ANSWER,
                              answer=expanded.records,
                              target=first.target if is_cname else None,
                              signatures=expanded.rrsigs, denial=expanded.proof,
                              security=Security.SECURE)
        if negative is None and aggressive:
            negative = self.cache.synthesized_negative(question, within=within)  # RFC 8198
        if negative is None:
            return None
        nxdomain = negative.rcode == Rcode.NXDOMAIN
        kind = ResponseKind.NXDOMAIN if nxdomain else ResponseKind.NODATA
        self._cache_event(question, depth, kind.value, negative.soa.ttl if negative.soa else 0)
        soa_sigs = tuple(rr for rr in negative.proof if rr.rtype == RRType.RRSIG
                         and covered_type(rr) == RRType.SOA)
        return Classified(kind=kind, soa=negative.soa, signatures=soa_sigs,
                          denial=tuple(rr for rr in negative.proof if rr not in soa_sigs),
                          security=negative.security)

    def _cache_event(self, question: Question, depth: int, what: str, ttl: int) -> None:
        if self._observer is not None:
            self._emit(CacheAnswered(
                depth=depth, at_s=self._at_s(), qname=question.name,
                qtype=type_name(question.rtype), what=what, ttl=ttl))


def servfail(failure: Failure, chain: list[Record] | None = None) -> Outcome:
    """SERVFAIL for `failure`, with the chain of CNAMEs followed so far."""
    return Outcome(rcode=Rcode.SERVFAIL, answer=tuple(chain or ()), reason=failure.reason,
                   failure=failure.kind, extended_error=failure.extended_error)
