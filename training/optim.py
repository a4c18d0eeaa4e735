"""Functional optimisers over stacked parameters, with a per-model ``active`` mask.

Adam/AdamW/SGD here are elementwise, so model ``j``'s update depends only on model ``j``'s gradient:
batch composition cannot leak between models. Gradient clipping is per model (global norm over
that model's parameters). Frozen (diverged) models get no update at all.
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


class Optimizer:
    """Adam / AdamW / SGD(momentum) on a dict of stacked tensors ``[n_models, ...]``."""

    def __init__(self, params: dict[str, torch.Tensor], cfg: TrainConfig):
        self.cfg = cfg
        self.t = 0
        self.state = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params.items()}

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], lr: float, active: torch.Tensor) -> None:
        cfg = self.cfg
        self.t += 1
        grads = {k: torch.where(_bcast(active, g), g, 0.0) for k, g in grads.items()}
        if cfg.grad_clip > 0:
            sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
            scale = (cfg.grad_clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            grads = {k: g * _bcast(scale, g) for k, g in grads.items()}
        b1, b2 = cfg.betas
        for k, p in params.items():
            g = grads[k]
            m, v = self.state[k]
            if cfg.optimizer == "sgd":
                if cfg.weight_decay:
                    g = g + cfg.weight_decay * p
                m.mul_(cfg.momentum).add_(g)
                upd = lr * m
            else:
                if cfg.optimizer == "adam" and cfg.weight_decay:
                    g = g + cfg.weight_decay * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                mhat = m / (1 - b1**self.t)
                vhat = v / (1 - b2**self.t)
                upd = lr * mhat / (vhat.sqrt() + cfg.eps)
                if cfg.optimizer == "adamw" and cfg.weight_decay:
                    upd = upd + lr * cfg.weight_decay * p
            p.sub_(torch.where(_bcast(active, upd), upd, 0.0))
