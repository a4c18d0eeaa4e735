"""Does taking a recorded setting out (``--covariate``) keep the label-free tests at their level, and find
a difference beyond it?

    python scripts/covariate_calibration.py [--sims 200] [--n-null 99]

Synthetic populations of independent models (every model its own init family, the case ``--strata``
cannot help): ``n`` models with 50 Gaussian features of decaying scale, a recorded setting of ``L``
levels given to the models in turn (balanced), and three kinds:

- ``null``: nothing but seed noise;
- ``setting``: each level of the setting shifts the models by 3 feature SDs (an optimizer's camps);
- ``setting+rule``: that, and a planted difference of 2.5 SDs in half the models, crossed with the
  setting (each level holds both kinds), which a sweep wants found beyond the setting.

Each population goes through the scorecard's path for one fingerprint: the fit of the setting taken
out (:func:`analysis.covariates.taken_out`) or not, standardised, a 10-dim PCA
(:func:`analysis.reduce.coordinates`), then :func:`analysis.labelfree.label_free`. Prints per design:
the share of populations with a raw groups or split p-value at or below 0.05, without and with the
fit, and for ``setting+rule`` the mean AMI of the tests' basins (groups, else split) with the rule.
docs/scorecard.md ("Taking a recorded setting out") quotes its output.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis import covariates
from analysis import labelfree as lf
from analysis.metrics import ami
from analysis.reduce import coordinates

DESIGNS = ((12, 2), (24, 2), (24, 4), (24, 6), (48, 3))
KINDS = ("null", "setting", "setting+rule")


def population(n: int, levels: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features [n, 50], setting [n], rule [n])`` of one synthetic population."""
    d = 50
    scale = np.exp(-np.arange(d) / 8)
    x = rng.standard_normal((n, d)) * scale
    setting = np.arange(n) % levels
    rule = (np.arange(n) // levels) % 2  # crossed with the setting: each level holds both
    if kind != "null":
        x += 3 * rng.standard_normal((levels, d))[setting] * scale
    if kind == "setting+rule":
        x += 2.5 * np.outer(rule - 0.5, rng.standard_normal(d)) * scale
    return x, setting.astype(str).astype(object), rule


def one(x: np.ndarray, setting: np.ndarray | None, n_null: int, seed: int) -> lf.LabelFreeResult:
    if setting is not None:
        x, _, _ = covariates.taken_out(x, False, True, {"setting": setting})
    c = coordinates(x, False, 10, 0, True)
    return lf.label_free(c, [f"m{i}" for i in range(len(x))], n_null=n_null, random_state=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--n-null", type=int, default=99)
    args = ap.parse_args()
    t0 = time.time()
    print(f"{'n':>3} {'L':>2} {'kind':<13} {'p<=.05 raw':>10} {'p<=.05 fit':>10} {'AMI(rule) raw':>13} {'AMI(rule) fit':>13}")
    for n, levels in DESIGNS:
        for kind in KINDS:
            rng = np.random.default_rng(1000 * n + levels)
            hits, amis = {"raw": [], "fit": []}, {"raw": [], "fit": []}
            for s in range(args.sims):
                x, setting, rule = population(n, levels, kind, rng)
                for how, cov in (("raw", None), ("fit", setting)):
                    r = one(x, cov, args.n_null, s)
                    hits[how].append(min(r.p_groups, r.p_split) <= 0.05)
                    basins = r.group_basins if r.p_groups <= r.p_split else r.split_basins
                    amis[how].append(ami(basins, rule) or 0.0)
            show = kind == "setting+rule"
            print(f"{n:>3} {levels:>2} {kind:<13} {np.mean(hits['raw']):>10.3f} {np.mean(hits['fit']):>10.3f} "
                  + (f"{np.mean(amis['raw']):>13.2f} {np.mean(amis['fit']):>13.2f}" if show else f"{'':>13} {'':>13}"))
    print(f"({args.sims} populations a row, {args.n_null} null replicates; {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
