"""Small helpers shared by the built-in extractors."""

from __future__ import annotations

from typing import Any

import torch

from training.core import seeds as rng
from training.core.errors import UserError


def read_outputs(models: Any, out: torch.Tensor, transform: str) -> torch.Tensor:
    """The models' outputs ``out`` as the output fingerprints read them: ``transform`` applied to class
    logits (:func:`transform_outputs`), the values themselves when the task or an imported zoo's labelled
    data say they are a regression's (an outside audit of the sixteenth session: a log-softmax of two
    regression outputs hid a +1 offset of half the models from every behavioural fingerprint)."""
    return out if models.task.regression() else transform_outputs(out, transform)


def transform_outputs(out: torch.Tensor, transform: str) -> torch.Tensor:
    """``[n, P, n_out]`` -> transformed outputs. ``logprob`` is centred over classes (shift-invariant)."""
    if transform == "logits" or out.shape[-1] == 1:
        return out
    # With a handful of classes, reducing over a leading axis vectorises across all [n, P] rows and
    # is ~5x faster than reducing each tiny last axis; with many classes the last axis is faster.
    # [n, P, C] outputs reduce over axis 1 of a class-major [n, C, P] copy (one fast transposing copy,
    # then contiguous passes; the result is read back through the transposed view).
    if out.shape[-1] > 16:
        cls, o, back = -1, out, (lambda t: t)
    elif out.dim() == 3:
        cls, o, back = 1, out.transpose(1, 2).contiguous(), (lambda t: t.transpose(1, 2))
    else:
        cls, o, back = 0, out.movedim(-1, 0), (lambda t: t.movedim(0, -1))
    if transform == "logprob":
        lp = torch.log_softmax(o, cls)
        mean = lp.mean(cls, keepdim=True)
        return back(lp - mean if lp.requires_grad else lp.sub_(mean))  # learned-queries differentiates through it
    if transform == "prob":
        return back(torch.softmax(o, cls))
    raise UserError(f"unknown transform '{transform}' (valid: logits, logprob, prob)")


def correlation_normalize(feat: torch.Tensor) -> torch.Tensor:
    """Centre and scale each row to unit norm: the dot product of two rows is their Pearson correlation."""
    feat = feat - feat.mean(1, keepdim=True)
    return feat / feat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def probes(models: Any, probe_set: str, n_probes: int) -> torch.Tensor:
    names = models.task.probe_names()
    if probe_set not in names:
        if not names:  # an imported zoo given no probe sets
            raise UserError(f"probe set '{probe_set}' is needed, but this imported zoo has no probe sets (no probes.h5 in "
                            "the zoo): re-import it with `--probes MODULE:FUNCTION` or a file of named inputs (`Zoo.from_modules(probes=...)` in Python)")
        raise UserError(f"unknown probe set '{probe_set}' for task '{models.task.name}' (valid: {', '.join(names)})")
    x = models.task.probes(probe_set)
    return x[:n_probes] if n_probes > 0 else x


def generator(seed: int) -> torch.Generator:
    return rng.generator(rng.EXTRACT, seed)


def default_layer(models: Any) -> str:
    """The last hidden representation of a family (``layer{L-1}.post``, ``pool``, ``block{L-1}.resid_post``);
    for an imported zoo that declares hook points (``--layers``), the last of them."""
    if models.task.layers:  # declared by the user: before any name that merely looks like a last layer
        return models.task.layers[-1]
    names = models.activation_names()
    for suffix in (".resid_post", ".post", "pool"):
        hits = [n for n in names if n.endswith(suffix)]
        if hits:
            return hits[-1]
    if not names:
        raise UserError("this architecture exposes no named activations; pass layer=NAME")
    return names[-1]


def distribution_summary(v: torch.Tensor, bins: int) -> torch.Tensor:
    """``[..., m]`` values -> ``[..., bins + 2]``: their mean, std and ``bins`` interior quantiles
    (evenly spaced levels, the ends left out) over the last axis. The levels are made on ``v``'s
    device, so the summary runs wherever the values are."""
    q = torch.linspace(0, 1, bins + 2, dtype=v.dtype, device=v.device)[1:-1]
    return torch.cat([v.mean(-1, keepdim=True), v.std(-1, keepdim=True), torch.quantile(v, q, dim=-1).movedim(0, -1)], -1)


def hidden_layers(models: Any, extractor: str) -> list[str]:
    """Every hidden activation: all named ones but the output and attention patterns (probabilities
    over positions, not a representation), else the task's declared layers; a one-line error naming
    ``extractor`` when there are none."""
    names = [n for n in models.activation_names() if n != "out" and not n.endswith(".pattern")] or list(models.task.layers)
    if not names:
        raise UserError(f"{extractor}: this architecture exposes no named activations; pass layers=[NAME, ...]")
    return names
