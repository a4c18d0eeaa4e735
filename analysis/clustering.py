"""Clustering fingerprints into basins: :class:`BasinClusterer`, a scikit-learn estimator.

Feature fingerprints ``[n, d]`` are standardised, reduced by PCA, then clustered; distance
fingerprints ``[n, n]`` are clustered on the precomputed distances (Gaussian mixture and k-means,
which need coordinates, get classical-MDS coordinates instead). Methods: HDBSCAN, Gaussian mixture
with k by BIC, k-means with k by silhouette, agglomerative (average / complete linkage). ``auto`` is
k-means for features and average-linkage agglomerative for distances, both with k chosen by
silhouette and a floor (:data:`MIN_SILHOUETTE`) below which the population is one basin: on real
fingerprints the BIC-chosen mixtures either see one basin everywhere (diagonal / full covariance)
or split structureless data (spherical). How certain the number of basins is
(:func:`bootstrap`) refits ``sklearn.base.clone``\\ s of the estimator on
resampled models. Everything is deterministic for a given ``random_state``.

The coordinates, maps and exemplars (:mod:`analysis.reduce`) are re-exported here: ``analysis.clustering`` stays the one import for callers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.mixture import GaussianMixture

from analysis import agreement as ag
from analysis import kmeans as km
from analysis.errors import AnalysisError
from analysis.options import METHODS, check_method  # noqa: F401 - re-exported
from analysis.reduce import (  # noqa: F401 - re-exported: analysis.clustering is the callers' one import
    CHUNK_ELEMENTS,
    EMBED_FIT_MAX,
    EMBEDDINGS,
    MEDOID_SAMPLE,
    STREAM_PCA_ELEMENTS,
    as_distance,
    as_floats,
    combine,
    coordinates,
    distance_to_features,
    embed_2d,
    exemplars,
    is_distance,
    reduce_features,
)

# silhouette-chosen methods split into k > 1 basins only when the best silhouette clears this;
# below it the population is one basin (random data scores ~0.1-0.2 in 10 PCA dimensions)
MIN_SILHOUETTE = 0.25
MIN_MODELS = 4  # fewer models than this are one basin, whatever the method

# -- large populations: above these sizes the quadratic steps sample (docs/scorecard.md) -----------
SILHOUETTE_SAMPLE = 4000  # silhouette of a clustering: on a fixed random sample of this many models
SHARED_DISTANCES_MAX = 2000  # up to this many models, the silhouettes of every k share one distance matrix (32 MB)
AGGLOMERATIVE_MAX = 10000  # agglomerative linkage of features keeps n(n-1)/2 distances (0.4 GB here)
BOOT_MAX = 5000  # distinct models kept in one bootstrap replicate
HDBSCAN_MIN_SAMPLES_MAX = 100  # HDBSCAN's core distance uses at most this many neighbours
KMEANS_N_INIT = 10  # k-means inits per k (five found the better of two local optima at some --seed only: audit 109)
KMEANS_NUMPY_MAX = 700  # up to this many models k-means runs in numpy (analysis.kmeans: every k in one batch); above, scikit-learn (faster there)
SILHOUETTE_NUMPY_MAX = 1000  # likewise the silhouette on a distance matrix (numpy 2.8 vs 4.7 ms at 1,000; 16.8 vs 11.8 at 2,000)


@dataclass
class Clustering:
    """Cluster labels ``[n]`` (``-1`` = noise, HDBSCAN only) and how they were found."""

    labels: np.ndarray
    method: str
    k: int
    score: float = float("nan")  # silhouette or BIC of the chosen k
    scores: dict[int, float] = field(default_factory=dict)  # k -> silhouette or BIC


def silhouette(data: np.ndarray, labels: np.ndarray, metric: str = "euclidean", random_state: int = 0) -> float:
    """Mean silhouette; above :data:`SILHOUETTE_SAMPLE` models, of a fixed random sample of that many
    (``silhouette_score``'s ``sample_size``: the exact score costs ``n^2`` distances). ``nan`` when
    the models scored hold fewer than two clusters or every model is its own cluster."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 1 < len(np.unique(labels)) < n:
        return float("nan")
    if metric == "precomputed" and n <= SILHOUETTE_NUMPY_MAX:  # scikit-learn's score, without its per-call cost
        return km.silhouette_precomputed(data, labels)
    try:
        return float(silhouette_score(data, labels, metric=metric, random_state=random_state,
                                      sample_size=SILHOUETTE_SAMPLE if n > SILHOUETTE_SAMPLE else None))
    except ValueError:  # the sample holds a single cluster (or one model each)
        return float("nan")


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive cluster ids 0..k-1 in order of first appearance (noise stays -1)."""
    out = np.full(len(labels), -1, int)
    ids: dict[int, int] = {}
    for i, v in enumerate(np.asarray(labels).tolist()):
        if v == -1:
            continue
        out[i] = ids.setdefault(v, len(ids))
    return out


class BasinClusterer(ClusterMixin, BaseEstimator):
    """Cluster a fingerprint into basins: features ``[n, d]`` or distances ``[n, n]``.

    Parameters
    ----------
    method : one of :data:`METHODS`.
    k : a fixed number of basins (not for HDBSCAN, which chooses its own); ``None`` chooses it.
    k_max : largest number of basins considered when k is chosen (BIC / silhouette).
    n_components : PCA / MDS dimensions the models are clustered in.
    distances : whether ``X`` holds distances; ``None`` guesses (square, symmetric, zero diagonal).
    standardize : standardise feature columns before PCA (off for block-scaled combined fingerprints).
    random_state : seed of the reduction, the clusterings and the silhouette sample.

    Attributes
    ----------
    labels_ : ``[n]`` cluster of each model (``-1`` = noise, HDBSCAN only), ids ``0..k-1``.
    n_clusters_ : the number of basins k.
    method_ : the method actually used (``auto`` resolved).
    score_ : silhouette or BIC of the chosen k (``nan`` when none applies).
    scores_ : ``{k: silhouette or BIC}`` of every k tried.
    distances_ : whether ``X`` was treated as distances.
    coordinates_ : ``[n, c]`` the reduced coordinates the models were clustered in (PCA of features,
        MDS of distances for gmm / k-means), or ``None`` when the precomputed distances were used.

    Examples
    --------
    >>> x = np.r_[np.zeros((10, 3)), np.ones((10, 3)) * 5] + np.random.default_rng(0).normal(size=(20, 3)) * 0.1
    >>> BasinClusterer("kmeans").fit(x).n_clusters_
    2
    """

    def __init__(self, method: str = "auto", k: int | None = None, k_max: int = 8, n_components: int = 10,
                 distances: bool | None = None, standardize: bool = True, random_state: int = 0):
        self.method = method
        self.k = k
        self.k_max = k_max
        self.n_components = n_components
        self.distances = distances
        self.standardize = standardize
        self.random_state = random_state

    def fit(self, X, y=None) -> "BasinClusterer":
        check_method(self.method)
        values = as_floats(X)
        n, k = len(values), self.k
        if k is not None and not 1 <= k <= max(n - 1, 1):
            raise AnalysisError(f"fixed k = {k} is out of range for {n} models (valid: 1..{max(n - 1, 1)})")
        dist = self.distances_ = as_distance(values, self.distances)
        self.coordinates_ = None
        method = self.method if self.method != "auto" else ("agglomerative" if dist else "kmeans")
        if n < MIN_MODELS:
            return self._set(Clustering(np.zeros(n, int), self.method, 1))
        if dist:  # round-off from e.g. torch.cdist: sklearn's precomputed metrics need an exact zero diagonal
            values = np.clip(0.5 * (np.asarray(values, dtype=np.float64) + np.asarray(values, dtype=np.float64).T), 0.0, None)
            np.fill_diagonal(values, 0.0)
        if method.startswith("agglomerative") and not dist and n > AGGLOMERATIVE_MAX:
            raise AnalysisError(f"'{method}' clustering of {n} models needs all n(n-1)/2 distances: it takes at most "
                                f"{AGGLOMERATIVE_MAX} models of a feature fingerprint (valid here: auto, kmeans, gmm, hdbscan)")
        if k == 1:
            return self._set(Clustering(np.zeros(n, int), method, 1))
        if dist and method in ("gmm", "kmeans"):
            self.coordinates_ = distance_to_features(values, self.n_components)
        elif not dist:
            self.coordinates_ = reduce_features(values, self.n_components, self.random_state, self.standardize)
        use_dist = dist and self.coordinates_ is None
        data = values if use_dist else self.coordinates_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = self._cluster(method, data, use_dist)
        c.method = method
        return self._set(c)

    def _cluster(self, method: str, data: np.ndarray, dist: bool) -> Clustering:
        n, rs, k = len(data), self.random_state, self.k
        if method == "hdbscan":
            mcs = max(3, n // 20)
            # min_samples defaults to min_cluster_size, which grows with n: cap the core-distance neighbours
            hd = HDBSCAN(min_cluster_size=mcs, min_samples=min(mcs, HDBSCAN_MIN_SAMPLES_MAX),
                         metric="precomputed" if dist else "euclidean", copy=True)
            labels = np.asarray(hd.fit_predict(data))
            return Clustering(labels, "hdbscan", len(set(labels.tolist()) - {-1}))
        if method == "gmm":
            scores: dict[int, float] = {}
            best = None
            for kk in ([k] if k is not None else range(1, min(self.k_max, n - 1) + 1)):
                gm = GaussianMixture(kk, covariance_type="diag", random_state=rs, n_init=1, reg_covar=1e-3).fit(data)
                bic = float(gm.bic(data))
                scores[kk] = bic
                if best is None or bic < best[0]:
                    best = (bic, kk, gm.predict(data))
            labels = _relabel(best[2])
            return Clustering(labels, "gmm", len(np.unique(labels)), best[0], scores)
        if method == "kmeans":
            if n <= KMEANS_NUMPY_MAX:  # scikit-learn's KMeans step for step, without its per-call cost (analysis.kmeans)
                each = km.kmeans_labels_each(data, [k] if k is not None else self._ks(n), KMEANS_N_INIT, rs)  # every k in one batch
                return self._silhouette_k(each.__getitem__, data, "euclidean")
            return self._silhouette_k(lambda kk: KMeans(kk, n_init=KMEANS_N_INIT, random_state=rs).fit_predict(data), data, "euclidean")
        linkage = "complete" if method == "agglomerative-complete" else "average"
        if dist:
            fit = lambda kk: AgglomerativeClustering(kk, metric="precomputed", linkage=linkage).fit_predict(data)  # noqa: E731
            return self._silhouette_k(fit, data, "precomputed")
        return self._silhouette_k(lambda kk: AgglomerativeClustering(kk, linkage=linkage).fit_predict(data), data, "euclidean")

    def _ks(self, n: int) -> range:
        """The numbers of basins tried when k is chosen by silhouette."""
        return range(2, min(self.k_max, n - 1) + 1)

    def _silhouette_k(self, fit, data: np.ndarray, metric: str) -> Clustering:
        n, rs = len(data), self.random_state
        sil_data = data
        if metric == "euclidean" and n <= SHARED_DISTANCES_MAX:  # the distances once, not once per k
            sil_data, metric = pairwise_distances(data), "precomputed"
        if self.k is not None:
            labels = np.asarray(fit(self.k))
            s = silhouette(sil_data, labels, metric, rs)
            return Clustering(labels, "", self.k, s, {self.k: s})
        scores: dict[int, float] = {}
        best = (MIN_SILHOUETTE, 1, np.zeros(n, int))
        for k in self._ks(n):
            labels = np.asarray(fit(k))
            if len(np.unique(labels)) < 2:
                continue
            s = silhouette(sil_data, labels, metric, rs)
            if not np.isfinite(s):
                continue
            scores[k] = s
            if s > best[0]:
                best = (s, k, labels)
        return Clustering(best[2], "", best[1], best[0] if best[1] > 1 else float("nan"), scores)

    def _set(self, c: Clustering) -> "BasinClusterer":
        self.labels_, self.n_clusters_, self.method_ = np.asarray(c.labels), int(c.k), c.method
        self.score_, self.scores_ = c.score, dict(c.scores)
        return self

    @property
    def clustering_(self) -> Clustering:
        """The fitted result as a :class:`Clustering` (what :func:`cluster` returns)."""
        return Clustering(self.labels_, self.method_, self.n_clusters_, self.score_, dict(self.scores_))


def cluster(values: np.ndarray, method: str = "auto", k_max: int = 8, random_state: int = 0,
            n_components: int = 10, distances: bool | None = None, k: int | None = None,
            standardize: bool = True) -> Clustering:
    """``BasinClusterer(...).fit(values).clustering_``: the functional form (``fingerprint.forecast``,
    :mod:`analysis.forecast`).

    Examples
    --------
    >>> x = np.r_[np.zeros((10, 3)), np.ones((10, 3)) * 5] + np.random.default_rng(0).normal(size=(20, 3)) * 0.1
    >>> cluster(x, "kmeans").k
    2
    """
    est = BasinClusterer(method, k, k_max, n_components, distances, standardize, random_state)
    return est.fit(values).clustering_



# -- how certain is the number of basins ---------------------------------------------------------
def bootstrap(values: np.ndarray, method: str = "auto", n_boot: int = 20, k_max: int = 8, random_state: int = 0,
              n_components: int = 10, distances: bool | None = None, k: int | None = None,
              standardize: bool = True, return_replicates: bool = False):
    """How certain is the clustering? Resample models, recluster, compare.

    Each replicate draws ``n`` models with replacement and clusters the distinct ones (a duplicated
    model would be a fake tight cluster). Returns the consensus (most frequent) k, the histogram of
    k, and the stability: mean ARI between every pair of replicates on the models both contain
    (1 = the same partition every time; ~0 = unrelated partitions).

    A replicate with more than :data:`BOOT_MAX` distinct models keeps a random :data:`BOOT_MAX` of
    them (the result then says ``max_models``): reclustering 63% of a huge population twenty times
    would cost more than everything else, and pairs of replicates still share enough models for
    their ARI. With ``return_replicates`` the result is ``(dict, replicates)``, the replicates as
    ``(model indices, labels)`` (the stability's interval compares them again on resampled families).
    """
    values = as_floats(values)
    n = len(values)
    rs = np.random.default_rng(random_state)
    dist = as_distance(values, distances)
    if dist:
        values = np.asarray(values, dtype=np.float64)
    est = BasinClusterer(method, k, k_max, n_components, dist, standardize, random_state)
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
        c = clone(est).set_params(random_state=random_state + b + 1).fit(sub)
        ks.append(c.n_clusters_)
        reps.append((idx, c.labels_))
    if not ks:
        empty = {"consensus_k": None, "k_counts": {}, "stability": None, "n_boot": 0}
        return (empty, reps) if return_replicates else empty
    # every pair of replicates at once: each replicate's labels as a row over all models (-1: not drawn)
    rows = np.full((len(reps), n), -1, np.int64)
    for r, (idx, lab) in enumerate(reps):
        rows[r, idx] = ag.codes(lab)
    pair_ari, shared = ag.ari_pairs(rows, np.transpose(np.triu_indices(len(reps), 1)))
    aris = pair_ari[shared >= 2]  # in the order of the pairs (i, j), i < j
    kk, counts = np.unique(ks, return_counts=True)
    out = {"consensus_k": int(kk[np.argmax(counts)]), "k_counts": {str(int(a)): int(c) for a, c in zip(kk, counts)},
           "stability": float(np.mean(aris)) if len(aris) else None, "n_boot": len(ks)}
    if capped:
        out["max_models"] = BOOT_MAX
    return (out, reps) if return_replicates else out
