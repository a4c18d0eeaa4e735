"""A diverged run among imported checkpoints (finite weights x1e20: the checkpoint checks pass) and a
few bad checkpoints among good ones: refused by name at import, or left out with --skip-bad; at
extract the model is named first; a report says which fingerprints are missing and why, and names a
basin that is one outlier model (an outside audit's findings: docs/import.md, "Diverged models")."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
import torch

from analysis.results import FingerprintResult, lone_models
from fingerprint import Zoo, pipeline
from fingerprint.model_health import Health, outlier_note, outliers
from tests.conftest import run_cli, saved_models

ARCH = textwrap.dedent('''
    import torch
    from torch import nn


    def make():
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


    def probes():
        g = torch.Generator().manual_seed(0)
        return {"in_dist": torch.randn(32, 6, generator=g), "ood": 3 * torch.randn(32, 6, generator=g)}
''')
ARGS = ("--arch", "divarch:make", "--probes", "divarch:probes")


@pytest.fixture
def pop(tmp_path, monkeypatch):
    """Eight untrained models in ckpts/ (m0..m7) and a metadata CSV with a row for each."""
    saved_models(tmp_path, monkeypatch, "divarch", ARCH, 8)
    (tmp_path / "models.csv").write_text("model_id,family\n" + "".join(f"m{i},{i // 2}\n" for i in range(8)))
    return tmp_path


def _scale(path, factor):
    sd = torch.load(path, weights_only=True)
    torch.save({k: v * factor for k, v in sd.items()}, path)


def test_a_diverged_model_with_finite_weights_is_refused_by_name_and_nothing_written(pop):
    _scale(pop / "ckpts" / "m3.pt", 1e20)  # finite weights; outputs overflow to inf
    res = run_cli("import", pop / "ckpts", *ARGS, "--metadata", pop / "models.csv", "--out", pop / "zoo")
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line
    assert line.startswith("error: model 'm3': outputs on probe set 'in_dist' are inf/NaN (weights up to "), line
    assert "the population's median): a diverged run? remove it (and its CSV row); or pass --skip-bad to import the " \
           "other 7 (their CSV rows are then ignored)" in line
    assert not (pop / "zoo").exists() and not list(pop.glob(".zoo*"))


def test_skip_bad_imports_the_rest_names_every_refused_one_and_ignores_their_rows(pop):
    ck = pop / "ckpts"
    _scale(ck / "m3.pt", 1e20)
    sd = torch.load(ck / "m5.pt", weights_only=True)
    sd["0.weight"] = torch.zeros(9, 6)  # wrong shape
    torch.save(sd, ck / "m5.pt")
    sd = torch.load(ck / "m6.pt", weights_only=True)
    sd["2.bias"][0] = float("nan")
    torch.save(sd, ck / "m6.pt")
    res = run_cli("import", ck, *ARGS, "--metadata", pop / "models.csv", "--out", pop / "zoo", "--skip-bad")
    assert res.returncode == 1, res.stderr  # done in part: README's exit statuses
    assert res.stderr.strip() == (
        "warning: skipped 3 of 8 checkpoints (--skip-bad; their CSV rows ignored): m3.pt (outputs on probe set "
        "'in_dist' are inf/NaN); m5.pt (key '0.weight' has shape [9, 6], the architecture expects [8, 6]); m6.pt (key "
        "'2.bias' holds NaN or inf)")
    assert "imported 5 of 8 models" in res.stdout
    zoo = Zoo.open(pop / "zoo")
    assert zoo.model_ids == ["m0", "m1", "m2", "m4", "m7"]
    assert list(zoo.models["family"]) == [0, 0, 1, 2, 3]  # the kept models' rows, in their order
    # the zoo records the refused ones, so that the report names them (an outside audit, 73: no trace of them)
    assert zoo.manifest["refused"] == [
        {"model": "m3.pt", "reason": "outputs on probe set 'in_dist' are inf/NaN"},
        {"model": "m5.pt", "reason": "key '0.weight' has shape [9, 6], the architecture expects [8, 6]"},
        {"model": "m6.pt", "reason": "key '2.bias' holds NaN or inf"}]
    page = pipeline.report(zoo, pop / "r.html", pop / "s.json", ["weight-stats"], n_boot=0, embedding="pca").read_text()
    assert "<b>Left out at import</b>" in page and "<code>m5.pt</code>: key &#39;0.weight&#39; has shape" in page
    assert [m["model"] for m in json.loads((pop / "s.json").read_text())["provenance"]["refused_at_import"]] == [
        "m3.pt", "m5.pt", "m6.pt"]
    # without --skip-bad, the same directory names all three in one error
    res = run_cli("import", ck, *ARGS, "--out", pop / "zoo2")
    assert res.returncode == 2 and "(and 2 more checkpoints refused: m5.pt, m6.pt); or pass --skip-bad" in res.stderr
    assert not (pop / "zoo2").exists()


def test_skip_bad_with_every_checkpoint_bad_is_refused(pop):
    for f in (pop / "ckpts").glob("*.pt"):
        _scale(f, 1e20)
    res = run_cli("import", pop / "ckpts", *ARGS, "--out", pop / "zoo", "--skip-bad")
    assert res.returncode == 2 and res.stderr.rstrip().endswith("; every checkpoint was refused"), res.stderr
    assert not (pop / "zoo").exists()


def test_a_finite_extreme_outlier_is_imported_with_a_warning_naming_it(pop):
    _scale(pop / "ckpts" / "m2.pt", 100.0)  # largest weight 100x the others': outputs ~1e4x, finite
    res = run_cli("import", pop / "ckpts", *ARGS, "--out", pop / "zoo")
    assert res.returncode == 0, res.stderr
    warn = res.stderr.strip()
    assert warn.startswith("warning: model 'm2' (weights up to ") and "\n" not in warn, warn
    assert re.search(r"\(weights up to [0-9.e+]+, \d+x the population's median; outputs up to [0-9.e+]+, 1e\d+x the "
                     r"population's median\) is an extreme outlier", warn), warn
    assert warn.endswith("is an extreme outlier against the population: a diverged run? Imported all the same (a "
                         "population can hold a real outlier); check it, and remove any run that blew up")
    assert len(Zoo.open(pop / "zoo")) == 8


def test_a_healthy_population_imports_without_a_word(pop):
    res = run_cli("import", pop / "ckpts", *ARGS, "--metadata", pop / "models.csv", "--out", pop / "zoo")
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_the_outlier_rule_needs_ten_times_and_ten_mads():
    import numpy as np

    spread = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])  # largest weights of a healthy population
    assert not outliers(spread).any()
    assert not outliers(np.append(spread, 9.0)).any()  # 7x the median: not an outlier
    assert outliers(np.append(spread, 40.0)).tolist() == [False] * 6 + [True]  # 31x and 16 MADs
    wide = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5])  # a wide spread: 16x the median is 5.6 MADs only
    assert not outliers(np.append(wide, 40.0)).any()
    assert not outliers(np.array([1.0, 1.0, 50.0])).any()  # too few models to speak of a population
    h = Health(np.append(spread, 40.0), np.full(7, np.nan), {})
    assert outlier_note([f"m{i}" for i in range(7)], h).startswith("model 'm6' (weights up to 4.0e+01, 31x the population's median)")


def test_extract_names_the_model_and_report_says_what_is_missing(pop):
    import divarch

    mods = []
    for i in range(8):  # Zoo.from_modules runs no probes: a zoo that holds the diverged model
        m = divarch.make()
        m.load_state_dict(torch.load(pop / "ckpts" / f"m{i}.pt", weights_only=True))
        mods.append(m)
    with torch.no_grad():
        for p in mods[3].parameters():
            p.mul_(1e20)
    tmp_path = pop
    Zoo.from_modules(mods, tmp_path / "zoo", probes=divarch.probes(), metadata={"family": [i // 2 for i in range(8)]},
                     model_ids=[f"m{i}" for i in range(8)], factory="divarch:make")
    res = run_cli("extract", tmp_path / "zoo", "--fp", "probe-outputs", "--fp", "weight-stats", "--arch", "divarch:make")
    assert res.returncode == 1
    err = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert err == ["error: model 'm3' gives NaN/inf values in fingerprint 'probe-outputs': a diverged run (weights so "
                   "large its outputs overflow)? It is the model, not the extractor: leave it out of the zoo (`fingerprint "
                   "import --skip-bad` refuses models whose outputs are not finite; docs/import.md)"], res.stderr
    rec = json.loads((tmp_path / "zoo" / "results" / "extraction_failures.json").read_text())
    assert [f["spec"] for f in rec["failures"]] == ["probe-outputs"]
    res = run_cli("report", tmp_path / "zoo", "-o", tmp_path / "r.html", "--json", tmp_path / "s.json", "--lineage",
                  "family", "--embedding", "pca", "--n-boot", "2", "--n-perm", "20")
    assert res.returncode == 0, res.stderr
    assert "warning: not in this report: probe-outputs (its extraction failed; model 'm3' gives NaN/inf" in res.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert [m["fingerprint"] for m in s["not_in_report"]] == ["probe-outputs"]
    assert "Not in this report" in (tmp_path / "r.html").read_text()
    # once the fingerprint is computed for this population, the record forgets it
    run_cli("extract", tmp_path / "zoo", "--fp", "weight-stats", "--arch", "divarch:make")
    record = tmp_path / "zoo" / "results" / "extraction_failures.json"
    assert [f["spec"] for f in json.loads(record.read_text())["failures"]] == ["probe-outputs"]
    # a spec written wrong is never computed later: the record is dropped on request (outside audit 117)
    res = run_cli("extract", tmp_path / "zoo", "--forget-failed")
    assert res.returncode == 0 and "dropped the record of 1 failed extraction: probe-outputs" in res.stdout, res.stdout
    assert json.loads(record.read_text())["failures"] == []
    # an extraction in which every fingerprint fails is refused with nothing done (exit 2): nothing recorded
    res = run_cli("extract", tmp_path / "zoo", "--fp", "probe-outputs", "--arch", "divarch:make")
    assert res.returncode == 2 and json.loads(record.read_text())["failures"] == []
    # ... but a failure recorded already keeps today's reason, not an older one (review 119)
    record.write_text(json.dumps({"failures": [{**rec["failures"][0], "error": "an older reason"}]}))
    res = run_cli("extract", tmp_path / "zoo", "--fp", "probe-outputs", "--arch", "divarch:make")
    (now,) = json.loads(record.read_text())["failures"]
    assert res.returncode == 2 and now["key"] == rec["failures"][0]["key"] and now["error"] == rec["failures"][0]["error"]


def test_one_basin_and_an_outlier_is_named_but_several_basins_with_a_small_one_are_not():
    ids = [f"m{i}" for i in range(20)]
    r = FingerprintResult("weight-stats", n_models=20, model_ids=ids, clusters=[0] * 13 + [1] + [0] * 6)
    assert lone_models(r) == ["m13"]
    r = FingerprintResult("weight-stats", n_models=20, model_ids=ids, clusters=[0] * 10 + [1] * 9 + [2])
    assert lone_models(r) == []
    r = FingerprintResult("weight-stats", n_models=20, model_ids=ids, clusters=[0] * 10 + [1] * 10)
    assert lone_models(r) == []


def test_outliers_that_are_a_candidate_s_smaller_camp_are_not_called_outliers():
    """An outside audit (eighteenth session): 4 memorizers among 24, the label-free answer's smaller camp,
    were also named "an outlier, not a basin? ... report without it" on fingerprints whose clusters set one of
    them alone: following it would remove the difference. Such models are no outlier line; others still are."""
    from types import SimpleNamespace

    from analysis.results import lone_sentences

    ids = [f"m{i}" for i in range(24)]
    few = [1, 7, 13, 19]
    r = FingerprintResult("aligned-weights", n_models=24, model_ids=ids, clusters=[int(i == 7) for i in range(24)])
    r2 = FingerprintResult("weight-stats", n_models=24, model_ids=ids, clusters=[int(i == 7) for i in range(24)])
    assert lone_sentences(SimpleNamespace(fingerprints=[r])) == []  # one fingerprint's extreme: no line (audit 116)
    result = SimpleNamespace(fingerprints=[r, r2])  # their clusters: one of the four alone, and the rest
    assert lone_models(r) == ["m7"] and len(lone_sentences(result)) == 1
    camp = SimpleNamespace(basins={m: int(i in few) for i, m in enumerate(ids)})
    assert lone_sentences(result, SimpleNamespace(candidates=[camp])) == []
    other = SimpleNamespace(basins={m: int(i in (2, 3, 4, 5)) for i, m in enumerate(ids)})
    assert len(lone_sentences(result, SimpleNamespace(candidates=[other]))) == 1


def test_the_missing_line_gives_the_reasons_of_the_first_three():
    """Outside audit 117: with several failed fingerprints the warning gave the first one's reason only."""
    from fingerprint.cli.display import missing_line

    missing = [{"fingerprint": f"fp{i}", "error": f"reason {i}"} for i in range(4)]
    assert missing_line(missing) == (
        "not in this report: fp0, fp1, fp2, fp3 (their extraction failed; fp0: reason 0; fp1: reason 1; fp2: reason 2; "
        "1 more in summary.json's not_in_report); `fingerprint extract` again once fixed, or `fingerprint extract ZOO "
        "--forget-failed` to drop a spec written wrong from the record")
