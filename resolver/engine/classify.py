"""What a scrubbed reply from a server means.

`resolver.engine.scrub` has already removed every record the asked server has no
authority to give (RFC 2181 §5.4.1). `classify` names the reply's kind (answer, referral,
NXDOMAIN, lame...) from what is left; the engine decides what to do with it. Answer
records off the question's CNAME/DNAME chain are never part of the result.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from resolver.dns import names
from resolver.dns.wire import Question, Rcode, Record, RRType, rcode_name
from resolver.dnssec.canonical import owner_label_count
from resolver.dnssec.records import MalformedRdata, Rrsig
from resolver.dnssec.security import Security, Verdict
from resolver.engine.delegation import CutSource, Delegation, delegation_from_records
from resolver.engine.scrub import ScrubbedReply

#: Why an entirely empty reply is set aside: kept as a bare NODATA if no server does better.
EMPTY_REPLY = "empty reply"


class ResponseKind(enum.Enum):
    ANSWER = "answer"  #: data for the question (possibly after a CNAME chain in the same reply)
    CNAME = "cname"  #: the chain leaves this reply: restart at `target`
    REFERRAL = "referral"  #: a delegation closer to the name
    NXDOMAIN = "nxdomain"  #: the name does not exist (RFC 8020: nor anything below it)
    NODATA = "nodata"  #: the name exists but not with this type (RFC 2308 §2.2)
    LAME = "lame"  #: the server is not authoritative for the zone we asked (RFC 1034 §4.2.2)
    SERVER_ERROR = "server-error"  #: SERVFAIL, REFUSED, NOTIMP, FORMERR...
    TRUNCATED = "truncated"  #: TC=1: ask again over TCP (RFC 7766 §6.2.1)
    YXDOMAIN = "yxdomain"  #: a DNAME substitution would be too long (RFC 6672 §2.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Classified:
    kind: ResponseKind
    #: ANSWER/CNAME: the chain and final data, in order; NXDOMAIN/NODATA: the chain so far.
    answer: tuple[Record, ...] = ()
    #: NXDOMAIN/NODATA: the SOA (if the server sent one in its zone).
    soa: Record | None = None
    #: CNAME: where resolution continues.
    target: str | None = None
    #: REFERRAL: the new zone cut.
    delegation: Delegation | None = None
    reason: str = ""
    #: DNSSEC (RFC 4035 §3.1): the RRSIGs over the RRsets of `answer` and over `soa`.
    signatures: tuple[Record, ...] = ()
    #: NSEC/NSEC3 records and their RRSIGs from the authority section: the proof of an
    #: NXDOMAIN or NODATA, of a wildcard expansion, or of a referral's missing DS.
    denial: tuple[Record, ...] = ()
    #: REFERRAL: the DS RRset of the new zone and its RRSIGs (RFC 4035 §3.1.4).
    ds: tuple[Record, ...] = ()
    #: Set by validation (engine.validation); None: not validated.
    security: Security | None = None
    #: The validator's verdict (zone, reason and its RFC 8914 code, detail).
    verdict: Verdict | None = None


def _in_zone(record: Record, zone: str) -> bool:
    return names.is_subdomain(record.name, zone)


def classify(
    question: Question,
    reply: ScrubbedReply,
    *,
    forwarding: bool = False,
    accept_recursive: bool = False,
    dnssec: bool = False,
) -> Classified:
    """Kind of `reply` to `question`, scrubbed against the zone asked (`reply.zone`);
    with `dnssec`, the records the validator needs are set apart in typed fields."""
    classified = _classify(question, reply, forwarding=forwarding,
                           accept_recursive=accept_recursive)
    if not dnssec or not reply.has_dnssec_records:
        return classified
    return with_dnssec_records(classified, reply)


_DENIAL_TYPES = frozenset((RRType.NSEC, RRType.NSEC3))


def covered_type(rrsig: Record) -> int | None:
    """The type an RRSIG record covers, or None when its RDATA does not read."""
    try:
        return Rrsig.from_record(rrsig).type_covered
    except MalformedRdata:
        return None


def is_wildcard_expansion(owner: str, rrsigs: Sequence[Record]) -> bool:
    """Whether an RRSIG over the RRset at `owner` counts fewer labels than the owner has:
    the RRset was expanded from a wildcard (RFC 4034 §3.1.3, RFC 4035 §5.3.4)."""
    for rrsig in rrsigs:
        try:
            if Rrsig.from_record(rrsig).labels < owner_label_count(owner):
                return True
        except MalformedRdata:
            continue
    return False


def with_dnssec_records(classified: Classified, reply: ScrubbedReply) -> Classified:
    """The RRSIGs over what `classified` keeps, the NSEC/NSEC3 proof and a referral's DS."""
    kind = classified.kind
    if kind in (ResponseKind.LAME, ResponseKind.SERVER_ERROR, ResponseKind.TRUNCATED):
        return classified
    wanted = {(rr.name, rr.rtype) for rr in classified.answer}
    if classified.soa is not None:
        wanted.add((classified.soa.name, RRType.SOA))
    ds: list[Record] = []
    if kind is ResponseKind.REFERRAL and classified.delegation is not None:
        cut = classified.delegation.zone
        ds = [rr for rr in reply.authority if rr.rtype == RRType.DS and rr.name == cut]
        if ds:
            wanted.add((cut, RRType.DS))
    proof = [rr for rr in reply.authority if rr.rtype in _DENIAL_TYPES]
    wanted.update((rr.name, rr.rtype) for rr in proof)
    signatures: list[Record] = []
    for rr in (*reply.answer, *reply.authority):
        if rr.rtype == RRType.RRSIG and any(name == rr.name for name, _ in wanted):
            covered = covered_type(rr)
            if covered is not None and (rr.name, covered) in wanted:
                signatures.append(rr)
    proof_names = {(rr.name, rr.rtype) for rr in proof}
    denial = proof + [rr for rr in signatures if (rr.name, covered_type(rr)) in proof_names]
    ds_sigs = [rr for rr in signatures if ds and rr.name == ds[0].name
               and covered_type(rr) == RRType.DS]
    data_sigs = [rr for rr in signatures if rr not in denial and rr not in ds_sigs]
    return replace(classified, signatures=tuple(data_sigs), denial=tuple(denial),
                   ds=tuple(ds + ds_sigs))


def _classify(
    question: Question,
    reply: ScrubbedReply,
    *,
    forwarding: bool,
    accept_recursive: bool,
) -> Classified:
    if reply.tc:
        return Classified(kind=ResponseKind.TRUNCATED, reason="TC=1")
    if reply.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN, Rcode.YXDOMAIN):
        return Classified(kind=ResponseKind.SERVER_ERROR, reason=rcode_name(reply.rcode))
    if forwarding and not reply.ra and _refers(reply):
        # A referral from a "forwarder" that does not recurse is of no use to us; a reply
        # without RA that answers or denies is used (Unbound does not look at RA).
        return Classified(kind=ResponseKind.SERVER_ERROR,
                          reason="a referral without RA: the forwarder does not recurse")
    zone = reply.zone
    if reply.rcode == Rcode.YXDOMAIN:
        chain = tuple(rr for rr in reply.answer if rr.rtype == RRType.DNAME
                      and names.is_subdomain(question.name, rr.name))
        if not chain:
            return Classified(kind=ResponseKind.SERVER_ERROR, reason="YXDOMAIN without a DNAME")
        return Classified(kind=ResponseKind.YXDOMAIN, answer=chain)
    # A forwarder resolved the whole chain for us: it is the one source we have.
    answer_chain, target, final = _follow_chain(question, reply, trust_chain=forwarding)
    soa = _negative_soa(reply, target)

    recursive_lame = reply.ra and not reply.aa and not forwarding and not accept_recursive
    if answer_chain and recursive_lame:
        # A recursive server answering from its cache where we expected an authority
        # (Unbound's RESPONSE_TYPE_REC_LAME): its data is not trusted.
        return Classified(
            kind=ResponseKind.LAME, reason="recursive reply without authority (RA=1, AA=0)"
        )
    if final:
        return Classified(kind=ResponseKind.ANSWER, answer=answer_chain)
    if reply.rcode == Rcode.NXDOMAIN:  # RFC 6604 §2: about the last name of the chain
        return Classified(kind=ResponseKind.NXDOMAIN, answer=answer_chain, soa=soa,
                          target=target)
    if answer_chain:
        if soa is not None:
            return Classified(kind=ResponseKind.NODATA, answer=answer_chain, soa=soa,
                              target=target)
        return Classified(kind=ResponseKind.CNAME, answer=answer_chain, target=target)
    referral = _referral(reply, zone, question.name)
    if referral is not None:
        if forwarding:
            return Classified(kind=ResponseKind.LAME, reason="referral from a forwarder")
        return Classified(kind=ResponseKind.REFERRAL, delegation=referral)
    if _refers_elsewhere(reply, zone, question.name) and soa is None:
        return Classified(kind=ResponseKind.LAME, reason="referral upwards or sideways")
    if not forwarding and not reply.answer and not reply.authority:
        # Not a record in sight, not even the SOA a NODATA carries (RFC 2308 §2.2): a
        # broken server; the next one is asked (Unbound iter_ignore_empty).
        return Classified(kind=ResponseKind.LAME, reason=EMPTY_REPLY)
    if recursive_lame and soa is None:
        return Classified(
            kind=ResponseKind.LAME, reason="recursive reply without authority (RA=1, AA=0)"
        )
    return Classified(kind=ResponseKind.NODATA, soa=soa)


def _follow_chain(
    question: Question, reply: ScrubbedReply, *, trust_chain: bool
) -> tuple[tuple[Record, ...], str, bool]:
    """Walk the answer section from the question name along CNAME/DNAME records.

    Returns (records on the chain plus final data, the name where the chain ends,
    whether final data for the question type was found). Records off the chain are
    left out.
    """
    pool = list(reply.answer)
    chain: list[Record] = []
    current = question.name
    seen = {current}
    while True:
        data = [rr for rr in pool if rr.name == current and rr.rtype == question.rtype]
        if data or (question.rtype == RRType.ANY and any(rr.name == current for rr in pool)):
            if question.rtype == RRType.ANY:
                data = [rr for rr in pool if rr.name == current]
            chain.extend(data)
            return tuple(chain), current, True
        dname = _matching_dname(pool, current)
        if dname is not None and question.rtype != RRType.DNAME:
            chain.append(dname)
            synthesized = synthesize_cname(dname, current)
            if synthesized is None:
                return tuple(chain), current, False
            cname_rr = next(
                (rr for rr in pool if rr.name == current and rr.rtype == RRType.CNAME), None
            )
            chain.append(cname_rr if cname_rr is not None else synthesized)
            current = synthesized.target
        else:
            cname = next(
                (rr for rr in pool if rr.name == current and rr.rtype == RRType.CNAME), None
            )
            if cname is None or question.rtype == RRType.CNAME:
                return tuple(chain), current, False
            chain.append(cname)
            current = cname.target
        if not trust_chain:
            # Only the first link is an authority's answer to our question; the rest of a
            # chain is asked for in turn, so that one server cannot speak for the targets
            # (Unbound's trust_cname_chain). Within a zone the cache soon makes it cheap.
            return tuple(chain), current, False
        if current in seen:  # a loop inside one reply; the engine's restart cap ends it
            return tuple(chain), current, False
        seen.add(current)


def _refers(reply: ScrubbedReply) -> bool:
    """A non-authoritative NOERROR with no answer whose authority section is empty or an
    NS set without a SOA: what a server that does not recurse says of others' names."""
    if reply.aa or reply.answer or reply.rcode != Rcode.NOERROR:
        return False
    types = {rr.rtype for rr in reply.authority}
    return not types or (RRType.NS in types and RRType.SOA not in types)


def _matching_dname(pool: list[Record], name: str) -> Record | None:
    for rr in pool:
        if rr.rtype == RRType.DNAME and name != rr.name and names.is_subdomain(name, rr.name):
            return rr
    return None


def synthesize_cname(dname: Record, name: str) -> Record | None:
    """The CNAME a DNAME implies for `name` (RFC 6672 §2.2); None if too long."""
    prefix = name[: -len(dname.name)] if dname.name != "." else name
    target = prefix + dname.target if dname.target != "." else prefix
    if len(target) > 254:
        return None
    from resolver.dns.wire import parse_record

    try:
        return parse_record(f"{name} {dname.ttl} IN CNAME {target}")
    except ValueError:
        return None


def _negative_soa(reply: ScrubbedReply, target: str) -> Record | None:
    for rr in reply.authority:
        if rr.rtype == RRType.SOA and names.is_subdomain(target, rr.name):
            return rr
    return None


def _referral(reply: ScrubbedReply, zone: str, qname: str) -> Delegation | None:
    """A delegation to a zone strictly below `zone` and at or above `qname`, with the glue
    scrubbing kept for its name servers."""
    ns_records = [rr for rr in reply.authority if rr.rtype == RRType.NS]
    if not ns_records or (reply.answer and reply.aa):
        return None
    cut = ns_records[0].name
    if cut == zone or not names.is_subdomain(cut, zone) or not names.is_subdomain(qname, cut):
        return None
    ns_set = [rr for rr in ns_records if rr.name == cut]
    glue = reply.addresses_of({rr.target for rr in ns_set})
    return delegation_from_records(cut, ns_set + glue, source=CutSource.REFERRAL)


def _refers_elsewhere(reply: ScrubbedReply, zone: str, qname: str) -> bool:
    """A referral that does not lead down: upwards, sideways, or to the zone itself.

    The zone's own NS set in an authoritative reply is no referral: it is how many
    servers say NODATA (RFC 2308 §2.2 type 3 without SOA).
    """
    if reply.ns_outside_zone:
        return True
    for rr in reply.authority:
        if rr.rtype != RRType.NS:
            continue
        if rr.name == zone and reply.aa:
            continue
        if rr.name == zone or not names.is_subdomain(qname, rr.name):
            return True
    return False
