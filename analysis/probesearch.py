"""Statistics of the probe search: which candidate inputs split a population into camps of families.

Given every model's outputs on many candidate inputs ``[n_models, n_candidates, n_out]`` and each
model's init family, :func:`camp_scores` scores each candidate: its outputs are reduced to one
number per model (the first principal direction across models), the families are split into two
camps (unions of whole families, each >= 2 families: the best cut of the sorted family means, which
is the exact 1-D 2-means over families) and the score is the between-camp over the within-camp sum
of squares at the model level. The within part holds both the spread inside families (data orders
and children disagreeing: penalised) and the spread of family means inside a camp (a unimodal spread
of family means, which is initialization noise, scores about 1.75 at best; two well separated camps
score far higher).

:func:`cross_fit` is the guard against the null. Chance bimodality among a few families is easy
to find when thousands of inputs are searched, so the families are split into two halves (seeded);
the top inputs of half A are tested on half B, and vice versa; the p-values of both directions go
through one Benjamini-Hochberg correction, and only the inputs that replicate are kept. The
replication null (``null=``): ``gaussian-set`` (default) scores the selected inputs together on the
other half (first principal direction of their stacked outputs) against a hierarchical Gaussian with
that projection's own between- and within-family variances (no camps); ``sets``: against random sets
of as many unselected inputs (robust to non-Gaussian init noise, but blind to a deep difference that
shows on most inputs); ``gaussian`` / ``candidates``: each input alone (weak with few families). On a population
with no deep difference nothing should be kept (``tests/analysis/test_probesearch.py`` measures it).

Arrays in, dataclasses out; invalid input raises :class:`~analysis.errors.AnalysisError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import false_discovery_control

from analysis.errors import AnalysisError

MIN_FAMILIES_PER_HALF = 4  # two camps of >= 2 families each


@dataclass(frozen=True)
class CampScores:
    """Per candidate: ``score`` ``[n_candidates]`` (between- over within-camp sum of squares),
    ``cut`` (families in the lower camp) and ``low_camp`` ``[n_families, n_candidates]`` (True: the
    family is in the camp of lower projected output), families in ``families`` order."""

    score: np.ndarray
    low_camp: np.ndarray
    families: list


@dataclass(frozen=True)
class CrossFit:
    """The cross-fitted search.

    ``score``: every candidate's score on all families; ``kept``: indices of the candidates that
    replicated (best first); ``p_value`` / ``q_value``: per kept candidate, its smallest raw rank
    p-value and BH-adjusted value; ``tested``: every (direction, candidate, selection score,
    replication score, p, q) tested; ``halves``: the families of each half.
    """

    score: np.ndarray
    kept: list[int]
    p_value: list[float]
    q_value: list[float]
    tested: list[dict] = field(default_factory=list)
    halves: tuple[list, list] = ((), ())


def first_direction(outputs: np.ndarray) -> np.ndarray:
    """``[n_models, n_candidates, n_out]`` -> ``[n_models, n_candidates]``: each candidate's outputs
    projected on their first principal direction across models (sign fixed: the direction's largest
    component positive). One output: the output itself."""
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim == 2:
        return y
    if y.ndim != 3:
        raise AnalysisError(f"outputs must be [n_models, n_candidates(, n_out)], got shape {list(y.shape)}")
    y = y - y.mean(0, keepdims=True)
    if y.shape[2] == 1:
        return y[:, :, 0]
    cov = np.einsum("nco,ncp->cop", y, y)  # [n_candidates, n_out, n_out]
    _, vecs = np.linalg.eigh(cov)
    v = vecs[:, :, -1]  # [n_candidates, n_out], the top eigenvector
    sign = np.sign(np.take_along_axis(v, np.abs(v).argmax(1)[:, None], 1))
    return np.einsum("nco,co->nc", y, v * np.where(sign == 0, 1.0, sign))


def _codes(families: Sequence) -> tuple[np.ndarray, list]:
    fam = np.asarray([str(f) for f in families])
    values, codes = np.unique(fam, return_inverse=True)
    return codes, [str(v) for v in values]


def camp_scores(z: np.ndarray, families: Sequence) -> CampScores:
    """Score every candidate's 1-D outputs ``z`` ``[n_models, n_candidates]`` (or ``[n, N, n_out]``,
    reduced by :func:`first_direction`) for two camps of whole families; vectorised over candidates."""
    z = first_direction(z)
    n, N = z.shape
    if len(families) != n:
        raise AnalysisError(f"families has {len(families)} values for {n} models")
    codes, names = _codes(families)
    F = len(names)
    if F < MIN_FAMILIES_PER_HALF:
        raise AnalysisError(f"camp scores need >= {MIN_FAMILIES_PER_HALF} families (two camps of >= 2), got {F}")
    counts = np.bincount(codes, minlength=F).astype(np.float64)
    sums = np.zeros((F, N))
    np.add.at(sums, codes, z)
    means = sums / counts[:, None]
    order = np.argsort(means, axis=0, kind="stable")  # [F, N]
    c_sorted = counts[order]
    s_sorted = np.take_along_axis(sums, order, 0)
    nL = np.cumsum(c_sorted, 0)[:-1]  # left camp = the first j+1 families, j = 0 .. F-2
    sL = np.cumsum(s_sorted, 0)[:-1]
    total = sums.sum(0)
    nR, sR = n - nL, total[None, :] - sL
    ssb = nL * nR / n * (sL / nL - sR / nR) ** 2
    ssb[:1] = -np.inf  # camps of >= 2 families: cuts after the 2nd .. (F-2)th family
    ssb[F - 2:] = -np.inf
    best = ssb.argmax(0)
    ssb_best = ssb[best, np.arange(N)]
    sst = ((z - z.mean(0)) ** 2).sum(0)
    ssw = np.maximum(sst - ssb_best, 1e-12 * np.maximum(sst, 1e-300))
    score = np.where(sst > 1e-20, ssb_best / ssw, 0.0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(F)[:, None].repeat(N, 1), 0)
    low = rank <= best[None, :]
    return CampScores(score=score, low_camp=low, families=names)


def rank_p_values(selected: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One-sided rank p-values of ``selected`` scores among ``reference`` scores: (1 + #ref >= s) / (1 + n_ref)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    s = np.asarray(selected, dtype=np.float64)
    above = len(ref) - np.searchsorted(ref, s, side="left")
    return (1.0 + above) / (1.0 + len(ref))


def gaussian_null_p(z: np.ndarray, families: Sequence, n_null: int = 999, seed: int = 0) -> float:
    """P-value of one candidate's score (``z`` ``[n_models]``) against a hierarchical Gaussian with
    its own variances: family means from one Gaussian (no camps), members around them with the
    pooled within-family variance. The replicates are scored as candidates, in one call."""
    z = np.asarray(z, dtype=np.float64)
    codes, names = _codes(families)
    F, n = len(names), len(z)
    counts = np.bincount(codes, minlength=F).astype(np.float64)
    means = np.bincount(codes, z, F) / counts
    resid = z - means[codes]
    s2_w = float((resid**2).sum() / max(n - F, 1))
    s2_m = max(float(means.var(ddof=1)) - s2_w * float(np.mean(1.0 / counts)), 0.0)
    rng = np.random.default_rng(seed)
    sim = rng.normal(0.0, np.sqrt(s2_m), (F, n_null))[codes] + rng.normal(0.0, np.sqrt(s2_w), (n, n_null))
    observed = camp_scores(z[:, None], families).score[0]
    null = camp_scores(sim, families).score
    return float((1 + np.sum(null >= observed)) / (1 + n_null))


def split_families(families: Sequence, seed: int = 0) -> tuple[list, list]:
    """The families in two halves (seeded), each with >= :data:`MIN_FAMILIES_PER_HALF`."""
    _, names = _codes(families)
    if len(names) < 2 * MIN_FAMILIES_PER_HALF:
        raise AnalysisError(f"the probe search needs >= {2 * MIN_FAMILIES_PER_HALF} init families (two halves of "
                            f">= {MIN_FAMILIES_PER_HALF}, each split into two camps of >= 2), got {len(names)}")
    perm = np.random.default_rng(seed).permutation(len(names))
    half = len(names) // 2
    return sorted(names[i] for i in perm[:half]), sorted(names[i] for i in perm[half:])


def set_scores(outputs: np.ndarray, families: Sequence, sets: np.ndarray) -> np.ndarray:
    """The camp score of each set of candidates taken together: ``sets`` ``[n_sets, k]`` indices into
    ``outputs`` ``[n_models, n_candidates, n_out]``; each set's outputs ``[n_models, k * n_out]`` are
    reduced to their first principal direction and scored like one candidate. -> ``[n_sets]``."""
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, :, None]
    n = y.shape[0]
    stacked = y[:, sets, :].reshape(n, len(sets), -1)  # [n_models, n_sets, k * n_out]
    return camp_scores(stacked, families).score


NULLS = ("gaussian-set", "sets", "gaussian", "candidates")


def cross_fit(outputs: np.ndarray, families: Sequence, keep: int = 16, alpha: float = 0.05, seed: int = 0,
              null: str = "gaussian-set", n_null: int = 999) -> CrossFit:
    """Select the top ``keep`` candidates on each half of the families, test that they replicate on
    the other half (rank p-values against the unselected candidates, Benjamini-Hochberg at
    ``alpha`` over both directions) and return the replicated ones (:class:`CrossFit`)."""
    if null not in NULLS:
        raise AnalysisError(f"unknown null '{null}' (valid: {', '.join(NULLS)})")
    outputs = np.asarray(outputs)
    n, N = outputs.shape[:2]
    if keep < 1:
        raise AnalysisError(f"keep must be >= 1, got {keep}")
    if N < 2 * keep + 10:
        raise AnalysisError(f"the probe search needs more candidates than 2 x keep + 10 (a reference for the "
                            f"rank p-values), got {N} candidates for keep={keep}")
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    fam = np.asarray([str(f) for f in families])
    halves = split_families(fam, seed)
    in_a = np.isin(fam, halves[0])
    z_a, z_b = first_direction(outputs[in_a]), first_direction(outputs[~in_a])  # each half its own direction
    score_a = camp_scores(z_a, fam[in_a]).score
    score_b = camp_scores(z_b, fam[~in_a]).score
    tested = []
    for name, sel, rep, z_rep, f_rep in (("A->B", score_a, score_b, z_b, fam[~in_a]), ("B->A", score_b, score_a, z_a, fam[in_a])):
        top = np.argsort(-sel, kind="stable")[:keep]
        if null == "gaussian-set":  # the selected inputs together against a hierarchical Gaussian (no camps)
            y_rep = np.asarray(outputs[~in_a] if name == "A->B" else outputs[in_a], dtype=np.float64)
            z_set = first_direction(y_rep[:, top, :].reshape(len(y_rep), 1, -1))[:, 0]
            p = np.full(len(top), gaussian_null_p(z_set, f_rep, n_null, seed))
        elif null == "sets":  # the selected inputs together against random sets of as many unselected ones
            y_rep = outputs[~in_a] if name == "A->B" else outputs[in_a]
            rest = np.setdiff1d(np.arange(N), top)
            rng = np.random.default_rng([seed, len(tested)])
            ref = np.stack([rng.choice(rest, len(top), replace=False) for _ in range(n_null)])
            sc = set_scores(y_rep, f_rep, np.concatenate([top[None], ref]))
            p = np.full(len(top), (1.0 + np.sum(sc[1:] >= sc[0])) / (1.0 + n_null))
        elif null == "candidates":
            p = rank_p_values(rep[top], rep[np.setdiff1d(np.arange(N), top)])
        else:
            p = [gaussian_null_p(z_rep[:, c], f_rep, n_null, seed + int(c)) for c in top]
        tested += [{"direction": name, "candidate": int(c), "selection_score": float(sel[c]),
                    "replication_score": float(rep[c]), "p": float(pc)} for c, pc in zip(top, p)]
    q = false_discovery_control([t["p"] for t in tested], method="bh")
    for t, qc in zip(tested, q):
        t["q"] = float(qc)
    best: dict[int, dict] = {}
    for t in tested:
        if t["q"] <= alpha and (t["candidate"] not in best or t["q"] < best[t["candidate"]]["q"]):
            best[t["candidate"]] = t
    score = camp_scores(first_direction(outputs), fam).score
    kept = sorted(best, key=lambda c: (best[c]["q"], -score[c]))
    return CrossFit(score=score, kept=kept, p_value=[best[c]["p"] for c in kept], q_value=[best[c]["q"] for c in kept],
                    tested=tested, halves=halves)
