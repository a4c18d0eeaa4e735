"""causal-ii: task hypotheses, activation patching, and interchange-intervention accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fingerprint import ModelBatch, Zoo
from fingerprint.errors import UserError
from fingerprint.extractors.causal import causal_ii
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


@pytest.mark.parametrize("name", ["xor-cues", "modadd", "maze-goal"])
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
