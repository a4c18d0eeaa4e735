"""The report's figures, drawn with matplotlib: 2-D maps of the models (by cluster, by ground truth,
by lineage), basin sizes, dendrograms, distance heat-maps, the init families' tree, the forecast
curve and the selection's outcome.

Each function returns a :class:`Figure`: its inline SVG for the page (text kept as ``<text>``, so
tick labels are real text; every model, family and label name is escaped by the SVG writer, and
the per-point tooltips by ``xml.etree``), and, when asked, the same figure as PNG and PDF bytes for
``figures/`` beside the report. Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas,
never registered with pyplot (no global state, nothing left open); mathtext is off, so a ``$`` in a
user's label is shown as typed. Clusters and ground-truth labels have separate palettes (labels
also a marker each), so that "cluster 2" and a label never share a look.
"""

from __future__ import annotations

import functools
import io
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import matplotlib
import matplotlib.ticker
import numpy as np
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from analysis.sortkeys import natural_key

MAX_POINTS = 5000  # a map draws at most this many models (a fixed random sample beyond)
MAX_LEGEND = 16  # legend entries shown (then "+ N more")
MAX_NAMED = 24  # families named under the family tree (beyond: in the tooltips and the table; text is costly)
NOISE = "#9a9a9a"  # cluster -1 (no basin) and unknown labels
# clusters: matplotlib's tab10 without its grey; labels: Okabe-Ito (colour-blind safe) with a marker each
CLUSTER_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
LABEL_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
LABEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
FORMATS = ("png", "pdf")
STYLE = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 7.5, "axes.titlesize": 8,
         "axes.labelsize": 7.5, "legend.fontsize": 6.5, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5,
         "axes.spines.top": False, "axes.spines.right": False, "savefig.dpi": 200}
SVG = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


@dataclass
class Figure:
    """One figure of the report: ``name`` (its file stem in ``figures/``), ``caption``, the inline
    ``svg`` and ``files`` (``{"png": bytes, "pdf": bytes}`` when asked for)."""

    name: str
    caption: str
    svg: str
    files: dict[str, bytes] = field(default_factory=dict)

    def _repr_svg_(self) -> str:  # shown in Jupyter
        return self.svg

    def __html__(self) -> str:
        return str(Markup('<figure class="plot" id="fig-{}">{}<figcaption>{}</figcaption></figure>').format(
            self.name, Markup(self.svg), self.caption))


def _hue(i: int) -> str:
    h = (i * 0.618034) % 1.0
    return matplotlib.colors.to_hex(matplotlib.colors.hsv_to_rgb((h, 0.65, 0.8)))


def cluster_colors(cats: Sequence[str]) -> dict[str, str]:
    """Cluster -> colour (``-1``: grey)."""
    uniq = sorted(set(map(str, cats)), key=natural_key)
    real = [c for c in uniq if c not in ("-1", "noise")]
    out = {c: CLUSTER_COLORS[i] if i < len(CLUSTER_COLORS) else _hue(i) for i, c in enumerate(real)}
    return {**out, **{c: NOISE for c in uniq if c not in out}}


def label_styles(cats: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Ground-truth label -> ``(colour, marker)``, a palette of its own (unknown values: grey)."""
    uniq = sorted(set(map(str, cats)), key=natural_key)
    real = [c for c in uniq if c not in ("", "None", "nan")]
    out = {c: (LABEL_COLORS[i] if i < len(LABEL_COLORS) else _hue(i + 3), LABEL_MARKERS[i % len(LABEL_MARKERS)])
           for i, c in enumerate(real)}
    return {**out, **{c: (NOISE, "o") for c in uniq if c not in out}}


def shown_points(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of the models a map draws: all of them, or a fixed random ``limit`` (sorted), the same
    for every map of a report, so that the maps of a fingerprint show the same models."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


# -- one figure from start to files ----------------------------------------------------------------
def _styled(draw: Callable) -> Callable:
    """Run a figure function under :data:`STYLE` (text sizes are fixed when the text is made)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE), warnings.catch_warnings():
            # every model of a basin at one point (a perfect split): matplotlib widens the axis itself
            warnings.filterwarnings("ignore", message="Attempting to set identical", category=UserWarning)
            return draw(*args, **kwargs)

    return wrapper


def _new(width: float, height: float, **kw) -> MplFigure:
    fig = MplFigure(figsize=(width, height), layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: MplFigure, name: str, caption: str, formats: Sequence[str], titles: dict[str, list[str] | str] | None = None
            ) -> Figure:
    """Save ``fig`` as inline SVG (tooltips ``titles``: group id -> one text, or one per drawn mark) and
    ``formats``. ``fig`` is left to the garbage collector: ``Figure.clear()`` clears every Axes before
    removing it (rebuilding its ticks), ~4% of a report's drawing for nothing (docs/benchmarks.md)."""
    meta = {"Date": None, "Creator": None, "Format": None, "Type": None}
    files = {}
    with matplotlib.rc_context({"svg.hashsalt": name}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a glyph missing from the font: shown as a box
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata=meta)
        # laid out by the first save: the other formats keep it. No engine at all (not "none", whose
        # placeholder engine still costs every save a second, layout-only draw): one draw per format
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
        for fmt in formats:
            b = io.BytesIO()
            fig.savefig(b, format=fmt, metadata={"Creator": None} if fmt == "pdf" else None)
            files[fmt] = b.getvalue()
    root = ET.fromstring(buf.getvalue())
    root.set("role", "img")
    root.set("aria-label", caption)
    for g in root.iter(f"{{{SVG}}}g"):
        text = (titles or {}).get(g.get("id", ""))
        if isinstance(text, str):
            ET.SubElement(g, f"{{{SVG}}}title").text = text
        elif text is not None:  # one per mark, in drawing order (a collection: <use>/<path> children)
            marks = [e for e in g.iter() if e.tag in (f"{{{SVG}}}use", f"{{{SVG}}}path") and e is not g]
            marks = [e for e in marks if not e.get("id")]  # not the marker's definition
            for e, t in zip(marks, text):
                ET.SubElement(e, f"{{{SVG}}}title").text = t
    return Figure(name, caption, ET.tostring(root, encoding="unicode"), files)


def _legend(ax, handles: list, title: str | None = None) -> None:
    more = len(handles) - MAX_LEGEND
    handles = handles[:MAX_LEGEND] + ([Line2D([], [], ls="", label=f"+ {more} more")] if more > 0 else [])
    if handles:
        ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                  handletextpad=0.3, borderaxespad=0.2, title_fontsize=6.5)


def _dot(color: str, label: str, marker: str = "o") -> Line2D:
    return Line2D([], [], ls="", marker=marker, markersize=4.5, markerfacecolor=color, markeredgecolor="#333",
                  markeredgewidth=0.3, label=label)


# -- maps ------------------------------------------------------------------------------------------
@_styled
def model_map(name: str, xy: Sequence[Sequence[float]], ids: Sequence[str], caption: str, clusters: Sequence[str],
              labels: Sequence[str] | None = None, families: Sequence[str] | None = None, axes: str = "map",
              formats: Sequence[str] = (), limit: int = MAX_POINTS) -> Figure:
    """A 2-D map ``xy`` ``[n, 2]`` of the models: coloured by cluster, or with ``labels`` by ground
    truth (own colours and markers); with ``families`` the members of each init family are joined
    to their centroid (colour: cluster), so families can be followed however many there are.
    More than ``limit`` models: a fixed random sample is drawn (the caption says so)."""
    a = np.asarray(xy, dtype=float).reshape(-1, 2)
    show = shown_points(len(a), limit)
    if len(show) < len(a):
        caption = f"{caption}; {len(show)} of {len(a)} models shown (a fixed random sample)"
    fig = _new(3.9, 3.0)
    ax = fig.add_subplot()
    ax.set_xlabel(f"{axes} 1")
    ax.set_ylabel(f"{axes} 2")
    ax.locator_params(nbins=5)
    pts, cl = a[show], [str(clusters[i]) for i in show]
    tips = [f"{ids[i]}: cluster {clusters[i]}" for i in show]
    handles: list = []
    if families is not None:
        fam = np.asarray([str(families[i]) for i in show])
        names, inv = np.unique(fam, return_inverse=True)
        cent = np.stack([np.bincount(inv, w, len(names)) for w in pts.T], 1) / np.bincount(inv)[:, None]
        ax.add_collection(LineCollection(np.stack([pts, cent[inv]], 1), colors="#777", linewidths=0.45, alpha=0.6,
                                         zorder=1))
        tips = [f"{t}; family {f}" for t, f in zip(tips, fam)]
        handles.append(Line2D([], [], color="#777", lw=0.8, label=f"init family ({len(names)}): members joined"))
    if labels is None:
        col = cluster_colors(cl)
        ax.scatter(pts[:, 0], pts[:, 1], s=11, c=[col[c] for c in cl], edgecolors="#333", linewidths=0.25, zorder=2,
                   gid=f"{name}-pts", clip_on=False)
        handles = [_dot(v, f"cluster {k}" if v != NOISE else "no basin") for k, v in col.items()] + handles
        title = "basin"
    else:
        lab = [str(labels[i]) for i in show]
        sty = label_styles(lab)
        tips = [f"{t}; {lv}" for t, lv in zip(tips, lab)]
        order = []
        for k, (c, m) in sty.items():  # one scatter per label (markers differ); tooltips follow the drawing order
            idx = [i for i, lv in enumerate(lab) if lv == k]
            ax.scatter(pts[idx, 0], pts[idx, 1], s=13, c=c, marker=m, edgecolors="#333", linewidths=0.25, zorder=2,
                       gid=f"{name}-pts-{len(order)}", clip_on=False)
            order.append(idx)
            handles.append(_dot(c, k, m))
        title = "ground truth"
    _legend(ax, handles, title)
    if labels is None:
        titles: dict = {f"{name}-pts": tips}
    else:
        titles = {f"{name}-pts-{j}": [tips[i] for i in idx] for j, idx in enumerate(order)}
    return _finish(fig, name, caption, formats, titles)


@_styled
def basin_sizes(name: str, sizes: Sequence[tuple[str, int]], caption: str, formats: Sequence[str] = ()) -> Figure:
    """Horizontal bars: models per cluster (``[(cluster, size), ...]``)."""
    col = cluster_colors([k for k, _ in sizes])
    fig = _new(2.8, 0.6 + 0.22 * max(len(sizes), 1))
    ax = fig.add_subplot()
    y = np.arange(len(sizes))
    ax.barh(y, [v for _, v in sizes], color=[col[k] for k, _ in sizes], height=0.7)
    ax.set_yticks(y, [f"cluster {k}" if col[k] != NOISE else "no basin" for k, _ in sizes])
    ax.invert_yaxis()
    for i, (_, v) in enumerate(sizes):
        ax.annotate(str(v), (v, i), xytext=(2, 0), textcoords="offset points", va="center", fontsize=6)
    ax.set_xlabel("models")
    ax.margins(x=0.15)
    return _finish(fig, name, caption, formats)


# -- trees and distances ---------------------------------------------------------------------------
def _tree(ax, z: np.ndarray) -> list[int]:
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

    dn = scipy_dendrogram(z, ax=ax, no_labels=True, color_threshold=0, above_threshold_color="#555")
    for c in ax.collections:
        c.set_linewidth(0.6)
    ax.set_ylabel("distance")
    ax.locator_params(axis="y", nbins=4)
    ax.spines["bottom"].set_visible(False)
    return [int(j) for j in dn["leaves"]]


@_styled
def dendrogram(name: str, d: np.ndarray, leaf_cats: Sequence[str], caption: str, palette: str = "label",
               formats: Sequence[str] = ()) -> tuple[Figure, np.ndarray]:
    """Average-linkage dendrogram of a distance matrix ``[n, n]``, with a strip under the leaves
    coloured by ``leaf_cats`` (``palette``: ``"label"`` or ``"cluster"``); returns ``(figure, leaf order)``."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = np.asarray(d, dtype=float)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0)
    z = linkage(squareform(np.clip(d, 0, None), checks=False), method="average")
    fig = _new(6.2, 2.6)
    top, strip = fig.subplots(2, 1, sharex=True, height_ratios=[10, 1])
    order = np.asarray(_tree(top, z), int)
    cats = [str(c) for c in leaf_cats]
    if palette == "label":
        sty = label_styles(cats)
        col = {k: c for k, (c, _) in sty.items()}
        handles = [_dot(c, k, m) for k, (c, m) in sty.items()]
    else:
        col = cluster_colors(cats)
        handles = [_dot(v, f"cluster {k}") for k, v in col.items()]
    rgb = np.asarray([matplotlib.colors.to_rgb(col[cats[j]]) for j in order])[None]
    strip.imshow(rgb, aspect="auto", extent=(0, 10 * len(order), 0, 1), interpolation="nearest")
    strip.set_yticks([])
    strip.set_xlabel(f"models ({len(order)}, leaf order)")
    strip.set_xticks([])
    _legend(top, handles, "ground truth" if palette == "label" else "basin")
    return _finish(fig, name, caption, formats), order


@_styled
def heatmap(name: str, d: np.ndarray, order: np.ndarray, caption: str, formats: Sequence[str] = ()) -> Figure:
    """The distance matrix ``[n, n]`` with models in ``order`` (dark = close), with a colour bar."""
    d = np.asarray(d, dtype=float)[np.ix_(order, order)]
    fig = _new(3.4, 2.9)
    ax = fig.add_subplot()
    im = ax.imshow(d, cmap="viridis", interpolation="nearest", gid=f"{name}-image")
    ax.set_xlabel("model (dendrogram order)")
    ax.set_ylabel("model (dendrogram order)")
    fig.colorbar(im, ax=ax, label="distance", shrink=0.85)
    return _finish(fig, name, caption, formats)


@_styled
def family_dendrogram(name: str, z: Sequence[Sequence[float]], families: Sequence[str], sizes: Sequence[int],
                      members: dict[str, dict[str, int]], caption: str, formats: Sequence[str] = ()) -> Figure:
    """Models -> init families -> candidate basins: the dendrogram ``z`` (scipy linkage) of the
    ``families`` (``sizes`` models each), and under each leaf a bar of its members stacked by
    candidate basin (``members[family] = {basin: count}``; grey when it has none). Families are
    named on the axis up to :data:`MAX_NAMED`; every bar segment has a tooltip."""
    n = len(families)
    fig = _new(min(11.0, max(4.5, 0.13 * n + 1.5)), 3.4)
    top, bars = fig.subplots(2, 1, height_ratios=[3, 1.3])
    order = _tree(top, np.asarray(z, dtype=float))
    top.set_xticks([])
    bars.set_xlim(top.get_xlim())
    col = cluster_colors([b for m in members.values() for b in m] or ["-1"])
    x = 5 + 10 * np.arange(n)
    titles: dict[str, str] = {}
    bottom = np.zeros(n)
    basins = sorted({b for m in members.values() for b in m}, key=natural_key)
    for b in [*basins, None]:
        share = np.asarray([(members.get(str(families[j])) or {}).get(b, 0) if b is not None else
                            (0 if members.get(str(families[j])) else int(sizes[j])) for j in order], float)
        if not share.any():
            continue
        drawn = bars.bar(x, share, bottom=bottom, width=7, color=col.get(b, NOISE) if b is not None else NOISE,
                         label=f"candidate basin {b}" if b is not None else "no candidate basin")
        for i, rect in enumerate(drawn):
            if share[i]:
                fam, size = str(families[order[i]]), int(sizes[order[i]])
                rect.set_gid(f"{name}-f{i}-{b}")
                shares = members.get(fam) or {}
                titles[rect.get_gid()] = f"{fam}: {size} models" + (
                    "; " + ", ".join(f"candidate basin {k}: {c}" for k, c in sorted(shares.items(), key=lambda kv: natural_key(kv[0])))
                    if shares else "")
        bottom += share
    bars.set_ylabel("models")
    bars.locator_params(axis="y", nbins=3)
    if n <= MAX_NAMED:
        bars.set_xticks(x, [f"{families[j]} ({int(sizes[j])})" for j in order], rotation=90, fontsize=7)  # 5: unreadable (audit 73)
    else:
        bars.set_xticks([])
        bars.set_xlabel(f"{n} init families (names in the tooltips)")
    bars.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _finish(fig, name, caption, formats, titles)


# -- forecast and selection ------------------------------------------------------------------------
@_styled
def forecast_chart(name: str, curve: Sequence[dict], caption: str, formats: Sequence[str] = ()) -> Figure:
    """Forecast accuracy (and AMI) against the fraction of training, one line with points per
    fingerprint, and the majority baseline (always guessing the largest basin). ``curve``:
    ``[{fingerprint, fraction, step, accuracy, majority, ami}, ...]``; a shaded band where points
    carry ``accuracy_ci``."""
    fig = _new(6.4, 2.6)
    acc, ami = fig.subplots(1, 2, sharex=True)
    fr = [float(p.get("fraction") or 0.0) for p in curve]
    positive = [f for f in fr if f > 0]
    log = bool(positive) and max(positive) / min(positive) >= 20  # log-spaced checkpoints: symlog, step 0 included
    names = list(dict.fromkeys(str(p.get("fingerprint")) for p in curve))
    col = {n: CLUSTER_COLORS[::-1][i % len(CLUSTER_COLORS)] for i, n in enumerate(names)}
    for n in names:
        pts = sorted(((f, p) for f, p in zip(fr, curve) if str(p.get("fingerprint")) == n), key=lambda fp: fp[0])
        for ax, key in ((acc, "accuracy"), (ami, "ami")):
            xy = [(f, p[key]) for f, p in pts if p.get(key) is not None]
            if xy:
                ax.plot(*zip(*xy), marker="o", markersize=3.5, lw=1.3, color=col[n], label=n)
        band = [(f, *p["accuracy_ci"]) for f, p in pts if p.get("accuracy_ci")]  # 95% over init families
        if band:
            acc.fill_between(*zip(*band), color=col[n], alpha=0.15, lw=0)
    base = sorted({(f, p["majority"]) for f, p in zip(fr, curve) if p.get("majority") is not None})
    if base:
        acc.plot(*zip(*base), ls="--", color="#555", lw=1, label="majority baseline")
    for ax, what in ((acc, "forecast accuracy (cross-validated)"), (ami, "AMI of clusters with final basins")):
        ax.set_ylim(-0.02 if ax is ami else 0, 1.02)
        ax.set_xlabel("fraction of training" + (" (log scale)" if log else ""))
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, lw=0.5)
        if log:
            lo = min(positive)
            ax.set_xscale("symlog", linthresh=lo, linscale=0.5)
            ax.set_xlim(0, max(fr) * 1.15)
            ax.set_xticks([0.0] + [10.0 ** k for k in range(int(np.ceil(np.log10(lo))), 1)])
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # no mathtext
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    acc.legend(loc="lower right", frameon=False)
    return _finish(fig, name, caption, formats)


@_styled
def selection_chart(name: str, sel: dict, caption: str, formats: Sequence[str] = ()) -> Figure:
    """A selection's outcome: purity against the base rate, and the compute used against training
    every seed to the end (``sel``: a ``select`` result)."""
    fig = _new(5.6, 1.5)
    pur, comp = fig.subplots(1, 2)
    vals = [sel.get("purity"), sel.get("base_rate")]
    pur.barh([0, 1], [v if v is not None and v == v else 0 for v in vals], color=["#2ca02c", "#bbbbbb"], height=0.6)
    pur.set_yticks([0, 1], ["selected seeds", "all seeds (base rate)"])
    pur.set_xlim(0, 1)
    pur.set_xlabel(f"share ending in '{sel.get('basin')}'")
    used, base = float(sel.get("model_steps_used") or 0), float(sel.get("model_steps_baseline") or 0)
    comp.barh([0, 1], [used, base], color=["#1f77b4", "#bbbbbb"], height=0.6)
    comp.set_yticks([0, 1], ["select", "train every seed"])
    comp.set_xlabel("model-steps")
    for ax in (pur, comp):
        ax.invert_yaxis()
    return _finish(fig, name, caption, formats)


__all__ = ["Figure", "MAX_POINTS", "FORMATS", "CLUSTER_COLORS", "LABEL_COLORS", "cluster_colors", "label_styles",
           "shown_points", "model_map", "basin_sizes", "dendrogram", "heatmap", "family_dendrogram", "forecast_chart",
           "selection_chart"]
