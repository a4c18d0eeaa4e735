"""modadd: the clock/pizza circuit metrics measure what they claim."""

from __future__ import annotations

import numpy as np
import torch

from training.config import load_config
from training.families import get_family
from training.shard import PopulationForward
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


def test_distance_irrelevance_is_the_papers_population_std():
    """Zhong et al.'s evaluation code: ``oo[(a+b)%p][(a-b)%p]`` = correct logit, then
    ``np.mean(np.std(oo, axis=0)) / np.std(oo)``, numpy's std dividing by the count."""
    p = 3
    a = torch.arange(p)
    L = a[:, None].expand(p, p).float()  # L[a, b] = a: every diagonal holds 0, 1, 2, and so does all of L
    # by hand: std(0, 1, 2) = sqrt(2/3) along each diagonal and overall, so 1 exactly (n - 1 would give 1.155)
    assert abs(get_task("modadd", {"p": p})._distance_irrelevance(L.reshape(1, -1))[0] - 1.0) < 1e-6
    p = 7
    L = torch.randn(2, p, p, generator=torch.Generator().manual_seed(1))
    got = get_task("modadd", {"p": p})._distance_irrelevance(L.reshape(2, -1))
    for m in range(2):
        oo = np.zeros((p, p))
        for i in range(p):
            for j in range(p):
                oo[(i + j) % p][(i - j) % p] = L[m, i, j]
        assert abs(got[m] - np.mean(np.std(oo, axis=0)) / np.std(oo.flatten())) < 1e-6


def _linear_model():
    """p = 3, d_model 2, one head of constant attention, the MLP zeroed: the readout sees
    ``h = e_b + O V (e_a + e_b) / 2`` with ``O V = diag(2, 0)``, so the logit of class ``c`` (row
    ``w_c`` of the unembedding) has gradient ``(w_c1, 0)`` in ``e_a`` and ``(2 w_c1, w_c2)`` in ``e_b``."""
    fam = get_family("transformer", (2,), 3, {"vocab": 3, "d_model": 2, "n_heads": 1, "d_mlp": 1, "attention_rate": 0.0})
    params = {k: torch.zeros((1, *s)) for k, s in fam.param_shapes().items()}
    params["embed.weight"] = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(0))
    params["blocks.0.attn.v.weight"] = torch.eye(2)[None]
    params["blocks.0.attn.o.weight"] = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    params["out.weight"] = torch.tensor([[[1.0, 0.0], [1.0, 2.0], [1.0, -2.0]]])  # w_0, w_1, w_2
    return PopulationForward(fam, params)


def test_gradient_symmetricity_is_the_papers_random_output_class():
    """cos((w_c1, 0), (2 w_c1, w_c2)) = 2|w_c1| / sqrt(4 w_c1^2 + w_c2^2): 1 for c = 0, 1/sqrt(2) for
    c = 1, 2. The paper averages over random triples (a, b, c), c not the answer (a + b) mod p."""
    per_class = np.array([1.0, 2 ** -0.5, 2 ** -0.5])
    everything = get_task("modadd", {"p": 3, "n_diag": 27})  # all 27 triples: each class 9 times
    a, b, c = everything._triples()
    assert len(set(zip(a.tolist(), b.tolist(), c.tolist()))) == 27
    sym = everything._gradient_symmetricity(_linear_model(), a, b, c)
    assert abs(sym[0] - (1 + 2 ** 0.5) / 3) < 1e-5
    few = get_task("modadd", {"p": 3, "n_diag": 5})
    a, b, c = few._triples()
    assert len(set(zip(a.tolist(), b.tolist(), c.tolist()))) == 5
    assert not torch.equal(c, (a + b) % 3)  # a random class, not the answer
    diag = few.diagnostics(_linear_model(), torch.zeros(1))
    assert abs(diag["gradient_symmetricity"][0] - per_class[c.numpy()].mean()) < 1e-5
    assert set(diag) >= {"gradient_symmetricity", "gradient_symmetricity_correct", "distance_irrelevance", "deep_label"}


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


def test_opening_a_modadd_zoo_written_before_the_papers_definitions_warns(tiny_zoo):
    """Schema version 3 changed what modadd's label columns mean: an older zoo says so when opened."""
    import json
    import warnings

    import pytest

    from training.core.store import Zoo

    manifest = json.loads((tiny_zoo / "manifest.json").read_text())
    manifest["task"]["name"] = "modadd"
    for version, warns in ((2, True), (3, False)):
        (tiny_zoo / "manifest.json").write_text(json.dumps({**manifest, "schema_version": version}))
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            Zoo.open(tiny_zoo)
        said = [str(w.message) for w in got if "meaning before version 3" in str(w.message)]
        assert bool(said) == warns, said
        if warns:
            assert "deep_label" in said[0] and str(tiny_zoo) in said[0]
    with pytest.raises(Exception, match="schema version 4"):
        (tiny_zoo / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 4}))
        Zoo.open(tiny_zoo)
