"""The configuration file: read TOML, check every key, hand the values to `resolver serve`.

Rules:
- One flat TOML table. Each key is a `resolver serve` option: the long option name without
  its dashes (`cache-size`, `ip-ratelimit`, `access-control`), except where Unbound names
  the same thing differently and its name is used instead: `interface` for --listen and
  `username` for --user. Serve-stale takes BIND's names and Unbound's (`serve-expired-*`);
  a file that sets one setting under both names is an error. `OPTIONS` is the one list;
  `resolver serve --config FILE` uses it, and options given on the command line override
  the file.
- Everything is checked before the resolver starts, and every problem is reported, one line
  each, naming the file, the key and what is wrong: unknown keys (with the nearest known
  name), wrong types, bad addresses, bad records.
- Relative paths in the file are relative to the file's own directory, so that a file in
  /etc/resolver can say `root-hints = "root.hints"`.
- A key that holds a list also accepts a single string.
"""

from __future__ import annotations

import difflib
import os
import pwd
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from resolver.daemon.config import ListenAddress, ServeConfig
from resolver.engine.cache_budget import CacheSize, cache_size_text, parse_cache_size
from resolver.server.acl import AclRule, parse_network
from resolver.server.doh_message import check_https_path
from resolver.server.local_zones import (
    BUILTIN_ZONES,
    LocalZones,
    ZoneSpec,
    check_name,
    parse_local_data,
    read_hosts_file,
)
from resolver.server.metrics import DEFAULT_METRICS_PORT

Check = Callable[[Any], Any]


class ConfigFileError(Exception):
    """The file cannot be used; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOption:
    """One key of the file and the `resolver serve` parameter it sets."""

    key: str
    param: str
    #: Checks a TOML value and returns it as the command-line option would hold it;
    #: ValueError with what is wrong.
    check: Check
    #: The value names files: relative paths are taken from the config file's directory.
    is_path: bool = False


# -- value checks ---------------------------------------------------------------------------


#: What a TOML value is, as errors say it; bool before int, since a bool is an int.
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"), (int, "an integer"), (float, "a number with a fraction"),
    (str, "a string"), (list, "a list"), (dict, "a table"),
)


def _kind(value: Any) -> str:
    for kind, said in _KINDS:
        if isinstance(value, kind):
            return said
    return f"a {type(value).__name__}"


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_kind(value)}")
    return value


def integer(low: int, high: int | None = None) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, not {_kind(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}, not {value}")
        return value
    return check


def cache_size(value: Any) -> CacheSize:
    """Entries as an integer, bytes as a string with a unit ("64m"): engine/cache_budget.py."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a number of entries or a size such as \"64m\", "
                         f"not {_kind(value)}")
    return parse_cache_size(value)


def number(low: float, high: float) -> Check:
    """An integer or a number with a fraction, from `low` to `high`."""
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, not {_kind(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, not {value:g}")
        return float(value)
    return check


def string(item: Callable[[str], object] | None = None) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {_kind(value)}")
        if item is not None:
            item(value)
        return value
    return check


def string_list(item: Callable[[str], object] | None = None) -> Check:
    def check(value: Any) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            raise ValueError(f"must be a list of strings, not {_kind(value)}")
        for number, entry in enumerate(values, 1):
            if not isinstance(entry, str):
                raise ValueError(f"item {number} must be a string, not {_kind(entry)}")
            if item is not None:
                try:
                    item(entry)
                except ValueError as exc:
                    raise ValueError(f"item {number}: {exc}") from None
        return tuple(values)
    return check


def _non_empty(text: str) -> None:
    if not text.strip():
        raise ValueError("must not be empty")


def check_listen(text: str) -> ListenAddress:
    return ListenAddress.parse(text)


def check_cachedb_url(text: str) -> None:
    """redis://HOST[:PORT][/DB] or rediss://... (resolver.daemon.cachedb_redis)."""
    from resolver.daemon.cachedb_redis import CacheDbUrl

    CacheDbUrl.parse(text)


def check_metrics(text: str) -> ListenAddress:
    """'127.0.0.1:9153', '[::1]:9153' or an address alone (port 9153)."""
    return ListenAddress.parse(text, default_port=DEFAULT_METRICS_PORT)


def check_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"there is no user {name!r} on this system") from None
    return name


OPTIONS: dict[str, FileOption] = {
    option.key: option
    for option in (
        # Listening and the root.
        FileOption(key="interface", param="listen", check=string_list(check_listen)),
        FileOption(key="root-hints", param="root_hints", check=string(_non_empty), is_path=True),
        FileOption(key="upstream-port", param="upstream_port", check=integer(1, 65535)),
        FileOption(key="workers", param="workers", check=integer(1, 256)),
        FileOption(key="username", param="user", check=string(check_user)),
        # Cache, serve-stale, prefetch (BIND's and Unbound's names).
        FileOption(key="cache-size", param="cache_size", check=cache_size),
        FileOption(key="stale-answer-enable", param="stale_answer_enable", check=boolean),
        FileOption(key="stale-answer-ttl", param="stale_answer_ttl", check=integer(1, 86_400)),
        FileOption(key="max-stale-ttl", param="max_stale_ttl", check=integer(1, 7 * 86_400)),
        FileOption(key="stale-answer-client-timeout", param="stale_answer_client_timeout",
                   check=integer(0, 60_000)),
        # Unbound's names for the same four settings (serve-expired-*).
        FileOption(key="serve-expired", param="stale_answer_enable", check=boolean),
        FileOption(key="serve-expired-reply-ttl", param="stale_answer_ttl",
                   check=integer(1, 86_400)),
        FileOption(key="serve-expired-ttl", param="max_stale_ttl", check=integer(1, 7 * 86_400)),
        FileOption(key="serve-expired-client-timeout", param="stale_answer_client_timeout",
                   check=integer(0, 60_000)),
        FileOption(key="prefetch", param="prefetch", check=boolean),
        FileOption(key="rrset-roundrobin", param="rrset_roundrobin", check=boolean),
        FileOption(key="ns-addresses-in-answer", param="ns_addresses_in_answer", check=boolean),
        FileOption(key="cache-max-ttl", param="cache_max_ttl", check=integer(1, 2**31 - 1)),
        FileOption(key="cache-min-ttl", param="cache_min_ttl", check=integer(0, 2**31 - 1)),
        FileOption(key="cache-max-negative-ttl", param="cache_max_negative_ttl",
                   check=integer(1, 2**31 - 1)),
        FileOption(key="cache-min-negative-ttl", param="cache_min_negative_ttl",
                   check=integer(0, 2**31 - 1)),
        FileOption(key="control-socket", param="control_socket", check=string(_non_empty),
                   is_path=True),
        FileOption(key="cache-file", param="cache_file", check=string(_non_empty),
                   is_path=True),
        FileOption(key="cache-save-interval", param="cache_save_interval",
                   check=integer(1, 86_400)),
        # The shared cache on Redis/Valkey (resolver.cli.cachedb_options).
        FileOption(key="cachedb", param="cachedb", check=string(check_cachedb_url)),
        FileOption(key="cachedb-secret", param="cachedb_secret", check=string()),
        FileOption(key="cachedb-budget", param="cachedb_budget", check=number(0.1, 1000)),
        FileOption(key="cachedb-retry", param="cachedb_retry", check=number(0.1, 3600)),
        FileOption(key="cachedb-tls-ca-file", param="cachedb_tls_ca_file",
                   check=string(_non_empty), is_path=True),
        # Forwarding, stub zones, DNS over TLS.
        FileOption(key="forward", param="forward", check=string_list()),
        FileOption(key="forward-tls", param="forward_tls", check=string_list()),
        FileOption(key="forward-https", param="forward_https", check=string_list()),
        FileOption(key="forward-zone", param="forward_zone", check=string_list()),
        FileOption(key="stub-zone", param="stub_zone", check=string_list()),
        FileOption(key="forward-first", param="forward_first", check=boolean),
        FileOption(key="tls-ca-file", param="tls_ca_file", check=string(_non_empty),
                   is_path=True),
        FileOption(key="tcp-upstream", param="tcp_upstream", check=boolean),
        # DNSSEC validation.
        FileOption(key="dnssec", param="dnssec", check=boolean),
        FileOption(key="trust-anchor-file", param="trust_anchor_file",
                   check=string(_non_empty), is_path=True),
        FileOption(key="domain-insecure", param="domain_insecure",
                   check=string_list(check_name)),
        # Who may ask, and what is answered locally.
        FileOption(key="access-control", param="access_control",
                   check=string_list(AclRule.parse)),
        FileOption(key="local-zone", param="local_zone", check=string_list(ZoneSpec.parse)),
        FileOption(key="local-data", param="local_data", check=string_list(parse_local_data)),
        FileOption(key="hosts-file", param="hosts_file", check=string_list(_non_empty),
                   is_path=True),
        FileOption(key="private-address", param="private_address",
                   check=string_list(parse_network)),
        FileOption(key="private-domain", param="private_domain", check=string_list(check_name)),
        FileOption(key="ip-ratelimit", param="ip_ratelimit", check=integer(0, 1_000_000)),
        FileOption(key="max-udp-size", param="max_udp_size", check=integer(512, 65_535)),
        # Encrypted listeners for clients (resolver.cli.encrypted_options).
        *(FileOption(key=key, param=key.replace("-", "_"), check=string_list(check_listen))
          for key in ("listen-tls", "listen-https", "listen-http", "listen-quic")),
        FileOption(key="tls-cert", param="tls_cert", check=string(_non_empty), is_path=True),
        FileOption(key="tls-key", param="tls_key", check=string(_non_empty), is_path=True),
        FileOption(key="https-path", param="https_path", check=string(check_https_path)),
        FileOption(key="tls-name", param="tls_name", check=string(check_name)),
        FileOption(key="tls-max-connections", param="tls_max_connections",
                   check=integer(1, 1_000_000)),
        FileOption(key="tls-max-connections-per-client", param="tls_max_connections_per_client",
                   check=integer(1, 1_000_000)),
        FileOption(key="tls-idle-timeout", param="tls_idle_timeout", check=integer(1, 3600)),
        FileOption(key="http2-max-streams", param="http2_max_streams", check=integer(1, 10_000)),
        # Observability.
        FileOption(key="metrics", param="metrics", check=string(check_metrics)),
        FileOption(key="log-queries", param="log_queries", check=boolean),
        FileOption(key="verbose", param="verbose", check=boolean),
    )
}


# -- loading --------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    """The file's settings as `resolver serve` parameters ({param: value}); ConfigFileError."""
    values, errors = load_partly(path)
    if errors:
        raise ConfigFileError(errors)
    return values


def load_partly(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The keys of the file that are good, and one line per key that is not, so that
    `check-config` can go on checking the rest; a file that cannot be read at all raises
    ConfigFileError."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError([f"{where}: cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigFileError([f"{where}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([f"{where}: not valid TOML: {exc}"]) from None
    return checked_keys(data, source=where, base=path.parent)


def check_table(data: dict[str, Any], *, source: str, base: Path) -> dict[str, Any]:
    """Check every key of a parsed file; {param: value} or ConfigFileError listing all faults."""
    values, errors = checked_keys(data, source=source, base=base)
    if errors:
        raise ConfigFileError(errors)
    return values


def checked_keys(
    data: dict[str, Any], *, source: str, base: Path
) -> tuple[dict[str, Any], list[str]]:
    """{param: value} of the good keys, and one line per bad one."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    set_by: dict[str, str] = {}
    for key, value in data.items():
        option = OPTIONS.get(key)
        if option is None:
            errors.append(f"{source}: unknown key {key!r}{_suggestion(key)}")
            continue
        if option.param in set_by:
            errors.append(f"{source}: {set_by[option.param]!r} and {key!r} are two names of "
                          "one setting: keep one")
            continue
        set_by[option.param] = key
        try:
            checked = option.check(value)
        except ValueError as exc:
            errors.append(f"{source}: {key!r} {exc}" if str(exc).startswith("must")
                          else f"{source}: {key!r}: {exc}")
            continue
        if option.is_path:
            checked = _relative_to(base, checked)
        values[option.param] = checked
    return values, errors


def _suggestion(key: str) -> str:
    close = difflib.get_close_matches(key.replace("_", "-").lower(), OPTIONS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _relative_to(base: Path, value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_relative_to(base, v) for v in value)
    path = Path(os.path.expanduser(str(value)))
    return str(path if path.is_absolute() else base / path)


# -- deeper checks and the summary (`resolver check-config`) --------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """What a full check found: faults that stop the resolver, and remarks that do not."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    local_zones: LocalZones | None = None


def check_files(config: ServeConfig) -> Checked:
    """Check what only the files named by `config` can tell: root hints, hosts files."""
    from resolver.daemon.hints_file import load_checked
    from resolver.engine.delegation import RootHintsError

    errors: list[str] = []
    warnings: list[str] = []
    try:
        _, mismatch = load_checked(Path(config.root_hints_file), config.engine.upstream_port)
    except RootHintsError as exc:
        errors.append(str(exc))
    else:
        if mismatch is not None and config.system.config_file is not None:
            # In the file's words: the port comes from the file.
            warnings.append(mismatch.replace("add --upstream-port", "set upstream-port ="))
        elif mismatch is not None:
            warnings.append(mismatch)
    if config.trust_anchor_file is not None and config.dnssec:
        from resolver.daemon.validation_setup import TrustAnchorError, read_anchor_file

        try:
            read_anchor_file(config.trust_anchor_file)
        except TrustAnchorError as exc:
            errors.append(str(exc))
    system = config.system
    records = [parse_local_data(text) for text in system.local_data]
    for path in system.hosts_files:
        try:
            hosts = read_hosts_file(Path(path))
        except OSError as exc:
            errors.append(f"cannot read hosts file {path}: {exc.strerror or exc}")
            continue
        records.extend(hosts.records)
        warnings.extend(f"skipped {line}" for line in hosts.skipped)
    zones = None
    if not errors:
        zones = LocalZones([ZoneSpec.parse(text) for text in system.local_zones], records)
    return Checked(errors=tuple(errors), warnings=tuple(warnings), local_zones=zones)


def serve_conflicts(config: ServeConfig, workers: int) -> list[str]:
    """What `resolver serve` would refuse or leave out with these settings, though each
    key is fine alone (resolver.daemon.workers, resolver.daemon.app)."""
    if workers <= 1:
        return []
    found: list[str] = []
    if config.system.metrics is not None:
        found.append(f"'metrics' is not served with 'workers' = {workers}: each worker "
                     "counts alone (use one worker, or read counters with `resolver stats`)")
    if any(address.port == 0 for address in config.listen):
        found.append(f"'workers' = {workers} needs explicit ports in 'interface': with port 0 "
                     "each worker would get a port of its own")
    return found


def summary(config: ServeConfig, checked: Checked) -> list[str]:
    """What the resolver will do with this configuration, one line per subject."""
    system = config.system
    rules = ", ".join(system.access_control) or "none"
    zones = checked.local_zones
    lines = [
        "listen:          " + ", ".join(str(a) for a in config.listen) + " (UDP and TCP)",
        f"root hints:      {config.root_hints_file} (upstream port {config.engine.upstream_port})",
        f"cache:           {cache_size_text(config.cache)}",
        f"access control:  loopback allowed, others refused; rules: {rules}",
    ]
    if zones is not None:
        described = zones.describe()
        configured = ", ".join(described[:8]) or "none"
        if len(described) > 8:
            configured += f" and {len(described) - 8} more"
        lines.append(f"local zones:     {zones.builtin_count} built in (of {len(BUILTIN_ZONES)});"
                     f" configured: {configured}")
        lines.append(f"local data:      {zones.record_count} records"
                     + (f" (hosts files: {', '.join(system.hosts_files)})"
                        if system.hosts_files else ""))
    if system.private_addresses:
        allowed = ", ".join(system.private_domains) or "no domain"
        lines.append(f"rebinding:       {', '.join(system.private_addresses)} removed from "
                     f"answers, except for {allowed}")
    else:
        lines.append("rebinding:       off (no private-address)")
    lines.append("ip-ratelimit:    " + (f"{system.ip_ratelimit} queries/s per client"
                                        if system.ip_ratelimit else "off"))
    if system.metrics:
        address = check_metrics(system.metrics)
        lines.append(f"metrics:         http://{address}/metrics")
    else:
        lines.append("metrics:         off")
    lines.append(f"query log:       {'on' if system.log_queries else 'off'}")
    lines.append(f"user:            {system.username or 'not switched'}")
    encrypted = config.encrypted
    ways_in = [f"{name} {address}" for name, addresses in (
        ("DoT", encrypted.listen_tls), ("DoH", encrypted.listen_https),
        ("DoH over plain HTTP", encrypted.listen_http), ("DoQ", encrypted.listen_quic))
        for address in addresses]
    lines.append("encrypted:       " + (", ".join(ways_in) or "off"))
    forwarding = config.forwarding
    upstreams = [*forwarding.forward, *forwarding.forward_tls, *forwarding.forward_https,
                 *forwarding.forward_zones,
                 *forwarding.stub_zones]
    if upstreams:
        lines.append(f"forwarding:      {', '.join(upstreams)}")
    return lines


# -- SIGHUP: what a reload can and cannot change --------------------------------------------

#: Parts of `SystemSettings` that a reload applies at once; everything else needs a restart.
RELOADABLE = frozenset({
    "access_control", "local_zones", "local_data", "hosts_files", "private_addresses",
    "private_domains", "ip_ratelimit", "log_queries", "verbose",
})


def needs_restart(old: ServeConfig, new: ServeConfig) -> list[str]:
    """Names of the changed settings that only take effect after a restart."""
    changed = [f.name for f in fields(ServeConfig)
               if f.name != "system" and getattr(old, f.name) != getattr(new, f.name)]
    changed += [f.name for f in fields(type(old.system))
                if f.name not in RELOADABLE and f.name != "config_file"
                and getattr(old.system, f.name) != getattr(new.system, f.name)]
    return changed
