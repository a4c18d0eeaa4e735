"""Benchmark: the family rule of `fingerprint lineage` (:func:`analysis.lineage.families_of`) on
synthetic significant-pair graphs: ``n`` models in cliques of ``--family-size``, plus ``n / 10``
false pairs between random models (audit 45's 240-model population had 21 false pairs, about
``n / 11``). Prints CPU seconds and the recovered families against the true ones, for each
``--models``. Connected components of the same pairs are printed beside it, for the number of
families they would give.

    OMP_NUM_THREADS=1 python scripts/bench_family_rule.py [--models 1000 30000 100000] [--family-size 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from analysis.lineage import families_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, nargs="+", default=[1000, 30000, 100000])
    ap.add_argument("--family-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    s = a.family_size
    for n in a.models:
        n -= n % s
        i, j = np.triu_indices(s, 1)
        start = np.arange(0, n, s)[:, None]
        fa, fb = rng.integers(0, n, n // 10), rng.integers(0, n, n // 10)
        keep = fa // s != fb // s
        x, y = np.r_[(i + start).ravel(), fa[keep]], np.r_[(j + start).ravel(), fb[keep]]
        t = time.process_time()
        fam = families_of(n, x, y)
        cpu = time.process_time() - t
        cc = connected_components(coo_matrix((np.ones(len(x)), (x, y)), shape=(n, n)), directed=False)[1]
        right = len(np.unique(fam)) == n // s and all(len(np.unique(fam[k:k + s])) == 1 for k in range(0, n, s))
        print(f"{n:>7} models, {len(x):>8} significant pairs ({int(keep.sum())} false): {cpu:.3f} s CPU; "
              f"{len(np.unique(fam))} families (true {n // s}, exact: {right}); connected components {len(np.unique(cc))}")


if __name__ == "__main__":
    main()
