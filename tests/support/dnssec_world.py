"""A signed world on real servers: one NSD serving a signed root, `test.` and one zone per
DNSSEC case, one validating Unbound and one `resolver serve` that both iterate it.

Every zone is signed by the Debian ldns tools (`ldns-keygen`, `ldns-signzone`,
`ldns-key2ds`; see `signed_zones.sign_zone`); the broken cases are made by changing what
the signer wrote (a record changed after signing, RRSIGs removed, a DS for another key) or
by signing with a validity window in the past or the future (three days out: Unbound
allows a clock skew of a tenth of the validity period, at most one day, `val-sig-skew-max`,
and would still call a signature valid from tomorrow secure). All addresses and ports are
the loopback ones given (127.77.23.1 for NSD, 127.23.0.1/.2 for the two resolvers; free
ports, as tests/support/unbound.py picks them). Unbound sends queries learned from
referrals to port 53, so each zone gets a stub zone naming NSD with its port (Unbound
still iterates and validates; DS queries go to the parent's stub). Each process runs
under `timeout`, so it stops by itself.

`CASES` is the table the integration test and `bench/dnssec_world.py` walk: for each case
the question, the outcome RFC 4035 / RFC 6840 / RFC 8914 / RFC 9276 call for, and for the
bogus ones that CD=1 still returns the data (RFC 4035 §3.2.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from resolver.dnssec.keys import Dnskey, ds_digest
from tests.conftest import require_tool
from tests.support.nsd import start_nsd
from tests.support.processes import stop_process
from tests.support.signed_zones import SignedZone, sign_zone
from tests.support.unbound import free_port

NSD_IP = "127.77.23.1"
RESOLVER_IP = "127.23.0.1"
UNBOUND_IP = "127.23.0.2"
#: Longest a server started here may live (seconds), whatever happens to the test run.
LIFETIME_S = 600
#: The signer every zone of this world is signed with.
SIGNER = "ldns-signzone (ldns-keygen, ldns-key2ds)"
#: A private-use-like algorithm number no validator implements (IANA: 200 is unassigned).
UNKNOWN_ALGORITHM = 200
#: A DS digest type no validator implements (IANA: 200 is unassigned).
UNKNOWN_DIGEST = 200
#: Iterations past RFC 9276 §3.2's limit as Unbound and we apply it (150).
HIGH_ITERATIONS = 200


@dataclass(frozen=True)
class Case:
    """One question and the outcome expected from a validating resolver."""

    name: str
    qname: str
    qtype: str
    rcode: str
    ad: bool
    #: The RFC 8914 code we must attach; None: no EDE is expected.
    ede: int | None
    #: A CD=1 query must still get the data (NOERROR, no AD).
    bogus: bool = False


CASES: tuple[Case, ...] = (
    Case("secure alg 8 (RSASHA256)", "www.alg8.test.", "A", "NOERROR", True, None),
    Case("secure alg 13 (ECDSAP256SHA256)", "www.alg13.test.", "A", "NOERROR", True, None),
    Case("secure alg 14 (ECDSAP384SHA384)", "www.alg14.test.", "A", "NOERROR", True, None),
    Case("secure alg 15 (ED25519)", "www.alg15.test.", "A", "NOERROR", True, None),
    Case("secure alg 16 (ED448)", "www.alg16.test.", "A", "NOERROR", True, None),
    Case("NSEC NXDOMAIN", "nothere.alg13.test.", "A", "NXDOMAIN", True, None),
    Case("NSEC NODATA", "www.alg13.test.", "TXT", "NOERROR", True, None),
    Case("NSEC3 NXDOMAIN", "nothere.nsec3.test.", "A", "NXDOMAIN", True, None),
    Case("NSEC3 NODATA", "www.nsec3.test.", "TXT", "NOERROR", True, None),
    Case("NSEC3 opt-out insecure delegation", "www.island.optout.test.", "A", "NOERROR",
         False, None),
    Case("NSEC wildcard answer", "a.wild.alg13.test.", "A", "NOERROR", True, None),
    Case("NSEC wildcard NODATA", "a.wild.alg13.test.", "MX", "NOERROR", True, None),
    Case("NSEC3 wildcard answer", "a.wild.nsec3.test.", "A", "NOERROR", True, None),
    Case("CNAME secure -> secure zone", "alias.cname.test.", "A", "NOERROR", True, None),
    Case("CNAME secure -> insecure zone", "toplain.cname.test.", "A", "NOERROR", False, None),
    Case("insecure delegation (no DS)", "www.plain.test.", "A", "NOERROR", False, None),
    Case("signature does not verify", "www.badsig.test.", "A", "SERVFAIL", False, 6,
         bogus=True),
    Case("expired RRSIG", "www.expired.test.", "A", "SERVFAIL", False, 7, bogus=True),
    Case("not-yet-valid RRSIG", "www.future.test.", "A", "SERVFAIL", False, 8, bogus=True),
    Case("DS matches no DNSKEY", "www.dsnokey.test.", "A", "SERVFAIL", False, 9, bogus=True),
    Case("DS for a key that signs nothing", "www.dsunused.test.", "A", "SERVFAIL", False, 10,
         bogus=True),
    Case("DS but no RRSIGs", "www.nosigs.test.", "A", "SERVFAIL", False, 10, bogus=True),
    Case("DS but no DNSKEY RRset", "www.nokeys.test.", "A", "SERVFAIL", False, 9,
         bogus=True),
    Case("answer RRSIG missing (keys signed)", "www.nodatasig.test.", "A", "SERVFAIL", False,
         10, bogus=True),
    Case("NXDOMAIN without its NSEC", "nothere.nonsec.test.", "A", "SERVFAIL", False, 12),
    Case("unknown DNSKEY/DS algorithm 200", "www.unkalg.test.", "A", "NOERROR", False, None),
    Case("unknown DS digest type 200", "www.unkdigest.test.", "A", "NOERROR", False, None),
    Case("NSEC3 iterations 200 > 150", "nothere.iter200.test.", "A", "NXDOMAIN", False, None),
)


@dataclass(frozen=True)
class Answer:
    """What dig printed, reduced to what the cases compare."""

    rcode: str
    ad: bool
    ede: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class World:
    nsd_port: int
    resolver_port: int
    unbound_port: int
    directory: Path

    def ask(self, server: str, case: Case, *, cd: bool = False) -> Answer:
        """`dig +dnssec` (and `+cd` when asked) to ours (`server="ours"`) or Unbound."""
        ip, port = ((RESOLVER_IP, self.resolver_port) if server == "ours"
                    else (UNBOUND_IP, self.unbound_port))
        command = [require_tool("dig"), f"@{ip}", "-p", str(port), case.qname, case.qtype,
                   "+dnssec", "+tries=1", "+time=8"]
        if cd:
            command.append("+cd")
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              check=False)
        return parse_dig(done.stdout)


def parse_dig(output: str) -> Answer:
    status = re.search(r"status: ([A-Z]+)", output)
    flags = re.search(r";; flags: ([a-z ]*);", output)
    if status is None or flags is None:
        return Answer("NO ANSWER", False, (), output)
    ede = tuple(int(code) for code in re.findall(r"EDE: (\d+)", output))
    return Answer(status.group(1), "ad" in flags.group(1).split(), ede, output)


def _soa_ns(origin: str) -> str:
    ns = f"ns.{origin}" if origin != "." else "ns.root."
    return (f"$ORIGIN {origin}\n$TTL 3600\n"
            f"@ IN SOA {ns} hostmaster.test. 1 7200 3600 1209600 300\n@ IN NS {ns}\n")


def _leaf(origin: str, address: str, extra: str = "") -> str:
    return _soa_ns(origin) + f"ns IN A {NSD_IP}\nwww IN A {address}\n{extra}"


def _stamp(offset_s: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + offset_s))


DAY = 86400.0


def _unknown_algorithm_key(origin: str) -> tuple[str, str]:
    """A DNSKEY of algorithm 200 (key octets no one can use) and its SHA-256 DS."""
    public = hashlib.sha256(b"no validator knows this algorithm").digest()
    rdata = (257).to_bytes(2, "big") + bytes([3, UNKNOWN_ALGORITHM]) + public
    key = Dnskey.from_rdata(origin, rdata)
    digest = ds_digest(key, 2)
    assert digest is not None
    dnskey = (f"{origin} 3600 IN DNSKEY 257 3 {UNKNOWN_ALGORITHM} "
              f"{base64.b64encode(public).decode()}\n")
    ds = f"{origin} 3600 IN DS {key.key_tag} {UNKNOWN_ALGORITHM} 2 {digest.hex().upper()}\n"
    return dnskey, ds


def _key_tag_and_algorithm(ds_text: str) -> tuple[str, str]:
    fields = ds_text.split()
    at = fields.index("DS")
    return fields[at + 1], fields[at + 2]


def _drop_lines(path: Path, pattern: str) -> None:
    """Take out of a signed zone file every record whose line matches `pattern`."""
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if not re.search(pattern, line)]
    path.write_text("".join(kept))


def _signed_file(zone: SignedZone) -> Path:
    return zone.directory / f"{zone.origin}zone.signed"


def build_zones(base: Path) -> tuple[dict[str, Path], str]:
    """Sign every zone of the world into `base`; the zone files NSD serves, by origin, and
    the root's DS (the trust anchor)."""
    good = {"inception": _stamp(-DAY), "expiration": _stamp(30 * DAY)}
    files: dict[str, Path] = {}
    parent_ds: list[str] = []
    delegated: list[str] = []

    def signed(origin: str, text: str, algorithm: str = "ECDSAP256SHA256", *,
               ds: bool = True, nsec3: bool = False, opt_out: bool = False,
               iterations: int = 1, inception: str = good["inception"],
               expiration: str = good["expiration"]) -> SignedZone:
        zone = sign_zone(base / origin.rstrip("."), origin, text, algorithm, nsec3=nsec3,
                         opt_out=opt_out, iterations=iterations, inception=inception,
                         expiration=expiration)
        files[origin] = _signed_file(zone)
        delegated.append(origin)
        if ds:
            parent_ds.append(zone.ds_text)
        return zone

    address = iter(f"192.0.2.{n}" for n in range(10, 250))
    wild = "*.wild IN A 192.0.2.99\n"
    for number, algorithm in ((8, "RSASHA256"), (13, "ECDSAP256SHA256"),
                              (14, "ECDSAP384SHA384"), (15, "ED25519"), (16, "ED448")):
        origin = f"alg{number}.test."
        signed(origin, _leaf(origin, next(address), wild if number == 13 else ""), algorithm)
    signed("nsec3.test.", _leaf("nsec3.test.", next(address), wild), nsec3=True)
    island = "island.optout.test."
    signed("optout.test.", _leaf("optout.test.", next(address),
                                 f"island IN NS ns.island\nns.island IN A {NSD_IP}\n"),
           nsec3=True, opt_out=True)
    island_file = base / "island.zone"
    island_file.write_text(_leaf(island, next(address)))
    files[island] = island_file
    signed("cname.test.", _leaf("cname.test.", next(address),
                                "alias IN CNAME www.alg8.test.\n"
                                "toplain IN CNAME www.plain.test.\n"))
    plain_file = base / "plain.zone"
    plain_file.write_text(_leaf("plain.test.", next(address)))
    files["plain.test."] = plain_file
    delegated.append("plain.test.")
    # Signed, then the address changed: the RRSIG over it no longer verifies.
    signed("badsig.test.", _leaf("badsig.test.", "192.0.2.250"))
    text = files["badsig.test."].read_text()
    files["badsig.test."].write_text(text.replace("192.0.2.250", "192.0.2.251"))
    signed("expired.test.", _leaf("expired.test.", next(address)),
           inception=_stamp(-30 * DAY), expiration=_stamp(-3 * DAY))
    signed("future.test.", _leaf("future.test.", next(address)),
           inception=_stamp(3 * DAY), expiration=_stamp(30 * DAY))
    # A DS made from a second key that the zone never publishes.
    signed("dsnokey.test.", _leaf("dsnokey.test.", next(address)), ds=False)
    stranger = sign_zone(base / "dsnokey-other", "dsnokey.test.", _leaf(
        "dsnokey.test.", "192.0.2.1"), "ECDSAP256SHA256",
        inception=good["inception"], expiration=good["expiration"])
    parent_ds.append(stranger.ds_text)
    # A second key published in the DNSKEY RRset, named by the DS, signing nothing.
    idle = sign_zone(base / "dsunused-idle", "dsunused.test.", _leaf(
        "dsunused.test.", "192.0.2.1"), "ECDSAP256SHA256",
        inception=good["inception"], expiration=good["expiration"])
    idle_dnskey = idle.key_text.split(";")[0].strip() + "\n"
    signed("dsunused.test.", _leaf("dsunused.test.", next(address), idle_dnskey), ds=False)
    parent_ds.append(idle.ds_text)
    # Signed, then every RRSIG taken out: DS and DNSKEY agree, nothing is signed.
    signed("nosigs.test.", _leaf("nosigs.test.", next(address)))
    _drop_lines(files["nosigs.test."], r"\sRRSIG\s")
    # Signed, DS in the parent, served without its DNSKEY RRset (and the RRSIGs over it).
    signed("nokeys.test.", _leaf("nokeys.test.", next(address)))
    _drop_lines(files["nokeys.test."], r"\sDNSKEY\s")
    # Signed, then the RRSIG over the www A RRset taken out (the keys stay signed).
    signed("nodatasig.test.", _leaf("nodatasig.test.", next(address)))
    _drop_lines(files["nodatasig.test."], r"^www\.nodatasig\.test\.\s.*\sRRSIG\s+A\s")
    # Signed, then its NSEC records (and their RRSIGs) taken out: no denial is provable.
    signed("nonsec.test.", _leaf("nonsec.test.", next(address)))
    _drop_lines(files["nonsec.test."], r"\s(NSEC|RRSIG\s+NSEC)\s")
    unknown_dnskey, unknown_ds = _unknown_algorithm_key("unkalg.test.")
    signed("unkalg.test.", _leaf("unkalg.test.", next(address), unknown_dnskey), ds=False)
    parent_ds.append(unknown_ds)
    digest_zone = signed("unkdigest.test.", _leaf("unkdigest.test.", next(address)),
                         ds=False)
    tag, algorithm_number = _key_tag_and_algorithm(digest_zone.ds_text)
    parent_ds.append(f"unkdigest.test. 3600 IN DS {tag} {algorithm_number} {UNKNOWN_DIGEST} "
                     f"{hashlib.sha256(b'unknown digest').hexdigest().upper()}\n")
    signed("iter200.test.", _leaf("iter200.test.", next(address)), nsec3=True,
           iterations=HIGH_ITERATIONS)

    cuts = "".join(f"{o.removesuffix('.test.')} IN NS ns.{o}\nns.{o.removesuffix('.test.')}"
                   f" IN A {NSD_IP}\n" for o in delegated)
    test = sign_zone(base / "test", "test.",
                     _soa_ns("test.") + f"ns IN A {NSD_IP}\n" + cuts + "".join(parent_ds),
                     "ECDSAP256SHA256", inception=good["inception"],
                     expiration=good["expiration"])
    files["test."] = _signed_file(test)
    root = sign_zone(base / "root", ".", _soa_ns(".") + (
        f"ns.root. IN A {NSD_IP}\ntest. IN NS ns.test.\nns.test. IN A {NSD_IP}\n"
        + test.ds_text), "ECDSAP256SHA256",
        inception=good["inception"], expiration=good["expiration"])
    files["."] = _signed_file(root)
    return files, root.ds_text


def _unbound_config(directory: Path, port: int, nsd_port: int, anchor: Path,
                    zones: list[str]) -> Path:
    """Unbound's root comes from the stub zone for "." (a root-hints file would name port
    53 and, given beside the stub, wins: "second hints for zone . ignored")."""
    lines = ["server:", "    verbosity: 1", f"    interface: {UNBOUND_IP}@{port}",
             f"    port: {port}", "    do-daemonize: no", '    username: ""', '    chroot: ""',
             f'    directory: "{directory}"', f'    pidfile: "{directory / "unbound.pid"}"',
             '    logfile: ""', "    use-syslog: no", "    do-ip6: no",
             "    do-not-query-localhost: no", "    access-control: 127.0.0.0/8 allow",
             '    module-config: "validator iterator"',
             f'    trust-anchor-file: "{anchor}"', "    ede: yes", "    val-log-level: 2",
             "    num-threads: 1", "    so-reuseport: no", "    outgoing-range: 64",
             # Unbound serves test. as an RFC 6761 local zone unless told not to.
             '    local-zone: "test." nodefault',
             "remote-control:", "    control-enable: no"]
    for zone in zones:
        lines += ["stub-zone:", f'    name: "{zone}"', f"    stub-addr: {NSD_IP}@{nsd_port}"]
    config = directory / "unbound.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def _wait_for_dns(ip: str, port: int, process: subprocess.Popen[bytes], log: Path,
                  timeout_s: float = 15.0) -> None:
    query = bytes.fromhex("abcd00000001000000000000") + b"\x00\x00\x02\x00\x01"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{ip}:{port} exited with {process.returncode}: {text[-800:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.3)
            try:
                probe.sendto(query, (ip, port))
                probe.recvfrom(4096)
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"nothing answers on {ip}:{port}")


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([require_tool("timeout"), "-k", "5", str(LIFETIME_S),
                                 *command], stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def running_world(base: Path) -> Iterator[World]:
    """Sign the world into `base`, start NSD, Unbound and `resolver serve`; stop all three
    (by pid) on the way out."""
    unbound = require_tool("unbound")
    require_tool("dig")
    files, root_ds = build_zones(base)
    hints = base / "world.hints"
    hints.write_text(f". 3600000 NS ns.root.\nns.root. 3600000 A {NSD_IP}\n")
    anchor = base / "world.anchor"
    anchor.write_text(root_ds)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        served = start_nsd(base / "nsd", {name: path.read_text()
                                          for name, path in files.items()}, ip=NSD_IP)
        processes.append(served.process)
        nsd_port = served.port
        unbound_port = free_port(UNBOUND_IP)
        config = _unbound_config(base, unbound_port, nsd_port, anchor, list(files))
        processes.append(_start([unbound, "-d", "-c", str(config)], base / "unbound.log"))
        _wait_for_dns(UNBOUND_IP, unbound_port, processes[-1], base / "unbound.log")
        resolver_port = free_port(RESOLVER_IP)
        processes.append(_start(
            [sys.executable, "-m", "resolver", "serve", "--listen",
             f"{RESOLVER_IP}:{resolver_port}", "--root-hints", str(hints), "--upstream-port",
             str(nsd_port), "--trust-anchor-file", str(anchor), "--verbose"],
            base / "resolver.log"))
        _wait_for_dns(RESOLVER_IP, resolver_port, processes[-1], base / "resolver.log")
        yield World(nsd_port, resolver_port, unbound_port, base)
    finally:
        for process in reversed(processes):
            stop_process(process)


def table(world: World) -> list[tuple[Case, Answer, Answer]]:
    """Every case asked of ours and of Unbound."""
    return [(case, world.ask("ours", case), world.ask("unbound", case)) for case in CASES]


def describe(answer: Answer) -> str:
    ede = ",".join(str(code) for code in answer.ede) or "-"
    return f"{answer.rcode} AD={int(answer.ad)} EDE={ede}"
