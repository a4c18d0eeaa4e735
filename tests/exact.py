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


# Where oneDNN's grouped convolution (torch's CPU conv backend for the CNN family) was measured to sum
# each group the same whatever the number of groups: MKL's reproducible mode covers matrix products,
# not oneDNN's convolutions, which promise no such thing. Measured on the AMD EPYC host and on the
# Intel Xeon host with AVX-512 that CI also runs on (the fifteenth session: every bitwise CNN test passes).
CONV_EXACT_CPUS = ("AMD EPYC", "Intel(R) Xeon(R) Processor")


def assert_conv_equal(a, b, what: str = "") -> None:
    """:func:`assert_bitwise_equal` for CNN weights on a host where the grouped convolution was measured
    invariant to the group count (:data:`CONV_EXACT_CPUS`); elsewhere the same models to float rounding
    (``allclose`` at 1e-5), since nothing there guarantees the bits."""
    from training.core.numerics import cpu_name

    if any(c in cpu_name() for c in CONV_EXACT_CPUS):
        assert_bitwise_equal(a, b, what)
        return
    if isinstance(a, Mapping):
        for k in a:
            assert_conv_equal(a[k], b[k], f"{what}[{k}]" if what else str(k))
        return
    assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-5, atol=1e-5), f"{what} on host: {host()}"
