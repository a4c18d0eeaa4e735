"""Recovered families before and after the family rule (audit 45): connected components of the
significant pairs vs :func:`analysis.lineage.families` (a pair joins its models only when they
share at least half of their relatives), on one zoo with a true family column.

Runs :func:`fingerprint.lineage.lineage` twice on the same pairs (the second time with connected
components patched in as the family builder) and prints, per evidence, the pair test's numbers
(unchanged: BH FDP, power) and the family-level ones (families, AMI with the truth, recovered
families that merge true ones, true families split). The zoo's stored lineage result is
rewritten: run it on a copy.

    OMP_NUM_THREADS=1 python scripts/lineage_family_rule.py ZOO --lineage COLUMN [--arch MOD:FN] [--fp F ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import analysis.lineage_tree as lineage_tree
import fingerprint.lineage as flineage
from fingerprint.cli.options import open_for_models


def components(n: int, tests) -> np.ndarray:
    """The old family builder: connected components of every significant pair."""
    r = tests.related
    g = coo_matrix((np.ones(int(r.sum())), (tests.a[r], tests.b[r])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--lineage", required=True, help="model column with the true families")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--fp", action="append", default=[], help="fingerprint for the behavioural evidence (repeatable)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    zoo = open_for_models(a.zoo, False, a.arch)
    out = {}
    for rule in ("components", "shared relatives"):
        saved = flineage.families, lineage_tree.families
        if rule == "components":
            flineage.families = lineage_tree.families = components
        try:
            t0 = time.process_time()
            r = flineage.lineage(zoo, a.fp, lineage_column=a.lineage)
            cpu = time.process_time() - t0
        finally:
            flineage.families, lineage_tree.families = saved
        sizes = sorted((len(f) for f in r["families"]), reverse=True)
        out[rule] = {"cpu_s": cpu, "primary_sizes": sizes, "by_evidence": r["by_evidence"]}
        for ev, s in r["by_evidence"].items():
            print(f"{a.zoo.name:>14} {rule:>16} {ev[:16]:>16}: related {s['n_related']:5d} BH FDP {s['bh_fdp']:.3f} "
                  f"power {s['bh_power']:.3f} | families {s['n_families']:3d} AMI {s['family_ami']:.3f} "
                  f"merged {s['n_merged']:2d} split {s['n_split']:2d} between {s['n_between']:3d}")
        print(f"{'':>14} {rule:>16} exact sizes {sizes[:8]}{' ...' if len(sizes) > 8 else ''}; cpu {cpu:.1f} s")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
