"""Lineage as tests with p-values: do two models share an initialization, which families, which tree.

Three kinds of evidence for a pair of models, each a p-value for "these two were trained from
independent initializations" (small: related):

- ``exact`` (:func:`weight_test`), after Zhu, Ahmed, Kuditipudi & Liang (ICML 2025, "Independence
  tests for language models"): match the hidden units of one model to the other's with the
  Hungarian algorithm (cosine similarity of each unit's incoming and, separately, outgoing weights,
  after :func:`canonical_scale`, so positive per-unit rescaling of ReLU layers changes nothing), then ask how close the matching is
  to the identity (Spearman's rho of matched index against index). Initializations are drawn
  independently per unit and training is equivariant to relabelling units, so under the null the
  matching is a uniformly random permutation: its rho is compared with the rho of random
  permutations (a Monte Carlo permutation null, valid at any sample size), and the layers are
  combined with Fisher's method (their matchings are independent under the null, see
  :func:`match_units`). The price of exactness: a statistic whose null comes from relabelling units
  cannot itself be invariant to relabelling, so a child whose units were deliberately permuted
  is not detected by this test.
- ``matched`` (:func:`matched_test`): the same matching's mean cosine similarity, invariant to
  permuting and rescaling units, calibrated against the population (below).
- ``behaviour`` (:func:`behaviour_test`): distances between fingerprint rows, for models whose
  weights cannot be aligned; calibrated against the population.

"Calibrated against the population" is Efron's empirical null (2004): a pair statistic, centred
for each model's own typicality (two-way: minus each model's mean, plus the grand mean), is
referred to a normal centred on all tested pairs' median and fitted to their lower tail. It
assumes most pairs are unrelated and is approximate; ``docs/lineage.md`` gives its measured
false-discovery shares.

Then Benjamini-Hochberg across pairs, families from the significant pairs (:func:`families`: a
significant pair joins two models only when their relatives mostly coincide, so that one false
pair does not merge two families), and a directed forest after MoTHer (Horwitz et al., ICLR 2025): within a family, distances
place the edges, weight kurtosis orients them (training moves it one way), and a minimum spanning
arborescence picks the tree. Functions take arrays and return dataclasses; bad input raises
:class:`~analysis.errors.AnalysisError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2, false_discovery_control, norm

from analysis.errors import AnalysisError

Groups = Mapping[str, Sequence[tuple[str, int]]]


@dataclass(frozen=True)
class PairTests:
    """Shared-initialization tests of pairs ``(a[k], b[k])`` of models (indices into the population).

    ``p_value`` / ``q_value`` (Benjamini-Hochberg) / ``related`` (``q <= alpha``) / ``distance``
    (smaller: closer; used to place tree edges) are ``[n_pairs]``; ``evidence`` names the test.
    """

    a: np.ndarray
    b: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    related: np.ndarray
    distance: np.ndarray
    evidence: str
    alpha: float


def all_pairs(n: int, max_pairs: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(a, b)`` ``[n_pairs]`` with ``a < b``: every pair, or a uniform sample of ``max_pairs``."""
    if n < 2:
        raise AnalysisError(f"lineage tests need at least 2 models, got {n}")
    total = n * (n - 1) // 2
    if max_pairs is None or max_pairs >= total:
        a, b = np.triu_indices(n, 1)
        return a, b
    if max_pairs < 1:
        raise AnalysisError(f"max_pairs must be >= 1, got {max_pairs}")
    k = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    # the k-th pair of the row-major upper triangle, without building it
    rows = n - 2 - np.floor(np.sqrt(-8 * k + 4 * n * (n - 1) - 7) / 2 - 0.5).astype(np.int64)
    start = rows * (2 * n - rows - 1) // 2
    return rows, k - start + rows + 1


def _take(w: np.ndarray, axis: int, perm: np.ndarray) -> np.ndarray:
    """``w [P, ...]`` reordered along ``axis`` by a permutation per pair ``perm [P, h]``."""
    shape = [1] * w.ndim
    shape[0], shape[axis] = perm.shape
    return np.take_along_axis(w, np.broadcast_to(perm.reshape(shape), w.shape[:axis] + (perm.shape[1],) + w.shape[axis + 1 :]), axis)


def _unit_rows(block: list[np.ndarray]) -> np.ndarray:
    """Unit-norm rows ``[P, h, d]`` of the concatenated ``[P, h, *]`` pieces of one block."""
    x = np.concatenate([p.reshape(p.shape[0], p.shape[1], -1) for p in block], 2)
    return x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)


def canonical_scale(params: Mapping[str, np.ndarray], groups: Groups) -> dict[str, np.ndarray]:
    """Every hidden unit rescaled to unit incoming norm, the factor moved to its outgoing weights,
    group by group in declared order: ``{name: [n_models, ...]}`` in, the same shapes out.

    For a positively homogeneous activation (ReLU) the model computes the same function, and any
    per-unit rescaling of it gives the same canonical weights: the tests below see none. For other
    activations it is only a feature transform, the same for every model and equivariant to
    relabelling units, so the exact test stays exact.
    """
    out = {k: np.asarray(v, dtype=float).copy() for k, v in params.items()}
    for members in groups.values():
        inc = [(p, ax) for p, ax in members if ax == 0 and p in out]
        if not inc:
            continue
        sq = sum((out[p] ** 2).reshape(out[p].shape[0], out[p].shape[1], -1).sum(2) for p, _ in inc)
        scale = np.sqrt(np.maximum(sq, 1e-24))  # [n_models, h]
        for p, ax in members:
            if p not in out:
                continue
            shape = [1] * out[p].ndim
            shape[0], shape[ax + 1] = scale.shape
            out[p] = out[p] / scale.reshape(shape) if ax == 0 else out[p] * scale.reshape(shape)
    return out


def match_units(params: Mapping[str, np.ndarray], groups: Groups, a: np.ndarray, b: np.ndarray
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Hungarian matching of model ``b[k]``'s hidden units to model ``a[k]``'s, group by group.

    ``params``: stacked ``{name: [n_models, ...]}``; ``groups``: the architecture's hidden-unit
    permutation symmetry ``{group: [(param, axis), ...]}``. Groups are matched in their declared
    order; an axis of an earlier group is first aligned by its matching, a member with an axis of a
    later group is left out (a relabelling of that group would change it). So relabelling ``b``'s
    units of every group by independent permutations ``s_g`` turns each matching ``m_g`` into
    ``s_g o m_g`` and nothing else: the property the exact test rests on.

    Returns ``({group: matching [P, h_g]}, similarity [P, n_groups])``: ``matching[k, i]`` is the
    unit of ``b[k]`` matched to unit ``i`` of ``a[k]``; similarity is the matched units' mean cosine
    (averaged over the incoming and outgoing blocks).
    """
    owner = {(p, ax): g for g, members in groups.items() for p, ax in members}
    perms: dict[str, np.ndarray] = {}
    sims = []
    for g, members in groups.items():
        blocks: dict[bool, tuple[list, list]] = {}
        for p, ax in members:
            if p not in params:
                raise AnalysisError(f"permutation group '{g}' names parameter '{p}', which the models lack")
            wa, wb = params[p][a], params[p][b]
            later = False
            for other in range(wa.ndim - 1):
                og = owner.get((p, other))
                if og is None or og == g:
                    continue
                if og in perms:
                    wb = _take(wb, other + 1, perms[og])
                else:
                    later = True
            if later:
                continue
            side = blocks.setdefault(ax == 0, ([], []))  # incoming (the unit's own axis 0) / outgoing
            side[0].append(np.moveaxis(wa, ax + 1, 1))
            side[1].append(np.moveaxis(wb, ax + 1, 1))
        if not blocks:
            continue
        cost = sum(np.einsum("phd,pkd->phk", _unit_rows(fa), _unit_rows(fb)) for fa, fb in blocks.values())
        match = np.empty(cost.shape[:2], dtype=np.int64)
        for k in range(len(cost)):
            match[k] = linear_sum_assignment(cost[k], maximize=True)[1]
        perms[g] = match
        sims.append(np.take_along_axis(cost, match[:, :, None], 2)[:, :, 0].mean(1) / len(blocks))
    if not perms:
        raise AnalysisError(f"no permutation group could be matched (groups: {', '.join(groups) or '(none)'})")
    return perms, np.stack(sims, 1)


def spearman_to_identity(match: np.ndarray) -> np.ndarray:
    """Spearman's rho of a matching against the identity: ``[P, h] -> [P]`` (1: the identity)."""
    h = match.shape[1]
    if h < 2:
        return np.zeros(len(match))
    d = match - np.arange(h)
    return 1.0 - 6.0 * (d * d).sum(1) / (h * (h * h - 1.0))


def permutation_p(rho: np.ndarray, h: int, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """One-sided Monte Carlo p-values ``(1 + #{null >= rho}) / (n_perm + 1)`` of ``rho [P]`` against
    the rho of ``n_perm`` uniformly random permutations of ``h`` units (valid: never below the truth)."""
    null = np.empty(n_perm)
    for s in range(0, n_perm, 65536):  # bounded memory: [chunk, h] at a time
        m = min(65536, n_perm - s)
        null[s : s + m] = spearman_to_identity(np.argsort(rng.random((m, h)), 1))
    null.sort()
    above = n_perm - np.searchsorted(null, rho - 1e-12, side="left")
    return (1.0 + above) / (n_perm + 1.0)


def fisher(p: np.ndarray) -> np.ndarray:
    """Fisher's combination of independent p-values ``[P, L] -> [P]``."""
    return chi2.sf(-2.0 * np.log(p).sum(1), 2 * p.shape[1])


def _finish(a, b, p, distance, evidence: str, alpha: float) -> PairTests:
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    q = false_discovery_control(p, method="bh") if len(p) else p
    return PairTests(np.asarray(a), np.asarray(b), p, q, q <= alpha, np.asarray(distance, dtype=float), evidence, alpha)


def aligned_distance(params: Mapping[str, np.ndarray], groups: Groups, perms: Mapping[str, np.ndarray],
                     a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance ``[P]`` between all parameters of ``a[k]`` and of ``b[k]`` with its units
    put in the matched order (``perms`` from :func:`match_units`)."""
    owner = {(p, ax): g for g, members in groups.items() for p, ax in members if g in perms}
    total = np.zeros(len(a))
    for name, w in params.items():
        wb = w[b]
        for ax in range(w.ndim - 1):
            g = owner.get((name, ax))
            if g is not None:
                wb = _take(wb, ax + 1, perms[g])
        total += ((w[a] - wb).reshape(len(a), -1).astype(float) ** 2).sum(1)
    return np.sqrt(total)


def weight_test(params: Mapping[str, np.ndarray], groups: Groups, pairs: tuple[np.ndarray, np.ndarray],
                alpha: float = 0.05, n_perm: int = 99_999, seed: int = 0) -> tuple[PairTests, PairTests]:
    """The exact test and the permutation-invariant one of the same matchings.

    ``params`` ``{name: [n_models, ...]}``, ``groups`` as :func:`match_units`, ``pairs`` ``(a, b)``
    ``[n_pairs]``. Returns ``(exact, matched)``: ``exact`` has Fisher-combined Monte Carlo p-values
    (floor ``1 / (n_perm + 1)`` per layer); ``matched`` refers the log of ``1 - similarity`` to the
    empirical null. Both carry the aligned Euclidean distance (:func:`aligned_distance`, of the
    weights after :func:`canonical_scale`) for the tree.
    """
    a, b = (np.asarray(x, dtype=np.int64) for x in pairs)
    if n_perm < 1:
        raise AnalysisError(f"n_perm must be >= 1, got {n_perm}")
    if len(a) == 0:
        raise AnalysisError("no pairs to test")
    params = canonical_scale(params, groups)
    per_model = sum(int(np.prod(w.shape[1:])) for w in params.values())
    chunk = int(np.clip(2_000_000 // max(per_model, 1), 16, 4096))  # bounded memory per chunk of pairs
    rhos, sims, dists = [], [], []
    for s in range(0, len(a), chunk):
        ca, cb = a[s : s + chunk], b[s : s + chunk]
        perms, sim = match_units(params, groups, ca, cb)
        rhos.append(np.stack([spearman_to_identity(m) for m in perms.values()], 1))
        sims.append(sim)
        dists.append(aligned_distance(params, groups, perms, ca, cb))
        widths = [m.shape[1] for m in perms.values()]
    rho, sim, dist = np.concatenate(rhos), np.concatenate(sims), np.concatenate(dists)
    rng = np.random.default_rng(seed)
    p_layer = np.stack([permutation_p(rho[:, j], h, n_perm, rng) for j, h in enumerate(widths)], 1)
    exact = _finish(a, b, fisher(p_layer), dist, "exact", alpha)
    unmatched = np.maximum(1.0 - sim.mean(1), 1e-12)
    matched = _finish(a, b, empirical_null_p(np.log(unmatched), a, b), dist, "matched", alpha)
    return exact, matched


def empirical_null_p(stat: np.ndarray, a: np.ndarray, b: np.ndarray, tail: float = 0.05) -> np.ndarray:
    """Lower-tail p-values of a pair statistic ``[P]`` (small: related) against Efron's empirical null.

    The statistic is first centred two-way (minus the mean of each model's pairs, plus the grand
    mean) so that a model close to everyone is not related to everyone. The null is a normal with
    the centred values' median and the scale that puts its ``tail`` quantile where the pairs' own
    is: fitted to the lower tail the test lives in, which is heavier than the bulk's MAD suggests
    (models of one basin are closer, related or not). So the share of pairs with ``p <= tail`` is
    ``tail`` by construction; what is tested is the extrapolation further out, where
    Benjamini-Hochberg decides (``docs/lineage.md`` measures its false-discovery share).
    """
    stat = np.asarray(stat, dtype=float)
    if len(stat) < 10:
        raise AnalysisError(f"the population-calibrated tests need at least 10 pairs, got {len(stat)}")
    n = int(max(a.max(), b.max())) + 1
    count = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    mean = (np.bincount(a, stat, n) + np.bincount(b, stat, n)) / np.maximum(count, 1)
    r = stat - mean[a] - mean[b] + stat.mean()
    centre = np.median(r)
    scale = (centre - np.quantile(r, tail)) / -norm.ppf(tail)
    if not scale > 0:
        return np.ones_like(r)
    return norm.cdf((r - centre) / scale)


def behaviour_test(values: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], alpha: float = 0.05,
                   name: str = "behaviour", chunk: int = 65536) -> PairTests:
    """Population-calibrated test on fingerprint rows ``values [n_models, d]``: the log Euclidean
    distance of each pair, against the empirical null (:func:`empirical_null_p`)."""
    x = np.asarray(values, dtype=float).reshape(len(values), -1)
    if not np.isfinite(x).all():
        raise AnalysisError(f"fingerprint '{name}' has non-finite values")
    a, b = (np.asarray(v, dtype=np.int64) for v in pairs)
    d = np.concatenate([np.linalg.norm(x[a[s : s + chunk]] - x[b[s : s + chunk]], axis=1) for s in range(0, len(a), chunk)])
    floor = max(float(np.median(d)) * 1e-9, 1e-300)
    return _finish(a, b, empirical_null_p(np.log(d + floor), a, b), d, name, alpha)


FAMILY_RULE = "shared relatives >= 1/2"  # stamped on stored families: what built them (before: connected components)


def families(n: int, tests: PairTests) -> np.ndarray:
    """Family label ``[n]`` per model, from the significant pairs.

    A significant pair ``(u, v)`` joins its two models when they share at least half of their
    relatives: the Jaccard index of their closed neighbourhoods (each model with the models it is
    significantly related to) is ``>= 1/2``; families are the connected components of the pairs
    that pass. Connected components of all significant pairs would let one false pair merge two
    families (and the expected number of false pairs grows with the number of pairs): a false pair
    between families of sizes ``a`` and ``b`` has Jaccard ``2 / (a + b)``, so it passes only when
    ``a + b <= 4`` (two pairs joined by a pair: a chain of four, which it may be). A true family
    passes whole: a clique (Jaccard 1), a pair (1), a chain parent -> child -> grandchild whose
    grandparent pair was missed (2/3). A model the rule leaves alone whose significant pairs all
    go into one family joins it (a relative whose other pairs were missed). With a sample of the pairs tested (``--max-pairs``), both
    counts run only over the models whose pairs with both ends were tested, so that the untested
    pairs do not read as unrelated. Depends only on which pairs are significant (and tested), so
    relabelling the models relabels the families. ``docs/lineage.md`` measures it.
    """
    every = len(tests.a) >= n * (n - 1) // 2
    return families_of(n, tests.a[tests.related], tests.b[tests.related], None if every else (tests.a, tests.b))


def family_names(ids: Sequence[str], labels: Sequence[Any]) -> list[str]:
    """A name for each model's family ``[n]`` (``labels [n]``: any family labels): a model alone is named by its
    own id, a family of several by its first member's (``family of m03``), so that a sentence listing families
    names models the user knows (an outside audit, 79: ``{L0, L1, L10, ...}``)."""
    first: dict[Any, str] = {}
    for m, f in zip(ids, labels):
        first.setdefault(f, m)
    size = Counter(labels)
    return [first[f] if size[f] == 1 else f"family of {first[f]}" for f in labels]


def _symmetric(n: int, a: np.ndarray, b: np.ndarray):
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)).tocsr()
    return ((g + g.T) > 0).astype(np.int64).tocsr()


def families_of(n: int, a: np.ndarray, b: np.ndarray, tested: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`families` from the significant pairs ``(a[k], b[k])`` themselves; ``tested`` the
    pairs tested ``(a, b)`` when not every pair was."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if len(a) == 0:
        return np.arange(n)
    r = _symmetric(n, a, b)
    # common relatives of each pair's ends from one sparse product (the pairs' own rows multiplied one
    # by one cost the sum of squared degrees in memory: 23 GB for one family of 1,000 models)
    both = _entries(r @ r, a, b)  # relatives of both ends (neither end itself: no model is its own)
    if tested is None:
        deg = np.asarray(r.sum(1)).ravel()
        either = deg[a] - 1 + deg[b] - 1 - both  # relatives of either end, but for the ends themselves
    else:
        t = _symmetric(n, *(np.asarray(x, dtype=np.int64) for x in tested))
        rt = r @ t  # [i, j]: relatives of i that were tested against j
        a_rel_b_tested = _entries(rt, a, b)
        b_rel_a_tested = _entries(rt, b, a)
        either = a_rel_b_tested + b_rel_a_tested - both  # among the models tested against both ends
    keep = 2 * (both + 2) >= either + 2  # Jaccard of the closed neighbourhoods >= 1/2, in integers
    kept = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(n, n))
    return _attach_lone(connected_components(kept, directed=False)[1], a, b)


def _entries(m, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The entries ``m[rows[k], cols[k]]`` of a sparse matrix, as a flat integer array ``[k]``."""
    return np.asarray(m.tocsr()[rows, cols]).ravel().astype(np.int64)


def _attach_lone(fam: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A model the rule left alone whose significant pairs all go into one family (of two or more)
    joins it: a relative whose other pairs were missed (low power) rather than a family of its
    own. One model with a false pair joins a family this way, but two families never merge."""
    size = np.bincount(fam)
    lone = size[fam] == 1
    u, v = np.r_[a, b], np.r_[b, a]
    out = fam.copy()
    blocked = np.zeros(len(fam), bool)
    blocked[u[lone[u] & lone[v]]] = True  # a relative that is alone too: not one family's
    m = lone[u] & ~lone[v] & ~blocked[u]
    first = np.full(len(fam), -1)
    first[u[m]] = fam[v[m]]
    one = np.ones(len(fam), bool)
    np.logical_and.at(one, u[m], fam[v[m]] == first[u[m]])  # every such pair into the same family
    go = (first >= 0) & one
    out[go] = first[go]
    return out


def between_families(family: np.ndarray, tests: PairTests) -> int:
    """The significant pairs of ``tests`` whose two models :func:`families` put in different families."""
    r = tests.related
    return int((family[tests.a[r]] != family[tests.b[r]]).sum())


def nearest_candidates(t: PairTests, is_candidate: np.ndarray) -> dict[str, np.ndarray]:
    """For every model that is not a candidate and has a tested pair with one, the candidate it is
    most related to by the pair tests ``t`` (lowest p-value, then smallest distance) and the runner-up: ``{"model", "best", "p_best",
    "second", "p_second"}``, each ``[m]`` (indices; ``-1`` / NaN without a second tested candidate).
    Ranking needs no significance: a fine-tune's own base is the nearest of the bases far more often
    than its pair reaches Benjamini-Hochberg (docs/lineage.md, "Which base"). Only tested pairs count
    (``--max-pairs`` samples them above its size)."""
    cand = np.asarray(is_candidate, bool)
    a, b = np.asarray(t.a), np.asarray(t.b)
    one = cand[a] != cand[b]  # a candidate and a model to place
    model = np.where(cand[a[one]], b[one], a[one])
    other = np.where(cand[a[one]], a[one], b[one])
    p, d = np.asarray(t.p_value)[one], np.asarray(t.distance)[one]
    order = np.lexsort((d, p, model))  # by model, then p, then distance
    model, other, p = model[order], other[order], p[order]
    first = np.r_[True, model[1:] != model[:-1]] if len(model) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    has_second = np.r_[starts[1:], len(model)] - starts >= 2
    nxt = np.minimum(starts + 1, max(len(model) - 1, 0))
    return {"model": model[starts], "best": other[starts], "p_best": p[starts],
            "second": np.where(has_second, other[nxt], -1), "p_second": np.where(has_second, p[nxt], np.nan)}
