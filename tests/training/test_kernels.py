"""The fused CPU kernels of the MLP training step: the same gradients as autograd, the same
training as the pure-torch path, batch invariance on both paths, and the switch that turns them off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_harness import assert_step_equals_autograd

from training.config import TrainConfig
from training.families import get_family, kernels
from training.tasks import get_task
from training.trainer import train_population


def _require_kernels():
    K = kernels.ops()
    if K is None:
        if shutil.which("c++") is None or shutil.which("ninja") is None:
            pytest.skip(f"no C++ toolchain here: {kernels.status()}")
        pytest.fail(f"the fused CPU kernels should build on this machine: {kernels.status()}")
    return K


@pytest.fixture(params=["kernels", "torch"])
def path(request):
    """Run a test on the kernel path and on the pure-torch path."""
    if request.param == "kernels":
        _require_kernels()
        yield request.param
    else:
        with kernels.disabled():
            yield request.param


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.sampled_from([16, 32, 48]), min_size=1, max_size=3), d_in=st.integers(1, 16),
       n_out=st.integers(2, 16), n=st.integers(1, 5), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_fused_step_equals_autograd(hidden, d_in, n_out, n, batch, seed):
    """Kernel path gradients == autograd's for any depth, input and class count the kernels take."""
    _require_kernels()
    fam = get_family("mlp", (d_in,), n_out, {"hidden": hidden})
    params = {k: v.requires_grad_(True) for k, v in fam.init([seed + j for j in range(n)]).items()}
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, batch, d_in, generator=g), torch.randint(0, n_out, (n, batch), generator=g)
    assert fam._fused_kernels(x) is not None
    weight = torch.rand(n, generator=g)

    def objective(out):
        ce = torch.nn.functional.cross_entropy(out.reshape(-1, n_out), y.reshape(-1), reduction="none")
        return (ce.reshape(n, batch).mean(1) * weight).sum()

    assert_step_equals_autograd(fam, params, x, objective)


@pytest.mark.parametrize("hp,d_in,n_out", [({"width": 12, "depth": 2}, 8, 2),   # width not a multiple of 16
                                           ({"width": 16, "depth": 2}, 17, 2),  # too many inputs
                                           ({"width": 16, "depth": 2}, 8, 17),  # too many classes
                                           ({"width": 16, "depth": 2, "activation": "tanh"}, 8, 2)])
def test_kernels_only_take_the_shapes_they_are_for(hp, d_in, n_out):
    fam = get_family("mlp", (d_in,), n_out, hp)
    assert fam._fused_kernels(torch.zeros(2, 3, d_in)) is None
    assert fam._fused_kernels(torch.zeros(2, 3, d_in, dtype=torch.float64)) is None


def _train(fam, task, seeds, steps):
    cfg = TrainConfig(steps=steps, batch_size=32, lr=0.01, checkpoints=[])
    return train_population(fam, task, cfg, fam.init(seeds), seeds, torch.zeros(len(seeds), dtype=torch.long),
                            checkpoint_steps=[]).checkpoints[steps]


def test_batch_invariance_on_both_paths(path):
    """A model trained alone or among 63 others ends at the same weights, on either path."""
    task = get_task("xor-cues", {"n_train": 256})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 32, "depth": 2})
    big = _train(fam, task, list(range(64)), 40)
    for j in (0, 41, 63):
        alone = _train(fam, task, [j], 40)
        assert max((big[k][j] - alone[k][0]).abs().max().item() for k in alone) < 1e-4


def test_kernel_and_torch_paths_train_the_same_models():
    """The two paths differ only in summation order: after 50 Adam steps the weights agree."""
    _require_kernels()
    task = get_task("xor-cues", {"n_train": 256})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 16, "depth": 3})
    fused = _train(fam, task, list(range(8)), 50)
    with kernels.disabled():
        plain = _train(fam, task, list(range(8)), 50)
    assert max((fused[k] - plain[k]).abs().max().item() for k in fused) < 1e-4


def test_kernels_refuse_tensors_they_cannot_read():
    K = _require_kernels()
    x, w, b = torch.zeros(2, 4, 3), torch.zeros(2, 16, 3), torch.zeros(2, 16)
    with pytest.raises(RuntimeError, match="out: expected a contiguous float32 CPU tensor"):
        K.first_forward(x, w, b, torch.zeros(2, 16, 4).transpose(1, 2))
    with pytest.raises(RuntimeError, match="x: expected a contiguous float32 CPU tensor"):
        K.first_forward(x.double(), w, b, torch.zeros(2, 4, 16))


def test_switch_off_and_status_in_fingerprint_list(tmp_path):
    """BASIN_FINGERPRINT_KERNELS=0 switches the kernels off (training still works), and
    ``fingerprint list`` says whether they are in use without compiling anything."""
    env = {**os.environ, kernels.ENV: "0"}
    code = ("from training.families import kernels; import torch; from training.families import get_family;"
            "fam = get_family('mlp', (8,), 2, {'width': 16}); print(fam._fused_kernels(torch.zeros(2, 3, 8)) is None);"
            "print(kernels.status())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "True" and f"disabled by {kernels.ENV}=0" in out[1]
    listed = subprocess.run([sys.executable, "-m", "fingerprint.cli", "list", "--json"], env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "disabled" in json.loads(listed)["cpu_kernels"]
    fresh = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}  # nothing built there: list must not build
    listed = subprocess.run([sys.executable, "-m", "fingerprint.cli", "list", "--json"], env=fresh, capture_output=True,
                            text=True, check=True).stdout
    assert json.loads(listed)["cpu_kernels"].startswith("not built yet")
    assert not any(tmp_path.iterdir())


def test_build_from_scratch_past_a_stale_lock(tmp_path):
    """A fresh cache builds the kernels; a lock file left by a killed build does not make it wait."""
    _require_kernels()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    name = kernels._name()
    build = tmp_path / "basin-fingerprint" / "kernels" / name
    build.mkdir(parents=True)
    (build / "lock").write_text("")
    os.utime(build / "lock", (1, 1))  # long ago
    code = "from training.families import kernels; print(kernels.status())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.startswith(f"in use: built in {build}"), out
    assert (build / f"{name}.so").is_file()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert again.startswith(f"in use: loaded from {build}"), again



def test_a_zoo_records_its_training_path_and_resume_refuses_the_other(tmp_path):
    """The seventh audit: a sweep killed on the kernels' path and resumed on torch's (no compiler,
    or BASIN_FINGERPRINT_KERNELS=0) finished with models of both paths, which agree only to float
    rounding, silently. Each shard records its path; --resume on the other one is refused."""
    _require_kernels()
    from training.config import SweepConfig
    from training.core import store as zoo_io
    from training.core.errors import UserError
    from training.sweep import run_sweep

    cfg = SweepConfig.from_dict({"task": {"name": "xor-cues"}, "model": {"arch": "mlp", "width": 16, "activation": "relu"},
                                 "train": {"steps": 5, "batch_size": 8}, "seeds": {"init": 4, "data": 1},
                                 "models_per_batch": 2})
    run_sweep(cfg, tmp_path / "z")
    shards = sorted((tmp_path / "z" / "shards").glob("*.h5"))
    assert len(shards) == 2
    assert {zoo_io.Shard(f).attrs["training_path"] for f in shards} == {"fused kernels"}
    shards[1].unlink()  # as a kill would leave it
    with kernels.disabled(), pytest.raises(UserError, match=r"cannot --resume '.*': its finished shards were trained on "
                                                           r"the fused kernels path and this process would train on the "
                                                           r"torch path"):
        run_sweep(cfg, tmp_path / "z", resume=True)
    run_sweep(cfg, tmp_path / "z", resume=True)  # on the same path: finished as planned
    assert len(list((tmp_path / "z" / "shards").glob("*.h5"))) == 2
