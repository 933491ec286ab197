"""Trust anchors: the built-in root anchors and Unbound-style trust-anchor files."""

from __future__ import annotations

import pytest

from resolver.dns.wire import RRType
from resolver.dnssec.anchors import ROOT_ANCHORS, AnchorFileError, parse_trust_anchors
from resolver.dnssec.chain import walk_chain
from resolver.dnssec.keys import DigestType
from tests.support.signed_zones import NOW, PARENT_ZONE, cached_zone, evidence


def test_root_anchors_are_ksk_2017_and_ksk_2024_as_sha256_ds() -> None:
    assert sorted(ds.key_tag for ds in ROOT_ANCHORS.ds) == [20326, 38696]
    assert all(ds.owner == "." and ds.algorithm == 8 and ds.digest_type == DigestType.SHA256
               for ds in ROOT_ANCHORS.ds)
    by_tag = {ds.key_tag: ds.digest.hex() for ds in ROOT_ANCHORS.ds}
    assert by_tag[20326].startswith("e06d44b80b8f1d39")
    assert by_tag[38696].startswith("683d2d0acb8c9b71")
    assert ROOT_ANCHORS.closest_to("www.example.com.") == "."


def test_file_of_ds_and_dnskey_lines_with_comments_and_parentheses() -> None:
    text = """\
; trust anchors for the lab
$ORIGIN example.
@ 3600 IN DS 12345 13 2 (
        16C122C73CB7D4F0491354C610178E47
        D4CD96B0FAA22149F7B511B6E425E972 ) ; SHA-256
sub IN DNSKEY 257 3 15 wxpSn7+tsrXbb9H999zw7XxV/uj53Ojr/fahSFk0oGQ= ;{id = 6470 (ksk)}
"""
    anchors = parse_trust_anchors(text)
    (ds,) = anchors.ds
    assert (ds.owner, ds.key_tag, ds.algorithm, ds.digest_type) == ("example.", 12345, 13, 2)
    assert ds.digest.hex().startswith("16c122c7")
    (key,) = anchors.dnskeys
    assert (key.owner, key.algorithm, key.key_tag) == ("sub.example.", 15, 6470)
    assert anchors.zones == {"example.", "sub.example."}
    assert anchors.closest_to("a.sub.example.") == "sub.example."


@pytest.mark.parametrize(("text", "message"), [
    ("example. IN A 192.0.2.1\n", "line 1: a trust anchor is a DS or DNSKEY record"),
    ("; c\n\nexample. IN DS 1 8 2 zz\n", "line 3: not a record"),
    ("example. IN DS 1 8 2 (\n 00\n", "line 1: '(' is never closed"),
    ("example. IN DS 1 8 2 00 )\n", "line 1: ')' without '('"),
    ("relative IN DS 1 8 2 00\n", "line 1: relative name relative without $ORIGIN"),
    ("$INCLUDE other\n", "line 1: unknown directive $INCLUDE"),
    ("; nothing\n", "line 1: no DS or DNSKEY record"),
    ("example. IN DNSKEY 257 3\n", "line 1:"),
])
def test_bad_anchor_file_names_the_line(text: str, message: str) -> None:
    with pytest.raises(AnchorFileError) as raised:
        parse_trust_anchors(text)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_anchor_file_from_ldns_key_files_starts_a_secure_chain(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    parent = cached_zone(tmp_path_factory, "test.", PARENT_ZONE, "ECDSAP256SHA256")
    for text in (parent.ds_text, parent.key_text):
        anchors = parse_trust_anchors(text)
        chain = walk_chain(anchors.ds_for("test."), [evidence(parent)], NOW,
                           anchor_keys=anchors.dnskeys_for("test."))
        assert chain.verdict.is_secure, chain.verdict
        assert len(chain.trusted_keys) == len(parent.rrset("test.", RRType.DNSKEY))
