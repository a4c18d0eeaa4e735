"""Bit-exactness assertions that say which host they ran on when they fail.

Float results depend on the CPU (vector width, the BLAS code path), so a failing exact comparison
is only useful with the host's features beside it: the CPU, torch's SIMD level, MKL's reproducible
mode, the thread count and whether the fused MLP kernels are in use.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def host() -> str:
    from training.core.numerics import host_features
    from training.families import kernels

    return f"{host_features()} mlp_kernels={kernels.status(build=False)!r}"


def assert_bitwise_equal(a, b, what: str = "") -> None:
    """``a`` and ``b`` (tensors, arrays, or dicts of them with the same keys) are bit-identical."""
    if isinstance(a, Mapping):
        assert set(a) == set(b), f"{what}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            assert_bitwise_equal(a[k], b[k], f"{what}[{k}]" if what else str(k))
        return
    x, y = np.asarray(torch.as_tensor(a).detach().cpu()), np.asarray(torch.as_tensor(b).detach().cpu())
    if x.shape == y.shape and np.array_equal(x, y):
        return
    diff = np.abs(x.astype(np.float64) - y.astype(np.float64)).max() if x.shape == y.shape else "shapes differ"
    raise AssertionError(f"not bit-identical: {what or 'value'} (max |diff| {diff}; shapes {x.shape} vs {y.shape}) on host: {host()}")
