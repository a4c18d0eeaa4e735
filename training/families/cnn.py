"""Batched small CNN for small images (e.g. 8x8 digits).

``conv{i}`` (3x3, same padding) + activation for each entry of ``channels``, then 2x2 average
pooling, optional fully connected ``fc{i}`` layers, then ``out``. The population runs as one
grouped convolution per layer (``groups = n_models``), the standard way to batch independent convs
(one model as one of two groups: :func:`_conv`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.core.errors import UserError
from training.core.validate import positive
from training.families.base import (
    HOMOGENEOUS_ACTIVATIONS,
    Family,
    HookPoints,
    get_activation,
    register_family,
)
from training.families.layers import dense_layers, linear


@register_family
@dataclass
class CNNFamily(Family):
    """Small conv net for images: 3x3 convs, 2x2 average pooling, optional dense layers."""

    name = "cnn"
    trains_in_threads = True
    readout_layer = "out"
    input_shape: tuple[int, ...] = (1, 8, 8)
    n_out: int = 10
    channels: list[int] = field(default_factory=lambda: [8, 16])
    kernel: int = 3
    fc: list[int] = field(default_factory=list)
    activation: str = "relu"
    init_scale: float = 1.0

    def validate(self) -> None:
        if len(self.input_shape) != 3:
            raise UserError(f"arch 'cnn' needs image inputs [C, H, W], the task gives {list(self.input_shape)}")
        if not self.channels or any(c <= 0 for c in self.channels) or any(h <= 0 for h in self.fc):
            raise UserError("model.channels must be a non-empty list of positive ints (and model.fc positive)")
        if self.kernel % 2 != 1 or self.kernel <= 0:
            raise UserError(f"model.kernel must be a positive odd int, got {self.kernel}")
        positive("model", "init_scale", self.init_scale)
        get_activation(self.activation)

    def _convs(self) -> list[tuple[str, int, int]]:
        cin = self.input_shape[0]
        out = []
        for i, c in enumerate(self.channels):
            out.append((f"conv{i}", cin, c))
            cin = c
        return out

    def _flat_dim(self) -> int:
        _, h, w = self.input_shape
        return self.channels[-1] * (h // 2) * (w // 2)

    def _dense(self) -> list[tuple[str, int, int]]:
        dims = [self._flat_dim(), *self.fc]
        layers = [(f"fc{i}", dims[i], dims[i + 1]) for i in range(len(self.fc))]
        return layers + [("out", dims[-1], self.n_out)]

    def param_shapes(self):
        k = self.kernel
        shapes = {}
        for name, cin, cout in self._convs():
            shapes[f"{name}.weight"] = (cout, cin, k, k)
            shapes[f"{name}.bias"] = (cout,)
        for name, fi, fo in self._dense():
            shapes[f"{name}.weight"] = (fo, fi)
            shapes[f"{name}.bias"] = (fo,)
        return shapes

    def init_one(self, gen):
        out = {}
        for name, shape in self.param_shapes().items():
            wshape = self.param_shapes()[name.replace(".bias", ".weight")]
            fan_in = math.prod(wshape[1:])
            bound = self.init_scale / math.sqrt(fan_in)
            out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        return out

    def activation_names(self):
        names = []
        for name, _, _ in self._convs():
            names += [f"{name}.pre", f"{name}.post"]
        names.append("pool")
        for name, _, _ in self._dense()[:-1]:
            names += [f"{name}.pre", f"{name}.post"]
        return names + ["out"]

    def forward(self, params, x, capture: Sequence[str] = (), edit: Mapping[str, Callable] | None = None):
        x, shared = self._split_x(x)
        hooks = HookPoints(capture, edit)
        n = params["out.weight"].shape[0]
        act = get_activation(self.activation)
        if shared:
            B = x.shape[0]
            h = x  # [B, C, H, W]; the first conv needs no grouping
        else:
            B = x.shape[1]
            h = x.transpose(0, 1).reshape(B, n * x.shape[2], *x.shape[3:])  # [B, n*C, H, W]
        for i, (name, cin, cout) in enumerate(self._convs()):
            w = params[f"{name}.weight"]
            w = w.reshape(n * cout, cin, *w.shape[3:])
            pre = _conv(h, w, params[f"{name}.bias"].reshape(-1), self.kernel // 2, 0 if (shared and i == 0) else n)
            # conv maps run grouped, [B, n*C, H, W]; their hook points see [n, B, C, H, W]
            view = lambda t, c=cout: t.reshape(B, n, c, *t.shape[2:]).transpose(0, 1)  # noqa: E731
            unview = lambda a: a.transpose(0, 1).reshape(B, -1, *a.shape[3:])  # noqa: E731
            pre = hooks(f"{name}.pre", pre, view, unview)
            h = hooks(f"{name}.post", act(pre), view, unview)
        h = F.avg_pool2d(h, 2)  # [B, n*C, H/2, W/2]
        h = hooks("pool", h.reshape(B, n, -1).transpose(0, 1))  # [n, B, flat]
        dense = self._dense()
        h = dense_layers(h, params, [name for name, _, _ in dense[:-1]], act, hooks)
        out = hooks("out", linear(h, params["out.weight"], params["out.bias"]))
        return out, hooks.acts

    def module(self) -> nn.Module:
        return CNNModule(self)

    def step_flops(self, batch_size: int) -> float:
        # each conv at every pixel (same padding; pooling comes after the last), then the dense layers
        _, h, w = self.input_shape
        convs = sum(self.kernel**2 * cin * cout * h * w for _, cin, cout in self._convs())
        return 6.0 * batch_size * (convs + sum(fi * fo for _, fi, fo in self._dense()))

    def hidden_permutable(self):
        groups = {}
        convs = self._convs()
        for i, (name, _, _) in enumerate(convs[:-1]):
            groups[name] = [(f"{name}.weight", 0), (f"{name}.bias", 0), (f"{convs[i + 1][0]}.weight", 1)]
        dense = self._dense()
        for i, (name, _, _) in enumerate(dense[:-1]):
            groups[name] = [(f"{name}.weight", 0), (f"{name}.bias", 0), (f"{dense[i + 1][0]}.weight", 1)]
        return groups

    def hidden_rescalable(self):
        """The permutation groups, and the last conv's channels, which the first dense layer reads after
        average pooling (homogeneous) and flattening as blocks of columns, channel-major."""
        if self.activation not in HOMOGENEOUS_ACTIVATIONS:
            return {}
        groups = self.hidden_permutable()
        if self.channels:
            last = self._convs()[-1][0]
            groups[last] = [(f"{last}.weight", 0), (f"{last}.bias", 0), (f"{self._dense()[0][0]}.weight", 1)]
        return groups


def _conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding: int, groups: int) -> torch.Tensor:
    """``F.conv2d`` of the population's grouped layout (``groups`` models; ``0``: shared inputs, one
    convolution for every model). A single model of per-model inputs (``groups = 1``) convolves as
    the first of two groups (the second a copy whose output is dropped):
    one group takes another path in the input gradient, so a model alone ended 1e-7 away from the
    same seeds in a population after 6 steps; two or more groups gave every model the same bits
    (``tests/training/test_exactness.py``). The copy's gradients are exact zeros."""
    if groups != 1:
        return F.conv2d(h, w, b, padding=padding, groups=max(groups, 1))
    out = F.conv2d(torch.cat([h, h], 1), torch.cat([w, w]), torch.cat([b, b]), padding=padding, groups=2)
    return out[:, : w.shape[0]]


class CNNModule(nn.Module):
    """Single-model view of :class:`CNNFamily` (same parameter names)."""

    def __init__(self, fam: CNNFamily):
        super().__init__()
        self.fam = fam
        for name, cin, cout in fam._convs():
            setattr(self, name, nn.Conv2d(cin, cout, fam.kernel, padding=fam.kernel // 2))
        for name, fi, fo in fam._dense():
            setattr(self, name, nn.Linear(fi, fo))
        self.act = get_activation(fam.activation)

    def forward(self, x):
        h = x
        for name, _, _ in self.fam._convs():
            h = self.act(getattr(self, name)(h))
        h = F.avg_pool2d(h, 2).flatten(1)
        for name, _, _ in self.fam._dense()[:-1]:
            h = self.act(getattr(self, name)(h))
        return self.out(h)
