"""Small builders shared by the harness's own tests (scenario text -> Scenario, queries)."""

from __future__ import annotations

from pathlib import Path

import dnslib

from tests.replay.messages import make_opt
from tests.replay.rpl import Scenario, parse_scenario

__all__ = ["make_scenario", "wire_query"]


def make_scenario(tmp_path: Path, suite: str, body: str, config: str = "",
                  name: str = "t.rpl") -> Scenario:
    """Write a scenario into `tmp_path/suite/name` and parse it (the folder picks the dialect)."""
    folder = tmp_path / suite
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"{config}\nCONFIG_END\n\nSCENARIO_BEGIN test\n{body}\nSCENARIO_END\n")
    return parse_scenario(path.read_text(), path)


def wire_query(name: str, qtype: str = "A", *, ident: int = 1234, edns: bool = False,
               do: bool = False, rd: bool = False) -> bytes:
    """A plain query as a resolver would send it upstream."""
    record = dnslib.DNSRecord(dnslib.DNSHeader(id=ident, rd=int(rd)),
                              q=dnslib.DNSQuestion(name, getattr(dnslib.QTYPE, qtype)))
    if edns or do:
        record.ar.append(make_opt(payload=1232, do=do))
    return bytes(record.pack())
