"""Signed zones made by the Debian ldns tools, in a temporary directory, for DNSSEC tests.

`ldns-keygen` makes a key, `ldns-key2ds` its DS, `ldns-signzone` signs with fixed
inception and expiration times so that tests can inject a time inside or outside the
validity window. Every tool is looked up with `require_tool`: missing tools skip the test,
or fail it under CI=true.
"""

from __future__ import annotations

import calendar
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from resolver.dns.wire import Record, RRType, parse_records
from resolver.dnssec.chain import ZoneEvidence
from resolver.dnssec.records import Rrsig
from tests.conftest import require_tool

INCEPTION = "20250101000000"
EXPIRATION = "20250201000000"
INCEPTION_EPOCH = calendar.timegm(time.strptime(INCEPTION, "%Y%m%d%H%M%S"))
EXPIRATION_EPOCH = calendar.timegm(time.strptime(EXPIRATION, "%Y%m%d%H%M%S"))
#: A time inside the validity window of every signature made here.
NOW = INCEPTION_EPOCH + 14 * 86400

CHILD_ZONE = """\
$ORIGIN example.test.
$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300
@ IN NS ns1.example.test.
ns1 IN A 192.0.2.1
www IN A 192.0.2.2
www IN A 192.0.2.5
Mixed IN MX 10 Mail.Example.test.
*.wild IN TXT "wildcard"
alias IN CNAME www.example.test.
sub IN NS ns.sub.example.test.
ns.sub IN A 192.0.2.3
"""

PARENT_ZONE = """\
$ORIGIN test.
$TTL 3600
@ IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300
@ IN NS ns.test.
ns IN A 192.0.2.53
example IN NS ns1.example.test.
ns1.example IN A 192.0.2.1
unsigned IN NS ns.unsigned.test.
ns.unsigned IN A 192.0.2.9
"""


@dataclass(frozen=True)
class SignedZone:
    """A signed zone as records, with the key that signed it and its DS lines."""

    origin: str
    records: tuple[Record, ...]
    key_name: str
    ds_text: str
    key_text: str
    directory: Path

    def ds_from_ldns(self, digest_flag: str) -> str:
        """The DS line ldns-key2ds writes for the key with `digest_flag` (-1, -2 or -4)."""
        key2ds = require_tool("ldns-key2ds")
        return _run([key2ds, "-n", digest_flag, f"{self.key_name}.key"], self.directory)

    def rrset(self, name: str, rtype: int) -> list[Record]:
        return [r for r in self.records if r.name == name and r.rtype == rtype]

    def rrsigs(self, name: str, covered: int) -> list[Record]:
        return [r for r in self.records if r.name == name and r.rtype == RRType.RRSIG
                and Rrsig.from_record(r).type_covered == covered]

    def of_type(self, rtype: int) -> list[Record]:
        return [r for r in self.records if r.rtype == rtype]

    def signed_rrsets(self) -> list[tuple[list[Record], Record]]:
        """Every (RRset, RRSIG) pair of the zone."""
        sets: dict[tuple[str, int], list[Record]] = defaultdict(list)
        for r in self.records:
            if r.rtype != RRType.RRSIG:
                sets[(r.name, r.rtype)].append(r)
        return [(sets[(r.name, Rrsig.from_record(r).type_covered)], r)
                for r in self.records if r.rtype == RRType.RRSIG]


def sign_zone(directory: Path, origin: str, text: str, algorithm: str, *,
              nsec3: bool = False, opt_out: bool = False, iterations: int = 1,
              digest_flag: str = "-2", inception: str = INCEPTION,
              expiration: str = EXPIRATION) -> SignedZone:
    """Make a key of `algorithm`, sign `text` with it (as a KSK that signs everything),
    valid from `inception` to `expiration` (YYYYMMDDhhmmss, UTC)."""
    keygen = require_tool("ldns-keygen")
    signzone = require_tool("ldns-signzone")
    key2ds = require_tool("ldns-key2ds")
    directory.mkdir(parents=True, exist_ok=True)
    unsigned = directory / f"{origin}zone"
    unsigned.write_text(text)
    key_name = _run([keygen, "-a", algorithm, "-k", origin.rstrip(".") or "."],
                    directory).strip()
    command = [signzone, "-i", inception, "-e", expiration, "-f", f"{unsigned}.signed"]
    if nsec3:
        command += ["-n", "-s", "c0ffee", "-t", str(iterations)]
        if opt_out:
            command.append("-p")
    _run([*command, str(unsigned), key_name], directory)
    ds_text = _run([key2ds, "-n", digest_flag, f"{key_name}.key"], directory)
    records = tuple(parse_records((directory / f"{unsigned.name}.signed").read_text()))
    key_text = (directory / f"{key_name}.key").read_text()
    return SignedZone(origin, records, key_name, ds_text, key_text, directory)


def _run(command: list[str], directory: Path) -> str:
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()}")
    return done.stdout


_MADE: dict[tuple[object, ...], SignedZone] = {}


def cached_zone(factory: pytest.TempPathFactory, origin: str, text: str, algorithm: str, *,
                nsec3: bool = False, opt_out: bool = False, iterations: int = 1) -> SignedZone:
    """`sign_zone` once per test session for each set of arguments (keygen is slow)."""
    key = (origin, text, algorithm, nsec3, opt_out, iterations)
    if key not in _MADE:
        directory = factory.mktemp(f"{algorithm}-{origin.strip('.') or 'root'}")
        _MADE[key] = sign_zone(directory, origin, text, algorithm, nsec3=nsec3,
                               opt_out=opt_out, iterations=iterations)
    return _MADE[key]


def evidence(zone: SignedZone, parent: SignedZone | None = None) -> ZoneEvidence:
    """What a resolver would have fetched for `zone`: its DNSKEY RRset and RRSIGs, and from
    `parent` (if given) the zone's DS RRset and its RRSIGs."""
    origin = zone.origin
    keys = tuple(zone.rrset(origin, RRType.DNSKEY))
    key_rrsigs = tuple(zone.rrsigs(origin, RRType.DNSKEY))
    if parent is None:
        return ZoneEvidence(origin, keys, key_rrsigs)
    return ZoneEvidence(origin, keys, key_rrsigs, ds=tuple(parent.rrset(origin, RRType.DS)),
                        ds_rrsigs=tuple(parent.rrsigs(origin, RRType.DS)))
