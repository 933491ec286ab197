"""MATCH rules (README §3.4) and the CHECK_ANSWER profiles (README §3.8).

Everything here returns a list of human-readable mismatches; an empty list means "matches".
Records compare as multisets of single RRs: owner case-insensitive, RDATA in canonical form
(embedded names case-insensitive, RFC 4034 §6.2), TTL only when the file asks (`MATCH ttl`).

* Deckard profile (Deckard files): every MATCH element as Deckard defines it; `all` expands to
  `opcode qtype qname flags rcode answer authority additional`.
* testbound-relaxed profile (unbound files): `all` compares opcode, rcode, flags and question
  exactly and the sections as multisets; with `minimal-responses: no` both messages are first
  projected to minimal form (README §3.8 item 3). EDNS is ignored unless asked for.
* Sanity checks in every profile: the answer echoes the query's ID and question (§3.8 item 4).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

import dnslib

from tests.replay.messages import MessageView, flags_text, rcode_text
from tests.replay.rplconfig import Dialect

__all__ = ["answer_mismatches", "match_mismatches", "project_minimal", "rr_key"]

_DECKARD_ALL = ("opcode", "qtype", "qname", "flags", "rcode", "answer", "authority",
                "additional")
_SECTIONS = ("answer", "authority", "additional")
#: Types whose RDATA embeds domain names compared case-insensitively (RFC 4034 §6.2).
_NAME_TYPES = {"NS", "MD", "MF", "CNAME", "SOA", "MB", "MG", "MR", "PTR", "MINFO", "MX", "RP",
               "AFSDB", "RT", "PX", "KX", "SRV", "DNAME", "NSEC"}
_NEGATIVE_PROOF = {"SOA", "NSEC", "NSEC3"}
NSID_OPTION = 3  # RFC 5001


def _rdata_key(rr: dnslib.RR) -> object:
    type_name = dnslib.QTYPE.get(rr.rtype)
    rd = rr.rdata
    if type_name == "RRSIG" and isinstance(rd, dnslib.RRSIG):
        return (rd.covered, rd.algorithm, rd.labels, rd.orig_ttl, rd.sig_exp, rd.sig_inc,
                rd.key_tag, str(rd.name).lower(), bytes(rd.sig))
    if type_name in _NAME_TYPES and type(rd) is not dnslib.RD:
        return rd.toZone().lower()
    try:
        buffer = dnslib.DNSBuffer()
        rd.pack(buffer)
        return bytes(buffer.data)
    except Exception:  # an RDATA dnslib cannot re-pack still compares by its text
        return repr(rd)


def rr_key(rr: dnslib.RR, *, with_ttl: bool = False) -> tuple[object, ...]:
    """Identity of one RR for multiset comparison."""
    key = (str(rr.rname).lower(), int(rr.rtype), int(rr.rclass), _rdata_key(rr))
    return (*key, rr.ttl) if with_ttl else key


def _rr_text(rr: dnslib.RR) -> str:
    return " ".join(rr.toZone().split())


def _section_diff(name: str, expected: Iterable[dnslib.RR], actual: Iterable[dnslib.RR],
                  *, with_ttl: bool) -> list[str]:
    expected, actual = list(expected), list(actual)
    want_counts = Counter(rr_key(rr, with_ttl=with_ttl) for rr in expected)
    have_counts = Counter(rr_key(rr, with_ttl=with_ttl) for rr in actual)
    texts = {rr_key(rr, with_ttl=with_ttl): _rr_text(rr) for rr in [*expected, *actual]}
    missing = want_counts - have_counts
    extra = have_counts - want_counts
    if not missing and not extra:
        return []
    lines = [f"{name} section differs{' (TTLs compared)' if with_ttl else ''}:"]
    lines += [f"    missing:    {texts[k]}" for k in missing.elements()]
    lines += [f"    unexpected: {texts[k]}" for k in extra.elements()]
    return ["\n".join(lines)]


def _covered(rr: dnslib.RR) -> str:
    if dnslib.QTYPE.get(rr.rtype) == "RRSIG" and isinstance(rr.rdata, dnslib.RRSIG):
        return str(dnslib.QTYPE.get(rr.rdata.covered))
    return str(dnslib.QTYPE.get(rr.rtype))


def project_minimal(authority: Iterable[dnslib.RR]) -> list[dnslib.RR]:
    """AUTHORITY as `minimal-responses: yes` would send it: only negative-answer proofs."""
    return [rr for rr in authority if _covered(rr) in _NEGATIVE_PROOF]


def _qname_equal(expected: str | None, actual: str | None, dialect: Dialect) -> bool:
    if expected is None or actual is None:
        return expected == actual
    # testbound compares presentation strings (README §3.4); Deckard ignores case.
    if dialect is Dialect.TESTBOUND:
        return expected == actual
    return expected.lower() == actual.lower()


def _is_subdomain(child: str | None, parent: str | None, dialect: Dialect) -> bool:
    if child is None or parent is None:
        return False
    if dialect is Dialect.DECKARD:
        child, parent = child.lower(), parent.lower()
    return parent == "." or child == parent or child.endswith("." + parent)


def _question_key(message: MessageView) -> list[tuple[str, int, int]]:
    return [(str(q.qname).lower(), int(q.qtype), int(q.qclass)) for q in message.question]


def _soa_serial(message: MessageView) -> int | None:
    for rr in message.authority:
        if isinstance(rr.rdata, dnslib.SOA):
            return int(rr.rdata.times[0])
    return None


def match_mismatches(elements: Iterable[str], expected: MessageView, actual: MessageView, *,
                     tcp: bool, dialect: Dialect, ignore_ede: bool = False) -> list[str]:
    """Evaluate MATCH elements of an entry (`expected`) against a message (README §3.4)."""
    elements = set(elements)
    if dialect is Dialect.DECKARD and "all" in elements:
        elements |= set(_DECKARD_ALL)
        elements.discard("all")
    with_ttl = "ttl" in elements and dialect is Dialect.TESTBOUND
    problems: list[str] = []
    for element in sorted(elements):
        problems += _element(element, expected, actual, tcp=tcp, dialect=dialect,
                             with_ttl=with_ttl, ignore_ede=ignore_ede)
    return problems


def _element(element: str, expected: MessageView, actual: MessageView, *, tcp: bool,
             dialect: Dialect, with_ttl: bool, ignore_ede: bool) -> list[str]:
    def differs(what: str, want: object, have: object) -> list[str]:
        return [] if want == have else [f"{what}: expected {want}, got {have}"]

    if element in _SECTIONS and actual.error is not None:
        return [f"{element}: message could not be decoded ({actual.error})"]
    if element == "opcode":
        return differs("opcode", expected.opcode, actual.opcode)
    if element == "qtype":
        return differs("qtype", dnslib.QTYPE.get(expected.qtype), dnslib.QTYPE.get(actual.qtype))
    if element == "qname":
        ok = _qname_equal(expected.qname, actual.qname, dialect)
        return [] if ok else [f"qname: expected {expected.qname}, got {actual.qname}"]
    if element == "qcase":
        return differs("qname (case-sensitive)", expected.qname, actual.qname)
    if element == "subdomain":
        ok = _is_subdomain(actual.qname, expected.qname, dialect)
        return [] if ok else [f"qname {actual.qname} is not at or below {expected.qname}"]
    if element == "question":
        if dialect is Dialect.TESTBOUND:
            return differs("question", _question_key(expected), _question_key(actual))
        return (_element("qtype", expected, actual, tcp=tcp, dialect=dialect, with_ttl=False,
                         ignore_ede=ignore_ede)
                + _element("qname", expected, actual, tcp=tcp, dialect=dialect, with_ttl=False,
                           ignore_ede=ignore_ede))
    if element == "flags":
        return differs("flags", flags_text(expected.flags), flags_text(actual.flags))
    if element == "rcode":
        return differs("rcode", rcode_text(expected.rcode), rcode_text(actual.rcode))
    if element in _SECTIONS:
        return _section_diff(element, getattr(expected, element), getattr(actual, element),
                             with_ttl=with_ttl)
    if element in ("all", "all_noedns"):  # testbound: the whole message, in order
        return _testbound_all(expected, actual, with_ttl=with_ttl,
                              edns=element == "all")
    if element == "ttl":
        return []  # a modifier of answer/all
    if element == "edns":
        want = None if expected.edns is None else (expected.edns.version, expected.edns.payload)
        have = None if actual.edns is None else (actual.edns.version, actual.edns.payload)
        return differs("EDNS (version, payload)", want, have)
    if element == "nsid":
        def nsid(m: MessageView) -> list[bytes]:
            return [d for c, d in (m.edns.options if m.edns else ()) if c == NSID_OPTION]
        return differs("NSID", nsid(expected), nsid(actual))
    if element == "DO":
        return [] if actual.do else ["DO bit not set"]
    if element == "noedns":
        return [] if actual.edns is None else ["has an OPT record (noedns expected)"]
    if element == "ednsdata":
        want_rdata = expected.edns.rdata if expected.edns else None
        return differs("EDNS data", want_rdata, actual.edns.rdata if actual.edns else None)
    if element in ("TCP", "UDP"):
        return differs("transport", element, "TCP" if tcp else "UDP")
    if element.startswith("ede="):
        codes = actual.edns.ede_codes() if actual.edns else ()
        wanted = element.removeprefix("ede=")
        if ignore_ede or (codes and (wanted == "any" or int(wanted) in codes)):
            return []
        return [f"EDE {wanted} expected, got {list(codes) or 'none'}"]
    if element.startswith("serial="):
        return differs("IXFR serial", int(element.removeprefix("serial=")), _soa_serial(actual))
    return [f"MATCH element {element!r} is not supported by the harness"]


def _testbound_all(expected: MessageView, actual: MessageView, *, with_ttl: bool,
                   edns: bool) -> list[str]:
    """testbound-exact `all`: header, counts and sections in order, TTLs only if asked."""
    def ordered(rrs: Iterable[dnslib.RR]) -> list[tuple[object, ...]]:
        return [rr_key(rr, with_ttl=with_ttl) for rr in rrs]

    problems = []
    if (expected.opcode, expected.rcode, expected.flags) != (actual.opcode, actual.rcode,
                                                             actual.flags):
        problems.append("header (opcode, rcode, flags) differs")
    if _question_key(expected) != _question_key(actual):
        problems.append("question section differs")
    for name in _SECTIONS:
        if ordered(getattr(expected, name)) != ordered(getattr(actual, name)):
            problems.append(f"{name} section differs (in order)")
    if edns and (expected.edns is None) != (actual.edns is None):
        problems.append("EDNS presence differs")
    return problems


def _sanity(answer: MessageView, query: MessageView | None, expected: MessageView) -> list[str]:
    if query is None or len(query.wire) < 2:
        return []
    problems = []
    if answer.id != query.id:
        problems.append(f"answer ID {answer.id} does not echo query ID {query.id}")
    if query.question and expected.question and answer.error is None:
        sent = [(str(q.qname), int(q.qtype), int(q.qclass)) for q in query.question]
        got = [(str(q.qname), int(q.qtype), int(q.qclass)) for q in answer.question]
        if sent != got:
            problems.append(f"answer question {got} does not echo the query's {sent}")
    return problems


def answer_mismatches(elements: Iterable[str], expected: MessageView, answer: MessageView,
                      query: MessageView | None, *, dialect: Dialect, tcp: bool,
                      full_sections: bool = False, ignore_ede: bool = False) -> list[str]:
    """CHECK_ANSWER: the profile of the dialect (README §3.8) plus the sanity checks."""
    elements = set(elements)
    problems = _sanity(answer, query, expected)
    if dialect is Dialect.DECKARD or not elements & {"all", "all_noedns"}:
        if dialect is Dialect.TESTBOUND and full_sections:
            expected, answer = _minimal(expected), _minimal(answer)
        return problems + match_mismatches(elements, expected, answer, tcp=tcp,
                                           dialect=dialect, ignore_ede=ignore_ede)
    # testbound-relaxed `all` (README §3.8 item 3)
    if full_sections:
        expected, answer = _minimal(expected), _minimal(answer)
    relaxed = {"opcode", "rcode", "flags", "answer", "authority", "additional"}
    rest = elements - {"all", "all_noedns"}
    problems += match_mismatches(relaxed | rest, expected, answer, tcp=tcp, dialect=dialect,
                                 ignore_ede=ignore_ede)
    if answer.error is None and _question_key(expected) != _question_key(answer):
        problems.append(f"question: expected {_question_key(expected)}, "
                        f"got {_question_key(answer)}")
    return problems


def _minimal(message: MessageView) -> MessageView:
    return replace(message, authority=tuple(project_minimal(message.authority)), additional=())
