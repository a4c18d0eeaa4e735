"""Building blocks the hand-vectorised families share (over stacked parameters ``[n_models, ...]``).

``linear`` is a batched ``nn.Linear`` (shared or per-model inputs); ``dense_layers`` runs a stack of
``linear`` + activation layers through the forward pass's hook points (``{name}.pre``, ``{name}.post``):
the MLP's hidden layers and the CNN's fully connected ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from training.families.base import HookPoints


def dense_layers(h: torch.Tensor, params: dict[str, torch.Tensor], names: Sequence[str],
                 act: Callable[[torch.Tensor], torch.Tensor], hooks: HookPoints) -> torch.Tensor:
    """``h`` through the layers ``names`` (``{name}.weight``, ``{name}.bias``), each ``act(linear(h))``,
    with the hook points ``{name}.pre`` (before the activation) and ``{name}.post`` (after it)."""
    for name in names:
        pre = hooks(f"{name}.pre", linear(h, params[f"{name}.weight"], params[f"{name}.bias"]))
        h = hooks(f"{name}.post", act(pre))
    return h


def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h [B, i]`` (shared) or ``[n, B, i]``; ``w [n, o, i]``; ``b [n, o]`` -> ``[n, B, o]``."""
    if h.dim() == 2:
        # Shared inputs: one GEMM for the whole population, ``[n*o, i] @ [i, B]``, read as ``[n, B, o]``
        # (a transposed view, which later layers and elementwise ops take without a copy). ~3x
        # faster than broadcasting ``h`` into a batched matmul.
        n, o, i = w.shape
        return (w.reshape(n * o, i) @ h.T).view(n, o, -1).transpose(1, 2) + b.unsqueeze(1)
    if not (torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad)):
        return BatchedLinear.forward(h, w, b)  # no graph to record: skip the Function's bookkeeping
    return BatchedLinear.apply(h, w, b)


class BatchedLinear(torch.autograd.Function):
    """``bmm(h, w^T) + b`` with a backward whose every output is contiguous.

    Autograd's own backward of ``baddbmm(b, h, w.transpose(1, 2))`` hands back the weight gradient
    as a transposed view; every elementwise op and copy that then touches it (the activation's
    backward, the optimiser's flat buffer) runs a strided loop ~10x slower than a contiguous one,
    and ``baddbmm`` with a broadcast bias is itself ~2x slower than ``bmm`` + an in-place add.
    Each model's result is still computed by its own matmul, so batch invariance is unaffected.
    """

    generate_vmap_rule = True  # torch.func transforms (vmap(grad(...)) in extractors) go through it

    @staticmethod
    def forward(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(h, w.transpose(1, 2)).add_(b.unsqueeze(1))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, w, _ = inputs
        ctx.save_for_backward(h, w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, w = ctx.saved_tensors
        g = g.contiguous()
        gh = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), h) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.needs_input_grad[2] else None
        return gh, gw, gb


def relu_mlp(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """``linear(relu(linear(h, w1, b1)), w2, b2)`` for ``h [n, B, i]``: the same function as the three
    ops, in fewer passes over the ``[n, B, hidden]`` activation (see :class:`ReluMLP`). Under torch.func
    transforms (``vmap(grad(...))`` in extractors) it runs the plain ops, which those transforms know."""
    if torch._C._are_functorch_transforms_active():
        return linear(torch.relu(linear(h, w1, b1)), w2, b2)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (h, w1, b1, w2, b2))):
        return ReluMLP.forward(h, w1, b1, w2, b2)[0]
    return ReluMLP.apply(h, w1, b1, w2, b2)[0]


class ReluMLP(torch.autograd.Function):
    """A batched two-layer ReLU MLP, ``[n, B, i] -> [n, B, o]``, with a hand-written backward.

    Autograd runs the bias add, the ReLU and its backward as separate passes, each into a fresh
    ``[n, B, hidden]`` tensor (the widest activation of a transformer block: fresh pages cost a page
    fault every step). Here the bias add and the ReLU are one in-place pass (``aten::_add_relu_``) over
    the matmul's result, and the ReLU's backward is done in place in the gradient the second matmul's
    backward has just produced. Each model's values are still computed by its own matmuls and
    elementwise ops, so batch invariance is unaffected.
    """

    @staticmethod
    def forward(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor):
        pre = torch.bmm(h, w1.transpose(1, 2))
        # aten::_add_relu_ (bias add and ReLU in one pass) has only a CPU kernel
        post = torch.ops.aten._add_relu_(pre, b1.unsqueeze(1)) if pre.device.type == "cpu" else pre.add_(b1.unsqueeze(1)).relu_()
        return torch.bmm(post, w2.transpose(1, 2)).add_(b2.unsqueeze(1)), post

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, w1, _, w2, _ = inputs
        ctx.save_for_backward(h, w1, w2, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, g: torch.Tensor, _unused: torch.Tensor | None = None):
        h, w1, w2, post = ctx.saved_tensors
        g = g.contiguous()
        need = ctx.needs_input_grad
        gw2 = torch.bmm(g.transpose(1, 2), post) if need[3] else None
        gb2 = g.sum(1) if need[4] else None
        gpre = torch.bmm(g, w2)
        # relu' in place: zero where the unit was off (post == 0 exactly where pre <= 0)
        torch.ops.aten.threshold_backward.grad_input(gpre, post, 0, grad_input=gpre)
        gh = torch.bmm(gpre, w1) if need[0] else None
        gw1 = torch.bmm(gpre.transpose(1, 2), h) if need[1] else None
        gb1 = gpre.sum(1) if need[2] else None
        return gh, gw1, gb1, gw2, gb2
