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
