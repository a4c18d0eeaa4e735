"""analysis.agreement's numpy AMI / ARI / AUROC equal scikit-learn's (issue 26 item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    roc_auc_score,
)

from analysis import agreement as ag


def _labellings():
    rng = np.random.default_rng(0)
    out = [(np.zeros(10, int), rng.integers(0, 3, 10)),  # one cluster
           (np.zeros(10, int), np.zeros(10, int)),  # one cluster each
           (np.arange(12), rng.integers(0, 4, 12)),  # all singletons
           (np.arange(12), np.arange(12)[::-1]),  # all singletons, both
           (np.array(list("aabbcc")), np.array([5, 5, 7, 7, 9, 9])),  # perfect match, other values
           (np.array([0, 1]), np.array([1, 1]))]
    for n, ka, kb in ((7, 2, 3), (40, 3, 5), (100, 2, 8), (300, 25, 4), (1000, 250, 8), (200, 60, 60)):
        out.append((rng.integers(0, ka, n), rng.integers(0, kb, n)))
    return out


@pytest.mark.parametrize("a, b", _labellings())
def test_ami_and_ari_equal_sklearn(a, b):
    assert abs(ag.ami(a, b) - adjusted_mutual_info_score(a, b)) < 1e-12
    assert abs(ag.ari(a, b) - adjusted_rand_score(a, b)) < 1e-12


def test_auroc_equals_sklearn_with_ties_and_classes():
    rng = np.random.default_rng(1)
    for n, k in ((10, 2), (101, 2), (60, 3), (500, 5)):
        y = np.r_[np.arange(k), rng.integers(0, k, n - k)]
        p = rng.dirichlet(np.ones(k), n).round(2)  # rounded: ties
        p /= p.sum(1, keepdims=True)
        want = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr", labels=np.arange(k))
        assert abs(ag.auroc(y, p) - want) < 1e-12


def test_ari_pairs_equal_ari_of_each_pair():
    """ari_pairs (every pair of bootstrap replicates at once, -1 = a model the replicate lacks) equals
    ari on each pair's shared models exactly: integer counts, then the same float formula."""
    rng = np.random.default_rng(0)
    for t in range(60):
        n, n_rows, k = int(rng.integers(3, 120)), int(rng.integers(2, 9)), int(rng.integers(1, 9))
        reps = []
        for _ in range(n_rows):
            idx = np.unique(rng.integers(0, n, n if t % 3 else 3))  # some rows share fewer than two models
            reps.append((idx, rng.integers(-1 if t % 4 == 0 else 0, k, len(idx))))  # -1: HDBSCAN's noise, a label
        rows = np.full((n_rows, n), -1)
        for r, (idx, lab) in enumerate(reps):
            rows[r, idx] = ag.codes(lab)
        pairs = np.transpose(np.triu_indices(n_rows, 1))
        got, shared = ag.ari_pairs(rows, pairs, chunk=int(rng.choice([1, 64, 1 << 20])))
        for (i, j), g, m in zip(pairs, got, shared):
            common, a, b = np.intersect1d(reps[i][0], reps[j][0], return_indices=True)
            assert m == len(common)
            if m >= 2:
                assert g == ag.ari(reps[i][1][a], reps[j][1][b]), (t, i, j)
