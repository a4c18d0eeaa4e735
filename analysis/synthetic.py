"""Synthetic populations with known structure, to calibrate the label-free tests against.

``synthetic_population(kind, seed, ...)`` gives ``(x [n, d], family [n], label [n])``: init families
of models in fingerprint space. Null kinds (no deep factor): ``null`` (Gaussian family effects and
member noise), ``null-t`` (heavy-tailed, t with 3 dof), ``null-skew`` (log-normal), ``null-flat``
(no family effect). Planted kinds: ``groups`` (the seed decides a binary factor: whole families shift
by +-delta) and ``cross`` (each model's factor is a coin flip: families split). Used by
``tests/analysis/test_labelfree.py`` and ``scripts/labelfree_nulls.py`` (docs/results.md).

``parent_population(kind, seed, ...)`` gives ``(x, family, generation, label)``: base models each
fine-tuned into children, the base imported beside them (generation 0 and 1), with a strong shift
from base to fine-tune shared across families (plus a per-family part). ``parents-null``: no deep
factor; ``parents-cross``: each child's factor is a coin flip (a planted difference among the
children, the parents on the factor's 0 side).

``partly_seeded_population(seed, ...)`` gives ``(x, family, label)``: the seed decides a binary
factor for most families (a share ``decided``); in the others each member's factor is a coin flip,
so the all-model split cuts those families only (an outside audit's MLPs, families 3 and 5 split).

``crossed_population(kind, seed, ...)`` gives ``(x, family, order, label)``: init families crossed
with data orders shared by every family, each order moving its models the same way in every family
(``null`` or ``cross`` as above, plus the orders' shared effects).
"""

from __future__ import annotations

import numpy as np

KINDS = ("null", "null-t", "null-skew", "null-flat", "groups", "cross")
PARENT_KINDS = ("parents-null", "parents-cross")


def synthetic_population(kind: str, seed: int, n_fam: int = 12, m: int = 4, d: int = 10, delta: float = 4.0):
    """``n_fam`` init families of ``m`` models in ``d`` fingerprint dimensions (anisotropic), and the
    deep label. Nulls: Gaussian, heavy-tailed (t, 3 dof) or skewed (log-normal) family effects and
    member noise, or no family effect at all. ``groups``: the seed decides a binary factor (whole
    families shift by +-delta); ``cross``: each model's factor is a coin flip (families split)."""
    r = np.random.default_rng(seed)
    scale = np.linspace(1.5, 0.3, d)
    if kind == "null-t":
        c, e = r.standard_t(3, (n_fam, d)), r.standard_t(3, (n_fam * m, d)) * 0.5
    elif kind == "null-skew":
        c, e = r.lognormal(0, 1, (n_fam, d)) - 1, (r.lognormal(0, 0.8, (n_fam * m, d)) - 1) * 0.5
    elif kind == "null-flat":
        c, e = np.zeros((n_fam, d)), r.standard_normal((n_fam * m, d))
    else:
        c, e = r.standard_normal((n_fam, d)), r.standard_normal((n_fam * m, d)) * 0.5
    c, e = c * scale, e * scale
    fam = np.repeat(np.arange(n_fam), m)
    label = np.zeros(n_fam * m, int)
    if kind == "groups":
        g = r.permutation(np.arange(n_fam) % 2)
        c[:, 0] += delta * (2 * g - 1)
        label = g[fam]
    elif kind == "cross":
        label = r.integers(0, 2, n_fam * m)
        e[:, 0] += delta * (2 * label - 1)
    return c[fam] + e, fam, label


def partly_seeded_population(seed: int, n_fam: int = 12, m: int = 2, d: int = 10, delta: float = 4.0,
                             decided: float = 0.8):
    """``n_fam`` init families of ``m`` models in ``d`` dimensions (``null``'s family effects and
    member noise) with a binary factor that moves a model by ``+-delta`` along the first dimension:
    in each family with probability ``decided`` the seed decides it (every member alike, balanced
    across those families), otherwise each member's is a coin flip. Returns ``(x [n, d], family [n],
    label [n])``."""
    r = np.random.default_rng(seed)
    scale = np.linspace(1.5, 0.3, d)
    c, e = r.standard_normal((n_fam, d)) * scale, r.standard_normal((n_fam * m, d)) * 0.5 * scale
    fam = np.repeat(np.arange(n_fam), m)
    seeded = r.random(n_fam) < decided
    g = r.permutation(np.arange(n_fam) % 2)
    label = np.where(seeded[fam], g[fam], r.integers(0, 2, n_fam * m))
    e[:, 0] += delta * (2 * label - 1)
    return c[fam] + e, fam, label


def crossed_population(kind: str, seed: int, n_fam: int = 8, n_orders: int = 4, d: int = 10,
                       order_sd: float = 1.0, delta: float = 4.0):
    """``n_fam`` init families, each with one model per data order (``n_orders`` orders shared by every
    family), in ``d`` dimensions: family effects and member noise as :func:`synthetic_population`'s
    (``null`` or ``cross``, with ``delta``), plus each order's shared effect, Gaussian with sd
    ``order_sd`` times the family effects' per dimension. Returns ``(x [n, d], family [n], order [n],
    label [n])``."""
    if kind not in ("null", "cross"):
        raise ValueError(f"unknown crossed kind {kind!r} (valid: null, cross)")
    x, fam, label = synthetic_population(kind, seed, n_fam, n_orders, d, delta)
    order = np.tile(np.arange(n_orders), n_fam)
    shared = np.random.default_rng([seed, 1]).standard_normal((n_orders, d)) * order_sd * np.linspace(1.5, 0.3, d)
    return x + shared[order], fam, order, label


def parent_population(kind: str, seed: int, n_fam: int = 6, m: int = 4, d: int = 10, shift: float = 6.0,
                      delta: float = 8.0, jitter: float = 0.3):
    """``n_fam`` base models (generation 0), each with ``m`` fine-tuned children (generation 1), in
    ``d`` dimensions: family effects and member noise as ``null``, the children moved by ``shift``
    along a direction shared by every family plus a per-family part (``jitter`` times as large, a
    random direction). ``parents-cross``: each child's deep factor is a coin flip that moves it by
    ``delta`` along the first dimension (the parents have factor 0; 8 is the distance between the
    sides of ``cross``'s +-4). Returns ``(x [n, d], family [n],
    generation [n], label [n])``."""
    if kind not in PARENT_KINDS:
        raise ValueError(f"unknown parent kind {kind!r} (valid: {', '.join(PARENT_KINDS)})")
    r = np.random.default_rng(seed)
    scale = np.linspace(1.5, 0.3, d)
    size = m + 1
    fam = np.repeat(np.arange(n_fam), size)
    gen = np.tile(np.r_[0, np.ones(m, int)], n_fam)
    c, e = r.standard_normal((n_fam, d)) * scale, r.standard_normal((n_fam * size, d)) * 0.5 * scale
    way = r.standard_normal(d)
    per_fam = r.standard_normal((n_fam, d))
    move = shift * (way / np.linalg.norm(way) + jitter * per_fam / np.linalg.norm(per_fam, axis=1, keepdims=True))
    x = c[fam] + e + gen[:, None] * move[fam]
    label = np.zeros(len(x), int)
    if kind == "parents-cross":
        label = np.where(gen == 1, r.integers(0, 2, len(x)), 0)
        x[:, 0] += delta * label
    return x, fam, gen, label
