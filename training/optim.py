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


def _make(params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    kw: dict = {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # not fused: its SIMD body and scalar tail round differently, which breaks batch invariance
    for attempt in ({"foreach": True},):
        try:
            return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **attempt, **kw)
        except (RuntimeError, ValueError, TypeError):  # fused unsupported on this device/dtype
            continue
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


class Optimizer:
    """Adam / AdamW / SGD(momentum) on a dict of stacked leaf tensors ``[n_models, ...]``."""

    def __init__(self, params: dict[str, torch.Tensor], cfg: TrainConfig):
        self.cfg = cfg
        self.names = list(params)
        self.opt = _make([params[k] for k in self.names], cfg)

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: float, active: torch.Tensor) -> None:
        cfg = self.cfg
        frozen = not bool(active.all())
        if frozen:  # rare: some model diverged; its NaN grads must not reach the optimiser state
            grads = {k: torch.where(_bcast(active, g), g, 0.0) for k, g in grads.items()}
            saved = {k: p[~active].clone() for k, p in params.items()}
        if cfg.grad_clip > 0:
            sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
            scale = (cfg.grad_clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            grads = {k: g * _bcast(scale, g) for k, g in grads.items()}
        for k in self.names:
            params[k].grad = grads[k]
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        for k in self.names:
            params[k].grad = None
        if frozen:
            for k, p in params.items():
                p[~active] = saved[k]

    # -- state, for exact continuation from a checkpoint ---------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Per-parameter optimiser buffers ``{"<param>/<buffer>": [n, ...]}`` plus ``"step"``."""
        out: dict[str, torch.Tensor] = {}
        step = 0
        for k, p in zip(self.names, self.opt.param_groups[0]["params"]):
            for buf, v in self.opt.state.get(p, {}).items():
                if buf == "step":
                    step = int(v)
                elif isinstance(v, torch.Tensor) and v.shape == p.shape:
                    out[f"{k}/{buf}"] = v.detach().to("cpu", copy=True)
        out["step"] = torch.tensor(step)
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore buffers saved by :meth:`state` (the model axis must match)."""
        step = int(state.get("step", torch.tensor(0)))
        for k, p in zip(self.names, self.opt.param_groups[0]["params"]):
            bufs = {key.split("/", 1)[1]: v for key, v in state.items() if key.startswith(f"{k}/")}
            if not bufs:
                continue
            st = self.opt.state[p]
            for buf, v in bufs.items():
                st[buf] = v.to(device=p.device, dtype=p.dtype).clone()
            if self.cfg.optimizer != "sgd":
                st["step"] = torch.tensor(float(step))
