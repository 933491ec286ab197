"""Iteration policy: minimised names, reply matching, glue that answers a lookup."""

from __future__ import annotations

import random

from resolver.dns.wire import Message, Question, Rcode, RRType, parse_record
from resolver.engine.delegation import Delegation, NameServer
from resolver.engine.iterate import Minimiser, glue_answering, mixed_case, reply_mismatch
from resolver.engine.scrub import scrub

WWW = Question("www.example.com.", RRType.AAAA)
COM = Delegation(zone="com.", servers=(NameServer("a.gtld-servers.net.", ("192.0.2.1",)),))


def test_minimiser_asks_one_label_below_the_cut_then_one_more_each_step() -> None:
    """RFC 9156 §3: example.com. A to the com servers, then the full question."""
    qmin = Minimiser(enabled=True, qtype=RRType.A)
    assert qmin.question_for(WWW, COM) == Question("example.com.", RRType.A)
    qmin.deeper()
    assert qmin.question_for(WWW, COM) == WWW
    qmin.new_cut()
    assert qmin.question_for(WWW, COM) == Question("example.com.", RRType.A)


def test_minimiser_stopped_or_forwarding_asks_the_full_question() -> None:
    """After a fallback, and towards forwarders (they recurse), the name goes out whole."""
    qmin = Minimiser(enabled=True, qtype=RRType.NS)
    forwarders = Delegation(zone=".", servers=COM.servers, recursion_desired=True)
    assert qmin.question_for(WWW, forwarders) == WWW
    qmin.stop()
    assert qmin.question_for(WWW, COM) == WWW


def test_reply_mismatch_names_what_is_wrong() -> None:
    """A reply is ours only with QR=1, our id and our question (RFC 5452 §9.1)."""
    ours = Message(id=7, qr=True, opcode=0, rcode=Rcode.NOERROR, question=WWW)
    assert reply_mismatch(ours, 7, WWW) == ""
    assert "QR=0" in reply_mismatch(Message(id=7, qr=False, opcode=0, rcode=0, question=WWW),
                                    7, WWW)
    assert "id" in reply_mismatch(ours, 8, WWW)
    other = Message(id=7, qr=True, opcode=0, rcode=0, question=Question("x.com.", RRType.A))
    assert "question" in reply_mismatch(other, 7, WWW)


def test_reply_mismatch_accepts_a_header_only_formerr() -> None:
    """RFC 6891 §7: a server without EDNS may answer FORMERR without the question."""
    formerr = Message(id=7, qr=True, opcode=0, rcode=Rcode.FORMERR)
    assert reply_mismatch(formerr, 7, WWW) == ""
    assert reply_mismatch(Message(id=7, qr=True, opcode=0, rcode=0), 7, WWW)


def test_glue_answering_finds_the_address_asked_for_in_a_referral() -> None:
    """Looking up ns.example.com. and the referral carries its A record: that is the answer."""
    ns = Question("ns.example.com.", RRType.A)
    delegation = Delegation(zone="example.com.", servers=(NameServer("ns.example.com."),))
    glue = parse_record("ns.example.com. 3600 IN A 192.0.2.53")
    referral = Message(id=1, qr=True, opcode=0, rcode=0, additional=(glue,), authority=(
        parse_record("example.com. 3600 IN NS ns.example.com."),))
    reply = scrub(ns, referral, "com.")
    assert glue_answering(ns, delegation, reply) == [glue]
    assert glue_answering(Question("www.example.com.", RRType.A), delegation, reply) == []


def test_mixed_case_changes_only_letter_case() -> None:
    """0x20: the name is the same name (RFC 4343), in a random mix of cases."""
    mixed = mixed_case("www.example-1.com.", random.Random(4))
    assert mixed.lower() == "www.example-1.com."
    assert mixed != mixed.lower()
