"""Synthetic populations with known structure, to calibrate the label-free tests against.

``synthetic_population(kind, seed, ...)`` gives ``(x [n, d], family [n], label [n])``: init families
of models in fingerprint space. Null kinds (no deep factor): ``null`` (Gaussian family effects and
member noise), ``null-t`` (heavy-tailed, t with 3 dof), ``null-skew`` (log-normal), ``null-flat``
(no family effect). Planted kinds: ``groups`` (the seed decides a binary factor: whole families shift
by +-delta) and ``cross`` (each model's factor is a coin flip: families split). Used by
``tests/analysis/test_labelfree.py`` and ``scripts/labelfree_nulls.py`` (docs/results.md).
"""

from __future__ import annotations

import numpy as np

KINDS = ("null", "null-t", "null-skew", "null-flat", "groups", "cross")


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
