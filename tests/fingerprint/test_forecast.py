"""Forecasting and selection: the proposal's procedure, end to end on real zoos."""

from __future__ import annotations

import textwrap

import pytest
from exact import assert_bitwise_equal

from fingerprint import Zoo
from fingerprint.extraction import extract
from fingerprint.forecast import forecast
from fingerprint.selection import select_and_continue
from training.config import load_config
from training.sweep import run_sweep

SEEDED_TASK = textwrap.dedent('''
    from dataclasses import dataclass

    import numpy as np
    import torch

    from training.tasks.xor_cues import XorCues


    @dataclass(frozen=True)
    class SeedDecided(XorCues):
        """xor-cues where odd init seeds learn the flipped rule: the basin is fixed by the seed from step 0."""

        def variant(self, init_seeds, data_seeds):
            return (init_seeds % 2).long()

        def sampler(self, data_states, batch_size, variant):
            inner = super().sampler(data_states, batch_size, variant)

            def sample(step):
                x, y = inner(step)
                return x, torch.where(variant[:, None] == 1, 1 - y, y)

            return sample

        def diagnostics(self, forward, variant):
            return {"deep_label": np.where(variant.numpy() == 1, "flipped", "plain").astype(object)}
''')

CONFIG = """
name = "seeded"
[task]
name = "seeded_task_mod:SeedDecided"
n_train = 128
n_test = 64
n_probes = 32
[model]
arch = "mlp"
width = 8
depth = 1
activation = "relu"
[train]
steps = 60
batch_size = 32
lr = 0.03
checkpoints = [0, 5, 20]
save_optimizer_state = true
[seeds]
init = 16
data = 1
"""


@pytest.fixture
def seeded_zoo(tmp_path, monkeypatch):
    (tmp_path / "seeded_task_mod.py").write_text(SEEDED_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.toml").write_text(CONFIG)
    run_sweep(load_config(tmp_path / "c.toml"), tmp_path / "zoo")
    return Zoo.open(tmp_path / "zoo")


def test_forecast_at_the_final_step_equals_the_final_labels(seeded_zoo):
    s = forecast(seeded_zoo, ["probe-outputs"])
    final = [p for p in s["forecast"] if p["step"] == 60][0]
    assert final["fraction"] == 1.0
    assert final["accuracy"] == 1.0 and final["auroc"] == 1.0  # cross-validated predictions equal the final labels
    assert final["ami"] > 0.3  # unsupervised clusters may split a basin into sub-clusters, but follow it
    assert [p["step"] for p in s["forecast"]] == [0, 5, 20, 60]
    assert s["earliest_90"]["probe-outputs"] <= 1.0
    assert seeded_zoo.load_result("forecast")["forecast"] == s["forecast"]


def test_select_continues_only_selected_seeds_from_their_checkpoints(seeded_zoo, tmp_path):
    r = select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "sel", fp="probe-outputs", calibration=0.5)
    new = Zoo.open(tmp_path / "sel")
    assert r["n_selected"] == len(new) > 0
    # never from scratch: each continued model trains only the remaining 40 steps, from its own checkpoint
    assert r["continued_model_steps"] == len(new) * (60 - 20)
    assert set(new.models["kind"]) == {"continued"} and set(new.models["spawn_step"]) == {20}
    assert set(new.models["parent_id"]) <= set(seeded_zoo.model_ids)
    src = seeded_zoo.params(60, list(new.models["parent_id"]))
    got = new.params()
    assert_bitwise_equal(src, got, "continued models")  # exact: optimizer state was saved
    assert r["exact"] is True
    assert r["purity"] == 1.0 and r["compute_saved"] > 0
    assert r["model_steps_used"] == 16 * 20 + r["n_calibration"] * 40 + r["n_selected"] * 40
    # every share has its 95% interval over init families: a perfect purity keeps a lower end below 1
    lo, hi = r["purity_ci"]
    assert lo < 1.0 == hi
    for key in ("base_rate", "recall"):
        lo, hi = r[f"{key}_ci"]
        assert lo <= r[key] <= hi and hi - lo > 0


def test_select_rejects_unknown_basin_and_step(seeded_zoo, tmp_path):
    from training.core.errors import UserError

    with pytest.raises(UserError, match=r"unknown basin 'nope' for deep_label \(valid: flipped, plain\)"):
        select_and_continue(seeded_zoo, "nope", 20, tmp_path / "x")
    with pytest.raises(UserError, match="--at-step 7 is not a stored checkpoint"):
        select_and_continue(seeded_zoo, "plain", 7, tmp_path / "x")
    for kw, msg in (({"threshold": 2.0}, r"--threshold must be in \(0, 1\], got 2.0"), ({"budget": 0}, "--budget must be at least 1"),
                    ({"device": "tpu"}, "tpu")):
        with pytest.raises(UserError, match=msg):
            select_and_continue(seeded_zoo, "plain", 20, tmp_path / "x", **kw)
    assert not (tmp_path / "x").exists()


def test_select_resume_finishes_the_same_selection(seeded_zoo, tmp_path):
    """A continuation whose shards were lost resumes to the same models; with an existing --out and
    neither flag it is refused, naming both flags (select has both)."""
    from training.core.errors import UserError

    kw = {"fp": "probe-outputs", "calibration": 0.5}
    select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "sel", **kw)
    ref = Zoo.open(tmp_path / "sel").params()
    for shard in (tmp_path / "sel" / "shards").glob("*.h5"):
        shard.unlink()
    with pytest.raises(UserError, match="pass --resume to finish it or --overwrite"):
        select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "sel", **kw)
    select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "sel", resume=True, **kw)
    got = Zoo.open(tmp_path / "sel").params()
    assert_bitwise_equal(ref, got, "resumed continuation")


def test_a_subset_never_replaces_the_populations_cached_fingerprint(tiny_zoo):
    """Issue 21 item 1: forecast/select fingerprint subsets; the population's cache entry stays whole."""
    from fingerprint import pipeline

    zoo = Zoo.open(tiny_zoo)
    (full,) = extract(zoo, ["weight-stats"])
    half = zoo.model_ids[: len(zoo) // 2]
    (part,) = extract(zoo, ["weight-stats"], model_ids=half)
    assert part.key != full.key and part.meta["subset"] and list(part.model_ids) == half
    (again,) = extract(zoo, ["weight-stats"])
    assert again.cached and again.key == full.key and list(again.model_ids) == list(full.model_ids)
    (inp,) = pipeline.cached_fingerprints(zoo)  # what `report` analyses: the population's, not the subset's
    assert inp.model_ids == list(full.model_ids)
    (named,) = pipeline.cached_fingerprints(zoo, [part.key])  # a subset only when named by its key
    assert named.model_ids == half


def test_forecast_exclude_basin_leaves_its_models_out(seeded_zoo, tmp_path):
    """`--exclude-basin` drops a basin's models (e.g. modadd's `mixed`); an unknown one is a one-line
    error listing the valid basins, before anything is extracted."""
    from conftest import run_cli

    r = run_cli("forecast", seeded_zoo.path, "--fp", "probe-outputs", "--exclude-basin", "nope")
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "unknown basin 'nope'" in err and "(valid: flipped, plain)" in err and len(err.splitlines()) == 1
    r = run_cli("forecast", seeded_zoo.path, "--fp", "probe-outputs", "--exclude-basin", "flipped")
    assert r.returncode != 0 and "leaves 1 basin" in r.stderr  # nothing left to tell apart
    # a third basin to drop: a label column (in memory) that calls the plain models of every 4th init seed "other"
    import numpy as np

    y = np.asarray(seeded_zoo.models["deep_label"]).astype(str)
    y3 = np.where((np.asarray(seeded_zoo.models["init_seed"]) % 4 == 0) & (y == "plain"), "other", y)
    assert 0 < (y3 == "other").sum()
    seeded_zoo.models.columns["three"] = y3.astype(object)
    s = forecast(seeded_zoo, ["probe-outputs"], label="three", exclude_basins=["other"])
    assert s["excluded_basins"] == ["other"] and s["n_models"] == int((y3 != "other").sum())
    assert all(p["n_models"] == s["n_models"] for p in s["forecast"])
    assert s["forecast"][-1]["accuracy"] == 1.0  # the two rules stay perfectly separable at the end


def test_run_forecast_section_passes_exclude_basins(seeded_zoo, tmp_path):
    from fingerprint.forecast import ForecastSettings
    from fingerprint.selection import procedure
    from training.core.errors import UserError

    with pytest.raises(UserError, match=r"unknown basin 'nope' .*\(valid: flipped, plain\)"):
        procedure(seeded_zoo, ForecastSettings(fingerprints=["probe-outputs"], exclude_basins=["nope"]), tmp_path / "sel")


def test_forecast_accuracy_interval_contains_the_estimate(seeded_zoo):
    s = forecast(seeded_zoo, ["probe-outputs"])
    for p in s["forecast"]:
        lo, hi = p["accuracy_ci"]
        assert 0 <= lo <= p["accuracy"] + 1e-12 and p["accuracy"] - 1e-12 <= hi <= 1


def test_label_by_step_reads_the_label_stored_with_each_checkpoint(seeded_zoo):
    """scripts/label_by_step.py: the seeded task's label is fixed from step 0, so it agrees with the
    final one at every checkpoint; the counts at a step are that step's stored diagnostics."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("label_by_step", Path(__file__).parents[2] / "scripts" / "label_by_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.label_by_step(seeded_zoo, exclude=("flipped",), diagnostics=("train_acc",))
    assert [r["step"] for r in out["steps"]] == [0, 5, 20, 60] and out["n_models"] == 16
    for r in out["steps"]:
        assert r["agree"] == 1.0 and r["agree_ci"] == [1.0, 1.0] and r["agree_kept"] == 1.0
        assert r["counts"] == out["final_counts"] == {"flipped": 8, "plain": 8}
    assert abs(out["steps"][-1]["corr"]["train_acc"] - 1) < 1e-9
    # below four init families there is no interval: the table prints a dash, not a crash
    assert mod._fmt_ci(None) == "–" and mod._fmt_ci([0.5, 1.0]) == "[0.50, 1.00]"


def test_without_a_label_the_forecast_takes_the_reports_verdict_of_the_seed_grid_too(tiny_zoo):
    """A review: the forecast's seed grid (the base models, a subset) has a cache entry of its own, so matching the
    report's analysis by cache key never found it in a sweep with spawned or fine-tuned models. It is matched by what
    the fingerprint is (extractor, version, parameters, step), and the report must have analysed every grid model."""
    from fingerprint import pipeline
    from fingerprint.forecast import base_models
    from fingerprint.forecast_target import forecast_target

    zoo = Zoo.open(tiny_zoo)
    del zoo.models.columns["deep_label"]  # no ground truth: the label-free verdict decides the target
    grid = base_models(zoo)
    assert 0 < len(grid) < len(zoo)
    assert forecast_target(zoo, grid, None, "weight-stats").source == "alone"  # no report yet
    res = pipeline.scorecard(zoo, ["weight-stats"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca")
    t = forecast_target(zoo, grid, None, "weight-stats")
    (r,) = res.fingerprints
    assert t.source == "report" and t.verdict == str(r.label_free.get("verdict") or r.verdict)
    assert forecast_target(zoo, grid, None, "weight-stats:balance=false").source == "alone"  # another fingerprint: its own
    assert "--covariate" not in t.name
    # a report made beyond a recorded setting: its basins are the forecast's target, and the target says so (review 92)
    pipeline.scorecard(zoo, ["weight-stats"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca", covariates=["data_seed"])
    t = forecast_target(zoo, grid, None, "weight-stats")
    assert t.source == "report" and t.name.endswith("weight-stats (beyond 'data_seed', which the report took out: --covariate)")


def test_the_calibration_takes_whole_init_families():
    """Outside audit 124 (F1): the calibration seeds were drawn one by one, so a third of the pool had a calibrated
    sibling whose known fate the forecaster read (a label no early fingerprint carries was "selected" at 100%).
    Whole families are drawn now; one family alone is split seed by seed, with a warning."""
    import numpy as np

    from fingerprint.selection import calibration_split

    groups = np.repeat(np.arange(10), 4)  # 10 families of 4
    for seed in range(5):
        cal, pool = calibration_split(groups, 0.25, seed)
        assert not set(groups[cal]) & set(groups[pool])
        assert sorted([*cal, *pool]) == list(range(40)) and len(cal) == 8  # 2 families: the nearest to 10 of 40
    # a family larger than the share stays in the pool (review 126: one of 15 beside a singleton took 15 of 16)
    big = np.asarray([0] * 15 + list(range(1, 9)))
    cal, pool = calibration_split(big, 0.25, 0)
    assert len(cal) == 6 and set(big[cal]) <= set(range(1, 9))
    assert [a.tolist() for a in calibration_split(7, 0.25)] == [a.tolist() for a in calibration_split(np.arange(7), 0.25)]
    with pytest.warns(UserWarning, match="the 8 seeds are of 1 init family: .* calibration and pool seeds are relatives"):
        cal, pool = calibration_split(np.zeros(8, dtype=int), 0.25)
    assert len(cal) == 2 and len(pool) == 6


def test_a_continuation_without_optimiser_state_says_so_and_gives_both_purities(tmp_path, monkeypatch):
    """Outside audit 124 (F2): a source trained with Adam that saved no optimiser state was continued with the moments
    restarted, silently; the purity was of those other models while the recall was of the source's. It is said, in
    a warning and in the result (`exact`), with the purity on the source's own final models beside it; the
    calibration keeps init families whole (8 families of 2 here)."""
    import numpy as np

    (tmp_path / "seeded_task_mod.py").write_text(SEEDED_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.toml").write_text(CONFIG.replace("save_optimizer_state = true\n", "")
                                     .replace("init = 16\ndata = 1", "init = 8\ndata = 2"))
    run_sweep(load_config(tmp_path / "c.toml"), tmp_path / "zoo")
    zoo = Zoo.open(tmp_path / "zoo")
    with pytest.warns(UserWarning, match="saved no optimiser state at step 20 .* not the models its own training made"):
        r = select_and_continue(zoo, "flipped", 20, tmp_path / "sel", fp="probe-outputs", calibration=0.5, seed=1)
    assert r["exact"] is False and r["n_selected"] > 0
    assert r["purity_source"] == r["selected_true_basin_count"] / r["n_selected"]
    init = dict(zip(zoo.model_ids, np.asarray(zoo.models["init_seed"]).tolist()))
    assert not {init[m] for m in r["calibration_seeds"]} & {init[m] for m in r["probabilities"]}
    assert r["n_calibration_families"] == len({init[m] for m in r["calibration_seeds"]}) and r["lineage"] == "init_seed"


def test_select_refuses_what_it_cannot_forecast_in_one_line(seeded_zoo, tmp_path):
    """Outside audit 124 (F6-F8, F11): one final basin trained a "selection" of every seed; a calibration without two
    seeds of the basin selected nothing and said nothing; a zoo without a history was a ZeroDivisionError; an
    import's final step was a "selection" of the outcome itself. Each is one line now, nothing written."""
    from training.core.errors import UserError

    with pytest.raises(UserError, match=r"one final basin \('base'\) of kind: nothing to select"):
        select_and_continue(seeded_zoo, "base", 20, tmp_path / "x", label="kind")
    # a draw short of a side grows by whole families, said (review 126), and the compute counts them
    with pytest.warns(UserWarning, match=r"the calibration grew by \d init famil(y|ies) \(\d+ seeds\) to hold 2 "
                                         r"families in basin 'flipped' and 2 outside it"):
        r = select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "g", calibration=0.07, fp="probe-outputs")
    assert r["n_calibration"] >= 4 and r["model_steps_used"] == 16 * 20 + (r["n_calibration"] + r["n_selected"]) * 40
    assert not (tmp_path / "x").exists()


def test_a_basin_of_one_init_family_cannot_be_calibrated():
    """Two families on each side, or a one-line refusal: a basin held by one family cannot give them."""
    import numpy as np

    from fingerprint.selection import check_calibration, grow_calibration
    from training.core.errors import UserError

    groups = np.repeat(np.arange(6), 2)
    bound = groups == 3  # the basin: family 3 only
    cal, pool, added = grow_calibration(groups, np.asarray([0, 1]), bound)
    # families are added whatever their outcome (review 127), until one is left in the pool
    assert not set(groups[cal]) & set(groups[pool]) and len(set(groups[pool])) == 1 and added == 4
    with pytest.raises(UserError, match=r"hold \d in basin 'b' \(\d famil(y|ies)\) and \d+ outside it \(\d\): the "
                                        r"forecaster needs at least 2 families of each"):
        check_calibration(np.where(bound[cal], "b", "a"), groups[cal], "b", 0.25)
    # review 127: with the whole population, a basin of one family is said to be out of any draw's reach
    y_all = np.where(bound, "b", "a")
    with pytest.raises(UserError, match=r"the population's 6 init families cannot give them whatever the draw \(1 "
                                        r"with a seed in 'b', 5 with one outside it.*train more init families"):
        check_calibration(y_all[cal], groups[cal], "b", 0.25, y_all, groups)
    two = np.repeat([0, 1], 6)  # two "families" (--lineage data_seed), both basins in each: no pool left
    y_two = np.tile(["a", "b"], 6)
    with pytest.raises(UserError, match=r"population's 2 init families cannot give them"):
        check_calibration(y_two[:6], two[:6], "b", 0.25, y_two, two)
    with pytest.raises(UserError, match=r"raise --calibration \(now 0.25\) or draw another with --seed"):
        check_calibration(y_all[:2], groups[:2], "b", 0.25, np.concatenate([y_all, ["b", "b"]]), np.r_[groups, 7, 8])


def test_select_without_a_history_is_one_line(tmp_path, monkeypatch):
    from training.core.errors import UserError

    (tmp_path / "seeded_task_mod.py").write_text(SEEDED_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.toml").write_text(CONFIG.replace("checkpoints = [0, 5, 20]", "checkpoints = []"))
    run_sweep(load_config(tmp_path / "c.toml"), tmp_path / "zoo")
    with pytest.raises(UserError, match="stores 1 checkpoint step that most of its models have: forecasting needs "
                                        "checkpoints along training"):
        select_and_continue(Zoo.open(tmp_path / "zoo"), "flipped", 60, tmp_path / "x")


def test_select_with_a_population_relative_fingerprint_extracts_once(seeded_zoo, tmp_path):
    """Outside audit 124 (F5): the calibration and the pool were extracted apart, so cka's similarity matrices had two
    widths (a traceback) and aligned-weights aligned the two to different references. One extraction serves both."""
    r = select_and_continue(seeded_zoo, "flipped", 20, tmp_path / "sel", fp="cka", calibration=0.5)
    assert r["n_pool"] == 8 and len(r["probabilities"]) == 8


def test_a_selection_all_right_counts_its_families_not_its_seeds():
    """Outside audit 124 (F3): 15 picks of 5 families, all right, read [84.8%, 100%] (15 independent seeds); where every
    hit is alike the seeds count as their families: Jeffreys' interval at n* = 5."""
    import numpy as np
    from scipy.stats import beta

    from fingerprint.selection import selection_intervals

    groups = np.repeat(np.arange(10), 3)  # 10 families of 3; the picks: every seed of families 0-4
    chosen = list(range(15))
    out = selection_intervals(groups, np.arange(30), np.asarray(chosen), np.arange(30) < 15, np.ones(15))
    assert out["purity_ci"][0] == pytest.approx(beta.ppf(0.025, 5.5, 0.5)) and out["purity_ci"][1] == 1.0
    assert out["purity_ci"][0] < 0.7


def test_plain_sgd_continues_exactly_without_a_stored_state(tmp_path, monkeypatch):
    """Review 126 (F3): plain SGD has no optimiser state, so its continuation is the source's own training; marking it
    exact in the new zoo's manifest made the continuation look for a stored state and refuse. The result says exact."""
    (tmp_path / "seeded_task_mod.py").write_text(SEEDED_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.toml").write_text(CONFIG.replace("save_optimizer_state = true\n", 'optimizer = "sgd"\nmomentum = 0.0\n'))
    run_sweep(load_config(tmp_path / "c.toml"), tmp_path / "zoo")
    zoo = Zoo.open(tmp_path / "zoo")
    r = select_and_continue(zoo, "flipped", 20, tmp_path / "sel", fp="probe-outputs", calibration=0.5)
    assert r["exact"] is True and r["n_selected"] > 0
    new = Zoo.open(tmp_path / "sel")
    assert_bitwise_equal(zoo.params(60, list(new.models["parent_id"])), new.params(), "plain SGD continued")
