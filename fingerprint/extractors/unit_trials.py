"""The unit trials of :mod:`fingerprint.extractors.shifts`: symmetries of single units, and of pairs
of weights, that a module's own forward hides, tried on the probes like the shifts.

- A layer an eval-mode batch norm reads: its units' scales with the norm's running statistics, its
  bias's shift with the running mean (:func:`unit_candidates`' ``norms``).
- Units a positively homogeneous activation passes on: a layer's units (or a norm's affine units)
  times ``c`` with the next layer's columns over ``c`` (``pairs``).
- Entries of two weights of one submodule that the function reads only through their sum, such as
  ``nn.GRU`` / ``nn.LSTM``'s ``bias_ih`` and ``bias_hh`` (:func:`sum_candidates`): one can be moved into
  the other.
- A layer or norm whose output several layers read (a layer norm feeding separate ``q``, ``k`` and ``v``
  projections, found by following the module's forward: :func:`fanout_candidates`): its units times
  ``c`` with every reader's columns over ``c``.
- An embedding's features mixed by any invertible ``A`` with the one layer that reads them taking
  ``A^-T`` on its columns (:func:`embedding_candidates`): ``nn.Embedding -> nn.LSTM``'s input weights.

Each is kept only when its trials move the outputs by at most ``shifts.INVISIBLE`` of what a random
change of its weights moves them, on every tried model, and then on every model of the batch.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

SUM_ENTRIES = 512  # per-entry sum trials only for weights of at most this many entries


def owner_of(k: str) -> str:
    """The submodule that owns parameter ``k`` (``fc1`` for ``fc1.weight``; ``""`` at the top), a
    parametrization's tensors counted as their module's (``fc1.parametrizations.weight.original1``:
    ``fc1``, beside ``fc1.bias``; ``weight_norm``, ``spectral_norm``)."""
    owner = k.rsplit(".", 1)[0] if "." in k else ""
    return re.sub(r"(^|\.)parametrizations\.[^.]+$", "", owner)


def row_scaled(b: dict[str, torch.Tensor], p: str, c: torch.Tensor) -> dict:
    """Each row of weight ``p`` times its own factor ``c [m, rows]``: unseen where the module normalizes
    the rows itself (``weight_norm``'s direction ``v``; a layer a train-mode batch norm reads)."""
    return {p: unit_scaled(b[p], c, 0)}


def unit_candidates(params: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], firsts: dict[str, list[str]],
                    matrix: dict[str, str]) -> tuple[list[tuple[str, tuple[str, ...], str, str]], list[tuple[str, tuple[str, ...], str]]]:
    """What the unit trials try, from :func:`firsts_and_matrices`: each layer (a matrix or kernel, ``matrix``'s
    owners) against each batch norm's running statistics of as many units (``(layer, params, running_mean,
    running_var)``), and each layer or norm of ``firsts`` against each layer reading as many inputs
    (``(first, params, next_weight)``; a Conv's channels against a Linear's columns in blocks, as a flatten
    lays them out)."""
    def units(ps: list[str]) -> int:
        return int(weights[ps[0]].shape[1])

    stats = []
    for k, v in sorted(params.items()):
        var = k[: -len("running_mean")] + "running_var"
        if k.endswith("running_mean") and var in params and v.is_floating_point() and v.dim() == 2 == params[var].dim():
            stats.append((k, var, int(v.shape[1])))
    norms = [(layer, tuple(ps), mean, var) for layer, ps in firsts.items() if layer in matrix
             for mean, var, n in stats if units(ps) == n]
    pairs = []
    for first, ps in firsts.items():
        for second in matrix:
            n, cols, w = units(ps), int(weights[matrix[second]].shape[2]), weights[ps[0]]
            if second != first and (cols == n or (w.dim() >= 4 and weights[matrix[second]].dim() == 3 and cols % n == 0)):
                pairs.append((first, tuple(ps), matrix[second]))
    return norms, pairs


def firsts_and_matrices(weights: dict[str, torch.Tensor], layers: dict[str, list[str]]
                        ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The submodules whose units a unit trial scales (layers whose weights all have one row per unit, and
    norms' affine units: ``{owner: [param, ...]}``, the matrix first) and each layer's matrix (``{owner: param}``)."""
    def size(p: str) -> tuple[int, int]:
        return weights[p].dim(), weights[p].numel()

    matrix = {layer: max(ps, key=size) for layer, ps in layers.items()}
    ordered = {layer: sorted(ps, key=lambda p: (-size(p)[0], -size(p)[1], p)) for layer, ps in layers.items()}
    firsts = {layer: ps for layer, ps in ordered.items() if all(weights[p].shape[1] == weights[ps[0]].shape[1] for p in ps)}
    affine: dict[str, list[str]] = {}
    for k, v in sorted(weights.items()):
        if owner_of(k) not in layers and v.is_floating_point():
            affine.setdefault(owner_of(k), []).append(k)
    firsts |= {o: sorted(ps, key=lambda p: not p.endswith("weight")) for o, ps in affine.items()
               if all(weights[p].dim() == 2 and weights[p].shape[1] == weights[ps[0]].shape[1] for p in ps)}
    return firsts, matrix


def bias_of(ps: tuple[str, ...], weights: dict[str, torch.Tensor]) -> list[str]:
    """A layer's bias among its weights ``ps`` (one value per unit, named ``bias``), as a list of at most one."""
    return [p for p in ps if p.endswith("bias") and weights[p].dim() == 2][:1]


def unit_factors(w: torch.Tensor, spread: float, g: torch.Generator, up: bool = False) -> torch.Tensor:
    """``[m, units]`` random positive factors, one per unit of ``w [m, units, ...]``: ``exp(spread * N(0, 1))``;
    ``up``: ``exp(spread * |N(0, 1)|)``, at least 1 (a running variance scaled down would meet the norm's ``eps``)."""
    z = torch.randn(w.shape[0], w.shape[1], generator=g, dtype=torch.float64)
    return (z.abs() if up else z).mul(spread).exp().to(w.device)


def unit_scaled(w: torch.Tensor, c: torch.Tensor, axis: int, power: int = 1) -> torch.Tensor:
    """``w [m, ...]`` with its entries along per-model ``axis`` times ``c [m, units] ** power`` (a Linear's
    columns after a flattened Conv: whole blocks per unit, channel-major), in float64, cast back."""
    size = w.shape[1 + axis]
    c = c.pow(power).repeat_interleave(size // c.shape[1], dim=1)
    shape = [w.shape[0]] + [1] * (w.dim() - 1)
    shape[1 + axis] = size
    return (w.double() * c.reshape(shape)).to(w.dtype)


def norm_eps(family: Any, var: str) -> float:
    """The ``eps`` of the norm that owns running variance ``var``, read from the family's module when it
    has one (an imported module's ``template()``), else torch's default ``1e-5``."""
    try:
        return float(family.template().get_submodule(owner_of(var)).eps)
    except Exception:  # noqa: BLE001 - no module, or no eps on it: torch's default
        return 1e-5


def norm_scaled(b: dict[str, torch.Tensor], ps: tuple[str, ...], mean: str, var: str, c: torch.Tensor, eps: float) -> dict:
    """A layer's units times ``c`` with its norm's running mean times ``c`` and ``var + eps`` times ``c**2``."""
    return {p: unit_scaled(b[p], c, 0) for p in ps} | {mean: unit_scaled(b[mean], c, 0),
                                                       var: (unit_scaled(b[var].double() + eps, c, 0, 2) - eps).to(b[var].dtype)}


def mean_shifted(b: dict[str, torch.Tensor], bias: str, mean: str, d: torch.Tensor) -> dict:
    return {bias: b[bias] + d, mean: b[mean] + d}


def sum_candidates(weights: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """Pairs of per-unit weights (``[m, n]``) of one submodule with the same shape: ``(p, q)``, ``p < q``."""
    vec = sorted(k for k, v in weights.items() if v.dim() == 2 and v.is_floating_point())
    return [(p, q) for i, p in enumerate(vec) for q in vec[i + 1:]
            if owner_of(p) == owner_of(q) and weights[p].shape == weights[q].shape]


def summed(b: dict[str, torch.Tensor], p: str, q: str, d: torch.Tensor) -> dict:
    """``p`` plus ``d`` and ``q`` less it: unseen where the function reads them only through their sum."""
    return {p: b[p] + d, q: b[q] - d}


def folded(params: dict[str, torch.Tensor], p: str, q: str, entries: tuple[int, ...] | None) -> dict:
    """``q``'s ``entries`` (``None``: all) moved into ``p``'s: ``p + q`` there and ``q`` 0, float64, cast back."""
    a, b = params[p].double(), params[q].double()
    mask = torch.ones(a.shape[1], dtype=torch.bool, device=a.device)
    if entries is not None:
        mask = torch.zeros_like(mask)
        mask[list(entries)] = True
    return {p: torch.where(mask, a + b, a).to(params[p].dtype), q: torch.where(mask, torch.zeros_like(b), b).to(params[q].dtype)}


def embedding_candidates(family: Any, weights: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """``(embedding, reader)``: each ``nn.Embedding`` of the family's module (an import's ``template()``;
    none for a built-in family) against each weight matrix ``[m, out, d]`` reading as many features."""
    try:
        embeddings = [f"{n}.weight" for n, mod in family.template().named_modules() if isinstance(mod, nn.Embedding)]
    except Exception:  # noqa: BLE001 - no module: nothing to try
        return []
    return [(e, w) for e in embeddings if e in weights for w, v in sorted(weights.items())
            if w != e and v.dim() == 3 and v.shape[2] == weights[e].shape[2]]


def mixing_matrix(m: int, d: int, spread: float, g: torch.Generator) -> torch.Tensor:
    """``[m, d, d]`` random invertible matrices near the identity: ``I + spread * N(0, 1) / sqrt(d)``."""
    return torch.eye(d, dtype=torch.float64) + spread * torch.randn(m, d, d, generator=g, dtype=torch.float64) / d**0.5


def embedding_mixed(b: dict[str, torch.Tensor], e: str, w: str, a: torch.Tensor) -> dict:
    """The embedding's features mixed by ``a [m, d, d]`` (``E a``) and the reader's columns by ``a^-T``:
    the reader sees ``W a^-T a^T e = W e``."""
    a = a.to(b[e].device)
    return {e: (b[e].double() @ a).to(b[e].dtype),
            w: (b[w].double() @ torch.linalg.inv(a).transpose(1, 2)).to(b[w].dtype)}


def fanout_candidates(family: Any, x: torch.Tensor, firsts: dict[str, list[str]], matrix: dict[str, str],
                      weights: dict[str, torch.Tensor]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """``(first, params, readers)``: each submodule of ``firsts`` (a layer or a norm, by owner name) whose
    output tensor two or more submodules of ``matrix`` take as their input, each reading as many
    features as ``first`` has units, found by one forward pass of the family's module (an import's
    ``template()``) on two probe inputs with hooks that keep every output (so no tensor's identity is
    reused). Empty for a family without a module, or when the pass fails."""
    try:
        template = family.template()
    except Exception:  # noqa: BLE001 - no module: nothing to follow
        return []
    modules = dict(template.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str):
        def record(_m, args, out):
            if args and isinstance(args[0], torch.Tensor):
                inputs.setdefault(name, args[0])
            if isinstance(out, torch.Tensor):
                outputs.setdefault(name, out)
        return record

    try:
        for name in set(firsts) | set(matrix):
            if name in modules:
                handles.append(modules[name].register_forward_hook(hook(name)))
        with torch.no_grad():
            template(x[:2].to(next(template.parameters()).device))
    except Exception:  # noqa: BLE001 - a forward this cannot follow: nothing found
        return []
    finally:
        for h in handles:
            h.remove()
    out = []
    for first, ps in firsts.items():
        readers = tuple(sorted(matrix[n] for n in matrix if n != first and n in inputs and first in outputs
                               and inputs[n] is outputs[first]))
        units = int(weights[ps[0]].shape[1])
        if len(readers) >= 2 and all(weights[r].dim() == 3 and weights[r].shape[2] == units for r in readers):
            out.append((first, tuple(ps), readers))
    return out


def fanout_scaled(b: dict[str, torch.Tensor], ps: tuple[str, ...], readers: tuple[str, ...], c: torch.Tensor) -> dict:
    """``first``'s units times ``c`` and every reader's columns over ``c`` (a pair: one reader)."""
    return {p: unit_scaled(b[p], c, 0) for p in ps} | {r: unit_scaled(b[r], 1 / c, 1) for r in readers}
