"""Batched multi-layer perceptron: ``layer0 .. layer{L-1}`` hidden layers, then ``out``.

Parameters (per model): ``layer{i}.weight [width_i, fan_in]``, ``layer{i}.bias [width_i]``,
``out.weight [n_out, width_last]``, ``out.bias [n_out]`` (``nn.Linear`` layout). The population
forward is one batched matmul per layer; shared inputs broadcast instead of being copied per model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fingerprint.errors import UserError
from training.families.base import Family, get_activation, register_family


@register_family
@dataclass
class MLPFamily(Family):
    """``depth`` hidden layers of ``width`` units (or explicit ``hidden`` widths)."""

    name = "mlp"
    input_shape: tuple[int, ...] = (2,)
    n_out: int = 2
    width: int = 64
    depth: int = 2
    hidden: list[int] = field(default_factory=list)  # overrides width/depth when given
    activation: str = "relu"
    init_scale: float = 1.0

    def validate(self) -> None:
        if self.width <= 0 or self.depth < 0 or any(h <= 0 for h in self.hidden):
            raise UserError(f"model.width/depth/hidden must be positive, got width={self.width}, depth={self.depth}, hidden={self.hidden}")
        if self.init_scale <= 0:
            raise UserError(f"model.init_scale must be > 0, got {self.init_scale}")
        get_activation(self.activation)

    @property
    def widths(self) -> list[int]:
        return list(self.hidden) if self.hidden else [self.width] * self.depth

    @property
    def d_in(self) -> int:
        return math.prod(self.input_shape)

    def _layers(self) -> list[tuple[str, int, int]]:
        dims = [self.d_in, *self.widths]
        layers = [(f"layer{i}", dims[i], dims[i + 1]) for i in range(len(self.widths))]
        layers.append(("out", dims[-1], self.n_out))
        return layers

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for name, fan_in, fan_out in self._layers():
            shapes[f"{name}.weight"] = (fan_out, fan_in)
            shapes[f"{name}.bias"] = (fan_out,)
        return shapes

    def init_one(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        out = {}
        for name, fan_in, fan_out in self._layers():
            bound = self.init_scale / math.sqrt(fan_in)
            out[f"{name}.weight"] = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
            out[f"{name}.bias"] = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        return out

    def activation_names(self) -> list[str]:
        names = []
        for i in range(len(self.widths)):
            names += [f"layer{i}.pre", f"layer{i}.post"]
        return names + ["out"]

    def forward(self, params, x, capture: Sequence[str] = (), edit: Mapping[str, Callable] | None = None):
        x, shared = self._split_x(x)
        h = x.reshape(x.shape[0], -1) if shared else x.reshape(x.shape[0], x.shape[1], -1)
        act = get_activation(self.activation)
        acts: dict[str, torch.Tensor] = {}
        want = set(capture)
        edit = edit or {}
        for i in range(len(self.widths)):
            w, b = params[f"layer{i}.weight"], params[f"layer{i}.bias"]
            pre = _linear(h, w, b)
            if f"layer{i}.pre" in edit:
                pre = edit[f"layer{i}.pre"](pre)
            h = act(pre)
            if f"layer{i}.post" in edit:
                h = edit[f"layer{i}.post"](h)
            if f"layer{i}.pre" in want:
                acts[f"layer{i}.pre"] = pre
            if f"layer{i}.post" in want:
                acts[f"layer{i}.post"] = h
        out = _linear(h, params["out.weight"], params["out.bias"])
        if "out" in want:
            acts["out"] = out
        return out, acts

    def module(self) -> nn.Module:
        return MLPModule(self)

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        groups = {}
        names = [n for n, _, _ in self._layers()]
        for i, name in enumerate(names[:-1]):
            nxt = names[i + 1]
            groups[name] = [(f"{name}.weight", 0), (f"{name}.bias", 0), (f"{nxt}.weight", 1)]
        return groups


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h [B, i]`` (shared) or ``[n, B, i]``; ``w [n, o, i]``; ``b [n, o]`` -> ``[n, B, o]``."""
    if h.dim() == 2:
        return torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


class MLPModule(nn.Module):
    """Single-model view of :class:`MLPFamily` (same parameter names)."""

    def __init__(self, fam: MLPFamily):
        super().__init__()
        self.fam = fam
        for name, fan_in, fan_out in fam._layers():
            setattr(self, name, nn.Linear(fan_in, fan_out))
        self.act = get_activation(fam.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        for i in range(len(self.fam.widths)):
            h = self.act(getattr(self, f"layer{i}")(h))
        return self.out(h)
