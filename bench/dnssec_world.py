"""The DNSSEC world compared case by case: ours and a validating Unbound on one NSD.

Signs a root, `test.` and one zone per case with the ldns tools, serves them with NSD on
127.77.23.1, starts Unbound (validator iterator, `ede: yes`) and `resolver serve` with the
same hints and trust anchor, asks both `dig +dnssec` for every case of
`tests.support.dnssec_world.CASES` and prints the table. Needs nsd, unbound, dig and the
ldns tools; every server stops by itself within 10 minutes whatever happens.

    timeout 300 python bench/dnssec_world.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.dnssec_world import SIGNER, describe, running_world, table


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dnssec-world-") as directory, \
            running_world(Path(directory)) as world:
        rows = table(world)
        print(f"signer: {SIGNER}; Unbound and ours on one NSD")
        print(f"{'case':38} {'ours':28} {'unbound':28} agree")
        disagreements = 0
        for case, ours, unbound in rows:
            agree = ours.rcode == unbound.rcode and ours.ad == unbound.ad
            disagreements += not agree
            print(f"{case.name:38} {describe(ours):28} {describe(unbound):28} "
                  f"{'yes' if agree else 'NO'}")
        print(f"{len(rows) - disagreements}/{len(rows)} agree on rcode and AD")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
