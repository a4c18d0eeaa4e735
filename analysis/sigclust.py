"""SigClust's 2-means cluster index (Liu et al. 2008), batched over null replicates.

The within sum of squares of the best 2-means split over the total: 1 when no split helps, near 0
for two tight camps, ~0.36 for one Gaussian direction. :mod:`analysis.labelfree` tests it against
Gaussian nulls; everything here is array in, array out (no randomness but the caller's generator).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_index", "axis_index", "axis_projections", "projection_index", "top_dims", "gaussian_like"]


def cluster_index(x: np.ndarray, min_size: int = 1, iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """2-means cluster index of each replicate ``x [b, n, d]``: within sum of squares of a 2-means
    split over the total (1: no split helps; SigClust's statistic) ``[b]``, and the split ``[b, n]``.

    The split starts from the exact best cut along the first principal direction (each side at
    least ``min_size`` points) and is refined by Lloyd's iterations while both sides keep
    ``min_size`` points; the same deterministic procedure serves the data and every null replicate.
    """
    x = np.asarray(x, dtype=np.float64)
    b, n, _ = x.shape
    x = x - x.mean(1, keepdims=True)
    total = (x**2).sum((1, 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = np.einsum("bnd,bd->bn", x, vt[:, 0])
    order = np.argsort(proj, 1)
    xs = np.take_along_axis(x, order[..., None], 1)
    # within SS of a cut after position i in d dimensions: sum of both sides' SS, from prefix sums
    c1, c2 = np.cumsum(xs, 1), np.cumsum((xs**2).sum(2), 1)
    m = np.arange(1, n)[None, :]
    left = c2[:, :-1] - (c1[:, :-1] ** 2).sum(2) / m
    right_sum = c1[:, -1:] - c1[:, :-1]
    right = (c2[:, -1:] - c2[:, :-1]) - (right_sum**2).sum(2) / (n - m)
    w = left + right
    lo = max(1, min_size)
    if n - lo < lo:
        return np.ones(b), np.zeros((b, n), int)
    w[:, : lo - 1] = np.inf
    w[:, n - lo :] = np.inf
    cut = w.argmin(1)
    labels = np.zeros((b, n), int)
    ranks = np.argsort(order, 1)
    labels[ranks > cut[:, None]] = 1
    for _ in range(iters):
        cnt1 = labels.sum(1)
        cnt0 = n - cnt1
        ok = (cnt0 >= lo) & (cnt1 >= lo)
        mu1 = np.einsum("bn,bnd->bd", labels, x) / np.maximum(cnt1, 1)[:, None]
        mu0 = np.einsum("bn,bnd->bd", 1 - labels, x) / np.maximum(cnt0, 1)[:, None]
        d1 = ((x - mu1[:, None]) ** 2).sum(2)
        d0 = ((x - mu0[:, None]) ** 2).sum(2)
        new = (d1 < d0).astype(int)
        c = new.sum(1)
        keep = ok & (c >= lo) & (n - c >= lo)
        changed = keep & (new != labels).any(1)
        if not changed.any():
            break
        labels[changed] = new[changed]
    cnt1 = labels.sum(1)
    mu1 = np.einsum("bn,bnd->bd", labels, x) / np.maximum(cnt1, 1)[:, None]
    mu0 = np.einsum("bn,bnd->bd", 1 - labels, x) / np.maximum(n - cnt1, 1)[:, None]
    within = (labels * ((x - mu1[:, None]) ** 2).sum(2) + (1 - labels) * ((x - mu0[:, None]) ** 2).sum(2)).sum(1)
    return within / np.maximum(total, 1e-300), labels


def axis_index(c: np.ndarray, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D 2-means cluster index along each principal direction of ``c [..., n, k]`` (directions
    re-estimated per replicate, as the data's were): ``[..., k]``, and each direction's split
    ``[..., k, n]``. One bimodal direction among several Gaussian ones shows here when the joint
    index in ``k`` dimensions dilutes it."""
    return projection_index(axis_projections(c), min_size)


def projection_index(proj: np.ndarray, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cluster_index` of each 1-D projection of ``proj [..., n]``: the indices ``[...]`` and the
    splits ``[..., n]`` (:func:`axis_index` on :func:`axis_projections`; the within-family test also on
    projections it has moved)."""
    lead, n = proj.shape[:-1], proj.shape[-1]
    ci, split = cluster_index(proj.reshape(-1, n, 1), min_size=min_size)
    return ci.reshape(lead), split.reshape(*lead, n)


def axis_projections(c: np.ndarray) -> np.ndarray:
    """``c [..., n, k]`` centred and projected onto each of its principal directions: ``[..., k, n]``
    (what :func:`axis_index` splits)."""
    c = np.asarray(c, dtype=np.float64)
    lead, (n, k) = c.shape[:-2], c.shape[-2:]
    c = c.reshape(-1, n, k)
    c = c - c.mean(1, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return np.einsum("bnd,bkd->bkn", c, vt).reshape(*lead, -1, n)


def top_dims(x: np.ndarray, k: int) -> np.ndarray:
    """``x [n, d]`` centred and rotated onto its top ``k`` principal directions ``[n, k]``."""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T


def gaussian_like(x: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """``b`` replicates ``[b, n, d]`` of ``n`` points from a Gaussian with ``x``'s covariance
    (``x`` already rotated to principal axes, so the covariance is diagonal)."""
    sd = x.std(0, ddof=1)
    return rng.standard_normal((b, *x.shape)) * sd
