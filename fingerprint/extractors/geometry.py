"""Basis-free mechanistic fingerprints: how a model's output depends on its input positions, and the
shape of its hidden representations, in quantities no choice of basis or of features can change.

``input-grad-symmetry`` generalises the clock/pizza paper's gradient symmetricity to any model whose
input is a sequence: for probe inputs and random output classes, the cosine similarity between the
gradients of that class's logit with respect to the input representation at two different
positions (a model whose output depends on an order-free combination of its tokens has cosines
near 1). ``activation-spectrum`` reads the eigen-spectrum of the covariance of hidden activations
over a probe set and its effective rank: unchanged by any rotation or permutation of the hidden
units. Neither reads a label, a diagnostic or anything task-specific beyond the probe sets, and both
run on every model at once (one batched forward and backward pass, batched eigenvalues).
"""

from __future__ import annotations

from typing import Any

import torch

from fingerprint.extractors.common import (
    distribution_summary,
    generator,
    hidden_layers,
    probes,
)
from fingerprint.extractors.mechanistic import at_position
from fingerprint.registry import extractor
from training.core.errors import UserError
from training.families.base import supports_edit

SUMMARIES = ("quantiles", "histogram")


def _input_layer(models: Any, layer: str) -> str:
    """The activation whose gradient is read: ``layer``, else the first named one (``embed`` for a
    transformer: token plus position embedding, the input as the network sees it)."""
    names = models.activation_names()
    if layer:
        if layer not in names:
            raise UserError(f"unknown activation '{layer}' for input-grad-symmetry (valid: {', '.join(names)})")
        return layer
    if not names:
        raise UserError("input-grad-symmetry: this architecture exposes no named activations; pass layer=NAME")
    return names[0]


def position_gradients(models: Any, x: torch.Tensor, classes: torch.Tensor, layer: str, chunk: int = 256) -> torch.Tensor:
    """Gradients ``[n, P, T, d]`` of the logit of class ``classes[i]`` (at the last readout position)
    for probe ``x[i]`` with respect to activation ``layer`` (``[n, P, T, d]``), for every model.

    The activation is replaced by a leaf of the autograd graph through the family's ``edit`` hook,
    so the same code serves any family that supports interventions. One backward pass per chunk of
    probes gives every model and probe its own gradient: rows of different models and probes do not
    interact (no batch statistics), so the gradient of the sum is the stack of the gradients.
    """
    if not supports_edit(models.family):
        raise UserError(f"input-grad-symmetry needs a family whose activations can be replaced (edit=); "
                        f"architecture '{models.family.name}' has none")
    fam = models.family
    params = {k: v.detach() for k, v in models.params.items()}
    out = []
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk].to(models.device)
        cs = classes[s : s + chunk].to(models.device)
        leaf: list[torch.Tensor] = []

        def grab(t: torch.Tensor) -> torch.Tensor:
            leaf.append(t.detach().requires_grad_(True))
            return leaf[-1]

        with torch.enable_grad():
            y, _ = fam.forward(params, xs, edit={layer: grab})
            y = y.reshape(y.shape[0], y.shape[1], -1, y.shape[-1])[:, :, -1]  # [n, B, n_out]: the last readout position
            sel = y.gather(-1, cs.expand(y.shape[0], -1).unsqueeze(-1)).sum()
            (g,) = torch.autograd.grad(sel, leaf[0])
        out.append(g.detach())
    g = torch.cat(out, 1)
    if g.dim() != 4 or g.shape[2] < 2:
        raise UserError(f"input-grad-symmetry needs an activation with at least two input positions "
                        f"([n, inputs, positions, d]); '{layer}' has shape {list(g.shape[1:])}")
    return g


def _summarise(v: torch.Tensor, summary: str, bins: int) -> torch.Tensor:
    """``[n, m]`` values in [-1, 1] -> ``[n, bins + 2]``: their mean, std and quantiles (or histogram)."""
    if summary == "quantiles":
        return distribution_summary(v, bins)
    # the fraction of values in each of ``bins`` equal bins of [-1, 1], batched over models
    idx = ((v.clamp(-1, 1) + 1) / 2 * bins).long().clamp_max(bins - 1)
    dist = torch.zeros(len(v), bins, dtype=v.dtype, device=v.device).scatter_add_(1, idx, torch.ones_like(v)) / v.shape[1]
    return torch.cat([v.mean(1, keepdim=True), v.std(1, keepdim=True), dist], 1)


@extractor("input-grad-symmetry", kind="mechanistic", reads="gradients", bounds={"n_probes": (0, None), "bins": (1, None)})
def input_grad_symmetry(models, probe_set: str = "in_dist", n_probes: int = 256, layer: str = "", summary: str = "quantiles",
                        bins: int = 9, seed: int = 0):
    """Distribution over probes, random classes and position pairs of cos(d logit_c / d h_s, d logit_c / d h_t),
    h the input representation at positions s != t: [n, bins + 2] (mean, std, quantiles or histogram).

    Any sequence model whose family supports ``edit`` and has a position axis at ``layer``: the
    built-in transformer (token or vector inputs, at ``embed``). MLPs and CNNs (no positions) and
    imported modules (no ``edit`` yet) are one-line errors. Invariant to any
    orthogonal change of basis of the input representation (a cosine of two gradients that turn
    with it); the random class of each probe is drawn from ``seed``, the same for every model.
    """
    if summary not in SUMMARIES:
        raise UserError(f"unknown summary '{summary}' for input-grad-symmetry (valid: {', '.join(SUMMARIES)})")
    layer = _input_layer(models, layer)
    x = probes(models, probe_set, n_probes)
    classes = torch.randint(0, models.task.n_out, (len(x),), generator=generator(seed))
    g = position_gradients(models, x, classes, layer).flatten(3).double()  # [n, P, T, D]
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    cos = g @ g.transpose(2, 3)  # [n, P, T, T]
    T = g.shape[2]
    i, j = torch.triu_indices(T, T, 1)
    v = cos[:, :, i, j].reshape(len(g), -1)  # [n, P * T(T-1)/2]
    return _summarise(v, summary, bins).float(), {"layer": layer, "positions": T}


def covariance_spectrum(acts: torch.Tensor) -> torch.Tensor:
    """Eigenvalues ``[n, min(P, D)]`` (descending, >= 0) of the covariance over probes of ``acts [n, P, D]``.

    From the smaller of the ``P x P`` centred Gram matrix and the ``D x D`` covariance (the same
    non-zero eigenvalues), in float64."""
    a = acts.double()
    a = a - a.mean(1, keepdim=True)
    m = a @ a.transpose(1, 2) if a.shape[1] <= a.shape[2] else a.transpose(1, 2) @ a
    return torch.linalg.eigvalsh(m / a.shape[1]).clamp_min(0).flip(-1)


@extractor("activation-spectrum", kind="mechanistic", reads="activations", bounds={"n_probes": (0, None), "top_k": (1, None)})
def activation_spectrum(models, layers: list = [], probe_set: str = "in_dist", n_probes: int = 256,  # noqa: B006 - a plain, hashable default
                        position: str = "readout", top_k: int = 16):
    """Per hidden activation: the top_k eigenvalues of its covariance over probes as fractions of the
    total variance, the effective rank exp(entropy) and the participation ratio: [n, layers * (top_k + 2)].

    Any architecture with named activations. Invariant to rotations and permutations of the hidden
    units and to their overall scale. For sequence models, ``position`` picks the token positions
    (``readout``, ``all`` joined into one vector per probe, or an index), as ``cka`` does.
    """
    names = [str(n) for n in layers] or hidden_layers(models, "activation-spectrum")
    x = probes(models, probe_set, n_probes)
    acts = models.activations(x, names)
    cols, used = [], {}
    for name in names:
        a, used[name] = at_position(models, acts[name], position)
        lam = covariance_spectrum(a.reshape(a.shape[0], a.shape[1], -1))  # [n, k]
        frac = lam / lam.sum(1, keepdim=True).clamp_min(1e-30)
        k = min(top_k, frac.shape[1])
        entropy = -(frac * frac.clamp_min(1e-30).log()).sum(1, keepdim=True)
        pr = 1.0 / frac.pow(2).sum(1, keepdim=True).clamp_min(1e-30)
        cols += [torch.nn.functional.pad(frac[:, :k], (0, top_k - k)), entropy.exp(), pr]
    return torch.cat(cols, 1).float(), {"layers": names, "positions": used}
