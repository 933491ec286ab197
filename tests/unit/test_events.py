"""The engine's events: an Outcome copied with its query count keeps every other field."""

from __future__ import annotations

from dataclasses import fields

from resolver.dns.extended_errors import ExtendedError
from resolver.dns.wire import Rcode, Record
from resolver.dnssec.security import Security
from resolver.engine.events import Outcome
from resolver.engine.failure import FailureKind


def test_with_queries_sent_keeps_every_other_field() -> None:
    record = Record("www.example.", 1, 1, 300, "192.0.2.1", None)
    other = Record("www.example.", 1, 1, 60, "192.0.2.2", None)
    # A value unlike the default in every field, so a field left out shows.
    outcome = Outcome(
        rcode=Rcode.SERVFAIL, answer=(record,), authority=(other,), additional=(record, other),
        answer_as_cached=(other,), reason="why", failure=FailureKind.WORK_LIMIT,
        extended_error=next(iter(ExtendedError)), security=Security.SECURE,
        signatures=(other, record), denial=(record, record), queries_sent=1, stale=True,
        refreshing=True)
    default = Outcome(rcode=Rcode.NOERROR)
    assert all(getattr(outcome, f.name) != getattr(default, f.name) for f in fields(Outcome))

    copied = outcome.with_queries_sent(7)

    assert copied.queries_sent == 7
    for f in fields(Outcome):
        if f.name != "queries_sent":
            assert getattr(copied, f.name) == getattr(outcome, f.name), f.name
