"""``fingerprint report --covariate COLUMN`` on a real zoo of modules: the setting's levels are taken out of
every fingerprint, the answer says what it is beyond, summary.json records how, the stored analysis is
not reused across covariates, and a column that cannot be taken out stops the command by name."""

from __future__ import annotations

import json

import torch
from torch import nn

from fingerprint import Zoo, pipeline
from tests.conftest import run_cli


def _zoo(path):
    """20 independent MLPs (every model its own init family); the "sgd" ones' weights scaled by 3, as a
    setting that moves every model alike would."""
    mods = []
    for i in range(20):
        torch.manual_seed(i)
        m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        if i % 2:
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(3.0)
        mods.append(m)
    g = torch.Generator().manual_seed(0)
    zoo = Zoo.from_modules(mods, path, probes={"in_dist": torch.randn(16, 6, generator=g)},
                     metadata={"init_seed": list(range(20)), "opt": ["adam", "sgd"] * 10, "run": [f"r{i}" for i in range(20)]},
                     model_ids=[f"m{i:02d}" for i in range(20)])
    pipeline.compute(zoo, ["weight-stats"])


def test_report_with_a_covariate_says_what_it_is_beyond_and_refuses_a_bad_column(tmp_path):
    _zoo(tmp_path / "zoo")
    args = ("--embedding", "pca", "--n-boot", "2", "--n-perm", "39")
    plain = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "a.html", "--json", tmp_path / "a.json", *args)
    assert plain.returncode == 0, plain.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    assert "--covariate opt" in a["label_free_answer"]["sentence"]
    res = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "b.html", "--json", tmp_path / "b.json", "--covariate", "opt", *args)
    assert res.returncode == 0, res.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["settings"]["covariates"] == ["opt"] and b["settings"]["covariate_terms"] == {"opt": "2 levels"}
    sentence = b["label_free_answer"]["sentence"]
    assert sentence.startswith("beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate; it "
                               "explained up to ") and "against about 5% by chance" in sentence
    assert "no candidate deep difference" in sentence
    page = " ".join((tmp_path / "b.html").read_text().split())
    assert "beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate; it" in page.replace("&#39;", "'")
    bad = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "c.html", "--covariate", "run", *args)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --covariate 'run' (20 levels): 19 terms for 20 models leave fewer than 4 to "
                                  "compare (a column with a value per model, such as an id, takes every model out); give "
                                  "a column of few levels, or numbers, which are taken out as a linear trend")
    assert not (tmp_path / "c.html").exists()
    unknown = run_cli("cluster", tmp_path / "zoo", "--covariate", "optimiser", *args[:2])
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown model column 'optimiser' for --covariate (valid: ")
    trend = run_cli("cluster", tmp_path / "zoo", "--covariate", "run:trend", *args[:2])
    assert trend.returncode == 2 and trend.stderr.strip() == (
        "error: --covariate run:trend: column 'run' does not hold numbers (such as 'r0'); a trend needs numbers, give "
        "--covariate run (its levels)")
