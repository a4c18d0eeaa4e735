"""analysis.goodhart on synthetic populations: the family split, the calibrated detector, the curves."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.goodhart import (
    fit_detector,
    keep_fractions,
    pressure_point,
    selection_curve,
    split_families,
)


def population(n_fam: int = 24, per: int = 4, d: int = 6, shift: float = 2.0, seed: int = 0):
    """Families of ``per`` models sharing a basin (B with probability 0.4); B shifts the first column."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), per)
    is_b = np.repeat(rng.random(n_fam) < 0.4, per)
    x = rng.normal(size=(len(fam), d)) + np.repeat(rng.normal(size=(n_fam, d)), per, 0) * 0.5
    x[:, 0] += shift * is_b
    return x, np.where(is_b, "B", "other"), fam


def test_a_family_is_never_on_both_sides_and_both_sides_hold_the_basin():
    x, lab, fam = population()
    fit = split_families(lab, "B", fam, 0.5, random_state=3)
    assert not set(fam[fit]) & set(fam[~fit])
    assert 0.3 < fit.mean() < 0.7
    assert (lab[fit] == "B").any() and (lab[~fit] == "B").any()


def test_the_detector_is_calibrated_and_selection_raises_purity():
    x, lab, fam = population(n_fam=40)
    fit = split_families(lab, "B", fam, 0.5)
    det = fit_detector(x[fit], lab[fit], "B", fam[fit])
    assert det.calibrated and det.cv_auroc > 0.8
    held = ~fit
    score, truly = det.logit(x[held]), lab[held] == "B"
    assert abs((det.logit(x[fit]) > 0).mean() - (lab[fit] == "B").mean()) < 0.2  # 0.5 is even odds, not a skewed cut
    curve = selection_curve(score, score > 0, truly, fam[held], keep_fractions(held.sum()), n_boot=50)
    assert curve[0].keep == 1.0 and abs(curve[0].purity - truly.mean()) < 1e-12
    strong = [c for c in curve if c.keep <= 0.2]
    assert all(c.purity > truly.mean() for c in strong)
    for c in curve:
        assert c.looks_only <= 1 - c.purity + 1e-12
        if c.purity_ci is not None:
            assert c.purity_ci[0] <= c.purity + 1e-12 and c.purity <= c.purity_ci[1] + 1e-12


def test_keep_fractions_add_finer_ones_only_when_a_model_is_left():
    assert keep_fractions(64) == [1.0, 0.5, 0.2, 0.05, 0.01]
    assert keep_fractions(500) == [1.0, 0.5, 0.2, 0.05, 0.01, 0.005, 0.002]
    with pytest.raises(AnalysisError, match="keep fractions"):
        keep_fractions(10, [0.0])


def test_pressure_point_leaves_diverged_models_out_and_counts_evasion():
    says = np.array([1, 1, 1, 0, 1, 0], bool)
    truly = np.array([1, 0, 0, 0, 1, 1], bool)
    fam = np.array([0, 0, 1, 1, 2, 2])
    p = pressure_point(0.3, says, truly, fam, diverged=np.array([0, 0, 0, 0, 0, 1], bool))
    assert p.n_models == 5 and p.n_diverged == 1
    assert p.detector_says == pytest.approx(0.8) and p.truly == pytest.approx(0.4) and p.evasion == pytest.approx(0.4)
    assert p.to_dict()["lambda"] == 0.3


def test_no_model_evading_is_not_certainty():
    """A share of 0 of 32 models in 8 families reads an interval from 0 to above 0 (a bootstrap of 0/1
    outcomes gave [0, 0]); a share of every model, one up to 1 from below."""
    fam = np.repeat(np.arange(8), 4)
    p = pressure_point(1.0, np.zeros(32, bool), np.zeros(32, bool), fam)
    assert p.evasion == 0.0 and p.evasion_ci[0] == 0.0 and 0.02 < p.evasion_ci[1] < 0.3
    q = pressure_point(1.0, np.ones(32, bool), np.ones(32, bool), fam)
    assert q.detector_says == 1.0 and 0.7 < q.detector_says_ci[0] < 1.0 == q.detector_says_ci[1]


def test_too_few_models_of_the_basin_is_one_line():
    x, lab, fam = population()
    lab = np.where(np.arange(len(lab)) == 0, "B", "other")
    with pytest.raises(AnalysisError, match="at least 2 of each"):
        fit_detector(x, lab, "B", fam)


def test_a_detector_of_a_population_of_one_basin_says_there_is_no_other():
    """Outside audit 124 (F11): a one-basin null was told to "train more seeds", which cannot make a second basin."""
    from analysis.goodhart import fit_detector

    x = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(AnalysisError, match="every model is in it: a population of one basin has no other to tell it from"):
        fit_detector(x, ["a"] * 12, "a", np.repeat(np.arange(6), 2))
