"""Scrubbing: the first step after decoding, and the only one that sees the decoded reply.

A server speaks only for the zone we asked it about (its bailiwick). Before anything reads
a reply, `scrub` keeps what that server may say and sets the rest aside with a reason
(RFC 2181 §5.4.1; Unbound's iter_scrub.c):

- records that could not be decoded (their RDATA does not fit the type) and records of
  another class than the question's (RFC 1034 §4.3.2);
- answer and authority records outside the zone asked (a forwarder speaks for every
  zone: its bailiwick is the root);
- additional records that are not the address of a name server named in the reply, and,
  with harden-glue, addresses outside the zone (out-of-zone glue, Unbound harden-glue).

What is left is a `ScrubbedReply`: the header bits the later steps need and three
sections of records that classify, the validator and admission may trust as far as
their rank allows. Nothing downstream reads the decoded `Message` again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Message, Question, Record, RRType


class DropReason(enum.Enum):
    """Why a record of a reply was set aside, shown in traces."""

    MALFORMED = "malformed record"
    OTHER_CLASS = "other class"
    ANSWER_OUT_OF_ZONE = "answer record outside the zone"
    AUTHORITY_OUT_OF_ZONE = "authority record outside the zone"
    GLUE_OUT_OF_ZONE = "glue outside the zone"
    UNSOLICITED_ADDITIONAL = "additional record for no name server of the reply"


@dataclass(frozen=True, slots=True)
class DroppedRecord:
    """One record removed by scrubbing (its text: it may not even decode) and why."""

    text: str
    reason: DropReason
    zone: str

    def describe(self) -> str:
        if self.reason in (DropReason.ANSWER_OUT_OF_ZONE, DropReason.AUTHORITY_OUT_OF_ZONE,
                           DropReason.GLUE_OUT_OF_ZONE):
            return f"{self.text}: {self.reason.value} {self.zone}"
        return f"{self.text}: {self.reason.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrubbedReply:
    """A reply reduced to what its server may speak for, with the header bits that matter."""

    #: The bailiwick the records were checked against ("." for a forwarder).
    zone: str
    rcode: int
    aa: bool
    ra: bool
    tc: bool
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    #: Only addresses of name servers named in the answer or authority section.
    additional: tuple[Record, ...]
    #: An NS record above the zone or beside it was set aside: the server refers us
    #: upwards or sideways, which makes it lame for this zone (RFC 1034 §4.2.2).
    ns_outside_zone: bool
    dropped: tuple[DroppedRecord, ...]

    @property
    def has_dnssec_records(self) -> bool:
        """Whether the answer or authority holds RRSIG, NSEC, NSEC3 or DS records: the
        validator's material (RFC 4035 §3.1), kept here when in zone like any record."""
        return any(rr.rtype in _DNSSEC_TYPES for rr in (*self.answer, *self.authority))

    def addresses_of(self, ns_names: set[str]) -> list[Record]:
        """The A/AAAA records in the additional section for these name server names."""
        return [rr for rr in self.additional if rr.name in ns_names]


_ADDRESS_TYPES = (RRType.A, RRType.AAAA)
_DNSSEC_TYPES = frozenset((RRType.RRSIG, RRType.NSEC, RRType.NSEC3, RRType.DS))


def scrub(question: Question, reply: Message, zone: str, *, forwarding: bool = False,
          harden_glue: bool = True) -> ScrubbedReply:
    """What `reply`, from a server asked about `zone`, may tell us about `question`."""
    bailiwick = "." if forwarding else zone
    dropped = [DroppedRecord(text, DropReason.MALFORMED, bailiwick) for text in reply.malformed]
    answer = _in_zone(_of_class(reply.answer, question.rclass, dropped), bailiwick,
                      DropReason.ANSWER_OUT_OF_ZONE, dropped)
    authority_of_class = _of_class(reply.authority, question.rclass, dropped)
    ns_outside = any(rr.rtype == RRType.NS and not names.is_subdomain(rr.name, bailiwick)
                     for rr in authority_of_class)
    authority = _in_zone(authority_of_class, bailiwick, DropReason.AUTHORITY_OUT_OF_ZONE,
                         dropped)
    ns_targets = {rr.target for rr in (*answer, *authority) if rr.rtype == RRType.NS}
    additional: list[Record] = []
    for rr in _of_class(reply.additional, question.rclass, dropped):
        if rr.rtype not in _ADDRESS_TYPES or rr.name not in ns_targets:
            dropped.append(DroppedRecord(rr.to_text(), DropReason.UNSOLICITED_ADDITIONAL,
                                         bailiwick))
        elif harden_glue and not names.is_subdomain(rr.name, bailiwick):
            dropped.append(DroppedRecord(rr.to_text(), DropReason.GLUE_OUT_OF_ZONE, bailiwick))
        else:
            additional.append(rr)
    return ScrubbedReply(
        zone=bailiwick, rcode=reply.rcode, aa=reply.aa, ra=reply.ra, tc=reply.tc,
        answer=answer, authority=authority, additional=tuple(additional),
        ns_outside_zone=ns_outside, dropped=tuple(dropped),
    )


def _of_class(records: tuple[Record, ...], rclass: int,
              dropped: list[DroppedRecord]) -> tuple[Record, ...]:
    if all(rr.rclass == rclass for rr in records):
        return records
    dropped.extend(DroppedRecord(rr.to_text(), DropReason.OTHER_CLASS, "")
                   for rr in records if rr.rclass != rclass)
    return tuple(rr for rr in records if rr.rclass == rclass)


def _in_zone(records: tuple[Record, ...], zone: str, reason: DropReason,
             dropped: list[DroppedRecord]) -> tuple[Record, ...]:
    if zone == "." or all(names.is_subdomain(rr.name, zone) for rr in records):
        return records
    kept: list[Record] = []
    for rr in records:
        if names.is_subdomain(rr.name, zone):
            kept.append(rr)
        else:
            dropped.append(DroppedRecord(rr.to_text(), reason, zone))
    return tuple(kept)
