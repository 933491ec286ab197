"""Engine defences that need no sockets: 0x20 case randomisation, IPv6 demotion."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns import names
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.events import Outcome
from resolver.engine.failure import FailureKind
from resolver.engine.network import TransportProblem, UpstreamError
from resolver.engine.settings import EngineSettings
from tests.support.labnet import FakeClock, LabNetwork, lab_service

WWW = Question("www.networkutopia.com.", RRType.A)
NETWORKUTOPIA_SERVER = "127.212.212.1"


def _sent_names(network: LabNetwork) -> list[bytes]:
    return [query[12:query.index(b"\x00", 12)] for _, _, query in network.log]


def test_caps_for_id_sends_mixed_case_names_and_resolves() -> None:
    """With use-caps-for-id the query names carry random letter case; answers still match."""
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network, settings=EngineSettings(use_caps_for_id=True), seed=7)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.rcode == Rcode.NOERROR
    assert [rr.address for rr in outcome.answer] == ["212.212.212.2"]
    sent = _sent_names(network)
    assert any(name != name.lower() for name in sent), sent


def test_caps_for_id_falls_back_for_a_server_that_lowercases_the_question() -> None:
    """A server that answers with the name in lower case is asked again without 0x20."""
    clock = FakeClock()
    network = LabNetwork(clock)

    def lowercase_question(query: bytes, reply: bytes) -> bytes:
        end = reply.index(b"\x00", 12)
        return reply[:12] + reply[12:end].lower() + reply[end:]

    network.rewrite[NETWORKUTOPIA_SERVER] = lowercase_question
    service = lab_service(clock, network, settings=EngineSettings(use_caps_for_id=True), seed=3)
    outcome = asyncio.run(service.resolve(WWW))
    assert outcome.rcode == Rcode.NOERROR
    to_server = [q for ip, _, q in network.log if ip == NETWORKUTOPIA_SERVER]
    assert len(to_server) >= 2
    last_name = to_server[-1][12:to_server[-1].index(b"\x00", 12)]
    assert last_name == last_name.lower()


def test_caps_for_id_off_sends_lower_case_names() -> None:
    """By default (as in Unbound) names go out in canonical lower case."""
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network)
    asyncio.run(service.resolve(Question(names.canonical("WWW.NetworkUtopia.COM"), RRType.A)))
    assert all(name == name.lower() for name in _sent_names(network))


def test_ipv6_servers_are_demoted_after_network_unreachable() -> None:
    """Once an IPv6 server fails with "network unreachable", IPv4 servers are chosen first."""
    import random

    from resolver.engine.network import ServerAddress
    from resolver.engine.selection import Candidate, ServerSelection

    selection = ServerSelection()
    v4 = Candidate("ns.", ServerAddress("192.0.2.1"))
    v6 = Candidate("ns.", ServerAddress("2001:db8::1"))
    chosen_before = {selection.choose([v4, v6], zone="x.", now=0.0, rng=random.Random(i)).server.ip
                     for i in range(20)}
    assert chosen_before == {"192.0.2.1", "2001:db8::1"}
    selection.record_ipv6_unreachable(now=0.0)
    chosen_after = {selection.choose([v4, v6], zone="x.", now=1.0, rng=random.Random(i)).server.ip
                    for i in range(20)}
    assert chosen_after == {"192.0.2.1"}


@pytest.mark.parametrize(("problem", "demoted"), [
    (TransportProblem.NETWORK_UNREACHABLE, True), (TransportProblem.NOBODY_LISTENS, False)])
def test_only_no_route_to_an_ipv6_server_demotes_ipv6(problem: TransportProblem,
                                                      demoted: bool) -> None:
    """No route (ENETUNREACH) says this host lacks IPv6; a port unreachable says only that
    one server is not there. The engine reads the typed problem, never the message."""
    from tests.unit.test_engine import world, zone

    v6 = "fd00::53"
    lab_ = world({"127.1.0.1": [zone(".", f"ns.root. IN A 127.1.0.1\ntest. IN NS ns.test.\n"
                                     f"ns.test. IN AAAA {v6}\nns.test. IN A 127.1.0.2")],
                  "127.1.0.2": [zone("test.", "ns IN A 127.1.0.2\nwww IN A 192.0.2.1")]},
                 root_address="127.1.0.1")
    lab_.network.failing[v6] = UpstreamError("words that say nothing", problem)
    outcome = lab_.resolve("www.test.")
    assert outcome.rcode == Rcode.NOERROR
    assert lab_.network.received[v6] >= 1
    assert (lab_.service.state.selection.ipv6_unreachable_until > 0) is demoted


def test_service_refuses_new_resolutions_beyond_the_concurrency_cap() -> None:
    """With the cap reached, a new question gets SERVFAIL at once; the ones under way finish."""
    from resolver.engine.settings import Limits

    clock = FakeClock()
    network = LabNetwork(clock)
    settings = EngineSettings(limits=Limits(max_concurrent_resolutions=2))
    service = lab_service(clock, network, settings=settings)

    async def three_at_once() -> list[Rcode]:
        names_ = ["www.networkutopia.com.", "www.crepes.fr.", "www.amazon.com."]
        outcomes = await asyncio.gather(*(service.resolve(Question(n, RRType.A)) for n in names_))
        return [Rcode(o.rcode) for o in outcomes]

    rcodes = asyncio.run(three_at_once())
    assert rcodes == [Rcode.NOERROR, Rcode.NOERROR, Rcode.SERVFAIL]
    assert service.overloaded == 1


class _HangingNetwork:
    """The lab, except that questions for `hanging` names never get an answer."""

    def __init__(self, lab: LabNetwork, hanging: set[str]) -> None:
        self.lab, self.hanging = lab, hanging
        self.release = asyncio.Event()

    async def exchange(self, query: bytes, server, transport, timeout_s):  # type: ignore[no-untyped-def]
        from resolver.dns.decoding import decode
        asked = decode(query).question
        if asked is not None and any(asked.name.endswith(n) for n in self.hanging):
            await self.release.wait()
        return await self.lab.exchange(query, server, transport, timeout_s)


def test_a_new_question_replaces_a_resolution_older_than_jostle_timeout() -> None:
    """Unbound's jostle-timeout: with every slot held by slow resolutions, a new question
    replaces the oldest one that has run longer than 200 ms, which gets SERVFAIL; a younger
    one is never replaced (the new question gets SERVFAIL instead)."""
    from resolver.engine.settings import Limits

    clock = FakeClock()
    lab = LabNetwork(clock)
    network = _HangingNetwork(lab, {"crepes.fr.", "cnn.com."})
    settings = EngineSettings(limits=Limits(max_concurrent_resolutions=2))
    service = lab_service(clock, network, settings=settings)  # type: ignore[arg-type]

    async def run() -> tuple[Outcome, Outcome, Outcome, Outcome]:
        slow = asyncio.create_task(service.resolve(Question("www.crepes.fr.", RRType.A)))
        other = asyncio.create_task(service.resolve(Question("www.cnn.com.", RRType.A)))
        for _ in range(20):
            await asyncio.sleep(0)  # both under way, waiting on their servers
        too_soon = await service.resolve(Question("www.networkutopia.com.", RRType.A))
        clock.advance(0.3)
        newer = await service.resolve(Question("www.networkutopia.com.", RRType.A))
        network.release.set()
        return await slow, too_soon, newer, await other

    slow, too_soon, newer, other = asyncio.run(run())
    assert too_soon.rcode == Rcode.SERVFAIL and too_soon.failure is FailureKind.OVERLOADED
    assert newer.rcode == Rcode.NOERROR
    assert slow.rcode == Rcode.SERVFAIL and slow.failure is FailureKind.OVERLOADED
    assert other.rcode == Rcode.NOERROR
    assert service.jostled == 1


class _TickingClock(FakeClock):
    """Real time's habit: every reading is a little later than the one before."""

    def __call__(self) -> float:
        self.now += 0.0001
        return self.now


def test_finished_resolutions_leave_nothing_in_the_services_bookkeeping() -> None:
    """Each resolution is registered with its start time and removed when it ends, however
    far the clock moved between its start and its first step: 50 names leave no trace (the
    registration used to be kept forever whenever the clock moved, one entry per name)."""
    clock = _TickingClock()
    service = lab_service(clock, LabNetwork(clock))

    async def run() -> list[Outcome]:
        return list(await asyncio.gather(*(
            service.resolve(Question(f"nx{i}.networkutopia.com.", RRType.A))
            for i in range(50))))

    outcomes = asyncio.run(run())
    assert {o.rcode for o in outcomes} == {Rcode.NXDOMAIN}
    assert service._started == {} and service._in_flight == {} and service._jostled == set()


def test_jostling_finds_the_oldest_running_resolution_after_many_have_finished() -> None:
    """Finished resolutions must not stand in front of the running ones: with the slots
    full, the oldest resolution still running is the one replaced."""
    from resolver.engine.settings import Limits

    clock = _TickingClock()
    lab = LabNetwork(clock)
    network = _HangingNetwork(lab, {"crepes.fr."})
    settings = EngineSettings(limits=Limits(max_concurrent_resolutions=2))
    service = lab_service(clock, network, settings=settings)  # type: ignore[arg-type]

    async def run() -> tuple[Outcome, Outcome]:
        for i in range(20):  # finished ones, before the slow one starts
            await service.resolve(Question(f"nx{i}.networkutopia.com.", RRType.A))
        slow = asyncio.create_task(service.resolve(Question("www.crepes.fr.", RRType.A)))
        also = asyncio.create_task(service.resolve(Question("mail.crepes.fr.", RRType.A)))
        for _ in range(20):
            await asyncio.sleep(0)
        clock.advance(0.3)
        newer = await service.resolve(Question("www.networkutopia.com.", RRType.A))
        network.release.set()
        await also
        return await slow, newer

    slow, newer = asyncio.run(run())
    assert newer.rcode == Rcode.NOERROR
    assert slow.rcode == Rcode.SERVFAIL and slow.failure is FailureKind.OVERLOADED
    assert service.jostled == 1


def test_handler_drops_a_clients_queries_beyond_the_wait_limit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One client address may have only so many queries waiting; others are unaffected."""
    from resolver.dns.encoding import make_query
    from resolver.engine.events import Outcome
    from resolver.engine.network import Transport
    from resolver.server import handler as handler_module
    from resolver.server.handler import QueryHandler
    from resolver.server.listener import Client

    monkeypatch.setattr(handler_module, "MAX_WAITING_PER_CLIENT", 2)
    release = asyncio.Event()

    class SlowService:
        clock = staticmethod(lambda: 0.0)

        async def resolve(self, question: Question, **_: object) -> Outcome:
            await release.wait()
            return Outcome(rcode=Rcode.SERVFAIL, reason="test")

    handler = QueryHandler(SlowService())  # type: ignore[arg-type]

    def query(i: int) -> bytes:
        return make_query(Question(f"n{i}.example.", RRType.A), query_id=i,
                          recursion_desired=True)

    async def scenario() -> list[bytes | None]:
        busy = Client(ip="127.0.0.9", port=1, transport=Transport.UDP)
        other = Client(ip="127.0.0.10", port=1, transport=Transport.UDP)
        waiting = [asyncio.create_task(handler.handle(query(i), busy)) for i in range(3)]
        waiting.append(asyncio.create_task(handler.handle(query(9), other)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        return list(await asyncio.gather(*waiting))

    replies = asyncio.run(scenario())
    answered = [r is not None for r in replies]
    assert answered == [True, True, False, True]


def test_cache_only_resolution_answers_from_the_cache_or_refers() -> None:
    """RD=0 (allow_snoop): a cached name is answered, an uncached one gets a referral to
    the closest cached zone cut, and nothing is sent upstream."""
    clock = FakeClock()
    network = LabNetwork(clock)
    service = lab_service(clock, network)
    asyncio.run(service.resolve(WWW))
    sent = sum(network.received.values())
    hit = asyncio.run(service.resolve(WWW, cache_only=True))
    assert [rr.address for rr in hit.answer] == ["212.212.212.2"]
    miss = asyncio.run(service.resolve(Question("mail.networkutopia.com.", RRType.A),
                                       cache_only=True))
    assert miss.rcode == Rcode.NOERROR and not miss.answer
    assert {rr.name for rr in miss.authority} == {"networkutopia.com."}
    assert [rr.address for rr in miss.additional] == ["127.212.212.1"]
    assert sum(network.received.values()) == sent


def test_answer_cache_retires_a_negative_answer_when_its_zone_soa_is_refreshed() -> None:
    """A cached NXDOMAIN shows the zone's freshest SOA: after another negative answer of the
    zone refreshes it, the stored reply bytes are no longer served (testbound ttl_msg)."""
    from resolver.dns.encoding import encode, make_query
    from resolver.dns.scanner import scan_query
    from resolver.dns.wire import Message, parse_record
    from resolver.server.answer_cache import AnswerCache

    stamps = {"example.com.": 1.0}
    answers = AnswerCache(clock=lambda: 100.0, negative_stamp=stamps.get)
    question = Question("nx1.example.com.", RRType.A)
    query = make_query(question, query_id=7, recursion_desired=True, edns_udp_size=None)
    soa = parse_record("example.com. 10 IN SOA . . 15 28800 7200 604800 10")
    reply = encode(Message(id=7, qr=True, opcode=0, rcode=Rcode.NXDOMAIN, rd=True, ra=True,
                           question=question, authority=(soa,)))
    assert answers.store(query, scan_query(query), reply, negative_zone="example.com.")
    assert answers.lookup(query) is not None
    stamps["example.com."] = 2.0  # another name's NXDOMAIN brought a newer SOA
    assert answers.lookup(query) is None


def test_handler_notimp_copies_the_question_and_rd_and_clears_every_other_flag() -> None:
    """Opcode 15 with every flag set: NOTIMP, opcode, RD and question echoed, AA RA AD CD Z
    clear (RFC 1035 §4.1.1: RD is copied into the response)."""
    import struct as struct_module

    from resolver.dns.decoding import decode
    from resolver.dns.encoding import make_query
    from resolver.engine.network import Transport
    from resolver.server.handler import QueryHandler
    from resolver.server.listener import Client

    clock = FakeClock()
    handler = QueryHandler(lab_service(clock, LabNetwork(clock)))
    wire = bytearray(make_query(WWW, query_id=0x4242, recursion_desired=True,
                                edns_udp_size=None))
    struct_module.pack_into("!H", wire, 2, (15 << 11) | 0x07F0)
    reply = asyncio.run(handler.handle(bytes(wire), Client(ip="127.0.0.1", port=1,
                                                           transport=Transport.UDP)))
    assert reply is not None
    message = decode(reply)
    assert message.rcode == Rcode.NOTIMP and message.opcode == 15 and message.qr
    assert message.question == WWW
    assert message.rd
    assert not (message.aa or message.ra or message.ad or message.cd or message.tc)
    assert struct_module.unpack_from("!H", reply, 2)[0] & 0x0040 == 0  # Z
