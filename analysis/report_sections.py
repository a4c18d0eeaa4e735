"""One fingerprint's section of the report, and the process that draws sections ahead of the page.

:func:`fingerprint_view` draws a fingerprint's figures and tables (:class:`FingerprintView`: its
maps, basin sizes, dendrogram, heat-map and confusion matrix); :func:`with_verdicts` adds the parts
the verdicts across fingerprints decide (the candidate basins and the init families' tree).
:class:`SectionDrawer` draws the sections in a second process while the analysis runs, and
the families' trees there too once the verdicts are decided; :func:`finish_sections` shares what is
left of that queue between the two processes (this one from the back) for :func:`analysis.report.page`.
Figures are :mod:`analysis.plots`'s.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from markupsafe import Markup

from analysis import parallel
from analysis.plots import (
    FORMATS,
    Figure,
    basin_sizes,
    dendrogram,
    family_dendrogram,
    heatmap,
    model_map,
)
from analysis.results import AnalysisResult, FingerprintResult
from analysis.sortkeys import natural_key

__all__ = ["FingerprintView", "fingerprint_view", "with_verdicts", "finish_sections", "Queued", "SectionDrawer", "anchor"]


def anchor(name: Any) -> str:
    """A name as an HTML id and file stem: every character but letters and digits as ``-``."""
    return "".join(c if c.isalnum() else "-" for c in str(name))


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


def with_verdicts(view: FingerprintView, r: FingerprintResult, settings: dict[str, Any],
                  formats: tuple[str, ...] = ()) -> FingerprintView:
    """``view`` (drawn from ``r`` before the verdicts) for the decided result ``r``: its candidate
    basins and its families' tree, which the verdicts across fingerprints decide."""
    return _decided(view, r, _family_tree(r, settings, formats))


def _decided(view: FingerprintView, r: FingerprintResult, tree: Figure | Markup | None) -> FingerprintView:
    """:func:`with_verdicts` with the families' tree already drawn (here or in the drawing process)."""
    view = dataclasses.replace(view, r=r)
    if not r.error:
        view.free_groups = _candidate_groups(r)
        view.family_tree = tree
    return view


@dataclass
class Queued:
    """A fingerprint's work in :class:`SectionDrawer`'s process: its section (a future, or a
    :class:`FingerprintView` drawn already) and, once the verdicts are decided, its families' tree
    (a future queued behind every section; ``None``: drawn by :func:`finish_sections`)."""

    section: Any
    tree: Any = None


_FAILED = object()  # a drawing that failed in the drawing process


def _outcome(f: Any) -> Any:
    """What a future drew (waited for), or :data:`_FAILED`; a view drawn already is itself."""
    if isinstance(f, FingerprintView):
        return f
    try:
        return f.result()
    except Exception:  # noqa: BLE001 - drawn again here, where a real error is reported
        return _FAILED


def finish_sections(drawn: dict[str, Any], result: AnalysisResult, formats: tuple[str, ...] = (),
                    distances: dict[str, np.ndarray] | None = None) -> dict[str, FingerprintView]:
    """The decided section of each fingerprint of ``result`` named in ``drawn`` (name -> a
    :class:`FingerprintView` drawn before the verdicts, a future of one, or a :class:`Queued`:
    :meth:`SectionDrawer.views`).

    The drawing process works through its queue (the sections, then the families' trees) from the
    front; this process withdraws what that one has not started from the back, one piece at a time,
    and draws it meanwhile, so both stay busy until they meet; the rest is waited for. A drawing that
    failed there is drawn here, where a real error is reported. The bytes are the same whichever
    process draws a piece."""
    settings, dist = result.settings or {}, distances or {}
    decided = {str(r.fingerprint): r for r in result.fingerprints}
    queued = {n: v if isinstance(v, Queued) else Queued(v) for n, v in drawn.items() if n in decided and v is not None}
    line = [(n, False, q.section) for n, q in queued.items()]
    line += [(n, True, q.tree) for n, q in queued.items() if q.tree is not None]
    here: dict[tuple[str, bool], Any] = {}  # (name, is_tree) -> what this process drew
    for n, is_tree, f in reversed(line):
        if isinstance(f, FingerprintView) or not f.cancel():
            break  # the drawing process has started it, so it has done or is doing all before it
        r = decided[n]
        here[n, is_tree] = (_family_tree(r, settings, formats) if is_tree
                            else fingerprint_view(r, settings, dist.get(n), formats, decided=False))
    views: dict[str, FingerprintView] = {}
    for n, q in queued.items():
        r = decided[n]
        view = here[n, False] if (n, False) in here else _outcome(q.section)
        if view is _FAILED or view is None:
            views[n] = fingerprint_view(r, settings, dist.get(n), formats)
            continue
        tree = here[n, True] if (n, True) in here else _FAILED if q.tree is None else _outcome(q.tree)
        views[n] = _decided(view, r, _family_tree(r, settings, formats) if tree is _FAILED else tree)
    return views


def _has_tree(r: FingerprintResult) -> bool:
    """Whether :func:`_family_tree` draws a figure for ``r`` (else it returns ``None`` at once)."""
    free = r.label_free or {}
    return not r.error and bool(free.get("tree")) and free.get("verdict") != "insufficient"


def _family_tree(r: FingerprintResult, settings: dict[str, Any], formats: tuple[str, ...] = ()) -> Figure | Markup | None:
    """The dendrogram of the init families (leaves: families, bars: their members by candidate basin)."""
    if not _has_tree(r):
        return None
    free = r.label_free or {}
    tree = free["tree"]
    members: dict[str, dict[str, int]] = {}
    lineage = dict(zip(r.model_ids or [], r.lineage_values or []))
    for m, b in (free.get("candidate_basins") or {}).items():
        if int(b) < 0:  # no basin: a model without relatives (the within-family camps)
            continue
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
        if int(b) < 0:  # no basin: a model without relatives (the within-family camps)
            continue
        fam = str(lineage.get(m, "?"))
        groups.setdefault(int(b), {}).setdefault(fam, 0)
        groups[int(b)][fam] += 1
    return [(b, sorted(f.items(), key=lambda kv: natural_key(kv[0])), sum(f.values())) for b, f in sorted(groups.items())]


# -- the figures drawn while the analysis runs ------------------------------------------------------
class SectionDrawer:
    """Draws each fingerprint's section (its maps, basin sizes, dendrogram and heat-map) in one
    background process while the analysis goes on to the next fingerprint: pass it as
    :func:`analysis.scorecard.analyze`'s ``on_result``, then :meth:`views` to :func:`~analysis.report.page`'s ``drawn``.
    On two cores the page is then mostly drawn by the time the analysis ends (docs/benchmarks.md,
    "The report's speed"); the figures' bytes and the HTML are the same as :func:`~analysis.report.page` alone draws.

    Active when there are at least two workers (:func:`analysis.parallel.jobs`) and the population
    is below :data:`analysis.parallel.MIN_ROWS` models x fingerprints (above, the analysis has the
    pool) and, when ``sections`` (the number of sections to draw) is known, there are at least two;
    otherwise it does nothing and :func:`~analysis.report.page` draws everything. ``distances(result)`` gives
    a distance fingerprint's ``[n, n]`` matrix in its ``model_ids`` order (dendrogram, heat-map), or
    ``None``. A section whose drawing failed is drawn again by :func:`~analysis.report.page`.
    The drawing process starts in a thread and is given one piece at a time
    (:class:`analysis.parallel.Background`): the analysis never waits for it, and what it has not
    been given can be taken back (:func:`finish_sections`)."""

    def __init__(self, rows: int, formats: tuple[str, ...] = FORMATS,
                 distances: Callable[[FingerprintResult], np.ndarray | None] | None = None, sections: int | None = None):
        self.formats = tuple(formats)
        self._distances = distances or (lambda _r: None)
        self._futures: dict[str, Any] = {}
        self._bg: parallel.Background | None = None
        if parallel.jobs() >= 2 and rows < parallel.MIN_ROWS and (sections is None or sections >= 2):
            try:  # started in a thread: the analysis goes on meanwhile
                self._bg = parallel.background_pool(["analysis.report"])
            except (OSError, ValueError):  # no second process here: page() draws everything
                self._bg = None

    def __call__(self, r: FingerprintResult, settings: dict[str, Any]) -> None:
        if self._bg is None or r.error:
            return
        self._futures[str(r.fingerprint)] = self._bg.submit(
            fingerprint_view, r, settings, self._distances(r), self.formats, False)

    def draw_ahead(self, result: AnalysisResult) -> dict[str, Any]:
        """For an analysis that is already done (the stored one): every fingerprint's section goes to
        the drawing process's queue now, and every families' tree behind them (:meth:`views`), for
        :func:`~analysis.report.page`'s ``drawn``; :func:`finish_sections` then takes from the back
        of that queue what the drawing process has not started, so the two processes share it. Nothing
        when inactive (built with ``sections``, a single section never starts the second process)."""
        if self._bg is None:
            return {}
        settings = result.settings or {}
        for r in result.fingerprints:
            self(r, settings)
        return self.views(result)

    def views(self, result: AnalysisResult | None = None) -> dict[str, Any]:
        """The sections given to the drawing process (futures), by fingerprint name, for
        :func:`~analysis.report.page`'s ``drawn``.
        With the decided ``result``, each is a :class:`Queued` whose families' tree is queued there
        too, behind every section. :func:`finish_sections` withdraws from the back of that queue what
        the drawing process has not started and draws it in the caller's process meanwhile."""
        if result is None or self._bg is None:
            return dict(self._futures)
        settings = result.settings or {}
        return {str(r.fingerprint): Queued(self._futures[str(r.fingerprint)], self._bg.submit(
                    _family_tree, r, settings, self.formats) if _has_tree(r) else None)
                for r in result.fingerprints if str(r.fingerprint) in self._futures}

    @property
    def active(self) -> bool:
        """Whether a second process draws (else :func:`~analysis.report.page` draws everything)."""
        return self._bg is not None

    def worker_cpu(self) -> float:
        """CPU seconds the drawing process has used so far (0 when inactive): for benchmarks."""
        return 0.0 if self._bg is None else float(self._bg.submit(parallel.process_cpu).result())

    def close(self) -> None:
        if self._bg is not None:
            self._bg.shutdown()
            self._bg = None

    def __enter__(self) -> "SectionDrawer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
