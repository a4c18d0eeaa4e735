"""The report's lineage section on a real tiny zoo: after `fingerprint lineage`, the recovered forest
next to the true one, its truth scores, the marked edge table, the figure file, summary.json, and
the page in a real headless browser."""

from __future__ import annotations

import html
import json
import re

import pytest

from fingerprint import Zoo, pipeline
from fingerprint.lineage import lineage
from tests.fingerprint.test_report import CHROMIUM, chromium

OPTS = {"n_boot": 4, "embedding": "pca", "n_perm": 20, "n_family_boot": 20}


@pytest.fixture
def reported(tiny_zoo, tmp_path):
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, n_perm=999)
    out = tmp_path / "out"
    out.mkdir()
    pipeline.report(zoo, out / "report.html", out / "summary.json", ["weight-stats"], **OPTS)
    return zoo, r, out, (out / "report.html").read_text()


def _rows(page: str) -> list[tuple[str, str]]:
    """(row class, the model cell) of every edge-table row."""
    table = page.split("<table class='lineage-edges'>")[1].split("</table>")[0]
    return [(k, html.unescape(m)) for k, m in re.findall(r"<tr class='edge-(\w+)'><td class='l'><code>([^<]+)</code>", table)]


def test_report_shows_the_recovered_forest_next_to_the_true_one(reported):
    zoo, r, out, page = reported
    assert "<h2 id='lineage'>Lineage</h2>" in page
    # the truth scores of every evidence, the primary one marked, the same numbers the run gave
    scores = page.split("<table class='lineage-scores'>")[1].split("</table>")[0]
    assert "exact (primary)" in scores and "matched" in scores
    assert f"{r['truth']['shared_init_fpr']:.3f}" in scores and f"{r['truth']['shared_init_power']:.3f}" in scores
    # one row per model with a true or a recovered parent, and the marks agree with the run's scores
    children = [m for m, p in zip(zoo.model_ids, zoo.models["parent_id"]) if str(p)]
    rows = _rows(page)
    assert {m for _, m in rows} == set(children) | {c for _, c, _ in r["edges"]}
    right = sum(k == "parent" for k, m in rows)
    assert right / len(children) == pytest.approx(r["truth"]["parent_accuracy"])
    # a model is marked right exactly when its recovered parent is its parent_id
    recovered = {c: p for p, c, _ in r["edges"]}
    parent = dict(zip(zoo.model_ids, map(str, zoo.models["parent_id"])))
    assert all((k == "parent") == (recovered.get(m) == parent[m] != "") for k, m in rows)
    counts = re.search(r"Recovered edges: ([^.;]*)", page).group(1)
    assert sum(int(n) for n in re.findall(r": (\d+)", counts)) == len(r["edges"])
    # the figure: both panels' nodes with tooltips, and its PNG and PDF beside the report
    fig = page.split('id="fig-lineage-forest"')[1].split("</figure>")[0]
    assert len(re.findall(r"<title>[^<]*: family ", fig)) == 2 * len(zoo)
    assert "true parent -&gt; child" in fig
    assert "edges from checkpoint histories" in page  # the tiny zoo stores them
    assert (out / "figures" / "lineage-forest.png").stat().st_size > 1000
    assert (out / "figures" / "lineage-forest.pdf").exists()
    s = json.loads((out / "summary.json").read_text())
    assert s["lineage"]["truth"] == r["truth"] and len(s["lineage"]["edges"]) == len(r["edges"])


def test_no_section_without_a_current_stored_forest(tiny_zoo, tmp_path):
    zoo = Zoo.open(tiny_zoo)
    page = pipeline.report(zoo, tmp_path / "a.html", None, ["weight-stats"], **OPTS).read_text()
    assert "id='lineage'" not in page
    lineage(zoo, n_perm=99)
    rec = zoo.load_result("lineage")
    zoo.save_result("lineage", {**rec, "model_set": "another"})  # stored for another model set: not shown
    page = pipeline.report(zoo, tmp_path / "b.html", None, ["weight-stats"], **OPTS).read_text()
    assert "id='lineage'" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_lineage_section_renders_in_a_headless_browser(reported, tmp_path):
    zoo, _, out, _ = reported
    res, console = chromium(tmp_path / "profile", (out / "report.html").as_uri(), "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    assert console == []  # no script errors, no Content-Security-Policy violations
    dom = res.stdout
    assert "<h2 id=\"lineage\">Lineage</h2>" in dom
    fig = dom.split('id="fig-lineage-forest"')[1].split("</figure>")[0]
    assert "<svg" in fig and len(re.findall(r"<title>[^<]*: family ", fig)) == 2 * len(zoo)
    assert len(_rows(dom.replace('"', "'"))) >= 16  # every child (true or recovered parent); the seed grid is roots


def test_recovered_families_that_join_unrelated_ones_are_shown():
    """An outside audit (73): 30 families recovered for 32 true ones, two of them false merges, read as
    a perfect recovery: the table gave no true count, no merges, and the figure underlined the true
    families in both panels. Now the recovered families are underlined (a merge in red, linked) and the
    table says the true count, the merges and splits, and the family AMI."""
    from analysis.lineage_report import lineage_view
    from analysis.report import ENV

    ids = ["a0", "a1", "b0", "b1", "c0", "c1"]
    stored = {"evidence": "exact", "alpha": 0.05, "truth": {}, "edges": [],
              "by_evidence": {"exact": {"n_related": 5, "n_families": 2, "n_merged": 1, "n_split": 0, "family_ami": 0.44,
                                        "shared_init_fpr": 0.1, "shared_init_power": 1.0, "bh_fdp": 0.2, "bh_power": 1.0}},
              "true_family": {m: m[0] for m in ids},
              "family_of": {"a0": "L0", "a1": "L0", "b0": "L0", "b1": "L0", "c0": "L1", "c1": "L1"}}
    view = lineage_view(stored, ids)
    assert view.n_true_families == 3
    svg = str(view.figure.svg)
    assert "joins unrelated families (1)" in svg and "recovered family (2)" in svg
    section = str(ENV.get_template("macros.html.j2").make_module({}).lineage_section(view))
    assert "The zoo has <b>3</b> init families" in section
    row = section.split("<table class='lineage-scores'>")[1].split("</table>")[0]
    assert "<td class='failrow'>1</td><td>0</td><td>0.44</td>" in row  # one merge, flagged; no split; family AMI
    assert "<td class='failrow'>0.100</td>" in row and "<td class='failrow'>0.200</td>" in row  # FPR, FDP above alpha


def test_the_terminal_evidence_table_fits_80_columns_with_its_title_whole():
    """An outside audit (73): piped, `fingerprint lineage` printed "alpha 0" (its title cut at the
    table's width) and lost the last column."""
    from rich.console import Console

    from fingerprint.cli.lineage import evidence_lines, evidence_table

    row = {"n_related": 21000, "n_families": 30, "n_merged": 2, "shared_init_fpr": 0.054, "shared_init_power": 1.0,
           "bh_fdp": 0.086, "parent_accuracy": 1.0, "direction_accuracy": 1.0, "false_edges": 3}
    r = {"zoo": "/a/rather/long/path/to/some/zoo/directory", "n_pairs": 8128, "n_pairs_total": 8128, "evidence": "exact",
         "by_evidence": {"exact": row, "anomalous-inputs": row}}
    console = Console(width=80, force_terminal=False, record=True)
    console.print(evidence_table(r, 0.05))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text.splitlines()[0].split()[-2:] == ["dir.", "false"] and text.splitlines()[2].split()[-1] == "3"
    title, legend = evidence_lines(r, 0.05)
    assert "alpha 0.05 (Benjamini-Hochberg)" in title and legend.startswith("FPR, power: the share of unrelated / related pairs at p <= alpha, per test")
