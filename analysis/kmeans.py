"""k-means and the silhouette for small populations, in numpy: scikit-learn's algorithms, without its
per-call cost.

Choosing k by silhouette fits k-means for every k, with several inits, on the population and on
each bootstrap replicate: 1,470 fits of a hundred models for a 10-fingerprint report, where
scikit-learn's per-call validation and k-means++ bookkeeping cost more than the arithmetic
(docs/benchmarks.md, "The report's speed"). :func:`kmeans_labels` is ``KMeans(k, n_init=...,
random_state=...).fit_predict(X)`` step for step: the same centring, tolerance, k-means++ seeding
from the same random draws, Lloyd iterations with the same convergence tests and empty-cluster
relocation, and the same choice among inits; the inits' Lloyd iterations run side by side, and
:func:`kmeans_labels_each` runs those of every k a silhouette choice tries in one batch.
:func:`silhouette_precomputed` is ``silhouette_score(D, labels, metric="precomputed")``. Results
equal scikit-learn's (``tests/analysis/test_kmeans.py``) except where a floating-point tie falls the
other way (the products go through numpy's BLAS rather than scipy's).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["kmeans_labels", "kmeans_labels_each", "silhouette_precomputed"]


def kmeans_labels(X: np.ndarray, k: int, n_init: int = 5, random_state: int = 0, max_iter: int = 300,
                  tol: float = 1e-4) -> np.ndarray:
    """Labels ``[n]`` (int32) of ``sklearn.cluster.KMeans(k, n_init=n_init, random_state=random_state,
    max_iter=max_iter, tol=tol).fit_predict(X)`` (Lloyd, k-means++), for dense ``X [n, d]``.

    Examples
    --------
    >>> x = np.r_[np.zeros((10, 2)), np.ones((10, 2)) * 5] + np.random.default_rng(0).normal(size=(20, 2)) * 0.1
    >>> lab = kmeans_labels(x, 2)
    >>> bool(len(set(lab[:10])) == len(set(lab[10:])) == 1 and lab[0] != lab[10])
    True
    """
    return kmeans_labels_each(X, [k], n_init, random_state, max_iter, tol)[k]


def kmeans_labels_each(X: np.ndarray, ks, n_init: int = 5, random_state: int = 0, max_iter: int = 300,
                       tol: float = 1e-4) -> dict[int, np.ndarray]:
    """``{k: kmeans_labels(X, k, n_init, random_state, max_iter, tol)}`` for every ``k`` in ``ks``:
    the same labels, with the inits of every k seeded and iterated side by side (choosing k by
    silhouette fits every k on the same models: one batch instead of one per k).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(30, 3))
    >>> each = kmeans_labels_each(x, [2, 3, 4])
    >>> all(np.array_equal(each[k], kmeans_labels(x, k)) for k in (2, 3, 4))
    True
    """
    X = np.array(X, dtype=np.float64, order="C")  # a copy: centred in place below
    n, d = X.shape
    ks = sorted({int(k) for k in ks})
    for k in ks:
        if not 1 <= k <= n:
            raise ValueError(f"k = {k} clusters for {n} models (valid: 1..{n})")
    if not ks:
        return {}
    tol = float(np.mean(np.var(X, axis=0)) * tol) if tol else 0.0  # on the data before centring, as scikit-learn
    X -= X.mean(axis=0)
    x_sq = np.einsum("ij,ij->i", X, X)
    each_k = np.repeat(ks, n_init)  # the k of each init: n_init consecutive inits per k
    init = np.zeros((len(each_k), ks[-1], d))
    # k-means++ draws a number of candidates per centre that grows with log(k): the ks drawing as many
    # are seeded together (each init's products then have the shapes they have for one k alone)
    each_t = np.repeat([_trials(k) for k in ks], n_init)
    for t in np.unique(each_t):
        rows = np.flatnonzero(each_t == t)
        init[rows, : each_k[rows].max()] = _plusplus(X, each_k[rows], x_sq, n_init, random_state)
    labels, inertia = _lloyd(X, init, each_k, max_iter, tol)
    out = {}
    for i, k in enumerate(ks):
        lab, ine = labels[i * n_init : (i + 1) * n_init], inertia[i * n_init : (i + 1) * n_init]
        best = 0
        for j in range(1, n_init):  # a later init replaces the best only when better and a different partition
            if ine[j] < ine[best] and not _same_partition(lab[j], lab[best], k):
                best = j
        out[k] = lab[best]
    return out


def _trials(k: int) -> int:
    """Candidates k-means++ draws for each centre after the first (scikit-learn's ``2 + log(k)``)."""
    return 2 + int(np.log(k))


def _plusplus(X: np.ndarray, ks: np.ndarray, x_sq: np.ndarray, n_init: int, random_state: int) -> np.ndarray:
    """Greedy k-means++ seeding (scikit-learn's ``_kmeans_plusplus`` with unit weights) of inits side
    by side: ``ks [B]`` is each init's k (``n_init`` consecutive inits per k, every k drawing the same
    number of candidates); centres ``[B, max(ks), d]``, zeros past an init's k. scikit-learn seeds a
    k's inits one after the other from one generator (``random_state``); each takes one draw for its
    first centre and ``trials`` for each further one, so the draws are taken up front and dealt out in
    that order."""
    n, d = X.shape
    B, K = len(ks), int(ks.max())
    trials = _trials(int(ks[0]))
    w = np.ones(n)
    draws = np.zeros((B, 1 + (K - 1) * trials))
    # every k draws from a fresh generator seeded alike: its draws are the start of one stream
    stream = _generator(random_state).random_sample(n_init * draws.shape[1])
    for s in range(0, B, n_init):
        m = 1 + (int(ks[s]) - 1) * trials
        draws[s : s + n_init, :m] = stream[: n_init * m].reshape(n_init, m)
    cdf = np.cumsum(w / w.sum())
    cdf /= cdf[-1]
    chosen = np.zeros((B, K), int)
    chosen[:, 0] = cdf.searchsorted(draws[:, 0], side="right")  # RandomState.choice(n, p=...)
    closest = _sq_dist(X[chosen[:, 0]], X, x_sq)  # [B, n]
    pot = closest @ w  # [B]
    for c in range(1, K):
        on = np.flatnonzero(ks > c)  # the inits that still need a c-th centre
        A = len(on)
        rand = draws[on, 1 + (c - 1) * trials : 1 + c * trials] * pot[on, None]  # [A, trials]
        cum = np.cumsum(w * closest[on], axis=1)
        cand = (cum[:, None, :] < rand[:, :, None]).sum(2)  # np.searchsorted(cum, rand), row by row
        np.clip(cand, None, n - 1, out=cand)
        dist = _sq_dist(X[cand.ravel()], X, x_sq).reshape(A, trials, n)
        np.minimum(closest[on, None, :], dist, out=dist)
        pots = (dist @ w.reshape(-1, 1))[:, :, 0]  # [A, trials]
        b = pots.argmin(1)
        rows = np.arange(A)
        pot[on], closest[on] = pots[rows, b], dist[rows, b]
        chosen[on, c] = cand[rows, b]
    centers = X[chosen]
    centers[np.arange(K)[None, :] >= ks[:, None]] = 0.0
    return centers


_GENERATORS = threading.local()


def _generator(random_state: int) -> np.random.RandomState:
    """``np.random.RandomState(random_state)``: one per thread, seeded again (a new ``RandomState``
    gathers entropy before it is seeded: ~0.5 ms here, more than a fit of a hundred models)."""
    rs = getattr(_GENERATORS, "rs", None)
    if rs is None:
        rs = _GENERATORS.rs = np.random.RandomState(random_state)
    else:
        rs.seed(random_state)
    return rs


def _sq_dist(A: np.ndarray, X: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """Squared distances ``[m, n]`` as scikit-learn's ``_euclidean_distances`` forms them (clipped at 0)."""
    d = -2 * (A @ X.T)
    d += np.einsum("ij,ij->i", A, A)[:, None]
    d += x_sq[None, :]
    np.maximum(d, 0, out=d)
    return d


def _row_sq(diff: np.ndarray) -> np.ndarray:
    """``sum(diff**2)`` over the last axis in scikit-learn's order (``_euclidean_dense_dense``: blocks of
    four features, each block summed left to right, then added in turn)."""
    sq = diff * diff
    d = sq.shape[-1]
    out = np.zeros(sq.shape[:-1])
    for s in range(0, d - d % 4, 4):
        out += ((sq[..., s] + sq[..., s + 1]) + sq[..., s + 2]) + sq[..., s + 3]
    for s in range(d - d % 4, d):
        out += sq[..., s]
    return out


def _lloyd(X: np.ndarray, centers: np.ndarray, ks: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations from ``centers [B, K, d]`` (B inits at once, each stopping on its own; init
    ``b`` has ``ks[b] <= K`` clusters, its centres past that ignored): labels ``[B, n]`` (int32) and
    inertias ``[B]``."""
    B, K, d = centers.shape
    n = len(X)
    ks = np.asarray(ks)
    centers = centers.copy()
    labels = np.full((B, n), -1, np.int32)
    # the centres past an init's k are never nearest, never empty, never moved
    past = np.arange(K)[None, :] >= ks[:, None]  # [B, K]
    barrier = np.where(past, np.inf, 0.0) if past.any() else None
    active = np.arange(B)
    strict = np.zeros(B, bool)
    x_rep = np.tile(X.ravel(), B)  # the models' features once per init, for the per-cluster sums
    offset = np.arange(B)[:, None, None] * (K * d) + np.arange(d)
    for _ in range(max_iter):
        A = len(active)
        c_old = centers[active]
        new = _assign(X, c_old, None if barrier is None else barrier[active])  # [A, n]
        counts = np.bincount((np.arange(A)[:, None] * K + new).ravel(), minlength=A * K).reshape(A, K).astype(np.float64)
        # per-cluster sums, each added up in model order (as scikit-learn's loop adds them)
        sums = np.bincount((offset[:A] + new[:, :, None] * d).ravel(), weights=x_rep[: A * n * d],
                           minlength=A * K * d).reshape(A, K, d)
        full = (counts > 0) | past[active]
        for a in np.flatnonzero(~full.all(1)):
            k = ks[active[a]]
            _relocate(X, c_old[a, :k], sums[a, :k], counts[a, :k], new[a])
        full = (counts > 0) | past[active]
        c_new = sums * (1.0 / np.maximum(counts, 1.0))[:, :, None]
        for a in np.flatnonzero(~full.all(1)):  # still empty (duplicate models): scikit-learn's _average_centers
            big = int(np.argmax(counts[a, : ks[active[a]]]))
            for j in np.flatnonzero(~full[a]):  # the largest cluster's centre is averaged already only if before j
                c_new[a, j] = c_new[a, big] if big < j else sums[a, big]
        same = (new == labels[active]).all(1)
        done = same.copy()
        if not same.all():
            moved = np.flatnonzero(~same)
            shift = np.sqrt(_row_sq(c_new[moved] - c_old[moved]))  # [., K]
            mk = ks[active[moved]]
            for k in np.unique(mk):  # summed over each init's own k centres, as for that k alone
                sel = np.flatnonzero(mk == k)
                done[moved[sel]] = (shift[sel, :k] ** 2).sum(1) <= tol
        centers[active] = c_new
        labels[active] = new
        strict[active[same]] = True
        active = active[~done]
        if not len(active):
            break
    # inits that stopped on the tolerance (or ran out of iterations): labels from their final centres
    loose = np.flatnonzero(~strict)
    if len(loose):
        labels[loose] = _assign(X, centers[loose], None if barrier is None else barrier[loose])
    inertia = np.cumsum(_row_sq(X[None] - np.take_along_axis(centers, labels[:, :, None].astype(np.intp), 1)), axis=1)[:, -1]
    return labels, inertia


def _assign(X: np.ndarray, centers: np.ndarray, barrier: np.ndarray | None = None) -> np.ndarray:
    """Nearest centre ``[B, n]`` (first on ties) by ``|c|^2 - 2 x.c``, as scikit-learn's Lloyd step;
    ``barrier [B, K]`` (``inf`` or 0) keeps centres out."""
    c_sq = np.einsum("bkd,bkd->bk", centers, centers)
    dist = X[None] @ centers.transpose(0, 2, 1)
    dist *= -2
    dist += c_sq[:, None, :]
    if barrier is not None:
        dist += barrier[:, None, :]
    return dist.argmin(2).astype(np.int32)


def _relocate(X: np.ndarray, c_old: np.ndarray, sums: np.ndarray, counts: np.ndarray, labels: np.ndarray) -> None:
    """scikit-learn's ``_relocate_empty_clusters_dense``: each empty cluster takes the model farthest
    from its centre (in place on ``sums`` and ``counts``)."""
    empty = np.flatnonzero(counts == 0)
    dist = ((X - c_old[labels]) ** 2).sum(axis=1)
    if np.max(dist) == 0:
        return
    far = np.argpartition(dist, -len(empty))[: -len(empty) - 1 : -1]
    for new, f in zip(empty, far):
        old = labels[f]
        sums[old] -= X[f]
        sums[new] = X[f]
        counts[new] = 1.0
        counts[old] -= 1.0


def _same_partition(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether ``a`` and ``b`` are the same partition up to renaming (``a``'s each cluster maps to one of ``b``'s)."""
    mapping = np.full(k, -1)
    for x, y in zip(a.tolist(), b.tolist()):
        if mapping[x] == -1:
            mapping[x] = y
        elif mapping[x] != y:
            return False
    return True


def silhouette_precomputed(D: np.ndarray, labels: np.ndarray) -> float:
    """``sklearn.metrics.silhouette_score(D, labels, metric="precomputed")`` for a distance matrix
    ``[n, n]`` with a zero diagonal; ``nan`` where scikit-learn raises (fewer than two clusters, every
    model its own cluster, or a diagonal that is not zero)."""
    D = np.asarray(D, dtype=np.float64)
    n = len(D)
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    k = int(codes.max()) + 1 if n else 0
    if not 1 < k < n or np.any(np.abs(D.diagonal()) > np.finfo(np.float64).eps * 100):
        return float("nan")
    freqs = np.bincount(codes)
    # per model, the sum of its distances to each cluster, added in model order (one bincount per row in scikit-learn)
    cell = (np.arange(n)[:, None] * k + codes[None, :]).ravel()
    to_cluster = np.bincount(cell, weights=D.ravel(), minlength=n * k).reshape(n, k)
    rows = np.arange(n)
    intra = to_cluster[rows, codes]
    to_cluster[rows, codes] = np.inf
    to_cluster /= freqs
    inter = to_cluster.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= (freqs - 1)[codes]
        sil = inter - intra
        sil /= np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(sil)))
