"""Intervals at an effective number of models: Newcombe's for an AUROC, over init families."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from analysis.agreement import binary_auroc
from analysis.intervals import auroc_interval, cv_widen, newcombe_interval
from analysis.transfer import macro_auroc


def _hanley_mcneil(t: float, m: float, k: float) -> float:
    """Hanley & McNeil's variance of an AUROC ``t``, written as in their paper (Q1, Q2), both sizes N*."""
    ns = (m + k) / 2
    q1, q2 = t / (2 - t), 2 * t * t / (1 + t)
    return (t * (1 - t) + (ns - 1) * (q1 - t * t) + (ns - 1) * (q2 - t * t)) / (m * k)


@pytest.mark.parametrize("auc, m, k", [(0.5, 12, 12), (0.8, 30, 10), (0.97, 8, 8), (1.0, 12, 12), (0.0, 5, 7)])
def test_newcombe_ends_solve_the_score_equation(auc, m, k):
    lo, hi = newcombe_interval(auc, m, k)
    z2 = NormalDist().inv_cdf(0.975) ** 2
    assert 0.0 <= lo <= auc <= hi <= 1.0
    for end in (lo, hi):
        if end not in (0.0, 1.0) or end != auc:  # an end at the AUROC itself (0 or 1) is the boundary
            assert (end - auc) ** 2 == pytest.approx(z2 * _hanley_mcneil(end, m, k), abs=1e-9)


def test_a_perfect_ranking_keeps_a_lower_end_that_more_models_raise():
    ends = [newcombe_interval(1.0, n, n)[0] for n in (4, 8, 16, 64)]
    assert all(a < b < 1.0 for a, b in zip(ends, ends[1:]))
    assert newcombe_interval(1.0, 8, 8)[1] == 1.0


def test_relatives_that_repeat_one_model_count_about_once():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    s = y + rng.normal(0, 0.8, 20)
    alone = auroc_interval(y, np.c_[-s, s], None)
    copies = 4  # every model four times over, each with its own copies as its family
    rep = auroc_interval(np.repeat(y, copies), np.repeat(np.c_[-s, s], copies, axis=0), np.repeat(np.arange(20), copies))
    naive = auroc_interval(np.repeat(y, copies), np.repeat(np.c_[-s, s], copies, axis=0), None)
    assert binary_auroc(y == 1, s) == pytest.approx(0.5 * (rep[0] + rep[1]), abs=0.1)
    assert rep[1] - rep[0] == pytest.approx(alone[1] - alone[0], rel=0.05)  # as wide as the 20 models alone
    assert naive[1] - naive[0] < 0.6 * (alone[1] - alone[0])  # ignoring the families: far too narrow


def test_independent_relatives_are_not_penalised():
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 24)
    s = y + rng.normal(0, 1.0, 48)
    fam = np.repeat(np.arange(12), 4)
    a, b = auroc_interval(y, np.c_[-s, s], fam), auroc_interval(y, np.c_[-s, s], None)
    assert a[1] - a[0] == pytest.approx(b[1] - b[0], rel=0.35) and a[1] - a[0] >= b[1] - b[0] - 1e-12


def test_inflate_widens_and_few_families_give_none():
    y = np.tile([0, 1], 8)
    s = y * 2.0
    p = np.c_[-s, s]
    fam = np.repeat(np.arange(8), 2)
    plain, cv = auroc_interval(y, p, fam), auroc_interval(y, p, fam, inflate=cv_widen(5) ** 2)
    assert plain[1] == cv[1] == 1.0 and cv[0] < plain[0] < 1.0
    assert auroc_interval(y[:6], p[:6], fam[:6]) is None  # three families
    assert auroc_interval(np.zeros(8, int), p[:8], fam[:8]) is None  # one class


def test_macro_auroc_interval_over_three_classes_and_an_unknown_one():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2, -1], 8)
    p = rng.dirichlet(np.ones(3), 32)
    p[y >= 0, y[y >= 0]] += 2.0
    p /= p.sum(1, keepdims=True)
    lo, hi = auroc_interval(y, p, np.arange(32) // 2)
    assert 0.5 < lo <= macro_auroc(y, p) <= hi <= 1.0


def test_a_perfect_ranking_of_classes_held_by_whole_families_counts_each_family_once():
    """A review: 4 families of 50, each family one class, a perfect probe read [0.95, 1.00] (every
    DeLong influence 0, so no design effect): the classes' own clustering stands in for it there."""
    fam = np.repeat(np.arange(4), 50)
    y = fam % 2
    s = y + fam * 0.01
    whole = auroc_interval(y, np.c_[-s, s], fam)
    assert whole[1] == 1.0 and whole[0] < 0.5  # two families a class
    assert whole[0] <= newcombe_interval(1.0, 2.0, 2.0)[0]  # at least as wide as two models a class
    mixed = np.tile([0, 1], 100)  # each family holds both classes: no such penalty
    s = mixed + fam * 0.01
    assert auroc_interval(mixed, np.c_[-s, s], fam)[0] > 0.95


def test_a_floor_on_the_design_effect_from_the_labels_keeps_the_share_monotone():
    """``classes_design_effect``: one draw a family at most where each family holds one class, 1 where
    every family holds both, 1 for one model or one family (a review: a division by zero there). As a
    floor (``shared_deff``) at every share, one more right model never lowers the lower end (a stand-in
    at the extremes only did: 31 of 32 read [0.77, 1.00], 32 of 32 [0.49, 1.00])."""
    from analysis.intervals import classes_design_effect, proportion_interval

    fam = np.repeat(np.arange(8), 4)
    assert classes_design_effect(fam % 2, fam) == 4.0 and classes_design_effect(np.tile([0, 1], 16), fam) == 1.0
    assert classes_design_effect([1], [0]) == classes_design_effect(fam % 2, np.zeros(32)) == 1.0
    lows = [proportion_interval(np.r_[np.zeros(k), np.ones(32 - k)], fam, shared_deff=4.0)[0] for k in (2, 1, 0)]
    assert lows == sorted(lows) and lows[-1] < proportion_interval(np.ones(32), fam)[0]
