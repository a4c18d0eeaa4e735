"""The label-free split test on near-discrete disagreement matrices of null populations.

usage: python scripts/labelfree_discrete_nulls.py [--reps 200] [--json]

Near-identical models (the eighth outside audit's convex models trained to convergence) disagree on
a handful of probes, so a ``disagreement`` matrix takes a few distinct values (0-7 of 256 probes
there), which the split test's Gaussian null does not describe. Two null designs of 256 probes,
every model the same rule, only the probes near the decision boundary differing:

- ``flips``: each model flips each of ``boundary`` probes independently with probability ``par``;
- ``shift``: each model's boundary is shifted by ``t ~ N(0, par)`` probes along ``boundary`` probes
  sorted by margin (a one-dimensional continuum, discretised).

Per design: the median number of distinct off-diagonal distances and the share of ``reps``
populations whose split test (199 replicates, the default) has p <= 0.05 and p at its floor (0.005,
where the re-draw of ``METHODS_VERSION`` 13 would fire). docs/results.md, "Near-discrete distances
under the split test's null".
"""

import argparse
import json

import numpy as np

from analysis import labelfree as lf
from analysis.reduce import coordinates

DESIGNS = [("flips", 8, 2, 20, 0.1), ("flips", 6, 2, 10, 0.1), ("shift", 8, 2, 40, 2.0), ("shift", 8, 2, 40, 4.0),
           ("shift", 12, 2, 40, 2.0)]  # (kind, families, members, boundary probes, par)


def predictions(kind: str, n: int, boundary: int, par: float, rng: np.random.Generator) -> np.ndarray:
    """Each model's predicted class (0/1) on 256 probes ``[n, 256]``, all 0 outside the boundary probes."""
    pred = np.zeros((n, 256), int)
    if kind == "flips":
        pred[:, :boundary] = rng.random((n, boundary)) < par
    else:
        margin = np.linspace(-boundary / 2, boundary / 2, boundary)
        pred[:, :boundary] = margin[None, :] < rng.normal(0, par, n)[:, None]
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rng, rows = np.random.default_rng(1), []
    for kind, families, members, boundary, par in DESIGNS:
        ps, distinct = [], []
        for r in range(a.reps):
            pred = predictions(kind, families * members, boundary, par, rng)
            d = (pred[:, None] != pred[None]).mean(-1)
            if d.max() == 0:  # every model the same predictions: no test
                ps.append(1.0)
                continue
            fam = np.repeat(np.arange(families), members).astype(str)
            res = lf.label_free(coordinates(d, True, 10, 0), fam, 199, r)
            ps.append(1.0 if res.p_split is None else res.p_split)
            distinct.append(len(np.unique(d[np.triu_indices(len(d), 1)])))
        p = np.asarray(ps)
        rows.append({"kind": kind, "families": families, "members": members, "boundary_probes": boundary, "par": par,
                     "reps": a.reps, "distinct_median": float(np.median(distinct)),
                     "p_le_05": float((p <= 0.05).mean()), "p_at_floor": float((p <= 0.005 + 1e-9).mean())})
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        print(f"{r['kind']} {r['families']} x {r['members']}, {r['boundary_probes']} boundary probes, {r['par']}: "
              f"{r['distinct_median']:.0f} distinct distances; split p <= 0.05 in {r['p_le_05']:.1%}, at its floor in "
              f"{r['p_at_floor']:.1%} of {r['reps']}")


if __name__ == "__main__":
    main()
