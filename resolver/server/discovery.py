"""Discovery of Designated Resolvers (RFC 9462): the answer to `_dns.resolver.arpa` SVCB.

A client that knows only our address asks `_dns.resolver.arpa` SVCB over any transport
(RFC 9462 §4) and learns our encrypted endpoints: one ServiceMode record per endpoint
(RFC 9461), with the resolver's TLS name as target (the name the client then checks the
certificate against, RFC 9462 §4.2), `alpn`, `port`, and for DNS over HTTPS `dohpath`
(RFC 9461 §5). Other types at that name are NODATA; with nothing to announce, the SVCB
query is NODATA too (RFC 9462 §4: "SHOULD return NODATA" without Designated Resolvers).
Other names under `resolver.arpa.` stay with the built-in local zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolver.dns import names
from resolver.dns.svcb import (
    SVCB_TYPE,
    ServiceBinding,
    SvcParamKey,
    alpn_value,
    dohpath_value,
    encode_svcb,
    port_value,
)
from resolver.dns.wire import CLASS_IN, Question, Rcode, Record, make_record, parse_record
from resolver.engine.events import Outcome

DISCOVERY_NAME = "_dns.resolver.arpa."
#: TTL of the records: short, as the endpoints change with the configuration.
DISCOVERY_TTL = 300
_SOA = parse_record("resolver.arpa. 300 IN SOA resolver.arpa. nobody.invalid. 1 3600 1200 "
                    "604800 300")


@dataclass(frozen=True, slots=True)
class EncryptedEndpoint:
    """One encrypted way in: its ALPN id ("dot", "h2", "doq"), port and DoH path."""

    alpn: str
    port: int
    https_path: str | None = None  #: DNS over HTTPS only


def service_bindings(target: str, endpoints: Sequence[EncryptedEndpoint]
                     ) -> list[ServiceBinding]:
    """One ServiceMode binding per endpoint, priorities 1, 2, ... in the given order."""
    bindings: list[ServiceBinding] = []
    for priority, endpoint in enumerate(endpoints, start=1):
        params = {SvcParamKey.ALPN: alpn_value([endpoint.alpn]),
                  SvcParamKey.PORT: port_value(endpoint.port)}
        if endpoint.https_path is not None:
            params[SvcParamKey.DOHPATH] = dohpath_value(endpoint.https_path + "{?dns}")
        bindings.append(ServiceBinding(priority=priority, target=target,
                                       params={int(k): v for k, v in params.items()}))
    return bindings


class ResolverDiscovery:
    """Answers the one discovery name; every other question is not its business."""

    def __init__(self, target: str | None, endpoints: Sequence[EncryptedEndpoint]) -> None:
        """`target` None (no TLS name known): nothing is announced, the answer is NODATA."""
        self.target = names.canonical(target) if target is not None else None
        self.records: tuple[Record, ...] = ()
        if self.target is not None:
            self.records = tuple(
                make_record(DISCOVERY_NAME, SVCB_TYPE, DISCOVERY_TTL, encode_svcb(binding))
                for binding in service_bindings(self.target, endpoints))

    def answer(self, question: Question) -> Outcome | None:
        """The outcome for `question`, or None when it is not about `_dns.resolver.arpa`."""
        if question.name != DISCOVERY_NAME or question.rclass != CLASS_IN:
            return None
        if question.rtype == SVCB_TYPE and self.records:
            return Outcome(rcode=Rcode.NOERROR, answer=self.records)
        return Outcome(rcode=Rcode.NOERROR, authority=(_SOA,))  # NODATA (RFC 2308 §2.2)
