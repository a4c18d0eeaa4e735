"""Goodhart under two pressures: selecting models by a basin detector, and training against it.

A *detector* of basin B is a linear probe (standardise + logistic regression, B against the rest)
on a fingerprint, fit on a part of the init families and calibrated by Platt scaling on its
out-of-fold scores there (folds keep a family together), so that its 0.5 means even odds. Folded
into one linear map of the raw fingerprint (``logit = x @ coef + intercept``), it is also what a
caller differentiates to train models against it.

*Selection pressure* keeps the held-out models the detector finds most B-like (the top 50%, 20%,
5%, 1%, ...): per fraction, the true purity in B and the share that only *looks* like B (the
detector says B, the truth says otherwise). *Optimization pressure* (the caller trains the models,
at increasing penalty weight lambda) is scored here from its outcome: the share the detector calls
B, the share truly B, and the share that evades it (called B, not B). Every share comes with a 95%
interval from a bootstrap over held-out init families (:func:`analysis.resampling.family_bootstrap`).

Arrays in, dataclasses out.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from analysis.errors import AnalysisError, choices
from analysis.intervals import proportion_interval
from analysis.metrics import linear_probe
from analysis.resampling import family_bootstrap

KEEPS = (1.0, 0.5, 0.2, 0.05, 0.01)  # the selection fractions always reported (1.0: no selection, the base rate)
FINER = (0.005, 0.002, 0.001)  # reported too when the held-out models number at least 1 / fraction
N_SPLITS = 5  # folds of the detector's calibration (fewer with fewer families or B models)
Interval = tuple[float, float] | None


@dataclass(frozen=True)
class Detector:
    """A calibrated linear detector of ``basin`` on raw fingerprint rows ``x [n, d]``:
    ``logit = x @ coef + intercept``, ``p(B) = sigmoid(logit)``; it says B where ``logit > 0``.

    ``cv_auroc`` is the out-of-fold AUROC on the fit families (``None`` when they cannot be
    cross-validated, and then ``calibrated`` is False: the probe's own probabilities are used)."""

    basin: str
    coef: np.ndarray  # [d]
    intercept: float
    cv_auroc: float | None
    calibrated: bool

    def logit(self, x: np.ndarray) -> np.ndarray:
        """``[n]`` log-odds of B for rows ``x [n, d]``."""
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def says(self, x: np.ndarray) -> np.ndarray:
        """``[n]`` bool: the detector calls the model B (probability above 0.5)."""
        return self.logit(x) > 0


@dataclass(frozen=True)
class SelectionPoint:
    """One selection strength: the top ``keep`` of the held-out models by the detector's score."""

    keep: float
    n_selected: int
    purity: float  # share of the selected truly in B
    purity_ci: Interval
    looks_only: float  # share of the selected the detector calls B that are not B
    looks_only_ci: Interval
    detector_says: float  # share of the selected the detector calls B


@dataclass(frozen=True)
class PressurePoint:
    """One optimization strength ``lam`` (the penalty weight): shares among the ``n_models`` trained
    models that did not diverge (``n_diverged`` did)."""

    lam: float
    n_models: int
    n_diverged: int
    detector_says: float | None
    detector_says_ci: Interval
    truly: float | None
    truly_ci: Interval
    evasion: float | None  # called B but not B
    evasion_ci: Interval

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"lambda": d.pop("lam"), **d}


def split_families(labels: Sequence, basin: str, family: Sequence, fit_fraction: float = 0.5,
                   random_state: int = 0) -> np.ndarray:
    """``[n]`` bool, True for the models whose init family fits the detector (about ``fit_fraction``
    of the models; a family is never on both sides; stratified so both sides hold B and not-B)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < fit_fraction < 1:
        raise AnalysisError(f"the detector's share of the families must be in (0, 1), got {fit_fraction}")
    y = np.asarray([str(v) == basin for v in labels])
    fam = np.asarray([str(v) for v in family], dtype=object)
    n_fam = len(set(fam.tolist()))
    folds = max(2, round(1 / (1 - fit_fraction)))
    if n_fam < folds:
        raise AnalysisError(f"{n_fam} init families cannot be split into a detector's and held-out ones "
                            f"({folds} needed; train more seeds)")
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer members of a class than folds: still a valid split
        fit, _ = next(cv.split(np.zeros(len(y)), y, fam))
    mask = np.zeros(len(y), bool)
    mask[fit] = True
    return mask


def fit_detector(features: np.ndarray, labels: Sequence, basin: str, family: Sequence, random_state: int = 0,
                 min_class: int = 2) -> Detector:
    """Fit the detector of ``basin`` on ``features [n, d]`` (the fit families' rows), with ``labels
    [n]`` and init ``family [n]``; see the module docstring. Needs ``min_class`` models in B and out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    x = np.asarray(features, dtype=np.float64)
    lab = np.asarray([str(v) for v in labels], dtype=object)
    fam = np.asarray([str(v) for v in family], dtype=object)
    if x.ndim != 2 or len(x) != len(lab) or len(lab) != len(fam):
        raise AnalysisError(f"features must be [n_models, d] with one label and family per model; got "
                            f"{list(x.shape)}, {len(lab)} and {len(fam)}")
    if not np.isfinite(x).all():
        raise AnalysisError("features hold NaN or infinite values")
    if basin not in set(lab.tolist()):
        raise AnalysisError(f"no model of the detector's families is in basin {basin!r} (their basins: {choices(lab)})")
    y = (lab == basin).astype(int)
    if min(y.sum(), len(y) - y.sum()) < min_class:
        raise AnalysisError(f"the detector's families hold {y.sum()} model(s) in {basin!r} and {len(y) - y.sum()} "
                            f"outside; it needs at least {min_class} of each ("
                            + ("every model is in it: a population of one basin has no other to tell it from)"
                               if y.sum() == len(y) else "train more seeds)"))
    probe = linear_probe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe.fit(x, y)
        scaler, lr = probe[0], probe[-1]
        w = lr.coef_[0] / scaler.scale_
        b = float(lr.intercept_[0] - w @ scaler.mean_)
        # every training fold must see both classes: at most as many folds as families holding each
        folds = int(min(N_SPLITS, len(set(fam[y == 1].tolist())), len(set(fam[y == 0].tolist()))))
        a, c, cv_auroc = 1.0, 0.0, None
        if folds >= 2:
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=random_state)
            try:
                z = cross_val_predict(linear_probe(), x, y, cv=cv, groups=fam, method="decision_function")
            except ValueError:  # a fold with one class after all (families holding both): left uncalibrated
                folds = 0
            else:
                cv_auroc = float(roc_auc_score(y, z))
                platt = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y)
                # a detector no better than chance out of fold keeps its ranking, at (almost) the base rate's odds
                a, c = max(float(platt.coef_[0, 0]), 1e-3), float(platt.intercept_[0])
    return Detector(basin=basin, coef=a * w, intercept=a * b + c, cv_auroc=cv_auroc, calibrated=folds >= 2)


def keep_fractions(n: int, keeps: Sequence[float] | None = None) -> list[float]:
    """The selection fractions for ``n`` held-out models: ``keeps`` (default :data:`KEEPS`), plus the
    finer :data:`FINER` ones that still keep at least one model."""
    if keeps is not None:
        bad = [k for k in keeps if not 0 < k <= 1]
        if bad:
            raise AnalysisError(f"keep fractions must be in (0, 1], got {bad[0]}")
        return sorted(set(float(k) for k in keeps), reverse=True)
    return list(KEEPS) + [k for k in FINER if k * n >= 1]


def _n_keep(keep: float, n: int) -> int:
    return max(1, min(n, int(math.floor(keep * n + 0.5))))


def selection_curve(score: np.ndarray, says: np.ndarray, truly: np.ndarray, family: Sequence,
                    keeps: Sequence[float], n_boot: int = 200, random_state: int = 0) -> list[SelectionPoint]:
    """Keep the top ``keep`` of the models by ``score [n]`` (the detector's log-odds; at least one
    model, ties to the earlier row), for every fraction in ``keeps``; ``says [n]`` and ``truly [n]``
    are bools (detector calls B; truly B). Intervals redo the selection on each family resample."""
    score, says, truly = np.asarray(score, float), np.asarray(says, bool), np.asarray(truly, bool)
    fam = np.asarray([str(v) for v in family], dtype=object)

    def pick(rows: np.ndarray, keep: float) -> np.ndarray:
        order = rows[np.argsort(-score[rows], kind="stable")]
        return order[: _n_keep(keep, len(rows))]

    out = []
    everyone = np.arange(len(score))
    for keep in keeps:
        sel = pick(everyone, keep)
        purity = lambda r, _d, k=keep: float(truly[pick(r, k)].mean())  # noqa: E731
        looks = lambda r, _d, k=keep: float((says & ~truly)[pick(r, k)].mean())  # noqa: E731
        out.append(SelectionPoint(
            keep=float(keep), n_selected=len(sel), purity=float(truly[sel].mean()),
            purity_ci=family_bootstrap(purity, fam, n_boot=n_boot, random_state=random_state),
            looks_only=float((says & ~truly)[sel].mean()),
            looks_only_ci=family_bootstrap(looks, fam, n_boot=n_boot, random_state=random_state),
            detector_says=float(says[sel].mean())))
    return out


def pressure_point(lam: float, says: np.ndarray, truly: np.ndarray, family: Sequence, diverged: np.ndarray | None = None
                   ) -> PressurePoint:
    """The outcome of training at penalty weight ``lam``: per model ``says [n]`` (the detector calls it
    B), ``truly [n]`` (the task's diagnostics say B), ``diverged [n]`` (left out of every share). Each
    share's 95% interval: :func:`analysis.intervals.proportion_interval` over ``family [n]``."""
    says, truly = np.asarray(says, bool), np.asarray(truly, bool)
    ok = np.ones(len(says), bool) if diverged is None else ~np.asarray(diverged, bool)
    fam = np.asarray([str(v) for v in family], dtype=object)[ok]
    s, t = says[ok], truly[ok]

    def share(v: np.ndarray) -> tuple[float | None, Interval]:
        # a share of models: Jeffreys' interval at the families' effective number of models (a bootstrap of
        # 0/1 outcomes read "evasion 0% [0%, 0%]" where no model evaded: 0 of 32 is not certainty)
        if not len(v):
            return None, None
        return float(v.mean()), proportion_interval(v.astype(float), fam)

    (ds, ds_ci), (tr, tr_ci), (ev, ev_ci) = share(s), share(t), share(s & ~t)
    return PressurePoint(lam=float(lam), n_models=int(ok.sum()), n_diverged=int((~ok).sum()), detector_says=ds,
                         detector_says_ci=ds_ci, truly=tr, truly_ci=tr_ci, evasion=ev, evasion_ci=ev_ci)


def heldout_auroc(score: np.ndarray, truly: np.ndarray) -> float | None:
    """AUROC of the detector's scores ``[n]`` for ``truly [n]`` (``None`` with one class only)."""
    from sklearn.metrics import roc_auc_score

    truly = np.asarray(truly, bool)
    if truly.all() or not truly.any():
        return None
    return float(roc_auc_score(truly, np.asarray(score, float)))
