"""Optimisers over stacked parameters, with per-model clipping and freezing.

Adam/AdamW/SGD are elementwise, so model ``j``'s update depends only on model ``j``'s gradient and
batch composition cannot leak between models; we therefore use torch's own fused (or foreach)
implementations, which are several times faster than an op-by-op version. Gradient clipping is per
model (global norm over that model's parameters). Frozen (diverged) models get zero gradients and
their parameters are restored after each step, so they never move again.
"""

from __future__ import annotations

import math

import torch

from training.config import TrainConfig


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at ``step`` (0-based) under warm-up then constant / cosine / linear decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    t = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr * (1 - t)
    return cfg.lr


def _bcast(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


_ALIGN = 64  # floats: the flat buffer's length is a multiple of this (see Optimizer)


def _make(flat: torch.Tensor, cfg: TrainConfig) -> torch.optim.Optimizer:
    """A torch optimiser over the one flat buffer: fused kernels where this torch has them."""
    if cfg.optimizer == "sgd":
        kinds: tuple[dict, ...] = ({"fused": True}, {"foreach": True})
        make = lambda kw: torch.optim.SGD([flat], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw)
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        kinds = ({"fused": True}, {"foreach": True})
        make = lambda kw: cls([flat], lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **kw)
    for kw in kinds:
        try:
            return make(kw)
        except (RuntimeError, ValueError, TypeError):  # fused unsupported on this device/dtype
            continue
    return make({})


class Optimizer:
    """Adam / AdamW / SGD(momentum) over a population's stacked parameters ``{name: [n_models, ...]}``.

    All parameters live in one flat float32 buffer (name-major: each name's ``[n_models, ...]`` block
    is contiguous), so the optimiser is one fused, single-pass kernel instead of ~8 elementwise
    passes per tensor. The buffer length is padded to a multiple of ``_ALIGN`` floats: fused CPU
    kernels split work into cache-line-aligned units and run every element through the same SIMD
    code, with a scalar remainder only at the end of the buffer, which the padding keeps empty. So
    each element's update is the same arithmetic whatever the population size or the model's
    position in it (batch invariance). :attr:`params` are leaf views into the buffer.
    """

    def __init__(self, params: dict[str, torch.Tensor], cfg: TrainConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.names = list(params)
        self.shapes = {k: tuple(v.shape) for k, v in params.items()}
        sizes = [params[k].numel() for k in self.names]
        total = sum(sizes)
        padded = -(-max(total, 1) // _ALIGN) * _ALIGN
        self.offsets = dict(zip(self.names, [sum(sizes[:i]) for i in range(len(sizes))]))
        self.flat = torch.zeros(padded, dtype=torch.float32, device=device)
        self.grad = torch.zeros_like(self.flat)
        with torch.no_grad():
            for k in self.names:
                self._view(self.flat, k).copy_(params[k])
        self.params = {k: self._view(self.flat, k).requires_grad_(True) for k in self.names}
        self.grads = {k: self._view(self.grad, k) for k in self.names}
        self.opt = _make(self.flat, cfg)

    def _view(self, buf: torch.Tensor, k: str) -> torch.Tensor:
        n = math.prod(self.shapes[k])
        return buf[self.offsets[k] : self.offsets[k] + n].view(self.shapes[k])

    @torch.no_grad()
    def step(self, lr: float, active: torch.Tensor) -> None:
        """One update from the per-model gradients in :attr:`grads` (``{name: [n, ...]}`` views of the
        flat gradient buffer, which the family's backward writes into); models with ``active[j]``
        False stay put."""
        cfg = self.cfg
        frozen = not bool(active.all())
        if frozen:  # rare: some model diverged; its NaN grads must not reach the optimiser state
            for g in self.grads.values():
                g.masked_fill_(~_bcast(active, g), 0.0)
            saved = {k: p[~active].clone() for k, p in self.params.items()}
        if cfg.grad_clip > 0:
            sq = sum(g.flatten(1).pow(2).sum(1) for g in self.grads.values())
            scale = (cfg.grad_clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            for g in self.grads.values():
                g.mul_(_bcast(scale, g))
        self.flat.grad = self.grad
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.flat.grad = None
        if frozen:
            for k, p in self.params.items():
                p[~active] = saved[k]

    # -- state, for exact continuation from a checkpoint ---------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Per-parameter optimiser buffers ``{"<param>/<buffer>": [n, ...]}`` plus ``"step"``."""
        out: dict[str, torch.Tensor] = {}
        step = 0
        for buf, v in self.opt.state.get(self.flat, {}).items():
            if buf == "step":
                step = int(v)
            elif isinstance(v, torch.Tensor) and v.shape == self.flat.shape:
                for k in self.names:
                    out[f"{k}/{buf}"] = self._view(v, k).detach().to("cpu", copy=True)
        out["step"] = torch.tensor(step)
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore buffers saved by :meth:`state` (the model axis must match)."""
        step = int(state.get("step", torch.tensor(0)))
        bufs: dict[str, torch.Tensor] = {}
        for key, v in state.items():
            if "/" not in key:
                continue
            k, buf = key.split("/", 1)
            if k not in self.offsets:
                continue
            if buf not in bufs:
                bufs[buf] = torch.zeros_like(self.flat)
            self._view(bufs[buf], k).copy_(v.to(device=self.flat.device, dtype=torch.float32))
        if not bufs:
            return
        st = self.opt.state[self.flat]
        st.update(bufs)
        if self.cfg.optimizer != "sgd":
            st["step"] = torch.tensor(float(step), dtype=torch.float32, device=self._step_device())

    def _step_device(self) -> torch.device:
        # fused kernels keep ``step`` on the parameters' device; the others on the CPU
        return self.flat.device if self.opt.defaults.get("fused") else torch.device("cpu")
