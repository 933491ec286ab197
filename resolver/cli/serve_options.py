"""The options of `resolver serve` and how they become a `ServeConfig`.

Each group of options (cache, forwarding, system policy) is a decorator that adds the
click options and a function that applies them; `_serve_config` builds the configuration
from the parameters (command line over the config file), and `_reloader` rebuilds it on
SIGHUP. Bad values end the command with one line naming the option (exit 1 or 2).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from resolver.cli.cachedb_options import with_cachedb_options
from resolver.cli.encrypted_options import with_encrypted_options
from resolver.cli.option_checks import checked_option
from resolver.daemon.config import ListenAddress, ServeConfig, SystemSettings
from resolver.engine.cache_budget import CacheSize, parse_cache_size, with_cache_size
from resolver.engine.settings import ForwardingSettings
from resolver.server.local_zones import check_name

F = TypeVar("F", bound=Callable[..., Any])


def _parse_listen(values: tuple[str, ...]) -> tuple[ListenAddress, ...]:
    parsed = tuple(checked_option(ListenAddress.parse, v, "--listen") for v in values)
    for text, address in zip(values, parsed, strict=True):
        if not _names_a_port(text.strip()):
            # Said the same for --listen and the file's 'interface', and by check-config,
            # which listens nowhere.
            click.echo(f"note: listen address {text} names no port: it means {address} "
                       "(give ADDR:PORT for another port)", err=True)
    return parsed


def _names_a_port(text: str) -> bool:
    """"127.0.0.1:5300" and "[::1]:5300" name a port; "127.0.0.1", "::1" do not."""
    if text.startswith("["):
        return "]:" in text
    return text.count(":") == 1


def _port_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--upstream-port", type=click.IntRange(1, 65535), default=53, show_default=True,
        help=help_text,
    )


def _control_socket_option(f: F) -> F:
    return click.option(
        "--control-socket", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Unix socket of the local control channel. Default: "
             "$XDG_RUNTIME_DIR/resolver/control.sock, /run/resolver/control.sock for root, "
             "else /tmp/resolver-$UID/control.sock.",
    )(f)


#: The largest TTL there is (RFC 2181 §8).
_TTL_MAX = 2**31 - 1


def _cache_options(f: F) -> F:
    """Serve-stale (RFC 8767; BIND's option names, Unbound's as the second names),
    prefetch and the control socket."""
    options = [
        click.option("--stale-answer-enable", "--serve-expired", "stale_answer_enable",
                     is_flag=True,
                     help="Serve expired data when resolution fails or is slow (RFC 8767)."),
        click.option("--stale-answer-ttl", "--serve-expired-reply-ttl", "stale_answer_ttl",
                     type=click.IntRange(1, 86_400), default=30, show_default=True,
                     metavar="SECONDS",
                     help="TTL of expired records in stale replies (live ones keep theirs)."),
        click.option("--max-stale-ttl", "--serve-expired-ttl", "max_stale_ttl",
                     type=click.IntRange(1, 7 * 86_400), default=86_400, show_default=True,
                     metavar="SECONDS", help="How long past expiry data is kept for serve-stale."),
        click.option("--stale-answer-client-timeout", "--serve-expired-client-timeout",
                     "stale_answer_client_timeout", type=click.IntRange(0, 60_000),
                     default=1_800, show_default=True, metavar="MS",
                     help="Serve stale data when no answer came within this time; 0 = at "
                          "once, refreshing in the background."),
        click.option("--prefetch", is_flag=True,
                     help="Refresh entries asked for in the last 10% of their TTL "
                          "in the background."),
        click.option("--rrset-roundrobin/--no-rrset-roundrobin", default=True,
                     show_default=True,
                     help="Rotate the order of a name's addresses in answers from the cache."),
        click.option("--ns-addresses-in-answer/--no-ns-addresses-in-answer", default=True,
                     show_default=True,
                     help="Answer an NS question with the servers' cached addresses in the "
                          "additional section."),
        # TTL clamps with Unbound's names; they apply to every RRset stored.
        click.option("--cache-max-ttl", type=click.IntRange(1, _TTL_MAX), default=86_400,
                     show_default=True, metavar="SECONDS",
                     help="Longest time a record is kept (cache-max-ttl)."),
        click.option("--cache-min-ttl", type=click.IntRange(0, _TTL_MAX), default=0,
                     show_default=True, metavar="SECONDS",
                     help="Shortest time a record is kept (cache-min-ttl)."),
        click.option("--cache-max-negative-ttl", type=click.IntRange(1, _TTL_MAX),
                     default=3_600, show_default=True, metavar="SECONDS",
                     help="Longest time a negative answer is kept (cache-max-negative-ttl)."),
        click.option("--cache-min-negative-ttl", type=click.IntRange(0, _TTL_MAX), default=0,
                     show_default=True, metavar="SECONDS",
                     help="Shortest time a negative answer is kept (cache-min-negative-ttl)."),
        _control_socket_option,
        click.option("--cache-file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, metavar="PATH",
                     help="Keep the cache across restarts: loaded at start, saved here on "
                          "SIGTERM and every --cache-save-interval (worker N uses PATH.N)."),
        click.option("--cache-save-interval", type=click.IntRange(1, 86_400), default=300,
                     show_default=True, metavar="SECONDS",
                     help="Seconds between two saves of --cache-file while serving."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _with_cache_options(config: ServeConfig, options: dict[str, Any]) -> ServeConfig:
    cache = replace(
        config.cache,
        stale_answer_enable=bool(options["stale_answer_enable"]),
        stale_answer_ttl_s=int(options["stale_answer_ttl"]),
        max_stale_ttl_s=int(options["max_stale_ttl"]),
        stale_answer_client_timeout_ms=int(options["stale_answer_client_timeout"]),
        prefetch=bool(options["prefetch"]),
        rrset_roundrobin=bool(options["rrset_roundrobin"]),
        max_ttl_s=int(options["cache_max_ttl"]),
        min_ttl_s=int(options["cache_min_ttl"]),
        max_negative_ttl_s=int(options["cache_max_negative_ttl"]),
        min_negative_ttl_s=int(options["cache_min_negative_ttl"]),
    )
    socket_path = options["control_socket"]
    cache_path = options["cache_file"]
    engine = replace(config.engine, ns_addresses_in_answer=bool(options["ns_addresses_in_answer"]))
    return replace(config, cache=cache, engine=engine,
                   control_socket=str(socket_path) if socket_path is not None else None,
                   cache_file=str(cache_path) if cache_path is not None else None,
                   cache_save_interval_s=float(options["cache_save_interval"]))


def _forwarding_options(f: F) -> F:
    """Forwarding, stub zones and DNS over TLS, with Unbound's names and notation."""
    options = [
        click.option("--forward", multiple=True, metavar="ADDR[@PORT]",
                     help="Send every query (RD=1) to this upstream resolver instead of "
                          "iterating (repeatable; the healthiest, fastest one is asked first)."),
        click.option("--forward-tls", multiple=True, metavar="ADDR[@PORT][#NAME]",
                     help="The same over DNS over TLS (port 853 by default); the certificate "
                          "must be valid for NAME (or for ADDR)."),
        click.option("--forward-https", multiple=True, metavar="https://HOST[:PORT][/PATH][#ADDR]",
                     help="The same over DNS over HTTPS (RFC 8484, HTTP/2, POST); HOST is an "
                          "address, or a name with the #ADDR to connect to (repeatable)."),
        click.option("--forward-zone", multiple=True, metavar="ZONE=ADDR[@PORT][,ADDR...]",
                     help="Upstream resolvers (RD=1) for names in ZONE only (repeatable)."),
        click.option("--stub-zone", multiple=True, metavar="ZONE=ADDR[@PORT][,ADDR...]",
                     help="Authoritative servers (RD=0) for ZONE: iterate from them "
                          "(repeatable)."),
        click.option("--forward-first", is_flag=True,
                     help="When every upstream of a forward zone fails, iterate from the "
                          "root hints."),
        click.option("--tls-ca-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="CA certificates (PEM) to verify DNS over TLS and HTTPS upstreams with, "
                          "instead of the system's."),
        click.option("--tcp-upstream", is_flag=True, help="Send every upstream query over TCP."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _with_forwarding_options(config: ServeConfig, options: dict[str, Any]) -> ServeConfig:
    """Apply the forwarding options; a bad one ends the command with one line (exit 1)."""
    ca_file = options["tls_ca_file"]
    config = replace(
        config,
        engine=replace(config.engine,
                       tcp_upstream=bool(options["tcp_upstream"]) or config.engine.tcp_upstream),
        forwarding=ForwardingSettings(
            forward=tuple(options["forward"]), forward_tls=tuple(options["forward_tls"]),
            forward_https=tuple(options["forward_https"]),
            forward_zones=tuple(options["forward_zone"]), stub_zones=tuple(options["stub_zone"]),
            forward_first=bool(options["forward_first"]),
            tls_ca_file=str(ca_file) if ca_file is not None else None,
        ),
    )
    _check_forwarding(config)
    return config


def _check_forwarding(config: ServeConfig) -> None:
    """Read forward and stub zones and the CA file; refuse to forward to ourselves."""
    from resolver.upstream import forwarding

    settings = config.forwarding
    port = config.engine.upstream_port
    try:
        zones = forwarding.configured_zones(settings, default_port=port)
        upstreams = forwarding.configured_upstreams(zones)
        forwarding.check_no_self_forwarding(
            upstreams, [(addr.ip, addr.port) for addr in config.listen]
        )
    except forwarding.ForwardingError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.forward_first and not forwarding.forward_zone_names(zones):
        raise click.ClickException(
            "--forward-first needs --forward, --forward-tls, --forward-https or --forward-zone"
        )
    if any(server.tls_name is not None for server in upstreams):
        import ssl

        from resolver.upstream.tls import make_tls_context

        try:
            make_tls_context(settings.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise click.ClickException(
                f"cannot use --tls-ca-file {settings.tls_ca_file}: {exc}"
            ) from None


def _fail(lines: list[str]) -> NoReturn:
    """Print each problem on its own line and exit 1."""
    for line in lines:
        click.echo(f"Error: {line}", err=True)
    sys.exit(1)


def _read_config_file(ctx: click.Context, _param: click.Parameter, value: Path | None
                      ) -> Path | None:
    """--config: the file's settings become the defaults that command-line options override."""
    if value is None:
        return None
    from resolver.daemon import config_file

    try:
        values = config_file.load(value)
    except config_file.ConfigFileError as exc:
        _fail(exc.errors)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def _checked(check: Callable[[str], object]) -> Callable[[click.Context, click.Parameter, Any],
                                                        Any]:
    """A click callback running `check` on each value; its ValueError names the option."""
    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None:
                checked_option(check, str(item))
        return value
    return callback


def _system_options(f: F) -> F:
    """The config file, access control, local data, rebinding, rate limit, metrics, user."""
    from resolver.daemon import config_file as cf
    from resolver.server.acl import AclRule, parse_network
    from resolver.server.local_zones import ZoneSpec, check_name, parse_local_data

    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                     is_eager=True, callback=_read_config_file, metavar="FILE",
                     help="TOML configuration file (see examples/resolver.toml); options on "
                          "the command line override it. SIGHUP re-reads it."),
        click.option("--user", metavar="NAME", callback=_checked(cf.check_user),
                     help="Switch to this user after binding the listen addresses "
                          "(Unbound username)."),
        click.option("--access-control", multiple=True, metavar='"CIDR ACTION"',
                     callback=_checked(AclRule.parse),
                     help="Who may recurse: ACTION is allow, allow_snoop (also RD=0 from the "
                          "cache), deny (drop) or refuse (REFUSED); "
                          "the most specific block wins (repeatable). Built in: 127.0.0.0/8 "
                          "and ::1 allow, everyone else refuse."),
        click.option("--local-zone", multiple=True, metavar='"NAME TYPE"',
                     callback=_checked(ZoneSpec.parse),
                     help="Answer NAME and below locally: static, transparent, typetransparent, "
                          "redirect, refuse, deny, always_nxdomain, always_refuse, always_null, "
                          "nodefault (repeatable)."),
        click.option("--local-data", multiple=True, metavar='"RR"',
                     callback=_checked(parse_local_data),
                     help='A local record, e.g. "www.example. A 192.0.2.1" (repeatable).'),
        click.option("--hosts-file", multiple=True, metavar="PATH",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Serve the names of a hosts file (A/AAAA and PTR) (repeatable)."),
        click.option("--private-address", multiple=True, metavar="CIDR",
                     callback=_checked(parse_network),
                     help="Remove these addresses from answers for names outside "
                          "--private-domain: DNS-rebinding protection (repeatable)."),
        click.option("--private-domain", multiple=True, metavar="NAME",
                     callback=_checked(check_name),
                     help="Names allowed to resolve to --private-address blocks (repeatable)."),
        click.option("--ip-ratelimit", type=click.IntRange(0, 1_000_000), default=0,
                     show_default=True, metavar="QPS",
                     help="Most queries per second from one client address; beyond, they are "
                          "dropped. 0: no limit."),
        click.option("--max-udp-size", type=click.IntRange(512, 65_535), default=1232,
                     show_default=True, metavar="OCTETS",
                     help="Largest UDP reply, whatever a client offers; larger ones are "
                          "truncated (TC=1) for TCP (Unbound max-udp-size)."),
        click.option("--metrics", metavar="ADDR:PORT", callback=_checked(cf.check_metrics),
                     help="Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. "
                          "127.0.0.1:9153)."),
        click.option("--log-queries", is_flag=True,
                     help="Log one line per query: client, name, type, rcode, time."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _with_system_options(config: ServeConfig, options: dict[str, Any]) -> ServeConfig:
    config_path = options.get("config_path")
    system = SystemSettings(
        access_control=tuple(options["access_control"]),
        local_zones=tuple(options["local_zone"]),
        local_data=tuple(options["local_data"]),
        hosts_files=tuple(str(path) for path in options["hosts_file"]),
        private_addresses=tuple(options["private_address"]),
        private_domains=tuple(options["private_domain"]),
        ip_ratelimit=int(options["ip_ratelimit"]),
        log_queries=bool(options["log_queries"]),
        verbose=bool(options["verbose"]),
        metrics=options["metrics"],
        username=options["user"],
        config_file=str(config_path) if config_path is not None else None,
    )
    return replace(config, system=system, max_udp_size=int(options["max_udp_size"]))


def _serve_config(params: dict[str, Any]) -> ServeConfig:
    """The configuration from `resolver serve`'s parameters (command line over config file)."""
    config = ServeConfig(root_hints_file=str(params["root_hints"]))
    if params["listen"]:
        config = replace(config, listen=_parse_listen(params["listen"]))
    config = replace(
        config,
        engine=replace(config.engine, upstream_port=params["upstream_port"]),
        cache=with_cache_size(config.cache, params["cache_size"]),
    )
    config = _with_cache_options(config, params)
    config = _with_forwarding_options(config, params)
    config = with_encrypted_options(config, params)
    anchors = params.get("trust_anchor_file")
    config = replace(config, dnssec=bool(params.get("dnssec", True)),
                     trust_anchor_file=str(anchors) if anchors is not None else None,
                     domain_insecure=tuple(_domain(name)
                                           for name in params.get("domain_insecure") or ()))
    config = with_cachedb_options(config, params)
    return _with_system_options(config, params)


def _domain(text: str) -> str:
    """A name given to --domain-insecure, canonical; a one-line error when invalid."""
    return checked_option(check_name, text, "--domain-insecure")


def _check_files(config: ServeConfig) -> None:
    """Root hints and hosts files must be readable before anything is bound."""
    from resolver.daemon import config_file

    checked = config_file.check_files(config)
    for warning in checked.warnings:
        logging.getLogger("resolver").warning("%s", warning)
    if checked.errors:
        _fail(list(checked.errors))


def _reloader(ctx: click.Context) -> Callable[[], ServeConfig]:
    """SIGHUP: the config file read again, with the command line's options still over it."""
    from click.core import ParameterSource

    from resolver.daemon import config_file

    path = ctx.params["config_path"]
    given = {name: value for name, value in ctx.params.items()
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
    command = ctx.command

    def reload() -> ServeConfig:
        values = config_file.load(path)
        with command.make_context(ctx.info_name, [], default_map=values) as fresh:
            config = _serve_config({**fresh.params, **given, "config_path": path})
        problems = config_file.check_files(config).errors
        if problems:
            raise config_file.ConfigFileError(list(problems))
        return config

    return reload


class CacheSizeType(click.ParamType):  # type: ignore[type-arg]
    """`--cache-size`: entries as a plain number, bytes with a unit (engine/cache_budget.py)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> CacheSize:
        if isinstance(value, CacheSize):
            return value  # from the configuration file, checked there
        try:
            return parse_cache_size(value if isinstance(value, int) else str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
