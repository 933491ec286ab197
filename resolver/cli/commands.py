"""The command line: `resolver serve`, `resolver query`, `resolver lab`.

Every failure a user can cause (a bad address, a missing file, a taken port) ends in
one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from resolver import __version__
from resolver.cli.cachedb_options import cachedb_options, with_cachedb_options
from resolver.cli.encrypted_options import encrypted_options, with_encrypted_options
from resolver.daemon.config import ListenAddress, ServeConfig, SystemSettings
from resolver.daemon.hints_file import load_checked
from resolver.dns.wire import Question, Rcode, rcode_name, type_from_text
from resolver.engine.delegation import Delegation, RootHintsError
from resolver.engine.settings import EngineSettings, ForwardingSettings
from resolver.server.metrics import DEFAULT_METRICS_PORT

F = TypeVar("F", bound=Callable[..., Any])


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resolver")
def main() -> None:
    """An iterative, caching DNS resolver: serve it, query with it, trace it, or run a lab."""


def _parse_listen(values: tuple[str, ...]) -> tuple[ListenAddress, ...]:
    try:
        parsed = tuple(ListenAddress.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    for text, address in zip(values, parsed, strict=True):
        if not _names_a_port(text.strip()):
            click.echo(f"note: --listen {text} names no port: listening on {address}", err=True)
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
    """Serve-stale (RFC 8767, BIND's option names), prefetch and the control socket."""
    options = [
        click.option("--stale-answer-enable", is_flag=True,
                     help="Serve expired data when resolution fails or is slow (RFC 8767)."),
        click.option("--stale-answer-ttl", type=click.IntRange(1, 86_400), default=30,
                     show_default=True, metavar="SECONDS", help="TTL of stale records in replies."),
        click.option("--max-stale-ttl", type=click.IntRange(1, 7 * 86_400), default=86_400,
                     show_default=True, metavar="SECONDS",
                     help="How long past expiry data is kept for serve-stale."),
        click.option("--stale-answer-client-timeout", type=click.IntRange(0, 60_000),
                     default=1_800, show_default=True, metavar="MS",
                     help="Serve stale data when no answer came within this time; 0 = at "
                          "once, refreshing in the background."),
        click.option("--prefetch", is_flag=True,
                     help="Refresh entries asked for in the last 10% of their TTL "
                          "in the background."),
        click.option("--rrset-roundrobin/--no-rrset-roundrobin", default=True,
                     show_default=True,
                     help="Rotate the order of a name's addresses in answers from the cache."),
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
    return replace(config, cache=cache,
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
        upstreams = forwarding.configured_upstreams(zones, default_port=port)
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
                try:
                    check(str(item))
                except ValueError as exc:
                    raise click.BadParameter(str(exc)) from None
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
    return replace(config, system=system)


def _serve_config(params: dict[str, Any]) -> ServeConfig:
    """The configuration from `resolver serve`'s parameters (command line over config file)."""
    config = ServeConfig(root_hints_file=str(params["root_hints"]))
    if params["listen"]:
        config = replace(config, listen=_parse_listen(params["listen"]))
    config = replace(
        config,
        engine=replace(config.engine, upstream_port=params["upstream_port"]),
        cache=replace(config.cache, max_entries=params["cache_size"]),
    )
    config = _with_cache_options(config, params)
    config = _with_forwarding_options(config, params)
    config = with_encrypted_options(config, params)
    anchors = params.get("trust_anchor_file")
    config = replace(config, dnssec=bool(params.get("dnssec", True)),
                     trust_anchor_file=str(anchors) if anchors is not None else None)
    config = with_cachedb_options(config, params)
    return _with_system_options(config, params)


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


@main.command()
@click.option("--listen", "listen", multiple=True, metavar="ADDR:PORT",
              help="Address and port to serve on (repeatable). Default: 127.0.0.1:53 and [::1]:53.")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@click.option("--cache-size", type=click.IntRange(1), default=100_000, show_default=True,
              help="Most RRsets and negative answers kept in the cache.")
@click.option("-v", "--verbose", is_flag=True, help="Log every SERVFAIL reason and more.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes sharing the listen addresses (SO_REUSEPORT), each with "
                   "its own cache (Unbound num-threads).")
@click.option("--dnssec/--no-dnssec", "dnssec", default=True, show_default=True,
              help="Validate DNSSEC (on by default with real root hints; with loopback "
                   "upstreams, a lab, only given --trust-anchor-file).")
@click.option("--trust-anchor-file", type=click.Path(dir_okay=False, path_type=Path),
              help="DS or DNSKEY records to trust, in zone-file form (Unbound's option); "
                   "default: the root's key built in.")
@_cache_options
@_forwarding_options
@_system_options
@encrypted_options
@cachedb_options
@click.pass_context
def serve(ctx: click.Context, /, listen: tuple[str, ...], root_hints: Path, upstream_port: int,
          cache_size: int, verbose: bool, workers: int, **cache_options: Any) -> None:
    """Answer stub clients over UDP and TCP, resolving iteratively from the root hints."""
    _setup_logging(verbose)
    config = _serve_config(ctx.params)
    _check_files(config)
    from resolver.daemon.app import StartupError, run
    from resolver.daemon.app import serve as run_server

    reload = _reloader(ctx) if config.system.config_file is not None else None
    if workers > 1:
        from resolver.daemon.workers import run_workers

        sys.exit(run_workers(config, workers, reload=reload))
    try:
        run(run_server(config, reload=reload))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(_bind_error(exc, config)) from None
    except KeyboardInterrupt:
        pass


def _bind_error(exc: OSError, config: ServeConfig) -> str:
    where = ", ".join(str(a) for a in config.listen)
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the address is already in use"
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need root "
                f"or CAP_NET_BIND_SERVICE; try --listen 127.0.0.1:5300)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: the address is not on this machine"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _load_hints(path: Path, upstream_port: int) -> Delegation:
    """The root hints, or one line naming what is wrong with the file (exit 1)."""
    try:
        hints, warning = load_checked(path, upstream_port)
    except RootHintsError as exc:
        raise click.ClickException(str(exc)) from None
    if warning is not None:
        click.echo(f"Warning: {warning}", err=True)
    return hints


def _validation_options(f: F) -> F:
    """--dnssec/--no-dnssec and --trust-anchor-file, decided as for `serve`."""
    f = click.option("--trust-anchor-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="DS or DNSKEY records to trust (the lab writes lab.anchor); "
                          "validation then shows the chain of trust.")(f)
    return click.option("--dnssec/--no-dnssec", "dnssec", default=True, show_default=True,
                        help="Validate DNSSEC, as `serve` does (with loopback upstreams, "
                             "only given --trust-anchor-file).")(f)


@main.command()
@click.argument("name")
@click.argument("rtype", default="A", metavar="[TYPE]")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@_validation_options
def query(name: str, rtype: str, root_hints: Path, upstream_port: int, dnssec: bool,
          trust_anchor_file: Path | None) -> None:
    """Resolve NAME once, iteratively, without a server; print it like dig's answer."""
    question = _question(name, rtype)
    hints = _load_hints(root_hints, upstream_port)
    from resolver.cli.trace_run import validation_for
    from resolver.daemon.app import build

    validation = validation_for(hints, upstream_port, dnssec=dnssec,
                                trust_anchor_file=trust_anchor_file)
    config = ServeConfig(engine=EngineSettings(upstream_port=upstream_port,
                                               validation=validation))
    app = build(config, root_hints=hints)
    started = time.monotonic()
    outcome = asyncio.run(app.service.resolve(question))
    elapsed_ms = (time.monotonic() - started) * 1000
    click.echo(f";; QUESTION: {question}")
    click.echo(f";; status: {rcode_name(outcome.rcode)}, {outcome.queries_sent} upstream queries, "
               f"{elapsed_ms:.0f} ms")
    if outcome.reason:
        click.echo(f";; reason: {outcome.reason}")
    if validation is not None:
        security = outcome.security.value if outcome.security is not None else "not validated"
        ede = f" (EDE {int(outcome.ede_code)})" if outcome.ede_code is not None else ""
        click.echo(f";; security: {security}{ede}")
    if outcome.answer:
        click.echo("\n;; ANSWER SECTION:")
        for rr in outcome.answer:
            click.echo(rr.to_text())
    if outcome.authority:
        click.echo("\n;; AUTHORITY SECTION:")
        for rr in outcome.authority:
            click.echo(rr.to_text())
    if outcome.rcode == Rcode.SERVFAIL:
        sys.exit(2)


def _question(name: str, rtype: str) -> Question:
    from resolver.dns import names

    try:
        number = type_from_text(rtype)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TYPE") from None
    qname = names.canonical(_a_labels(name))
    if len(qname) > 254 or any(not 0 < len(label) <= 63 for label in names.labels(qname)):
        raise click.BadParameter(f"{name!r} is not a valid domain name", param_hint="NAME")
    return Question(qname, number)


def _a_labels(name: str) -> str:
    """`name` in the form DNS carries: non-ASCII labels become A-labels ("xn--...", IDNA
    2008, RFC 5891 §4, with the UTS 46 mapping as dig applies it), and the conversion is
    shown on stderr so that the user sees which name is really asked."""
    if name.isascii():
        return name
    import idna

    try:
        converted = idna.encode(name.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise click.BadParameter(f"{name!r} is not a valid internationalised domain name "
                                 f"({exc})", param_hint="NAME") from None
    click.echo(f"note: {name} is asked as {converted}. (IDNA A-labels, RFC 5891)", err=True)
    return converted



@main.command()
@click.option("--hints-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("lab.hints"), show_default=True,
              help="Where to write the root hints of the lab's root servers.")
@click.option("--port", type=click.IntRange(0, 65535), default=53, show_default=True,
              help="Port every lab server listens on.")
def lab(hints_file: Path, port: int) -> None:
    """Run an offline mini internet: root, TLD and textbook zones on 127.x.y.z addresses."""
    from resolver.lab import run

    sys.exit(run(hints_file=hints_file, port=port))


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config(file: Path) -> None:
    """Check a TOML configuration file: print "ok" and a summary, or every error (exit 1)."""
    from resolver.daemon import config_file

    # Every problem of the file in one run: bad keys, then what the good keys name.
    try:
        values, errors = config_file.load_partly(file)
    except config_file.ConfigFileError as exc:
        _fail(exc.errors)
    try:
        with serve.make_context("serve", [], default_map=values) as ctx:
            config = _serve_config({**ctx.params, "config_path": file})
            workers = int(ctx.params["workers"])
    except click.ClickException as exc:
        _fail([*errors, f"{file}: {exc.format_message()}"])
    checked = config_file.check_files(config)
    warnings = [*checked.warnings, *config_file.serve_conflicts(config, workers)]
    for warning in warnings:
        click.echo(f"warning: {file}: {warning}", err=True)
    errors += [f"{file}: {error}" for error in checked.errors]
    if errors:
        _fail(errors)
    click.echo("ok")
    for line in config_file.summary(config, checked):
        click.echo(f"  {line}")


@main.command()
@click.option("--metrics", "address", metavar="ADDR:PORT",
              help="The running server's metrics endpoint (its --metrics). Default: the one "
                   "in --config, else 127.0.0.1:9153, else the control channel.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Take the metrics address from this configuration file.")
@click.option("--raw", is_flag=True, help="Print the Prometheus text exposition as served.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: every sample by name, for programs.")
@_control_socket_option
def stats(address: str | None, config_path: Path | None, raw: bool, as_json: bool,
          control_socket: Path | None) -> None:
    """Print the counters of a running `resolver serve`: queries, cache, rcodes, upstream."""
    from resolver.daemon import config_file, metrics

    explicit = address is not None
    if address is None and config_path is not None:
        try:
            address = config_file.load(config_path).get("metrics")
        except config_file.ConfigFileError as exc:
            _fail(exc.errors)
        explicit = address is not None
    try:
        default = f"127.0.0.1:{DEFAULT_METRICS_PORT}"
        endpoint = config_file.check_metrics(address or default)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics") from None
    try:
        texts = [metrics.fetch(endpoint.ip, endpoint.port)]
        engine: dict[str, Any] = {}
        source = f"http://{endpoint}/metrics"
    except (OSError, ValueError, http_client_errors()) as exc:
        if explicit:
            raise click.ClickException(f"cannot read metrics at http://{endpoint}/metrics: "
                                       f"{exc}") from None
        texts, engine, source = _stats_from_control(control_socket, endpoint, exc)
    if raw:
        for text in texts:
            click.echo(text, nl=False)
        return
    _print_stats(texts, engine, source, as_json=as_json)


def _stats_from_control(
    control_socket: Path | None, endpoint: ListenAddress, http_error: Exception
) -> tuple[list[str], dict[str, Any], str]:
    """The expositions and engine counters of every worker, through the control channel."""
    from resolver.daemon.control import (
        ControlError,
        default_socket_path,
        merged_stats,
        request_all,
    )

    path = control_socket if control_socket is not None else default_socket_path()
    try:
        replies = request_all(path, {"cmd": "stats"})
    except ControlError as control_exc:
        raise click.ClickException(
            f"no metrics endpoint at http://{endpoint}/metrics ({http_error}; start the server "
            f"with --metrics {endpoint}) and no control channel: {control_exc}") from None
    texts = [str(reply["exposition"]) for _, reply in replies if reply.get("exposition")]
    engine = merged_stats([reply.get("stats") or {} for _, reply in replies])
    engine["workers"] = len(replies)
    return texts, engine, f"control socket {path}"


def _print_stats(texts: list[str], engine: dict[str, Any], source: str, *,
                 as_json: bool) -> None:
    """The same table whether the counters came over HTTP or the control channel."""
    import json

    from resolver.daemon.control import merged_samples
    from resolver.server.metrics import format_stats

    samples = merged_samples(texts)
    if as_json:
        by_name = {sample.render().rsplit(" ", 1)[0]: sample.value for sample in samples}
        click.echo(json.dumps({"source": source, "samples": by_name, "engine": engine},
                              sort_keys=True))
        return
    if engine.get("workers", 1) > 1:
        click.echo(f"workers               {engine['workers']}")
    for line in format_stats(samples):
        click.echo(line)
    if engine:
        click.echo("\nengine counters (control channel):")
        for key, value in sorted(engine.items()):
            if key != "workers":
                click.echo(f"  {key:<22}  {value}")


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


@main.command()
@click.argument("words", nargs=-1, required=True, metavar="NAME [TYPE] [NAME [TYPE]]...")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@click.option("--tcp", is_flag=True, help="Send every upstream query over TCP.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per trace event per line (see docs/trace-json.md).")
@click.option("--no-color", is_flag=True, help="Never colour the output.")
@click.option("--explain", is_flag=True, help="Add a plain-language sentence to each step.")
@click.option("--legend", is_flag=True, help="Start with what the markers and the | mean.")
@click.option("--recursive", metavar="SERVER[@PORT]",
              help="Also send one recursive query (RD=1) to this resolver, for contrast.")
@click.option("--fanout", is_flag=True,
              help="Ask every server of each zone cut on the path; show RTTs, lame servers "
                   "and parent/child NS differences.")
@click.option("--no-qmin", is_flag=True,
              help="Send the full name to every server, as textbooks draw it (no QNAME "
                   "minimisation, RFC 9156).")
@click.option("--server", "server_name", metavar="NAME|ADDRESS",
              help="Start at this root server of the hints only (no priming).")
@click.option("--seed", type=int, metavar="N",
              help="Seed the choice among equally good servers: the same walk every run.")
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Draw the lookup of the first name as an SVG picture.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="The same picture in a self-contained HTML page with a "
                                   "legend.")
@_validation_options
def trace(words: tuple[str, ...], root_hints: Path, upstream_port: int, tcp: bool,
          as_json: bool, no_color: bool, explain: bool, legend: bool, recursive: str | None,
          fanout: bool, no_qmin: bool, server_name: str | None, seed: int | None,
          svg_file: Path | None, html_file: Path | None, dnssec: bool,
          trust_anchor_file: Path | None) -> None:
    """Show every step of an iterative lookup of NAME, from the root hints, with an empty cache.

    Several names are resolved one after the other with the same cache: the second
    starts at the zone cut the first left there."""
    from resolver.cli.trace_picture import PictureFiles
    from resolver.cli.trace_render import legend_lines
    from resolver.cli.trace_run import run_cli

    try:
        questions = _questions(words)
    except click.BadParameter as exc:
        raise click.ClickException(exc.format_message()) from None
    if legend and not as_json:
        for line in legend_lines():
            click.echo(line)
    picture = (PictureFiles(svg=svg_file, html=html_file)
               if svg_file is not None or html_file is not None else None)
    sys.exit(run_cli(questions[0], root_hints=root_hints, upstream_port=upstream_port, tcp=tcp,
                     as_json=as_json, no_color=no_color, explain=explain, recursive=recursive,
                     fanout=fanout, more=tuple(questions[1:]), qname_minimisation=not no_qmin,
                     server_name=server_name, seed=seed, picture=picture, dnssec=dnssec,
                     trust_anchor_file=trust_anchor_file))


def _questions(words: tuple[str, ...]) -> list[Question]:
    """dig's reading of its arguments: each name, optionally followed by its type."""
    questions: list[Question] = []
    index = 0
    while index < len(words):
        name = words[index]
        rtype = "A"
        if index + 1 < len(words) and _is_type(words[index + 1]):
            rtype = words[index + 1]
            index += 1
        elif index + 1 < len(words) and not _looks_like_name(words[index + 1]):
            rtype = words[index + 1]  # not a name and not a type: let _question say why
            index += 1
        questions.append(_question(name, rtype))
        index += 1
    return questions


def _is_type(word: str) -> bool:
    try:
        type_from_text(word)
    except ValueError:
        return False
    return not word.isdigit()


def _looks_like_name(word: str) -> bool:
    return "." in word or not word.isascii()


@main.group()
def cache() -> None:
    """Look at or flush the cache of a running `resolver serve` (local control socket)."""


def _control(
    control_socket: Path | None, payload: dict[str, Any]
) -> list[tuple[int, dict[str, Any]]]:
    """The replies of every worker of the running server, (worker number, reply) each."""
    from resolver.daemon.control import ControlError, default_socket_path, request_all

    path = control_socket if control_socket is not None else default_socket_path()
    try:
        return request_all(path, payload)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_lines(replies: list[tuple[int, dict[str, Any]]]) -> int:
    """Print the lines of each reply (under a header per worker when there are several)."""
    printed = 0
    for worker, reply in replies:
        lines = reply.get("lines") or []
        if lines and len(replies) > 1:
            click.echo(f";; worker {worker}")
        for line in lines:
            click.echo(line)
        printed += len(lines)
    return printed


def _control_name(name: str) -> str:
    from resolver.daemon.control import ControlError, check_name

    try:
        return check_name(name)
    except ControlError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


def _control_type(rtype: str | None) -> str | None:
    if rtype is None:
        return None
    try:
        type_from_text(rtype)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--type") from None
    return rtype


@cache.command("show")
@click.argument("name")
@click.option("--type", "rtype", metavar="TYPE", help="Only this type (A, AAAA, NS, ...).")
@_control_socket_option
def cache_show(name: str, rtype: str | None, control_socket: Path | None) -> None:
    """Show what the cache holds for NAME, TTLs counted down."""
    qname = _control_name(name)
    replies = _control(control_socket,
                       {"cmd": "show", "name": qname, "type": _control_type(rtype)})
    if not _echo_lines(replies):
        click.echo(f";; nothing cached for {qname}" + (f" {rtype.upper()}" if rtype else ""))


@cache.command("flush")
@click.argument("name")
@click.option("--subtree", is_flag=True, help="Also every name below NAME.")
@click.option("--type", "rtype", metavar="TYPE", help="Only this type (A, AAAA, NS, ...).")
@_control_socket_option
def cache_flush(name: str, subtree: bool, rtype: str | None, control_socket: Path | None) -> None:
    """Remove NAME (and with --subtree every name below it) from the cache."""
    qname = _control_name(name)
    replies = _control(control_socket, {"cmd": "flush", "name": qname, "subtree": subtree,
                                        "type": _control_type(rtype)})
    removed = sum(int(reply.get("removed", 0)) for _, reply in replies)
    workers = f" from {len(replies)} workers" if len(replies) > 1 else ""
    click.echo(f"removed {removed} {'entry' if removed == 1 else 'entries'}{workers}")


@cache.command("dump")
@_control_socket_option
def cache_dump(control_socket: Path | None) -> None:
    """Print the cache in the cache file format (what `cache load` and --cache-file read)."""
    _echo_lines(_control(control_socket, {"cmd": "dump"}))


@cache.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_control_socket_option
def cache_load(file: Path, control_socket: Path | None) -> None:
    """Put the entries of FILE (from `cache dump` or --cache-file) into the running cache,
    TTLs lowered by the time since it was written. A bad file changes nothing."""
    replies = _control(control_socket, {"cmd": "load", "path": str(file.resolve())})
    loaded = sum(int(reply.get("loaded", 0)) for _, reply in replies)
    workers = f" into {len(replies)} workers" if len(replies) > 1 else ""
    click.echo(f"loaded {loaded} {'entry' if loaded == 1 else 'entries'}{workers}")
