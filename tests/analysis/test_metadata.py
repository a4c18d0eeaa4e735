"""Candidate basins against the model table's other columns (analysis/metadata.py): a column that
decides the camps is named in summary.json and the report, an unrelated one is not, and the
statistics are scikit-learn's with intervals over whole families."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score, roc_auc_score

from analysis import metadata as md
from analysis.report import render
from analysis.results import summary
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze
from analysis.synthetic import synthetic_population as population
from fingerprint.cli.display import _with_ci


def _table(ids, fam, camp, seed, decided: bool):
    """The model table of a population whose camps are ``camp``: ``epochs`` (10 or 40) decides them
    when ``decided``, else it is drawn at random like the other columns (unrelated)."""
    r = np.random.default_rng(seed)
    n = len(ids)
    epochs = np.where(camp == 1, 40, 10) if decided else r.choice([10, 40], n)
    return {"model_id": np.asarray(ids, dtype=object), "init_seed": fam,
            "epochs": epochs,
            "lr": r.uniform(1e-4, 1e-2, n),  # numeric, every value distinct: AUROC only
            "optimizer": np.asarray(r.choice(["adam", "sgd", "lion"], n), dtype=object),  # categorical: AMI only
            "checkpoint": np.asarray([f"/ckpt/{m}.pt" for m in ids], dtype=object),  # a name per model: not compared
            "family_name": np.asarray([f"fam{f}" for f in fam], dtype=object)}  # another name for the lineage: not compared


def _camps(seed: int = 0, n_fam: int = 8, m: int = 4, d: int = 6, delta: float = 4.0):
    """``n_fam`` init families of ``m`` models in ``d`` dimensions, half of each family's members
    shifted by ``delta`` along the first (two camps across every family, as training 10 epochs
    instead of 40 did in the audit's population)."""
    r = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_fam), m)
    camp = np.concatenate([r.permutation(np.arange(m) % 2) for _ in range(n_fam)])
    x = r.standard_normal((n_fam, d))[fam] + 0.5 * r.standard_normal((n_fam * m, d))
    x[:, 0] += delta * camp
    return x, fam, camp


@pytest.fixture(scope="module", params=[True, False], ids=["epochs-decides", "epochs-unrelated"])
def analysed(request):
    """8 families of 4 models whose members split into two camps inside every family, analysed
    without a label; ``epochs`` decides the camps, or is unrelated to them."""
    x, fam, camp = _camps()
    ids = [f"m{i}" for i in range(len(x))]
    opts = AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca")
    fp = FingerprintInput("camps", x, ids, {"extractor": "camps", "output": "features"})
    return request.param, camp, analyze([fp], _table(ids, fam, camp, 7, request.param), opts)


def test_candidate_basins_are_compared_with_the_other_columns(analysed):
    decided, camp, res = analysed
    r = res.fingerprints[0]
    assert r.label_free["verdict"] == "crosses lineage"
    cand = np.asarray([r.label_free["candidate_basins"][m] for m in r.model_ids])
    assert adjusted_mutual_info_score(camp, cand) > 0.8  # the planted camps were found
    entries = {(e["column"], e["statistic"]): e for e in r.metadata_match}
    # ids, names and the lineage under another name are left out; a few-valued number gets both statistics
    assert set(entries) == {("epochs", "AMI"), ("epochs", "AUROC"), ("lr", "AUROC"), ("optimizer", "AMI")}
    for e in entries.values():  # an AMI far below its level (half) gets no interval: no match either way
        assert e["n_models"] == 32 and (e["ci"] is not None or e["statistic"] == "AMI" and e["value"] < 0.15)
        assert e["ci"] is None or e["ci"][0] <= e["value"] + 1e-12
    assert not entries["lr", "AUROC"]["match"] and not entries["optimizer", "AMI"]["match"]
    assert entries["epochs", "AMI"]["match"] is decided and entries["epochs", "AUROC"]["match"] is decided
    if decided:
        assert entries["epochs", "AMI"]["ci"][0] >= 0.3 and entries["epochs", "AUROC"]["ci"][0] >= 0.85
        assert r.metadata_match[0]["column"] == "epochs"  # matches first
    s = summary(res)["fingerprints"][0]["metadata_match"]
    assert s == r.metadata_match
    html = render(res)
    assert "Candidate basins and your metadata" in html
    if decided:
        assert "the candidate basins match column <code>epochs</code>: check whether that is the difference you mean" in html
        assert html.count("<b>match</b>") == 2
    else:
        assert "no other model column matches the candidate basins" in html and "<b>match</b>" not in html


def test_a_fingerprint_without_candidate_basins_is_not_compared():
    """A null population (``lineage only``): nothing to compare, ``metadata_match`` stays None and
    the report shows no such section."""
    x, fam, _ = population("null", 1, n_fam=8, m=4)
    ids = [f"m{i}" for i in range(len(x))]
    opts = AnalysisOptions(n_perm=99, n_boot=4, label="", embedding="pca")
    fp = FingerprintInput("null", x, ids, {"extractor": "null", "output": "features"})
    res = analyze([fp], _table(ids, fam, np.zeros(len(x), int), 0, False), opts)
    r = res.fingerprints[0]
    assert r.label_free["verdict"] not in ("crosses lineage", "groups lineages")
    assert r.metadata_match is None and summary(res)["fingerprints"][0]["metadata_match"] is None
    assert "Candidate basins and your metadata" not in render(res)


def test_statistics_are_scikit_learns_and_the_auroc_is_oriented():
    r = np.random.default_rng(0)
    fam = np.repeat(np.arange(6), 4)
    basins = r.integers(0, 2, 24)
    basins[:2] = [0, 1]
    size = np.where(basins == 0, 3.0, 1.0) + r.normal(0, 0.1, 24)  # higher in basin 0
    cat = np.asarray(r.choice(["a", "b", "c"], 24), dtype=object)
    out = md.compare(basins, {"size": size, "cat": cat}, fam)
    by = {(e["column"], e["statistic"]): e for e in out}
    assert by["cat", "AMI"]["value"] == pytest.approx(adjusted_mutual_info_score(basins, cat), abs=1e-12)
    auc = by["size", "AUROC"]
    assert auc["value"] == pytest.approx(1 - roc_auc_score(basins, size), abs=1e-12) and auc["value"] == 1.0
    assert auc["higher_in"] == 0 and auc["match"] and auc["ci"] == [1.0, 1.0]
    # a number per model, but two levels 2 apart, each 0.5 wide: an outcome of each basin, not a graded knob
    assert not auc["graded"] and auc["distinct"] == 24
    two = md.compare(basins, {"epochs": np.where(basins == 0, 40, 10)}, fam)
    assert [(e["statistic"], e.get("graded")) for e in two] == [("AMI", None), ("AUROC", False)]
    # a knob drawn per model (log-uniform weight decay) and the camps at a threshold of it: graded (the sixth audit)
    knob = np.sort(r.uniform(-5, -2, 24))
    cut = (np.arange(24) >= 12).astype(int)
    graded = [e for e in md.compare(cut, {"log_wd": knob}, fam) if e["statistic"] == "AUROC"][0]
    assert graded["graded"] and graded["value"] == 1.0
    # the ninth audit: the share of triggered inputs sent to class 0, 0.0 for every clean model and 0.96-0.99
    # for every backdoored one, is two levels, not "perhaps a continuum cut in two"
    trig = np.where(cut == 1, r.uniform(0.96, 0.99, 24), 0.0)
    assert not [e for e in md.compare(cut, {"trig_to0": trig}, fam) if e["statistic"] == "AUROC"][0]["graded"]


def test_a_seed_column_is_compared_as_names_not_as_a_graded_number():
    """Audit 56 (L3): camps of whole families, {0, 1, 2} against {3, 4, 5}, and ``data_seed = 100 x
    family + member``: its numbers order the families, so an AUROC read it as "a graded column (24
    values) cut in two". A seed's numbers are names: a seed unique to each model is not compared at
    all, a seed shared across families (a data order) only by the AMI, as any category."""
    fam = np.repeat(np.arange(6), 4)
    camps = (fam >= 3).astype(int)
    member = np.tile(np.arange(4), 6)
    assert md.compare(camps, {"data_seed": 100 * fam + member}, fam) == []
    out = md.compare(camps, {"Data_Seed": member, "size": 100 * fam + member}, fam)
    assert {(e["column"], e["statistic"]) for e in out} == {("Data_Seed", "AMI"), ("size", "AUROC")}
    assert md.is_seed("init_seed") and md.is_seed("seed") and not md.is_seed("seeds_used")


def test_missing_values_constant_columns_and_few_families():
    fam = np.repeat(np.arange(3), 4)  # 3 families: no interval (fewer than 4), a match on the value itself
    basins = np.tile([0, 0, 1, 1], 3)
    steps = np.where(basins == 1, 400, 100).astype(object)
    steps[0] = ""  # a model the metadata CSV has no row for
    out = md.compare(basins, {"steps": steps, "same": np.ones(12), "none": np.asarray([""] * 12, dtype=object)}, fam)
    assert {e["column"] for e in out} == {"steps"}
    for e in out:
        assert e["n_models"] == 11 and e["ci"] is None and e["match"]
    assert _with_ci("AMI", 1.0, None) == "AMI 1.00 (no interval: the value itself)"
    none = md.compare(np.full(12, -1), {"steps": steps}, fam)  # no candidate basin at all
    assert none == []


def test_every_model_its_own_family_still_compares_a_shared_column():
    """Without relatives (each model its own family) a column shared by many models is not another
    name for the lineage: the planted ``nudge`` is compared and matches."""
    basins = np.tile([0, 1], 10)
    nudge = np.asarray(np.where(basins == 1, "B", "A"), dtype=object)
    (e,) = md.compare(basins, {"nudge": nudge}, np.arange(20))
    assert e["column"] == "nudge" and e["value"] == pytest.approx(1.0) and e["match"]


def test_stored_results_round_trip_the_comparison(analysed):
    from analysis.results import AnalysisResult, FingerprintResult

    _, _, res = analysed
    back = AnalysisResult.from_dict(res.to_dict())
    assert back.fingerprints[0].metadata_match == res.fingerprints[0].metadata_match
    none = dataclasses.replace(res.fingerprints[0], metadata_match=None)
    assert none.to_dict()["metadata_match"] is None  # without candidate basins: null, the key pinned
    assert FingerprintResult.from_dict({k: v for k, v in none.to_dict().items() if k != "metadata_match"}).metadata_match is None


def test_the_terminal_names_each_matched_column_once(analysed, monkeypatch):
    import io

    from rich.console import Console

    import fingerprint.cli.display as display

    decided, _, res = analysed
    out = Console(width=100, record=True, file=io.StringIO())
    monkeypatch.setattr(display, "console", out)
    display.print_scorecard(res)
    text = out.export_text()
    lines = [ln for ln in text.splitlines() if "candidate basins match column" in ln]
    if decided:
        (line,) = lines  # one line per column, both statistics in it
        assert line.startswith("candidate basins match column 'epochs': camps (AMI 1.00 [1.00, 1.00]; AUROC 1.00 [1.00, 1.00])")
        assert "--strata epochs" in " ".join(text.split())  # 10 / 40 epochs recur in every family: crossed as a design factor
        assert "check whether that is the difference you mean" in text
    else:
        assert lines == [] and "check whether that is the difference you mean" not in text


def test_the_null_script_counts_matches_of_unrelated_and_deciding_columns(capsys):
    """scripts/metadata_match_nulls.py (the rates docs/scorecard.md quotes): a deciding column always
    matches, unrelated ones at 12 families never in these draws."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "metadata_match_nulls.py"
    spec = importlib.util.spec_from_file_location("metadata_match_nulls", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--reps", "10", "--families", "12", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 * len(mod.KINDS)
    for r in rows:
        assert r["matches"] == (10 if r["column"] == "decides" else 0), r


def _orders(family_sd: float, side, n_cols: int, shift: float, column: str):
    """8 init families x data orders 0-3 shared by every family: a fingerprint of 6 features whose first
    ``n_cols`` move by ``shift`` where ``side(order)`` (``[m]``, or ``[m, n_cols]``); ``(FingerprintInput, table, options)``."""
    r = np.random.default_rng(3)
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    x = family_sd * r.standard_normal((8, 6))[fam] + 0.3 * r.standard_normal((32, 6))
    x[:, :n_cols] += shift * np.asarray(side(order), float).reshape(len(order), -1)  # one column, or n_cols
    ids = [f"m{i}" for i in range(32)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, column: order}
    fp = FingerprintInput("orders", x, ids, {"extractor": "orders", "output": "features"})
    return fp, table, AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca")


def test_a_shared_data_order_under_another_name_is_named_and_taken_out_with_strata():
    """The sixth audit: 60 families x 4 whose data orders 0-3 recur in every family, stored as
    ``order`` (not ``data_seed``): 5 of 9 fingerprints read ``crosses lineage`` on a null. The match
    says the column is crossed with the families and how to take it out; ``strata=["order"]`` (the
    CLI's ``--strata order``) does, as a ``data_seed`` column would."""
    fp, table, opts = _orders(1.0, lambda order: order % 2, 1, 3.0, "order")  # a shared data order, every family alike
    res = analyze([fp], table, opts)
    plain = res.fingerprints[0]
    assert plain.label_free["verdict"] == "crosses lineage"
    from fingerprint.cli.display import metadata_lines

    assert metadata_lines(res)[0].endswith("; if 'order' records a rule or a goal, it is the difference itself; if a "
                                           "training setting (a hyper-parameter sweep) or a design factor the init "
                                           "families share (a data order, a batch), report with --strata order to ask "
                                           "whether anything beyond it differs (the tests then take it out as they do "
                                           "lineage)")
    hit = next(e for e in plain.metadata_match if e["column"] == "order" and e["statistic"] == "AMI")
    assert hit["match"] and hit["crossed"]
    stratified = analyze([fp], table, opts.replace(strata=["order"]))
    taken = stratified.fingerprints[0]
    assert taken.label_free["verdict"] not in ("crosses lineage", "groups lineages")
    # the terminal says the tests were stratified (the tenth outside audit: nothing said so)
    assert metadata_lines(stratified)[0].startswith("label-free tests stratified by 'order' (--strata): models that "
                                                    "share a value are relatives")
    renamed = analyze([fp], {**table, "data_seed": table["order"]}, opts).fingerprints[0]  # the name it is known by
    assert renamed.label_free["verdict"] == taken.label_free["verdict"]
    with pytest.raises(ValueError, match="unknown model column 'nope' for --strata"):
        analyze([fp], table, opts.replace(strata=["nope"]))
    with pytest.raises(ValueError, match="strata"):
        opts.replace(strata="order")


def test_a_column_varied_by_degrees_within_the_families_is_found_and_a_random_one_is_not():
    """An outside audit of the nineteenth session: a cue relied on by degrees, drawn per model (`frac`),
    formed no basins and read "initialization noise"; the fingerprint's first axis followed it."""
    from analysis.metadata import _within_permutation, gradients

    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(8), 4)
    perm = _within_permutation(fam, rng)
    assert (fam[perm] == fam).all() and sorted(perm.tolist()) == list(range(32))
    frac = rng.uniform(size=32)
    coords = np.c_[3 * frac + 2 * rng.normal(size=8)[fam] + 0.2 * rng.normal(size=32), rng.normal(size=(32, 4))]
    cols = {"frac": frac, "other": rng.normal(size=32), "data_seed": np.arange(32), "lr": np.full(32, 0.01),
            "by_family": fam * 1.0, "name": np.array(["a"] * 32, dtype=object)}
    out = gradients(coords, cols, fam.astype(str))
    # seeds, constants and names left out; a column constant within every family is tested between families
    assert [e["column"] for e in out if e["level"] == "models"] == ["frac", "other"]
    assert [e["column"] for e in out if e["level"] == "families"] == ["by_family"]
    assert out[0]["r2_adj"] > 0.9 and out[0]["p"] == 0.005 and out[0]["n_models"] == 32 and out[0]["n_families"] == 8
    assert out[1]["p"] > 0.05 and out[1]["r2_adj"] < 0.5
    # a family of one model and an unknown family are left out; too few models for an axis: nothing
    fam2 = fam.astype(str).astype(object)
    fam2[0:3], fam2[4] = "", "nan"
    assert gradients(coords, {"frac": frac}, fam2)[0]["n_models"] == 27  # family 0 down to one model, and one unknown
    assert gradients(coords[:4], {"frac": frac[:4]}, np.array(["0", "0", "1", "1"])) == []
    # every model its own family (independent seeds): the column is tested across the models (audit 91: a per-model
    # training length, the camps its short runs against its long ones, was never named)
    steps = rng.uniform(200, 2000, size=24)
    alone = np.c_[steps / 500 + 0.3 * rng.normal(size=24), rng.normal(size=(24, 4))]
    hit, = gradients(alone, {"steps": steps}, np.arange(24).astype(str))
    assert hit["level"] == "families" and hit["n_families"] == 24 and hit["p"] <= 0.01 and hit["r2_adj"] > 0.8
    assert gradients(alone, {"noise": rng.normal(size=24)}, np.arange(24).astype(str))[0]["p"] > 0.05


def test_analyze_names_a_column_varied_by_degrees_in_an_imported_zoo_and_skips_a_sweeps_own_columns():
    """End to end: a knob drawn per model that moves the fingerprint within every family forms no basins;
    the answer names it beside "no candidate". A sweep's own zoo (kind base) is not tested: its other
    columns are outcomes (losses, accuracies) that follow any fingerprint's seed noise."""
    r = np.random.default_rng(5)
    fam = np.repeat(np.arange(8), 4)
    knob = r.uniform(0, 1, 32)
    x = r.standard_normal((8, 6))[fam] + 0.3 * r.standard_normal((32, 6))
    x[:, 0] += 2.0 * knob  # graded: no two camps
    ids = [f"m{i}" for i in range(32)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "kind": np.asarray(["imported"] * 32, dtype=object),
             "knob": knob, "unrelated": r.uniform(size=32)}
    opts = AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca")
    fp = FingerprintInput("graded", x, ids, {"extractor": "graded", "output": "features"})
    res = analyze([fp], table, opts)
    g = res.fingerprints[0].metadata_gradient
    assert g[0]["column"] == "knob" and g[0]["p"] <= 0.01 and g[0]["r2_adj"] > 0.5
    assert summary(res)["fingerprints"][0]["metadata_gradient"][0]["column"] == "knob"
    ans = summary(res)["label_free_answer"]
    assert not ans["candidates"] and list(ans["gradients"]) == ["knob"]
    assert "; within their init families the fingerprints follow column 'knob' (graded;" in ans["sentence"]
    sweep = analyze([fp], {**table, "kind": np.asarray(["base"] * 32, dtype=object)}, opts)
    assert sweep.fingerprints[0].metadata_gradient is None and "metadata_gradient" not in summary(sweep)["fingerprints"][0]


def test_a_column_set_family_by_family_is_tested_against_the_family_centroids():
    """An outside audit of the nineteenth session: a shortcut's share set per family was never tested (constant
    within every family), and every verdict said the fingerprints track what the init seed decides."""
    from analysis.metadata import MIN_GRADIENT_FAMILIES, gradients

    r = np.random.default_rng(3)
    fam = np.repeat(np.arange(12), 3)
    frac = r.uniform(size=12)
    coords = 0.3 * r.standard_normal((12, 6))[fam] + 0.2 * r.standard_normal((36, 6))
    coords[:, 0] += 3 * frac[fam]
    out = gradients(coords, {"frac": frac[fam], "other": r.uniform(size=12)[fam]}, fam.astype(str))
    by = {e["column"]: e for e in out}
    assert by["frac"]["level"] == "families" and by["frac"]["p"] <= 0.01 and by["frac"]["r2_adj"] > 0.6
    assert by["frac"]["n_families"] == 12 and by["other"]["p"] > 0.05
    few = fam < MIN_GRADIENT_FAMILIES - 1  # too few families: not tested
    assert gradients(coords[few], {"frac": frac[fam][few]}, fam[few].astype(str)) == []


def test_clusters_that_follow_a_design_column_are_tested_within_the_families():
    """``strata_follow``: the clusters' AMI with a design column and its p under permutations of the column
    inside each family: found for one rule per data order, uniform for clusters that ignore the orders."""
    from analysis.metadata import strata_follow

    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    hit = strata_follow((order >= 2).astype(int), order, fam)
    assert hit["p"] == pytest.approx(1 / 200) and hit["ami"] == pytest.approx(0.649, abs=1e-3)
    rng = np.random.default_rng(0)
    ps = np.asarray([strata_follow(rng.integers(0, 2, 32), order, fam, seed=s)["p"] for s in range(300)])
    assert 0.02 <= np.mean(ps <= 0.05) <= 0.09 and 0.4 <= np.median(ps) <= 0.7  # ties: a little conservative
    assert strata_follow(np.zeros(32, int), order, fam) is None  # one cluster
    assert strata_follow(order % 2, fam, fam) is None  # constant within every family: nothing to permute


def test_basins_a_recorded_data_order_decides_are_said_and_strata_none_tests_them(monkeypatch):
    """An outside audit of the twenty-first session: one strategy per data order (orders 0-1 against 2-3),
    recorded as ``data_seed`` as the docs ask, read "no candidate" and nothing named the column, though the
    clusters were the strategies. The answer now names it, and ``--strata none`` tests it as a candidate."""
    from analysis.answer import label_free_answer

    fp, table, opts = _orders(0.3, lambda order: order >= 2, 3, 5.0, "data_seed")  # orders 0-1 against 2-3
    res = analyze([fp], table, opts)
    taken = res.fingerprints[0]
    assert taken.label_free["verdict"] not in ("crosses lineage", "groups lineages")
    assert taken.strata_follow == [{"column": "data_seed", "ami": pytest.approx(0.649, abs=1e-3), "p": 0.005, "exact": False}]
    ans = label_free_answer(res)
    # the clusters set orders 0-1 apart from 2-3, and each side's two orders are close: the column seems to decide
    # a difference (one strategy per pair of orders), more than four orders' own seed noise gives (strata_sides.py)
    sides = {"sides": [["0", "1"], ["2", "3"]], "sizes": [16, 16], "contrast": pytest.approx(15.2, abs=0.05),
             "contrasts": [pytest.approx(15.2, abs=0.05)] * 2, "n_with_sides": 1,
             "chance": pytest.approx(0.0091, abs=0.0005), "fingerprints": ["orders"], "decides": True, "generation": False}
    assert ans.candidates == [] and ans.strata_followed == {"data_seed": {"fingerprints": ["orders"],
                                                                          "ami": [pytest.approx(0.649, abs=1e-3)] * 2,
                                                                          "q": 0.005, "sides": sides, "exact": []}}
    assert ans.sentence.startswith("no candidate deep difference with column 'data_seed' taken out as lineage, though it "
                                   "seems to decide one (below): none of the 1 fingerprints")
    assert ("; but the basins of orders follow column 'data_seed' (AMI 0.65, q 0.005 permuting it within the init "
            "families): its values '0', '1' (16 models) apart from '2', '3' (16), 15 times as far apart as the values "
            "on each side are from one another (Gaussian seed noise among 4 values, along one direction, gives as much "
            "in 0.91% of draws; heavy-tailed noise, more often): a difference the column decides, it seems") in ans.sentence \
        and "report with --strata none to test it as a candidate" in ans.sentence
    assert res.to_dict()["fingerprints"][0]["strata_follow"][0]["column"] == "data_seed"
    # the scorecard's row says it beside the verdict, in the terminal and the report (outside audit 113: clusters that
    # were the data orders exactly, stability 1.00, read "none" alone in the row)
    import io

    from rich.console import Console

    import fingerprint.cli.display as display
    from analysis.report import headline, page

    # the clusters group the orders into two sides (AMI 0.65): they follow the column in part, "~", where clusters
    # that are the orders themselves read "=" (outside audit 114 F6: both read "=")
    assert headline(res).follows == {"orders": "data_seed"} and headline(res).follows_in_part == ["orders"]
    out = Console(width=120, record=True, file=io.StringIO())
    monkeypatch.setattr(display, "console", out)
    display.print_scorecard(res)
    text = " ".join(out.export_text().split())
    assert "(basins ~ data_seed)" in text and "= COLUMN: the clusters are the values of a design column" in text
    assert "~ COLUMN: they follow it in part, values grouped or split" in text
    assert "orders (basins ~ data_seed)" in display.headline_sentence(headline(res))
    narrow = Console(width=80, record=True, file=io.StringIO())
    monkeypatch.setattr(display, "console", narrow)
    display.print_scorecard(res)
    assert "~ data_seed" in narrow.export_text() and "~ data_se\n" not in narrow.export_text()  # on a line of its own
    html = page(res, formats=()).html
    assert "(basins: <code>data_seed</code>, in part)" in html
    assert "(its basins follow column <code>data_seed</code> in part, taken out as lineage)" in html
    exact_fp, exact_table, _ = _orders(0.3, lambda order: np.eye(4)[order], 4, 10.0, "data_seed")  # each order its own
    exact = analyze([exact_fp], exact_table, opts)
    h = headline(exact)
    assert h.follows == {"orders": "data_seed"} and h.follows_in_part == []
    assert label_free_answer(exact).strata_followed["data_seed"]["exact"] == ["orders"]
    assert "orders (basins = data_seed)" in display.headline_sentence(h)
    assert "(basins: <code>data_seed</code>)" in page(exact, formats=()).html
    none = analyze([fp], table, opts.replace(strata=["none"]))
    assert none.settings["strata_columns"] == [] and none.fingerprints[0].label_free["verdict"] == "crosses lineage"
    from fingerprint.cli.display import metadata_lines

    lines = metadata_lines(none)  # the terminal says what --strata none did, not "stratified by 'none'"
    assert lines[0].startswith("label-free tests stratified by no design column (--strata none)")
    assert not any("'none'" in line for line in lines)
    assert label_free_answer(none).strata_followed == {}
    with pytest.raises(ValueError, match="'none' takes out no design column, not even data_seed and kind"):
        opts.replace(strata=["none", "data_seed"])


def test_a_column_that_is_the_generation_is_not_a_lead():
    """An outside audit (75): an import's fine-tunes counting their steps from 0 gave `final_step` 200 to
    every base and 100 to every fine-tune, and the answer named it as a difference the init seed does not
    decide; it is the generation parent_id records, which the label-free tests take out as lineage."""
    from analysis.metadata import table_gradients

    r = np.random.default_rng(2)
    fam = np.repeat(np.arange(8), 4)
    gen = np.tile([0, 1, 1, 1], 8)
    ids = [f"m{i}" for i in range(32)]
    parent = np.asarray(["" if g == 0 else f"m{4 * (i // 4)}" for i, g in enumerate(gen)], dtype=object)
    x = r.standard_normal((8, 5))[fam] + 0.2 * r.standard_normal((32, 5))
    x[:, 0] += 3.0 * gen  # fine-tuning moves every fine-tune
    table = {"model_id": np.asarray(ids, dtype=object), "parent_id": parent, "kind": np.asarray(["imported"] * 32, dtype=object),
             "final_step": np.where(gen == 0, 200, 100), "recipe": np.where(gen == 0, "base", "ft").astype(object)}
    opts = AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca")
    assert table_gradients(x, table, np.arange(32), fam.astype(str), opts, set()) == []
    with_lr = {**table, "lr": np.where(np.arange(32) % 2 == 0, 0.01, 0.1)}  # not the generation: still tested
    assert [e["column"] for e in table_gradients(x, with_lr, np.arange(32), fam.astype(str), opts, set())] == ["lr"]
    # a grandchild: final_step is base against fine-tune, not one value per generation, and still decided by it (a review)
    from analysis.metadata import generation_columns

    deep = {**table, "parent_id": np.asarray(["" if i % 4 == 0 else f"m{i - 1}" if i % 4 == 2 else f"m{4 * (i // 4)}"
                                              for i in range(32)], dtype=object)}
    assert generation_columns(deep, set()) == ["final_step", "recipe"]
    assert table_gradients(x, deep, np.arange(32), fam.astype(str), opts, set()) == []
    assert generation_columns({**table, "parent_id": np.asarray([""] * 32, dtype=object)}, set()) == []  # no fine-tunes


def test_a_copy_of_a_design_column_is_taken_out_with_it():
    """Outside audit 117 (F11): an imported null whose CSV had `data_seed` and an identical `order` column read "within
    their init families the fingerprints follow column 'order' ... if such a column records a setting varied model by
    model": the data order's seed noise, which the tests had taken out as `data_seed` already. A column that is a
    design column's values under other names, one to one, is taken out with it; one that is not stays tested."""
    from analysis.metadata import strata_copies, table_gradients

    r = np.random.default_rng(3)
    fam = np.repeat(np.arange(10), 3)
    order = np.tile([0, 1, 2], 10)
    x = r.standard_normal((10, 5))[fam] + 0.2 * r.standard_normal((30, 5))
    x[:, 0] += 2.0 * order  # the data order's seed noise, alike in every family
    table = {"model_id": np.asarray([f"m{i}" for i in range(30)], dtype=object),
             "kind": np.asarray(["imported"] * 30, dtype=object), "data_seed": 100 + order,
             "order": order.astype(float), "steps": 50.0 * order + (np.arange(30) % 2)}
    assert strata_copies(table, set(), ["data_seed"]) == ["order"]
    opts = AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca")
    found = [e["column"] for e in table_gradients(x, table, np.arange(30), fam.astype(str), opts, {"data_seed"})]
    assert "order" not in found and "steps" in found  # not one to one with data_seed: tested
    # a data_seed of its own for every model is one to one with any per-model column: not a reason to skip one (review 119)
    per_model = {**table, "data_seed": np.arange(30), "lr": np.exp(r.uniform(-7, -3, 30))}
    assert strata_copies(per_model, set(), ["data_seed"]) == []


def test_a_family_column_of_few_arrangements_is_tested_exactly():
    """An outside audit (76): a backdoor set in 3 of 8 whole families was named as a lead or not by --seed
    and by the other columns, its p drawn at 0.01-0.025 around its floor. With at most n_perm distinct
    arrangements of the families' values (56 here) every one is tried once: p is 1/56 at every seed."""
    from analysis.metadata import gradients

    r = np.random.default_rng(4)
    fam = np.repeat(np.arange(8), 3)
    planted = np.isin(fam, [1, 4, 6]).astype(float)
    coords = 0.2 * r.standard_normal((24, 5)) + 0.3 * r.standard_normal((8, 5))[fam]
    coords[:, 0] += 3 * planted
    for seed in (0, 1, 2):
        (e,) = gradients(coords, {"backdoored": planted}, fam.astype(str), seed=seed)
        assert e["level"] == "families" and e["exact"] and e["p"] == e["floor"] == 1 / 56 and e["r2_adj"] > 0.8
    # 4 of 8: a split and its mirror image reach the same R2, so the smallest p is 2 of 70 (a review)
    half = np.isin(fam, [1, 3, 4, 6]).astype(float)
    coords2 = coords.copy()
    coords2[:, 0] += 3 * half - 3 * planted
    (e,) = gradients(coords2, {"half": half}, fam.astype(str))
    assert e["exact"] and e["p"] == e["floor"] == 2 / 70
    # families of unequal sizes: the means of 0.1 and 0.7 differ in their last bits, still two values (a review)
    uneven = np.r_[fam, [0, 2]]  # two more models in families 0 and 2
    x = np.where(np.isin(uneven, [1, 4, 6]), 0.7, 0.1)
    (e,) = gradients(np.r_[coords, coords[[0, 6]]], {"c": x}, uneven.astype(str), seed=3)
    assert e["exact"] and e["floor"] == 1 / 56
    wide = np.repeat(np.arange(12), 2)  # 924 arrangements of 6 and 6: more than n_perm, drawn
    (e,) = gradients(np.r_[coords, coords][:24], {"c": (wide < 6).astype(float)}, wide.astype(str))
    assert not e["exact"] and e["p"] >= 1 / 200


def test_parents_are_known_when_recorded_or_when_no_model_was_imported():
    """The answer reads one model of every family as the bases only where parents could be unrecorded: an import
    without a parent_id (an outside audit, 78); a sweep's empty parent_id means no fine-tunes (a review)."""
    sweep = {"model_id": np.array(["a", "b"]), "kind": np.array(["base", "base"]), "parent_id": np.array(["", ""])}
    assert md.parents_recorded(sweep)
    imported = {**sweep, "kind": np.array(["imported", "imported"])}
    assert not md.parents_recorded(imported) and not md.parents_recorded({"model_id": imported["model_id"],
                                                                           "kind": imported["kind"]})
    assert not md.parents_recorded({"model_id": imported["model_id"]})  # a table of the user's: parents unknown
    assert md.parents_recorded({**imported, "parent_id": np.array(["", "a"], dtype=object)})
    assert not md.parents_recorded({**imported, "parent_id": np.array([np.nan, None], dtype=object)})


def test_basins_a_strata_column_decides_are_said_as_any_column_not_a_data_order():
    """Audit 88: after the suggested `--strata lr`, the answer called a learning rate "a design factor the families
    share ... (a data order's seed noise)" and offered "one rule per data order". A column the user named with
    --strata is said as any column: a setting set aside, a data order's seed noise, or a real difference."""
    from analysis.answer import label_free_answer

    fp, table, opts = _orders(0.3, lambda order: order >= 2, 3, 5.0, "lr")  # the same design, the column named lr
    ans = label_free_answer(analyze([fp], table, opts.replace(strata=["lr"])))
    assert ans.candidates == [] and list(ans.strata_followed) == ["lr"]
    assert ("the basins of orders follow column 'lr' (AMI 0.65, q 0.005 permuting it within the init families): its "
            "values '0', '1' (16 models) apart from '2', '3' (16)") in ans.sentence
    assert ("a difference the column decides, it seems (one rule, or a backdoor, that comes with those values); "
            "--strata takes it out as lineage: if it records a training setting (a hyper-parameter sweep), these basins "
            "are that setting, set aside to ask what else differs; if it decides a real difference") in ans.sentence
    assert "seed noise; " not in ans.sentence  # decided: not offered as the values' seed noise too (review 113)
    assert "data order's seed noise" not in ans.sentence and "report without --strata to test it as one" in ans.sentence


def test_a_column_the_finer_clusters_follow_inside_the_camps_is_found_and_said():
    """Audit 86 (F5): two rules crossed with three learning rates; the camps were the rules and the finer clusters
    each rule's slowest rate (8, 8, 4 and 4 models), and nothing said so with the rate's column given."""
    from analysis.answer import label_free_answer
    from analysis.results import AnalysisResult, FingerprintResult

    rule = np.repeat([0, 1], 12)
    lr = np.tile(np.repeat([1e-3, 3e-3, 1e-2], 4), 2)
    clusters = 2 * rule + (lr != 1e-3)  # each rule's slowest rate apart
    family = np.arange(24).astype(str)  # independent seeds
    rng = np.random.default_rng(0)
    cols = {"lr": lr, "noise": rng.integers(0, 3, 24), "rule": rule, "family_again": family}
    found = md.finer(rule, clusters, cols, family)
    assert [e["column"] for e in found] == ["lr"]  # not a column constant in each camp, noise, nor names
    assert [e["camp"] for e in found[0]["camps"]] == [0, 1] and all(e["ci"][0] >= 0.3 for e in found[0]["camps"])
    assert md.finer(rule, rule, cols, family) == []  # clusters that are the camps: nothing finer to follow
    assert md.finer(rule, clusters, {"lr": np.where(rule == 0, lr, 1e-3)}, family) == []  # followed in one camp only

    ids = [f"m{i}" for i in range(24)]
    free = {"verdict": "groups lineages", "q": 0.01, "sentence": ".", "effect": {"separation": 9.0},
            "candidate_basins": {m: int(b) for m, b in zip(ids, rule)}, "n_related_families": 0}
    r = FingerprintResult("ood-outputs", n_models=24, model_ids=ids, clusters=clusters.tolist(),
                          lineage_values=family.tolist(), label_free=free, metadata_finer=found)
    sentence = label_free_answer(AnalysisResult(1, 0.0, {}, 24, scorecard=[], fingerprints=[r])).sentence
    assert ("; inside each camp those clusters follow column 'lr' (if it records how the models were trained, they "
            "are that setting's models within each camp rather than further kinds of model)") in sentence
    assert FingerprintResult.from_dict(r.to_dict()).metadata_finer == found  # stored with the result


def test_a_strata_column_set_family_by_family_is_said_to_change_nothing():
    """Audit 89 (F5): `--strata rule` on a rule set family by family was said to make a difference that follows it
    read as lineage, beside a candidate matching it; the answer had suggested it for camps of whole families."""
    from analysis.answer import label_free_answer
    from fingerprint.cli.display import metadata_lines

    fam = np.repeat(np.arange(6), 4).astype(str)
    table = {"model_id": np.asarray([f"m{i}" for i in range(24)]), "init_seed": fam,
             "rule": np.where(fam.astype(int) >= 3, "B", "A"), "data_seed": np.tile(np.arange(4), 6)}
    settings = md.table_settings(table, AnalysisOptions(lineage="init_seed", strata=["rule", "data_seed"]))
    assert settings["strata_as_lineage"] == ["rule"]
    res = analyze([], table, AnalysisOptions(lineage="init_seed", strata=["rule"]))
    assert metadata_lines(res)[0].startswith("--strata 'rule': one value in every init family, so the tests, which take "
                                             "the families out already, are unchanged by it")
    assert not any(line.startswith("label-free tests stratified by") for line in metadata_lines(res))
    # the answer no longer offers --strata for camps of whole families
    ids = list(table["model_id"])
    free = {"verdict": "groups lineages", "q": 0.01, "sentence": ".", "effect": {"separation": 9.0},
            "candidate_basins": {m: int(r == "B") for m, r in zip(ids, table["rule"])}}
    from analysis.results import AnalysisResult, FingerprintResult
    r = FingerprintResult("ood-outputs", n_models=24, model_ids=ids, clusters=[0] * 24, lineage_values=list(fam),
                          label_free=free, metadata_match=[{"column": "rule", "statistic": "AMI", "match": True}])
    sentence = label_free_answer(AnalysisResult(1, 0.0, {}, 24, scorecard=[], fingerprints=[r])).sentence
    assert "it matches column 'rule'" in sentence and "--strata" not in sentence


def test_a_column_that_follows_models_of_no_relatives_is_said_as_such():
    """Audit 91 (F5): with every model its own init family the column test left every model out, and a per-model
    `steps` column that 4 fingerprints followed at adjusted R^2 up to 0.95 was never named."""
    from analysis.answer import label_free_answer
    from analysis.results import AnalysisResult, FingerprintResult

    ids = [f"m{i}" for i in range(24)]
    free = {"verdict": "lineage only", "q": 0.5, "sentence": "."}
    rs = [FingerprintResult(f"f{i}", n_models=24, model_ids=ids, clusters=[0] * 24, label_free=dict(free),
                            metadata_gradient=[{"column": "steps", "level": "families", "r2": 0.9, "r2_adj": 0.88,
                                                "p": 0.005, "n_models": 24, "n_families": 24}]) for i in range(2)]
    sentence = label_free_answer(AnalysisResult(1, 0.0, {}, 24, scorecard=[], fingerprints=rs)).sentence
    assert ("; every model its own init family, the models' fingerprints follow column 'steps' (f0 and 1 more of the 2 "
            "fingerprints; adjusted R2 up to 0.88, q <= 0.005): if such a column records a setting varied model by "
            "model") in sentence and "set family by family" not in sentence


def test_clusters_of_base_models_against_their_fine_tunes_are_followed_as_the_generation():
    """An outside audit (107): 4 base models and their 24 fine-tunes, two fingerprints' own clusters the base models
    against the rest (stability 1.00), cutting every family: the answer's cluster leads must not read that as a
    difference drawn per model. With parent links, ``strata_follow`` has the generation too (not a column: the
    answer's design-column sentence leaves it out)."""
    from analysis.answer import _strata_followed
    from analysis.metadata import attach_strata_follow
    from analysis.options import GENERATION, AnalysisOptions
    from analysis.results import FingerprintResult

    ids = [f"p{f}" if j == 0 else f"p{f}c{j}" for f in range(4) for j in range(7)]
    parent = ["" if j == 0 else f"p{f}" for f in range(4) for j in range(7)]
    fam = [str(f) for f in range(4) for _ in range(7)]
    r = FingerprintResult("weight-stats", n_models=28, model_ids=ids, clusters=[int(j > 0) for _ in range(4) for j in range(7)],
                          lineage_values=fam)
    table = {"model_id": np.asarray(ids, dtype=object), "family": np.asarray(fam, dtype=object),
             "parent_id": np.asarray(parent, dtype=object)}
    attach_strata_follow([r], table, AnalysisOptions(lineage="family"), [])
    (e,) = r.strata_follow
    assert e["column"] == GENERATION and e["ami"] == pytest.approx(1.0) and e["p"] == pytest.approx(1 / 200)
    assert _strata_followed([r], 0.05, 0.3) == {}
    table["parent_id"] = np.asarray([""] * 28, dtype=object)  # no parent links: nothing to follow
    r.strata_follow = None
    attach_strata_follow([r], table, AnalysisOptions(lineage="family"), [])
    assert r.strata_follow is None


def test_clusters_are_a_columns_values_only_one_to_one():
    """Review 116: marked "=" at an AMI of 0.9 or more, one order split in half (AMI 0.94) or two of twelve merged
    (0.96) read as the orders themselves, and the four orders' clusters with 2 of 32 models misplaced (0.84) did not.
    Now "=" is one to one: each value with 80% of its models in a cluster of its own, each cluster 80% one value."""
    from analysis.metadata import one_to_one, strata_follow

    exact = np.diag([8, 8, 8, 8])
    assert one_to_one(exact)
    misplaced = exact.copy()
    misplaced[0, 0], misplaced[0, 1], misplaced[2, 2], misplaced[2, 3] = 7, 1, 7, 1  # 2 of 32, in two values
    assert one_to_one(misplaced)
    split = np.asarray([[8, 8, 0, 0, 0], [0, 0, 16, 0, 0], [0, 0, 0, 16, 0], [0, 0, 0, 0, 16]])  # one order in halves
    merged = np.asarray([[8, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]])  # two orders in one cluster
    assert not one_to_one(split) and not one_to_one(merged)
    assert not one_to_one(np.asarray([[6, 2, 0], [0, 8, 0], [0, 0, 8]]))  # a value 75% in its cluster: in part
    fam, order = np.repeat(np.arange(8), 4), np.tile(np.arange(4), 8)
    assert strata_follow(order.copy(), order, fam)["exact"] is True
    assert strata_follow((order >= 2).astype(int), order, fam)["exact"] is False  # two sides of two values each
