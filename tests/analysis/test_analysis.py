"""Analysis on synthetic arrays with known answers: clustering, bootstrap, combined fingerprints,
the deep-vs-noise metrics, and the scorecard's verdicts (thresholds as in ``analysis/scorecard.py``)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from analysis import calibration, prepared
from analysis import clustering as cl
from analysis import metrics as mt
from analysis import scorecard as sc
from analysis.errors import AnalysisError


def blobs(codes, d: int = 6, sep: float = 10.0, seed: int = 0) -> np.ndarray:
    """One unit-variance Gaussian blob per code; centres ``sep * sqrt(2)`` apart, rotated so that every
    column carries signal (standardisation gives a pure-noise column as much weight as a signal one)."""
    codes = np.asarray(codes)
    k = int(codes.max()) + 1
    assert d >= k
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return sep * np.eye(k, d)[codes] @ q + rng.normal(size=(len(codes), d))


THREE = np.repeat(np.arange(3), 12)  # 36 models, 3 basins


# -- clustering ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", cl.METHODS)
def test_every_method_recovers_separated_blobs_from_features(method):
    c = cl.cluster(blobs(THREE), method)
    assert c.k == 3
    assert adjusted_rand_score(THREE, c.labels) == 1.0
    assert c.method == ("kmeans" if method == "auto" else method)


@pytest.mark.parametrize("declared", [True, None])  # declared by the extractor, or guessed from the matrix
@pytest.mark.parametrize("method", cl.METHODS)
def test_every_method_recovers_separated_blobs_from_precomputed_distances(method, declared):
    x = blobs(THREE, seed=1)
    d = cdist(x, x)  # exact zeros on the diagonal
    assert cl.is_distance(d)
    c = cl.cluster(d, method, distances=declared)
    assert c.k == 3
    assert adjusted_rand_score(THREE, c.labels) == 1.0
    assert c.method == ("agglomerative" if method == "auto" else method)


def test_structureless_data_is_one_basin_and_tiny_populations_too():
    noise = np.random.default_rng(3).normal(size=(40, 8))
    assert cl.cluster(noise, "auto").k == 1  # best silhouette below MIN_SILHOUETTE
    assert cl.cluster(cdist(noise, noise), "auto").k == 1
    few = blobs(np.array([0, 0, 1]), d=3)
    assert cl.MIN_MODELS > 3 and cl.cluster(few, "kmeans").k == 1


def test_fixed_k_and_its_range():
    x = blobs(THREE)
    c = cl.cluster(x, "agglomerative", k=2)
    assert c.k == 2 and len(np.unique(c.labels)) == 2
    assert cl.cluster(x, "gmm", k=1).k == 1
    with pytest.raises(AnalysisError, match=r"fixed k = 36 is out of range for 36 models \(valid: 1..35\)"):
        cl.cluster(x, "kmeans", k=36)
    with pytest.raises(AnalysisError, match="unknown clustering method 'dbscan'"):
        cl.cluster(x, "dbscan")


def test_bootstrap_on_separated_blobs_agrees_on_k_and_is_stable():
    boot = cl.bootstrap(blobs(THREE), "auto", n_boot=8)
    assert boot["consensus_k"] == 3 and boot["k_counts"] == {"3": 8} and boot["n_boot"] == 8
    assert boot["stability"] > 0.95


def test_bootstrap_on_pure_noise_is_unstable_when_forced_to_split():
    noise = np.random.default_rng(4).normal(size=(36, 8))
    forced = cl.bootstrap(noise, "kmeans", n_boot=10, k=3)
    assert forced["consensus_k"] == 3
    assert forced["stability"] < 0.5  # arbitrary partitions of structureless data disagree
    # the default method calls noise one basin every time: "stable", but with k = 1
    auto = cl.bootstrap(noise, "agglomerative", n_boot=6)
    assert auto["consensus_k"] == 1


def test_bootstrap_is_deterministic_for_a_random_state():
    x = blobs(THREE, seed=5) + np.random.default_rng(0).normal(size=(36, 6)) * 2
    a = cl.bootstrap(x, "agglomerative", n_boot=6, random_state=7)
    b = cl.bootstrap(x, "agglomerative", n_boot=6, random_state=7)
    assert a == b


def _two_views():
    """48 models: a feature block with 3 blobs (y) and a distance block with 2 blobs (z), crossed."""
    y = np.repeat(np.arange(3), 16)
    z = np.tile(np.repeat(np.arange(2), 8), 3)
    a = blobs(y, d=4, seed=2)
    b = blobs(z, d=4, seed=3)
    return y, z, a, cdist(b, b)


def test_combined_blocks_each_weigh_the_same_whatever_their_scale():
    y, z, a, db = _two_views()
    width_a = cl.coordinates(a).shape[1]
    for scale in (1.0, 1000.0):
        comb = cl.combine([a, scale * db], [False, True])
        rms = [float(np.sqrt((blk**2).sum(1).mean())) for blk in (comb[:, :width_a], comb[:, width_a:])]
        assert np.allclose(rms, 1.0)
    unit = mt.pairwise_distances(cl.combine([a, db], [False, True]))
    big = mt.pairwise_distances(cl.combine([1000 * a, 1000 * db], [False, True]))
    assert np.allclose(unit, big, atol=1e-6)
    # unscaled coordinates: the x1000 block decides alone; per-block scaling: both blocks shape the basins
    naive = np.c_[cl.coordinates(a), cl.coordinates(1000 * db, True)]
    both = y * 2 + z
    lab = KMeans(6, n_init=5, random_state=0).fit_predict(naive)
    assert adjusted_mutual_info_score(y, lab) < 0.2
    lab = KMeans(6, n_init=5, random_state=0).fit_predict(cl.combine([a, 1000 * db], [False, True]))
    assert adjusted_rand_score(both, lab) == 1.0


def test_clustering_a_combined_fingerprint_finds_the_crossed_basins():
    y, z, a, db = _two_views()
    c = cl.cluster(cl.combine([a, 1000 * db], [False, True]), "auto", standardize=False)  # as analyze() does
    assert c.k == 6 and adjusted_rand_score(y * 2 + z, c.labels) == 1.0


def test_distances_with_round_off_on_the_diagonal_still_cluster():
    x = blobs(THREE, seed=1)
    d = cdist(x, x) + 1e-7 * np.eye(len(x))
    assert cl.is_distance(d)
    assert cl.cluster(d, "auto", distances=True).k == 3


def test_exemplars_are_members_of_their_cluster():
    x = blobs(THREE)
    ex = cl.exemplars(x, THREE)
    assert sorted(ex) == [0, 1, 2] and all(THREE[i] == c for c, i in ex.items())


# -- metrics ---------------------------------------------------------------------------------------
def test_ami_of_identical_and_renamed_labellings_is_one():
    a = np.array([0, 0, 1, 1, 2, 2, 2])
    assert mt.ami(a, a) == 1.0
    assert mt.ami(a, np.array(["x", "x", "q", "q", "b", "b", "b"])) == pytest.approx(1.0)
    assert mt.ami(np.zeros(7), a) == 0.0  # one cluster says nothing about the label
    assert mt.ami(a, np.zeros(7)) is None  # a label with one value cannot be scored


# 36 models: 4 init-seed families of 9 (the fewest the scorecard decides on), each with members in
# both true basins (5 + 4 or 4 + 5, so that the data seed does not decide the basin)
FAM = np.repeat(np.arange(4), 9)
BASIN = (np.arange(36) % 9 + FAM) % 2


def test_within_basin_lineage_ami_separates_lineage_from_deep_clusters():
    # clusters that split each basin by family: pure lineage signal
    noise, per = mt.within_basin_ami(FAM, FAM, BASIN)
    assert noise == 1.0 and per == {"0": 1.0, "1": 1.0}
    assert mt.ami(FAM, BASIN) < 0.05
    # clusters equal to the deep label: one cluster inside each basin, so no lineage signal
    noise, per = mt.within_basin_ami(BASIN, FAM, BASIN)
    assert mt.ami(BASIN, BASIN) == 1.0 and noise == 0.0 and per == {"0": 0.0, "1": 0.0}
    # both: basin x family clusters
    assert mt.within_basin_ami(BASIN * 4 + FAM, FAM, BASIN)[0] == 1.0


def test_within_basin_ami_does_not_credit_families_that_sit_in_different_basins():
    fam = np.repeat(np.arange(6), 4)  # families nested in basins
    basin = fam // 3
    assert mt.ami(basin, fam) > 0.3  # over the whole population clusters "line up" with families ...
    assert mt.within_basin_ami(basin, fam, basin)[0] == 0.0  # ... but not inside a basin


def test_within_basin_ami_skips_basins_that_cannot_show_lineage():
    # basin "a": 3 models (< MIN_BASIN); basin "b": every family has one member
    basins = np.array(["a"] * 3 + ["b"] * 5)
    fam = np.array([0, 0, 1, 2, 3, 4, 5, 6])
    assert mt.within_basin_ami(fam, fam, basins) == (None, {})
    assert mt.within_basin_ami(FAM, FAM)[0] == 1.0  # no ground truth: the population is one basin


def test_root_family_follows_parents_to_the_root():
    ids = ["a", "b", "a>s", "a>s>ft", "x>s", "b>ft"]
    parents = ["", None, "a", "a>s", "x", "b"]  # "x" is not in the population
    assert mt.root_family(ids, parents).tolist() == ["a", "b", "a", "a", "x", "b"]


def test_lineage_groups_are_the_lineage_of_each_root():
    ids = ["a", "b", "c", "d", "e", "f"]
    # c is a's child with another lineage value (an imported zoo); d shares a's value (one init seed);
    # e and f are children of x, which is not in the population
    groups = mt.lineage_groups(ids, [1, 2, 3, 1, 4, 5], ["", "", "a", "", "x", "x"])
    assert groups.tolist() == ["1", "2", "1", "1", "4", "4"]
    assert mt.lineage_groups(ids, None, ["", "a", "b", "", "d", ""]).tolist() == ["a", "a", "a", "d", "d", "f"]
    assert mt.lineage_groups(ids).tolist() == ids


def relatives_with_opposite_labels(n_pairs: int = 40, d: int = 8, seed: int = 0):
    """Pairs of near-identical models (a parent and its near-copy child) whose binary label differs:
    no fingerprint direction carries the label, so an honest probe scores chance."""
    rng = np.random.default_rng(seed)
    parents = rng.normal(size=(n_pairs, d))
    x = np.repeat(parents, 2, axis=0) + 1e-3 * rng.normal(size=(2 * n_pairs, d))
    label = np.tile(["kid", "parent"], n_pairs)[::-1]  # parent, kid, parent, kid, ...
    ids = [f"p{i}" + (">s" if j else "") for i in range(n_pairs) for j in range(2)]
    parent_id = ["" if j == 0 else f"p{i}" for i in range(n_pairs) for j in range(2)]
    return x, label, ids, parent_id


def test_probe_auroc_keeps_relatives_in_one_fold_so_opposite_labels_score_chance():
    x, label, ids, parent_id = relatives_with_opposite_labels()
    split = mt.probe_auroc(x, label)  # relatives on both sides of a fold: the sibling's label is learned, inverted
    assert split < 0.35
    grouped = mt.probe_auroc(x, label, groups=mt.lineage_groups(ids, None, parent_id))
    assert 0.35 < grouped < 0.65


@pytest.mark.parametrize("lineage", [False, True])
def test_scorecard_probe_folds_follow_parent_links(lineage):
    # an imported zoo: a child's own lineage value differs from its parent's, only parent_id links them
    x, label, ids, parent_id = relatives_with_opposite_labels()
    table = {"model_id": np.asarray(ids, dtype=object), "kind": label.astype(object),
             "parent_id": np.asarray(parent_id, dtype=object)}
    if lineage:
        table["family"] = np.arange(len(ids))  # every model its own lineage value
    opts = sc.AnalysisOptions(label="kind", lineage="family" if lineage else None, n_boot=0, calibrate=False,
                              embedding="pca")
    res = sc.analyze([sc.FingerprintInput("fp", x, ids, {})], table, opts)
    auroc = res.fingerprints[0].scores["probe_auroc"]
    assert 0.35 < auroc < 0.65, auroc


def test_a_probe_skipped_for_a_small_class_says_why():
    """The ninth audit: 4 of 24 models on another rule, and every fingerprint's AUROC read "–" with no
    reason anywhere. The verdict's reason now names the class size the probe needs."""
    rng = np.random.default_rng(0)
    ids = [f"m{i}" for i in range(24)]
    kind = np.where(np.arange(24) % 6 == 0, "minority", "majority").astype(object)  # 4 of 24
    x = rng.normal(size=(24, 6)) + 5.0 * (kind == "minority")[:, None]
    table = {"model_id": np.asarray(ids, dtype=object), "kind": kind, "family": np.repeat(np.arange(12), 2)}
    opts = sc.AnalysisOptions(label="kind", lineage="family", n_boot=0, embedding="pca", n_family_boot=20)
    r = sc.analyze([sc.FingerprintInput("fp", x, ids, {})], table, opts).fingerprints[0]
    assert r.scores["probe_auroc"] is None
    assert "no probe AUROC: the label's smallest class has 4 models, and the probe needs 5 in each" in r.reason
    assert mt.probe_skipped(np.zeros(6)) == "no probe AUROC: the label has one class"


def test_a_label_class_inside_one_family_skips_the_probe_and_the_rest_is_scored():
    """The twelfth outside audit: 6 of family s0's 12 models on another rule (beside 6 families of 2), and every
    fingerprint of `--label rule` read `failed` ("This solver needs samples of at least 2 classes"): the
    family-grouped fold that held s0 out trained on one class. The probe is skipped, saying why; the rest is scored."""
    rng = np.random.default_rng(0)
    ids = [f"m{i}" for i in range(24)]
    family = np.array(["s0"] * 12 + [f"s{1 + i // 2}" for i in range(12)], dtype=object)
    rule = np.array(["b" if i < 6 else "a" for i in range(24)], dtype=object)  # b: half of s0, and nowhere else
    x = rng.normal(size=(24, 6)) + 6.0 * (rule == "b")[:, None]
    table = {"model_id": np.asarray(ids, dtype=object), "rule": rule, "family": family}
    opts = sc.AnalysisOptions(label="rule", lineage="family", n_boot=0, embedding="pca", n_family_boot=20)
    r = sc.analyze([sc.FingerprintInput("fp", x, ids, {})], table, opts).fingerprints[0]
    assert r.error is None and r.scores["probe_auroc"] is None and r.scores["deep_ami"] == pytest.approx(1.0)
    assert ("no probe AUROC: the label's class 'b' is in one init family only ('s0'), so the fold that holds that "
            "family out would train the probe without it") in r.reason
    from analysis.forecast import forecast_step

    # the forecast's folds keep families together too: no accuracy, and no crash
    point = forecast_step(x, rule, groups=family)
    assert point["accuracy"] is None and point["skipped"] == "basin 'b' is in one init family only ('s0')"
    # the review's case: 5 families of 5, class b all of s3 and 2 of s4; with 5 folds one fold held two families
    # and another none ("Found array with 0 sample(s)"); fewer folds that train on every class are used instead
    family5 = np.repeat([f"s{i}" for i in range(5)], 5).astype(object)
    rule5 = np.where((family5 == "s3") | np.isin(np.arange(25), [20, 21]), "b", "a").astype(object)
    x5 = rng.normal(size=(25, 6)) + 6.0 * (rule5 == "b")[:, None]
    ids5 = [f"m{i}" for i in range(25)]
    table5 = {"model_id": np.asarray(ids5, dtype=object), "rule": rule5, "family": family5}
    r5 = sc.analyze([sc.FingerprintInput("fp", x5, ids5, {})], table5, opts).fingerprints[0]
    assert r5.error is None and (r5.scores["probe_auroc"] is None or r5.scores["probe_auroc"] > 0.9)
    assert forecast_step(x5, rule5, groups=family5)["accuracy"] is not None
    for seed in range(20):  # every split of the folds grouped_splits gives holds a model out and trains on both classes
        splits = mt.grouped_splits(np.asarray(rule5 == "b", int), np.unique(family5, return_inverse=True)[1], 5, seed)
        assert splits is not None and all(len(test) and len(set(rule5[train])) == 2 for train, test in splits)


def test_forecast_folds_keep_families_together():
    from analysis.forecast import forecast_step

    x, label, ids, parent_id = relatives_with_opposite_labels()
    split = forecast_step(x, label)
    assert split["auroc"] < 0.35
    # grouped, the label alternates within every family, so each fold reads the family-centred coordinates (a pair's
    # two members mirror images: a wider spread around chance than the raw ones', centred on it)
    aurocs = []
    for seed in range(8):
        x, label, ids, parent_id = relatives_with_opposite_labels(seed=seed)
        point = forecast_step(x, label, groups=mt.lineage_groups(ids, None, parent_id))
        assert point["centred_folds"][0] == point["centred_folds"][1]
        aurocs.append(point["auroc"])
    assert 0.4 < np.mean(aurocs) < 0.6, aurocs


def test_lineage_nn_against_chance():
    # one basin of 6: families {0,1}, {2,3}, {4,5}; relatives sit together
    pts = np.array([[0.0], [0.1], [5.0], [5.1], [10.0], [10.1]])
    fam = [0, 0, 1, 1, 2, 2]
    rate, chance = mt.lineage_nn(cdist(pts, pts), fam)
    assert rate == 1.0 and chance == pytest.approx(1 / 5)
    # nearest neighbours are never relatives
    rate, _ = mt.lineage_nn(cdist(pts, pts), [0, 1, 0, 2, 1, 2])
    assert rate == 0.0
    assert mt.lineage_nn(cdist(pts, pts), [0, 1, 2, 3, 4, 5]) == (None, None)


def test_probe_auroc_for_binary_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(["clean", "backdoor"], 20)
    x = rng.normal(size=(40, 5))
    sep = x.copy()
    sep[:, 0] += 3 * (y == "backdoor")
    assert mt.probe_auroc(sep, y) > 0.95
    assert mt.probe_auroc(x, y) < 0.8  # the label is independent of x
    assert mt.probe_auroc(x, ["a"] * 39 + ["b"]) is None  # a class of one model
    assert 0 <= mt.probe_auroc(blobs(THREE), THREE) <= 1  # several classes: macro one-vs-rest


# -- scorecard -------------------------------------------------------------------------------------
OPTS = sc.AnalysisOptions()


@pytest.mark.parametrize("deep,noise,auroc,binary,expect", [
    (0.30, 0.10, None, False, "tracks deep differences"),  # thresholds are "at or above"
    (0.2999, 0.10, None, False, "uninformative"),
    (0.10, 0.30, None, False, "tracks initialization noise"),
    (0.50, 0.45, None, False, "tracks both"),
    (0.10, 0.10, 0.85, True, "tracks deep differences"),  # binary label: the probe alone suffices
    (0.10, 0.10, 0.99, False, "tracks deep differences"),  # more classes: the probe counts too (issue 21 item 2)
    (0.10, 0.40, 0.90, True, "tracks both"),
    (0.10, None, 0.50, True, "uninformative"),
    (None, None, None, True, "uninformative"),
])
def test_verdict_rules(deep, noise, auroc, binary, expect):
    assert (OPTS.deep_threshold, OPTS.noise_threshold, OPTS.auroc_threshold) == (0.3, 0.3, 0.85)
    v, reason = sc.verdict(deep, noise, auroc, binary, OPTS, True)
    assert v == expect
    assert ("noise AMI n/a" in reason) == (noise is None)
    if auroc is not None and binary and auroc >= 0.85:
        assert "probe AUROC" in reason


def test_verdict_without_label_and_with_custom_thresholds():
    assert sc.verdict(0.9, 0.9, 0.9, True, OPTS, False) == (sc.NO_TRUTH, "no ground-truth label to score against")
    strict = OPTS.replace(deep_threshold=0.6, noise_threshold=0.6)
    assert sc.verdict(0.5, 0.5, None, False, strict, True)[0] == "uninformative"
    with pytest.raises(AnalysisError, match="analysis.deep_threshold' must be in"):
        OPTS.replace(deep_threshold=1.5)


def _table(deep: bool = True, parents=None) -> dict:
    ids = np.asarray([f"m{i}" for i in range(36)], dtype=object)
    t = {"model_id": ids, "init_seed": FAM, "data_seed": np.arange(36) % 9}
    if deep:
        t["deep_label"] = np.asarray(["rule_a", "rule_b"], dtype=object)[BASIN]
    if parents is not None:
        t["parent_id"] = np.asarray(parents, dtype=object)
    return t


def _fps():
    ids = [f"m{i}" for i in range(36)]
    rng = np.random.default_rng(0)
    return [sc.FingerprintInput("deep", blobs(BASIN, seed=1), ids),
            sc.FingerprintInput("noise", blobs(FAM, seed=2), ids),
            sc.FingerprintInput("both", blobs(BASIN * 4 + FAM, d=8, seed=3), ids),
            sc.FingerprintInput("flat", rng.normal(size=(36, 6)), ids)]


FAST = sc.AnalysisOptions(n_boot=4, embedding="pca", n_perm=99, n_family_boot=50)
ROW_KEYS = {"fingerprint", "extractor", "kind", "output", "supervised", "n_models", "n_clusters", "k_at_cap", "consensus_k",
            "stability", "deep_ami", "probe_auroc", "noise_ami", "parent_noise_ami", "lineage_nn", "lineage_nn_chance",
            "parent_nn", "parent_nn_chance", "aligns_with", "verdict", "reason", "error",
            # issue 20: calibrated numbers and the label-free verdict
            "significant", "label_free_verdict", "label_free_sentence", "candidate_basins", "n_families",
            "deep_ami_ci", "noise_ami_ci", "probe_auroc_ci", "deep_ami_p", "noise_ami_p", "deep_ami_q", "noise_ami_q",
            "lineage_nn_ci", "stability_ci", "privileged",
            # issue 22: the calibrated lineage identification
            "lineage_auc", "lineage_auc_p", "lineage_auc_q", "label_free_q", "probe_auroc_p", "probe_auroc_q", "probe_only"}


def test_scorecard_verdicts_for_constructed_fingerprints():
    res = sc.analyze(_fps(), _table(), FAST)
    rows = {r.fingerprint: r for r in res.scorecard}
    assert all(set(r.to_dict()) == ROW_KEYS for r in rows.values())
    assert rows["deep"].verdict == "tracks deep differences"
    assert rows["deep"].deep_ami == 1.0 and rows["deep"].noise_ami == 0.0 and rows["deep"].n_clusters == 2
    assert rows["noise"].verdict == "tracks initialization noise"
    assert rows["noise"].deep_ami < 0.05 and rows["noise"].noise_ami == 1.0
    assert rows["noise"].probe_auroc < 0.85
    assert rows["noise"].lineage_nn == 1.0 and rows["noise"].lineage_nn_chance < 0.35
    assert rows["both"].verdict == "tracks both" and rows["both"].n_clusters == 8
    assert rows["flat"].verdict == "uninformative" and rows["flat"].n_clusters == 1
    for name in ("deep", "noise", "both"):
        assert rows[name].consensus_k == rows[name].n_clusters and rows[name].stability > 0.95
    assert rows["noise"].aligns_with == "init_seed"
    full = {r.fingerprint: r for r in res.fingerprints}
    assert full["noise"].scores["noise_ami_per_basin"] == {"rule_a": 1.0, "rule_b": 1.0}
    assert full["deep"].confusion["counts"] in ([[18, 0], [0, 18]], [[0, 18], [18, 0]])
    assert res.settings["thresholds"] == {"deep_ami": 0.3, "noise_ami": 0.3, "probe_auroc": 0.85, "lineage_auc": 0.9}
    # identifies lineage: the noise fingerprint's relatives are closer than anyone else, significantly;
    # the deep one's are not (inside a true basin its members are exchangeable)
    assert rows["noise"].lineage_auc == 1.0 and rows["noise"].lineage_auc_q <= 0.05
    assert rows["deep"].lineage_auc < 0.75 and rows["deep"].lineage_auc_p > 0.05
    assert "identifies lineage: AUC 1.00 >= 0.9" in rows["noise"].reason


def test_a_k_at_the_cap_is_flagged_as_a_ceiling():
    """Six separated blobs with k_max = 4: the chosen k is the cap, flagged; with room (k_max 8), or
    with k fixed by the user, it is not."""
    both = [f for f in _fps() if f.name == "both"]
    (capped,) = sc.analyze(both, _table(), FAST.replace(n_boot=0, k_max=4)).scorecard
    assert capped.n_clusters == 4 and capped.k_at_cap is True
    (free,) = sc.analyze(both, _table(), FAST.replace(n_boot=0, k_max=10)).scorecard
    assert free.n_clusters == 8 and free.k_at_cap is False
    (fixed,) = sc.analyze(both, _table(), FAST.replace(n_boot=0, k_max=4, k=4)).scorecard
    assert fixed.k_at_cap is False


def test_probe_alone_makes_a_binary_label_deep():
    x = np.random.default_rng(1).normal(size=(36, 10))
    x[:, 0] += 3.5 * BASIN  # linearly readable, but no cluster structure
    (row,) = sc.analyze([sc.FingerprintInput("weak", x, [f"m{i}" for i in range(36)])], _table(),
                        FAST.replace(n_boot=0)).scorecard
    assert row.n_clusters == 1 and row.deep_ami == 0.0
    assert row.probe_auroc >= 0.85 and row.verdict == "tracks deep differences"
    assert row.reason.startswith("probe AUROC")


def test_probe_alone_makes_a_three_class_label_deep():
    """Issue 21 item 2: a 3-class label a linear probe reads (AUROC ~0.9+) but no clusters show is
    "tracks deep differences, linearly decodable", not a k = 1 "uninformative". At 8 families of 6;
    at 4 families the probe's interval (Newcombe's at the families' effective number of models, widened
    for 4 folds; METHODS_VERSION 23) reaches 0.5, and the verdict says so."""
    def row(families: int, members: int):
        fam = np.repeat(np.arange(families), members)
        n = len(fam)
        three = (np.arange(n) % members + fam) % 3
        x = np.random.default_rng(2).normal(size=(n, 10))
        x[:, 0] += 3.5 * (three == 1)
        x[:, 1] += 3.5 * (three == 2)
        ids = np.asarray([f"m{i}" for i in range(n)], dtype=object)
        table = {"model_id": ids, "init_seed": fam, "data_seed": np.arange(n) % members,
                 "deep_label": np.asarray(["a", "b", "c"], dtype=object)[three]}
        (r,) = sc.analyze([sc.FingerprintInput("weak3", x, list(ids))], table, FAST.replace(n_boot=0, k=1)).scorecard
        return r

    r = row(8, 6)
    assert r.n_clusters == 1 and r.deep_ami == 0.0 and r.probe_auroc >= 0.85 and r.probe_auroc_ci[0] > 0.5
    assert r.verdict == "tracks deep differences" and "linearly decodable" in r.reason and r.probe_only
    few = row(4, 9)
    assert few.probe_auroc >= 0.85 and few.probe_auroc_ci[0] <= 0.5 < few.probe_auroc_ci[1] < 1.0
    assert few.verdict == "uninformative" and "whose interval reaches 0.5" in few.reason and not few.probe_only


def test_parent_families_count_as_noise():
    # every model its own init seed; spawned children (parent_id) share their parent's family
    parents = ["" if i < 12 else f"m{i % 12}" for i in range(36)]
    table = _table(parents=parents)
    table["init_seed"] = np.arange(36)
    roots = np.asarray([i % 12 for i in range(36)])
    basin = roots // 6  # two basins of 6 root families, 3 models each
    table["deep_label"] = np.asarray(["a", "b"], dtype=object)[basin]
    ids = [f"m{i}" for i in range(36)]
    x = blobs(roots, d=12, seed=4)
    res = sc.analyze([sc.FingerprintInput("parents", x, ids)], table, FAST.replace(k_max=14, n_boot=0))
    (row,), (full,) = res.scorecard, res.fingerprints
    assert row.noise_ami is None  # no init-seed family has two members
    assert row.parent_noise_ami == 1.0 and full.noise_score == 1.0
    assert row.parent_nn == 1.0
    assert row.verdict == "tracks both"  # 12 root-family clusters refine the 2 basins: deep AMI >= 0.3 too
    assert row.deep_ami >= 0.3


def test_without_ground_truth_clusters_stability_and_alignment_remain():
    res = sc.analyze(_fps(), _table(deep=False), FAST)
    assert res.settings["label"] is None
    rows = {r.fingerprint: r for r in res.scorecard}
    for r in rows.values():
        assert r.verdict == sc.NO_TRUTH and r.deep_ami is None and r.probe_auroc is None
        assert r.n_clusters >= 1 and r.stability is not None
    assert rows["noise"].n_clusters == 4 and rows["noise"].aligns_with == "init_seed"
    assert rows["noise"].noise_ami == 1.0  # the whole population is one basin
    assert rows["deep"].n_clusters == 2 and rows["deep"].aligns_with is None
    full = {r.fingerprint: r for r in res.fingerprints}
    assert full["noise"].alignment["init_seed"] == 1.0 and full["noise"].confusion is None
    # an explicit empty label is the same
    assert sc.analyze(_fps()[:1], _table(), FAST.replace(label="")).scorecard[0].verdict == sc.NO_TRUTH


def test_unknown_columns_are_errors_naming_the_valid_ones():
    valid = r"\(valid: data_seed, deep_label, init_seed, model_id\)$"
    with pytest.raises(AnalysisError, match=r"unknown model column 'family' for --lineage " + valid):
        sc.analyze(_fps(), _table(), FAST.replace(lineage="family"))
    with pytest.raises(AnalysisError, match="unknown model column 'rule' for --label"):
        sc.analyze(_fps(), _table(), FAST.replace(label="rule"))


def test_a_broken_fingerprint_fails_alone_and_diverged_models_are_left_out():
    fps = _fps()[:2]
    bad = fps[0].values.copy()
    bad[3, 0] = np.nan
    fps.append(sc.FingerprintInput("broken", bad, fps[0].model_ids))
    table = _table()
    table["diverged"] = np.arange(36) == 5
    res = sc.analyze(fps, table, FAST)
    rows = {r.fingerprint: r for r in res.scorecard}
    assert rows["broken"].verdict == sc.FAILED and "NaN" in rows["broken"].error
    assert rows["deep"].verdict == "tracks deep differences" and rows["deep"].n_models == 35
    assert {r.fingerprint: r.excluded for r in res.fingerprints if r.analysed}["deep"] == ["m5"]
    assert sc.summary(res)["n_failed"] == 1


def test_combined_fingerprints_in_the_scorecard():
    fps = _fps()
    res = sc.analyze(fps, _table(), FAST.replace(combine=[["deep", "noise"], ["deep", "nope"]]))
    rows = {r.fingerprint: r for r in res.scorecard}
    assert rows["deep+noise"].error is None and rows["deep+noise"].n_models == 36
    assert rows["deep+noise"].extractor == "combined"
    assert rows["deep+nope"].verdict == sc.FAILED
    assert "cannot combine: no fingerprint 'nope'" in rows["deep+nope"].error


def test_printed_scorecard_names_capped_k_and_fits_80_columns(monkeypatch):
    """The CLI scorecard at 80 columns: spec names break between extractor and parameters, no
    line overflows, the missing label reads "none", and a k at the cap is named under the table."""
    from rich.console import Console

    import fingerprint.cli.display as cli_analyze

    fps = [sc.FingerprintInput("probe-outputs:probe_set=conflict", f.values, f.model_ids) for f in _fps() if f.name == "both"]
    res = sc.analyze(fps, _table(deep=False), FAST.replace(n_boot=0, k_max=4))
    out = Console(width=80, record=True, file=io.StringIO())
    monkeypatch.setattr(cli_analyze, "console", out)
    cli_analyze.print_scorecard(res)
    text = out.export_text()
    # the yellow hints ("lineage, ...", "two partitions: ...") are soft-wrapped, left to the terminal to wrap
    soft = ("lineage, ", "two partitions: ", "outliers, ", "small basin, ")
    assert max(len(line) for line in text.splitlines() if not line.startswith(soft)) <= 80
    assert "probe-outputs:\nprobe_set=conflict" in "\n".join(line.split()[0] for line in text.splitlines() if line.strip())
    assert "ground truth none" in text
    assert "k = 4 is the largest k tried" in " ".join(text.split()) and "raise --k-max" in " ".join(text.split())
    assert "on initialization noise alone k often runs to the cap: whether there are basins is the label-free tests' to " \
        "say, not k's" in " ".join(text.split())  # (audit 112 F8: on nulls the line invited a search for more basins)
    flat = " ".join(text.split())
    assert "headline: " in text and ("without ground truth" in flat or "(no ground truth)" in flat)  # one closing sentence
    assert "label-free answer: " in text  # the population-level line (analysis.answer), before the headline


# -- layering redesign (#19): the error type, the estimator contract, the verdict table, summary keys ----
def test_analysis_error_is_a_value_error_with_a_one_line_message():
    from analysis.errors import AnalysisError

    with pytest.raises(ValueError) as e:
        cl.cluster(blobs(THREE), "dbscan")
    assert isinstance(e.value, AnalysisError) and "\n" not in str(e.value)
    assert str(e.value) == f"unknown clustering method 'dbscan' (valid: {', '.join(sorted(cl.METHODS))})"
    with pytest.raises(AnalysisError, match=r"^config key 'analysis.alpha' \(--alpha\) must be in \[0, 1\], got 2$"):
        sc.AnalysisOptions(alpha=2).validate("analysis")


def test_basin_clusterer_follows_the_estimator_contract():
    from sklearn.base import clone

    est = cl.BasinClusterer(method="kmeans", k_max=5, random_state=3)
    assert est.get_params() == {"method": "kmeans", "k": None, "k_max": 5, "n_components": 10, "distances": None,
                                "standardize": True, "random_state": 3}
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params() and not hasattr(twin, "labels_")
    x = blobs(THREE)
    est.fit(x)
    assert est.n_clusters_ == 3 and est.labels_.shape == (len(x),) and est.coordinates_.shape[0] == len(x)
    assert np.array_equal(twin.fit(x).labels_, est.labels_)  # a clone refits to the same partition
    assert np.array_equal(est.fit_predict(x), est.labels_)  # ClusterMixin
    assert np.array_equal(cl.cluster(x, "kmeans", k_max=5, random_state=3).labels, est.labels_)


def test_verdict_table_covers_every_verdict():
    from analysis import labelfree as lf
    from analysis.verdicts import TABLE, Verdict

    assert set(TABLE) == set(Verdict)
    names = {v.value for v in Verdict}
    assert set(sc.VERDICTS) | {sc.NO_TRUTH, sc.FAILED} | set(lf.VERDICTS) == names
    assert all(Verdict(v) == v for v in names)  # str-valued: equal to the stored strings


SUMMARY_KEYS = ["version", "settings", "n_models", "scorecard", "best_deep", "n_failed", "lone_models", "small_basins", "far_tails", "candidates_apart",
                "label_free_answer", "closest_splits_disagree", "closest_splits_note",
                "fingerprints",
                "provenance"]
SUMMARY_ROW_KEYS = ["fingerprint", "extractor", "kind", "output", "supervised", "n_models", "n_clusters", "k_at_cap", "consensus_k",
            "stability", "deep_ami", "probe_auroc", "noise_ami", "parent_noise_ami", "lineage_nn", "lineage_nn_chance",
            "parent_nn", "parent_nn_chance", "aligns_with", "verdict", "reason", "error", "significant",
            "label_free_verdict", "label_free_sentence", "candidate_basins", "n_families", "deep_ami_ci", "noise_ami_ci",
            "probe_auroc_ci", "deep_ami_p", "noise_ami_p", "deep_ami_q", "noise_ami_q",
                    "lineage_nn_ci", "stability_ci", "privileged", "lineage_auc", "lineage_auc_p", "lineage_auc_q",
                    "label_free_q", "probe_auroc_p", "probe_auroc_q", "probe_only"]
FP_KEYS = ["fingerprint", "key", "extractor", "kind", "output", "step", "supervised", "meta", "error", "n_models",
           "excluded", "approximations", "method", "k", "k_scores", "k_at_cap", "bootstrap", "embedding_method",
           "distances", "scores", "noise_score", "binary_label", "calibration", "has_label", "alignment", "aligns_with",
           "basins", "confusion", "seconds", "verdict", "reason", "label_free", "significant", "metadata_match",
           "metadata_gradient", "strata_follow", "assignments"]


def test_summary_keys_are_pinned():
    s = sc.summary(sc.analyze(_fps()[:1], _table(), FAST.replace(n_boot=2)))
    assert list(s) == SUMMARY_KEYS
    assert list(s["scorecard"][0]) == SUMMARY_ROW_KEYS
    assert list(s["fingerprints"][0]) == FP_KEYS


BASINS_KEYS = ["version", "created", "settings", "n_models", "fingerprints", "scorecard", "methods"]
FULL_FP_KEYS = [k for k in FP_KEYS if k not in ("seconds", "verdict", "reason", "label_free", "significant", "metadata_match",
                                                 "metadata_gradient", "strata_follow", "assignments")] \
    [:19] + ["model_ids", "clusters", "embedding", "label_values", "lineage_values"] + \
    [k for k in FP_KEYS if k not in ("assignments",)][19:]


def test_analysis_result_round_trips_through_its_json_form():
    """``AnalysisResult.to_dict()`` is ``results/basins.json`` (keys pinned, in order) and
    ``from_dict`` reads it back, failed fingerprints (before and during clustering) included."""
    import json

    from analysis.results import AnalysisResult, FingerprintResult, ScorecardRow

    fps = _fps()[:1]
    bad = fps[0].values.copy()
    bad[3, 0] = np.nan
    fps += [sc.FingerprintInput("broken", bad, fps[0].model_ids), sc.FingerprintInput("none", None, [], error="boom")]
    res = sc.analyze(fps, _table(), FAST.replace(n_boot=2))
    assert isinstance(res, AnalysisResult) and all(isinstance(r, FingerprintResult) for r in res.fingerprints)
    assert all(isinstance(r, ScorecardRow) for r in res.scorecard)
    d = res.to_dict()
    assert list(d) == BASINS_KEYS
    ok, broken, none = d["fingerprints"]
    assert list(ok) == FULL_FP_KEYS
    assert list(broken) == FP_KEYS[:9] + ["verdict", "reason", "traceback", "seconds"]
    assert list(none) == FP_KEYS[:9] + ["verdict", "reason"]
    assert all(list(r) == SUMMARY_ROW_KEYS for r in d["scorecard"])
    res.keys, res.options = ["k"], FAST.to_dict()  # what the pipeline adds
    stored = json.loads(json.dumps(res.to_dict()))
    back = AnalysisResult.from_dict(stored)
    assert back.to_dict() == stored and list(back.to_dict()) == BASINS_KEYS[:-1] + ["keys", "options", "methods"]
    assert [list(r) for r in back.to_dict()["fingerprints"]] == [list(r) for r in stored["fingerprints"]]
    assert back.fingerprint("deep").clusters == res.fingerprint("deep").clusters
    assert sc.summary(back) == json.loads(json.dumps(sc.summary(res)))
    # a result stored without the scorecard list (or with keys this version does not know) still loads
    del stored["scorecard"]
    stored["fingerprints"][0]["future_key"] = 1
    again = AnalysisResult.from_dict(stored)
    assert [r.to_dict() for r in again.scorecard] == d["scorecard"]
    assert again.to_dict()["fingerprints"][0]["future_key"] == 1


def test_a_privileged_fingerprint_is_marked_and_never_named_best_unmarked():
    """Issue 21 item 3: a fingerprint on a probe set built from the ground truth is marked, never named best unmarked."""
    from analysis.report import headline, render

    deep, *fps = [f for f in _fps() if f.name in ("deep", "both", "noise")]  # the oracle recovers the label
    oracle = sc.FingerprintInput("probe-outputs:probe_set=conflict", deep.values, deep.model_ids,
                                 {"privileged": ["conflict"]})
    res = sc.analyze([oracle, *fps], _table(), FAST.replace(n_boot=0))
    rows = {r.fingerprint: r for r in res.scorecard}
    assert rows["probe-outputs:probe_set=conflict"].privileged and not rows["both"].privileged
    assert res.to_dict()["scorecard"][0]["privileged"] is True
    h = headline(res)
    assert not h.best.privileged and h.best_privileged is not None and h.best_privileged.privileged
    html = render(res)
    assert "(privileged: built from the answer)" in html and "With the answer's help, from a probe set built from the ground truth" in html
    assert "upper bound" not in html.lower()  # audit 65 F5: such a set can score below the unprivileged ones


def test_the_report_never_shows_a_python_none():
    """Issue 21 item 7: an imported zoo has no task and no label; the page says "–", not "None"."""
    import re

    from analysis.report import render

    res = sc.analyze([f for f in _fps() if f.name == "noise"], _table(deep=False), FAST.replace(n_boot=0))
    html = render(res, {"task": None, "zoo": "z"})
    text = re.sub(r"<[^>]+>", " ", html.split("<h2>Config and provenance</h2>")[0])
    assert not re.search(r"\bNone\b", text), re.findall(r".{40}\bNone\b.{40}", text)


def test_the_verdict_box_says_when_fingerprints_cover_different_model_sets():
    """Issue 21 item 1: a subset's fingerprint beside the population's is named, not silently mixed."""
    from analysis.report import render

    full = [f for f in _fps() if f.name == "noise"][0]
    part = sc.FingerprintInput("part", full.values[:24], full.model_ids[:24])
    html = render(sc.analyze([full, part], _table(), FAST.replace(n_boot=0)))
    assert "The fingerprints cover different model sets</b> (24, 36 models)" in html
    assert "different model sets" not in render(sc.analyze([full], _table(), FAST.replace(n_boot=0)))


def test_a_result_renders_in_jupyter_with_user_strings_escaped():
    x = [f for f in _fps() if f.name == "noise"][0]
    res = sc.analyze([sc.FingerprintInput("<img src=x>", x.values, x.model_ids)], _table(), FAST.replace(n_boot=0))
    html = res._repr_html_()
    assert "&lt;img src=x&gt;" in html and "<img" not in html and "tracks" in html


def test_models_without_a_lineage_value_are_left_out_of_the_label_free_tests_and_placed_after():
    """Models the metadata CSV had no row for (an empty lineage value) are neither one family together
    (an outside audit's 10 models of two seeds counted as relatives) nor each a family of its own
    (relatives passed off as independent families: a null read `groups lineages`): the label-free
    tests leave them out, say so, and each joins the nearest candidate basin."""
    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(6), 4).astype(object)
    fam = np.concatenate([fam, np.asarray([""] * 6 + [None, float("nan")], dtype=object)])
    n = len(fam)
    ids = [f"m{i}" for i in range(n)]
    effect = {f: rng.standard_normal(4) * 3 for f in range(6)}
    x = np.stack([effect[f] if f in effect else rng.standard_normal(4) * 3 for f in fam]) + rng.standard_normal((n, 4))
    table = {"model_id": np.asarray(ids, dtype=object), "family": fam}
    res = sc.analyze([sc.FingerprintInput("fp", x, ids)], table,
                     sc.AnalysisOptions(embedding="pca", lineage="family", n_boot=2, n_perm=19, n_family_boot=5))
    free = res.fingerprints[0].label_free
    assert free["n_families"] == 6 and free["n_related_families"] == 6 and free["n_unknown"] == 8
    assert "8 models have no lineage value (a blank cell, or no row in the metadata CSV): left out of these tests" in free["sentence"]
    assert len(free["tree"]["families"]) == 6


def test_a_lone_deep_test_at_its_floor_is_decided_with_more_replicates():
    """The seventh audit's tf_planted_long, in small: 6 init families of 2, the two members of each on
    the two sides of a large split in one fingerprint of ten (the other nine noise). With 199 null
    replicates its split's p (0.005) is the floor, and the correction over 30 tests lifts it to q
    0.15; the analysis draws that fingerprint's null again with 2,399 replicates and calls the camps,
    while the noise fingerprints keep their results exactly (they are not analysed again), but for those with a test
    near alpha (drawn again as undecided, still no structure)."""
    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(6), 2)
    ids = [f"m{i}" for i in range(12)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam}
    camps = blobs(np.arange(12) % 2, d=4, sep=20.0) + 0.5 * rng.normal(size=(6, 4))[fam]
    noise = [sc.FingerprintInput(f"noise{j}", rng.normal(size=(12, 4)), ids) for j in range(9)]
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_family_boot=50)
    res = sc.analyze([sc.FingerprintInput("camps", camps, ids), *noise], table, opts)
    free = res.fingerprints[0].label_free
    assert free["verdict"] == "crosses lineage" and free["n_null"] == 2399 and free["q"] <= opts.alpha
    assert free["p_split"] == pytest.approx(1 / 2400)
    assert set(free["candidate_basins"].values()) == {0, 1}
    assert adjusted_rand_score(np.arange(12) % 2, [free["candidate_basins"][m] for m in ids]) == 1.0
    alone = sc.analyze(noise, table, opts)
    kept = 0
    for a, b in zip(res.fingerprints[1:], alone.fingerprints):
        assert a.label_free["verdict"] == "no structure"
        if a.label_free["n_null"] == 199 == b.label_free["n_null"]:  # (one whose Monte Carlo error could turn a test
            kept += 1                                                 # is drawn again: test_labelfree's undecided)
            assert (a.label_free["p_lineage"], a.label_free["p_split"]) == (b.label_free["p_lineage"], b.label_free["p_split"])
    assert kept >= 5


def _redraw_population():
    """24 models of 8 init families of unequal size (one model without a lineage value, one a fine-tune of
    another), two camps across the families, a recorded optimizer that shifts the fingerprint, and two
    models the analysis leaves out (one diverged, one the table does not know)."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(7)
    fam = np.asarray([f for f in range(8) for _ in range(2 + f % 3)], dtype=object)
    n = len(fam)
    ids = [f"m{i}" for i in range(n)]
    parent = [""] * n
    parent[1] = "m0"
    fam[-1] = ""
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "parent_id": np.asarray(parent, dtype=object),
             "opt": np.asarray(["adam" if i % 3 else "sgd" for i in range(n)], dtype=object),
             "diverged": np.asarray([i == 9 for i in range(n)])}
    x = 6.0 * np.eye(2, 5)[np.arange(n) % 2] + rng.normal(size=(n, 5)) + 0.8 * (table["opt"] == "adam")[:, None]
    d = cdist(x, x) + 1e-7 * rng.normal(size=(n, n))  # round-off, as torch.cdist gives
    return ids, table, x, d, rng


REDRAW_CASES = {  # name: (fingerprint inputs, options): each branch of the analysis's coordinates
    "features": lambda ids, x, d, rng: ([sc.FingerprintInput("f", x, ids)], {}),
    "float32, not standardised": lambda ids, x, d, rng: (
        [sc.FingerprintInput("f", x.astype(np.float32), ids, {"standardize": False})], {}),
    "distances": lambda ids, x, d, rng: ([sc.FingerprintInput("d", d, ids, {"output": "distances"})], {"method": "kmeans"}),
    "covariate": lambda ids, x, d, rng: ([sc.FingerprintInput("f", x, ids)], {"covariates": ["opt"]}),
    "distances, covariate": lambda ids, x, d, rng: (
        [sc.FingerprintInput("d", d, ids, {"output": "distances"})], {"covariates": ["opt"]}),
    "combined": lambda ids, x, d, rng: (
        [sc.FingerprintInput("f", x, ids), sc.FingerprintInput("d", d, ids, {"output": "distances"})], {"combine": [["f", "d"]]}),
    "k fixed at 1": lambda ids, x, d, rng: ([sc.FingerprintInput("f", x, ids)], {"k": 1}),
    "a model the table does not know": lambda ids, x, d, rng: (
        [sc.FingerprintInput("f", np.r_[x, rng.normal(size=(1, 5))], [*ids, "ghost"])], {}),
}


@pytest.mark.parametrize("case", list(REDRAW_CASES))
def test_drawing_the_label_free_tests_again_matches_a_whole_analysis_at_that_many_replicates(case):
    """A fingerprint whose label-free test needs more replicates has only those tests drawn again
    (:func:`analysis.prepared.redraw_label_free`), not its clustering, bootstrap and map: its tests and
    their sizes are those of the whole fingerprint analysed with that many replicates, in each branch of the
    coordinates the analysis gives them (features, distances, --covariate, a combined fingerprint, k fixed at 1,
    models left out)."""
    ids, table, x, d, rng = _redraw_population()
    fps, extra = REDRAW_CASES[case](ids, x, d, rng)
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_family_boot=20, **extra)
    fp = sc.combined_input(opts.combine[0], {f.name: f for f in fps}, opts) if opts.combine else fps[0]
    index = {m: i for i, m in enumerate(table["model_id"])}
    first, _ = sc.analyze_one(fp, table, opts, index, 199)
    whole, free_whole = sc.analyze_one(fp, table, opts, index, 599)
    assert not first.error and first.clusters == whole.clusters
    redrawn = prepared.redraw_label_free(fp, table, opts, index, 599, first.clusters)
    assert redrawn.n_null == 599 and redrawn.verdict != "insufficient"
    assert calibration.label_free_json(redrawn, whole.model_ids) == calibration.label_free_json(free_whole, whole.model_ids)
    assert redrawn.effects == free_whole.effects and redrawn.apart == free_whole.apart


def test_a_redraw_out_of_memory_keeps_the_first_draw_and_says_so(monkeypatch):
    """The replicates' memory grows with them: a redraw out of memory keeps the first draw (valid p-values at
    fewer replicates) and warns, naming the fingerprint; the report is not lost."""
    ids, table, x, d, rng = _redraw_population()
    noise = [sc.FingerprintInput(f"noise{j}", rng.normal(size=(len(ids), 4)), ids) for j in range(9)]
    camps = sc.FingerprintInput("camps", blobs(np.arange(len(ids)) % 2, d=4, sep=20.0), ids)
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_family_boot=20)

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(sc, "redraw_label_free", out_of_memory)
    with pytest.warns(RuntimeWarning, match=r"camps: its label-free tests could not be drawn again with 2399 null "
                                            r"replicates \(out of memory\): decided at 199"):
        res = sc.analyze([camps, *noise], table, opts)
    assert res.fingerprints[0].label_free["n_null"] == 199 and res.fingerprints[0].label_free["verdict"]


def test_own_two_clusters_of_one_spread_are_neither_apart_nor_far():
    """Outside audit 111: k-means halves one single-peaked spread, and the halves cut the families of a null; they
    voted for a cluster lead. ``own_gap`` tells them from two groups: halves of one Gaussian cloud have no gap and are
    ~2.65 SDs apart (not ``far``); two groups 8 SDs apart are both."""
    rng = np.random.default_rng(0)
    one = rng.normal(size=(300, 3))
    halves = (one[:, 0] > 0).astype(int)
    g = sc.own_gap(one, halves)
    assert not g["gap"] and not g["far"] and 2.2 < g["separation"] < 3.2
    groups = (np.arange(300) % 5 == 0).astype(int)
    two = one + np.outer(groups, [8.0, 0.0, 0.0])
    g = sc.own_gap(two, groups)
    assert g["gap"] and g["far"] and g["separation"] > 6
