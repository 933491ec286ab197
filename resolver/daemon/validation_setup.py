"""Whether `resolver serve` validates DNSSEC, and against which trust anchors.

The rule (README "DNSSEC validation"):
- `--no-dnssec` (config key `dnssec = false`): off.
- `--trust-anchor-file PATH` (config key `trust-anchor-file`, Unbound's name): on, with
  the DS or DNSKEY records of that file (RFC 4035 §4.4).
- Otherwise on, with the root's KSKs built in (resolver.dnssec.anchors), when the
  upstreams are real: the root hints (or the forwarders of ".") are not all loopback.
  With every upstream on loopback (the lab, tests) the built-in root key cannot be
  validated against the lab's own unsigned root, so validation is off: a lab gets it by
  writing its root's DS into a trust-anchor file.
The decision is logged once at start.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from resolver.daemon.config import ServeConfig
from resolver.dnssec.anchors import ROOT_ANCHORS, AnchorFileError, parse_trust_anchors
from resolver.engine.delegation import Delegation, is_loopback_or_unspecified
from resolver.engine.settings import ValidationSettings
from resolver.upstream.forwarding import parse_https_upstream, parse_upstream

log = logging.getLogger(__name__)


class TrustAnchorError(ValueError):
    """The trust-anchor file cannot be read or used; the message says why."""


def read_anchor_file(path: str) -> ValidationSettings:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TrustAnchorError(f"cannot read trust-anchor file {path}: "
                               f"{exc.strerror or exc}") from None
    try:
        return ValidationSettings(anchors=parse_trust_anchors(text))
    except AnchorFileError as exc:
        raise TrustAnchorError(f"trust-anchor file {path}: {exc}") from None


def with_validation(config: ServeConfig, root_hints: Delegation) -> ServeConfig:
    """`config` with the engine's validation settings decided by the rule above."""
    if config.engine.validation is not None:
        return config  # set by whoever built the configuration
    validation, why = decide(config, root_hints)
    log.info("DNSSEC validation %s", why)
    return replace(config, engine=replace(config.engine, validation=validation))


def decide(config: ServeConfig, root_hints: Delegation) -> tuple[ValidationSettings | None, str]:
    """The validation settings (None: off) and the reason, in words for the log."""
    settings, why = _decide_anchors(config, root_hints)
    if settings is not None and config.domain_insecure:
        settings = replace(settings, insecure_domains=config.domain_insecure)
        why += f"; not validated at and below {', '.join(config.domain_insecure)}"
    return settings, why


def _decide_anchors(config: ServeConfig,
                    root_hints: Delegation) -> tuple[ValidationSettings | None, str]:
    if not config.dnssec:
        return None, "off (--no-dnssec)"
    if config.trust_anchor_file is not None:
        settings = read_anchor_file(config.trust_anchor_file)
        zones = ", ".join(sorted(settings.anchors.zones))
        return settings, f"on, trust anchors for {zones} from {config.trust_anchor_file}"
    if _upstreams_on_loopback(config, root_hints):
        return None, ("off: every upstream is on loopback (a lab) and no trust-anchor file "
                      "is given (--trust-anchor-file)")
    return ValidationSettings(anchors=ROOT_ANCHORS), "on, with the built-in root trust anchor"


def _upstreams_on_loopback(config: ServeConfig, root_hints: Delegation) -> bool:
    port = config.engine.upstream_port
    forwarders = (*config.forwarding.forward, *config.forwarding.forward_tls)
    doh = config.forwarding.forward_https
    if forwarders or doh:
        addresses = [parse_upstream(spec, default_port=port).ip for spec in forwarders]
        addresses += [parse_https_upstream(url).ip for url in doh]
    else:
        addresses = [a for ns in root_hints.servers for a in ns.addresses]
    return bool(addresses) and all(is_loopback_or_unspecified(a) for a in addresses)
