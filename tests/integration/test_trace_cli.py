"""`resolver trace` as a user runs it: the installed command against the lab on loopback,
and its delegation path compared with real `dig +trace`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resolver.lab.world import SERVERS, root_servers
from tests.conftest import require_tool
from tests.integration.conftest import RunningLab, RunningResolver

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("resolver")
RESOLVER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "resolver"]


def trace(lab: RunningLab, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `resolver trace ARGS --root-hints <lab hints> --upstream-port <lab port>`."""
    return subprocess.run(
        [*RESOLVER, "trace", *args, "--root-hints", str(lab.hints),
         "--upstream-port", str(lab.port)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def events(lab: RunningLab, name: str, *extra: str) -> list[dict[str, Any]]:
    done = trace(lab, name, "--json", *extra)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def depth0_zones(records: list[dict[str, Any]]) -> list[str]:
    zones: list[str] = []
    for r in records:
        if r["event"] == "query_sent" and r["depth"] == 0 and r["zone"] not in zones:
            zones.append(r["zone"])
    return zones


def test_trace_cli_human_output_walks_root_com_networkutopia(lab: RunningLab) -> None:
    """The real command prints each cut, the servers with addresses, glue, RTTs and a summary."""
    done = trace(lab, "www.networkutopia.com")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # piped: no colour
    assert re.search(r"\[\d+\] zone \.: ask [abc]\.root-servers\.net\. 127\.\d+\.\d+\.\d+", out)
    assert "referral to com. (NS TTL 172800 s):" in out
    assert "a.gtld-servers.net.  glue 127.5.6.30" in out
    assert re.search(r"zone com\.: ask [ab]\.gtld-servers\.net\. 127\.", out)
    assert "dns1.networkutopia.com.  glue 127.212.212.1" in out
    assert "zone networkutopia.com.: ask dns1.networkutopia.com. 127.212.212.1" in out
    assert re.search(r"<- NOERROR  AA=1  answer 1, authority 0, additional 0  \d+\.\d ms  answer",
                     out)
    assert f"UDP to port {lab.port}" in out.splitlines()[0]
    assert "www.networkutopia.com.\t3600\tIN\tA\t212.212.212.2" in out
    assert re.search(r"summary: 4 queries sent, \d servers contacted, \d+\.\d ms in total", out)


def test_trace_cli_nests_the_glueless_lookup(lab: RunningLab) -> None:
    """www.glueless.org: the ns.hosting.net lookup is indented under the org referral."""
    done = trace(lab, "www.glueless.org", "--no-color")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    lookup = next(i for i, line in enumerate(lines) if "lookup ns.hosting.net. A" in line)
    assert lines[lookup].startswith("|   ")
    assert "no glue" in lines[lookup - 1]
    answer = next(i for i, line in enumerate(lines) if "=> ns.hosting.net. A: 127.0.113.53" in line)
    assert all(line.startswith("|   ") for line in lines[lookup:answer + 1])
    assert "zone glueless.org.: ask ns.hosting.net. 127.0.113.53" in lines[answer + 1]


@pytest.mark.parametrize(("name", "zones", "rcode"), [
    ("www.networkutopia.com", [".", "com.", "networkutopia.com."], "NOERROR"),
    ("www.ibm.com", [".", "com.", "ibm.com.", "backup2.ibm.com."], "NOERROR"),
    ("www.glueless.org", [".", "org.", "glueless.org."], "NOERROR"),
    ("nothere.networkutopia.com", [".", "com.", "networkutopia.com."], "NXDOMAIN"),
    ("www.lame.test", [".", "test.", "lame.test."], "NOERROR"),
])
def test_trace_cli_json_path_and_result(lab: RunningLab, name: str, zones: list[str],
                                        rcode: str) -> None:
    """--json: the cuts asked for the client's question and the final rcode."""
    records = events(lab, name)
    assert depth0_zones(records) == zones
    assert records[0]["event"] == "resolution_started"
    assert records[-1]["event"] == "resolution_finished" and records[-1]["rcode"] == rcode
    assert all(r["port"] == lab.port for r in records if r["event"] == "query_sent")


def test_trace_cli_json_cname_and_glueless_events(lab: RunningLab) -> None:
    """The CNAME of www.ibm.com and the depth-1 lookup of ns.hosting.net appear as events."""
    ibm = events(lab, "www.ibm.com")
    assert {"event": "cname_followed", "depth": 0, "from_name": "www.ibm.com.",
            "to_name": "servereast.backup2.ibm.com."} in [
        {k: v for k, v in r.items() if k != "at_s"} for r in ibm]
    glueless = events(lab, "www.glueless.org")
    nested = [r for r in glueless if r["event"] == "resolution_started" and r["depth"] == 1]
    assert [r["qname"] for r in nested] == [".", "ns.hosting.net."]


def test_trace_cli_tcp_sends_every_query_over_tcp(lab: RunningLab) -> None:
    """--tcp: every query_sent says tcp, and the answer still arrives."""
    records = events(lab, "www.networkutopia.com", "--tcp")
    sent = [r for r in records if r["event"] == "query_sent"]
    assert sent and {r["transport"] for r in sent} == {"tcp"}
    assert records[-1]["rcode"] == "NOERROR"


def test_trace_cli_fanout_marks_the_lame_server(lab: RunningLab) -> None:
    """--fanout on www.lame.test: ns1 is LAME (REFUSED) and only in the parent's NS set."""
    done = trace(lab, "www.lame.test", "--fanout")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    table = out[out.index("fan-out: zone lame.test."):]
    row = next(line for line in table.splitlines() if line.strip().startswith("ns1.lame.test."))
    assert "127.0.2.54" in row and "LAME (REFUSED)" in row
    assert "only in the parent: ns1.lame.test." in table
    assert re.search(r"ns2\.lame\.test\.\s+127\.0\.2\.55\s+\d+\.\d ms\s+NOERROR\s+1\s+answer",
                     table)


def test_trace_cli_recursive_contrast(lab: RunningLab, resolver: RunningResolver) -> None:
    """--recursive: one RD=1 query to the running resolver; its answer and time are shown."""
    done = trace(lab, "www.networkutopia.com", "--recursive", f"{resolver.ip}@{resolver.port}")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"recursive contrast: one query with RD=1 to {resolver.ip}:{resolver.port}" in out
    assert re.search(r"<- NOERROR  RA=1  AA=0  \d+\.\d ms", out)
    assert re.search(r"www\.networkutopia\.com\.\t\d+\tIN\tA\t212\.212\.212\.2", out)


def test_trace_cli_unreachable_root_is_one_line_and_exit_two(lab: RunningLab,
                                                             tmp_path: Path) -> None:
    """Hints pointing where nothing listens: exit 2, one error line, no traceback."""
    hints = tmp_path / "dead.hints"
    hints.write_text(". 3600000 NS a.root-servers.net.\n"
                     "a.root-servers.net. 3600000 A 127.41.0.4\n")
    done = subprocess.run(
        [*RESOLVER, "trace", "www.networkutopia.com", "--root-hints", str(hints),
         "--upstream-port", str(_unused_port(lab))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: no server answered")
    assert "Traceback" not in done.stderr + done.stdout


def test_trace_cli_bad_name_is_one_line(lab: RunningLab) -> None:
    """An invalid name: one line on stderr and exit 1."""
    done = trace(lab, "bad..name")
    assert done.returncode == 1
    assert done.stderr.strip() == ("Error: Invalid value for NAME: 'bad..name' is not a valid "
                                   "domain name")


def _unused_port(lab: RunningLab) -> int:
    """A port next to the lab's, on which the lab's root address has no listener."""
    return lab.port + 1 if lab.port < 65535 else lab.port - 1


# -- dig +trace -----------------------------------------------------------------------


def _dig_zone_cuts(output: str) -> list[str]:
    """Owner names of the NS sets dig +trace printed, in order: the zone cuts it visited."""
    zones: list[str] = []
    for line in output.splitlines():
        fields = line.split()
        is_ns = len(fields) >= 5 and not line.startswith(";") and fields[3] == "NS"
        if is_ns and fields[0] not in zones:
            zones.append(fields[0])
    return zones


def _run_dig_trace(lab: RunningLab, name: str, tmp_path: Path) -> str:
    """dig +trace against the lab root, with the lab's server names in a private /etc/hosts.

    dig resolves every NS name through the system's resolver (it ignores glue), so it runs
    in its own mount namespace where /etc/hosts maps the lab's names to their addresses.
    """
    dig = require_tool("dig")
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--mount", "true"], capture_output=True,
                                         check=False).returncode != 0:
        message = "unshare --mount is not available to give dig the lab's host names"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"{s.address} {s.name.rstrip('.')}\n" for s in SERVERS))
    # Any name dig might still look up goes to loopback, never to the host's resolver.
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    root = root_servers()[0].address
    script = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf '
              '&& shift 2 && exec "$@"')
    done = subprocess.run(
        [unshare, "--mount", "sh", "-c", script, "sh", str(hosts), str(resolv),
         dig, f"@{root}", "-p", str(lab.port), "+trace", "+nodnssec", "+nocookie",
         "+time=2", "+tries=1", name],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("name", ["www.networkutopia.com", "www.glueless.org",
                                  "nothere.networkutopia.com", "www.ibm.com"])
def test_trace_cli_visits_the_same_zone_cuts_as_dig_trace(lab: RunningLab, tmp_path: Path,
                                                          name: str) -> None:
    """Our delegation path equals dig +trace's (dig stops at a CNAME; we follow it)."""
    dig_zones = _dig_zone_cuts(_run_dig_trace(lab, name, tmp_path))
    ours = depth0_zones(events(lab, name))
    assert dig_zones[0] == "."
    assert len(dig_zones) >= 3
    if name == "www.ibm.com":
        assert ours[: len(dig_zones)] == dig_zones
        assert ours[len(dig_zones):] == ["backup2.ibm.com."]
    else:
        assert ours == dig_zones


def test_trace_cli_same_seed_asks_the_same_servers_in_every_run(lab: RunningLab) -> None:
    """--seed N: the same choice among equal servers every run, for a reproducible walk."""

    def asked(seed: str) -> list[str]:
        return [r["address"] for r in events(lab, "www.glueless.org", "--seed", seed)
                if r["event"] == "query_sent"]

    first = asked("5")
    assert len(first) >= 5
    assert asked("5") == first and asked("5") == first


def test_trace_cli_two_names_and_the_server_option_in_one_run(lab: RunningLab) -> None:
    """`resolver trace A B --server b.root-servers.net`: priming skipped, the walk starts at
    that root server, and the second name at the zone cut the first left."""
    done = trace(lab, "www.networkutopia.com", "mail.networkutopia.com", "MX",
                 "--server", "b.root-servers.net")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "root priming" not in out
    assert "zone cut . (from root hints): b.root-servers.net." in out
    assert "trace mail.networkutopia.com. MX: with the cache the names before left" in out
    second = out.split("trace mail.networkutopia.com. MX", 1)[1]
    assert "zone cut networkutopia.com. (in the cache, learnt earlier)" in second
    assert re.search(r"^path: networkutopia\.com\.: 0 referrals, 1 query, [\d.]+ ms$", second,
                     re.MULTILINE), second
