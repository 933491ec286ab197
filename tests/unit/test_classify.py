"""Scrubbing and classifying an authoritative server's reply (RFC 1034 §4.2.2, §5.3.3;
RFC 2181 §5.4.1; RFC 2308 §2; RFC 6604; RFC 6672)."""

from __future__ import annotations

from resolver.dns.wire import Message, Question, Rcode, RRType, parse_records
from resolver.engine.classify import Classified, ResponseKind, classify
from resolver.engine.scrub import DropReason, scrub

SOA_EXAMPLE = "example.com. 300 IN SOA ns.example.com. host.example.com. 1 7200 900 1209600 300"


def reply(
    question: Question,
    *,
    answer: str = "",
    authority: str = "",
    additional: str = "",
    aa: bool = True,
    ra: bool = False,
    tc: bool = False,
    rcode: int = Rcode.NOERROR,
) -> Message:
    """A reply message to `question` with sections given in zone-file text."""
    return Message(
        id=1,
        qr=True,
        opcode=0,
        rcode=rcode,
        aa=aa,
        ra=ra,
        tc=tc,
        question=question,
        answer=tuple(parse_records(answer)) if answer else (),
        authority=tuple(parse_records(authority)) if authority else (),
        additional=tuple(parse_records(additional)) if additional else (),
    )


WWW_A = Question("www.example.com.", RRType.A)


def classify_reply(question: Question, message: Message, zone: str, *, forwarding: bool = False,
                   harden_glue: bool = True) -> Classified:
    """The pipeline's two first steps: scrub against `zone`, then classify."""
    scrubbed = scrub(question, message, zone, forwarding=forwarding, harden_glue=harden_glue)
    return classify(question, scrubbed, forwarding=forwarding)


def test_classify_truncated_reply_asks_for_tcp() -> None:
    """TC=1 means: ask the same server again over TCP (RFC 7766 §6.2.1)."""
    result = classify_reply(WWW_A, reply(WWW_A, tc=True), "example.com.")
    assert result.kind is ResponseKind.TRUNCATED


def test_classify_error_rcodes_are_server_errors() -> None:
    """SERVFAIL, REFUSED, NOTIMP and FORMERR say nothing about the name: try another server."""
    for rcode in (Rcode.SERVFAIL, Rcode.REFUSED, Rcode.NOTIMP, Rcode.FORMERR):
        result = classify_reply(WWW_A, reply(WWW_A, rcode=rcode), "example.com.")
        assert result.kind is ResponseKind.SERVER_ERROR
        assert result.reason == rcode.name


def test_classify_authoritative_data_is_an_answer() -> None:
    """Data of the asked type at the name is the answer."""
    message = reply(WWW_A, answer="www.example.com. 300 IN A 192.0.2.1")
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.ANSWER
    assert [rr.address for rr in result.answer] == ["192.0.2.1"]


def test_classify_cname_chain_trusts_only_the_first_link() -> None:
    """Only the question's own CNAME is taken from an authority; the rest is asked for
    in turn, so one server cannot speak for the chain's targets (Unbound trust_cname_chain)."""
    message = reply(
        WWW_A,
        answer=(
            "cdn.example.com. 300 IN A 192.0.2.10\n"
            "www.example.com. 300 IN CNAME step.example.com.\n"
            "step.example.com. 300 IN CNAME cdn.example.com."
        ),
    )
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.CNAME
    assert result.target == "step.example.com."
    assert [(rr.name, rr.rtype) for rr in result.answer] == [("www.example.com.", RRType.CNAME)]


def test_classify_forwarder_chain_with_data_is_one_answer_in_order() -> None:
    """A forwarder resolved the whole chain: it is one answer, chain first."""
    message = reply(
        WWW_A,
        ra=True,
        answer=(
            "cdn.example.com. 300 IN A 192.0.2.10\n"
            "www.example.com. 300 IN CNAME step.example.com.\n"
            "step.example.com. 300 IN CNAME cdn.example.com."
        ),
    )
    result = classify_reply(WWW_A, message, ".", forwarding=True)
    assert result.kind is ResponseKind.ANSWER
    assert [(rr.name, rr.rtype) for rr in result.answer] == [
        ("www.example.com.", RRType.CNAME),
        ("step.example.com.", RRType.CNAME),
        ("cdn.example.com.", RRType.A),
    ]


def test_classify_cname_leaving_the_zone_restarts_at_the_target() -> None:
    """A CNAME to another zone is followed by a new query for the target (RFC 1034 §5.3.3)."""
    message = reply(WWW_A, answer="www.example.com. 300 IN CNAME www.example.net.")
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.CNAME
    assert result.target == "www.example.net."
    assert len(result.answer) == 1


def test_classify_out_of_zone_data_after_a_cname_is_dropped() -> None:
    """Data for a target outside the asked zone is not believed (RFC 2181 §5.4.1)."""
    message = reply(
        WWW_A,
        answer="www.example.com. 300 IN CNAME www.victim.net.\nwww.victim.net. 300 IN A 6.6.6.6",
    )
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.CNAME and result.target == "www.victim.net."
    assert all(rr.rtype == RRType.CNAME for rr in result.answer)
    dropped = scrub(WWW_A, message, "example.com.").dropped
    assert [d.reason for d in dropped if "6.6.6.6" in d.text] == [DropReason.ANSWER_OUT_OF_ZONE]


def test_classify_answer_records_off_the_chain_are_not_returned() -> None:
    """Records in the zone that the question's chain does not reach are not part of the answer."""
    message = reply(
        WWW_A,
        answer="www.example.com. 300 IN A 192.0.2.1\nother.example.com. 300 IN A 192.0.2.66",
    )
    result = classify_reply(WWW_A, message, "example.com.")
    assert [rr.name for rr in result.answer] == ["www.example.com."]


def test_classify_nxdomain_with_soa() -> None:
    """NXDOMAIN with the zone's SOA is a negative answer (RFC 2308 §2.1)."""
    message = reply(WWW_A, authority=SOA_EXAMPLE, rcode=Rcode.NXDOMAIN)
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.NXDOMAIN
    assert result.soa is not None and result.soa.name == "example.com."


def test_classify_nxdomain_after_a_cname_keeps_the_chain() -> None:
    """The rcode describes the last name of the chain; the chain stays (RFC 6604 §2)."""
    question = Question("dangling.example.com.", RRType.A)
    message = reply(
        question,
        answer="dangling.example.com. 300 IN CNAME missing.example.com.",
        authority=SOA_EXAMPLE,
        rcode=Rcode.NXDOMAIN,
    )
    result = classify_reply(question, message, "example.com.")
    assert result.kind is ResponseKind.NXDOMAIN
    assert result.target == "missing.example.com."
    assert [rr.rtype for rr in result.answer] == [RRType.CNAME]


def test_classify_nodata_with_soa() -> None:
    """NOERROR, no answer, the zone's SOA: the name exists without that type (RFC 2308 §2.2)."""
    message = reply(WWW_A, authority=SOA_EXAMPLE)
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.NODATA and result.soa is not None


def test_classify_soa_of_another_zone_is_not_a_negative_proof() -> None:
    """An SOA outside the asked zone cannot prove a negative answer."""
    message = reply(
        WWW_A,
        authority="example.net. 300 IN SOA ns.example.net. h.example.net. 1 2 3 4 300",
        rcode=Rcode.NXDOMAIN,
    )
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.NXDOMAIN and result.soa is None


def test_classify_referral_to_a_child_zone_with_glue() -> None:
    """NS for a zone below the asked one, AA=0: a referral with its glue (RFC 1034 §4.2.1)."""
    message = reply(
        WWW_A,
        aa=False,
        authority=(
            "example.com. 172800 IN NS ns1.example.com.\nexample.com. 172800 IN NS ns.other.net."
        ),
        additional="ns1.example.com. 172800 IN A 192.0.2.53",
    )
    result = classify_reply(WWW_A, message, "com.")
    assert result.kind is ResponseKind.REFERRAL
    assert result.delegation is not None and result.delegation.zone == "example.com."
    servers = {ns.name: ns.addresses for ns in result.delegation.servers}
    assert servers == {"ns1.example.com.": ("192.0.2.53",), "ns.other.net.": ()}


def test_classify_referral_drops_glue_outside_the_asked_zone() -> None:
    """The org server cannot vouch for an address under net (RFC 2181 §5.4.1, harden-glue)."""
    question = Question("www.glueless.org.", RRType.A)
    message = reply(
        question,
        aa=False,
        authority="glueless.org. 3600 IN NS ns.hosting.net.",
        additional="ns.hosting.net. 3600 IN A 6.6.6.6",
    )
    result = classify_reply(question, message, "org.")
    assert result.kind is ResponseKind.REFERRAL and result.delegation is not None
    assert result.delegation.servers[0].addresses == ()
    dropped = scrub(question, message, "org.").dropped
    assert [d.reason for d in dropped if "6.6.6.6" in d.text] == [DropReason.GLUE_OUT_OF_ZONE]


def test_classify_referral_keeps_out_of_zone_glue_when_not_hardened() -> None:
    """With harden_glue off (Unbound harden-glue: no) out-of-zone glue for the NS names is used."""
    question = Question("www.glueless.org.", RRType.A)
    message = reply(
        question,
        aa=False,
        authority="glueless.org. 3600 IN NS ns.hosting.net.",
        additional="ns.hosting.net. 3600 IN A 192.0.2.53",
    )
    result = classify_reply(question, message, "org.", harden_glue=False)
    assert result.delegation is not None
    assert result.delegation.servers[0].addresses == ("192.0.2.53",)


def test_classify_referral_ignores_additional_records_for_other_names() -> None:
    """Additional records for names that are not the referral's NS are not glue."""
    message = reply(
        WWW_A,
        aa=False,
        authority="example.com. 3600 IN NS ns1.example.com.",
        additional="ns1.example.com. 3600 IN A 192.0.2.53\nwww.bank.com. 3600 IN A 6.6.6.6",
    )
    result = classify_reply(WWW_A, message, "com.")
    assert result.delegation is not None
    assert [ns.name for ns in result.delegation.servers] == ["ns1.example.com."]


def test_classify_referral_upwards_is_lame() -> None:
    """NS for the asked zone itself or above it, without SOA, is an upward referral: lame."""
    upward = reply(WWW_A, aa=False, authority=". 3600 IN NS a.root-servers.net.")
    assert classify_reply(WWW_A, upward, "example.com.").kind is ResponseKind.LAME
    same = reply(WWW_A, aa=False, authority="example.com. 3600 IN NS ns.example.com.")
    assert classify_reply(WWW_A, same, "example.com.").kind is ResponseKind.LAME


def test_classify_referral_sideways_is_lame() -> None:
    """NS for a zone that does not contain the name is not a referral for it."""
    message = reply(WWW_A, aa=False, authority="example.org. 3600 IN NS ns.example.org.")
    assert classify_reply(WWW_A, message, "com.").kind is ResponseKind.LAME


def test_classify_recursive_reply_without_authority_is_lame() -> None:
    """An empty RA=1 AA=0 reply comes from a recursive server, not the zone's (RFC 1034 §4.2.2)."""
    message = reply(WWW_A, aa=False, ra=True)
    assert classify_reply(WWW_A, message, "example.com.").kind is ResponseKind.LAME


def test_classify_entirely_empty_reply_is_ignored_as_lame() -> None:
    """A reply with no record at all, AA or not, proves nothing: the next server is asked
    (Unbound iter_ignore_empty)."""
    for aa in (True, False):
        assert classify_reply(WWW_A, reply(WWW_A, aa=aa), "example.com.").kind is ResponseKind.LAME


def test_classify_reply_with_only_off_question_records_is_nodata() -> None:
    """Records of another type than asked are scrubbed; what remains is a bare NODATA
    (Deckard iter_unexpectedrrtype)."""
    message = reply(WWW_A, aa=False, answer="www.example.com. 300 IN AAAA 2001:db8::1")
    result = classify_reply(WWW_A, message, "example.com.")
    assert result.kind is ResponseKind.NODATA and result.soa is None


def test_classify_authoritative_nodata_with_the_zone_ns_set_is_nodata() -> None:
    """AA=1, no answer, the zone's own NS set and no SOA: NODATA, not an upward referral."""
    message = reply(WWW_A, authority="example.com. 3600 IN NS ns.example.com.")
    assert classify_reply(WWW_A, message, "example.com.").kind is ResponseKind.NODATA


def test_classify_out_of_zone_answer_is_dropped_and_listed() -> None:
    """An answer record outside the asked zone is removed and reported (RFC 2181 §5.4.1)."""
    message = reply(WWW_A, answer="www.example.com. 300 IN A 6.6.6.6", authority=SOA_EXAMPLE)
    result = classify_reply(WWW_A, message, "example.org.")
    assert result.answer == ()
    dropped = scrub(WWW_A, message, "example.org.").dropped
    assert [d.describe() for d in dropped] == [
        "www.example.com.\t300\tIN\tA\t6.6.6.6: answer record outside the zone example.org.",
        f"{SOA_EXAMPLE.replace(' ', chr(9), 4)}: authority record outside the zone example.org."]


def test_classify_dname_synthesises_the_cname() -> None:
    """A DNAME rewrites names below its owner (RFC 6672 §2.2): the DNAME and the CNAME it
    implies are the answer's first link, and resolution continues at the new name."""
    question = Question("www.old.example.com.", RRType.A)
    message = reply(
        question,
        answer=(
            "old.example.com. 300 IN DNAME new.example.com.\n"
            "www.new.example.com. 300 IN A 192.0.2.80"
        ),
    )
    result = classify_reply(question, message, "example.com.")
    assert result.kind is ResponseKind.CNAME
    assert [(rr.name, rr.rtype) for rr in result.answer] == [
        ("old.example.com.", RRType.DNAME),
        ("www.old.example.com.", RRType.CNAME),
    ]
    assert result.answer[1].target == "www.new.example.com."
    assert result.target == "www.new.example.com."


def test_classify_cname_question_takes_the_cname_as_the_answer() -> None:
    """Asking for the CNAME type gets the CNAME itself, not its target."""
    question = Question("www.example.com.", RRType.CNAME)
    message = reply(
        question,
        answer=(
            "www.example.com. 300 IN CNAME cdn.example.com.\ncdn.example.com. 300 IN A 192.0.2.1"
        ),
    )
    result = classify_reply(question, message, "example.com.")
    assert result.kind is ResponseKind.ANSWER
    assert [rr.rtype for rr in result.answer] == [RRType.CNAME]


def test_classify_cname_loop_inside_one_forwarded_reply_ends() -> None:
    """a -> b -> a in one forwarder reply ends without an answer; the target is on the loop."""
    question = Question("a.example.com.", RRType.A)
    message = reply(
        question,
        ra=True,
        answer=(
            "a.example.com. 300 IN CNAME b.example.com.\nb.example.com. 300 IN CNAME a.example.com."
        ),
    )
    result = classify_reply(question, message, ".", forwarding=True)
    assert result.kind is ResponseKind.CNAME
    assert result.target == "a.example.com."


def test_classify_referral_from_a_forwarder_is_lame() -> None:
    """A forwarder must recurse; a referral from it is useless."""
    message = reply(WWW_A, aa=False, ra=True, authority="example.com. 3600 IN NS ns.example.com.")
    result = classify_reply(WWW_A, message, "com.", forwarding=True)
    assert result.kind is ResponseKind.LAME


def test_classify_forwarder_answer_for_any_zone_is_accepted() -> None:
    """A forwarder answers for the whole tree, so nothing is out of its bailiwick."""
    message = reply(
        WWW_A,
        aa=False,
        ra=True,
        answer=(
            "www.example.com. 300 IN CNAME www.example.net.\nwww.example.net. 300 IN A 192.0.2.7"
        ),
    )
    result = classify_reply(WWW_A, message, "example.com.", forwarding=True)
    assert result.kind is ResponseKind.ANSWER and len(result.answer) == 2
