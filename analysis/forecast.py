"""Forecasting final basins from early fingerprints (the proposal's "fingerprint early" step).

For each checkpoint step, a fingerprint of the models at that step is scored on how well it predicts
each model's *final* basin: ``accuracy`` (and ``auroc``) of a cross-validated linear classifier on a
labelled subset (folds keep an init family together), and ``ami`` between an unsupervised
clustering at that step and the final basins. Pure functions on arrays; ``fingerprint.forecast``
feeds them a zoo.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    StratifiedKFold,
    cross_val_predict,
)

from analysis import agreement as ag
from analysis.clustering import cluster, coordinates
from analysis.metrics import grouped_splits, one_family_class
from analysis.resampling import family_bootstrap_mean


def classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=3000, C=1.0)


def forecast_step(values: np.ndarray, final: Sequence[str], folds: int = 5, random_state: int = 0,
                  distances: bool | None = None, groups: Sequence | None = None) -> dict[str, Any]:
    """Scores for one step: ``values`` ``[n, d]`` (or ``[n, n]``) against final basin labels ``[n]``.

    ``groups`` ``[n]`` (each model's init family) keeps a family in one fold
    (``StratifiedGroupKFold``): relatives on both sides of a fold would let the classifier
    recognise a relative instead of forecasting the basin, and is what ``accuracy_ci`` (a 95%
    interval, :func:`analysis.resampling.family_bootstrap_mean`; ``None`` below four families) resamples."""
    y = np.asarray([str(v) for v in final])
    classes, yi = np.unique(y, return_inverse=True)
    out: dict[str, Any] = {"accuracy": None, "accuracy_ci": None, "auroc": None, "ami": None, "n_models": int(len(y)),
                                    "majority": float(np.bincount(yi).max() / len(yi))}  # accuracy of always guessing the largest basin
    x = coordinates(values, distances, n_components=20, random_state=random_state)
    c = cluster(values, distances=distances, random_state=random_state)
    out["ami"] = ag.ami(y, c.labels.astype(str))
    k = int(min(folds, np.bincount(yi).min())) if len(classes) > 1 else 0
    cv = StratifiedKFold(max(k, 2), shuffle=True, random_state=random_state)
    g = None if groups is None else np.unique(np.asarray([str(v) for v in groups]), return_inverse=True)[1]
    if g is not None and g.max() + 1 < len(g):  # some family has relatives (all alone: the plain folds)
        cv = grouped_splits(yi, g, min(k, int(g.max()) + 1), random_state)
        if cv is None and k >= 2:  # no folds that train on every class: say why, not a later, unrelated error
            k, lone = 0, one_family_class(y, groups)
            out["skipped"] = (f"basin '{lone[0]}' is in one init family only ('{lone[1]}')" if lone else
                              "the init families cannot be split into folds that each train on every basin")
    if k >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = cross_val_predict(classifier(), x, yi, cv=cv, method="predict_proba")
        right = proba.argmax(1) == yi
        out["accuracy"] = float(right.mean())
        ci = family_bootstrap_mean(right, groups, random_state=random_state)  # 95%, by init family
        out["accuracy_ci"] = None if ci is None else list(ci)
        out["auroc"] = ag.auroc(yi, proba)  # scikit-learn's roc_auc_score (binary, or macro one-vs-rest), in numpy
    return out


def earliest(curve: list[dict], key: str = "accuracy", level: float = 0.9) -> float | None:
    """Smallest fraction of training at which ``key`` reaches ``level`` (None if never)."""
    hits = [p["fraction"] for p in curve if p.get(key) is not None and p[key] >= level]
    return min(hits) if hits else None


def select(values_train: np.ndarray, y_train: Sequence[str], values_pool: np.ndarray, basin: str,
           budget: int | None = None, threshold: float = 0.5, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit on labelled (calibration) models, score the pool: ``(selected pool indices, P(basin) [n_pool])``.

    Keeps pool models whose predicted probability of ending in ``basin`` is at least ``threshold``,
    most likely first, at most ``budget`` of them.
    """
    y = np.asarray([str(v) for v in y_train]) == str(basin)
    both = np.concatenate([values_train, values_pool])
    x = coordinates(both, False, n_components=20, random_state=random_state)
    xt, xp = x[: len(values_train)], x[len(values_train):]
    if y.all() or not y.any():
        p = np.full(len(xp), float(y.mean()))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = classifier().fit(xt, y).predict_proba(xp)[:, 1]
    order = np.argsort(-p, kind="stable")
    keep = order[p[order] >= threshold]
    if budget is not None:
        keep = keep[:budget]
    return np.sort(keep), p
