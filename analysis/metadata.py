"""Candidate basins against the population's other model columns: does a label-free deep verdict
coincide with something the user already knows about the models (training length, learning rate,
data size, an optimizer)?

A label-free ``crosses lineage`` / ``groups lineages`` verdict says the models fall into two camps
the init seed does not explain. Camps that are exactly the models trained 10 epochs instead of 40
are true, but they are a training setting, not necessarily a basin. :func:`compare` scores the two
candidate basins against every other stored column: a categorical column (2 to n/2 distinct values)
by the adjusted mutual information (scikit-learn's AMI), a numeric column (any number of values) by
the AUROC of the column between the two basins (scikit-learn's ``roc_auc_score``: the Mann-Whitney
rank statistic, oriented so that it is at least 0.5); a numeric column with few values gets both.
Each has a 95% family-bootstrap interval (whole init families drawn, :mod:`analysis.resampling`)
and *matches* when the interval's lower end reaches the scorecard's own level for "tracks the
label": ``deep_threshold`` (AMI 0.3) and ``auroc_threshold`` (AUROC 0.85). An AMI below half its
level is no match and gets no interval (its resampled expected mutual information is the cost). :func:`attach` sets
``metadata_match`` on each fingerprint result with candidate basins. ``docs/scorecard.md``
("Candidate basins and your metadata") explains the choices. :func:`gradients` asks the question of
a difference varied by degrees, which forms no candidate basins: does a numeric column follow the
fingerprint within the init families (or, set family by family, across them)? ("A column that follows
the fingerprint"). The extractors never see these columns: only these comparisons, after the verdicts, do.
Longer than 400 lines: both questions read the same columns (seeds, kinds, missing values) and draw their
nulls with the same family-respecting permutations, which would otherwise be split across two modules.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from analysis import agreement as ag
from analysis import metrics as mt
from analysis import resampling as rs
from analysis.options import GENERATION, AnalysisOptions
from analysis.results import FingerprintResult
from analysis.values import missing

__all__ = ["NOT_COMPARED", "compare", "finer", "attach", "column_kind", "is_seed", "matches", "measurements", "gradients",
           "table_gradients"]

# ids, and the weight-recovered families (fingerprint.tables.RECOVERED and TWIN_FAMILY: estimates of the lineage)
NOT_COMPARED = ("model_id", "parent_id", "recovered_family", "twin_family")
AMI_INTERVAL_FROM = 0.5  # an AMI gets its interval from this share of the level up (below: no match, no interval)
MISSING = ("", "nan", "None", "NaN")  # a model the metadata CSV has no value for (docs/zoo-format.md)


def column_kind(values: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """``(numbers, present)``: the column as floats (``None`` unless every present value is a finite
    number; bools count as 0/1) and which models have a value (``""``, ``None`` and NaN are missing)."""
    vals = np.asarray(values, dtype=object)
    present = np.asarray([not (v is None or str(v) in MISSING) for v in vals], bool)
    try:
        nums = np.asarray([float(v) for v in vals[present]], dtype=np.float64)
    except (TypeError, ValueError):
        return None, present
    if not np.isfinite(nums).all():
        return None, present
    out = np.full(len(vals), np.nan)
    out[present] = nums
    return out, present


def is_seed(name: str) -> bool:
    """A seed column (``init_seed``, ``data_seed``, ``seed``, ``torch_seed``: a name ending in ``seed``)
    names a random stream: its numbers are labels, whose order means nothing. It is compared as
    categories only, never by the AUROC of its values (an outside audit of the sixteenth session:
    ``data_seed = 100 x family + member`` "matched" whole-family camps as a graded column cut in two)."""
    return str(name).lower().endswith("seed")


GRADED_VALUES = 5  # distinct numbers from which a matched column reads as graded: camps at a threshold of it (AUROC entries)
MEASURED_VALUES = 3  # distinct non-integer numbers from which a label column reads as measurements, not classes


def measurements(values: np.ndarray) -> tuple[int, int] | None:
    """``(distinct values, models with a value)`` when a column holds measurements rather than
    classes -- numbers, not all whole, at least :data:`MEASURED_VALUES` distinct ones (a weight decay,
    a score; ``0.25`` / ``1.0`` rates are two classes) -- else ``None``. As ``--label`` its every value
    would be a class of its own (the sixth audit: a measured score with 4 values read ``tracks deep
    differences`` on a null, and a per-model weight decay gave intervals above their point)."""
    nums, present = column_kind(values)
    if nums is None:
        return None
    vals = nums[present]
    distinct = len(np.unique(vals))
    if distinct < MEASURED_VALUES or np.all(vals == np.round(vals)):
        return None
    return distinct, int(present.sum())


def _crossed(col: np.ndarray, family: np.ndarray) -> bool:
    """``col`` is crossed with the families as a design factor is (a data order shared by the inits):
    some level is in two or more families, and some family holds two or more levels."""
    fams_of: dict[str, set] = {}
    levels_of: dict[str, set] = {}
    for c, f in zip(col.tolist(), family.tolist()):
        fams_of.setdefault(c, set()).add(f)
        levels_of.setdefault(f, set()).add(c)
    return max(map(len, fams_of.values())) >= 2 and max(map(len, levels_of.values())) >= 2


def _same_partition(col: np.ndarray, family: np.ndarray) -> bool:
    """``col`` groups the models exactly as the families do: another name for the lineage column."""
    pairs = {(str(c), str(f)) for c, f in zip(col, family)}
    return len({c for c, _ in pairs}) == len(pairs) == len({f for _, f in pairs})


def compare(basins: np.ndarray, columns: dict[str, np.ndarray], family: np.ndarray, n_boot: int = 200,
            random_state: int = 0, ami_level: float = 0.3, auroc_level: float = 0.85) -> list[dict[str, Any]]:
    """Two candidate basins ``basins [n]`` (``-1``: no basin, left out) against each column of
    ``columns`` (name -> ``[n]``), with ``family [n]`` the init families the bootstrap draws.

    Returns one entry per statistic computed, matches first, then by strength:
    ``{column, statistic ("AMI" | "AUROC"), value, ci ([lo, hi] or None), match, level, n_models}``
    (AUROC entries also ``higher_in``: the basin where the column's values are higher, ``distinct``: its
    number of values, and ``graded``: at least :data:`GRADED_VALUES` of them, not two levels apart
    (:func:`_two_levels`), so that two camps it matches may be a threshold on a continuum rather than
    two basins; AMI entries ``crossed``: crossed
    with the families as a shared data order is, which ``--strata`` takes out). A seed column
    (:func:`is_seed`) gets no AUROC: its numbers are names. A column is
    left out when it is constant on the models, has no numbers and more than n/2 distinct values (names,
    paths), or groups the models exactly as the families do (another name for the lineage)."""
    basins = np.asarray(basins)
    fam_all = np.asarray([str(f) for f in family], dtype=object)
    out = []
    for name, values in columns.items():
        nums, present = column_kind(np.asarray(values, dtype=object))
        keep = present & (basins >= 0)
        if keep.sum() < 4 or len(np.unique(basins[keep])) < 2:
            continue
        b, fam = basins[keep], fam_all[keep]
        strs = _strings(values, nums, keep)
        distinct = len(set(strs.tolist()))
        if distinct < 2 or _same_partition(strs, fam):
            continue
        n = len(b)
        fcodes, fnames = rs.family_codes(fam)
        nf = len(fnames)
        if distinct <= n // 2:
            out.append(_ami_entry(name, b, strs, fcodes, fam, nf, n_boot, random_state, ami_level))
            out[-1]["crossed"] = _crossed(strs, fam)
        if nums is not None and len(np.unique(b)) == 2 and not is_seed(name):
            out.append(_auroc_entry(name, b, nums[keep], fcodes, fam, nf, n_boot, random_state, auroc_level))
            out[-1]["distinct"] = distinct
            out[-1]["graded"] = distinct >= GRADED_VALUES and not _two_levels(nums[keep], b)
    return sorted(out, key=lambda e: (not e["match"], -(e["value"] or 0.0), e["column"], e["statistic"]))


def _strings(values: np.ndarray, nums: np.ndarray | None, keep: np.ndarray) -> np.ndarray:
    """The values of a column at ``keep`` as strings, numbers by their ``repr`` (1 and 1.0 one value)."""
    col = np.asarray(values, dtype=object)[keep]
    return np.asarray([str(v) for v in col] if nums is None else [repr(v) for v in nums[keep].tolist()], dtype=object)


def finer(basins: np.ndarray, clusters: np.ndarray, columns: dict[str, np.ndarray], family: np.ndarray,
          n_boot: int = 200, random_state: int = 0, ami_level: float = 0.3) -> list[dict[str, Any]]:
    """The columns that a fingerprint's own ``clusters [n]`` follow *inside* its two candidate camps
    ``basins [n]`` (``-1``: left out): in every camp holding models of two clusters or more, the AMI of the
    clusters and the column among that camp's models matches (its family-bootstrap interval's lower end at
    ``ami_level``, as :func:`compare`'s). One entry per such column: ``{column, camps: [{camp, value, ci}],
    match: True}``. An outside audit (86): two rules crossed with three learning rates, the camps the rules
    and the finer clusters each rule's slowest rate, and nothing said so with the rate's column given. A
    column constant within the camps (the camps' own match), with more than half as many values as a camp
    has models, or grouping a camp's models as its families do is left out."""
    basins, clusters = np.asarray(basins), np.asarray(clusters)
    keep = (basins >= 0) & (clusters >= 0)
    # a camp split by the clusters: two of them or more with two models or more there (one stray is no split: a review)
    camps = [b for b in np.unique(basins[keep])
             if (np.unique(clusters[keep & (basins == b)], return_counts=True)[1] >= 2).sum() >= 2]
    fam_all = np.asarray([str(f) for f in family], dtype=object)
    out = []
    for name, values in columns.items() if camps else ():
        nums, present = column_kind(np.asarray(values, dtype=object))
        entries = []
        for camp in camps:
            at = keep & present & (basins == camp)
            strs, fam = _strings(values, nums, at), fam_all[at]
            distinct = len(set(strs.tolist()))
            if at.sum() < 4 or not 2 <= distinct <= at.sum() // 2 or _same_partition(strs, fam):
                break
            fcodes, fnames = rs.family_codes(fam)
            e = _ami_entry(name, clusters[at], strs, fcodes, fam, len(fnames), n_boot, random_state, ami_level)
            if not e["match"]:
                break
            entries.append({"camp": int(camp), "value": e["value"], "ci": e["ci"]})
        else:
            out.append({"column": str(name), "camps": entries, "match": True})
    return out


def _two_levels(x: np.ndarray, b: np.ndarray) -> bool:
    """Are the two basins' values of ``x [n]`` two levels, not a continuum cut in two: their ranges
    apart, with a gap between them at least as wide as the wider range (an outcome measured on each
    model: 0.0 for every clean model, 0.96-0.99 for every backdoored one)?"""
    lo, hi = sorted((x[b == v] for v in np.unique(b)), key=np.median)
    gap = float(hi.min() - lo.max())
    return gap > 0 and gap >= max(float(np.ptp(lo)), float(np.ptp(hi)))


def _ami_entry(name: str, b: np.ndarray, strs: np.ndarray, fcodes: np.ndarray, fam: np.ndarray, nf: int, n_boot: int,
               seed: int, level: float) -> dict[str, Any]:
    bc, lc = mt.label_codes(b), mt.label_codes(strs)
    value = mt.ami_codes(bc, lc)  # scikit-learn's adjusted_mutual_info_score (analysis.agreement: the same formula)
    ci = None
    # the expected mutual information of 200 resampled tables is the cost here (~0.1 s for 1,000 models):
    # a value below half the level is no match whatever its interval, and gets none (docs/scorecard.md)
    if value is not None and value >= level * AMI_INTERVAL_FROM:
        of_counts = mt.ami_codes_by_family_counts(bc, lc, fcodes, nf)
        ci = rs.family_bootstrap_batch(lambda picks, _c: of_counts(rs.family_counts(picks, nf)), fam, n_boot, seed)
    return _entry(name, "AMI", value, ci, level, len(b))


def _auroc_entry(name: str, b: np.ndarray, x: np.ndarray, fcodes: np.ndarray, fam: np.ndarray, nf: int, n_boot: int,
                 seed: int, level: float) -> dict[str, Any]:
    hi = int(np.max(b))
    y = b == hi
    value = float(roc_auc_score(y, x))
    flip = value < 0.5  # oriented: the AUROC of the basin where the column is higher
    lo_b = int(np.min(b))
    w = lambda picks, _c: rs.family_counts(picks, nf)[:, fcodes]  # noqa: E731 - each model's count in each sample
    ci = rs.family_bootstrap_batch(lambda picks, c: ag.binary_auroc_weighted(y, x, w(picks, c)), fam, n_boot, seed)
    if flip:
        value, ci = 1.0 - value, None if ci is None else (1.0 - ci[1], 1.0 - ci[0])
    e = _entry(name, "AUROC", value, ci, level, len(b))
    e["higher_in"] = lo_b if flip else hi
    return e


def _entry(name: str, stat: str, value: float | None, ci: tuple[float, float] | None, level: float, n: int) -> dict[str, Any]:
    value = None if value is None or not np.isfinite(value) else float(value)
    return {"column": str(name), "statistic": stat, "value": value, "ci": None if ci is None else [float(ci[0]), float(ci[1])],
            "match": matches(value, ci, level), "level": float(level), "n_models": int(n)}


def matches(value: float | None, ci: tuple[float, float] | list[float] | None, level: float) -> bool:
    """A match: the interval's lower end at or above ``level`` (without an interval -- fewer than 4
    families, or an AMI below half the level -- the value itself)."""
    if value is None:
        return False
    return bool((ci[0] if ci is not None else value) >= level)


def attach(results: list[FingerprintResult], table: dict[str, np.ndarray], opts: AnalysisOptions,
           strata: list[str] | None = None) -> None:
    """Set ``metadata_match`` on every analysed result whose label-free verdict gave candidate basins:
    the basins against every column of ``table`` except ids, the lineage column and the label in use
    (:func:`compare`); ``[]`` when no column qualifies. Results without candidate basins keep ``None``.
    And ``strata_follow`` for the design columns ``strata`` (:func:`attach_strata_follow`)."""
    attach_strata_follow(results, table, opts, strata or [])
    skip = {*NOT_COMPARED, opts.lineage, opts.label}
    names = [c for c in table if c not in skip]
    index = {str(m): i for i, m in enumerate(table["model_id"])}
    for r in results:
        cand = (r.label_free or {}).get("candidate_basins") or {}
        if not r.analysed or r.error or not cand or r.lineage_values is None:
            continue
        rows = np.asarray([index[str(m)] for m in r.model_ids], int)
        basins = np.asarray([int(cand.get(str(m), -1)) for m in r.model_ids], int)
        family = np.asarray(r.lineage_values, dtype=object)
        sample = rs.family_sample(family, rs.MAX_MODELS, opts.seed)  # a large population: whole families, as calibrate
        if sample is not None:
            rows, basins, family = rows[sample], basins[sample], family[sample]
        cols = {c: np.asarray(table[c], dtype=object)[rows] for c in names}
        r.metadata_match = compare(basins, cols, family, opts.n_family_boot, opts.seed, opts.deep_threshold,
                                   opts.auroc_threshold)
        clusters = np.asarray(r.clusters, int)[sample] if sample is not None else np.asarray(r.clusters, int)
        if len(set(clusters[clusters >= 0].tolist())) > len(set(basins[basins >= 0].tolist())):  # finer than the camps
            r.metadata_finer = finer(basins, clusters, cols, family, opts.n_family_boot, opts.seed,
                                     opts.deep_threshold) or None


GRADIENT_AXES = 5  # the fingerprint's leading coordinates a column's within-family differences are regressed on


def gradients(coords: np.ndarray, columns: dict[str, np.ndarray], family: np.ndarray, n_perm: int = 199,
              seed: int = 0) -> list[dict[str, Any]]:
    """Does a numeric model column follow the fingerprint *within* the init families? A difference
    varied by degrees from model to model (a training knob drawn per model, a cue relied on more or
    less) forms no basins, so :func:`compare` never sees it (an outside audit of the nineteenth session).

    ``coords [n, d]``: the fingerprint's reduced coordinates, leading first; ``family [n]`` (a missing
    value: left out, as are families of one model). Each numeric column (not a seed: :func:`is_seed`)
    with a value on every model counted and two or more values within some family is centred in each
    family, as are the leading :data:`GRADIENT_AXES` coordinates (at most a quarter of the within-family
    degrees of freedom). ``r2``: the share of the column's within-family variance they explain (least
    squares), ``r2_adj`` adjusted for their number, ``p`` its permutation p-value with the column
    permuted inside each family ``n_perm`` times (the families' own levels kept: the relation to the
    fingerprint is what is tested). Returns ``[{column, r2, r2_adj, p, n_models, n_families, n_values}]``,
    strongest first; ``[]`` when nothing qualifies."""
    fam = np.asarray([str(f) for f in family], dtype=object)
    known = np.asarray([f not in MISSING for f in fam], bool)
    codes = np.unique(fam, return_inverse=True)[1].ravel()
    sizes = np.bincount(codes)
    keep = known & (sizes[codes] >= 2)
    out = []
    rng = np.random.default_rng(seed)
    coords = np.asarray(coords, dtype=np.float64)
    for name, values in columns.items():
        if is_seed(name):
            continue
        nums, present = column_kind(np.asarray(values, dtype=object))
        if nums is None:
            continue
        m = keep & present
        fc = np.unique(codes[m], return_inverse=True)[1].ravel()
        nf, n = int(fc.max()) + 1 if m.any() else 0, int(m.sum())
        k = min(GRADIENT_AXES, coords.shape[1], (n - nf) // 4)
        if nf < 2 or k < 1:
            alone = known & present  # every model its own family (independent seeds): each one is its centroid, so
            if not keep.any():  # the column is tested across the models (an outside audit, 91: a per-model `steps`)
                between = _between(coords[alone], nums[alone], codes[alone], name, n_perm, rng)
                out += [between] if between else []
            continue
        y = _centred(nums[m], fc, nf)
        if float(y @ y) <= 1e-12 * max(1.0, float(nums[m] @ nums[m])):  # constant within every family
            between = _between(coords[known & present], nums[known & present], codes[known & present], name, n_perm,
                               rng)
            out += [between] if between else []
            continue
        perms = np.stack([_within_permutation(fc, rng) for _ in range(n_perm)])  # [n_perm, n] indices
        r2, adj, p, _ = _r2_test(_centred(coords[m][:, :k], fc, nf), y, y[perms], n - nf)
        out.append({"column": str(name), "level": "models", "r2": r2, "r2_adj": adj, "p": p, "n_models": n,
                    "n_families": nf, "n_values": int(len(np.unique(nums[m])))})
    return sorted(out, key=lambda e: (e["p"], -e["r2_adj"], e["column"]))


MIN_GRADIENT_FAMILIES = 5  # a column set family by family is tested against the family centroids from this many


def _between(coords: np.ndarray, x: np.ndarray, codes: np.ndarray, name: str, n_perm: int,
             rng: np.random.Generator) -> dict[str, Any] | None:
    """A column constant within every family (``x [m]``, ``codes [m]`` its models' families), a setting
    given family by family, against the families' centroids of ``coords [m, d]``: the same least squares on
    the leading coordinates (at most a third of the families less two), the family values permuted across
    the families. ``level`` "families"; ``None`` below :data:`MIN_GRADIENT_FAMILIES` or when every family has
    the same value (an outside audit of the nineteenth session: a shortcut's share set per family was never
    tested, and every verdict said the fingerprints track what the init seed decides)."""
    fc = np.unique(codes, return_inverse=True)[1].ravel()
    nf = int(fc.max()) + 1 if len(fc) else 0
    k = min(GRADIENT_AXES, coords.shape[1], (nf - 2) // 3)
    if nf < MIN_GRADIENT_FAMILIES or k < 1:
        return None
    cent = _family_means(coords[:, :k], fc, nf)
    y = _snapped(_family_means(x, fc, nf))  # one value per family: a mean over unequal sizes differs in its last bits
    y = y - y.mean()
    if float(y @ y) <= 1e-12 * max(1.0, float(x @ x)):
        return None
    exact = _arrangements(y, n_perm)  # every distinct arrangement once, the observed among them: the exact p
    permuted = exact if exact is not None else y[np.argsort(rng.random((n_perm, nf)), axis=1)]
    r2, adj, p, null = _r2_test(cent - cent.mean(0), y, permuted, nf - 1, exact is not None)
    out = {"column": str(name), "level": "families", "r2": r2, "r2_adj": adj, "p": p, "n_models": int(len(x)),
           "n_families": nf, "exact": exact is not None}
    if exact is not None:  # the smallest p it can reach: the arrangements as good as the best (a value and its mirror
        out["floor"] = float(np.sum(null >= null.max() - 1e-12) / len(null))  # image reach one R^2: 2 of 70, 4 of 8)
    return out


def _snapped(y: np.ndarray) -> np.ndarray:
    """``y [nf]`` with values equal but for their last bits made equal (to the first of them)."""
    scale = float(np.abs(y).max()) or 1.0
    _, first, inverse = np.unique(np.round(y / scale, 9), return_index=True, return_inverse=True)
    return y[first][inverse.ravel()]


def _arrangements(y: np.ndarray, most: int) -> np.ndarray | None:
    """Every distinct arrangement ``[N, nf]`` of the family values ``y [nf]`` when there are at most ``most``
    of them (a column of two values over 8 families, 3 and 5: 56), else ``None``. An exact test has no
    Monte Carlo noise: an outside audit (76) saw a backdoor set in 3 of 8 families named as a lead or
    not by ``--seed`` and by the other columns, its p drawn at 0.01-0.025 around its floor of 1/56."""
    values, counts = np.unique(y, return_counts=True)
    total = math.factorial(len(y)) // math.prod(math.factorial(int(c)) for c in counts)
    if total > most:
        return None
    out: list[list[float]] = []

    def fill(prefix: list[float], left: list[int]) -> None:
        if len(prefix) == len(y):
            out.append(list(prefix))
            return
        for i, c in enumerate(left):
            if c:
                left[i] -= 1
                fill(prefix + [float(values[i])], left)
                left[i] += 1

    fill([], [int(c) for c in counts])
    return np.asarray(out)


def _r2_test(z: np.ndarray, y: np.ndarray, permuted: np.ndarray, dof: int, exact: bool = False
             ) -> tuple[float, float, float, np.ndarray]:
    """``(r2, r2_adj, p, null)``: the share of ``y [m]``'s sum of squares that least squares on the centred
    columns of ``z [m, k]`` explains, adjusted for ``k`` at ``dof`` degrees of freedom, its permutation p-value
    against ``permuted [n_perm, m]`` (``y`` permuted each time; ``exact``: every arrangement once, the
    observed one among them, so the p is their share that reach it), and the permuted ones' shares ``[n_perm]``."""
    q, _ = np.linalg.qr(z)
    r2 = float(np.sum((q.T @ y) ** 2) / (y @ y))
    null = np.sum((permuted @ q) ** 2, 1) / np.sum(permuted * permuted, 1)
    adj = 1.0 - (1.0 - r2) * (dof - 1) / max(dof - z.shape[1] - 1, 1)
    reach = int(np.sum(null >= r2 - 1e-12))
    return r2, float(adj), float(reach / len(permuted) if exact else (1 + reach) / (len(permuted) + 1)), null


def _family_means(x: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """The mean ``[n]`` or ``[n, k]`` of ``x [m]`` or ``[m, k]`` in each family (``codes [m]`` in ``range(n)``)."""
    counts = np.bincount(codes, minlength=n).astype(np.float64)
    sums = np.zeros((n,) + x.shape[1:])
    np.add.at(sums, codes, x)
    return sums / counts.reshape((n,) + (1,) * (x.ndim - 1))


def _centred(x: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """``x [m]`` or ``[m, k]`` minus its family's mean (``codes [m]`` in ``range(n)``)."""
    return x - _family_means(x, codes, n)[codes]


def _within_permutation(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices ``[m]`` that permute the models inside each family (``codes [m]``)."""
    order = np.lexsort((rng.random(len(codes)), codes))  # each family's models, shuffled, family by family
    out = np.empty(len(codes), dtype=np.int64)
    out[np.argsort(codes, kind="stable")] = order
    return out


def table_gradients(coords: np.ndarray, table: dict[str, np.ndarray], rows: np.ndarray, family: np.ndarray,
                    opts: AnalysisOptions, strata: set) -> list[dict[str, Any]] | None:
    """:func:`gradients` of ``table``'s columns (at ``rows``) but ids, the lineage, the label, ``diverged``,
    the design columns ``strata`` and :func:`generation_columns` taken out of the tests, on a sample of whole families above
    ``resampling.MAX_MODELS`` models. Imported models only (``kind`` "imported", or no ``kind``: a user's
    table): ``None`` for a sweep's own zoo, whose other columns are what training measured (losses,
    accuracies, the task's diagnostics), which follow any fingerprint's seed noise as well."""
    if "kind" in table and any(str(k) != "imported" for k in np.asarray(table["kind"], dtype=object)[rows]):
        return None
    skip = {*NOT_COMPARED, opts.lineage, opts.label, *strata, "diverged"}
    skip |= set(generation_columns(table, skip)) | set(strata_copies(table, skip, [s for s in strata if s in table]))
    cols = {c: np.asarray(table[c], dtype=object)[rows] for c in table if c not in skip}
    family = np.asarray(family, dtype=object)
    sample = rs.family_sample(family, rs.MAX_MODELS, opts.seed)
    if sample is not None:
        coords, family, cols = coords[sample], family[sample], {c: v[sample] for c, v in cols.items()}
    return gradients(np.asarray(coords), cols, family, opts.n_perm, opts.seed)


def parents_recorded(table: dict[str, np.ndarray]) -> bool:
    """Whether the models' parents are known: ``parent_id`` names one anywhere (the label-free tests then take a
    base beside its fine-tunes out as a generation), or no model was imported (a sweep records every parent, so
    its empty ``parent_id`` means no fine-tunes: a review). Else the answer may read one model of every family
    as the bases."""
    if not all(missing(p) for p in table.get("parent_id", [])):
        return True
    return training_recorded(table)


def training_recorded(table: dict[str, np.ndarray]) -> bool:
    """Whether the toolkit trained every model (a sweep's zoo: one config, the models differing only in the
    design columns it records), so that a training setting cannot differ between models unrecorded. An import
    (``kind`` "imported", or a user's table without ``kind``) records only what its metadata gives (an outside
    audit, 86: learning-rate, length and optimizer sweeps imported without metadata read as deep differences)."""
    return "kind" in table and not any(str(k) == "imported" for k in table["kind"])


def table_settings(table: dict[str, np.ndarray], opts: AnalysisOptions) -> dict[str, Any]:
    """The settings that say what the model table records: ``parents_recorded``, ``training_recorded``,
    ``columns_compared`` (:func:`parents_recorded`, :func:`training_recorded`, :func:`columns_compared`), and
    ``strata_as_lineage``: the ``--strata`` columns that are one value in every init family, which the tests take
    out already with the families (an outside audit, 89: ``--strata rule`` on a rule set family by family was said
    to make a difference that follows it read as lineage, beside a candidate that matched it)."""
    lineage = [str(v) for v in table.get(opts.lineage, [])]
    same = [c for c in opts.strata if c in table and c != opts.lineage and lineage and len(
        {(f, str(v)) for f, v in zip(lineage, table[c])}) == len(set(lineage))]
    return {"parents_recorded": parents_recorded(table), "training_recorded": training_recorded(table),
            "columns_compared": columns_compared(table, opts), "strata_as_lineage": same}


def columns_compared(table: dict[str, np.ndarray], opts: AnalysisOptions) -> bool:
    """Whether some model column that :func:`attach` compares varies between the models (not the ids, the lineage or
    the label): without one (an import without --metadata) "no column matches the camps" says nothing (audit 89)."""
    skip = {*NOT_COMPARED, opts.lineage, opts.label}
    return any(len({str(v) for v in col if not missing(v)}) > 1 for c, col in table.items() if c not in skip)


def strata_copies(table: dict[str, np.ndarray], skip: set, strata: list[str]) -> list[str]:
    """The columns of ``table`` (but ``skip``) whose values are a design column's of ``strata`` under other names, one to
    one (an ``order`` beside ``data_seed``): taken out with it, so not tested as a column that follows the fingerprint
    (outside audit 117: such a copy of ``data_seed`` on a null was said as perhaps "a setting varied model by model")."""
    # only a stratum whose levels repeat (fewer levels than models): one with a value per model is one to one with any
    # per-model column, which a setting drawn per model is (review 119: a per-model data_seed hid a per-model lr)
    repeating = [s for s in strata if len({str(v) for v in table[s]}) < len(table[s])]
    out = []
    for c in table:
        if c in skip or c in NOT_COMPARED or c in strata:
            continue
        for s in repeating:
            pairs = {(str(a), str(b)) for a, b in zip(table[s], table[c])}
            if len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}):
                out.append(c)
                break
    return out


def generation_columns(table: dict[str, np.ndarray], skip: set) -> list[str]:
    """The columns of ``table`` (but ``skip``) with two values or more that the generation in ``parent_id``'s
    chains decides (one value per generation: base against fine-tune), when the generation varies: relatives
    the label-free tests take out, so not tested as columns that follow the fingerprint (an outside audit,
    75: an import's ``final_step``, 200 for the bases and 100 for the fine-tunes, read as a difference the
    init seed does not decide). Said beside the answer, as they cannot be told from fine-tuning itself."""
    if "parent_id" not in table or "model_id" not in table:
        return []
    gen = [str(g) for g in mt.generation(table["model_id"], table["parent_id"])]
    if len(set(gen)) < 2:
        return []
    out = []
    for c in table:
        if c in skip or c in NOT_COMPARED:
            continue
        pairs = {(g, str(v)) for g, v in zip(gen, table[c])}
        if len({v for _, v in pairs}) >= 2 and len(pairs) == len({g for g, _ in pairs}):
            out.append(c)
    return out


def attach_strata_follow(results: list[FingerprintResult], table: dict[str, np.ndarray], opts: AnalysisOptions,
                         strata: list[str]) -> None:
    """Set ``strata_follow`` on every analysed result whose clusters are two basins or more: for each design
    column of ``strata`` (a data order the init families share, which the label-free tests count as lineage),
    ``{column, ami, p}`` (:func:`strata_follow`), on a sample of whole families above ``resampling.MAX_MODELS``
    models. A difference that such a column decides reads as lineage, not as a candidate; this says that the
    basins follow it (an outside audit of the twenty-first session: one strategy per data order, recorded as
    ``data_seed``, read "no structure" and nothing named the column)."""
    index = {str(m): i for i, m in enumerate(table["model_id"])}
    columns = {c: np.asarray(table[c], dtype=object) for c in strata}
    if "parent_id" in table and any(not missing(p) and str(p).strip() for p in table["parent_id"]):
        # the generation in a parent chain (a base model against its fine-tunes), taken out of the tests too: the
        # answer's cluster leads leave out clusters that follow it (an outside audit, 107: 4 parents against their
        # 24 fine-tunes, two fingerprints' own clusters at stability 1.00, cutting every family)
        columns[GENERATION] = mt.generation(table["model_id"], table["parent_id"]).astype(object)
    for r in results:
        if not r.analysed or r.error or r.lineage_values is None or len(set(r.clusters)) < 2 or not columns:
            continue
        rows = np.asarray([index[str(m)] for m in r.model_ids], int)
        clusters, family = np.asarray(r.clusters, int), np.asarray(r.lineage_values, dtype=object)
        sample = rs.family_sample(family, rs.MAX_MODELS, opts.seed)
        if sample is not None:
            rows, clusters, family = rows[sample], clusters[sample], family[sample]
        out = [{"column": c, **e} for c, v in columns.items()
               if (e := strata_follow(clusters, v[rows], family, opts.n_perm, opts.seed))]
        r.strata_follow = out or None


def strata_follow(clusters: np.ndarray, column: np.ndarray, family: np.ndarray, n_perm: int = 199,
                  seed: int = 0) -> dict[str, Any] | None:
    """How far a fingerprint's ``clusters [m]`` follow a design ``column [m]`` crossed with the init
    ``family [m]``: ``{ami, p, exact}``, the AMI of the two and its p-value under ``n_perm`` permutations of the
    column among each family's own models (which member had which data order; the families, and so the
    init seed's share of the clusters, kept), counting the observed one. ``None`` when the column or the
    clusters have one value, or no family has two values of the column to permute. ``exact``: the clusters are the
    column's values, one to one (:func:`one_to_one`)."""
    col, cl_codes, fam = mt.label_codes(column), mt.label_codes(clusters), rs.family_codes(family)[0]
    n_col, n_cl = int(col.max()) + 1, int(cl_codes.max()) + 1
    if n_col < 2 or n_cl < 2 or not any(len(set(col[fam == f])) > 1 for f in np.unique(fam)):
        return None
    rng = np.random.default_rng(seed)
    perms = np.stack([np.arange(len(col)), *(_within_permutation(fam, rng) for _ in range(n_perm))])
    cells = (np.arange(len(perms))[:, None] * n_col + col[perms]) * n_cl + cl_codes[None, :]
    tables = np.bincount(cells.ravel(), minlength=len(perms) * n_col * n_cl).reshape(len(perms), n_col, n_cl)
    amis = mt.ami_codes_tables(tables)
    return {"ami": float(amis[0]), "p": float((1 + np.sum(amis[1:] >= amis[0] - 1e-12)) / (n_perm + 1)),
            "exact": one_to_one(tables[0])}


def one_to_one(table: np.ndarray, purity: float = 0.8) -> bool:
    """Whether a ``[values, clusters]`` count table pairs each value with a cluster of its own: every value with at
    least ``purity`` of its models in one cluster, no two values in the same one, and every cluster holding models
    at least ``purity`` of one value (review 116: an AMI of 0.9 or more read one order split in half, or two merged,
    as the orders themselves, and 2 models misplaced of 32 as not)."""
    t = np.asarray(table)[:, np.asarray(table).sum(0) > 0]
    if t.shape[0] != t.shape[1] or not t.size:
        return False
    best = t.argmax(1)
    return len(set(best.tolist())) == len(best) and bool((t.max(1) >= purity * t.sum(1)).all()) \
        and bool((t.max(0) >= purity * t.sum(0)).all())
