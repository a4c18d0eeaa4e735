"""The HTML report: one self-contained file (inline CSS and SVG; no scripts, no network), and its
figures as PNG and PDF.

:func:`page` turns an :class:`~analysis.results.AnalysisResult` into HTML: the verdict in a
paragraph, failures, the scorecard table, the forecast curve and the selections when they exist,
then per fingerprint three 2-D maps (coloured by cluster, by ground truth, and by lineage with each
init family's members joined), basin sizes with exemplar models, the clusters x ground-truth
confusion matrix, and for distance fingerprints a dendrogram and a cluster-ordered heat-map; and the
run's config and provenance. The figures are matplotlib's (:mod:`analysis.plots`), inlined as SVG
and returned with their PNG and PDF bytes for ``figures/``; :func:`render` is the HTML alone. The
page comes from the Jinja2 templates in ``analysis/templates/`` with autoescaping on, so every
string from data (model ids, labels, names, errors) is escaped by the engine; the figures' SVG is
escaped by its writer. A map of more than :data:`MAX_POINTS` models draws a fixed random sample.
Each fingerprint's section, and the process that draws sections while the analysis runs
(:class:`SectionDrawer`), are :mod:`analysis.report_sections`'.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from analysis import parallel
from analysis.answer import followed_columns, followed_in_part, label_free_answer
from analysis.goodhart_chart import goodhart_chart
from analysis.labelfree_sentences import (
    closest_splits_sentence,
    sds,
    share_pct,
)
from analysis.lineage_report import LineageView, lineage_view
from analysis.plots import (
    FORMATS,
    MAX_POINTS,
    Figure,
    forecast_chart,
    selection_chart,
)
from analysis.rare import tail_sentences
from analysis.report_sections import (
    SectionDrawer,
    anchor,
    fingerprint_view,
    finish_sections,
)
from analysis.results import (
    AnalysisResult,
    ScorecardRow,
    candidates_apart_sentence,
    lone_sentences,
    small_basin_sentences,
)
from analysis.verdicts import FLOOR_REASON, PROBE_FLOOR_REASON, css_class

__all__ = ["render", "page", "Page", "SectionDrawer", "Figure", "FORMATS", "MAX_POINTS", "SCORE_COLUMNS"]

SCORE_COLUMNS = [("fingerprint", "fingerprint"), ("kind", "kind"), ("output", "output"), ("n_models", "models"),
                 ("n_clusters", "basins k"), ("consensus_k", "bootstrap k"), ("stability", "stability"),
                 ("deep_ami", "deep AMI"), ("probe_auroc", "probe AUROC"), ("noise_ami", "noise AMI"),
                 ("parent_noise_ami", "parent AMI"), ("lineage_auc", "identifies lineage"), ("aligns_with", "aligns with"),
                 ("verdict", "verdict"), ("label_free_verdict", "label-free verdict")]
TEXT_COLS = {"fingerprint", "kind", "output", "aligns_with", "verdict", "label_free_verdict"}
# a score's 95% family-bootstrap interval and BH-adjusted p (identifies lineage: its own cell, 1-NN in its tooltip)
INTERVALS = {"deep_ami": ("deep_ami_ci", "deep_ami_q"), "noise_ami": ("noise_ami_ci", "noise_ami_q"),
             "probe_auroc": ("probe_auroc_ci", None), "stability": ("stability_ci", None)}


def num(v: Any, digits: int = 2) -> str:
    """A number as the report shows it: ``–`` for none / non-finite, yes / no, floats to ``digits``."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        out = f"{v:.{digits}f}"
        return out[1:] if out.startswith("-") and not float(out) else out  # no "-0.00" (audit 73)
    return str(v)


def pct(v: Any) -> str:
    """A share as a percentage (``–`` for none / NaN)."""
    return "–" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.1f}%"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html", "html.j2", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False,
                      finalize=lambda v: "–" if v is None else v)  # never a Python "None" on the page
    env.filters.update(num=num, anchor=anchor, pct=pct, share=share_pct,  # share, sds: as the sentences say them
                       sds=lambda v: sds(v) if isinstance(v, (int, float)) and not math.isnan(v) else "–")
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
    best_privileged: ScorecardRow | None = None  # a privileged one that beats ``best``: shown apart, built from the answer
    deep: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    none: list[str] = field(default_factory=list)
    floor: list[str] = field(default_factory=list)  # insufficient: basins or probe match the label at the permutation floor
    free: dict[str, list[str]] = field(default_factory=dict)  # label-free verdict -> fingerprint names
    insufficient_sentence: str | None = None
    model_counts: list[int] = field(default_factory=list)  # more than one: the rows are not comparable
    lone: list[str] = field(default_factory=list)  # basins that are the rest and a few outliers (lone_sentences)
    leads: list[str] = field(default_factory=list)  # small basins several fingerprints agree on (small_basin_sentences)
    tails: list[str] = field(default_factory=list)  # far tails several fingerprints agree on (analysis.rare.tail_sentences)
    apart: str | None = None  # deep verdicts whose candidate basins are not the clusters (candidates_apart_sentence)
    small: list[str] = field(default_factory=list)  # deep verdicts that are a small difference (analysis.effect)
    few: list[str] = field(default_factory=list)  # fingerprints of the answer's few-families leads only (none of its candidates)
    weak: list[str] = field(default_factory=list)  # fingerprints of the answer's leads of one fingerprint (lone_leads) only
    leads_only: bool = False  # the answer has leads (few families, or one fingerprint's) and no candidate
    # fingerprints whose camps, held back (no gap, few models), the answer says are a candidate's (held_same), and a lead's
    held_same: list[str] = field(default_factory=list)
    held_lead: list[str] = field(default_factory=list)
    # fingerprints whose camps the answer's unconfirmed or cluster leads say (no verdict of their own: marked "in a lead")
    in_lead: list[str] = field(default_factory=list)
    answer: str | None = None  # the population's label-free answer (analysis.answer)
    one_value: str | None = None  # the label names a column of a single value here (a null): why there is no truth
    splits_disagree: str | None = None  # the fingerprints' closest splits of the families name different partitions
    # fingerprints whose clusters follow a design column taken out as lineage (the answer's strata_followed): {name: column}
    follows: dict[str, str] = field(default_factory=dict)
    # ... those of them whose clusters follow it in part only (values grouped into sides, or split; audit 114 F6)
    follows_in_part: list[str] = field(default_factory=list)


def headline(result: AnalysisResult) -> Headline:
    rows = result.scorecard
    failed = [r for r in rows if r.error]
    ok = [r for r in rows if not r.error]
    h = Headline(n_rows=len(rows), failed=failed, mode="nothing", label=result.label)
    h.model_counts = sorted({int(r.n_models) for r in rows if not r.error and r.n_models is not None})
    ans = label_free_answer(result)
    h.lone = lone_sentences(result, ans)
    h.leads = small_basin_sentences(result, ans)
    h.tails = tail_sentences(result, ans)
    h.apart = candidates_apart_sentence(result)
    h.splits_disagree = closest_splits_sentence({str(f.fingerprint): f.label_free for f in result.fingerprints})
    h.answer = None if ans is None else ans.sentence
    h.small = [str(f.fingerprint) for f in result.fingerprints if ((f.label_free or {}).get("effect") or {}).get("small")]
    if ans is not None:  # the answer's own split of its candidates and leads, so the box never contradicts it
        held = {f for c in ans.candidates for f in c.fingerprints}
        h.few = [f for c in ans.few_family_leads for f in c.fingerprints if f not in held]
        h.weak = [f for c in ans.lone_leads for f in c.fingerprints if f not in held and f not in h.few]
        h.leads_only = bool(ans.few_family_leads or ans.lone_leads) and not ans.candidates
        h.held_same = sorted({f for c in ans.candidates for f in c.held_same})
        h.follows, h.follows_in_part = followed_columns(ans), followed_in_part(ans)
        h.held_lead = sorted({f for c in (*ans.few_family_leads, *ans.lone_leads) for f in c.held_same} - set(h.held_same))
        h.in_lead = sorted({f for u in (*ans.unconfirmed, *ans.cluster_leads) for f in u["fingerprints"]}
                           - set(h.held_same) - set(h.held_lead))
    if not ok:
        return h
    if not result.label or all(r.deep_ami is None for r in ok):
        h.mode = "label-free"
        values = {v for f in result.fingerprints if not f.error for v in (f.label_values or ())}
        h.one_value = next(iter(values)) if result.label and len(values) == 1 else None
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
    probe = {str(r.fingerprint) for r in ok if r.probe_only}  # marked as the terminal marks them (audit 73)
    mark = lambda names: [f"{f} (probe only)" if f in probe else f for f in names]  # noqa: E731
    h.deep, h.noise = mark(by("tracks deep differences")), by("tracks initialization noise")
    h.both, h.none = mark(by("tracks both")), by("uninformative")
    h.floor = [str(r.fingerprint) for r in ok if str(r.verdict).startswith("insufficient:")
               and str(r.reason or "").startswith((FLOOR_REASON, PROBE_FLOOR_REASON))]
    return h


@dataclass
class Page:
    """The report: its ``html`` (one self-contained page) and its ``figures`` (each with the PNG and
    PDF bytes asked for, to be written to ``figures/`` beside it)."""

    html: str
    figures: list[Figure]


@dataclass
class SelectionView:
    """One ``fingerprint select`` result as the report shows it."""

    s: dict[str, Any]
    figure: Figure


def page(result: AnalysisResult, provenance: dict[str, Any] | None = None,
         distances: dict[str, np.ndarray] | None = None, forecast: list[dict] | None = None,
         selections: list[dict] | None = None, title: str = "Basin fingerprint report",
         formats: tuple[str, ...] = FORMATS, goodhart: dict | None = None, lineage: dict[str, Any] | None = None,
         drawn: dict[str, Any] | None = None, forecast_notes: list[str] | None = None) -> Page:
    """The whole report, and every figure in ``formats`` (``()``: inline SVG only).

    ``result`` comes from :func:`analysis.scorecard.analyze`; ``distances`` maps a fingerprint name
    to its ``[n, n]`` matrix (rows in that fingerprint's ``model_ids`` order) for the dendrogram and
    heat-map; ``forecast`` is a list of ``{fingerprint, step, fraction, accuracy, majority, ami}``;
    ``selections`` are ``fingerprint select`` results (purity, base rate, compute, ...);
    ``goodhart`` a ``fingerprint goodhart`` result (both pressures' curves); ``lineage``
    is ``fingerprint lineage``'s stored forest with the zoo's truth (:mod:`analysis.lineage_report`).
    ``forecast_notes``: what the stored forecast answered (:func:`analysis.forecast.forecast_about`).
    ``drawn`` maps a fingerprint's name to its section drawn while the analysis ran, or a future of it,
    or a :class:`~analysis.report_sections.Queued` (:meth:`SectionDrawer.views`, in these ``formats``);
    the others are drawn here first, then :func:`~analysis.report_sections.finish_sections` shares
    what the drawing process has not started yet (one that failed there is drawn here).
    """
    provenance = provenance or {}
    settings = result.settings or {}
    formats = tuple(formats)
    chart = None
    if forecast:
        chart = forecast_chart("forecast", forecast, "forecast of the final basin vs fraction of training; dashed: the "
                               "majority baseline (always guessing the largest basin)", formats)
    sels = [SelectionView(s, selection_chart(anchor(f"select-{s.get('basin')}-{s.get('at_step')}"), s,
                                             f"select '{s.get('basin')}' at step {s.get('at_step')}", formats))
            for s in selections or []]
    gh = None
    if goodhart:
        gh = goodhart_chart("goodhart", goodhart, f"the '{goodhart.get('basin')}' detector on {goodhart.get('fingerprint')}: "
                            "selecting by it (kept fraction) and training against it (lambda); below the dashed "
                            "diagonal, models that only look like the basin", formats)
    # a large population's figures are drawn a fingerprint per process (analysis.parallel), like its analysis
    drawn = drawn or {}
    todo = [r for r in result.fingerprints if drawn.get(str(r.fingerprint)) is None]
    fresh = dict(zip((str(r.fingerprint) for r in todo), parallel.map_ordered(
        fingerprint_view, [(r, settings, (distances or {}).get(str(r.fingerprint)), formats) for r in todo],
        sum(r.n_models or 0 for r in todo), preload=["analysis.report"])))
    fresh.update(finish_sections(drawn, result, formats, distances))  # drawn (or being drawn) in the drawing process
    views = [fresh[str(r.fingerprint)] for r in result.fingerprints]
    tree: LineageView | None = lineage_view(lineage, list(lineage.get("family_of") or {}), formats) if lineage else None
    config = json.dumps({"provenance": provenance, "analysis": settings, "fingerprints": [r.meta for r in result.fingerprints]},
                        indent=2, default=str)
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.created if result.created is not None else time.time()))
    html = ENV.get_template("report.html.j2").render(
        title=title, provenance=provenance, result=result, settings=settings, th=settings.get("thresholds") or {},
        created=created, head=headline(result), forecast_chart=chart, selections=sels, views=views, config_json=config,
        goodhart=goodhart, goodhart_chart=gh, lineage=tree, forecast_notes=forecast_notes or [])
    figures = [f for f in [chart, *(v.figure for v in sels), gh] if f is not None]
    if tree is not None and tree.figure is not None:
        figures.append(tree.figure)
    for v in views:
        figures += [f for f in (*v.figures, v.dendrogram, v.heatmap, v.family_tree) if isinstance(f, Figure)]
    return Page(html, figures)


def render(result: AnalysisResult, provenance: dict[str, Any] | None = None,
           distances: dict[str, np.ndarray] | None = None, forecast: list[dict] | None = None,
           title: str = "Basin fingerprint report", selections: list[dict] | None = None,
           lineage: dict[str, Any] | None = None) -> str:
    """The whole report as one HTML string (:func:`page` without figure files)."""
    return page(result, provenance, distances, forecast, selections, title, formats=(), lineage=lineage).html
