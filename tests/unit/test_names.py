"""Domain-name arithmetic on canonical presentation names (RFC 1034 §3.1, RFC 4343)."""

from __future__ import annotations

import pytest

from resolver.dns import names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("WWW.Example.COM", "www.example.com."),
        ("www.example.com.", "www.example.com."),
        ("  host.test  ", "host.test."),
        ("", "."),
        (".", "."),
    ],
)
def test_canonical_lowercases_and_makes_absolute(given: str, expected: str) -> None:
    """Names compare case-insensitively (RFC 4343): canonical is lower case with a final dot."""
    assert names.canonical(given) == expected


def test_canonical_is_idempotent() -> None:
    """Canonicalising a canonical name changes nothing."""
    once = names.canonical("Mail.Hamburger.EDU")
    assert names.canonical(once) == once


def test_labels_lists_leftmost_first_and_root_has_none() -> None:
    """Labels come leftmost first; the root name has no labels."""
    assert names.labels("www.example.com.") == ["www", "example", "com"]
    assert names.labels(".") == []
    assert names.label_count("a.b.c.d.") == 4
    assert names.label_count(".") == 0


@pytest.mark.parametrize(
    ("name", "zone", "expected"),
    [
        ("www.example.com.", "example.com.", True),
        ("example.com.", "example.com.", True),
        ("www.example.com.", ".", True),
        (".", ".", True),
        ("example.com.", "www.example.com.", False),
        ("xexample.com.", "example.com.", False),
        ("example.org.", "example.com.", False),
    ],
)
def test_is_subdomain_respects_label_boundaries(name: str, zone: str, expected: bool) -> None:
    """A name is below a zone only on a label boundary: xexample.com is not under example.com."""
    assert names.is_subdomain(name, zone) is expected


def test_parent_strips_one_label_and_root_is_its_own_parent() -> None:
    """The parent of a name is one label up; the root's parent is the root."""
    assert names.parent("www.example.com.") == "example.com."
    assert names.parent("com.") == "."
    assert names.parent(".") == "."


def test_ancestors_run_from_the_name_to_the_root() -> None:
    """Ancestors list the name itself first and end with the root."""
    assert names.ancestors("www.example.com.") == [
        "www.example.com.",
        "example.com.",
        "com.",
        ".",
    ]
    assert names.ancestors(".") == ["."]


def test_relativize_writes_names_relative_to_the_origin() -> None:
    """Below the origin a name loses the origin; the origin itself is '@'; others stay absolute."""
    assert names.relativize("www.example.com.", "example.com.") == "www"
    assert names.relativize("example.com.", "example.com.") == "@"
    assert names.relativize("www.example.org.", "example.com.") == "www.example.org."
    assert names.relativize("www.example.com.", ".") == "www.example.com."


def test_a_dot_escaped_inside_a_label_does_not_split_it() -> None:
    """RFC 1035 §5.1: "a\\.b.example." has two labels, the first holding a dot."""
    assert names.labels("a\\.b.example.") == ["a\\.b", "example"]
    assert names.label_count("a\\.b.example.") == 2
    assert names.parent("a\\.b.example.") == "example."
    assert names.ancestors("a\\.b.example.") == ["a\\.b.example.", "example.", "."]


def test_a_name_ending_in_an_escaped_dot_is_made_absolute() -> None:
    assert names.canonical("A\\.") == "a\\.."
    assert names.labels(names.canonical("A\\.")) == ["a\\."]


def test_an_escaped_backslash_before_a_dot_leaves_the_dot_a_separator() -> None:
    assert names.labels("a\\\\.b.") == ["a\\\\", "b"]


def test_a_label_holding_a_dot_is_not_a_subdomain_of_its_tail() -> None:
    """"x\\.example." is one label below the root, not a name below "example."."""
    assert not names.is_subdomain("x\\.example.", "example.")
    assert names.is_subdomain("w.x\\.example.", "x\\.example.")
    assert names.is_subdomain("a.b\\.c.example.", "example.")


def test_a_name_within_size_limits_has_labels_of_1_to_63_octets_and_255_octets_in_all() -> None:
    longest_label = "a" * 63
    # 127 one-octet labels: 254 octets of labels plus the root label make the 255 of RFC 1035.
    longest_name = "a." * 127
    assert names.within_size_limits(".")
    assert names.within_size_limits(f"{longest_label}.example.")
    assert names.within_size_limits(longest_name)
    assert not names.within_size_limits(f"{longest_label}a.example.")
    assert not names.within_size_limits("b" + longest_name)
