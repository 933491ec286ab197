"""The CONFIG section of a scenario file -> `ScenarioConfig` (README §3.3), per dialect.

Deckard: flat `key: value` lines (`;` and `#` start comments). testbound: unbound.conf text with
clauses (`server:`, `stub-zone:`, `forward-zone:`...), where several `key: value` pairs may share
one line. Keys a generic resolver can honour map to `ReplayConfig` fields; keys that only tune the
peer's internals are dropped (README's "can be ignored" list); everything else lands in
`ReplayConfig.extra` so a failure can say which implementation-specific knob the file relies on.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tests.replay.rrtext import split_tokens
from tests.replay.seam import ReplayConfig

__all__ = [
    "DEFAULT_START_TIME", "Dialect", "ScenarioConfig", "config_only", "dialect_for", "parse_config",
]

#: Virtual clock start when a file sets no val-override date (README §3.7).
DEFAULT_START_TIME = 1_700_000_000.0
ROOT_HINT_NAME = "k.root-servers.net."


class Dialect(Enum):
    """Which peer wrote the file; decides grammar details and semantics (README §3.9)."""

    DECKARD = "deckard"
    TESTBOUND = "testbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioConfig:
    """CONFIG mapped for the harness: the resolver settings plus what drives the run itself."""

    replay: ReplayConfig  # `qmin` here is a placeholder; use `for_qmin`
    pinned_qmin: bool | None  # None: the file leaves QNAME minimisation unset
    start_time: float | None  # from val-override-date / val-override-timestamp
    full_sections: bool = False  # testbound `minimal-responses: no` (README §3.8 item 3)

    def for_qmin(self, qmin: bool) -> ReplayConfig:
        """The resolver settings for one run in the given QNAME-minimisation mode."""
        return dataclasses.replace(self.replay, qmin=qmin)


@dataclass(slots=True)
class _Draft:
    """Mutable accumulator filled key by key, frozen into a ReplayConfig at the end."""

    qmin_qtype: str
    root_hints: list[tuple[str, str]] = field(default_factory=list)
    forwarders: list[str] = field(default_factory=list)
    forward_zones: dict[str, list[str]] = field(default_factory=dict)
    stub_zones: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    trust_anchors: list[str] = field(default_factory=list)
    negative_trust_anchors: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    pinned_qmin: bool | None = None
    start_time: float | None = None
    validator_module: bool = True

    def note(self, key: str, value: str) -> None:
        self.extra[key] = f"{self.extra[key]}; {value}" if key in self.extra else value

    def build(self, *, full_sections: bool = False) -> ScenarioConfig:
        replay = ReplayConfig(
            root_hints=self.root_hints, forwarders=self.forwarders,
            forward_zones=self.forward_zones, stub_zones=self.stub_zones, qmin=False,
            qmin_qtype=self.qmin_qtype, trust_anchors=self.trust_anchors,
            negative_trust_anchors=self.negative_trust_anchors,
            validate=bool(self.trust_anchors) and self.validator_module, extra=self.extra,
            **self.settings,  # type: ignore[arg-type]
        )
        return ScenarioConfig(replay=replay, pinned_qmin=self.pinned_qmin,
                              start_time=self.start_time, full_sections=full_sections)


_TRUE = {"yes", "on", "true", "1"}
_FALSE = {"no", "off", "false", "0"}


def _flag(value: str) -> bool:
    lowered = value.strip('"').lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected yes/no, got {value!r}")


#: `val-override-date: "-1"`: Unbound then ignores signature dates altogether (unbound.conf(5)).
IGNORE_SIGNATURE_DATES = -1.0


def _start_time(value: str) -> float:
    value = value.strip('"')
    if len(value) == 14 and value.isdigit():  # YYYYMMDDHHMMSS, UTC
        return float(calendar.timegm(time.strptime(value, "%Y%m%d%H%M%S")))
    return float(value)


def _address(value: str) -> str:
    """`ip` or `ip@port` -> ip (scenarios only use port 53)."""
    return value.strip('"').split("@", 1)[0]


def _zone(value: str) -> str:
    name = value.strip('"').lower()
    return name if name.endswith(".") else f"{name}."


# --- Deckard ----------------------------------------------------------------------------------

#: Deckard keys with a direct boolean ReplayConfig counterpart.
_DECKARD_FLAGS = {
    "do-ip4": "do_ip4", "do-ip6": "do_ip6", "harden-glue": "harden_glue",
    "do-not-query-localhost": "do_not_query_localhost",
}
_KRESD_FEATURES = {"min_ttl": "cache_min_ttl", "max_ttl": "cache_max_ttl"}


def _strip_comment(line: str, markers: str) -> str:
    """Cut a trailing comment started by any of `markers`, ignoring markers inside quotes."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char in markers and not quoted:
            return line[:i]
    return line


def _parse_deckard(lines: Sequence[str]) -> ScenarioConfig:
    # Deckard's kresd template turns root priming off (README §3.3): the scenarios are
    # recordings of a resolver that walks from the hints as given. kresd answers an NS
    # question without the servers' addresses. Its UDP replies went up to the 4096 octets
    # its clients offer (kresd's bufsize before 2020: deckard-dnssec/val_cname_new_signer
    # expects 1,408 octets without TC).
    draft = _Draft(qmin_qtype="NS",
                   settings={"prime_root": False, "ns_addresses_in_answer": False,
                             "max_udp_size": 4096})
    stub_addrs: list[str] = []
    stub_name = ROOT_HINT_NAME
    force_ipv6 = False
    for line in lines:
        text = _strip_comment(line, ";#").strip()
        if not text:
            continue
        key, _, value = text.partition(":")
        key, value = key.strip(), value.strip()
        unquoted = value.strip('"')
        if key == "stub-addr":
            stub_addrs.append(_address(value))
        elif key == "stub-name":
            stub_name = _zone(value)
        elif key == "query-minimization":
            draft.pinned_qmin = _flag(value)
        elif key in _DECKARD_FLAGS:
            draft.settings[_DECKARD_FLAGS[key]] = _flag(value)
        elif key == "force-ipv6":
            force_ipv6 = _flag(value)
        elif key == "forward-addr":
            draft.forwarders.append(_address(value))
        elif key == "trust-anchor":
            draft.trust_anchors.append(unquoted)
        elif key == "domain-insecure":
            draft.negative_trust_anchors.append(_zone(value))
        elif key in ("val-override-date", "val-override-timestamp"):
            draft.start_time = _start_time(value)
        elif key in ("features", "feature-list"):
            _kresd_features(draft, unquoted)
        else:
            draft.note(key, value)  # Deckard itself rejects unknown keys
    if force_ipv6:
        stub_addrs = [a for a in stub_addrs if ":" in a] or stub_addrs
    draft.root_hints = [(stub_name, address) for address in stub_addrs]
    return draft.build()


def _kresd_features(draft: _Draft, value: str) -> None:
    """kresd `features:` lines: only the TTL clamps have a generic meaning (README §3.3)."""
    for name, setting in re.findall(r"([\w-]+)\s*=\s*(\S+)", value):
        if name in _KRESD_FEATURES and setting.isdigit():
            draft.settings[_KRESD_FEATURES[name]] = int(setting)
        else:
            draft.note(f"features:{name}", setting)


# --- testbound (unbound.conf) -----------------------------------------------------------------

_CLAUSES = {"server", "stub-zone", "forward-zone", "auth-zone", "rpz", "view", "remote-control",
            "python", "dynlib", "cachedb", "dnstap", "ipset", "dnscrypt"}
_KEY = re.compile(r"^[A-Za-z][\w-]*:$")
_SERVER_FLAGS = {
    "harden-glue": "harden_glue", "do-ip4": "do_ip4", "do-ip6": "do_ip6",
    "do-not-query-localhost": "do_not_query_localhost", "prefetch": "prefetch",
    "serve-expired": "serve_stale", "serve-expired-ttl-reset": "serve_stale_ttl_reset",
    "minimal-responses": "minimal_responses",
}
_SERVER_INTS = {
    "cache-min-ttl": "cache_min_ttl", "cache-max-ttl": "cache_max_ttl",
    "cache-min-negative-ttl": "cache_min_negative_ttl",
    "cache-max-negative-ttl": "cache_max_negative_ttl", "serve-expired-ttl": "serve_stale_ttl",
    "serve-expired-reply-ttl": "serve_stale_reply_ttl",
    "serve-expired-client-timeout": "serve_stale_client_timeout_ms",
}
#: Peer-internal tuning a generic resolver may ignore (README §3.3).
_IGNORED = {
    "target-fetch-policy", "iter-scrub-promiscuous", "harden-referral-path",
    "trust-anchor-signaling", "fake-sha1", "rrset-roundrobin", "aggressive-nsec",
    "verbosity", "val-log-level", "ede", "ede-serve-expired", "log-servfail",
    "log-queries", "log-replies", "log-tag-queryreply", "log-local-actions", "directory",
}


def _unbound_pairs(lines: Sequence[str]) -> list[tuple[str, str]]:
    """(key, value) pairs in file order; a clause header has an empty value."""
    pairs: list[tuple[str, str]] = []
    for line in lines:
        text = _strip_comment(line, "#").strip()
        if not text or text.startswith(";"):
            continue
        key: str | None = None
        value: list[str] = []
        for token in split_tokens(text):
            if _KEY.match(token) and (key is None or value or token[:-1] in _CLAUSES
                                      or key[:-1] in _CLAUSES):
                if key is not None:
                    pairs.append((key[:-1], " ".join(value)))
                key, value = token, []
            elif key is None:  # testbound directive (COMMANDLINE, AUTOTRUST_FILE, ...)
                pairs.append((token, " ".join(split_tokens(text)[1:])))
                break
            else:
                value.append(token)
        if key is not None:
            pairs.append((key[:-1], " ".join(value)))
    return pairs


def _parse_testbound(lines: Sequence[str]) -> ScenarioConfig:
    draft = _Draft(qmin_qtype="A")
    clause = "server"
    zone: dict[str, list[str]] = {}
    zones: list[tuple[str, dict[str, list[str]]]] = []
    for key, value in _unbound_pairs(lines):
        if key in _CLAUSES and not value:
            clause, zone = key, {}
            zones.append((clause, zone))
        elif clause in ("stub-zone", "forward-zone"):
            zone.setdefault(key, []).append(value.strip('"'))
        elif clause == "server":
            _server_key(draft, key, value)
        else:
            draft.note(f"{clause}:{key}", value)
    for clause, settings in zones:
        if clause in ("stub-zone", "forward-zone"):
            _zone_clause(draft, clause, settings)
        elif clause != "server":
            draft.note(clause, "clause present")
    return draft.build(full_sections=draft.settings.get("minimal_responses") is False)


def _server_key(draft: _Draft, key: str, value: str) -> None:
    unquoted = value.strip('"')
    if key == "qname-minimisation":
        draft.pinned_qmin = _flag(value)
    elif key in _SERVER_FLAGS:
        draft.settings[_SERVER_FLAGS[key]] = _flag(value)
    elif key in _SERVER_INTS:
        draft.settings[_SERVER_INTS[key]] = int(unquoted)
    elif key == "trust-anchor":
        draft.trust_anchors.append(unquoted)
    elif key == "domain-insecure":
        draft.negative_trust_anchors.append(_zone(value))
    elif key == "val-override-date":
        draft.start_time = _start_time(value)
    elif key == "module-config":
        draft.validator_module = "validator" in unquoted.split()
    elif key == "local-zone" and unquoted.split()[-1:] == ["nodefault"]:
        pass  # only lifts Unbound's built-in blocking of the zone
    elif key not in _IGNORED:
        draft.note(key, value)


def _zone_clause(draft: _Draft, clause: str, settings: dict[str, list[str]]) -> None:
    name = _zone(settings.get("name", ["."])[0])
    addr_key = "stub-addr" if clause == "stub-zone" else "forward-addr"
    addresses = [_address(a) for a in settings.get(addr_key, [])]
    for key, values in settings.items():
        if key not in ("name", addr_key):
            draft.note(f"{clause}:{name}:{key}", " ".join(values))
    if clause == "stub-zone" and name == ".":
        draft.root_hints.extend((ROOT_HINT_NAME, address) for address in addresses)
    elif clause == "stub-zone":
        draft.stub_zones.setdefault(name, []).extend(addresses)
    elif name == ".":
        draft.forwarders.extend(addresses)
    else:
        draft.forward_zones.setdefault(name, []).extend(addresses)


def dialect_for(folder: Path | str) -> Dialect:
    """Deckard for `deckard*` folders, testbound for `unbound*` (README §3.9)."""
    name = Path(folder).name
    if name.startswith("deckard"):
        return Dialect.DECKARD
    if name.startswith("unbound"):
        return Dialect.TESTBOUND
    raise ValueError(f"cannot tell the dialect of folder {name!r} (deckard* or unbound*)")


def parse_config(lines: Sequence[str], dialect: Dialect) -> ScenarioConfig:
    """Map the lines before CONFIG_END to harness settings (README §3.3)."""
    if dialect is Dialect.DECKARD:
        return _parse_deckard(lines)
    return _parse_testbound(lines)


def config_only(path: Path) -> ScenarioConfig:
    """Just the CONFIG section: cheap enough for test collection (qmin mode, flags)."""
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip().startswith("CONFIG_END"):
                break
            lines.append(line.rstrip("\n"))
    return parse_config(lines, dialect_for(path.parent))
