"""The options of `resolver serve` for encrypted listeners: DoT, DoH, plain-HTTP DoH, DoQ.

Each listener is off unless its option is given; the config file takes the same names
without dashes (resolver.daemon.config_file). Addresses without a port take the
protocol's own: 853 for DNS over TLS and QUIC, 443 for HTTPS, 80 for HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from resolver.cli.option_checks import checked_option
from resolver.daemon.config import EncryptedSettings, ListenAddress, ServeConfig
from resolver.server.connection_limits import ConnectionLimits
from resolver.server.doh_message import check_https_path
from resolver.server.local_zones import check_name

F = TypeVar("F", bound=Callable[..., Any])
_LIMITS = ConnectionLimits()

#: Option name -> the port an address without one gets.
DEFAULT_PORTS = {"listen_tls": 853, "listen_https": 443, "listen_http": 80, "listen_quic": 853}


def encrypted_options(f: F) -> F:
    """Add the encrypted listeners' options to a command."""
    def listen(name: str, what: str) -> Callable[[Any], Any]:
        param = name.replace("-", "_")
        return click.option(f"--{name}", param, multiple=True, metavar="ADDR[:PORT]",
                            help=f"{what} (repeatable; port {DEFAULT_PORTS[param]} when none "
                                 f"is given). Off unless given.")
    options: list[Callable[[Any], Any]] = [
        listen("listen-tls", "Serve DNS over TLS (RFC 7858) here"),
        listen("listen-https", "Serve DNS over HTTPS (RFC 8484; HTTP/2 and HTTP/1.1) here"),
        listen("listen-http", "Serve DNS over plain HTTP here, for a reverse proxy that "
                              "terminates TLS"),
        listen("listen-quic", "Serve DNS over QUIC (RFC 9250) here"),
        click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path),
                     metavar="FILE", help="Certificate chain (PEM) of the TLS, HTTPS and QUIC "
                                          "listeners; re-read on SIGHUP."),
        click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path),
                     metavar="FILE", help="Private key (PEM) of --tls-cert; re-read on SIGHUP."),
        click.option("--tls-name", metavar="NAME", callback=lambda _c, _p, v: _checked_name(v),
                     help="The resolver's name in its certificate, announced with its "
                          "encrypted endpoints at _dns.resolver.arpa (RFC 9462). Default: "
                          "the certificate's first DNS name."),
        click.option("--https-path", default="/dns-query", show_default=True, metavar="PATH",
                     callback=lambda _c, _p, v: _checked_path(v),
                     help="URL path of DNS over HTTPS."),
        click.option("--tls-max-connections", type=click.IntRange(1, 1_000_000),
                     default=_LIMITS.max_connections, show_default=True,
                     help="Encrypted connections open at once, all listeners together."),
        click.option("--tls-max-connections-per-client", type=click.IntRange(1, 1_000_000),
                     default=_LIMITS.max_per_client, show_default=True,
                     help="Encrypted connections one client address may hold at once."),
        click.option("--tls-idle-timeout", type=click.FloatRange(0.1, 3600),
                     default=_LIMITS.idle_timeout_s, show_default=True,
                     metavar="SECONDS", help="Close an encrypted connection quiet this long."),
        click.option("--http2-max-streams", type=click.IntRange(1, 10_000),
                     default=_LIMITS.max_http2_streams, show_default=True,
                     help="Concurrent HTTP/2 streams per DNS over HTTPS connection."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _checked_path(value: str) -> str:
    return checked_option(check_https_path, value, "--https-path")


def _checked_name(value: str | None) -> str | None:
    if value is None:
        return None
    return checked_option(check_name, value, "--tls-name")


def _addresses(params: dict[str, Any], name: str) -> tuple[ListenAddress, ...]:
    def parse(text: str) -> ListenAddress:
        return ListenAddress.parse(text, default_port=DEFAULT_PORTS[name])

    hint = "--" + name.replace("_", "-")
    return tuple(checked_option(parse, text, hint) for text in params.get(name) or ())


def with_encrypted_options(config: ServeConfig, params: dict[str, Any]) -> ServeConfig:
    """`config` with the encrypted listeners the parameters ask for."""
    cert, key = params.get("tls_cert"), params.get("tls_key")
    limits = replace(
        _LIMITS,
        max_connections=int(params.get("tls_max_connections", _LIMITS.max_connections)),
        max_per_client=int(params.get("tls_max_connections_per_client",
                                      _LIMITS.max_per_client)),
        idle_timeout_s=float(params.get("tls_idle_timeout", _LIMITS.idle_timeout_s)),
        max_http2_streams=int(params.get("http2_max_streams",
                                         _LIMITS.max_http2_streams)),
    )
    settings = EncryptedSettings(
        listen_tls=_addresses(params, "listen_tls"),
        listen_https=_addresses(params, "listen_https"),
        listen_http=_addresses(params, "listen_http"),
        listen_quic=_addresses(params, "listen_quic"),
        tls_cert=str(cert) if cert is not None else None,
        tls_key=str(key) if key is not None else None,
        https_path=str(params.get("https_path") or "/dns-query"),
        tls_name=_checked_name(params.get("tls_name")),  # the config file's too
        limits=limits,
    )
    if settings.needs_certificate and (settings.tls_cert is None or settings.tls_key is None):
        raise click.UsageError("--listen-tls, --listen-https and --listen-quic need --tls-cert "
                               "FILE and --tls-key FILE")
    return replace(config, encrypted=settings)
