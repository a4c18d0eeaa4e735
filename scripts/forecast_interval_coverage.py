"""How often the forecast's accuracy interval, and the probe's AUROC interval, cover what they estimate (a simulation).

``analysis.forecast.forecast_step`` scores a cross-validated classifier and gives its accuracy a
95% interval that resamples init families with the folds' predictions held fixed. That interval
leaves out how the classifier itself would change with other training families; an outside audit
(67) saw 4 of 24 intervals miss the true 0.5 on populations whose rule is decided only later.
This script draws populations from a known model, so the accuracy being estimated is known, and
counts how often each interval covers it:

- ``fixed``: the family bootstrap with the predictions held fixed (the interval before
  ``METHODS_VERSION`` 23);
- ``widened``: the same interval widened about the accuracy by ``sqrt(1 + k / (k - 1))`` for
  ``k`` folds, Nadeau & Bengio's (2003) correction of a cross-validated estimate's variance for the
  overlap of its training sets (``analysis.intervals.cv_widen``): right in the middle, but a
  bootstrap of 0/1 hits still collapses near 1 (an accuracy of 1.0 gets ``[1, 1]``);
- ``jeffreys``: what ``forecast_step`` gives (``analysis.forecast.accuracy_interval``):
  Jeffreys' interval at an effective number of models, the design effect of the families and the
  same correction taken out of ``n`` (a design effect of 1 where every model is right);
- ``jeffreys_floor``: the same with the true basins' design effect as a floor at every step
  (``analysis.intervals.classes_design_effect``), a variant measured and not taken (docs/results.md,
  "Every model right").

The same cross-validated probabilities' AUROC (what the scorecard's probe, ``transfer`` and the
supervised baselines report) gets two intervals:

- ``auroc boot``: the family bootstrap of the AUROC with the predictions held fixed (the
  scorecard's interval before ``METHODS_VERSION`` 23, which read ``[1, 1]`` for a perfect probe);
- ``auroc newcombe``: ``analysis.intervals.auroc_interval``, Newcombe's (2006) interval at the
  families' effective number of models with the same correction for the folds.

Population: ``F`` families of ``m`` models, ``d`` features; a model's features are its family's
vector (weight ``rho``) plus its own noise, plus ``delta`` times its basin's sign on one feature.
Basins are either half of every family (``within``, the audit's design: relatives end in either
basin) or whole families (``families``). With ``delta = 0`` the true accuracy is 0.5 exactly;
otherwise it is measured as the mean accuracy (and AUROC), on 4,000 new models, of the same
classifier trained on ``(k - 1) / k`` of a fresh population (what cross-validation estimates), over
200 draws.

    python scripts/forecast_interval_coverage.py [--reps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from analysis.agreement import binary_auroc
from analysis.forecast import accuracy_interval, classifier
from analysis.intervals import (
    auroc_interval,
    classes_design_effect,
    cv_widen,
    proportion_interval,
)
from analysis.metrics import grouped_splits
from analysis.reduce import coordinates
from analysis.resampling import family_bootstrap, family_bootstrap_mean

SCENARIOS = [  # (name, families, per family, basins by, delta)
    ("null 8x4 within", 8, 4, "within", 0.0),
    ("null 16x2 within", 16, 2, "within", 0.0),
    ("null 30x1", 30, 1, "within", 0.0),
    ("null 12x4 families", 12, 4, "families", 0.0),
    ("signal 8x4 within", 8, 4, "within", 0.8),
    ("signal 16x2 within", 16, 2, "within", 0.8),
    ("signal 30x1", 30, 1, "within", 0.8),
    ("signal 12x4 families", 12, 4, "families", 0.8),
    ("strong 8x4 within", 8, 4, "within", 2.0),
    ("strong 30x1", 30, 1, "within", 2.0),
    ("strong 12x4 families", 12, 4, "families", 2.0),
    ("strong 6x8 families", 6, 8, "families", 2.0),  # few large families: every model right in many draws
    ("strong 4x12 families", 4, 12, "families", 2.0),
    ("perfect 8x4 within", 8, 4, "within", 4.0),
    ("perfect 6x8 families", 6, 8, "families", 4.0),
]
D, RHO = 6, 0.7


def draw(rng: np.random.Generator, families: int, size: int, by: str, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features [n, D], basins [n], family [n])`` of one population."""
    fam = np.repeat(np.arange(families), size)
    if by == "families":
        y = np.repeat(rng.permutation(np.arange(families) % 2), size)
    elif size == 1:
        y = rng.permutation(np.arange(families) % 2)
    else:
        y = np.concatenate([rng.permutation(np.arange(size) % 2) for _ in range(families)])
    x = np.sqrt(RHO) * rng.standard_normal((families, D))[fam] + np.sqrt(1 - RHO) * rng.standard_normal((len(fam), D))
    x[:, 0] += delta * (2 * y - 1)
    return x, y, fam


def widen(accuracy: float, ci: tuple[float, float], folds: int) -> tuple[float, float]:
    """The interval ``ci`` of ``accuracy`` with each side ``cv_widen(folds)`` times as far from it, in [0, 1]."""
    f = cv_widen(folds)
    return max(0.0, accuracy - f * (accuracy - ci[0])), min(1.0, accuracy + f * (ci[1] - accuracy))


def folds_for(y: np.ndarray, fam: np.ndarray, rs: int) -> list:
    """The folds ``forecast_step`` uses: stratified 5-fold keeping families together."""
    if fam.max() + 1 < len(fam):
        return grouped_splits(y, fam, min(5, int(np.bincount(y).min()), int(fam.max()) + 1), rs)
    return list(StratifiedKFold(min(5, int(np.bincount(y).min())), shuffle=True, random_state=rs).split(y, y))


def true_accuracy(rng: np.random.Generator, families: int, size: int, by: str, delta: float, k: int) -> tuple[float, float]:
    """Mean accuracy and AUROC on new models of the classifier trained on ``(k - 1) / k`` of a population."""
    if delta == 0:
        return 0.5, 0.5
    train_fam = max(2, round(families * (k - 1) / k))
    accs, aucs = [], []
    for _ in range(200):
        x, y, _ = draw(rng, train_fam, size, by, delta)
        xt, yt, _ = draw(rng, 4000 // size, size, by, delta)
        mu, sd = x.mean(0), x.std(0) + 1e-12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = classifier().fit((x - mu) / sd, y)
        accs.append(float((clf.predict((xt - mu) / sd) == yt).mean()))
        aucs.append(binary_auroc(yt == 1, clf.decision_function((xt - mu) / sd)))
    return float(np.mean(accs)), float(np.mean(aucs))


def run(reps: int) -> list[dict]:
    rows = []
    for name, families, size, by, delta in SCENARIOS:
        rng = np.random.default_rng(7)
        hits = {"fixed": 0, "widened": 0, "jeffreys": 0, "jeffreys_floor": 0, "auroc_boot": 0, "auroc_newcombe": 0}
        widths = {key: [] for key in hits}
        accs, aucs, ks, truth, truth_auc, all_hits = [], [], [], 0.5, 0.5, 0
        for r in range(reps):
            x, y, fam = draw(rng, families, size, by, delta)
            cv = folds_for(y, fam, r)
            k = len(cv)
            z = coordinates(x, False, n_components=20, random_state=r)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proba = cross_val_predict(classifier(), z, y, cv=cv, method="predict_proba")
            right = proba.argmax(1) == y
            acc = float(right.mean())
            all_hits += acc in (0.0, 1.0)
            ci = family_bootstrap_mean(right, fam, random_state=r)
            accs.append(acc)
            ks.append(k)
            auc = binary_auroc(y == 1, proba[:, 1])
            aucs.append(auc)
            if r == 0:  # the folds' number is the same for every draw of a design
                truth, truth_auc = true_accuracy(np.random.default_rng(1000 + families), families, size, by, delta, k)
            boot = family_bootstrap(lambda rows, _d: binary_auroc(y[rows] == 1, proba[rows, 1]) if 0 < y[rows].sum() < len(rows)
                                    else None, fam, random_state=r)
            for key, (lo, hi), target in (("fixed", ci, truth), ("widened", widen(acc, ci, k), truth),
                                          ("jeffreys", accuracy_interval(right, fam, k), truth),
                                          ("jeffreys_floor", proportion_interval(right, fam, 0.95, cv_widen(k) ** 2,
                                                                                 shared_deff=classes_design_effect(y, fam)), truth),
                                          ("auroc_boot", boot, truth_auc),
                                          ("auroc_newcombe", auroc_interval(y, proba, fam, inflate=cv_widen(k) ** 2), truth_auc)):
                hits[key] += lo <= target <= hi
                widths[key].append(hi - lo)
        rows.append({"scenario": name, "reps": reps, "true_accuracy": round(truth, 3), "mean_accuracy": round(float(np.mean(accs)), 3),
                     "true_auroc": round(truth_auc, 3), "mean_auroc": round(float(np.mean(aucs)), 3),
                     "sd_auroc": round(float(np.std(aucs)), 3),
                     "sd_accuracy": round(float(np.std(accs)), 3), "folds": int(np.median(ks)), "all_hits": all_hits / reps,
                     **{f"coverage_{key}": round(hits[key] / reps, 3) for key in hits},
                     **{f"width_{key}": round(float(np.mean(widths[key])), 3) for key in widths}})
        r = rows[-1]
        print(f"{name:<22} true {r['true_accuracy']:.3f}  mean {r['mean_accuracy']:.3f} sd {r['sd_accuracy']:.3f}  k {r['folds']}  "
              f"coverage fixed {r['coverage_fixed']:.3f} (width {r['width_fixed']:.3f})  "
              f"widened {r['coverage_widened']:.3f} (width {r['width_widened']:.3f})  "
              f"jeffreys {r['coverage_jeffreys']:.3f} (width {r['width_jeffreys']:.3f}; the basins' floor "
              f"{r['coverage_jeffreys_floor']:.3f}, {r['width_jeffreys_floor']:.3f})  all hits {r['all_hits']:.2f}", flush=True)
        print(f"{'':<22} AUROC true {r['true_auroc']:.3f}  mean {r['mean_auroc']:.3f} sd {r['sd_auroc']:.3f}  "
              f"coverage boot {r['coverage_auroc_boot']:.3f} (width {r['width_auroc_boot']:.3f})  "
              f"newcombe {r['coverage_auroc_newcombe']:.3f} (width {r['width_auroc_newcombe']:.3f})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(f"coverage (and mean width) of 95% intervals; widened = fixed x sqrt(1 + k/(k-1)) (x{cv_widen(5):.2f} at k = 5)")
    rows = run(args.reps)
    if args.json:  # the table's rows, for docs/results.md
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
