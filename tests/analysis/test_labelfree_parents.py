"""Base models imported beside their fine-tuned children (parent_id): the generation in the parent
chain is a known design factor of the label-free split tests, not a candidate deep difference
(an outside audit: 7 of 24 null fingerprints read "crosses lineage" with camps = parent vs child)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from analysis import labelfree as lf
from analysis import metrics as mt
from analysis import scorecard as sc
from analysis.synthetic import parent_population


def test_generation_counts_the_links_up_the_parent_chain():
    ids = ["a", "b", "c", "d", "e", "f"]
    parent = ["", "a", "b", "gone", "f", "e"]  # d's parent was not imported; e and f point at each other
    assert mt.generation(ids, parent).tolist() == [0, 1, 2, 1, 1, 1]
    assert mt.generation(ids, [None, np.nan, "", "a", "a", "d"]).tolist() == [0, 0, 0, 1, 1, 2]


def _decided(kind: str, seed: int, told: bool, **kw) -> list[lf.LabelFreeResult]:
    """Four fingerprints of one population, corrected together as a report's are."""
    raw, labels = [], []
    for f in range(4):
        x, fam, gen, label = parent_population(kind, 4 * seed + f, **kw)
        raw.append(lf.label_free(x, fam, n_null=199, random_state=seed, generation=gen if told else None))
        labels.append(label)
    return list(zip(lf.decide(raw), labels))


@pytest.mark.parametrize("shift", [6.0, 20.0])  # 6: the within-family split fires blind; 20: the all-model one too
def test_parents_beside_their_fine_tunes_are_not_a_deep_difference(shift):
    blind = [r for s in range(2) for r, _ in _decided("parents-null", s, False, shift=shift)]
    assert sum(r.verdict == "crosses lineage" for r in blind) >= 4  # the audit's false verdict, reproduced
    told = [r for s in range(3) for r, _ in _decided("parents-null", s, True, shift=shift)]
    assert not [r.verdict for r in told if r.verdict in lf.DEEP_VERDICTS], [(r.verdict, r.p_split) for r in told]


def test_a_planted_difference_among_the_children_is_found_with_the_parents_present():
    """Half the children of each base model carry a deep factor (a backdoor, say), the base models
    none: found, and the candidate camps are the factor's (the base models in no camp)."""
    for s in range(3):
        (r, label), *_ = _decided("parents-cross", s, True, n_fam=6, delta=12.0)
        assert r.verdict == "crosses lineage", (s, r.verdict, r.p_split)
        camp = r.candidate_basins >= 0
        assert adjusted_mutual_info_score(label[camp], r.candidate_basins[camp]) >= 0.9


def test_the_scorecard_takes_the_generation_from_parent_id():
    """An import with ``parent_id`` and the parent family as lineage: no deep verdict on a null with a
    strong base-to-fine-tune shift (without the generation, "crosses lineage")."""
    x, fam, gen, _ = parent_population("parents-null", 0, n_fam=6, shift=6.0)
    ids = [f"p{f}" if g == 0 else f"p{f}c{i}" for i, (f, g) in enumerate(zip(fam, gen))]
    table = {"model_id": np.asarray(ids, dtype=object), "parent": fam.astype(object),
             "parent_id": np.asarray(["" if g == 0 else f"p{f}" for f, g in zip(fam, gen)], dtype=object)}
    opts = sc.AnalysisOptions(label="", lineage="parent", n_boot=0, embedding="pca", n_family_boot=20)
    free = sc.analyze([sc.FingerprintInput("fp", x, ids, {})], table, opts).fingerprints[0].label_free
    assert free and free["verdict"] not in lf.DEEP_VERDICTS, (free["verdict"], free["p_split"])
    blind = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0)])[0]
    assert blind.verdict == "crosses lineage"


def test_fine_tunes_without_a_family_value_take_their_base_s():
    """An outside audit (eighteenth session): the family recorded on the base models only, the fine-tunes
    blank with parent_id naming their base. Blank, the fine-tunes were left out of the label-free tests
    and the planted difference among them was missed; they now take their base's value (the chain's
    nearest value), the scorecard says how many did, and the difference is found."""
    x, fam, gen, label = parent_population("parents-cross", 0, n_fam=6, delta=12.0)
    ids = [f"b{f}" if g == 0 else f"b{f}c{i}" for i, (f, g) in enumerate(zip(fam, gen))]
    recorded = np.asarray([str(f) if g == 0 else "" for f, g in zip(fam, gen)], dtype=object)
    table = {"model_id": np.asarray(ids, dtype=object), "family": recorded,
             "parent_id": np.asarray(["" if g == 0 else f"b{f}" for f, g in zip(fam, gen)], dtype=object)}
    opts = sc.AnalysisOptions(label="", lineage="family", n_boot=0, embedding="pca", n_family_boot=20)
    res = sc.analyze([sc.FingerprintInput("fp", x, ids, {"standardize": False})], table, opts)  # one common scale
    assert res.settings["lineage_inherited"] == int((gen > 0).sum())
    free = res.fingerprints[0].label_free
    assert free["verdict"] == "crosses lineage" and free.get("n_unknown", 0) == 0, free["verdict"]
    camps = np.asarray([free["candidate_basins"][m] for m in ids])
    assert adjusted_mutual_info_score(label[camps >= 0], camps[camps >= 0]) >= 0.9
    assert mt.inherit_lineage(["a", "b", "c"], ["1", "", ""], ["", "a", "zz"])[0].tolist() == ["1", "1", ""]
    from fingerprint.cli.display import metadata_lines

    assert metadata_lines(res)[0] == ("24 models without a 'family' value took it from the parent chain (parent_id): "
                                      "a fine-tune is in its base's init family")


def test_every_family_a_base_and_one_fine_tune_is_no_deep_difference():
    """No family has two models of one generation: the split test runs on every model with the
    generation projected out (it once had no models left to run on)."""
    verdicts = []
    for s in range(4):
        r = np.random.default_rng(s)
        fam, gen = np.repeat(np.arange(8), 2), np.tile([0, 1], 8)
        x = r.standard_normal((8, 5))[fam] + 0.3 * r.standard_normal((16, 5))
        x[:, 0] += 3.0 * gen + 0.5 * gen * r.standard_normal(16)
        (res,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=s, generation=gen)])
        assert res.p_split is not None
        verdicts.append(res.verdict)
    assert not [v for v in verdicts if v in lf.DEEP_VERDICTS], verdicts


def test_bases_outside_a_sample_join_no_camp(monkeypatch):
    """Above MAX_MODELS the tests run on whole families; a base outside the sample is in no camp,
    as the bases inside it are, and the children's camps are the planted factor's."""
    monkeypatch.setattr(lf, "MAX_MODELS", 40)
    x, fam, gen, label = parent_population("parents-cross", 0, n_fam=12, m=4, delta=12.0)
    (r,) = lf.decide([lf.label_free(x, fam, n_null=199, generation=gen)])
    assert r.sampled == 40 and r.verdict == "crosses lineage"
    camp = r.candidate_basins >= 0
    assert not camp[gen == 0].any() and camp[gen == 1].all()
    assert adjusted_mutual_info_score(label[camp], r.candidate_basins[camp]) >= 0.9


def test_the_lineage_test_sees_families_through_a_large_generation_shift():
    """Members are permuted across families within their generation, its mean shift taken out: the
    families of a shift-20 null are identified (they once read ``no structure``), and without any
    family effect the test stays calibrated."""
    for s in range(3):
        x, fam, gen, _ = parent_population("parents-null", s, shift=20.0)
        (r,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=s, generation=gen)])
        assert r.verdict == "lineage only", (s, r.verdict, r.p_lineage)
    hits = 0
    for s in range(40):
        r = np.random.default_rng(s)
        fam, gen = np.repeat(np.arange(6), 5), np.tile([0, 1, 1, 1, 1], 6)
        x = r.standard_normal((30, 5))
        x[:, 0] += 10.0 * gen + 3.0 * gen * r.standard_normal(30)
        hits += lf.label_free(x, fam, n_null=99, random_state=s, generation=gen).p_lineage <= 0.05
    assert hits <= 6, hits  # 5% of 40 is 2; P(more than 6 | calibrated) < 0.01
