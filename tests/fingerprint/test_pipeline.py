"""fingerprint.pipeline: the notebook API is the CLI's pipeline (same files, same numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fingerprint import pipeline
from tests.conftest import run_cli
from training.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = """
[fingerprints]
names = ["ood-outputs", "weight-stats"]

[analysis]
embedding = "pca"
n_boot = 4
n_perm = 19
n_family_boot = 20
"""


@pytest.fixture
def run_config(tmp_path: Path, tiny_config) -> Path:
    """The tiny sweep (conftest) with [fingerprints] and [analysis] sections that keep a run short."""
    p = tmp_path / "run.toml"
    p.write_text(tiny_config(mpb=8).read_text() + SECTIONS)
    return p


def test_readme_notebook_example_runs_and_matches_fingerprint_run(tmp_path, run_config):
    """The README's notebook block, verbatim but for the config, writes what `fingerprint run` writes."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- notebook-example -->")[1].split("```python\n")[1].split("```")[0]
    assert '"xor-cues-quick"' in block
    block = block.replace('"xor-cues-quick"', repr(str(run_config)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the block runs as a script in its own interpreter while `fingerprint run` runs in this process:
    # one core each, side by side
    nb_proc = subprocess.Popen([sys.executable, "-c", block], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        cli = run_cli("run", run_config, "-o", tmp_path / "cli", cwd=tmp_path)
        out, err = nb_proc.communicate(timeout=600)
    finally:
        nb_proc.kill()
    assert nb_proc.returncode == 0, err
    assert "ood-outputs" in out and "weight-stats" in out
    nb = json.loads((tmp_path / "runs/xor/summary.json").read_text())
    assert cli.returncode == 0, cli.stderr
    ref = json.loads((tmp_path / "cli/summary.json").read_text())
    keep = ("fingerprint", "n_clusters", "deep_ami", "noise_ami", "verdict", "label_free_verdict")
    assert [{k: r[k] for k in keep} for r in nb["scorecard"]] == [{k: r[k] for k in keep} for r in ref["scorecard"]]
    assert (tmp_path / "cli/report.html").exists() and (tmp_path / "runs/xor/report.html").exists()


def test_run_config_checks_every_section_before_training(tmp_path, run_config):
    RUN = run_config.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(RUN.replace('names = ["ood-outputs", "weight-stats"]', 'names = ["ood-outputs", "ood-outputs"]'))
    with pytest.raises(UserError, match="'fingerprints.names' lists 'ood-outputs' twice"):
        pipeline.RunConfig.load(bad)
    bad.write_text(RUN.replace('embedding = "pca"', 'embedding = "tsne"'))
    with pytest.raises(UserError, match="analysis.embedding"):  # analysis/'s ValueError, as a one-line error
        pipeline.RunConfig.load(bad)
    bad.write_text(RUN.replace('n_boot = 4', 'n_boot = "four"'))
    with pytest.raises(UserError, match="config key 'analysis.n_boot' must be int"):  # the one validator
        pipeline.RunConfig.load(bad)
    assert not (tmp_path / "zoo").exists()


class Recorder(pipeline.Progress):
    def __init__(self):
        self.events = []

    def stage(self, index, total, title, detail=""):
        self.events.append(("stage", index, title))

    def shard_finished(self, n_models):
        self.events.append(("shard", n_models))

    def extracted(self, results):
        self.events.append(("extracted", len(results)))


def test_run_reports_progress_and_resume_reuses_everything(tmp_path, run_config):
    cfg = pipeline.RunConfig.load(run_config)
    rec = Recorder()
    result = pipeline.run(cfg, tmp_path / "r", progress=rec)
    stages = [e for e in rec.events if e[0] == "stage"]
    assert stages == [("stage", 1, "sweep"), ("stage", 2, "fingerprints"), ("stage", 3, "basins and scorecard")]
    assert sum(e[1] for e in rec.events if e[0] == "shard") == len(pipeline.open_zoo(tmp_path / "r" / "zoo"))
    assert ("extracted", 2) in rec.events
    again = pipeline.run(cfg, tmp_path / "r", resume=True)  # nothing to train, fingerprints cached, analysis stored
    assert again.to_dict()["scorecard"] == json.loads(json.dumps(result.to_dict()["scorecard"], default=str))
    # an [analysis] column the trained table lacks stops the run before any fingerprint is extracted (review 92)
    bad = tmp_path / "bad.toml"
    bad.write_text(run_config.read_text().replace('embedding = "pca"', 'embedding = "pca"\ncovariates = ["optimiser"]'))
    rec = Recorder()
    with pytest.raises(UserError, match="unknown model column 'optimiser' for --covariate"):
        pipeline.run(pipeline.RunConfig.load(bad), tmp_path / "bad", progress=rec)
    assert ("stage", 2, "fingerprints") not in rec.events and not (tmp_path / "bad" / "zoo" / "fingerprints").exists()


def test_the_notebook_api_on_modules_held_in_memory(tmp_path):
    """Issue 21 item 4: `import fingerprint` is the whole pipeline, on a Zoo.from_modules without out=."""
    import numpy as np
    import torch

    import fingerprint

    assert {"pipeline", "run", "RunConfig", "scorecard", "report", "cluster", "Zoo", "extract"} <= set(dir(fingerprint))
    g = torch.Generator().manual_seed(0)
    mods, fam = [], []
    for i in range(16):
        torch.manual_seed(i // 4)  # 4 families of 4 near-copies
        m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        mods.append(m)
        fam.append(f"f{i // 4}")
    zoo = fingerprint.Zoo.from_modules(mods, metadata={"family": fam}, probes={"ood": 3 * torch.randn(32, 4, generator=g)})
    res = fingerprint.scorecard(zoo, ["ood-outputs", "weight-stats"], lineage="family", embedding="pca", n_boot=2,
                                n_perm=19, n_family_boot=20)
    assert isinstance(res, fingerprint.AnalysisResult)
    assert [r.fingerprint for r in res.scorecard] == ["ood-outputs", "weight-stats"]
    assert all(r.verdict == "no ground truth" for r in res.scorecard)
    html = fingerprint.report(zoo, tmp_path / "r.html", tmp_path / "s.json", ["ood-outputs", "weight-stats"],
                              lineage="family", embedding="pca", n_boot=2, n_perm=19, n_family_boot=20)
    assert html.exists() and json.loads((tmp_path / "s.json").read_text())["scorecard"]
    fit = fingerprint.cluster(np.r_[np.zeros((8, 2)), np.full((8, 2), 5.0)] + 0.01 * np.arange(16)[:, None], method="kmeans")
    assert fit.n_clusters_ == 2 and len(set(fit.labels_[:8])) == 1
    with pytest.raises(fingerprint.UserError, match="unknown model column 'nope' for --lineage"):
        fingerprint.scorecard(zoo, ["ood-outputs"], lineage="nope")


def test_a_run_with_a_forecast_section_reports_the_forecast_and_the_selection(tmp_path, run_config):
    """Issue 21 item 6: `run` (and so `demo`) forecasts, selects, and the report shows both, with figures."""
    base = run_config.read_text()
    cfg = tmp_path / "forecast.toml"
    # the tiny grid ends in one basin (nothing to select): the data order is the label here, 4 families of 2
    cfg.write_text(base.replace("[analysis]\n", '[analysis]\nlabel = "data_seed"\n')
                   + '\n[forecast]\nfingerprints = ["weight-stats"]\nbasin = "1"\nat_step = 10\ncalibration = 0.5\n')
    basin = "1"
    out = tmp_path / "r"
    rec = Recorder()
    pipeline.run(pipeline.RunConfig.load(cfg), out, progress=rec)
    assert ("stage", 4, "forecast and selection") in rec.events
    page = (out / "report.html").read_text()
    assert "<h2>Forecast and selection</h2>" in page and 'id="fig-forecast"' in page
    assert f"Selection: basin <code>{basin}</code> at step 10" in page and "purity (measured on the continued models" in page
    s = json.loads((out / "summary.json").read_text())
    (sel,) = s["selections"]
    assert sel["basin"] == basin and sel["at_step"] == 10 and sel["n_pool"] + sel["n_calibration"] == 8
    assert sel["model_steps_used"] == 8 * 10 + (sel["n_calibration"] + sel["n_selected"]) * 30  # steps 10 -> 40
    assert {p["step"] for p in s["forecast"]} >= {0, 10, 20}
    assert (out / "figures" / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "figures" / f"select-{basin.replace('_', '-')}-10.pdf").read_bytes()[:5] == b"%PDF-"
    if sel["n_selected"]:
        assert pipeline.open_zoo(out / "selected").model_ids  # the continued seeds


def test_a_run_whose_population_has_nothing_to_select_says_so_and_reports(tmp_path, run_config):
    """Outside audit 124 (F8): a one-basin population trained a "selection" of every seed. `select` refuses it; a run's
    [forecast] section skips the selection with a warning, and the run's report is written."""
    cfg = tmp_path / "one.toml"
    cfg.write_text(run_config.read_text() + '\n[forecast]\nfingerprints = ["weight-stats"]\nbasin = "mixed"\nat_step = 10\n')
    with pytest.warns(UserWarning, match=r"no selection: one final basin \('mixed'\) of deep_label: nothing to select"):
        pipeline.run(pipeline.RunConfig.load(cfg), tmp_path / "r")
    assert (tmp_path / "r" / "report.html").exists() and not (tmp_path / "r" / "selected").exists()


def test_analysis_options_takes_a_run_configs_options_and_names_unknown_overrides():
    """``analysis_options(cfg.analysis, k=3)`` (an outside audit's notebook call) re-validates options
    that are already ``AnalysisOptions``; a misspelt override is a one-line error listing the valid ones."""
    cfg = pipeline.RunConfig.load("xor-cues-quick")
    assert pipeline.analysis_options(cfg.analysis, k=3).k == 3
    assert pipeline.analysis_options(cfg.analysis).method == cfg.analysis.method
    assert pipeline.analysis_options({"k": 2}).k == 2
    with pytest.raises(UserError, match=r"unknown analysis option 'kk' \(valid: alpha, .*k, k_max"):
        pipeline.analysis_options(cfg.analysis, kk=3)
    with pytest.raises(UserError, match="analysis.k"):
        pipeline.analysis_options(cfg.analysis, k=-3)
