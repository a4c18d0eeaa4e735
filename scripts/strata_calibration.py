"""Is the all-model split test calibrated with design strata projected out? (docs/results.md,
"All-model split with design strata: calibration").

    python scripts/strata_calibration.py [--pops 200] [--n-null 199] [--method both|rotation|plug-in]

Synthetic crossed designs (:func:`analysis.synthetic.crossed_population`): init families x data
orders shared by every family, each order moving its models the same way everywhere (Gaussian, sd
``order_sd`` times the family effects'), given to :func:`analysis.labelfree.label_free` as a stratum.
For each population the raw p-values of the two split statistics are captured (the all-model 2-means
index, :func:`analysis.labelfree._all_split`, and the within-family residuals',
:func:`analysis.labelfree._within_split`) beside the combined ``p_split``, with the strata's
within-family contrasts projected out of the all-model statistic and its null (``METHODS_VERSION`` 8)
and, with ``--projection-off``, also without (``_stratum_contrasts`` switched off: the all-model
statistic as it was before 8, which took no strata out; the within-family statistic took them out then too).
Prints, per design, null and mode, the KS distance of the raw p's from uniform, the share at or below 0.05
and the share equal to 1 (95% Clopper-Pearson), and the same for the combined p. ``cross`` rows are
power: a planted coin-flip factor crossing families.

``--method``: the all-model statistic's null (:func:`analysis.labelfree._all_split`'s ``null``): the
rotation null (measured, not the default), the plug-in Gaussian null (the default), or both side by side
(the default; each row of the table is then one method, both with the strata projected out).
``--projection-off`` adds the ``before`` rows above (``_stratum_contrasts`` switched off).

``--diagnose``: why the all-model statistic is conservative with or without strata. On null
populations without strata, its p-value against nulls whose family-effect and member covariances are
the plug-in estimates (as the test's) or the generating truth, each replicate drawn in all ``d``
dimensions and reduced to its own top principal directions as the data are.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import binomtest, kstest

from analysis import labelfree as lf
from analysis.sigclust import cluster_index, top_dims
from analysis.synthetic import crossed_population, synthetic_population

DESIGNS = ((8, 3), (8, 4), (12, 4))  # init families x data orders (one model per cell)


def ci(k: int, n: int) -> str:
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k:>3}/{n} {k / n:5.3f} [{lo:.3f}, {hi:.3f}]"


def run(x, fam, strata, n_null: int, seed: int, mode: str, null: str = "rotation") -> dict:
    """One population's raw p-values (all-model, within-family) and combined p_split, with the
    all-model statistic's ``null``."""
    got: dict = {}
    all_split, within_split, contrasts = lf._all_split, lf._within_split, lf._stratum_contrasts

    def a(*args, **kw):
        out = all_split(*args, **kw, null=null)
        got["p_all"] = out[1]
        return out

    def w(*args, **kw):
        out = within_split(*args, **kw)
        got["p_w"] = out[1]
        return out

    lf._all_split, lf._within_split = a, w
    if mode == "before":
        lf._stratum_contrasts = lambda *args: None
    try:
        res = lf.label_free(x, fam, n_null=n_null, random_state=seed, strata=strata)
    finally:
        lf._all_split, lf._within_split, lf._stratum_contrasts = all_split, within_split, contrasts
    return {**got, "p": res.p_split, "within": res.split_within}


def summary(rows: list[dict], key: str) -> str:
    p = np.array([r[key] for r in rows if r[key] is not None])
    return (f"KS {kstest(p, 'uniform').statistic:.3f} (p {kstest(p, 'uniform').pvalue:.2g}), "
            f"<=0.05 {ci(int((p <= 0.05).sum()), len(p))}, ==1 {ci(int((p >= 1).sum()), len(p))}, "
            f"median {np.median(p):.3f}")


def diagnose_p(x: np.ndarray, fam: np.ndarray, rng: np.random.Generator, true_c: bool, true_w: bool,
               n_rep: int = 399) -> float:
    """The all-model index of ``x`` (a ``synthetic_population`` null) against a hierarchical Gaussian
    null with the plug-in or the true family (``true_c``) and member (``true_w``) covariances."""
    n_fam, d = int(fam.max()) + 1, x.shape[1]
    x = x - x.mean(0)
    dims = min(lf.MAX_DIMS, d)
    ci_x = cluster_index(top_dims(x, dims)[None], min_size=max(2, len(x) // 20))[0][0]
    cent, counts = lf._centroids(x, fam, n_fam)
    resid = x - cent[fam]
    cov_w = resid.T @ resid / (len(x) - n_fam)
    cov_c = np.cov(cent.T) - cov_w * float(np.mean(1 / counts))
    scale = np.linspace(1.5, 0.3, d)  # synthetic_population's: family sd scale, members 0.5 of it
    cov_c, cov_w = (np.diag(scale**2) if true_c else cov_c), (np.diag((0.5 * scale) ** 2) if true_w else cov_w)

    def root(c: np.ndarray) -> np.ndarray:
        vals, vecs = np.linalg.eigh(c)
        return vecs * np.sqrt(np.clip(vals, 0, None))

    b = (rng.standard_normal((n_rep, n_fam, d)) @ root(cov_c).T)[:, fam] + rng.standard_normal((n_rep, len(x), d)) @ root(cov_w).T
    b = b - b.mean(1, keepdims=True)
    _, _, vt = np.linalg.svd(b, full_matrices=False)
    null = cluster_index(np.einsum("bnd,bkd->bnk", b, vt[:, :dims]), min_size=max(2, len(x) // 20))[0]
    return float((1 + (null <= ci_x).sum()) / (n_rep + 1))


def diagnose(pops: int) -> None:
    for n_fam, m in ((8, 4), (12, 4)):
        for name, true_c, true_w in (("plug-in both", False, False), ("true both", True, True),
                                     ("true family, plug-in members", True, False),
                                     ("plug-in family, true members", False, True)):
            p = np.array([diagnose_p(*synthetic_population("null", 100_000 * n_fam + 1000 * m + s, n_fam, m)[:2],
                                     np.random.default_rng(s), true_c, true_w) for s in range(pops)])
            print(f"{n_fam:>2} x {m} {name:<30} KS {kstest(p, 'uniform').statistic:.3f}, "
                  f"<=0.05 {ci(int((p <= 0.05).sum()), len(p))}, median {np.median(p):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pops", type=int, default=200, help="populations per design and setting")
    ap.add_argument("--n-null", type=int, default=199)
    ap.add_argument("--delta", type=float, default=1.0, help="planted factor of the cross rows (+-delta on dim 0)")
    ap.add_argument("--power-only", action="store_true", help="only the cross rows")
    ap.add_argument("--diagnose", action="store_true", help="only the covariance diagnosis")
    ap.add_argument("--method", default="both", choices=["both", "rotation", "plug-in"],
                    help="the all-model statistic's null")
    ap.add_argument("--projection-off", action="store_true", help="also rows without the strata's projection")
    args = ap.parse_args()
    t0 = time.time()
    if args.diagnose:
        diagnose(args.pops)
        print(f"({time.time() - t0:.0f} s)")
        return
    settings = (("null, orders sd 1", "null", 1.0, True), ("null, orders sd 0", "null", 0.0, True),
                ("null, no strata", "null", 0.0, False), (f"cross {args.delta:g}, orders sd 1", "cross", 1.0, True))
    for n_fam, n_orders in DESIGNS:
        for name, kind, order_sd, given in settings[3:] if args.power_only else settings:
            methods = ("plug-in", "rotation") if args.method == "both" else (args.method,)
            modes = [(m, "after") for m in methods] + ([(m, "before") for m in methods] if args.projection_off else [])
            for null, mode in modes:
                rows = []
                for s in range(args.pops):
                    seed = 100_000 * n_fam + 1000 * n_orders + s
                    if given:
                        x, fam, order, _ = crossed_population(kind, seed, n_fam, n_orders, order_sd=order_sd,
                                                              delta=args.delta)
                    else:
                        x, fam, _ = synthetic_population(kind, seed, n_fam, n_orders)
                    rows.append(run(x, fam, [order] if given else [], args.n_null, s, mode, null))
                within = sum(r["within"] for r in rows)
                tag = null if mode == "after" else f"{null}, no projection"
                print(f"{n_fam:>2} x {n_orders} {name:<22} {tag:<10} all-model raw: {summary(rows, 'p_all')}")
                print(f"{'':>29} {'':<10} within raw:    {summary(rows, 'p_w')}")
                print(f"{'':>29} {'':<10} combined:      {summary(rows, 'p')}; within used {within}/{len(rows)}",
                      flush=True)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
