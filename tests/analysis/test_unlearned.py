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


def _predictions(odd: str, seed: int = 0) -> np.ndarray:
    """Predicted classes ``[36, 200]`` on in-distribution probes: 30 trained models (the task's labels, 5% of
    them flipped each), then 6 ``failed`` (each its own random classes), ``rule`` (trained too: two rules agree
    in distribution) or ``constant`` (one class always)."""
    r = np.random.default_rng(seed)
    y = r.integers(0, CLASSES, PROBES)
    def trained(k: int) -> np.ndarray:
        p = np.tile(y, (k, 1))
        flip = r.random(p.shape) < 0.05
        return np.where(flip, r.integers(0, CLASSES, p.shape), p)
    odd_p = {"failed": r.integers(0, CLASSES, (N_ODD, PROBES)), "rule": trained(N_ODD),
             "constant": np.zeros((N_ODD, PROBES), dtype=int)}[odd]
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


def _population(odd: str, modal: bool = False) -> tuple[list[FingerprintInput], dict]:
    """36 independent models: a behavioural fingerprint on which the 6 odd models sit far from the rest, and the
    in-distribution predictions' disagreement."""
    r = np.random.default_rng(1)
    n = N_OK + N_ODD
    ids = [f"m{i:02d}" for i in range(n)]
    x = r.standard_normal((n, 20)) * np.exp(-np.arange(20) / 5)
    x[N_OK:] += 8 * r.standard_normal(20) * np.exp(-np.arange(20) / 5)
    p = _predictions(odd, 1)
    meta = {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "classes",
            "params": {"probe_set": "in_dist", "n_probes": PROBES}, **({"modal_share": _modal(p)} if modal else {})}
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


def test_a_camp_that_predicts_one_class_for_every_input_did_not_learn():
    """With each model's most frequent class's share recorded (the disagreement extractor's ``modal_share``), a camp
    that collapsed to one class is models that did not learn, said so, and no candidate."""
    fps, table = _population("constant", modal=True)
    ans = label_free_answer(analyze(fps, table, OPTS))
    assert not ans.candidates
    (lead,) = ans.lone_leads
    assert lead.unlearned["why"] == "one class" and lead.unlearned["modal"][lead.unlearned["camp"]] == 1.0
    assert ("(disagreement:probe_set=in_dist) they predict one class for nearly every probe (its share 100%, against "
            in ans.sentence)
    assert "a training that collapsed (a learning rate too high, a run that diverged)" in ans.sentence
    fps, table = _population("rule", modal=True)  # a second rule: its classes as mixed as the first's
    assert label_free_answer(analyze(fps, table, OPTS)).candidates


def test_the_disagreement_extractor_records_each_models_most_frequent_class_share(tmp_path):
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
