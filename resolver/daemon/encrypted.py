"""The encrypted listeners of `resolver serve`, built from `EncryptedSettings`, as one unit.

DoT, DoH, plain-HTTP DoH and DoQ all feed the same `QueryHandler` as UDP and TCP (one cache,
one access list, one rate limit) and share one `ConnectionGate`. The gate asks the handler's
access list as it is at each connection, so a SIGHUP that changes the list applies at once.
SIGHUP also re-reads the certificate and key (`reload_certificates`).
They are announced at `_dns.resolver.arpa` (RFC 9462, resolver.server.discovery) under
--tls-name, or the certificate's first DNS name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from resolver.daemon.config import EncryptedSettings, ListenAddress
from resolver.server.acl import AclAction
from resolver.server.connection_limits import ConnectionGate
from resolver.server.discovery import EncryptedEndpoint, ResolverDiscovery
from resolver.server.encrypted_answer import EncryptedAnswer
from resolver.server.handler import QueryHandler
from resolver.server.https_listener import ALPN_HTTP1, ALPN_HTTP2, DohListener
from resolver.server.metrics import Family, Sample, counter, gauge
from resolver.server.quic_listener import ALPN_DOQ, DoqListener
from resolver.server.tls_context import (
    CertificateFiles,
    ServerCertificates,
    certificate_dns_names,
)
from resolver.server.tls_listener import ALPN_DOT, DotListener

log = logging.getLogger("resolver")


def _pairs(addresses: tuple[ListenAddress, ...]) -> list[tuple[str, int]]:
    return [(address.ip, address.port) for address in addresses]


class EncryptedListeners:
    """Every configured encrypted listener; none when nothing is configured."""

    def __init__(self, handler: QueryHandler, settings: EncryptedSettings, *,
                 worker_index: int | None = None) -> None:
        """Build them; CertificateError when a TLS listener is asked for without a usable
        certificate (nothing is bound yet). `worker_index`: one of several workers, which
        share the TCP listeners' addresses; only worker 0 serves QUIC, whose connections
        the kernel could not keep to one worker."""
        self.settings = settings
        self._handler = handler
        self.answer = EncryptedAnswer(handler)
        self.gate = ConnectionGate(settings.limits, admits=lambda ip: (
            handler.access is None or handler.access.action_for(ip) is not AclAction.DENY))
        self.certificates: ServerCertificates | None = None
        if settings.needs_certificate:
            from resolver.server.tls_context import CertificateError

            if settings.tls_cert is None or settings.tls_key is None:
                raise CertificateError("--listen-tls, --listen-https and --listen-quic need "
                                       "--tls-cert FILE and --tls-key FILE")
            self.certificates = ServerCertificates(
                CertificateFiles(cert_file=settings.tls_cert, key_file=settings.tls_key))
        self.dot: DotListener | None = None
        self.doh: list[DohListener] = []
        self.doq: DoqListener | None = None
        certificates = self.certificates
        shared = worker_index is not None
        if settings.listen_tls and certificates is not None:
            self.dot = DotListener(self.answer, _pairs(settings.listen_tls), gate=self.gate,
                                   context=certificates.context([ALPN_DOT]), reuse_port=shared)
        if settings.listen_https and certificates is not None:
            self.doh.append(DohListener(
                self.answer, _pairs(settings.listen_https), gate=self.gate,
                context=certificates.context([ALPN_HTTP2, ALPN_HTTP1]),
                path=settings.https_path, reuse_port=shared))
        if settings.listen_http:
            self.doh.append(DohListener(self.answer, _pairs(settings.listen_http),
                                        gate=self.gate, context=None, path=settings.https_path,
                                        reuse_port=shared))
        if settings.listen_quic and certificates is not None and not worker_index:
            self.doq = DoqListener(self.answer, _pairs(settings.listen_quic), gate=self.gate,
                                   certificates=certificates.files)
            certificates.on_reload(self.doq.load_certificates)

    @property
    def _all(self) -> list[DotListener | DohListener | DoqListener]:
        found: list[DotListener | DohListener | DoqListener] = [*self.doh]
        if self.dot is not None:
            found.insert(0, self.dot)
        if self.doq is not None:
            found.append(self.doq)
        return found

    async def start(self) -> None:
        """Bind every listener; OSError naming the address when one cannot be."""
        started: list[DotListener | DohListener | DoqListener] = []
        try:
            for listener in self._all:
                await listener.start()
                started.append(listener)
        except BaseException:
            for listener in started:
                await listener.stop()
            raise
        for name, listener in self.described():
            where = ", ".join(_fmt(ip, port) for ip, port in listener.bound_addresses)
            log.info("%s on %s", name, where)

    async def stop(self, drain_s: float = 0.0) -> None:
        for listener in self._all:
            await listener.stop(drain_s)

    def described(self) -> list[tuple[str, DotListener | DohListener | DoqListener]]:
        names: list[tuple[str, DotListener | DohListener | DoqListener]] = []
        for listener in self._all:
            if isinstance(listener, DotListener):
                names.append(("DNS over TLS", listener))
            elif isinstance(listener, DoqListener):
                names.append(("DNS over QUIC", listener))
            elif listener._context is not None:
                names.append((f"DNS over HTTPS at {listener.path}", listener))
            else:
                names.append((f"DNS over plain HTTP at {listener.path}", listener))
        return names

    def endpoints(self) -> list[EncryptedEndpoint]:
        """The TLS-protected ways in, as clients reach them: the ports bound (a port 0 in
        the settings is the one the kernel chose), or the configured ones for a listener
        this process does not run (DoQ in workers after the first). The plain-HTTP
        listener is left out: its clients reach it through a proxy, on the proxy's port."""
        found: list[EncryptedEndpoint] = []

        def add(alpn: str, ports: list[int], path: str | None = None) -> None:
            for port in dict.fromkeys(ports):  # one record per port, whatever the addresses
                found.append(EncryptedEndpoint(alpn=alpn, port=port, https_path=path))

        settings = self.settings
        add(ALPN_DOT, _bound_ports([self.dot] if self.dot else [], settings.listen_tls))
        add(ALPN_HTTP2, _bound_ports([doh for doh in self.doh if doh._context is not None],
                                     settings.listen_https), settings.https_path)
        add(ALPN_DOQ, _bound_ports([self.doq] if self.doq else [], settings.listen_quic))
        return found

    def discovery(self) -> ResolverDiscovery:
        """What `_dns.resolver.arpa` answers: the endpoints under the resolver's TLS name;
        without a name, nothing (and one warning)."""
        name = self.settings.tls_name
        if name is None and self.certificates is not None:
            found = certificate_dns_names(self.certificates.files.cert_file)
            name = found[0] if found else None
        if name is None and self.settings.needs_certificate:
            log.warning("no --tls-name and no DNS name in the certificate: the encrypted "
                        "endpoints are not announced at _dns.resolver.arpa (RFC 9462)")
        return ResolverDiscovery(name, self.endpoints())

    def reload_certificates(self) -> None:
        """SIGHUP: read the certificate and key again; a failure keeps the old ones, logged."""
        if self.certificates is None:
            return
        from resolver.server.tls_context import CertificateError

        try:
            self.certificates.reload()
        except CertificateError as exc:
            log.error("certificate reload failed, the old certificate stays: %s", exc)
            return
        log.info("certificate reloaded from %s", self.certificates.files.cert_file)
        self._handler.discovery = self.discovery()  # its DNS name may be another now

    def metric_families(self) -> list[Family]:
        """Counters of the encrypted listeners for /metrics."""
        families = [
            gauge("resolver_encrypted_connections", "Encrypted client connections open now.",
                  self.gate.open_connections),
            counter("resolver_encrypted_connections_total",
                    "Encrypted client connections accepted.", self.gate.accepted),
        ]
        families.append(_labelled(
            "resolver_encrypted_rejected_total",
            "Encrypted client connections closed before their handshake, by reason.", "reason",
            {reason.value: count for reason, count in self.gate.rejected.items()}))
        families.append(_labelled(
            "resolver_encrypted_queries_total", "Client queries by encrypted way in.",
            "channel", dict(self.answer.queries)))
        return families


def _bound_ports(listeners: Sequence[DotListener | DohListener | DoqListener],
                 configured: tuple[ListenAddress, ...]) -> list[int]:
    """The ports the listeners are bound to, or the configured ones before they start."""
    bound = [port for listener in listeners for _ip, port in listener.bound_addresses]
    return bound or [address.port for address in configured]


def _labelled(name: str, help_text: str, label: str, counts: dict[str, int]) -> Family:
    samples = tuple(Sample(name=name, labels=((label, key),), value=value)
                    for key, value in sorted(counts.items()))
    return Family(name=name, help=help_text, type="counter", samples=samples)


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def start_encrypted(handler: QueryHandler, settings: EncryptedSettings, *,
                          worker_index: int | None = None) -> EncryptedListeners | None:
    """Start what `settings` configures, or None when it configures nothing; CertificateError
    or OSError (naming the address) when that cannot be done."""
    if not settings.any_listener:
        return None
    listeners = EncryptedListeners(handler, settings, worker_index=worker_index)
    await listeners.start()
    handler.discovery = listeners.discovery()
    if handler.metrics is not None:
        handler.metrics.add_collector(listeners.metric_families)
    return listeners
