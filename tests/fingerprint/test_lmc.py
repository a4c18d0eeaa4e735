"""lmc-barrier's default resolution finds a path's maximum within 2%, where the old 5-point grid did not."""

from __future__ import annotations

import math

import torch

from fingerprint.extractors.mechanistic import _max_on_path
from fingerprint.registry import get_extractor

# barrier curves on [0, 1] (0 at both ends) with their true maxima, one per pair
PEAKS = [0.1, 0.37, 0.5, 0.63, 0.88, 0.3, 0.7]
WIDTHS = [0.12, 0.08, 0.2, 0.12, 0.1, 0.3, 0.1]  # as narrow as a third of the grid spacing; a narrower
# bump that the grid does not see at all can be missed entirely (docs/extractors.md)


def _curves(alpha: torch.Tensor) -> torch.Tensor:
    """``alpha [7, ...] -> [7, ...]``: Gaussian bumps tapered to 0 at both ends, ``(1 + i) exp(-((a - mu_i) / w_i)^2)
    sin(pi a)``, and a skewed one, ``a (1 - a)^2 * 27 / 4`` (maximum 1 at a = 1/3), in the last slot."""
    i = torch.arange(len(PEAKS), dtype=torch.float64)
    a = alpha.double()
    shape = (-1,) + (1,) * (a.dim() - 1)
    i = i.reshape(shape)
    mu, w = torch.tensor(PEAKS, dtype=torch.float64).reshape(shape), torch.tensor(WIDTHS, dtype=torch.float64).reshape(shape)
    out = (1 + i) * torch.exp(-(((a - mu) / w) ** 2)) * torch.sin(math.pi * a)
    out[-1] = a[-1] * (1 - a[-1]) ** 2 * 27 / 4
    return out


def _true_max() -> torch.Tensor:
    fine = torch.linspace(0, 1, 200001, dtype=torch.float64)  # steps of 5e-6
    return _curves(fine.expand(len(PEAKS), -1)).max(1).values


def test_default_resolution_finds_the_maximum_within_two_percent():
    spec = get_extractor("lmc-barrier")
    n_points, refine = spec.params["n_points"], spec.params["refine"]
    alphas = torch.linspace(0, 1, n_points)
    truth = _true_max()
    found = _max_on_path(_curves, alphas, len(PEAKS), refine)
    assert ((truth - found) / truth).max() < 0.02, ((truth - found) / truth)
    assert (found <= truth * (1 + 1e-6)).all()  # a point on the curve, never above its maximum
    grid_only = _max_on_path(_curves, alphas, len(PEAKS), 0)
    assert ((truth - grid_only) / truth).max() > 0.2  # the bumps between grid points are what the old default missed
    assert math.isclose(float(found[-1]), 1.0, rel_tol=0.02)
