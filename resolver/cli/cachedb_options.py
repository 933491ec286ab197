"""The options of `resolver serve` for the shared cache on Redis/Valkey (`--cachedb`).

Off unless `--cachedb URL` is given; the config file takes the same names without dashes
(resolver.daemon.config_file). The secret may also come from the environment
(RESOLVER_CACHEDB_SECRET), so that it stays out of the process list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from resolver.cli.option_checks import checked_option
from resolver.daemon.cachedb_redis import CacheDbUrl
from resolver.daemon.config import ServeConfig
from resolver.service.cachedb_tier import CacheDbSettings

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = CacheDbSettings(url="redis://localhost")


def _checked_url(_ctx: click.Context, _param: click.Parameter, value: str | None
                 ) -> str | None:
    if value is None:
        return None
    checked_option(CacheDbUrl.parse, value, "--cachedb")
    return value


def cachedb_options(f: F) -> F:
    """Add the shared cache's options to a command."""
    options: list[Callable[[Any], Any]] = [
        click.option("--cachedb", metavar="URL", callback=_checked_url,
                     help="Share the cache through Redis or Valkey: "
                          "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS. "
                          "Read on a miss of the memory cache, written behind the answer."),
        click.option("--cachedb-secret", default="", envvar="RESOLVER_CACHEDB_SECRET",
                     metavar="TEXT", show_default=False,
                     help="Key of the keyed hash that names the entries: instances share "
                          "entries only with the same secret (or $RESOLVER_CACHEDB_SECRET)."),
        click.option("--cachedb-budget", type=click.FloatRange(0.1, 1000),
                     default=_DEFAULTS.read_budget_ms, show_default=True, metavar="MS",
                     help="How long a query waits for the shared cache before resolving "
                          "upstream anyway."),
        click.option("--cachedb-retry", type=click.FloatRange(0.1, 3600),
                     default=_DEFAULTS.retry_s, show_default=True, metavar="SECONDS",
                     help="When the shared cache fails, skip it this long, then try again."),
        click.option("--cachedb-tls-ca-file", type=click.Path(dir_okay=False, path_type=Path),
                     metavar="FILE",
                     help="CA certificates (PEM) to verify a rediss:// server with, instead "
                          "of the system's."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def with_cachedb_options(config: ServeConfig, params: dict[str, Any]) -> ServeConfig:
    url = params.get("cachedb")
    if not url:
        return config
    ca_file = params.get("cachedb_tls_ca_file")
    settings = CacheDbSettings(
        url=str(url), secret=str(params.get("cachedb_secret") or ""),
        read_budget_ms=float(params.get("cachedb_budget") or _DEFAULTS.read_budget_ms),
        retry_s=float(params.get("cachedb_retry") or _DEFAULTS.retry_s),
        tls_ca_file=str(ca_file) if ca_file is not None else None,
    )
    return replace(config, cachedb=settings)
