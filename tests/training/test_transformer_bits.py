"""The transformer training pass's speed changes keep every float op's arithmetic: bit-identical
gradients to the formulation they replaced, computed in the same process (so on any host).

Trained weights scored in docs/results.md come from the earlier formulation; a change that moved a
last bit would move modadd's clock/pizza labels (``scripts/check_train_bits.py`` compares whole
training runs against a checkout of the earlier code, on one host).
"""

from __future__ import annotations

import pytest
import torch

from training.families.transformer import (
    PerModelEmbedding,
    SmallTAttention,
    _per_dim,
    attend,
    attend_backward,
)


def _old_forward(qkv, rows, allowed, uniform, rate):
    """Scores, softmax, mixed pattern and output from the fused ``qkv [n, B, T, 3, H, dh]``."""
    return attend(qkv[:, :, rows, 0], qkv[:, :, :, 1], qkv[:, :, :, 2], allowed, uniform, rate)


class StackedSmallTAttention(torch.autograd.Function):
    """Attention as ``SmallTAttention`` computed it before (the formulation the trained zoos come
    from): on the output of one fused q/k/v product, queries read at ``rows`` of it, and the
    backward's six pieces stacked into the gradient of that product."""

    @staticmethod
    def forward(ctx, qkv, rows, allowed, uniform, rate):
        o, _, _ = _old_forward(qkv, rows, allowed, uniform, rate)
        ctx.save_for_backward(qkv)
        ctx.args = rows, allowed, uniform, rate
        return o

    @staticmethod
    def backward(ctx, go):
        (qkv,) = ctx.saved_tensors
        rows, allowed, uniform, rate = ctx.args
        n, B, T, _, H, dh = qkv.shape
        q, k, v = qkv[:, :, rows, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
        _, soft, p = _old_forward(qkv, rows, allowed, uniform, rate)
        Tq = soft[0].shape[2]

        def over_queries(t):
            return t.squeeze(2) if Tq == 1 else t.sum(2)

        go = go.contiguous()
        gs, gq = attend_backward(go, k, v, soft, rate)
        query_at = {t: i for i, t in enumerate(range(T)[rows])}
        zero = qkv.new_zeros(()).expand(n, B, H, dh)
        pieces = []
        for j in range(T):
            pieces += [gq[:, :, query_at[j]] if j in query_at else zero, over_queries(_per_dim(gs[j], dh) * q),
                       over_queries(_per_dim(p[j], dh) * go)]
        return torch.stack(pieces, 2).view(qkv.shape), None, None, None, None


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)  # bitwise, signed zeros included


@pytest.mark.parametrize("T,rows,rate,causal", [
    (2, slice(1, 2), 0.5, True),  # modadd: the last block's query at the last position
    (2, slice(1, 2), 1.0, True),
    (2, slice(None), 0.25, True),  # an earlier block: every position queries
    (3, slice(0, 3, 2), 0.3, False),  # even read-out
    (4, slice(None), 1.0, True),
    (4, slice(3, 4), 0.7, True),
])
def test_small_t_attention_is_the_fused_product_formulation_bit_for_bit(T, rows, rate, causal):
    """Queries projected only where read, k and v as one product, the gradient written in place:
    output and gradients (of the block input and of the stacked weights) equal the fused product
    followed by the stacked-pieces attention, bit for bit."""
    g = torch.Generator().manual_seed(T)
    n, B, H, dh = 3, 37, 4, 16
    d = H * dh
    zf = torch.randn(n, B * T, d, generator=g).requires_grad_(True)
    w = (torch.randn(n, 3 * d, d, generator=g) / 8).requires_grad_(True)
    pos = torch.arange(T)
    allowed = pos[None, :] <= pos[:, None] if causal else torch.ones(T, T, dtype=torch.bool)
    uniform = allowed.float() / allowed.sum(1, keepdim=True)
    got = SmallTAttention.apply(zf, w, (n, B, T, H, dh), rows, allowed[rows], uniform[rows], rate)
    qkv = torch.bmm(zf, w.transpose(1, 2)).view(n, B, T, 3, H, dh)
    want = StackedSmallTAttention.apply(qkv, rows, allowed[rows], uniform[rows], rate)
    assert torch.equal(bits(got), bits(want))
    go = torch.randn(got.shape, generator=g)
    for a, b in zip(torch.autograd.grad(got, (zf, w), go), torch.autograd.grad(want, (zf, w), go)):
        assert a.shape == b.shape and torch.equal(bits(a), bits(b))


def test_per_model_embedding_is_advanced_indexing_bit_for_bit():
    """Rows read by ``index_select``; the gradient accumulates repeated tokens in autograd's order."""
    g = torch.Generator().manual_seed(0)
    n, vocab, d = 5, 7, 16
    emb = torch.randn(n, vocab, d, generator=g).requires_grad_(True)
    tok = torch.randint(0, vocab, (n, 300, 2), generator=g)  # every token repeated many times per model
    got = PerModelEmbedding.apply(emb, tok)
    want = emb[torch.arange(n)[:, None, None], tok]
    assert torch.equal(got, want)
    go = torch.randn(got.shape, generator=g)
    (g_got,) = torch.autograd.grad(got, emb, go)
    (g_want,) = torch.autograd.grad(want, emb, go)
    assert torch.equal(g_got.view(torch.int32), g_want.view(torch.int32))
