"""causal-ii: task hypotheses, activation patching, and interchange-intervention accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fingerprint import ModelBatch, Zoo
from fingerprint.extractors.causal import causal_ii
from training.core.errors import UserError
from training.families import get_family
from training.tasks import get_task

XOR = """
name = "xor-causal"

[task]
name = "xor-cues"
n_train = 256

[model]
arch = "mlp"
width = 16
depth = 1
activation = "tanh"

[train]
steps = 300
batch_size = 64
optimizer = "sgd"
lr = 0.1
momentum = 0.9

[seeds]
init = 16
data = 1
"""


@pytest.fixture(scope="module")
def xor_zoo(tmp_path_factory):
    from training.config import load_config
    from training.sweep import run_sweep

    d = tmp_path_factory.mktemp("causal")
    (d / "xor.toml").write_text(XOR)
    run_sweep(load_config(d / "xor.toml"), d / "zoo")
    return Zoo.open(d / "zoo")


def test_iia_recovers_which_rule_each_model_follows(xor_zoo):
    mb = ModelBatch.from_zoo(xor_zoo)
    vals, meta = causal_ii(mb, steps=80, n_pairs=128)
    assert vals.shape == (len(mb), 2) and meta["hypotheses"] == ["rule_a", "rule_b"]
    table = xor_zoo.models
    label = dict(zip(table["model_id"], table["deep_label"]))
    lab = np.array([label[m] for m in mb.model_ids])
    v = vals.numpy()
    assert (lab == "rule_a").sum() >= 2 and (lab == "rule_b").sum() >= 2, lab
    a, b = lab == "rule_a", lab == "rule_b"
    # the hypothesis a model follows is swappable almost perfectly; the other one much less
    assert (v[a, 0] > v[a, 1]).all() and (v[b, 1] > v[b, 0]).all(), (lab, v)
    assert v[a, 0].min() > 0.95 and v[b, 1].min() > 0.95
    assert v[a, 1].mean() < 0.9 and v[b, 0].mean() < 0.9


def test_deterministic_and_independent_of_batch_mates(xor_zoo):
    mb = ModelBatch.from_zoo(xor_zoo)
    first, _ = causal_ii(mb, steps=20, n_pairs=64, seed=3)
    again, _ = causal_ii(mb, steps=20, n_pairs=64, seed=3)
    assert torch.equal(first, again)
    sub, _ = causal_ii(mb.subset([5, 1, 2]), steps=20, n_pairs=64, seed=3)
    assert torch.allclose(sub, first[[5, 1, 2]], atol=2 / 64)
    other, _ = causal_ii(mb, steps=20, n_pairs=64, seed=4)
    assert not torch.equal(first, other)


def test_task_without_hypotheses_is_a_one_line_error():
    task = get_task("digits-backdoor")
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 8, "depth": 1})
    mb = ModelBatch(fam, fam.init([0, 1]), task, ["m0", "m1"])
    with pytest.raises(UserError) as err:
        causal_ii(mb, steps=1)
    msg = str(err.value)
    assert "\n" not in msg and "task 'digits-backdoor' declares no causal hypotheses" in msg
    assert all(t in msg for t in ("maze-goal", "modadd", "xor-cues"))


@pytest.mark.parametrize("arch,hp,layer", [("mlp", {"width": 8, "depth": 2}, "layer1.post"),
                                           ("transformer", {"vocab": 7, "d_model": 16, "d_mlp": 32}, "block0.resid_mid")])
def test_patching_the_whole_layer_gives_the_source_output(arch, hp, layer):
    task = get_task("modadd", {"p": 7}) if arch == "transformer" else get_task("xor-cues")
    fam = get_family(arch, task.input_shape, task.n_out, hp)
    params = fam.init([0, 1, 2])
    base, src = task.probes("in_dist")[:10], task.probes("ood")[:10]
    out_b, acts = fam.forward(params, base, capture=[layer])
    out_s, acts_s = fam.forward(params, src, capture=[layer])
    same, _ = fam.forward(params, base, edit={layer: lambda h: h})
    assert torch.equal(same, out_b)  # an identity edit changes nothing

    def swap(h):
        if h.dim() == 4:  # transformer: patch the readout position only
            h = h.clone()
            h[:, :, -1] = acts_s[layer][:, :, -1]
            return h
        return acts_s[layer]

    patched, _ = fam.forward(params, base, edit={layer: swap})
    assert torch.allclose(patched, out_s, atol=1e-5)


@pytest.mark.parametrize("arch,hp,task_name", [("mlp", {"width": 8, "depth": 2}, "xor-cues"),
                                               ("cnn", {"channels": [2, 3], "fc": [5]}, "digits-backdoor"),
                                               ("transformer", {"vocab": 7, "d_model": 16, "d_mlp": 32}, "modadd")])
def test_every_named_activation_is_captured_and_edited_through_one_mechanism(arch, hp, task_name):
    """families.base.HookPoints: every activation name can be captured, and patching a hidden one with
    the activation a source input gives changes the outputs (conv maps included: they were silently
    not editable when each family hand-coded its edits)."""
    task = get_task(task_name, {"p": 7} if task_name == "modadd" else {})
    fam = get_family(arch, task.input_shape, task.n_out, hp)
    params = fam.init([0, 1])
    base, src = task.probes("in_dist")[:6], task.probes("ood")[:6]
    names = fam.activation_names()
    out_b, acts = fam.forward(params, base, capture=names)
    assert set(acts) == set(names) and all(a.shape[:2] == (2, 6) for a in acts.values())
    _, acts_s = fam.forward(params, src, capture=names)
    for name in names:
        same, _ = fam.forward(params, base, edit={name: lambda h: h})
        assert torch.equal(same, out_b), name
    for name in [n for n in names if n.endswith(".post") or n == "pool"]:
        patched, _ = fam.forward(params, base, edit={name: lambda h, n=name: acts_s[n]})
        assert not torch.equal(patched, out_b), name


@pytest.mark.parametrize("name", ["xor-cues", "modadd", "maze-goal", "icl-regression"])
def test_hypothesis_pairs_change_the_variable(name):
    task = get_task(name, {"size": 5} if name == "maze-goal" else {})
    hyps = task.hypotheses()
    assert len(hyps) == 2
    for h in hyps.values():
        batch = h.sample(32, torch.Generator().manual_seed(0))
        assert batch.base.shape == batch.source.shape == (32, *task.input_shape)
        assert batch.counterfactual.shape == (32,)
        differs = (batch.base_value != batch.source_value).reshape(32, -1).any(1)
        assert differs.all()


def test_icl_context_estimates_and_counterfactuals():
    """ridge / gd-step estimates are what they say, and the counterfactual is the base query under the
    source context's estimate (which differs from the base's own answer)."""
    from training.tasks.icl_regression import context_estimate, ridge_predict

    task = get_task("icl-regression", {"dim": 3, "n_pairs": 6})
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(5, 40, 3, generator=g), torch.randn(5, 3, generator=g)
    y = (x * w[:, None]).sum(-1)
    assert torch.allclose(context_estimate(x, y, "ridge", 0.0), w, atol=1e-4)  # noiseless least squares
    assert torch.allclose(context_estimate(x, y, "gd-step", 0.0), (x * y[..., None]).mean(1), atol=1e-6)
    # the ridge estimate from pairs 0..k-2 is the one ridge_predict uses for the last prediction
    lam = task.noise_std**2
    w_hat = context_estimate(x[:, :-1], y[:, :-1], "ridge", lam)
    assert torch.allclose((x[:, -1] * w_hat).sum(-1), ridge_predict(x, y, lam)[:, -1], atol=1e-4)
    for name, hyp in task.hypotheses().items():
        pairs = hyp.sample(64, torch.Generator().manual_seed(1))
        xb, yb = task.decode(pairs.base)
        assert torch.allclose(pairs.counterfactual, (xb[:, -1] * pairs.source_value).sum(-1), atol=1e-5), name
        assert (pairs.counterfactual - (xb[:, -1] * pairs.base_value).sum(-1)).abs().mean() > 0.3, name


def test_regression_iia_counts_outputs_that_move_to_the_counterfactual():
    """For a value-valued counterfactual, a pair counts when the patched prediction is nearer the
    counterfactual than the model's own prediction on the base. A full-rank patch of the readout
    token's last residual makes the prediction the source's own, so the score is known exactly."""
    from training.core import seeds as rng

    task = get_task("icl-regression", {"dim": 3, "n_pairs": 6})
    fam = get_family("transformer", task.input_shape, task.n_out, {"vocab": 0, "d_model": 8, "d_mlp": 16, "readout": "all"})
    mb = ModelBatch(fam, fam.init([0, 1, 2]), task, ["a", "b", "c"])
    values, info = causal_ii(mb, layer="block0.resid_post", k=8, steps=0, n_pairs=64)
    assert values.shape == (3, 2) and info["hypotheses"] == ["gd-step", "ridge"]
    assert torch.equal(values, causal_ii(mb, layer="block0.resid_post", k=8, steps=0, n_pairs=64)[0])
    for i, name in enumerate(info["hypotheses"]):
        gen = rng.generator(rng.EXTRACT, 0, 0xC1, i)  # the extractor's pairs: training, then held-out
        task.hypotheses()[name].sample(64, gen)
        test = task.hypotheses()[name].sample(64, gen)
        own = fam.forward(mb.params, test.base)[0][:, :, -1, 0]
        src = fam.forward(mb.params, test.source)[0][:, :, -1, 0]
        expected = ((src - test.counterfactual).abs() < (src - own).abs()).float().mean(1)
        assert torch.allclose(values[:, i], expected, atol=1e-6), name


def test_probe_sets_can_supply_hypotheses(xor_zoo):
    """causal-ii reads hypotheses only through the probe API: an imported zoo's ProbeSets given the
    same hypotheses gives the same numbers as the task itself."""
    from fingerprint.population import ProbeSets

    mb = ModelBatch.from_zoo(xor_zoo).subset([0, 1, 2])
    task = get_task("xor-cues", {"n_train": 256})
    probes = ProbeSets({n: task.probes(n) for n in task.probe_names()}, n_out=task.n_out, causal=task.hypotheses())
    via_probes = ModelBatch(mb.family, mb.params, probes, mb.model_ids)
    want, _ = causal_ii(mb, steps=5, n_pairs=32, seed=1)
    got, _ = causal_ii(via_probes, steps=5, n_pairs=32, seed=1)
    assert torch.equal(want, got)
    with pytest.raises(UserError, match="task 'imported' declares no causal hypotheses for causal-ii"):
        causal_ii(ModelBatch(mb.family, mb.params, ProbeSets(probes.sets, n_out=task.n_out), mb.model_ids), steps=1)
