"""The probe search: calibration of the cross-fit on synthetic arrays, and the command on a tiny zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.probesearch import camp_scores, cross_fit
from tests.conftest import run_cli


def population(rng, planted: float = 0.0, F: int = 16, m: int = 4, N: int = 400, frac: float = 0.1):
    """Outputs [F*m, N, 2]: unimodal family effects (init noise) plus members' noise; with ``planted``,
    a camp of half the families shifted on the first ``frac`` of the candidates (a deep difference)."""
    fam = np.repeat(np.arange(F), m)
    y = rng.normal(0, 1.0, (F, N, 2))[fam] + rng.normal(0, 0.7, (F * m, N, 2))
    camp = rng.permutation(F) < F // 2
    y[:, : int(frac * N), 0] += planted * camp[fam][:, None]
    return y, fam, camp


def test_camp_scores_find_the_planted_split():
    rng = np.random.default_rng(0)
    y, fam, camp = population(rng, planted=6.0)
    cs = camp_scores(y, fam)
    assert cs.score[:40].mean() > 3 * cs.score[40:].mean()
    low = cs.low_camp[:, int(np.argmax(cs.score[:40]))]
    camp = camp[[int(f) for f in cs.families]]  # families come back in sorted (string) order
    assert (low == camp).all() or (low == ~camp).all()


def test_cross_fit_keeps_planted_camps_and_not_null_ones():
    rng = np.random.default_rng(1)
    for s in range(3):
        y, fam, _ = population(rng, planted=5.0)
        fit = cross_fit(y, fam, keep=16, seed=s)
        assert len(fit.kept) >= 8 and all(c < 40 for c in fit.kept[:8])
    false = sum(bool(cross_fit(population(rng)[0], np.repeat(np.arange(16), 4), keep=16, seed=s).kept) for s in range(20))
    assert false <= 1  # <= 5% of 20 null populations


def test_too_few_families_is_an_error():
    with pytest.raises(AnalysisError, match=">= 8 init families"):
        cross_fit(np.zeros((12, 100, 2)), np.repeat(np.arange(6), 2))


SMALL = """
name = "small"
[task]
name = "xor-cues"
n_train = 128
n_test = 64
n_probes = 32
[model]
arch = "mlp"
width = 8
depth = 1
[train]
steps = 40
batch_size = 32
lr = 0.05
checkpoints = [20]
[seeds]
init = 8
data = 2
"""


def test_command_runs_and_writes_its_result(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    zoo = tmp_path / "zoo"
    assert run_cli("sweep", cfg, "--out", zoo).returncode == 0  # the entry point in this process (run_cli)
    bad = run_cli("probe-search", zoo, "--from", "nope")
    assert bad.returncode == 2 and "valid: " in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = run_cli("probe-search", zoo, "--lineage", "nope")
    assert bad.returncode == 2 and "init_seed" in bad.stderr
    res = run_cli("probe-search", zoo, "--n-candidates", "256", "--keep", "8")
    assert res.returncode == 0, res.stderr
    summary = json.loads((zoo / "results" / "probe_search.json").read_text())
    assert summary["candidates_scored"] == 256 and summary["n_families"] == 8 and len(summary["tested"]) == 16
    cached = [json.loads(__import__("h5py").File(p, "r").attrs["meta"]) for p in (zoo / "fingerprints").glob("*.h5")]
    if summary["kept"]:
        assert any(m["spec"] == "probe-search" and m["uses_lineage"] == "init_seed" for m in cached)
    else:
        assert "no replicated camps" in res.stdout and "inside the families" in res.stdout and not cached
