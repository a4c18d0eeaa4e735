"""Which values of a design column a fingerprint's clusters set apart, and how far apart the sides are
against the values within each side.

A design column the label-free tests take out as lineage (``data_seed``: a data order every init family shares)
can carry two things: the seed noise of each data order (models trained on one order are alike, as relatives are),
or a real difference that the column decides (a backdoor in the data of order 0 alone, one rule per group of
orders). Both make the clusters follow the column (:func:`analysis.metadata.strata_follow`), and the tests take
both out. :func:`sides` says which it looks like: each value's models read off the clusters (each value mostly in
one cluster: its side), then the *contrast* of the values' effects (each init family's own mean taken out by an
additive fit): the smallest distance between two values on different sides over the largest between two values on
one side. A difference the column decides in one value of four sets that value far apart and leaves the others
close (outside audit 112's backdoor in the models of one shared data seed of four: 18-20); seed noise sets every
value apart by its own draw. With few values a large contrast comes by chance too: seed noise whose effect lives
in one or two directions spaces a few values unevenly. :func:`chance` is how often it does at worst: the share of
draws of as many values, Gaussian along one direction (the most uneven case), whose best split reaches the
contrast (four values: 3 or more in about 1 draw of 5, 15 or more in about 1 of 100). The answer says the sides,
the contrast and this chance (docs/scorecard.md, "Which values, and how far"; audit 112's backdoor read "no
candidate deep difference" first, the column named only after).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis import metrics as mt
from analysis import resampling as rs

__all__ = ["SIDE_PURITY", "sides", "table_sides"]

SIDE_PURITY = 0.8  # each value of the column has at least this share of its models in one cluster (its side)
MIN_VALUES = 3  # a column of two values: no values share a side, nothing to contrast


def sides(coords: np.ndarray, clusters: np.ndarray, column: np.ndarray, family: np.ndarray) -> dict[str, Any] | None:
    """The column's values by the cluster that holds most of each one's models (its side), and the contrast
    of the values' effects (an additive fit of ``coords`` on init family and value: each family's own mean
    taken out, whichever values it holds): the smallest distance between values on different sides over the
    largest between values on one side, and its :func:`chance`: ``{sides: [[values], ...] (the smaller sides
    first), sizes: [models per side], contrast, chance}``. ``coords [m, d]``, ``clusters [m]``, ``column [m]``,
    ``family [m]`` row by row. ``None`` below :data:`MIN_VALUES` values, when a value is spread over clusters
    (less than :data:`SIDE_PURITY` of its models in one), when no two values share a side or all do, or when
    the families do not join the values (a value held only by families holding no other)."""
    names, col = np.unique(np.asarray([str(v) for v in column], dtype=object), return_inverse=True)
    if len(names) < MIN_VALUES:
        return None
    cl = mt.label_codes(clusters)
    table = np.zeros((len(names), int(cl.max()) + 1), int)
    np.add.at(table, (col, cl), 1)
    if (table.max(1) < SIDE_PURITY * table.sum(1)).any():
        return None
    side_of = table.argmax(1)
    if len(set(side_of.tolist())) < 2 or len(set(side_of.tolist())) == len(names):
        return None
    fam, _ = rs.family_codes(family)
    if not _connected(fam, col):
        return None
    means = _value_effects(np.asarray(coords, float), fam, col)
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)  # [n_values, n_values]
    same = side_of[:, None] == side_of[None, :]
    within = dist[same & ~np.eye(len(names), dtype=bool)].max()
    across = dist[~same].min()
    groups = sorted((np.flatnonzero(side_of == s) for s in np.unique(side_of)), key=lambda g: (len(g), g.tolist()))
    contrast = float(across / within) if within > 0 else float("inf")
    return {"sides": [[str(names[v]) for v in g] for g in groups],
            "sizes": [int(np.isin(col, g).sum()) for g in groups],
            "contrast": contrast, "chance": chance(contrast, len(names))}


def _connected(fam: np.ndarray, col: np.ndarray) -> bool:
    """Whether the families join every value of the column to every other (a value held only by families that
    hold no other value has no family-free effect)."""
    n_fam = int(fam.max()) + 1
    parent = list(range(n_fam + int(col.max()) + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for f, v in set(zip(fam.tolist(), col.tolist())):
        parent[root(f)] = root(n_fam + v)
    return len({root(n_fam + v) for v in range(int(col.max()) + 1)}) == 1


def _value_effects(x: np.ndarray, fam: np.ndarray, col: np.ndarray, rounds: int = 200) -> np.ndarray:
    """Each value's effect ``[n_values, d]`` in the additive fit ``x ~ family + value`` of ``x [m, d]`` (up to one
    shift shared by all values), by alternating the two groups' means (backfitting: one round when every family
    holds every value equally, as a shared data order's design does)."""
    def means(y: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((int(codes.max()) + 1, y.shape[1]))
        np.add.at(out, codes, y)
        return out / np.bincount(codes)[:, None]

    v = np.zeros((int(col.max()) + 1, x.shape[1]))
    scale = max(float(np.abs(x).max()), 1e-300)
    for _ in range(rounds):
        new = means(x - means(x - v[col], fam)[fam], col)
        if np.abs(new - v).max() <= 1e-10 * scale:
            return new
        v = new
    return v


CHANCE_DRAWS = 20000


def chance(contrast: float, n_values: int, draws: int = CHANCE_DRAWS, seed: int = 0) -> float:
    """The share of ``draws`` of ``n_values`` standard normal numbers (values' seed noise along one direction)
    whose best split in two sides -- the largest over splits of the gap between the sides over the larger
    side's range -- reaches ``contrast``; at least ``1 / draws``."""
    pts = np.sort(np.random.default_rng(seed).standard_normal((draws, n_values)), axis=1)
    gaps = np.diff(pts, axis=1)  # [draws, n_values - 1]: the split after each sorted value
    left = pts[:, :-1] - pts[:, :1]  # the range of the values below each split
    right = pts[:, -1:] - pts[:, 1:]  # ... and above it
    with np.errstate(divide="ignore", invalid="ignore"):
        best = np.where(np.maximum(left, right) > 0, gaps / np.maximum(left, right), np.inf).max(1)
    return float(max(np.mean(best >= contrast), 1.0 / draws))


def table_sides(coords: np.ndarray, clusters: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray,
                family: np.ndarray, strata: list[str], seed: int = 0) -> dict[str, Any]:
    """:func:`sides` of each design column of ``strata`` in ``table`` (at ``rows``) against a fingerprint's
    ``coords [m, d]`` and ``clusters [m]``, on a sample of whole families above ``resampling.MAX_MODELS``
    models: ``{"strata_sides": [{column, sides, sizes, contrast, chance}]}`` (a fingerprint's ``scores``), or ``{}``
    when no column gives one."""
    if len(set(np.asarray(clusters).tolist())) < 2:
        return {}
    family = np.asarray(family, dtype=object)
    coords, clusters = np.asarray(coords), np.asarray(clusters)
    cols = {c: np.asarray(table[c], dtype=object)[rows] for c in strata if c in table}
    sample = rs.family_sample(family, rs.MAX_MODELS, seed)
    if sample is not None:
        coords, clusters, family = coords[sample], clusters[sample], family[sample]
        cols = {c: v[sample] for c, v in cols.items()}
    out = [{"column": c, **e} for c, v in cols.items() if (e := sides(coords, clusters, v, family))]
    return {"strata_sides": out} if out else {}
