"""Which values of a design column a fingerprint's clusters set apart, and how far apart the sides are
against the values within each side.

A design column the label-free tests take out as lineage (``data_seed``: a data order every init family shares)
can carry two things: the seed noise of each data order (models trained on one order are alike, as relatives are),
or a real difference that the column decides (a backdoor in the data of order 0 alone, one rule per group of
orders). Both make the clusters follow the column (:func:`analysis.metadata.strata_follow`), and the tests take
both out. :func:`sides` says which it looks like: each value's models read off the clusters (each value mostly in
one cluster: its side), then the *contrast* of the values' effects -- an exact additive fit of family and value,
in coordinates whitened by the fit's residual covariance, so that a distance is in the models' own noise and not
in the features' scales (review 113) -- the smallest distance between two values on different sides over the
largest between two values on one side. A difference the column decides in one value of four sets that value far
apart and leaves the others close (outside audit 112's backdoor in the models of one shared data seed of four);
seed noise sets every value apart by its own draw. With few values a large contrast comes by chance too: seed noise
whose effect lives in one or two directions spaces a few values unevenly. :func:`chance` is how often Gaussian
seed noise does along one direction (the most uneven case): the share of draws of as many values whose best
partition into as many sides reaches the contrast. The answer says the column seems to decide a difference only
at a chance of :data:`DECIDES_CHANCE` or less: among the populations whose clusters follow their values closely
enough to have sides, one-direction seed noise reaches a chance of 5% two to four times as often as 5% (review
113), and heavy-tailed seed noise more often still. docs/scorecard.md, "Which values, and how far".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis import resampling as rs
from analysis.parents import generation
from analysis.sortkeys import natural_key
from analysis.values import missing

__all__ = ["DECIDES_CHANCE", "SIDE_PURITY", "chance", "generation_sides", "sides", "table_sides", "within_sides"]

SIDE_PURITY = 0.8  # each value of the column has at least this share of its models in one cluster (its side)
MIN_VALUES = 3  # a column of two values: no values share a side, nothing to contrast
DECIDES_CHANCE = 0.01  # the column seems to decide a difference at this chance or less (selection: module docstring)
CHANCE_DRAWS = 20000
MAX_PARTITIONS = 500  # partitions of the sorted draws tried per draw, at most: beyond, no chance (no "decides")
WITHIN_SIDE_VALUES = 2  # inside the families, a side of at least this many values (one value apart: its own quirk)
WITHIN_SIDE_SHARE = 0.3  # ... and this share of them (rounded down: 3 of 10; review 128, skewed seed noise sets 2 apart)
EXHAUSTIVE_VALUES = 12  # up to this many values every two-sided partition is tried; beyond, contiguous cuts along axes
WITHIN_CONTRAST = 1.5  # inside the families, sides at least this much farther apart than the values on each side
WITHIN_MAX_VALUES = 60  # above, no sides inside the families (the search's memory grows as the cube of the values)


def sides(coords: np.ndarray, clusters: np.ndarray, column: np.ndarray, family: np.ndarray) -> dict[str, Any] | None:
    """The column's values by the cluster that holds most of each one's models (its side), and the contrast of
    the values' effects (:func:`_value_effects`): the smallest distance between values on different sides over
    the largest between values on one side, and its :func:`chance` for that many sides: ``{sides: [[values],
    ...] (the smaller sides first), sizes: [models per side], contrast, chance}`` (``chance`` ``None`` when
    too many partitions to try). ``coords [m, d]``, ``clusters [m]``, ``column [m]``, ``family [m]`` row by
    row; models whose value or family is missing, or that no cluster holds (``-1``), are left out. ``None``
    below :data:`MIN_VALUES` values or two clusters, when a value is spread over clusters (less than
    :data:`SIDE_PURITY` of its models in one), when no two values share a side or all do, when the families do
    not join the values (a value held only by families holding no other), or without a finite contrast."""
    x = np.asarray(coords, float)
    if x.ndim != 2 or not len(x):
        return None
    keep = np.asarray([not missing(v) for v in column]) & np.asarray([not missing(f) for f in family]) \
        & (np.asarray(clusters) != -1) & np.isfinite(x).all(1)
    if not keep.any():
        return None
    col, names = rs.family_codes([_shown(v) for v in np.asarray(column, dtype=object)[keep]])
    cl = rs.family_codes(np.asarray(clusters)[keep])[0]  # (codes of any labelling, sorted by name)
    if len(names) < MIN_VALUES or int(cl.max(initial=0)) < 1:
        return None
    table = np.zeros((len(names), int(cl.max()) + 1), int)
    np.add.at(table, (col, cl), 1)
    if (table.max(1) < SIDE_PURITY * table.sum(1)).any():
        return None
    side_of = table.argmax(1)
    n_sides = len(set(side_of.tolist()))
    if n_sides < 2 or n_sides == len(names):
        return None
    effects = _value_effects(x[keep], rs.family_codes(np.asarray(family, dtype=object)[keep])[0], col)
    if effects is None:
        return None
    dist = np.linalg.norm(effects[:, None] - effects[None], axis=-1)  # [n_values, n_values]
    same = side_of[:, None] == side_of[None, :]
    within = dist[same & ~np.eye(len(names), dtype=bool)].max()
    across = dist[~same].min()
    if not (np.isfinite(within) and np.isfinite(across) and within > 0 and across > 0):
        return None
    groups = sorted((np.flatnonzero(side_of == s) for s in np.unique(side_of)), key=lambda g: (len(g), g.tolist()))
    contrast = float(across / within)
    return {"sides": [[str(names[v]) for v in g] for g in groups],
            "sizes": [int(np.isin(col, g).sum()) for g in groups],
            "contrast": contrast, "chance": chance(contrast, len(names), n_sides)}


def _shown(v: Any) -> str:
    """A column value as the answer names it: a whole float as an integer (``500000``, not ``500000.0``: a CSV
    column with a gap is read as floats)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _value_effects(x: np.ndarray, fam: np.ndarray, col: np.ndarray) -> np.ndarray | None:
    """Each value's effect ``[n_values, d]`` in the least-squares fit ``x ~ family + value`` of ``x [m, d]``
    (:func:`_additive_fit`), in coordinates whitened by the fit's residual covariance: each distance in the models'
    noise, not in the features' scales (review 113: standardised features shrank a planted shift to a contrast seed
    noise gives). The covariance is shrunk towards its mean variance, the more the fewer residual degrees of freedom
    per coordinate, so that a direction with little or no residual spread (more coordinates than degrees of freedom)
    keeps a finite scale instead of being dropped or blown up (review 114). ``None`` when the families do not join
    the values, no residual degree of freedom is left, or the residuals are round-off beside the coordinates' spread
    (nothing to measure a distance in)."""
    fit = _additive_fit(x, fam, col)
    if fit is None:
        return None
    effects, resid = fit
    d, dof = x.shape[1], len(x) - int(fam.max()) - int(col.max()) - 1
    if dof < 1:
        return None
    cov = resid.T @ resid / dof
    mean_var = float(np.trace(cov)) / d
    if not mean_var > 1e-12 * float(np.var(x, axis=0).sum()) / d:
        return None
    a = d / (d + dof)  # shrinkage: a half at one degree of freedom per coordinate
    vals, vecs = np.linalg.eigh((1 - a) * cov + a * mean_var * np.eye(d))
    return effects @ (vecs / np.sqrt(vals))


def _additive_fit(x: np.ndarray, fam: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The least-squares fit ``x ~ family + value`` of ``x [m, d]``, solved exactly with the families absorbed (the
    values' own ``n_values x n_values`` system): ``(effects [n_values, d] (up to one shift shared by all values),
    residuals [m, d])``, or ``None`` when the families do not join the values (the system's rank below
    ``n_values - 1``: a value held only by families that hold no other)."""
    n_fam, n_val = int(fam.max()) + 1, int(col.max()) + 1
    both = np.zeros((n_fam, n_val))
    np.add.at(both, (fam, col), 1.0)
    per_fam, per_val = both.sum(1), both.sum(0)
    sum_f, sum_v = np.zeros((n_fam, x.shape[1])), np.zeros((n_val, x.shape[1]))
    np.add.at(sum_f, fam, x)
    np.add.at(sum_v, col, x)
    system = np.diag(per_val) - both.T @ (both / per_fam[:, None])  # rows summing to 0
    effects, _, rank, _ = np.linalg.lstsq(system, sum_v - both.T @ (sum_f / per_fam[:, None]), rcond=None)
    if rank < n_val - 1:
        return None
    fams = (sum_f - both @ effects) / per_fam[:, None]
    return effects, x - fams[fam] - effects[col]


def chance(contrast: float, n_values: int, n_sides: int = 2, draws: int = CHANCE_DRAWS, seed: int = 0,
           smallest: int = 1) -> float | None:
    """The share of ``draws`` of ``n_values`` standard normal numbers (values' seed noise along one direction)
    whose best partition into ``n_sides`` contiguous sides of ``smallest`` values or more -- the largest over
    partitions of the smallest gap between neighbouring sides over the largest side's range -- reaches
    ``contrast``; at least ``1 / draws``. ``None`` beyond :data:`MAX_PARTITIONS` partitions (``n_values - 1``
    choose ``n_sides - 1``)."""
    from itertools import combinations
    from math import comb

    if comb(n_values - 1, n_sides - 1) > MAX_PARTITIONS:
        return None
    pts = np.sort(np.random.default_rng(seed).standard_normal((draws, n_values)), axis=1)
    gaps = np.diff(pts, axis=1)  # [draws, n_values - 1]
    best = np.zeros(draws)
    for cuts in combinations(range(n_values - 1), n_sides - 1):
        bounds = [0, *(c + 1 for c in cuts), n_values]
        if min(b - a for a, b in zip(bounds[:-1], bounds[1:])) < smallest:
            continue
        ranges = np.max([pts[:, b - 1] - pts[:, a] for a, b in zip(bounds[:-1], bounds[1:])], axis=0)
        gap = gaps[:, list(cuts)].min(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.maximum(best, np.where(ranges > 0, gap / ranges, np.inf))
    return float(max(np.mean(best >= contrast), 1.0 / draws))


def within_sides(coords: np.ndarray, column: np.ndarray, family: np.ndarray) -> dict[str, Any] | None:
    """The two sides of a design column's values that its effects inside the init families set farthest apart,
    whatever the clusters (outside audit 123: a backdoor in the data of 3 of 10 data orders the 4 bases' fine-tunes
    shared read "no candidate" with no lead: the clusters were the bases, each order on all of them, so
    :func:`sides` had none). Each value's effect in the whitened fit ``x ~ family + value`` (:func:`_value_effects`),
    then the partition into two sides of :data:`WITHIN_SIDE_VALUES` values or more and :data:`WITHIN_SIDE_SHARE` of
    them (one value apart is that value's
    own quirk, which heavy-tailed seed noise gives) with the largest contrast (the smallest distance across over the
    largest within a side): every partition up to :data:`EXHAUSTIVE_VALUES` values, else the contiguous cuts along
    the effects' top three principal axes (a lower contrast at most). Its :func:`chance` is that of one direction,
    the most uneven case up to about 12 values; with more values in more directions Gaussian effects reach a given
    contrast *more* often than in one (distances concentrate: review 128, 40 values of pure noise in 10 coordinates
    read "decides" in 25 of 30 populations), so sides count only at a contrast of :data:`WITHIN_CONTRAST` or more
    (farther apart than the values on each side), and not above :data:`WITHIN_MAX_VALUES` values.
    docs/scorecard.md "A column that decides inside the families". ``{sides, sizes, contrast, chance}`` as
    :func:`sides` (each side's values in natural order; ``chance`` ``None`` below the contrast: a test that cannot
    decide), or ``None`` outside twice :data:`WITHIN_SIDE_VALUES` to :data:`WITHIN_MAX_VALUES` values or when
    :func:`_value_effects` gives none. ``coords [m, d]``, ``column [m]``, ``family [m]``; a missing value or family is left out."""
    x = np.asarray(coords, float)
    keep = np.asarray([not missing(v) for v in column]) & np.asarray([not missing(f) for f in family])
    if x.ndim != 2 or not keep.any():
        return None
    keep &= np.isfinite(x).all(1)
    col, names = rs.family_codes([_shown(v) for v in np.asarray(column, dtype=object)[keep]])
    if not 2 * WITHIN_SIDE_VALUES <= len(names) <= WITHIN_MAX_VALUES:
        return None
    effects = _value_effects(x[keep], rs.family_codes(np.asarray(family, dtype=object)[keep])[0], col)
    if effects is None:
        return None
    smallest = max(WITHIN_SIDE_VALUES, int(WITHIN_SIDE_SHARE * len(names)))
    side, contrast = _farthest_sides(effects, smallest)
    if side is None:
        return None
    groups = sorted((np.flatnonzero(side == s) for s in (0, 1)), key=lambda g: (len(g), g.tolist()))
    return {"sides": [sorted((str(names[v]) for v in g), key=natural_key) for g in groups],
            "sizes": [int(np.isin(col, g).sum()) for g in groups], "contrast": contrast,
            # below the contrast floor a test that cannot decide, counted in the answer's correction
            "chance": chance(contrast, len(names), 2, smallest=smallest) if contrast >= WITHIN_CONTRAST else None}


def _farthest_sides(effects: np.ndarray, smallest: int = WITHIN_SIDE_VALUES) -> tuple[np.ndarray | None, float]:
    """The partition ``[n_values]`` (0/1) of ``effects [n_values, d]`` into two sides of ``smallest`` values or more
    with the largest contrast, and that contrast (``(None, 0.0)`` without a finite one)."""
    v = len(effects)
    if v <= EXHAUSTIVE_VALUES:
        masks = (np.arange(1, 2 ** (v - 1))[:, None] >> np.arange(v)) & 1  # [partitions, v], value v-1 always on side 0
    else:
        centred = effects - effects.mean(0)
        axes = np.linalg.svd(centred, full_matrices=False)[2][:3]
        ranks = np.argsort(np.argsort(centred @ axes.T, axis=0), axis=0).T  # [axes, v] each value's rank along an axis
        masks = (ranks[:, None, :] < np.arange(1, v)[None, :, None]).reshape(-1, v).astype(int)
    masks = masks[(masks.sum(1) >= smallest) & (v - masks.sum(1) >= smallest)]
    if not len(masks):
        return None, 0.0
    dist = np.linalg.norm(effects[:, None] - effects[None], axis=-1)  # [v, v]
    same = masks[:, :, None] == masks[:, None, :]  # [partitions, v, v]
    within = np.where(same, dist, 0.0).max((1, 2))
    across = np.where(same, np.inf, dist).min((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(within > 0, across / within, 0.0)
    contrast[~np.isfinite(contrast)] = 0.0
    best = int(contrast.argmax())
    return (masks[best], float(contrast[best])) if contrast[best] > 0 else (None, 0.0)


def table_sides(coords: np.ndarray, clusters: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray,
                family: np.ndarray, strata: list[str], seed: int = 0) -> dict[str, Any]:
    """:func:`sides` of each design column of ``strata`` in ``table`` (at ``rows``) against a fingerprint's
    ``coords [m, d]`` and ``clusters [m]``, on a sample of whole families above ``resampling.MAX_MODELS``
    models: ``{"strata_sides": [{column, sides, sizes, contrast, chance[, generation]}]}`` (a fingerprint's
    ``scores``), and ``"strata_within"``: :func:`within_sides` of each column that got none; ``{}`` when no
    column gives either. ``generation`` (true) when the sides are the generations of
    ``parent_id``'s chains (:func:`generation_sides`)."""
    family = np.asarray(family, dtype=object)
    coords, clusters = np.asarray(coords), np.asarray(clusters)
    cols = {c: np.asarray(table[c], dtype=object)[rows] for c in strata if c in table}
    gen = generation(table["model_id"], table["parent_id"])[rows] if "parent_id" in table and "model_id" in table else None
    sample = rs.family_sample(family, rs.MAX_MODELS, seed)
    if sample is not None:
        coords, clusters, family = coords[sample], clusters[sample], family[sample]
        cols = {c: v[sample] for c, v in cols.items()}
        gen = None if gen is None else gen[sample]
    clustered = len(set(clusters.tolist())) > 1
    out = [{"column": c, **e} | ({"generation": True} if gen is not None and generation_sides(e["sides"], v, gen) else {})
           for c, v in cols.items() if clustered and (e := sides(coords, clusters, v, family))]
    # where the clusters give a column no sides, its values' effects inside the families may (within_sides)
    given = {o["column"] for o in out}
    inside = [{"column": c, **e} for c, v in cols.items() if c not in given and (e := within_sides(coords, v, family))]
    return ({"strata_sides": out} if out else {}) | ({"strata_within": inside} if inside else {})


def generation_sides(sides_: list[list[str]], column: np.ndarray, gen: np.ndarray) -> bool:
    """Whether the ``sides`` of a ``column [m]`` (:func:`sides`, values as strings) are the generations ``gen [m]`` of
    a parent chain: every side's models of one generation, and no generation on two sides (outside audit 115: base
    models trained on data order 100 and their fine-tunes on orders 200-205; the column's value 100 set apart from the
    rest "seemed to decide" a difference that was the fine-tuning, which parent_id recorded)."""
    if len(set(np.asarray(gen).tolist())) < 2:
        return False
    side_of = {v: i for i, vs in enumerate(sides_) for v in vs}
    pairs = {(side_of[_shown(v)], int(g)) for v, g in zip(column, gen) if not missing(v) and _shown(v) in side_of}
    return len({s for s, _ in pairs}) == len(pairs) == len({g for _, g in pairs}) >= 2
