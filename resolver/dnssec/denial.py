"""Authenticated denial of existence: what NSEC and NSEC3 records prove.

NSEC: RFC 4034 §4, RFC 4035 §5.4, with RFC 6840 §4.1-4.4 (parent-side NSECs at a
delegation prove nothing below it or about its other types; DNAME likewise). NSEC3:
RFC 5155 §8 (hash §5, closest encloser §8.3, name error §8.4, no data §8.5-8.7, wildcard
answer §8.8, opt-out), with RFC 9276 §3.2: above an iteration limit the proof is not
attempted and the answer is insecure (EDE 27), as Unbound does above 150.

The records given must already be verified (their RRSIGs checked by `signatures`);
these functions only read what they say. Every function returns a `Verdict` whose zone
is the zone the denial comes from.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from resolver.dns import names
from resolver.dns.wire import Record, RRType
from resolver.dnssec.canonical import canonical_name_wire, name_order_key
from resolver.dnssec.records import MalformedRdata, Nsec, Nsec3
from resolver.dnssec.security import Failure, Verdict

__all__ = [
    "DEFAULT_NSEC3_ITERATIONS_LIMIT",
    "nsec3_hash",
    "prove_nodata",
    "prove_nxdomain",
    "prove_wildcard_answer",
    "shows_empty_non_terminal",
]

#: RFC 9276 §3.2: Unbound's val-nsec3-keysize-iterations ends at 150.
DEFAULT_NSEC3_ITERATIONS_LIMIT = 150
#: RFC 5155 §11: hash algorithm 1 is SHA-1, the only one defined.
NSEC3_SHA1 = 1
_OPT_OUT = 0x01


@functools.lru_cache(maxsize=4096)
def nsec3_hash(name: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5155 §5: IH(salt, x, 0) = H(x | salt), IH(k) = H(IH(k-1) | salt).
    Cached: one proof hashes the same few names against every NSEC3 of the reply."""
    digest = hashlib.sha1(canonical_name_wire(name) + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return digest


def prove_nxdomain(qname: str, zone: str, records: Iterable[Record], *,
                   iterations_limit: int = DEFAULT_NSEC3_ITERATIONS_LIMIT) -> Verdict:
    """Whether `records` prove that `qname` does not exist in `zone`, nor a wildcard
    that could have answered for it."""
    denial = _Denial.of(zone, records, iterations_limit)
    if denial.refusal is not None:
        return denial.refusal
    if denial.nsec3:
        return denial.nsec3_name_error(qname)
    return denial.nsec_name_error(qname)


def shows_empty_non_terminal(qname: str, zone: str, records: Iterable[Record]) -> bool:
    """Whether an NSEC of `records` covering `qname` has a next name below it: `qname`
    exists with no data (RFC 4035 §3.1.3.2), whatever rcode the server gave. Signatures
    are not checked here: the NODATA proof that follows checks them."""
    denial = _Denial.of(zone, records, DEFAULT_NSEC3_ITERATIONS_LIMIT)
    if denial.refusal is not None or denial.nsec3:
        return False
    cover = denial._nsec_covering(qname)
    return cover is not None and _strictly_below(cover.next_name, qname)


def prove_nodata(qname: str, qtype: int, zone: str, records: Iterable[Record], *,
                 iterations_limit: int = DEFAULT_NSEC3_ITERATIONS_LIMIT) -> Verdict:
    """Whether `records` prove that `qname` has no data of `qtype` (and no CNAME), directly,
    as an empty non-terminal, or through a wildcard without that type."""
    denial = _Denial.of(zone, records, iterations_limit)
    if denial.refusal is not None:
        return denial.refusal
    if denial.nsec3:
        return denial.nsec3_no_data(qname, qtype)
    return denial.nsec_no_data(qname, qtype)


def prove_wildcard_answer(qname: str, wildcard: str, zone: str, records: Iterable[Record], *,
                          iterations_limit: int = DEFAULT_NSEC3_ITERATIONS_LIMIT) -> Verdict:
    """Whether `records` prove that an answer for `qname` expanded from `wildcard` (known
    from the RRSIG labels field) was rightly expanded: no closer name exists
    (RFC 4035 §5.3.4, RFC 5155 §8.8)."""
    denial = _Denial.of(zone, records, iterations_limit)
    if denial.refusal is not None:
        return denial.refusal
    encloser = names.parent(wildcard)
    if not wildcard.startswith("*.") or not _strictly_below(qname, encloser):
        return Verdict.bogus(Failure.DNSSEC_BOGUS, zone,
                             f"{wildcard} cannot have been expanded to {qname}")
    if denial.nsec3:
        return denial.nsec3_wildcard_answer(qname, encloser)
    return denial.nsec_wildcard_answer(qname, encloser)


def _strictly_below(name: str, ancestor: str) -> bool:
    return name != ancestor and names.is_subdomain(name, ancestor)


def _next_closer(qname: str, encloser: str) -> str:
    """The ancestor of `qname` one label longer than `encloser` (RFC 5155 §1.3)."""
    keep = names.label_count(encloser) + 1
    return ".".join(names.labels(qname)[-keep:]) + "."


def _common_ancestor(a: str, b: str) -> str:
    shared: list[str] = []
    for left, right in zip(reversed(names.labels(a)), reversed(names.labels(b)), strict=False):
        if left != right:
            break
        shared.append(left)
    return ".".join(reversed(shared)) + "." if shared else names.ROOT


#: What spans are made of: canonical name keys (NSEC) or hashes (NSEC3).
_Ordered = TypeVar("_Ordered", bytes, tuple[bytes, ...])


def _in_span(owner: _Ordered, value: _Ordered, after: _Ordered) -> bool:
    """True when `value` falls strictly between an owner and its next name, the span of
    the last record (next name not after the owner) wrapping around the end."""
    if owner < after:
        return owner < value < after
    return value > owner or value < after


def _is_delegation(types: frozenset[int]) -> bool:
    return RRType.NS in types and RRType.SOA not in types


@dataclass(frozen=True, slots=True)
class _Denial:
    """The usable NSEC or NSEC3 records of one zone's reply."""

    zone: str
    nsec: tuple[Nsec, ...]
    nsec3: tuple[Nsec3, ...]
    refusal: Verdict | None

    @classmethod
    def of(cls, zone: str, records: Iterable[Record], iterations_limit: int) -> _Denial:
        nsec: list[Nsec] = []
        nsec3: list[Nsec3] = []
        seen_nsec3 = False
        too_many: int | None = None
        for record in records:
            try:
                if record.rtype == RRType.NSEC and names.is_subdomain(record.name, zone):
                    nsec.append(Nsec.from_record(record))
                elif record.rtype == RRType.NSEC3:
                    seen_nsec3 = True
                    parsed = Nsec3.from_record(record)
                    # RFC 5155 §8.1-8.2: ignore unknown hash algorithms and flags, and
                    # NSEC3 RRs that are not of this zone.
                    if (parsed.zone != zone or parsed.algorithm != NSEC3_SHA1
                            or parsed.flags & ~_OPT_OUT):
                        continue
                    if parsed.iterations > iterations_limit:
                        too_many = max(too_many or 0, parsed.iterations)
                    nsec3.append(parsed)
            except MalformedRdata:
                continue  # a record that does not parse proves nothing
        refusal = None
        if too_many is not None:
            refusal = Verdict.insecure(
                Failure.UNSUPPORTED_NSEC3_ITERATIONS, zone,
                f"NSEC3 iterations {too_many} above the limit {iterations_limit} "
                "(RFC 9276 §3.2)")
        elif seen_nsec3 and not nsec3 and not nsec:
            refusal = Verdict.insecure(None, zone,
                                       "no NSEC3 record of this zone with a known hash algorithm")
        return cls(zone, tuple(nsec), tuple(nsec3), refusal)

    def _missing(self, what: str) -> Verdict:
        return Verdict.bogus(Failure.NSEC_MISSING, self.zone, what)

    def _bogus(self, what: str) -> Verdict:
        return Verdict.bogus(Failure.DNSSEC_BOGUS, self.zone, what)

    # NSEC (RFC 4035 §5.4) -------------------------------------------------------------

    def _nsec_at(self, name: str) -> Nsec | None:
        return next((n for n in self.nsec if n.owner == name), None)

    def _nsec_covering(self, name: str) -> Nsec | None:
        if not names.is_subdomain(name, self.zone):
            return None
        key = name_order_key(name)
        for nsec in self.nsec:
            # The zone's last NSEC has the apex as next name (RFC 4034 §4.1.1): it wraps.
            covered = _in_span(name_order_key(nsec.owner), key, name_order_key(nsec.next_name))
            # RFC 6840 §4.1: a parent-side NSEC at a zone cut, or one at a DNAME, says
            # nothing about the names below its owner.
            blocked = _strictly_below(name, nsec.owner) and (
                _is_delegation(nsec.types) or RRType.DNAME in nsec.types)
            if covered and not blocked:
                return nsec
        return None

    def _nsec_closest_encloser(self, qname: str, cover: Nsec) -> str:
        # RFC 4035 §5.4: the closest encloser is the longer common ancestor of the name
        # with the owner and with the next name of the NSEC that covers it.
        candidates = [_common_ancestor(qname, cover.owner),
                      _common_ancestor(qname, cover.next_name)]
        encloser = max(candidates, key=names.label_count)
        return encloser if names.is_subdomain(encloser, self.zone) else self.zone

    def nsec_name_error(self, qname: str) -> Verdict:
        if self._nsec_at(qname) is not None:
            return self._bogus(f"an NSEC shows {qname} exists")
        cover = self._nsec_covering(qname)
        if cover is None:
            return self._missing(f"no NSEC covers {qname}")
        if _strictly_below(cover.next_name, qname):
            return self._bogus(f"{cover.next_name} exists: {qname} is an empty non-terminal, "
                               f"not absent")
        wildcard = names.wildcard_at(self._nsec_closest_encloser(qname, cover))
        if self._nsec_at(wildcard) is not None:
            return self._bogus(f"{wildcard} exists: {qname} should have been answered")
        if self._nsec_covering(wildcard) is None:
            return self._missing(f"no NSEC covers the wildcard {wildcard}")
        return Verdict.secure(self.zone, f"NSEC proves {qname} and {wildcard} do not exist")

    def nsec_no_data(self, qname: str, qtype: int) -> Verdict:
        match = self._nsec_at(qname)
        if match is not None:
            return self._nsec_types_deny(match, qname, qtype)
        cover = self._nsec_covering(qname)
        if cover is not None and _strictly_below(cover.next_name, qname):
            # An empty non-terminal: nothing at qname, names below it (RFC 4035 §3.1.3.2).
            return Verdict.secure(self.zone, f"NSEC proves {qname} an empty non-terminal")
        if cover is None:
            return self._missing(f"no NSEC matches or covers {qname}")
        wildcard = names.wildcard_at(self._nsec_closest_encloser(qname, cover))
        at_wildcard = self._nsec_at(wildcard)
        if at_wildcard is None:
            return self._missing(f"no NSEC at the wildcard {wildcard}")
        verdict = self._nsec_types_deny(at_wildcard, wildcard, qtype)
        if not verdict.is_secure:
            return verdict
        return Verdict.secure(self.zone, f"NSEC proves {wildcard} has no type {qtype}")

    def _nsec_types_deny(self, nsec: Nsec, name: str, qtype: int) -> Verdict:
        return self._types_deny(nsec.types, name, qtype, f"the NSEC at {name}", "NSEC")

    def _types_deny(self, types: frozenset[int], name: str, qtype: int, record: str,
                    kind: str) -> Verdict:
        """A type bitmap that matches `name` proves NODATA when it lists neither `qtype` nor
        CNAME (RFC 4035 §5.4, RFC 5155 §8.5) and comes from the right side of a cut."""
        if qtype in types or RRType.CNAME in types:
            return self._bogus(f"{record} lists type {qtype} or CNAME")
        problem = _wrong_side(types, name, qtype, self.zone)
        if problem is not None:
            return self._bogus(problem)
        return Verdict.secure(self.zone, f"{kind} proves {name} has no type {qtype}")

    def nsec_wildcard_answer(self, qname: str, encloser: str) -> Verdict:
        cover = self._nsec_covering(qname)
        if cover is None:
            return self._missing(f"no NSEC proves {qname} itself does not exist")
        if self._nsec_closest_encloser(qname, cover) != encloser:
            return self._bogus(f"a name closer to {qname} than {encloser} exists")
        return Verdict.secure(self.zone, f"NSEC proves the wildcard at {encloser} applies")

    # NSEC3 (RFC 5155 §8) --------------------------------------------------------------

    def _hash_of(self, record: Nsec3, name: str) -> bytes:
        return nsec3_hash(name, record.salt, record.iterations)

    def _nsec3_matching(self, name: str) -> Nsec3 | None:
        return next((r for r in self.nsec3 if self._hash_of(r, name) == r.owner_hash), None)

    def _nsec3_covering(self, name: str) -> Nsec3 | None:
        for record in self.nsec3:
            # The last NSEC3 in hash order points back to the first (RFC 5155 §3.1.7).
            if _in_span(record.owner_hash, self._hash_of(record, name), record.next_hash):
                return record
        return None

    def _closest_encloser(self, qname: str) -> tuple[str, Nsec3] | Verdict:
        """RFC 5155 §8.3: the nearest ancestor of `qname` with a matching NSEC3."""
        for candidate in names.ancestors(qname)[1:]:
            if not names.is_subdomain(candidate, self.zone):
                break
            match = self._nsec3_matching(candidate)
            if match is None:
                continue
            if candidate != self.zone and (
                    _is_delegation(match.types) or RRType.DNAME in match.types):
                return self._bogus(f"the closest encloser {candidate} is a zone cut or DNAME")
            return candidate, match
        return self._missing(f"no NSEC3 proves a closest encloser of {qname}")

    def _closest_encloser_proof(self, qname: str) -> tuple[str, str, Nsec3] | Verdict:
        """The closest encloser proof (RFC 5155 §8.3): the encloser, the next closer name and
        the NSEC3 covering it; else the verdict that the proof is missing or broken."""
        found = self._closest_encloser(qname)
        if isinstance(found, Verdict):
            return found
        encloser, _ = found
        cover = self._next_closer_cover(qname, encloser)
        if isinstance(cover, Verdict):
            return cover
        return encloser, _next_closer(qname, encloser), cover

    def _next_closer_cover(self, qname: str, encloser: str) -> Nsec3 | Verdict:
        """The NSEC3 covering the next closer name of `qname` below `encloser`."""
        next_closer = _next_closer(qname, encloser)
        cover = self._nsec3_covering(next_closer)
        if cover is None:
            return self._missing(f"no NSEC3 covers the next closer name {next_closer}")
        return cover

    def nsec3_name_error(self, qname: str) -> Verdict:
        if self._nsec3_matching(qname) is not None:
            return self._bogus(f"an NSEC3 shows {qname} exists")
        proven = self._closest_encloser_proof(qname)
        if isinstance(proven, Verdict):
            return proven
        encloser, next_closer, cover = proven
        wildcard = names.wildcard_at(encloser)
        if self._nsec3_matching(wildcard) is not None:
            return self._bogus(f"{wildcard} exists: {qname} should have been answered")
        if self._nsec3_covering(wildcard) is None:
            return self._missing(f"no NSEC3 covers the wildcard {wildcard}")
        if cover.opt_out:
            # The covered span may hold unsigned delegations: not provably absent
            # (RFC 5155 §9.2; Unbound answers insecure here).
            return Verdict.insecure(None, self.zone,
                                    f"{next_closer} is covered by an opt-out NSEC3")
        return Verdict.secure(self.zone, f"NSEC3 proves {qname} and {wildcard} do not exist")

    def nsec3_no_data(self, qname: str, qtype: int) -> Verdict:
        match = self._nsec3_matching(qname)
        if match is not None:  # §8.5, and §8.6 for DS with a matching NSEC3
            return self._types_deny(match.types, qname, qtype, f"the NSEC3 of {qname}", "NSEC3")
        proven = self._closest_encloser_proof(qname)
        if isinstance(proven, Verdict):
            return proven
        encloser, next_closer, cover = proven
        if qtype == RRType.DS:
            if cover.opt_out:  # §8.6: an unsigned delegation inside an opt-out span
                return Verdict.insecure(None, self.zone,
                                        f"{qname} lies in an opt-out span: unsigned delegation")
            return self._bogus(f"no NSEC3 for {qname} and no opt-out span covers it")
        wildcard = names.wildcard_at(encloser)  # §8.7
        at_wildcard = self._nsec3_matching(wildcard)
        if at_wildcard is None and cover.opt_out:
            # No match and no wildcard, but the next closer name lies in an opt-out span:
            # what is there may be unsigned (RFC 5155 §9.2: no AD; Unbound: insecure).
            return Verdict.insecure(None, self.zone,
                                    f"{next_closer} is covered by an opt-out NSEC3")
        if at_wildcard is None:
            return self._missing(f"no NSEC3 matches {qname} or the wildcard {wildcard}")
        if qtype in at_wildcard.types or RRType.CNAME in at_wildcard.types:
            return self._bogus(f"the NSEC3 of {wildcard} lists type {qtype} or CNAME")
        if cover.opt_out:  # RFC 5155 §9.2, as for a wildcard answer
            return Verdict.insecure(None, self.zone,
                                    f"{next_closer} is covered by an opt-out NSEC3")
        return Verdict.secure(self.zone, f"NSEC3 proves {wildcard} has no type {qtype}")

    def nsec3_wildcard_answer(self, qname: str, encloser: str) -> Verdict:
        cover = self._next_closer_cover(qname, encloser)
        if isinstance(cover, Verdict):
            return cover
        next_closer = _next_closer(qname, encloser)
        if cover.opt_out:  # RFC 5155 §9.2: an opt-out span proves nothing secure
            return Verdict.insecure(None, self.zone,
                                    f"{next_closer} is covered by an opt-out NSEC3")
        return Verdict.secure(self.zone, f"NSEC3 proves the wildcard at {encloser} applies")


def _wrong_side(types: frozenset[int], name: str, qtype: int, zone: str) -> str | None:
    """RFC 6840 §4.4 (and RFC 4035 §5.4): a denial for DS must come from the parent side
    of the cut, any other denial at a cut from the child side."""
    if qtype == RRType.DS and RRType.SOA in types and name != names.ROOT:
        return f"the denial of DS at {name} comes from the child zone's apex"
    if qtype != RRType.DS and _is_delegation(types) and name != zone:
        return f"the denial at {name} comes from the parent side of a zone cut"
    return None

