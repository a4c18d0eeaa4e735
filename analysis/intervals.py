"""Intervals of shares and of AUROCs over init families, from an effective number of models.

A family bootstrap of 0/1 outcomes, or of an AUROC, collapses where every model is right (or every
pair ranked right): it reads ``[1, 1]`` whatever the number of families. These intervals instead
take a small-sample interval of the statistic (Jeffreys' for a share, Newcombe's for an AUROC) at an
effective number of models: the models over the design effect of their families (the clustered
variance over the independent one, at least 1, as Korn & Graubard 1998 take it for clustered
samples) and over ``inflate``, what the outcomes do not show (cross-validated predictions' overlapping
folds: :func:`cv_widen`). ``scripts/forecast_interval_coverage.py`` measures their
coverage against the bootstraps' (docs/results.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from analysis.resampling import MIN_FAMILIES, family_codes


def cv_widen(folds: int) -> float:
    """How many times the standard error of a ``folds``-fold cross-validated accuracy is to be taken
    beyond that of its predictions held fixed: ``sqrt(1 + folds / (folds - 1))`` (1.5 at 5 folds).
    Nadeau & Bengio's (2003) correction of a cross-validated estimate's variance, ``(1/J +
    n_test/n_train)`` times a split's instead of ``1/J``: the folds' training sets overlap, so their
    errors are correlated, and holding the predictions fixed leaves out how the classifier would
    change with other training families (an outside audit, 67: the spread across populations was
    about 1.5 times the fixed-prediction interval)."""
    return float(np.sqrt(1.0 + folds / (folds - 1.0)))


def proportion_interval(hits: Sequence[float], family: Sequence | None = None, level: float = 0.95,
                        inflate: float = 1.0, min_families: int = MIN_FAMILIES, shared_deff: float = 1.0
                        ) -> tuple[float, float] | None:
    """A ``level`` interval of the share of ``hits [n]`` (0/1) among models of init families ``family [n]``
    (``None``: every model its own): Jeffreys' interval (the quantiles of ``Beta(x + 1/2, n* - x + 1/2)``,
    Brown, Cai & DasGupta 2001) at an effective number of models ``n*`` and ``x = share * n*``
    hits, as Korn & Graubard (1998) do for clustered samples. ``None`` below ``min_families`` families.

    ``n* = n / (deff * inflate)``. ``deff``, the design effect of relatives, is the
    family-clustered (CR1) variance of the share over the binomial one: about 1 when relatives'
    hits are independent, up to the family size when a family is right or wrong as one. It is at
    least 1, as Korn & Graubard take it, so relatives never count for more than independent models:
    a clustered variance below the binomial one (every family with the same mix of hits, as when a
    data seed decides the basin in each family alike, or a family exactly half right at step 0) is
    as likely an accident of few families as a property, and a review measured intervals narrower
    than the binomial one's with the floor at one over the family size. Where every hit is 1 (or 0)
    the hits cannot show how relatives share their fate, and it is 1 (Korn & Graubard's convention).
    ``shared_deff`` is a second floor at every share, for a caller who knows relatives share their fate
    at least that much (:func:`classes_design_effect` of the labels the hits score); a selection's shares give
    their rows' mean family size (:func:`fingerprint.selection.selection_intervals`: a few families' picks are a few
    draws; outside audit 124, review 126); the forecast's do not: measured, the true basins' design effect as a floor made the forecast's
    intervals 1.2-1.5 times wider where whole families share a basin, beyond what their coverage
    needed, and as a stand-in at the extremes only, one more right model lowered the lower end
    (docs/results.md, "Every model right"). ``inflate`` multiplies
    the variance for what the hits do not show (a cross-validated accuracy's overlapping folds:
    :func:`cv_widen`). Unlike a bootstrap of 0/1 hits, which reads ``[1, 1]``
    when every model is right, it keeps a lower end below 1 that one more right model never lowers."""
    # deferred: the report's drawing process imports this module and must not load scipy.stats (test_parallel)
    from scipy.stats import beta

    hits = np.asarray(hits, dtype=float)
    codes = family_codes(range(len(hits)) if family is None else family)[0]
    sums, sizes = np.bincount(codes, weights=hits), np.bincount(codes).astype(float)
    f, n = len(sizes), float(len(hits))
    if f < max(min_families, 2):
        return None
    p = float(hits.mean())
    deff = max(1.0, float(shared_deff))
    if 0.0 < p < 1.0:
        clustered = f / (f - 1) * float(((sums - p * sizes) ** 2).sum()) / n**2
        deff = max(deff, clustered / (p * (1 - p) / n))
    n_eff = n / (deff * inflate)
    x, a = p * n_eff, (1 - level) / 2
    lo = 0.0 if p == 0.0 else float(beta.ppf(a, x + 0.5, n_eff - x + 0.5))
    hi = 1.0 if p == 1.0 else float(beta.ppf(1 - a, x + 0.5, n_eff - x + 0.5))
    return min(lo, p), max(hi, p)


def _design_effect(influence: np.ndarray, codes: np.ndarray) -> float:
    """The family-clustered (CR1) variance of a statistic whose linear influence of each model is
    ``influence [n]`` over its variance with every model its own family, at least 1 (1 where the
    influences are all 0: the data cannot tell how relatives share their fate)."""
    n, f = len(influence), int(codes.max(initial=-1)) + 1
    if n < 2 or f < 2:  # one model, or one family: nothing to compare
        return 1.0
    alone = n / (n - 1) * float((influence**2).sum())
    if alone <= 0.0:
        return 1.0
    sums = np.bincount(codes, weights=influence, minlength=f)
    return max(1.0, f / (f - 1) * float((sums**2).sum()) / alone)


def classes_design_effect(classes: Sequence, family: Sequence) -> float:
    """The largest design effect of one class's indicator among models of init families ``family [n]``,
    over the values of ``classes [n]``: the families' mean size ``sum(m^2) / sum(m)`` (its most, a
    family's models as one draw) when each family holds one class, 1 when every family holds the
    classes in the population's mix (at least 1; 1 for one model or one family)."""
    labels = np.asarray([str(v) for v in classes])
    if len(labels) < 2:
        return 1.0
    codes = family_codes(family)[0]
    sizes = np.bincount(codes).astype(float)
    most = float((sizes**2).sum() / sizes.sum())  # the small-sample corrections may overshoot it
    return min(most, max([1.0] + [_design_effect((labels == c) - np.mean(labels == c), codes) for c in np.unique(labels)]))


def _one_vs_rest(positive: np.ndarray, score: np.ndarray) -> tuple[float, np.ndarray]:
    """The AUROC of ``score [n]`` for boolean ``positive [n]`` (ties count half) and each model's
    linear influence on it ``[n]``: DeLong's placement of the model among the other class, less the
    AUROC, over its class's size (DeLong, DeLong & Clarke-Pearson 1988)."""
    # deferred: the report's drawing process imports the modules that use this one and must not load scipy.stats
    from scipy.stats import rankdata

    m, k = int(positive.sum()), int((~positive).sum())
    r = rankdata(score)
    auc = float((r[positive].sum() - m * (m + 1) / 2) / (m * k))
    own = np.empty(len(score))
    own[positive], own[~positive] = rankdata(score[positive]), rankdata(score[~positive])
    placed = np.where(positive, (r - own) / k, 1.0 - (r - own) / m)  # negatives below a positive; positives above a negative
    return auc, np.where(positive, (placed - auc) / m, (placed - auc) / k)


def newcombe_interval(auc: float, m: float, k: float, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's (2006, method 5) ``level`` interval of an AUROC ``auc`` from ``m`` positives and
    ``k`` negatives (possibly effective, fractional): the ``t`` with ``(t - auc)^2 = z^2 V(t)``, ``V``
    Hanley & McNeil's (1982) variance at ``t`` with both sizes ``N* = (m + k) / 2``. It stays inside
    [0, 1] and does not collapse at an AUROC of 0 or 1."""
    z2 = NormalDist().inv_cdf(0.5 + level / 2) ** 2
    ns = max(1.0, (m + k) / 2)

    def gap(t: float) -> float:  # negative between the interval's ends
        var = t * (1 - t) / (m * k) * (1 + (ns - 1) * ((1 - t) / (2 - t) + t / (1 + t)))
        return (t - auc) ** 2 - z2 * var

    def root(outside: float, inside: float) -> float:  # gap(outside) >= 0 > gap(inside)
        for _ in range(60):
            mid = (outside + inside) / 2
            outside, inside = (mid, inside) if gap(mid) >= 0 else (outside, mid)
        return (outside + inside) / 2

    edge = 1e-12  # gap is 0 at an AUROC of 0 or 1 itself: the other end starts just inside
    lo = 0.0 if auc <= 0.0 else root(0.0, min(auc, 1.0 - edge))
    hi = 1.0 if auc >= 1.0 else root(1.0, max(auc, edge))
    return min(lo, auc), max(hi, auc)


def auroc_interval(y: Sequence[int], p: np.ndarray, family: Sequence | None = None, level: float = 0.95,
                   inflate: float = 1.0, min_families: int = MIN_FAMILIES) -> tuple[float, float] | None:
    """A ``level`` interval of the AUROC of probabilities ``p [n, n_classes]`` for class codes
    ``y [n]`` (``-1``: a class the probabilities do not know, a negative for every class) among models
    of init families ``family [n]`` (``None``: every model its own). Two classes: the AUROC of
    ``p[:, 1]``; more: the macro mean over the classes present with both a positive and a negative.

    :func:`newcombe_interval` at effective sizes, each class's count over ``deff * inflate``:
    ``deff`` from the models' DeLong influences on the (macro) AUROC, clustered by family against
    not; where they are all 0 (every pair ranked alike: an AUROC of 0 or 1), the design effect of the
    classes themselves, so that classes held by whole families count each family about once. With
    more than two classes it uses the sizes of the class with the fewest pairs, so that it is at
    least as wide as the widest class's (the mean of correlated AUROCs varies no more than its most
    variable one). ``None`` below ``min_families`` families or with no such class."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    codes = family_codes(range(len(y)) if family is None else family)[0]
    if int(codes.max(initial=-1)) + 1 < max(min_families, 2):
        return None
    if p.shape[1] == 2 and set(np.unique(y).tolist()) <= {0, 1}:
        present, columns = [1], {1: p[:, 1]}
    else:
        present = [c for c in range(p.shape[1]) if (y == c).any() and (y != c).any()]
        columns = {c: p[:, c] for c in present}
    present = [c for c in present if (y == c).any() and (y != c).any()]
    if not present:
        return None
    parts = [_one_vs_rest(y == c, columns[c]) for c in present]
    auc = float(np.mean([a for a, _ in parts]))
    influence = np.mean([psi for _, psi in parts], axis=0)
    deff = _design_effect(influence, codes)
    if not influence.any():  # every pair ranked alike (an AUROC of 0 or 1): the scores cannot tell how relatives
        # share their fate, but the classes can: a class held by whole families counts each family about once
        # (a review: 4 families of 50, each one class, read [0.95, 1.00] as 200 independent models)
        deff = max([deff] + [_design_effect((y == c) - np.mean(y == c), codes) for c in present])
    pos = min(present, key=lambda c: int((y == c).sum()) * int((y != c).sum()))
    shrink = deff * inflate
    return newcombe_interval(auc, (y == pos).sum() / shrink, (y != pos).sum() / shrink, level)
