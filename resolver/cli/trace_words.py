"""How the trace words things: terminal colours, DNSSEC algorithm, digest and extended-error
names (IANA registry names, RFC 8914), one link of the chain of trust, record fields.
"""

from __future__ import annotations

import click

from resolver.dns.extended_errors import ExtendedError
from resolver.dnssec.keys import DigestType
from resolver.dnssec.signatures import Algorithm
from resolver.engine.events import ChainStepChecked


def paint(text: str, styled: bool, **style: object) -> str:
    """`text` with click's terminal style when `styled`, unchanged otherwise."""
    return click.style(text, **style) if styled else text  # type: ignore[arg-type]


def style_rcode(rcode: str, styled: bool) -> str:
    """An rcode in green (NOERROR), yellow (NXDOMAIN) or red (anything else)."""
    colour = {"NOERROR": "green", "NXDOMAIN": "yellow"}.get(rcode, "red")
    return paint(rcode, styled, fg=colour, bold=True)


def record_type(record_text: str) -> str:
    """The TYPE field of a record in `Record.to_text` form (tab-separated)."""
    parts = record_text.split("\t")
    return parts[3] if len(parts) > 4 else ""


def record_rdata(record_text: str) -> str:
    """The RDATA of a record in `Record.to_text` form."""
    parts = record_text.split("\t")
    return parts[4] if len(parts) > 4 else record_text



def _algorithm_text(number: int | None) -> str:
    """"ECDSAP256SHA256 (13)" for a DNSSEC algorithm number (IANA registry names)."""
    if number is None:
        return "no algorithm"
    try:
        return f"{Algorithm(number).name} ({number})"
    except ValueError:
        return f"algorithm {number} (unsupported)"


def _digest_text(number: int | None) -> str:
    if number is None:
        return "no digest"
    try:
        return {1: "SHA-1", 2: "SHA-256", 4: "SHA-384"}[DigestType(number)]
    except (ValueError, KeyError):
        return f"digest type {number}"


_ACRONYMS = frozenset({"DNSSEC", "DNSKEY", "RRSIGS", "NSEC", "NSEC3", "DS"})


def ede_text(code: int | None) -> str:
    if code is None:
        return ""
    try:
        words = ExtendedError(code).name.split("_")
        name = " ".join(w if w in _ACRONYMS else w.capitalize() for w in words)
        name = name.replace("RRSIGS", "RRSIGs")
    except ValueError:
        name = "unknown"
    return f" EDE {code} ({name})"



def chain_step_text(event: ChainStepChecked, width: int = 0) -> str:
    """One link of the chain in words: which DS named which key of which zone."""
    source = "the trust anchor's" if event.zone == "." else "the parent's"
    if event.ds_key_tag is None:
        link = "no DS to rely on"
    else:
        link = (f"{source} DS {event.ds_key_tag} ({_digest_text(event.ds_digest_type)}) -> "
                f"DNSKEY {event.dnskey_tag if event.dnskey_tag is not None else '?'} "
                f"{_algorithm_text(event.algorithm)}")
    return f"{event.zone:<{width}}  {link}"
