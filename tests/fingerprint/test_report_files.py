"""Where a report's figures go: each report its own directory (``figures/`` beside ``report.html``,
``NAME-figures/`` beside ``NAME.html``), replaced as a whole, so two reports in one directory never
mix their figures and none of an earlier report's stay; a directory a report did not write is
refused before anything is analysed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
from torch import nn

import fingerprint
from fingerprint import Zoo
from fingerprint.pipeline import figures_dir, publish_figures
from tests.conftest import run_cli
from training.core.files import _tmp_prefix

FAST = ("--embedding", "pca", "--n-boot", "4", "--n-perm", "20")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("figs")
    torch.manual_seed(0)
    mods = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(8)]
    zoo = Zoo.from_modules(mods, out=root / "zoo", metadata={"family": [i // 2 for i in range(8)]},
                           probes={"in_dist": torch.randn(16, 4, generator=torch.Generator().manual_seed(1))})
    assert all(r.error is None for r in fingerprint.extract(zoo, ["probe-outputs", "weight-stats"]))
    return root


def report(small, out, *fps):
    res = run_cli("report", small / "zoo", "-o", out, "--lineage", "family", *FAST, *[a for f in fps for a in ("--fp", f)],
                  env={"COLUMNS": "400"})
    return res, " ".join(res.stdout.split()), " ".join(res.stderr.split())


def stems(d):
    return {p.name.rsplit("-", 1)[0] for p in d.iterdir()}


def test_figures_dir_is_named_after_the_report():
    assert figures_dir("runs/x/report.html").as_posix() == "runs/x/figures"  # a run directory's layout, unchanged
    assert figures_dir("runs/x/nolin.html").as_posix() == "runs/x/nolin-figures"


def test_a_second_report_replaces_its_own_figures_whole_and_never_touches_another_reports(small, tmp_path):
    res, out, _ = report(small, tmp_path / "report.html", "probe-outputs", "weight-stats")
    assert res.returncode == 0, res.stderr
    assert f"report: {tmp_path / 'report.html'} (figures in {tmp_path / 'figures'})" in out, res.stdout
    first = {p.name for p in (tmp_path / "figures").iterdir()}
    assert any(n.startswith("probe-outputs-") for n in first) and any(n.startswith("weight-stats-") for n in first)
    # another report in the same directory: its own figures directory, the first one's untouched
    res, out, _ = report(small, tmp_path / "nolin.html", "weight-stats")
    assert res.returncode == 0, res.stderr
    assert f"(figures in {tmp_path / 'nolin-figures'})" in out, res.stdout
    assert {p.name for p in (tmp_path / "figures").iterdir()} == first
    assert {p.name for p in (tmp_path / "nolin-figures").iterdir()} and \
        not any(p.name.startswith("probe-outputs-") for p in (tmp_path / "nolin-figures").iterdir())
    # the same report again, with one fingerprint fewer: no figure of the first run stays (nor a file browser's)
    (tmp_path / "figures" / ".DS_Store").write_bytes(b"")
    res, _, _ = report(small, tmp_path / "report.html", "weight-stats")
    assert res.returncode == 0, res.stderr
    again = {p.name for p in (tmp_path / "figures").iterdir()}
    assert again and not any(n.startswith("probe-outputs-") for n in again)
    assert again == {p.name for p in (tmp_path / "nolin-figures").iterdir()}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_figures_directory_with_files_a_report_did_not_write_is_refused_before_analysis(small, tmp_path):
    figs = tmp_path / "mine-figures"
    figs.mkdir()
    (figs / "notes.txt").write_text("mine")
    (figs / "plot.png").write_bytes(b"png")
    res, _, err = report(small, tmp_path / "mine.html", "weight-stats")
    assert res.returncode == 2 and not (tmp_path / "mine.html").exists()
    assert (f"error: refusing to replace '{figs}', where the report's figures go: it holds 'notes.txt', which is not a "
            "report's figure (PNG or PDF); move it or write the report (-o) elsewhere") in err, res.stderr
    assert sorted(p.name for p in figs.iterdir()) == ["notes.txt", "plot.png"]
    res = run_cli("report", small / "zoo", "-o", tmp_path / "r.html", "--json", tmp_path / "r-figures" / "s.json", *FAST)
    assert res.returncode == 2 and "it contains the --json output" in " ".join(res.stderr.split()), res.stderr


def test_when_every_verdict_is_too_few_the_hint_names_the_columns_that_could_be_the_lineage(small):
    """An import's init_seed is -1 for every model: one family, every label-free verdict 'too few';
    the line says which of the zoo's own columns could name init families (at least 4 groups)."""
    res = run_cli("cluster", small / "zoo", "--fp", "weight-stats", *FAST, env={"COLUMNS": "400"})
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "lineage: every label-free verdict is 'too few': insufficient" in out, res.stdout
    assert "; the zoo's model column that could be --lineage: family (4 values)" in out, res.stdout
    res = run_cli("cluster", small / "zoo", "--fp", "weight-stats", "--lineage", "family", *FAST, env={"COLUMNS": "400"})
    assert res.returncode == 0 and "every label-free verdict is 'too few'" not in " ".join(res.stdout.split())


def test_lineage_candidates_leave_out_core_columns_measurements_and_columns_that_do_not_group(tmp_path):
    from fingerprint.cli.display import lineage_candidates

    mods = [nn.Linear(2, 2) for _ in range(8)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "zoo", metadata={
        "seed": [i // 2 for i in range(8)], "order": [i % 2 for i in range(8)], "acc": [0.5 + i / 100 for i in range(8)],
        "name": [f"n{i}" for i in range(8)], "epochs": [10.0, 20.0, 30.0, 40.0] * 2, "rule": ["a", "b"] * 4})
    assert lineage_candidates(zoo) == {"seed": 4, "epochs": 4}
    assert lineage_candidates(zoo, {"seed"}) == {"epochs": 4}
    assert lineage_candidates(zoo, singletons=True) == {"name": 8}  # every model its own (the tenth audit's family)
    from analysis.results import AnalysisResult, FingerprintResult
    from fingerprint.cli.display import insufficient_hint

    too_few = FingerprintResult("weight-stats", n_models=8, model_ids=[], clusters=[],
                                label_free={"verdict": "insufficient", "sentence": "insufficient: 1 init family"})
    alone = Zoo.from_modules(mods, out=tmp_path / "alone", metadata={"name": [f"n{i}" for i in range(8)]})
    hint = insufficient_hint(AnalysisResult(1, 0.0, {}, 8, scorecard=[], fingerprints=[too_few]), alone)
    assert hint.endswith("'name' gives every model its own: --lineage name tests whether the models fall into groups, "
                         "not whether their seed decided them"), hint


def test_a_measurement_stored_as_text_is_not_offered_as_a_lineage_column():
    """A float column with a blank is stored as text; it is still a measurement (an outside audit saw
    `follows_a` offered as --lineage), while integer-like or named values stay candidates."""
    from fingerprint.cli.display import _measurement

    assert _measurement(["0.93", "", "0.5", "1"])
    assert not _measurement(["1", "2", "", "3"]) and not _measurement(["seed-0", "seed-1"])


def test_a_killed_reports_figures_temporaries_are_removed_by_the_next_report_and_a_live_ones_kept(tmp_path):
    figs = tmp_path / "figures"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a writer that is gone (killed with kill -9 mid-write) left a half-built directory
    orphan = tmp_path / _tmp_prefix(figs).replace(f"-{os.getpid()}.", f"-{dead.pid}.")
    live = tmp_path / (_tmp_prefix(figs) + "abc.tmp")  # this process's: another report still writing
    (orphan := orphan.with_name(orphan.name + "xyz.tmp")).mkdir()
    (orphan / "a.png").write_bytes(b"half")
    live.mkdir()
    publish_figures(figs, {"b.png": b"png"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "figures"])
    assert [p.name for p in figs.iterdir()] == ["b.png"]
    publish_figures(figs, {"c.png": b"png"})  # replacing an existing directory leaves no temporary either
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "figures"])
    assert [p.name for p in figs.iterdir()] == ["c.png"]


def test_a_fingerprint_that_cannot_be_computed_is_named_once_and_the_others_are_still_analysed(small, tmp_path):
    shutil.copytree(small / "zoo", tmp_path / "zoo")  # cluster stores its result in the zoo
    res = run_cli("cluster", tmp_path / "zoo", "--fp", "cka:layer=gru", *FAST)
    err = " ".join(res.stderr.split())
    assert res.returncode == 2, res.stdout
    assert "error: zoo" in err and "nothing to analyse: cka:layer=gru could not be computed (above)" in err
    assert "no cached fingerprint" not in err  # not a second, contradicting reason
    res = run_cli("cluster", tmp_path / "zoo", "--fp", "cka:layer=gru", "--fp", "weight-stats", "--lineage", "family", *FAST,
                  env={"COLUMNS": "400"})
    out, err = " ".join(res.stdout.split()), " ".join(res.stderr.split())
    assert res.returncode == 1, res.stderr  # partial: the other fingerprint analysed, the failure named
    assert "failed: cka:layer=gru: zoo" in err and "too few" not in out.split("scorecard:")[1].split("k: basins")[0]
    res = run_cli("cluster", tmp_path / "zoo", "--fp", "cka:layer=gru", "--fp", "probe-outputs:probe_set=nope", "--fp",
                  "weight-stats", "--lineage", "family", *FAST, env={"COLUMNS": "400"})
    err = " ".join(res.stderr.split())
    assert res.returncode == 1, res.stderr  # two failures, each named with its own reason, not both reasons joined
    for spec in ("cka:layer=gru", "probe-outputs:probe_set=nope"):
        line = err.split(f"failed: {spec}: ")[1].split("failed:")[0]
        assert line.count("was built from in-memory modules") == 1, err


def test_at_80_columns_the_scorecard_keeps_each_q_whole_and_the_legend_every_word(small, tmp_path):
    """A log file is 80 columns wide: the label-free q goes on a line of its own rather than being cut
    (``q 0.00`` read as zero), and the legend is wrapped, not cut at the table's edge."""
    res = run_cli("report", small / "zoo", "-o", tmp_path / "r.html", "--json", tmp_path / "s.json", "--lineage", "family",
                  *FAST, env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    for f in json.loads((tmp_path / "s.json").read_text())["fingerprints"]:
        q = f["label_free"].get("q")
        if q is not None:
            assert f"q {q:.2g}" in res.stdout, res.stdout
    legend = " ".join(res.stdout.split())
    assert "ident: AUC that relatives are closer than unrelated models of a basin (* significant)" in legend
    assert "95% intervals of stab, deep, AUROC and noise (init AMI): the report and summary.json" in legend
