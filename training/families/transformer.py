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
from training.families.base import Family, HookPoints, get_activation, register_family
from training.families.layers import linear


@register_family
@dataclass
class TransformerFamily(Family):
    """Small transformer: token or vector inputs, attention-rate knob, last or all-position readout."""

    name = "transformer"
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

    def activation_names(self):
        names = ["embed"]
        for i in range(self.n_layers):
            b = f"block{i}"
            names += [f"{b}.attn.pattern", f"{b}.attn.out", f"{b}.resid_mid", f"{b}.mlp.pre", f"{b}.mlp.post", f"{b}.resid_post"]
        return names + ["out"]

    def forward(self, params, x, capture: Sequence[str] = (), edit: Mapping[str, Callable] | None = None):
        x, shared = self._split_x(x)
        hooks = HookPoints(capture, edit)
        n = params["pos.weight"].shape[0]
        d, H = self.d_model, self.n_heads
        dh = d // H
        if self.vocab > 0:
            tok = x.long()
            emb = params["embed.weight"]  # [n, vocab, d]
            h = emb[:, tok] if shared else emb[torch.arange(n, device=emb.device)[:, None, None], tok]
            B, T = tok.shape[-2], tok.shape[-1]
        else:
            B, T = x.shape[-3], x.shape[-2]
            flat = x.reshape(B * T, -1) if shared else x.reshape(n, B * T, -1)
            h = linear(flat, params["embed.weight"], params["embed.bias"]).reshape(n, B, T, d)
        h = hooks("embed", h + params["pos.weight"][:, None, :T])
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
            uniform = mask.float() / mask.sum(1, keepdim=True)
        else:
            mask = None
            uniform = torch.full((T, T), 1.0 / T, device=h.device)
        act = get_activation(self.activation)

        def per_position(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, B, T, -1)

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, B * T, -1)

        for i in range(self.n_layers):
            b, a = f"blocks.{i}", f"block{i}"
            z = self._ln(h, params, f"{b}.ln1") if self.layernorm else h
            zf = z.reshape(n, B * T, d)
            q, k, v = (torch.bmm(zf, params[f"{b}.attn.{m}.weight"].transpose(1, 2)).reshape(n, B, T, H, dh).transpose(2, 3)
                       for m in ("q", "k", "v"))
            if self.attention_rate > 0:
                scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [n, B, H, T, T]
                if mask is not None:
                    scores = scores.masked_fill(~mask, float("-inf"))
                pattern = torch.softmax(scores, -1)
                if self.attention_rate < 1:
                    pattern = self.attention_rate * pattern + (1 - self.attention_rate) * uniform
            else:
                pattern = uniform.expand(n, B, H, T, T)
            pattern = hooks(f"{a}.attn.pattern", pattern)
            o = (pattern @ v).transpose(2, 3).reshape(n, B * T, d)
            o = hooks(f"{a}.attn.out", torch.bmm(o, params[f"{b}.attn.o.weight"].transpose(1, 2)).reshape(n, B, T, d))
            h = hooks(f"{a}.resid_mid", h + o)
            z = self._ln(h, params, f"{b}.ln2") if self.layernorm else h
            pre = linear(z.reshape(n, B * T, d), params[f"{b}.mlp.fc.weight"], params[f"{b}.mlp.fc.bias"])
            # the MLP runs on [n, B*T, .]; its hook points see [n, B, T, .]
            pre = hooks(f"{a}.mlp.pre", pre, per_position, flat)
            post = hooks(f"{a}.mlp.post", act(pre), per_position, flat)
            m = linear(post, params[f"{b}.mlp.proj.weight"], params[f"{b}.mlp.proj.bias"]).reshape(n, B, T, d)
            h = hooks(f"{a}.resid_post", h + m)
        if self.layernorm:
            h = self._ln(h, params, "ln_f")
        if self.readout == "last":
            out = linear(h[:, :, -1], params["out.weight"], params["out.bias"])
        elif self.readout == "even":
            he = h[:, :, 0::2]
            out = linear(he.reshape(n, -1, d), params["out.weight"], params["out.bias"]).reshape(n, B, he.shape[2], -1)
        else:
            out = linear(h.reshape(n, B * T, d), params["out.weight"], params["out.bias"]).reshape(n, B, T, -1)
        return hooks("out", out), hooks.acts

    @staticmethod
    def _ln(h, params, name):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]
        shape = (w.shape[0],) + (1,) * (h.dim() - 2) + (w.shape[1],)
        return F.layer_norm(h, h.shape[-1:]) * w.reshape(shape) + b.reshape(shape)

    def module(self) -> nn.Module:
        return TransformerModule(self)

    def hidden_permutable(self):
        # MLP hidden units of each block can be permuted freely (attention heads are left alone).
        return {f"blocks.{i}.mlp": [(f"blocks.{i}.mlp.fc.weight", 0), (f"blocks.{i}.mlp.fc.bias", 0),
                                    (f"blocks.{i}.mlp.proj.weight", 1)] for i in range(self.n_layers)}


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
