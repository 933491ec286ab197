"""The command line: `resolver serve`, `query`, `trace`, `lab`, `check-config`; the
commands that talk to a running server (`stats`, `cache`) live in control_commands and
`serve`'s options in serve_options.

Every failure a user can cause (a bad address, a missing file, a taken port) ends in
one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from resolver import __version__
from resolver.cli.cachedb_options import cachedb_options
from resolver.cli.control_commands import cache, stats
from resolver.cli.encrypted_options import encrypted_options
from resolver.cli.option_checks import checked_option
from resolver.cli.serve_options import (
    CacheSizeType,
    F,
    _cache_options,
    _check_files,
    _fail,
    _forwarding_options,
    _port_option,
    _reloader,
    _serve_config,
    _system_options,
)
from resolver.daemon.config import ServeConfig
from resolver.daemon.hints_file import load_checked
from resolver.dns.wire import Question, Rcode, rcode_name, type_from_text
from resolver.engine.cache_budget import DEFAULT_CACHE_SIZE, CacheSize
from resolver.engine.delegation import Delegation, RootHintsError
from resolver.engine.settings import EngineSettings


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


@main.command()
@click.option("--listen", "listen", multiple=True, metavar="ADDR:PORT",
              help="Address and port to serve on (repeatable). Default: 127.0.0.1:53 and [::1]:53.")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@click.option("--cache-size", type=CacheSizeType(), default=DEFAULT_CACHE_SIZE,
              show_default=True,
              help="Memory for the caches as 512k, 64m or 1g (two thirds records, one third "
                   "replies), or a plain number: most entries in each cache.")
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
@click.option("--domain-insecure", "domain_insecure", multiple=True, metavar="NAME",
              help="Do not validate at and below NAME (repeatable): a negative trust "
                   "anchor (RFC 7646; Unbound's option).")
@_cache_options
@_forwarding_options
@_system_options
@encrypted_options
@cachedb_options
@click.pass_context
def serve(ctx: click.Context, /, listen: tuple[str, ...], root_hints: Path, upstream_port: int,
          cache_size: CacheSize, verbose: bool, workers: int, **cache_options: Any) -> None:
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
    try:
        question = _question(name, rtype)
    except click.BadParameter as exc:
        # One line and exit 1, as `trace`: exit 2 means SERVFAIL for both.
        raise click.ClickException(exc.format_message()) from None
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

    number = checked_option(type_from_text, rtype, "TYPE")
    qname = names.canonical(_a_labels(name))
    if not names.within_size_limits(qname):
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
    from resolver.cli.trace_report import legend_lines
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


main.add_command(stats)
main.add_command(cache)
