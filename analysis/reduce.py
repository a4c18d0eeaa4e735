"""Fingerprints to coordinates: PCA of features (streamed for large populations), classical MDS of
distances, block-scaled combinations of several fingerprints, and 2-D maps.

Large populations never build an ``n x n`` array: above :data:`STREAM_PCA_ELEMENTS` values the
standardisation and the PCA stream row blocks (:class:`sklearn.preprocessing.StandardScaler` and
:class:`sklearn.decomposition.IncrementalPCA`, both with ``partial_fit``); UMAP is fitted on a
sample above :data:`EMBED_FIT_MAX` models (``docs/scorecard.md``, "Large populations").
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.metrics import pairwise_distances_chunked
from sklearn.preprocessing import StandardScaler

from analysis.errors import AnalysisError, choices
from analysis.options import EMBEDDINGS

MEDOID_SAMPLE = 2000  # a larger basin's exemplar is the medoid of a fixed random sample of its members
EMBED_FIT_MAX = 20000  # UMAP is fitted on a sample of this many models; the rest are placed by transform
# UMAP's optimisation epochs: what umap-learn gives populations above 10,000; its 500 for smaller ones
# doubled a 100-model report's map time (10 maps: 2.6 -> 1.3 CPU-s) for a picture only
MAP_EPOCHS = 200
CHUNK_ELEMENTS = 1 << 22  # floats per row block of the streamed PCA and the blocked distances (32 MB)
STREAM_PCA_ELEMENTS = 1 << 24  # features with more values than this are standardised and reduced in row blocks
GRAM_PCA_MAX_MODELS = 4096  # ... or, wider than tall, through the models' [n, n] Gram matrix (128 MB at this n)


def is_distance(values: np.ndarray) -> bool:
    """Heuristic for unlabelled arrays: square, symmetric, zero diagonal."""
    values = np.asarray(values)
    return (values.ndim == 2 and values.shape[0] == values.shape[1] and values.shape[0] > 1
            and bool(np.allclose(values, values.T, atol=1e-5)) and bool(np.allclose(np.diag(values), 0, atol=1e-5)))


def as_distance(values: np.ndarray, distances: bool | None) -> bool:
    if distances is None:
        return is_distance(values)
    # an extractor may declare "distances" but return [n, n_landmarks]: those are coordinates
    return bool(distances) and values.ndim == 2 and values.shape[0] == values.shape[1]


def as_floats(values: np.ndarray) -> np.ndarray:
    """``values`` as a float array without copying float32 / float64 input (a large float32
    fingerprint would double in size); anything else becomes float64."""
    values = np.asarray(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


def row_blocks(n: int, width: int) -> range:
    """Start rows of blocks holding about :data:`CHUNK_ELEMENTS` values of ``width`` columns."""
    return range(0, n, max(1, CHUNK_ELEMENTS // max(int(width), 1)))


def reduce_features(x: np.ndarray, n_components: int = 10, random_state: int = 0, standardize: bool = True) -> np.ndarray:
    """Standardise (or only centre, with ``standardize=False``) then PCA to at most ``n_components``
    dims ``[n, c]`` (constant columns dropped). Combined fingerprints are already block-scaled and
    must not be re-standardised: that would give near-zero components unit variance.

    Above :data:`STREAM_PCA_ELEMENTS` values the same PCA streams row blocks (``StandardScaler`` and
    ``IncrementalPCA`` ``partial_fit``, same components and signs), so the memory is ``O(n * c + d^2)``
    instead of several float64 copies of ``x``."""
    x = as_floats(x).reshape(len(x), -1)
    n, d = x.shape
    if n * d > STREAM_PCA_ELEMENTS and d <= 4096 and n >= 10 * d:
        return _streamed_pca(x, n_components, standardize)
    # exact PCA, not scikit-learn's randomized solver (which it picks for e.g. 24 x 4,876): on a flat spectrum that
    # one's lower components changed with the report's --seed, and an outside audit's seed-only null read a candidate
    # at --seed 0 only (eighteenth session). Wide: the [n, n] Gram matrix, up to GRAM_PCA_MAX_MODELS models (its
    # memory); tall: the [d, d] covariance. Only wider and more models than that keeps the randomized solver.
    if n >= 2 and n < d and n <= GRAM_PCA_MAX_MODELS:
        return _gram_pca(x, n_components, standardize)
    x = np.asarray(x, dtype=np.float64)
    keep = x.std(0) > 1e-12
    if not keep.any() or len(x) < 2:
        return np.zeros((len(x), 1))
    z = StandardScaler(with_std=standardize).fit_transform(x[:, keep])
    c = int(min(n_components, z.shape[1], max(len(z) - 1, 1)))
    solver = "covariance_eigh" if d <= n else "auto"
    return PCA(n_components=c, svd_solver=solver, random_state=random_state).fit_transform(z)


def _gram_pca(x: np.ndarray, n_components: int, standardize: bool) -> np.ndarray:
    """:func:`reduce_features` of ``x [n, d]`` with ``d > n`` (a population's flattened weights):
    the exact PCA scores from the eigenvectors of the centred (standardised) rows' Gram matrix
    ``[n, n]`` (``O(n^2 d)``), with scikit-learn's signs (``svd_flip`` on the components), in one
    float64 copy of ``x``. scikit-learn's randomized solver, which it picks for such shapes, took 3.3 s
    a call for 32 models x 1M weights (the sixth audit: 100 s of a report's ``aligned-weights``) and
    is an approximation whose lower components move with its seed; this takes 0.3 s and is exact."""
    z = np.array(x, dtype=np.float64)
    mean, sd = z.mean(0), z.std(0)
    keep = sd > 1e-12
    if not keep.any():
        return np.zeros((len(z), 1))
    if not keep.all():
        z, mean, sd = z[:, keep], mean[keep], sd[keep]
    z -= mean
    if standardize:
        z /= sd
    vals, vecs = np.linalg.eigh(z @ z.T)
    c = int(min(n_components, z.shape[1], len(z) - 1))
    order = np.argsort(vals)[::-1][:c]
    u, s = vecs[:, order], np.sqrt(np.clip(vals[order], 0, None))
    load = u.T @ z  # [c, d]: each component's loadings (up to its scale)
    signs = np.sign(load[np.arange(c), np.abs(load).argmax(1)])  # the largest loading of each component > 0
    return u * s * np.where(signs == 0, 1.0, signs)


def _streamed_pca(x: np.ndarray, n_components: int, standardize: bool) -> np.ndarray:
    n, d = x.shape
    step = row_blocks(n, d).step
    # equal batches of at least ``step // 2`` rows: IncrementalPCA needs each one to hold n_components rows
    batches = np.array_split(np.arange(n), max(1, -(-n // step)))
    block = lambda b: np.asarray(x[b[0] : b[-1] + 1], dtype=np.float64)  # noqa: E731
    scaler = StandardScaler()
    for b in batches:
        scaler.partial_fit(block(b))
    keep = np.sqrt(scaler.var_) > 1e-12
    if not keep.any():
        return np.zeros((n, 1))
    scale = scaler.scale_[keep] if standardize else 1.0
    z = lambda b: (block(b)[:, keep] - scaler.mean_[keep]) / scale  # noqa: E731
    # all components are kept while fitting (a truncated incremental SVD would be an approximation);
    # the leading ``c`` are used, with scikit-learn's sign convention (svd_flip on the components)
    ipca = IncrementalPCA(n_components=int(keep.sum()))
    for b in batches:
        ipca.partial_fit(z(b))
    c = int(min(n_components, int(keep.sum()), n - 1))
    comp = ipca.components_[:c]
    return np.concatenate([(z(b) - ipca.mean_) @ comp.T for b in batches])


def distance_to_features(d: np.ndarray, n_components: int = 10) -> np.ndarray:
    """Classical MDS coordinates ``[n, c]`` of a distance matrix ``[n, n]``."""
    d = np.asarray(d, dtype=np.float64)
    d = 0.5 * (d + d.T)
    n = len(d)
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh(b)
    order = np.argsort(vals)[::-1][: max(1, min(n_components, n))]
    return vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))


def coordinates(values: np.ndarray, distances: bool | None = None, n_components: int = 10,
                random_state: int = 0, standardize: bool = True) -> np.ndarray:
    """Low-dimensional coordinates ``[n, c]`` of any fingerprint (PCA of features, MDS of distances)."""
    values = as_floats(values)
    if as_distance(values, distances):
        return distance_to_features(np.asarray(values, dtype=np.float64), n_components)
    return reduce_features(values, n_components, random_state, standardize)


def combine(blocks: list[np.ndarray], distances: list[bool | None] | None = None, n_components: int = 10,
            random_state: int = 0, standardize: list[bool] | None = None) -> np.ndarray:
    """Concatenate several fingerprints of the same models ``[n, sum c_i]``.

    Each block is reduced to coordinates (PCA / MDS; a feature block's columns standardised unless
    its ``standardize`` entry is false) and scaled to unit root-mean-square norm, so every extractor
    weighs the same whatever its raw dimension or units.
    """
    if not blocks:
        raise AnalysisError("combine needs at least one fingerprint")
    n = len(blocks[0])
    if any(len(b) != n for b in blocks):
        raise AnalysisError(f"combined fingerprints must cover the same models (sizes: {[len(b) for b in blocks]})")
    parts = []
    for i, b in enumerate(blocks):
        f = coordinates(b, None if distances is None else distances[i], n_components, random_state,
                        True if standardize is None else standardize[i])
        f = f - f.mean(0)
        parts.append(f / max(float(np.sqrt((f**2).sum(1).mean())), 1e-12))
    return np.concatenate(parts, 1)


def exemplars(values: np.ndarray, labels: np.ndarray, distances: bool | None = None, n_components: int = 10,
              random_state: int = 0, standardize: bool = True, coords: np.ndarray | None = None) -> dict[int, int]:
    """Cluster -> index of its medoid model (smallest summed distance to the rest of its cluster).

    Distances are the precomputed ones, or Euclidean on the reduced features (``coords``, the
    :func:`reduce_features` of ``values`` when not given), summed in row blocks by
    ``pairwise_distances_chunked`` (nothing ``n x n`` is built). A cluster of more than :data:`MEDOID_SAMPLE` models gets the
    medoid of a fixed random sample of that many of its members.
    """
    values = as_floats(values)
    labels = np.asarray(labels)
    dist = as_distance(values, distances)
    if not dist and coords is None:
        coords = reduce_features(values, n_components, random_state, standardize)
    c = coords
    rng = np.random.default_rng(random_state)
    out = {}
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) > MEDOID_SAMPLE:
            idx = np.sort(rng.choice(idx, MEDOID_SAMPLE, replace=False))
        if dist:
            sums = np.asarray(values[np.ix_(idx, idx)], dtype=np.float64).sum(1)
        else:  # Euclidean, in row blocks of about CHUNK_ELEMENTS distances
            sums = np.concatenate(list(pairwise_distances_chunked(
                c[idx], reduce_func=lambda d, _start: d.sum(1), working_memory=CHUNK_ELEMENTS * 8 / 2**20)))
        out[int(lab)] = int(idx[np.argmin(sums)])
    return out


def embed_2d(values: np.ndarray, method: str = "umap", random_state: int = 0, distances: bool | None = None,
             standardize: bool = True) -> tuple[np.ndarray, str]:
    """A 2-D map ``[n, 2]`` and the method actually used.

    UMAP (precomputed metric for distances) needs a dozen models; smaller populations, and
    ``method="pca"``, get PCA of the standardised features or classical MDS of the distances.
    Above :data:`EMBED_FIT_MAX` models of a feature fingerprint, UMAP is fitted on a fixed random
    sample of that many and the other models are placed with ``transform`` (method
    ``"umap-sample"``): a full fit would take many minutes.
    """
    if method not in EMBEDDINGS:
        raise AnalysisError(f"unknown embedding '{method}' (valid: {choices(EMBEDDINGS)})")
    values = as_floats(values)
    n = len(values)
    dist = as_distance(values, distances)
    if dist:
        values = np.asarray(values, dtype=np.float64)
    if n < 3:
        return np.zeros((n, 2)), "none"
    if method == "pca" or n < 12:
        xy = coordinates(values, dist, 2, random_state, standardize)
        if xy.shape[1] < 2:
            xy = np.c_[xy, np.zeros(n)]
        return xy[:, :2], "mds" if dist else "pca"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap = _umap()
        reducer = umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, random_state=random_state,
                            metric="precomputed" if dist else "euclidean", n_jobs=1, init="spectral" if n > 20 else "random",
                            n_epochs=MAP_EPOCHS)
        data = values if dist else reduce_features(values, 20, random_state, standardize)
        if dist or n <= EMBED_FIT_MAX:
            return np.asarray(reducer.fit_transform(data), dtype=np.float64), "umap"
        fit = np.zeros(n, bool)
        fit[np.random.default_rng(random_state).choice(n, EMBED_FIT_MAX, replace=False)] = True
        xy = np.empty((n, 2))
        xy[fit] = reducer.fit_transform(data[fit])
        xy[~fit] = reducer.transform(data[~fit])  # one call: UMAP shortens its epochs for large batches
        return xy, "umap-sample"


def _umap():
    """The ``umap`` module, its numba functions compiled once per machine: umap-learn caches only a few
    of them on disk, and compiling the others (``fast_knn_indices``, ``smooth_knn_dist``, the layout's
    epoch, ...) took 10-15 s of CPU in every new process, more than the rest of a 100-model report
    (``docs/benchmarks.md``, "The report's speed"). ``enable_caching`` is what ``@njit(cache=True)``
    calls; the compiled code is the same, kept in numba's cache directory (``NUMBA_CACHE_DIR``, else
    beside the package or in the user's cache)."""
    import umap
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    # umap's own modules, loaded by its __init__ (umap_, layouts, utils, distances, spectral, ...)
    for name, mod in list(sys.modules.items()):
        if name.startswith("umap.") and mod is not None:
            for f in list(vars(mod).values()):
                if isinstance(f, CPUDispatcher) and isinstance(f._cache, NullCache):
                    f.enable_caching()
    return umap
