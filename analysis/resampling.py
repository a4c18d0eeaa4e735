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
MAX_MODELS = 4000  # larger populations: the tests, intervals and p-values use a random sample of whole families


def family_codes(values: Sequence) -> tuple[np.ndarray, list[str]]:
    """Each value's code ``[n]`` (0-based, in sorted-name order) and the sorted distinct names."""
    names, inv = np.unique(np.asarray([str(v) for v in values], dtype=object), return_inverse=True)
    return inv.astype(int), [str(v) for v in names]


def family_sample(family: Sequence, max_models: int = MAX_MODELS, random_state: int = 0) -> np.ndarray | None:
    """Rows ``[m]`` of a random sample of whole families holding at most ``max_models`` models (in
    population order), or ``None`` when the population is that small already."""
    codes, names = family_codes(family)
    if len(codes) <= max_models:
        return None
    sizes = np.bincount(codes)
    order = np.random.default_rng(random_state).permutation(len(names))
    keep = order[np.cumsum(sizes[order]) <= max_models]
    return np.flatnonzero(np.isin(codes, keep))


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
    families with replacement: ``rows`` index the population (a family's members together) and
    ``draw [len(rows)]`` numbers the draws, so a family drawn twice counts as two families.
    ``None`` when fewer than ``min_families`` families (default :data:`MIN_FAMILIES`), or when the
    statistic is undefined in more than half of the samples."""
    codes, names = family_codes(family)
    if len(names) < max(min_families, 1):
        return None
    members = [np.flatnonzero(codes == f) for f in range(len(names))]
    vals = []
    for pick in family_picks(len(members), n_boot, random_state):
        rows = np.concatenate([members[j] for j in pick])
        draw = np.repeat(np.arange(len(pick)), [len(members[j]) for j in pick])
        v = stat(rows, draw)
        if v is not None and np.isfinite(v):
            vals.append(float(v))
    if len(vals) < n_boot / 2:
        return None
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


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


def family_permutation_p(stat: Callable[[np.ndarray], float | None], labels: Sequence, family: Sequence,
                         n_perm: int = 199, random_state: int = 0) -> float | None:
    """One-sided permutation p-value of ``stat(labels) >= observed`` where labels move between
    families as whole blocks: each family takes the label vector of another family of the same size
    (its members' order shuffled), so a label's dependence on lineage is kept under the null."""
    lab = np.asarray([str(v) for v in labels], dtype=object)
    obs = stat(lab)
    if obs is None:
        return None
    codes, names = family_codes(family)
    members = [np.flatnonzero(codes == f) for f in range(len(names))]
    by_size: dict[int, list[int]] = {}
    for f, m in enumerate(members):
        by_size.setdefault(len(m), []).append(f)
    rng = np.random.default_rng(random_state)
    hits = 0
    for _ in range(n_perm):
        perm = lab.copy()
        for fams in by_size.values():
            for f, g in zip(fams, rng.permutation(fams)):
                perm[members[f]] = lab[rng.permutation(members[g])]
        v = stat(perm)
        hits += v is not None and v >= obs
    return float((1 + hits) / (n_perm + 1))


def member_permutation_p(stat: Callable[[np.ndarray], float | None], family: Sequence, within: Sequence | None = None,
                         n_perm: int = 199, random_state: int = 0) -> float | None:
    """One-sided permutation p-value of ``stat(family) >= observed`` with members moved across
    families (inside each group of ``within``, e.g. each true basin): the null that the family a
    model came from does not matter."""
    fam = np.asarray([str(v) for v in family], dtype=object)
    obs = stat(fam)
    if obs is None:
        return None
    groups = np.zeros(len(fam), int) if within is None else family_codes(within)[0]
    idx = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(random_state)
    hits = 0
    for _ in range(n_perm):
        perm = fam.copy()
        for ix in idx:
            perm[ix] = fam[rng.permutation(ix)]
        v = stat(perm)
        hits += v is not None and v >= obs
    return float((1 + hits) / (n_perm + 1))
