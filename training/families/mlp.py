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

from training.core.errors import UserError
from training.core.validate import positive
from training.families import base, kernels
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
class MLPFamily(Family):
    """``depth`` hidden layers of ``width`` units (or explicit ``hidden`` widths)."""

    name = "mlp"
    trains_in_threads = True
    readout_layer = "out"
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
        positive("model", "init_scale", self.init_scale)
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
        hooks = HookPoints(capture, edit)
        h = x.reshape(x.shape[0], -1) if shared else x.reshape(x.shape[0], x.shape[1], -1)
        h = dense_layers(h, params, [f"layer{i}" for i in range(len(self.widths))], get_activation(self.activation), hooks)
        out = hooks("out", linear(h, params["out.weight"], params["out.bias"]))
        return out, hooks.acts

    def _outputs_slice(self, params, x):
        """Feature-major and in place: each layer is ``[n, width, B]`` (``W @ h`` per model, the first
        one GEMM over the population on the shared inputs), its bias and activation applied in place,
        so a slice allocates one buffer per layer instead of three; the result is the transposed view
        ``[n, B, n_out]``."""
        act_ = _ACT_INPLACE.get(self.activation)
        if act_ is None:
            return self(params, x)
        layers = [name for name, _, _ in self._layers()]
        w, b = params[f"{layers[0]}.weight"], params[f"{layers[0]}.bias"]
        n, o, i = w.shape
        B = len(x)
        # hidden layers go into buffers kept between slices (the output layer's result is returned)
        h = torch.mm(w.reshape(n * o, i), x.reshape(B, -1).T, out=self._scratch(0, (n * o, B), x) if len(layers) > 1 else None)
        h = h.view(n, o, B).add_(b.unsqueeze(2))
        for j, name in enumerate(layers[1:], start=1):
            wj = params[f"{name}.weight"]
            out = self._scratch(j % 2, (n, wj.shape[1], B), x) if j < len(layers) - 1 else None
            h = torch.bmm(wj, act_(h), out=out).add_(params[f"{name}.bias"].unsqueeze(2))
        return h.transpose(1, 2)

    def _scratch(self, tag: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A buffer of ``shape`` with ``like``'s dtype and device, kept between calls; ``tag`` tells
        apart two buffers of one shape (a layer's input and output)."""
        key = (tag, shape, like.dtype, str(like.device))
        cache = self.__dict__.setdefault("_scratch_cache", {})  # not a dataclass field
        if key not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return cache[key]

    def value_and_grad(self, params, x, objective, grads):
        """A hand-written backward for ``relu`` / ``tanh`` MLPs on per-model inputs ``[n, B, ...]``.

        Same gradients as autograd, computed with every intermediate in buffers reused from step
        to step and every weight gradient written straight into the optimiser's flat buffer: at
        training sizes each ``[n, B, width]`` activation is megabytes, and allocating fresh ones
        (and copying gradients afterwards) costs about as much as the matmuls. Only the objective's
        gradient with respect to the outputs ``[n, B, n_out]`` goes through autograd.

        Two layouts keep the thin matmuls off MKL's slow paths: the first layer carries its bias as
        an extra input column of ones (``[x, 1] @ [W, b]^T``: one matmul and no bias pass forward, and
        ``[x, 1]^T @ g`` gives weight and bias gradients in one ``[d_in + 1, B] @ [B, width]``
        product); and the outputs are computed class-major, ``W_out @ h^T`` ``[n, n_out, B]``, handed
        to the objective as the transposed view ``[n, B, n_out]`` (a cross-entropy over a leading
        class axis is then a contiguous pass). Going down, each layer's input gradient is formed a
        cache-sized slice of models at a time and consumed in cache (see :func:`_backward_through`).
        """
        x, shared = self._split_x(x)
        if shared or self.activation not in _BACKWARD_FROM_OUTPUT or not self.widths:
            return super().value_and_grad(params, x, objective, grads)
        n, B = x.shape[:2]
        ws = self._workspace(n, B, x.dtype, x.device)
        fused = self._fused_kernels(x)
        if fused is not None:
            return self._value_and_grad_fused(fused, params, x, objective, grads, ws)
        acts, dacts = ws["acts"], ws["dacts"]
        act_, dact_ = _BACKWARD_FROM_OUTPUT[self.activation]
        layers = [name for name, _, _ in self._layers()]
        first, last, d = layers[0], layers[-1], self.d_in
        x1, w1 = ws["x1"], ws["w1"]  # [n, B, d_in + 1] (last column ones), [n, width0, d_in + 1]
        with torch.no_grad():
            x1[..., :d].copy_(x.reshape(n, B, d))
            w1[..., :d].copy_(params[f"{first}.weight"])
            w1[..., d].copy_(params[f"{first}.bias"])
            act_(torch.bmm(x1, w1.transpose(1, 2), out=acts[0]))
            hs = [x1, acts[0]]  # the input of each layer
            for name, a in zip(layers[1:-1], acts[1:]):
                torch.bmm(hs[-1], params[f"{name}.weight"].transpose(1, 2), out=a)
                act_(a.add_(params[f"{name}.bias"].unsqueeze(1)))
                hs.append(a)
            out_t = torch.bmm(params[f"{last}.weight"], hs[-1].transpose(1, 2), out=ws["out"])
            out = out_t.add_(params[f"{last}.bias"].unsqueeze(2)).transpose(1, 2)
        total, g = _objective_and_grad(objective, out, grads[f"{last}.bias"])
        with torch.no_grad():
            for i in reversed(range(1, len(layers))):
                name = layers[i]
                torch.bmm(g.transpose(1, 2), hs[i], out=grads[f"{name}.weight"])
                below = grads[f"{layers[i - 1]}.bias"] if i > 1 else None  # layer 0's: the ones column
                g = _backward_through(g, params[f"{name}.weight"], hs[i], dacts[i - 1], dact_, below)
            g1 = torch.bmm(x1.transpose(1, 2), g, out=ws["g1"])  # [n, d_in + 1, width0]
            grads[f"{first}.weight"].copy_(g1[:, :d].transpose(1, 2))
            grads[f"{first}.bias"].copy_(g1[:, d])
        return total

    def step_flops(self, batch_size: int) -> float:
        return 6.0 * batch_size * self.n_params()

    def step_floats(self, batch_size: int) -> int:
        # parameters with their gradient and Adam moments; the input, each hidden activation and its
        # gradient, the outputs and theirs
        return 4 * self.n_params() + batch_size * (self.d_in + 2 * sum(self.widths) + 2 * self.n_out)

    def training_path(self, device: str = "cpu") -> str:
        """``"fused kernels"`` where :meth:`_fused_kernels` applies to a float32 step on ``device``
        and the kernels build (:mod:`training.families.kernels`), else ``"torch"``."""
        if device != "cpu":
            return "torch"
        return "fused kernels" if self._fused_kernels(torch.empty(1, 1, self.d_in)) is not None else "torch"

    def _fused_kernels(self, x: torch.Tensor):
        """The fused CPU kernels (:mod:`training.families.kernels`) when they apply to this step:
        ReLU, float32 on the CPU, thin first and output layers (where MKL is slow), and widths the
        kernels' 16-float vectors divide; else ``None``."""
        if (self.activation != "relu" or x.device.type != "cpu" or x.dtype != torch.float32
                or self.d_in > _THIN or self.n_out > _THIN or self.widths[0] % 16 or self.widths[-1] % 16):
            return None
        return kernels.ops()

    def _value_and_grad_fused(self, K, params, x, objective, grads, ws):
        """:meth:`value_and_grad` with the thin layers in fused kernels: the first layer's matmul,
        bias and ReLU in one pass (``first_forward``); the last hidden layer's bias and ReLU with the
        output layer, reading its pre-activation without storing the activation (``out_forward``);
        going down, the output layer's weight gradient, its input gradient, the ReLU backward (on
        the activation recomputed from the pre-activation) and the hidden bias gradient in one pass
        (``out_backward``); and into the first layer, a cache-sized slice of models at a time, the
        ReLU backward and the first layer's weight and bias gradients in one pass over ``g @ W``
        (``first_backward``). The hidden-to-hidden matmuls are MKL's, as in the torch path."""
        n, B = x.shape[:2]
        acts, dacts = ws["acts"], ws["dacts"]
        layers = [name for name, _, _ in self._layers()]
        first, last = layers[0], layers[-1]
        with torch.no_grad():
            xs = x.reshape(n, B, self.d_in).contiguous()
            K.first_forward(xs, params[f"{first}.weight"], params[f"{first}.bias"], acts[0])
            hs = [xs, acts[0]]  # the input of each layer
            for name, a in zip(layers[1:-1], acts[1:]):
                torch.bmm(hs[-1], params[f"{name}.weight"].transpose(1, 2), out=a)
                if a is not acts[-1]:  # the last hidden layer's bias and ReLU are out_forward's
                    torch.relu_(a.add_(params[f"{name}.bias"].unsqueeze(1)))
                hs.append(a)
            below = layers[-2]  # the last hidden layer
            bias = params[f"{below}.bias"] if len(layers) > 2 else _EMPTY  # empty: already activated
            K.out_forward(hs[-1], bias, params[f"{last}.weight"], params[f"{last}.bias"], ws["out"])
            out = ws["out"].transpose(1, 2)
        total, g = _objective_and_grad(objective, out, grads[f"{last}.bias"])
        with torch.no_grad():
            K.out_backward(g, params[f"{last}.weight"], hs[-1], bias, grads[f"{last}.weight"], grads[f"{below}.bias"])
            g = hs[-1]  # now the gradient at the last hidden layer's pre-activation
            gw0, gb0 = grads[f"{first}.weight"], grads[f"{first}.bias"]
            if len(layers) == 2:  # one hidden layer: out_backward gave its pre-activation and bias gradients
                K.first_backward(g, _EMPTY, xs, gw0, _EMPTY)
                return total
            for i in reversed(range(2, len(layers) - 1)):  # hidden-to-hidden layers above the second
                name = layers[i]
                torch.bmm(g.transpose(1, 2), hs[i], out=grads[f"{name}.weight"])
                g = _backward_through(g, params[f"{name}.weight"], hs[i], dacts[i - 1], _relu_backward_,
                                      grads[f"{layers[i - 1]}.bias"])
            # the second layer, into the first: its weight gradient, then g @ W a cache-sized slice of
            # models at a time, whose ReLU backward and first-layer gradients are one pass (first_backward)
            w = params[f"{layers[1]}.weight"]
            torch.bmm(g.transpose(1, 2), hs[1], out=grads[f"{layers[1]}.weight"])
            scratch = dacts[0]
            for a in range(0, n, scratch.shape[0]):
                k = min(scratch.shape[0], n - a)
                s = torch.bmm(g[a : a + k], w[a : a + k], out=scratch[:k])
                K.first_backward(s, hs[1][a : a + k], xs[a : a + k], gw0[a : a + k], gb0[a : a + k])
        return total

    def _workspace(self, n: int, B: int, dtype: torch.dtype, device: torch.device) -> dict:
        """Buffers for :meth:`value_and_grad`, kept between calls: per hidden layer an activation
        ``[n, B, width]`` (``acts``) and a scratch gradient ``[m, B, width]`` for a cache-sized slice of
        ``m`` models (``dacts``, shared by layers of one width); the first layer's ones-augmented input
        ``x1``, weights ``w1`` and gradient ``g1``; and the class-major outputs ``out [n, n_out, B]``."""
        key = (n, B, dtype, str(device))
        cache = self.__dict__.setdefault("_workspace_cache", {})  # not a dataclass field: hparams and eq ignore it
        if key not in cache:
            cache.clear()
            kw = {"dtype": dtype, "device": device}
            # per distinct width, a scratch gradient for a cache-sized slice of models (see _backward_through)
            grad_bufs = {w: torch.empty(_slice(n, B * w), B, w, **kw) for w in set(self.widths)}
            acts, dacts = [torch.empty(n, B, w, **kw) for w in self.widths], [grad_bufs[w] for w in self.widths]
            d, w0 = self.d_in, self.widths[0]
            cache[key] = {"acts": acts, "dacts": dacts, "x1": torch.ones(n, B, d + 1, **kw),
                          "w1": torch.empty(n, w0, d + 1, **kw), "g1": torch.empty(n, d + 1, w0, **kw),
                          "out": torch.empty(n, self.n_out, B, **kw)}
        return cache[key]

    def module(self) -> nn.Module:
        return MLPModule(self)

    def hidden_permutable(self) -> dict[str, list[tuple[str, int]]]:
        groups = {}
        names = [n for n, _, _ in self._layers()]
        for i, name in enumerate(names[:-1]):
            nxt = names[i + 1]
            groups[name] = [(f"{name}.weight", 0), (f"{name}.bias", 0), (f"{nxt}.weight", 1)]
        return groups

    def hidden_rescalable(self) -> dict[str, list[tuple[str, int]]]:
        return self.hidden_permutable() if self.activation in HOMOGENEOUS_ACTIVATIONS else {}


def _objective_and_grad(objective, out: torch.Tensor, out_bias_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective on the outputs ``out [n, B, n_out]`` and, through autograd, its gradient there
    (made contiguous: a thin matmul with K = n_out is ~2x slower on the transposed view); the output
    bias gradient ``[n, n_out]`` (its sum over ``B``) is written into ``out_bias_grad``."""
    out.requires_grad_(True)
    with torch.enable_grad():
        total = objective(out)
    (g,) = torch.autograd.grad(total, out)
    g = g.contiguous()
    torch.sum(g.detach(), 1, out=out_bias_grad)
    return total.detach(), g


_THIN = 16  # inputs / outputs up to which the fused kernels take the first / output layer
_EMPTY = torch.empty(0)


def _slice(n: int, per_model: int) -> int:
    """Models per slice when each takes ``per_model`` floats: about one core's L2 cache in all."""
    return max(1, min(n, base.CACHE_FLOATS // max(per_model, 1)))


def _backward_through(g: torch.Tensor, w: torch.Tensor, h: torch.Tensor, scratch: torch.Tensor, dact_,
                      bias_grad: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient at the input of a layer ``[n, B, i]`` from the one at its output ``g [n, B, o]``,
    weights ``w [n, o, i]`` and the previous activation's output ``h [n, B, i]``, written over ``h``;
    with ``bias_grad [n, i]``, also the previous layer's bias gradient (its sum over ``B``).

    ``g @ w`` goes through a ``scratch [m, B, i]`` buffer of ``m`` models small enough to stay in
    cache, a slice of models at a time: the product is consumed by the activation's backward (and
    that by the bias sum) while still in cache, instead of a round trip through memory each.
    """
    m = scratch.shape[0]
    for a in range(0, g.shape[0], m):
        k = min(m, g.shape[0] - a)
        gh = dact_(torch.bmm(g[a : a + k], w[a : a + k], out=scratch[:k]), h[a : a + k])
        if bias_grad is not None:
            torch.sum(gh, 1, out=bias_grad[a : a + k])
    return h


# The backward of an activation from its output ``h``, written over ``h`` (no longer needed then):
# threshold_backward is one contiguous pass, where masked_fill_ / where with a bool mask are ~10x slower.
def _relu_backward_(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward.grad_input(g, h, 0.0, grad_input=h)


def _tanh_backward_(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return h.mul_(h).neg_().add_(1.0).mul_(g)


_ACT_INPLACE = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "identity": lambda h: h,
                "silu": lambda h: torch.nn.functional.silu(h, inplace=True)}

# activation -> (in-place forward, backward from the output, over the output)
_BACKWARD_FROM_OUTPUT = {"relu": (torch.relu_, _relu_backward_), "tanh": (torch.tanh_, _tanh_backward_)}


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
