"""Recorded training settings taken out of every fingerprint before it is analysed (``--covariate``).

A setting that differs between models (an optimizer, a batch size, a rate of label noise) makes real
camps that behavioural fingerprints find, and a sweep of independent seeds reads them as a candidate
deep difference (an outside audit, 91: Adam against SGD, one rule, "one candidate deep difference";
``--strata`` could not help, as it takes a column out *within* init families and every model was its
own family). With the setting recorded as a model column, ``--covariate COLUMN`` asks whether anything
beyond it differs: each fingerprint is replaced by its residuals from a least-squares fit of the
column, before the clustering, the maps and every test. A column of few values is taken out as
levels (each level's mean); a numeric column of many values (more than a quarter of the models'
count) as a linear trend, in the log of its values when they are positive and span a factor of
:data:`LOG_SPAN` or more (a learning rate drawn log-uniformly). A missing value is a level of its own
(of a trend: the mean, with an indicator). A distance fingerprint is first given classical-MDS
coordinates (at most :data:`MDS_DIMS`), which are then analysed as features.

The label-free tests see the residuals as data, and take the column as a design stratum too (its
part within init families drawn out of their null replicates as a data order's is; its part between
families is not drawn again). Measured (``scripts/covariate_calibration.py``, 200 Gaussian
populations a design, 12-48 independent models, 2-6 levels): with the fit, a raw groups or split p at
or below 0.05 in 1.0-3.5% of the nulls and of the populations whose only difference is the setting
(3 SDs; 84-100% without the fit), and a difference crossed with the setting found in 100%, its basins
AMI 1.00 with it (0.01-0.08 without the fit, whose camps were the setting's) (docs/scorecard.md,
"Taking a recorded setting out").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.errors import AnalysisError, choices
from analysis.metadata import column_kind, is_seed
from analysis.options import AnalysisOptions
from analysis.reduce import distance_to_features
from analysis.values import missing

__all__ = ["terms", "taken_out", "settings"]

LOG_SPAN = 10.0  # a positive trend column spanning this factor or more is fitted in the log of its values
MDS_DIMS = 200  # a distance fingerprint's classical-MDS coordinates, at most this many, are fitted
MIN_LEFT = 4  # the models a fit must leave beyond its terms and the mean (else nothing is left to compare)


def terms(column: np.ndarray, name: str = "") -> tuple[np.ndarray, str]:
    """The design ``[n, p]`` of one model ``column [n]`` (centred; without the mean) and how it is
    taken out, for people: ``"2 levels"``, ``"a linear trend in log(values)"``. A seed column's numbers
    (``name`` ending in ``seed``) are labels: levels, never a trend."""
    vals = np.asarray(column, dtype=object)
    n = len(vals)
    nums, present = column_kind(vals)
    if nums is not None and not is_seed(name) and len(np.unique(nums[present])) > max(2, n // 4):
        x, logged = nums.copy(), bool((nums[present] > 0).all() and nums[present].max() >= LOG_SPAN * nums[present].min())
        if logged:
            x[present] = np.log(x[present])
        x[~present] = x[present].mean()
        cols = [x] + ([(~present).astype(np.float64)] if (~present).any() else [])
        how = "a linear trend in " + ("log(values)" if logged else "its values") + (
            f" (and the {int((~present).sum())} models without a value apart)" if (~present).any() else "")
    else:
        strs = np.asarray(["\0missing" if missing(v) else str(v) for v in vals], dtype=object)
        levels = sorted(set(strs.tolist()))
        cols = [(strs == lev).astype(np.float64) for lev in levels[1:]]
        how = f"{len(levels)} levels"
    d = np.stack(cols, 1) if cols else np.zeros((n, 0))
    return d - d.mean(0), how


def _basis(columns: dict[str, np.ndarray]) -> np.ndarray:
    """An orthonormal basis ``[n, r]`` of the centred designs of ``columns`` (their rank)."""
    d = np.concatenate([terms(c, name)[0] for name, c in columns.items()], 1)
    if d.shape[1] == 0:
        return d
    u, sv, _ = np.linalg.svd(d, full_matrices=False)
    return u[:, sv > sv.max(initial=0.0) * max(d.shape) * np.finfo(float).eps]


def taken_out(values: np.ndarray, distances: bool, standardize: bool, columns: dict[str, np.ndarray]
              ) -> tuple[np.ndarray, bool, bool]:
    """``values`` (features ``[n, d]`` or distances ``[n, n]``) less their least-squares fit of the
    model ``columns`` (``{name: [n]}``): ``(residuals [n, d'], distances=False, standardize)``. A
    distance fingerprint becomes its classical-MDS coordinates first, not standardised after (their
    scale is the distances'); features keep their dtype and their ``standardize``."""
    q = _basis(columns)
    if distances:
        x = distance_to_features(values, min(len(values), MDS_DIMS))
        return x - q @ (q.T @ x), False, False
    x = np.asarray(values)
    fit = (q.astype(x.dtype) @ (q.T.astype(x.dtype) @ x)) if q.shape[1] else 0
    return x - fit, False, standardize


def settings(table: dict[str, np.ndarray], opts: AnalysisOptions) -> dict[str, Any]:
    """``{"covariate_terms": {column: how}}`` for the result's settings, after checking each
    ``--covariate`` column: known, not the lineage or the label, two values or more, and leaving at
    least :data:`MIN_LEFT` models beyond its terms. Raises :class:`AnalysisError` naming the culprit."""
    out: dict[str, str] = {}
    n = len(table["model_id"])
    for c in opts.covariates:
        if c not in table:
            raise AnalysisError(f"unknown model column '{c}' for --covariate (valid: {choices(table)})")
        if c in (opts.lineage, opts.label):
            which = "--lineage" if c == opts.lineage else "--label"
            raise AnalysisError(f"--covariate {c} is the {which} column: taking it out of the fingerprints leaves "
                                "nothing for it to be compared with; give a training setting's column")
        d, how = terms(table[c], c)
        if d.shape[1] == 0 or not np.abs(d).max(initial=0.0) > 0:
            raise AnalysisError(f"--covariate {c} has one value for every model: there is nothing to take out")
        out[c] = how
    if opts.covariates:
        rank = _basis({c: table[c] for c in opts.covariates}).shape[1]
        if n - 1 - rank < MIN_LEFT:
            cols = ", ".join(f"'{c}' ({out[c]})" for c in opts.covariates)
            raise AnalysisError(f"--covariate {cols}: {rank} terms for {n} models leave fewer than {MIN_LEFT} to compare "
                                "(a column with a value per model, such as an id, takes every model out); give a "
                                "column of few levels, or numbers, which are taken out as a linear trend")
    return {"covariate_terms": out}
