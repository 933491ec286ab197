"""Which upstream server to ask: smoothed RTT, the RTT band, down and lame servers
(RFC 6298 §2, RFC 5452 §4, RFC 1034 §4.2.2)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from resolver.engine.network import ServerAddress
from resolver.engine.selection import (
    DOWN_AFTER_TIMEOUTS,
    MEMORY_S,
    RTT_BAND_S,
    UNKNOWN_RTT_S,
    Candidate,
    ServerSelection,
)

NOW = 1_000.0
A1, A2 = ServerAddress("192.0.2.1"), ServerAddress("192.0.2.2")


def candidates(*addresses: str) -> list[Candidate]:
    return [Candidate(f"ns{i}.example.", ServerAddress(a)) for i, a in enumerate(addresses)]


def test_selection_unknown_server_scores_the_default_rtt() -> None:
    """A server never measured is assumed to answer in 376 ms (Unbound's default)."""
    assert ServerSelection().score(A1, "example.", NOW) == pytest.approx(UNKNOWN_RTT_S)


def test_selection_first_rtt_sets_srtt_and_half_as_variance() -> None:
    """The first measurement R gives SRTT=R and RTTVAR=R/2 (RFC 6298 §2.2)."""
    selection = ServerSelection()
    selection.record_rtt(A1, 0.100)
    assert selection.score(A1, "example.", NOW) == pytest.approx(0.100)
    # RTO = SRTT + 4*RTTVAR = 0.1 + 4*0.05
    assert selection.timeout_for(A1, first_s=0.4, max_s=1.5) == pytest.approx(0.300)


def test_selection_later_rtts_are_smoothed() -> None:
    """Later measurements follow RFC 6298 §2.3 with alpha 1/8 and beta 1/4."""
    selection = ServerSelection()
    selection.record_rtt(A1, 0.100)
    selection.record_rtt(A1, 0.300)
    srtt = 0.875 * 0.100 + 0.125 * 0.300
    rttvar = 0.75 * 0.050 + 0.25 * abs(0.100 - 0.300)
    assert selection.score(A1, "example.", NOW) == pytest.approx(srtt)
    assert selection.timeout_for(A1, first_s=0.4, max_s=1.5) == pytest.approx(
        srtt + 4 * rttvar
    )


def test_selection_timeout_of_an_unknown_server_is_the_first_timeout() -> None:
    """Without a measurement the per-try timeout is the configured first one."""
    assert ServerSelection().timeout_for(A1, first_s=0.4, max_s=1.5) == pytest.approx(0.4)


def test_selection_timeout_stays_within_bounds() -> None:
    """The retransmission timeout never exceeds max_s, nor falls below 50 ms."""
    selection = ServerSelection()
    selection.record_rtt(A1, 5.0)
    selection.record_rtt(A2, 0.0001)
    assert selection.timeout_for(A1, first_s=0.4, max_s=1.5) == pytest.approx(1.5)
    assert selection.timeout_for(A2, first_s=0.1, max_s=1.5) >= 0.05


def test_selection_choose_picks_only_within_the_rtt_band() -> None:
    """A server slower than the fastest by more than the band is never chosen."""
    selection = ServerSelection()
    selection.record_rtt(A1, 0.010)
    selection.record_rtt(A2, 0.010 + RTT_BAND_S + 0.1)
    rng = random.Random(1)
    chosen = {
        selection.choose(
            candidates("192.0.2.1", "192.0.2.2"), zone="example.", now=NOW, rng=rng
        ).server.ip
        for _ in range(50)
    }
    assert chosen == {"192.0.2.1"}


def test_selection_choose_spreads_over_servers_in_the_band() -> None:
    """Servers within the band are chosen at random, so each gets queries (RFC 5452 §4)."""
    selection = ServerSelection()
    rng = random.Random(7)
    counts = Counter(
        selection.choose(
            candidates("192.0.2.1", "192.0.2.2", "192.0.2.3"), zone="example.", now=NOW, rng=rng
        ).server.ip
        for _ in range(300)
    )
    assert set(counts) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert min(counts.values()) > 50


def test_selection_choose_is_deterministic_for_a_seed() -> None:
    """The choice depends only on the state and the rng, so a seeded rng repeats it."""
    pool = candidates("192.0.2.1", "192.0.2.2", "192.0.2.3")

    def picks(seed: int) -> list[str]:
        rng, selection = random.Random(seed), ServerSelection()
        return [selection.choose(pool, zone="e.", now=NOW, rng=rng).server.ip for _ in range(20)]

    assert picks(3) == picks(3)
    assert len(set(picks(3))) > 1


def test_selection_server_is_down_after_three_timeouts_in_a_row() -> None:
    """Three timeouts in a row mark a server down (Unbound TIMEOUT_COUNT_MAX)."""
    selection = ServerSelection()
    for _ in range(DOWN_AFTER_TIMEOUTS - 1):
        selection.record_timeout(A1, 0.4, NOW)
    assert not selection.is_known_bad(A1, "example.", NOW)
    selection.record_timeout(A1, 0.4, NOW)
    assert selection.is_known_bad(A1, "example.", NOW)
    assert selection.is_known_bad(A1, "other.", NOW)


def test_selection_down_server_is_forgiven_after_the_memory_time() -> None:
    """ "Down" is remembered for MEMORY_S only."""
    selection = ServerSelection()
    for _ in range(DOWN_AFTER_TIMEOUTS):
        selection.record_timeout(A1, 0.4, NOW)
    assert selection.is_known_bad(A1, "example.", NOW + MEMORY_S - 1)
    assert not selection.is_known_bad(A1, "example.", NOW + MEMORY_S)


def test_selection_a_reply_resets_the_timeout_count() -> None:
    """A measured reply clears timeouts in a row and the down mark."""
    selection = ServerSelection()
    for _ in range(DOWN_AFTER_TIMEOUTS):
        selection.record_timeout(A1, 0.4, NOW)
    selection.record_rtt(A1, 0.05)
    assert not selection.is_known_bad(A1, "example.", NOW)
    for _ in range(DOWN_AFTER_TIMEOUTS - 1):
        selection.record_timeout(A1, 0.4, NOW)
    assert not selection.is_known_bad(A1, "example.", NOW)


def test_selection_timeout_raises_the_estimate_to_at_least_the_timeout() -> None:
    """A timeout means the server is at least that slow."""
    selection = ServerSelection()
    selection.record_rtt(A1, 0.02)
    selection.record_timeout(A1, 0.8, NOW)
    assert selection.score(A1, "example.", NOW) >= 0.8


def test_selection_down_server_is_not_chosen_while_another_is_healthy() -> None:
    """A down server sorts after every healthy one."""
    selection = ServerSelection()
    for _ in range(DOWN_AFTER_TIMEOUTS):
        selection.record_timeout(A1, 0.4, NOW)
    rng = random.Random(0)
    chosen = {
        selection.choose(candidates("192.0.2.1", "192.0.2.2"), zone="e.", now=NOW,
                         rng=rng).server.ip
        for _ in range(30)
    }
    assert chosen == {"192.0.2.2"}


def test_selection_lameness_is_per_zone() -> None:
    """A server lame for one zone is still good for the others it serves."""
    selection = ServerSelection()
    selection.record_lame(A1, "lame.test.", NOW)
    assert selection.is_known_bad(A1, "lame.test.", NOW)
    assert not selection.is_known_bad(A1, "example.test.", NOW)
    assert not selection.is_known_bad(A1, "lame.test.", NOW + MEMORY_S)


def test_selection_lame_server_is_avoided_for_its_zone() -> None:
    """choose() prefers the non-lame server of a zone."""
    selection = ServerSelection()
    selection.record_lame(A1, "lame.test.", NOW)
    rng = random.Random(0)
    chosen = {
        selection.choose(
            candidates("192.0.2.1", "192.0.2.2"), zone="lame.test.", now=NOW, rng=rng
        ).server.ip
        for _ in range(30)
    }
    assert chosen == {"192.0.2.2"}


def test_selection_memory_is_bounded() -> None:
    """The table of servers does not grow without bound."""
    selection = ServerSelection()
    for i in range(100_010):
        selection.record_rtt(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.01)
    assert selection.known_servers() <= 100_001


def test_selection_keeps_two_ports_of_one_address_apart() -> None:
    """Memory is per server address, port included: a slow server on port 5353 of an IP
    says nothing of the one on port 53 (Unbound's infra cache keys by address and port)."""
    selection = ServerSelection()
    selection.record_rtt(ServerAddress("192.0.2.1", 5353), 0.900)
    assert selection.score(ServerAddress("192.0.2.1", 53), "e.", NOW) == pytest.approx(
        UNKNOWN_RTT_S)
    assert selection.score(ServerAddress("192.0.2.1", 5353), "e.", NOW) == pytest.approx(0.900)


def test_candidate_label_is_the_ip_of_a_learnt_address_and_the_notation_of_an_upstream() -> None:
    """Traces show a learnt address as its IP, a configured upstream as the operator wrote it."""
    learnt = Candidate("ns.example.", ServerAddress("192.0.2.1", 5353))
    upstream = Candidate("forwarder-1.", ServerAddress("192.0.2.9", 853, tls_name="dot.test"),
                         configured=True)
    assert (learnt.label, upstream.label) == ("192.0.2.1", "192.0.2.9@853#dot.test")
