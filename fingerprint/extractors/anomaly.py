"""Activation statistics in the style of mechanistic anomaly detection (cupbearer's Mahalanobis
detector), turned into a fingerprint: how far a model's activations on one probe set lie from the
Gaussian it fits to its own activations on another.

``activation-mahalanobis`` fits, per model and per named activation, the mean and covariance of the
activations on a reference probe set (``in_dist``), shrunk towards a multiple of the identity, and
summarises the Mahalanobis distances of a test probe set's activations to it (mean, std and
quantiles over the test inputs). Each model is measured against itself only: no population centroid,
no labels, so a row never depends on the other models. Everything runs batched over the model axis
(one Cholesky factorisation of ``[n_models, D, D]`` per layer).
"""

from __future__ import annotations

import torch

from fingerprint.extractors.common import distribution_summary, hidden_layers, probes
from fingerprint.extractors.mechanistic import at_position
from fingerprint.registry import extractor
from training.core.errors import UserError

SCALES = ("none", "median")


def mahalanobis_distances(ref: torch.Tensor, test: torch.Tensor, shrinkage: float = 0.0) -> torch.Tensor:
    """Mahalanobis distances ``[n, S]`` of ``test [n, S, D]`` to the Gaussian fitted to ``ref [n, R, D]``.

    Per model ``i``: ``mu = mean(ref[i])``, ``C = cov(ref[i])`` (divided by ``R``), regularised to
    ``(1 - shrinkage) C + shrinkage * trace(C) / D * I``, and ``d = sqrt((x - mu)^T C^-1 (x - mu))``,
    through one batched Cholesky factorisation and triangular solve, in float64.

    With ``shrinkage = 0`` (a full-rank ``C``: ``R > D``) the distances are unchanged by any
    invertible affine map ``x -> A x + b`` applied to both sets (``C -> A C A^T``). With
    ``shrinkage > 0`` the identity target breaks that for non-orthogonal ``A``: the distances are then
    unchanged only by translations, rotations, reflections, permutations of the units and an overall
    scale. A model whose reference activations are all equal (``trace(C) = 0``) gets distances
    measured against a tiny isotropic covariance (about 1e-22 with ``shrinkage = 0``: huge distances) rather than an error;
    a singular ``C`` without shrinkage gets a ridge of ``1e-10 * trace(C) / D`` for that model only.
    """
    mu, L = gaussian_fit(ref, shrinkage)
    return distances_to(mu, L, test)


def gaussian_fit(ref: torch.Tensor, shrinkage: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``[n, 1, D]`` and the Cholesky factor ``[n, D, D]`` (float64) of the regularised
    covariance of ``ref [n, R, D]``, as :func:`mahalanobis_distances` describes."""
    ref = ref.double()
    D = ref.shape[-1]
    mu = ref.mean(1, keepdim=True)
    r = ref - mu
    cov = r.transpose(1, 2) @ r / ref.shape[1]  # [n, D, D]
    eye = torch.eye(D, dtype=cov.dtype, device=cov.device)
    scale = cov.diagonal(dim1=1, dim2=2).sum(-1).div(D).clamp_min(1e-12)[:, None, None]  # [n, 1, 1]
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * eye
    L, info = torch.linalg.cholesky_ex(cov)
    if bool((info > 0).any()):  # singular without shrinkage: a small ridge for those models only (a row
        # must not depend on which other models share its batch)
        ridge = torch.where(info > 0, 1e-10, 0.0).to(cov)[:, None, None]
        L, info = torch.linalg.cholesky_ex(cov + ridge * scale * eye)
        if bool((info > 0).any()):
            raise UserError(f"activation-mahalanobis: the reference covariance of model row {int((info > 0).nonzero()[0])} "
                            "is not positive definite even with a ridge (non-finite activations?); try shrinkage > 0")
    return mu, L


def distances_to(mu: torch.Tensor, L: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distances ``[n, S]`` of ``test [n, S, D]`` to the fit ``(mu, L)`` of :func:`gaussian_fit`."""
    z = torch.linalg.solve_triangular(L, (test.double() - mu).transpose(1, 2), upper=False)  # [n, D, S]
    return z.pow(2).sum(1).sqrt()


@extractor("activation-mahalanobis", kind="mechanistic", reads="activations",
           bounds={"n_probes": (0, None), "shrinkage": (0.0, 1.0), "bins": (1, None)})
def activation_mahalanobis(models, layers: list = [], reference: str = "in_dist", probe_set: str = "ood",  # noqa: B006 - a plain, hashable default
                           n_probes: int = 0, position: str = "readout", shrinkage: float = 0.1, bins: int = 9,
                           scale: str = "none"):
    """Distances of probe activations to the model's own Gaussian fit per layer: [n, layers * (bins + 2)].

    Per hidden activation: mean, std and ``bins`` quantiles over the ``probe_set`` inputs of their
    Mahalanobis distance to the Gaussian fitted to the model's activations on ``reference``.

    Any architecture with named activations (``layers=[]``: every one but ``out`` and attention
    patterns). ``shrinkage`` pulls the covariance towards ``trace / D * I`` (needed when the layer is
    wider than the reference set or has dead units). ``scale="median"`` divides each layer's
    distances by the median distance of the reference inputs themselves (in-sample). ``position``
    picks token positions as for ``cka`` (several are joined into one vector per input). Invariant to
    translations, rotations, permutations and the overall scale of the hidden units, and with
    ``shrinkage=0`` to any invertible linear map of them; not to a nonlinear reparametrisation, to
    which probes are used, or to an anisotropic rescaling of units once ``shrinkage > 0``.
    """
    if scale not in SCALES:
        raise UserError(f"unknown scale '{scale}' for activation-mahalanobis (valid: {', '.join(SCALES)})")
    valid = models.activation_names() or list(models.task.layers)
    names = [str(n) for n in layers] or hidden_layers(models, "activation-mahalanobis")
    for name in names:
        if name not in valid:
            raise UserError(f"unknown activation '{name}' for activation-mahalanobis (valid: {', '.join(valid)})")
    if n_probes == 1:
        raise UserError("activation-mahalanobis: n_probes must be 0 (every probe) or at least 2 (a spread over inputs needs two)")
    x_ref = probes(models, reference, n_probes)
    x_test = probes(models, probe_set, n_probes)
    acts_ref = models.activations(x_ref, names)
    acts_test = models.activations(x_test, names)
    cols, used = [], {}
    for name in names:
        a, used[name] = at_position(models, acts_ref[name], position)
        b, _ = at_position(models, acts_test[name], position)
        a, b = a.reshape(a.shape[0], a.shape[1], -1), b.reshape(b.shape[0], b.shape[1], -1)
        mu, L = gaussian_fit(a, shrinkage)  # one factorisation per layer, for both sets
        d = distances_to(mu, L, b)  # [n, S]
        if scale == "median":
            d = d / distances_to(mu, L, a).median(1, keepdim=True).values.clamp_min(1e-30)
        cols.append(distribution_summary(d, bins))
    return torch.cat(cols, 1).float(), {"layers": names, "positions": used}
