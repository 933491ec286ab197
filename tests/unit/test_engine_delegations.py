"""Delegations in the wild (issue scenarios written from RFC 1034 §4.2.2, RFC 2181 §5.4.1,
RFC 4697 and the peers' documentation): servers whose addresses are unusable or expire,
lame servers beside good ones, and NS sets that would outlive their delegation."""

from __future__ import annotations

from resolver.dns.wire import Rcode, RRType
from resolver.engine.settings import EngineSettings, Limits
from tests.unit.test_engine import ROOT_ADDRESS, TEST_ADDRESS, world, zone

CHILD = "127.1.0.3"
OTHER = "127.1.0.4"


def _root(body: str) -> str:
    return (f"ns.root. IN A {ROOT_ADDRESS}\ntest. IN NS ns.test.\n"
            f"ns.test. IN A {TEST_ADDRESS}\n{body}")


def test_servers_with_unusable_addresses_are_skipped_and_the_usable_one_answers() -> None:
    """0.0.0.0, the limited broadcast and multicast addresses are never a server; the
    delegation's other server is used, and none of those addresses is ever sent to."""
    unusable = ["0.0.0.0", "255.255.255.255", "224.0.0.251", "ff02::fb"]
    glue = "\n".join(
        f"child IN NS ns{n}.child\nns{n}.child IN {'AAAA' if ':' in a else 'A'} {a}"
        for n, a in enumerate(unusable))
    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\n{glue}\n"
                                     f"child IN NS good.child\ngood.child IN A {CHILD}")],
        CHILD: [zone("child.test.", f"good IN A {CHILD}\nwww IN A 192.0.2.7", ns="good")],
    }, root_address=ROOT_ADDRESS)
    outcome = lab_.resolve("www.child.test.")
    assert outcome.rcode == Rcode.NOERROR
    assert [rr.address for rr in outcome.answer] == ["192.0.2.7"]
    assert all(lab_.network.received[a] == 0 for a in unusable)


def test_a_delegation_with_only_unusable_addresses_is_servfail_without_sending() -> None:
    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\nchild IN NS ns.child\n"
                                     "ns.child IN A 224.0.0.1")],
    }, root_address=ROOT_ADDRESS)
    outcome = lab_.resolve("www.child.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert lab_.network.received["224.0.0.1"] == 0


def test_name_server_addresses_that_expire_before_the_delegation_are_looked_up_again() -> None:
    """Glue with a short TTL under an NS set that lives an hour: once the glue is gone the
    resolver finds the address again (from the parent's referral or the zone itself)."""
    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\nchild 3600 IN NS ns.child\n"
                                     f"ns.child 5 IN A {CHILD}")],
        CHILD: [zone("child.test.", f"ns 5 IN A {CHILD}\nwww 5 IN A 192.0.2.8\n"
                                    "mail 5 IN A 192.0.2.9")],
    }, root_address=ROOT_ADDRESS)
    assert lab_.resolve("www.child.test.").rcode == Rcode.NOERROR
    lab_.clock.advance(30)  # the glue and the answers expired; the NS set did not
    later = lab_.resolve("mail.child.test.")
    assert later.rcode == Rcode.NOERROR, later.reason
    assert [rr.address for rr in later.answer] == ["192.0.2.9"]


def test_known_lame_servers_are_not_probed_again_for_every_client_query() -> None:
    """Parent and child NS sets that differ, a lame server among them (RFC 4697 §2.1): once
    it answered REFUSED for the zone it is not asked again for a while, so ten client
    questions cost it at most a few queries, and every answer comes from the good one."""
    lame = OTHER
    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\nchild IN NS a.child\n"
                                     f"child IN NS b.child\na.child IN A {CHILD}\n"
                                     f"b.child IN A {lame}")],
        CHILD: [zone("child.test.", f"a IN A {CHILD}\n"
                                    + "\n".join(f"h{n} IN A 192.0.2.{n}" for n in range(10)),
                     ns="a")],
        lame: [zone("other.test.", f"ns IN A {lame}")],  # knows nothing of child.test
    }, root_address=ROOT_ADDRESS)
    for n in range(10):
        outcome = lab_.resolve(f"h{n}.child.test.")
        assert outcome.rcode == Rcode.NOERROR, outcome.reason
    assert lab_.network.received[lame] <= 2


def test_child_ns_set_never_extends_a_delegation_past_the_parent_ttl() -> None:
    """Ghost domains (CVE-2012-1191): the child's NS set, with a TTL far longer than the
    parent's delegation, is cut to what is left of the delegation; once the parent has
    removed the delegation (and it expired here) the name no longer resolves."""
    from resolver.lab.authority import Authority

    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\nghost 60 IN NS ns.ghost\n"
                                     f"ns.ghost 60 IN A {CHILD}")],
        CHILD: [zone("ghost.test.", "@ 86400 IN NS ns\n"
                                    f"ns 86400 IN A {CHILD}\nwww 30 IN A 192.0.2.66")],
    }, root_address=ROOT_ADDRESS)
    assert lab_.resolve("www.ghost.test.").rcode == Rcode.NOERROR
    assert lab_.resolve("ghost.test.", RRType.NS).rcode == Rcode.NOERROR  # child's NS set
    cached = lab_.cache.rrset("ghost.test.", RRType.NS)
    assert cached is not None and all(rr.ttl <= 60 for rr in cached)
    # The parent removes the delegation; the child keeps serving.
    lab_.network.authorities[TEST_ADDRESS] = Authority(
        [zone("test.", f"ns IN A {TEST_ADDRESS}")])
    lab_.clock.advance(61)
    gone = lab_.resolve("www.ghost.test.")
    assert gone.rcode == Rcode.NXDOMAIN


def test_forwarder_that_times_out_is_backed_off_and_the_next_answers() -> None:
    """Two forwarders, the first a black hole: every client query is answered by the
    second within its budget, and the dead one is not waited for on every query."""
    import asyncio
    import random

    from resolver.daemon.app import build
    from resolver.daemon.config import ServeConfig
    from resolver.dns.wire import Question
    from resolver.engine.settings import ForwardingSettings
    from tests.support.labnet import FakeClock, lab_root_hints
    from tests.unit.test_forwarding import UpstreamsNetwork, answering_any

    network = UpstreamsNetwork(FakeClock())
    network.upstreams[("10.0.0.1", 53)] = None  # black hole
    network.upstreams[("10.0.0.2", 53)] = answering_any("192.0.2.99")
    config = ServeConfig(engine=EngineSettings(upstream_port=53, limits=Limits()),
                         forwarding=ForwardingSettings(forward=("10.0.0.1", "10.0.0.2")))
    app = build(config, root_hints=lab_root_hints(), network=network, clock=network.clock,
                rng=random.Random(1))
    for n in range(20):
        started = network.clock.now
        outcome = asyncio.run(app.service.resolve(Question(f"n{n}.example.", RRType.A)))
        assert outcome.rcode == Rcode.NOERROR, outcome.reason
        assert network.clock.now - started < Limits().resolution_budget_s
    to_dead = sum(1 for server, _ in network.asked if server.ip == "10.0.0.1")
    assert to_dead <= 6


def test_servers_that_answer_port_unreachable_are_asked_once_each() -> None:
    """An ICMP port unreachable says nobody listens there: the address is not asked again
    in the same resolution, and a client asking again soon after costs no new storm
    (today's figure was 36 queries in 5.7 ms to three dead servers)."""
    from resolver.engine.network import TransportProblem, UpstreamError

    dead = ["127.1.0.11", "127.1.0.12", "127.1.0.13"]
    glue = "\n".join(f"child IN NS ns{n}.child\nns{n}.child IN A {a}"
                     for n, a in enumerate(dead))
    lab_ = world({
        ROOT_ADDRESS: [zone(".", _root(""), ns="ns.root.")],
        TEST_ADDRESS: [zone("test.", f"ns IN A {TEST_ADDRESS}\n{glue}")],
    }, root_address=ROOT_ADDRESS)
    for address in dead:
        lab_.network.failing[address] = UpstreamError(
            f"{address} (udp): port unreachable (ICMP)", TransportProblem.NOBODY_LISTENS)
    outcome = lab_.resolve("www.child.test.")
    assert outcome.rcode == Rcode.SERVFAIL
    assert [lab_.network.received[a] for a in dead] == [1, 1, 1]
    lab_.clock.advance(10)  # past the remembered failure: a new resolution
    assert lab_.resolve("www2.child.test.").rcode == Rcode.SERVFAIL
    assert sum(lab_.network.received[a] for a in dead) <= 6
