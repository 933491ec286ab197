"""Local data: names answered by the resolver itself, never sent upstream (Unbound's local-zone).

Rules:
- Built-in zones, on unless a configured zone of the same name replaces them (type `nodefault`
  just removes one): `localhost.` (RFC 6761 §6.3: A 127.0.0.1, AAAA ::1, for every name below
  it too), the loopback reverse zones with `PTR localhost.`, `invalid.` (RFC 6761 §6.4),
  `onion.` (RFC 7686 §2), `home.arpa.` (RFC 8375), `resolver.arpa.` (RFC 9462),
  `service.arpa.` (RFC 9665) and the reverse zones of private, link-local and documentation
  space that RFC 6303 §4 and RFC 7793 say a resolver answers itself. Each has the RFC 6303 §3
  SOA and NS at its apex. `test.` is not among them: it is the lab's top-level domain.
- The most specific zone holding the question's name decides, by its type (Unbound's names):
  static, transparent, typetransparent, redirect, refuse, deny, always_nxdomain,
  always_refuse, always_null. Names with local data outside every zone get a transparent
  zone of their own, as in Unbound.
- Local CNAMEs are answered as they are, not followed. NXDOMAIN and NODATA carry the zone's
  SOA (RFC 2308 §3) with its TTL capped at the SOA minimum.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from resolver.dns import names
from resolver.dns.wire import CLASS_IN, Question, Rcode, Record, RRType, parse_records, type_name
from resolver.dns.zone_lines import record_problem
from resolver.engine.events import Outcome
from resolver.server.acl import IPNetwork, parse_network
from resolver.server.rule_text import read_keyword, read_two_words

#: TTL of local data written without one (Unbound's default for local-data).
DEFAULT_TTL = 3600
_BUILTIN_TTL = 10800  # RFC 6303 §3
_NULL_ADDRESS = {int(RRType.A): "0.0.0.0", int(RRType.AAAA): "::"}


class ZoneType(enum.Enum):
    """How a local zone answers (Unbound local-zone types, same spelling)."""

    STATIC = "static"  #: local data, else NXDOMAIN/NODATA with the zone's SOA
    TRANSPARENT = "transparent"  #: local data for names that have some, else resolve
    TYPETRANSPARENT = "typetransparent"  #: local data for name and type, else resolve
    REDIRECT = "redirect"  #: every name below answers with the apex's data
    REFUSE = "refuse"  #: local data, else REFUSED
    DENY = "deny"  #: local data, else no reply at all
    ALWAYS_NXDOMAIN = "always_nxdomain"  #: NXDOMAIN, whatever the data
    ALWAYS_REFUSE = "always_refuse"  #: REFUSED, whatever the data
    ALWAYS_NULL = "always_null"  #: A 0.0.0.0 / AAAA ::, NODATA for other types (blocklists)
    NODEFAULT = "nodefault"  #: remove the built-in zone of this name


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneSpec:
    """One configured zone: 'example.com. static'."""

    name: str
    type: ZoneType

    @classmethod
    def parse(cls, text: str) -> ZoneSpec:
        name, word = read_two_words(text, "'NAME TYPE' (for example 'ads.example. refuse')")
        kind = read_keyword(ZoneType, word, f"unknown local-zone type {word!r}")
        return cls(name=check_name(name), type=kind)


def check_name(text: str) -> str:
    """The canonical form of a domain name, or ValueError naming what is wrong with it."""
    name = names.canonical(text.strip('"'))
    if name != names.ROOT:
        for label in names.labels(name):
            if not 0 < len(label) <= names.MAX_LABEL_OCTETS:
                raise ValueError(f"{text!r} is not a valid domain name (empty or long label)")
    if len(name) >= names.MAX_NAME_OCTETS:
        raise ValueError(f"{text!r} is longer than 255 octets")
    if not name.isascii() or any(c.isspace() for c in name):
        raise ValueError(f"{text!r} is not a valid domain name")
    return name


def parse_local_data(text: str, *, ttl: int = DEFAULT_TTL) -> Record:
    """One record as Unbound's local-data writes it: 'www.example. A 192.0.2.1' (TTL 3600)."""
    try:
        records = parse_records(f"$TTL {ttl}\n{text.strip()}")
    except ValueError:
        records = []
    if len(records) != 1:
        problem = record_problem(text.strip()) if len(text.strip().splitlines()) == 1 else None
        raise ValueError(f"cannot read local-data {text!r}: "
                         + (problem or "expected 'NAME [TTL] [IN] TYPE DATA'"))
    record = records[0]
    if record.rclass != CLASS_IN:
        raise ValueError(f"local-data {text!r} is not class IN")
    check_name(record.name)
    return record


@dataclass(frozen=True, slots=True, kw_only=True)
class HostsFile:
    """Records read from a hosts file and the lines that were skipped."""

    records: tuple[Record, ...]
    skipped: tuple[str, ...] = ()


def read_hosts_file(path: Path, *, ttl: int = DEFAULT_TTL) -> HostsFile:
    """A and AAAA for every name on each line, and PTR for the line's first name (like dnsmasq).

    OSError when the file cannot be read; unreadable lines are skipped and reported.
    """
    records: list[Record] = []
    skipped: list[str] = []
    named: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        try:
            address = ipaddress.ip_address(line[0].split("%", 1)[0])
            host_names = [check_name(n) for n in line[1:]]
        except ValueError as exc:
            skipped.append(f"{path}:{number}: {exc}")
            continue
        if not host_names:
            skipped.append(f"{path}:{number}: an address without a name")
            continue
        rtype = "A" if address.version == 4 else "AAAA"
        lines = [f"{name} {ttl} IN {rtype} {address}" for name in host_names]
        if address not in named:  # the first line naming an address gives its PTR
            named.add(address)
            lines.append(f"{address.reverse_pointer}. {ttl} IN PTR {host_names[0]}")
        records.extend(parse_records("\n".join(lines)))
    return HostsFile(records=tuple(records), skipped=tuple(skipped))


def _builtin_zones() -> dict[str, tuple[ZoneType, tuple[str, ...]]]:
    """Unbound's default local zones, `test.` excepted (the lab lives there)."""
    zones: dict[str, tuple[ZoneType, tuple[str, ...]]] = {}
    loopback6 = ipaddress.ip_address("::1").reverse_pointer + "."
    unspecified6 = ipaddress.ip_address("::").reverse_pointer + "."
    zones["localhost."] = (ZoneType.REDIRECT, ("localhost. A 127.0.0.1", "localhost. AAAA ::1"))
    zones["127.in-addr.arpa."] = (ZoneType.STATIC, ("1.0.0.127.in-addr.arpa. PTR localhost.",))
    zones[loopback6] = (ZoneType.STATIC, (f"{loopback6} PTR localhost.",))
    static = [
        "invalid.", "onion.", "home.arpa.", "resolver.arpa.", "service.arpa.",
        # RFC 6303 §4.1: RFC 1918 space.
        "10.in-addr.arpa.", *(f"{n}.172.in-addr.arpa." for n in range(16, 32)),
        "168.192.in-addr.arpa.",
        # RFC 7793: shared address space 100.64.0.0/10.
        *(f"{n}.100.in-addr.arpa." for n in range(64, 128)),
        # RFC 6303 §4.2: "this" network, link local, documentation, broadcast.
        "0.in-addr.arpa.", "254.169.in-addr.arpa.", "2.0.192.in-addr.arpa.",
        "100.51.198.in-addr.arpa.", "113.0.203.in-addr.arpa.", "255.255.255.255.in-addr.arpa.",
        # RFC 6303 §4.3-4.6: ::, ULA, link local, documentation.
        unspecified6, "d.f.ip6.arpa.", "8.e.f.ip6.arpa.", "9.e.f.ip6.arpa.", "a.e.f.ip6.arpa.",
        "b.e.f.ip6.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa.",
    ]
    for zone in static:
        zones[zone] = (ZoneType.STATIC, ())
    return {
        zone: (kind, (f"{zone} SOA {zone} nobody.invalid. 1 3600 1200 604800 10800",
                      f"{zone} NS {zone}", *data))
        for zone, (kind, data) in zones.items()
    }


#: Names of the built-in zones, for documentation and `check-config`.
BUILTIN_ZONES: tuple[str, ...] = tuple(_builtin_zones())


@dataclass(slots=True)
class _Zone:
    name: str
    type: ZoneType
    builtin: bool
    soa: Record | None = None
    #: {owner: {type: records}} for every name in the zone with data.
    data: dict[str, dict[int, list[Record]]] = field(default_factory=dict)
    #: Owners and the empty non-terminals above them: names that exist (RFC 8020).
    nodes: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalAnswer:
    """A question answered locally: `outcome` None means send no reply (type deny)."""

    zone: str
    type: ZoneType
    outcome: Outcome | None


class LocalZones:
    """The local zones and their data; `answer` is the only call on the query path."""

    def __init__(
        self,
        zones: Iterable[ZoneSpec] = (),
        data: Iterable[Record] = (),
        *,
        builtin: bool = True,
    ) -> None:
        self._zones: dict[str, _Zone] = {}
        defaults = _builtin_zones() if builtin else {}
        configured = list(zones)
        replaced = {spec.name for spec in configured}
        for name, (kind, texts) in defaults.items():
            if name in replaced:
                continue
            zone = self._zones[name] = _Zone(name=name, type=kind, builtin=True)
            for text in texts:
                self._add(zone, parse_local_data(text, ttl=_BUILTIN_TTL))
        for spec in configured:
            if spec.type is not ZoneType.NODEFAULT:
                self._zones[spec.name] = _Zone(name=spec.name, type=spec.type, builtin=False)
        for record in data:
            found = self._zone_for(record.name)
            if found is None:  # Unbound: data outside every zone gets a transparent zone
                found = self._zones[record.name] = _Zone(
                    name=record.name, type=ZoneType.TRANSPARENT, builtin=False)
            self._add(found, record)

    @classmethod
    def from_settings(
        cls, zones: Iterable[str], data: Iterable[str], hosts_files: Iterable[str]
    ) -> LocalZones:
        """Build from configuration text; ValueError/OSError for bad entries or unreadable files."""
        records = [parse_local_data(text) for text in data]
        for path in hosts_files:
            records.extend(read_hosts_file(Path(path)).records)
        return cls([ZoneSpec.parse(text) for text in zones], records)

    def _add(self, zone: _Zone, record: Record) -> None:
        if record.rtype == RRType.SOA and record.name == zone.name:
            zone.soa = record
        rrset = zone.data.setdefault(record.name, {}).setdefault(record.rtype, [])
        if all(r.rdata_key != record.rdata_key for r in rrset):
            # One TTL per RRset (RFC 2181 §5.2): the first record's.
            rrset.append(record.with_ttl(rrset[0].ttl) if rrset else record)
        name = record.name
        while names.is_subdomain(name, zone.name):
            zone.nodes.add(name)
            if name == zone.name:
                break
            name = names.parent(name)

    def _zone_for(self, qname: str) -> _Zone | None:
        for name in names.ancestors(qname):
            zone = self._zones.get(name)
            if zone is not None:
                return zone
        return None

    @property
    def zone_count(self) -> int:
        return len(self._zones)

    @property
    def builtin_count(self) -> int:
        return sum(zone.builtin for zone in self._zones.values())

    @property
    def record_count(self) -> int:
        return sum(len(rrset) for zone in self._zones.values() for by_type in zone.data.values()
                   for rrset in by_type.values())

    def describe(self) -> list[str]:
        """One line per configured (not built-in) zone, for `check-config`."""
        return [f"{zone.name} {zone.type.value}" for zone in self._zones.values()
                if not zone.builtin]

    def answer(self, question: Question) -> LocalAnswer | None:
        """The local answer to `question`, or None when it is for the resolver to resolve."""
        zone = self._zone_for(question.name)
        if zone is None:
            return None
        outcome = self._outcome(zone, question)
        if isinstance(outcome, _Resolve):
            return None
        return LocalAnswer(zone=zone.name, type=zone.type, outcome=outcome)

    def _outcome(self, zone: _Zone, question: Question) -> Outcome | _Resolve | None:
        kind, qname = zone.type, question.name
        if kind is ZoneType.ALWAYS_NXDOMAIN:
            return self._negative(zone, Rcode.NXDOMAIN)
        if kind is ZoneType.ALWAYS_REFUSE:
            return Outcome(rcode=Rcode.REFUSED)
        if kind is ZoneType.ALWAYS_NULL:
            null = _NULL_ADDRESS.get(question.rtype)
            if null is None:
                return self._negative(zone, Rcode.NOERROR)
            rr = parse_local_data(f"{qname} {type_name(question.rtype)} {null}")
            return Outcome(rcode=Rcode.NOERROR, answer=(rr,))
        if kind is ZoneType.REDIRECT:
            found = self._data(zone, zone.name, question.rtype)
            if found:
                return Outcome(rcode=Rcode.NOERROR,
                               answer=tuple(rr.with_name(qname) for rr in found))
            return self._negative(zone, Rcode.NOERROR)
        found = self._data(zone, qname, question.rtype)
        if found:
            return Outcome(rcode=Rcode.NOERROR, answer=tuple(found))
        exists = qname in zone.nodes
        if kind is ZoneType.STATIC:
            return self._negative(zone, Rcode.NOERROR if exists else Rcode.NXDOMAIN)
        if kind is ZoneType.TYPETRANSPARENT:
            return _RESOLVE
        if qname in zone.data:  # the name has data, not of this type: NODATA
            return self._negative(zone, Rcode.NOERROR)
        if kind is ZoneType.TRANSPARENT:
            return _RESOLVE
        if kind is ZoneType.REFUSE:
            return Outcome(rcode=Rcode.REFUSED)
        return None  # deny: no reply

    @staticmethod
    def _data(zone: _Zone, owner: str, rtype: int) -> list[Record]:
        by_type = zone.data.get(owner)
        if not by_type:
            return []
        return by_type.get(rtype) or by_type.get(RRType.CNAME) or []

    @staticmethod
    def _negative(zone: _Zone, rcode: Rcode) -> Outcome:
        authority: tuple[Record, ...] = ()
        if zone.soa is not None:
            authority = (zone.soa.with_ttl(min(zone.soa.ttl, zone.soa.soa_minimum)),)
        return Outcome(rcode=rcode, authority=authority)


class _Resolve:
    """Marker: the zone lets this question through to the resolver."""


_RESOLVE = _Resolve()


@dataclass(frozen=True, slots=True, kw_only=True)
class RebindingGuard:
    """DNS-rebinding protection (Unbound private-address / private-domain).

    A and AAAA records whose address lies in a `private` block are removed from answers,
    unless their owner name is at or below one of `allowed_domains`. A public name that
    suddenly points into the local network is how a web page reaches a home router.
    """

    private: tuple[IPNetwork, ...]
    allowed_domains: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, private: Iterable[str], domains: Iterable[str]) -> RebindingGuard | None:
        blocks = tuple(parse_network(text) for text in private)
        if not blocks:
            return None
        return cls(private=blocks, allowed_domains=tuple(check_name(d) for d in domains))

    def filter(self, outcome: Outcome) -> tuple[Outcome, int]:
        """The outcome without private addresses for public names, and how many were removed."""
        kept = tuple(rr for rr in outcome.answer if not self._hides(rr))
        removed = len(outcome.answer) - len(kept)
        if not removed:
            return outcome, 0
        return replace(outcome, answer=kept), removed

    def _hides(self, record: Record) -> bool:
        if record.rtype not in (RRType.A, RRType.AAAA):
            return False
        try:
            address = ipaddress.ip_address(record.address)
        except ValueError:
            return False
        if not any(address.version == net.version and address in net for net in self.private):
            return False
        return not any(names.is_subdomain(record.name, d) for d in self.allowed_domains)
