"""The steps of start-up that depend on the operator's setup, and how they fail.

Beside the plain DNS listener the server starts the encrypted listeners, the metrics
endpoint and the control channel, then may switch to an unprivileged user. What the
operator must fix (a certificate, a port in use, a user) ends start-up with a
StartupError whose message is one line; the control channel is optional and only warns.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from resolver.daemon.config import EncryptedSettings, ListenAddress, SystemSettings
from resolver.daemon.control import (
    ControlError,
    ControlServer,
    default_socket_path,
    worker_socket_path,
)
from resolver.daemon.metrics import MetricsServer
from resolver.server.handler import QueryHandler
from resolver.server.metrics import DEFAULT_METRICS_PORT
from resolver.service.resolver_service import ResolverService

if TYPE_CHECKING:
    from resolver.daemon.encrypted import EncryptedListeners

log = logging.getLogger("resolver")


class StartupError(Exception):
    """The server cannot start as configured; the message is one line for the operator."""


async def start_encrypted_listeners(handler: QueryHandler, settings: EncryptedSettings,
                                    worker_index: int | None) -> EncryptedListeners | None:
    """DoT, DoH and DoQ listeners (resolver.daemon.encrypted), if configured; a worker
    (`worker_index` not None) shares their addresses with the others."""
    if not settings.any_listener:
        return None  # h2, aioquic and their TLS stack cost about 18 MB: imported only if used
    from resolver.daemon.encrypted import start_encrypted
    from resolver.server.tls_context import CertificateError

    try:
        return await start_encrypted(handler, settings, worker_index=worker_index)
    except CertificateError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:  # the message names the listener and the address
        raise StartupError(exc.strerror or str(exc)) from None


async def start_metrics(handler: QueryHandler, system: SystemSettings, worker: bool
                        ) -> MetricsServer | None:
    """The Prometheus endpoint (`--metrics ADDR:PORT`), if configured."""
    if system.metrics is None or handler.metrics is None:
        return None
    if worker:  # the workers would race for the one port, each with only its own counts
        log.warning("--metrics is not served with --workers above 1 (each worker counts "
                    "alone); run one worker to scrape it")
        return None
    address = ListenAddress.parse(system.metrics, default_port=DEFAULT_METRICS_PORT)
    server = MetricsServer(handler.metrics, address.ip, address.port)
    try:
        await server.start()
    except OSError as exc:
        reason = ("the address is already in use" if exc.errno == errno.EADDRINUSE
                  else exc.strerror or str(exc))
        raise StartupError(f"cannot serve metrics on {address}: {reason}") from None
    log.info("metrics on http://%s/metrics", host_port(address.ip, server.port))
    return server


def drop_privileges(username: str) -> None:
    """Become `username` (its uid, gid and groups) for good; StartupError if that fails."""
    import pwd

    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        raise StartupError(f"cannot run as user {username!r}: no such user") from None
    if os.geteuid() == entry.pw_uid:
        return
    if os.geteuid() != 0:
        raise StartupError(f"cannot switch to user {username!r}: only root can (start as "
                           f"root, or leave out --user)")
    try:
        os.initgroups(username, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)  # last: after it nothing can be taken back
    except OSError as exc:
        raise StartupError(f"cannot switch to user {username!r}: {exc.strerror}") from None


async def start_control(
    service: ResolverService, handler: QueryHandler, control_socket: str | None,
    worker_index: int | None,
) -> ControlServer | None:
    """The local control channel (`resolver cache ...`); serving DNS does not depend on it.

    With several workers, each has its own: worker 0 on the configured path, worker N on
    that path with ".N" appended (control.worker_socket_path); the client asks them all.
    """
    path = Path(control_socket) if control_socket else default_socket_path()
    if worker_index:
        path = worker_socket_path(path, worker_index)
    control = ControlServer(path, service, handler)
    try:
        await control.start()
    except ControlError as exc:
        log.warning("no control channel: %s", exc)
        return None
    log.info("control channel on %s", path)
    return control


def host_port(ip: str, port: int) -> str:
    """"192.0.2.1:53", "[2001:db8::1]:53": an address as the log lines show it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
