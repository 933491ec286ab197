"""The acceptance bars of the peer-scenarios README (§5), measured: `python -m tests.replay.bars`.

Runs every case of each bar against the production resolver (as `pytest tests/replay` does)
and prints, per bar, how many cases pass, fail or are waived. Waived cases count apart;
an xfail mark does not hide a failure here: this is the honest count.
"""

from __future__ import annotations

import sys

from tests.replay.cases import ReplayCase, default_scenario_root, discover_cases
from tests.replay.production import make_resolver
from tests.replay.rpl import parse_scenario_file
from tests.replay.runner import ScenarioFailure, run_scenario

_BAR1_DECKARD = """iter_badraw iter_cname_badauth iter_cname_cache iter_cname_nx iter_cycle
iter_cycle_noh iter_dname_insec iter_domain_sale iter_domain_sale_nschange iter_donotq127
iter_ds_locate_ns iter_ds_locate_ns_nosoa iter_escape_bailiwick iter_hint_lame iter_lame_aaaa
iter_lame_noaa iter_lame_nosoa iter_lame_root iter_lamescrub iter_mod iter_ns_badaa
iter_ns_noglue iter_ns_spoof
iter_pc_a iter_pc_aaaa iter_pcdirect iter_pcname iter_pcnamech iter_pcnamechrec iter_pcttl
iter_reclame_one iter_reclame_two iter_resolve iter_tcbit iter_unexpectedrrtype val_adcopy"""
_BAR1_UNBOUND = """iter_auth_tc iter_class_mixreferral iter_cname_cache iter_cname_nx iter_cycle
iter_cycle_noh iter_dname_yx iter_donotq127 iter_dp_turnsuseless iter_ds_locate_ns
iter_ds_locate_ns_cname iter_ds_locate_ns_nosoa iter_ghost_sub iter_got6only iter_hint_lame
iter_lame_aaaa iter_lamescrub iter_mod iter_ns_spoof iter_pc_a iter_pc_aaaa iter_pcdirect
iter_pcname iter_pcnamech iter_pcnamechrec iter_pcttl iter_ranoaa_lame iter_reclame_one
iter_reclame_two iter_resolve iter_scrub_mx iter_self_glue iter_self_glue_promisc refuse_xfr
trust_cname_chain val_adcopy"""
_BAR2_DECKARD = "iter_minim_a iter_minim_a_nxdomain iter_minim_ns"
_BAR2_UNBOUND = """fetch_glue ghost_glue_a iter_cname_minimise iter_dname_insec iter_domain_sale
iter_domain_sale_nschange iter_ignore_empty iter_lame_noaa iter_resolve_minimised
iter_resolve_minimised_nx iter_scrub_cname_an iter_scrub_dname_insec
iter_scrub_dname_out_of_zone iter_soamin iter_svcb_malformed long_qname ttl_msg"""


def _ids(suite: str, stems: str) -> set[str]:
    return {f"{suite}/{stem}" for stem in stems.split()}


BAR1 = _ids("deckard", _BAR1_DECKARD) | _ids("unbound", _BAR1_UNBOUND)
BAR2_FILES = _ids("deckard", _BAR2_DECKARD) | _ids("unbound", _BAR2_UNBOUND)


def bar_of(case: ReplayCase, *, unbound_qmin_default: bool) -> str | None:
    """Bar 1 runs with qmin off; bar 2 adds qmin (Unbound's own default for its files) and
    the Deckard unset files with qmin on (README §5)."""
    stem = case.case_id.rsplit("-qmin", 1)[0]
    if stem in BAR1 and not case.qmin and not unbound_qmin_default:
        return "bar 1"
    if unbound_qmin_default and (
        stem in BAR2_FILES or (stem in BAR1 and stem.startswith("deckard/") and case.qmin)
    ):
        return "bar 2"
    return None


def _outcome(case: ReplayCase) -> str:
    if case.waiver is not None:
        return "waived"
    try:
        run_scenario(parse_scenario_file(case.path), make_resolver, case.options())
    except ScenarioFailure:
        return "failed"
    return "passed"


def main() -> int:
    root = default_scenario_root()
    tally: dict[str, dict[str, list[str]]] = {}
    for qmin_default in (False, True):
        cases = discover_cases([root / "deckard", root / "unbound"], qmin_default=qmin_default)
        for case in cases:
            bar = bar_of(case, unbound_qmin_default=qmin_default)
            if bar is None:
                continue
            tally.setdefault(bar, {}).setdefault(_outcome(case), []).append(case.case_id)
    for bar in sorted(tally):
        counts = {k: len(v) for k, v in tally[bar].items()}
        total = sum(counts.values())
        judged = total - counts.get("waived", 0)
        share = 100 * counts.get("passed", 0) / judged if judged else 0.0
        print(f"{bar}: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
              f"{counts.get('waived', 0)} waived of {total} runs ({share:.0f}% of those judged)")
        for case_id in sorted(tally[bar].get("failed", [])):
            print(f"  failed: {case_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
