"""Settings: the work limits of one resolution and the resolver's configuration.

Rules: every limit is a named field with its unit in the name and the peer value it
follows (see docs/reliability.md, "Proposed defaults"). Values here are
frozen; the composition root (`resolver.daemon.app`) builds them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resolver.dnssec.anchors import TrustAnchors
from resolver.dnssec.verification_budget import VerificationLimits


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Budgets that bound the work one client query can cause."""

    #: Upstream sends for one client query, sub-lookups for NS addresses included
    #: (Unbound MAX_GLOBAL_QUOTA 200; BIND max-query-count 200).
    max_upstream_queries: int = 200
    #: Sends while resolving one name at one level of dependency (Unbound max-sent-count 32).
    max_sends_per_name: int = 32
    #: Referrals followed for one name (Unbound MAX_REFERRAL_COUNT 130).
    max_referrals: int = 130
    #: Minimised queries while iterating one name (Unbound MAX_MINIMISE_COUNT 10).
    max_minimised_queries: int = 10
    #: CNAME/DNAME restarts (Unbound and BIND max-query-restarts 11).
    max_cname_chain: int = 11
    #: DS queries asked to find the zone cut above data that came without RRSIGs (the
    #: validator's DS walk, RFC 4035 §5.2; as Unbound's MAX_MINIMISE_COUNT 10 bounds
    #: the labels walked one at a time).
    max_cut_search: int = 10
    #: Nesting of NS-address lookups that a lookup may wait on (Unbound target-fetch-policy
    #: "3 2 1 0 0": dependency depth 4).
    max_dependency_depth: int = 4
    #: NS names of one delegation whose addresses we may look up (PowerDNS max-ns-per-resolve 13).
    max_ns_names_per_delegation: int = 13
    #: NS-address lookups that may fail with NXDOMAIN/NODATA before giving up (Unbound
    #: MAX_TARGET_NX 5; the NXNSAttack defence).
    max_failed_ns_lookups: int = 5
    #: Attempts at one server address within one name's resolution, the timeout doubling
    #: each time (Unbound outbound-msg-retry 5; fewer, since a name has several servers).
    max_tries_per_server: int = 4
    #: Attempts at one forwarder (Unbound outbound-msg-retry 5): forwarders are few.
    max_tries_per_forwarder: int = 3
    #: First per-try timeout; it doubles with each try (Unbound's initial RTO is 376 ms).
    first_timeout_s: float = 0.4
    #: Longest single try, so that a slow authority (answering after 2.5 s, say) is still
    #: heard (Unbound's RTT_MAX_TIMEOUT 120 s is for a dead host).
    max_timeout_s: float = 3.0
    #: Records in one upstream reply, all sections together: a reply with more is treated
    #: as malformed (counted against that server, the next one asked). BIND caps one RRset
    #: at 100 records (max-records-per-type, 9.18.28, CVE-2024-1737); ten such RRsets fit.
    #: A 64 KB TCP reply can carry about 4,000 A records.
    max_records_per_reply: int = 1000
    #: Distinct resolutions under way at once (Unbound num-queries-per-thread 1024);
    #: beyond it new questions get SERVFAIL at once, cached answers still flow.
    max_concurrent_resolutions: int = 1024
    #: With the cap reached, a new question replaces the oldest resolution if that one has
    #: run this long (Unbound jostle-timeout 200 ms: about one round trip), so slow or
    #: black-holed zones cannot hold every slot; otherwise the new one gets SERVFAIL.
    jostle_timeout_s: float = 0.2
    #: What a client waits at most: then it gets SERVFAIL (EDE 22), below glibc's 5 s stub
    #: timeout so the stub sees it. The resolution itself may go on, for the cache.
    total_budget_s: float = 4.0
    #: The resolution's own time limit: a slow answer that comes after the client was told
    #: SERVFAIL is still cached for the next client (docs/reliability.md (d), slow authority).
    resolution_budget_s: float = 12.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """Cache bounds and TTL clamps (Unbound option names in comments)."""

    #: RRsets and negative entries held (LRU beyond), when `max_bytes` is None.
    max_entries: int = 100_000
    #: Bytes for the record cache and the reply cache together (resolver.engine.cache_budget
    #: splits them); None bounds each in entries instead.
    max_bytes: int | None = None
    max_ttl_s: int = 86_400  # cache-max-ttl
    min_ttl_s: int = 0  # cache-min-ttl
    max_negative_ttl_s: int = 3_600  # cache-max-negative-ttl
    min_negative_ttl_s: int = 0  # cache-min-negative-ttl
    #: How long a resolution failure is remembered (RFC 9520 §3.2: at least 1 s;
    #: BIND servfail-ttl 1).
    failure_ttl_s: int = 1
    #: Serve expired data when resolution fails or is slow (RFC 8767; BIND stale-answer-enable).
    stale_answer_enable: bool = False
    #: TTL given to stale records in a reply (BIND stale-answer-ttl 30; RFC 8767 §4 suggests 30).
    stale_answer_ttl_s: int = 30
    #: How long past expiry data is kept for serve-stale (BIND max-stale-ttl; RFC 8767 §5: 1-3 d).
    max_stale_ttl_s: int = 86_400
    #: Serve stale data when no answer came within this time; 0 = at once, refreshing in the
    #: background (BIND stale-answer-client-timeout; RFC 8767 §5 suggests 1.8 s).
    stale_answer_client_timeout_ms: int = 1_800
    #: Refresh an entry asked for in the last 10% of its TTL in the background (Unbound prefetch).
    prefetch: bool = False
    #: Rotate the records of address RRsets in answers from the cache (Unbound
    #: rrset-roundrobin, on by default there too): clients spread over a name's addresses.
    rrset_roundrobin: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationSettings:
    """DNSSEC validation (RFC 4033-4035): the trust anchors and the validator's limits."""

    anchors: TrustAnchors
    #: How long a bogus result, and a zone whose keys failed, is remembered (Unbound
    #: val-bogus-ttl 60).
    bogus_ttl_s: int = 60
    #: Other servers of the zone asked after a bogus reply before giving up (Unbound asks
    #: the zone's other servers too; BIND tries each server once).
    max_bogus_retries: int = 2
    #: Longest a zone's validated keys are kept, whatever their TTLs (Unbound key-cache TTL
    #: is the DNSKEY TTL, bounded by cache-max-ttl).
    max_trust_ttl_s: int = 86_400
    #: NSEC3 iterations above which a denial is insecure (RFC 9276 §3.2; Unbound 150).
    nsec3_iterations_limit: int = 150
    #: Answer NXDOMAIN and NODATA from validated NSEC ranges in the cache, without asking
    #: (RFC 8198; Unbound aggressive-nsec, on by default there too).
    aggressive_nsec: bool = True
    #: Names at and below which nothing is validated: negative trust anchors (RFC 7646;
    #: Unbound domain-insecure), for a zone whose signatures are known to be broken.
    insecure_domains: tuple[str, ...] = ()
    #: Signature verifications per RRset, per key tag and per client query (KeyTrap,
    #: CVE-2023-50387; the sources are in resolver.dnssec.verification_budget).
    verification_limits: VerificationLimits = field(default_factory=VerificationLimits)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """Everything a resolution needs to know besides the question and the shared state."""

    limits: Limits = field(default_factory=Limits)
    #: EDNS payload size we advertise upstream (DNS Flag Day 2020).
    edns_udp_size: int = 1232
    #: Never ask 127.0.0.0/8, ::1, 0.0.0.0/8 or :: (Unbound do-not-query-localhost), unless the
    #: configured root hints themselves are loopback (the lab).
    do_not_query_localhost: bool = True
    do_ip4: bool = True
    do_ip6: bool = True
    #: Port of every upstream server (53; the lab may run elsewhere).
    upstream_port: int = 53
    #: Ask for the root NS set before the first lookup (RFC 8109).
    prime_root: bool = True
    #: QNAME minimisation (RFC 9156), relaxed: falls back to the full name when servers
    #: answer a minimised query with NXDOMAIN, REFUSED or SERVFAIL (Unbound's default).
    qname_minimisation: bool = True
    #: Type asked with minimised names: A like Unbound (NS, as Knot asks, is an option).
    qname_minimisation_qtype: int = 1
    #: An answer to an NS question carries the cached addresses of those servers in its
    #: additional section (RFC 1034 §3.7, RFC 1035 §3.3.11), as Unbound's does even with
    #: minimal-responses; off, it carries none, as Knot Resolver's.
    ns_addresses_in_answer: bool = True
    #: Accept only glue inside the zone that gives it (Unbound harden-glue, RFC 2181 §5.4.1).
    harden_glue: bool = True
    #: Randomise the letter case of upstream query names and require it echoed
    #: (Unbound use-caps-for-id, draft-vixie-dnsext-dns0x20); servers that do not echo
    #: it are asked again without.
    use_caps_for_id: bool = False
    #: Send every upstream query over TCP (Unbound tcp-upstream).
    tcp_upstream: bool = False
    #: Our own listen addresses: bare IPs are never asked while iterating, "IP@PORT"
    #: endpoints never at all (a configured upstream may use another port of our IP).
    never_query: frozenset[str] = frozenset()
    #: DNSSEC validation; None turns it off (no DO bit upstream, nothing checked).
    validation: ValidationSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardingSettings:
    """Forward and stub zones as the operator wrote them, in Unbound's notation
    (`ADDR[@PORT][#TLSNAME]`); `resolver.upstream.forwarding` reads them."""

    #: Upstream resolvers for every name (Unbound forward-zone "." forward-addr).
    forward: tuple[str, ...] = ()
    #: The same over DNS over TLS, port 853 by default (forward-tls-upstream: yes).
    forward_tls: tuple[str, ...] = ()
    #: The same over DNS over HTTPS: URLs, `https://HOST[:PORT][/PATH][#ADDR]` (RFC 8484).
    forward_https: tuple[str, ...] = ()
    #: "ZONE=ADDR[@PORT][,ADDR...]": upstream resolvers for one zone, asked with RD=1.
    forward_zones: tuple[str, ...] = ()
    #: "ZONE=ADDR[@PORT][,ADDR...]": authoritative servers for one zone, asked with RD=0.
    stub_zones: tuple[str, ...] = ()
    #: Iterate from the root hints when every upstream of a forward zone fails (forward-first).
    forward_first: bool = False
    #: CA certificates that DNS over TLS and HTTPS upstreams are verified against; None: the
    #: system's.
    tls_ca_file: str | None = None
