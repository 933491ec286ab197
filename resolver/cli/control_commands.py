"""The commands that talk to a running server: `resolver stats` and `resolver cache ...`.

They reach it through its private control socket (resolver.daemon.control), or the
metrics endpoint for `stats --metrics`; every worker of a `--workers` service answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resolver.cli.option_checks import checked_option
from resolver.cli.serve_options import _control_socket_option, _fail
from resolver.daemon.config import ListenAddress
from resolver.dns.wire import type_from_text
from resolver.server.metrics import DEFAULT_METRICS_PORT


@click.command()
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
    default = f"127.0.0.1:{DEFAULT_METRICS_PORT}"
    endpoint = checked_option(config_file.check_metrics, address or default, "--metrics")
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


@click.group()
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

    return checked_option(check_name, name, "NAME", errors=ControlError)


def _control_type(rtype: str | None) -> str | None:
    if rtype is None:
        return None
    checked_option(type_from_text, rtype, "--type")
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
    shared = {str(reply.get("shared", "none")) for _, reply in replies}
    if "flushed" in shared:
        click.echo("flushed from the shared cache (--cachedb) too")
    elif "unavailable" in shared:
        click.echo("the shared cache (--cachedb) did not answer: its copies expire with "
                   "their TTLs", err=True)


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
