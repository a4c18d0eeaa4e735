"""Does a fingerprint identify lineage? A calibrated test that replaces the raw 1-NN rate as the
scorecard's evidence that a fingerprint tracks initialization noise.

The statistic is a stratified ROC-AUC (a rank Mantel test between the fingerprint's distances and
"same init family"): inside each true basin, the probability that a pair of relatives is closer
than a pair of unrelated models (ties count half); 0.5 is chance, 1 means every relative is closer
than every non-relative. Unlike the 1-NN rate, which is about 1.00 for almost every fingerprint
(one close relative suffices), it weighs every pair, so a fingerprint whose relatives are merely
nearer than average scores well below one whose families are tight, separate clumps. Its null moves
members across families inside each basin (family sizes per basin kept: the null that the family a
model came from does not matter), so under it the count of relative pairs per basin is fixed and
the statistic is a sum of pair-distance ranks: each permutation costs one comparison per pair.
Above :data:`MAX_MODELS` models it runs on a fixed random sample of whole families.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from analysis.resampling import family_codes, family_sample

__all__ = ["MAX_MODELS", "LineageIdentification", "lineage_identification"]

MAX_MODELS = 1000  # pairs grow as n^2: above this many models, a random sample of whole families


@dataclass(frozen=True)
class LineageIdentification:
    """``auc``: P(a pair of relatives is closer than an unrelated pair of the same basin), or None
    when no basin has both kinds of pair; ``p_value``: one-sided, members permuted across families
    inside basins (None with ``n_perm = 0``); ``n_related`` / ``n_unrelated``: the pairs compared;
    ``sampled``: models tested when fewer than the population."""

    auc: float | None
    p_value: float | None
    n_related: int
    n_unrelated: int
    sampled: int | None = None


def _distances(coords: np.ndarray | None, dist: np.ndarray | None, idx: np.ndarray, i: np.ndarray, j: np.ndarray
               ) -> np.ndarray:
    """Distances ``[P]`` between models ``idx[i]`` and ``idx[j]`` (rows of ``dist``, or Euclidean on ``coords``)."""
    if dist is not None:
        return np.asarray(dist[np.ix_(idx, idx)], dtype=np.float64)[i, j]
    x = np.asarray(coords[idx], dtype=np.float64)
    sq = (x * x).sum(1)
    return np.sqrt(np.maximum(sq[i] + sq[j] - 2 * (x @ x.T)[i, j], 0.0))


def lineage_identification(family, basins=None, coords: np.ndarray | None = None, dist: np.ndarray | None = None,
                           n_perm: int = 199, random_state: int = 0, max_models: int = MAX_MODELS
                           ) -> LineageIdentification:
    """The stratified AUC and its permutation p-value of a fingerprint given as ``coords [n, c]``
    (Euclidean) or ``dist [n, n]``, for init families ``family [n]`` inside true basins ``basins [n]``
    (None: one basin)."""
    if coords is None and dist is None:
        raise ValueError("lineage identification needs coordinates or distances")
    fam = np.asarray([str(f) for f in family], dtype=object)
    n = len(fam)
    bas = np.zeros(n, dtype=object) if basins is None else np.asarray([str(b) for b in basins], dtype=object)
    rows = family_sample(fam, max_models, random_state)
    if rows is not None:  # distances are indexed through rows; nothing else is copied
        fam, bas = fam[rows], bas[rows]
    else:
        rows = np.arange(n)
    codes = family_codes(fam)[0]
    parts = []  # per basin: closeness ranks [m, m] (1: the farthest pair) and the relative pairs' slots
    n_same = n_diff = 0
    offset = denom = 0.0
    for b in sorted(set(bas.tolist())):
        idx = np.flatnonzero(bas == b)
        if len(idx) < 3:
            continue
        idx = idx[np.argsort(codes[idx], kind="stable")]  # slots grouped by family
        i, j = np.triu_indices(len(idx), 1)
        same = codes[idx][i] == codes[idx][j]
        s, u = int(same.sum()), int((~same).sum())
        if not s or not u:
            continue
        ranks = np.zeros((len(idx), len(idx)))
        ranks[i, j] = rankdata(-_distances(coords, dist, rows[idx], i, j))
        ranks += ranks.T
        parts.append((ranks, i[same], j[same], len(idx)))
        n_same, n_diff = n_same + s, n_diff + u
        offset, denom = offset + s * (s + 1) / 2, denom + float(s) * u
    if not parts:
        return LineageIdentification(None, None, 0, 0, len(rows) if len(rows) < n else None)
    # a basin's U = its relatives' rank sum - s (s + 1) / 2 (ties count half); AUC = sum of U / sum of s u
    obs = sum(float(rk[si, sj].sum()) for rk, si, sj, _ in parts)
    auc = (obs - offset) / denom
    p = None
    if n_perm > 0:
        # members moved across families inside each basin: the slots keep the families' sizes, the
        # models are dealt to them at random, so a permutation costs one look-up per relative pair
        rng = np.random.default_rng(random_state)
        null = np.zeros(n_perm)
        for rk, si, sj, m in parts:
            for start in range(0, n_perm, 64):
                deal = np.argsort(rng.random((min(64, n_perm - start), m)), 1)
                null[start : start + len(deal)] += rk[deal[:, si], deal[:, sj]].sum(1)
        p = float((1 + (null >= obs - 1e-6).sum()) / (n_perm + 1))  # rank sums are multiples of 1/2
    return LineageIdentification(float(auc), p, n_same, n_diff, len(rows) if len(rows) < n else None)
