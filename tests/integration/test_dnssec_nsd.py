"""DNSSEC validation end to end: real NSD serving signed zones on loopback, `resolver serve`
with a trust-anchor file, and dig +dnssec as the client.

NSD serves a signed root, `test.`, `example.test.` (good signatures), `broken.test.` (a
record changed after signing) and `plain.test.` (signed, delegated without DS), all on one
loopback address and its own port; the resolver's root hints point there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import _free_port, _wait_for_udp_dns
from tests.support.processes import stop_process
from tests.support.signed_zones import sign_zone

NSD_IP = "127.77.0.1"
RESOLVER_IP = "127.0.0.1"


def _zone(origin: str, body: str) -> str:
    return (f"$ORIGIN {origin}\n$TTL 3600\n"
            f"@ IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300\n"
            f"@ IN NS ns.{origin if origin != '.' else 'root.'}\n{body}")


@dataclass(frozen=True)
class SignedLab:
    nsd_port: int
    resolver_port: int


def _validity() -> tuple[str, str]:
    now = time.time()
    return (time.strftime("%Y%m%d%H%M%S", time.gmtime(now - 86400)),
            time.strftime("%Y%m%d%H%M%S", time.gmtime(now + 30 * 86400)))


def _write_nsd_config(directory: Path, port: int, zones: dict[str, Path]) -> Path:
    lines = ["server:", f"  ip-address: {NSD_IP}@{port}", f"  port: {port}",
             f'  pidfile: "{directory / "nsd.pid"}"', f'  zonesdir: "{directory}"',
             f'  logfile: "{directory / "nsd.log"}"', f'  xfrdfile: "{directory / "xfrd.state"}"',
             f'  zonelistfile: "{directory / "zone.list"}"', '  database: ""', '  username: ""',
             '  chroot: ""', "  server-count: 1", "  verbosity: 1", "  reuseport: no",
             "remote-control:", "  control-enable: no"]
    for name, path in zones.items():
        lines += ["zone:", f'  name: "{name}"', f'  zonefile: "{path}"']
    config = directory / "nsd.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture(scope="module")
def signed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedLab]:
    nsd = require_tool("nsd")
    require_tool("ldns-signzone")
    base = tmp_path_factory.mktemp("dnssec-nsd")
    inception, expiration = _validity()
    signing = {"inception": inception, "expiration": expiration}
    glue = f"IN A {NSD_IP}"
    example = sign_zone(base / "example", "example.test.", _zone(
        "example.test.", f"ns {glue}\nwww IN A 192.0.2.20\n"), "ECDSAP256SHA256", **signing)
    broken = sign_zone(base / "broken", "broken.test.", _zone(
        "broken.test.", f"ns {glue}\nwww IN A 192.0.2.30\n"), "ECDSAP256SHA256", **signing)
    plain = sign_zone(base / "plain", "plain.test.", _zone(
        "plain.test.", f"ns {glue}\nwww IN A 192.0.2.40\n"), "ECDSAP256SHA256", **signing)
    test = sign_zone(base / "test", "test.", _zone("test.", (
        f"ns {glue}\nexample IN NS ns.example.test.\nns.example {glue}\n"
        f"broken IN NS ns.broken.test.\nns.broken {glue}\n"
        f"plain IN NS ns.plain.test.\nns.plain {glue}\n"
        + example.ds_text + broken.ds_text)), "ECDSAP256SHA256", **signing)
    root = sign_zone(base / "root", ".", _zone(".", (
        f"ns.root. {glue}\ntest. IN NS ns.test.\nns.test. {glue}\n" + test.ds_text)),
        "ECDSAP256SHA256", **signing)
    # The broken zone: its signed A record changed after signing, so its RRSIG fails.
    broken_file = broken.directory / "broken.test.zone.signed"
    broken_file.write_text(broken_file.read_text().replace("192.0.2.30", "192.0.2.31"))
    files = {z.origin: z.directory / f"{z.origin}zone.signed"
             for z in (example, plain, test, root)}
    files["broken.test."] = broken_file
    nsd_port = _free_port(NSD_IP)
    config = _write_nsd_config(base, nsd_port, files)
    server = subprocess.Popen([nsd, "-d", "-c", str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    resolver = None
    try:
        _wait_for_udp_dns(NSD_IP, nsd_port, server)
        hints = base / "signed.hints"
        hints.write_text(f". 3600000 NS ns.root.\nns.root. 3600000 A {NSD_IP}\n")
        anchor = base / "anchor.ds"
        anchor.write_text(root.ds_text)
        resolver_port = _free_port(RESOLVER_IP)
        resolver = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--listen",
             f"{RESOLVER_IP}:{resolver_port}", "--root-hints", str(hints), "--upstream-port",
             str(nsd_port), "--trust-anchor-file", str(anchor)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_udp_dns(RESOLVER_IP, resolver_port, resolver)
        yield SignedLab(nsd_port, resolver_port)
    finally:
        if resolver is not None:
            stop_process(resolver)
        stop_process(server)


def dig(lab: SignedLab, name: str, *options: str) -> str:
    done = subprocess.run(
        [require_tool("dig"), f"@{RESOLVER_IP}", "-p", str(lab.resolver_port), name, "A",
         "+tries=1", "+time=5", *options], capture_output=True, text=True, timeout=30,
        check=False)
    return done.stdout


def flags(output: str) -> set[str]:
    found = re.search(r";; flags: ([a-z ]+);", output)
    assert found, output
    return set(found.group(1).split())


def test_signed_answer_through_nsd_has_ad_and_rrsig(signed_lab: SignedLab) -> None:
    output = dig(signed_lab, "www.example.test", "+dnssec")
    assert "status: NOERROR" in output and "ad" in flags(output), output
    assert re.search(r"www\.example\.test\.\s+\d+\s+IN\s+RRSIG\s+A 13 ", output), output


def test_broken_signature_through_nsd_is_servfail_with_ede_6(signed_lab: SignedLab) -> None:
    output = dig(signed_lab, "www.broken.test", "+dnssec")
    assert "status: SERVFAIL" in output, output
    assert "EDE: 6 (DNSSEC Bogus)" in output, output


def test_cd_query_through_nsd_gets_the_broken_data(signed_lab: SignedLab) -> None:
    output = dig(signed_lab, "www.broken.test", "+dnssec", "+cd")
    assert "status: NOERROR" in output and "192.0.2.31" in output, output
    assert "ad" not in flags(output)


def test_zone_delegated_without_ds_through_nsd_is_insecure(signed_lab: SignedLab) -> None:
    output = dig(signed_lab, "www.plain.test", "+dnssec")
    assert "status: NOERROR" in output and "192.0.2.40" in output, output
    assert "ad" not in flags(output)


def test_nxdomain_through_nsd_is_secure(signed_lab: SignedLab) -> None:
    output = dig(signed_lab, "nothere.example.test", "+dnssec")
    assert "status: NXDOMAIN" in output and "ad" in flags(output), output
    assert re.search(r"\sIN\s+NSEC\s", output), output
