"""Agreement scores in numpy: AMI, ARI and AUROC for the hot paths.

The bootstrap and the permutation tests score thousands of resampled labellings per fingerprint;
scikit-learn's ``adjusted_mutual_info_score``, ``adjusted_rand_score`` and ``roc_auc_score`` spent
most of each call validating their inputs (about 2 ms a call for 100 models). These are the same
formulas (scikit-learn's, including its special cases and its arithmetic-mean normaliser) on
integer codes, with the contingency table from ``np.bincount`` and the expected mutual information
summed in one vectorized pass instead of a loop over cells; ``tests/analysis/test_agreement.py``
checks them against scikit-learn within 1e-12.
"""

from __future__ import annotations

from math import log

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata

_EPS = np.finfo(np.float64).eps


def codes(labels) -> np.ndarray:
    """Integer codes ``[n]`` (0..k-1, in sorted order of the values) of any labelling ``[n]``."""
    return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts ``[ka, kb]`` of the pairs of two code vectors ``[n]`` (codes from :func:`codes`)."""
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    return np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb)


def _entropy(counts: np.ndarray) -> float:
    pi = counts[counts > 0].astype(np.float64)
    if pi.size == 1:
        return 0.0
    s = pi.sum()
    return float(-np.sum((pi / s) * (np.log(pi) - log(s))))


def _mutual_info(c: np.ndarray) -> float:
    nzx, nzy = np.nonzero(c)
    nz = c[nzx, nzy].astype(np.float64)
    total = c.sum()
    pi, pj = c.sum(1), c.sum(0)
    if pi.size == 1 or pj.size == 1:
        return 0.0
    nm = nz / total
    outer = pi.take(nzx).astype(np.int64) * pj.take(nzy).astype(np.int64)
    log_outer = -np.log(outer) + log(pi.sum()) + log(pj.sum())
    mi = nm * (np.log(nz) - log(total)) + nm * log_outer
    mi = np.where(np.abs(mi) < _EPS, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def _expected_mutual_info(c: np.ndarray, n: int) -> float:
    """E[MI] under the hypergeometric model of the marginals of ``c`` (Vinh et al. 2010): every cell
    ``(i, j)`` and every feasible count ``nij`` of it at once."""
    a, b = c.sum(1).astype(np.int64), c.sum(0).astype(np.int64)
    if a.size == 1 or b.size == 1:
        return 0.0
    start = np.maximum(1, a[:, None] - n + b[None, :]).ravel()
    end = (np.minimum(a[:, None], b[None, :]) + 1).ravel()
    length = np.maximum(end - start, 0)
    cell = np.repeat(np.arange(a.size * b.size), length)
    nij = start[cell] + np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    i, j = cell // b.size, cell % b.size
    ai, bj = a[i], b[j]
    term2 = log(n) + np.log(nij) - np.log(ai) - np.log(bj)
    gln = (gammaln(ai + 1) + gammaln(bj + 1) + gammaln(n - ai + 1) + gammaln(n - bj + 1)
           - gammaln(nij + 1) - gammaln(n + 1) - gammaln(ai - nij + 1) - gammaln(bj - nij + 1)
           - gammaln(n - ai - bj + nij + 1))
    return float(np.sum(nij / n * term2 * np.exp(gln)))


def ami(true, pred) -> float:
    """Adjusted mutual information of two labellings ``[n]`` (arithmetic normaliser), as
    ``sklearn.metrics.adjusted_mutual_info_score(true, pred)``."""
    a, b = codes(true), codes(pred)
    n = a.size
    ka, kb = (int(a.max()) + 1, int(b.max()) + 1) if n else (0, 0)
    if ka == kb == 1 or ka == kb == 0:
        return 1.0
    if ka == 1 or kb == 1:
        return 0.0
    c = contingency(a, b)
    mi = _mutual_info(c)
    emi = _expected_mutual_info(c, n)
    norm = (_entropy(c.sum(1)) + _entropy(c.sum(0))) / 2
    den = norm - emi
    den = min(den, -_EPS) if den < 0 else max(den, _EPS)
    num = mi - emi
    num = min(num, -_EPS) if num < 0 else max(num, _EPS)
    return float(num / den)


def ari(true, pred) -> float:
    """Adjusted Rand index of two labellings ``[n]``, as ``sklearn.metrics.adjusted_rand_score``."""
    a, b = codes(true), codes(pred)
    n = a.size
    if n == 0:
        return 1.0
    c = contingency(a, b).astype(np.int64)
    n_c, n_k = c.sum(1), c.sum(0)
    sq = int((c**2).sum())
    fp = int((c @ n_k).sum()) - sq
    fn = int((c.T @ n_c).sum()) - sq
    tp = sq - n
    tn = n * n - fp - fn - sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def binary_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC of 0/1 (or boolean) ``y [n]`` against ``score [n]`` (ties count half), as
    ``sklearn.metrics.roc_auc_score``; both classes must be present."""
    y = np.asarray(y).astype(bool)
    pos = int(y.sum())
    neg = y.size - pos
    r = rankdata(score)
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """AUROC of class codes ``y [n]`` (0..k-1, all present) against probabilities ``p [n, k]``:
    binary for k = 2, else the macro mean of one-vs-rest (scikit-learn's ``multi_class="ovr"``)."""
    if p.shape[1] == 2:
        return binary_auroc(y == 1, p[:, 1])
    return float(np.mean([binary_auroc(y == c, p[:, c]) for c in range(p.shape[1])]))
