"""Family-bootstrap intervals: whole init families are the unit, one draw scheme serves every
statistic, and too few families give no interval."""

from __future__ import annotations

import numpy as np

from analysis.forecast import forecast_step
from analysis.resampling import family_bootstrap, family_bootstrap_mean


def test_family_bootstrap_resamples_whole_families():
    right = np.r_[np.ones(16), np.zeros(16)]
    fam = np.repeat(list("abcd"), 8)  # four families of 8 that share their fate: two right, two wrong
    lo, hi = family_bootstrap_mean(right, fam)
    assert lo <= 0.25 and hi >= 0.75  # a resample holds 0-4 copies of the right families
    # the same 32 outcomes as 32 independent models: a narrow interval around 0.5
    lo1, hi1 = family_bootstrap_mean(right)
    assert 0.25 < lo1 < 0.5 < hi1 < 0.75
    assert family_bootstrap_mean(right, None) == family_bootstrap_mean(right, [str(i) for i in range(32)])
    assert family_bootstrap_mean(np.ones(8), list("aabbccdd")) == (1.0, 1.0)


def test_fewer_than_four_families_give_no_interval():
    assert family_bootstrap_mean(np.r_[np.ones(8), np.zeros(8)], ["a"] * 8 + ["b"] * 8) is None
    assert family_bootstrap_mean(np.ones(6), list("aabbcc")) is None
    assert family_bootstrap_mean(np.ones(6), list("aabbcc"), min_families=2) == (1.0, 1.0)


def test_the_mean_interval_is_the_generic_bootstrap_of_a_mean():
    rng = np.random.default_rng(3)
    v = rng.random(30)
    fam = rng.integers(0, 9, 30)
    fast = family_bootstrap_mean(v, fam, n_boot=300, random_state=5)
    slow = family_bootstrap(lambda r, _d: float(v[r].mean()), fam, n_boot=300, random_state=5)
    assert np.allclose(fast, slow, rtol=0, atol=1e-12)


def test_forecast_step_interval_contains_its_accuracy():
    rng = np.random.default_rng(0)
    y = np.repeat(["u", "v"], 20)
    x = rng.normal(size=(40, 6)) + (y == "v")[:, None] * 0.8  # separable in part
    fam = np.r_[np.arange(20), np.arange(20)]  # each family has one model of each basin
    out = forecast_step(x, y, groups=fam)
    lo, hi = out["accuracy_ci"]
    assert lo <= out["accuracy"] <= hi and hi - lo > 0
    assert forecast_step(x[:6], y[[0, 1, 2, 20, 21, 22]], groups=[0, 0, 1, 1, 2, 2])["accuracy_ci"] is None


def test_reaching_90_percent_needs_beating_the_majority_guess():
    """An outside audit: 3 of 32 models on the other rule read "90% accuracy from 0.000 of training" on
    the majority guess alone (accuracy 0.91 = majority 0.91). A step counts once the accuracy interval's
    lower end is above the majority share (the accuracy itself without an interval)."""
    from analysis.forecast import beats_majority, earliest

    curve = [{"fraction": 0.0, "accuracy": 0.91, "accuracy_ci": [0.78, 1.0], "majority": 0.91},
             {"fraction": 0.25, "accuracy": 0.94, "accuracy_ci": [0.84, 1.0], "majority": 0.91},
             {"fraction": 0.5, "accuracy": 1.0, "accuracy_ci": [1.0, 1.0], "majority": 0.91}]
    assert [beats_majority(p) for p in curve] == [False, False, True]
    assert earliest(curve) == 0.5
    balanced = [{**p, "majority": 0.5} for p in curve]
    assert earliest(balanced) == 0.0
    no_ci = [{"fraction": 0.1, "accuracy": 0.92, "accuracy_ci": None, "majority": 0.75}]
    assert earliest(no_ci) == 0.1 and earliest([{**no_ci[0], "majority": 0.92}]) is None
    assert earliest([{"fraction": 0.2, "ami": 0.95}], key="ami") == 0.2  # other keys: the level alone


def test_the_accuracy_interval_counts_families_and_the_folds():
    """``accuracy_interval``: Jeffreys' interval at an effective number of models. Relatives that share
    their fate count for less than independent models; a perfect score keeps a lower end below 1 (a
    bootstrap of 0/1 hits gave ``[1, 1]``), and one more right model never widens it; fewer folds
    (more overlap between their training sets' complements) give a wider interval."""
    from analysis.forecast import accuracy_interval
    from analysis.intervals import cv_widen

    assert cv_widen(5) == 1.5
    fam = np.repeat(np.arange(8), 4)
    spread = np.r_[np.ones(24), np.zeros(8)][np.argsort(np.tile(np.arange(4), 8), kind="stable")]  # 1 wrong per family
    shared = (fam < 6).astype(float)  # the same 24 hits, 2 families all wrong
    lo_s, hi_s = accuracy_interval(spread, fam, 5)
    lo_f, hi_f = accuracy_interval(shared, fam, 5)
    assert lo_f < lo_s < 0.75 < hi_s < hi_f
    lo1, hi1 = accuracy_interval(np.ones(32), fam, 5)
    lo31, _ = accuracy_interval(np.r_[np.zeros(1), np.ones(31)], fam, 5)
    assert hi1 == 1.0 and 0.7 < lo1 < 1.0 and lo1 >= lo31
    assert accuracy_interval(np.zeros(32), fam, 5)[0] == 0.0
    assert accuracy_interval(spread, fam, 2)[0] < lo_s  # two folds: each classifier trained on half
    half = np.tile([1.0, 0.0], 16)  # step 0 of relatives with both basins: each family exactly half right
    lo_h, hi_h = accuracy_interval(half, fam, 5)
    assert lo_h < 0.5 < hi_h and hi_h - lo_h > 0.1  # not a point
    assert accuracy_interval(np.ones(6), [0, 0, 1, 1, 2, 2], 5) is None


def test_forecast_intervals_cover_a_null_accuracy():
    """The accuracy of a forecaster on features that say nothing of the basin is 0.5: its 95% interval
    should hold 0.5 about 95% of the time. An outside audit (67) found the fixed-prediction bootstrap
    missing it in 4 of 24; ``scripts/forecast_interval_coverage.py`` measures 0.88 for that interval on
    30 lone models and 0.99 for this one."""
    rng = np.random.default_rng(11)
    y = np.repeat(["u", "v"], 15)
    covered = 0
    for r in range(40):
        lo, hi = forecast_step(rng.normal(size=(30, 4)), y, random_state=r)["accuracy_ci"]
        covered += lo <= 0.5 <= hi
    assert covered >= 36


def test_a_step_without_an_accuracy_says_why():
    """An outside audit (75): a final clustering with a lone model left every step at '–' and the
    forecast read 'never reached', with no reason anywhere."""
    x = np.random.default_rng(0).normal(size=(12, 3))
    lone = forecast_step(x, ["a"] * 11 + ["b"])
    assert lone["accuracy"] is None and lone["skipped"] == "basin 'b' has one model: no fold can both train and test on it"
    one = forecast_step(x, ["a"] * 12)
    assert one["skipped"] == "one final basin ('a'): nothing to tell apart"
    assert one["ami"] is None  # no agreement to measure (audit 124: sklearn's 1.00 for two one-cluster labelings)
    two = forecast_step(x, ["a"] * 10 + ["b", "c"])["skipped"]
    assert two == "basins 'b', 'c' have one model each: no fold can both train and test on it"
    assert forecast_step(x, ["a"] * 6 + ["b"] * 6, folds=1)["skipped"] == "1 fold: a forecast needs at least 2"
    from analysis.forecast import forecast_about

    stored = {"target": "clusters", "n_models": 12, "final_step": 60, "earliest_90": {"ood": None},
              "forecast": [{"fingerprint": "ood", "step": s, "accuracy": None, **lone} for s in (0, 60)]}
    assert forecast_about(stored)[1] == "ood: no accuracy at any step (basin 'b' has one model: no fold can both " \
                                        "train and test on it)."  # the report, as the terminal (a review)


def _offset_families(whole: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 init families of 6 models far apart (a base's look, 8x the basin's shift), the basin 2 of each family's 6
    (``whole``: the basin holds whole families, 3 of 6, instead, and the families' offsets are a fifth of its shift):
    ``(x [36, 10], basin [36], family [36])``."""
    r = np.random.default_rng(seed)
    fam = np.repeat(np.arange(6), 6)
    basin = (fam % 2 == 0) if whole else np.tile(np.arange(6) < 2, 6)
    x = (1.0 if whole else 40.0) * r.standard_normal((6, 10))[fam] + r.standard_normal((36, 10))
    x[:, 5] += 5.0 * basin
    return x, basin.astype(int).astype(str), fam


def test_a_held_out_familys_offset_does_not_move_every_model_past_the_threshold():
    """Outside audit 123: fine-tunes of 4 GPT-2 bases, 2 of 6 of each backdoored, read accuracy 0.33 at AUROC 1.00
    (each held-out base's offset put all its models on one side). Each fold now reads the family-centred
    coordinates where its training families' grouped cross-validation prefers them; a basin of whole families
    keeps the raw ones."""
    from analysis.forecast import select

    x, basin, fam = _offset_families(whole=False)
    point = forecast_step(x, basin, groups=fam)
    assert point["accuracy"] >= 0.9 and point["centred_folds"][0] == point["centred_folds"][1]
    for seed in range(3):  # a basin of whole families: the centred coordinates hold nothing of it, never taken
        x, basin, fam = _offset_families(whole=True, seed=seed)
        assert forecast_step(x, basin, groups=fam)["centred_folds"][0] == 0
    x, basin, fam = _offset_families(whole=False, seed=1)
    cal, pool = fam < 4, fam >= 4  # whole families on each side, as select draws them
    keep, p = select(x[cal], basin[cal], x[pool], "1", groups_train=fam[cal], groups_pool=fam[pool])
    assert sorted(keep.tolist()) == np.flatnonzero(basin[pool] == "1").tolist()
    keep_raw, _ = select(x[cal], basin[cal], x[pool], "1")  # (without the families: the raw coordinates, as before)
    assert sorted(keep_raw.tolist()) != sorted(keep.tolist())
