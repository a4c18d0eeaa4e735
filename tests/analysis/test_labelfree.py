"""Label-free verdicts (analysis/labelfree.py): calibrated on null populations, powerful on planted
structure, and families -- not models -- as the sampling unit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from markupsafe import Markup
from sklearn.metrics import adjusted_mutual_info_score

from analysis import labelfree as lf
from analysis.synthetic import crossed_population
from analysis.synthetic import synthetic_population as population


def test_null_populations_rarely_get_a_deep_verdict():
    """Over 24 null populations (four kinds of null, two fingerprints each, corrected together as a
    report would), at most 5% of (population, fingerprint) pairs get a deep verdict; lineage-tracking
    fingerprints say ``lineage only``, structureless ones ``no structure``."""
    deep, pairs, lineage_only, flat_none = 0, 0, 0, 0
    kinds = ["null", "null-t", "null-skew", "null-flat"]
    for seed in range(24):
        kind = kinds[seed % 4]
        a, fam, _ = population(kind, seed)
        b, _, _ = population(kind, 1000 + seed)
        res = lf.decide([lf.label_free(a, fam, n_null=99, random_state=seed),
                         lf.label_free(b, fam, n_null=99, random_state=seed)])
        deep += sum(r.verdict in lf.DEEP_VERDICTS for r in res)
        pairs += len(res)
        lineage_only += sum(r.verdict == "lineage only" for r in res) if kind != "null-flat" else 0
        flat_none += sum(r.verdict == "no structure" for r in res) if kind == "null-flat" else 0
    assert deep / pairs <= 0.05, (deep, pairs)
    assert lineage_only >= 0.9 * 36 and flat_none >= 0.9 * 12


@pytest.mark.parametrize("kind,verdict", [("groups", "groups lineages"), ("cross", "crosses lineage")])
def test_planted_deep_factors_are_found_without_the_label(kind, verdict):
    """A seed-decided factor groups whole families; a per-model one splits them. Found in most
    populations, with candidate basins that recover the label (AMI >= 0.8). 199 null replicates, the
    report's default: the split test is the smaller of two p-values, doubled (Bonferroni), so with 99
    its floor 0.02 cannot survive the correction over three tests."""
    found, amis = 0, []
    for seed in range(8):
        x, fam, label = population(kind, seed, delta=6.0)
        (r,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=seed)])
        if r.verdict == verdict:
            found += 1
            amis.append(adjusted_mutual_info_score(label, r.candidate_basins))
    assert found >= 7 and np.mean(amis) >= 0.8, (found, amis)


def test_a_split_along_one_lesser_direction_is_found_by_the_per_direction_test():
    """Two seed-decided camps along the fourth-largest direction of 32 families' centroids (the shape
    measured on xor-cues' ood-outputs): the joint 5-dimensional index dilutes it among Gaussian
    directions; the per-direction index finds it, names the direction, and its groups are the camps."""
    found = []
    for seed in range(4):
        r = np.random.default_rng(seed)
        scale = np.array([2.0, 1.8, 1.6, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.3])
        c = r.standard_normal((32, 10)) * scale
        camp = r.permutation(np.arange(32) % 2)
        c[:, 3] = 2.5 * (2 * camp - 1) + 0.3 * r.standard_normal(32)
        fam = np.repeat(np.arange(32), 2)
        x = c[fam] + 0.3 * r.standard_normal((64, 10))
        (res,) = lf.decide([lf.label_free(x, fam, n_null=99, random_state=seed)])
        if res.verdict == "groups lineages" and res.groups_axis is not None:
            found.append(adjusted_mutual_info_score(camp[fam], res.candidate_basins))
    assert len(found) >= 3 and min(found) >= 0.9, found


def _crossing_split(seed: int, shift: float, n_fam: int = 10, m: int = 4, d: int = 5):
    """Families (sd 1) of ``m`` members (sd 0.5) in which every other member is shifted by ``shift``
    along the first coordinate: a planted backdoor in half of each family (an outside user's audit)."""
    r = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), m)
    side = np.tile(np.arange(m) % 2, n_fam)
    x = 0.5 * r.standard_normal((n_fam * m, d)) + r.standard_normal((n_fam, d))[fam]
    x[:, 0] += shift * side
    return x, fam, side


def test_a_split_inside_every_family_is_found_by_the_within_family_test():
    """A split that cuts every family inflates the pooled within-family covariance of the all-model
    test's null along itself (p 0.1-0.3 at a shift of 8 member sds before the within-family test).
    The residuals' own camps find it at 4 member sds, call it ``crosses lineage``, and its candidate
    basins are the planted halves (a member or two of 40 on the wrong side at this shift)."""
    amis = []
    for seed in range(4):
        x, fam, side = _crossing_split(seed, 2.0)
        (r,) = lf.decide([lf.label_free(x, fam, n_null=99, random_state=seed)])
        assert r.verdict == "crosses lineage" and r.split_within and r.split_rate == 1.0, (seed, r.verdict, r.p_split)
        amis.append(adjusted_mutual_info_score(side, r.candidate_basins))
    assert np.mean(amis) >= 0.85 and min(amis) >= 0.7, amis


def test_a_data_order_shared_across_families_is_lineage_not_a_camp():
    """The same data order in every init family can move its models the same way (measured on
    digits-backdoor-null: a third of the models split off by data seed in five fingerprints). Given
    as a stratum, it is lineage: no deep verdict; a plant that is not the data order is still found."""
    r = np.random.default_rng(3)
    fam, order = np.repeat(np.arange(8), 3), np.tile(np.arange(3), 8)
    x = 0.5 * r.standard_normal((24, 5)) + r.standard_normal((8, 5))[fam]
    x[:, 0] += 2.0 * (order == 2)
    (blind,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0)])
    assert blind.verdict == "crosses lineage"  # without the stratum: the data order looks like a camp
    (told,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0, strata=[order])])
    assert told.verdict not in lf.DEEP_VERDICTS, (told.verdict, told.p_split)
    plant = (order == fam % 3).astype(int)  # one member of each family, each data order as often: neither
    x[:, 1] += 3.0 * plant
    (found,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0, strata=[order])])
    assert found.verdict == "crosses lineage"
    assert adjusted_mutual_info_score(plant, found.candidate_basins) >= 0.7


def _uneven_pairs() -> np.ndarray:
    """Two of each family's four models (8 families x 4 data orders) in a camp, the data orders in it
    5, 2, 4 and 5 times: spread unevenly over the orders, as an outside audit's backdoors were."""
    pairs = [(0, 1), (0, 2), (0, 3), (0, 2), (1, 3), (2, 3), (0, 3), (2, 3)]
    plant = np.zeros(32, int)
    for f, pair in enumerate(pairs):
        plant[4 * f + np.array(pair)] = 1
    return plant


def test_a_camp_spread_unevenly_over_the_data_orders_is_found_with_them_taken_out():
    """The data orders' means absorb part of such a camp and blur it in the residuals (an outside audit
    of the twentieth session: a backdoor two weight fingerprints separate perfectly read "no candidate"
    once `data_seed` was recorded). The camp is also tested with its part along the orders given back:
    measured at a shift of 5 member SDs: found (AMI >= 0.8) in 11 of 12 draws, the residuals' camps alone
    in 6 of 12."""
    plant = _uneven_pairs()
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    assert np.bincount(order[plant == 1]).tolist() == [5, 2, 4, 5]
    found = 0
    for seed in range(6):
        r = np.random.default_rng(seed)
        x = 0.5 * r.standard_normal((32, 5)) + r.standard_normal((8, 5))[fam] + 0.7 * r.standard_normal((4, 5))[order]
        x[:, 0] += 2.5 * plant
        (res,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0, strata=[order])])
        found += res.verdict == "crosses lineage" and adjusted_mutual_info_score(plant, res.candidate_basins) >= 0.8
    assert found >= 5, found


def test_a_rule_drawn_per_model_one_data_order_of_which_holds_one_side_only_is_found_and_one_the_order_decides_not():
    """An outside audit (101): a rule drawn at random per model, every model of data order 2 on one side, read "no
    candidate deep difference" with `data_seed` taken out, 9 of 11 fingerprints' own clusters the rule: that order's
    mean held all of its camp, and the models' split halved it. The all-model split is now also fitted jointly
    with the orders from the models' split before they were taken out. A rule the order decides (orders 0 and 2
    against 1 and 3) is that order's, and stays no camp."""
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    r = np.random.default_rng(7)
    plant = r.integers(0, 2, 32)
    plant[order == 2] = 1
    assert sorted(np.bincount(fam[plant == 1], minlength=8)) != [0] * 4 + [4] * 4  # families cut, not whole
    parity = order % 2
    found, decided = 0, 0
    for seed in range(4):
        r = np.random.default_rng(seed)
        noise = 0.5 * r.standard_normal((32, 5)) + r.standard_normal((8, 5))[fam] + 0.7 * r.standard_normal((4, 5))[order]
        for camps, count in ((plant, "found"), (parity, "decided")):
            x = noise.copy()
            x[:, 0] += 10.0 * camps  # (the code before: found in 0 of 4, p 0.04-0.2, the camps blurred)
            (res,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0, strata=[order])])
            hit = res.verdict == "crosses lineage" and adjusted_mutual_info_score(camps, res.candidate_basins) >= 0.8
            found += hit and count == "found"
            decided += hit and count == "decided"
    assert found >= 3 and decided == 0, (found, decided)


def test_camps_inside_the_families_that_the_shared_orders_hold_unevenly_are_found_and_order_noise_is_not():
    """Outside audit 123: a backdoor in 3 of each base's 10 fine-tunes, 4 bases sharing 10 data orders (one model a
    cell), the orders holding 3, 2, 1 or none of it, read "no candidate" with `data_seed` taken out: the residuals'
    own camps were another split, and giving their part along the orders back did not recover the backdoor. The
    camps the models form before the orders are taken out are now a third start, given back the same way; orders
    with a strong effect of their own (one direction, heavy-tailed) still give no camp."""
    fam, order = np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4)
    plant = ((order + fam) % 10 < 3).astype(int)  # 12 of 40, every family cut, no order wholly on one side
    found = false = 0
    for seed in range(6):
        r = np.random.default_rng([seed, 123])
        x = r.standard_normal((40, 8)) + 3.0 * r.standard_normal((4, 8))[fam]
        orders = r.standard_t(2, (10, 1)) * 2.0 * np.linspace(1.0, 0.2, 8)  # order noise along a few directions
        (res,) = lf.decide([lf.label_free(x + 8.0 * plant[:, None] * (np.arange(8) == 0), fam, n_null=199,
                                          random_state=seed, strata=[order])])
        found += res.verdict == "crosses lineage" and adjusted_mutual_info_score(plant, res.candidate_basins) >= 0.8
        false += lf.label_free(x + orders[order], fam, n_null=199, random_state=seed, strata=[order]).p_split <= 0.05
    assert found >= 5 and false <= 1, (found, false)


def test_the_camps_fitted_jointly_with_orders_spread_unevenly_over_the_families_stay_calibrated():
    """Review 101: with two data orders drawn per model (3 models a family), the orders' effects stay in the family
    means too; the split of the fingerprint before the strata were taken out followed the orders, its own part was
    the orders' share between families, and giving it back split the null by order (17 of 100 at p <= 0.05 with an
    order effect 5 times the families', against 2 before). A split mostly along the levels themselves now gives
    nothing back: the same p-values as without the joint fit, on these nulls."""
    rejected = 0
    for seed in range(60):
        x, fam, _ = population("null", seed, 8, 3)
        r = np.random.default_rng([seed, 7])
        order = r.integers(0, 2, len(x))
        x = x + (r.standard_normal((2, 10)) * 5.0 * np.linspace(1.5, 0.3, 10))[order]
        rejected += lf.label_free(x, fam, n_null=199, random_state=seed, strata=[order]).p_split <= 0.05
    assert rejected <= 4, rejected
    codes = lf._codes(fam)[0]
    design, levels = lf._stratum_contrasts(codes, 8, [order]), lf._stratum_levels(codes, [order])
    xr = (x - x.mean(0))[None, :, :5]
    assert np.array_equal(lf._split_given_back(xr, order[None], design, levels), xr)  # a split along the levels: nothing


def test_a_camp_one_order_holds_ties_with_its_mirror_given_back_and_the_tie_goes_to_the_camp():
    """An outside audit (102): 4 models of one data order (in 4 of 8 families) apart; taking the order out moves its
    other 4 models the other way, a mirror split that, given back, reaches the same index, and kept as the first
    start it was held back as small. A tie goes to the second start, the split before the strata were taken out."""
    from analysis.sigclust import cluster_index

    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    r = np.random.default_rng(0)
    x = 0.3 * r.standard_normal((32, 5)) + r.standard_normal((8, 5))[fam] + 0.7 * r.standard_normal((4, 5))[order]
    camp, mirror = ((order == 1) & (fam < 4)).astype(int), ((order == 1) & (fam >= 4)).astype(int)
    x[:, 0] += 12 * camp
    codes = lf._codes(fam)[0]
    design, levels = lf._stratum_contrasts(codes, 8, [order]), lf._stratum_levels(codes, [order])
    x = x - design @ (design.T @ x)
    x = (x - x.mean(0))[None]
    given = [cluster_index(lf._split_given_back(x, s[None], design, levels), min_size=2)[0][0] for s in (camp, mirror)]
    assert given[0] == pytest.approx(given[1], rel=1e-9)  # the mirror given back: the same index
    _, split = lf._joint_index(x, (mirror[None], camp[None]), design, levels, 2)
    assert adjusted_mutual_info_score(split[0], camp) == pytest.approx(1.0)


def test_with_strata_the_within_family_test_takes_the_smaller_p_of_its_two_statistics_calibrated():
    """Its p is the min-p of both statistics on the same Gaussian replicates: on Gaussian members with a
    shared data-order effect, raw p <= 0.05 about as often as 5%; without strata it is the one statistic
    it always was (the same p whatever the second would say)."""
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    ps = []
    for seed in range(120):
        r = np.random.default_rng(seed)
        x = 0.5 * r.standard_normal((32, 5)) + r.standard_normal((8, 5))[fam] + 0.7 * r.standard_normal((4, 5))[order]
        ps.append(lf._within_split(x - x.mean(0), fam, 8, 99, np.random.default_rng(seed), [order])[1])
    assert 0.0 < np.mean(np.asarray(ps) <= 0.05) <= 0.12, np.mean(np.asarray(ps) <= 0.05)
    x = np.random.default_rng(0).standard_normal((32, 5))
    with pytest.MonkeyPatch.context() as mp:
        calls = []
        mp.setattr(lf, "_camp_indices", lambda *a, f=lf._camp_indices, **kw: calls.append(a[3]) or f(*a, **kw))
        lf._within_split(x, fam, 8, 19, np.random.default_rng(0))
    assert calls and all(shared is None for shared in calls)


def test_a_projected_data_order_leaves_the_all_model_split_as_without_it():
    """The all-model statistic with a data order given as a stratum sees, and tests against, what the
    same population without the order's shared effect gives (data and null alike: the projection
    removes an additive effect exactly)."""
    for seed in range(3):
        x, fam, order, _ = crossed_population("null", seed, 8, 4, order_sd=1.0)
        x0, *_ = crossed_population("null", seed, 8, 4, order_sd=0.0)
        got = []
        for pop in (x, x0):
            with pytest.MonkeyPatch.context() as mp:  # the raw all-model p, before the Bonferroni doubling
                seen = {}
                mp.setattr(lf, "_all_split", lambda *a, f=lf._all_split, **k: seen.setdefault("r", f(*a, **k)))
                res = lf.label_free(pop, fam, n_null=49, random_state=seed, strata=[order])
            got.append((res.ci_split, seen["r"][1], seen["r"][2]))
        (ci, p, side), (ci0, p0, side0) = got
        assert ci == pytest.approx(ci0, rel=1e-9)
        assert abs(p - p0) <= 2 / 100  # a null replicate within rounding of the data may flip, no more
        assert adjusted_mutual_info_score(side, side0) == pytest.approx(1.0)


def _all_model_p(x: np.ndarray, fam, seed: int, strata=(), null: str = "rotation", n_split: int = 99) -> float:
    """The raw p-value of the all-model split (before the Bonferroni doubling with the within-family one)."""
    x = x - x.mean(0)
    codes = lf._codes(fam)[0]
    return lf._all_split(x, codes, int(codes.max()) + 1, n_split, np.random.default_rng(seed), list(strata), null=null)[1]


def _gaussian_nulls(n: int):
    """Hierarchical Gaussian null populations of three shapes: 8 families x 4, 12 families x 3 data
    orders given as a stratum (with a shared order effect), 10 families of 1-6 models."""
    scale = np.linspace(1.5, 0.3, 10)
    for s in range(n):
        x, fam, _ = population("null", s, 8, 4)
        yield x, fam, []
        x, fam, order, _ = crossed_population("null", 500 + s, 12, 3, order_sd=1.0)
        yield x, fam, [order]
        r = np.random.default_rng(1000 + s)
        fam = np.repeat(np.arange(10), r.integers(1, 7, 10))
        yield (r.standard_normal((10, 10)) * scale)[fam] + 0.5 * r.standard_normal((len(fam), 10)) * scale, fam, []


def test_the_rotation_null_is_calibrated_on_gaussian_nulls_and_the_default_is_conservative():
    """The rotation null (measured, not the default) keeps the data's between- and within-family
    scatter and draws only their arrangement, so on Gaussian nulls its p-value is uniform. Measured on
    these 120 populations: 9 at or below 0.1; the default plug-in null: 0, median 0.83
    (docs/results.md, "All-model split: a calibrated null, measured"). Windows that hold either way."""
    pops = list(_gaussian_nulls(40))
    p = np.array([_all_model_p(x, fam, i, strata) for i, (x, fam, strata) in enumerate(pops)])
    assert 4 <= (p <= 0.1).sum() <= 24, np.sort(p)[:25]
    assert 0.35 <= np.median(p) <= 0.65, np.median(p)
    plug = np.array([_all_model_p(x, fam, i, strata, null="plug-in") for i, (x, fam, strata) in enumerate(pops[:30])])
    assert (plug <= 0.05).sum() <= 1 and np.median(plug) >= 0.6, np.sort(plug)[:5]
    x, fam, _ = pops[0]
    codes = lf._codes(fam)[0]
    default = lf._all_split(x - x.mean(0), codes, int(codes.max()) + 1, 99, np.random.default_rng(0))[1]
    assert default == _all_model_p(x, fam, 0, null="plug-in")  # the default is the conservative null


def test_the_rotation_null_finds_a_planted_crossing_factor():
    """Each model's coin flip moves it by +-3 along the first direction (families' sd 1.5 there): the
    all-model split's raw p under the rotation null is at most 0.025 in each of these 8 populations (12
    families x 4, 199 replicates; the default plug-in null gives 0.005-0.22, median 0.05) and its split
    is the plant."""
    ps, amis = [], []
    for s in range(8):
        x, fam, label = population("cross", 300 + s, 12, 4, delta=3.0)
        x = x - x.mean(0)
        _, p, split = lf._all_split(x, fam, 12, 199, np.random.default_rng(s), null="rotation")
        ps.append(p)
        amis.append(adjusted_mutual_info_score(label, split))
    assert sum(p <= 0.05 for p in ps) >= 7 and np.median(ps) <= 0.02, ps
    assert np.median(amis) >= 0.5, amis


def test_haar_frames_are_orthonormal_and_stay_in_their_subspace():
    """The rotation null's random frames: orthonormal columns, orthogonal to what was projected out
    of the Gaussian draw (here the ones vector), and sign-fixed (uniform, not QR's convention)."""
    g = np.random.default_rng(0).standard_normal((200, 6, 3))
    g = g - g.mean(1, keepdims=True)
    q = lf._haar_frame(g)
    assert np.allclose(np.einsum("bnk,bnl->bkl", q, q), np.eye(3), atol=1e-10)
    assert np.allclose(q.sum(1), 0, atol=1e-10)
    assert 0.4 <= (q[:, 0, 0] > 0).mean() <= 0.6  # no sign convention left: each sign about as often


def test_within_family_camps_of_a_sampled_population_extend_to_everyone(monkeypatch):
    """Above MAX_MODELS the tests run on whole families; models outside the sample join the camp
    nearest in residual space (their family's mean taken out), not in raw coordinates where the
    family effects would decide it (a review found 67% right that way)."""
    monkeypatch.setattr(lf, "MAX_MODELS", 120)
    r = np.random.default_rng(0)
    fam = np.repeat(np.arange(80), 4)
    side = np.tile([0, 1, 0, 1], 80)
    x = 0.3 * r.standard_normal((320, 4)) + 2.0 * r.standard_normal((80, 4))[fam]
    x[:, 0] += 2.0 * side
    res = lf.label_free(x, fam, n_null=39, random_state=0)
    assert res.sampled == 120 and res.split_within
    assert adjusted_mutual_info_score(side, res.split_basins) >= 0.95


def test_parent_chains_of_one_model_do_not_take_the_within_family_test_apart():
    """Only parent-chain roots with two or more members are taken out: a zoo where a few models have
    children (most roots are one model) keeps the test's power (a review: p 0.01 -> 0.29 before)."""
    r = np.random.default_rng(1)
    fam = np.repeat(np.arange(8), 6)
    side = np.tile(np.arange(6) % 2, 8)
    x = 0.5 * r.standard_normal((48, 5)) + r.standard_normal((8, 5))[fam]
    x[:, 0] += 3.0 * side
    roots = np.array([f"m{i}" for i in range(48)], dtype=object)
    roots[1], roots[7] = "m0", "m6"  # two spawned children; 46 roots of one model
    (res,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0, nested=roots)])
    assert res.verdict == "crosses lineage" and res.split_within, (res.verdict, res.p_split)


def test_the_within_family_test_leaves_models_without_relatives_out():
    """Singletons have no residual: their candidate basin is -1; the others still split by the plant."""
    x, fam, side = _crossing_split(0, 2.0)
    x = np.vstack([x, np.random.default_rng(9).standard_normal((3, 5))])
    fam = np.concatenate([fam, [100, 101, 102]])
    (r,) = lf.decide([lf.label_free(x, fam, n_null=99, random_state=0)])
    assert r.verdict == "crosses lineage" and r.split_within
    assert (r.candidate_basins[-3:] == -1).all()
    assert adjusted_mutual_info_score(side, r.candidate_basins[:-3]) >= 0.7


def test_singletons_beside_the_families_do_not_switch_the_lineage_test_off():
    """12 families of two and 12 models without relatives (an outside audit's population): the
    lineage test runs on all 36 (singletons join its permutations) and finds the pairs."""
    rng = np.random.default_rng(3)
    fam = [f"f{i}" for i in range(12) for _ in range(2)] + [f"s{i}" for i in range(12)]
    effect = {f: rng.standard_normal(6) * 2.0 for f in dict.fromkeys(fam)}
    x = np.stack([effect[f] + 0.3 * rng.standard_normal(6) for f in fam])
    res = lf.decide([lf.label_free(x, fam, n_null=99)])[0]
    assert res.p_lineage is not None and res.p_lineage <= 0.02
    assert res.verdict == "lineage only"


def test_models_without_a_lineage_value_are_left_out_and_then_placed_in_the_nearest_basin():
    """A model without a lineage value (no metadata CSV row) is in none of the tests: the p-values
    are those of the known models alone, and every model still gets a candidate basin."""
    x, fam, side = _crossing_split(0, 2.0)
    extra = x[:6] + 0.05 * np.random.default_rng(1).standard_normal((6, x.shape[1]))  # relatives of known models
    xa = np.vstack([x, extra])
    fama = np.concatenate([np.asarray(fam, dtype=object), np.asarray(["", None, float("nan"), " ", "", ""], dtype=object)])
    known = lf.label_free(x, fam, n_null=99, random_state=0)
    res = lf.label_free(xa, fama, n_null=99, random_state=0)
    assert (res.p_lineage, res.p_groups, res.p_split) == (known.p_lineage, known.p_groups, known.p_split)
    assert res.n_models == len(xa) and res.n_unknown == 6 and res.n_families == known.n_families
    (r,) = lf.decide([res])
    assert r.verdict == "crosses lineage" and len(r.candidate_basins) == len(xa)
    assert "6 models have no lineage value" in r.sentence
    (none,) = lf.decide([lf.label_free(xa[-6:], fama[-6:])])  # every value missing: said once, no basins
    assert none.verdict == "insufficient" and none.sentence == "insufficient: no model has a lineage value"
    (few,) = lf.decide([lf.label_free(xa[-10:], fama[-10:])])  # one known family: no candidate basin to join
    assert few.sentence.startswith("insufficient: 1 init family (at least 2 needed). 6 models have no lineage value")
    assert "candidate basin" not in few.sentence


def test_a_deep_test_significant_only_before_the_correction_says_inconclusive():
    """'Lineage only' must not claim 'one cloud' when a split was significant before the correction
    across fingerprints and not after: it says so, with both numbers."""
    base = lf.LabelFreeResult(40, 10, 0.005, 0.6, 0.03, split_rate=1.0)
    others = [lf.LabelFreeResult(40, 10, 0.001, 0.9, 0.9) for _ in range(5)]
    r = lf.decide([base, *others])[0]
    assert r.verdict == "lineage only"
    assert "one cloud" not in r.sentence and "Inconclusive about a deep difference" in r.sentence
    assert "two camps p 0.03" in r.sentence and "cutting 100% of the families" in r.sentence
    clean = lf.decide([lf.LabelFreeResult(40, 10, 0.005, 0.6, 0.6), *others])[0]
    assert clean.sentence == lf.SENTENCES["lineage only"]
    # at the smallest p the null replicates can give, the sentence says so (the seventh audit: weight-stats,
    # two camps p 0.005 with 199 replicates, q 0.06)
    floor = lf.decide([lf.LabelFreeResult(40, 10, 0.005, 0.6, 0.005, split_rate=1.0, n_null=199),
                       *[lf.LabelFreeResult(40, 10, 0.5, 0.9, 0.9) for _ in range(15)]])[0]
    assert floor.verdict == "no structure" and "two camps p 0.005" in floor.sentence
    assert "would tell; p 0.005 is the smallest 199 null replicates can give)." in floor.sentence
    assert "smallest" not in r.sentence  # p 0.03 is not the floor
    # above the floor more replicates would not tell (the eighth audit: a groups test redrawn with 2,159
    # replicates, p 0.0083, still advised `--n-perm`); at it they could
    assert "(more init families would tell)." in r.sentence and "--n-perm" not in r.sentence
    assert "(more init families, or more null replicates with `--n-perm`, would tell; p 0.005" in floor.sentence


def test_one_family_set_apart_is_a_quirk_not_a_group_of_lineages():
    """A split whose sides are one init family and the rest (an outside audit's attention null: one
    family answered differently off-distribution) is not ``groups lineages``: a group needs two
    families, as in the centroid groups test. The sentence names what the split found."""
    r = np.random.default_rng(0)
    fam = np.repeat(np.arange(6), 4)
    x = r.standard_normal((6, 5))[fam] * 0.7 + r.standard_normal((24, 5)) * 0.5
    x[fam == 3, 0] += 20.0  # family 3 alone, far away
    (res,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0)])
    assert res.split_min_families == 1 and res.p_split <= 0.01
    assert res.verdict == "lineage only" and res.candidate_basins is None
    assert "set one init family apart from the others" in res.sentence and "one cloud" not in res.sentence
    two = x.copy()
    two[fam == 4, 0] += 20.0  # two families together: a group of lineages
    (res2,) = lf.decide([lf.label_free(two, fam, n_null=199, random_state=0)])
    assert res2.split_min_families == 2 and res2.verdict == "groups lineages"


def test_a_minority_of_models_from_several_families_crosses_lineage():
    """The tenth outside audit's minority: 3 of 24 models (12 families of 2) on another rule, each from
    its own family. The split cuts 3 of 12 families (below ``CROSS_SPLIT_RATE``) and sets no family
    apart, so it was neither verdict and the sentence said "one init family apart". A smaller side of
    models of two or more families, each beside a relative on the other side, is a minority: `crosses
    lineage`, said as such. The models of one family alone on the smaller side are no verdict: said as a
    difference inside one family that the seed did not decide (the twelfth audit: "that seed's quirk" read
    as if the seed had decided it, of relatives split 6 and 6)."""
    r = np.random.default_rng(1)
    fam = np.repeat(np.arange(12), 2)
    x = r.standard_normal((12, 5))[fam] * 0.7 + r.standard_normal((24, 5)) * 0.5
    moved = [0, 8, 16]  # one model of families 0, 4 and 8
    x[moved, 0] += 40.0  # far enough for the gap rule: a camp of 3 needs a gap ~20 times its own range
    from analysis.effect import sized

    (res,) = lf.decide([sized(lf.label_free(x, fam, n_null=199, random_state=0), fam.astype(str), x, None, False,
                              np.zeros(24, int))])
    assert res.split_rate == pytest.approx(3 / 12) and (res.split_side_families, res.split_side_whole) == (3, 0)
    assert res.verdict == "crosses lineage" and sorted(np.flatnonzero(res.candidate_basins == res.candidate_basins[0])) == moved
    assert "a minority: models of 3 init families, each beside relatives in the other basin (it cuts 3 of 12" in res.sentence
    fam4 = np.repeat(np.arange(6), 4)
    one = r.standard_normal((6, 5))[fam4] * 0.7 + r.standard_normal((24, 5)) * 0.5
    one[[12, 13], 0] += 20.0  # two of family 3's four models: one family only
    (res1,) = lf.decide([lf.label_free(one, fam4, n_null=199, random_state=0)])
    assert res1.p_split <= 0.01 and (res1.split_side_families, res1.split_side_whole) == (1, 0)
    assert res1.verdict == "lineage only" and ("split the models of one init family, relatives on both sides, and leave "
                                               "every other family whole: a difference the seed did not decide, seen in "
                                               "one family only") in res1.sentence


def test_a_minority_with_one_family_mostly_in_it_still_crosses_lineage():
    """An outside audit (eighteenth session): rule B in one model each of 12 families of 40 x 4 and in 3
    of family 25's 4. One family with more than half its models on the smaller side made it no minority
    (nor a group: one family on that side), so a difference 37 SDs apart read "no candidate"; removing
    that family, it was found. Most of the smaller side's models are beside relatives on the other side,
    so it is a minority, and the sentence says which family has most of its models in it."""
    from analysis.effect import sized

    r = np.random.default_rng(3)
    fam = np.repeat(np.arange(40), 4)
    x = r.standard_normal((40, 5))[fam] * 0.7 + r.standard_normal((160, 5)) * 0.5
    moved = [4 * f + 1 for f in range(12)] + [100, 101, 102]  # one model of families 0-11, three of family 25
    x[moved, 0] += 40.0
    (res,) = lf.decide([sized(lf.label_free(x, fam, n_null=199, random_state=0), fam.astype(str), x, None, False,
                              np.zeros(160, int))])
    assert (res.split_side_families, res.split_side_whole, res.split_side_light, res.split_side_models) == (13, 1, 12, 15)
    assert lf.minority(res) and res.verdict == "crosses lineage"
    assert sorted(np.flatnonzero(res.candidate_basins == res.candidate_basins[1])) == moved
    assert ("a minority: 12 of its 15 models are of 12 init families that have relatives in the other basin, and 1 more "
            "family has most of its models in it") in res.sentence


def test_one_family_s_quirk_with_a_few_strays_is_no_minority():
    """The other side of the rule: a smaller side made mostly of one family (4 of 4) with a stray model of
    two others is that family's quirk, not a minority; nor is one whose every family has most of its
    models there (a group of families)."""
    base = lf.LabelFreeResult(40, 10, 0.01, 0.5, 0.001, split_rate=0.2)
    assert not lf.minority(replace(base, split_side_families=3, split_side_whole=1, split_side_light=2, split_side_models=6))
    assert not lf.minority(replace(base, split_side_families=5, split_side_whole=5, split_side_light=0, split_side_models=15))
    assert not lf.minority(replace(base, split_side_families=2, split_side_whole=1, split_side_light=5, split_side_models=7))
    assert lf.minority(replace(base, split_side_families=18, split_side_whole=2, split_side_light=16, split_side_models=20))
    assert lf.minority(replace(base, split_side_families=3, split_side_whole=0))
    assert not lf.minority(replace(base, split_rate=0.4, split_side_families=3, split_side_whole=0))


def test_without_relatives_the_sentences_say_what_was_not_tested():
    """Every model its own init family: no lineage or within-family test, and a split of the models
    cannot be called seed-decided."""
    r = np.random.default_rng(1)
    null = r.standard_normal((24, 5))
    planted = null.copy()
    planted[::2, 0] += 6.0
    a, b = lf.decide([lf.label_free(null, np.arange(24), random_state=0),
                      lf.label_free(planted, np.arange(24), random_state=0)])
    assert a.p_lineage is None and a.verdict == "no structure"
    assert a.sentence.startswith(lf.NO_RELATIVES["no structure"]) and "was not tested" in a.sentence
    assert b.verdict == "groups lineages" and "cannot be told" in b.sentence
    assert adjusted_mutual_info_score(np.arange(24) % 2, b.candidate_basins) == 1.0


def test_a_fingerprint_on_which_every_model_is_identical_has_no_structure():
    for x in (np.zeros((24, 0)), np.ones((24, 3))):
        (r,) = lf.decide([lf.label_free(x, np.repeat(np.arange(12), 2))])
        assert r.verdict == "no structure" and r.candidate_basins is None


def test_one_family_is_insufficient_and_two_or_three_test_no_groups_of_families():
    """One init family cannot be tested; two or three have no groups test (a group needs two families,
    two groups four) and no all-model split, so seed-decided groups of whole families are not claimed."""
    x, fam, _ = population("groups", 0, n_fam=1, m=12)
    (r,) = lf.decide([lf.label_free(x, fam)])
    assert r.verdict == "insufficient" and r.sentence == "insufficient: 1 init family (at least 2 needed)"
    x, fam, _ = population("groups", 0, n_fam=3, m=8, delta=6.0)
    (r,) = lf.decide([lf.label_free(x, fam)])
    assert r.p_groups is None and r.p_lineage is not None and r.verdict == "lineage only", r
    x, fam, _ = population("null", 0, n_fam=3, m=2)  # two or three families of twos: 6 models, too few
    (r,) = lf.decide([lf.label_free(x, fam)])
    assert r.verdict == "insufficient" and "at least 2 with relatives and 8 models" in r.sentence


@pytest.mark.parametrize("n_fam,m", [(2, 12), (3, 8)])
def test_two_or_three_families_test_camps_inside_them(n_fam, m):
    """Two or three init families: the within-family camps alone. Calibrated on Gaussian, heavy-tailed
    and skewed nulls (a raw p-value at or below 0.05 in at most 8% of 60), and camps planted in half
    of every family's models cross lineage with candidate basins that recover them."""
    kinds = ["null", "null-t", "null-skew"]
    raw = [lf.label_free(*population(kinds[s % 3], s, n_fam=n_fam, m=m)[:2], random_state=s).p_split for s in range(60)]
    assert sum(p is not None and p <= 0.05 for p in raw) <= 5, raw
    found = []
    for seed in range(6):
        x, fam, label = population("cross", seed, n_fam=n_fam, m=m, delta=6.0)
        (r,) = lf.decide([lf.label_free(x, fam, random_state=seed)])
        assert r.p_groups is None and r.split_within
        if r.verdict == "crosses lineage":
            found.append(adjusted_mutual_info_score(label, r.candidate_basins))
            assert r.split_rate == 1.0 and f"Only {n_fam} init families: with two or three" in r.sentence
    assert len(found) >= 4 and min(found) >= 0.8, found


def test_camps_in_one_of_two_families_are_that_familys_quirk():
    """Half of one family's models shifted, the other family whole: no deep verdict. The test hardly
    sees it (the shifted family's residuals widen the pooled null); where it is significant, the
    split is seen in one family only, and the sentence says so."""
    r = np.random.default_rng(3)
    fam = np.repeat([0, 1], 12)
    x = 0.5 * r.standard_normal((24, 5)) + r.standard_normal((2, 5))[fam]
    x[:6, 0] += 8.0
    (res,) = lf.decide([lf.label_free(x, fam, n_null=999)])
    assert res.verdict == "lineage only", res
    one = lf.LabelFreeResult(24, 2, 0.001, None, 0.002, split_rate=0.5, n_related_families=2, cut_families=("0",),
                             split_side_families=1, split_side_whole=0, split_min_families=0, split_within=True,
                             split_basins=np.r_[np.ones(6), np.zeros(18)].astype(int))
    (res,) = lf.decide([one])
    assert res.verdict == "lineage only" and "seen in one family only" in res.sentence, res.sentence


def test_family_bootstrap_resamples_whole_families_and_counts_repeats_apart():
    """Every sample holds whole families; a family drawn twice gets two draw numbers."""
    fam = np.repeat(np.arange(6), 3)
    seen = []

    def stat(rows, draw):
        assert len(rows) == 18 and all(len(set(fam[rows[draw == d]])) == 1 and (draw == d).sum() == 3 for d in set(draw))
        seen.append(len(set(draw)))
        return float(len(set(fam[rows])))

    lo, hi = lf.family_bootstrap(stat, fam, n_boot=50)
    assert set(seen) == {6} and 1 <= lo <= hi <= 6
    assert lf.family_bootstrap(stat, fam[:9]) is None  # 3 families: too few for an interval


def test_family_permutation_p_is_calibrated_and_sees_a_real_association():
    """Labels moving between families as blocks: under independence p-values are roughly uniform;
    a label that follows the clusters gets the smallest p."""
    r = np.random.default_rng(0)
    fam = np.repeat(np.arange(8), 4)
    clusters = r.integers(0, 2, 32)
    ami = lambda lab: adjusted_mutual_info_score(clusters, lab)  # noqa: E731
    ps = [lf.family_permutation_p(ami, r.integers(0, 2, 32), fam, n_perm=49, random_state=s) for s in range(40)]
    assert 0.3 < np.mean(ps) < 0.7 and np.mean(np.array(ps) <= 0.05) <= 0.15
    assert lf.family_permutation_p(ami, clusters, fam, n_perm=49) == pytest.approx(0.02)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="one family per row"):
        lf.label_free(np.zeros((5, 2)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        lf.label_free(np.full((8, 2), np.nan), np.arange(8) // 2)


@pytest.fixture(scope="module")
def planted_groups():
    """One analysis for the tests that read it (they do not change it)."""
    return _planted_groups_result()


def _planted_groups_result():
    """12 init families of 4 models whose centroids fall into two planted groups (families 0, 2, ...
    against 1, 3, ...), analysed without a label; one family's name is markup (user data the
    report must escape). Returns the result and each family's planted group."""
    from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze

    r = np.random.default_rng(0)
    g, fam = np.arange(12) % 2, np.repeat(np.arange(12), 4)
    c = r.standard_normal((12, 6))
    c[:, :3] += 8 * g[:, None]
    x = c[fam] + 0.5 * r.standard_normal((48, 6))
    names = np.asarray(["<i>fam</i>" if f == 0 else f"seed{f}" for f in fam], dtype=object)
    ids = [f"m{i}" for i in range(len(x))]
    opts = AnalysisOptions(n_perm=99, n_family_boot=50, n_boot=8, label="", embedding="pca")  # (the map: not read)
    fp = FingerprintInput("planted", x, ids, {"extractor": "planted", "output": "features"})
    planted = {("<i>fam</i>" if f == 0 else f"seed{f}"): int(g[f]) for f in range(12)}
    return analyze([fp], {"model_id": np.asarray(ids), "init_seed": names}, opts), planted


def test_report_shows_the_family_dendrogram_with_escaped_leaves(planted_groups):
    from scipy.cluster.hierarchy import fcluster

    from analysis.plots import family_dendrogram
    from analysis.report import render

    res, planted = planted_groups
    r = res.fingerprints[0]
    assert r.label_free["verdict"] != "insufficient"
    tree = r.label_free["tree"]
    assert sorted(tree["families"]) == sorted(planted)
    assert len(tree["linkage"]) == 11 and tree["sizes"] == [4] * 12
    # the tree's top split is the planted grouping of the families
    top = fcluster(np.asarray(tree["linkage"]), 2, "maxclust")
    assert len({(int(t), planted[f]) for t, f in zip(top, tree["families"])}) == 2
    html = render(res)
    assert "init families (init_seed) clustered by their centroids" in html
    assert html.count("&lt;i&gt;fam&lt;/i&gt;") >= 2 and "<i>fam</i>" not in html  # a leaf label and its tooltip
    # leaves coloured by candidate basin: one bar segment per (family, basin), a legend entry per basin
    members = {f: {str(g): 4} for f, g in planted.items()}
    members["seed1"] = {"0": 1, "1": 3}
    fig = family_dendrogram("tree", tree["linkage"], tree["families"], tree["sizes"], members, "t <x>")
    svg = fig.svg
    assert svg.count("<title>") == 13  # one tooltip per bar segment: 12 families, seed1 in two basins
    assert "candidate basin 0" in svg and "candidate basin 1" in svg  # the legend
    assert svg.count("seed1: 4 models; candidate basin 0: 1, candidate basin 1: 3") == 2
    assert "&lt;i&gt;fam&lt;/i&gt; (4)" in svg  # the leaf's tick label, escaped
    assert "t &lt;x&gt;" in str(Markup(fig.__html__())) and 'aria-label="t &lt;x&gt;"' in svg


def test_lineage_nn_and_stability_intervals_resample_families(planted_groups):
    from analysis import clustering as cl
    from analysis import metrics as mt

    row = planted_groups[0].scorecard[0]
    for value, ci in ((row.lineage_nn, row.lineage_nn_ci), (row.stability, row.stability_ci)):
        assert ci is not None and ci[0] <= ci[1] and -1 <= ci[0] and ci[1] <= 1
        assert ci[0] - 0.15 <= value <= ci[1] + 0.15  # the point estimate sits in (or next to) its interval
    # the stability's statistic, on every model once, is the bootstrap's stability itself
    x, _, _ = population("null", 1)
    out, reps = cl.bootstrap(x, "kmeans", 8, 6, 0, return_replicates=True)
    assert mt.replicate_agreement(reps, len(x))(np.arange(len(x))) == pytest.approx(out["stability"], abs=1e-12)


def test_a_groups_split_names_its_cut_families_and_keeps_their_models_on_their_own_side():
    """The sixth audit's finding 4: the seed decides the factor in most families, coin flips in the
    rest (families 0 and 1 here, one model on each side). The split fires with families mostly whole
    (`groups lineages`); the cut families' models each keep their own side (candidate basins = the
    truth, where each family on its majority side put one of each pair wrong), the sentence and
    ``cut_families`` name them, and the verdict's size is that of the partition it reports."""
    from analysis import effect
    from analysis.synthetic import partly_seeded_population

    x, fam, label = partly_seeded_population(5, 12, 2)
    mixed = [str(f) for f in np.unique(fam) if len(set(label[fam == f])) > 1]
    res = lf.label_free(x, fam)
    r = lf.decide([effect.sized(res, fam, x, None, False, np.zeros(len(x), int))])[0]
    assert r.verdict == "groups lineages" and r.candidate_basins is r.split_families
    assert list(r.cut_families) == mixed == ["0", "1"]
    assert adjusted_mutual_info_score(label, r.candidate_basins) == pytest.approx(1.0)
    whole = np.asarray([int(round(r.candidate_basins[fam == f].mean())) for f in fam])  # each family on its majority side
    assert adjusted_mutual_info_score(label, whole) < 0.85
    assert "Families 0 and 1 are cut by the split: their models fall on both sides" in r.sentence
    assert r.effect() == effect.basin_effect(r.candidate_basins, fam, x)
    assert r.effect()["separation"] > effect.separation(x, whole)
    # a crossing split cuts most families: no list (the verdict says it), as for the centroid groups
    xc, fc, _ = population("cross", 0)
    crossed = lf.decide([lf.label_free(xc, fc)])[0]
    assert crossed.verdict == "crosses lineage" and crossed.cut_families == ()


def test_a_groups_split_also_needs_its_families_majority_sides_apart():
    """The own-side partition of a split that cuts families is the 2-means split itself, further apart
    than its families' majority sides; measured on a real null (the audit's cnn-bn-null-24fam, 7 of 24
    families cut: majority sides 2.6 SDs apart, own sides 4.1), sizing only the reported partition made
    a false `groups lineages`. Both must be larger than two halves of one Gaussian cloud."""
    from dataclasses import replace

    from analysis import effect
    from analysis.synthetic import partly_seeded_population

    x, fam, _ = partly_seeded_population(5, 12, 2)
    sized = effect.sized(lf.label_free(x, fam), fam, x, None, False, np.zeros(len(x), int))
    assert {"split_families", "split_majority"} <= set(sized.effects)
    assert sized.effects["split_majority"]["separation"] < sized.effects["split_families"]["separation"]
    assert lf.decide([sized])[0].verdict == "groups lineages"
    small = {**sized.effects, "split_majority": {**sized.effects["split_majority"], "small": True, "separation": 2.6}}
    r = lf.decide([replace(sized, effects=small)])[0]
    assert r.verdict != "groups lineages" and r.cut_families == ()
    assert "The models' two camps (q " in r.sentence and "are only 2.6 within-basin SDs apart" in r.sentence


def test_a_deep_test_at_its_floor_unconfirmed_by_the_correction_asks_for_more_replicates():
    """The seventh audit's tf_planted_long: one fingerprint's split at the floor of 199 replicates
    (p 0.005), lifted to q 0.075 by the correction over 30 tests. :func:`replicates_to_decide` asks
    for that fingerprint again with replicates enough for a lone test at the floor to pass (q =
    alpha / 2), and for nothing else: not a significant test, not one above its floor, not one with
    enough replicates already."""
    assert lf.replicates_for(30, 0.05) == 2399 and lf.replicates_for(10**6, 0.05) == lf.MAX_NULL
    at_floor = lf.LabelFreeResult(12, 6, 0.98, 1.0, 1 / 200, split_rate=1.0, n_null=199)
    nulls = [lf.LabelFreeResult(12, 6, 0.5, 0.9, 0.9, n_null=199) for _ in range(9)]
    assert lf.replicates_to_decide([at_floor, *nulls]) == {0: 2399}
    assert lf.decide([at_floor, *nulls])[0].verdict == "no structure"
    groups = replace(at_floor, p_groups=2 / 200, p_split=0.9)  # the groups test's floor is 2 / (n + 1)
    assert lf.replicates_to_decide([*nulls, groups]) == {9: 2399}
    above = replace(at_floor, p_split=0.3)  # far above its floor and alpha: more would not help
    assert lf.replicates_to_decide([above, *nulls]) == {}
    assert lf.replicates_to_decide([at_floor, *nulls[:2]]) == {}  # 9 tests: significant already
    assert lf.decide([at_floor, *nulls[:2]])[0].verdict == "crosses lineage"
    enough = replace(at_floor, p_split=1 / 2400, n_null=2399)
    assert lf.replicates_to_decide([enough, *nulls]) == {}
    assert lf.decide([enough, *nulls])[0].verdict == "crosses lineage"
    # the lineage test too (an outside audit, 74: families the clusters were exactly read "no structure"
    # at p 0.005, q 0.0675, on a null where only two other tests were significant)
    families = lf.LabelFreeResult(12, 6, 1 / 200, 0.9, 0.9, n_null=199)
    assert lf.replicates_to_decide([families, *nulls]) == {0: 2399}
    assert lf.decide([families, *nulls])[0].verdict == "no structure"
    assert lf.decide([replace(families, p_lineage=1 / 2400, n_null=2399), *nulls])[0].verdict == "lineage only"


def test_a_deep_test_whose_monte_carlo_error_could_turn_its_decision_asks_for_more_replicates():
    """Outside audit 109: at 199 replicates the report's --seed decided tests one or two replicates either side of
    alpha (a GRU backdoor's split at p 0.005 at one seed, 0.030-0.035 at three). A groups or split test above its floor
    whose 99% Monte Carlo interval holds alpha (raw, or scaled into its q) is drawn again; not one far from it."""
    lo, hi = lf.mc_interval(0.03, 199, "split")  # 5 of 399 replicates as extreme (p = 2 (1 + 5) / 400)
    assert 0.005 < lo < 0.03 < hi < 0.08 and lf.mc_interval(0.03, 2399, "split")[1] < 0.04
    assert lf.undecided(0.03, 0.03, 199, "split", 0.05) and lf.undecided(0.02, 0.08, 199, "groups", 0.05)
    assert not lf.undecided(0.3, 0.9, 199, "split", 0.05) and not lf.undecided(0.03, 0.03, 99_999, "split", 0.05)
    split = lf.LabelFreeResult(12, 6, 0.9, 0.9, 0.03, split_rate=1.0, n_null=199, ci_within=0.5)
    nulls = [lf.LabelFreeResult(12, 6, 0.5, 0.9, 0.9, n_null=199) for _ in range(9)]
    assert lf.replicates_to_decide([split, *nulls]) == {0: 2399}
    assert lf.replicates_to_decide([replace(split, p_split=0.3), *nulls]) == {}
    assert lf.replicates_to_decide([replace(split, n_null=2399, p_split=0.03), *nulls]) == {}  # enough already
    assert lf.replicates_to_decide([replace(split, n_models=4000), *nulls]) == {0: 2399}  # at any size
    assert lf.replicates_to_decide([replace(split, ci_within=None), *nulls]) == {}  # not doubled: another unit
    assert lf.replicates_to_decide([replace(split, n_null=None), *nulls]) == {}  # no replicates recorded
    assert not lf.undecided(0.12, 0.9, 199, "groups", 0.05)  # a groups test's raw p decides nothing: its q only
    lineage = lf.LabelFreeResult(12, 6, 0.03, 0.9, 0.9, n_null=199)  # the lineage test decides no candidate: not drawn
    assert lf.replicates_to_decide([lineage, *nulls]) == {}


def test_the_minority_nulls_script_runs_and_its_heavy_tailed_nulls_get_no_minority_verdict(capsys):
    """scripts/labelfree_minority_nulls.py (the rates docs/results.md quotes), in a few draws."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "labelfree_minority_nulls.py"
    spec = importlib.util.spec_from_file_location("labelfree_minority_nulls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--reps", "3", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(mod.DESIGNS) and all(r["by_minority_rule"] == 0.0 for r in rows)


def test_one_familys_quirk_with_unequal_family_sizes_does_not_cross_lineage():
    """Found by review: half of a family of 20 shifted, a family of 4 whole. Centred in its family, the
    whole one is cut by the threshold too (its camps about 2.65 of its SDs apart): counted, it made the
    quirk cross lineage in 17 of 20 populations. A family counts as divided only when its own camps are at
    least half as far apart as the farthest family's."""
    out = []
    for seed in range(10):
        r = np.random.default_rng(seed)
        fam = np.repeat([0, 1], [20, 4])
        x = 0.5 * r.standard_normal((24, 5)) + r.standard_normal((2, 5))[fam]
        x[:10, 0] += 8.0
        (res,) = lf.decide([lf.label_free(x, fam, random_state=seed)])
        out.append(res.verdict)
        assert "candidate deep difference" not in res.sentence
    assert "crosses lineage" not in out, out
    x, fam, _ = population("cross", 0, n_fam=2, m=12, delta=6.0)  # both families divided alike: a lead, both named
    (res,) = lf.decide([lf.label_free(x, fam)])
    assert res.verdict == "crosses lineage" and res.cut_families == ("0", "1")
    assert res.sentence.startswith("Members of one init family land in different candidate basins, the same way in each of "
                                   "the families they divide: a difference the seed does not decide (a lead at two or three")
    x, fam, _ = population("null", 0, n_fam=2, m=12)
    (res,) = lf.decide([lf.label_free(x, fam)])
    assert res.verdict == "lineage only" and "groups of families are not tested" in res.sentence
    assert "centroids" not in res.sentence


def test_two_large_families_are_sampled_member_by_member_not_as_one_family():
    """Found by review: above MAX_MODELS whole families are sampled, which kept 1 of 2 families of 2,100
    (`insufficient: 1 init family`). With fewer than 4 families kept that way, every family is kept, each
    with a random share of its members."""
    r = np.random.default_rng(0)
    fam = np.repeat([0, 1], 2100)
    side = r.integers(0, 2, len(fam))
    x = r.standard_normal((len(fam), 5)) + r.standard_normal((2, 5))[fam]
    x[side == 1, 0] += 6
    (res,) = lf.decide([lf.label_free(x, fam, n_null=99)])
    assert res.n_families == 2 and res.sampled is not None and res.sampled <= lf.MAX_MODELS
    assert res.verdict == "crosses lineage" and adjusted_mutual_info_score(side, res.candidate_basins) > 0.9
    rows = lf.family_sample(np.repeat(np.arange(5), 1000))  # 5 families of 1,000: 4 whole ones, as before
    assert len(rows) == 4000 and len(np.unique(np.repeat(np.arange(5), 1000)[rows])) == 4


def test_a_few_related_families_beside_singletons_cannot_tell_the_seed():
    """An outside audit (79) and a review: one or two chance pairs among 24 independent seeds made `groups lineages`
    read as the init seed's; the fingerprint's own sentence says it cannot be told, as the answer does."""
    from analysis.labelfree_sentences import mostly_alone, nearly_alone_sentence

    singles = {f"m{i}": 1 for i in range(20)}
    assert mostly_alone({"n_related_families": 1, "family_sizes": {**singles, "p": 2}}) == 1
    assert mostly_alone({"n_related_families": 2, "family_sizes": {**singles, "p": 2, "q": 2}}) == 2
    assert mostly_alone({"n_related_families": 0, "family_sizes": singles}) is None  # none: "every model is its own"
    assert mostly_alone({"n_related_families": 3, "family_sizes": {"a": 8, "b": 8, "c": 8}}) is None
    assert mostly_alone({"n_related_families": 2, "family_sizes": {"a": 6, "b": 6, "c": 1}}) is None  # most related
    assert "Only 2 init families have two or more models (the others are one model each)" in nearly_alone_sentence(2)
    # summary.json's dict carries [related models, tested models] instead of the sizes (a review: the answer, which
    # reads the dict, never saw a family_sizes key); an older dict without either says nothing
    assert mostly_alone({"n_related_families": 1, "related_models": [2, 24]}) == 1
    assert mostly_alone({"n_related_families": 2, "related_models": [16, 24]}) is None
    assert mostly_alone({"n_related_families": 1}) is None
    from analysis.calibration import label_free_json
    from analysis.labelfree import LabelFreeResult

    res = LabelFreeResult(verdict="groups lineages", n_models=24, n_families=23, p_lineage=None, p_groups=0.01, p_split=None,
                          n_related_families=1, family_sizes={**singles, "p": 2, "x": 1, "y": 1})
    assert mostly_alone(label_free_json(res, [f"m{i}" for i in range(24)])) == 1


def test_a_rare_camp_of_a_large_population_is_found_as_the_same_camp_of_a_small_one():
    """Outside audit 110: the split tests' smallest camp grew with the population (a twentieth of the models), so a
    backdoor in 35 of 800 models was padded with clean ones into a continuum. The floor is now at most
    ``CAMP_MIN_MODELS`` (10): 16 of 400 models (100 families of 4), one from each of 16 families and far from
    the rest, are the candidate camp exactly; below 200 models the floor is what it was."""
    from analysis.effect import sized

    assert [lf.camp_min(n, 20, ceil=False) for n in (24, 60, 199, 200, 800)] == [2, 3, 9, 10, 10]
    assert [lf.camp_min(m, 10) for m in (24, 95, 100, 800)] == [3, 10, 10, 10]
    r = np.random.default_rng(4)
    fam = np.repeat(np.arange(100), 4)
    x = r.standard_normal((100, 6))[fam] + 0.5 * r.standard_normal((400, 6))
    moved = np.arange(0, 64, 4)  # the first model of families 0-15
    x[moved, 0] += 25.0
    (res,) = lf.decide([sized(lf.label_free(x, fam, n_null=199, random_state=0), fam.astype(str), x, None, False,
                              np.zeros(400, int))])
    assert res.verdict == "crosses lineage"
    assert sorted(np.flatnonzero(res.candidate_basins == res.candidate_basins[moved[0]])) == moved.tolist()


def test_the_camp_sizes_script_runs_and_finds_a_camp_at_the_floor_but_not_below_it(capsys):
    """scripts/labelfree_camp_sizes.py (the rates docs/scorecard.md, "How small a camp", quotes), small: at 400 models
    a camp of 10 moved 50 within-family SDs is the candidate exactly, one of 6 is not (padded to the floor, 10)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "labelfree_camp_sizes.py"
    spec = importlib.util.spec_from_file_location("labelfree_camp_sizes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--families", "100", "--sizes", "6", "10", "--sds", "50", "--seeds", "1", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["camp"], r["runs"][0]["ami"]) for r in rows] == [(6, None), (10, 1.0)]


def test_a_split_that_cuts_half_the_families_the_same_way_over_the_orders_is_recurring():
    """Outside audit 125's population with a learning rate per family: the orders' parity split every family of one
    rate the same way, and the third start, given back, read a lone camp at p 0.01. Such a split's pattern recurs; a
    backdoor in 3 of each base's 10 children, shifted base by base (audit 123), does not, nor a small camp spread over
    the orders that leaves most families whole (one of the same order in every family it cuts would: that order's)."""
    fam, order = np.repeat(np.arange(16), 4), np.tile(np.arange(4), 16)
    parity = ((order % 2) * (fam % 2 == 0)).astype(int)  # [0, 1, 0, 1] in the 8 even families
    parity[fam % 2 == 1] = np.random.default_rng(0).integers(0, 2, 32)
    fam10, order10 = np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4)
    shifted = ((order10 + fam10) % 10 < 3).astype(int)
    small = np.zeros(64, int)
    small[np.arange(8) * 8 + np.tile(np.arange(4), 2)] = 1  # one model in each of 8 families, each order twice
    got = lf._recurring(np.stack([parity, 1 - parity]), fam, order)
    assert got.tolist() == [True, True]
    assert not lf._recurring(shifted, fam10, order10) and not lf._recurring(small, fam, order)


def test_the_third_start_is_taken_only_where_the_strata_are_fully_recorded(monkeypatch):
    """Review 128: a data order blank (or named by each family alone) in half the families, whose models still shared
    the orders, made the third start rebuild the unrecorded orders' effects (p <= 0.05 in 24-47% of nulls). Without a
    full record, data and replicates get the first two statistics only."""
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8).astype(object)
    assert lf._fully_recorded(fam, [order])
    blank = order.copy()
    blank[fam >= 4] = None
    own = order.copy()
    own[fam >= 4] = [f"f{f}-{o}" for f, o in zip(fam[fam >= 4], order[fam >= 4])]
    assert not lf._fully_recorded(fam, [blank]) and not lf._fully_recorded(fam, [own])
    seen = []
    real = lf._camp_indices
    x = np.random.default_rng(0).standard_normal((32, 5)) + np.random.default_rng(1).standard_normal((8, 5))[fam]
    monkeypatch.setattr(lf, "_camp_indices", lambda *a, **kw: seen.append(len(out := real(*a, **kw))) or out)
    for col, statistics in ((order, 3), (blank, 2)):
        seen.clear()
        lf.label_free(x, fam, n_null=19, random_state=0, strata=[col])
        assert set(seen) == {statistics}, (statistics, seen)
