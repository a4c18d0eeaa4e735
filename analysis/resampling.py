"""Resampling with the init family as the unit: samples, bootstrap intervals and permutation p-values.

Models of one init family are not independent samples, so the intervals of the scorecard
(:mod:`analysis.calibration`) and the label-free tests (:mod:`analysis.labelfree`) draw, permute or
sample *whole families*. Functions take arrays and callables and return numbers; ``docs/scorecard.md``
("Uncertainty") explains each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MIN_FAMILIES = 4  # fewer init families than this cannot tell a shared structure from one family's quirk
TIE = 1e-9  # a permutation's statistic within this of the observed one ties it (the same partition, recomputed)
MAX_MODELS = 4000  # larger populations: the tests, intervals and p-values use a random sample of whole families


def family_codes(values: Sequence) -> tuple[np.ndarray, list[str]]:
    """Each value's code ``[n]`` (0-based, in sorted-name order) and the sorted distinct names."""
    names, inv = np.unique(np.asarray([str(v) for v in values], dtype=object), return_inverse=True)
    return inv.astype(int), [str(v) for v in names]


def family_sample(family: Sequence, max_models: int = MAX_MODELS, random_state: int = 0) -> np.ndarray | None:
    """Rows ``[m]`` of a random sample of whole families holding at most ``max_models`` models (in
    population order), or ``None`` when the population is that small already. When whole families
    would leave fewer than :data:`MIN_FAMILIES` of them (or fewer than the population has, below
    that: a few large families, such as two base models with thousands of fine-tunes each), every
    family is kept instead, each with a random share of its members (at least two where it has
    them): sampling whole families there would have tested 2 families of 2,100 models as one."""
    codes, names = family_codes(family)
    if len(codes) <= max_models:
        return None
    sizes = np.bincount(codes)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(names))
    keep = order[np.cumsum(sizes[order]) <= max_models]
    if len(keep) >= min(len(names), MIN_FAMILIES):
        return np.flatnonzero(np.isin(codes, keep))
    take = np.minimum(sizes, np.maximum(2, sizes * max_models // len(codes)))
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(codes == f), take[f], replace=False)
                                   for f in range(len(names))]))


# -- intervals and permutation p-values with families as units -------------------------------------
def family_picks(n_families: int, n_boot: int, random_state: int = 0) -> np.ndarray:
    """The families each bootstrap sample draws, ``[n_boot, n_families]`` (with replacement).

    Every family-bootstrap interval of the toolkit draws through this one function, so a seed gives
    the same samples whichever statistic they serve."""
    return np.random.default_rng(random_state).integers(0, n_families, size=(n_boot, n_families))


def family_bootstrap(stat: Callable[[np.ndarray, np.ndarray], float | None], family: Sequence, n_boot: int = 200,
                     random_state: int = 0, level: float = 0.95,
                     min_families: int = MIN_FAMILIES) -> tuple[float, float] | None:
    """Percentile interval of ``stat(rows, draw)`` over bootstrap samples that draw whole init
    families with replacement (:func:`family_bootstrap_values`). ``None`` when fewer than
    ``min_families`` families (default :data:`MIN_FAMILIES`), or when the statistic is undefined in
    more than half of the samples. :func:`family_bootstrap_batch` is the same interval for a
    statistic computed on all samples at once."""
    vals = family_bootstrap_values(stat, family, n_boot, random_state, min_families)
    return None if vals is None else percentile_interval(vals.tolist(), n_boot, level)


def family_bootstrap_values(stat: Callable[[np.ndarray, np.ndarray], float | None], family: Sequence,
                            n_boot: int = 200, random_state: int = 0,
                            min_families: int = MIN_FAMILIES) -> np.ndarray | None:
    """The defined values ``[<= n_boot]`` of ``stat(rows, draw)`` over bootstrap samples that draw
    whole init families with replacement: ``rows`` index the population (a family's members
    together) and ``draw [len(rows)]`` numbers the draws, so a family drawn twice counts as two
    families. ``None`` below ``min_families`` families."""
    codes, names = family_codes(family)
    if len(names) < max(min_families, 1):
        return None
    by_family = np.argsort(codes, kind="stable")  # each family's members together, in population order
    sizes = np.bincount(codes, minlength=len(names))
    starts = np.cumsum(sizes) - sizes
    vals = []
    for pick in family_picks(len(names), n_boot, random_state):
        drawn = sizes[pick]
        draw = np.repeat(np.arange(len(pick)), drawn)  # [m]: which draw each row belongs to
        first = np.cumsum(drawn) - drawn  # where each draw's rows begin in ``rows``
        rows = by_family[starts[pick][draw] + np.arange(len(draw)) - first[draw]]
        v = stat(rows, draw)
        if v is not None and np.isfinite(v):
            vals.append(float(v))
    return np.asarray(vals, dtype=np.float64)


def family_bootstrap_batch(stat: Callable[[np.ndarray, np.ndarray], np.ndarray], family: Sequence, n_boot: int = 200,
                           random_state: int = 0, level: float = 0.95,
                           min_families: int = MIN_FAMILIES) -> tuple[float, float] | None:
    """:func:`family_bootstrap` with the statistic of every sample computed at once
    (:func:`family_bootstrap_batch_values`): the same interval as :func:`family_bootstrap` with the
    per-sample statistic, when the values are."""
    vals = family_bootstrap_batch_values(stat, family, n_boot, random_state, min_families)
    return None if vals is None else percentile_interval(vals.tolist(), n_boot, level)


def family_bootstrap_batch_values(stat: Callable[[np.ndarray, np.ndarray], np.ndarray], family: Sequence,
                                  n_boot: int = 200, random_state: int = 0,
                                  min_families: int = MIN_FAMILIES) -> np.ndarray | None:
    """:func:`family_bootstrap_values` with the statistic of every sample computed at once:
    ``stat(picks, codes)`` gets the families each sample draws, ``picks [n_boot, n_families]`` (the
    same draws, in the same order), and each model's family code ``codes [n]`` (sorted-name order,
    as :func:`family_codes`), and returns the ``[n_boot]`` values, NaN where undefined."""
    codes, names = family_codes(family)
    if len(names) < max(min_families, 1):
        return None
    vals = np.asarray(stat(family_picks(len(names), n_boot, random_state), codes), dtype=np.float64)
    return vals[np.isfinite(vals)]


def family_counts(picks: np.ndarray, n_families: int) -> np.ndarray:
    """How often each sample of ``picks [n_boot, k]`` draws each family: ``[n_boot, n_families]`` (int)."""
    n_boot = len(picks)
    flat = (np.arange(n_boot)[:, None] * n_families + picks).ravel()
    return np.bincount(flat, minlength=n_boot * n_families).reshape(n_boot, n_families)


def percentile_interval(vals: list[float], n_boot: int, level: float) -> tuple[float, float] | None:
    """The percentile interval of the defined values, ``None`` when fewer than half the samples have one."""
    if len(vals) < n_boot / 2:
        return None
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def basic_interval(vals: np.ndarray, estimate: float, n_boot: int, level: float = 0.95,
                   bounds: tuple[float, float] = (-np.inf, np.inf),
                   log: bool = False, expand: float = 1.0, angular: bool = False) -> tuple[float, float, float] | None:
    """The bias-corrected estimate and the basic (reverse-percentile) bootstrap interval of a
    statistic whose sample value is ``estimate`` and whose bootstrap values are ``vals``:
    ``(2 estimate - median, 2 estimate - q_hi, 2 estimate - q_lo)``, clipped to ``bounds``; with
    ``log`` the same on the log scale (``estimate**2 / median``, ...: for a positive ratio whose
    bootstrap is skewed, a separation in SDs; the linear scale where a value is not positive); with
    ``angular`` on the angular scale, ``arcsin(sqrt(value))`` (a share in [0, 1], the variance-stabilising
    scale of a proportion: on the linear scale a skewed bootstrap pushed the interval of a clear
    difference to 0, as it did a ratio's).
    The bootstrap values stand to the estimate as the estimate stands to the population's value, so
    where resampling inflates a statistic (a share of variance drawn with duplicated families, a
    separation along a line fitted to the same models) the percentile interval sits too high, can
    exclude the estimate, and covers the population's value far less often than its level says; the
    basic interval moves the other way (docs/scorecard.md, "How big is the difference"). ``expand``
    widens both halves about the corrected estimate by that factor (on the log scale with ``log``;
    :func:`small_sample_expansion`). The corrected estimate lies inside its interval. ``None`` when
    fewer than half the samples have a value."""
    pi = percentile_interval(list(vals), n_boot, level)
    if pi is None:
        return None
    med = float(np.median(vals))
    on_log = log and estimate > 0 and pi[0] > 0
    if on_log:
        mid, lo, hi = estimate**2 / med, estimate**2 / pi[1], estimate**2 / pi[0]
    elif angular:  # the basic interval of arcsin(sqrt(value)), mapped back below
        a = [float(np.arcsin(np.sqrt(np.clip(v, 0.0, 1.0)))) for v in (estimate, med, *pi)]
        mid, lo, hi = 2 * a[0] - a[1], 2 * a[0] - a[3], 2 * a[0] - a[2]
    else:
        mid, lo, hi = 2 * estimate - med, 2 * estimate - pi[1], 2 * estimate - pi[0]
    if expand != 1.0:  # (unwidened: the ends exactly as computed)
        lo, hi = ((mid * (lo / mid) ** expand, mid * (hi / mid) ** expand) if on_log
                  else (mid - expand * (mid - lo), mid + expand * (hi - mid)))
    if angular and not on_log:  # back from angles, which stop at 0 and pi / 2 (a share of 0 and of 1)
        mid, lo, hi = (float(np.sin(np.clip(v, 0.0, np.pi / 2)) ** 2) for v in (mid, lo, hi))
    return tuple(float(np.clip(v, *bounds)) for v in (mid, lo, hi))


def small_sample_expansion(n_groups: int, level: float = 0.95) -> float:
    """How much wider than the bootstrap's a ``level`` interval from ``n_groups`` resampled units
    (init families) should be: ``sqrt(G / (G - 1)) * t_{G-1} / z``, Hesterberg's expanded bootstrap
    interval (2015, "What teachers should know about the bootstrap"). A bootstrap of G units
    sees their spread divided by G, not G - 1, and treats it as known, not estimated; both
    matter at the 4-12 families of a typical population (1.44 at 6 families, 1.22 at 10, 1.08 at
    24). 1.0 below 2 units."""
    from scipy import stats  # deferred for start-up time (the report process)

    if n_groups < 2:
        return 1.0
    a = (1 - level) / 2
    return float(np.sqrt(n_groups / (n_groups - 1)) * stats.t.ppf(1 - a, n_groups - 1) / stats.norm.ppf(1 - a))


def family_bootstrap_mean(values: Sequence[float], family: Sequence | None = None, n_boot: int = 2000,
                          random_state: int = 0, level: float = 0.95,
                          min_families: int = MIN_FAMILIES) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``values [n]`` (e.g. 0/1 hits: an accuracy) over the
    same family draws as :func:`family_bootstrap`, vectorized: each sample's mean is
    ``counts @ family_sums / counts @ family_sizes`` with ``counts [n_boot, n_families]``.
    ``family`` ``None``: every model its own family. ``None`` below ``min_families`` families."""
    values = np.asarray(values, dtype=float)
    codes = family_codes(range(len(values)) if family is None else family)[0]
    sums, sizes = np.bincount(codes, weights=values), np.bincount(codes).astype(float)  # [n_families]
    if len(sizes) < max(min_families, 1):
        return None
    picks = family_picks(len(sizes), n_boot, random_state)
    counts = np.zeros((n_boot, len(sizes)))
    np.add.at(counts, (np.repeat(np.arange(n_boot), len(sizes)), picks.ravel()), 1.0)
    means = (counts @ sums) / (counts @ sizes)  # [n_boot]
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def family_permutations(family: Sequence, n_perm: int = 199, random_state: int = 0) -> np.ndarray:
    """The permutations of :func:`family_permutation_p`, ``[n_perm, n]``: in permutation ``p`` model ``i``
    takes the label of model ``out[p, i]``. Each family takes the members of another family of the
    same size (their order shuffled), the families of one size permuted among themselves."""
    codes, names = family_codes(family)
    order = np.argsort(codes, kind="stable")  # the families' slots side by side, members in population order
    sizes = np.bincount(codes, minlength=len(names))
    starts = np.cumsum(sizes) - sizes
    members = [order[a : a + m] for a, m in zip(starts, sizes)]
    by_size: dict[int, list[int]] = {}
    for f, m in enumerate(members):
        by_size.setdefault(len(m), []).append(f)
    rng = np.random.default_rng(random_state)
    slots = np.empty((n_perm, len(codes)), dtype=np.int64)
    for p in range(n_perm):  # the draws one at a time, in the order they have always been made
        row = slots[p]
        for fams in by_size.values():
            for f, g in zip(fams, rng.permutation(fams)):
                # rng.permutation(members[g]) is a copy shuffled: shuffled in place in the slots, the same draws
                view = row[starts[f] : starts[f] + sizes[f]]
                view[:] = members[g]
                rng.shuffle(view)
    out = np.empty_like(slots)
    out[:, order] = slots
    return out


def family_permutation_floor(labels: Sequence, family: Sequence, max_relabellings: int = 120) -> float:
    """:func:`family_permutation_floor_exact`'s floor alone."""
    return family_permutation_floor_exact(labels, family, max_relabellings)[0]


def family_permutation_floor_exact(labels: Sequence, family: Sequence, max_relabellings: int = 120
                                   ) -> tuple[float, bool]:
    """The smallest p-value a family permutation of ``labels [n]`` can give a statistic of partitions
    (AMI): the probability that one permutation of :func:`family_permutations` reproduces the
    labels' partition (the same models together, whatever the label names), which then ties the
    observed value of a perfect match. Exact: within each group of families of one size the families
    are permuted uniformly (a family must receive labels whose multiset is its own, up to a renaming
    of the labels) and each family's members shuffled uniformly (the one order of the family's own
    labels). E.g. 6 families of 2, each one label a and one b: 2 of 2^6 relabellings, 1/32.

    Every renaming that maps the families' label counts onto themselves adds the identity's
    probability; the renamings tried are those between labels of equal counts (others change the
    partition's block sizes), at most ``max_relabellings``; beyond that only the identity, a lower
    bound (then "p cannot go below" it stays true). Returns the floor and whether it is exact (not
    that lower bound): an exact floor is also the exact p-value of a perfect match."""
    from itertools import permutations, product  # deferred: used only here
    from math import factorial, lgamma

    lcodes, lnames = family_codes(labels)
    fcodes, fnames = family_codes(family)
    k, nf = len(lnames), len(fnames)
    table = np.zeros((nf, k), dtype=np.int64)  # table[f, v]: members of family f with label v
    np.add.at(table, (fcodes, lcodes), 1)
    sizes = table.sum(1)
    # the identity: per size group, prod(c_T!) / n_group! family permutations keep every family's
    # multiset, and each family's shuffle gives its own order with prod(count!) / size!; in logs
    log_p = 0.0
    groups = []
    for m in np.unique(sizes):
        rows = table[sizes == m]
        kinds, counts = np.unique(rows, axis=0, return_counts=True)
        log_p += sum(lgamma(c + 1) for c in counts) - lgamma(len(rows) + 1)
        log_p += float(np.sum([lgamma(c + 1) for c in rows.ravel()])) - len(rows) * lgamma(m + 1)
        groups.append((rows, kinds, counts))
    totals = table.sum(0)
    same_count = [np.flatnonzero(totals == t) for t in np.unique(totals)]
    n_maps = 1
    for g in same_count:
        n_maps *= factorial(len(g))
    valid, exact = 1, n_maps == 1
    if 1 < n_maps <= max_relabellings and log_p > -30:  # below, even every renaming adds < 1e-11
        exact = True
        valid = 0
        for choice in product(*[permutations(g) for g in same_count]):
            sigma = np.arange(k)
            for g, img in zip(same_count, choice):
                sigma[list(g)] = img
            ok = True
            for rows, kinds, counts in groups:  # renaming v -> sigma[v] keeps each size group's multisets
                renamed = np.zeros_like(rows)
                renamed[:, sigma] = rows
                k2, c2 = np.unique(renamed, axis=0, return_counts=True)
                if not (np.array_equal(k2, kinds) and np.array_equal(c2, counts)):
                    ok = False
                    break
            valid += ok
    return float(f"{min(valid * np.exp(log_p), 1.0):.12g}"), exact  # the logs' last bits off: 1/32 prints as 0.031


def member_permutations(n: int, within: Sequence | None = None, n_perm: int = 199, random_state: int = 0) -> np.ndarray:
    """The permutations of :func:`member_permutation_p`, ``[n_perm, n]``: in permutation ``p`` model ``i``
    takes the family of model ``out[p, i]``, a model of its own group of ``within`` (all: one group)."""
    groups = np.zeros(n, int) if within is None else family_codes(within)[0]
    idx = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(random_state)
    out = np.empty((n_perm, n), dtype=np.int64)
    for p in range(n_perm):
        for ix in idx:
            out[p, ix] = rng.permutation(ix)
    return out


def permutation_p(observed: float, null: Sequence[float | None]) -> float:
    """One-sided p-value ``(1 + #{null >= observed}) / (len(null) + 1)``; a null value that is
    ``None`` or NaN does not count as reaching the observed one."""
    hits = sum(1 for v in null if v is not None and v >= observed)
    return float((1 + hits) / (len(null) + 1))


def family_permutation_p(stat: Callable[[np.ndarray], float | None], labels: Sequence, family: Sequence,
                         n_perm: int = 199, random_state: int = 0) -> float | None:
    """One-sided permutation p-value of ``stat(labels) >= observed`` where labels move between
    families as whole blocks: each family takes the label vector of another family of the same size
    (its members' order shuffled), so a label's dependence on lineage is kept under the null
    (:func:`family_permutations`)."""
    lab = np.asarray([str(v) for v in labels], dtype=object)
    obs = stat(lab)
    if obs is None:
        return None
    return permutation_p(obs, [stat(lab[p]) for p in family_permutations(family, n_perm, random_state)])


def member_permutation_p(stat: Callable[[np.ndarray], float | None], family: Sequence, within: Sequence | None = None,
                         n_perm: int = 199, random_state: int = 0) -> float | None:
    """One-sided permutation p-value of ``stat(family) >= observed`` with members moved across
    families (inside each group of ``within``, e.g. each true basin): the null that the family a
    model came from does not matter (:func:`member_permutations`)."""
    fam = np.asarray([str(v) for v in family], dtype=object)
    obs = stat(fam)
    if obs is None:
        return None
    return permutation_p(obs, [stat(fam[p]) for p in member_permutations(len(fam), within, n_perm, random_state)])
