"""Batched small transformer (pre-norm optional), for token tasks and sequence regression.

Inputs are either integer tokens ``[B, T]`` (``vocab > 0``: an embedding table) or vectors
``[B, T, d_in]`` (``vocab = 0``: a linear embedding). Each block is attention then an MLP, both
residual. ``attention_rate`` interpolates between standard softmax attention (1) and constant
(uniform) attention (0), the knob of "The Clock and the Pizza" (Zhong et al., 2023). The readout is
the last position (``readout = "last"``, outputs ``[n, B, n_out]``), every position (``"all"``,
``[n, B, T, n_out]``), or the even positions 0, 2, 4, ... (``"even"``, ``[n, B, ceil(T/2), n_out]``):
the query tokens of prompts that interleave inputs and targets ``x_1, y_1, x_2, y_2, ...``, where
each prediction of ``y_i`` sees (causally) only the pairs before it and ``x_i``.

Named activations: ``embed``, ``block{i}.attn.pattern [n, B, heads, T, T]``, ``block{i}.attn.out``,
``block{i}.resid_mid``, ``block{i}.mlp.pre``, ``block{i}.mlp.post``, ``block{i}.resid_post``, ``out``.
``forward(..., edit={name: fn})`` replaces an activation by ``fn(activation)`` before the rest of
the network reads it (interchange interventions). Parameters use ``nn.Linear`` layout (``[out, in]``) and the single-model module's names.

With nothing captured or edited (training, ``Family.outputs``) the pass computes the last block only
at the read-out positions and runs attention over short sequences with :class:`SmallTAttention`; a
hooked pass runs every position through autograd. The two agree to float rounding (tested). Speed
changes to the training pass keep every op's arithmetic, so trained weights stay bit-identical
(``tests/training/test_transformer_bits.py``; ``scripts/check_train_bits.py`` for whole runs).
Longer than ~420 lines: the batched forward, its fast unhooked path and the single-model module are
one architecture, read together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.core.errors import UserError
from training.core.validate import positive, within
from training.families.base import (
    HOMOGENEOUS_ACTIVATIONS,
    Family,
    HookPoints,
    get_activation,
    register_family,
)
from training.families.layers import linear


@register_family
@dataclass
class TransformerFamily(Family):
    """Small transformer: token or vector inputs, attention-rate knob, last or all-position readout."""

    name = "transformer"
    trains_in_threads = True
    readout_layer = "out"
    input_shape: tuple[int, ...] = (2,)
    n_out: int = 2
    vocab: int = 0  # > 0: integer token inputs [T]; 0: vector inputs [T, d_in]
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 1
    d_mlp: int = 128
    activation: str = "relu"
    attention_rate: float = 1.0
    causal: bool = True
    layernorm: bool = False
    readout: str = "last"
    init_scale: float = 1.0

    def validate(self) -> None:
        if self.d_model <= 0 or self.n_heads <= 0 or self.d_model % self.n_heads:
            raise UserError(f"model.d_model ({self.d_model}) must be a positive multiple of model.n_heads ({self.n_heads})")
        if self.n_layers <= 0 or self.d_mlp <= 0:
            raise UserError("model.n_layers and model.d_mlp must be > 0")
        within("model", "attention_rate", self.attention_rate, 0.0, 1.0)
        positive("model", "init_scale", self.init_scale)
        if self.readout not in ("last", "all", "even"):
            raise UserError(f"unknown readout '{self.readout}' at 'model.readout' (valid: all, even, last)")
        if self.vocab > 0 and len(self.input_shape) != 1:
            raise UserError(f"a token transformer (vocab > 0) needs inputs [T], the task gives {list(self.input_shape)}")
        if self.vocab == 0 and len(self.input_shape) != 2:
            raise UserError(f"a vector transformer (vocab = 0) needs inputs [T, d_in], the task gives {list(self.input_shape)}")
        get_activation(self.activation)

    @property
    def seq_len(self) -> int:
        return self.input_shape[0]

    def param_shapes(self):
        d, T = self.d_model, self.seq_len
        s: dict[str, tuple[int, ...]] = {}
        if self.vocab > 0:
            s["embed.weight"] = (self.vocab, d)
        else:
            s["embed.weight"] = (d, self.input_shape[1])
            s["embed.bias"] = (d,)
        s["pos.weight"] = (T, d)
        for i in range(self.n_layers):
            b = f"blocks.{i}"
            if self.layernorm:
                s[f"{b}.ln1.weight"] = (d,)
                s[f"{b}.ln1.bias"] = (d,)
                s[f"{b}.ln2.weight"] = (d,)
                s[f"{b}.ln2.bias"] = (d,)
            for m in ("q", "k", "v"):
                s[f"{b}.attn.{m}.weight"] = (d, d)
            s[f"{b}.attn.o.weight"] = (d, d)
            s[f"{b}.mlp.fc.weight"] = (self.d_mlp, d)
            s[f"{b}.mlp.fc.bias"] = (self.d_mlp,)
            s[f"{b}.mlp.proj.weight"] = (d, self.d_mlp)
            s[f"{b}.mlp.proj.bias"] = (d,)
        if self.layernorm:
            s["ln_f.weight"] = (d,)
            s["ln_f.bias"] = (d,)
        s["out.weight"] = (self.n_out, d)
        s["out.bias"] = (self.n_out,)
        return s

    def init_one(self, gen):
        out = {}
        for name, shape in self.param_shapes().items():
            if ".ln" in name or name.startswith("ln_f"):
                out[name] = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
            elif name in ("embed.weight", "pos.weight") and (self.vocab > 0 or name == "pos.weight"):
                out[name] = torch.randn(shape, generator=gen) * (self.init_scale / math.sqrt(self.d_model))
            else:
                wshape = self.param_shapes()[name.replace(".bias", ".weight")]
                bound = self.init_scale / math.sqrt(wshape[-1])
                out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        return out

    def readout_positions(self):
        """``[T - 1]`` for the last-position readout, the even positions for ``"even"``, every one for ``"all"``."""
        T = self.seq_len
        return {"last": [T - 1], "even": list(range(0, T, 2))}.get(self.readout, list(range(T)))

    def token_embedding(self):
        """``embed.weight [n, vocab, d]`` for token inputs (``vocab > 0``); vector inputs have none."""
        return "embed.weight" if self.vocab > 0 else None

    def activation_names(self):
        names = ["embed"]
        for i in range(self.n_layers):
            b = f"block{i}"
            names += [f"{b}.attn.pattern", f"{b}.attn.out", f"{b}.resid_mid", f"{b}.mlp.pre", f"{b}.mlp.post", f"{b}.resid_post"]
        return names + ["out"]

    def forward(self, params, x, capture: Sequence[str] = (), edit: Mapping[str, Callable] | None = None):
        x, shared = self._split_x(x)
        hooks = HookPoints(capture, edit)
        # Nothing captured or edited (training, outputs): the pass may skip what cannot reach the
        # outputs and use the hand-written short-sequence attention; torch.func transforms get plain ops.
        fast = not (hooks.capture or hooks.edit or torch._C._are_functorch_transforms_active())
        n = params["pos.weight"].shape[0]
        d, H = self.d_model, self.n_heads
        dh = d // H
        if self.vocab > 0:
            tok = x.long()
            emb = params["embed.weight"]  # [n, vocab, d]
            if shared:
                h = emb[:, tok]
            elif fast:
                h = PerModelEmbedding.apply(emb, tok)
            else:
                h = emb[torch.arange(n, device=emb.device)[:, None, None], tok]
            B, T = tok.shape[-2], tok.shape[-1]
        else:
            B, T = x.shape[-3], x.shape[-2]
            flat = x.reshape(B * T, -1) if shared else x.reshape(n, B * T, -1)
            h = linear(flat, params["embed.weight"], params["embed.bias"]).reshape(n, B, T, d)
        h = hooks("embed", h + params["pos.weight"][:, None, :T])
        pos = torch.arange(T)
        # the mask stays on the CPU (read without a device sync); the constant pattern goes to h's device
        allowed = pos[None, :] <= pos[:, None] if self.causal else torch.ones(T, T, dtype=torch.bool)
        uniform = (allowed.float() / allowed.sum(1, keepdim=True)).to(h.device)
        act = get_activation(self.activation)
        keep = self._kept_positions(T) if fast else slice(None)

        for i in range(self.n_layers):
            b, a = f"blocks.{i}", f"block{i}"
            # the last block's queries, attention output and MLP only where the readout reads them
            rows = keep if i == self.n_layers - 1 else slice(None)
            Tq = len(range(T)[rows])
            z = self._ln(h, params, f"{b}.ln1") if self.layernorm else h
            zf, rate = z.reshape(n, B * T, d), self.attention_rate
            if rate == 0:  # constant attention: queries and keys are unused (and get no gradient)
                v = torch.bmm(zf, params[f"{b}.attn.v.weight"].transpose(1, 2)).view(n, B, T, d)
                if fast:
                    o = torch.matmul(uniform[rows], v).reshape(n, B * Tq, d)  # one product per model and input
                else:
                    pattern = hooks(f"{a}.attn.pattern", uniform[rows].expand(n, B, H, Tq, T))
                    o = (pattern @ v.view(n, B, T, H, dh).transpose(2, 3)).transpose(2, 3).reshape(n, B * Tq, d)
            else:
                wq = params[f"{b}.attn.q.weight"] * (1 / math.sqrt(dh))  # the scores' 1/sqrt(dh), folded in
                wk, wv = params[f"{b}.attn.k.weight"], params[f"{b}.attn.v.weight"]
                if fast and T <= SMALL_T:  # the projections inside: q, k, v as one weight
                    o = SmallTAttention.apply(zf, torch.cat([wq, wk, wv], 1), (n, B, T, H, dh), rows, allowed[rows],
                                              uniform[rows], rate).reshape(n, B * Tq, d)
                else:
                    # three products: a fused one's gradient is assembled from q, k and v's by a strided copy
                    # that costs more than the two extra matmuls
                    q, k, v = (torch.bmm(zf, w.transpose(1, 2)).view(n, B, T, H, dh).transpose(2, 3) for w in (wq, wk, wv))
                    q = q[:, :, :, rows]
                    scores = q @ k.transpose(-1, -2)  # [n, B, H, Tq, T]
                    # the mask as an added 0 / -inf (~4x cheaper than masked_fill) when a query row masks a key: a
                    # causal pass's rows before the last (decided in Python: no tensor read, which torch.compile would break at)
                    if self.causal and range(T)[rows][0] < T - 1:
                        scores = scores + _mask_bias(allowed[rows], h.device)
                    pattern = torch.softmax(scores, -1)
                    if rate < 1:
                        pattern = rate * pattern + (1 - rate) * uniform[rows]
                    pattern = hooks(f"{a}.attn.pattern", pattern)
                    o = (pattern @ v).transpose(2, 3).reshape(n, B * Tq, d)
            o = hooks(f"{a}.attn.out", torch.bmm(o, params[f"{b}.attn.o.weight"].transpose(1, 2)).reshape(n, B, Tq, d))
            h = hooks(f"{a}.resid_mid", h[:, :, rows] + o)
            z = self._ln(h, params, f"{b}.ln2") if self.layernorm else h
            w1, b1 = params[f"{b}.mlp.fc.weight"], params[f"{b}.mlp.fc.bias"]
            w2, b2 = params[f"{b}.mlp.proj.weight"], params[f"{b}.mlp.proj.bias"]
            per_position = lambda t: t.reshape(n, B, Tq, -1)  # noqa: E731
            flat = lambda t: t.reshape(n, B * Tq, -1)  # noqa: E731
            # the MLP runs on [n, B*T, .]; its hook points see [n, B, T, .]
            pre = hooks(f"{a}.mlp.pre", linear(z.reshape(n, B * Tq, d), w1, b1), per_position, flat)
            post = hooks(f"{a}.mlp.post", act(pre), per_position, flat)
            m = linear(post, w2, b2).reshape(n, B, Tq, d)
            h = hooks(f"{a}.resid_post", h + m)
        if self.layernorm:
            h = self._ln(h, params, "ln_f")
        if keep != slice(None):  # h holds the readout positions only
            he = h
        elif self.readout == "last":
            he = h[:, :, -1:]
        else:
            he = h[:, :, 0::2] if self.readout == "even" else h
        out = linear(he.reshape(n, -1, d), params["out.weight"], params["out.bias"])
        out = out.reshape(n, B, -1) if self.readout == "last" else out.reshape(n, B, he.shape[2], -1)
        return hooks("out", out), hooks.acts

    def _kept_positions(self, T: int) -> slice:
        """The positions whose last-block output reaches the readout (a slice of ``range(T)``)."""
        return {"last": slice(T - 1, T), "even": slice(0, T, 2)}.get(self.readout, slice(None))

    @staticmethod
    def _ln(h, params, name):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        shape = (w.shape[0],) + (1,) * (h.dim() - 2) + (w.shape[1],)
        return torch.addcmul(b.reshape(shape), F.layer_norm(h, h.shape[-1:]), w.reshape(shape))

    def module(self) -> nn.Module:
        return TransformerModule(self)

    def step_flops(self, batch_size: int) -> float:
        # every weight but the embeddings' lookups, once per position, and attention's two [T, T] products
        d, T = self.d_model, self.seq_len
        lookups = sum(math.prod(v) for k, v in self.param_shapes().items() if k.startswith(("embed.", "pos.")))
        return 6.0 * batch_size * T * (self.n_params() - lookups + 2 * self.n_layers * T * d)

    def hidden_permutable(self):
        # MLP hidden units of each block can be permuted freely (attention heads are left alone).
        return {f"blocks.{i}.mlp": [(f"blocks.{i}.mlp.fc.weight", 0), (f"blocks.{i}.mlp.fc.bias", 0),
                                    (f"blocks.{i}.mlp.proj.weight", 1)] for i in range(self.n_layers)}

    def hidden_rescalable(self):
        """The MLP units (fc in, proj out) with a homogeneous activation, and attention's two bilinear
        forms, whatever the activation: a query dimension times ``c`` with its key dimension divided by
        ``c`` leaves every score unchanged (``attn.qk``: the keys' rows are its outgoing side, axis -1),
        and a value dimension times ``c`` with the output projection's column divided by ``c`` leaves the
        attention output unchanged (``attn.vo``), attention being linear in the values."""
        groups = self.hidden_permutable() if self.activation in HOMOGENEOUS_ACTIVATIONS else {}
        for i in range(self.n_layers):
            a = f"blocks.{i}.attn"
            groups[f"{a}.qk"] = [(f"{a}.q.weight", 0), (f"{a}.k.weight", -1)]
            groups[f"{a}.vo"] = [(f"{a}.v.weight", 0), (f"{a}.o.weight", 1)]
        return groups

    def hidden_mixable(self):
        """Attention's two bilinear forms in full, within each head: any invertible ``d_head x d_head``
        matrix ``G`` on a head's query rows with ``G^-T`` on its key rows leaves every score as it was
        (``attn.qk``), and ``G`` on its value rows with ``G^-1`` on the output projection's columns leaves
        the attention output as it was (``attn.vo``). :meth:`hidden_rescalable`'s are their diagonal."""
        out: dict[str, dict] = {}
        for i in range(self.n_layers):
            a = f"blocks.{i}.attn"
            out[f"{a}.qk"] = {"members": [(f"{a}.q.weight", 0), (f"{a}.k.weight", -1)], "blocks": self.n_heads}
            out[f"{a}.vo"] = {"members": [(f"{a}.v.weight", 0), (f"{a}.o.weight", 1)], "blocks": self.n_heads}
        return out


class _Params(nn.Module):
    """Holds parameters under dotted names (``blocks.0.attn.q.weight``) as nested submodules."""


class TransformerModule(nn.Module):
    """Single-model view of :class:`TransformerFamily`: runs the batched code on a model axis of 1."""

    def __init__(self, fam: TransformerFamily):
        super().__init__()
        self.fam = fam
        init = fam.init_one(torch.Generator().manual_seed(0))
        for name, t in init.items():
            parent: nn.Module = self
            *path, leaf = name.split(".")
            for p in path:
                if not hasattr(parent, p):
                    parent.add_module(p, _Params())
                parent = getattr(parent, p)
            parent.register_parameter(leaf, nn.Parameter(t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {k: v.unsqueeze(0) for k, v in self.named_parameters()}
        return self.fam(params, x)[0]


def _mask_bias(allowed: torch.Tensor, device: torch.device) -> torch.Tensor:
    """0 where attention is allowed, -inf where it is masked (on ``device``): ``scores + bias`` is the
    masked scores."""
    return torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")).to(device)


class PerModelEmbedding(torch.autograd.Function):
    """``emb[arange(n)[:, None, None], tok]`` (``emb [n, vocab, d]``, per-model tokens ``tok [n, B, T]``)
    read as one ``index_select`` of rows (~8x faster than advanced indexing: the same values, copied);
    the backward is autograd's own for the indexing (``index_put`` accumulating into zeros), so the
    embedding's gradient keeps its summation order bit for bit."""

    @staticmethod
    def forward(ctx, emb: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        n, vocab, d = emb.shape
        rows = torch.arange(n, device=emb.device)[:, None, None]
        ctx.save_for_backward(tok)
        ctx.shape = emb.shape
        return emb.reshape(n * vocab, d).index_select(0, (rows * vocab + tok).reshape(-1)).view(*tok.shape, d)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (tok,) = ctx.saved_tensors
        rows = torch.arange(ctx.shape[0], device=g.device)[:, None, None]
        return torch.ops.aten._index_put_impl_(g.new_zeros(ctx.shape), [rows, tok], g, True, True), None


SMALL_T = 4  # sequences up to this long run attention as elementwise products (SmallTAttention)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, uniform: torch.Tensor,
           rate: float) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Short-sequence attention's forward from queries ``q [n, B, Tq, H, dh]`` and keys / values
    ``[n, B, T, H, dh]``: scores per key position (masked where ``allowed [Tq, T]`` is false), their
    softmax, the pattern mixed with ``uniform`` at attention ``rate``, and the output
    ``[n, B, Tq, H, dh]``. Returns ``(output, softmax per key position, mixed pattern per key
    position)``; elementwise products in a fixed order (the trained zoos' arithmetic)."""
    T, dh = k.shape[2], q.shape[-1]
    s = [(q * k[:, :, j, None]).sum(-1) for j in range(T)]  # [n, B, Tq, H] per key position
    for j in range(T):
        if not bool(allowed[:, j].all()):
            s[j] = s[j] + _mask_bias(allowed[:, j], q.device)[:, None]
    m = s[0]
    for x in s[1:]:
        m = torch.maximum(m, x)
    e = [torch.exp(x - m) for x in s]
    z = e[0].clone()
    for x in e[1:]:
        z.add_(x)
    soft = [x.div_(z) for x in e]
    p = soft if rate == 1 else [x * rate + (1 - rate) * uniform[:, j, None] for j, x in enumerate(soft)]
    o = _per_dim(p[0], dh) * v[:, :, 0, None]
    for j in range(1, T):
        o.addcmul_(_per_dim(p[j], dh), v[:, :, j, None])
    return o, soft, p


def attend_backward(go: torch.Tensor, k: torch.Tensor, v: torch.Tensor, soft: Sequence[torch.Tensor], rate: float
                    ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The backward of :func:`attend` from the output's gradient ``go [n, B, Tq, H, dh]``: the
    scores' gradients per key position (through the mix and the softmax) and the queries' gradient
    ``[n, B, Tq, H, dh]``; the keys' and values' gradients are left to the caller (they are summed
    over queries where they are written)."""
    T, dh = k.shape[2], go.shape[-1]
    gp = [(go * v[:, :, j, None]).sum(-1) for j in range(T)]
    if rate != 1:
        gp = [x.mul_(rate) for x in gp]
    dot = soft[0] * gp[0]
    for j in range(1, T):
        dot.addcmul_(soft[j], gp[j])
    gs = [soft[j] * (gp[j] - dot) for j in range(T)]  # the softmax's backward
    gq = _per_dim(gs[0], dh) * k[:, :, 0, None]
    for j in range(1, T):
        gq.addcmul_(_per_dim(gs[j], dh), k[:, :, j, None])
    return gs, gq


class SmallTAttention(torch.autograd.Function):
    """The q, k, v projection and attention over a short sequence, as elementwise products over the
    model and batch axes, with its backward by hand: ``zf [n, B*T, d]`` (the block's input),
    ``w [n, 3d, d]`` (q, k and v's weights stacked, the queries' scale already in them), ``shape``
    ``(n, B, T, H, dh)``, queries at the positions ``rows`` (a slice) -> ``[n, B, Tq, H, dh]``.

    At T = 2 (modadd) ``q @ k^T`` as a batched matmul is n * B * H products of ``[2, 16] x [16, 2]``,
    each dominated by the call's overhead, and autograd's backward builds each of q, k and v's
    gradients as a zero-filled ``[n, B, T, 3, H, dh]`` tensor (a select's backward) before summing
    them. Here scores and pattern are one ``[n, B, Tq, H]`` tensor per key position, so every op is
    a contiguous elementwise pass (a softmax over a last axis of 2, or a product broadcast over the
    head dim, runs ~10x slower than one), and the backward writes q, k and v's gradients into one
    tensor. ``allowed [Tq, T]`` is the causal mask (on the CPU), ``uniform [Tq, T]`` the constant
    pattern mixed in at ``1 - rate`` (``0 < rate <= 1``).

    The forward projects queries only at ``rows`` (k and v at every position, as one product): each
    entry of a matrix product is the same sum whatever other rows and columns are computed with it
    (MKL's kernels: tested against the one ``[n, B*T, 3d]`` product), and the others cannot reach the
    output. The backward's products are the fused ones, ``g [n, B*T, 3d]`` (zero where no query was
    read) against ``w`` and ``zf``, so gradients are the same sums too.
    """

    @staticmethod
    def forward(ctx, zf: torch.Tensor, w: torch.Tensor, shape: tuple[int, ...], rows: slice, allowed: torch.Tensor,
                uniform: torch.Tensor, rate: float):
        n, B, T, H, dh = shape
        d = H * dh
        kv = torch.bmm(zf, w[:, d:].transpose(1, 2)).view(n, B, T, 2, H, dh)
        zq = zf if rows == slice(None) else zf.view(n, B, T, d)[:, :, rows].reshape(n, -1, d)
        q = torch.bmm(zq, w[:, :d].transpose(1, 2)).view(n, B, -1, H, dh)  # [n, B, Tq, H, dh]
        k, v = kv[:, :, :, 0], kv[:, :, :, 1]
        o, soft, p = attend(q, k, v, allowed, uniform, rate)
        ctx.rows, ctx.rate, ctx.shape, ctx.T = rows, rate, shape, T
        ctx.save_for_backward(zf, w, q, kv, *soft, *(p if rate != 1 else ()))
        return o

    @staticmethod
    def backward(ctx, go: torch.Tensor):
        zf, w, q, kv, *saved = ctx.saved_tensors
        rows, rate, T = ctx.rows, ctx.rate, ctx.T
        n, B, _, H, dh = ctx.shape
        k, v = kv[:, :, :, 0], kv[:, :, :, 1]
        soft = saved[:T]
        p = soft if rate == 1 else saved[T:]
        Tq = soft[0].shape[2]
        go = go.contiguous()
        gs, gq = attend_backward(go, k, v, soft, rate)
        query_at = {t: i for i, t in enumerate(range(T)[rows])}
        # q, k and v's gradients written where they go (a product straight into its slot)
        g = zf.new_empty(n, B, T, 3, H, dh)
        for j in range(T):  # g[:, :, j, 0 / 1 / 2]: q, k and v's gradients at position j
            if j in query_at:
                g[:, :, j, 0].copy_(gq[:, :, query_at[j]])
            else:
                g[:, :, j, 0].zero_()
            for slot, a, b in ((1, gs[j], q), (2, p[j], go)):
                if Tq == 1:
                    torch.mul(_per_dim(a, dh).squeeze(2), b.squeeze(2), out=g[:, :, j, slot])
                else:
                    g[:, :, j, slot].copy_((_per_dim(a, dh) * b).sum(2))
        g = g.view(n, B * T, -1)
        # autograd's own backward of bmm(zf, w^T), the products it would run
        gz = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(zf.transpose(1, 2), g).transpose(1, 2) if ctx.needs_input_grad[1] else None
        return gz, gw, None, None, None, None, None


def _per_dim(t: torch.Tensor, dh: int) -> torch.Tensor:
    """``[..., H] -> [..., H, dh]``, materialized: products with a contiguous operand vectorize, a
    broadcast over the innermost axis does not."""
    return t.unsqueeze(-1).expand(*t.shape, dh).contiguous()

