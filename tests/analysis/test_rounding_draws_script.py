"""scripts/rounding_draws.py on real tiny modadd zoos: one config trained under two arithmetics
(the second by the script's own `train`, in a child process), scored over the draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from modadd_zoo import TINY_MODADD

from analysis import metrics as mt
from analysis.resampling import family_bootstrap
from training.core.errors import UserError

_spec = importlib.util.spec_from_file_location("rounding_draws", Path(__file__).parents[2] / "scripts" / "rounding_draws.py")
rd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rd)

# 4 init families x 2 data orders, long enough that the label takes two values (clock / mixed)
TINY = TINY_MODADD.replace("init = 2", "init = 4").replace("steps = 30", "steps = 200").replace("[0, 30]", "[0, 200]")
FP = "input-grad-symmetry"


def _sweep(root: Path, name: str, text: str) -> Path:
    from training.config import load_config
    from training.sweep import run_sweep

    (root / f"{name}.toml").write_text(text)
    run_sweep(load_config(root / f"{name}.toml"), root / name)
    return root / name


@pytest.fixture(scope="module")
def draws(tmp_path_factory):
    root = tmp_path_factory.mktemp("draws")
    a = _sweep(root, "default", TINY)
    rec = rd.train(str(root / "default.toml"), root / "scalar", "aten-default", [])
    return root, a, root / "scalar", rec


def test_train_runs_the_config_under_the_asked_arithmetic_and_records_it(draws):
    root, a, b, rec = draws
    assert rec["simd"] == "DEFAULT" and rec["env"] == {"ATEN_CPU_CAPABILITY": "default"}
    zb = rd.open_zoo(b)
    assert zb.load_result("arithmetic")["arithmetic"] == "aten-default" and rd.draw_name(zb) == "aten-default"
    rd.check_draws([rd.open_zoo(a), zb])  # one config and seeds: a draw of it


def test_one_draw_reduces_to_its_family_interval(draws):
    """K = 1: the mean and one-draw intervals are the draw's fixed-cluster family interval
    (scripts/modadd_basins.py's ``cp_interval``: family_bootstrap, 1000 samples, seed 0)."""
    _, a, _, _ = draws
    res = rd.score([a], [FP], None, exclude=())
    f = res["fingerprints"][0]
    d = f["per_draw"][0]
    assert d["ami_cp"] is not None and f["target_met"]["n"] == 1
    z = rd.open_zoo(a)
    result = z.load_result("basins")  # the scorecard just stored: its clusters and labels
    fp = next(x for x in result["fingerprints"] if x["fingerprint"] == FP)
    fam = dict(zip(z.model_ids, np.asarray(z.models["init_seed"]).astype(str)))
    family = [fam[m] for m in fp["model_ids"]]
    cc, lc = mt.label_codes(np.asarray(fp["clusters"])), mt.label_codes(np.asarray(fp["label_values"]))
    ref = family_bootstrap(lambda rows, _d: mt.ami_codes(cc[rows], lc[rows]), family, 1000, 0)
    ref = [round(v, 3) for v in ref]
    assert d["deep_ami_ci"] == ref and f["deep_ami"]["mean_ci"] == ref and f["deep_ami"]["one_draw_ci"] == ref
    assert d["ami_cp_ci"] == f["ami_cp"]["mean_ci"] == f["ami_cp"]["one_draw_ci"]


def test_two_draws_interval_holds_their_mean_and_the_target_share(draws):
    _, a, b, _ = draws
    res = rd.score([a, b], [FP], None, exclude=(), target=0.0)
    f = res["fingerprints"][0]
    vals = [d["ami_cp"] for d in f["per_draw"]]
    lo, hi = f["ami_cp"]["mean_ci"]
    assert lo <= np.mean(vals) <= hi and f["ami_cp"]["mean"] == pytest.approx(np.mean(vals), abs=1e-3)
    assert f["ami_cp"]["n_draws"] == 2 and f["ami_cp"]["n_families"] == 4
    met = [d["target_met"] for d in f["per_draw"]]
    assert met == [d["ami_cp"] >= 0.0 and d["noise_ami"] < 0.2 for d in f["per_draw"]]
    t = f["target_met"]
    assert t["hits"] == sum(met) and t["n"] == 2 and t["jeffreys_95"][0] <= t["share"] <= t["jeffreys_95"][1]
    assert [d["name"] for d in res["draws"]] == ["default", "aten-default"]


def test_zoos_of_another_config_or_other_seeds_are_refused_naming_the_culprit(draws):
    root, a, _, _ = draws
    slower = _sweep(root, "slower", TINY.replace("lr = 0.003", "lr = 0.001"))
    with pytest.raises(UserError, match=r"zoo '.*slower' is not a draw of zoo '.*default': config key 'train.lr' is 0.001 there and 0.003 here"):
        rd.check_draws([rd.open_zoo(a), rd.open_zoo(slower)])
    with pytest.raises(UserError, match="is given twice"):
        rd.check_draws([rd.open_zoo(a), rd.open_zoo(a)])
    seeds = _sweep(root, "seeds", TINY.replace("init = 4", "init = 3"))
    with pytest.raises(UserError, match=r"seeds' is not a draw .*config key 'seeds.init' is 3 there and 4 here"):
        rd.score([a, seeds], [FP], None, exclude=())


def test_unknown_or_clashing_arithmetic_is_refused_with_the_valid_names():
    assert rd.arithmetic_env("aten-avx2+mkl-compatible") == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}
    with pytest.raises(UserError, match=r"unknown arithmetic 'avx2' \(valid: aten-avx2, aten-avx512, aten-default, default"):
        rd.arithmetic_env("avx2")
    with pytest.raises(UserError, match="sets ATEN_CPU_CAPABILITY twice"):
        rd.arithmetic_env("aten-avx2+aten-default")


def test_a_second_fingerprint_gets_its_paired_gain_over_the_first(draws):
    _, a, b, _ = draws
    res = rd.score([a, b], [FP, "weight-stats"], None, exclude=())
    first, second = res["fingerprints"]
    assert "gain_over_first" not in first["ami_cp"]
    g = second["ami_cp"]["gain_over_first"]
    assert g["reference"] == FP
    assert g["mean"] == pytest.approx(second["ami_cp"]["mean"] - first["ami_cp"]["mean"], abs=2e-3)
    assert g["ci"][0] <= g["mean"] <= g["ci"][1]
