"""How often :func:`analysis.lineage_merges.two_in_one` flags a recovered family (docs/lineage.md, "Two families in one").

Three measurements, printed one line each:

- random families: every pair of ``k`` models related with probability ``power`` (a family whose test misses pairs
  at random): the share flagged (false alarms);
- two families of ``k`` joined: pairs within each related with probability 0.95, pairs between with probability
  ``share``: the share flagged (power);
- ``scripts/bench_lineage.py``'s synthetic population (``--models``, families of 6) at a few drifts: the exact test's
  recovered families, how many merge true families, how many are flagged and whether the cut parts true families.

    OMP_NUM_THREADS=1 python scripts/lineage_two_in_one.py [--draws 300] [--models 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.lineage import all_pairs, families, weight_test
from analysis.lineage_merges import two_in_one


def flagged(p: np.ndarray, draws: int, rng: np.random.Generator) -> float:
    """The share of ``draws`` graphs (pair ``(i, j)`` related with probability ``p [n, n]``) flagged as one family."""
    a, b = np.triu_indices(len(p), 1)
    hits = sum(bool(two_in_one(np.zeros(len(p), int), a, b, rng.random(len(a)) < p[a, b], len(p), seed=t))
               for t in range(draws))
    return hits / draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--drifts", type=float, nargs="+", default=[0.3, 0.5, 0.6])
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    for k in (4, 6, 8, 12, 24):
        rates = [flagged(np.full((k, k), pw), a.draws, rng) for pw in (0.5, 0.75, 0.9)]
        print(f"random family of {k}, pairs found at 0.5 / 0.75 / 0.9: flagged {' / '.join(f'{r:.3f}' for r in rates)}")
    for k in (3, 4, 6, 12):
        rates = []
        for share in (0.15, 0.25, 0.4):
            p = np.full((2 * k, 2 * k), share)
            p[:k, :k] = p[k:, k:] = 0.95
            rates.append(flagged(p, a.draws, rng))
        print(f"two families of {k} joined by 0.15 / 0.25 / 0.4 of their pairs: flagged {' / '.join(f'{r:.3f}' for r in rates)}")
    from bench_lineage import population  # scripts/ on the path when run as a script

    for drift in a.drifts:
        params, groups, fam = population(a.models, 12, 16, 6, drift)
        t = weight_test(params, groups, all_pairs(a.models, None, 0), 0.05, 9999, 0)[0]
        rec = families(a.models, t)
        start = time.perf_counter()
        out = two_in_one(rec, t.a, t.b, t.related, a.models)
        seconds = time.perf_counter() - start
        merged = sum(len(set(fam[rec == f])) > 1 for f in np.unique(rec))
        apart = sum(set(fam[o["parts"][0]]).isdisjoint(fam[o["parts"][1]]) for o in out)
        same = fam[t.a] == fam[t.b]
        print(f"bench_lineage population, {a.models} models, drift {drift}: power {t.related[same].mean():.2f}, "
              f"{int(t.related[~same].sum())} false pairs, {len(np.unique(rec))} families (true {fam.max() + 1}), "
              f"{merged} merge true ones, {len(out)} flagged ({apart} cut between true families), {seconds:.2f} s")


if __name__ == "__main__":
    main()
