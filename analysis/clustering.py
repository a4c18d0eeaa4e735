"""Clustering fingerprints into basins, with an uncertainty on the number of basins.

Feature fingerprints ``[n, d]`` are standardised, reduced by PCA, then clustered; distance
fingerprints ``[n, n]`` are clustered on the precomputed distances (Gaussian mixture and k-means,
which need coordinates, get classical-MDS coordinates instead). Methods: HDBSCAN, Gaussian mixture
with k by BIC, k-means with k by silhouette, agglomerative (average / complete linkage). ``auto`` is
k-means for features and average-linkage agglomerative for distances, both with k chosen by
silhouette and a floor (:data:`MIN_SILHOUETTE`) below which the population is one basin: on real
fingerprints the BIC-chosen mixtures either see one basin everywhere (diagonal / full covariance)
or split structureless data (spherical). The number of
basins comes with a bootstrap: resample models, recluster, report the consensus k and the
stability (mean adjusted Rand index between pairs of bootstrap clusterings, on the models they
share). Everything is deterministic for a given ``random_state``.

Large populations (tens of thousands of models of *feature* fingerprints) never build an
``n x n`` array: PCA streams the rows in chunks, and the steps that are quadratic in the number of
models work on fixed random samples above the sizes below (``docs/scorecard.md``, "Large
populations"). Distance fingerprints are ``n x n`` by nature and are used as they are.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from analysis.errors import AnalysisError, choices

METHODS = ("auto", "gmm", "kmeans", "hdbscan", "agglomerative", "agglomerative-complete")
EMBEDDINGS = ("umap", "pca")
# silhouette-chosen methods split into k > 1 basins only when the best silhouette clears this;
# below it the population is one basin (random data scores ~0.1-0.2 in 10 PCA dimensions)
MIN_SILHOUETTE = 0.25
MIN_MODELS = 4  # fewer models than this are one basin, whatever the method

# -- large populations: above these sizes the quadratic steps sample (docs/scorecard.md) -----------
SILHOUETTE_SAMPLE = 4000  # silhouette of a clustering: on a fixed random sample of this many models
BOOT_MAX = 5000  # distinct models kept in one bootstrap replicate
MEDOID_SAMPLE = 2000  # a larger basin's exemplar is the medoid of a fixed random sample of its members
EMBED_FIT_MAX = 20000  # UMAP is fitted on a sample of this many models; the rest are placed by transform
AGGLOMERATIVE_MAX = 10000  # agglomerative linkage of features keeps n(n-1)/2 distances (0.4 GB here)
HDBSCAN_MIN_SAMPLES_MAX = 100  # HDBSCAN's core distance uses at most this many neighbours
CHUNK_ELEMENTS = 1 << 22  # floats per row block of the streamed PCA and the blocked distances (32 MB)
STREAM_PCA_ELEMENTS = 1 << 24  # features with more values than this are standardised and reduced in row blocks


@dataclass
class Clustering:
    """Cluster labels ``[n]`` (``-1`` = noise, HDBSCAN only) and how they were found."""

    labels: np.ndarray
    method: str
    k: int
    score: float = float("nan")  # silhouette or BIC of the chosen k
    scores: dict[int, float] = field(default_factory=dict)  # k -> silhouette or BIC


def is_distance(values: np.ndarray) -> bool:
    """Heuristic for unlabelled arrays: square, symmetric, zero diagonal."""
    values = np.asarray(values)
    return (values.ndim == 2 and values.shape[0] == values.shape[1] and values.shape[0] > 1
            and bool(np.allclose(values, values.T, atol=1e-5)) and bool(np.allclose(np.diag(values), 0, atol=1e-5)))


def _as_distance(values: np.ndarray, distances: bool | None) -> bool:
    if distances is None:
        return is_distance(values)
    # an extractor may declare "distances" but return [n, n_landmarks]: those are coordinates
    return bool(distances) and values.ndim == 2 and values.shape[0] == values.shape[1]


def _floats(values: np.ndarray) -> np.ndarray:
    """``values`` as a float array without copying float32 / float64 input (a large float32
    fingerprint would double in size); anything else becomes float64."""
    values = np.asarray(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


def _row_blocks(n: int, width: int) -> range:
    """Start rows of blocks holding about :data:`CHUNK_ELEMENTS` values of ``width`` columns."""
    return range(0, n, max(1, CHUNK_ELEMENTS // max(int(width), 1)))


def reduce_features(x: np.ndarray, n_components: int = 10, random_state: int = 0, standardize: bool = True) -> np.ndarray:
    """Standardise (or only centre, with ``standardize=False``) then PCA to at most ``n_components``
    dims ``[n, c]`` (constant columns dropped). Combined fingerprints are already block-scaled and
    must not be re-standardised: that would give near-zero components unit variance.

    Above :data:`STREAM_PCA_ELEMENTS` values the same PCA (covariance eigendecomposition, the
    solver scikit-learn picks for tall data, with its sign convention) streams row blocks, so the
    memory is ``O(n * c + d^2)`` instead of several float64 copies of ``x``."""
    x = _floats(x).reshape(len(x), -1)
    n, d = x.shape
    if n * d > STREAM_PCA_ELEMENTS and d <= 4096 and n >= 10 * d:
        return _streamed_pca(x, n_components, standardize)
    x = np.asarray(x, dtype=np.float64)
    keep = x.std(0) > 1e-12
    if not keep.any() or len(x) < 2:
        return np.zeros((len(x), 1))
    z = StandardScaler(with_std=standardize).fit_transform(x[:, keep])
    c = int(min(n_components, z.shape[1], max(len(z) - 1, 1)))
    return PCA(n_components=c, random_state=random_state).fit_transform(z)


def _streamed_pca(x: np.ndarray, n_components: int, standardize: bool) -> np.ndarray:
    n, d = x.shape
    blocks = _row_blocks(n, d)
    block = lambda s: np.asarray(x[s : s + blocks.step], dtype=np.float64)  # noqa: E731
    mean = sum(block(s).sum(0) for s in blocks) / n
    var = sum(((block(s) - mean) ** 2).sum(0) for s in blocks) / n
    keep = np.sqrt(var) > 1e-12
    if not keep.any():
        return np.zeros((n, 1))
    scale = np.sqrt(var[keep]) if standardize else np.ones(int(keep.sum()))
    z = lambda s: (block(s)[:, keep] - mean[keep]) / scale  # noqa: E731
    cov = np.zeros((int(keep.sum()),) * 2)
    for s in blocks:
        zs = z(s)
        cov += zs.T @ zs
    cov /= n - 1
    vals, vecs = np.linalg.eigh(cov)
    c = int(min(n_components, int(keep.sum()), n - 1))
    comp = vecs[:, np.argsort(vals)[::-1][:c]].T  # [c, d_kept]
    # scikit-learn's svd_flip(u_based_decision=False): each component's largest |entry| is positive
    comp *= np.sign(comp[np.arange(c), np.abs(comp).argmax(1)])[:, None]
    return np.concatenate([z(s) @ comp.T for s in blocks])


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
    values = _floats(values)
    if _as_distance(values, distances):
        return distance_to_features(np.asarray(values, dtype=np.float64), n_components)
    return reduce_features(values, n_components, random_state, standardize)


def combine(blocks: list[np.ndarray], distances: list[bool | None] | None = None, n_components: int = 10,
            random_state: int = 0) -> np.ndarray:
    """Concatenate several fingerprints of the same models ``[n, sum c_i]``.

    Each block is reduced to coordinates (PCA / MDS) and scaled to unit root-mean-square norm, so
    every extractor weighs the same whatever its raw dimension or units.
    """
    if not blocks:
        raise AnalysisError("combine needs at least one fingerprint")
    n = len(blocks[0])
    if any(len(b) != n for b in blocks):
        raise AnalysisError(f"combined fingerprints must cover the same models (sizes: {[len(b) for b in blocks]})")
    parts = []
    for i, b in enumerate(blocks):
        f = coordinates(b, None if distances is None else distances[i], n_components, random_state)
        f = f - f.mean(0)
        parts.append(f / max(float(np.sqrt((f**2).sum(1).mean())), 1e-12))
    return np.concatenate(parts, 1)


def silhouette(data: np.ndarray, labels: np.ndarray, metric: str = "euclidean", random_state: int = 0) -> float:
    """Mean silhouette; above :data:`SILHOUETTE_SAMPLE` models, of a fixed random sample of that many
    (the exact score costs ``n^2`` distances). ``nan`` when the models scored hold fewer than two
    clusters or every model is its own cluster."""
    labels = np.asarray(labels)
    n = len(labels)
    if n > SILHOUETTE_SAMPLE:
        idx = np.sort(np.random.default_rng(random_state).choice(n, SILHOUETTE_SAMPLE, replace=False))
        data = data[np.ix_(idx, idx)] if metric == "precomputed" else data[idx]
        labels = labels[idx]
    if not 1 < len(np.unique(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(data, labels, metric=metric))


def _silhouette_k(fit, data: np.ndarray, k_max: int, metric: str, k_fixed: int | None, random_state: int = 0
                  ) -> Clustering:
    n = len(data)
    if k_fixed is not None:
        labels = np.asarray(fit(k_fixed))
        s = silhouette(data, labels, metric, random_state)
        return Clustering(labels, "", k_fixed, s, {k_fixed: s})
    scores: dict[int, float] = {}
    best = (MIN_SILHOUETTE, 1, np.zeros(n, int))
    for k in range(2, min(k_max, n - 1) + 1):
        labels = np.asarray(fit(k))
        if len(np.unique(labels)) < 2:
            continue
        s = silhouette(data, labels, metric, random_state)
        if not np.isfinite(s):
            continue
        scores[k] = s
        if s > best[0]:
            best = (s, k, labels)
    return Clustering(best[2], "", best[1], best[0] if best[1] > 1 else float("nan"), scores)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise AnalysisError(f"unknown clustering method '{method}' (valid: {choices(METHODS)})")


def cluster(values: np.ndarray, method: str = "auto", k_max: int = 8, random_state: int = 0,
            n_components: int = 10, distances: bool | None = None, k: int | None = None,
            standardize: bool = True) -> Clustering:
    """Cluster a fingerprint: features ``[n, d]`` or distances ``[n, n]``.

    Parameters
    ----------
    values : features ``[n, d]`` or a distance matrix ``[n, n]``.
    method : one of :data:`METHODS`.
    k_max : largest number of basins considered when k is chosen (BIC / silhouette).
    distances : whether ``values`` are distances; ``None`` guesses (square, symmetric, zero diagonal).
    k : a fixed number of basins (not for HDBSCAN, which chooses its own).
    standardize : standardise feature columns before PCA (off for block-scaled combined fingerprints).

    Returns
    -------
    Clustering with ``labels`` ``[n]``.

    Examples
    --------
    >>> x = np.r_[np.zeros((10, 3)), np.ones((10, 3)) * 5] + np.random.default_rng(0).normal(size=(20, 3)) * 0.1
    >>> cluster(x, "kmeans").k
    2
    """
    check_method(method)
    values = _floats(values)
    n = len(values)
    if k is not None and not 1 <= k <= max(n - 1, 1):
        raise AnalysisError(f"fixed k = {k} is out of range for {n} models (valid: 1..{max(n - 1, 1)})")
    if n < MIN_MODELS:
        return Clustering(np.zeros(n, int), method, 1)
    dist = _as_distance(values, distances)
    if dist:  # round-off from e.g. torch.cdist: sklearn's precomputed metrics need an exact zero diagonal
        values = np.asarray(values, dtype=np.float64)
        values = np.clip(0.5 * (values + values.T), 0.0, None)
        np.fill_diagonal(values, 0.0)
    if method == "auto":
        method = "agglomerative" if dist else "kmeans"
    if method.startswith("agglomerative") and not dist and n > AGGLOMERATIVE_MAX:
        raise AnalysisError(f"'{method}' clustering of {n} models needs all n(n-1)/2 distances: it takes at most "
                        f"{AGGLOMERATIVE_MAX} models of a feature fingerprint (valid here: auto, kmeans, gmm, hdbscan)")
    if k == 1:
        return Clustering(np.zeros(n, int), method, 1)
    if dist and method in ("gmm", "kmeans"):
        data, dist = distance_to_features(values, n_components), False
    else:
        data = values if dist else reduce_features(values, n_components, random_state, standardize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "hdbscan":
            mcs = max(3, n // 20)
            # min_samples defaults to min_cluster_size, which grows with n: cap the core-distance neighbours
            hd = HDBSCAN(min_cluster_size=mcs, min_samples=min(mcs, HDBSCAN_MIN_SAMPLES_MAX),
                         metric="precomputed" if dist else "euclidean", copy=True)
            labels = hd.fit_predict(values if dist else data)
            return Clustering(np.asarray(labels), "hdbscan", len(set(labels.tolist()) - {-1}))
        if method == "gmm":
            scores: dict[int, float] = {}
            best = None
            for kk in ([k] if k is not None else range(1, min(k_max, n - 1) + 1)):
                gm = GaussianMixture(kk, covariance_type="diag", random_state=random_state, n_init=1,
                                     reg_covar=1e-3).fit(data)
                bic = float(gm.bic(data))
                scores[kk] = bic
                if best is None or bic < best[0]:
                    best = (bic, kk, gm.predict(data))
            labels = _relabel(best[2])
            return Clustering(labels, "gmm", len(np.unique(labels)), best[0], scores)
        if method == "kmeans":
            c = _silhouette_k(lambda kk: KMeans(kk, n_init=5, random_state=random_state).fit_predict(data), data,
                              k_max, "euclidean", k, random_state)
            c.method = "kmeans"
            return c
        linkage = "complete" if method == "agglomerative-complete" else "average"
        if dist:
            fit = lambda kk: AgglomerativeClustering(kk, metric="precomputed", linkage=linkage).fit_predict(values)  # noqa: E731
            c = _silhouette_k(fit, values, k_max, "precomputed", k, random_state)
        else:
            fit = lambda kk: AgglomerativeClustering(kk, linkage=linkage).fit_predict(data)  # noqa: E731
            c = _silhouette_k(fit, data, k_max, "euclidean", k, random_state)
        c.method = method
        return c


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive cluster ids 0..k-1 in order of first appearance (noise stays -1)."""
    out = np.full(len(labels), -1, int)
    ids: dict[int, int] = {}
    for i, v in enumerate(np.asarray(labels).tolist()):
        if v == -1:
            continue
        out[i] = ids.setdefault(v, len(ids))
    return out


def bootstrap(values: np.ndarray, method: str = "auto", n_boot: int = 20, k_max: int = 8, random_state: int = 0,
              n_components: int = 10, distances: bool | None = None, k: int | None = None,
              standardize: bool = True) -> dict:
    """How certain is the clustering? Resample models, recluster, compare.

    Each replicate draws ``n`` models with replacement and clusters the distinct ones (a duplicated
    model would be a fake tight cluster). Returns the consensus (most frequent) k, the histogram of
    k, and the stability: mean ARI between every pair of replicates on the models both contain
    (1 = the same partition every time; ~0 = unrelated partitions).

    A replicate with more than :data:`BOOT_MAX` distinct models keeps a random :data:`BOOT_MAX` of
    them (the result then says ``max_models``): reclustering 63% of a huge population twenty times
    would cost more than everything else, and pairs of replicates still share enough models for
    their ARI.
    """
    values = _floats(values)
    n = len(values)
    rs = np.random.default_rng(random_state)
    dist = _as_distance(values, distances)
    if dist:
        values = np.asarray(values, dtype=np.float64)
    reps: list[tuple[np.ndarray, np.ndarray]] = []  # (model indices, labels)
    ks = []
    capped = False
    for b in range(n_boot):
        idx = np.unique(rs.integers(0, n, n))
        if len(idx) > BOOT_MAX:
            idx, capped = np.sort(rs.choice(idx, BOOT_MAX, replace=False)), True
        if len(idx) < MIN_MODELS:
            continue
        sub = values[np.ix_(idx, idx)] if dist else values[idx]
        c = cluster(sub, method, k_max, random_state + b + 1, n_components, dist, k, standardize)
        ks.append(c.k)
        reps.append((idx, c.labels))
    if not ks:
        return {"consensus_k": None, "k_counts": {}, "stability": None, "n_boot": 0}
    aris = []
    for i in range(len(reps)):
        for j in range(i + 1, len(reps)):
            shared, a, b = np.intersect1d(reps[i][0], reps[j][0], return_indices=True)
            if len(shared) >= 2:
                aris.append(adjusted_rand_score(reps[i][1][a], reps[j][1][b]))
    kk, counts = np.unique(ks, return_counts=True)
    out = {"consensus_k": int(kk[np.argmax(counts)]), "k_counts": {str(int(a)): int(c) for a, c in zip(kk, counts)},
           "stability": float(np.mean(aris)) if aris else None, "n_boot": len(ks)}
    if capped:
        out["max_models"] = BOOT_MAX
    return out


def exemplars(values: np.ndarray, labels: np.ndarray, distances: bool | None = None, n_components: int = 10,
              random_state: int = 0, standardize: bool = True) -> dict[int, int]:
    """Cluster -> index of its medoid model (smallest summed distance to the rest of its cluster).

    Distances are the precomputed ones, or Euclidean on the reduced features, summed in row blocks
    (nothing ``n x n`` is built). A cluster of more than :data:`MEDOID_SAMPLE` models gets the
    medoid of a fixed random sample of that many of its members.
    """
    values = _floats(values)
    labels = np.asarray(labels)
    dist = _as_distance(values, distances)
    c = None if dist else reduce_features(values, n_components, random_state, standardize)
    rng = np.random.default_rng(random_state)
    out = {}
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) > MEDOID_SAMPLE:
            idx = np.sort(rng.choice(idx, MEDOID_SAMPLE, replace=False))
        sums = np.empty(len(idx))
        blocks = _row_blocks(len(idx), len(idx) * (1 if dist else c.shape[1]))
        for s in blocks:
            rows = idx[s : s + blocks.step]
            if dist:
                d = np.asarray(values[np.ix_(rows, idx)], dtype=np.float64)
            else:
                d = np.sqrt(((c[rows, None, :] - c[None, idx, :]) ** 2).sum(-1))
            sums[s : s + len(rows)] = d.sum(1)
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
    values = _floats(values)
    n = len(values)
    dist = _as_distance(values, distances)
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
        import umap

        reducer = umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, random_state=random_state,
                            metric="precomputed" if dist else "euclidean", n_jobs=1, init="spectral" if n > 20 else "random")
        data = values if dist else reduce_features(values, 20, random_state, standardize)
        if dist or n <= EMBED_FIT_MAX:
            return np.asarray(reducer.fit_transform(data), dtype=np.float64), "umap"
        fit = np.zeros(n, bool)
        fit[np.random.default_rng(random_state).choice(n, EMBED_FIT_MAX, replace=False)] = True
        xy = np.empty((n, 2))
        xy[fit] = reducer.fit_transform(data[fit])
        xy[~fit] = reducer.transform(data[~fit])  # one call: UMAP shortens its epochs for large batches
        return xy, "umap-sample"
