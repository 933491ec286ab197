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
from typing import Any, TypeVar

import click

from resolver import __version__
from resolver.config import EngineSettings, ListenAddress, ServeConfig
from resolver.delegation import RootHintsError, load_root_hints
from resolver.wire import Question, Rcode, type_from_text

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
        return tuple(ListenAddress.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None


def _port_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--upstream-port", type=click.IntRange(1, 65535), default=53, show_default=True,
        help=help_text,
    )


@main.command()
@click.option("--listen", "listen", multiple=True, metavar="ADDR:PORT",
              help="Address and port to serve on (repeatable). Default: 127.0.0.1:53 and [::1]:53.")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@click.option("--cache-size", type=click.IntRange(1), default=100_000, show_default=True,
              help="Most RRsets and negative answers kept in the cache.")
@click.option("-v", "--verbose", is_flag=True, help="Log every SERVFAIL reason and more.")
def serve(listen: tuple[str, ...], root_hints: Path, upstream_port: int, cache_size: int,
          verbose: bool) -> None:
    """Answer stub clients over UDP and TCP, resolving iteratively from the root hints."""
    _setup_logging(verbose)
    config = ServeConfig(root_hints_file=str(root_hints))
    if listen:
        config = replace(config, listen=_parse_listen(listen))
    config = replace(
        config,
        engine=replace(config.engine, upstream_port=upstream_port),
        cache=replace(config.cache, max_entries=cache_size),
    )
    _check_hints(root_hints)
    from resolver.app import serve as run_server

    try:
        asyncio.run(run_server(config))
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


def _check_hints(path: Path) -> None:
    try:
        load_root_hints(path)
    except RootHintsError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("name")
@click.argument("rtype", default="A", metavar="[TYPE]")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
def query(name: str, rtype: str, root_hints: Path, upstream_port: int) -> None:
    """Resolve NAME once, iteratively, without a server; print it like dig's answer."""
    question = _question(name, rtype)
    try:
        hints = load_root_hints(root_hints)
    except RootHintsError as exc:
        raise click.ClickException(str(exc)) from None
    from resolver.app import build

    config = ServeConfig(engine=EngineSettings(upstream_port=upstream_port))
    app = build(config, root_hints=hints)
    started = time.monotonic()
    outcome = asyncio.run(app.service.resolve(question))
    elapsed_ms = (time.monotonic() - started) * 1000
    click.echo(f";; QUESTION: {question}")
    click.echo(f";; status: {_rcode(outcome.rcode)}, {outcome.queries_sent} upstream queries, "
               f"{elapsed_ms:.0f} ms")
    if outcome.reason:
        click.echo(f";; reason: {outcome.reason}")
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
    from resolver import names

    try:
        number = type_from_text(rtype)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TYPE") from None
    qname = names.canonical(name)
    if len(qname) > 254 or any(not 0 < len(label) <= 63 for label in names.labels(qname)):
        raise click.BadParameter(f"{name!r} is not a valid domain name", param_hint="NAME")
    try:
        qname.encode("ascii")
    except UnicodeEncodeError:
        raise click.BadParameter(f"{name!r} is not ASCII (use its xn-- form)",
                                 param_hint="NAME") from None
    return Question(qname, number)


def _rcode(rcode: int) -> str:
    try:
        return Rcode(rcode).name
    except ValueError:
        return str(rcode)


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


@main.command()
@click.argument("name")
@click.argument("rtype", default="A", metavar="[TYPE]")
@click.option("--root-hints", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("root.hints"), show_default=True, help="Root hints file to start from.")
@_port_option("Port of every upstream name server (use the lab's port).")
@click.option("--tcp", is_flag=True, help="Send every upstream query over TCP.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per trace event per line (see docs/trace-json.md).")
@click.option("--no-color", is_flag=True, help="Never colour the output.")
@click.option("--explain", is_flag=True, help="Add a plain-language sentence to each step.")
@click.option("--recursive", metavar="SERVER[@PORT]",
              help="Also send one recursive query (RD=1) to this resolver, for contrast.")
@click.option("--fanout", is_flag=True,
              help="Ask every server of each zone cut on the path; show RTTs, lame servers "
                   "and parent/child NS differences.")
def trace(name: str, rtype: str, root_hints: Path, upstream_port: int, tcp: bool, as_json: bool,
          no_color: bool, explain: bool, recursive: str | None, fanout: bool) -> None:
    """Show every step of an iterative lookup of NAME, from the root hints, with a cold cache."""
    from resolver.trace_run import run_cli

    try:
        question = _question(name, rtype)
    except click.BadParameter as exc:
        raise click.ClickException(exc.format_message()) from None
    sys.exit(run_cli(question, root_hints=root_hints, upstream_port=upstream_port, tcp=tcp,
                     as_json=as_json, no_color=no_color, explain=explain, recursive=recursive,
                     fanout=fanout))
