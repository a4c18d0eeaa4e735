"""Agreement scores in numpy: AMI, ARI and AUROC for the hot paths.

The bootstrap and the permutation tests score thousands of resampled labellings per fingerprint;
scikit-learn's ``adjusted_mutual_info_score``, ``adjusted_rand_score`` and ``roc_auc_score`` spent
most of each call validating their inputs (about 2 ms a call for 100 models). These are the same
formulas (scikit-learn's, including its special cases and its arithmetic-mean normaliser) on
integer codes, with the contingency table from ``np.bincount`` and the expected mutual information
summed in one vectorized pass instead of a loop over cells; ``tests/analysis/test_agreement.py``
checks them against scikit-learn within 1e-12.

The batched forms score many resampled labellings at once for the family bootstraps and the
permutation tests (:mod:`analysis.calibration`): :func:`ami_tables` takes a stack of contingency
tables ``[B, R, C]`` (a sample's table is a sum of its families' tables, or one ``bincount`` over
all permutations), :func:`auroc_weighted` the models' multiplicities ``[B, n]`` in each sample,
:func:`ari_pairs` every pair of the clustering bootstrap's replicates (bit for bit :func:`ari`'s).
The others compute what :func:`ami` and :func:`auroc` give for each sample's labellings (the same
formulas; only the order of some sums differs), checked within 1e-12 by
``tests/analysis/test_batched_stats.py``.
"""

from __future__ import annotations

from math import log

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata

_EPS = np.finfo(np.float64).eps
TABLE_CELLS = 1 << 16  # contingency-table cells :func:`ami_tables` scores at once (bounds its memory)
EMI_TERMS = 1 << 18  # terms of the expected mutual information summed at once (one table's may be more)


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


def ari_pairs(labels: np.ndarray, pairs: np.ndarray, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ari` of rows ``i`` and ``j`` of ``labels [R, n]`` (codes ``0..k-1``; ``-1``: the model is
    not in that row) on the models both hold, for every pair ``(i, j)`` of ``pairs [P, 2]``: ARIs
    ``[P]`` and the numbers of shared models ``[P]`` (the ARI is 1.0 where fewer than two are shared).
    Equal to :func:`ari` of each pair alone: the same integer counts, then the same float formula.
    The pair counts are int64 (:func:`ari` uses Python ints): their products stay exact below about
    50,000 shared models (the bootstrap's replicates hold at most 5,000)."""
    labels = np.asarray(labels, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    n = labels.shape[1]
    k = int(labels.max()) + 1 if labels.size else 1
    out, shared = np.ones(len(pairs)), np.zeros(len(pairs), np.int64)
    step = max(1, chunk // max(n, k * k, 1))  # pairs per block: bounded memory for many models or clusters
    for s in range(0, len(pairs), step):
        a, b = labels[pairs[s : s + step, 0]], labels[pairs[s : s + step, 1]]
        both = (a >= 0) & (b >= 0)
        p = len(a)
        cell = np.where(both, np.arange(p)[:, None] * (k * k) + a * k + b, p * k * k)
        c = np.bincount(cell.ravel(), minlength=p * k * k + 1)[:-1].reshape(p, k, k)
        m = both.sum(1)
        n_c, n_k = c.sum(2), c.sum(1)
        sq = (c * c).sum((1, 2))
        fp = np.einsum("pij,pj->p", c, n_k) - sq
        fn = np.einsum("pij,pi->p", c, n_c) - sq
        tp, tn = sq - m, m * m - fp - fn - sq
        perfect = (fn == 0) & (fp == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            v = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
        out[s : s + step] = np.where(perfect, 1.0, v)
        shared[s : s + step] = m
    return out, shared


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


# -- batched: many resampled labellings at once --------------------------------------------------
def ami_tables(c: np.ndarray) -> np.ndarray:
    """:func:`ami` of each labelling pair counted by the contingency tables ``c [B, R, C]`` (integer
    counts, rows the first labelling's values in sorted order; empty rows and columns are values that
    do not occur, dropped as a recoding would): ``[B]``. The cells are computed for all tables at
    once; each table's sums then run over its own cells in :func:`ami`'s order (pairwise, as
    ``np.sum``), so the values equal :func:`ami`'s (bit for bit where they were checked)."""
    c = np.asarray(c)
    if c.ndim != 3:
        raise ValueError(f"contingency tables must be [B, R, C], got shape {c.shape}")
    step = max(1, TABLE_CELLS // max(c.shape[1] * c.shape[2], 1))
    if len(c) > step:  # in chunks of tables: the expected mutual information's flat pass grows with the cells
        return np.concatenate([ami_tables(c[i : i + step]) for i in range(0, len(c), step)])
    c = c.astype(np.int64)
    a, b = c.sum(2), c.sum(1)  # [B, R], [B, C]
    n = a.sum(1)  # [B]
    ka, kb = (a > 0).sum(1), (b > 0).sum(1)
    out = np.zeros(c.shape[0])
    out[(ka == kb) & (ka <= 1)] = 1.0  # one value each (or no models): identical labellings
    go = np.flatnonzero((ka > 1) & (kb > 1))
    if not go.size:
        return out
    c, a, b, n = c[go], a[go], b[go], n[go]
    logn = np.array([log(v) for v in n.tolist()])  # math.log, as the scalar functions use
    # mutual information: the non-empty cells of every table, in row-major order
    s, i, j = np.nonzero(c)
    nz = c[s, i, j].astype(np.float64)
    nm = nz / n[s]
    outer = a[s, i] * b[s, j]
    cell = nm * (np.log(nz) - logn[s]) + nm * (-np.log(outer) + logn[s] + logn[s])
    cell = np.where(np.abs(cell) < _EPS, 0.0, cell)
    mi = np.clip(_segment_sums(cell, np.bincount(s, minlength=len(go))), 0.0, None)
    emi = _expected_mutual_info_batch(a, b, n, logn)
    norm = (_entropy_rows(a, n, logn) + _entropy_rows(b, n, logn)) / 2
    den = norm - emi
    den = np.where(den < 0, np.minimum(den, -_EPS), np.maximum(den, _EPS))
    num = mi - emi
    num = np.where(num < 0, np.minimum(num, -_EPS), np.maximum(num, _EPS))
    out[go] = num / den
    return out


def _segment_sums(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``values`` cut into consecutive segments of ``lengths [B]``, each summed by ``np.sum`` (pairwise,
    as the scalar functions sum one table's terms): ``[B]``."""
    return np.array([seg.sum() for seg in np.split(values, np.cumsum(lengths)[:-1])], dtype=np.float64)


def _entropy_rows(counts: np.ndarray, n: np.ndarray, logn: np.ndarray) -> np.ndarray:
    """:func:`_entropy` of each row of ``counts [B, k]`` (zeros ignored) whose totals are ``n [B]``
    (``logn [B]`` their logs)."""
    r, k = np.nonzero(counts)
    pi = counts[r, k].astype(np.float64)
    lengths = np.bincount(r, minlength=len(counts))
    h = -_segment_sums((pi / n[r]) * (np.log(pi) - logn[r]), lengths)
    return np.where(lengths == 1, 0.0, h)


def _expected_mutual_info_batch(a: np.ndarray, b: np.ndarray, n: np.ndarray, logn: np.ndarray) -> np.ndarray:
    """:func:`_expected_mutual_info` of each table's marginals ``a [B, R]``, ``b [B, C]`` and size
    ``n [B]`` (``logn [B]`` its log; empty rows and columns have no feasible counts and add nothing):
    every table, cell and feasible count in one flat pass, summed per table."""
    bsz, r, k = a.shape[0], a.shape[1], b.shape[1]
    nn = n[:, None, None]
    ai, bj = a[:, :, None], b[:, None, :]
    start = np.maximum(1, ai - nn + bj).ravel()
    end = (np.minimum(ai, bj) + 1).ravel()
    length = np.maximum(end - start, 0)
    total = int(length.sum())
    if not total:
        return np.zeros(bsz)
    per_table = length.reshape(bsz, -1).sum(1)
    if bsz > 1 and total > EMI_TERMS:  # in runs of tables of at most EMI_TERMS terms (or one table): memory
        cuts, acc = [0], 0
        for t, m in enumerate(per_table.tolist()):
            if acc and acc + m > EMI_TERMS:
                cuts.append(t)
                acc = 0
            acc += m
        cuts.append(bsz)
        return np.concatenate([_expected_mutual_info_batch(a[i:j], b[i:j], n[i:j], logn[i:j])
                               for i, j in zip(cuts[:-1], cuts[1:])])
    cell = np.repeat(np.arange(bsz * r * k), length)
    nij = start[cell] + np.arange(total) - np.repeat(np.cumsum(length) - length, length)
    s, rest = cell // (r * k), cell % (r * k)
    ai, bj, ns = a[s, rest // k], b[s, rest % k], n[s]
    lg = gammaln(np.arange(int(n.max()) + 2, dtype=np.float64))  # lg[m] = gammaln(m), each value once
    term2 = logn[s] + np.log(nij) - np.log(ai) - np.log(bj)
    gln = (lg[ai + 1] + lg[bj + 1] + lg[ns - ai + 1] + lg[ns - bj + 1] - lg[nij + 1] - lg[ns + 1]
           - lg[ai - nij + 1] - lg[bj - nij + 1] - lg[ns - ai - bj + nij + 1])
    return _segment_sums(nij / ns * term2 * np.exp(gln), per_table)


def binary_auroc_weighted(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`binary_auroc` of each sample that holds model ``i`` ``w[s, i]`` times (``y [n]`` 0/1
    or boolean, ``score [n]``, integer multiplicities ``w [B, n]``): ``[B]``, NaN where a sample lacks
    a class. The Mann-Whitney count (pairs ranked right, ties half) equals the rank sum's, exactly."""
    y = np.asarray(y).astype(bool)
    w = np.asarray(w, dtype=np.float64)
    if not y.size:
        return np.full(len(w), np.nan)
    order = np.argsort(np.asarray(score), kind="stable")  # models by score; tied scores make one group
    s = np.asarray(score)[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    pos_g = np.add.reduceat((w * y)[:, order], starts, axis=1)  # [B, G]: positives' weight at each score (exact)
    neg_g = np.add.reduceat((w * ~y)[:, order], starts, axis=1)
    below = np.cumsum(neg_g, 1) - neg_g  # negatives' weight strictly below each score
    u = (pos_g * (below + 0.5 * neg_g)).sum(1)
    pos, neg = pos_g.sum(1), neg_g.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def auroc_weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`auroc` of class codes ``y [n]`` against ``p [n, k]`` in each sample of multiplicities
    ``w [B, n]``: ``[B]``, NaN where a sample lacks one of the ``k`` classes."""
    y = np.asarray(y)
    w = np.asarray(w, dtype=np.float64)
    k = p.shape[1]
    present = np.stack([(w[:, y == c] > 0).any(1) for c in range(k)], 1).all(1) if k else np.zeros(len(w), bool)
    if k == 2:
        out = binary_auroc_weighted(y == 1, p[:, 1], w)
    else:
        out = binary_auroc_weighted(y == 0, p[:, 0], w)
        for c in range(1, k):
            out = out + binary_auroc_weighted(y == c, p[:, c], w)
        out = out / k
    return np.where(present, out, np.nan)
