"""The daemon's configuration: what `resolver serve` runs with, as the operator wrote it.

The engine's own settings (limits, cache, forwarding) live in `resolver.engine.settings`;
this module adds what only the running service needs: listen addresses, client policy,
control socket. Values are frozen; `resolver.daemon.app` builds them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resolver.engine.settings import CacheSettings, EngineSettings, ForwardingSettings
from resolver.server.connection_limits import ConnectionLimits
from resolver.service.cachedb_tier import CacheDbSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemSettings:
    """Who may ask, what is answered locally, what is counted and logged, as the operator
    wrote it (Unbound's names); `resolver.server.acl`, `resolver.server.local_zones`,
    `resolver.daemon.metrics` and `resolver.server.ratelimit` read it.
    The policy part is re-read on SIGHUP."""

    #: "CIDR allow|allow_snoop|deny|refuse" over the built-in loopback-only rules
    #: (access-control).
    access_control: tuple[str, ...] = ()
    #: "NAME TYPE" (local-zone), e.g. "ads.example. always_nxdomain".
    local_zones: tuple[str, ...] = ()
    #: Records in zone-file syntax (local-data), e.g. "www.example. A 192.0.2.1".
    local_data: tuple[str, ...] = ()
    #: Hosts files whose names are served as local data (A/AAAA and PTR).
    hosts_files: tuple[str, ...] = ()
    #: CIDR blocks never returned for names outside `private_domains` (private-address).
    private_addresses: tuple[str, ...] = ()
    #: Names allowed to resolve into `private_addresses` (private-domain).
    private_domains: tuple[str, ...] = ()
    #: Queries per second per client address; 0 = no limit (ip-ratelimit).
    ip_ratelimit: int = 0
    #: One log line per query: client, name, type, rcode, time (log-queries).
    log_queries: bool = False
    #: Log at DEBUG level.
    verbose: bool = False
    #: "ADDR:PORT" of the Prometheus /metrics endpoint; None = no endpoint.
    metrics: str | None = None
    #: Switch to this user after binding the listen addresses (Unbound username).
    username: str | None = None
    #: The TOML file the configuration came from (re-read on SIGHUP).
    config_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenAddress:
    ip: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_port: int = 53) -> ListenAddress:
        """"127.0.0.1:5300", "[::1]:5300", "::1" or "127.0.0.1" (port 53)."""
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"cannot read listen address {text!r}")
            port = rest[1:] or str(default_port)
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        else:
            host, port = text, str(default_port)
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bad port in listen address {text!r}")
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IP address") from None
        return cls(ip=host, port=int(port))

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    """What `resolver serve` runs with."""

    listen: tuple[ListenAddress, ...] = (
        ListenAddress(ip="127.0.0.1", port=53),
        ListenAddress(ip="::1", port=53),
    )
    root_hints_file: str = "root.hints"
    engine: EngineSettings = field(default_factory=EngineSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    #: Forward zones, stub zones and DNS over TLS upstreams.
    forwarding: ForwardingSettings = field(default_factory=ForwardingSettings)
    #: Close a TCP connection after this long without a complete query (RFC 7766 §6.2.3).
    tcp_idle_timeout_s: float = 10.0
    #: Concurrent TCP clients (PowerDNS max-tcp-clients 128).
    max_tcp_clients: int = 128
    #: Largest UDP reply, whatever EDNS size a client offers (Unbound max-udp-size; 1232 as
    #: DNS Flag Day 2020 advises, so no reply is fragmented on common paths).
    max_udp_size: int = 1232
    #: Unix socket of the local control channel (`resolver cache ...`); None = the default path
    #: (resolver.daemon.control.default_socket_path).
    control_socket: str | None = None
    #: Where the record cache is saved and loaded from (resolver.daemon.cache_file);
    #: None = not kept across restarts.
    cache_file: str | None = None
    #: Seconds between two saves of `cache_file` while serving (also saved at exit).
    cache_save_interval_s: float = 300.0
    #: The shared second-level cache on Redis/Valkey (resolver.daemon.cachedb_redis);
    #: None = none.
    cachedb: CacheDbSettings | None = None
    #: Access control, local zones, rebinding protection, rate limit, metrics, logging, user.
    system: SystemSettings = field(default_factory=SystemSettings)
    #: DNS over TLS, HTTPS and QUIC for clients; all off unless configured.
    encrypted: EncryptedSettings = field(default_factory=lambda: EncryptedSettings())
    #: DNSSEC validation (--no-dnssec turns it off; resolver.daemon.validation_setup decides).
    dnssec: bool = True
    #: DS or DNSKEY records to trust instead of the built-in root key (Unbound's option).
    trust_anchor_file: str | None = None
    #: Negative trust anchors (--domain-insecure, RFC 7646): names not validated.
    domain_insecure: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedSettings:
    """The encrypted listeners for clients (resolver.daemon.encrypted)."""

    listen_tls: tuple[ListenAddress, ...] = ()  #: DNS over TLS (RFC 7858)
    listen_https: tuple[ListenAddress, ...] = ()  #: DNS over HTTPS (RFC 8484)
    #: DNS over plain HTTP, for a reverse proxy that terminates TLS in front of it.
    listen_http: tuple[ListenAddress, ...] = ()
    listen_quic: tuple[ListenAddress, ...] = ()  #: DNS over QUIC (RFC 9250)
    tls_cert: str | None = None  #: PEM certificate chain; re-read on SIGHUP
    tls_key: str | None = None  #: PEM private key; re-read on SIGHUP
    https_path: str = "/dns-query"
    #: The name announced in discovery (RFC 9462); None: the certificate's first DNS name.
    tls_name: str | None = None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    @property
    def needs_certificate(self) -> bool:
        return bool(self.listen_tls or self.listen_https or self.listen_quic)

    @property
    def any_listener(self) -> bool:
        """Whether any encrypted listener is configured (plain HTTP for a DoH proxy included)."""
        return self.needs_certificate or bool(self.listen_http)
