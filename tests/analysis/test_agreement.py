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
