"""Scale transfer end to end: a model.sweep zoo (one group per width) and `fingerprint transfer`."""

from __future__ import annotations

import json
import subprocess

import pytest

from fingerprint import Zoo
from fingerprint.extraction import extract
from tests.conftest import run_cli
from training.config import load_config
from training.core.errors import UserError
from training.plan import make_plan
from training.sweep import run_sweep

SCALED = """
name = "tiny-scale"

[task]
name = "xor-cues"
n_train = 128
n_test = 64
n_probes = 16

[model]
arch = "mlp"
width = 8
depth = 1
sweep = {sweep}

[train]
steps = 20
batch_size = 32
lr = 0.02
checkpoints = [10]

[seeds]
init = 4
data = 2
"""


@pytest.fixture(scope="module")
def scaled_zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("scaled")
    (d / "c.toml").write_text(SCALED.format(sweep="{ width = [4, 8] }"))
    run_sweep(load_config(d / "c.toml"), d / "zoo")
    return d / "zoo"


def cli(*args, columns: int = 200) -> subprocess.CompletedProcess:
    return run_cli("transfer", *args, env={"COLUMNS": str(columns)})  # the entry point in this process


def test_a_model_sweep_plans_one_group_per_setting(tmp_path):
    (tmp_path / "c.toml").write_text(SCALED.format(sweep="{ width = [4, 8], depth = [1, 2] }"))
    cfg = load_config(tmp_path / "c.toml")
    plan = make_plan(cfg)
    assert list(plan.groups) == ["model.width=4,model.depth=1", "model.width=4,model.depth=2",
                                 "model.width=8,model.depth=1", "model.width=8,model.depth=2"]
    assert cfg.n_planned() == len(plan.models) == 4 * 8
    assert all(len({m.group for m in s.models}) == 1 for s in plan.shards)  # a shard never mixes architectures
    assert load_config(tmp_path / "c.toml").to_dict()["model"]["sweep"] == {"width": [4, 8], "depth": [1, 2]}


def test_the_setting_is_stored_per_model_and_shapes_follow_it(scaled_zoo):
    zoo = Zoo.open(scaled_zoo)
    groups = list(zoo.models["group"])
    assert sorted(set(groups)) == ["model.width=4", "model.width=8"] and groups.count("model.width=4") == 8
    narrow = [m for m, g in zip(zoo.model_ids, groups) if g == "model.width=4"]
    wide = [m for m, g in zip(zoo.model_ids, groups) if g == "model.width=8"]
    assert zoo.params(None, narrow)["layer0.weight"].shape[1] == 4 and zoo.params(None, wide)["layer0.weight"].shape[1] == 8
    probe, cka = extract(zoo, ["probe-outputs", "cka"])
    assert probe.error is None and probe.values.shape[0] == 16  # streamed one width at a time, one table
    assert "cannot be stacked" in cka.error  # population-level: refused in one line, not a crash


def test_stacking_every_width_is_a_user_error_not_corruption(scaled_zoo):
    with pytest.raises(UserError, match="span the model.sweep architectures"):
        Zoo.open(scaled_zoo).params()


def test_weight_fingerprints_of_different_widths_are_refused(scaled_zoo):
    (res,) = extract(Zoo.open(scaled_zoo), ["weight-spectra:top_k=0"])
    assert "cannot be compared across architectures" in res.error


def test_transfer_cli_writes_the_json_contract(scaled_zoo, tmp_path):
    out = tmp_path / "t.json"
    r = cli(scaled_zoo, "--fp", "probe-outputs", "--fit", "model.width=4", "--label", "data_seed",
            "--json", out)
    assert r.returncode == 0, r.stderr
    assert "model.width=4 (fit, cross-validated)" in r.stdout
    narrow = cli(scaled_zoo, "--fp", "probe-outputs", "--fit", "model.width=4", "--label", "data_seed", columns=80)
    assert "model.width=8" in narrow.stdout  # the scale whole in 80 columns (outside audit 124: `model.wid…`)
    d = json.loads(out.read_text())
    assert d["fit_on"] == "model.width=4" and [s["scale"] for s in d["scales"]] == ["model.width=4", "model.width=8"]
    for s in d["scales"]:
        assert s["n_models"] == 8 and 0 <= s["auroc"] <= 1 and 0 <= s["accuracy"] <= 1
        lo, hi = s["accuracy_ci"] or (0, 1)  # over init families, as the AUROC's (outside audit 124)
        assert "accuracy_ci" in s and lo <= s["accuracy"] <= hi
        assert s["basin_shares"] == {"0": 0.5, "1": 0.5} and sum(s["predicted_shares"].values()) == pytest.approx(1)


@pytest.mark.parametrize("fit, kw, msg", [
    ("width=4", {}, "unknown --fit key 'width' (valid: model.width)"),
    ("model.width=5", {}, "--fit model.width=5 matches no model (valid values of model.width: 4, 8)"),
    ("model.width", {}, "--fit must be KEY=VALUE"),
    ("model.width=4", {"fp": "cka"}, "cannot be stacked"),
    ("model.width=4", {"label": "nope"}, "unknown model column 'nope'"),
])
def test_bad_input_names_the_culprit(scaled_zoo, fit, kw, msg):
    from fingerprint.transfer import transfer

    with pytest.raises(UserError) as e:
        transfer(Zoo.open(scaled_zoo), kw.get("fp", "probe-outputs"), fit, kw.get("label"))
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_the_cli_says_a_bad_fit_in_one_line(scaled_zoo):
    r = cli(scaled_zoo, "--fit", "width=4")
    assert r.returncode == 2 and r.stderr.strip() == "error: unknown --fit key 'width' (valid: model.width)"


def test_a_zoo_without_groups_has_nothing_to_transfer(tiny_zoo):
    from fingerprint.transfer import transfer

    with pytest.raises(UserError, match="one group: nothing to transfer across"):
        transfer(Zoo.open(tiny_zoo), "probe-outputs", "model.width=4")


def test_a_bad_model_sweep_is_a_config_error(tmp_path):
    (tmp_path / "c.toml").write_text(SCALED.format(sweep="{ width = 4 }"))
    with pytest.raises(UserError, match="model.sweep' must map hyper-parameter names to non-empty lists"):
        load_config(tmp_path / "c.toml")


def test_the_default_sets_alignment_estimate_counts_every_architecture(scaled_zoo, monkeypatch):
    """A review: the estimate of aligned-weights' cost in the default set read the base architecture
    alone, so a model.sweep to wide layers kept it. Each group's own shapes and count now add up."""
    import fingerprint.extractors.mechanistic as mech
    import fingerprint.pipeline as pl

    seen = []
    monkeypatch.setattr(mech, "matching_seconds", lambda shapes, groups, n: seen.append((sorted(shapes.items()), n))
                        or 100.0)  # what pipeline.slow_alignment's estimate (mechanistic.matching_cost) calls
    monkeypatch.setattr(pl, "ALIGN_DEFAULT_SECONDS", 150.0)
    why = pl.slow_alignment(Zoo.open(scaled_zoo))
    assert len(seen) == 2 and [n for _, n in seen] == [8, 8] and seen[0][0] != seen[1][0]  # both widths, 8 models each
    assert why.startswith("weight matching of 16 models") and "about 200 s on one core, beyond the default set's 150 s " in why
