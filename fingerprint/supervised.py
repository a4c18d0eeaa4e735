"""Supervised baselines scored on held-out init families, with their FLOPs.

A supervised detector (a weight-space classifier, learned probe inputs, a linear readout of a
fingerprint) is only evidence about *unseen* models if no model of the same init family was seen in
training: two data orders of one init seed share most of their weights' structure, so a split by
model would let the classifier recognise relatives instead of the algorithm. Here every model is
scored by a classifier fitted on the other families only (``StratifiedGroupKFold`` over families),
the pooled out-of-fold scores give one AUROC, and its 95% interval counts whole families
(:func:`family_auroc`: Newcombe's interval at the families' effective number of models). FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
around fit and score (matrix products and convolutions only: elementwise work is not counted).

A method follows a small scikit-learn-like contract: parameters in ``__init__``, ``fit(X, y)`` with
``X`` indexable along axis 0 (a tensor ``[n, ...]``) and ``y [n]`` in {0, 1}, and
``decision_function(X) -> [n]`` (higher: class 1). :class:`LinearReadout` is the simplest one.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from analysis.agreement import binary_auroc
from analysis.intervals import auroc_interval, cv_widen
from training.core.errors import UserError

__all__ = ["HeldOut", "LinearReadout", "count_flops", "evaluate", "family_auroc", "family_folds"]


def family_folds(y: np.ndarray, groups: Sequence[Any], n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs ``([n_train], [n_test])`` where no family is on both sides.

    ``y [n]`` class codes (stratified as far as whole families allow), ``groups [n]`` the init
    family of each model. Every model is in exactly one test fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y)
    codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
    n_fam = int(codes.max()) + 1 if len(codes) else 0
    if n_splits < 2 or n_fam < n_splits:
        raise UserError(f"held-out-family folds need 2 <= n_splits <= the number of init families ({n_fam}), got {n_splits}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class with fewer families than folds: sklearn warns, still splits
        cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, codes)]


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC of ``s [n]`` for ``y [n]`` in {0, 1} (ties counted half); nan with one class."""
    y = np.asarray(y) == 1
    if y.all() or not y.any():
        return float("nan")
    return binary_auroc(y, s)


def family_auroc(y: np.ndarray, scores: np.ndarray, groups: Sequence[Any], folds: int = 0) -> tuple[float, float, float]:
    """AUROC of ``scores [n]`` for ``y [n]`` and its 95% interval over init families ``groups [n]``
    (:func:`analysis.intervals.auroc_interval`, widened for ``folds`` cross-validation folds' overlap
    when ``folds`` >= 2): ``(auroc, low, high)``; the interval is NaN below four families."""
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype=float)
    auc = _auroc(y, scores)
    ci = None if np.isnan(auc) else auroc_interval(y, np.c_[-scores, scores], groups,
                                                     inflate=cv_widen(folds) ** 2 if folds >= 2 else 1.0)
    lo, hi = ci if ci is not None else (float("nan"), float("nan"))
    return auc, float(lo), float(hi)


def count_flops(fn, *args, **kwargs) -> tuple[Any, int]:
    """``fn(*args, **kwargs)`` and the FLOPs torch counted while it ran (forward and backward)."""
    with FlopCounterMode(display=False) as fc:
        out = fn(*args, **kwargs)
    return out, int(fc.get_total_flops())


@dataclass
class HeldOut:
    """A method's held-out-family result: ``scores [n]`` out of fold, AUROC with its 95% interval over
    init families (:func:`family_auroc`), and FLOPs summed over the folds (``train_flops``: every fit; ``eval_flops``:
    scoring every held-out model once)."""

    auroc: float
    ci: tuple[float, float]
    scores: np.ndarray
    train_flops: int
    eval_flops: int
    n_models: int
    n_families: int
    n_splits: int
    fold_auroc: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"auroc": round(self.auroc, 4), "ci": [round(c, 4) for c in self.ci], "train_flops": self.train_flops,
                "eval_flops": self.eval_flops, "n_models": self.n_models, "n_families": self.n_families,
                "n_splits": self.n_splits, "fold_auroc": [round(a, 4) for a in self.fold_auroc]}


def _take(X: Any, idx: np.ndarray) -> Any:
    return X[torch.as_tensor(idx)] if isinstance(X, torch.Tensor) else X[idx]


def evaluate(method: Any, X: Any, y: np.ndarray, groups: Sequence[Any], n_splits: int = 5, seed: int = 0) -> HeldOut:
    """Fit a fresh copy of ``method`` on each fold's training families, score its held-out ones.

    ``X`` indexable along axis 0 (``[n, ...]``), ``y [n]`` in {0, 1}, ``groups [n]`` init families."""
    y = np.asarray(y).astype(int)
    scores = np.full(len(y), np.nan)
    train_flops = eval_flops = 0
    folds = family_folds(y, groups, n_splits, seed)
    fold_auroc = []
    for tr, te in folds:
        m = copy.deepcopy(method)
        _, f = count_flops(m.fit, _take(X, tr), y[tr])
        s, g = count_flops(m.decision_function, _take(X, te))
        scores[te] = np.asarray(s, dtype=float)
        train_flops += f
        eval_flops += g
        fold_auroc.append(_auroc(y[te], scores[te]))
    auc, lo, hi = family_auroc(y, scores, groups, len(folds))
    return HeldOut(auc, (lo, hi), scores, train_flops, eval_flops, len(y), len(set(map(str, groups))), len(folds), fold_auroc)


class LinearReadout:
    """L2-regularised logistic regression on standardised features ``X [n, ...]`` (flattened), in
    torch so that its FLOPs are counted like the other methods'."""

    def __init__(self, l2: float = 1e-2, steps: int = 300, lr: float = 0.1):
        self.l2, self.steps, self.lr = l2, steps, lr

    def fit(self, X: torch.Tensor, y: np.ndarray) -> "LinearReadout":
        X = torch.as_tensor(X, dtype=torch.float32).flatten(1)
        self.mean_, self.std_ = X.mean(0), X.std(0).clamp_min(1e-6)
        Z = (X - self.mean_) / self.std_
        t = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        w = torch.zeros(Z.shape[1], 1, requires_grad=True)  # 2-D: torch's counter skips matrix-vector products
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=self.lr, max_iter=self.steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits((Z @ w).squeeze(1) + b, t) + self.l2 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_, self.intercept_ = w.detach(), b.detach()
        return self

    def decision_function(self, X: torch.Tensor) -> np.ndarray:
        Z = (torch.as_tensor(X, dtype=torch.float32).flatten(1) - self.mean_) / self.std_
        return ((Z @ self.coef_).squeeze(1) + self.intercept_).numpy()
