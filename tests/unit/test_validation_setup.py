"""When `resolver serve` validates DNSSEC: the option, the file, the kind of upstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.daemon.config import ServeConfig
from resolver.daemon.validation_setup import TrustAnchorError, decide, with_validation
from resolver.dnssec.anchors import ROOT_ANCHORS
from resolver.engine.delegation import parse_root_hints
from resolver.engine.settings import ForwardingSettings

REAL_HINTS = parse_root_hints(". 3600000 NS a.root-servers.net.\n"
                              "a.root-servers.net. 3600000 A 198.41.0.4")
LAB_HINTS = parse_root_hints(". 3600000 NS a.root.lab.\na.root.lab. 3600000 A 127.0.0.53")
ANCHOR = ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"


def test_validation_is_on_with_the_built_in_root_anchor_for_real_root_hints() -> None:
    settings, why = decide(ServeConfig(), REAL_HINTS)
    assert settings is not None and settings.anchors == ROOT_ANCHORS
    assert "built-in" in why


def test_validation_is_off_for_lab_root_hints_without_a_trust_anchor_file() -> None:
    settings, why = decide(ServeConfig(), LAB_HINTS)
    assert settings is None and "loopback" in why


def test_a_trust_anchor_file_turns_validation_on_in_the_lab(tmp_path: Path) -> None:
    path = tmp_path / "anchor.ds"
    path.write_text(ANCHOR)
    settings, _ = decide(ServeConfig(trust_anchor_file=str(path)), LAB_HINTS)
    assert settings is not None and [ds.key_tag for ds in settings.anchors.ds] == [20326]


def test_no_dnssec_turns_validation_off_even_with_real_hints() -> None:
    assert decide(ServeConfig(dnssec=False), REAL_HINTS)[0] is None


def test_forwarders_on_loopback_count_as_a_lab() -> None:
    config = ServeConfig(forwarding=ForwardingSettings(forward=("127.0.0.1@5353",)))
    assert decide(config, REAL_HINTS)[0] is None


def test_unreadable_trust_anchor_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.ds"
    path.write_text(". IN A 192.0.2.1\n")
    with pytest.raises(TrustAnchorError, match=r"broken\.ds"):
        with_validation(ServeConfig(trust_anchor_file=str(path)), LAB_HINTS)
