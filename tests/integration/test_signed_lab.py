"""The signed lab on loopback: dig +dnssec sees signatures, a validating `resolver serve`
gives the three outcomes (AD=1, no AD, SERVFAIL with EDE 6), and so does the trace."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import (
    RESOLVER,
    RunningLab,
    RunningResolver,
    _stop,
    start_resolver,
)


def _anchor(lab: RunningLab) -> Path:
    anchor = lab.hints.with_suffix(".anchor")
    assert anchor.is_file(), "resolver lab writes its trust anchor beside the hints"
    return anchor


def _dig(ip: str, port: int, *args: str) -> str:
    exe = require_tool("dig")
    return subprocess.run(
        [exe, f"@{ip}", "-p", str(port), "+time=5", "+tries=1", "+nocookie", *args],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout


@pytest.fixture(scope="module")
def validating(lab: RunningLab) -> Iterator[RunningResolver]:
    running = start_resolver(lab, "--trust-anchor-file", str(_anchor(lab)))
    try:
        yield running
    finally:
        _stop(running.process)


def _flags(out: str) -> set[str]:
    line = next(line for line in out.splitlines() if line.startswith(";; flags:"))
    return set(line.split(";")[2].split(":")[1].split())


def test_the_anchor_file_holds_the_lab_roots_ds(lab: RunningLab) -> None:
    text = _anchor(lab).read_text(encoding="utf-8")
    assert any(line.startswith(".") and "\tDS\t" in line for line in text.splitlines())


def test_dig_dnssec_at_the_root_sees_the_ds_of_com_and_its_rrsig(lab: RunningLab) -> None:
    out = _dig("127.41.0.4", lab.port, "+dnssec", "+norec", "www.networkutopia.com", "A")
    assert "com.\t\t\t3600\tIN\tDS\t" in out, out
    assert "IN\tRRSIG\tDS 13 1 " in out, out


def test_dig_dnssec_at_networkutopia_sees_the_answers_rrsig(lab: RunningLab) -> None:
    out = _dig("127.212.212.1", lab.port, "+dnssec", "+norec", "www.networkutopia.com", "A")
    assert "IN\tRRSIG\tA 15 3 3600 " in out, out
    plain = _dig("127.212.212.1", lab.port, "+norec", "www.networkutopia.com", "A")
    assert "RRSIG" not in plain, plain


def test_the_signed_name_is_answered_with_ad(validating: RunningResolver) -> None:
    out = _dig(validating.ip, validating.port, "+dnssec", "www.networkutopia.com", "A")
    assert "status: NOERROR" in out, out
    assert "ad" in _flags(out), out


def test_the_unsigned_zone_is_answered_without_ad(validating: RunningResolver) -> None:
    out = _dig(validating.ip, validating.port, "+dnssec", "www.crepes.fr", "A")
    assert "status: NOERROR" in out and "198.51.100.21" in out, out
    assert "ad" not in _flags(out), out


def test_the_broken_zone_is_servfail_with_ede_6(validating: RunningResolver) -> None:
    out = _dig(validating.ip, validating.port, "+dnssec", "www.cnn.com", "A")
    assert "status: SERVFAIL" in out, out
    assert "EDE: 6 (DNSSEC Bogus)" in out, out
    unchecked = _dig(validating.ip, validating.port, "+dnssec", "+cd", "www.cnn.com", "A")
    assert "status: NOERROR" in unchecked, unchecked


def _trace(lab: RunningLab, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RESOLVER, "trace", name, "--root-hints", str(lab.hints), "--upstream-port",
         str(lab.port), "--trust-anchor-file", str(_anchor(lab)), "--no-color"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_the_trace_shows_the_chain_root_com_networkutopia_and_ends_secure(
        lab: RunningLab) -> None:
    done = _trace(lab, "www.networkutopia.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain of trust: . -> com. -> networkutopia.com." in done.stdout
    assert "the parent's DS" in done.stdout and "ED25519 (15): secure" in done.stdout
    assert "security: secure" in done.stdout


def test_the_trace_shows_the_unsigned_zone_insecure(lab: RunningLab) -> None:
    done = _trace(lab, "www.crepes.fr")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain of trust: . -> fr. -> crepes.fr." in done.stdout
    assert "security: insecure" in done.stdout


def test_the_trace_names_the_broken_link_of_the_bogus_zone(lab: RunningLab) -> None:
    done = _trace(lab, "www.cnn.com")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "signature over www.cnn.com. does not verify" in done.stdout
    assert "security: bogus EDE 6 (DNSSEC Bogus)" in done.stdout


def test_query_prints_the_security_status(lab: RunningLab) -> None:
    done = subprocess.run(
        [*RESOLVER, "query", "www.networkutopia.com", "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port), "--trust-anchor-file", str(_anchor(lab))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert ";; security: secure" in done.stdout, done.stdout + done.stderr
