"""modadd: the clock/pizza circuit metrics measure what they claim."""

from __future__ import annotations

import numpy as np
import torch

from training.config import load_config
from training.sweep import run_sweep
from training.tasks import get_task


def test_distance_irrelevance_extremes():
    task = get_task("modadd", {"p": 11})
    p = 11
    a = torch.arange(p)
    d = (a[:, None] - a[None, :]) % p
    only_distance = torch.cos(2 * np.pi * d.float() / p).reshape(1, -1)  # pizza-like: a function of a - b
    noise = torch.randn(1, p * p, generator=torch.Generator().manual_seed(0))  # no dependence on a - b
    assert task._distance_irrelevance(only_distance)[0] < 1e-5
    assert task._distance_irrelevance(noise)[0] > 0.85


def test_constant_attention_gives_symmetric_gradients_and_softmax_does_not(tmp_path):
    """Train tiny populations at attention rate 0 and 1 (p = 13): the paper's contrast on CPU."""
    sym = {}
    for rate in (0.0, 1.0):
        body = open("training/configs/modadd-quick.toml").read()
        body = body.replace("attention_rate = 1.0", f"attention_rate = {rate}").replace("init = 6", "init = 3")
        body = body.replace("steps = 1500", "steps = 800")
        cfg_path = tmp_path / f"r{rate}.toml"
        cfg_path.write_text(body)
        out = tmp_path / f"z{rate}"
        run_sweep(load_config(cfg_path), out)
        from fingerprint import Zoo

        m = Zoo.open(out).models
        assert (m["train_acc"] > 0.9).all()
        sym[rate] = float(np.mean(m["gradient_symmetricity"]))
        assert set(m["deep_label"]) <= {"clock", "pizza", "mixed"}
    assert sym[0.0] > 0.9 > sym[1.0], sym
