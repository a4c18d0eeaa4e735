"""Rounding draws: intervals over several trainings of one config that differ only in float arithmetic.

On some populations (``modadd-basins``: docs/results.md, "The label under float rounding alone")
which label a seed ends with depends on the float rounding of its training, so one training is a
draw of the rounding as well as a sample of seeds. The family bootstrap of
:mod:`analysis.resampling` resamples seeds with one training's labels and clusters fixed; it cannot
see the rounding. :func:`draws_bootstrap` resamples both: each sample draws K of the K trainings
with replacement, then whole init families. The trainings share their seeds (the design is crossed,
not nested), so one family draw serves every training of a sample: the seed variation is not
averaged away over the trainings as it would be if each held other seeds. Its two intervals:
``mean_ci``, of the mean over trainings (what the config gives on average over arithmetics), and
``one_draw_ci``, of the value one training gives (seeds and rounding both drawn). With one training
both are the family interval. :func:`share_interval` is the interval of a share of trainings (those
meeting a target), for the few trainings one can afford.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis import metrics as mt
from analysis.resampling import (
    MIN_FAMILIES,
    family_counts,
    family_picks,
    percentile_interval,
)


def ami_by_families(clusters: Sequence, labels: Sequence, family: Sequence,
                    names: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """The AMI of fixed ``clusters [n]`` with ``labels [n]`` on a sample of whole families, as a
    function of ``counts [B, len(names)]`` (how often each of ``names``, the families of every
    training in one order, is drawn) returning ``[B]`` (NaN where undefined: one label drawn). The
    models' ``family [n]`` must be among ``names``; a name with no model here adds nothing (e.g. a
    seed whose models are all left out of this training's pass)."""
    pos = {str(n): i for i, n in enumerate(names)}
    fam = [str(f) for f in family]
    unknown = sorted(set(fam) - set(pos))
    if unknown:
        raise ValueError(f"families {unknown[:5]} are not among the {len(pos)} names given")
    fcodes = np.asarray([pos[f] for f in fam], dtype=int)
    return mt.ami_codes_by_family_counts(mt.label_codes(np.asarray(clusters)), mt.label_codes(np.asarray(labels)),
                                         fcodes, len(pos))


@dataclass(frozen=True)
class DrawsBootstrap:
    """What :func:`draws_bootstrap` returns. ``values [n_boot, K]``: each training's statistic on each
    sample's families; ``draws [n_boot, K]``: the trainings each sample draws; ``means [n_boot]``:
    the mean over a sample's drawn trainings (NaN where none is defined)."""

    values: np.ndarray
    draws: np.ndarray
    means: np.ndarray
    mean_ci: tuple[float, float] | None
    one_draw_ci: tuple[float, float] | None
    n_families: int = 0
    random_state: int = 0
    families: tuple = ()  # the family names in the order the counts index them, when given
    trainings: tuple = ()  # which trainings the statistics are of, when given

    def share_at_least(self, threshold: float) -> float | None:
        """Share of (sample, training) values >= ``threshold``: how often one training, its seeds
        and rounding drawn, reaches it (None when no value is defined)."""
        v = self.values[np.isfinite(self.values)]
        return float((v >= threshold).mean()) if v.size else None


def draws_bootstrap(stats: Sequence[Callable[[np.ndarray], np.ndarray]], n_families: int, n_boot: int = 1000,
                    random_state: int = 0, level: float = 0.95, min_families: int = MIN_FAMILIES,
                    families: Sequence[str] = (), trainings: Sequence = ()) -> DrawsBootstrap | None:
    """Two-level bootstrap over K trainings of one config (``stats``, one per training, each mapping
    family ``counts [n_boot, n_families]`` to ``[n_boot]`` values, NaN where undefined: e.g.
    :func:`ami_by_families`) and over their ``n_families`` shared init families.

    Level 2 draws the families as :func:`analysis.resampling.family_bootstrap_batch` does (the same
    picks for a seed), once per sample for every training; level 1 draws K trainings with
    replacement (its own generator, seeded from ``random_state``). ``mean_ci``: percentile interval
    of the samples' means over their drawn trainings; ``one_draw_ci``: of all ``n_boot * K`` values,
    one training's value with seeds and rounding drawn. With one training both equal the family
    interval of ``family_bootstrap_batch`` with the same seed. ``None`` below ``min_families``
    families or without a training. ``families`` (the names the counts index) and ``trainings``
    (which trainings ``stats`` are of) are recorded for :func:`paired_difference` to check."""
    k = len(stats)
    if k == 0 or n_families < max(min_families, 1):
        return None
    counts = family_counts(family_picks(n_families, n_boot, random_state), n_families)
    values = np.column_stack([np.asarray(s(counts), dtype=np.float64) for s in stats])  # [n_boot, K]
    draws = np.random.default_rng([random_state, 1]).integers(0, k, size=(n_boot, k))
    picked = values[np.arange(n_boot)[:, None], draws]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample whose drawn trainings are all undefined
        means = np.nanmean(picked, axis=1)
    flat = values[np.isfinite(values)]
    return DrawsBootstrap(values, draws, means,
                          percentile_interval([float(v) for v in means if np.isfinite(v)], n_boot, level),
                          percentile_interval([float(v) for v in flat], values.size, level), n_families, random_state,
                          tuple(map(str, families)), tuple(trainings))


def paired_difference(a: DrawsBootstrap, b: DrawsBootstrap, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of ``a.means - b.means``, sample by sample: two statistics (e.g. two
    fingerprints) on the same draws and families, so what varies with the draw or the families
    cancels. Both must come from :func:`draws_bootstrap` with the same families, trainings, number of
    samples and seed (checked: otherwise the samples are not paired)."""
    if (a.n_families, a.random_state, a.values.shape, a.families, a.trainings) \
            != (b.n_families, b.random_state, b.values.shape, b.families, b.trainings) or not np.array_equal(a.draws, b.draws):
        raise ValueError("the two bootstraps do not draw the same samples (families, trainings, n_boot or seed differ)")
    d = a.means - b.means
    return percentile_interval([float(v) for v in d if np.isfinite(v)], len(d), level)


def share_interval(hits: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Jeffreys interval of a share of ``hits`` out of ``n`` (equal-tailed Beta(hits + 1/2,
    n - hits + 1/2) quantiles; the end at 0 or 1 when no or every trial hits, as Brown, Cai and
    DasGupta, 2001, recommend). Good coverage for small ``n``; ``None`` when ``n`` is 0."""
    from scipy.stats import beta

    if n <= 0:
        return None
    if not 0 <= hits <= n:
        raise ValueError(f"hits {hits} is not between 0 and n = {n}")
    a = (1 - level) / 2
    lo = 0.0 if hits == 0 else float(beta.ppf(a, hits + 0.5, n - hits + 0.5))
    hi = 1.0 if hits == n else float(beta.ppf(1 - a, hits + 0.5, n - hits + 0.5))
    return lo, hi
