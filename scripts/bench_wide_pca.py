"""Time the PCA of a wide fingerprint (a population's flattened weights) two ways, side by side.

usage: python scripts/bench_wide_pca.py [--models 32] [--features 1000000] [--repeats 3]

``[models, features]`` float32 values (family effects, member noise, a planted split): the
scorecard's reduction (analysis/reduce.py ``reduce_features``: above ``STREAM_PCA_ELEMENTS`` values
and wider than tall, through the models' Gram matrix) against scikit-learn's ``PCA`` on the same
standardised values with the solver it picks (randomized for these shapes: what the reduction was),
and the largest difference of the scores from scikit-learn's exact (full-SVD) PCA (past the first
few components the spectrum of such data is nearly flat, where an approximate solver's components
turn freely). Best of
``repeats``; docs/benchmarks.md, "Wide fingerprints".
"""

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from analysis.reduce import reduce_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    fam = np.arange(a.models) // 4
    x = (rng.normal(size=(fam.max() + 1, a.features))[fam] + rng.normal(size=(a.models, a.features))).astype(np.float32)
    x[: a.models // 2, : a.features // 50] += 1.0
    t_new, t_old = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        new = reduce_features(x, 10)
        t1 = time.perf_counter()
        z = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
        old = PCA(n_components=10, random_state=0).fit_transform(z)
        t2 = time.perf_counter()
        t_new.append(t1 - t0)
        t_old.append(t2 - t1)
    exact = PCA(n_components=10, svd_solver="full").fit_transform(z)
    print(f"{a.models} models x {a.features} features: reduce_features (Gram) {min(t_new):.2f} s, scikit-learn PCA "
          f"(its solver) {min(t_old):.2f} s, {min(t_old) / min(t_new):.1f}x; largest |score - exact PCA| on the first "
          f"component: Gram {np.abs(new[:, 0] - exact[:, 0]).max():.2g}, scikit-learn's {np.abs(old[:, 0] - exact[:, 0]).max():.2g}; "
          f"on all 10: {np.abs(new - exact).max():.2g}, {np.abs(old - exact).max():.2g} (scores up to {np.abs(exact).max():.3g})")


if __name__ == "__main__":
    main()
