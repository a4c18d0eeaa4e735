"""The probe's family-permutation test: is the label linearly readable from a fingerprint beyond
what its init families alone let a probe fit? (docs/scorecard.md, "The probe's permutation test").

:func:`probe_permutation_p` moves the label between families as the deep AMI's test does and
refits a least-squares probe on every relabelling (:func:`ridge_probe_auroc`, all relabellings in
one solve per fold).
"""

from __future__ import annotations

import numpy as np

from analysis import resampling as rs

RIDGE = 1.0  # the permutation test's least-squares probe: the penalty of the probe's C = 1 in its own loss


def probe_permutation_p(coords: np.ndarray, y: np.ndarray, family: np.ndarray, groups: np.ndarray, n_perm: int,
                        seed: int) -> float | None:
    """The family-permutation p-value of the probe's readability: the label (class codes ``y [n]``)
    moves between init families as whole blocks (:func:`analysis.resampling.family_permutations`,
    the deep AMI's draws), and a probe is refitted on every relabelling.

    The refitted probe is a least-squares one (:func:`ridge_probe_auroc`: one-hot targets, ridge
    :data:`RIDGE`, the scorecard probe's common scale and fold groups ``groups [n]``, the folds fixed
    for all relabellings), so that all ``n_perm`` refits are one solve per fold; its out-of-fold AUROC
    on the observed label is compared with the relabellings' (ties count, as a perfect match ties the
    relabellings that keep the label's partition). The family bootstrap of the logistic probe's
    held-out AUROC keeps its fit fixed and so does not price in that 8 families give a
    10-component probe room to fit many splits of them (docs/scorecard.md, "The probe's permutation
    test"). ``None`` with fewer than two fold groups."""
    perms = rs.family_permutations(family, n_perm, seed)
    stats = ridge_probe_auroc(coords, np.vstack([np.asarray(y)[None, :], np.asarray(y)[perms]]), groups, seed)
    if stats is None:
        return None
    return rs.permutation_p(float(stats[0]), stats[1:] + rs.TIE)  # a relabelling's AUROC within rs.TIE of the observed one ties it


def ridge_probe_auroc(coords: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0,
                      n_splits: int = 5) -> np.ndarray | None:
    """Out-of-fold AUROC ``[P]`` of a least-squares probe ``coords [n, c] -> labels [P, n]`` (class
    codes 0..k-1; binary: AUROC, else macro one-vs-rest), for all P labellings at once. The folds
    keep each group of ``groups [n]`` together (``min(n_splits, groups)`` folds, the groups dealt to
    them in a seeded random order); each fold's probe is the ridge solution on the training rows,
    centred, with the coordinates divided by the root of their mean variance (the scorecard probe's
    common scale). ``None`` with fewer than two groups."""
    x = np.asarray(coords, dtype=np.float64)
    x = x / (np.sqrt(x.var(0).mean()) or 1.0)
    gcodes = rs.family_codes(groups)[0]
    n_groups = int(gcodes.max()) + 1
    k_folds = min(n_splits, n_groups)
    if k_folds < 2:
        return None
    fold = (np.random.default_rng(seed).permutation(n_groups) % k_folds)[gcodes]  # [n]
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    onehot = (labels[:, :, None] == np.arange(n_classes)).astype(np.float64)  # [P, n, k]
    pred = np.empty_like(onehot)
    eye = RIDGE * np.eye(x.shape[1])
    for f in range(k_folds):
        tr, te = fold != f, fold == f
        mu = x[tr].mean(0)
        xc = x[tr] - mu
        t = onehot[:, tr]  # [P, m, k]
        tm = t.mean(1, keepdims=True)
        w = np.linalg.solve(xc.T @ xc + eye, np.einsum("mc,pmk->pck", xc, t - tm))  # [P, c, k]
        pred[:, te] = np.einsum("nc,pck->pnk", x[te] - mu, w) + tm
    return _aurocs(labels, pred)


def _aurocs(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """AUROC ``[P]`` of class codes ``labels [P, n]`` against scores ``pred [P, n, k]`` (binary: the
    second class's score; else the macro mean of one-vs-rest), ties counting half."""
    from scipy.stats import rankdata  # deferred: scipy.stats costs ~0.3 s to import

    cols = [1] if pred.shape[2] == 2 else range(pred.shape[2])
    out = np.zeros(len(labels))
    for c in cols:
        pos = labels == c  # [P, n]
        n_pos = pos.sum(1)
        ranks = rankdata(pred[:, :, c], axis=1)
        out += (np.where(pos, ranks, 0.0).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * (labels.shape[1] - n_pos))
    return out / len(cols)
