"""Recovered families that may be two families joined by chance pairs.

The family rule (:func:`analysis.lineage.families`) keeps one false pair from merging two families,
but not many: two independent initializations whose pair test happens to come out low once come out
low for most of their relatives' pairs too (each relative of one against each of the other), and
Benjamini-Hochberg over those dependent pairs does not hold its rate. An outside audit (79) saw 13
such pairs join two families of 6 on a 24-model null (families 12, 6, 6 of the true 6 x 4).

Such a family is two blocks: related within each, seldom between. :func:`two_in_one` cuts each
family in two along its related graph's Fiedler vector (the spectral bipartition) and compares the
share of related pairs across the cut with the share inside the two parts. A family whose pairs
are missed at random (a test of power below 1) has a cut too, so the ratio is referred to the same
cut of random graphs with the family's own size and share of related pairs (a parametric bootstrap),
with Benjamini-Hochberg across the families tested. A chain of relatives related only parent to
child also reads as two blocks: the pairs alone cannot tell it from a merge.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control

__all__ = ["two_in_one"]

MIN_MODELS = 4  # two parts of two or more
MAX_MODELS = 200  # each draw one eigendecomposition of a k x k matrix (a review: a family of 400, 76 s and 1.15 GB)
CHUNK_FLOATS = 8_000_000  # random graphs drawn at once, at most this many floats


def _cuts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spectral bipartition of related graphs ``a [d, k, k]`` (0/1, symmetric, zero diagonal):
    ``(side [d, k] bool, ratio [d])``, the share of related pairs across the cut over the share inside
    its two parts (1.0 when a graph does not cut: one part empty, or no pair inside)."""
    lap = np.einsum("dij->di", a)[:, :, None] * np.eye(a.shape[1]) - a
    side = np.linalg.eigh(lap)[1][:, :, 1] < 0  # the Fiedler vector's sign
    iu = np.triu_indices(a.shape[1], 1)
    across = (side[:, :, None] != side[:, None, :])[:, iu[0], iu[1]]
    x = a[:, iu[0], iu[1]]
    n_across = across.sum(1)
    n_inside = (~across).sum(1)
    r_across = np.where(n_across > 0, (x * across).sum(1) / np.maximum(n_across, 1), 0.0)
    r_inside = np.where(n_inside > 0, (x * ~across).sum(1) / np.maximum(n_inside, 1), 0.0)
    ok = (n_across > 0) & (r_inside > 0)
    return side, np.where(ok, r_across / np.where(ok, r_inside, 1.0), 1.0)


def _at_or_below(ratio: float, k: int, share: float, draws: int, rng: np.random.Generator) -> int:
    """How many of ``draws`` random graphs of ``k`` models, each pair related with probability ``share``,
    cut with a ratio at or below ``ratio`` (drawn in chunks of :data:`CHUNK_FLOATS`)."""
    hits, chunk = 0, max(1, CHUNK_FLOATS // (k * k))
    for start in range(0, draws, chunk):
        r = np.triu(rng.random((min(chunk, draws - start), k, k)) < share, 1).astype(float)
        hits += int((_cuts(r + r.transpose(0, 2, 1))[1] <= ratio).sum())
    return hits


def two_in_one(family: np.ndarray, a: np.ndarray, b: np.ndarray, related: np.ndarray, n_models: int,
               alpha: float = 0.05, n_draws: int = 199, seed: int = 0) -> list[dict]:
    """The recovered families that look like two or more: ``family [n]`` (labels), the tested pairs ``(a[k],
    b[k])`` and which are ``related [k]``. Only families of :data:`MIN_MODELS` to :data:`MAX_MODELS`
    models all of whose pairs were tested. Each flagged family: ``{"parts": [[i, ...], [j, ...]],
    "between": related pairs across the cut, "pairs": pairs across it, "within": related share inside
    the parts, "p_value", "q_value"}`` (model indices), at Benjamini-Hochberg ``alpha`` across the
    families tested; largest first. A family whose ``n_draws`` random graphs never cut as low is drawn
    again, up to twice as many as the correction needs for one family alone to pass (``2 m / alpha`` for ``m``
    families: a review found none could be flagged past 10 families at a fixed 199)."""
    family = np.asarray(family)
    a, b, related = np.asarray(a), np.asarray(b), np.asarray(related, bool)
    labels, sizes = np.unique(family, return_counts=True)
    eligible = labels[(sizes >= MIN_MODELS) & (sizes <= MAX_MODELS)]
    fa = family[a]
    inside = np.flatnonzero((fa == family[b]) & np.isin(fa, eligible))
    inside = inside[np.argsort(fa[inside], kind="stable")]  # each eligible family's own pairs side by side
    starts = np.searchsorted(fa[inside], eligible)
    ends = np.searchsorted(fa[inside], eligible, side="right")
    where = np.full(n_models, -1)  # each model's place in its family (a model is in one family)
    rng = np.random.default_rng(seed)
    cases = []
    for f, lo, hi in zip(eligible.tolist(), starts.tolist(), ends.tolist()):
        idx = np.flatnonzero(family == f)
        k = len(idx)
        if hi - lo < k * (k - 1) // 2:  # a sample of the pairs: not judged
            continue
        where[idx] = np.arange(k)
        mine = inside[lo:hi]
        g = np.zeros((k, k))
        i, j = where[a[mine]], where[b[mine]]
        g[i[related[mine]], j[related[mine]]] = g[j[related[mine]], i[related[mine]]] = 1.0
        side, ratio = (v[0] for v in _cuts(g[None]))
        cases.append((idx, g, side, float(ratio)))
    need = int(np.ceil(2 * len(cases) / alpha))  # draws for one family alone to pass BH, at half of alpha
    found = []
    for idx, g, side, ratio in cases:
        k = len(idx)
        iu = np.triu_indices(k, 1)
        share = float(g[iu].mean())
        if side.sum() < 2 or (~side).sum() < 2 or ratio >= 1:
            found.append({"p_value": 1.0})  # tested, and no cut to speak of
            continue
        hits, draws = _at_or_below(ratio, k, share, n_draws, rng), n_draws
        if hits == 0 and draws < need:
            hits, draws = _at_or_below(ratio, k, share, need - draws, rng), need
        across = side[:, None] != side[None, :]
        found.append({"parts": [idx[side].tolist(), idx[~side].tolist()], "between": int(g[across].sum() // 2),
                      "pairs": int(side.sum() * (~side).sum()), "within": float(g[iu][~across[iu]].mean()),
                      "p_value": (1 + hits) / (draws + 1)})
    if not found:
        return []
    q = false_discovery_control([f["p_value"] for f in found])
    keep = [{**f, "q_value": float(qq)} for f, qq in zip(found, q) if "parts" in f and qq <= alpha]
    return sorted(keep, key=lambda f: -(len(f["parts"][0]) + len(f["parts"][1])))
