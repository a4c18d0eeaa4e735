"""Scale transfer statistics on planted arrays: a classifier that carries over, one that cannot."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.transfer import basin_transfer, macro_auroc


def _population(shift_at: dict[str, float], n_fam: int = 12, per_fam: int = 2, d: int = 6, seed: int = 0):
    """Models at scales ``shift_at``: basin A/B decided by feature 0's sign at every scale, plus a
    scale-dependent offset ``shift_at[scale]`` on feature 0 (a classifier fit at "s1" carries over
    when the offset is 0 and breaks when it swaps the sign)."""
    rng = np.random.default_rng(seed)
    x, lab, sc, fam = [], [], [], []
    for s, shift in shift_at.items():
        for f in range(n_fam):
            for _ in range(per_fam):
                basin = "A" if (f + len(x)) % 2 else "B"
                row = rng.normal(0, 0.3, d)
                row[0] += (2.0 if basin == "A" else -2.0) * (1 if shift >= 0 else -1)
                x.append(row), lab.append(basin), sc.append(s), fam.append(f)
    return np.asarray(x), lab, sc, fam


def test_a_planted_basin_direction_transfers_to_every_scale():
    x, lab, sc, fam = _population({"s1": 0, "s2": 0, "s3": 0})
    r = basin_transfer(x, lab, sc, fam, "s1")
    assert [s.scale for s in r.scales] == ["s1", "s2", "s3"] and r.fit_on == "s1" and r.classes == ["A", "B"]
    fit = r.scales[0]
    assert fit.fit and fit.n_models == 24 and fit.auroc > 0.95  # cross-validated within the fit scale
    for s in r.scales[1:]:
        assert s.auroc > 0.95 and s.accuracy > 0.9 and s.auroc_ci[1] == 1.0
        # 24 models of 12 families, the classifier fit on 24 others: well above chance, not [1, 1]
        assert 0.6 < s.auroc_ci[0] < 0.95
        assert abs(s.basin_shares["A"] - s.predicted_shares.get("A", 0)) < 0.15
    d = r.to_dict()
    assert set(d) >= {"fit_on", "scales"} and set(d["scales"][1]) >= {"scale", "n_models", "auroc", "accuracy", "basin_shares"}


def test_a_direction_that_flips_with_scale_does_not_transfer():
    x, lab, sc, fam = _population({"s1": 0, "s2": -1})
    r = basin_transfer(x, lab, sc, fam, "s1")
    assert r.scales[0].auroc > 0.95
    assert r.scales[1].auroc < 0.1 and r.scales[1].accuracy < 0.1  # the classifier is confidently wrong


def test_noise_features_give_chance_auroc_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    n = 160
    x = rng.normal(size=(n, 4))
    lab = rng.choice(["A", "B"], n)
    sc = np.repeat(["s1", "s2"], n // 2)
    fam = np.tile(np.repeat(np.arange(20), 4), 2)
    r = basin_transfer(x, lab, sc, fam, "s1")
    lo, hi = r.scales[1].auroc_ci
    assert lo < 0.5 < hi


def test_basins_the_fit_scale_never_showed_are_reported():
    x, lab, sc, fam = _population({"s1": 0, "s2": 0})
    lab = list(lab)
    lab[-1] = "C"
    r = basin_transfer(x, lab, sc, fam, "s1")
    assert r.scales[1].unseen_basins == ["C"] and r.scales[1].basin_shares["C"] > 0


def test_macro_auroc_over_the_classes_present():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    assert macro_auroc(y, p) == pytest.approx(1.0)
    assert macro_auroc(np.array([0, 0, 0, 0]), p) is None


@pytest.mark.parametrize("kw, msg", [
    ({"fit_on": "s9"}, "unknown fit scale 's9' (valid: s1, s2)"),
    ({"labels": ["A"] * 48}, "a classifier needs at least two basins"),
])
def test_errors_name_the_culprit(kw, msg):
    x, lab, sc, fam = _population({"s1": 0, "s2": 0})
    args = {"features": x, "labels": lab, "scale": sc, "family": fam, "fit_on": "s1", **kw}
    with pytest.raises(AnalysisError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        basin_transfer(**args)


def test_scales_sort_by_their_numbers():
    from analysis.transfer import scale_key

    labels = ["model.width=128,model.depth=1", "model.width=16,model.depth=2", "model.width=16,model.depth=1"]
    assert sorted(labels, key=scale_key) == [labels[2], labels[1], labels[0]]
