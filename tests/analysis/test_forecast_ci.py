"""The forecast accuracy's interval resamples init families, not models."""

from __future__ import annotations

import numpy as np

from analysis.forecast import family_bootstrap_ci, forecast_step


def test_family_bootstrap_resamples_whole_families():
    right = np.r_[np.ones(8), np.zeros(8)]
    # two families of 8 that share their fate: a resample holds 0, 1 or 2 copies of the right one
    lo, hi = family_bootstrap_ci(right, ["a"] * 8 + ["b"] * 8)
    assert (lo, hi) == (0.0, 1.0)
    # the same 16 outcomes as 16 independent models: a narrow interval around 0.5
    lo1, hi1 = family_bootstrap_ci(right)
    assert 0.2 < lo1 < 0.5 < hi1 < 0.8
    assert family_bootstrap_ci(right, None) == family_bootstrap_ci(right, [str(i) for i in range(16)])
    assert family_bootstrap_ci(np.ones(5), list("aabbc")) == (1.0, 1.0)


def test_forecast_step_interval_contains_its_accuracy():
    rng = np.random.default_rng(0)
    y = np.repeat(["u", "v"], 20)
    x = rng.normal(size=(40, 6)) + (y == "v")[:, None] * 0.8  # separable in part
    fam = np.r_[np.arange(20), np.arange(20)]  # each family has one model of each basin
    out = forecast_step(x, y, groups=fam)
    lo, hi = out["accuracy_ci"]
    assert lo <= out["accuracy"] <= hi and hi - lo > 0
