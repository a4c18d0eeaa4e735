"""analysis/draws.py: the two-level bootstrap over rounding draws and the share interval."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import metrics as mt
from analysis.draws import (
    ami_by_families,
    draws_bootstrap,
    paired_difference,
    share_interval,
)
from analysis.resampling import family_bootstrap, family_codes

FAMILY = np.repeat(np.arange(12), 2)  # 12 init families of 2 models (two data orders)
NAMES = sorted(str(f) for f in range(12))  # the order of family_codes: family_picks index it


def _labels(seed: int, flip: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-valued labels and clusters that agree except on a random share ``flip`` of the models."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, len(FAMILY))
    clusters = np.where(rng.random(len(FAMILY)) < flip, 1 - label, label)
    return clusters, np.asarray(["clock", "pizza"])[label]


def test_one_draw_is_the_family_interval():
    """K = 1: both intervals are the family bootstrap's, sample for sample (same seed, same picks)."""
    clusters, label = _labels(0, 0.2)
    codes_c, codes_l = mt.label_codes(clusters), mt.label_codes(label)
    fam = [str(f) for f in FAMILY]
    ref = family_bootstrap(lambda rows, _d: mt.ami_codes(codes_c[rows], codes_l[rows]), fam, 300, 7)
    b = draws_bootstrap([ami_by_families(clusters, label, fam, NAMES)], 12, 300, 7)
    assert b.mean_ci == pytest.approx(ref, abs=1e-12) and b.one_draw_ci == pytest.approx(ref, abs=1e-12)
    assert (b.draws == 0).all()


def test_copies_of_one_draw_add_no_rounding_variation():
    clusters, label = _labels(1, 0.25)
    stat = ami_by_families(clusters, label, FAMILY, NAMES)
    one = draws_bootstrap([stat], 12, 300, 3)
    three = draws_bootstrap([stat, stat, stat], 12, 300, 3)
    assert three.mean_ci == pytest.approx(one.mean_ci, abs=1e-12)
    assert (three.values == one.values).all(axis=0).all() and three.values.shape == (300, 3)
    assert three.one_draw_ci == pytest.approx(one.one_draw_ci, abs=0.01)  # the same values, thrice: quantiles interpolate


def test_the_interval_holds_the_mean_of_draws_that_disagree_and_is_wider_than_each_draw():
    """A perfect draw and two noisy ones: the mean interval covers the per-draw values' mean, the
    one-draw interval reaches from the noisy draws to the perfect one, and both are wider than
    the perfect draw's own family interval, which the rounding variation falls outside of."""
    draws = [_labels(0, 0.0), _labels(2, 0.2), _labels(3, 0.3)]
    observed = [mt.ami(c, lab) for c, lab in draws]
    b = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in draws], 12, 1000, 0)
    lo, hi = b.mean_ci
    assert lo <= np.mean(observed) <= hi
    assert b.one_draw_ci[0] <= min(observed) and b.one_draw_ci[1] >= max(observed) == 1.0
    perfect = draws_bootstrap([ami_by_families(*draws[0], FAMILY, NAMES)], 12, 1000, 0)
    assert perfect.mean_ci == (1.0, 1.0) and hi - lo > 0.1
    assert 0 < b.share_at_least(0.8) < 1  # one draw of three is perfect; the noisy ones fall short


def test_a_family_absent_from_one_draw_adds_nothing_there():
    """A family left out of one draw's pass (e.g. all its models `mixed` there) is still drawn for
    the others; in that draw its picks add no models, and that draw's values are those of the
    models it has."""
    clusters, label = _labels(4, 0.1)
    keep = FAMILY != 11
    stat_all = ami_by_families(clusters, label, FAMILY, NAMES)
    stat_part = ami_by_families(clusters[keep], label[keep], FAMILY[keep], NAMES)
    at = {n: i for i, n in enumerate(NAMES)}
    counts = np.eye(12, dtype=int)[[at["0"], at["3"], at["11"], at["11"]]].sum(0)[None]  # families 0, 3, 11 twice
    only = np.zeros((1, 12), int)
    only[0, [at["0"], at["3"]]] = 1
    assert stat_part(counts)[0] == pytest.approx(stat_all(only)[0]) == pytest.approx(stat_part(only)[0])
    with pytest.raises(ValueError, match="not among"):
        ami_by_families(clusters, label, FAMILY, NAMES[:5])


def test_too_few_families_or_no_draw_gives_no_interval():
    clusters, label = _labels(5, 0.1)
    fam = np.repeat(np.arange(3), 8)
    assert draws_bootstrap([ami_by_families(clusters, label, fam, ["0", "1", "2"])], 3) is None
    assert draws_bootstrap([], 12) is None
    assert family_codes(fam)[1] == ["0", "1", "2"]  # the names' order ami_by_families is given


def test_share_interval_jeffreys():
    lo, hi = share_interval(3, 6)
    assert lo < 0.5 < hi and hi - lo > 0.6  # six draws say little about a share of one half
    assert share_interval(0, 6)[0] == 0.0 and share_interval(6, 6)[1] == 1.0
    for k in range(7):  # equal-tailed: k of n and n - k of n mirror each other
        a, b = share_interval(k, 6), share_interval(6 - k, 6)
        assert a[0] == pytest.approx(1 - b[1]) and a[1] == pytest.approx(1 - b[0])
        assert a[0] <= k / 6 <= a[1]
    assert np.diff(share_interval(30, 60)) < np.diff(share_interval(3, 6))  # more draws, narrower
    assert share_interval(0, 0) is None
    with pytest.raises(ValueError, match="between 0 and n"):
        share_interval(7, 6)


def test_paired_difference_cancels_what_two_fingerprints_share():
    """Two fingerprints' clusters on the same draws: the difference is taken sample by sample, so a
    fingerprint against itself differs by exactly 0, and a better one's gain interval is above 0."""
    good = [_labels(s, 0.05) for s in (10, 11, 12)]
    bad = [(np.where(np.arange(len(FAMILY)) % 3 == 0, 1 - (lab == "pizza"), lab == "pizza").astype(int), lab) for _, lab in good]
    bg = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in good], 12, 500, 0)
    bb = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in bad], 12, 500, 0)
    assert paired_difference(bg, bg) == (0.0, 0.0)
    lo, hi = paired_difference(bg, bb)
    assert 0 < lo <= np.nanmean(bg.means - bb.means) <= hi
    other = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in bad], 12, 500, 1)
    with pytest.raises(ValueError, match="same samples"):
        paired_difference(bg, other)
    # the same seed and counts, but of other families or of other trainings: not paired either
    named = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in good], 12, 500, 0, families=NAMES, trainings=[0, 1, 2])
    renamed = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in bad], 12, 500, 0,
                              families=NAMES[::-1], trainings=[0, 1, 2])
    elsewhere = draws_bootstrap([ami_by_families(c, lab, FAMILY, NAMES) for c, lab in bad], 12, 500, 0, families=NAMES, trainings=[0, 1, 3])
    for b in (renamed, elsewhere):
        with pytest.raises(ValueError, match="same samples"):
            paired_difference(named, b)
