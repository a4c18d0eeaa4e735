"""``output-profile``: the distribution over probe inputs of per-input confidence statistics. It runs
on a real transformer zoo, is blind to which input is which (so to a relabelling of modadd's tokens,
i.e. to the Fourier frequencies a model uses), is deterministic, separates a flat margin from one
that varies over inputs, and refuses bad parameters in one line."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from modadd_zoo import relabel_tokens, run_extractor
from modadd_zoo import tiny_modadd as _batch

import fingerprint
from fingerprint.extractors.behavioural import confidence_stats, profile_summary
from training.core.errors import UserError
from training.families import get_family
from training.tasks import get_task

_run = functools.partial(run_extractor, "output-profile")  # (family, params, task, **params) -> (values, meta)


def test_runs_on_a_transformer_zoo_with_one_row_per_model_and_is_cached(modadd_zoo):
    specs = ["output-profile", "output-profile:probe_set=all,n_probes=0,bins=3,scale=median",
             'output-profile:stats=["margin","shift"],bins=4']
    res = fingerprint.extract(modadd_zoo, specs)
    assert [r.error for r in res] == [None, None, None]
    default, median, two = (np.asarray(r.values) for r in res)
    assert default.shape == (4, 3 * 11) and median.shape == (4, 3 * 5) and two.shape == (4, 2 * 6)
    assert np.isfinite(default).all() and np.isfinite(median).all()
    for row in default.reshape(4, 3, 11):  # per statistic: mean, std, then ascending quantiles
        assert (np.diff(row[:, 2:], axis=1) >= -1e-6).all() and (row[:, 1] >= 0).all()
    logprob, margin, entropy = default.reshape(4, 3, 11).transpose(1, 0, 2)
    assert (logprob[:, 2:] <= 1e-6).all() and (margin[:, 2:] >= -1e-6).all()
    assert (entropy[:, 2:] >= -1e-6).all() and (entropy[:, 2:] <= math.log(7) + 1e-5).all()
    assert res[1].meta["inputs"] == 49  # the whole 7 x 7 grid
    assert fingerprint.extract(modadd_zoo, ["output-profile"])[0].cached


def test_statistics_are_what_they_claim():
    out = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]]])  # [1 model, 2 inputs, 3 classes]
    v = confidence_stats(out, ["logprob", "margin", "entropy", "logit", "shift"])[0]  # [5, 2]
    lp = torch.log_softmax(out.double(), -1)[0]
    assert torch.allclose(v[0], lp.max(-1).values)
    assert v[1].tolist() == [2.0, 3.0]
    assert torch.allclose(v[2], -(lp.exp() * lp).sum(-1))
    assert v[3].tolist() == [2.0, 3.0]
    assert torch.allclose(v[4], torch.tensor([1 / 3, 1.0], dtype=torch.float64))


def test_blind_to_the_order_of_the_probe_inputs():
    g = torch.Generator().manual_seed(0)
    out = torch.randn(4, 50, 7, generator=g)
    perm = torch.randperm(50, generator=g)
    stats = ["logprob", "margin", "entropy", "logit", "shift"]
    for scale in ("none", "median"):
        a = profile_summary(confidence_stats(out, stats), 5, scale)
        b = profile_summary(confidence_stats(out[:, perm], stats), 5, scale)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)  # float64: only the summation order differs


def test_blind_to_a_relabelling_of_modadd_tokens():
    """Relabel tokens and classes by one permutation (embedding rows and unembedding rows): on the
    whole grid the model answers the relabelled question, so its output profile is the same. A new
    frequency set is such a relabelling (a -> u a mod p)."""
    fam, params, task = _batch()
    perm = torch.tensor([3, 5, 0, 6, 1, 4, 2])  # token a becomes perm[a]
    relabelled = relabel_tokens(params, perm)
    x = task.probes("all")
    with torch.no_grad():
        before, after = fam(params, x), fam(relabelled, perm[x])
    assert torch.allclose(after[..., perm], before, atol=1e-5)  # the same function, relabelled
    a, _ = _run(fam, params, task, probe_set="all", n_probes=0)
    b, _ = _run(fam, relabelled, task, probe_set="all", n_probes=0)
    assert not np.allclose(a[0], a[1])  # models differ
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_deterministic_and_rows_independent_of_the_batch():
    fam, params, task = _batch(n=3)
    a, _ = _run(fam, params, task, bins=4)
    b, _ = _run(fam, params, task, bins=4)
    assert np.array_equal(a, b)
    one = {k: v[1:2] for k, v in params.items()}
    c, _ = _run(fam, one, task, bins=4)
    assert np.allclose(c[0], a[1], rtol=1e-5, atol=1e-6)


def test_a_flat_margin_and_a_distance_dependent_one_are_separated_for_any_frequency():
    """modadd-style logits: clock-like (the margin is the same for every pair) and pizza-like (scaled
    by |cos(w (a - b) / 2)|). Two pizza models with different frequencies get the same profile; the
    clock-like one another."""
    p = 13
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    c = torch.arange(p).double()

    def logits(w, pizza):
        amp = (torch.cos(math.pi * w * (a - b) / p).abs() if pizza else torch.ones_like(a))[:, None]
        return 8 * amp * torch.cos(2 * math.pi * w * (a[:, None] + b[:, None] - c[None]) / p)

    out = torch.stack([logits(1, False), logits(1, True), logits(5, True)])
    prof = profile_summary(confidence_stats(out, ["margin"]), 9, "none")
    assert torch.allclose(prof[1], prof[2], atol=1e-9)  # frequency 1 or 5: the same multiset of margins
    assert prof[0, 1] < 1e-9 < 0.1 < prof[1, 1]  # std of the margin: flat vs varying
    assert (prof[0] - prof[1]).abs().max() > 0.5 * prof[0, 0]  # the lower quantiles: most of the flat margin (0.92)


def test_bad_parameters_are_one_line_errors():
    fam, params, task = _batch(n=1)
    with pytest.raises(UserError, match=r"unknown statistic 'confidence' for output-profile \(valid: logprob, margin"):
        _run(fam, params, task, stats=["margin", "confidence"])
    with pytest.raises(UserError, match=r"unknown scale 'zscore' for output-profile \(valid: none, median\)"):
        _run(fam, params, task, scale="zscore")
    with pytest.raises(UserError, match="must be a non-empty list of statistics"):
        _run(fam, params, task, stats=[])
    with pytest.raises(UserError, match=r"parameter 'bins' of extractor 'output-profile' must be >= 1, got 0"):
        _run(fam, params, task, bins=0)
    with pytest.raises(UserError, match="unknown probe set 'grid' for task 'modadd'"):
        _run(fam, params, task, probe_set="grid")
    with pytest.raises(UserError, match="at least 2 probe inputs"):
        _run(fam, params, task, n_probes=1)


def test_regression_models_are_refused():
    task = get_task("icl-regression", {})
    fam = get_family("mlp", task.input_shape, task.n_out, {})
    with pytest.raises(UserError, match="output-profile needs class outputs .* use probe-outputs"):
        _run(fam, fam.init([0]), task)


def test_token_models_count_every_position_of_every_probe_as_an_input():
    task = get_task("tiny-lm", {})
    cfg = {k: v for k, v in task.default_model().items() if k != "arch"} | {"d_model": 8, "n_heads": 2, "d_mlp": 16}
    fam = get_family("transformer", task.input_shape, task.n_out, cfg)
    params = fam.init([0, 1])
    values, meta = _run(fam, params, task, n_probes=8, bins=3)
    x = task.probes("in_dist")[:8]
    with torch.no_grad():
        out = fam(params, x)  # [2, 8, T, V]: a next-token distribution at every position
    assert out.dim() == 4 and meta["inputs"] == 8 * out.shape[2]
    by_hand = profile_summary(confidence_stats(out.flatten(1, 2), ["logprob", "margin", "entropy"]), 3, "none")
    assert values.shape == (2, 15) and np.allclose(values, by_hand.numpy(), rtol=1e-5, atol=1e-6)


def test_summaries_run_off_the_cpu():
    """The quantile levels and histograms are made on the values' device (``--device cuda``): on
    torch's ``meta`` device a CPU tensor in the arithmetic is an error."""
    from fingerprint.extractors.geometry import _summarise

    v = torch.empty(3, 2, 11, device="meta")
    assert profile_summary(v, 4, "none").shape == (3, 2 * 6)
    assert _summarise(torch.empty(3, 11, device="meta"), "quantiles", 4).shape == (3, 6)
    assert _summarise(torch.empty(3, 11, device="meta"), "histogram", 4).shape == (3, 6)
