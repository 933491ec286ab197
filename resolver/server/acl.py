"""Access control: which clients may have their queries resolved (Unbound's access-control).

Rules:
- A rule is "CIDR ACTION" with ACTION one of `allow` (resolve), `refuse` (answer REFUSED) and
  `deny` (drop without a reply). The most specific block holding the client's address wins;
  for the same block, the rule given last wins.
- Built in, beneath every configured rule: 127.0.0.0/8 and ::1 allow, everything else refuse,
  so that a resolver started with no rules is never an open resolver (RFC 5358 §4).
- An IPv4-mapped IPv6 source (::ffff:a.b.c.d, from a dual-stack socket) is judged as the IPv4
  address it carries.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from resolver.server.rule_text import read_keyword, read_two_words

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AclAction(enum.Enum):
    """What happens to a query from a matching client."""

    ALLOW = "allow"  #: resolve it
    #: resolve it, and answer queries with RD=0 from the cache alone (Unbound allow_snoop)
    ALLOW_SNOOP = "allow_snoop"
    REFUSE = "refuse"  #: reply REFUSED (RFC 1035 §4.1.1), cheap and polite
    DENY = "deny"  #: no reply at all; the client times out


@dataclass(frozen=True, slots=True, kw_only=True)
class AclRule:
    network: IPNetwork
    action: AclAction

    @classmethod
    def parse(cls, text: str) -> AclRule:
        """'10.0.0.0/8 allow', '::1 refuse', '192.0.2.1/32 deny'; ValueError says what is wrong."""
        block, word = read_two_words(text, "'CIDR ACTION' (for example '10.0.0.0/8 allow')")
        action = read_keyword(AclAction, word, f"unknown action {word!r} in {text!r}")
        return cls(network=parse_network(block), action=action)

    def __str__(self) -> str:
        return f"{self.network} {self.action.value}"


def parse_network(text: str) -> IPNetwork:
    """An address or CIDR block; host bits must be zero ('10.1.0.0/8' is a mistake, say so)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise ValueError(f"{text!r} has host bits set (did you mean "
                             f"{ipaddress.ip_network(text.strip(), strict=False)}?)") from None
        raise ValueError(f"{text!r} is not an IP address or CIDR block") from None


#: Unbound's default: only the host itself may recurse.
DEFAULT_RULES: tuple[AclRule, ...] = (
    AclRule(network=ipaddress.ip_network("0.0.0.0/0"), action=AclAction.REFUSE),
    AclRule(network=ipaddress.ip_network("::/0"), action=AclAction.REFUSE),
    AclRule(network=ipaddress.ip_network("127.0.0.0/8"), action=AclAction.ALLOW),
    AclRule(network=ipaddress.ip_network("::1/128"), action=AclAction.ALLOW),
)


class AccessControl:
    """Longest-prefix match over the rules, per address family."""

    def __init__(self, rules: Iterable[AclRule] = (), *, defaults: bool = True) -> None:
        self.rules: tuple[AclRule, ...] = (*(DEFAULT_RULES if defaults else ()), *rules)
        # {version: {prefix length: {network as int: action}}}, probed longest prefix first.
        table: dict[int, dict[int, dict[int, AclAction]]] = {4: {}, 6: {}}
        for rule in self.rules:
            by_length = table[rule.network.version].setdefault(rule.network.prefixlen, {})
            by_length[int(rule.network.network_address)] = rule.action
        self._tables = {
            version: sorted(
                ((length, _mask(version, length), entries) for length, entries in lengths.items()),
                key=lambda item: -item[0],
            )
            for version, lengths in table.items()
        }
        self._memo: dict[str, AclAction] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> AccessControl:
        return cls(AclRule.parse(text) for text in texts)

    def action_for(self, ip: str) -> AclAction:
        """The action for a client address; anything unreadable is refused."""
        action = self._memo.get(ip)
        if action is None:
            action = self._lookup(ip)
            if len(self._memo) >= 4096:  # bounded: a spoofed-source flood must not grow it
                self._memo.clear()
            self._memo[ip] = action
        return action

    def _lookup(self, ip: str) -> AclAction:
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone index
        except ValueError:
            return AclAction.REFUSE
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        value = int(address)
        for _length, mask, entries in self._tables[address.version]:
            action = entries.get(value & mask)
            if action is not None:
                return action
        return AclAction.REFUSE  # only reachable with defaults=False and no covering rule


def _mask(version: int, length: int) -> int:
    bits = 32 if version == 4 else 128
    return ((1 << length) - 1) << (bits - length) if length else 0
