"""The directed lineage forest from tested pairs, and its score against a known truth.

After MoTHer (Horwitz et al., ICLR 2025, "On the Origin of Llamas: Model Tree Heritage Recovery"):
inside each family (a connected component of the significantly related pairs of
:mod:`analysis.lineage`), the candidate edges are those pairs in both directions; an edge costs its
distance, plus a penalty (the family's median edge distance) when it runs against the direction in
which training moves a weight statistic; the minimum spanning arborescence of each family is its
tree. MoTHer's statistic is the weights' kurtosis; the weights' norm is the other candidate here.
:func:`orientation` picks the statistic and its sign from the same models' earlier checkpoints (the
one that moves most consistently one way during training), without looking at any lineage. With
checkpoint histories (:mod:`analysis.lineage_history`) the edges and their direction come from
them instead: a model's parent is a relative whose trajectory its first checkpoint continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.stats import kurtosis
from sklearn.metrics import adjusted_mutual_info_score

from analysis.errors import AnalysisError, choices
from analysis.lineage import PairTests, families

STATISTICS = ("kurtosis", "norm")


def weight_statistics(matrices: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-model statistics ``{name: [n_models]}`` of weight matrices (each ``[n_models, ...]``):
    ``kurtosis``, the excess kurtosis of the entries averaged over matrices (MoTHer's), and
    ``norm``, the Euclidean norm of all entries."""
    if not matrices:
        raise AnalysisError("orienting the lineage tree needs at least one weight matrix")
    flat = [np.asarray(m, dtype=float).reshape(len(m), -1) for m in matrices]
    return {"kurtosis": np.mean([kurtosis(f, axis=1) for f in flat], 0),
            "norm": np.sqrt(sum((f * f).sum(1) for f in flat))}


@dataclass(frozen=True)
class Orientation:
    """Which statistic orients tree edges, and ``sign`` (+1: training raises it, so a child's is
    higher); ``consistency``: the share of models in which it moved that way between checkpoints."""

    statistic: str
    sign: int
    consistency: float | None = None


def orientation(earlier: dict[str, np.ndarray], later: dict[str, np.ndarray], statistic: str = "auto") -> Orientation:
    """The orientation from the same models' statistics ``{name: [m]}`` at an earlier and a later
    checkpoint: the named statistic (or, for ``auto``, the most consistent one) and its sign."""
    names = STATISTICS if statistic == "auto" else (statistic,)
    if any(n not in STATISTICS for n in names):
        raise AnalysisError(f"unknown orientation statistic '{statistic}' (valid: {choices(STATISTICS + ('auto',))})")
    best = None
    for n in names:
        up = float(np.mean(np.asarray(later[n]) > np.asarray(earlier[n])))
        o = Orientation(n, 1 if up >= 0.5 else -1, max(up, 1 - up))
        if best is None or o.consistency > best.consistency:
            best = o
    return best


def lineage_forest(n: int, tests: PairTests, order: np.ndarray,
                   history: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   family: np.ndarray | None = None) -> np.ndarray:
    """Recovered parent of each model ``[n]`` (``-1``: a root) from ``tests`` and ``order [n]``,
    the oriented statistic (a child should have the higher value: ``sign * statistic``).

    ``history [n, n]`` (:func:`analysis.lineage_history.history_costs`), or the same as edges
    ``(parent [e], child [e], cost [e])`` (:func:`analysis.lineage_history.history_edges`), when
    given, replaces the final-weight edges: inside each family, ``p -> v`` is a candidate edge where
    ``history[p, v]`` is finite, at that cost, and a model without one is a root (it started from its
    initialization, as did its same-init siblings); the minimum spanning branching (fewest roots,
    then least cost) is the forest, and ``order`` is not used. ``family [n]``: :func:`families` of
    ``tests`` when the caller has them already (else computed here).
    """
    order = np.asarray(order, dtype=float)
    if order.shape != (n,):
        raise AnalysisError(f"the orientation statistic has shape {order.shape}, expected ({n},)")
    fam = families(n, tests) if family is None else np.asarray(family)
    if history is not None:
        return _history_forest(n, fam, history)
    r = tests.related & (fam[tests.a] == fam[tests.b])  # not the significant pairs left between families
    a, b, d = tests.a[r], tests.b[r], tests.distance[r]
    parent = np.full(n, -1, dtype=np.int64)
    for f in np.unique(fam[a]):
        inside = fam[a] == f
        fa, fb, fd = a[inside], b[inside], d[inside]
        penalty = float(np.median(fd)) if np.median(fd) > 0 else 1.0
        g = nx.DiGraph()
        for u, v, w in zip(fa.tolist(), fb.tolist(), fd.tolist()):
            rises = order[v] - order[u]  # > 0: u -> v runs the way training goes
            g.add_edge(u, v, weight=w + (penalty if rises < 0 else 0.0))
            g.add_edge(v, u, weight=w + (penalty if rises > 0 else 0.0))
        try:
            tree = list(nx.minimum_spanning_arborescence(g, attr="weight").edges())
        except nx.NetworkXException:  # networkx 3.6 finds none in some strongly connected graphs (measured: 185 nodes)
            tree = _edmonds(list(g.edges(data="weight")))
        for u, v in tree:
            parent[v] = u
    return parent


SIBLING_SHARE = 0.5  # a child continued from its parent moves at least this share of its own gap away from the grandparent


def sibling_or_child(parent: np.ndarray, a: np.ndarray, b: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Which models ``[n]`` (bool) of the forest ``parent [n]`` may as well be their tree parent's
    sibling as its child; ``distance [n_pairs]`` of the pairs ``(a, b)``.

    Fine-tunes of one base on one task take the same step away from it, so they are nearer each
    other than to their base, and the least-cost tree chains them (base -> c1 -> c2 -> c3). Of the two
    readings of a tree path ``g -> p -> v``, a child ``v`` that continued from ``p``'s final weights
    moved away from ``g`` as well: ``r = (d(g, v)^2 - d(g, p)^2) / d(p, v)^2`` is about 1 when its
    step is orthogonal to ``p``'s (more when it carries on the same way), while a sibling of ``p`` is
    as far from ``g`` as ``p`` is (``r`` about 0). So is a child started from a checkpoint partway
    through ``p``'s training, beside a same-init ``g`` (both ``p`` and ``v`` continued from the
    fork): final weights cannot tell those two apart, so the forest keeps its edge and this marks
    it (``r`` below :data:`SIBLING_SHARE`). Models without a tree grandparent, whose pairs have no
    distance, or that copy their parent (``d(p, v) = 0``) are not marked.
    """
    parent = np.asarray(parent)
    dist = {}
    for u, v, w in zip(np.asarray(a).tolist(), np.asarray(b).tolist(), np.asarray(distance, dtype=float).tolist()):
        dist[u, v] = dist[v, u] = w
    marked = np.zeros(len(parent), bool)
    for v, p in enumerate(parent.tolist()):
        g = int(parent[p]) if p >= 0 else -1
        if g < 0:
            continue
        gv, gp, pv = dist.get((g, v)), dist.get((g, p)), dist.get((p, v))
        marked[v] = gv is not None and gp is not None and bool(pv) and (gv * gv - gp * gp) / (pv * pv) < SIBLING_SHARE
    return marked


def _history_forest(n: int, fam: np.ndarray, history) -> np.ndarray:
    if isinstance(history, tuple):
        p, v, c = (np.asarray(h) for h in history)
    else:
        history = np.asarray(history, dtype=float)
        if history.shape != (n, n):
            raise AnalysisError(f"the history costs have shape {history.shape}, expected ({n}, {n})")
        p, v = np.nonzero(np.isfinite(history))
        c = history[p, v]
    keep = (p != v) & (fam[p] == fam[v]) & np.isfinite(c)
    p, v, c = p[keep], v[keep], c[keep]
    parent = np.full(n, -1, dtype=np.int64)
    for f in np.unique(fam[v]):
        inside = fam[v] == f
        edges = list(zip(p[inside].tolist(), v[inside].tolist(), c[inside].tolist()))
        for u, w in _edmonds(edges, sorted(np.flatnonzero(fam == f).tolist())):
            parent[w] = u
    return parent


def _edmonds(edges: list[tuple[int, int, float]], nodes: list[int] | None = None) -> list[tuple[int, int]]:
    """Chu-Liu/Edmonds: the minimum spanning branching ``[(parent, child), ...]`` of a graph given
    as ``(u, v, weight)`` edges on ``nodes`` (default: the edges' ends), over every choice of roots
    (a virtual root joined to every node at a cost above any tree's, so the optimum has the fewest
    roots: one for a strongly connected graph)."""
    nodes = sorted({x for u, v, _ in edges for x in (u, v)}) if nodes is None else nodes
    index = {m: i for i, m in enumerate(nodes)}
    big = 1.0 + sum(abs(w) for *_, w in edges)
    root = len(nodes)
    level = [(index[u], index[v], float(w), k) for k, (u, v, w) in enumerate(edges)]
    level += [(root, i, big, len(edges) + i) for i in range(len(nodes))]
    chosen = _contract(level, len(nodes) + 1, root)
    return [(edges[k][0], edges[k][1]) for k in chosen if k < len(edges)]


def _contract(edges: list[tuple[int, int, float, int]], n: int, root: int) -> list[int]:
    """The ids of the edges ``(u, v, w, id)`` of the minimum arborescence rooted at ``root`` (nodes ``0..n-1``)."""
    best: dict[int, tuple[int, int, float, int]] = {}
    for e in edges:
        if e[1] != root and e[0] != e[1] and (e[1] not in best or e[2] < best[e[1]][2]):
            best[e[1]] = e
    cycle_of = [-1] * n
    seen = [-1] * n
    n_cycles = 0
    for s in range(n):  # follow the cheapest incoming edges back from each node; a walk that meets itself is a cycle
        v = s
        while v != root and seen[v] == -1 and cycle_of[v] == -1:
            seen[v] = s
            v = best[v][0]
        if v != root and seen[v] == s and cycle_of[v] == -1:
            while cycle_of[v] == -1:
                cycle_of[v] = n_cycles
                v = best[v][0]
            n_cycles += 1
    if not n_cycles:
        return [best[v][3] for v in best]
    new_id, k = [0] * n, n_cycles
    for v in range(n):
        if cycle_of[v] >= 0:
            new_id[v] = cycle_of[v]
        else:
            new_id[v], k = k, k + 1
    head = {e[3]: e[1] for e in edges}
    smaller = [(new_id[u], new_id[v], w - (best[v][2] if cycle_of[v] >= 0 else 0.0), i) for u, v, w, i in edges
               if new_id[u] != new_id[v]]
    inner = _contract(smaller, k, new_id[root])
    entered = {head[i] for i in inner if cycle_of[head[i]] >= 0}
    return inner + [best[v][3] for v in range(n) if cycle_of[v] >= 0 and v not in entered]


def tree_accuracy(parent: np.ndarray, true_parent: np.ndarray, mask: np.ndarray | None = None
                  ) -> tuple[float | None, float | None]:
    """``(parent_accuracy, direction_accuracy)`` over the models with a true parent (and ``mask``).

    Parent accuracy: the recovered parent is the true one. Direction accuracy: of the true
    parent-child pairs the forest joins by an edge (either way), the share pointing the right way.
    ``None`` where there is nothing to count.
    """
    parent, true_parent = np.asarray(parent), np.asarray(true_parent)
    child = true_parent >= 0 if mask is None else (true_parent >= 0) & np.asarray(mask, bool)
    if not child.any():
        return None, None
    c = np.flatnonzero(child)
    p = true_parent[c]
    right = parent[c] == p
    wrong = parent[p] == c
    joined = right | wrong
    return float(right.mean()), (float(right[joined].mean()) if joined.any() else None)


def shared_init_rates(tests: PairTests, labels: np.ndarray, known: np.ndarray | None = None) -> dict[str, float | None]:
    """Rates against the true families ``labels [n]`` (``known [n]``: models whose family is known).

    ``shared_init_fpr`` / ``shared_init_power``: the share of unrelated / related pairs with
    ``p <= alpha`` (each test's own calibration and power); ``bh_fdp`` / ``bh_power``: the false
    share among the pairs Benjamini-Hochberg declares related, and the related pairs it finds.
    """
    labels = np.asarray(labels)
    ok = np.ones(len(tests.a), bool) if known is None else np.asarray(known)[tests.a] & np.asarray(known)[tests.b]
    same = (labels[tests.a] == labels[tests.b]) & ok
    diff = (labels[tests.a] != labels[tests.b]) & ok
    hit = tests.p_value <= tests.alpha
    rate = lambda x, m: float(x[m].mean()) if m.any() else None
    found = tests.related & ok
    return {"shared_init_fpr": rate(hit, diff), "shared_init_power": rate(hit, same),
            "bh_fdp": float(diff[found].mean()) if found.any() else (0.0 if ok.any() else None),
            "bh_power": rate(tests.related, same)}


def family_scores(family: np.ndarray, labels: np.ndarray, known: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Recovered families ``family [n]`` against the true ones ``labels [n]`` (among ``known``):
    ``family_ami`` (adjusted mutual information), ``n_merged`` (recovered families holding models
    of two or more true families) and ``n_split`` (true families of two or more models spread over
    two or more recovered ones)."""
    ok = np.ones(len(family), bool) if known is None else np.asarray(known, bool)
    f, t = np.asarray(family)[ok], np.asarray(labels)[ok]
    if len(f) < 2:
        return {"family_ami": None, "n_merged": None, "n_split": None}
    fc, tc = np.unique(f, return_inverse=True)[1].ravel(), np.unique(t, return_inverse=True)[1].ravel()
    pairs = np.unique(np.stack([fc, tc], 1), axis=0)  # the distinct (recovered, true) pairs, in one pass
    merged = int((np.bincount(pairs[:, 0]) > 1).sum())  # recovered families meeting two or more true ones
    spread = np.bincount(pairs[:, 1]) > 1  # true families over two or more recovered ones ...
    split = int((spread & (np.bincount(tc) >= 2)).sum())  # ... of two or more models
    return {"family_ami": float(adjusted_mutual_info_score(t, f)), "n_merged": int(merged), "n_split": int(split)}
