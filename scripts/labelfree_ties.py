"""Discrete fingerprints: false "deep" verdicts on null populations whose coordinates have many ties.

    python scripts/labelfree_ties.py [--seeds 10] [--levels 6 3] [--n-null 199]

``disagreement``-like fingerprints are integer counts on few probes: many models share a grid point.
Synthetic nulls (:func:`analysis.synthetic.synthetic_population`, the four kinds of
``scripts/labelfree_nulls.py``, 12 x 4 and 8 x 3), each coordinate cut into ``L`` equal-width integer
levels (or left continuous), 4 fingerprints decided together by :func:`analysis.labelfree.decide`.
For the all-model split's rotation null (measured, not the default) and the plug-in null (the default),
prints the (population, fingerprint) pairs with a deep verdict, the raw all-model p <= 0.05 share,
and the deep verdicts that a Benjamini-Hochberg correction over the deep tests only (groups and
split, the lineage tests left out) would give. docs/results.md, "All-model split: a calibrated null, measured".
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
from scipy.stats import binomtest, false_discovery_control

from analysis import labelfree as lf
from analysis.synthetic import synthetic_population

KINDS = ("null", "null-t", "null-skew", "null-flat")
DESIGNS = ((12, 4), (8, 3))
N_FP = 4


def ci(k: int, n: int) -> str:
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} {k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def deep_only(raw: list, alpha: float) -> int:
    """Deep verdicts as :func:`analysis.labelfree.decide` gives them, with BH over the groups and
    split tests only."""
    pv = [(i, k, p) for i, r in enumerate(raw) for k, p in (("groups", r.p_groups), ("split", r.p_split))
          if p is not None]
    if not pv:
        return 0
    q = {(i, k): a for (i, k, _), a in zip(pv, false_discovery_control([p for *_, p in pv], method="bh"))}
    n = 0
    for i, r in enumerate(raw):
        split = q.get((i, "split"), 1.0) <= alpha and (
            (r.split_rate or 0) >= lf.CROSS_SPLIT_RATE or r.split_min_families is None or r.split_min_families >= 2)
        n += bool(split or q.get((i, "groups"), 1.0) <= alpha)
    return n


def discretise(x: np.ndarray, levels: int) -> np.ndarray:
    """Each column of ``x`` cut into ``levels`` equal-width bins, as integers 0 .. levels - 1."""
    lo, hi = x.min(0), x.max(0)
    return np.floor((x - lo) / (hi - lo + 1e-12) * levels).clip(0, levels - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="populations per design and kind")
    ap.add_argument("--levels", type=int, nargs="*", default=[6, 3], help="integer levels per coordinate")
    ap.add_argument("--n-null", type=int, default=199)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    t0, all_split = time.time(), lf._all_split
    for levels in [None, *args.levels]:
        for null in ("plug-in", "rotation"):
            raw_p: list[float] = []

            def captured(*a, null=null, **kw):
                out = functools.partial(all_split, null=null)(*a, **kw)
                raw_p.append(out[1])
                return out

            lf._all_split = captured
            deep = pairs = deep2 = 0
            try:
                for ki, kind in enumerate(KINDS):
                    for n_fam, m in DESIGNS:
                        for s in range(args.seeds):
                            seed = 33_000 + 1000 * n_fam + 100 * ki + s
                            raw = []
                            for f in range(N_FP):
                                x, fam, _ = synthetic_population(kind, seed * N_FP + f, n_fam, m)
                                raw.append(lf.label_free(x if levels is None else discretise(x, levels), fam,
                                                         n_null=args.n_null, random_state=seed))
                            res = lf.decide(raw, args.alpha)
                            deep, pairs = deep + sum(r.verdict in lf.DEEP_VERDICTS for r in res), pairs + len(res)
                            deep2 += deep_only(raw, args.alpha)
            finally:
                lf._all_split = all_split
            p = np.array(raw_p)
            print(f"levels {levels or 'continuous'} {null:<8}: deep (decide) {ci(deep, pairs)}; deep (BH over deep "
                  f"tests only) {ci(deep2, pairs)}; raw all-model p <= 0.05 {ci(int((p <= 0.05).sum()), len(p))}",
                  flush=True)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
