"""The models beside those that did not learn, analysed again without them (``AnalysisResult.rest``), and
``--exclude``: a second rule among the trained models that a failed camp took the two-camp split from is found
among the others (review 95's H2); ids left out by name, refused by name when unknown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score
from torch import nn

from analysis.answer import label_free_answer
from analysis.errors import AnalysisError
from analysis.results import AnalysisResult, summary
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze
from fingerprint import Zoo, pipeline
from tests.analysis.test_unlearned import two_rules_and_failed
from tests.conftest import run_cli

PROBES, CLASSES = 200, 3
OPTS = AnalysisOptions(n_perm=99, n_boot=2, label="", embedding="pca")


def test_the_trained_models_beside_a_failed_camp_are_analysed_again_and_their_second_rule_found():
    fps, table, grp, ids = two_rules_and_failed()
    res = analyze(fps, table, OPTS)
    failed = [m for m, g in zip(ids, grp) if g == 2]
    assert res.rest["excluded"] == failed  # not the outputs' camp of rule B and the failed ones together
    sub = res.rest["result"]
    assert sub.n_models == 30 and all(set(r.model_ids).isdisjoint(failed) for r in sub.fingerprints if r.model_ids)
    assert sub.settings["exclude"] == failed and sub.rest is None  # one level: the others' own failures are said, not redone
    ans = label_free_answer(res)
    assert not ans.candidates and ans.rest["others"] == 30
    (cand,) = ans.rest["answer"].candidates
    kept = [m for m in ids if m not in failed]
    truth = {m: int(g) for m, g in zip(ids, grp)}
    assert adjusted_mutual_info_score([truth[m] for m in kept], [cand.basins[m] for m in kept]) == 1.0
    assert "the others are analysed again without them, after this answer" in ans.sentence
    assert ("Without the 15 models that did not learn (m06, m07, m08, m15, ...), analysed again (their ids: summary.json's "
            "label_free_answer.rest.excluded; report --exclude with them for the others' own figures), the other 30: one candidate "
            "deep difference, found by 1 of 2 fingerprints (outputs)") in ans.sentence
    # stored and read back: the same answer; summary.json names every model left out
    again = AnalysisResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert label_free_answer(again).sentence == ans.sentence
    assert summary(res)["label_free_answer"]["rest"]["excluded"] == failed


def test_the_hint_to_report_the_others_names_the_users_own_exclude_too():
    """Review 100's L2: after ``--exclude m00`` the hint said to exclude the failed models alone, which would put m00
    back."""
    fps, table, grp, ids = two_rules_and_failed()
    ans = label_free_answer(analyze(fps, table, OPTS.replace(exclude=[ids[0]])))
    assert ans.rest["by_user"] == [ids[0]] and ids[0] not in ans.rest["excluded"]
    assert (f"report --exclude with them and the one you left out ({ids[0]}) for the others' own figures), the other 29: "
            in ans.sentence)


def test_no_failed_camp_no_second_analysis():
    fps, table, grp, ids = two_rules_and_failed()
    trained = [m for m, g in zip(ids, grp) if g != 2]
    keep = {"model_id": table["model_id"][grp != 2], "init_seed": table["init_seed"][grp != 2]}
    res = analyze([f.without(set(ids) - set(trained)) for f in fps], keep, OPTS)
    assert res.rest is None and "rest" not in res.to_dict() and label_free_answer(res).rest is None


def test_exclude_analyses_the_other_models_and_refuses_unknown_ids_by_name():
    fps, table, grp, ids = two_rules_and_failed()
    failed = [m for m, g in zip(ids, grp) if g == 2]
    res = analyze(fps, table, OPTS.replace(exclude=failed))
    assert res.n_models == 30 and res.rest is None
    d = next(r for r in res.fingerprints if r.fingerprint.startswith("disagreement"))
    assert sorted(d.model_ids) == sorted(set(ids) - set(failed))
    ans = label_free_answer(res)
    assert len(ans.candidates) == 1 and ans.sentence.startswith("one candidate deep difference")
    with pytest.raises(AnalysisError, match=r"^unknown model id 'm99' for --exclude \(valid: m00, m01, m02, m03, m04, "
                                            r"\.\.\. \(45 models; fingerprint inspect lists them\)\)$"):
        analyze(fps, table, OPTS.replace(exclude=["m00", "m99"]))
    with pytest.raises(AnalysisError, match=r"^--exclude leaves 5 of 45 models; the analysis needs at least 8$"):
        analyze(fps, table, OPTS.replace(exclude=ids[5:]))


def test_a_fingerprint_without_its_models_keeps_its_rows_columns_and_per_model_metadata_in_step():
    fps, _, _, ids = two_rules_and_failed()
    f = fps[1].without({"m00", "m44"})
    assert f.model_ids == ids[1:44] and f.values.shape == (43, 43)
    assert np.array_equal(f.values, fps[1].values[1:44, 1:44]) and f.meta["spread"] == fps[1].meta["spread"][1:44]
    assert fps[0].without({"m00"}).values.shape == (44, 20) and fps[0].without(set()) is fps[0]


def test_report_exclude_from_a_file_and_unknown_ids(tmp_path):
    mods = []
    for i in range(12):
        torch.manual_seed(i)
        mods.append(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)))
    g = torch.Generator().manual_seed(0)
    zoo = Zoo.from_modules(mods, tmp_path / "zoo", probes={"in_dist": torch.randn(16, 6, generator=g)},
                           metadata={"init_seed": list(range(12))}, model_ids=[f"m{i:02d}" for i in range(12)])
    pipeline.compute(zoo, ["weight-stats"])
    (tmp_path / "out.txt").write_text("# failed runs\nm03\n\nm07  # diverged\n")
    args = ("--embedding", "pca", "--n-boot", "2", "--n-perm", "39")
    res = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "a.html", "--json", tmp_path / "a.json",
                  "--exclude", "@" + str(tmp_path / "out.txt"), "--exclude", "m05,m03", *args)
    assert res.returncode == 0, res.stderr
    s = json.loads((tmp_path / "a.json").read_text())
    assert s["settings"]["exclude"] == ["m03", "m07", "m05"] and s["n_models"] == 9
    assert not {"m03", "m05", "m07"} & set(s["fingerprints"][0]["assignments"])
    assert "scorecard: 9 models (3 left out by --exclude)" in res.stdout
    assert "9 models (3 left out by --exclude: m03, m07, m05)" in (tmp_path / "a.html").read_text()
    bad = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "b.html", "--exclude", "m3", *args)
    assert bad.returncode == 2 and not (tmp_path / "b.html").exists()
    assert bad.stderr.strip() == ("error: unknown model id 'm3' for --exclude (valid: m00, m01, m02, m03, m04, ... "
                                  "(12 models; fingerprint inspect lists them))")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    empty = run_cli("cluster", tmp_path / "zoo", "--exclude", "@" + str(tmp_path / "empty.txt"), *args)
    assert empty.returncode == 2 and "names no model id (an empty entry or file)" in empty.stderr
    gone = run_cli("cluster", tmp_path / "zoo", "--exclude", "@" + str(tmp_path / "none.txt"), *args)
    assert gone.returncode == 2 and gone.stderr.startswith("error: --exclude @") and "cannot read" in gone.stderr


def test_failures_of_two_kinds_beside_a_real_minority_are_all_left_out_and_the_minority_kept():
    """Audit 99 (F4): 18 regressions of one target, 6 of another (a real minority), 3 never started (small outputs of
    their own) and 3 dead (constant outputs): each lead's failed camp held one kind, and a vote left 3 failed models
    in, read with the minority as one basin of 9."""
    r = np.random.default_rng(7)
    a, b = r.standard_normal((100, 4)), r.standard_normal((100, 4))
    out = np.concatenate([a + 0.05 * r.standard_normal((18, 100, 4)), b + 0.05 * r.standard_normal((6, 100, 4)),
                          0.06 * r.standard_normal((3, 100, 4)), np.broadcast_to(r.standard_normal((3, 1, 4)), (3, 100, 4))])
    n = len(out)
    ids = [f"m{i:02d}" for i in range(n)]
    d = np.sqrt(((out[:, None] - out[None]) ** 2).sum(-1).mean(-1))  # as the disagreement extractor reads them
    kind = np.repeat([0, 1, 2, 3], [18, 6, 3, 3])
    x = (r.standard_normal((n, 20)) + 8 * r.standard_normal((4, 20))[kind]) * np.exp(-np.arange(20) / 5)
    fps = [FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"}),
           FingerprintInput("disagreement:probe_set=in_dist", d, ids,
                            {"extractor": "disagreement", "output": "distances", "kind": "behavioural", "predicts": "values",
                             "params": {"probe_set": "in_dist", "n_probes": 100},
                             "spread": list(np.sqrt(out.var(1, ddof=1).sum(-1)))})]
    res = analyze(fps, {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(n)}, OPTS)
    assert res.rest["excluded"] == ids[24:]
    ans = label_free_answer(res)
    (cand,) = ans.rest["answer"].candidates
    assert sorted(cand.sizes) == [6, 18] and {cand.basins[m] for m in ids[18:24]} != {cand.basins[m] for m in ids[:18]}
    # the main candidate (18 and 12) holds them: said, with what found them (audit 99's F5)
    assert ("Without the 6 models that did not learn (m24, m25, m26, m27, ...; the candidate above holds them in its camps; "
            "6 of them found by the fingerprints' own clusters, each read against the largest on the in-distribution "
            "probes (outputs that barely move with the input))") in ans.sentence
