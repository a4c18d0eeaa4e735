"""The report's lineage section: the forest ``fingerprint lineage`` recovered, next to the true one.

:func:`lineage_view` takes the stored forest (``results/lineage.json``: ``edges`` ``[[parent,
child, p], ...]``, ``truth`` and ``by_evidence`` scores) with the zoo's truth (``true_parent``
``{child: parent}``, ``true_family`` ``{model: family}``) and returns what the page shows: the
truth scores of each evidence, one row per model that has a true or a recovered parent, marked
(right parent, reversed, same family, wrong), and one figure: the true forest (left) and the
recovered edges drawn on the same positions (right), coloured by what they got right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from analysis.plots import Figure, _finish, _hue, _legend, _new, _styled
from analysis.sortkeys import natural_key

__all__ = ["LineageView", "lineage_view", "forest_figure", "MAX_ROWS", "MAX_DRAWN", "MARKS"]

MAX_ROWS = 200  # edge-table rows shown (the rest are in results/lineage.json)
MAX_DRAWN = 1500  # more models than this: no forest figure (a node each would be unreadable)
# an edge's mark -> (colour, the legend's words)
MARKS = {"parent": ("#009E73", "true parent -> child"), "reversed": ("#E69F00", "reversed (child -> parent)"),
         "family": ("#0072B2", "within a true family"), "wrong": ("#D55E00", "across true families"),
         "unknown": ("#777777", "no truth to score it against")}


@dataclass
class LineageView:
    """The lineage section: ``scores`` (per evidence), ``rows`` of the edge table (one per model, its
    own mark), ``counts`` of the recovered edges by :func:`mark`, ``figure``."""

    evidence: str
    alpha: float | None
    truth: dict[str, Any]
    scores: list[tuple[str, dict[str, Any]]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    figure: Figure | None = None
    has_parents: bool = False
    has_families: bool = False
    n_pairs: int | None = None
    n_pairs_total: int | None = None
    n_true_families: int | None = None  # the zoo's init families (None: no truth), beside the recovered ones


def mark(parent: str, child: str, true_parent: Mapping[str, str], true_family: Mapping[str, str]) -> str:
    """What a recovered edge ``parent -> child`` got right: ``parent``, ``reversed``, ``family``
    (both in one true family, not a true parent link), ``wrong``, or ``unknown`` (no truth at all)."""
    if not true_parent and not true_family:
        return "unknown"
    if true_parent.get(child) == parent:
        return "parent"
    if true_parent.get(parent) == child:
        return "reversed"
    fp, fc = true_family.get(parent), true_family.get(child)
    return "family" if fp is not None and fp == fc else "wrong"


def _layout(ids: Sequence[str], true_parent: Mapping[str, str], family: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """Positions: families side by side (a gap between them), each family's true trees drawn
    depth-first (a child under and after its parent), depth downwards."""
    children: dict[str, list[str]] = defaultdict(list)
    for c, p in true_parent.items():
        children[p].append(c)
    members: dict[str, list[str]] = defaultdict(list)
    for m in ids:
        members[family.get(m, f"alone:{m}")].append(m)
    pos, x = {}, 0.0
    for fam in sorted(members, key=natural_key):
        inside = set(members[fam])
        roots = sorted((m for m in members[fam] if true_parent.get(m) not in inside), key=natural_key)
        stack = [(r, 0) for r in reversed(roots)]
        while stack:
            m, depth = stack.pop()
            if m in pos:
                continue
            pos[m] = (x, -float(depth))
            x += 1.0
            stack += [(c, depth + 1) for c in sorted(children.get(m, []), key=natural_key, reverse=True) if c in inside]
        x += 1.0
    return pos


@_styled
def forest_figure(name: str, ids: Sequence[str], edges: Sequence[Sequence[Any]], true_parent: Mapping[str, str],
                  true_family: Mapping[str, str], caption: str, formats: Sequence[str] = (),
                  recovered: Mapping[str, str] | None = None) -> Figure:
    """Two panels on the same positions: the true forest (parent links; members of a true family
    underlined together) and the recovered edges, coloured by :func:`mark`, with the recovered
    families (``recovered``: model -> family) underlined: a family that joins unrelated true families
    in red, its parts linked (an outside audit, 73: the true underlines hid two false merges)."""
    family = dict(true_family) or {m: "all" for m in ids}
    pos = _layout(ids, true_parent, family)
    xy = np.asarray([pos[m] for m in ids])
    depth = max(1.0, -xy[:, 1].min())
    fig = _new(7.6, 2 * (1.0 + 0.4 * depth))
    names = sorted(set(family.values()), key=natural_key)
    hue = {f: _hue(i) for i, f in enumerate(names)}
    colours = [hue.get(family.get(m), "#9a9a9a") for m in ids]
    for k, title in enumerate(("true lineage", "recovered by `fingerprint lineage`")):
        ax = fig.add_subplot(2, 1, k + 1)
        ax.set_title(title, loc="left")
        if k == 1 and recovered:
            n_recovered, merged = _recovered_underlines(ax, ids, pos, family, recovered)
        else:
            for f in names:  # a true family's members underlined together
                xs = [pos[m][0] for m in ids if family.get(m) == f]
                ax.plot([min(xs) - 0.3, max(xs) + 0.3], [0.45, 0.45], color=hue[f], lw=1.2, solid_capstyle="butt")
        if k == 0:
            segs = [(pos[p], pos[c]) for c, p in true_parent.items() if p in pos and c in pos]
            ax.add_collection(LineCollection(segs, colors="#555", linewidths=0.7))
            handles = [Line2D([], [], color="#555", lw=1, label=f"parent -> child ({len(segs)})"),
                       Line2D([], [], color="#999", lw=1.5, label=f"init family ({len(names)})")]
        else:
            by: dict[str, list] = defaultdict(list)
            for p, c, *_ in edges:
                if p in pos and c in pos:
                    by[mark(str(p), str(c), true_parent, true_family)].append((pos[p], pos[c]))
            handles = [] if not recovered else [
                Line2D([], [], color="#555", lw=1.5, label=f"recovered family ({n_recovered})")] + (
                [Line2D([], [], color=MERGED, lw=1.5, label=f"joins unrelated families ({merged})")] if merged else [])
            for what, (col, words) in MARKS.items():
                if by.get(what):
                    ax.add_collection(LineCollection(by[what], colors=col, linewidths=0.9))
                    handles.append(Line2D([], [], color=col, lw=1.2, label=f"{words} ({len(by[what])})"))
        ax.scatter(xy[:, 0], xy[:, 1], s=9, c=colours, edgecolors="#333", linewidths=0.25, zorder=3,
                   gid=f"{name}-nodes-{k}", clip_on=False)
        ax.set_ylim(-depth - 0.5, 1.1 if k == 1 and recovered else 0.8)  # room for stacked and linked underlines
        ax.set_xlim(-1, xy[:, 0].max() + 1)
        ax.set_yticks([-d for d in range(int(depth) + 1)], [str(d) for d in range(int(depth) + 1)])
        ax.set_ylabel("depth")
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        _legend(ax, handles)
    tips = [f"{m}: family {family.get(m, '?')}" + (f", parent {true_parent[m]}" if m in true_parent else "") for m in ids]
    return _finish(fig, name, caption, formats, {f"{name}-nodes-0": tips, f"{name}-nodes-1": tips})


MERGED = "#C00000"  # a recovered family that joins models of different true families


def _recovered_underlines(ax: Any, ids: Sequence[str], pos: Mapping[str, tuple[float, float]], family: Mapping[str, str],
                          recovered: Mapping[str, str]) -> tuple[int, int]:
    """Underline each recovered family of two or more models, one segment per true family it holds
    (the layout keeps true families together); a family holding several true families is drawn in
    :data:`MERGED` with its segments linked above them. Returns how many families were underlined,
    and how many of them are such merges."""
    members: dict[str, list[str]] = defaultdict(list)
    for m in ids:
        if m in recovered:
            members[str(recovered[m])].append(m)
    underlined = merged = 0
    drawn: dict[str, int] = defaultdict(int)  # underlines under each true family: a split one's parts stacked
    for fam, ms in members.items():
        if len(ms) < 2:
            continue
        underlined += 1
        parts: dict[str, list[float]] = defaultdict(list)
        for m in ms:
            parts[family.get(m, f"alone:{m}")].append(pos[m][0])
        joins = len(parts) > 1
        merged += joins
        colour = MERGED if joins else "#555"
        ys = []
        for t, xs in parts.items():
            y = 0.45 + 0.12 * drawn[t]
            drawn[t] += 1
            ys.append(y)
            ax.plot([min(xs) - 0.3, max(xs) + 0.3], [y, y], color=colour, lw=1.2, solid_capstyle="butt")
        if joins:
            mids = [(min(xs) + max(xs)) / 2 for xs in parts.values()]
            top = max(ys) + 0.25
            ax.plot([mids[0], mids[0], mids[-1], mids[-1]], [ys[0], top, top, ys[-1]], color=MERGED, lw=0.8)
    return underlined, merged


def lineage_view(stored: Mapping[str, Any], model_ids: Sequence[str], formats: Sequence[str] = ()) -> LineageView:
    """The section from the stored forest and the zoo's truth (see the module's docstring)."""
    true_parent = {str(c): str(p) for c, p in (stored.get("true_parent") or {}).items()}
    true_family = {str(m): str(f) for m, f in (stored.get("true_family") or {}).items()}
    edges = [(str(p), str(c), float(pv)) for p, c, pv in stored.get("edges") or []]
    by = stored.get("by_evidence") or {}
    view = LineageView(str(stored.get("evidence")), stored.get("alpha"), dict(stored.get("truth") or {}),
                       [(str(k), dict(v)) for k, v in by.items()], has_parents=bool(true_parent),
                       has_families=bool(true_family), n_pairs=stored.get("n_pairs"),
                       n_pairs_total=stored.get("n_pairs_total"),
                       n_true_families=len(set(true_family.values())) if true_family else None)
    rec = {c: (p, pv) for p, c, pv in edges}
    rows = []
    for m in sorted(set(true_parent) | set(rec), key=natural_key):
        p, pv = rec.get(m, (None, None))
        if m in true_parent:
            what = "parent" if p == true_parent[m] else (
                "reversed" if rec.get(true_parent[m], (None,))[0] == m else ("missed" if p is None else "wrong"))
        else:
            what = mark(p, m, true_parent, true_family)
        rows.append({"model": m, "true_parent": true_parent.get(m), "parent": p, "p_value": pv, "mark": what})
    view.n_rows, view.rows = len(rows), rows[:MAX_ROWS]
    marks = [mark(p, c, true_parent, true_family) for p, c, _ in edges]  # per edge, as the figure's legend counts
    view.counts = {k: n for k in MARKS if (n := marks.count(k))}
    ids = [str(m) for m in model_ids]
    if 2 <= len(ids) <= MAX_DRAWN:
        recovered = {str(m): str(f) for m, f in (stored.get("family_of") or {}).items()}
        view.figure = forest_figure("lineage-forest", ids, edges, true_parent, true_family,
                                    "lineage forest: the true one (top; parent links from parent_id, init families "
                                    "underlined) and the one `fingerprint lineage` recovered (bottom, same positions; "
                                    + ("edges from checkpoint histories" if (stored.get("history") or {}).get("used")
                                       else "edges from final weights")
                                    + ("; its families underlined, red where one joins unrelated true families" if recovered else "")
                                    + "), each edge coloured by what it got right", formats, recovered or None)
    return view
