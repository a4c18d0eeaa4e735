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
from analysis.intervals import cv_widen, proportion_interval
from analysis.metadata import _centred
from analysis.metrics import grouped_splits, one_family_class
from analysis.resampling import MIN_FAMILIES


def classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=3000, C=1.0)


def family_centred(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``x [n, d]`` less each init family's mean over its rows here (``groups [n]``, codes), then scaled by one number
    to a unit mean variance per coordinate (the classifier's penalty would otherwise keep the small within-family
    directions out: coordinates standardised with the families' offsets in them shrink a basin's shift beside them;
    each coordinate to unit variance instead blew its noise directions up to the basin's, and on outside audit 123's
    fine-tunes the held-out predictions came out reversed, AUROC 0.01): what a model differs from its relatives by.
    Deployable: a family's models at the forecast step give its mean, no label."""
    c = _centred(x, groups, int(groups.max()) + 1)
    rms = float(np.sqrt((c**2).mean()))
    # relatives identical (a fine-tune's first checkpoint is its base): round-off, not a direction to blow up
    return c / rms if rms > 1e-5 * float(np.sqrt((x**2).mean())) else np.zeros_like(c)  # (float32 fingerprints: 1e-7)


WITHIN_SHARE = 0.5  # the classifier reads family-centred coordinates where at least this share of the basins' variance is within families


def within_share(y: np.ndarray, groups: np.ndarray) -> float:
    """The share of the variance of the class indicators of ``y [n]`` (codes) that lies within the init families
    ``groups [n]`` (codes): 1 when every family holds the basins as the whole does, 0 when each family is in one
    basin (the init decides it)."""
    onehot = np.eye(int(y.max()) + 1)[y]  # [n, classes]
    total = float(((onehot - onehot.mean(0)) ** 2).sum())
    within = float((_centred(onehot, groups, int(groups.max()) + 1) ** 2).sum())
    return within / total if total > 0 else 0.0


def better_features(variants: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray) -> str:
    """``"centred"`` (of ``variants``, raw and family-centred coordinates) when the labelled models' basins ``y [n]``
    (codes) lie mostly within their init families ``groups [n]`` (:func:`within_share` at least
    :data:`WITHIN_SHARE`), else ``"raw"``. Outside audit 123: fine-tunes of 4 tiny GPT-2 bases, 2 of 6 children of
    each backdoored; the bases' offsets (the fingerprint's top directions, 4x the backdoor's) moved a held-out
    family's every model past the threshold, and ``probe-outputs`` read accuracy 0.33 at AUROC 1.00. A basin that
    varies within the families is read off what a model differs from its relatives by (:func:`family_centred`); one
    the init decides (whole families) needs the raw coordinates, the families' own offsets being the signal. The
    labels decide, not an inner cross-validation: with 3 or 4 training families its folds train on 2 (measured:
    docs/forecasting.md, "Family-centred coordinates"). Each outer fold reads its own training families only."""
    return "centred" if "centred" in variants and within_share(y, groups) >= WITHIN_SHARE else "raw"


def _nested_proba(x: np.ndarray, y: np.ndarray, groups: np.ndarray, cv: list) -> tuple[np.ndarray, int]:
    """Out-of-fold class probabilities ``[n, n_classes]`` of ``x [n, d]`` for class codes ``y [n]`` over the outer
    folds ``cv``, each fold's classifier on the raw or the family-centred coordinates (:func:`better_features` on
    its training families' basins), and how many folds took the centred ones."""
    variants = {"raw": x, "centred": family_centred(x, groups)}
    proba, centred = np.zeros((len(y), int(y.max()) + 1)), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in cv:
            name = better_features(variants, y[train], np.unique(groups[train], return_inverse=True)[1])
            centred += name == "centred"
            clf = classifier().fit(variants[name][train], y[train])
            proba[np.ix_(test, clf.classes_)] = clf.predict_proba(variants[name][test])
    return proba, centred


def accuracy_interval(right: np.ndarray, groups: Sequence | None, folds: int, level: float = 0.95,
                      min_families: int = MIN_FAMILIES) -> tuple[float, float] | None:
    """A ``level`` interval of a ``folds``-fold cross-validated accuracy from its hits ``right [n]`` (0/1)
    and each model's init family ``groups [n]``: :func:`analysis.intervals.proportion_interval`
    (Jeffreys' interval at an effective number of models, the families' design effect taken out)
    with its variance inflated by ``cv_widen(folds)**2`` for the folds' overlapping training sets.
    ``scripts/forecast_interval_coverage.py`` measures the coverage: 0.91-1.00 on its 11 designs,
    against 0.62-0.92 for the family bootstrap of the fixed predictions this replaces (0.62-0.78
    where the accuracy is 0.92-0.95). ``None`` below ``min_families`` families."""
    return proportion_interval(right, groups, level, cv_widen(folds) ** 2, min_families)


def no_accuracy(curve: Sequence[dict], fp: str) -> str | None:
    """Why no step of ``fp``'s forecast ``curve`` has an accuracy (its first ``skipped`` reason), or ``None``
    when one has: not measured is not "never reached" (an outside audit, 75)."""
    pts = [p for p in curve if p.get("fingerprint") == fp]
    if not pts or any(p.get("accuracy") is not None for p in pts):
        return None
    return next((p["skipped"] for p in pts if p.get("skipped")), None)


def forecast_step(values: np.ndarray, final: Sequence[str], folds: int = 5, random_state: int = 0,
                  distances: bool | None = None, groups: Sequence | None = None) -> dict[str, Any]:
    """Scores for one step: ``values`` ``[n, d]`` (or ``[n, n]``) against final basin labels ``[n]``.

    ``groups`` ``[n]`` (each model's init family) keeps a family in one fold
    (``StratifiedGroupKFold``): relatives on both sides of a fold would let the classifier
    recognise a relative instead of forecasting the basin, and is what ``accuracy_ci`` (a 95%
    interval, :func:`accuracy_interval`; ``None`` below four families) clusters by."""
    y = np.asarray([str(v) for v in final])
    classes, yi = np.unique(y, return_inverse=True)
    out: dict[str, Any] = {"accuracy": None, "accuracy_ci": None, "auroc": None, "ami": None, "n_models": int(len(y)),
                                    "majority": float(np.bincount(yi).max() / len(yi))}  # accuracy of always guessing the largest basin
    x = coordinates(values, distances, n_components=20, random_state=random_state)
    c = cluster(values, distances=distances, random_state=random_state)
    # one final basin: no agreement to measure (audit 124: sklearn's 1.00 for two one-cluster labelings read as perfect)
    out["ami"] = ag.ami(y, c.labels.astype(str)) if len(classes) > 1 else None
    k = int(min(folds, np.bincount(yi).min())) if len(classes) > 1 else 0
    if k < 2:  # said, not a silent dash (an outside audit, 75: a lone model's cluster left every step at '–')
        sizes = np.bincount(yi)
        lone = [f"'{c}'" for c, m in zip(classes, sizes) if m < 2]
        out["skipped"] = (f"one final basin ('{classes[0]}'): nothing to tell apart" if len(classes) < 2 else
                          f"basin{'s' if len(lone) > 1 else ''} {', '.join(lone)} {'have one model each' if len(lone) > 1 else 'has one model'}"
                          ": no fold can both train and test on it" if lone else
                          f"{k} fold{'' if k == 1 else 's'}: a forecast needs at least 2")
    cv = StratifiedKFold(max(k, 2), shuffle=True, random_state=random_state)
    g = None if groups is None else np.unique(np.asarray([str(v) for v in groups]), return_inverse=True)[1]
    if g is not None and g.max() + 1 < len(g):  # some family has relatives (all alone: the plain folds)
        cv = grouped_splits(yi, g, min(k, int(g.max()) + 1), random_state)
        if cv is None and k >= 2:  # no folds that train on every class: say why, not a later, unrelated error
            k, lone = 0, one_family_class(y, groups)
            out["skipped"] = (f"basin '{lone[0]}' is in one init family only ('{lone[1]}')" if lone else
                              "the init families cannot be split into folds that each train on every basin")
    if k >= 2:
        if isinstance(cv, list):  # init families with relatives: raw or family-centred coordinates, fold by fold
            proba, centred = _nested_proba(x, yi, g, cv)
            out["centred_folds"] = [centred, len(cv)]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proba = cross_val_predict(classifier(), x, yi, cv=cv, method="predict_proba")
        right = proba.argmax(1) == yi
        out["accuracy"] = float(right.mean())
        ci = accuracy_interval(right, groups, len(cv) if isinstance(cv, list) else cv.get_n_splits())  # 95%, by init family
        out["accuracy_ci"] = None if ci is None else list(ci)
        out["auroc"] = ag.auroc(yi, proba)  # scikit-learn's roc_auc_score (binary, or macro one-vs-rest), in numpy
    return out


def beats_majority(point: dict) -> bool:
    """Whether a forecast point does better than always guessing the largest basin: the lower end of its
    accuracy interval above the majority share (its accuracy, without an interval). An outside audit: 3
    of 32 models on the other rule read "90% accuracy from 0.000 of training" on the majority guess alone."""
    acc, maj, ci = point.get("accuracy"), point.get("majority"), point.get("accuracy_ci")
    return acc is not None and maj is not None and (ci[0] if ci else acc) > maj


def reaches(point: dict, key: str = "accuracy", level: float = 0.9) -> bool:
    """Whether ``key`` reaches ``level`` at this point, and, for the accuracy, :func:`beats_majority`."""
    return point.get(key) is not None and point[key] >= level and (key != "accuracy" or beats_majority(point))


def earliest(curve: list[dict], key: str = "accuracy", level: float = 0.9) -> float | None:
    """Smallest fraction of training at which ``key`` reaches ``level`` (:func:`reaches`; None if never)."""
    hits = [p["fraction"] for p in curve if reaches(p, key, level)]
    return min(hits) if hits else None


def select(values_train: np.ndarray, y_train: Sequence[str], values_pool: np.ndarray, basin: str,
           budget: int | None = None, threshold: float = 0.5, random_state: int = 0,
           groups_train: Sequence | None = None, groups_pool: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit on labelled (calibration) models, score the pool: ``(selected pool indices, P(basin) [n_pool])``.

    Keeps pool models whose predicted probability of ending in ``basin`` is at least ``threshold``,
    most likely first, at most ``budget`` of them. With the init families of both (``groups_train``,
    ``groups_pool``), the classifier reads the family-centred coordinates where the calibration's basins lie
    mostly within its families (:func:`better_features`, as the forecast's folds do), else the raw ones.
    """
    y = np.asarray([str(v) for v in y_train]) == str(basin)
    both = np.concatenate([values_train, values_pool])
    x = coordinates(both, False, n_components=20, random_state=random_state)
    if groups_train is not None and groups_pool is not None:
        g = np.unique(np.asarray([str(v) for v in [*groups_train, *groups_pool]]), return_inverse=True)[1]
        nt = len(values_train)
        if len(np.unique(g[:nt])) < nt and not y.all() and y.any():
            centred = family_centred(x, g)  # (the calibration and pool share no family: each its own mean)
            gt = np.unique(g[:nt], return_inverse=True)[1]
            if better_features({"raw": x[:nt], "centred": centred[:nt]}, y.astype(int), gt) == "centred":
                x = centred
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


FORECAST_ABOUT = ("target", "targets", "n_models", "n_families", "lineage", "families_known", "models_alone", "final_step", "final_steps",
                  "steps_left_out", "excluded_basins", "earliest_90")  # summary.json forecast_about: what was forecast


def forecast_about(stored: dict[str, Any], report_lineage: str | None = None) -> list[str]:
    """What a stored forecast (``results/forecast.json``) answered, in sentences for the report beside its
    curve: its target, seeds and families, where each fingerprint reached 90%, and its caveats (a
    target that is not a candidate basin, no families, steps left out, runs of different lengths, and a
    lineage other than the report's). A forecast stored before these fields existed gives what it has."""
    out = []
    if stored.get("target") is None:
        return out
    fams = (f" in {stored['n_families']} families by {stored['lineage']}" if stored.get("n_families") is not None else "")
    out.append(f"Forecast of {stored['target']} ({stored.get('n_models')} seeds{fams}, final step {stored.get('final_step')}).")
    for fp, frac in (stored.get("earliest_90") or {}).items():
        t = (stored.get("targets") or {}).get(fp) or {}
        why = no_accuracy(stored.get("forecast") or [], fp)
        when = (f"reaches 90% accuracy above the majority guess from {frac:.3f} of training" if frac is not None
                else f"no accuracy at any step ({why})" if why else "never reaches 90% accuracy above the majority guess")
        out.append(f"{fp}: {when}" + (
            f"; its target is its clusters, and its label-free verdict at the final step is '{t['verdict']}', not a "
            "candidate deep difference: clusters that may be initialization noise, not a basin to select."
            if t.get("deep") is False else
            "; its target is the candidate basins of its own analysis (no stored report's analysis of it covered these "
            "models at their final step): this report's verdict of it may differ." if t.get("deep") and t.get("from") == "alone" else "."))
    if stored.get("families_known") is False:
        out.append("The folds kept no init families together: relatives on both sides of a fold make early forecasts "
                   "look better than they are (fingerprint forecast --lineage COLUMN).")
    if report_lineage and stored.get("lineage") and stored["lineage"] != report_lineage:
        out.append(f"The forecast kept families by '{stored['lineage']}'; this report's lineage is '{report_lineage}' "
                   f"(fingerprint forecast --lineage {report_lineage} to match).")
    if stored.get("steps_left_out"):
        out.append(f"Steps left out (fewer than half of the models have them): {', '.join(map(str, stored['steps_left_out']))}.")
    if len(stored.get("final_steps") or []) > 1:
        out.append(f"The models end at different steps ({', '.join(map(str, stored['final_steps']))}): fractions are of "
                   f"step {stored.get('final_step')}, the most common end.")
    return out
