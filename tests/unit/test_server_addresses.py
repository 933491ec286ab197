"""Server addresses are parsed once and carried as `ServerAddress` values: a configured
upstream keeps the port and TLS name the operator gave it, an address learnt from a reply is
asked on the port every iterated server is asked on (53, or --upstream-port in a lab)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from resolver.daemon.app import _check_root, build
from resolver.daemon.config import ServeConfig
from resolver.dns.wire import Question, Rcode, RRType
from resolver.engine.cache import RecordCache
from resolver.engine.network import ServerAddress, Transport, UpstreamError
from resolver.engine.resolution import SharedState
from resolver.engine.selection import ServerSelection
from resolver.engine.settings import CacheSettings, EngineSettings, ForwardingSettings
from resolver.service.resolver_service import ResolverService
from resolver.upstream.forwarding import configured_zones
from tests.support.labnet import FakeClock, LabNetwork, lab_root_hints

CREPES = "127.51.100.20"  # dns.crepes.fr. in the lab world


class _RecordingNetwork(LabNetwork):
    """The lab network, remembering every server address it was asked to send to."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.servers: list[ServerAddress] = []

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        self.servers.append(server)
        return await super().exchange(query, server, transport, timeout_s)


def _resolve(name: str, *, stub_zones: tuple[str, ...] = ()) -> tuple[Rcode, _RecordingNetwork]:
    clock = FakeClock()
    network = _RecordingNetwork(clock)
    zones = configured_zones(ForwardingSettings(stub_zones=stub_zones), default_port=5353)
    state = SharedState(cache=RecordCache(CacheSettings(), timer=clock),
                        selection=ServerSelection(), root_hints=lab_root_hints(),
                        configured_zones=zones)
    service = ResolverService(settings=EngineSettings(upstream_port=5353), state=state,
                              network=network, clock=clock, rng=random.Random(0))
    outcome = asyncio.run(service.resolve(Question(name, RRType.A)))
    return Rcode(outcome.rcode), network


def test_every_learnt_address_is_asked_on_the_upstream_port() -> None:
    """Root hints, glue and looked-up addresses all go to --upstream-port, with no TLS."""
    rcode, network = _resolve("www.crepes.fr.")
    assert rcode == Rcode.NOERROR
    assert network.servers
    assert {(s.port, s.tls_name, s.doh_path) for s in network.servers} == {(5353, None, None)}


def test_a_stub_server_is_asked_on_the_port_the_operator_gave_it() -> None:
    """stub-zone crepes.fr=ADDR@5300: the zone's queries go to that port, the rest to 5353."""
    rcode, network = _resolve("www.crepes.fr.", stub_zones=(f"crepes.fr={CREPES}@5300",))
    assert rcode == Rcode.NOERROR
    assert network.servers == [ServerAddress(CREPES, 5300)]


class _NobodyListens:
    """A network on which no upstream answers."""

    async def exchange(
        self, query: bytes, server: ServerAddress, transport: Transport, timeout_s: float
    ) -> bytes:
        raise UpstreamError(f"nothing listens on {server}")


def test_the_start_warning_names_each_forwarder_as_the_operator_wrote_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """No forwarder answered the first query: the warning lists them in their notation."""
    config = ServeConfig(forwarding=ForwardingSettings(
        forward=("127.0.0.9@5301", "127.0.0.10@853#dot.test")))
    app = build(config, root_hints=lab_root_hints(), network=_NobodyListens(),
                clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="resolver"):
        asyncio.run(_check_root(app, config))
    assert "forwarding to 127.0.0.9@5301, 127.0.0.10@853#dot.test" in caplog.text
