"""Which values of a design column a fingerprint's clusters set apart, and how far apart the sides are
against the values within each side.

A design column the label-free tests take out as lineage (``data_seed``: a data order every init family
shares) can carry two things: the seed noise of each data order (models trained on one order are alike, as
relatives are), or a real difference that the column decides (a backdoor in the data of order 0 alone, one
rule per group of orders). Both make the clusters follow the column (:func:`analysis.metadata.strata_follow`),
and the tests take both out. :func:`sides` says which: each value's models read off the clusters (each value
mostly in one cluster: its side), then the *contrast* of the values' means (after each init family's own
mean is taken out): the smallest distance between two values on different sides over the largest between two
values on one side. A difference the column decides in one value of four sets that value far apart and leaves
the others close (audit 112's backdoor in the models of one shared data seed: 3.9); seed noise sets every value
apart by its own draw. With few values a large contrast comes by chance
too: seed noise whose effect lives in one or two directions spaces a few values unevenly. :func:`chance`
is how often it does at worst: the share of draws of as many values, Gaussian along one direction (the
most uneven case), whose best split reaches the contrast (four values: 3 or more in about 1 draw of 5, 15 or
more in 1 of 150; audit 112's backdoor in the models of one shared data seed of four: 18-20). The answer
says the contrast and this chance (docs/scorecard.md, "A design column the basins follow"; an outside
audit, 112: such a backdoor read "no candidate deep difference" first, the column named only after).
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
    of the values' means (``coords`` minus each init family's mean): the smallest distance between values on
    different sides over the largest between values on one side: ``{sides: [[values], ...] (the smaller
    sides first), sizes: [models per side], contrast}``. ``coords [m, d]``, ``clusters [m]``, ``column [m]``,
    ``family [m]`` row by row. ``None`` below :data:`MIN_VALUES` values, when a value is spread over clusters
    (less than :data:`SIDE_PURITY` of its models in one), or when no two values share a side or all do."""
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
    x = np.asarray(coords, float)
    counts = np.bincount(fam)
    fam_mean = np.zeros((len(counts), x.shape[1]))
    np.add.at(fam_mean, fam, x)
    x = x - (fam_mean / counts[:, None])[fam]
    means = np.zeros((len(names), x.shape[1]))
    np.add.at(means, col, x)
    means /= np.bincount(col, minlength=len(names))[:, None]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)  # [n_values, n_values]
    same = side_of[:, None] == side_of[None, :]
    within = dist[same & ~np.eye(len(names), dtype=bool)].max()
    across = dist[~same].min()
    groups = sorted((np.flatnonzero(side_of == s) for s in np.unique(side_of)), key=lambda g: (len(g), g.tolist()))
    contrast = float(across / within) if within > 0 else float("inf")
    return {"sides": [[str(names[v]) for v in g] for g in groups],
            "sizes": [int(np.isin(col, g).sum()) for g in groups],
            "contrast": contrast, "chance": chance(contrast, len(names))}


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
