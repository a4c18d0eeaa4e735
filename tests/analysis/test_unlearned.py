"""Models that did not learn the task (analysis/unlearned.py): a camp whose models predict other classes than the
rest on the in-distribution probes, and than each other as often, is said as such and is no candidate; a camp of
another rule, which agrees with the rest there, stays a candidate."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import unlearned
from analysis.answer import label_free_answer
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze

N_OK, N_ODD, PROBES, CLASSES = 30, 6, 200, 3


def _predictions(odd: str, seed: int = 0, n_odd: int = N_ODD) -> np.ndarray:
    """Predicted classes ``[30 + n_odd, 200]`` on in-distribution probes: 30 trained models (the task's labels, 5% of
    them flipped each), then ``n_odd`` (6) ``failed`` (each its own random classes), ``rule`` (trained too: two rules agree
    in distribution) or ``constant`` (one class always)."""
    r = np.random.default_rng(seed)
    y = r.integers(0, CLASSES, PROBES)
    def trained(k: int) -> np.ndarray:
        p = np.tile(y, (k, 1))
        flip = r.random(p.shape) < 0.05
        return np.where(flip, r.integers(0, CLASSES, p.shape), p)
    odd_p = {"failed": r.integers(0, CLASSES, (n_odd, PROBES)), "rule": trained(n_odd),
             "constant": np.zeros((n_odd, PROBES), dtype=int)}[odd]
    return np.concatenate([trained(N_OK), odd_p])


def _disagreement(p: np.ndarray) -> np.ndarray:
    return (p[:, None, :] != p[None, :, :]).mean(-1)


@pytest.mark.parametrize("odd, expected", [("failed", 1), ("rule", None), ("constant", None)])
def test_a_camp_that_agrees_with_nothing(odd, expected):
    d = _disagreement(_predictions(odd))
    ids = [f"m{i:02d}" for i in range(N_OK + N_ODD)]
    stats = unlearned.camps(d, ids, {m: int(i >= N_OK) for i, m in enumerate(ids)})
    assert stats["sizes"] == [N_OK, N_ODD]
    assert unlearned.agrees_with_nothing(stats) == expected
    # the camps' labels swapped: the same camp found
    swapped = unlearned.camps(d, ids, {m: int(i < N_OK) for i, m in enumerate(ids)})
    assert unlearned.agrees_with_nothing(swapped) == (None if expected is None else 0)
    assert unlearned.camps(d, ids, {m: 0 for m in ids}) is None  # one camp: nothing to compare


def _modal(p: np.ndarray) -> list[float]:
    return [float(np.bincount(row, minlength=CLASSES).max() / len(row)) for row in p]


def _concentration(p: np.ndarray) -> list[float]:
    return [float(((np.bincount(row, minlength=CLASSES) / len(row)) ** 2).sum()) for row in p]


def _population(odd, modal: bool = False, spread: list[float] | None = None, n_odd: int = N_ODD
                ) -> tuple[list[FingerprintInput], dict]:
    """30 + ``n_odd`` (6) independent models: a behavioural fingerprint on which the odd models sit far from the rest,
    and the in-distribution predictions' disagreement."""
    r = np.random.default_rng(1)
    n = N_OK + n_odd
    ids = [f"m{i:02d}" for i in range(n)]
    x = r.standard_normal((n, 20)) * np.exp(-np.arange(20) / 5)
    x[N_OK:] += 8 * r.standard_normal(20) * np.exp(-np.arange(20) / 5)
    p = _predictions(odd, 1, n_odd) if not isinstance(odd, np.ndarray) else odd
    meta = {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "classes",
            "params": {"probe_set": "in_dist", "n_probes": PROBES},
            **({"modal_share": _modal(p), "concentration": _concentration(p)} if modal else {}),
            **({"spread": spread} if spread is not None else {})}
    fps = [FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"}),
           FingerprintInput("disagreement:probe_set=in_dist", _disagreement(p), ids, meta)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(n)}
    return fps, table


OPTS = AnalysisOptions(n_perm=99, n_boot=2, label="", embedding="pca")


def test_models_that_did_not_learn_are_said_so_and_are_no_candidate():
    """An outside audit (94): 6 of 96 models trained at a learning rate of 1e-5 read "one candidate deep difference,
    found by 6 of 11 fingerprints ... 84 SDs apart"."""
    fps, table = _population("failed")
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert not ans.candidates
    (lead,) = [c for c in ans.lone_leads if c.lone_why == "unlearned"]
    assert lead.unlearned["camp"] is not None and lead.unlearned["fingerprint"] == "disagreement:probe_set=in_dist"
    assert ans.sentence.startswith("no candidate deep difference; a camp of 6 models (m30, m31, m32, m33, ...) that did "
                                   "not learn what the other 30 did, not a basin (found by ")
    assert "models that agree with nothing on inputs like the training data's" in ans.sentence
    assert ans.to_dict()["lone_leads"][0]["unlearned"]["sizes"] == lead.unlearned["sizes"]


def test_a_second_rule_that_agrees_in_distribution_stays_a_candidate():
    fps, table = _population("rule")
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned
    assert ans.sentence.startswith("one candidate deep difference")
    assert "they compute different functions of inputs like the training data's" not in ans.sentence


def test_a_camp_that_collapsed_to_one_class_stays_a_candidate_and_is_said_to_compute_another_function():
    """Audit 92's SGD at a learning rate of 0.5: 12 of 24 models predicted one class for every input, alike among
    themselves; not models that agree with nothing, but not a second way of doing the task either."""
    fps, table = _population("constant")
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned
    assert "(disagreement:probe_set=in_dist) the camps predict other classes on " in ans.sentence
    assert "of them, where the models of each camp differ among themselves on 0% and " in ans.sentence
    assert "they compute different functions of inputs like the training data's" in ans.sentence


def test_a_camp_whose_outputs_do_not_move_with_the_input_did_not_learn():
    """With how far each model's log-probabilities move with the input recorded (the disagreement extractor's
    ``spread``), a camp of flat outputs (collapsed to one class: 0 nats, against 20) is models that did not learn."""
    fps, table = _population("constant", modal=True, spread=[20.0] * N_OK + [0.0] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert not ans.candidates
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == "flat" and lead.unlearned["spread"] == [20.0, 0.0]
    assert ("(disagreement:probe_set=in_dist) they predict one class for nearly every probe, and their outputs barely "
            "move with the input (their log-probabilities' spread 0 nats, against 20 for the others)") in ans.sentence
    assert "the others are analysed again without them, after this answer" in ans.sentence
    assert ans.rest["excluded"] == [f"m{i}" for i in range(N_OK, N_OK + N_ODD)] and ans.rest["others"] == N_OK
    assert ", the other 30: no candidate deep difference" in ans.sentence


def test_a_goal_of_rare_classes_is_not_a_collapse():
    """Audit 95 (F1): 8 detectors of a rare event predicted one class for 98% of the in-distribution probes, and the
    share of the most frequent class called them collapsed; their outputs move with the input (3.5-4.7 nats)."""
    r = np.random.default_rng(7)
    rare = r.random(PROBES) < 0.02  # the event: class 0 or 2 there, class 1 elsewhere
    y = np.where(rare, 2 * r.integers(0, 2, PROBES), 1)
    p = np.concatenate([_predictions("rule", 1)[:N_OK], _noisy(y, N_ODD, 0.995, r)])
    fps, table = _population(p, modal=True, spread=[20.0] * N_OK + [4.0] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned
    assert 0.95 < ans.candidates[0].in_dist["modal"][1] < 0.995


def test_a_camp_of_small_outputs_that_predicts_the_classes_of_the_rest_is_not_flat():
    """Audit 96 (F2): a planted rule exported with its logits divided by 30 (or trained with label smoothing) moved
    its log-probabilities 0.4-0.8 nats against 19, and the spread alone demoted it; its camps predict the same
    classes on the in-distribution probes, so it is not flat, and stays a candidate."""
    fps, table = _population("rule", modal=True, spread=[19.0] * N_OK + [0.6] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned


def test_two_minority_goals_in_one_camp_do_not_agree_with_nothing():
    """Audit 95 (F2): 3 models of one label map and 3 of another, in one camp: most of its pairs differ, but each
    model has a near mate; not models that agree with nothing."""
    r = np.random.default_rng(6)
    y = r.integers(0, CLASSES, PROBES)
    p = np.concatenate([_noisy(y, N_OK, 0.97, r), _noisy((y + 1) % CLASSES, 3, 0.97, r),
                        _noisy((y + 2) % CLASSES, 3, 0.97, r)])
    fps, table = _population(p, modal=True, spread=[20.0] * (N_OK + N_ODD))
    ans = label_free_answer(analyze(fps, table, OPTS))
    stats = ans.candidates[0].in_dist
    assert stats["within"][1] >= 0.75 * stats["between"] > stats["nearest"][1]
    assert not ans.candidates[0].unlearned


def test_the_disagreement_extractor_records_each_models_class_shares_and_spread(tmp_path):
    import torch
    from torch import nn

    from fingerprint import Zoo, pipeline
    from fingerprint.pipeline import cached_fingerprints

    mods = []
    for i in range(6):
        torch.manual_seed(i)
        m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        if i >= 4:  # collapsed: class 2 whatever the input
            with torch.no_grad():
                m[2].weight.zero_()
                m[2].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
        mods.append(m)
    zoo = Zoo.from_modules(mods, tmp_path / "zoo", probes={"in_dist": torch.randn(64, 4, generator=torch.Generator().manual_seed(0))},
                           metadata={"init_seed": list(range(6))})
    pipeline.compute(zoo, ["disagreement:probe_set=in_dist"])
    (f,) = [f for f in cached_fingerprints(Zoo.open(tmp_path / "zoo")) if f.name == "disagreement:probe_set=in_dist"]
    share = dict(zip(f.model_ids, f.meta["modal_share"]))
    assert [share[m] for m in f.model_ids[4:]] == [1.0, 1.0] and all(1 / 3 <= share[m] < 1.0 for m in f.model_ids[:4])
    spread = dict(zip(f.model_ids, f.meta["spread"]))  # the collapsed ones' log-probabilities do not move at all
    assert [spread[m] for m in f.model_ids[4:]] == [0.0, 0.0] and all(spread[m] > 0 for m in f.model_ids[:4])


def _noisy(y: np.ndarray, k: int, accuracy: float, r: np.random.Generator) -> np.ndarray:
    """``k`` models' predictions ``[k, probes]``: ``y`` right on ``accuracy`` of the probes, a random other class elsewhere."""
    wrong = r.random((k, len(y))) > accuracy
    return np.where(wrong, (y + r.integers(1, CLASSES, (k, len(y)))) % CLASSES, y)


def test_a_camp_that_learned_the_task_less_well_is_said_so_not_to_agree_with_nothing():
    """Review 95 (M2): a camp at 75% accuracy (label noise, a smaller model) differs among itself more often than from
    the rest, but far less often than models predicting at random would: models that learned the task less well."""
    r = np.random.default_rng(4)
    y = r.integers(0, CLASSES, PROBES)
    p = np.concatenate([_noisy(y, N_OK, 0.97, r), _noisy(y, N_ODD, 0.75, r)])
    fps, table = _population(p, modal=True)
    ans = label_free_answer(analyze(fps, table, OPTS))
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == "less" and not ans.candidates
    assert "models that learned the task less well than the others and each in its own way" in ans.sentence
    assert "agree with nothing" not in ans.sentence


def test_a_quiet_camp_learned_in_part_each_model_its_own_way_learned_less_well():
    """Outside audit 115: 3 of 60 MLPs at a learning rate of 2e-5 (accuracy 0.76-0.90) moved their log-probabilities
    0.23 nats against 10 and predicted other classes on 19% of the probes, under the 20% that "no agreement of their
    own" asked, and read "one candidate deep difference ... 136 SDs apart". Outputs that quiet, apart on 10% or more,
    each model without a near mate: learned the task less well, confirmed model by model. A camp as quiet whose models
    share their departures (a rule of its own on 15% of the probes, smoothed logits) stays a candidate."""
    r = np.random.default_rng(11)
    y = r.integers(0, CLASSES, PROBES)
    p = np.concatenate([_noisy(y, N_OK, 0.99, r), _noisy(y, N_ODD, 0.84, r)])
    fps, table = _population(p, modal=True, spread=[10.0] * N_OK + [0.23] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == "less" and not ans.candidates and 0.1 <= lead.unlearned["between"] < 0.2
    assert unlearned.confirmed(set(table["model_id"][N_OK:]), fps) == set(table["model_id"][N_OK:])
    rule = (y + (r.random(PROBES) < 0.15)) % CLASSES  # one other function, shared by the camp
    p = np.concatenate([_noisy(y, N_OK, 0.99, r), _noisy(rule, N_ODD, 0.99, r)])
    fps, table = _population(p, modal=True, spread=[10.0] * N_OK + [0.23] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned
    assert unlearned.confirmed(set(table["model_id"][N_OK:]), fps) == set()

def test_trained_models_of_an_imbalanced_task_are_not_a_collapsed_camp():
    """Review 95 (M1): on in-distribution probes nearly all of one class, the trained models predict it for nearly
    every input; beside a smaller camp of another goal, they are not the camp that collapsed."""
    r = np.random.default_rng(5)
    y = np.where(r.random(PROBES) < 0.985, 0, 1)
    p = np.concatenate([_noisy(y, N_OK, 0.99, r), _noisy(np.full(PROBES, 2), N_ODD, 0.7, r)])
    fps, table = _population(p, modal=True)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert ans.candidates and not ans.candidates[0].unlearned


def test_models_absent_from_the_predictions_are_not_named():
    """Review 95 (L2): the camp's models named are those the in-distribution predictions hold."""
    fps, table = _population("failed")
    keep = [i for i in range(N_OK + N_ODD) if i not in (N_OK, N_OK + 1)]  # m30, m31 not in the predictions
    d = fps[1]
    fps[1] = FingerprintInput(d.name, d.values[np.ix_(keep, keep)], [d.model_ids[i] for i in keep], d.meta)
    ans = label_free_answer(analyze(fps, table, OPTS))
    (lead,) = ans.lone_leads
    assert lead.unlearned["sizes"][lead.unlearned["camp"]] == 4
    assert "a camp of 4 models (m32, m33, m34, m35) that did not learn" in ans.sentence


def test_failed_models_in_two_basins_beside_the_trained_ones_are_read_together():
    """Audit 96 (F1): 6 failed CNNs split 4 and 2 beside 26 trained ones, a candidate of three basins, were never
    read; each basin but the largest is read against the largest, and the rest together is said."""

    from analysis.answer import _unlearned

    p = _predictions("failed")
    ids = [f"m{i:02d}" for i in range(N_OK + N_ODD)]
    basins = {m: 0 if i < N_OK else 1 + (i - N_OK) % 2 for i, m in enumerate(ids)}  # 30, 3 and 3
    per_model = {"spread": np.asarray([20.0] * N_OK + [0.05] * N_ODD)}
    stats = unlearned._several(_disagreement(p), ids, basins, per_model)
    assert stats["sizes"] == [N_OK, N_ODD] and len(stats["parts"]) == 2
    u = _unlearned(stats)
    assert u["camp"] == 1 and u["why"] == "flat"
    # the second basin of another rule, trained (predicting as the rest in distribution): nothing said of the rest
    rule = [i for i, m in enumerate(ids) if basins[m] == 2]
    p[rule] = _predictions("rule")[rule]
    per_model["spread"][rule] = 20.0
    mixed = unlearned._several(_disagreement(p), ids, basins, per_model)
    assert [_unlearned(part) is None for part in mixed["parts"]] == [False, True]
    assert _unlearned(mixed) is None


def test_three_basins_with_a_basin_of_one_model_or_mixed_reasons():
    """Review 96: a basin of one model is read by no test, so the rest together are not said to have failed; basins
    failed in different ways are said as such, not with one basin's reason."""

    from analysis.answer import _unlearned

    p = _predictions("failed")
    ids = [f"m{i:02d}" for i in range(N_OK + N_ODD)]
    lone = {m: 0 if i < N_OK - 1 else (2 if i == N_OK - 1 else 1) for i, m in enumerate(ids)}  # 29, 6 and 1 trained
    per_model = {"spread": np.asarray([20.0] * N_OK + [0.05] * N_ODD)}
    stats = unlearned._several(_disagreement(p), ids, lone, per_model)
    assert stats["parts"] == [] and _unlearned(stats) is None
    mixed = {m: 0 if i < N_OK else 1 + (i - N_OK) % 2 for i, m in enumerate(ids)}
    per_model["spread"][[N_OK + 1, N_OK + 3, N_OK + 5]] = 20.0  # basin 2: failed, but not flat
    u = _unlearned(unlearned._several(_disagreement(p), ids, mixed, per_model))
    assert u["why"] == "several"


def two_rules_and_failed():
    """45 models in 15 init families of 3: families 0, 3, ... of rule A, 1, 4, ... of rule B (the two agree on the
    in-distribution probes, 8 SDs apart on the outputs), 2, 5, ... failed (random classes there). Returns the
    fingerprints, the model table, each model's group (0, 1, 2) and the ids."""
    r = np.random.default_rng(2)
    n, fam = 45, np.arange(45) // 3
    grp = fam % 3
    y = r.integers(0, CLASSES, PROBES)
    p = np.where(r.random((n, PROBES)) < 0.04, r.integers(0, CLASSES, (n, PROBES)), np.tile(y, (n, 1)))
    p[grp == 2] = r.integers(0, CLASSES, ((grp == 2).sum(), PROBES))
    scale = np.exp(-np.arange(20) / 5)
    x = (r.standard_normal((n, 20)) + 0.6 * r.standard_normal((15, 20))[fam] + 8 * r.standard_normal((3, 20))[grp]) * scale
    ids = [f"m{i:02d}" for i in range(n)]
    fps = [FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"}),
           FingerprintInput("disagreement:probe_set=in_dist", _disagreement(p), ids,
                            {"extractor": "disagreement", "output": "distances", "kind": "behavioural",
                             "predicts": "classes", "params": {"probe_set": "in_dist", "n_probes": PROBES},
                             "spread": list(r.uniform(5, 6, n))})]
    return fps, {"model_id": np.asarray(ids, dtype=object), "init_seed": fam}, grp, ids


def test_a_second_rule_behind_a_failed_camp_is_pointed_at_by_the_finer_clusters():
    """Review 95 (H2): 15 failed models beside 30 trained ones of two rules (agreeing in distribution, 8 SDs apart on
    the outputs) take the two-camp split; the lead says the outputs' own three clusters."""
    fps, table, _, _ = two_rules_and_failed()
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert not ans.candidates and ans.lone_leads[0].lone_why == "unlearned"
    assert "their own clusters split the camps further: k = 3 (outputs: 15, 15 and 15 models)" in ans.sentence


def test_blown_up_and_flat_outputs_where_every_model_predicts_one_class():
    """Audit 97 (F1): positives the in-distribution probes hardly hold, every model predicting the negative class;
    models that diverged (logits near 26,000: 2,419 nats of spread against 7.9) or collapsed (0 against 8.6) were a
    candidate of the weights' fingerprints, since their predictions could not tell them apart."""
    p = np.zeros((N_OK + N_ODD, PROBES), dtype=int)
    for odd_spread, why in ((2400.0, "diverged"), (0.0, "flat")):
        fps, table = _population(p, modal=True, spread=[8.0] * N_OK + [odd_spread] * N_ODD)
        ans = label_free_answer(analyze(fps, table, OPTS))
        assert not ans.candidates and [c.unlearned["why"] for c in ans.lone_leads] == [why]
    fps, table = _population(p, modal=True, spread=[8.0] * N_OK + [2400.0] * N_ODD)
    assert "their outputs are blown up (their log-probabilities' spread 2400 nats, against 8 for the others): a run " \
           "that diverged" in label_free_answer(analyze(fps, table, OPTS)).sentence


def test_models_more_confident_than_the_rest_and_mostly_alone_in_their_camp_are_erratic():
    """Audit 97 (F2): 6 digits models at too high a learning rate (accuracy 0.10-0.75) moved their outputs further
    than the trained ones, and two of them shared some errors (nearest mate 21% against 62% from the rest): not
    a goal learned less well, whose outputs move less (audit 95's harder goal: 8-10 nats against 18)."""
    r = np.random.default_rng(8)
    y = r.integers(0, CLASSES, PROBES)
    pairs = np.repeat(r.integers(0, CLASSES, (3, PROBES)), 2, axis=0)
    odd = np.where(r.random((N_ODD, PROBES)) < 0.25, r.integers(0, CLASSES, (N_ODD, PROBES)), pairs)
    p = np.concatenate([_noisy(y, N_OK, 0.99, r), odd])
    fps, table = _population(p, modal=True, spread=[6.0] * N_OK + [40.0] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    stats = ans.lone_leads[0].unlearned if ans.lone_leads else ans.candidates[0].in_dist
    assert stats["nearest"][1] < 0.75 * stats["between"]  # the first sign alone would keep it a candidate
    assert not ans.candidates and ans.lone_leads[0].lone_why == "unlearned"
    fps, table = _population(p, modal=True, spread=[6.0] * N_OK + [3.0] * N_ODD)  # moving less: kept
    assert label_free_answer(analyze(fps, table, OPTS)).candidates


def test_larger_or_smaller_logits_of_a_real_camp_are_no_failure():
    """Review 97: a rule agreeing in distribution whose logits are 20 times larger (160 nats against 8: a temperature
    below 1) is not a run that diverged; a backdoor of small logits (0.3 against 8.6) where every model predicts
    one class, the probes lacking its trigger, is not flat; a camp moving its outputs as far as the rest (6.2 against
    6.0) is not erratic."""
    fps, table = _population("rule", modal=True, spread=[8.0] * N_OK + [160.0] * N_ODD)
    assert label_free_answer(analyze(fps, table, OPTS)).candidates
    p = np.zeros((N_OK + N_ODD, PROBES), dtype=int)
    fps, table = _population(p, modal=True, spread=[8.6] * N_OK + [0.3] * N_ODD)
    assert label_free_answer(analyze(fps, table, OPTS)).candidates
    r = np.random.default_rng(9)
    y = r.integers(0, CLASSES, PROBES)
    p = np.concatenate([_noisy(y, N_OK, 0.99, r), _noisy((y + 1) % CLASSES, N_ODD, 0.8, r)])
    fps, table = _population(p, modal=True, spread=[6.0] * N_OK + [6.2] * N_ODD)
    assert label_free_answer(analyze(fps, table, OPTS)).candidates


def _regression(odd: str, n_ok: int = 24, n_odd: int = 6):
    """Trained regressions (one target plus 3% noise, 4 outputs on 100 in-distribution probes) and ``odd`` models:
    ``flat`` (a learning rate too low: small outputs of their own), ``random`` (functions of their own, as large),
    ``half`` (a target of half the scale: a different goal), ``other`` (another target altogether) or ``tenth`` (a
    target of a tenth the scale, fitted closely: audit 99)."""
    r = np.random.default_rng(5)
    target = r.standard_normal((100, 4))
    ok = target + 0.03 * r.standard_normal((n_ok, 100, 4))
    odd_out = {"flat": 0.05 * r.standard_normal((n_odd, 100, 4)), "random": r.standard_normal((n_odd, 100, 4)),
               "half": 0.5 * r.standard_normal((100, 4)) + 0.03 * r.standard_normal((n_odd, 100, 4)),
               "other": r.standard_normal((100, 4)) + 0.03 * r.standard_normal((n_odd, 100, 4))}[odd] if odd != "tenth" \
        else 0.1 * r.standard_normal((100, 4)) + 0.005 * r.standard_normal((n_odd, 100, 4))
    n = n_ok + n_odd
    ids = [f"m{i:02d}" for i in range(n)]
    both = np.concatenate([ok, odd_out])  # [n, 100, 4]: as the disagreement extractor reads them (version 8)
    d = np.sqrt(((both[:, None] - both[None]) ** 2).sum(-1).mean(-1))
    spread = np.sqrt(both.var(1, ddof=1).sum(-1))
    x = r.standard_normal((n, 20)) * np.exp(-np.arange(20) / 5)
    x[n_ok:] += 8 * r.standard_normal(20) * np.exp(-np.arange(20) / 5)
    meta = {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "values",
            "params": {"probe_set": "in_dist", "n_probes": 100}, "spread": list(spread)}
    fps = [FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"}),
           FingerprintInput("disagreement:probe_set=in_dist", d, ids, meta)]
    return fps, {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(n)}


@pytest.mark.parametrize("odd, why", [("flat", "flat"), ("random", "nothing"), ("half", None), ("other", None),
                                      ("tenth", None)])
def test_regressions_that_did_not_learn_are_said_so_and_other_targets_stay_candidates(odd, why):
    """Audit 98 (F1): 24 trained 4-output regressions beside 6 that failed (3 at a learning rate of 1e-6, 3 whose outputs
    went constant) read "2 candidate deep differences", the check reading only predicted classes."""
    fps, table = _regression(odd)
    ans = label_free_answer(analyze(fps, table, OPTS))
    if why is None:  # another target, or one of half the scale: a candidate whose camps compute different functions
        assert ans.candidates and not ans.candidates[0].unlearned and not ans.lone_leads
        assert ans.candidates[0].in_dist["predicts"] == "values"
        assert "the camps' outputs differ by" in ans.sentence and "times the SD of the more varied camp's" in ans.sentence
        return
    assert not ans.candidates
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == why and lead.unlearned["sizes"] == [24, 6] and lead.unlearned["camp"] == 1
    if why == "flat":
        assert ("their outputs barely move with the input (their outputs' SD over the probes 0.1, against 1.9 for the "
                "others): models that learned little or nothing of the input") in ans.sentence
    else:
        assert ("their outputs differ from the others' by 1.4 times the SD over the probes of the more varied camp's (RMS)"
                in ans.sentence)
    assert ans.rest["excluded"] == [f"m{i}" for i in range(24, 30)]


def test_a_flat_camp_that_predicts_the_classes_of_the_rest_learned_the_task_in_part():
    """Audit 98 (F2): 8 digits MLPs stopped after 5-50 steps (77-89% right, 0.23 nats against 6.1) were said to have
    learned nothing of the input."""
    r = np.random.default_rng(3)
    y = r.integers(0, 10, PROBES)
    p = np.tile(y, (N_OK + N_ODD, 1))
    wrong = r.random(p.shape) < np.where(np.arange(N_OK + N_ODD) < N_OK, 0.03, 0.3)[:, None]
    p = np.where(wrong, r.integers(0, 10, p.shape), p)
    spread = [6.0] * N_OK + [0.2] * N_ODD
    fps, table = _population(p, modal=True, spread=spread)
    fps[1].meta["concentration"] = [0.1] * (N_OK + N_ODD)  # ten classes, evenly
    ans = label_free_answer(analyze(fps, table, OPTS))
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == "flat"
    assert "though they predict the others' classes on 72% of them: models that learned the task only in part" in ans.sentence
    assert "learned nothing of the input" not in ans.sentence
    assert "Without the 6 models that did not learn (or learned the task only in part) (m30, m31, m32, m33, ...)" in ans.sentence


def test_camps_held_back_beside_a_few_models_that_did_not_learn_are_said_so():
    """Audit 98 (F5): 6 failed one-output regressions among 30, whose camps were held back as no gap or beside a
    few models, read "no candidate ... one continuum cut in two, which an uneven spread of the seeds' own noise makes"."""
    fps, table = _regression("flat", n_ok=27, n_odd=3)
    res = analyze(fps, table, OPTS)
    outputs = res.fingerprint("outputs").label_free
    assert outputs["held"] == "few" and outputs["held_camps"]["sizes"] == [27, 3]
    ans = label_free_answer(res)
    assert ans.held_unlearned["outputs"]["failed"] == ["m27", "m28", "m29"] and "outputs" not in ans.few_models
    assert ("; besides, the significant camps of outputs, held back from a deep verdict (one of 3 models or fewer), are "
            "these models too. Without the 3 models") in ans.sentence
    # with no deep verdict beside it, the held camps are the answer's
    res.fingerprint("disagreement:probe_set=in_dist").label_free.update(verdict="no structure", candidate_basins={})
    ans = label_free_answer(res)
    assert ans.sentence.startswith("no candidate deep difference: none of the 2 fingerprints judged finds basins")
    assert ("; but the significant camps of outputs, held back from a deep verdict (one of 3 models or fewer), are models "
            "that did not learn: a camp of 3 models (m27, m28, m29) beside the other 27 (on the in-distribution probes "
            "(disagreement:probe_set=in_dist), by outputs's camps, their outputs barely move with the input") in ans.sentence
    assert "fall into two significant camps" not in ans.sentence


def test_a_coherent_camp_of_small_outputs_that_predicts_other_classes_is_a_candidate():
    """Audit 99 (F1): 6 digits models of another label map trained with label smoothing 0.95 (2.3% apart among themselves,
    their log-probabilities barely moving) read "no candidate; ... models that learned nothing of the input"."""
    r = np.random.default_rng(4)
    y = r.integers(0, CLASSES, PROBES)
    p = np.tile(y, (N_OK + N_ODD, 1))
    p[N_OK:] = (y + 1) % CLASSES  # another label map
    p = np.where(r.random(p.shape) < 0.02, r.integers(0, CLASSES, p.shape), p)
    fps, table = _population(p, modal=True, spread=[6.0] * N_OK + [0.05] * N_ODD)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert len(ans.candidates) == 1 and not ans.lone_leads and ans.rest is None
    assert sorted(ans.candidates[0].sizes) == [N_ODD, N_OK]
    assert "they compute different functions of inputs like the training data's" in ans.sentence


def test_each_suspect_is_confirmed_by_its_own_figures():
    """The models a failed camp holds are left out only when their own in-distribution figures say so (audit 99's F4):
    a model of a second rule (the others' classes), or of a real minority goal (a near fellow), stays; one that
    collapsed to one class with larger logits than the rest (audit 99's BAF), or predicts at random, goes."""
    r = np.random.default_rng(8)
    y = r.integers(0, CLASSES, PROBES)
    p = np.tile(y, (36, 1))
    p[30:32] = (y + 1) % CLASSES  # a real minority goal: two fellows
    p[32] = 0  # collapsed to one class
    p[33:] = r.integers(0, CLASSES, (3, PROBES))  # random
    p = np.where(r.random(p.shape) < 0.03, r.integers(0, CLASSES, p.shape), p)
    p[32] = 0
    ids = [f"m{i:02d}" for i in range(36)]
    spread = np.asarray([6.0] * 36)
    spread[32] = 15.0  # larger logits than the trained ones
    spread[30:32] = 0.1  # the minority's logits small too (label smoothing): fellows, not flat (review 100)
    meta = {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "classes",
            "params": {"probe_set": "in_dist", "n_probes": PROBES}, "modal_share": _modal(p),
            "concentration": _concentration(p), "spread": list(spread)}
    fps = [FingerprintInput("disagreement:probe_set=in_dist", _disagreement(p), ids, meta)]
    suspects = {"m28", "m29", "m30", "m31", "m32", "m33", "m34", "m35"}  # m28, m29: trained, in a mixed camp
    assert unlearned.confirmed(suspects, fps) == {"m32", "m33", "m34", "m35"}
    assert unlearned.confirmed({"m28", "m30", "m31", "m99"}, fps) == set()  # none confirmed (m99: not held): none
    assert unlearned.confirmed(set(ids), fps) is None  # no reference left


def test_a_failed_camp_inside_an_earlier_one_is_said_in_it():
    """An outside audit (100, F4): "a camp of 4 models ... that did not learn; a camp of 2 models (of those 4) that
    did not learn what the other 28 did" read as two more failures; the second is said inside the first."""
    fps, table = _population("failed", n_odd=12)
    ids = fps[0].model_ids
    r = np.random.default_rng(5)
    w = r.standard_normal((len(ids), 12)) * np.exp(-np.arange(12) / 4)
    w[N_OK:N_OK + 5] += 30 * r.standard_normal(12) * np.exp(-np.arange(12) / 4)  # 5 of the 12 failed apart by weight
    fps.append(FingerprintInput("weights", w, ids, {"extractor": "weights", "output": "features", "kind": "mechanistic"}))
    ans = label_free_answer(analyze(fps, table, OPTS))
    leads = [c for c in ans.lone_leads if c.lone_why == "unlearned"]
    assert len(leads) == 2 and not ans.candidates
    assert ans.sentence.count("that did not learn what the other") == 1
    assert "a camp of 12 models (m30, m31, m32, m33, ...) that did not learn what the other 30 did" in ans.sentence
    assert "; 5 of them (m30, m31, m32, m33, ...) a camp of their own on weights; on the in-distribution probes" in ans.sentence


def test_a_small_basin_of_models_that_did_not_learn_is_said_so_and_the_others_analysed_again():
    """Outside audit 116: 2 of 60 models trained at 300 times the learning rate, their outputs constant (one class on
    every probe), were too few for a camp (a twentieth of 60 is 3): a small-basin lead "(a few that learned something
    else ...)", and they swamped 9 of 10 fingerprints' tests into "no structure". A small basin whose in-distribution
    outputs read as failed against the rest is now said to be models that did not learn, and the others are analysed
    again without them; a small basin of trained models (a minority that predicts as the rest) stays a lead."""
    from analysis.results import failed_models, small_basin_leads, small_basin_sentences

    def population(odd: np.ndarray, spread: list[float]) -> tuple[list[FingerprintInput], dict]:
        r = np.random.default_rng(2)
        n = len(odd) + 58
        ids = [f"m{i:02d}" for i in range(n)]
        y = r.integers(0, CLASSES, PROBES)
        p = np.concatenate([_noisy(y, 58, 0.97, r), odd])
        x = r.standard_normal((n, 20)) * np.exp(-np.arange(20) / 5)
        x[58:] += 8 * r.standard_normal(20) * np.exp(-np.arange(20) / 5)
        meta = {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "classes",
                "params": {"probe_set": "in_dist", "n_probes": PROBES}, "modal_share": _modal(p),
                "concentration": _concentration(p), "spread": spread}
        fps = [FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"}),
               FingerprintInput("disagreement:probe_set=in_dist", _disagreement(p), ids, meta)]
        return fps, {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(n) % 15}  # families of 4

    fps, table = population(np.ones((2, PROBES), dtype=int), [10.0] * 58 + [0.0] * 2)  # collapsed to one class
    res = analyze(fps, table, OPTS)
    assert [lead["models"] for lead in small_basin_leads(res)] == [["m58", "m59"]]
    assert res.rest["excluded"] == ["m58", "m59"] and failed_models(res, fps) == ["m58", "m59"]
    (said,) = small_basin_sentences(res)
    assert "(m58, m59) of 2 init families, each beside relatives in the larger basin: models that did not learn" in said
    assert "Without the 2 models that did not learn (m58, m59), analysed again" in label_free_answer(res).sentence
    r = np.random.default_rng(5)
    trained = _noisy(r.integers(0, CLASSES, PROBES), 2, 0.97, r)  # (other labels: a rule of their own, alike)
    fps, table = population(trained, [10.0] * 60)
    res = analyze(fps, table, OPTS)
    assert [lead["models"] for lead in small_basin_leads(res)] == [["m58", "m59"]]  # a rule of their own, alike:
    assert res.rest is None and "an exploratory lead" in small_basin_sentences(res)[0]  # a lead, as before
