"""Bit-exactness of training across batch compositions, on any x86 host.

A model's identity is its seeds: trained alone, or at any position of a larger population, it ends
at the same bits (for a fixed thread count; the tests run one thread per process). On an AMD EPYC
host MKL's matrix products depended on operand alignment, which depends on the population size
(``training.core.numerics``); these tests fail there without MKL's reproducible mode.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
import torch
from exact import assert_bitwise_equal, assert_conv_equal

from training.config import TrainConfig
from training.core.numerics import blas_reproducible
from training.families import get_family, kernels
from training.tasks import get_task
from training.trainer import train_population


def test_reproducible_blas_is_on_after_import():
    """Importing our packages requests MKL's reproducible mode before torch's first product; a
    mode the user chose is kept."""
    code = ("import fingerprint, torch, os; torch.mm(torch.ones(3, 3), torch.ones(3, 3));"
            "from training.core.numerics import blas_reproducible; print(os.environ['MKL_CBWR'], blas_reproducible())")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out[0] == "AUTO,STRICT" and out[1] in ("True", "None")  # None: a torch without MKL
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "MKL_CBWR": "COMPATIBLE"},
                         check=True).stdout.split()
    assert out[0] == "COMPATIBLE"


def test_idle_openmp_threads_sleep_unless_the_user_chose():
    """Importing our packages asks OpenMP for the passive wait policy (threads spinning at barriers
    burn shared cores: training.core.numerics.request_passive_threads); a policy the user set is kept."""
    code = "import training, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, check=True).stdout.strip()  # noqa: E731
    assert run(env) == "PASSIVE"
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.parametrize("offset", [1, 2, 3, 4, 8])
def test_matrix_products_do_not_depend_on_operand_alignment(offset):
    """The root cause, pinned: the product of a ``[2, 8]`` operand placed at any float offset in its
    buffer is the aligned one's (on the AMD host it differed by 5e-7 at offsets 1-3 without MKL_CBWR)."""
    if blas_reproducible() is False:
        pytest.fail("MKL's reproducible mode is off in the test process")
    g = torch.Generator().manual_seed(0)
    for m, k, n in [(2, 8, 32), (2, 7, 30), (1, 16, 64), (5, 33, 13)]:
        w, h = torch.randn(1, m, k, generator=g), torch.randn(1, n, k, generator=g)
        buf = torch.zeros(offset + w.numel())
        placed = buf[offset:].view(1, m, k)
        placed.copy_(w)
        assert_bitwise_equal(torch.bmm(placed, h.transpose(1, 2)), torch.bmm(w, h.transpose(1, 2)), f"bmm {m}x{k}x{n} at +{offset}")


def _train(fam, task, seeds, batch, steps=12):
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=0.01, checkpoints=[])
    params = fam.init(seeds)
    return train_population(fam, task, cfg, params, seeds, torch.zeros(len(seeds), dtype=torch.long), checkpoint_steps=[]).checkpoints[steps]


@pytest.mark.parametrize("kernel_path", [False, True])
@pytest.mark.parametrize("act,width,n_noise,batch", [("tanh", 8, 4, 32), ("tanh", 33, 1, 13), ("relu", 16, 4, 13),
                                                     ("relu", 32, 1, 32), ("gelu", 7, 4, 13)])
def test_a_model_alone_and_in_any_batch_position_is_bit_identical(act, width, n_noise, batch, kernel_path):
    """Awkward shapes (odd widths, inputs and batch sizes put each model's slice of every buffer at
    an unaligned address) on both MLP paths: alone == at position 0 == at position 3 of 5."""
    if kernel_path and kernels.ops() is None:
        pytest.skip(f"fused kernels unavailable: {kernels.status()}")
    task = get_task("xor-cues", {"n_train": 64, "n_noise": n_noise})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": width, "depth": 2, "activation": act})
    seeds = [11, 3, 7, 5, 2]
    with kernels.disabled() if not kernel_path else contextlib.nullcontext():
        big = _train(fam, task, seeds, batch)
        for j in (0, 3):
            alone = _train(fam, task, [seeds[j]], batch)
            assert_bitwise_equal({k: v[j] for k, v in big.items()}, {k: v[0] for k, v in alone.items()},
                                 f"{act} width {width} model {j}")



@pytest.mark.parametrize("hp", [{"channels": [4, 8]}, {"channels": [3, 5, 6], "fc": [7]}])
def test_a_cnn_alone_and_in_any_batch_position_is_bit_identical(hp):
    """The CNN's grouped convolutions too: alone == at position 0 == at position 3 of 5 (alone it
    convolved as one group, whose input gradient took another path: 1e-7 apart after 6 steps). Bit for
    bit where oneDNN's grouped convolution was measured invariant to the group count (``exact.py``)."""
    task = get_task("digits-backdoor", {})
    fam = get_family("cnn", task.input_shape, task.n_out, hp)
    seeds = [11, 3, 7, 5, 2]
    big = _train(fam, task, seeds, 8, steps=6)
    for j in (0, 3):
        alone = _train(fam, task, [seeds[j]], 8, steps=6)
        assert_conv_equal({k: v[j] for k, v in big.items()}, {k: v[0] for k, v in alone.items()}, f"cnn {hp} model {j}")


@pytest.mark.parametrize("task_name,hp,batch", [
    ("modadd", {"vocab": 7, "d_model": 16, "n_heads": 4, "d_mlp": 32, "attention_rate": 0.5}, 13),  # T = 2, pruned last block
    ("modadd", {"vocab": 7, "d_model": 16, "n_heads": 4, "d_mlp": 32, "attention_rate": 0.0}, 13),  # constant attention
    ("tiny-lm", {"vocab": 64, "d_model": 16, "n_heads": 4, "d_mlp": 24, "n_layers": 2, "layernorm": True, "readout": "all"}, 5),
])
def test_a_transformer_alone_and_in_any_batch_position_is_bit_identical(task_name, hp, batch):
    """The transformer's training pass (fused q/k/v, the short-sequence attention's hand-written
    backward, the last block pruned) keeps a model's identity too: alone == at position 0 == at
    position 3 of 5."""
    task = get_task(task_name, {"p": 7} if task_name == "modadd" else {})
    fam = get_family("transformer", task.input_shape, task.n_out, hp)
    cfg = TrainConfig(steps=6, batch_size=batch, lr=0.01, optimizer="adamw", weight_decay=1.0, checkpoints=[])
    seeds = [11, 3, 7, 5, 2]
    variant = torch.zeros(5, dtype=torch.long)
    big = train_population(fam, task, cfg, fam.init(seeds), seeds, variant, checkpoint_steps=[]).checkpoints[6]
    for j in (0, 3):
        alone = train_population(fam, task, cfg, fam.init(seeds[j : j + 1]), seeds[j : j + 1], variant[:1],
                                 checkpoint_steps=[]).checkpoints[6]
        assert_bitwise_equal({k: v[j] for k, v in big.items()}, {k: v[0] for k, v in alone.items()}, f"{task_name} model {j}")
