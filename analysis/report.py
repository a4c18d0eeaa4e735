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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from analysis import parallel
from analysis.goodhart_chart import goodhart_chart
from analysis.lineage_report import LineageView, lineage_view
from analysis.metrics import natural_key
from analysis.plots import (
    FORMATS,
    MAX_POINTS,
    Figure,
    basin_sizes,
    dendrogram,
    family_dendrogram,
    forecast_chart,
    heatmap,
    model_map,
    selection_chart,
)
from analysis.results import AnalysisResult, FingerprintResult, ScorecardRow
from analysis.verdicts import css_class

__all__ = ["render", "page", "Page", "SectionDrawer", "Ahead", "Figure", "FORMATS", "MAX_POINTS", "SCORE_COLUMNS"]

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
        return f"{v:.{digits}f}"
    return str(v)


def pct(v: Any) -> str:
    """A share as a percentage (``–`` for none / NaN)."""
    return "–" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.1f}%"


def anchor(name: Any) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(name))


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html", "html.j2", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False,
                      finalize=lambda v: "–" if v is None else v)  # never a Python "None" on the page
    env.filters.update(num=num, anchor=anchor, pct=pct)
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
    """One fingerprint's section: its result plus the figures and tables made from it."""

    r: FingerprintResult
    label_name: str
    k_counts: str = ""
    figures: list[Figure | Markup] = field(default_factory=list)
    dendrogram: Figure | Markup | None = None
    heatmap: Figure | None = None
    confusion: dict[str, Any] | None = None  # labels, rows [(cluster, [(count, alpha), ...]), ...]
    free_groups: list[tuple[int, list[tuple[str, int]], int]] = field(default_factory=list)
    family_tree: Figure | Markup | None = None  # models -> families -> candidate basins


def fingerprint_view(r: FingerprintResult, settings: dict[str, Any], distances: np.ndarray | None,
                     formats: tuple[str, ...] = (), decided: bool = True) -> FingerprintView:
    """The section of one fingerprint; its figures are named ``<fingerprint>-<what>`` (``figures/``).
    ``decided=False``: without the parts that the verdicts decide (the candidate basins and the
    families' tree: :func:`with_verdicts` adds them)."""
    view = FingerprintView(r, str(settings.get("label")))
    if r.error:
        return view
    view.k_counts = json.dumps((r.bootstrap or {}).get("k_counts", {}))
    ids, xy = r.model_ids or [], r.embedding or []
    stem = anchor(r.fingerprint)
    clusters = [str(c) for c in r.clusters or []]
    axes = str(r.embedding_method or "map").split("-")[0].upper()
    if xy:
        view.figures.append(model_map(f"{stem}-clusters", xy, ids, "coloured by cluster", clusters, axes=axes,
                                      formats=formats))
        if r.label_values is not None:
            view.figures.append(model_map(f"{stem}-ground-truth", xy, ids, f"by ground truth ({settings.get('label')})",
                                          clusters, labels=r.label_values, axes=axes, formats=formats))
        if r.lineage_values is not None:
            view.figures.append(model_map(f"{stem}-lineage", xy, ids, f"lineage ({settings.get('lineage')}): each init "
                                          "family's members joined, coloured by cluster", clusters,
                                          families=r.lineage_values, axes=axes, formats=formats))
    sizes = [(str(b["cluster"]), int(b["size"])) for b in r.basins or []]
    if sizes:
        view.figures.append(basin_sizes(f"{stem}-basin-sizes", sizes, "basin sizes", formats))
    if distances is not None and len(distances) == len(ids) and len(ids) >= 3:
        cats = r.label_values or clusters
        try:
            view.dendrogram, order = dendrogram(f"{stem}-dendrogram", distances, [str(c) for c in cats],
                                                "dendrogram (average linkage); leaves coloured by "
                                                + ("ground truth" if r.label_values else "cluster"),
                                                "label" if r.label_values else "cluster", formats)
        except Exception as e:  # noqa: BLE001 - a degenerate matrix must not lose the rest of the report
            view.dendrogram = Markup("<div class='fail'>dendrogram failed: {}</div>").format(str(e))
            order = np.argsort(np.asarray(r.clusters), kind="stable")
        view.heatmap = heatmap(f"{stem}-heatmap", distances, order, "distance heat-map (dendrogram order)", formats)
    if r.confusion:  # cells shaded by count: (count, alpha) per cell
        counts = np.asarray(r.confusion["counts"])
        top = max(counts.max() if counts.size else 1, 1)
        view.confusion = {"labels": r.confusion["labels"],
                          "rows": [(c, [(int(v), f"{0.08 + 0.7 * v / top:.2f}") for v in row])
                                   for c, row in zip(r.confusion["clusters"], counts)]}
    return with_verdicts(view, r, settings, formats) if decided else view


def _drawn(v: Any) -> FingerprintView | None:
    """A section drawn ahead (or its future's, waited for); ``None`` when its drawing failed."""
    if v is None or isinstance(v, FingerprintView):
        return v
    try:
        return v.result()
    except Exception:  # noqa: BLE001 - drawn again in this process, which reports a real error
        return None


_UNDRAWN = object()  # with_verdicts' tree: not drawn elsewhere, draw it here


def with_verdicts(view: FingerprintView, r: FingerprintResult, settings: dict[str, Any],
                  formats: tuple[str, ...] = (), tree: Any = _UNDRAWN) -> FingerprintView:
    """``view`` (drawn from ``r`` before the verdicts) for the decided result ``r``: its candidate
    basins and its families' tree, which the verdicts across fingerprints decide (``tree``: that
    figure drawn elsewhere from ``r``, else drawn here)."""
    view = dataclasses.replace(view, r=r)
    if not r.error:
        view.free_groups = _candidate_groups(r)
        view.family_tree = _family_tree(r, settings, formats) if tree is _UNDRAWN else tree
    return view


@dataclass
class Ahead:
    """A fingerprint's section drawn in :class:`SectionDrawer`'s process (a future of it) and its
    families' tree, which that process can draw once the verdicts are decided: ``tree()`` submits it
    there and returns the future (:func:`page` does, whenever that process is idle)."""

    section: Any
    tree: Callable[[], Any]


def _share_trees(drawn: dict[str, Any], decided: dict[str, FingerprintResult], settings: dict[str, Any],
                 formats: tuple[str, ...]) -> dict[str, Any]:
    """The families' trees of the sections drawn ahead (:class:`Ahead`), shared between this process
    and the drawing one: whenever that one is idle (its sections done, its last tree too) it takes the
    next tree from the front; this one draws from the back meanwhile. Name -> figure, or a future."""
    queue = [n for n, v in drawn.items() if isinstance(v, Ahead) and n in decided and _has_tree(decided[n])]
    busy = [v.section if isinstance(v, Ahead) else v for v in drawn.values()]
    out: dict[str, Any] = {}
    running = None
    while queue:
        if (running is None or running.done()) and all(getattr(f, "done", lambda: True)() for f in busy):
            name = queue.pop(0)
            running = out[name] = drawn[name].tree()
        if queue:
            name = queue.pop()
            out[name] = _family_tree(decided[name], settings, formats)
    return out


def _tree_drawn(f: Any) -> Any:
    """The tree a future drew, or :data:`_UNDRAWN` (withdrawn before the drawing process started it,
    or failed there: :func:`page` draws it, where a real error is reported)."""
    if f.cancel():
        return _UNDRAWN
    try:
        return f.result()
    except Exception:  # noqa: BLE001 - drawn again in this process
        return _UNDRAWN


def _has_tree(r: FingerprintResult) -> bool:
    """Whether :func:`_family_tree` draws a figure for ``r`` (else it returns ``None`` at once)."""
    free = r.label_free or {}
    return not r.error and bool(free.get("tree")) and free.get("verdict") != "insufficient"


def _family_tree(r: FingerprintResult, settings: dict[str, Any], formats: tuple[str, ...] = ()) -> Figure | Markup | None:
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
        return family_dendrogram(f"{anchor(r.fingerprint)}-families", tree["linkage"], tree["families"], tree["sizes"],
                                 members, f"init families ({settings.get('lineage')}) clustered by their centroids "
                                 f"(average linkage, the analysis' coordinates); leaves: families (models); {what}",
                                 formats)
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
         drawn: dict[str, Any] | None = None) -> Page:
    """The whole report, and every figure in ``formats`` (``()``: inline SVG only).

    ``result`` comes from :func:`analysis.scorecard.analyze`; ``distances`` maps a fingerprint name
    to its ``[n, n]`` matrix (rows in that fingerprint's ``model_ids`` order) for the dendrogram and
    heat-map; ``forecast`` is a list of ``{fingerprint, step, fraction, accuracy, majority, ami}``;
    ``selections`` are ``fingerprint select`` results (purity, base rate, compute, ...);
    ``goodhart`` a ``fingerprint goodhart`` result (both pressures' curves); ``lineage``
    is ``fingerprint lineage``'s stored forest with the zoo's truth (:mod:`analysis.lineage_report`).
    ``drawn`` maps a fingerprint's name to its section drawn while the analysis ran, or a future of it,
    or an :class:`Ahead` (the section's future, and its families' tree to draw there) (:meth:`SectionDrawer.views`,
    in these ``formats``); the others are drawn here first, then the families' trees (shared with the
    drawing process while it is idle), then the futures are waited for (one that failed is drawn here).
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
    # sections drawn (or being drawn) during the analysis are taken once the others are drawn here
    drawn = drawn or {}
    todo = [r for r in result.fingerprints if str(r.fingerprint) not in drawn]
    fresh = dict(zip((str(r.fingerprint) for r in todo), parallel.map_ordered(
        fingerprint_view, [(r, settings, (distances or {}).get(str(r.fingerprint)), formats) for r in todo],
        sum(r.n_models or 0 for r in todo), preload=["analysis.report"])))
    trees = _share_trees(drawn, {str(r.fingerprint): r for r in result.fingerprints}, settings, formats)
    views = []
    for r in result.fingerprints:
        name = str(r.fingerprint)
        if name in fresh:
            views.append(fresh[name])
        elif isinstance(got := drawn.get(name), Ahead) and (ahead := _drawn(got.section)) is not None:
            fam_tree = trees.get(name, _UNDRAWN)
            fam_tree = _tree_drawn(fam_tree) if hasattr(fam_tree, "cancel") else fam_tree
            views.append(with_verdicts(ahead, r, settings, formats, fam_tree))
        elif not isinstance(got, Ahead) and (ahead := _drawn(got)) is not None:
            views.append(with_verdicts(ahead, r, settings, formats))
        else:  # its drawing in the background failed: drawn here, where a real error is reported
            views.append(fingerprint_view(r, settings, (distances or {}).get(name), formats))
    tree: LineageView | None = lineage_view(lineage, list(lineage.get("family_of") or {}), formats) if lineage else None
    config = json.dumps({"provenance": provenance, "analysis": settings, "fingerprints": [r.meta for r in result.fingerprints]},
                        indent=2, default=str)
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(result.created if result.created is not None else time.time()))
    html = ENV.get_template("report.html.j2").render(
        title=title, provenance=provenance, result=result, settings=settings, th=settings.get("thresholds") or {},
        created=created, head=headline(result), forecast_chart=chart, selections=sels, views=views, config_json=config,
        goodhart=goodhart, goodhart_chart=gh, lineage=tree)
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


# -- the figures drawn while the analysis runs ------------------------------------------------------
class SectionDrawer:
    """Draws each fingerprint's section (its maps, basin sizes, dendrogram and heat-map) in one
    background process while the analysis goes on to the next fingerprint: pass it as
    :func:`analysis.scorecard.analyze`'s ``on_result``, then :meth:`views` to :func:`page`'s ``drawn``.
    On two cores the page is then mostly drawn by the time the analysis ends (docs/benchmarks.md,
    "The report's speed"); the figures' bytes and the HTML are the same as :func:`page` alone draws.

    Active when there are at least two workers (:func:`analysis.parallel.jobs`) and the population
    is below :data:`analysis.parallel.MIN_ROWS` models x fingerprints (above, the analysis has the
    pool); otherwise it does nothing and :func:`page` draws everything. ``distances(result)`` gives
    a distance fingerprint's ``[n, n]`` matrix in its ``model_ids`` order (dendrogram, heat-map), or
    ``None``. A section whose drawing failed is drawn again by :func:`page`."""

    def __init__(self, rows: int, formats: tuple[str, ...] = FORMATS,
                 distances: Callable[[FingerprintResult], np.ndarray | None] | None = None):
        self.formats = tuple(formats)
        self._distances = distances or (lambda _r: None)
        self._futures: dict[str, Any] = {}
        self._pool = None
        if parallel.jobs() >= 2 and rows < parallel.MIN_ROWS:
            try:
                self._pool = parallel.background_pool(["analysis.report"])
            except (OSError, ValueError):  # no second process here: page() draws everything
                self._pool = None

    def __call__(self, r: FingerprintResult, settings: dict[str, Any]) -> None:
        if self._pool is None or r.error:
            return
        self._futures[str(r.fingerprint)] = self._pool.submit(
            fingerprint_view, r, settings, self._distances(r), self.formats, False)

    def views(self, result: AnalysisResult | None = None) -> dict[str, Any]:
        """The sections drawn or being drawn (futures), by fingerprint name, for :func:`page`'s ``drawn``.
        Those the worker has not started are withdrawn: :func:`page` draws them in this process meanwhile.
        With the decided ``result``, each section kept is an :class:`Ahead`: the worker can draw its
        families' tree too, when :func:`page` finds it idle."""
        kept = {name: f for name, f in self._futures.items() if not f.cancel()}
        if result is None or self._pool is None:
            return kept
        settings, pool = result.settings or {}, self._pool
        decided = {str(r.fingerprint): r for r in result.fingerprints}
        return {name: Ahead(f, functools.partial(pool.submit, _family_tree, decided[name], settings, self.formats))
                if name in decided and _has_tree(decided[name]) else f for name, f in kept.items()}

    @property
    def active(self) -> bool:
        """Whether a second process draws (else :func:`page` draws everything)."""
        return self._pool is not None

    def worker_cpu(self) -> float:
        """CPU seconds the drawing process has used so far (0 when inactive): for benchmarks."""
        return 0.0 if self._pool is None else float(self._pool.submit(parallel.process_cpu).result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "SectionDrawer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
