"""The HTML report: one self-contained file (inline CSS, SVG and PNG; no scripts, no network).

:func:`render` turns an :class:`~analysis.results.AnalysisResult` into HTML: the verdict in a
paragraph, failures, the scorecard table, then per fingerprint three 2-D maps (coloured by cluster,
by ground truth, by lineage), basin sizes with exemplar models, the clusters x ground-truth
confusion matrix, and for distance fingerprints a dendrogram and a cluster-ordered heat-map; then a
forecast curve when one exists, and the run's config and provenance. The page comes from the Jinja2
templates in ``analysis/templates/`` with autoescaping on, so every string from data (model ids,
labels, names, errors) is escaped by the engine; the plots (:mod:`analysis.plots`) escape their own
text and arrive as ``Markup``. A map of more than :data:`MAX_POINTS` models draws a fixed random
sample of them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from analysis.metrics import natural_key
from analysis.plots import (
    MAX_POINTS,
    PALETTE,
    bars,
    colors,
    dendrogram,
    family_dendrogram,
    heatmap,
    legend,
    line_chart,
    png,
    scatter,
    shown_points,
)
from analysis.results import AnalysisResult, FingerprintResult, ScorecardRow
from analysis.verdicts import css_class

__all__ = ["render", "MAX_POINTS", "PALETTE", "bars", "colors", "dendrogram", "heatmap", "legend", "line_chart", "png",
           "scatter", "shown_points", "SCORE_COLUMNS"]

SCORE_COLUMNS = [("fingerprint", "fingerprint"), ("kind", "kind"), ("output", "output"), ("n_models", "models"),
                 ("n_clusters", "basins k"), ("consensus_k", "bootstrap k"), ("stability", "stability"),
                 ("deep_ami", "deep AMI"), ("probe_auroc", "probe AUROC"), ("noise_ami", "noise AMI"),
                 ("parent_noise_ami", "parent AMI"), ("lineage_nn", "lineage 1-NN"), ("aligns_with", "aligns with"),
                 ("verdict", "verdict"), ("label_free_verdict", "label-free verdict")]
TEXT_COLS = {"fingerprint", "kind", "output", "aligns_with", "verdict", "label_free_verdict"}
# a score's 95% family-bootstrap interval and BH-adjusted p (lineage 1-NN: its own cell, with chance)
INTERVALS = {"deep_ami": ("deep_ami_ci", "deep_ami_q"), "noise_ami": ("noise_ami_ci", "noise_ami_q"),
             "probe_auroc": ("probe_auroc_ci", None), "stability": ("stability_ci", None)}


def num(v: Any, digits: int = 2) -> str:
    """A number as the report shows it: ``–`` for none / non-finite, yes / no, floats to ``digits``."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def anchor(name: Any) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(name))


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html", "html.j2", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False,
                      finalize=lambda v: "–" if v is None else v)  # never a Python "None" on the page
    env.filters.update(num=num, anchor=anchor)
    env.globals.update(css_class=css_class, columns=SCORE_COLUMNS, text_cols=TEXT_COLS, intervals=INTERVALS)
    return env


ENV = _environment()


# -- what the page shows, computed here; the templates only lay it out -----------------------------
@dataclass
class Headline:
    """The verdict paragraph: failures, then either the labelled or the label-free summary."""

    n_rows: int
    failed: list[ScorecardRow]
    mode: str  # "nothing" | "label-free" | "labelled"
    label: str | None = None
    best: ScorecardRow | None = None  # never a privileged fingerprint while another one was analysed
    best_privileged: ScorecardRow | None = None  # a privileged one that beats ``best``: shown as an upper bound
    deep: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    none: list[str] = field(default_factory=list)
    free: dict[str, list[str]] = field(default_factory=dict)  # label-free verdict -> fingerprint names
    insufficient_sentence: str | None = None
    model_counts: list[int] = field(default_factory=list)  # more than one: the rows are not comparable


def headline(result: AnalysisResult) -> Headline:
    rows = result.scorecard
    failed = [r for r in rows if r.error]
    ok = [r for r in rows if not r.error]
    h = Headline(n_rows=len(rows), failed=failed, mode="nothing", label=result.label)
    h.model_counts = sorted({int(r.n_models) for r in rows if not r.error and r.n_models is not None})
    if not ok:
        return h
    if not result.label or all(r.deep_ami is None for r in ok):
        h.mode = "label-free"
        for v in ("crosses lineage", "groups lineages", "lineage only", "no structure", "insufficient"):
            h.free[v] = [str(r.fingerprint) for r in ok if r.label_free_verdict == v]
        h.insufficient_sentence = next((r.label_free_sentence for r in ok if r.label_free_verdict == "insufficient"), None)
        return h
    h.mode = "labelled"
    deep = lambda r: r.deep_ami if r.deep_ami is not None else -1  # noqa: E731
    fair = [r for r in ok if not r.privileged] or ok
    h.best = max(fair, key=deep)
    top = max(ok, key=deep)
    h.best_privileged = top if top.privileged and top is not h.best else None
    by = lambda v: [str(r.fingerprint) for r in ok if r.verdict == v]  # noqa: E731
    h.deep, h.noise = by("tracks deep differences"), by("tracks initialization noise")
    h.both, h.none = by("tracks both"), by("uninformative")
    return h


@dataclass
class FingerprintView:
    """One fingerprint's section: its result plus the pictures and tables made from it."""

    r: FingerprintResult
    label_name: str
    k_counts: str = ""
    figures: list[Markup] = field(default_factory=list)
    dendrogram: Markup | None = None
    heatmap: Markup | None = None
    confusion: dict[str, Any] | None = None  # labels, rows [(cluster, [(count, alpha), ...]), ...]
    free_groups: list[tuple[int, list[tuple[str, int]], int]] = field(default_factory=list)
    family_tree: Markup | None = None  # models -> families -> candidate basins


def fingerprint_view(r: FingerprintResult, settings: dict[str, Any], distances: np.ndarray | None) -> FingerprintView:
    view = FingerprintView(r, str(settings.get("label")))
    if r.error:
        return view
    view.k_counts = json.dumps((r.bootstrap or {}).get("k_counts", {}))
    ids, xy = r.model_ids or [], r.embedding or []
    clusters = [str(c) for c in r.clusters or []]
    view.figures.append(scatter(xy, clusters, ids, "coloured by cluster"))
    if r.label_values is not None:
        view.figures.append(scatter(xy, r.label_values, ids, f"coloured by ground truth ({settings.get('label')})"))
    if r.lineage_values is not None:
        view.figures.append(scatter(xy, r.lineage_values, ids, f"coloured by lineage ({settings.get('lineage')})"))
    sizes = [(f"cluster {b['cluster']}" if b["cluster"] >= 0 else "noise", int(b["size"])) for b in r.basins or []]
    view.figures.append(bars(sizes, "basin sizes"))
    if distances is not None and len(distances) == len(ids) and len(ids) >= 3:
        cats = r.label_values or clusters
        try:
            view.dendrogram, order = dendrogram(distances, [str(c) for c in cats], "dendrogram (average linkage); leaves "
                                                "coloured by " + ("ground truth" if r.label_values else "cluster"))
        except Exception as e:  # noqa: BLE001 - a degenerate matrix must not lose the rest of the report
            view.dendrogram = Markup("<div class='fail'>dendrogram failed: {}</div>").format(str(e))
            order = np.argsort(np.asarray(r.clusters), kind="stable")
        view.heatmap = heatmap(distances, order, "distance heat-map (dendrogram order)")
    if r.confusion:  # cells shaded by count: (count, alpha) per cell
        counts = np.asarray(r.confusion["counts"])
        top = max(counts.max() if counts.size else 1, 1)
        view.confusion = {"labels": r.confusion["labels"],
                          "rows": [(c, [(int(v), f"{0.08 + 0.7 * v / top:.2f}") for v in row])
                                   for c, row in zip(r.confusion["clusters"], counts)]}
    view.free_groups = _candidate_groups(r)
    view.family_tree = _family_tree(r, settings)
    return view


def _family_tree(r: FingerprintResult, settings: dict[str, Any]) -> Markup | None:
    """The dendrogram of the init families (leaves: families, bars: their members by candidate basin)."""
    free = r.label_free or {}
    tree = free.get("tree")
    if not tree or free.get("verdict") == "insufficient":
        return None
    members: dict[str, dict[str, int]] = {}
    lineage = dict(zip(r.model_ids or [], r.lineage_values or []))
    for m, b in (free.get("candidate_basins") or {}).items():
        shares = members.setdefault(str(lineage.get(m, "?")), {})
        shares[str(b)] = shares.get(str(b), 0) + 1
    what = "bars: members by candidate basin" if members else "no candidate basins for this verdict"
    try:
        return family_dendrogram(tree["linkage"], tree["families"], tree["sizes"], members,
                                 f"init families ({settings.get('lineage')}) clustered by their centroids (average "
                                 f"linkage, the analysis' coordinates); leaves: families (models); {what}")
    except Exception as e:  # noqa: BLE001 - a malformed stored tree must not lose the rest of the report
        return Markup("<div class='fail'>family dendrogram failed: {}</div>").format(str(e))


def _candidate_groups(r: FingerprintResult) -> list[tuple[int, list[tuple[str, int]], int]]:
    """Models -> init families -> candidate basins: per candidate basin, its families (with how many
    of their members it holds) and its number of models."""
    basins = (r.label_free or {}).get("candidate_basins") or {}
    lineage = dict(zip(r.model_ids or [], r.lineage_values or []))
    groups: dict[int, dict[str, int]] = {}
    for m, b in basins.items():
        fam = str(lineage.get(m, "?"))
        groups.setdefault(int(b), {}).setdefault(fam, 0)
        groups[int(b)][fam] += 1
    return [(b, sorted(f.items(), key=lambda kv: natural_key(kv[0])), sum(f.values())) for b, f in sorted(groups.items())]


def render(result: AnalysisResult, provenance: dict[str, Any] | None = None,
           distances: dict[str, np.ndarray] | None = None, forecast: list[dict] | None = None,
           title: str = "Basin fingerprint report") -> str:
    """The whole report as one HTML string.

    ``result`` comes from :func:`analysis.scorecard.analyze`; ``distances`` maps a fingerprint name
    to its ``[n, n]`` matrix (rows in that fingerprint's ``model_ids`` order) for the dendrogram and
    heat-map; ``forecast`` is a list of ``{fingerprint, step, fraction, accuracy, ami}``.
    """
    provenance = provenance or {}
    settings = result.settings or {}
    chart = None
    if forecast:
        series: dict[str, list] = {}
        for f in forecast:
            series.setdefault(str(f.get("fingerprint")), []).append((f.get("fraction", 0.0), f.get("accuracy")))
        chart = line_chart(series, "forecast accuracy vs fraction of training", "accuracy")
    views = [fingerprint_view(r, settings, (distances or {}).get(str(r.fingerprint))) for r in result.fingerprints]
    config = json.dumps({"provenance": provenance, "analysis": settings, "fingerprints": [r.meta for r in result.fingerprints]},
                        indent=2, default=str)
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.created if result.created is not None else time.time()))
    return ENV.get_template("report.html.j2").render(
        title=title, provenance=provenance, result=result, settings=settings, th=settings.get("thresholds") or {},
        created=created, head=headline(result), forecast_chart=chart, views=views, config_json=config)
