"""Server-side TLS for every encrypted listener: one certificate, TLS 1.2 and newer only.

The certificate and key come from files (`--tls-cert`, `--tls-key`). `ServerCertificates`
hands out one `ssl.SSLContext` per ALPN list (RFC 7858's "dot", RFC 8484's "h2" and
"http/1.1") and reloads the files into all of them on SIGHUP: new handshakes get the new
certificate, connections already open keep theirs. A reload that fails (unreadable file, key
not matching) changes nothing. QUIC keeps its own TLS stack (aioquic): it subscribes with
`on_reload` and is told the files once they have proved loadable.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class CertificateError(Exception):
    """The certificate or key cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFiles:
    """Where the server's certificate chain (PEM) and its private key (PEM) are."""

    cert_file: str
    key_file: str


def _context(files: CertificateFiles, alpn: Sequence[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: TLS 1.0 and 1.1 are gone
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(list(alpn))
    _load(context, files)
    return context


def _load(context: ssl.SSLContext, files: CertificateFiles) -> None:
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as exc:  # an OSError too: first
        raise CertificateError(f"cannot use certificate {files.cert_file} with key "
                               f"{files.key_file}: {exc.reason or exc}") from None
    except FileNotFoundError as exc:
        raise CertificateError(f"cannot read {exc.filename}: no such file") from None
    except OSError as exc:
        raise CertificateError(
            f"cannot read {exc.filename or files.cert_file}: {exc.strerror or exc}") from None


def certificate_dns_names(cert_file: str) -> list[str]:
    """The DNS names of the first certificate in `cert_file` (its subjectAltName), wildcards
    left out: they name no one host a client could be sent to. Empty when it has none or
    cannot be read."""
    from cryptography import x509

    try:
        with open(cert_file, "rb") as pem:
            certificate = x509.load_pem_x509_certificate(pem.read())
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return [name for name in alt.value.get_values_for_type(x509.DNSName)
            if not name.startswith("*")]


class ServerCertificates:
    """The live TLS contexts of the listeners, all loaded from the same two files."""

    def __init__(self, files: CertificateFiles) -> None:
        _context(files, ())  # fail at start, before anything is bound
        self.files = files
        self._contexts: list[ssl.SSLContext] = []
        self._subscribers: list[Callable[[CertificateFiles], None]] = []
        self.reloads = 0  #: successful reloads

    def context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A new server context offering `alpn`, kept up to date by `reload`."""
        context = _context(self.files, alpn)
        self._contexts.append(context)
        return context

    def on_reload(self, subscriber: Callable[[CertificateFiles], None]) -> None:
        self._subscribers.append(subscriber)

    def reload(self, files: CertificateFiles | None = None) -> None:
        """Read the files again (or `files` instead); CertificateError leaves all as it was."""
        files = files or self.files
        _context(files, ())  # proves both files load and match before any live context changes
        for context in self._contexts:
            _load(context, files)
        for subscriber in self._subscribers:
            subscriber(files)
        self.files = files
        self.reloads += 1
