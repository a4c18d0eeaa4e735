"""Which values of a design column the clusters set apart, their contrast and its chance (analysis/strata_sides.py):
one difference the column decides against each value's own seed noise (an outside audit, 112)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from analysis.strata_sides import SIDE_PURITY, chance, sides, table_sides


def _population(effect: np.ndarray, n_families: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_families`` init families x one model per value of a shared column (``effect [n_values, d]``, each
    value's shift), family effects and model noise: ``(coords [m, d], column [m], family [m])``."""
    r = np.random.default_rng(seed)
    n_values, d = effect.shape
    fam, col = np.repeat(np.arange(n_families), n_values), np.tile(np.arange(n_values), n_families)
    coords = r.standard_normal((n_families, d))[fam] + 0.3 * r.standard_normal((len(fam), d)) + effect[col]
    return coords, col, fam


def _clusters(coords: np.ndarray) -> np.ndarray:
    return KMeans(2, n_init=4, random_state=0).fit_predict(coords - coords.mean(0))


def test_one_value_apart_from_three_alike_values_has_a_contrast_seed_noise_rarely_gives():
    """The backdoor of audit 112 in the models of one shared data seed of four: that value apart, the other three
    together, far beyond what four values' seed noise gives (chance under 1%)."""
    effect = np.zeros((4, 6))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect)
    out = sides(coords, (col == 0).astype(int), col + 500, fam)
    assert out["sides"] == [["500"], ["501", "502", "503"]] and out["sizes"] == [32, 96]
    assert out["contrast"] > 10 and out["chance"] < 0.01


def test_each_values_own_seed_noise_is_said_as_no_more_than_it_can_give():
    """Four values, each shifted by its own draw in six directions (a data order's seed noise, strong enough that the
    clusters follow it): whichever sides the clusters find, the contrast is what seed noise gives, in 20 of 20
    populations (chance above 5%)."""
    chances = []
    for seed in range(20):
        effect = 2.0 * np.random.default_rng(100 + seed).standard_normal((4, 6))
        coords, col, fam = _population(effect, seed=seed)
        out = sides(coords, _clusters(coords), col, fam)
        if out is not None:  # (a value cut in two by the clusters: no sides)
            chances.append(out["chance"])
    assert len(chances) >= 10 and min(chances) > 0.05


def test_no_sides_for_two_values_a_value_spread_over_clusters_or_every_value_its_own_side():
    effect = np.zeros((4, 3))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect)
    assert sides(coords[col < 2], (col[col < 2] == 0).astype(int), col[col < 2], fam[col < 2]) is None  # two values
    spread = (col == 0).astype(int)
    spread[np.flatnonzero(col == 1)[: int((1 - SIDE_PURITY) * 32) + 2]] = 1  # value 1 in both clusters
    assert sides(coords, spread, col, fam) is None
    assert sides(coords, col, col, fam) is None  # every value its own cluster: nothing to contrast
    assert sides(coords, np.zeros(len(col), int), col, fam) is None  # one cluster
    table = {"data_seed": col.astype(object), "other": col.astype(object)}
    rows = np.arange(len(col))
    got = table_sides(coords, (col == 0).astype(int), table, rows, fam, ["data_seed"])
    assert [e["column"] for e in got["strata_sides"]] == ["data_seed"]  # only the design columns asked for
    assert table_sides(coords, np.zeros(len(col), int), table, rows, fam, ["data_seed"]) == {}


def test_the_chance_is_the_share_of_one_direction_draws_reaching_the_contrast():
    """``chance`` is calibrated against fresh draws of values along one direction (its worst case): the best split's
    contrast of 4,000 fresh draws reaches the 5% point in about 5% of them; it falls as the contrast grows and as
    the values grow in number."""
    assert chance(3.0, 4) > chance(10.0, 4) > chance(20.0, 4)
    assert chance(5.0, 3) > chance(5.0, 4) > chance(5.0, 8)
    assert chance(1e9, 4) == pytest.approx(1 / 20000)
    pts = np.sort(np.random.default_rng(7).standard_normal((4000, 4)), axis=1)
    best = np.max([np.diff(pts, axis=1)[:, i] / np.maximum(pts[:, i] - pts[:, 0], pts[:, -1] - pts[:, i + 1])
                   for i in range(3)], axis=0)
    point = np.quantile(best, 0.95)
    assert 0.04 <= chance(point, 4) <= 0.06


def test_values_held_unevenly_by_the_families_are_read_by_an_additive_fit():
    """Families that hold different values (a data order recorded for some members only): each value's effect comes
    from an additive fit of family and value, so family effects do not leak into it; values that no family joins to
    the others have no sides."""
    effect = np.zeros((4, 6))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect, seed=3)
    r = np.random.default_rng(0)
    coords = coords + 5.0 * (fam % 2 == 0)[:, None] * np.eye(6)[1]  # strong family effects ...
    keep = ~((fam % 2 == 0) & (col == 3)) & ~((fam % 2 == 1) & (col == 1))  # ... and an uneven design
    got = sides(coords[keep], (col[keep] == 0).astype(int), col[keep], fam[keep])
    assert got["sides"] == [["0"], ["1", "2", "3"]] and got["contrast"] > 10
    from analysis.strata_sides import _value_effects

    fam_k, col_k = fam[keep], col[keep]
    truth = r.standard_normal((4, 3))
    x = r.standard_normal((32, 3))[fam_k] + truth[col_k]  # exact: no model noise
    v = _value_effects(x, fam_k, col_k)
    assert np.allclose(v - v[0], truth - truth[0], atol=1e-8)
    alone = np.where(col == 3, 100 + fam % 2, fam)  # value 3 held only by two families of its own
    assert sides(coords, (col == 0).astype(int), col, alone) is None
