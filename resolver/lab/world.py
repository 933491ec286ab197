"""The lab's world map: which name server lives at which loopback address and serves which zones.

The zone *data* lives in RFC 1035 master files under `zones/` (one file per zone,
`<origin>.zone`, the root zone in `root.zone`); this module only says who serves what.

Address rule: every name server listens on its own loopback address. A server whose
real or textbook address is a.b.c.d listens on 127.b.c.d (a.root-servers.net,
198.41.0.4, becomes 127.41.0.4; dns1.networkutopia.com, 212.212.212.1, becomes
127.212.212.1). Addresses that are only data (web and mail hosts) keep their values,
since nobody connects to them. The glue and address records in the zone files use
the same loopback addresses; `tests/unit/test_lab_world.py` checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True, kw_only=True)
class LabServer:
    """One authoritative name server of the lab."""

    name: str  #: host name, fully qualified, e.g. "a.root-servers.net."
    address: str  #: the loopback address it listens on
    zones: tuple[str, ...]  #: origins of the zones it serves, e.g. ("com.", "net.")


_ROOT_ZONES = (".", "arpa.", "root-servers.net.")

SERVERS: tuple[LabServer, ...] = (
    # The root: three of the thirteen letters, all serving the same zones (like the real ones
    # once did, they also serve arpa).
    LabServer(name="a.root-servers.net.", address="127.41.0.4", zones=_ROOT_ZONES),
    LabServer(name="b.root-servers.net.", address="127.247.170.2", zones=_ROOT_ZONES),
    LabServer(name="c.root-servers.net.", address="127.33.4.12", zones=_ROOT_ZONES),
    # Top-level domains. Like Verisign's, the gtld servers serve both com and net.
    LabServer(name="a.gtld-servers.net.", address="127.5.6.30", zones=("com.", "net.")),
    LabServer(name="b.gtld-servers.net.", address="127.33.14.30", zones=("com.", "net.")),
    LabServer(name="c.edu-servers.net.", address="127.26.92.30", zones=("edu.",)),
    LabServer(name="b0.org.afilias-nst.org.", address="127.19.54.1", zones=("org.",)),
    LabServer(name="d.nic.fr.", address="127.0.9.1", zones=("fr.",)),
    LabServer(name="a.nic.test.", address="127.0.2.53", zones=("test.",)),
    LabServer(name="a.in-addr-servers.arpa.", address="127.180.182.53", zones=("in-addr.arpa.",)),
    # Textbook organisations.
    LabServer(name="dns.hamburger.edu.", address="127.51.100.10", zones=("hamburger.edu.",)),
    LabServer(name="dns.umass.edu.", address="127.119.10.27", zones=("umass.edu.",)),
    LabServer(
        name="dns.cs.umass.edu.",
        address="127.119.240.1",
        zones=("cs.umass.edu.", "245.119.128.in-addr.arpa."),
    ),
    LabServer(name="dns.crepes.fr.", address="127.51.100.20", zones=("crepes.fr.",)),
    # One server can host many zones: amazon's server also hosts cnn.com.
    LabServer(name="dns.amazon.com.", address="127.251.192.1", zones=("amazon.com.", "cnn.com.")),
    LabServer(
        name="dns1.networkutopia.com.",
        address="127.212.212.1",
        zones=("networkutopia.com.", "212.212.212.in-addr.arpa."),
    ),
    LabServer(name="ns.ibm.com.", address="127.42.38.10", zones=("ibm.com.",)),
    LabServer(name="ns.backup2.ibm.com.", address="127.42.60.53", zones=("backup2.ibm.com.",)),
    # A hosting provider: glueless.org is delegated to ns.hosting.net, which .org cannot glue.
    LabServer(
        name="ns.hosting.net.", address="127.0.113.53", zones=("hosting.net.", "glueless.org.")
    ),
    LabServer(name="ns1.example.test.", address="127.0.2.54", zones=("example.test.",)),
    LabServer(name="ns2.lame.test.", address="127.0.2.55", zones=("lame.test.",)),
)

#: Delegations whose parent lists a server that does not serve the child (a "lame"
#: delegation, RFC 1912 §2.8): (child zone, NS name listed by the parent). The lab keeps
#: them on purpose; ns1.lame.test's glue points at ns1.example.test, which answers REFUSED.
LAME_DELEGATIONS: frozenset[tuple[str, str]] = frozenset({("lame.test.", "ns1.lame.test.")})


def root_servers() -> tuple[LabServer, ...]:
    """The servers of the root zone, in hint order."""
    return tuple(s for s in SERVERS if "." in s.zones)


def all_zones() -> tuple[str, ...]:
    """Every zone origin served somewhere in the lab, each once, in first-seen order."""
    return tuple(dict.fromkeys(zone for server in SERVERS for zone in server.zones))


def zone_file_name(origin: str) -> str:
    """`root.zone` for the root, `<origin without final dot>.zone` otherwise."""
    return "root.zone" if origin == "." else origin.rstrip(".") + ".zone"


def zone_text(origin: str) -> str:
    """The master-file text of one zone, read from the package data."""
    return (
        resources.files("resolver.lab")
        .joinpath("zones", zone_file_name(origin))
        .read_text(encoding="utf-8")
    )
