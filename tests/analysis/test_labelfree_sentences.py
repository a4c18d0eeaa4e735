"""What the label-free verdicts say (analysis/labelfree_sentences.py): no more than the tests showed,
the closest split of the families when the groups test comes near, the few-families caution, and
counts in words (an outside audit's findings 1, 3 and 8)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from analysis import labelfree as lf
from analysis import labelfree_sentences as ls
from analysis.calibration import label_free_json
from analysis.report import headline
from analysis.results import (
    AnalysisResult,
    FingerprintResult,
    candidates_apart,
    summary,
)
from analysis.synthetic import synthetic_population as population
from fingerprint.cli.display import label_free_notes

OTHERS = [lf.LabelFreeResult(40, 10, 0.001, 0.9, 0.9) for _ in range(5)]  # fingerprints decided alongside


def _fams(n_fam: int, per: int = 2) -> tuple[dict[str, int], dict[str, int]]:
    """Families ``"0"..`` split even / odd, and ``per`` models each."""
    return {str(i): i % 2 for i in range(n_fam)}, {str(i): per for i in range(n_fam)}


def test_lineage_only_says_could_not_be_told_apart_not_one_cloud():
    clean = lf.decide([lf.LabelFreeResult(40, 10, 0.005, 0.6, 0.6), *OTHERS])[0]
    assert clean.verdict == "lineage only" and clean.sentence == lf.SENTENCES["lineage only"]
    assert "could not be told apart from one cloud (no groups shown)" in clean.sentence
    assert "form one cloud" not in clean.sentence and "more families would tell" in clean.sentence


def test_closest_split_is_named_below_the_exploratory_threshold_and_not_above():
    groups, sizes = _fams(12)
    near = lf.LabelFreeResult(24, 12, 0.005, 0.09, 0.6, family_groups=groups, family_sizes=sizes)
    far = lf.LabelFreeResult(24, 12, 0.005, ls.EXPLORATORY_P, 0.6, family_groups=groups, family_sizes=sizes)
    a, b = lf.decide([near, far, *OTHERS])[:2]
    assert a.verdict == b.verdict == "lineage only"
    assert ("Closest split of the families (exploratory, not significant: family groups p 0.09, below 0.2 before any "
            "correction): {0, 2, 4, 6, 8, 10} (6 families, 12 models) vs {1, 3, 5, 7, 9, 11} "
            "(6 families, 12 models).") in a.sentence
    assert a.sentence.count("more families would tell") == 1  # the lineage-only sentence says it already
    assert "Closest split" not in b.sentence and b.sentence == lf.SENTENCES["lineage only"]
    # summary.json carries it: the groups test's own split, its p-value and the threshold
    ja, jb = label_free_json(a, [f"m{i}" for i in range(24)]), label_free_json(b, [f"m{i}" for i in range(24)])
    assert ja["closest_groups"] == {"groups": groups, "sizes": sizes, "p_groups": 0.09, "threshold": ls.EXPLORATORY_P}
    assert jb["closest_groups"] is None and "Closest split" in ja["sentence"]


def test_closest_split_under_no_structure_and_never_after_a_deep_verdict():
    groups, sizes = _fams(8)
    flat = lf.LabelFreeResult(16, 8, 0.6, 0.15, 0.7, family_groups=groups, family_sizes=sizes)
    deep = lf.LabelFreeResult(16, 8, 0.005, 0.001, 0.7, family_groups=groups, family_sizes=sizes)
    a, b = lf.decide([flat, deep])
    assert a.verdict == "no structure" and a.sentence.endswith("; more families would tell.")
    assert "Closest split of the families" in a.sentence
    assert b.verdict == "groups lineages" and "Closest split" not in b.sentence and ls.closest_groups(b) is None


def test_a_long_closest_split_is_shortened_with_counts():
    groups, sizes = _fams(30, per=3)
    (r,) = lf.decide([lf.LabelFreeResult(90, 30, 0.005, 0.1, 0.8, family_groups=groups, family_sizes=sizes)])
    assert "{0, 2, 4, 6, 8, 10, 12, 14, ... 7 more} (15 families, 45 models)" in r.sentence
    assert "28" not in r.sentence
    groups, sizes = _fams(18, per=3)  # 9 families a side: the ninth name is shorter than "... 1 more"
    (r,) = lf.decide([lf.LabelFreeResult(54, 18, 0.005, 0.1, 0.8, family_groups=groups, family_sizes=sizes)])
    assert "{0, 2, 4, 6, 8, 10, 12, 14, 16} (9 families, 27 models)" in r.sentence and "1 more" not in r.sentence


def test_the_closest_split_names_the_true_groups_of_a_weak_seed_decided_factor():
    """A seed-decided factor too weak for a verdict at 12 families (2.5 units; the families' spread
    on that axis 1.5): the groups test's p-value falls below the exploratory threshold, and
    the named split is the planted one."""
    x, fam, label = population("groups", 0, n_fam=12, m=4, delta=2.5)
    (r,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0)])
    assert r.verdict == "lineage only" and r.p_groups < ls.EXPLORATORY_P, r.p_groups
    cg = ls.closest_groups(r)
    truth = {str(f): int(label[fam == f][0]) for f in np.unique(fam)}
    assert adjusted_mutual_info_score([truth[f] for f in cg["groups"]], list(cg["groups"].values())) == 1.0
    assert "Closest split of the families" in r.sentence and "(6 families, 24 models)" in r.sentence


def test_a_deep_verdict_from_few_families_carries_the_caution():
    """At 5 families or fewer, a deep verdict whose q is above 0.02 (where real nulls' deep verdicts
    came) carries the caution; one at q 0.0075 (a planted difference every test sees) does not."""
    caution = 'at this few, a deep verdict at q above 0.02 is a reason to train more families'
    for n_fam, expected in ((4, True), (5, True), (6, False)):
        (r,) = lf.decide([lf.LabelFreeResult(6 * n_fam, n_fam, 0.005, 0.9, 0.03, split_rate=1.0)])
        assert r.verdict == "crosses lineage" and r.q == pytest.approx(0.045)
        assert (caution in r.sentence) is expected, (n_fam, r.sentence)
        assert (f"Only {n_fam} init families" in r.sentence) is expected
        assert (caution in label_free_json(r, [f"m{i}" for i in range(6 * n_fam)])["sentence"]) is expected
    (strong,) = lf.decide([lf.LabelFreeResult(24, 4, 0.005, 0.9, 0.005, split_rate=1.0)])
    assert strong.verdict == "crosses lineage" and strong.q <= 0.02 and "Only" not in strong.sentence
    x, fam, _ = population("cross", 1, n_fam=4, m=4, delta=6.0)  # a real one: members split the same way
    (c,) = lf.decide([lf.label_free(x, fam, n_null=199, random_state=0)])
    assert c.verdict == "crosses lineage" and (caution in c.sentence) is (c.q > 0.02)
    (none,) = lf.decide([lf.LabelFreeResult(16, 4, 0.005, 0.9, 0.9)])
    assert none.verdict == "lineage only" and caution not in none.sentence


def test_the_caution_counts_the_families_with_relatives_and_no_relatives_holds_when_sampled():
    """A camp that cuts families rests on the families with relatives: 3 of them beside 10 models on
    their own get the caution (a review's case); a sampled population of singletons (fewer families
    tested than models) still reads as having no relatives."""
    (r,) = lf.decide([lf.LabelFreeResult(28, 13, 0.005, 0.9, 0.03, split_rate=1.0, n_related_families=3)])
    assert r.verdict == "crosses lineage" and "Only 3 init families with relatives" in r.sentence
    (g,) = lf.decide([lf.LabelFreeResult(28, 13, 0.005, 0.03, 0.9, n_related_families=3)])
    assert g.verdict == "groups lineages" and "Only" not in g.sentence
    (s,) = lf.decide([lf.LabelFreeResult(4200, 4000, None, 0.9, 0.9, n_related_families=0)])
    assert "Every model is its own init family" in s.sentence
    assert ls.alone({"n_related_families": 0}) and not ls.alone({"n_related_families": 2})


def test_counts_read_as_words():
    assert ls.families(1) == "1 init family" and ls.families(4) == "4 init families"
    (one,) = lf.decide([lf.label_free(np.random.default_rng(0).standard_normal((8, 3)), np.zeros(8))])
    assert one.sentence == "insufficient: 1 init family (at least 2 needed)"

    def camps(rate: float) -> str:
        r = lf.LabelFreeResult(32, 16, 0.005, 0.6, 0.03, split_rate=rate, n_related_families=16)
        return lf.decide([r, *OTHERS])[0].sentence

    assert "two camps p 0.03 (q " in camps(0.0) and "), cutting none of the 16 families with relatives," in camps(0.0)
    assert "cutting 3 of 16 families with relatives" in camps(3 / 16)
    assert "cutting all 16 families with relatives" in camps(1.0)
    assert "%" not in camps(3 / 16)


def test_the_terminal_notes_carry_the_pointer_and_the_caution_only():
    def fp(name: str, free: dict) -> FingerprintResult:
        return FingerprintResult(name, n_models=16, label_free=free)

    cg = {"groups": {"a": 0, "b": 0, "c": 1, "d": 1}, "sizes": {"a": 4, "b": 4, "c": 4, "d": 4}, "p_groups": 0.11,
          "threshold": 0.2}
    res = AnalysisResult(1, 0.0, {}, 16, scorecard=[], fingerprints=[
        fp("w", {"verdict": "crosses lineage", "n_families": 4, "q": 0.04, "sentence": "W."}),
        fp("v", {"verdict": "groups lineages", "n_families": 4, "q": 0.03, "sentence": "V."}),
        fp("u", {"verdict": "groups lineages", "n_families": 4, "q": 0.008, "sentence": "U."}),
        fp("x", {"verdict": "crosses lineage", "n_families": 8, "sentence": "X."}),
        fp("y", {"verdict": "lineage only", "n_families": 4, "closest_groups": cg, "sentence": "Y."}),
        fp("z", {"verdict": "lineage only", "n_families": 4, "closest_groups": None, "sentence": "Z."})])
    assert label_free_notes(res) == [
        "lineage, w (crosses lineage): Only 4 init families: at this few, a deep verdict at q "
        'above 0.02 is a reason to train more families, not yet a finding (docs/scorecard.md, "Few families").',
        # whole families on each side: a lead at any q (an outside audit, 81: 2 and 2 of 4 at q 0.014)
        "lineage, v (groups lineages), u (groups lineages): Only 4 init families, grouped: so few can fall "
        "into two groups in only a handful of ways: the camps are a reason to train more families, not yet a finding, "
        'whatever their q (docs/scorecard.md, "Few families").',
        "lineage, y (lineage only): Closest split of the families (exploratory, not significant: family groups p "
        "0.11, below 0.2 before any correction): {a, b} (2 families, 8 models) vs {c, d} (2 families, 8 models); "
        "more families would tell."]


def _analyze(x: np.ndarray, family: np.ndarray):
    from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze

    ids = [f"m{i}" for i in range(len(x))]
    opts = AnalysisOptions(n_perm=99, n_family_boot=20, n_boot=4, label="", embedding="pca")  # (the map: not read)
    fp = FingerprintInput("fp", x, ids, {"extractor": "fp", "output": "features"})
    return analyze([fp], {"model_id": np.asarray(ids), "init_seed": family.astype(str)}, opts)


def test_the_report_counts_cut_families_and_marks_groups_without_relatives():
    from analysis.report import render

    x, fam, _ = population("null", 2, n_fam=8, m=3)
    res = _analyze(x, fam)
    free = res.fingerprints[0].label_free
    assert free["n_related_families"] == 8 and "%" not in free["sentence"]
    assert re.search(r"models in two camps [0-9.]+ \(cutting (none of the|all|[1-7] of) 8 families with relatives",
                     render(res))
    planted = np.random.default_rng(1).standard_normal((24, 5))
    planted[::2] += 6.0  # on every column: standardisation keeps it (docs/scorecard.md, "power after standardisation")
    alone = _analyze(planted, np.arange(24))
    free = alone.fingerprints[0].label_free
    assert free["verdict"] == "groups lineages" and free["n_related_families"] == 0  # the stored value is unchanged
    html = render(alone)
    assert "groups lineages (no relatives)" in html and "no family has relatives to cut" in html


def test_the_terminal_says_when_closest_splits_disagree():
    """Two fingerprints pointing at different splits of the same families (an outside audit: one the
    truth, one not) get a line saying so; the same split under other group numbers is one."""
    def fp(name: str, groups: dict) -> FingerprintResult:
        cg = {"groups": groups, "sizes": {}, "p_groups": 0.1, "threshold": 0.2}
        return FingerprintResult(name, n_models=16, label_free={"verdict": "lineage only", "n_families": 4,
                                                                "closest_groups": cg, "sentence": "."})

    same = AnalysisResult(1, 0.0, {}, 16, scorecard=[], fingerprints=[
        fp("a", {"f0": 0, "f1": 0, "f2": 1, "f3": 1}), fp("b", {"f0": 1, "f1": 1, "f2": 0, "f3": 0})])
    assert not any("disagree" in line for line in label_free_notes(same))
    other = AnalysisResult(1, 0.0, {}, 16, scorecard=[], fingerprints=[
        *same.fingerprints, fp("c", {"f0": 0, "f1": 1, "f2": 0, "f3": 1})])
    assert label_free_notes(other)[-1] == ("lineage: these closest splits disagree (a, b; c); 2 of the 3 name one split "
                                           "(a, b): at most one can be real; leads to check, not findings (more families, "
                                           "or probes on which the candidate behaviours differ, would tell: "
                                           "docs/scorecard.md, \"What to look with\")")  # (audit 116: how many agree)
    # an outside audit (103): smaller sides that hold one another are one minority, not splits that disagree
    fams = [f"f{i}" for i in range(8)]
    side = lambda n: {f: int(i < n) for i, f in enumerate(fams)}  # noqa: E731
    nest = AnalysisResult(1, 0.0, {}, 16, scorecard=[], fingerprints=[fp("p", side(3)), fp("r", side(2)), fp("t", side(1))])
    assert label_free_notes(nest)[-1] == ("lineage: these closest splits nest (t; r; p): the smaller side of each holds "
                                          "the one before (1, 2, 3 families): perhaps one minority seen more or less "
                                          "completely, or splits that nest by chance around one outlying family; a "
                                          "lead to check, not a finding (more families, or probes on which the candidate "
                                          "behaviours differ, would tell: docs/scorecard.md, \"What to look with\")")
    apart = AnalysisResult(1, 0.0, {}, 16, scorecard=[], fingerprints=[
        fp("p", side(3)), fp("r", {f: int(i in (0, 5)) for i, f in enumerate(fams)})])
    assert "these closest splits disagree (p; r): at most one" in label_free_notes(apart)[-1]  # (no majority: none said)


def test_a_deep_verdict_whose_candidate_basins_are_not_the_clusters_is_named():
    """The basin table shows each fingerprint's clusters, the verdict is about its candidate basins:
    when they differ (one cluster; or AMI below 0.5) the report and terminal say so; when they
    agree, nothing (an outside audit: k 1 beside `crosses lineage` at AMI 1.00 with a backdoor)."""
    ids = [f"m{i}" for i in range(12)]
    camps = {m: i % 2 for i, m in enumerate(ids)}

    def fp(name: str, clusters: list[int], verdict: str = "crosses lineage") -> FingerprintResult:
        return FingerprintResult(name, n_models=12, model_ids=ids, clusters=clusters,
                                 label_free={"verdict": verdict, "candidate_basins": camps, "sentence": "."})

    one = fp("weight-stats", [0] * 12)
    other = fp("cka", [i // 6 for i in range(12)])  # families' halves, not the camps
    same = fp("disagreement", [(i + 1) % 2 for i in range(12)])  # the camps under other numbers
    quiet = fp("probe-outputs", [0] * 12, "lineage only")
    assert candidates_apart(one) == "its clusters: 1 basin"
    assert candidates_apart(other) == "AMI 0.00 with its clusters" or candidates_apart(other).startswith("AMI -")
    assert candidates_apart(same) is None and candidates_apart(quiet) is None
    res = AnalysisResult(1, 0.0, {}, 12, scorecard=[], fingerprints=[one, other, same, quiet])
    h = headline(res)
    assert h.apart.startswith("the candidate basins of weight-stats (its clusters: 1 basin), cka (AMI")
    assert "disagreement" not in h.apart and "which forecast and select forecast when there is no label" in h.apart
    assert set(summary(res)["candidates_apart"]) == {"weight-stats", "cka"}


def test_cut_families_in_words_short_and_in_summary_json():
    assert ls.cut_text(()) == ""
    assert ls.cut_text(["3"]).startswith(" Family 3 is cut by the split: its models fall on both sides")
    assert ls.cut_text(["3", "5"]).startswith(" Families 3 and 5 are cut by the split: their models")
    many = ls.cut_text([str(i) for i in range(10)])
    assert many.startswith(f" Families 0, 1, 2, 3, 4, 5 and {10 - ls.MAX_CUT_NAMES} more are cut")
    assert ls.cut_text([str(i) for i in range(ls.MAX_CUT_NAMES + 1)]).startswith(" Families 0, 1, 2, 3, 4, 5 and 6 are")
    from analysis.synthetic import partly_seeded_population

    x, fam, _ = partly_seeded_population(5, 12, 2)
    r = lf.decide([lf.label_free(x, fam)])[0]
    d = label_free_json(r, [f"m{i}" for i in range(len(x))])
    assert d["verdict"] == "groups lineages" and d["cut_families"] == ["0", "1"]
    assert "Families 0 and 1 are cut by the split" in d["sentence"]


def test_the_terminal_names_the_cut_families_once_per_set():
    d = {"verdict": "groups lineages", "cut_families": ["3", "5"]}
    lines = ls.size_lines([("cka", d), ("ood-outputs", d), ("other", {"verdict": "lineage only", "cut_families": []})])
    assert lines == ["lineage, cka, ood-outputs: Families 3 and 5 are cut by the split: their models fall on both sides "
                     "(seeds that did not decide the difference, or models near its boundary), each in its own side's "
                     "candidate basin (summary.json label_free.cut_families)."]


def test_held_reason_names_what_kept_a_significant_test_from_a_deep_verdict():
    from analysis.labelfree import held_reason

    assert held_reason({}) is None
    assert held_reason({"split": {"no_gap": True, "dip_p": 0.1}}) == "no gap"
    assert held_reason({"split": {"small": True, "no_gap": True}}) == "small"  # as the sentence: its size first
    assert held_reason({"groups": {"coarse": True, "steps": 1.2}}) == "coarse"


def test_cut_families_named_by_their_models_read_as_such():
    """A review: recovered and near-twin families are named "family of m03", and the sentence read "Family family of
    m03 is cut by the split"."""
    from analysis.labelfree_sentences import cut_text

    assert cut_text(["family of m03"]).startswith(" The init family of m03 is cut by the split: its models")
    assert cut_text(["family of m03", "family of m09"]).startswith(" The init families of m03 and m09 are cut")
    assert cut_text(["3", "7"]).startswith(" Families 3 and 7 are cut by the split")

