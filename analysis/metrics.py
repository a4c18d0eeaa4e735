"""Scores that compare a clustering (or a fingerprint) with per-model ground truth and lineage.

``deep``: adjusted mutual information (AMI) between clusters and a label such as ``deep_label``,
and the cross-validated AUROC of a linear probe on the fingerprint. ``noise``: AMI between
clusters and lineage families *inside each true basin*, averaged over basins weighted by size, so
that a fingerprint is not credited with "tracking lineage" merely because families land in
different basins. ``lineage_nn``: how often a model's nearest neighbour (in fingerprint space,
inside its true basin) is a relative -- an identification score that needs no clustering.

Longer than ~400 lines: the AMI, probe and 1-NN scores share their coding helpers and each has its
vectorized form for the resampling of :mod:`analysis.calibration` beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.metrics import pairwise_distances_chunked
from sklearn.metrics.cluster import contingency_matrix

from analysis import agreement as ag
from analysis.parents import (  # noqa: F401 - re-exported: the parent-chain helpers were defined here
    generation,
    inherit_lineage,
    lineage_groups,
    parent_problem,
    root_family,
)
from analysis.sortkeys import natural_key

MIN_BASIN = 4  # a true basin needs this many models for a within-basin score
NN_QUERIES = 5000  # lineage 1-NN: above this many qualifying models, a fixed random sample of them is scored


def label_codes(values) -> np.ndarray:
    """Integer codes ``[n]`` of any labelling ``[n]``, in the sorted order of its values read as
    strings (so mixed types and ``None`` code consistently)."""
    arr = np.asarray([str(v) for v in values], dtype=object)
    _, inv = np.unique(arr, return_inverse=True)
    return inv


def ami(a, b) -> float | None:
    """AMI of two labellings of the same models; ``None`` when either has a single value."""
    return ami_codes(label_codes(a), label_codes(b))


def ami_codes(a: np.ndarray, b: np.ndarray) -> float | None:
    """:func:`ami` of two labellings given as integer codes in the order of their values as strings
    (:func:`label_codes`, or a subset of such codes: a family bootstrap codes once and resamples the codes)."""
    if len(a) < 2 or len(np.unique(a)) < 2 or len(np.unique(b)) < 2:
        return None if len(np.unique(b)) < 2 else 0.0
    return ag.ami(b, a)


def ami_codes_tables(tables: np.ndarray) -> np.ndarray:
    """:func:`ami_codes` of each sample's codes, given as contingency tables ``[B, labels, clusters]``
    (the second argument's values as rows): ``[B]``, NaN where :func:`ami_codes` gives ``None``."""
    tables = np.asarray(tables)
    rows, cols = (tables.sum(2) > 0).sum(1), (tables.sum(1) > 0).sum(1)
    n = tables.sum((1, 2))
    out = np.where(rows < 2, np.nan, 0.0)
    go = np.flatnonzero((rows >= 2) & (cols >= 2) & (n >= 2))
    if go.size:
        out[go] = ag.ami_tables(tables[go])
    return out


def ami_codes_by_family_counts(clusters: np.ndarray, labels: np.ndarray, family: np.ndarray,
                               n_families: int) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`ami_codes` of fixed ``clusters [n]`` with ``labels [n]`` (integer codes, as
    :func:`label_codes`) on samples of whole families, as a function of ``counts [B, n_families]``
    (how often each sample draws each family; ``family [n]``: each model's family code) returning
    ``[B]``, NaN where undefined. One contingency table per family, summed by a matrix product:
    a family bootstrap of the AMI without a loop over samples."""
    kc, kl = int(clusters.max(initial=-1)) + 1, int(labels.max(initial=-1)) + 1
    cells = kl * kc
    fam_tab = np.bincount(family * cells + labels * kc + clusters, minlength=n_families * cells).reshape(n_families, cells)
    return lambda counts: ami_codes_tables((np.asarray(counts) @ fam_tab).reshape(-1, kl, kc))


def within_basin_ami(clusters, family, basins=None, min_basin: int = MIN_BASIN) -> tuple[float | None, dict[str, float]]:
    """Size-weighted mean over true basins of AMI(clusters, family) restricted to each basin.

    A basin counts when it has ``min_basin`` models and at least one family with two members in it
    (otherwise no clustering could reveal lineage there). ``basins=None`` treats the population as one
    basin (no ground truth). Returns ``(mean or None, {basin: ami})``.
    """
    clusters = np.asarray([str(c) for c in clusters], dtype=object)
    family = np.asarray([str(f) for f in family], dtype=object)
    basins = np.zeros(len(clusters), dtype=object) if basins is None else np.asarray([str(b) for b in basins], dtype=object)
    per: dict[str, float] = {}
    weights: dict[str, int] = {}
    for b in sorted(set(basins.tolist())):
        m = basins == b
        if m.sum() < min_basin:
            continue
        fam = family[m]
        _, counts = np.unique(fam, return_counts=True)
        if counts.max() < 2 or len(counts) < 2:
            continue
        if len(np.unique(clusters[m])) < 2:
            per[b] = 0.0
        else:
            per[b] = ag.ami(fam, clusters[m])
        weights[b] = int(m.sum())
    if not per:
        return None, {}
    total = sum(weights.values())
    return float(sum(per[b] * weights[b] for b in per) / total), per


def within_basin_ami_tables(tables: list[np.ndarray], min_basin: int = MIN_BASIN) -> np.ndarray:
    """:func:`within_basin_ami`'s mean of many samples at once: ``tables`` holds, per true basin (in
    sorted order), the contingency tables ``[B, families, clusters]`` of each sample's models in
    that basin (families and clusters as rows and columns in the order of their values as strings;
    empty ones allowed). ``[B]``, NaN where :func:`within_basin_ami` gives ``None``."""
    bsz = len(tables[0]) if tables else 0
    acc, total, seen = np.zeros(bsz), np.zeros(bsz, np.int64), np.zeros(bsz, bool)
    for t in tables:
        t = np.asarray(t)
        size, fams = t.sum((1, 2)), t.sum(2)
        counted = (size >= min_basin) & (fams.max(1) >= 2) & ((fams > 0).sum(1) >= 2)
        split = counted & ((t.sum(1) > 0).sum(1) >= 2)  # one cluster in the basin: AMI 0
        per = np.zeros(bsz)
        if split.any():
            per[split] = ag.ami_tables(t[split])
        acc = acc + np.where(counted, per * size, 0.0)  # in basin order, as the sum over basins
        total += np.where(counted, size, 0)
        seen |= counted
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen, acc / np.maximum(total, 1), np.nan)


def pairwise_distances(coords: np.ndarray) -> np.ndarray:
    sq = (coords**2).sum(1)
    return np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * coords @ coords.T, 0, None))


def lineage_nn(dist: np.ndarray | None, family, basins=None, coords: np.ndarray | None = None,
               max_queries: int = NN_QUERIES, random_state: int = 0, return_hits: bool = False):
    """Nearest-neighbour lineage identification inside true basins, and its chance level.

    For every model whose family has another member in its basin: is its nearest neighbour among
    the basin's models a relative? Chance: the expected rate for a random neighbour. Returns
    ``(rate, chance)`` or ``(None, None)`` when no model has a relative in its basin.

    Distances are ``dist`` ``[n, n]``, or with ``dist=None`` Euclidean on ``coords`` ``[n, c]``
    (computed in row blocks: nothing ``n x n``). Ties go to the lower index. When more than
    ``max_queries`` models qualify, the rates average over a fixed random sample of that many of
    them; each one's neighbour is still searched among all models of its basin. With
    ``return_hits`` a third value ``[n]``: 1 where a queried model's neighbour is a relative, 0
    where not, NaN for models not queried (the family-bootstrap interval resamples these).
    """
    family = np.asarray([str(f) for f in family], dtype=object)
    n = len(family)
    basins = np.zeros(n, dtype=object) if basins is None else np.asarray([str(b) for b in basins], dtype=object)
    if dist is None and coords is None:
        raise ValueError("lineage_nn needs distances or coordinates")
    groups = []  # (basin members, positions of the queries among them, their relatives counts)
    for b in sorted(set(basins.tolist())):
        idx = np.flatnonzero(basins == b)
        if len(idx) < 3:
            continue
        _, codes, counts = np.unique(family[idx], return_inverse=True, return_counts=True)
        rel = counts[codes] - 1
        pos = np.flatnonzero(rel > 0)
        if len(pos):
            groups.append((idx, pos, rel[pos]))
    total = sum(len(p) for _, p, _ in groups)
    if not total:
        return (None, None, np.full(n, np.nan)) if return_hits else (None, None)
    if total > max_queries:  # one uniform sample over all qualifying models, then back to their basins
        chosen = np.zeros(total, bool)
        chosen[np.random.default_rng(random_state).choice(total, max_queries, replace=False)] = True
        parts, start = [], 0
        for idx, pos, rel in groups:
            keep = chosen[start : start + len(pos)]
            start += len(pos)
            if keep.any():
                parts.append((idx, pos[keep], rel[keep]))
        groups = parts
    hits, chance, queried = [], [], []
    for idx, pos, rel in groups:
        queried.append(idx[pos])
        fam = family[idx]
        if dist is not None:  # the given distances, read in row blocks
            step = max(1, (1 << 22) // len(idx))
            for s in range(0, len(pos), step):
                p = pos[s : s + step]
                d = np.array(dist[np.ix_(idx[p], idx)], dtype=np.float64)
                d[np.arange(len(p)), p] = np.inf
                hits.append(fam[d.argmin(1)] == fam[p])
        else:  # Euclidean in row blocks (nothing n x n); a model is not its own neighbour
            x = np.asarray(coords[idx], dtype=np.float64)

            def nearest(d: np.ndarray, start: int, pos=pos) -> np.ndarray:
                d[np.arange(len(d)), pos[start : start + len(d)]] = np.inf
                return d.argmin(1)

            near = np.concatenate(list(pairwise_distances_chunked(x[pos], x, reduce_func=nearest, working_memory=32)))
            hits.append(fam[near] == fam[pos])
        chance.append(rel / (len(idx) - 1))
    hit = np.concatenate(hits)
    rate, chance_rate = float(hit.mean()), float(np.concatenate(chance).mean())
    if not return_hits:
        return rate, chance_rate
    per_model = np.full(n, np.nan)
    per_model[np.concatenate(queried)] = hit
    return rate, chance_rate, per_model


PROBE_MIN_CLASS = 5  # models of each class the probe needs (probe_auroc; probe_skipped says so when one has fewer)


def probe_skipped(labels, groups=None, min_class: int = PROBE_MIN_CLASS) -> str:
    """Why :func:`probe_auroc` gave no AUROC for ``labels [n]`` (folds by ``groups [n]``), in words."""
    _, counts = np.unique(label_codes(labels), return_counts=True)
    if len(counts) < 2:
        return "no probe AUROC: the label has one class"
    if counts.min() < max(2, min_class):
        return (f"no probe AUROC: the label's smallest class has {counts.min()} models, and the probe needs "
                f"{max(2, min_class)} in each (with fewer, cross-validated AUROCs of noise reach 0.85 too often)")
    if groups is not None and len(np.unique(label_codes(groups))) < 2:
        return "no probe AUROC: fewer than two init families to hold out"
    lone = one_family_class(labels, groups)
    if lone is not None:
        value, family = lone
        return (f"no probe AUROC: the label's class '{value}' is in one init family only ('{family}'), so the fold "
                "that holds that family out would train the probe without it")
    if groups is not None:
        return ("no probe AUROC: the init families cannot be split into two or more folds that each hold a model out "
                "and train on every class")
    return "no probe AUROC"


def grouped_splits(y: np.ndarray, groups: np.ndarray, folds: int, random_state: int = 0) -> list | None:
    """Family-grouped stratified folds of class codes ``y [n]`` (``StratifiedGroupKFold``, shuffled) as a list
    of ``(train, test)`` index arrays, each test set non-empty and each training set holding every class;
    with fewer folds when ``folds`` cannot give that (one fold can hold two families and leave another
    empty, and a class of few families can then be missing from a training set), ``None`` when even two
    cannot. Measured by a review: 49 of 6,113 small designs (4-6 families) crashed the probe without this."""
    from sklearn.model_selection import StratifiedGroupKFold

    classes = set(np.unique(y).tolist())
    for k in range(int(folds), 1, -1):
        splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y, groups))
        if all(len(test) and set(np.unique(y[train]).tolist()) == classes for train, test in splits):
            return splits
    return None


def one_family_class(labels, groups) -> tuple[str, str] | None:
    """``(class, family)`` for the first class of ``labels [n]`` whose models are all in one family of
    ``groups [n]`` (the probe's folds keep a family together, so one fold would train without that class),
    else ``None``."""
    if groups is None:
        return None
    lab, fam = np.asarray([str(v) for v in labels]), np.asarray([str(v) for v in groups])
    for value in sorted(set(lab)):
        families = set(fam[lab == value])
        if len(families) == 1:
            return value, families.pop()
    return None


def probe_auroc(coords: np.ndarray, labels, n_splits: int = 5, random_state: int = 0, min_class: int = PROBE_MIN_CLASS,
                groups=None, return_oof: bool = False, scale: str = "columns"):
    """Cross-validated AUROC of a logistic-regression probe ``coords [n, c] -> labels``.

    Binary labels: plain AUROC of the held-out probabilities; more classes: macro one-vs-rest.
    ``scale="columns"``: each column standardised inside each fold (raw features of different
    units). ``scale="common"``: principal coordinates keep their relative variances, all divided by
    one number (the root of their mean variance, from all models: no label enters it), so the
    L2-penalised probe favours the directions that vary most; standardising them instead gives a
    difference held by PC1 the weight of each noise component, which at 12 models and 10 components
    took a 64-SD separation to AUROC 0.64 (docs/scorecard.md, "The probe at few families"). With ``groups`` (each model's init family), folds keep a
    family together (``StratifiedGroupKFold``): a parent and its near-copy child in different folds
    would let the probe recognise relatives instead of the label. ``None`` when a class has fewer
    than ``min_class`` models: with two or three models in a class, 2-fold AUROCs of pure noise reach
    0.85 a few percent of the time, enough to fake a "deep" verdict. With ``return_oof`` the result
    is ``(auroc, codes [n], out-of-fold probabilities [n, n_classes], number of folds)`` (for intervals), or ``None``.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = label_codes(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < max(2, min_class):
        return None
    folds = int(min(n_splits, counts.min()))
    cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    if groups is not None:  # None too when a class is in one family: its fold would train without it
        g = label_codes(groups)
        cv = grouped_splits(y, g, min(folds, len(np.unique(g))), random_state)
        if cv is None:
            return None
    x = np.asarray(coords, dtype=np.float64)
    if scale not in ("columns", "common"):
        raise ValueError(f"unknown probe scale '{scale}' (valid: columns, common)")
    if scale == "common":
        x = x / (np.sqrt(x.var(0).mean()) or 1.0)
    probe = linear_probe(standardize=scale == "columns")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = cross_val_predict(probe, x, y, cv=cv, method="predict_proba")
    score = auroc_of(y, p)
    if score is None:
        return None
    return (score, y, p, len(cv) if isinstance(cv, list) else cv.get_n_splits()) if return_oof else score


def linear_probe(standardize: bool = True):
    """The linear probe: standardisation (fit on the training fold only; ``standardize=False``: only
    centring, for coordinates scaled already) then L2 logistic regression (C = 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(with_std=standardize), LogisticRegression(C=1.0, max_iter=2000))


def auroc_of(y: np.ndarray, p: np.ndarray) -> float | None:
    """AUROC of class codes ``y [n]`` against probabilities ``p [n, n_classes]`` (macro one-vs-rest
    for more than two classes); ``None`` when a class is missing from ``y``."""
    k = p.shape[1]
    if len(np.unique(y)) < k or k < 2:
        return None
    return ag.auroc(np.asarray(y), p)  # scikit-learn's roc_auc_score (binary, or macro one-vs-rest), in numpy


def auroc_of_weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`auroc_of` of each sample holding model ``i`` ``w[s, i]`` times (``w [B, n]``): ``[B]``,
    NaN where :func:`auroc_of` gives ``None`` (a class missing from the sample)."""
    if p.shape[1] < 2:
        return np.full(len(w), np.nan)
    return ag.auroc_weighted(np.asarray(y), p, w)


def confusion(clusters, labels) -> dict:
    """Counts ``[n_clusters, n_labels]`` with the row and column names (both in :func:`natural_key` order)."""
    cl = [str(c) for c in clusters]
    lb = [str(v) for v in labels]
    rows = sorted(set(cl), key=natural_key)
    cols = sorted(set(lb), key=natural_key)
    counts = contingency_matrix(cl, lb)  # rows and columns in sorted-string order
    ri, ci = np.argsort(np.argsort(rows)), np.argsort(np.argsort(cols))  # natural position -> sorted position
    return {"clusters": rows, "labels": cols, "counts": counts[np.ix_(ri, ci)].astype(int).tolist()}


MAX_PAIRS = 190  # replicate pairs an interval of the stability compares (all of them at the default 20 replicates)


def replicate_agreement(reps: list[tuple[np.ndarray, np.ndarray]], n: int, max_pairs: int = MAX_PAIRS,
                        random_state: int = 0) -> "ReplicateAgreement":
    """The bootstrap stability as a function of which models it is measured on: ``stat(rows, draw)``
    is the mean ARI between pairs of the fixed replicate clusterings ``reps`` (``(model indices,
    labels)`` each), counting every model as often as it occurs in ``rows`` (so a family drawn twice
    counts twice, as in :func:`analysis.resampling.family_bootstrap`). With ``rows`` every model
    once, it is the stability of :func:`analysis.clustering.bootstrap`. Pairs sharing fewer than two
    models are skipped; beyond ``max_pairs`` pairs a fixed random sample of them is used.
    ``stat.of_weights(w [B, n])`` gives it for many samples at once (``w``: each model's count).

    One weighted contingency table per pair: ``n_pairs x n`` work per sample instead of reclustering."""
    pairs = [(i, j) for i in range(len(reps)) for j in range(i + 1, len(reps))]
    if len(pairs) > max_pairs:
        pick = np.random.default_rng(random_state).choice(len(pairs), max_pairs, replace=False)
        pairs = [pairs[p] for p in np.sort(pick)]
    full = np.full((len(reps), n), -1, dtype=np.int64)  # each replicate's labels, -1 where it lacks the model
    for b, (idx, lab) in enumerate(reps):
        full[b, idx] = np.unique(lab, return_inverse=True)[1]  # hdbscan's -1 (noise) is a label like any other
    kmax = int(full.max()) + 1
    size = kmax * kmax + 1  # one weighted contingency table per pair, and a last cell for models one lacks
    codes = np.empty((len(pairs), n), dtype=np.int64)
    for p, (i, j) in enumerate(pairs):
        both = (full[i] >= 0) & (full[j] >= 0)
        codes[p] = p * size + np.where(both, full[i] * kmax + full[j], size - 1)
    return ReplicateAgreement(n, len(pairs), kmax, codes)


class ReplicateAgreement:
    """:func:`replicate_agreement`'s statistic: ``codes [n_pairs, n]`` are each model's cell in each
    pair's contingency table (``p * size + cell``; the last cell of a pair for models one lacks)."""

    CHUNK = 1 << 20  # table cells (samples x pairs x cells) built at once by :meth:`of_weights` (8 MB)

    def __init__(self, n: int, n_pairs: int, kmax: int, codes: np.ndarray):
        self.n, self.n_pairs, self.kmax, self.size = n, n_pairs, kmax, kmax * kmax + 1
        self.codes = codes

    def __call__(self, rows: np.ndarray, _draw: np.ndarray | None = None) -> float | None:
        v = self.of_weights(np.bincount(rows, minlength=self.n)[None])[0]
        return None if np.isnan(v) else float(v)

    def of_weights(self, w: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """The statistic of each sample ``[B]`` that holds model ``i`` ``w[s, i]`` times (``w [B, n]``;
        with ``cols``, ``w [B, len(cols)]`` are the counts of models ``cols``, the others absent),
        NaN where no pair shares two models."""
        w = np.asarray(w, dtype=np.float64)
        out = np.full(len(w), np.nan)
        if not self.n_pairs:
            return out
        cells = self.n_pairs * self.size
        # model i adds its weight to its cell of every pair: w @ one-hot [n, pairs x cells] (integer sums, exact)
        codes = self.codes if cols is None else self.codes[:, np.asarray(cols)]
        m = codes.shape[1]
        onehot = csr_matrix((np.ones(codes.size), (np.tile(np.arange(m), self.n_pairs), codes.ravel())), shape=(m, cells))
        step = max(1, self.CHUNK // cells)
        for s in range(0, len(w), step):
            tab = np.asarray(onehot.T @ w[s : s + step].T).T  # [b, pairs x cells]
            out[s : s + step] = self._mean_ari(tab.reshape(len(tab), self.n_pairs, self.size))
        return out

    def _mean_ari(self, tab: np.ndarray) -> np.ndarray:
        """Mean ARI over the pairs with two or more shared models, from the weighted tables ``[b, pairs, cells]``."""
        c2 = lambda x: x * (x - 1) / 2  # noqa: E731 - pairs among x (weighted) models
        k = self.kmax
        t = tab[:, :, :-1].reshape(len(tab), self.n_pairs, k, k)
        tot = t.sum((2, 3))
        index, a, b = c2(t).sum((2, 3)), c2(t.sum(3)).sum(2), c2(t.sum(2)).sum(2)
        ok = tot >= 2
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = a * b / c2(tot)
            denom = (a + b) / 2 - expected
            ari = np.where(denom == 0, 1.0, (index - expected) / np.where(denom == 0, 1.0, denom))
        # each sample's mean over its own valid pairs (np.mean's pairwise sum, as one sample alone)
        return np.array([r[o].mean() if o.any() else np.nan for r, o in zip(ari, ok)])
