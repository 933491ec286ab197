"""QNAME minimisation inside one resolution (RFC 9156): which question to ask a zone cut
next, and what the answer to a minimised question means for the walk down the name.

A resolution asks each cut for one label more than the cut's zone (RFC 9156 §2.3), skips the
labels the cache already knows to exist without a cut of their own, and falls back to the
full name where a server breaks on minimised questions (§3). Off for DS questions, which
the parent answers for the full name (RFC 4035 §3.1.4.1).
"""

from __future__ import annotations

from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.classify import Classified, ResponseKind
from resolver.engine.delegation import Delegation
from resolver.engine.iterate import Minimiser, glue_answering, zone_in_answer
from resolver.engine.resolution_core import ResolutionCore
from resolver.engine.scrub import ScrubbedReply

__all__ = ["MinimisedWalk"]


class MinimisedWalk(ResolutionCore):
    """The QNAME-minimisation steps of the walk down a name."""

    def _minimiser(self, is_ds: bool) -> Minimiser:
        """QNAME minimisation as configured (RFC 9156), off for a DS question."""
        return Minimiser(
            enabled=self.settings.qname_minimisation and not is_ds,
            qtype=self.settings.qname_minimisation_qtype,
        )

    def _next_question(self, qmin: Minimiser, question: Question, cut: Delegation) -> Question:
        """What to ask `cut` next: the minimised question (RFC 9156), past the labels the
        cache already knows to exist without a cut of their own."""
        asked = qmin.question_for(question, cut)
        while asked != question and self._exists_without_cut(asked):
            qmin.deeper()  # the cache already knows this label: no need to ask again
            asked = qmin.question_for(question, cut)
        return asked

    def _after_minimised(
        self, question: Question, asked: Question, classified: Classified,
        reply: ScrubbedReply, qmin: Minimiser, depth: int,
    ) -> Classified | Delegation | None:
        """What the answer to a minimised question means for the walk (RFC 9156 §3): a
        new zone cut (an NS answer: the name is a zone apex), the glue that answers a
        name-server lookup at once, or None to go on from the same cut."""
        found = zone_in_answer(asked, classified, reply)
        if found is not None:  # the minimised name is a zone apex
            glue = glue_answering(question, found, reply)
            if glue and depth > 0:
                return Classified(kind=ResponseKind.ANSWER, answer=tuple(glue))
            qmin.new_cut()
            return found
        if classified.kind in (ResponseKind.NODATA, ResponseKind.ANSWER):
            qmin.deeper()  # an empty non-terminal or a name without a cut: go on
        else:
            qmin.stop()  # NXDOMAIN or CNAME for a part of the name: ask in full
        return None

    def _exists_without_cut(self, asked: Question) -> bool:
        """The cache shows data or a NODATA for a minimised name: it exists, and (as the
        cut in use is the closest cached one) it is no zone cut we know of."""
        if asked.rtype != RRType.NS and self.cache.rrset(asked.name, asked.rtype, asked.rclass):
            return True  # (an NS set there would be a cut, not a mere name)
        negative = self.cache.negative(asked)
        return negative is not None and negative.rcode == Rcode.NOERROR
