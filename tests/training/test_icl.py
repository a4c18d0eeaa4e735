"""``icl-regression``: data from the data seed, pools from the task seed, the reference predictors,
the transformer's ``even`` readout, batch invariance, and a quick population with its labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import SweepConfig, TrainConfig, load_config
from training.core import seeds as rng
from training.core.errors import UserError
from training.core.store import Zoo
from training.families import get_family
from training.sweep import run_sweep
from training.tasks import get_task
from training.tasks.icl_regression import dmmse_predict, ridge_predict
from training.trainer import train_population


def _task(**kw):
    return get_task("icl-regression", {"dim": 3, "n_pairs": 6, **kw})


@pytest.mark.parametrize("tokens", ["pairs", "interleaved"])
def test_sampler_depends_only_on_each_models_data_seed(tokens):
    task = _task(pool_sizes=[1, 4, 0], tokens=tokens)
    seeds = [5, 6, 7, 8]
    variant = task.variant(torch.zeros(4, dtype=torch.int64), torch.tensor(seeds))
    assert variant.tolist() == [s % 3 for s in seeds]
    both = task.sampler(rng.seed_lanes(seeds, rng.DATA), 16, variant)(3)
    alone = task.sampler(rng.seed_lanes(seeds[2:3], rng.DATA), 16, variant[2:3])(3)
    assert torch.equal(both[0][2], alone[0][0]) and torch.equal(both[1][2], alone[1][0])
    again = task.sampler(rng.seed_lanes(seeds, rng.DATA), 16, variant)(3)
    assert torch.equal(both[0], again[0])
    assert not torch.equal(both[0][0], both[0][1])
    # the tokens encode the prompt; y is w . x plus noise of the task's scale, w from the pool
    x, y = task.decode(both[0])
    assert both[0].shape[-2:] == task.input_shape
    assert torch.equal(y[..., :-1], both[1][..., :-1]) and torch.equal(task.encode(x, both[1]), both[0])
    m1 = variant == 0  # data seed 6 -> M = 1: every prompt uses pool vector 0
    resid = both[1][m1] - (x[m1] * task.master_pool[0]).sum(-1)
    assert abs(resid.std().item() - task.noise_std) < 0.05


def test_pool_comes_from_the_task_seed_and_pools_are_nested():
    a, b, c = _task(), _task(), _task(seed=1)
    assert torch.equal(a.master_pool, b.master_pool) and not torch.equal(a.master_pool, c.master_pool)
    assert a.master_pool.shape == (64, 3)
    assert torch.equal(a.pool(4), a.pool(16)[:4]) and a.pool(0) is None
    assert _task(pool_sizes=[2, "inf"]).pool_sizes == (2, 0)
    with pytest.raises(UserError, match="pool_sizes"):
        _task(pool_sizes=[-1])
    with pytest.raises(UserError, match="pool_sizes"):
        _task(pool_sizes=["lots"])


def test_reference_predictors_on_known_cases():
    g = torch.Generator().manual_seed(0)
    P, k, d = 64, 10, 3
    x = torch.randn(P, k, d, generator=g)
    pool = torch.randn(5, d, generator=g)
    # M = 1: the posterior is certain, dMMSE is w . x from the first position on
    y = (x * pool[0]).sum(-1) + 0.3 * torch.randn(P, k, generator=g)
    assert torch.allclose(dmmse_predict(x, y, pool[:1], 0.3), (x * pool[0]).sum(-1), atol=1e-5)
    # a pool prompt: after a few noiseless-ish pairs the posterior picks the right vector
    yp = (x * pool[2]).sum(-1) + 0.01 * torch.randn(P, k, generator=g)
    assert torch.allclose(dmmse_predict(x, yp, pool, 0.1)[:, 4:], (x * pool[2]).sum(-1)[:, 4:], atol=1e-3)
    # ridge: no context -> 0; lambda -> 0 -> least squares on the preceding pairs
    w = torch.randn(P, d, generator=g)
    yr = (x * w[:, None]).sum(-1) + 0.5 * torch.randn(P, k, generator=g)
    r = ridge_predict(x, yr, 1e-9)
    assert (ridge_predict(x, yr, 0.25)[:, 0] == 0).all()
    for i in (d + 1, k - 1):
        ls = torch.linalg.lstsq(x[:, :i].double(), yr[:, :i, None].double()).solution[..., 0]
        assert torch.allclose(r[:, i], (ls * x[:, i]).sum(-1).float(), atol=1e-3)
    # noiseless targets: least squares is exact once d pairs are seen
    y0 = (x * w[:, None]).sum(-1)
    assert torch.allclose(ridge_predict(x, y0, 0.0)[:, d:], y0[:, d:], atol=1e-4)


@pytest.mark.parametrize("tokens", ["pairs", "interleaved"])
def test_predictions_are_causal_one_per_pair(tokens):
    task = _task(tokens=tokens)
    fam = get_family("transformer", task.input_shape, 1, {k: v for k, v in task.default_model().items() if k != "arch"})
    params = fam.init([0, 1])
    p = task.prompts(4, 0, 0)
    out = fam(params, p["tokens"])
    assert out.shape == (2, 4, task.n_pairs, 1)
    y = p["y"].clone()
    y[:, 3] += 5.0  # change y_3: predictions 0..3 must not move, later ones do
    out2 = fam(params, task.encode(p["x"], y))
    assert torch.equal(out[:, :, :4], out2[:, :, :4]) and not torch.allclose(out[:, :, 4:], out2[:, :, 4:])
    with pytest.raises(UserError, match="readout"):
        get_family("transformer", task.input_shape, 1, {"readout": "odd"})


def test_training_is_batch_invariant():
    task = _task(pool_sizes=[2, 0])
    fam = get_family("transformer", task.input_shape, 1, {"vocab": 0, "d_model": 16, "n_heads": 2, "n_layers": 2,
                                                          "d_mlp": 32, "layernorm": True, "readout": "all"})
    cfg = TrainConfig(steps=5, batch_size=8, lr=0.01)
    init, data = [3, 4, 5], [0, 1, 2]
    variant = task.variant(torch.tensor(init), torch.tensor(data))
    both = train_population(fam, task, cfg, fam.init(init), data, variant).checkpoints[5]
    alone = train_population(fam, task, cfg, fam.init(init[1:2]), data[1:2], variant[1:2]).checkpoints[5]
    for k in both:
        assert torch.allclose(both[k][1], alone[k][0], atol=1e-6), k


class _Reference:
    """A fake population whose 'models' are the reference predictors (decoded from the tokens)."""

    def __init__(self, task, kinds):
        self.task, self.kinds = task, kinds

    def __call__(self, tokens):
        x, y = self.task.decode(tokens)
        out = []
        for kind, m in self.kinds:
            if kind == "ridge":
                out.append(ridge_predict(x, y, self.task.noise_std**2))
            elif kind == "dmmse":
                out.append(dmmse_predict(x, y, self.task.pool(m), self.task.noise_std))
            else:
                out.append(torch.zeros_like(y))
        return torch.stack(out)[..., None]


def test_labels_of_the_reference_predictors():
    task = _task(pool_sizes=[4, 0], n_diag=128)
    kinds = [("ridge", 4), ("dmmse", 4), ("ridge", 0), ("zero", 0), ("zero", 4)]
    variant = torch.tensor([0, 0, 1, 1, 0])
    diag = task.diagnostics(_Reference(task, kinds), variant)
    assert list(diag["deep_label"]) == ["in-context-learner", "memorizer", "in-context-learner", "mixed", "mixed"]
    assert list(diag["pool_size"]) == [4, 4, 0, 0, 4]
    assert diag["icl_score"][0] > 0.99 and diag["icl_score"][1] < 0.01
    assert diag["pool_gap_dmmse"][1] < 1e-6 and diag["dmmse_mse_fresh"][0] > diag["ridge_mse_fresh"][0]
    ev = task.evaluate(_Reference(task, kinds), variant)
    assert ev["train_loss"].shape == (5,) and (ev["train_loss"][1] <= ev["train_loss"][0])


def test_quick_population_trains_and_m1_models_memorize(tmp_path: Path):
    cfg = load_config("icl-regression-quick").to_dict()
    cfg["seeds"] = {"init": 2, "data": 2}
    cfg["train"]["steps"] = 300
    cfg.pop("fingerprints", None)
    run_sweep(SweepConfig.from_dict(cfg), tmp_path / "zoo")
    m = Zoo.open(tmp_path / "zoo").models
    size = np.asarray(m["pool_size"], int)
    lab = np.asarray(m["deep_label"]).astype(str)
    assert sorted(size.tolist()) == [0, 0, 1, 1]
    assert (lab[size == 1] == "memorizer").all() and (lab[size == 0] != "memorizer").all()
    mse_pool = np.asarray(m["mse_pool"], float)
    assert (mse_pool[size == 1] < 0.3).all()  # the single task vector is learned
    for col in ("icl_score", "gap_ridge", "gap_dmmse", "mse_fresh", "ridge_mse_fresh", "train_loss", "test_loss"):
        assert np.isfinite(np.asarray(m[col], float)).all(), col
