"""The trainer, families and seeds: batch invariance, lineage, divergence, single-model views."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from exact import assert_bitwise_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import Zoo
from training.config import TrainConfig, load_config
from training.core import seeds as rng
from training.families import get_family
from training.families.module import ModuleFamily
from training.tasks import get_task
from training.trainer import train_population


def _train(fam, task, seeds, steps=30, **kw):
    cfg = TrainConfig(steps=steps, batch_size=32, lr=0.01, checkpoints=[], **kw)
    return train_population(fam, task, cfg, fam.init(seeds), seeds, torch.zeros(len(seeds), dtype=torch.long), checkpoint_steps=[])


def test_batch_invariance_256_mlp():
    """A model trained alone or among 255 others ends at the same weights (< 1e-4)."""
    task = get_task("xor-cues", {"n_train": 256})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 16, "depth": 2})
    seeds = list(range(256))
    big = _train(fam, task, seeds, steps=60).checkpoints[60]
    for j in (0, 97, 255):
        alone = _train(fam, task, [j], steps=60).checkpoints[60]
        diff = max((big[k][j] - alone[k][0]).abs().max().item() for k in alone)
        assert diff < 1e-4, (j, diff)


@settings(max_examples=12, deadline=None)
@given(activation=st.sampled_from(["relu", "tanh", "gelu"]), hidden=st.lists(st.sampled_from([4, 7]), max_size=3),
       n=st.integers(1, 6), batch=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_mlp_hand_written_backward_equals_autograd(activation, hidden, n, batch, seed):
    """The MLP's hand-written training gradient (reused buffers, shared per-width gradient buffers,
    no autograd graph) is autograd's, for any mix of hidden widths."""
    hp = {"hidden": hidden} if hidden else {"depth": 0}
    fam = get_family("mlp", (5,), 3, {**hp, "activation": activation})
    params = {k: v.requires_grad_(True) for k, v in fam.init([seed + j for j in range(n)]).items()}
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, batch, 5, generator=g), torch.randint(0, 3, (n, batch), generator=g)
    weight = torch.rand(n, generator=g)  # a per-model objective, like the masked loss sum

    def objective(out):
        ce = torch.nn.functional.cross_entropy(out.reshape(-1, 3), y.reshape(-1), reduction="none")
        return (ce.reshape(n, batch).mean(1) * weight).sum()

    assert_step_equals_autograd(fam, params, x, objective)


def assert_step_equals_autograd(fam, params, x, objective) -> None:
    """``fam.value_and_grad`` (twice: the second call reuses the first one's buffers) writes every
    gradient entry (they start as NaN) and gives autograd's loss and gradients."""
    from training.families.base import Family

    fast = {k: torch.full_like(v, float("nan")) for k, v in params.items()}
    ref = {k: torch.zeros_like(v) for k, v in params.items()}
    for _ in range(2):
        t_fast = fam.value_and_grad(params, x, objective, fast)
    t_ref = Family.value_and_grad(fam, params, x, objective, ref)
    assert torch.allclose(t_fast, t_ref, atol=1e-6)
    for k in params:
        assert torch.allclose(fast[k], ref[k], atol=1e-5, rtol=1e-5), k


@pytest.mark.parametrize("arch,shape,hp", [("mlp", (6,), {"width": 9, "depth": 2, "activation": "tanh"}),
                                           ("cnn", (1, 8, 8), {"channels": [2, 3], "fc": [5]}),
                                           ("transformer", (3, 5), {"vocab": 0, "d_model": 8, "d_mlp": 16, "readout": "all"})])
def test_sliced_forward_and_backward_equal_the_whole_population(monkeypatch, arch, shape, hp):
    """Family.outputs cuts the population into cache-sized slices of models and inputs; with a tiny
    cache budget (slices of one model, a few inputs) it gives what one whole forward pass gives, and
    the MLP's hand-written training step still gives autograd's gradients."""
    import training.families.base as base

    fam = get_family(arch, shape, 3, hp)
    params = fam.init(list(range(5)))
    x = torch.randn(37, *shape, generator=torch.Generator().manual_seed(0))
    whole = fam(params, x)
    monkeypatch.setattr(base, "CACHE_FLOATS", 64)
    assert torch.allclose(fam.outputs(params, x, chunk=16), whole, atol=1e-6)
    if arch == "mlp":
        xs = torch.randn(5, 11, *shape, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 3, (5, 11), generator=torch.Generator().manual_seed(2))
        objective = lambda out: torch.nn.functional.cross_entropy(out.reshape(-1, 3), y.reshape(-1))  # noqa: E731
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        fast = {k: torch.full_like(v, float("nan")) for k, v in p.items()}
        ref = {k: torch.zeros_like(v) for k, v in p.items()}
        fam.value_and_grad(p, xs, objective, fast)
        base.Family.value_and_grad(fam, p, xs, objective, ref)
        for k in p:
            assert torch.allclose(fast[k], ref[k], atol=1e-6), k


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "silu", "identity", "gelu"])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_mlp_in_place_outputs_equal_the_forward_pass(activation, depth):
    """Family.outputs' in-place, feature-major MLP slices give the plain forward pass's outputs."""
    fam = get_family("mlp", (5,), 3, {"width": 6, "depth": depth, "activation": activation})
    params = fam.init(list(range(4)))
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fam.outputs(params, x), fam(params, x), atol=1e-6)


def test_batch_invariance_cnn_and_order():
    """CNN too, and the model's position in the batch does not matter."""
    task = get_task("xor-cues")  # CNN needs images: use a fake image task via reshaped inputs
    fam = get_family("cnn", (1, 4, 4), 2, {"channels": [3, 4]})

    class Img:
        """xor-cues inputs padded to 16 dims and shown as 4x4 images."""

        def sampler(self, states, b, variant):
            inner = task.sampler(states, b, variant)

            def sample(step):
                x, y = inner(step)
                x = torch.nn.functional.pad(x, (0, 16 - x.shape[-1])).reshape(*x.shape[:2], 1, 4, 4)
                return x, y

            return sample

        loss = staticmethod(task.loss)

    seeds = [5, 1, 9, 3]
    cfg = TrainConfig(steps=20, batch_size=16, lr=0.01)
    a = train_population(fam, Img(), cfg, fam.init(seeds), seeds, torch.zeros(4, dtype=torch.long)).checkpoints[20]
    rev = seeds[::-1]
    b = train_population(fam, Img(), cfg, fam.init(rev), rev, torch.zeros(4, dtype=torch.long)).checkpoints[20]
    for k in a:
        assert torch.allclose(a[k], b[k].flip(0), atol=1e-5), k


@pytest.mark.parametrize("arch,shape,hp", [("mlp", (8,), {"width": 6, "depth": 2, "activation": "tanh"}),
                                           ("cnn", (1, 8, 8), {"channels": [2, 3], "fc": [5]}),
                                           ("transformer", (3,), {"vocab": 7, "d_model": 8, "n_heads": 2, "attention_rate": 0.5}),
                                           ("transformer", (5, 2), {"d_model": 8, "n_heads": 2, "n_layers": 2, "layernorm": True})])
def test_single_module_view_matches_batched_forward(arch, shape, hp):
    fam = get_family(arch, shape, 3, hp)
    params = fam.init([0, 1, 2])
    x = torch.randint(0, 7, (7, *shape)) if hp.get("vocab") else torch.randn(7, *shape)
    out, acts = fam.forward(params, x, capture=fam.activation_names())
    assert out.shape == (3, 7, 3)
    assert set(acts) == set(fam.activation_names())
    for j in range(3):
        m = fam.module()
        m.load_state_dict({k: v[j] for k, v in params.items()})
        assert torch.allclose(m(x), out[j], atol=1e-5)
    # per-model inputs give the same as shared inputs
    per = fam(params, x.expand(3, *x.shape))
    assert torch.allclose(per, out, atol=1e-5)


def test_module_family_vmaps_any_module():
    fam0 = get_family("mlp", (5,), 2, {"width": 4, "depth": 1})
    mf = ModuleFamily(factory=fam0.module, input_shape=(5,), n_out=2)
    params = fam0.init([3, 4])
    x = torch.randn(6, 5)
    out, acts = mf.forward(params, x, capture=["layer0"])
    assert torch.allclose(out, fam0(params, x), atol=1e-6)
    assert acts["layer0"].shape == (2, 6, 4)


def test_init_depends_only_on_seed():
    fam = get_family("mlp", (4,), 2, {"width": 5})
    a, b = fam.init([7, 8, 9]), fam.init([9])
    for k in a:
        assert torch.equal(a[k][2], b[k][0])


def test_diverged_model_is_frozen_and_others_unaffected():
    task = get_task("xor-cues", {"n_train": 128})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 8, "depth": 1})
    seeds = [0, 1, 2]
    params = fam.init(seeds)
    params["layer0.weight"][1] = float("nan")  # model 1 is broken from the start
    cfg = TrainConfig(steps=20, batch_size=32, lr=0.01)
    res = train_population(fam, task, cfg, params, seeds, torch.zeros(3, dtype=torch.long), checkpoint_steps=[])
    assert res.diverged.tolist() == [False, True, False]
    assert res.diverged_step[1] == 0
    alone = train_population(fam, task, cfg, fam.init([2]), [2], torch.zeros(1, dtype=torch.long)).checkpoints[20]
    assert_bitwise_equal({k: v[2] for k, v in res.checkpoints[20].items()}, {k: v[0] for k, v in alone.items()}, "model 2")
    # the frozen model's (finite) bias never moved
    assert torch.equal(res.checkpoints[20]["out.bias"][1], params["out.bias"][1])


def test_grad_clip_and_schedules_run():
    task = get_task("xor-cues", {"n_train": 128})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 8, "depth": 1})
    for kw in ({"grad_clip": 0.1, "schedule": "cosine", "warmup_steps": 5}, {"optimizer": "sgd", "schedule": "linear"},
               {"optimizer": "adamw", "weight_decay": 0.1}):
        res = _train(fam, task, [0, 1], steps=15, **kw)
        assert not res.diverged.any()


@given(st.integers(0, 2**31), st.integers(1, 200))
@settings(max_examples=25, deadline=None)
def test_counter_rng_permutation_is_a_permutation(seed, n):
    states = rng.seed_lanes([seed, seed + 1], rng.DATA)
    perm = rng.permutation(states, n, 3)
    for row in perm:
        assert sorted(row.tolist()) == list(range(n))
    # a model's stream does not depend on its neighbours
    alone = rng.permutation(rng.seed_lanes([seed + 1], rng.DATA), n, 3)
    assert torch.equal(alone[0], perm[1])


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=4), st.lists(st.integers(0, 9), max_size=2),
       st.lists(st.integers(1, 6), max_size=2))
@settings(max_examples=30, deadline=None)
def test_counter_rng_fast_paths_equal_the_torch_definition(seeds, counters, shape):
    """bits (numpy uint32 on the CPU) and permutation (a packed-key sort) are exactly the int64 torch
    hash and its stable argsort: the data order of every stored zoo depends on it."""
    states = rng.seed_lanes(seeds, rng.DATA)
    s = states
    for c in counters:
        s = rng.mix(s, c)
    idx = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
    assert torch.equal(rng.bits(states, *counters, shape=tuple(shape)), rng.mix(s.reshape(s.shape + (1,) * len(shape)), idx))
    n = math.prod(shape)
    ref = torch.argsort(rng.bits(states, *counters, shape=(n,)), dim=-1, stable=True)
    assert torch.equal(rng.permutation(states, n, *counters), ref)


def test_counter_rng_uniform_and_normal_statistics():
    s = rng.seed_lanes(list(range(4)), rng.DATA)
    u = rng.uniform(s, 0, shape=(20000,))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    z = rng.normal(s, 1, shape=(20000,))
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03


def test_lineage_spawn_and_finetune(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    m = zoo.models
    kinds = dict(zip(*np.unique(m["kind"].astype(str), return_counts=True)))
    assert kinds == {"base": 8, "spawn": 8, "finetune": 8}
    spawn = [r for r in m if r["kind"] == "spawn"][0]
    assert spawn["parent_id"] == f"i{spawn['init_seed']}-d{[r for r in m if r['model_id'] == spawn['parent_id']][0]['data_seed']}"
    assert spawn["spawn_step"] == 10
    # the child starts exactly at the parent's step-10 checkpoint
    parent10 = zoo.params(10, [spawn["parent_id"]])
    child10 = zoo.params(10, [spawn["model_id"]])
    for k in parent10:
        assert torch.equal(parent10[k], child10[k])
    # but then follows its own data order
    assert not torch.equal(zoo.params(40, [spawn["parent_id"]])["out.weight"], zoo.params(40, [spawn["model_id"]])["out.weight"])
    ft = [r for r in m if r["kind"] == "finetune"][0]
    assert ft["final_step"] == 50  # continues the parent's step count: 40 + 10
    assert zoo.model_steps(ft["model_id"]) == [45, 50]
    p40 = zoo.params(40, [ft["parent_id"]])
    assert not torch.equal(zoo.params(None, [ft["model_id"]])["out.weight"], p40["out.weight"])


def test_zoo_api_order_chunks_and_metrics(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    assert len(zoo) == 24
    assert zoo.model_ids[:2] == ["i0-d0", "i0-d1"]
    full = zoo.params()
    assert full["layer0.weight"].shape == (24, 8, 8)
    chunks = list(zoo.iter_chunks(5))
    assert [len(c[0]) for c in chunks] == [5, 5, 5, 5, 4]
    assert torch.equal(torch.cat([c[1]["out.bias"] for c in chunks]), full["out.bias"])
    assert zoo.steps == [0, 10, 20, 40, 45, 50]
    assert zoo.common_steps == []  # fine-tunes (45, 50) share no step with the grid
    assert len(zoo.models_at(10)) == 16 and len(zoo.models_at(50)) == 8
    base = [i for i in zoo.model_ids if ">" not in i]
    m10 = zoo.metrics(10)
    assert {"train_acc", "deep_label", "rule_a_agreement"} <= set(m10.names())
    assert np.isnan(m10["train_acc"][zoo.index(["i0-d0>ft-d2000"])[0]])
    assert not np.isnan(m10["train_acc"][zoo.index(base[:1])[0]])
    with pytest.raises(Exception, match="no checkpoint at step 20"):
        zoo.params(20, ["i0-d0>ft-d2000"])
    # any order, across shards, dense (one contiguous read) and sparse rows alike: each model's own weights
    rng_ = np.random.default_rng(0)
    for ids in (list(rng_.permutation(zoo.model_ids)), zoo.model_ids[::7], base[3:6], [base[2], base[2]]):
        got = zoo.params(None, ids)
        for k, v in got.items():
            assert torch.equal(v, full[k][zoo.index(ids)]), (k, ids)


def test_transformer_attention_rate_zero_is_uniform_and_trains():
    fam = get_family("transformer", (4,), 5, {"vocab": 5, "d_model": 8, "n_heads": 2, "attention_rate": 0.0})
    params = {k: v.requires_grad_() for k, v in fam.init([0, 1]).items()}
    x = torch.randint(0, 5, (6, 4))
    out, acts = fam.forward(params, x, capture=["block0.attn.pattern"])
    pat = acts["block0.attn.pattern"]
    assert torch.allclose(pat[..., -1, :], torch.full_like(pat[..., -1, :], 0.25))
    out.sum().backward()
    assert params["blocks.0.attn.q.weight"].grad is None  # queries are unused under constant attention
    assert params["blocks.0.attn.v.weight"].grad.abs().sum() > 0
    # ... and the trainer copes with unused parameters
    from training.trainer import train_population

    class Tok:
        def sampler(self, states, b, variant):
            return lambda step: (torch.randint(0, 5, (2, b, 4)), torch.randint(0, 5, (2, b)))

        loss = staticmethod(get_task("xor-cues").loss)

    res = train_population(fam, Tok(), TrainConfig(steps=3, batch_size=4), fam.init([0, 1]), [0, 1], torch.zeros(2, dtype=torch.long))
    assert not res.diverged.any()


def test_training_in_groups_changes_no_model(monkeypatch):
    """A population too big for the CPU's group budget trains as groups one after another: the same
    checkpoints, divergence, optimizer states and continuation, and progress counts every model."""
    import training.trainer as trainer

    task = get_task("xor-cues", {"n_train": 256})
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 16, "depth": 2})
    seeds, zeros = list(range(10)), torch.zeros(10, dtype=torch.long)
    cfg = TrainConfig(steps=20, batch_size=32, lr=0.01, checkpoints=[])

    def run(**kw):
        return train_population(fam, task, cfg, fam.init(seeds), seeds, zeros, checkpoint_steps=[5, 10],
                                save_optimizer_state=True, **kw)

    whole = run()
    resumed = train_population(fam, task, cfg, whole.checkpoints[10], seeds, zeros, start_step=10,
                               optimizer_state=whole.optimizer_states[10])
    assert trainer.group_size(fam, 10, 32, "cpu") == 10
    monkeypatch.setattr(trainer, "GROUP_BYTES", 4 * fam.step_floats(32) * 3)  # three models' worth
    assert trainer.group_size(fam, 10, 32, "cpu") == 3 and trainer.group_size(fam, 10, 32, "cuda") == 10
    calls = []
    grouped = run(on_step=lambda step, m: calls.append(m))
    assert sorted(calls) == sorted([3, 3, 3, 1] * 20)
    close = lambda a, b: a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # noqa: E731
    assert grouped.checkpoints.keys() == whole.checkpoints.keys()
    assert all(close(grouped.checkpoints[s], whole.checkpoints[s]) for s in whole.checkpoints)
    assert all(close(grouped.optimizer_states[s], whole.optimizer_states[s]) for s in whole.optimizer_states)
    assert torch.equal(grouped.diverged, whole.diverged) and torch.equal(grouped.diverged_step, whole.diverged_step)
    again = train_population(fam, task, cfg, whole.checkpoints[10], seeds, zeros, start_step=10,
                             optimizer_state=whole.optimizer_states[10])
    assert close(again.checkpoints[20], resumed.checkpoints[20]) and close(again.checkpoints[20], whole.checkpoints[20])


def test_continuing_from_a_checkpoint_with_optimizer_state_is_exact(tmp_path, tiny_config):
    """Train to the end in one go, or to step 20 and continue from the saved state: same weights."""
    from training.sweep import run_sweep

    body = open(tiny_config()).read().replace("checkpoints = [0, 10, 20]", "checkpoints = [0, 10, 20]\nsave_optimizer_state = true")
    body = body.split("[[spawn]]")[0]
    run_sweep(load_config(tiny_config(body=body)), tmp_path / "z")
    zoo = Zoo.open(tmp_path / "z")
    from training.sweep import build_family, build_task

    config = load_config(tiny_config(body=body))
    task = build_task(config)
    fam = build_family(config, task)  # the task's default model, overridden by the config
    ids = zoo.model_ids[2:6]
    cfg = config.train
    state = zoo.optimizer_state(20, ids)
    assert int(state["step"]) == 20 and "out.weight/exp_avg" in state
    res = train_population(fam, task, cfg, zoo.params(20, ids), list(zoo.models["data_seed"][2:6]),
                           torch.zeros(4, dtype=torch.long), start_step=20, optimizer_state=state)
    final = zoo.params(40, ids)
    assert_bitwise_equal(res.checkpoints[40], final, "continued from step 20")


def test_continue_selected_models_reuses_checkpoints_exactly(tmp_path, tiny_config):
    """select's training half: continued models match the source's finals; lineage points back."""
    from training.select import continue_models
    from training.sweep import run_sweep

    body = open(tiny_config()).read().replace("checkpoints = [0, 10, 20]", "checkpoints = [0, 10, 20]\nsave_optimizer_state = true")
    run_sweep(load_config(tiny_config(body=body)), tmp_path / "src")
    src = Zoo.open(tmp_path / "src")
    chosen = ["i1-d0", "i2-d1", "i3-d0>s10-d1000"]
    summary = continue_models(tmp_path / "src", chosen, 20, tmp_path / "sel", models_per_batch=2)
    assert summary.model_steps == 3 * 20  # only the remaining 20 steps of 3 models, nothing from scratch
    sel = Zoo.open(tmp_path / "sel")
    assert sel.model_ids == [f"{c}>c20" for c in chosen]
    assert list(sel.models["parent_id"]) == chosen and set(sel.models["kind"]) == {"continued"}
    assert sel.manifest["continue_from"]["exact"] is True
    assert_bitwise_equal(src.params(40, chosen), sel.params(), "continued models")
    assert list(sel.models["deep_label"]) == list(src.models["deep_label"][src.index(chosen)])
    with pytest.raises(Exception, match="only seed-grid and spawned models"):
        continue_models(tmp_path / "src", ["i0-d0>ft-d2000"], 20, tmp_path / "bad")


def test_final_finiteness_check_is_exact():
    """A model is diverged at the end iff some parameter is NaN/inf: huge-but-finite weights whose
    sums overflow float32 are not flagged."""
    from training.trainer import finite_models

    p = {"a": torch.randn(5, 3, 4), "b": torch.randn(5, 2)}
    p["a"][1, 0, 0] = float("nan")
    p["b"][3, 1] = float("-inf")
    p["a"][4] = 3e38
    assert finite_models(p).tolist() == [True, False, True, False, True]


def test_bench_train_smoke(monkeypatch, capsys):
    """``scripts/bench_train.py`` runs end to end at a tiny size: its JSON has the keys the targets
    are judged on, and ``--breakdown`` lists the step's ops with their per-step times. The script runs
    as ``__main__`` in this process (``runpy``): a fresh interpreter would spend its time importing torch."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"
    # a 1024^3 peak matmul: ~1/8 of the default 2048^3's seconds, at a similar GFLOP/s on the test hosts
    tiny = ["--models", "4", "--steps", "3", "--repeats", "1", "--peak-size", "1024", "--json"]

    def run(*args: str) -> str:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", [str(script), *args])
        runpy.run_path(str(script), run_name="__main__")
        return capsys.readouterr().out

    res = json.loads(run(*tiny))
    assert res["n_models"] == 4 and res["peak_gflops"] > 0
    assert res["speedup_vs_loop"] > 0 and 0 < res["fraction_of_peak"] < 1
    assert "cpu_kernels" in res and (res["cpu_kernels"].startswith("not in use") or res["kernels_speedup"] > 0)
    out = run(*tiny, "--breakdown")
    rows = json.loads(out)
    assert rows and {"op", "shapes", "calls_per_step", "ms_per_step", "share"} <= set(rows[0])
    assert any(r["op"] == "aten::bmm" for r in rows)



def test_bench_train_matmul_bound():
    """``bench_train.py --family transformer --matmul-bound`` times a step's matmuls where they are
    called: they are a part of the step, and with everything else free the fraction of peak is higher."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"
    bound = runpy.run_path(str(script))["matmul_bound"]
    threads = torch.get_num_threads()
    r = bound("modadd", n_models=2, steps=2, repeats=1, peak_size=256)
    assert torch.get_num_threads() == threads
    assert r["config"] == "modadd" and r["matmul_calls_per_step"] > 0
    assert 0 < r["matmul_ms"] < r["step_ms"] and abs(r["matmul_ms"] + r["other_ms"] - r["step_ms"]) < 0.02
    assert 0 < r["fraction_of_peak"] < r["bound_fraction_of_peak"]


def test_bench_train_transformer_with_workers(tmp_path):
    """``bench_train.py --family transformer --workers 2`` runs end to end at a tiny size: the JSON the
    targets are judged on, and the harness and the loop timed in two one-thread worker processes
    (spawned: the script runs as its own process, since the workers import it as ``__main__``)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"
    res = subprocess.run([sys.executable, str(script), "--family", "transformer", "--config", "modadd", "--steps", "2",
                          "--repeats", "1", "--loop-models", "2", "--workers", "2", "--peak-size", "1024", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["speedup_vs_loop"] > 0 and 0 < out["fraction_of_peak"] < 1
    (cfg,) = out["configs"]
    w = cfg["in_workers"]
    assert cfg["config"] == "modadd" and w["workers"] == 2 and w["loop_models_timed"] == 2
    assert len(w["vectorized_runs"]) == 1 and w["vectorized_seconds"] > 0 and w["loop_seconds"] > 0
    assert w["speedup_vs_loop"] > 0 and w["speedup_vs_loop_in_workers"] > 0 and 0 < w["fraction_of_peak"] < 1

@pytest.mark.parametrize("shape,hp", [
    ((2,), {"vocab": 9, "d_model": 16, "n_heads": 4, "d_mlp": 32, "attention_rate": 0.5}),  # modadd's: short, last block pruned
    ((3,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "n_layers": 2, "readout": "all"}),
    ((4,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.3, "readout": "even", "causal": False}),
    ((7,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.7, "readout": "even", "n_layers": 2}),
    ((9,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "n_layers": 2, "layernorm": True, "readout": "last"}),
    ((6,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.0, "readout": "even"}),
    ((6, 3), {"vocab": 0, "d_model": 8, "n_heads": 2, "d_mlp": 16, "layernorm": True, "readout": "all", "activation": "gelu"}),
])
def test_transformer_training_pass_equals_the_hooked_pass(shape, hp):
    """With nothing captured the transformer takes its training pass (short sequences' attention with
    a hand-written backward, the last block only at the read-out positions); with a hook it runs
    every op through autograd at every position. Outputs and gradients agree, on shared and
    per-model inputs."""
    fam = get_family("transformer", shape, 5, hp)
    params = {k: v.requires_grad_(True) for k, v in fam.init([0, 1, 2]).items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (11, *shape), generator=g) if hp["vocab"] else torch.randn(11, *shape, generator=g)
    for xin in (x, x.expand(3, *x.shape)):
        fast = fam(params, xin)
        ref, acts = fam.forward(params, xin, capture=["embed"])
        assert fast.shape == ref.shape and "embed" in acts
        assert torch.allclose(fast, ref, atol=1e-5)
        r = torch.randn(fast.shape, generator=g)
        g_fast = torch.autograd.grad((fast * r).sum(), list(params.values()), allow_unused=True)
        g_ref = torch.autograd.grad((ref * r).sum(), list(params.values()), allow_unused=True)
        for k, a, b in zip(params, g_fast, g_ref):
            assert (a is None) == (b is None), k
            if a is not None:
                assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("shape,hp", [
    ((7,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.7, "readout": "even", "n_layers": 2}),
    ((4,), {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "readout": "last", "causal": False, "layernorm": True}),
])
def test_the_hooked_transformer_pass_traces_as_one_graph(shape, hp):
    """The hooked (plain-op) pass has no data-dependent Python branch, so ``torch.compile`` traces it
    whole (``scripts/bench_compile.py`` measures what compiling it gives): whether attention needs its
    causal mask is decided from the positions, not read from a tensor."""
    fam = get_family("transformer", shape, 5, hp)
    params = fam.init([0, 1])
    x = torch.randint(0, 7, (2, 3, *shape), generator=torch.Generator().manual_seed(0))
    explained = torch._dynamo.explain(lambda p, xs: fam.forward(p, xs, capture=("out",))[0])(params, x)
    assert explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.parametrize("shape,hp", [((2,), {"vocab": 9, "d_model": 16, "n_heads": 4, "d_mlp": 32, "attention_rate": 0.5}),
                                      ((6,), {"vocab": 9, "d_model": 8, "n_heads": 2, "d_mlp": 16, "n_layers": 2,
                                              "layernorm": True, "readout": "even"})])
def test_transformer_training_pass_runs_off_the_cpu(shape, hp):
    """No CPU-only op or CPU tensor in the training pass (``--device cuda``): forward and backward run
    on torch's ``meta`` device (shapes only; no GPU on the test hosts)."""
    fam = get_family("transformer", shape, 5, hp)
    params = {k: v.to("meta").requires_grad_(True) for k, v in fam.init([0, 1]).items()}
    out = fam(params, torch.randint(0, 9, (4, *shape)).to("meta"))
    grads = torch.autograd.grad(out.sum(), list(params.values()))
    assert out.shape[:2] == (2, 4) and all(g.shape == p.shape for g, p in zip(grads, params.values()))
