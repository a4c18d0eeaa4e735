"""Is the all-model split test calibrated with design strata projected out? (docs/results.md,
"All-model split with design strata: calibration").

    python scripts/strata_calibration.py [--pops 200] [--n-null 199]

Synthetic crossed designs (:func:`analysis.synthetic.crossed_population`): init families x data
orders shared by every family, each order moving its models the same way everywhere (Gaussian, sd
``order_sd`` times the family effects'), given to :func:`analysis.labelfree.label_free` as a stratum.
For each population the raw p-values of the two split statistics are captured (the all-model 2-means
index, :func:`analysis.labelfree._all_split`, and the within-family residuals',
:func:`analysis.labelfree._within_split`) beside the combined ``p_split``, twice: ``after`` (the
code as it is: the strata's within-family contrasts projected out of the all-model statistic and its
null) and ``before`` (``_stratum_contrasts`` switched off: the all-model statistic as it was before
``METHODS_VERSION`` 8, which took no strata out; the within-family statistic took them out then too).
Prints, per design and mode, the KS distance of the raw p's from uniform, the share at or below 0.05
and the share equal to 1 (95% Clopper-Pearson), and the same for the combined p. ``cross`` rows are
power: a planted coin-flip factor crossing families.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import binomtest, kstest

from analysis import labelfree as lf
from analysis.synthetic import crossed_population, synthetic_population

DESIGNS = ((8, 3), (8, 4), (12, 4))  # init families x data orders (one model per cell)


def ci(k: int, n: int) -> str:
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k:>3}/{n} {k / n:5.3f} [{lo:.3f}, {hi:.3f}]"


def run(x, fam, strata, n_null: int, seed: int, mode: str) -> dict:
    """One population's raw p-values (all-model, within-family) and combined p_split."""
    got: dict = {}
    all_split, within_split, contrasts = lf._all_split, lf._within_split, lf._stratum_contrasts

    def a(*args, **kw):
        out = all_split(*args, **kw)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pops", type=int, default=200, help="populations per design and setting")
    ap.add_argument("--n-null", type=int, default=199)
    ap.add_argument("--delta", type=float, default=1.0, help="planted factor of the cross rows (+-delta on dim 0)")
    ap.add_argument("--power-only", action="store_true", help="only the cross rows")
    args = ap.parse_args()
    t0 = time.time()
    settings = (("null, orders sd 1", "null", 1.0, True), ("null, orders sd 0", "null", 0.0, True),
                ("null, no strata", "null", 0.0, False), (f"cross {args.delta:g}, orders sd 1", "cross", 1.0, True))
    for n_fam, n_orders in DESIGNS:
        for name, kind, order_sd, given in settings[3:] if args.power_only else settings:
            for mode in ("before", "after"):
                rows = []
                for s in range(args.pops):
                    seed = 100_000 * n_fam + 1000 * n_orders + s
                    if given:
                        x, fam, order, _ = crossed_population(kind, seed, n_fam, n_orders, order_sd=order_sd,
                                                              delta=args.delta)
                    else:
                        x, fam, _ = synthetic_population(kind, seed, n_fam, n_orders)
                    rows.append(run(x, fam, [order] if given else [], args.n_null, s, mode))
                within = sum(r["within"] for r in rows)
                print(f"{n_fam:>2} x {n_orders} {name:<22} {mode:<6} all-model raw: {summary(rows, 'p_all')}")
                print(f"{'':>29} {'':<6} within raw:    {summary(rows, 'p_w')}")
                print(f"{'':>29} {'':<6} combined:      {summary(rows, 'p')}; within used {within}/{len(rows)}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
