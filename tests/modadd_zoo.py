"""A tiny real modadd transformer zoo (p = 7, 4 models), shared by the extractor tests that need a
token model with modadd's diagnostics (``modadd_zoo``: one per test module, read-only use plus
fingerprint caches)."""

from __future__ import annotations

import pytest

TINY_MODADD = """
name = "tiny-modadd"
[task]
name = "modadd"
p = 7
n_diag = 32
n_key_freqs = 2
[model]
arch = "transformer"
vocab = 7
d_model = 8
n_heads = 2
d_mlp = 16
attention_rate = 0.5
[train]
steps = 30
batch_size = 32
optimizer = "adamw"
lr = 0.003
weight_decay = 1.0
checkpoints = [0, 30]
[seeds]
init = 2
data = 2
"""


@pytest.fixture(scope="module")
def modadd_zoo(tmp_path_factory):
    import fingerprint
    from training.config import load_config
    from training.sweep import run_sweep

    root = tmp_path_factory.mktemp("tiny-modadd")
    (root / "tiny.toml").write_text(TINY_MODADD)
    run_sweep(load_config(root / "tiny.toml"), root / "zoo")
    return fingerprint.Zoo.open(root / "zoo")


def tiny_modadd(n: int = 3, seed: int = 0, **model):
    """``n`` freshly initialised p = 7 modadd transformers (seeds ``seed..seed+n-1``): ``(family,
    params, task)``, for extractor tests that need no training."""
    from training.families import get_family
    from training.tasks import get_task

    task = get_task("modadd", {"p": 7})
    fam = get_family("transformer", task.input_shape, task.n_out,
                     {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.7, **model})
    return fam, fam.init(list(range(seed, seed + n))), task


def run_extractor(spec: str, fam, params, task, **kw):
    """``spec`` computed on the stacked ``params`` with parameters ``kw``: ``(values [n, ...] float64, meta)``."""
    import numpy as np

    from fingerprint.batch import ModelBatch
    from fingerprint.registry import get_extractor

    ex = get_extractor(spec)
    n = len(next(iter(params.values())))
    values, meta = ex.compute(ModelBatch(fam, params, task, [f"m{i}" for i in range(n)]), ex.resolve_params(kw))
    return np.asarray(values, dtype=np.float64), meta


def relabel_tokens(params: dict, perm):
    """The same models with token and class ``a`` renamed ``perm[a]`` (embedding and unembedding
    rows moved together): on modadd's whole grid they answer the relabelled question, as a model
    with another frequency set does."""
    import torch

    out = dict(params)
    for k in ("embed.weight", "out.weight", "out.bias"):
        out[k] = torch.empty_like(params[k])
        out[k][:, perm] = params[k]
    return out
