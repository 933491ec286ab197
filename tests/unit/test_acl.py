"""Access control (Unbound's access-control): who may have queries resolved, and how the
others are turned away. RFC 5358 §4: a resolver is not open by default."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns.decoding import decode
from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.network import Transport
from resolver.server.acl import AccessControl, AclAction, AclRule, parse_network
from resolver.server.handler import QueryHandler
from resolver.server.listener import Client
from tests.support.labnet import FakeClock, LabNetwork, lab_service

QUERY = make_query(Question("www.networkutopia.com.", RRType.A), query_id=0x4242,
                   recursion_desired=True)


def client(ip: str, transport: Transport = Transport.UDP) -> Client:
    return Client(ip=ip, port=40000, transport=transport)


@pytest.mark.parametrize(("ip", "action"), [
    ("127.0.0.1", AclAction.ALLOW),
    ("127.200.3.4", AclAction.ALLOW),
    ("::1", AclAction.ALLOW),
    ("::ffff:127.0.0.1", AclAction.ALLOW),
    ("10.0.0.1", AclAction.REFUSE),
    ("192.0.2.1", AclAction.REFUSE),
    ("2001:db8::1", AclAction.REFUSE),
    ("::2", AclAction.REFUSE),
])
def test_acl_default_allows_only_loopback(ip: str, action: AclAction) -> None:
    """With no rules, loopback clients recurse and everyone else is refused."""
    assert AccessControl().action_for(ip) is action


def test_acl_most_specific_block_wins() -> None:
    """A /16 inside a /8 decides for its own addresses; the /8 for the rest."""
    acl = AccessControl.from_texts(["10.0.0.0/8 refuse", "10.1.0.0/16 allow",
                                    "10.1.2.0/24 deny"])
    assert acl.action_for("10.9.9.9") is AclAction.REFUSE
    assert acl.action_for("10.1.9.9") is AclAction.ALLOW
    assert acl.action_for("10.1.2.3") is AclAction.DENY


def test_acl_rule_for_the_default_block_replaces_the_default() -> None:
    """'127.0.0.0/8 refuse' plus '127.0.0.1/32 allow' allows only 127.0.0.1."""
    acl = AccessControl.from_texts(["127.0.0.0/8 refuse", "127.0.0.1/32 allow"])
    assert acl.action_for("127.0.0.1") is AclAction.ALLOW
    assert acl.action_for("127.0.0.2") is AclAction.REFUSE


def test_acl_later_rule_for_the_same_block_wins() -> None:
    """Two rules for one block: the one given last is in force."""
    acl = AccessControl.from_texts(["192.0.2.0/24 allow", "192.0.2.0/24 deny"])
    assert acl.action_for("192.0.2.7") is AclAction.DENY


def test_acl_ipv6_blocks() -> None:
    """IPv6 rules match IPv6 clients, with the longest prefix first."""
    acl = AccessControl.from_texts(["2001:db8::/32 allow", "2001:db8:bad::/48 deny"])
    assert acl.action_for("2001:db8:1::5") is AclAction.ALLOW
    assert acl.action_for("2001:db8:bad::5") is AclAction.DENY
    assert acl.action_for("2001:db9::1") is AclAction.REFUSE


def test_acl_mapped_ipv4_client_is_judged_as_ipv4() -> None:
    """::ffff:10.1.1.1 from a dual-stack socket meets the IPv4 rules."""
    acl = AccessControl.from_texts(["10.0.0.0/8 allow"])
    assert acl.action_for("::ffff:10.1.1.1") is AclAction.ALLOW


def test_acl_unreadable_client_address_is_refused() -> None:
    """An address that is not an IP address never gets through."""
    assert AccessControl().action_for("not-an-address") is AclAction.REFUSE


def test_acl_without_defaults_and_no_covering_rule_refuses() -> None:
    """defaults=False and no rule for the client: refused, not allowed."""
    acl = AccessControl([AclRule.parse("10.0.0.0/8 allow")], defaults=False)
    assert acl.action_for("127.0.0.1") is AclAction.REFUSE
    assert acl.action_for("10.0.0.1") is AclAction.ALLOW


def test_acl_rule_parse_and_text() -> None:
    """A rule reads 'CIDR ACTION' (action in any case) and prints back the same way."""
    rule = AclRule.parse("  192.0.2.0/24   ReFuse ")
    assert rule.action is AclAction.REFUSE
    assert str(rule) == "192.0.2.0/24 refuse"
    assert str(AclRule.parse("::1 allow")) == "::1/128 allow"


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.0/8", "is not 'CIDR ACTION'"),
    ("10.0.0.0/8 allow extra", "is not 'CIDR ACTION'"),
    ("10.0.0.0/8 permit", "unknown action 'permit'"),
    ("10.1.0.0/8 allow", "has host bits set (did you mean 10.0.0.0/8?)"),
    ("10.0.0.0/33 allow", "is not an IP address or CIDR block"),
    ("example.com allow", "is not an IP address or CIDR block"),
])
def test_acl_rule_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    """A bad rule is a ValueError whose message names the fault."""
    with pytest.raises(ValueError) as error:
        AclRule.parse(text)
    assert message in str(error.value)


def test_acl_parse_network_accepts_a_bare_address() -> None:
    """An address alone is its own /32 or /128 block."""
    assert str(parse_network("192.0.2.1")) == "192.0.2.1/32"


# -- in the handler ---------------------------------------------------------------------


class Lab:
    def __init__(self, rules: list[str]) -> None:
        self.clock = FakeClock()
        self.network = LabNetwork(self.clock)
        self.handler = QueryHandler(lab_service(self.clock, self.network),
                                    access=AccessControl.from_texts(rules))

    def ask(self, wire: bytes, who: Client) -> bytes | None:
        return asyncio.run(self.handler.handle(wire, who))


def test_acl_handler_refused_client_gets_refused_with_its_question_ra_and_ede_18() -> None:
    """A refused client gets REFUSED, id and question echoed, RA set (we do recurse, not for
    it), EDE 18 Prohibited when it speaks EDNS (RFC 8914 §4.19), nothing resolved."""
    lab = Lab(["10.0.0.0/8 refuse"])
    with_edns = make_query(Question("www.networkutopia.com.", RRType.A), query_id=7,
                           edns_udp_size=1232)
    refused = lab.ask(with_edns, client("10.1.2.3"))
    assert refused is not None
    edns = decode(refused).edns
    assert edns is not None and [code for code, _ in edns.options] == [15]
    assert edns.options[0][1][:2] == (18).to_bytes(2, "big")
    reply = lab.ask(QUERY, client("10.1.2.3"))
    assert reply is not None
    message = decode(reply)
    assert message.rcode == Rcode.REFUSED and message.id == 0x4242 and message.ra
    assert message.question == Question("www.networkutopia.com.", RRType.A)
    assert sum(lab.network.received.values()) == 0


def test_acl_handler_denied_client_gets_no_reply() -> None:
    """deny drops the query silently, over UDP and TCP alike."""
    lab = Lab(["192.0.2.0/24 deny"])
    assert lab.ask(QUERY, client("192.0.2.9")) is None
    assert lab.ask(QUERY, client("192.0.2.9", Transport.TCP)) is None
    assert sum(lab.network.received.values()) == 0


def test_acl_handler_allowed_client_is_resolved() -> None:
    """An allowed client outside loopback gets the lab's answer."""
    lab = Lab(["10.0.0.0/8 allow"])
    reply = lab.ask(QUERY, client("10.1.2.3"))
    assert reply is not None
    message = decode(reply)
    assert message.rcode == Rcode.NOERROR
    assert [rr.address for rr in message.answer] == ["212.212.212.2"]


def test_acl_handler_refused_malformed_query_gets_header_only_refused() -> None:
    """A refused client's unreadable query still gets REFUSED, never FORMERR or a parse."""
    lab = Lab([])
    garbage = QUERY[:12] + b"\xff\xff\xff"
    reply = lab.ask(garbage, client("192.0.2.1"))
    assert reply is not None and reply[:2] == QUERY[:2] and reply[3] & 0xF == Rcode.REFUSED


def test_acl_handler_answer_cache_does_not_serve_refused_clients() -> None:
    """The UDP fast path leaves refused clients to the full path (which refuses them)."""
    lab = Lab([])
    assert lab.ask(QUERY, client("127.0.0.1")) is not None  # now in the answer cache
    assert lab.handler.answer_from_cache(QUERY, "127.0.0.1") is not None
    assert lab.handler.answer_from_cache(QUERY, "192.0.2.1") is None
    reply = lab.ask(QUERY, client("192.0.2.1"))
    assert reply is not None and reply[3] & 0xF == Rcode.REFUSED
