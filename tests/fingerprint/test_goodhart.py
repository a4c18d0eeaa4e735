"""`fingerprint goodhart` end to end on the tiny session zoo: the JSON contract, its bounds, and the
lambda = 0 / no-training rows reproducing the plain detector."""

from __future__ import annotations

import json
import subprocess

import pytest

from fingerprint import Zoo
from fingerprint.goodhart import goodhart
from tests.conftest import run_cli
from training.core.errors import UserError


def cli(*args) -> subprocess.CompletedProcess:
    return run_cli("goodhart", *args, env={"COLUMNS": "200"})


def test_goodhart_json_contract_and_the_untrained_rows_equal_the_plain_detector(tiny_zoo, tmp_path):
    out = tmp_path / "g.json"
    res = cli(tiny_zoo, "--fp", "ood-outputs", "--basin", "mixed", "--steps", "0", "--lambdas", "0,1",
              "--n-boot", "20", "--json", out)
    assert res.returncode == 0, res.stderr
    assert "selection pressure" in res.stdout and "optimization pressure" in res.stdout
    r = json.loads(out.read_text())
    assert r == Zoo.open(tiny_zoo).load_result("goodhart")  # stored for the report too
    assert {"selection", "optimization", "detector", "basin", "fingerprint"} <= set(r)
    assert r["n_fit"] + r["n_heldout"] == 24 and r["fit_families"] + r["heldout_families"] == 4
    keeps = [s["keep"] for s in r["selection"]]
    assert keeps == sorted(keeps, reverse=True) and keeps[0] == 1.0 and {0.5, 0.2, 0.05, 0.01} <= set(keeps)
    for s in r["selection"]:
        assert {"keep", "purity", "looks_only", "n_selected"} <= set(s)
        assert 1 <= s["n_selected"] <= r["n_heldout"]
        assert 0 <= s["looks_only"] <= 1 - s["purity"] + 1e-9  # looks-only models are among the impure ones
    assert r["selection"][0]["n_selected"] == r["n_heldout"]
    assert abs(r["selection"][0]["purity"] - r["detector"]["base_rate"]) < 1e-9
    assert [p["lambda"] for p in r["optimization"]] == [0.0, 1.0]
    for p in r["optimization"]:
        assert {"lambda", "detector_says", "truly", "evasion"} <= set(p)
        assert p["n_models"] == r["n_heldout"]
        # nothing trained: every lambda leaves the plain detector's share, and the task's own
        # diagnostics on the stored weights give back the zoo's deep_label share
        assert abs(p["detector_says"] - r["detector"]["says_basin"]) < 1e-9
        assert abs(p["truly"] - r["detector"]["base_rate"]) < 1e-9
        assert 0 <= p["evasion"] <= min(p["detector_says"], 1 - p["truly"]) + 1e-9


def test_an_unknown_basin_is_one_line_naming_the_valid_ones(tiny_zoo):
    with pytest.raises(UserError) as e:
        goodhart(Zoo.open(tiny_zoo), "ood-outputs", "rule_c")
    assert str(e.value) == "unknown basin 'rule_c' for --basin (valid: mixed, rule_a)"


def test_a_fingerprint_of_weights_cannot_be_trained_against(tiny_zoo):
    with pytest.raises(UserError, match="reads the models' .*probe-outputs, ood-outputs") as e:
        goodhart(Zoo.open(tiny_zoo), "weight-stats", "mixed")
    assert "\n" not in str(e.value)


def test_a_replaced_result_and_a_detector_near_chance_are_said(tiny_zoo):
    """Outside audit 124 (F9): a detector of cross-validated AUROC 0.22 ran to the end with "evasion 0%" and nothing
    said; the next basin's run replaced the stored result silently. Both are warnings now."""
    import warnings

    zoo = Zoo.open(tiny_zoo)
    goodhart(zoo, "ood-outputs", "mixed", lambdas=[0.0], steps=0, keeps=[1.0], n_boot=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = goodhart(zoo, "ood-outputs", "rule_a", lambdas=[0.0], steps=0, keeps=[1.0], n_boot=5)
    said = [str(w.message) for w in caught]
    assert any("replaces the stored goodhart result of basin 'mixed' on ood-outputs" in m for m in said), said
    skill = [v for v in (r["detector"]["cv_auroc"], r["detector"]["heldout_auroc"]) if v is not None]
    assert any("barely tells the basin" in m for m in said) == bool(skill and min(skill) < 0.6)
