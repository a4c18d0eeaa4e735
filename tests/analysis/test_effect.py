"""The size of a candidate deep difference, and one family set apart (analysis/effect.py)."""

from dataclasses import replace

import numpy as np
import pytest

from analysis import labelfree as lf
from analysis.calibration import label_free_json
from analysis.effect import (
    GAUSSIAN_HALVES,
    SizedLabelFree,
    basin_effect,
    family_apart,
    share_of_variance,
    sized,
)
from analysis.labelfree_sentences import size_lines


def _population(offset: float, n_fam: int = 12, m: int = 4, seed: int = 0, camp_sd: float = 0.05):
    """``n_fam`` families of ``m``: family effects and member noise in 4 dims, and in a fifth the
    members split in two camps the same way in every family (``offset`` apart, ``camp_sd`` around)."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), m).astype(str)
    camp = np.tile(np.arange(m) % 2, n_fam)
    x = rng.normal(size=(n_fam, 4))[np.repeat(np.arange(n_fam), m)] * 3 + rng.normal(size=(n_fam * m, 4))
    y = offset * camp + rng.normal(scale=camp_sd * max(offset, 1e-12), size=n_fam * m)
    return np.column_stack([x, y]), fam, camp


def test_gaussian_halves_is_the_split_of_one_gaussian():
    z = np.random.default_rng(1).standard_normal(200_000)
    halves = z > 0
    d = (z[halves].mean() - z[~halves].mean()) / np.sqrt((z[halves].var() + z[~halves].var()) / 2)
    assert d == pytest.approx(GAUSSIAN_HALVES, rel=0.01)


def test_share_from_distances_equals_share_from_features():
    x, fam, camp = _population(5.0)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    assert share_of_variance(d, camp, distances=True) == pytest.approx(share_of_variance(x, camp), rel=1e-9)
    assert share_of_variance(x, np.zeros(len(x), int)) is None  # one basin: no between-basin variance


def test_a_planted_split_is_large_and_a_tiny_one_small():
    x, fam, camp = _population(8.0)
    big = basin_effect(camp, fam, x, within=True, n_boot=50)
    assert big["share"] > 0.2 and big["separation"] > 5 * GAUSSIAN_HALVES and not big["small"]
    assert big["share_ci"][0] <= big["share_bc"] <= big["share_ci"][1]
    # the same camps 1e-3 apart next to family effects and noise of SD 1-3: a real but tiny difference
    x, fam, camp = _population(1e-3)
    small = basin_effect(camp, fam, x, within=True, n_boot=50)
    assert small["share"] < 0.02 and small["separation"] < GAUSSIAN_HALVES and small["small"]


def test_basic_interval_reflects_a_bootstrap_that_overstates_the_estimate():
    """Bootstrap values all above the estimate (a share drawn with duplicated families: the eighth
    audit's ``61% [62%-76%]``): the percentile interval excludes the estimate; the basic interval lies
    on the other side, holds the bias-corrected estimate, and is clipped to the statistic's range."""
    from analysis.resampling import basic_interval, percentile_interval

    vals = np.linspace(0.62, 0.76, 200)
    lo, hi = percentile_interval(list(vals), 200, 0.95)
    assert lo > 0.61
    mid, blo, bhi = basic_interval(vals, 0.61, 200)
    assert mid == pytest.approx(2 * 0.61 - 0.69) and blo < mid < bhi < 0.61
    assert bhi == pytest.approx(2 * 0.61 - lo) and blo == pytest.approx(2 * 0.61 - hi)
    assert basic_interval(vals, 0.05, 200, bounds=(0.0, 1.0))[:2] == (0.0, 0.0)
    assert basic_interval(vals[:90], 0.61, 200) is None  # fewer than half the samples defined


def test_the_reported_share_interval_covers_the_populations_share_and_the_percentile_one_did_not():
    """16 families x 2 models in 20 dims, camps crossing every family (docs/results.md, "Effect-size
    intervals: basic, not percentile"): the sample's share overstates the population's (0.053) and the
    family bootstrap's shares overstate the sample's, so the percentile interval covered it in about a
    fifth of the populations; the basic interval that ``basin_effect`` reports covers it in most, and
    holds its bias-corrected estimate."""
    from analysis.effect import _share_samples
    from analysis.resampling import family_bootstrap_batch

    rng = np.random.default_rng(5)
    basic = percentile = 0
    for r in range(30):
        fam = np.repeat(np.arange(16), 2)
        camp = np.tile([0, 1], 16)
        x = rng.normal(size=(16, 20))[fam] + rng.normal(size=(32, 20))
        x[:, 0] += 3.0 * (camp - 0.5)
        e = basin_effect(camp, fam.astype(str), x, n_boot=100, random_state=r)
        assert e["ci_method"] == "basic-expanded" and e["share_ci"][0] <= e["share_bc"] <= e["share_ci"][1]
        assert e["separation_ci"][0] <= e["separation_bc"] <= e["separation_ci"][1]
        basic += e["share_ci"][0] <= 0.053 <= e["share_ci"][1]
        lo, hi = family_bootstrap_batch(_share_samples(x, camp, fam.astype(str), False), fam.astype(str), 100, r)
        percentile += lo <= 0.053 <= hi
    assert basic >= 24 and percentile <= 15


def test_at_six_families_the_interval_is_widened_for_the_few_families_and_covers_near_its_level():
    """6 families x 2 models, camps crossing every family (docs/results.md, "Effect-size intervals at
    few families"): the bootstrap of 6 families sees their spread divided by 6, not 5, and as if known,
    so the basic interval covered the population's share (0.292) in 84% of populations; widened by
    ``small_sample_expansion(6)`` (1.44) it holds the unwidened interval and covers it in at least 90%."""
    from analysis.effect import _share_samples
    from analysis.resampling import (
        basic_interval,
        family_bootstrap_batch_values,
        small_sample_expansion,
    )

    assert small_sample_expansion(1) == 1.0
    factors = [small_sample_expansion(g) for g in (4, 6, 12, 24, 1000)]
    assert factors == sorted(factors, reverse=True) and factors[1] == pytest.approx(1.437, abs=1e-3)
    assert 1.0 < factors[-1] < 1.005
    rng = np.random.default_rng(7)
    covered = 0
    for r in range(40):
        fam = np.repeat(np.arange(6), 2).astype(str)
        camp = np.tile([0, 1], 6)
        x = rng.normal(0, 0.3, (6, 5))[np.repeat(np.arange(6), 2)] + rng.normal(size=(12, 5))
        x[:, 0] += 3.0 * (camp - 0.5)
        e = basin_effect(camp, fam, x, n_boot=100, random_state=r)
        vals = family_bootstrap_batch_values(_share_samples(x, camp, fam, False), fam, 100, r)
        mid, lo, hi = basic_interval(vals, e["share"], 100, 0.95, (0.0, 1.0), angular=True)
        assert e["share_bc"] == pytest.approx(mid)
        assert e["share_ci"][0] <= lo + 1e-12 and hi - 1e-12 <= e["share_ci"][1]
        covered += e["share_ci"][0] <= 0.292 <= e["share_ci"][1]
    assert covered >= 36


def test_a_clear_difference_s_share_interval_stops_short_of_zero_on_the_angular_scale():
    """6 families x 2 models, camps 2 member SDs apart crossing every family, the population's share
    0.155 (docs/results.md, "Share intervals on the angular scale"): the family bootstrap's shares are
    skewed above the sample's, so the widened basic interval on the linear scale reached 0 in about
    nine populations of ten, reading as "perhaps no difference"; on the angular scale, arcsin(sqrt(share)),
    the reported one stays above 0 and still covers the population's share."""
    from analysis.effect import _share_samples
    from analysis.resampling import (
        basic_interval,
        family_bootstrap_batch_values,
        small_sample_expansion,
    )

    rng = np.random.default_rng(11)
    linear_at_0 = angular_above_0 = covered = 0
    for r in range(20):
        fam = np.repeat(np.arange(6), 2).astype(str)
        camp = np.tile([0, 1], 6)
        x = rng.normal(0, 1.0, (6, 5))[np.repeat(np.arange(6), 2)] + rng.normal(0, 0.3, (12, 5))
        x[:, 0] += 2.0 * (camp - 0.5)
        e = basin_effect(camp, fam, x, n_boot=100, random_state=r)
        vals = family_bootstrap_batch_values(_share_samples(x, camp, fam, False), fam, 100, r)
        _, lo, _ = basic_interval(vals, e["share"], 100, 0.95, (0.0, 1.0), expand=small_sample_expansion(6))
        linear_at_0 += lo == 0.0
        angular_above_0 += e["share_ci"][0] > 0.0
        covered += e["share_ci"][0] <= 0.155 <= e["share_ci"][1]
        assert 0.0 <= e["share_ci"][0] <= e["share_bc"] <= e["share_ci"][1] <= 1.0
    assert linear_at_0 >= 14 and angular_above_0 >= 16 and covered >= 18


def test_the_angular_scale_maps_back_into_the_unit_interval():
    """Bootstrap shares near 1 and near 0: the interval's ends stay in [0, 1]; a share of exactly 0
    or 1 and the separation (``log``) keep their own scales."""
    from analysis.resampling import basic_interval

    hi_vals = np.linspace(0.97, 0.999, 200)
    mid, lo, hi = basic_interval(hi_vals, 0.95, 200, 0.95, (0.0, 1.0), angular=True, expand=1.9)
    assert 0.0 <= lo <= mid <= hi <= 1.0
    lo_vals = np.linspace(0.01, 0.3, 200)
    mid, lo, hi = basic_interval(lo_vals, 0.02, 200, 0.95, (0.0, 1.0), angular=True, expand=1.9)
    assert lo == 0.0 and 0.0 <= mid <= hi <= 1.0
    assert basic_interval(lo_vals, 0.0, 200, 0.95, (0.0, 1.0), angular=True)[1] == 0.0
    assert basic_interval(lo_vals, 2.0, 200, 0.95, (0.0, np.inf), log=True, angular=True) == \
        basic_interval(lo_vals, 2.0, 200, 0.95, (0.0, np.inf), log=True)


def test_a_tiny_significant_split_is_not_a_deep_verdict_and_a_large_one_is():
    """The audit's false positive in miniature: camps the split test finds (tight, the same way in
    every family) but negligible next to the fingerprint's other variance. Unsized, it reads `crosses
    lineage`; sized, the split is closer than the two halves of one Gaussian cloud and is no basin:
    `lineage only`, with a sentence saying why. A large one stays `crosses lineage` with its size."""
    for offset, small in ((1e-3, True), (8.0, False)):
        x, fam, camp = _population(offset)
        res = lf.decide([lf.label_free(x, fam, n_null=99)])[0]
        assert res.verdict == "crosses lineage"
        res = lf.decide([sized(lf.label_free(x, fam, n_null=99), fam, x, None, False, np.zeros(len(x), int))])[0]
        d = label_free_json(res, [f"m{i}" for i in range(len(x))], name="fp")
        if small:
            assert d["verdict"] == "lineage only" and d["effect"] is None
            assert "within-basin SDs apart, closer than the two halves of one Gaussian cloud (2.65): too small a " \
                   "difference to call a basin" in d["sentence"], d["sentence"]
            assert "set one init family apart" not in d["sentence"]
        else:
            assert d["verdict"] == "crosses lineage" and d["effect"]["small"] is False and "Size:" in d["sentence"]
            line = size_lines([("fp", d)])[0]
            assert line.startswith("lineage, how big") and not line.endswith("(small)")


def test_one_family_apart_is_named_and_silent_otherwise():
    fam = np.repeat(np.arange(12), 3).astype(str)
    one = (fam != "0").astype(int)  # basins: {family 0} vs the 33 others
    a = family_apart(one, fam)
    assert a["family"] == "0" and a["models"] == 3 and a["n_families"] == 12
    assert family_apart(fam, fam) is None  # every basin a family: lineage, no family singled out
    assert family_apart(np.zeros(36, int), fam) is None  # one basin
    two = np.isin(fam, ["0", "1"]).astype(int)  # two families together: a group, not one family apart
    assert family_apart(two, fam) is None
    mixed = np.tile([0, 1, 1], 12)  # basins that cut the families
    assert family_apart(mixed, fam) is None
    few = np.repeat(np.arange(5), 3).astype(str)  # below APART_MIN_FAMILIES
    assert family_apart((few != "0").astype(int), few) is None
    noise = np.where(fam == "0", -1, 0)  # a density clustering's noise points are no basin, even one family's
    assert family_apart(noise, fam) is None
    singles = np.array([f"m{i}" for i in range(24)])  # every model its own family (the tenth audit's no lineage)
    assert family_apart((singles != "m20").astype(int), singles) is None  # a lone model: the outliers line names it


def test_the_pointer_reaches_the_sentence_and_the_json():
    x, fam, _ = _population(0.0, camp_sd=0.0)
    x[fam == "3"] += 30.0  # family 3 far from the others
    clusters = (fam == "3").astype(int)
    res = lf.decide([sized(lf.label_free(x, fam, n_null=99), fam, x, None, False, clusters)])[0]
    d = label_free_json(res, [f"m{i}" for i in range(len(x))], name="disagreement")
    assert d["family_apart"]["family"] == "3" and d["family_apart"]["ratio"] > 3
    assert "Family 3 (4 models) stands apart from the other 11 on disagreement" in d["sentence"]
    assert d["effect"] is None or d["verdict"] in lf.DEEP_VERDICTS
    from analysis.labelfree_sentences import (
        apart_text,  # a family named from the weights: not "Family family of"
    )
    assert apart_text({"family": "family of m1_0", "models": 3, "n_families": 8}, "cka").startswith(
        "Family of m1_0 (3 models) stands apart from the other 7 on cka")


def test_the_shares_bootstrap_at_once_is_the_per_sample_one():
    """The share's interval from quadratic forms of the family counts equals the one from stacking
    each sample's rows (a family drawn twice counted twice), for features and for distances."""
    from analysis.effect import _share_samples
    from analysis.resampling import family_bootstrap, family_bootstrap_batch

    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(9), 4).astype(str)
    basins = np.tile([0, 1, 1, -1], 9)  # -1: a model in no basin
    x = rng.normal(size=(36, 7))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    for dist, v in ((False, x), (True, d)):
        def one(rows, _draw, v=v, dist=dist):
            return share_of_variance(v[np.ix_(rows, rows)] if dist else v[rows], basins[rows], dist)

        loop = family_bootstrap(one, fam, 100, 3)
        batch = family_bootstrap_batch(_share_samples(v, basins, fam, dist), fam, 100, 3)
        assert batch == pytest.approx(loop, rel=1e-9)


def test_many_cells_take_the_samples_one_at_a_time(monkeypatch):
    from analysis import effect

    x, fam, camp = _population(8.0, n_fam=6)
    at_once = basin_effect(camp, fam, x, within=True, n_boot=40)
    monkeypatch.setattr(effect, "MAX_CELLS", 1)
    one_by_one = basin_effect(camp, fam, x, within=True, n_boot=40)
    assert one_by_one["share_ci"] == pytest.approx(at_once["share_ci"], rel=1e-9)


def test_the_headline_marks_small_deep_differences_in_the_terminal_and_the_report():
    """A deep verdict that is a small difference is not headlined as a candidate basin like any other
    (an outside audit's false `crosses lineage` on a regression null read exactly like a backdoor)."""
    from analysis.report import headline, render
    from analysis.results import AnalysisResult, FingerprintResult, ScorecardRow
    from fingerprint.cli.display import headline_sentence

    def fp(name, small):
        return FingerprintResult(name, n_models=8, label_free={"verdict": "crosses lineage", "sentence": ".",
                                                              "effect": {"small": small}})

    def result(*fps):
        return AnalysisResult(1, 0.0, {}, 8, scorecard=[ScorecardRow.of(f) for f in fps], fingerprints=list(fps))

    only_small = result(fp("a", True))
    h = headline(only_small)
    assert h.small == ["a"]
    assert headline_sentence(h, set(h.small)).startswith("only small candidate deep differences (no ground truth); "
                                                         "crosses lineage: a (small)")
    both = result(fp("a", True), fp("b", False))
    h = headline(both)
    assert headline_sentence(h, set(h.small)) == "candidate deep basins (no ground truth); crosses lineage: a (small), b"
    assert "a (a small difference)" in render(only_small)


def test_a_small_split_keeps_the_other_inconclusive_hints():
    """A split left out for being small still lets the sentence say that the family groups were
    significant before the correction but not after."""
    from analysis.effect import SizedLabelFree

    base = lf.LabelFreeResult(40, 10, 0.005, 0.03, 0.005, split_rate=1.0)
    fields = {k: getattr(base, k) for k in lf.LabelFreeResult.__dataclass_fields__}
    small = SizedLabelFree(**fields, effects={"split": {"small": True, "separation": 0.5, "threshold": 2.65}})
    others = [lf.LabelFreeResult(40, 10, 0.001, 0.9, 0.9) for _ in range(5)]
    r = lf.decide([small, *others])[0]
    assert r.verdict == "lineage only"
    assert "only 0.5 within-basin SDs apart" in r.sentence and "too small a difference to call a basin" in r.sentence
    assert "Inconclusive about a deep difference: family groups p 0.03" in r.sentence
    assert "two camps p" not in r.sentence and "set one init family apart" not in r.sentence


def test_within_family_camps_held_back_as_small_give_the_split_of_all_models_back():
    """An outside audit (103): a backdoor in 12 of 24 GRUs (8 families of 3) was the split of all models (6.2 SDs
    apart), but the within-family camps, another split with a smaller p, replaced it and were held back as small:
    "no candidate". With those camps small and the split of all models not, that split and its own (doubled) p
    decide; neither is taken back when that split is small too, or when the within-family camps are not small."""
    bd = np.arange(24) % 2  # the split of all models: every other model
    middle = (np.arange(24) % 3 == 1).astype(int)  # the within-family camps: each family's middle model
    base = lf.LabelFreeResult(24, 8, 0.3, 0.6, 0.002, split_rate=1.0, split_within=True, split_basins=middle,
                              split_all=bd, p_split_all=0.004, split_rate_all=0.75, family_sizes={str(i): 3 for i in range(8)})
    fields = {k: getattr(base, k) for k in lf.LabelFreeResult.__dataclass_fields__}
    small, big = {"small": True, "separation": 0.96, "threshold": 2.65}, {"small": False, "separation": 6.2, "threshold": 2.65}
    others = [lf.LabelFreeResult(24, 8, 0.5, 0.9, 0.9) for _ in range(3)]
    r = lf.decide([SizedLabelFree(**fields, effects={"split": small, "split_all": big}), *others])[0]
    assert r.verdict == "crosses lineage" and np.array_equal(r.candidate_basins, bd) and not r.split_within
    assert r.p_split == 0.004 and r.split_rate == 0.75 and r.effect() == big and r.held is None
    ids = [f"m{i}" for i in range(24)]
    assert label_free_json(r, ids)["split_all_back"] and not label_free_json(lf.decide([others[0]])[0], ids)["split_all_back"]
    kept = lf.decide([SizedLabelFree(**fields, effects={"split": small, "split_all": {**big, "small": True}}), *others])[0]
    assert kept.verdict == "no structure" and kept.held == "small" and kept.split_within
    within = lf.decide([SizedLabelFree(**fields, effects={"split": big, "split_all": big}), *others])[0]
    assert within.verdict == "crosses lineage" and np.array_equal(within.candidate_basins, middle) and within.p_split == 0.002
    # sized: the split of all models is sized only when its own p could make a verdict
    x = np.random.default_rng(0).normal(size=(24, 3)) + 5.0 * bd[:, None]
    fam = [str(i // 3) for i in range(24)]
    measured = sized(base, fam, x, None, False, bd)
    assert measured.effects["split_all"]["separation"] > GAUSSIAN_HALVES and measured.effects["split"]["small"]
    assert "split_all" not in sized(replace(base, p_split_all=0.2), fam, x, None, False, bd).effects


def test_significant_groups_kept_small_are_not_called_not_significant():
    """The tenth outside audit: "The family groups (q 0.025) are 3.2 within-basin SDs apart ...
    Closest split of the families (exploratory, not significant: ...)". A groups test significant
    after the correction but kept from its verdict by its size gets no "not significant" pointer."""
    from analysis.effect import SizedLabelFree
    from analysis.labelfree_sentences import closest_groups

    base = lf.LabelFreeResult(40, 10, 0.001, 0.001, 0.9, split_rate=1.0, family_groups={str(i): i % 2 for i in range(10)},
                              family_sizes={str(i): 4 for i in range(10)})
    fields = {k: getattr(base, k) for k in lf.LabelFreeResult.__dataclass_fields__}
    small = SizedLabelFree(**fields, effects={"groups": {"small": True, "separation": 2.0, "threshold": 2.65}})
    r = lf.decide([small])[0]
    assert r.verdict == "lineage only" and "only 2 within-basin SDs apart" in r.sentence
    assert "Closest split" not in r.sentence and "not significant" not in r.sentence
    assert closest_groups(r) is None  # the report's terminal line reads it too (the sixteenth audit)
    plain = lf.decide([lf.LabelFreeResult(40, 10, 0.001, 0.1, 0.9, split_rate=1.0, family_groups=base.family_groups)])[0]
    assert "Closest split of the families (exploratory, not significant: family groups p 0.1" in plain.sentence


def test_sizes_read_as_numbers_at_the_extremes():
    """The sixth audit: ``1e+02% [1e+02%-1e+02%], 7.1e+15 SDs`` for a perfect split (models of a
    basin answering identically). Shares above 10% are whole percents, separations whole above 10 and
    ``over 1,000`` past that."""
    from analysis.labelfree_sentences import effect_brief, sds

    assert effect_brief({"share": 0.9996, "share_ci": [0.9991, 1.0], "separation": 511.4}) == "100% [100%-100%], 511 SDs"
    assert effect_brief({"share": 0.057, "share_ci": [0.048, 0.1], "separation": 7.1e15}) == "5.7% [4.8%-10%], over 1,000 SDs"
    assert [sds(v) for v in (0.48, 2.65, 9.9, 12.4, 999.4)] == ["0.48", "2.6", "9.9", "12", "999"]


def test_a_continuum_cut_in_two_is_not_a_deep_verdict_and_two_camps_are():
    """The sixth audit: a training knob drawn per model (weight decay, log-uniform) moves a
    fingerprint smoothly; spread evenly along one line, its models have a lower 2-means index than
    the Gaussian null, so the split test finds 'camps' that are a continuum cut in two. Sized, the
    camps have no gap (Hartigan's dip test along the line between them): no deep verdict, and the
    sentence says why. Two real camps keep theirs."""
    from analysis.effect import gap_p

    rng = np.random.default_rng(0)
    line = rng.uniform(0, 1, 60)
    assert gap_p(line[:, None], (line > 0.5).astype(int)) > 0.5  # one continuum
    two = np.r_[rng.normal(0, 0.1, 30), rng.normal(1, 0.1, 30)]
    assert gap_p(two[:, None], (two > 0.5).astype(int)) < 0.01  # two camps
    x, fam, _ = _population(0.0)
    rng = np.random.default_rng(0)
    rng.uniform(0, 1, len(x))
    knee = np.log1p(np.exp(8 * (rng.uniform(0, 1, len(x)) - 0.6)))  # a knob's effect past a knee, per model
    x[:, 4] = 12.0 * knee / knee.std()  # (9 of 12 such populations read `crosses lineage` unsized)
    plain = lf.decide([lf.label_free(x, fam, n_null=99)])[0]
    assert plain.verdict == "crosses lineage"  # the split test alone reads the continuum as camps
    res = lf.decide([sized(lf.label_free(x, fam, n_null=99), fam, x, None, False, np.zeros(len(x), int))])[0]
    d = label_free_json(res, [f"m{i}" for i in range(len(x))], name="fp")
    assert d["verdict"] == "lineage only", d["sentence"]
    assert "have no gap between them: along the line joining them the models spread as one continuum (dip test p" in d["sentence"]
    x2, fam2, _ = _population(8.0)
    kept = lf.decide([sized(lf.label_free(x2, fam2, n_null=99), fam2, x2, None, False, np.zeros(len(x2), int))])[0]
    assert kept.verdict == "crosses lineage" and kept.effects["split"]["dip_p"] < 0.05 and not kept.effects["split"]["no_gap"]


def test_the_sentence_explains_the_partition_that_blocked_the_verdict():
    """The review: a split that cuts too few families to cross lineage is judged on its families'
    sides; the sentence must quote those (small), not the models' split (which has no gap but was
    never the candidate)."""
    split = {"separation": 6.0, "small": False, "no_gap": True, "dip_p": 0.6, "threshold": GAUSSIAN_HALVES}
    majority = {"separation": 1.0, "small": True, "no_gap": False, "dip_p": 0.01, "threshold": GAUSSIAN_HALVES}
    fams = {"separation": 5.0, "small": False, "no_gap": False, "dip_p": 0.001, "threshold": GAUSSIAN_HALVES}
    r = SizedLabelFree(40, 10, 0.005, 0.9, 0.001, split_rate=0.1, split_min_families=4,
                       effects={"split": split, "split_majority": majority, "split_families": fams})
    d = lf.decide([r, *[lf.LabelFreeResult(40, 10, 0.005, 0.9, 0.9) for _ in range(4)]])[0]
    assert d.verdict == "lineage only"
    assert "only 1 within-basin SDs apart" in d.sentence and "dip test" not in d.sentence


def test_the_spacing_bound_finds_the_gap_beside_a_small_minority_that_the_dip_cannot():
    """The seventh audit, finding 1: 4 models of 24 far from the other 20 (a planted minority): the
    dip test cannot reject one mode (its statistic is capped by the minority's share), the spacing
    bound can; a continuum cut anywhere, or a long tail split off, it leaves alone."""
    from analysis.effect import gap_p, spacing_p

    rng = np.random.default_rng(0)
    far = np.r_[rng.normal(0, 1, 20), rng.normal(40, 1, 4)]
    minority = (np.arange(24) >= 20).astype(int)
    assert gap_p(far[:, None], minority) > 0.05 and spacing_p(far[:, None], minority) < 0.01
    hits = 0
    for _ in range(200):  # one continuum (uniform, lognormal tail), cut at the place 2-means would
        for x in (np.sort(rng.uniform(size=24)), np.sort(rng.lognormal(size=24))):
            cut = min(range(2, 23), key=lambda c: x[:c].var() * c + x[c:].var() * (24 - c))
            hits += spacing_p(x[:, None], (np.arange(24) >= cut).astype(int)) <= 0.05
    assert hits <= 8  # of 400: at most 2%
    overlap = np.r_[np.arange(12.0), np.arange(12.0) + 6][:, None]
    assert spacing_p(overlap, np.repeat([0, 1], 12)) == 1.0


def test_a_far_minority_of_four_in_twenty_four_keeps_its_deep_verdict():
    """4 of 24 models (one in each of 4 of 12 families) 40 SDs from the rest along one direction:
    `crosses lineage`, not blocked as a continuum."""
    rng = np.random.default_rng(3)
    fam = np.repeat(np.arange(12), 2).astype(str)
    x = rng.normal(size=(12, 4))[np.repeat(np.arange(12), 2)] * 3 + rng.normal(size=(24, 4))
    rule_b = np.zeros(24, bool)
    rule_b[[2, 9, 14, 21]] = True  # families 1, 4, 7, 10
    x = np.column_stack([x, 40.0 * rule_b + rng.normal(size=24)])
    res = lf.decide([sized(lf.label_free(x, fam, n_null=199), fam, x, None, False, np.zeros(24, int))])[0]
    assert res.verdict == "crosses lineage", res.sentence
    assert set(np.flatnonzero(np.asarray(res.candidate_basins) == res.candidate_basins[2])) == {2, 9, 14, 21}


def test_camps_only_the_line_fitted_to_them_separates_are_small():
    """The seventh audit, finding 0: camps that matched nothing were 6.7 SDs apart on the line fitted
    to them, -1 on lines fitted without each family. Random camps of family-centred pairs in 40
    coordinates: apart in-sample (self-influence of each model on the line), not held out; a real
    difference is apart both ways."""
    from analysis.effect import (
        _family_centred,
        basin_effect,
        heldout_separation,
        separation,
    )

    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(12), 2).astype(str)
    rng.normal(size=(24, 10))
    rng.normal(size=(12, 10))  # (the draws of a first population, kept so the camps below stay as measured)
    x = rng.normal(size=(24, 40)) + 3 * rng.normal(size=(12, 40))[np.repeat(np.arange(12), 2)]
    rng.permutation([0, 1])
    camps = np.concatenate([rng.permutation([0, 1]) for _ in range(12)])
    r = _family_centred(x, fam)
    assert separation(r, camps) > GAUSSIAN_HALVES > heldout_separation(r, camps, fam)
    e = basin_effect(camps, fam, x, within=True, n_boot=20)
    assert e["small"] and e["separation"] > GAUSSIAN_HALVES
    y = np.tile([0, 1], 12)
    real = x.copy()
    real[:, 0] += 8 * y
    e = basin_effect(y, fam, real, within=True, n_boot=20)
    assert not e["small"] and e["separation_heldout"] > 0.8 * e["separation"]


def test_the_report_says_sizes_as_the_sentences_do():
    """The twelfth outside audit: camps whose models answer identically (within-basin variance 0) printed
    "13054882766467884.00 within-basin SDs apart" and shares "1e+02% [1e+02%, 1e+02%]" in the HTML report,
    while the terminal said "over 1,000 SDs"."""
    from analysis.report import ENV
    from analysis.results import FingerprintResult

    effect = {"share": 1.0, "share_ci": [1.0, 1.0], "share_coords": 0.999, "separation": 1.3e16,
              "separation_ci": [2e15, 3e16], "threshold": 2.65, "small": False}
    r = FingerprintResult("disagreement", label_free={"verdict": "crosses lineage", "effect": effect, "p_lineage": 0.005,
                                                      "p_groups": 1.0, "p_split": 0.005, "q": 0.01})
    html = " ".join(ENV.get_template("macros.html.j2").module.label_free_section(r, None, None).split())
    assert "camps are over 1,000 within-basin SDs apart" in html and "[over 1,000, over 1,000]" in html
    assert "explain 100% [100%, 100%]" in html and "e+" not in html


def _heldout_by_family(x, basins, family):
    """The held-out separation written as its definition reads: one pass per family, its line from
    the other families' means (the form the one-pass version replaced)."""
    from analysis.effect import APART_MIN_FAMILIES, HELDOUT_TIE

    b = np.asarray(basins)
    labels, sizes = np.unique(b[b >= 0], return_counts=True)
    if len(labels) < 2:
        return None
    lo, hi = labels[np.argsort(-sizes, kind="stable")[:2]]
    fam = np.asarray([str(f) for f in family], dtype=object)
    in_two = (b == lo) | (b == hi)
    pos, side = [], []
    for f in np.unique(fam):
        mine, rest = fam == f, fam != f
        a, c, held = rest & (b == lo), rest & (b == hi), mine & in_two
        if not a.any() or not c.any() or not held.any():
            continue
        diff = x[c].mean(0) - x[a].mean(0)
        if not np.linalg.norm(diff) > HELDOUT_TIE * np.abs(x[in_two] - x[in_two].mean(0)).max():
            continue
        pos.append((x[held] - x[rest & in_two].mean(0)) @ (diff / np.linalg.norm(diff)))
        side.append(b[held] == hi)
    if len(pos) < APART_MIN_FAMILIES:
        return None
    p, s = np.concatenate(pos), np.concatenate(side)
    if s.all() or not s.any():
        return None
    sd = np.sqrt((((p[s] - p[s].mean()) ** 2).sum() + ((p[~s] - p[~s].mean()) ** 2).sum()) / max(len(p) - 2, 1))
    return (p[s].mean() - p[~s].mean()) / sd if sd > 0 else None


def test_heldout_separation_is_the_per_family_definition():
    """One pass over the models (each family's line from the totals less its own sums) gives the
    per-family definition's value, and ``None`` where it does: random populations with unassigned
    models, families missing from a basin, string and integer family ids, offsets and scales, and
    discrete features whose basin means tie."""
    from analysis.effect import heldout_separation

    rng = np.random.default_rng(0)
    checked = 0
    for t in range(300):
        n, d = int(rng.integers(4, 80)), int(rng.integers(1, 6))
        if t % 2:  # continuous
            x = rng.normal(size=(n, d)) * rng.choice([1.0, 1e3]) + rng.choice([0.0, 1e4])
        else:  # discrete values, where basin means tie exactly (found by review)
            x = rng.integers(0, 3, size=(n, d)).astype(float) * rng.choice([1.0, 1e6]) + rng.choice([0.0, 7.0])
        b = rng.integers(-1, int(rng.integers(2, 5)), size=n)
        fam = rng.integers(0, int(rng.integers(2, 20)), size=n)
        fam = fam.astype(str) if t % 3 == 0 else fam
        got, want = heldout_separation(x, b, fam), _heldout_by_family(x, b, fam)
        assert (got is None) == (want is None)
        if want is not None:
            checked += 1
            assert got == pytest.approx(want, rel=1e-8)
    assert checked > 100


def _predictions_apart(flipped: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``disagreement`` of 24 near-perfect models (6 init families x 4) on 256 probes of 3 classes: each
    model errs on a few probes of its own, and 2 models of each family (the camp) predict ``flipped``
    probes the other way."""
    rng = np.random.default_rng(seed)
    n, p = 24, 256
    pred = np.tile(rng.integers(0, 3, p), (n, 1))
    for i in range(n):
        own = rng.choice(np.arange(40, p), 2, replace=False)  # its own few errors
        pred[i, own] = (pred[i, own] + 1) % 3
    camp = np.tile([0, 0, 1, 1], 6)
    pred[np.ix_(camp == 1, np.arange(flipped))] = (pred[np.ix_(camp == 1, np.arange(flipped))] + 1) % 3
    d = (pred[:, None] != pred[None]).mean(-1)
    return d, [f"m{i}" for i in range(n)], camp


def test_camps_no_farther_apart_than_within_are_said_so_not_as_negative_steps():
    """An outside audit (eighteenth session): camps the split test found in its coordinates whose raw
    disagreement between is below their disagreement within read "differ by -10 of the fingerprint's
    smallest steps ..., fewer than 2". The count is negative (``steps_apart``) and the sentence now
    says what it means."""
    from types import SimpleNamespace

    from analysis.effect import steps_apart
    from analysis.labelfree_sentences import with_unconfirmed

    camp = np.tile([0, 1], 6)
    d = np.where(camp[:, None] == camp[None], 0.05, 0.02)
    np.fill_diagonal(d, 0.0)
    steps = steps_apart(d, camp, 0.01)
    assert steps == pytest.approx(-3.0)
    effect = {"steps": steps, "coarse": True, "min_steps": 2, "small": False}
    r = SimpleNamespace(p_groups=None, p_split=0.004)
    out = with_unconfirmed("Families are identifiable.", r, {(0, "split"): 0.0136}, 0, 0.05, {"split": effect})
    assert "no farther apart in the fingerprint's own distances than the models within each camp" in out
    assert "differ by -" not in out


@pytest.mark.parametrize("flipped", [1, 12])
def test_camps_a_prediction_or_so_apart_are_no_basin(flipped):
    """The seventeenth session's outside audit: on seed-only nulls of near-perfect GRUs, `disagreement`
    read a candidate deep difference from camps that predicted one tied probe of 256 the other way ("over
    1,000 SDs apart": the camps had no other spread). With the fingerprint's resolution (one prediction,
    ``meta["resolution"]``) the camps are ``steps`` apart: under ``MIN_STEPS`` no deep verdict, and the
    sentence says why; 12 probes apart, the verdict stands."""
    from analysis import scorecard as sc
    from analysis.effect import MIN_STEPS, steps_apart

    d, ids, camp = _predictions_apart(flipped)
    assert steps_apart(d, camp, 1 / 256) == pytest.approx(flipped, abs=0.5)
    table = {"model_id": np.asarray(ids, dtype=object), "family": np.repeat(np.arange(6), 4)}
    opts = sc.AnalysisOptions(lineage="family", n_boot=0, embedding="pca", n_family_boot=50)
    verdicts = {}
    for resolution in (None, 1 / 256):
        meta = {"output": "distances"} | ({"resolution": resolution} if resolution else {})
        r = sc.analyze([sc.FingerprintInput("disagreement", d, ids, meta)], table, opts).fingerprints[0]
        verdicts[resolution] = r.label_free["verdict"]
        if resolution and flipped < MIN_STEPS:
            assert "of the fingerprint's smallest steps (one prediction of its probes), fewer than 2" in r.label_free["sentence"]
    assert verdicts[None] == "crosses lineage"  # unsized by steps: the camps read as a basin
    assert (verdicts[1 / 256] == "crosses lineage") == (flipped >= MIN_STEPS)  # else no structure: no family effect here


def test_a_far_minority_of_two_is_a_lead_not_a_continuum():
    """An outside audit of the twenty-first session: 2 models of 32 on another rule, 40-111 SDs beyond the rest,
    were held back as "one continuum cut in two". No gap test can tell two far models from a long tail, so the
    verdict stays held, but the sentence says why (held "few") and calls the camps a lead."""
    rng = np.random.default_rng(3)
    fam = np.repeat(np.arange(12), 2).astype(str)
    x = rng.normal(size=(12, 4))[np.repeat(np.arange(12), 2)] * 3 + rng.normal(size=(24, 4))
    rule_b = np.zeros(24, bool)
    rule_b[[2, 15]] = True  # families 1 and 7
    x = np.column_stack([x, 40.0 * rule_b + rng.normal(size=24)])
    res = lf.decide([sized(lf.label_free(x, fam, n_null=199), fam, x, None, False, np.zeros(24, int))])[0]
    d = label_free_json(res, [f"m{i}" for i in range(24)], name="fp")
    assert d["verdict"] not in ("crosses lineage", "groups lineages") and d["held"] == "few", d["sentence"]
    assert "the smaller of 2 models: too few for a gap test to tell a small basin from a few models far out" in d["sentence"]
    assert "continuum" not in d["sentence"]


def test_the_advice_to_draw_more_replicates_follows_the_tests_it_names():
    """Outside audit 110 (F6): after a redraw at 2,399 replicates, a split held back (its camps small) sat at its floor
    and the groups test (p 0.035) was the inconclusive one; the sentence advised more `--n-perm` ("p 0.00042 is the
    smallest 2399 null replicates can give"), which the groups test does not need. The advice follows the tests the
    sentence names."""
    from types import SimpleNamespace

    from analysis.labelfree_sentences import with_unconfirmed

    held = {"split": {"small": True, "separation": 2.0, "separation_heldout": 1.5, "threshold": 2.65}}
    r = SimpleNamespace(p_groups=0.035, p_split=1 / 2400, n_null=2399)
    out = with_unconfirmed("Families are identifiable.", r, {(0, "split"): 0.0042, (0, "groups"): 0.08}, 0, 0.05, held)
    assert "family groups p 0.035 (q 0.08)" in out and "(more init families would tell)." in out
    assert "--n-perm" not in out and "smallest" not in out
    at_floor = SimpleNamespace(p_groups=2 / 2400, p_split=None, n_null=2399)
    out = with_unconfirmed("Families are identifiable.", at_floor, {(0, "groups"): 0.08}, 0, 0.05)
    assert "or more null replicates with `--n-perm`, would tell; p 0.00083 is the smallest 2399 null" in out
    named = SimpleNamespace(p_groups=None, p_split=1 / 2400, n_null=2399, split_rate=0.5, split_side_families=3,
                            split_side_whole=0, n_related_families=6, cut_families=[], split_within=True, split_all=None)
    out = with_unconfirmed("Families are identifiable.", named, {(0, "split"): 0.08}, 0, 0.05)  # the split named, at its floor
    assert "two camps p 0.000417 (q 0.08)" in out and "p 0.00042 is the smallest 2399 null replicates can give" in out


@pytest.mark.parametrize("flipped", [1, 12])
def test_the_steps_are_counted_in_the_distances_before_a_covariate(flipped):
    """Outside audit 118 (F2): `--covariate lr` made a GRU null's `disagreement:probe_set=in_dist`, whose models
    differed on one probe for one model, a candidate of 24 and 24 models: once the covariate's part is taken out the
    fingerprint is coordinates, and the camps' steps of one prediction were no longer counted. They are counted in its
    distances before the covariate."""
    from analysis import scorecard as sc
    from analysis.effect import MIN_STEPS

    d, ids, camp = _predictions_apart(flipped)
    lr = np.random.default_rng(1).uniform(1e-3, 1e-2, len(ids))
    table = {"model_id": np.asarray(ids, dtype=object), "family": np.repeat(np.arange(6), 4), "lr": lr}
    opts = sc.AnalysisOptions(lineage="family", n_boot=0, embedding="pca", n_family_boot=50, covariates=["lr"])
    meta = {"output": "distances", "resolution": 1 / 256}
    r = sc.analyze([sc.FingerprintInput("disagreement", d, ids, meta)], table, opts).fingerprints[0]
    assert (r.label_free["verdict"] == "crosses lineage") == (flipped >= MIN_STEPS)  # before: crosses lineage at 1
    if flipped >= MIN_STEPS:
        assert r.label_free["effect"]["steps"] == pytest.approx(flipped, abs=0.5)
