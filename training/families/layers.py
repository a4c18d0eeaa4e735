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
