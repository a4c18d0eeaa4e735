"""UMAP's numba functions are compiled once per machine, not in every process (issue 26 item 2)."""

from __future__ import annotations

from numba.core.caching import NullCache

from analysis import reduce


def test_umap_functions_cache_on_disk():
    umap = reduce._umap()
    for f in (umap.utils.fast_knn_indices, umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths):
        assert not isinstance(f._cache, NullCache), f
