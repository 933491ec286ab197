"""The operator's policy in force: put in at start, replaced as a whole on SIGHUP.

The policy is what may change while the server runs: access control, local zones and
data, rebinding protection, the per-address rate limit and the query log. Everything
else (listen addresses, caches, upstreams) is set up at start; a reload that changes it
says it takes effect only after a restart. The caches are kept across a reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from resolver.daemon.config import ServeConfig, SystemSettings
from resolver.server.acl import AccessControl
from resolver.server.handler import QueryHandler
from resolver.server.local_zones import LocalZones, RebindingGuard
from resolver.server.ratelimit import IpRateLimiter

log = logging.getLogger("resolver")


def install_policy(handler: QueryHandler, system: SystemSettings) -> None:
    """Put the access control, local zones, rebinding protection, rate limit and query log of
    `system` in force, at start and on SIGHUP. Everything is built before anything is
    installed: a bad setting (ValueError, OSError) leaves the handler as it was."""
    access = AccessControl.from_texts(system.access_control)
    local_zones = LocalZones.from_settings(system.local_zones, system.local_data,
                                           system.hosts_files)
    rebinding = RebindingGuard.from_settings(system.private_addresses, system.private_domains)
    ratelimit = handler.ratelimit
    if ratelimit is None or ratelimit.qps != system.ip_ratelimit:  # same rate: keep the buckets
        ratelimit = IpRateLimiter(system.ip_ratelimit) if system.ip_ratelimit else None
    handler.access, handler.local_zones, handler.rebinding = access, local_zones, rebinding
    handler.ratelimit, handler.log_queries = ratelimit, system.log_queries
    handler.answers.clear()  # replies stored under the previous policy


def reload_policy(handler: QueryHandler, as_started: ServeConfig,
                  reload: Callable[[], ServeConfig] | None) -> None:
    """SIGHUP: re-read the configuration; apply the policy, keep the caches."""
    from resolver.daemon.config_file import ConfigFileError, needs_restart

    if reload is None:
        log.info("SIGHUP: nothing to reload (the configuration came from the command line; "
                 "use --config FILE)")
        return
    try:
        new = reload()
        install_policy(handler, new.system)
        # Stored replies were shaped by the old policy (local data, private addresses).
        handler.answers.clear()
    except Exception as exc:  # the running configuration stays: say why, one line each
        lines = exc.errors if isinstance(exc, ConfigFileError) else [str(exc)]
        for line in lines:
            log.error("reload failed, nothing changed: %s", line)
        return
    logging.getLogger().setLevel(logging.DEBUG if new.system.verbose else logging.INFO)
    for name in needs_restart(as_started, new):
        log.warning("reload: %s changed, but takes effect only after a restart (listen "
                    "addresses, ports, caches and upstreams are set up at start)", name)
    system = new.system
    log.info("configuration reloaded from %s: %d access-control rules, %d local zones, "
             "%d local-data records, ip-ratelimit %s, log-queries %s; the cache is kept",
             system.config_file or "the command line", len(system.access_control),
             len(system.local_zones), len(system.local_data), system.ip_ratelimit or "off",
             "on" if system.log_queries else "off")
