"""How big a candidate deep difference is, and one init family standing apart from the others.

The label-free tests (:mod:`analysis.labelfree`) say whether candidate basins are there, not how
big the difference between them is: a null regression population's camps 1e-4 apart in normalised
outputs read exactly like a planted backdoor (docs/scorecard.md, "How big is the difference"). Here:

- :func:`basin_effect`: the share of a fingerprint's variance the candidate basins explain
  (between-basin over total sum of squares), in the raw fingerprint and in the coordinates the tests
  ran in, and the basins' separation along the line joining their means in pooled within-basin
  SDs, each with a bias-corrected estimate and a 95% basic family-bootstrap interval (the basins
  fixed, whole families resampled).
- :func:`family_apart`: one init family that a fingerprint's own basins set apart from all the
  others (a basin of exactly its models, every other basin of two or more families), an
  exploratory pointer: by design one family apart is one seed's quirk, not a basin, and real null
  populations show it too (measured in docs/results.md, "Effect sizes and one family apart (audit 45)").

Nothing here changes a p-value; :func:`analysis.labelfree.decide` reads the ``small`` mark (no deep
verdict from a small partition). Arrays in, plain dicts out; invalid input raises
``ValueError``. Longer than ~400 lines because the three statistics, their bootstrap samples and the
rules that read them (``small``, ``no_gap``) share helpers and are read together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.labelfree import LabelFreeResult, _centroids, _family_centred
from analysis.resampling import (
    basic_interval,
    family_bootstrap_batch_values,
    family_bootstrap_values,
    family_codes,
    family_counts,
    small_sample_expansion,
)

__all__ = ["SizedLabelFree", "sized", "basin_effect", "family_apart", "share_of_variance", "separation", "GAUSSIAN_HALVES",
           "APART_MIN_FAMILIES", "centroid_ratio", "gap_p", "spacing_p", "GAP_ALPHA"]

# Two halves of one Gaussian cloud, split at its mean, are this many within-half SDs apart
# (2 sqrt(2/pi) / sqrt(1 - 2/pi) = 2.65). Candidate basins closer than that along the line between
# them are "a small difference" in the verdict's sentence: no further apart than a split of one
# cloud. Measured (docs/results.md, "Effect sizes and one family apart (audit 45)"): the false
# `crosses lineage` of a null regression population 0.48 SDs, 77 planted deep verdicts 4.7-149.
GAUSSIAN_HALVES = float(2 * np.sqrt(2 / np.pi) / np.sqrt(1 - 2 / np.pi))
# Candidate basins must have a gap between them: Hartigan's dip test of unimodality on the models'
# positions along the line between the two basins' means, p-value at most this. Measured on the sixth
# outside audit's zoos (docs/scorecard.md, "A gap between the camps"): planted deep verdicts 72 -> 71,
# false ones on nulls 15 -> 7 (graded weight decay or learning rate, whose camps are a continuum cut
# in two; a shared data order's levels are discrete, with gaps: --strata is its remedy).
GAP_ALPHA = 0.05
MIN_STEPS = 2.0  # camps of a fingerprint with a resolution (whole predictions) must differ by at least this many steps
RAW_MAX = 4_000_000  # raw fingerprints with more values: the shares in the test coordinates only (memory, time)
MAX_CELLS = 2000  # (family, basin) cells up to which the shares' bootstrap samples are computed at once
APART_MIN_FAMILIES = 6  # with fewer, "one family against the rest" is one against a handful: no pointer


@dataclass(frozen=True)
class SizedLabelFree(LabelFreeResult):
    """A :class:`~analysis.labelfree.LabelFreeResult` with the sizes of its candidate partitions and
    the family-apart pointer (:func:`analysis.labelfree.decide` keeps them: it uses ``replace``).
    ``effects``: :func:`basin_effect` by partition, ``"split"`` (``split_basins``),
    ``"split_families"``, ``"split_majority"`` (each family on its majority side: a `groups lineages`
    verdict from the split needs it not small either, though it reports ``split_families``) or
    ``"groups"`` (``group_basins``), for those whose raw p-value could make a verdict; ``apart``:
    :func:`family_apart`."""

    effects: dict[str, Any] = field(default_factory=dict)
    apart: dict[str, Any] | None = None

    def effect(self) -> dict[str, Any] | None:
        """The size of the verdict's candidate basins (the partition :func:`~analysis.labelfree.decide` chose)."""
        basins = self.candidate_basins
        if basins is None:
            return None
        for key, attr in (("split", "split_basins"), ("split_families", "split_families"), ("groups", "group_basins")):
            mine = getattr(self, attr)
            if key in self.effects and mine is not None and (mine is basins or np.array_equal(mine, basins)):
                return self.effects[key]
        return None


def _as_basins(basins: Sequence) -> np.ndarray:
    b = np.asarray(basins)
    if b.ndim != 1:
        raise ValueError(f"basins must be [n], got shape {b.shape}")
    return b.astype(int)


def share_of_variance(x: np.ndarray, basins: np.ndarray, distances: bool = False) -> float | None:
    """Between-basin over total sum of squares of ``x [n, d]`` (or of a Euclidean distance matrix
    ``[n, n]`` with ``distances``, by the identity SS = sum of squared pairwise distances / 2m), on
    the models with a basin (``>= 0``). ``None`` with fewer than two basins or no variance."""
    b = _as_basins(basins)
    keep = b >= 0
    if len(np.unique(b[keep])) < 2:
        return None
    if distances:
        d2 = np.asarray(x, dtype=np.float64)[np.ix_(keep, keep)] ** 2
        bk = b[keep]
        total = d2.sum() / (2 * len(bk))
        within = sum(d2[np.ix_(bk == v, bk == v)].sum() / (2 * (bk == v).sum()) for v in np.unique(bk))
    else:
        xk = np.asarray(x, dtype=np.float64)[keep]
        bk = b[keep]
        total = ((xk - xk.mean(0)) ** 2).sum()
        within = sum(((xk[bk == v] - xk[bk == v].mean(0)) ** 2).sum() for v in np.unique(bk))
    if not total > 0:
        return None
    return float(max(0.0, 1.0 - within / total))


def steps_apart(d: np.ndarray, basins: np.ndarray, resolution: float) -> float | None:
    """How many of a distance fingerprint's steps (``resolution``: ``disagreement``'s one prediction of
    its probes) the two largest of ``basins`` are apart: their mean distance between, less the mean of
    their mean distances within, over ``resolution``. An outside audit (seventeenth session): on 24
    near-perfect GRUs of a seed-only null two models tied the other way on one probe of 256, and the
    camps read "over 1,000 SDs apart" (no spread within either). At or below 0: the camps (found in the
    test's coordinates) are no farther apart in these distances than the models within them. ``None``
    without two basins."""
    b = _as_basins(basins)
    two = _two_largest(b)
    if two is None or not resolution > 0:
        return None
    d = np.asarray(d, dtype=np.float64)
    masks = [b == v for v in two]
    between = d[np.ix_(masks[0], masks[1])].mean()
    within = [d[np.ix_(m, m)].sum() / (m.sum() * (m.sum() - 1)) for m in masks if m.sum() > 1]
    return float((between - (np.mean(within) if within else 0.0)) / resolution)


def _two_largest(b: np.ndarray) -> np.ndarray | None:
    """The labels of the two largest basins of ``b [n]`` (``-1``: in none), largest first, or ``None``."""
    labels, sizes = np.unique(b[b >= 0], return_counts=True)
    return None if len(labels) < 2 else labels[np.argsort(-sizes, kind="stable")[:2]]


def _two_basins(x: np.ndarray, basins: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of ``x [n, d]`` in the two largest basins, or ``None`` with fewer than two basins of
    two models each."""
    b = _as_basins(basins)
    two = _two_largest(b)
    if two is None:
        return None
    xa, xb = (np.asarray(x, dtype=np.float64)[b == v] for v in two)
    return None if len(xa) < 2 or len(xb) < 2 else (xa, xb)


def _positions(x: np.ndarray, basins: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two largest basins' models' positions ``([m_a], [m_b])`` along the line from the first's
    mean to the second's (unnormalised), or ``None`` as :func:`_two_basins`."""
    pair = _two_basins(x, basins)
    if pair is None:
        return None
    xa, xb = pair
    diff = xb.mean(0) - xa.mean(0)
    return xa @ diff, xb @ diff


def separation(x: np.ndarray, basins: np.ndarray) -> float | None:
    """The distance between the means of the two largest basins of ``x [n, d]`` in pooled
    within-basin SDs along the line joining them (Cohen's d of the projection). ``None`` with fewer
    than two basins of two models each, or no spread along that line."""
    pair = _two_basins(x, basins)
    if pair is None:
        return None
    xa, xb = pair
    diff = xb.mean(0) - xa.mean(0)
    norm = float(np.linalg.norm(diff))
    if not norm > 0:
        return 0.0
    pa, pb = xa @ (diff / norm), xb @ (diff / norm)
    pooled = ((pa - pa.mean()) ** 2).sum() + ((pb - pb.mean()) ** 2).sum()
    sd = np.sqrt(pooled / (len(pa) + len(pb) - 2))
    return float(norm / sd) if sd > 0 else None


# two basins' means closer than this fraction of the models' largest coordinate about their mean are tied:
# their difference is rounding, not a line (a review: integer features tied exactly, and summing in
# another order left a difference of 1e-17 that pointed anywhere)
HELDOUT_TIE = 1e-9


def heldout_separation(x: np.ndarray, basins: np.ndarray, family: np.ndarray) -> float | None:
    """:func:`separation` with the line chosen without the models it measures: each init family's
    models are projected on the line between the two largest basins' means computed from the other
    families (a family whose absence leaves a basin empty is skipped), and the pooled projections'
    means are compared in their pooled within-basin SDs. A line fitted to the same models can
    separate camps that no other family would (few models in many coordinates, or camps chosen
    among many ways to split each family: the seventh outside audit saw 6.7 SDs on camps that
    matched nothing, beside a family-bootstrap interval of 1.3-5); held out, such camps fall
    together. ``None`` with fewer than :data:`APART_MIN_FAMILIES` families projected; a family whose
    line's two means tie (within :data:`HELDOUT_TIE` of the models' largest coordinate about their mean)
    is skipped."""
    b = _as_basins(basins)
    two = _two_largest(b)
    if two is None:
        return None
    lo, hi = two
    xx = np.asarray(x, dtype=np.float64)
    in_two = (b == lo) | (b == hi)
    xx = xx - xx[in_two].mean(0)  # the statistic is translation-invariant; centred sums lose less
    code, names = family_codes(family)
    n_fam = len(names)
    # each family's "rest" means are the totals less the family's own sums: one pass over the models
    # instead of one per family (30,000 models in 3,000 families: 10 s -> milliseconds)
    sums, counts = [], []
    for v in (lo, hi):
        rows = b == v
        s = np.zeros((n_fam, xx.shape[1]))
        np.add.at(s, code[rows], xx[rows])
        sums.append(s)
        counts.append(np.bincount(code[rows], minlength=n_fam).astype(np.float64))
    rest_sum = [s.sum(0) - s for s in sums]  # [n_fam, d]
    rest_n = [c.sum() - c for c in counts]  # [n_fam]
    held_n = counts[0] + counts[1]
    ok = (rest_n[0] > 0) & (rest_n[1] > 0) & (held_n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = rest_sum[1] / rest_n[1][:, None] - rest_sum[0] / rest_n[0][:, None]
        centre = (rest_sum[0] + rest_sum[1]) / (rest_n[0] + rest_n[1])[:, None]
    norm = np.linalg.norm(np.where(ok[:, None], diff, 0.0), axis=1)
    ok &= norm > HELDOUT_TIE * max(float(np.abs(xx[in_two]).max()), 1e-300)  # tied means: no line
    if int(ok.sum()) < APART_MIN_FAMILIES:
        return None
    unit = np.where(ok[:, None], diff, 0.0) / np.where(ok, norm, 1.0)[:, None]
    held = in_two & ok[code]
    c = code[held]
    p = np.einsum("nd,nd->n", xx[held] - centre[c], unit[c])
    s = b[held] == hi
    if s.all() or not s.any():
        return None
    pooled = ((p[s] - p[s].mean()) ** 2).sum() + ((p[~s] - p[~s].mean()) ** 2).sum()
    sd = np.sqrt(pooled / max(len(p) - 2, 1))
    return float((p[s].mean() - p[~s].mean()) / sd) if sd > 0 else None


def gap_p(x: np.ndarray, basins: np.ndarray) -> float | None:
    """Hartigan's dip test p-value (the ``diptest`` package) of unimodality of the models' positions
    along the line between the two largest basins' means in ``x [n, d]``: small when there is a gap
    between the basins, large when the models spread along that line as one continuum (a graded knob
    cut in two). The line is the one the basins were found to split, which makes a gap easier to see
    than on a line chosen blind: the test leans towards keeping a verdict. ``None`` as
    :func:`separation` gives no value."""
    from diptest import diptest  # deferred for start-up time

    pos = _positions(x, basins)
    if pos is None:
        return None
    pos = np.concatenate(pos)
    if not np.ptp(pos) > 0:
        return None
    return float(diptest(pos)[1])


def spacing_p(x: np.ndarray, basins: np.ndarray) -> float | None:
    """A bound on the p-value of the empty stretch between the two largest basins of ``x [n, d]``
    along the line between their means, under any unimodal spread of the models along it: the dip
    test's complement for camps of unequal sizes (Hartigan's dip cannot exceed about half the smaller
    camp's share, so it cannot find a gap beside 4 models of 24 however wide: p 0.23 for two point
    clusters 50 SDs apart; seventh outside audit, finding 1).

    With the camps' positions apart (``g`` the empty stretch, ``w_a``, ``w_b`` each camp's own
    range, ``m_a``, ``m_b`` their sizes): wherever a unimodal density has its mode, one camp lies on
    a side where the density does not increase away from the gap, and given that side's extreme,
    its other ``m - 1`` models all miss the stretch nearest the gap with probability at most
    ``(w / (w + g)) ** (m - 1)`` (a non-increasing density puts at least uniform mass there). The
    larger of the two camps' bounds, times the ``n - 1`` places a cut could have been made (the camps
    were chosen by the data), capped at 1. A camp of one model gives 1 (no telling a mode from an
    outlier); overlapping camps give 1. ``None`` as :func:`separation` gives no value."""
    pos = _positions(x, basins)
    if pos is None:
        return None
    pa, pb = pos
    gap = pb.min() - pa.max()
    if not gap > 0:
        return 1.0
    bound = max((np.ptp(p) / (np.ptp(p) + gap)) ** (len(p) - 1) for p in (pa, pb))
    return float(min(1.0, (len(pa) + len(pb) - 1) * bound))


def _share_samples(x: np.ndarray, basins: np.ndarray, family: np.ndarray, distances: bool):
    """:func:`share_of_variance` of every family bootstrap sample at once, as
    :func:`~analysis.resampling.family_bootstrap_batch` wants it (``stat(picks, codes) -> [n_boot]``).
    A sample's sums of squares are quadratic forms of its family counts: with the models grouped in
    cells (family x basin) and ``D[a, b]`` the sum of squared distances between cells ``a`` and ``b``,
    SS = sum_ab w_a w_b D_ab / (2 sum_a w_a n_a) for cell weights ``w`` (how often its family is
    drawn): the same value as the sample's rows stacked, a family drawn twice counted twice."""
    keep = basins >= 0
    codes, _ = family_codes(family)
    cell_of = {}
    cells = np.asarray([cell_of.setdefault((int(f), int(v)), len(cell_of)) for f, v in zip(codes[keep], basins[keep])])
    n_cells = len(cell_of)
    cell_family = np.asarray([f for f, _ in cell_of], int)
    cell_basin = np.asarray([v for _, v in cell_of], int)
    sizes = np.bincount(cells, minlength=n_cells).astype(np.float64)
    if distances:
        d2 = np.asarray(x, dtype=np.float64)[np.ix_(keep, keep)] ** 2
        rows = np.zeros((n_cells, d2.shape[1]))
        np.add.at(rows, cells, d2)
        pair = np.zeros((n_cells, n_cells))
        np.add.at(pair.T, cells, rows.T)
    else:
        xk = np.asarray(x, dtype=np.float64)[keep]
        xk = xk - xk.mean(0)
        sums = np.zeros((n_cells, xk.shape[1]))
        np.add.at(sums, cells, xk)
        sq = np.bincount(cells, weights=(xk**2).sum(1), minlength=n_cells)
        pair = sizes[None, :] * sq[:, None] + sizes[:, None] * sq[None, :] - 2 * sums @ sums.T
    masks = [cell_basin == v for v in np.unique(cell_basin)]

    def stat(picks: np.ndarray, _codes: np.ndarray) -> np.ndarray:
        w = family_counts(picks, int(codes.max()) + 1)[:, cell_family].astype(np.float64)  # [B, cells]
        total = np.einsum("bc,cd,bd->b", w, pair, w) / (2 * (w @ sizes))
        within = sum(np.einsum("bc,cd,bd->b", w[:, m], pair[np.ix_(m, m)], w[:, m]) / (2 * np.maximum(w[:, m] @ sizes[m], 1e-300))
                     for m in masks)
        two = np.sum([(w[:, m] @ sizes[m]) > 0 for m in masks], 0) >= 2  # a sample with one basin: undefined
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(two & (total > 0), np.clip(1 - within / total, 0.0, None), np.nan)

    return stat


def basin_effect(basins: Sequence, family: Sequence, coords: np.ndarray, raw: np.ndarray | None = None,
                 raw_distances: bool = False, within: bool = False, n_boot: int = 200,
                 random_state: int = 0, resolution: float | None = None,
                 step_distances: np.ndarray | None = None) -> dict[str, Any] | None:
    """The size of the difference between candidate ``basins [n]`` (``-1``: in none): ``share`` of
    the raw fingerprint's variance (``raw [n, d]``, or ``[n, n]`` distances with ``raw_distances``;
    ``None``: ``coords``), ``share_coords`` of the variance of the test coordinates ``coords [n, k]``,
    and ``separation`` along the line between the two largest basins' means in pooled within-basin
    SDs, in the test coordinates, family-centred when the basins are camps found within the
    families (``within``): the sample's values, which the rules read. Each with ``*_bc`` and
    ``*_ci``, the family bootstrap's bias-corrected estimate and 95% basic interval widened for few
    families (the basins fixed; :func:`~analysis.resampling.basic_interval` and ``small_sample_expansion``,
    the separation's on the log scale, the shares' on the angular one; ``None`` with fewer than 4 families). With ``resolution`` (a distance
    fingerprint's smallest step, from its metadata) and raw distances, ``steps`` (:func:`steps_apart`) and
    ``coarse``: fewer than :data:`MIN_STEPS` steps apart, a difference of an input or so, which no deep
    verdict is made of; ``step_distances [n, n]`` are the distances to count them in when ``raw`` is not (``--covariate``
    took its part out of a distance fingerprint: outside audit 118, camps one prediction of one model apart read as a
    candidate). ``None``: fewer than two basins."""
    b = _as_basins(basins)
    c = np.asarray(coords, dtype=np.float64)
    if len(b) != len(c) or len(family) != len(c):
        raise ValueError(f"basins ({len(b)}), family ({len(family)}) and coords ({len(c)}) must have one row per model")
    if len(np.unique(b[b >= 0])) < 2:
        return None
    fam = np.asarray([str(f) for f in family], dtype=object)
    r = c if raw is None else np.asarray(raw, dtype=np.float64)
    dist = raw is not None and raw_distances
    sep_x = _family_centred(c, fam) if within else c

    def sep_of(rows: np.ndarray, draw: np.ndarray) -> float | None:
        if not within:
            return separation(c[rows], b[rows])
        # family-centred within each draw (a family drawn twice is two families, each centred on itself)
        return separation(_family_centred(c[rows], draw), b[rows])

    # the shares' samples at once need [cells, cells] sums (family x basin cells); beyond MAX_CELLS, one at a time
    cells_ok = len({(f, v) for f, v in zip(fam[b >= 0], b[b >= 0])}) <= MAX_CELLS
    stats = {  # (value, statistic of all bootstrap samples at once or None, of one sample)
        "share": (share_of_variance(r, b, dist), _share_samples(r, b, fam, dist) if cells_ok else None,
                  lambda rows, _d: share_of_variance(r[np.ix_(rows, rows)] if dist else r[rows], b[rows], dist)),
        "share_coords": (share_of_variance(c, b), _share_samples(c, b, fam, False) if cells_ok else None,
                         lambda rows, _d: share_of_variance(c[rows], b[rows])),
        "separation": (separation(sep_x, b), None, sep_of),
    }
    out: dict[str, Any] = {"raw": raw is not None, "ci_method": "basic-expanded"}
    widen = small_sample_expansion(len(set(fam[b >= 0])))
    for name, (value, batch, one) in stats.items():
        out[name] = value
        ci = None
        if value is not None:
            vals = (family_bootstrap_batch_values(batch, fam, n_boot, random_state) if batch is not None
                    else family_bootstrap_values(one, fam, n_boot, random_state))
            sep = name == "separation"  # a ratio with a skewed bootstrap: on the log scale, never below 0
            ci = None if vals is None else basic_interval(vals, value, n_boot, 0.95, (0.0, np.inf if sep else 1.0),
                                                          log=sep, angular=not sep, expand=widen)
        out[f"{name}_bc"] = None if ci is None else ci[0]
        out[f"{name}_ci"] = None if ci is None else [ci[1], ci[2]]
    out["separation_heldout"] = heldout_separation(sep_x, b, fam)
    # small: closer than two halves of one Gaussian cloud, on the line fitted to them or on lines fitted without
    # each family (camps that only the line fitted to them separates are no basins)
    out["small"] = bool(out["separation"] is not None and out["separation"] < GAUSSIAN_HALVES
                        or out["separation_heldout"] is not None and out["separation_heldout"] < GAUSSIAN_HALVES)
    out["threshold"] = GAUSSIAN_HALVES
    kept = np.bincount(b[b >= 0])
    out["smaller"] = int(np.sort(kept[kept > 0])[-2])  # the second-largest basin: the smaller camp the gap tests compare
    out["dip_p"] = gap_p(sep_x, b)
    out["spacing_p"] = spacing_p(sep_x, b)
    # no gap: neither the dip test nor (for camps of unequal sizes) the spacing bound finds one
    out["no_gap"] = bool(out["dip_p"] is not None and out["dip_p"] > GAP_ALPHA
                         and (out["spacing_p"] is None or out["spacing_p"] > GAP_ALPHA))
    steps_d = step_distances if step_distances is not None else r if dist else None
    if resolution and steps_d is not None:
        out["steps"] = steps_apart(steps_d, b, resolution)
        out["coarse"] = bool(out["steps"] is not None and out["steps"] < MIN_STEPS)
        out["min_steps"] = MIN_STEPS
    return out


def centroid_ratio(coords: np.ndarray, family: Sequence, which: str) -> float | None:
    """Family ``which``'s centroid distance from the mean of the other families' centroids in
    ``coords [n, k]``, over those centroids' RMS distance from that mean (``None``: no spread)."""
    x = np.asarray(coords, dtype=np.float64)
    codes, names = family_codes(family)
    cent, _ = _centroids(x, codes, len(names))
    f = names.index(str(which))
    others = np.delete(cent, f, 0)
    centre = others.mean(0)
    spread = float(np.sqrt(((others - centre) ** 2).sum(1).mean()))
    return float(np.linalg.norm(cent[f] - centre) / spread) if spread > 0 else None


def family_apart(clusters: Sequence, family: Sequence, coords: np.ndarray | None = None,
                 min_families: int = APART_MIN_FAMILIES) -> dict[str, Any] | None:
    """One init family set apart by a fingerprint's own basins ``clusters [n]``: one basin holds
    exactly that family's models, all of them, and every other basin holds models of at least two
    families. ``{family, models, n_families, basin, ratio}`` (``ratio``: :func:`centroid_ratio` in
    ``coords``, when given), else ``None`` (also with fewer than ``min_families`` families, and for a
    family of one model: a lone model, which the report's outlier line names)."""
    c = np.asarray(clusters)
    fam = np.asarray([str(f) for f in family], dtype=object)
    if len(c) != len(fam):
        raise ValueError(f"clusters ({len(c)}) and family ({len(fam)}) must have one entry per model")
    names = sorted(set(fam.tolist()))
    if len(names) < max(min_families, 3):
        return None
    found = []
    labels = np.unique(c[c >= 0] if np.issubdtype(c.dtype, np.number) else c)  # -1: a density clustering's noise
    for lab in labels:
        inside = set(fam[c == lab].tolist())
        if len(inside) == 1:
            f = inside.pop()
            if (fam == f).sum() == (c == lab).sum():
                found.append((f, lab))
    others_ok = all(len(set(fam[c == lab].tolist())) >= 2 for lab in labels if not found or lab != found[0][1])
    if len(found) != 1 or not others_ok:
        return None
    f, lab = found[0]
    if (fam == f).sum() < 2:
        return None
    return {"family": f, "models": int((fam == f).sum()), "n_families": len(names), "basin": int(lab),
            "ratio": None if coords is None else centroid_ratio(coords, fam, f)}


def sized(res: LabelFreeResult, family: Sequence, coords: np.ndarray, raw: np.ndarray | None, raw_distances: bool,
          clusters: Sequence, known: np.ndarray | None = None, alpha: float = 0.05, n_boot: int = 200,
          random_state: int = 0, resolution: float | None = None,
          step_distances: np.ndarray | None = None) -> SizedLabelFree:
    """``res`` (the tests on ``coords [n, k]`` with each model's init ``family [n]``) with the sizes of
    its candidate partitions whose raw p-value is at most ``alpha`` (only those can become a verdict
    after the correction) and the family-apart pointer of the fingerprint's own basins ``clusters
    [n]``, all on the models with a lineage value (``known [n]`` bool; ``None``: all). ``step_distances [n, n]``:
    the distances a ``resolution``'s steps are counted in where ``raw`` is not them (after ``--covariate``)."""
    keep = np.ones(len(coords), bool) if known is None else np.asarray(known, bool)
    if raw is not None and np.asarray(raw).size > RAW_MAX:  # each bootstrap sample copies its rows: the test coordinates
        raw = None
    fam = [str(f) for f, k in zip(family, keep) if k]
    c = np.asarray(coords, dtype=np.float64)[keep]
    r = None if raw is None else np.asarray(raw)[np.ix_(keep, keep)] if raw_distances else np.asarray(raw)[keep]
    steps = None if step_distances is None else np.asarray(step_distances)[np.ix_(keep, keep)]
    parts = []
    if res.p_split is not None and res.p_split <= alpha:
        parts += [("split", res.split_basins, res.split_within), ("split_families", res.split_families, False),
                  ("split_majority", res.split_majority, False)]
        if res.split_all is not None and res.p_split_all is not None and res.p_split_all <= alpha:
            parts.append(("split_all", res.split_all, False))  # in case the within-family camps are held back
    if res.p_groups is not None and res.p_groups <= alpha:
        parts.append(("groups", res.group_basins, False))
    effects = {}
    for key, basins, within in parts:
        if basins is not None:
            e = basin_effect(np.asarray(basins)[keep], fam, c, r, raw_distances, within, n_boot, random_state, resolution,
                             steps)
            if e is not None:
                effects[key] = e
    fields = {k: getattr(res, k) for k in LabelFreeResult.__dataclass_fields__}
    return SizedLabelFree(**fields, effects=effects, apart=family_apart(np.asarray(clusters)[keep], fam, c))
