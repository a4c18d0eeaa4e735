"""The supervised scorecard at few init families: the floor of the family permutation p-value
(:func:`analysis.resampling.family_permutation_floor`, the ``insufficient: N families`` verdict at
it) and the probe on principal coordinates (``probe_auroc(scale="common")``)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import metrics as mt
from analysis import resampling as rs
from analysis import scorecard as sc
from analysis.calibration import Floor, verdict
from analysis.reduce import reduce_features
from analysis.report import headline, page
from fingerprint.cli.display import headline_sentence

SIX = np.repeat(np.arange(6), 2)  # 6 families of 2
ONE_EACH = np.tile(["a", "b"], 6)  # every family one model of each label


def _same_partition_rate(labels, family, n: int, seed: int) -> float:
    lab = np.asarray(labels)
    perms = rs.family_permutations(family, n, seed)
    k = len(set(lab))  # the same partition: each label meets exactly one permuted label
    return float(np.mean([len(set(zip(lab, lab[p]))) == k for p in perms]))


@pytest.mark.parametrize("labels,family,exact", [
    (ONE_EACH, SIX, 2 / 64),  # 2 of the 2^6 relabellings keep the partition (a <-> b renamed)
    (np.repeat(["a", "b"], 6), SIX, 2 * 36 / 720),  # a label per family: 3 families each side, 2 * 3! 3! / 6!
    (np.array(list("aabababbba")), np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3]), 1 / 36),  # sizes 3, 2: unequal counts
])
def test_permutation_floor_is_the_rate_at_which_family_permutations_keep_the_partition(labels, family, exact):
    floor = rs.family_permutation_floor(labels, family)
    assert floor == pytest.approx(exact)
    assert _same_partition_rate(labels, family, 4000, 1) == pytest.approx(exact, abs=0.012)


def test_three_labels_eight_families_floor_is_tiny():
    assert rs.family_permutation_floor(np.tile(["a", "b", "c"], 8), np.repeat(np.arange(8), 3)) == pytest.approx(6 / 6**8)


def _six_families(seed: int = 0, sep: float = 40.0) -> tuple[np.ndarray, dict]:
    """12 models, 6 families of 2 (one of each label), 20 features: the label far apart along one
    random direction (every column carries some of it: the features are standardised before the
    PCA), each family its own offset, the rest noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 20)) + 2.0 * rng.normal(size=(6, 20))[SIX]
    u = rng.normal(size=20)
    x += sep * (ONE_EACH == "b")[:, None] * (u / np.linalg.norm(u))
    ids = np.asarray([f"m{i}" for i in range(12)], dtype=object)
    return x, {"model_id": ids, "init_seed": SIX, "deep_label": ONE_EACH.astype(object)}


def test_six_families_perfect_basins_reach_the_floor_and_say_so():
    x, table = _six_families()
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_perm=199, n_family_boot=100, k=2)
    (res,) = sc.analyze([sc.FingerprintInput("fp", x, list(table["model_id"]))], table, opts).fingerprints
    c = res.calibration
    assert res.scores["deep_ami"] == 1.0
    assert c["deep_ami_p_floor"] == pytest.approx(1 / 32) and c["deep_ami_floor_by"] == "families"
    # a perfect match: exactly the relabellings that keep the partition reach it, so its p is the floor itself
    assert c["deep_ami_at_floor"] is True and c["deep_ami_p"] == pytest.approx(1 / 32)
    # the probe reads the label (its PC1): deep through the probe, and the reason does not claim
    # that the basins miss it
    assert res.scores["probe_auroc"] == 1.0 and res.verdict == "tracks deep differences"
    assert "though the basins do not separate it" not in res.reason
    if c["deep_ami_q"] > opts.alpha:
        assert "the basins match the label (deep AMI 1.00), but with 6 families the family permutation cannot give " \
               "p below 0.031" in res.reason


def test_verdict_at_the_floor_without_other_evidence_is_insufficient_not_uninformative():
    opts = sc.AnalysisOptions()
    at = Floor(p_floor=1 / 32, by="families", at_floor=True, p=0.04, n_families=6, n_perm=199)
    v, why = verdict(1.0, None, 0.6, True, opts, True, deep_q=0.06, floor=at)
    assert v == "insufficient: 6 families"
    assert why.startswith("the basins match the label (deep AMI 1.00), but with 6 families the family permutation "
                          "cannot give p below 0.031 (p 0.04, q 0.06 > 0.05)")
    assert why.endswith("more init families would decide")
    # beaten by some relabelling: not the floor, the old "not significant"
    v, why = verdict(1.0, None, 0.6, True, opts, True, deep_q=0.06,
                     floor=Floor(1 / 32, "families", False, 0.04, 6, 199))
    assert v == "uninformative" and "deep AMI 1.00 not significant (q 0.06 > 0.05)" in why
    # a probe that passes: deep, and the basins' match named with its floor
    v, why = verdict(1.0, None, 0.95, True, opts, True, deep_q=0.06, probe_ci=(0.8, 1.0), floor=at)
    assert v == "tracks deep differences" and "linearly decodable" not in why and "cannot give p below" in why
    # the floor set by --n-perm
    v, why = verdict(1.0, None, None, True, opts, True, deep_q=0.06, floor=Floor(0.01, "permutations", True, 0.01, 9, 99))
    assert v == "insufficient: 99 permutations" and "--n-perm" in why
    # below the deep threshold the floor changes nothing
    assert verdict(0.2, None, None, True, opts, True, deep_q=0.5, floor=at)[0] == "uninformative"
    # identifying lineage does not decide noise at the floor: whether the basins are clean cannot be told (audit 89:
    # a goal planted family by family, clusters the goal exactly, noise AMI 0.00, read "tracks initialization noise")
    v, why = verdict(1.0, 0.0, None, True, opts, True, deep_q=0.16, noise_q=1.0, lineage_auc=0.97, lineage_q=0.012,
                     floor=at)
    assert v == "insufficient: 6 families" and "identifies lineage: AUC 0.97 >= 0.9 (q 0.012)" in why
    # ... while the noise score itself still does, and away from the floor identification still counts
    assert verdict(1.0, 0.6, None, True, opts, True, deep_q=0.16, noise_q=0.01, floor=at)[0] == "tracks initialization noise"
    assert verdict(0.2, 0.0, None, True, opts, True, deep_q=0.5, noise_q=1.0, lineage_auc=0.97, lineage_q=0.012,
                   floor=at)[0] == "tracks initialization noise"
    # ... and so it does when only the probe is at the floor, its basins not the label (a review)
    assert verdict(0.1, 0.0, 0.95, True, opts, True, deep_q=0.5, noise_q=1.0, lineage_auc=0.97, lineage_q=0.012,
                   probe_ci=(0.8, 1.0), probe_q=0.2, probe_p=0.03, floor=at)[0] == "tracks initialization noise"


def test_probe_on_principal_coordinates_reads_a_difference_on_pc1_at_twelve_models():
    """The audit's case: 12 models, 10 principal coordinates, the label on PC1 (tens of SDs): the
    standardised probe gives it the weight of each noise component; the common scale does not."""
    x, table = _six_families(seed=3)
    pcs = reduce_features(x, 10, 0)
    common = mt.probe_auroc(pcs, table["deep_label"], groups=SIX, scale="common")
    columns = mt.probe_auroc(pcs, table["deep_label"], groups=SIX, scale="columns")
    assert common == 1.0
    assert columns < common
    with pytest.raises(ValueError, match="valid: columns, common"):
        mt.probe_auroc(pcs, table["deep_label"], groups=SIX, scale="pcs")


def test_probe_on_principal_coordinates_stays_at_chance_for_random_labels():
    """Random member-level labels (one of each per family) on family-structured noise: the common
    scale's AUROC averages near 0.5 and rarely reaches the 0.85 threshold."""
    rng = np.random.default_rng(5)
    fam = np.repeat(np.arange(8), 2)
    scores = []
    for _ in range(40):
        x = rng.normal(size=(16, 30)) + 1.5 * rng.normal(size=(8, 30))[fam]
        order = np.argsort(fam * 2 + rng.random(16))  # one of each label per family
        y = np.empty(16, object)
        y[order] = np.tile(["a", "b"], 8)
        scores.append(mt.probe_auroc(reduce_features(x, 10, 0), y, groups=fam, scale="common"))
    scores = np.asarray([s for s in scores if s is not None])
    assert len(scores) >= 30
    assert abs(scores.mean() - 0.5) < 0.1
    assert (scores >= 0.85).mean() <= 0.1


def test_four_families_perfect_basins_without_a_probe_are_insufficient_and_the_headline_says_so():
    """4 families of 2 (classes of 4: no probe, below its 5 models a class): the basins match the
    label exactly, the floor is 2/16, and the verdict and the headline say too few families."""
    fam, lab = np.repeat(np.arange(4), 2), np.tile(["a", "b"], 4)
    rng = np.random.default_rng(0)
    u = rng.normal(size=20)
    x = rng.normal(size=(8, 20)) + 40.0 * (lab == "b")[:, None] * (u / np.linalg.norm(u))
    table = {"model_id": np.asarray([f"m{i}" for i in range(8)], dtype=object), "init_seed": fam,
             "deep_label": lab.astype(object)}
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_perm=199, n_family_boot=100, k=2)
    result = sc.analyze([sc.FingerprintInput("fp", x, list(table["model_id"]))], table, opts)
    (row,) = result.scorecard
    assert row.deep_ami == 1.0 and row.probe_auroc is None
    assert row.verdict == "insufficient: 4 families" and not row.significant
    assert "with 4 families the family permutation cannot give p below 0.12" in row.reason
    h = headline(result)
    assert h.floor == ["fp"] and h.none == []
    assert "basins or probe match deep_label but too few families to test: fp" in headline_sentence(h)
    assert "too few init families to test it (the permutation floor): fp" in page(result, formats=()).html


def _family_noise(seed: int = 4) -> np.ndarray:
    """16 models, 8 families of 2, nothing but each family's offset and noise: the 10 principal coordinates."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(8), 2)
    return reduce_features(rng.normal(size=(16, 30)) + 3 * rng.normal(size=(8, 30))[fam], 10, 0)


def test_probe_permutation_p_is_the_share_of_family_relabellings_that_fit_as_well():
    """A label constant in each of 8 families, on pure family noise: the logistic probe reads some of
    the 70 balanced splits of the families at AUROC >= 0.85 (and its family-bootstrap interval can
    clear 0.5). The permutation test refits a least-squares probe on every relabelling: its Monte
    Carlo p-value is near the exact share of the 70 splits that the refitted probe reads as well,
    and above 0.05 for every split the logistic probe reads best."""
    from itertools import combinations

    from analysis.probe_permutation import probe_permutation_p, ridge_probe_auroc

    fam, pcs = np.repeat(np.arange(8), 2), _family_noise()
    splits = np.asarray([[int(f in a) for f in fam] for a in combinations(range(8), 4)])
    logistic = np.asarray([mt.probe_auroc(pcs, y, groups=fam, scale="common") for y in splits])
    refit = ridge_probe_auroc(pcs, splits, fam)
    assert (logistic >= 0.85).sum() >= 4
    for i in np.flatnonzero(logistic >= 0.85):
        exact = float(np.mean(refit >= refit[i] - 1e-9))
        p = probe_permutation_p(pcs, splits[i], fam, fam, 199, 0)
        assert abs(p - exact) < 0.06 and p > 0.05


def test_ridge_probe_auroc_reads_a_real_difference_and_its_permutation_p_is_the_floor():
    rng = np.random.default_rng(1)
    fam = np.repeat(np.arange(8), 2)
    y = np.tile([0, 1], 8)
    x = rng.normal(size=(16, 30)) + 1.0 * rng.normal(size=(8, 30))[fam] + 8.0 * y[:, None]
    pcs = reduce_features(x, 10, 0)
    from analysis.probe_permutation import probe_permutation_p, ridge_probe_auroc

    assert ridge_probe_auroc(pcs, y[None], fam)[0] == 1.0
    assert mt.probe_auroc(pcs, y, groups=fam, scale="common") == 1.0
    # only the relabellings that keep the partition (2 of 256) tie it
    assert probe_permutation_p(pcs, y, fam, fam, 199, 0) <= 3 / 200
    # three classes: the macro one-vs-rest AUROC, as the probe's
    y3 = np.tile([0, 1, 2], 8)
    fam3 = np.repeat(np.arange(8), 3)
    x3 = rng.normal(size=(24, 12)) + 6.0 * np.eye(3)[y3] @ rng.normal(size=(3, 12))
    assert ridge_probe_auroc(x3, y3[None], fam3)[0] == 1.0
    assert ridge_probe_auroc(x3, y3[None], np.zeros(24)) is None  # one group: no held-out fold


def test_verdict_of_a_probe_that_fails_its_permutation_test_is_not_deep():
    opts = sc.AnalysisOptions()
    v, why = verdict(0.1, None, 0.89, True, opts, True, deep_q=0.9, probe_ci=(0.6, 1.0), probe_q=0.2)
    assert v == "uninformative"
    assert "probe AUROC 0.89 not significant when the label moves between families (q 0.2 > 0.05)" in why
    v, why = verdict(0.1, None, 0.89, True, opts, True, deep_q=0.9, probe_ci=(0.6, 1.0), probe_q=0.01)
    assert v == "tracks deep differences" and "probe AUROC 0.89 >= 0.85 (q 0.01)" in why
    # the probe's p at the floor of 6 families (the deep AMI's not): too few families, said so
    floor = Floor(p_floor=1 / 32, by="families", at_floor=False, p=0.6, n_families=6, n_perm=199)
    v, why = verdict(0.1, None, 1.0, True, opts, True, deep_q=0.9, probe_ci=(1.0, 1.0), probe_q=0.053, probe_p=0.04,
                     floor=floor)
    assert v == "insufficient: 6 families"
    assert why.startswith("the probe reads the label (probe AUROC 1.00), but with 6 families the family permutation "
                          "cannot give p below 0.031 (p 0.04, q 0.053 > 0.05)")
    # far above the floor: not significant, no more
    v, why = verdict(0.1, None, 1.0, True, opts, True, deep_q=0.9, probe_ci=(1.0, 1.0), probe_q=0.3, probe_p=0.2,
                     floor=floor)
    assert v == "uninformative" and "not significant when the label moves between families (q 0.3 > 0.05)" in why


def test_family_level_label_on_family_clusters_is_not_at_the_floor():
    """Clusters that are the 8 families and a label constant in each: every relabelling of the
    families gives the same deep AMI (p 1), which is no floor and says so (not "the basins match")."""
    fam = np.repeat(np.arange(8), 2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 30)) + 3 * rng.normal(size=(8, 30))[fam]
    ids = [f"m{i}" for i in range(16)]
    y = np.asarray(["a" if f in (0, 3, 4, 7) else "b" for f in fam], dtype=object)
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "rnd": y}
    opts = sc.AnalysisOptions(label="rnd", n_boot=0, embedding="pca", k=8)
    (res,) = sc.analyze([sc.FingerprintInput("fp", x, ids)], table, opts).fingerprints
    assert res.calibration["deep_ami_p"] == 1.0 and res.calibration["deep_ami_at_floor"] is False
    assert "basins match the label" not in res.reason and res.verdict == "tracks initialization noise"


def test_a_deep_verdict_made_by_the_probe_alone_is_marked():
    """The seventh audit: ``deep`` beside ``deep 0.00`` (one basin, the probe reads the label) read as
    strong support; the terminal says ``(probe)``, and since audit 73 the report and summary.json too
    (``probe_only``)."""
    from analysis.calibration import probe_only
    from analysis.options import AnalysisOptions

    opts = AnalysisOptions(alpha=0.05, deep_threshold=0.3)
    assert probe_only("tracks deep differences", 0.0, 1.0, opts)
    assert not probe_only("tracks deep differences", 0.9, 0.01, opts)
    assert probe_only("tracks both", 0.9, 0.2, opts)  # basins that follow the label, but not significantly
    assert not probe_only("uninformative", 0.0, None, opts)


def test_two_families_split_the_same_way_are_a_lead_and_a_supervised_verdict():
    """2 families of 12, half of each family's models shifted (a rule the seed did not decide): without
    the label, the within-family camps find it, and the answer calls it a lead two families cannot
    confirm (never a candidate with two or three); with the label, the family permutation (which moves
    it among each family's models) decides it, and the reason says no interval resamples two families."""
    from analysis.answer import label_free_answer

    rng = np.random.default_rng(0)
    fam = np.repeat(["s0", "s1"], 12)
    lab = np.tile(["a", "b"], 12)
    x = rng.normal(size=(24, 20)) + rng.normal(size=(2, 20))[np.repeat([0, 1], 12)]
    x[lab == "b", :10] += 6.0
    ids = [f"m{i}" for i in range(24)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam.astype(object), "deep_label": lab.astype(object)}
    opts = sc.AnalysisOptions(n_boot=0, embedding="pca", n_perm=199, n_family_boot=100, k=2)
    result = sc.analyze([sc.FingerprintInput("fp", x, ids)], table, opts)
    (row,) = result.scorecard
    assert row.verdict == "tracks deep differences" and row.significant, row.reason
    assert "only 2 init families: the permutation tests move the label among the models of each" in row.reason
    (f,) = result.fingerprints
    assert f.label_free["verdict"] == "crosses lineage" and f.label_free["n_families"] == 2
    ans = label_free_answer(result)
    assert ans.candidates == [] and len(ans.few_family_leads) == 1
    assert ans.sentence.startswith("no candidate deep difference; a lead that 2 init families cannot confirm (with two "
                                   "or three, only the camps inside the families are tested"), ans.sentence
    assert ("(tracks deep differences; deep AMI 1.00 (no interval: the value itself); only 2 init families: the "
            "permutations decide, no interval resamples so few)") in headline_sentence(headline(result))
