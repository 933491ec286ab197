"""Iteration policy, pure: what to ask next and what a reply says about the zone cuts.

Nothing here keeps state between resolutions or performs I/O; the engine calls these
small functions at each step of RFC 1034 §5.3.3 and decides with what they return.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.wire import Message, Question, Rcode, Record, RRType
from resolver.engine.classify import Classified, ResponseKind
from resolver.engine.delegation import CutSource, Delegation, delegation_from_records
from resolver.engine.scrub import ScrubbedReply


def mixed_case(name: str, rng: random.Random) -> str:
    """`name` with the letter case of each letter drawn at random (0x20 randomisation)."""
    return "".join(c.upper() if c.isalpha() and rng.getrandbits(1) else c for c in name)


@dataclass(slots=True)
class Minimiser:
    """QNAME minimisation state while iterating one question (RFC 9156 §3, relaxed mode)."""

    enabled: bool
    qtype: int
    extra_labels: int = 1

    def question_for(self, question: Question, cut: Delegation) -> Question:
        """The full question, or its name cut to `extra_labels` below the zone cut."""
        if not self.enabled or cut.recursion_desired:
            return question
        wanted = names.label_count(cut.zone) + self.extra_labels
        parts = names.labels(question.name)
        if wanted >= len(parts):
            return question
        return Question(".".join(parts[-wanted:]) + ".", self.qtype, question.rclass)

    def deeper(self) -> None:
        self.extra_labels += 1

    def new_cut(self) -> None:
        self.extra_labels = 1

    def stop(self) -> None:
        self.enabled = False


def zone_in_answer(
    asked: Question, classified: Classified, reply: ScrubbedReply
) -> Delegation | None:
    """An NS answer for a minimised name: that name is a zone apex (RFC 9156 §3)."""
    if asked.rtype != RRType.NS or classified.kind is not ResponseKind.ANSWER:
        return None
    ns_set = [rr for rr in classified.answer if rr.rtype == RRType.NS and rr.name == asked.name]
    if not ns_set:
        return None
    glue = reply.addresses_of({rr.target for rr in ns_set})
    found = delegation_from_records(asked.name, ns_set + glue, source=CutSource.MINIMISATION)
    return found if found.has_addresses else None


def from_child_side(question: Question, classified: Classified) -> bool:
    """A DS answer that speaks for the zone named by the question, the child's view, or
    may: a denial without a SOA shows no zone at all (Unbound's "DS too low" test), so the
    parent's own servers are looked up and asked."""
    if classified.kind in (ResponseKind.NODATA, ResponseKind.NXDOMAIN):
        return classified.soa is None or classified.soa.name == question.name
    # No DS owner is an alias at the parent: a CNAME means the child answered.
    return classified.kind is ResponseKind.CNAME


def glue_answering(
    question: Question, delegation: Delegation, reply: ScrubbedReply
) -> list[Record]:
    """Address records in a referral's scrubbed glue that answer `question` itself."""
    if question.rtype not in (RRType.A, RRType.AAAA) or question.name not in delegation.names():
        return []
    return [rr for rr in reply.addresses_of({question.name}) if rr.rtype == question.rtype]


def reply_mismatch(reply: Message, query_id: int, question: Question) -> str:
    """Why `reply` is not the answer to our query (RFC 5452 §9.1), or "" when it is."""
    if not reply.qr:
        return "QR=0"
    if reply.id != query_id:
        return f"id {reply.id} instead of {query_id}"
    if reply.question is None:
        # RFC 6891 §7: a server that does not know EDNS may answer FORMERR without
        # echoing the question; the id still ties it to our query.
        return "" if reply.rcode in (Rcode.FORMERR, Rcode.NOTIMP) else "no question section"
    if reply.question != question:
        return f"question {reply.question} instead of {question}"
    return ""
