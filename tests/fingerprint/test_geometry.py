"""The basis-free mechanistic fingerprints (input-grad-symmetry, activation-spectrum) and modadd's
``key_freqs`` column: they run on a real transformer zoo, compute what they claim, and are invariant
to what they should be."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modadd_zoo import TINY_MODADD

import fingerprint
from fingerprint.batch import ModelBatch
from fingerprint.extractors.geometry import position_gradients
from fingerprint.extractors.mechanistic import apply_permutations
from fingerprint.pipeline import (
    DEFAULT_FINGERPRINTS,
    TOKEN_INPUTS,
    FingerprintSettings,
    RunConfig,
    default_fingerprints,
    skipped_defaults,
    skipped_text,
)
from fingerprint.registry import get_extractor
from training.config import load_config
from training.core.errors import UserError
from training.families import get_family
from training.shard import PopulationForward
from training.sweep import run_sweep
from training.tasks import get_task
from training.tasks.modadd import fourier_norms


def test_key_freqs_column_names_the_largest_embedding_frequencies(modadd_zoo):
    freqs = [str(f) for f in modadd_zoo.models["key_freqs"]]
    assert len(freqs) == 4
    norms = fourier_norms(modadd_zoo.params(None)["embed.weight"])  # [4, 3]: frequencies 1, 2, 3 of p = 7
    for f, nrm in zip(freqs, norms):
        top = sorted(int(k) for k in f.split("-"))
        assert f == "-".join(map(str, top)) and len(top) == 2 and set(top) <= {1, 2, 3}
        rest = ({1, 2, 3} - set(top)).pop()
        assert nrm[rest - 1] <= nrm[[t - 1 for t in top]].min()


def test_key_freqs_of_a_pure_frequency_embedding_and_a_bad_k():
    p = 11
    a = torch.arange(p).double()
    emb = torch.stack([torch.cos(2 * np.pi * 3 * a / p), torch.sin(2 * np.pi * 3 * a / p),
                       0.5 * torch.cos(2 * np.pi * 5 * a / p), 0.1 * torch.cos(2 * np.pi * 1 * a / p)], 1)
    from training.tasks.modadd import key_freqs

    assert key_freqs(emb[None].float(), 2).tolist() == ["3-5"]
    with pytest.raises(UserError, match="'task.n_key_freqs' must be >= 1, got 0"):
        get_task("modadd", {"p": 7, "n_key_freqs": 0}).validate()


def test_both_extractors_run_on_a_transformer_zoo_and_are_cached(modadd_zoo):
    res = fingerprint.extract(modadd_zoo, ["input-grad-symmetry", "activation-spectrum:probe_set=all,n_probes=0,top_k=4",
                                           "input-grad-symmetry:summary=histogram,bins=5"])
    assert [r.error for r in res] == [None, None, None]
    sym, spec, hist = (np.asarray(r.values) for r in res)
    assert sym.shape == (4, 11) and np.isfinite(sym).all()
    assert ((sym[:, 2:] >= -1 - 1e-6) & (sym[:, 2:] <= 1 + 1e-6)).all()
    assert (np.diff(sym[:, 2:], axis=1) >= -1e-6).all()  # quantiles ascend
    assert np.allclose(hist[:, 2:].sum(1), 1.0, atol=1e-5)  # a histogram of fractions
    assert np.allclose(hist[:, 0], sym[:, 0], atol=1e-5)  # the same mean
    layers = res[1].meta["layers"]
    assert "embed" in layers and "out" not in layers and not any(n.endswith("pattern") for n in layers)
    assert spec.shape == (4, len(layers) * 6)
    assert fingerprint.extract(modadd_zoo, ["input-grad-symmetry"])[0].cached


def _batch(n=3, layernorm=False, seed=0):
    task = get_task("modadd", {"p": 7})
    fam = get_family("transformer", task.input_shape, task.n_out,
                     {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.7, "layernorm": layernorm})
    params = fam.init(list(range(seed, seed + n)))
    return fam, params, task


def _run(fam, params, task, spec, **kw):
    ex = get_extractor(spec)
    values, _ = ex.compute(ModelBatch(fam, params, task, [f"m{i}" for i in range(len(params["pos.weight"]))]),
                           ex.resolve_params(kw))
    return np.asarray(values, dtype=np.float64)


def test_both_are_invariant_to_permuting_the_mlp_hidden_units():
    fam, params, task = _batch()
    g = torch.Generator().manual_seed(1)
    groups = fam.hidden_permutable()
    perms = {k: torch.stack([torch.randperm(16, generator=g) for _ in range(3)]) for k in groups}
    permuted = apply_permutations(params, perms, groups)
    assert not torch.equal(permuted["blocks.0.mlp.fc.weight"], params["blocks.0.mlp.fc.weight"])
    for spec, kw in (("activation-spectrum", {"probe_set": "all", "n_probes": 0}), ("input-grad-symmetry", {})):
        a, b = _run(fam, params, task, spec, **kw), _run(fam, permuted, task, spec, **kw)
        assert np.allclose(a, b, atol=1e-4), spec


def test_both_are_invariant_to_rotating_the_residual_stream():
    """Without layer norm, rotating every residual-stream vector by R (and each weight that reads or
    writes it) computes the same function; gradients and activations turn with R, cosines and
    covariance spectra do not."""
    fam, params, task = _batch()
    R = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(2)))[0]
    rot = dict(params)
    for k in ("embed.weight", "pos.weight"):  # rows are residual vectors
        rot[k] = params[k] @ R.T
    for k in ("blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight", "blocks.0.mlp.fc.weight", "out.weight"):
        rot[k] = params[k] @ R.T  # read the residual
    for k in ("blocks.0.attn.o.weight", "blocks.0.mlp.proj.weight"):
        rot[k] = R @ params[k]  # write it
    rot["blocks.0.mlp.proj.bias"] = params["blocks.0.mlp.proj.bias"] @ R.T
    x = task.probes("all")
    assert torch.allclose(fam(params, x)[0], fam(rot, x)[0], atol=1e-4)
    for spec, kw in (("activation-spectrum", {"probe_set": "all", "n_probes": 0}), ("input-grad-symmetry", {})):
        a, b = _run(fam, params, task, spec, **kw), _run(fam, rot, task, spec, **kw)
        assert np.allclose(a, b, atol=1e-4), spec


def test_its_mean_is_modadds_gradient_symmetricity_on_the_same_triples():
    """On (a, b) probes with classes c, the extractor's cosines are exactly the task's diagnostic:
    the same gradients, read through the family's edit hook instead of the task's own pass."""
    fam, params, task = _batch(n=2)
    t = get_task("modadd", {"p": 7, "n_diag": 64})
    a, b, c = t._triples()
    want = t._gradient_symmetricity(PopulationForward(fam, params), a, b, c)
    g = position_gradients(ModelBatch(fam, params, task, ["m0", "m1"]), torch.stack([a, b], 1), c, "embed")
    got = torch.nn.functional.cosine_similarity(g[:, :, 0], g[:, :, 1], dim=-1).mean(1).numpy()
    assert np.allclose(got, want, atol=1e-5)


def test_other_architectures_vector_transformers_and_mlps(tiny_zoo):
    """input-grad-symmetry on a vector-input transformer (icl-regression's: 12 positions, one output);
    activation-spectrum on an MLP zoo; input-grad-symmetry refuses inputs without positions in one line."""
    task = get_task("icl-regression")
    fam = get_family("transformer", task.input_shape, task.n_out,
                     {"vocab": 0, "d_model": 8, "n_heads": 2, "d_mlp": 16, "readout": "all"})
    sym = _run(fam, fam.init([0, 1]), task, "input-grad-symmetry", n_probes=16)
    assert sym.shape == (2, 11) and np.isfinite(sym).all()
    spec, res = fingerprint.extract(fingerprint.Zoo.open(tiny_zoo), ["activation-spectrum", "input-grad-symmetry"])
    assert spec.error is None and np.asarray(spec.values).shape[0] == 24
    assert res.error is not None and "at least two input positions" in res.error and "\n" not in res.error
    bad = fingerprint.extract(fingerprint.Zoo.open(tiny_zoo), ["input-grad-symmetry:summary=kde"])[0]
    assert "unknown summary 'kde'" in bad.error and "quantiles, histogram" in bad.error


def test_the_basins_configs_hold_one_rate_and_two_data_orders_per_init():
    for name in ("modadd-basins-quick", "modadd-basins", "modadd-basins-p23-quick", "modadd-basins-p23"):
        cfg = load_config(name)
        assert cfg.task.name == "modadd" and cfg.seeds.data >= 2 and cfg.seeds.init >= 12
        assert not cfg.model.sweep, name  # one attention rate: the rate is no confound
        assert cfg.model.params["vocab"] == cfg.task.params["p"], name  # the task's p is the model's vocabulary
        assert get_task("modadd", cfg.task.params).n_key_freqs == 2
        specs = RunConfig.load(name).fingerprints.names  # resolves every spec: a typo would fail here
        assert {s.split(":")[0] for s in specs} >= {"input-grad-symmetry", "activation-spectrum"}


def test_the_mixed_rate_configs_hold_two_rates_and_two_data_orders_per_init():
    for name in ("modadd-basins-mixed-quick", "modadd-basins-mixed"):
        cfg = load_config(name)
        assert cfg.task.name == "modadd" and cfg.seeds.data >= 2 and cfg.seeds.init >= 6
        rates = cfg.model.sweep["attention_rate"]
        assert len(rates) == 2 and min(rates) < 0.5 < max(rates), name  # one rate on either side of 0.5
        assert get_task("modadd", cfg.task.params).n_key_freqs == 2
        specs = RunConfig.load(name).fingerprints.names
        assert {s.split(":")[0] for s in specs} >= {"input-grad-symmetry", "activation-spectrum"}


def test_a_zoo_of_two_attention_rates_runs_each_group_with_its_own_rate(tmp_path):
    """A `model.sweep` over attention_rate keeps one architecture's shapes, so nothing stops the two
    groups' weights from being stacked; each group must still run with its own rate. Its
    fingerprints equal those of two single-rate zoos of the same seeds (rate 0 and 1 give different
    input gradients, so running a group with the other's rate would show)."""
    swept = TINY_MODADD.replace("attention_rate = 0.5", "sweep = { attention_rate = [0.0, 1.0] }")
    (tmp_path / "s.toml").write_text(swept.replace("data = 2", "data = 1"))
    run_sweep(load_config(tmp_path / "s.toml"), tmp_path / "swept")
    zoo = fingerprint.Zoo.open(tmp_path / "swept")
    groups = [str(g) for g in zoo.models["group"]]
    assert sorted(set(groups)) == ["model.attention_rate=0.0", "model.attention_rate=1.0"]
    got = np.asarray(fingerprint.extract(zoo, ["input-grad-symmetry"])[0].values, dtype=np.float64)
    for rate in (0.0, 1.0):
        (tmp_path / f"r{rate}.toml").write_text(TINY_MODADD.replace("attention_rate = 0.5", f"attention_rate = {rate}")
                                                .replace("data = 2", "data = 1"))
        run_sweep(load_config(tmp_path / f"r{rate}.toml"), tmp_path / f"r{rate}")
        single = fingerprint.Zoo.open(tmp_path / f"r{rate}")
        want = np.asarray(fingerprint.extract(single, ["input-grad-symmetry"])[0].values, dtype=np.float64)
        mine = [i for i, g in enumerate(groups) if g == f"model.attention_rate={rate}"]
        assert np.allclose(zoo.params(None)["embed.weight"][mine], single.params(None)["embed.weight"])  # the same training
        assert np.allclose(got[mine], want, atol=1e-5), rate
    assert not np.allclose(got[:2], got[2:], atol=1e-2)  # the two rates do differ


def test_a_token_zoo_leaves_input_saliency_out_of_the_default_set_without_running_code(modadd_zoo):
    """Token ids have no input gradient: `extract` without --fp and `fingerprint run` with no
    [fingerprints] names leave `input-saliency` out, said from the stored hyper-parameters (vocab), and
    read the positions the outputs move on instead (`token-occlusion`, last)."""
    assert skipped_defaults(modadd_zoo) == {"input-saliency": TOKEN_INPUTS}
    assert default_fingerprints(modadd_zoo) == [f for f in DEFAULT_FINGERPRINTS if f != "input-saliency"] + ["token-occlusion"]
    # a config without [fingerprints] names asks for the set that applies; one that lists names gets them as listed
    # (input-saliency named on a token zoo is then the one-line error, not dropped in silence)
    assert FingerprintSettings().names is None
    assert FingerprintSettings().specs(modadd_zoo) == default_fingerprints(modadd_zoo)
    assert FingerprintSettings(list(DEFAULT_FINGERPRINTS)).specs(modadd_zoo) == DEFAULT_FINGERPRINTS
    assert skipped_text(skipped_defaults(modadd_zoo)) == f"default set without input-saliency ({TOKEN_INPUTS})"
    assert skipped_text({}) == ""


def test_a_config_naming_input_saliency_on_token_inputs_is_refused_before_training(tmp_path):
    """Found by review: it failed at extraction, after the sweep, although configs are checked "now, not after
    the sweep"."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY_MODADD + '[fingerprints]\nnames = ["probe-outputs", "input-saliency:n_probes=8"]\n')
    with pytest.raises(UserError, match=r"^config key 'fingerprints.names' lists input-saliency, but this model's inputs "
                                        r"are token ids \(model.vocab > 0\)"):
        RunConfig.load(cfg)
    cfg.write_text(TINY_MODADD + '[fingerprints]\nnames = ["probe-outputs"]\n')
    assert RunConfig.load(cfg).fingerprints.names == ["probe-outputs"]


def test_fingerprint_run_says_which_defaults_it_leaves_out(tmp_path, monkeypatch):
    """With no [fingerprints] names, `fingerprint run` computes the defaults that apply and says, on a line
    of its own under the stage title (a title is cut to one line), which it leaves out and why."""
    from fingerprint import pipeline
    from fingerprint.progress import Progress

    notes: list[str] = []

    class Notes(Progress):
        def note(self, text: str) -> None:
            notes.append(text)

    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY_MODADD + "[analysis]\nn_boot = 0\nn_perm = 19\n")
    run_cfg = RunConfig.load(cfg)
    assert run_cfg.fingerprints.names is None
    monkeypatch.setattr(pipeline, "DEFAULT_FINGERPRINTS", ["probe-outputs", "input-saliency"])  # two: a quick run
    pipeline.run(run_cfg, tmp_path / "run", progress=Notes())
    assert notes == [f"default set without input-saliency ({TOKEN_INPUTS})"]
    assert {m["spec"] for m in fingerprint.Zoo.open(tmp_path / "run" / "zoo").list_fingerprints()} == {"probe-outputs",
                                                                                                  "token-occlusion"}
