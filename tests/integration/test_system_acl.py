"""Access control and per-client rate limiting, seen by real dig over loopback sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.dns.encoding import make_query
from resolver.dns.wire import Question, RRType
from tests.integration.conftest import RunningLab
from tests.integration.test_system_support import Server, answers, dig, start, status

pytestmark = pytest.mark.integration


@pytest.fixture
def only_127_0_0_1(lab: RunningLab, tmp_path: Path) -> Iterator[Server]:
    """A resolver that allows 127.0.0.1/32 only, denies 127.0.0.3 and refuses the rest."""
    server = start(lab, tmp_path, "--access-control", "127.0.0.0/8 refuse",
                   "--access-control", "127.0.0.1/32 allow",
                   "--access-control", "127.0.0.3/32 deny", metrics=True)
    yield server
    assert server.stop() == 0


def test_system_acl_refuses_a_source_outside_the_allowed_block(only_127_0_0_1: Server) -> None:
    """dig -b 127.0.0.2 gets REFUSED with RA and EDE 18 (Prohibited, RFC 8914 §4.19); from
    127.0.0.1 the same question is answered."""
    refused = dig(only_127_0_0_1, "www.networkutopia.com", source="127.0.0.2")
    assert status(refused) == "REFUSED"
    assert " ra" in refused.split("flags:", 1)[1].split(";", 1)[0]
    assert "EDE: 18" in refused
    allowed = dig(only_127_0_0_1, "www.networkutopia.com", source="127.0.0.1")
    assert status(allowed) == "NOERROR" and answers(allowed) == ["212.212.212.2"]


def test_system_acl_refuses_over_tcp_too(only_127_0_0_1: Server) -> None:
    """The rule holds for TCP clients as well."""
    assert status(dig(only_127_0_0_1, "+tcp", "www.networkutopia.com",
                      source="127.0.0.2")) == "REFUSED"


def test_system_acl_cached_answer_is_not_served_to_a_refused_source(only_127_0_0_1: Server
                                                                    ) -> None:
    """Once cached, the answer still goes only to allowed clients (the UDP fast path too)."""
    for _ in range(2):
        assert status(dig(only_127_0_0_1, "www.cnn.com", source="127.0.0.1")) == "NOERROR"
    assert status(dig(only_127_0_0_1, "www.cnn.com", source="127.0.0.2")) == "REFUSED"


def test_system_acl_deny_drops_without_a_reply(only_127_0_0_1: Server) -> None:
    """A denied source gets nothing at all: dig times out."""
    output = dig(only_127_0_0_1, "+time=1", "www.networkutopia.com", source="127.0.0.3")
    assert status(output) == "no reply"
    assert "timed out" in output or "no servers could be reached" in output


def test_system_acl_default_is_loopback_only(lab: RunningLab, tmp_path: Path) -> None:
    """Without rules, every loopback source is allowed (the built-in 127.0.0.0/8 allow)."""
    server = start(lab, tmp_path)
    try:
        assert status(dig(server, "www.networkutopia.com", source="127.0.0.2")) == "NOERROR"
    finally:
        assert server.stop() == 0


def test_system_ratelimit_drops_a_burst_beyond_the_rate(lab: RunningLab, tmp_path: Path) -> None:
    """--ip-ratelimit 5: of 40 queries sent at once from one address, most get no reply."""
    server = start(lab, tmp_path, "--ip-ratelimit", "5", metrics=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.5", 0))
            for n in range(40):
                wire = make_query(Question("localhost.", RRType.A), query_id=n,
                                  recursion_desired=True)
                sock.sendto(wire, (server.ip, server.port))
            sock.settimeout(1.0)
            replies = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    sock.recv(4096)
                except TimeoutError:
                    break
                replies += 1
        assert 1 <= replies < 40
        other = dig(server, "localhost", source="127.0.0.6")  # another client is unaffected
        assert status(other) == "NOERROR"
    finally:
        assert server.stop() == 0
