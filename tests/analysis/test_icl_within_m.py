"""scripts/icl_within_m.py's statistics: the exact LOO ridge, the within-M permutation null, the no-init folds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("icl_within_m", Path(__file__).parents[2] / "scripts" / "icl_within_m.py")
icl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(icl)


def _refit_r2(x, y, test_sets):
    """Ridge (alpha 1, unpenalised intercept, features standardised once) refit without each test set."""
    x1 = np.c_[np.ones(len(x)), icl._standardise(x)]
    pen = np.eye(x1.shape[1])
    pen[0, 0] = 0
    pred = np.empty(len(y))
    for te in test_sets:
        tr = np.ones(len(y), bool)
        tr[te] = False
        pred[te] = x1[te] @ np.linalg.solve(x1[tr].T @ x1[tr] + pen, x1[tr].T @ y[tr])
    return 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_hat_matrix_loo_equals_refitting_and_families_are_held_out():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4))
    y = x[:, 0] + 0.5 * rng.normal(size=24)
    assert abs(icl.loo_ridge_r2(x, y) - _refit_r2(x, y, [[i] for i in range(24)])) < 1e-9
    fam = np.repeat(np.arange(6), 4)
    assert abs(icl.grouped_ridge_r2(x, y, fam) - _refit_r2(x, y, [np.flatnonzero(fam == g) for g in range(6)])) < 1e-9
    # columns are targets: the permutation null in one call
    both = icl.loo_ridge_r2(x, np.c_[y, -y])
    assert both.shape == (2,) and abs(both[0] - icl.loo_ridge_r2(x, y)) < 1e-9


def test_permutations_stay_within_m_and_the_null_sits_near_zero():
    rng = np.random.default_rng(1)
    m = np.repeat([1, 4, 8], 10)
    y = rng.normal(size=30)
    perm = icl.permuted_within(y, m, 50)
    assert perm.shape == (30, 50)
    for g in (1, 4, 8):
        assert np.allclose(np.sort(perm[m == g], axis=0), np.sort(y[m == g])[:, None])
    assert (perm != y[:, None]).any()
    null = icl.loo_ridge_r2(rng.normal(size=(30, 3)), perm)
    assert np.percentile(null, 95) < 0.3 and np.median(null) < 0.05  # noise features predict nothing
