"""Scale transfer: does a basin classifier fit on one scale's models work, unchanged, on other scales?

A population holds models at several scales (widths, depths: a config's ``model.sweep``). A linear
classifier (standardise + logistic regression) is fit on the fingerprints of one scale's models
against their ground-truth basin (``deep_label``) and applied, scaler and all, to every other scale.
Per scale: how many models, the AUROC of its probabilities against the true basin (macro one-vs-rest
over the basins present at that scale) with a 95% interval over whole init families, the
accuracy, the true basin shares and the shares the classifier predicts. On the fit scale itself the
numbers are cross-validated with folds that keep an init family together, so they are not in-sample.

Arrays in, a :class:`TransferResult` out; the fingerprint's columns must mean the same at every
scale (outputs on one shared probe set do; weight statistics of different widths do not), which the
caller checks: here they only need to be one table ``[n_models, d]``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.errors import AnalysisError, choices
from analysis.intervals import auroc_interval, cv_widen, proportion_interval
from analysis.metrics import linear_probe
from analysis.sortkeys import natural_key

N_SPLITS = 5  # folds of the fit scale's cross-validation (fewer when it has fewer families)


@dataclass(frozen=True)
class ScaleResult:
    """One scale's numbers. ``auroc`` / ``accuracy`` are ``None`` when undefined (fewer than two
    basins present; a class too small to cross-validate on the fit scale)."""

    scale: str
    n_models: int
    auroc: float | None
    auroc_ci: tuple[float, float] | None
    accuracy: float | None
    basin_shares: dict[str, float]  # the true basin's frequencies at this scale
    predicted_shares: dict[str, float]  # the classifier's predicted basins' frequencies
    fit: bool = False  # the scale the classifier was fit on (its numbers cross-validated)
    unseen_basins: list[str] = field(default_factory=list)  # true basins here that the fit scale never showed
    # the accuracy's 95% interval over init families, as the AUROC's (outside audit 124: a number without one)
    accuracy_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class TransferResult:
    """``fit_on`` (the fit scale), ``classes`` (the basins the classifier knows), ``scales`` (every
    scale, in natural order)."""

    fit_on: str
    classes: list[str]
    scales: list[ScaleResult]

    def to_dict(self) -> dict:
        return {"fit_on": self.fit_on, "classes": list(self.classes), "scales": [asdict(s) for s in self.scales]}


def scale_key(label: str) -> list:
    """Sort key of a scale label, numbers by value: ``model.width=16`` before ``model.width=128``."""
    return [(0, float(p), "") if re.fullmatch(r"\d+(\.\d+)?", p) else (1, 0.0, p) for p in re.split(r"(\d+(?:\.\d+)?)", label)]


def macro_auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mean one-vs-rest AUROC over the classes present in ``y`` (codes ``[n]``, ``-1`` for a basin
    the classifier does not know: counted as a negative for every class) against probabilities
    ``p [n, n_classes]``; ``None`` with fewer than two of the known classes present. Two classes:
    the plain AUROC."""
    from sklearn.metrics import roc_auc_score

    present = [c for c in range(p.shape[1]) if (y == c).any() and (y != c).any()]
    if len([c for c in np.unique(y) if c >= 0]) < 2 or not present:
        return None
    if p.shape[1] == 2 and set(np.unique(y)) == {0, 1}:
        return float(roc_auc_score(y, p[:, 1]))
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))


def _shares(values: np.ndarray) -> dict[str, float]:
    names, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    order = sorted(range(len(names)), key=lambda i: natural_key(str(names[i])))
    return {str(names[i]): float(counts[i] / counts.sum()) for i in order}


def basin_transfer(features: np.ndarray, labels: Sequence, scale: Sequence, family: Sequence, fit_on: str,
                   random_state: int = 0, min_class: int = 2) -> TransferResult:
    """Fit a basin classifier on the models of scale ``fit_on`` and score it on every scale.

    Parameters
    ----------
    features : array ``[n_models, d]``, one fingerprint row per model (every scale, same columns).
    labels : ``[n_models]`` true basins (``deep_label``).
    scale : ``[n_models]`` each model's scale (e.g. ``"model.width=16"``).
    family : ``[n_models]`` each model's init family (``init_seed``): the resampling unit.
    fit_on : the scale to fit on (one of ``scale``'s values).
    min_class : the fit scale needs this many models of each basin it knows.

    Returns
    -------
    TransferResult, scales in :func:`scale_key` order; the fit scale's AUROC and accuracy are out-of-fold
    (``StratifiedGroupKFold`` by family), the others are the fitted classifier applied unchanged.
    """
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    x = np.asarray(features, dtype=np.float64)
    lab = np.asarray([str(v) for v in labels], dtype=object)
    sc = np.asarray([str(v) for v in scale], dtype=object)
    fam = np.asarray([str(v) for v in family], dtype=object)
    if x.ndim != 2 or not len(x) == len(lab) == len(sc) == len(fam):
        raise AnalysisError(f"features must be [n_models, d] with one label, scale and family per model; got features "
                            f"{list(x.shape)} and {len(lab)}, {len(sc)}, {len(fam)} values")
    if not np.isfinite(x).all():
        raise AnalysisError("features hold NaN or infinite values")
    scales = sorted(set(sc), key=scale_key)
    if fit_on not in scales:
        raise AnalysisError(f"unknown fit scale {fit_on!r} (valid: {choices(scales)})")
    fit = sc == fit_on
    classes, counts = np.unique(lab[fit], return_counts=True)
    if len(classes) < 2:
        raise AnalysisError(f"the {fit.sum()} models of {fit_on} all have basin {classes[0] if len(classes) else '(none)'!r}: "
                            "a classifier needs at least two basins to tell apart")
    if counts.min() < min_class:
        raise AnalysisError(f"basin {classes[counts.argmin()]!r} has {counts.min()} model(s) at {fit_on}; the classifier "
                            f"needs at least {min_class} of each (train more seeds at that scale)")
    code = {c: i for i, c in enumerate(classes)}
    y = np.asarray([code.get(v, -1) for v in lab])
    clf = linear_probe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x[fit], y[fit])
        proba = np.zeros((len(x), len(classes)))
        if (~fit).any():
            proba[~fit] = clf.predict_proba(x[~fit])
        folds = int(min(N_SPLITS, counts.min(), len(set(fam[fit]))))
        cv_ok = folds >= 2
        if cv_ok:
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=random_state)
            proba[fit] = cross_val_predict(linear_probe(), x[fit], y[fit], cv=cv, groups=fam[fit], method="predict_proba")
    pred = np.asarray(classes, dtype=object)[proba.argmax(1)]
    out = []
    for s in scales:
        rows = np.flatnonzero(sc == s)
        defined = cv_ok or s != fit_on
        yy, pp = y[rows], proba[rows]
        auroc = macro_auroc(yy, pp) if defined else None
        # the fit scale's predictions are cross-validated (the folds' overlap, Nadeau & Bengio's
        # correction); another scale's come from one classifier fit on the fit scale's models
        ci = acc_ci = None
        inflate = cv_widen(folds) ** 2 if s == fit_on and cv_ok else 1.0 + len(rows) / int(fit.sum())
        if auroc is not None:  # on the fit scale only with folds (cv_ok): one family is no cross-validation
            ci = auroc_interval(yy, pp, fam[rows], inflate=inflate)
        right = (pred[rows] == lab[rows]).astype(float)
        if defined:
            acc_ci = proportion_interval(right, fam[rows], inflate=inflate)
        out.append(ScaleResult(
            scale=s, n_models=len(rows), auroc=auroc, auroc_ci=ci,
            accuracy=float(right.mean()) if defined else None,
            basin_shares=_shares(lab[rows]), predicted_shares=_shares(pred[rows]) if defined else {},
            fit=s == fit_on, unseen_basins=sorted(set(lab[rows]) - set(classes), key=natural_key),
            accuracy_ci=None if acc_ci is None else (float(acc_ci[0]), float(acc_ci[1]))))
    return TransferResult(fit_on=fit_on, classes=[str(c) for c in classes], scales=out)
