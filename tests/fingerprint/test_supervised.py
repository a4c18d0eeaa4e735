"""Supervised baselines: held-out-family folds, family-bootstrap AUROC, FLOPs, the weight-set
classifier's invariances, soft-token probes, each learning a planted difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fingerprint.batch import ModelBatch
from fingerprint.population import ProbeSets
from fingerprint.registry import get_extractor
from fingerprint.softprobes import ProbeInputs, SoftProbeClassifier, soft_token_outputs
from fingerprint.supervised import (
    LinearReadout,
    count_flops,
    evaluate,
    family_auroc,
    family_folds,
)
from fingerprint.weightset import (
    NFNClassifier,
    Sets,
    WeightSetClassifier,
    head_features,
    set_features,
    unit_features,
)
from training.core.errors import UserError
from training.families.base import get_family

V, T, D, H = 5, 2, 8, 16


def family():
    return get_family("transformer", (T,), V, {"vocab": V, "d_model": D, "n_heads": 2, "d_mlp": H, "attention_rate": 0.5})


def planted(n_fam: int = 12, per: int = 2, shift: float = 0.0, out_shift: float = 0.0):
    """``n_fam`` init families of ``per`` relatives (one init plus small noise); half the families
    (class 1) get hidden biases raised by ``shift`` and output bias of class 0 by ``out_shift``."""
    fam = family()
    base = fam.init(list(range(n_fam)))
    g = torch.Generator().manual_seed(7)
    params = {k: v.repeat_interleave(per, 0) + 0.01 * torch.randn(n_fam * per, *v.shape[1:], generator=g)
              for k, v in base.items()}
    groups = np.repeat(np.arange(n_fam), per)
    y = (groups % 2).astype(int)
    cls1 = torch.as_tensor(y == 1)
    params["blocks.0.mlp.fc.bias"][cls1] += shift
    params["out.bias"][cls1, 0] += out_shift
    return fam, params, y, groups


def test_folds_never_share_a_family():
    y = np.array([0, 1] * 10)
    groups = np.repeat(np.arange(10), 2)
    folds = family_folds(y, groups, 5, seed=3)
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(20))  # every model held out exactly once
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])


def test_too_few_families_is_a_user_error():
    with pytest.raises(UserError, match=r"n_splits <= the number of init families \(3\)"):
        family_folds(np.array([0, 1, 0]), ["a", "b", "c"], 5)


def test_family_auroc():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    auc, lo, hi = family_auroc(y, y * 2.0, groups)
    assert auc == hi == 1.0 and 0.5 < lo < 0.9  # a perfect ranking of 8 models: not [1, 1] as a bootstrap reads it
    assert family_auroc(y, y * 2.0, groups, folds=4)[1] < lo  # cross-validated scores: wider
    auc, lo, hi = family_auroc(y, np.zeros(8), groups)
    assert auc == 0.5 and lo < 0.25 and hi > 0.75
    auc, lo, hi = family_auroc(y[:6], y[:6] * 2.0, groups[:6])
    assert auc == 1.0 and np.isnan(lo) and np.isnan(hi)  # three families: no interval


def test_count_flops_counts_a_matmul():
    a, b = torch.ones(4, 5), torch.ones(5, 3)
    out, flops = count_flops(torch.mm, a, b)
    assert flops == 2 * 4 * 5 * 3 and out.shape == (4, 3)


def test_linear_readout_learns_held_out_families():
    rs = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 2)
    y = groups % 2
    X = torch.as_tensor(rs.normal(size=(24, 3)) + 2.0 * y[:, None], dtype=torch.float32)
    r = evaluate(LinearReadout(), X, y, groups, n_splits=4)
    assert r.auroc > 0.95 and r.train_flops > 0 and r.eval_flops > 0 and r.n_families == 12


def test_unit_features_shape_and_wrong_arch():
    fam, params, _, _ = planted(n_fam=2, per=1)
    assert unit_features(fam, params).shape == (2, H, 2 * V + 2 * T + 1 + V)
    mlp = get_family("mlp", (4,), 2, {})
    with pytest.raises(UserError, match="one-block token transformers"):
        unit_features(mlp, mlp.init([0]))


def _symmetries(params, perm, R):
    """The same functions: hidden units permuted by ``perm``, residual basis rotated by ``R``."""
    p = {k: v.clone() for k, v in params.items()}
    p["blocks.0.mlp.fc.weight"] = p["blocks.0.mlp.fc.weight"][:, perm]
    p["blocks.0.mlp.fc.bias"] = p["blocks.0.mlp.fc.bias"][:, perm]
    p["blocks.0.mlp.proj.weight"] = p["blocks.0.mlp.proj.weight"][:, :, perm]
    for k in ("embed.weight", "pos.weight", "blocks.0.attn.q.weight", "blocks.0.attn.k.weight",
              "blocks.0.attn.v.weight", "blocks.0.mlp.fc.weight", "out.weight"):
        p[k] = p[k] @ R.T  # reads the residual stream: x -> R x
    for k in ("blocks.0.attn.o.weight", "blocks.0.mlp.proj.weight"):
        p[k] = R @ p[k]  # writes it
    p["blocks.0.mlp.proj.bias"] = p["blocks.0.mlp.proj.bias"] @ R.T
    return p


def test_weight_set_is_invariant_to_hidden_permutation_and_residual_rotation():
    fam, params, y, _ = planted(n_fam=6, per=1, shift=0.3)
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(H, generator=g)
    R = torch.linalg.qr(torch.randn(D, D, generator=g))[0]  # q, k, v are unchanged: each reads R x with W R^T
    other = _symmetries(params, perm, R)
    x = torch.tensor([[a, b] for a in range(V) for b in range(V)])
    torch.testing.assert_close(fam(other, x), fam(params, x), atol=1e-4, rtol=1e-4)  # the same functions
    fa, fb = unit_features(fam, params), unit_features(fam, other)
    torch.testing.assert_close(fb, fa[:, perm], atol=1e-4, rtol=1e-4)
    clf = WeightSetClassifier(steps=20, n_ensemble=1).fit(fa, y)
    np.testing.assert_allclose(clf.decision_function(fb), clf.decision_function(fa), atol=1e-4)


def test_weight_set_learns_a_planted_difference_on_held_out_families():
    fam, params, y, groups = planted(shift=0.5)
    r = evaluate(WeightSetClassifier(width=16, steps=60, n_ensemble=1), unit_features(fam, params), y, groups, n_splits=3)
    assert r.auroc > 0.9 and r.train_flops > r.eval_flops > 0


def test_near_one_hot_soft_tokens_are_the_tokens():
    fam, params, _, _ = planted(n_fam=3, per=1)
    x = torch.tensor([[a, b] for a in range(V) for b in range(V)])
    logits = 50.0 * torch.nn.functional.one_hot(x, V).float()
    torch.testing.assert_close(soft_token_outputs(fam, params, logits), torch.log_softmax(fam(params, x), -1),
                               atol=1e-4, rtol=1e-4)


def test_soft_probes_learn_a_planted_behaviour_on_held_out_families():
    fam, params, y, groups = planted(out_shift=1.0)
    r = evaluate(SoftProbeClassifier(n_probes=4, steps=40), ProbeInputs(fam, params), y, groups, n_splits=3)
    assert r.auroc > 0.9 and r.train_flops > 0 and r.eval_flops > 0


def test_unit_invariants_ignore_relabelled_tokens_and_classes():
    fam, params, _, _ = planted(n_fam=3, per=1)
    g = torch.Generator().manual_seed(2)
    tok, cls = torch.randperm(V, generator=g), torch.randperm(V, generator=g)
    other = dict(params, **{"embed.weight": params["embed.weight"][:, tok], "out.weight": params["out.weight"][:, cls],
                            "out.bias": params["out.bias"][:, cls]})
    a, b = set_features(fam, params, "invariant"), set_features(fam, other, "invariant")
    assert a.shape == (3, H, 12) and set_features(fam, params, "both").shape[-1] == 12 + 2 * V + 2 * T + 1 + V
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(set_features(fam, params, "raw"), set_features(fam, other, "raw"))
    with pytest.raises(UserError, match="valid: both, invariant, raw"):
        set_features(fam, params, "sorted")


def test_nfn_extra_is_invariant_to_hidden_permutation():
    pytest.importorskip("nfn")  # an optional extra; the tested default is WeightSetClassifier
    fam, params, y, _ = planted(n_fam=4, per=1, shift=0.5)
    perm = torch.randperm(H, generator=torch.Generator().manual_seed(3))
    X = unit_features(fam, params)
    clf = NFNClassifier(V, channels=4, steps=5, n_ensemble=1).fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X[:, perm]), clf.decision_function(X), atol=1e-4)


def test_head_features_follow_heads_and_ignore_basis_and_token_labels():
    fam, params, y, _ = planted(n_fam=6, per=1, shift=0.5)
    g = torch.Generator().manual_seed(4)
    R = torch.linalg.qr(torch.randn(D, D, generator=g))[0]
    rotated = _symmetries(params, torch.arange(H), R)
    dh = D // 2
    swap = torch.cat([torch.arange(dh, D), torch.arange(dh)])  # the two heads exchanged
    swapped = dict(params, **{f"blocks.0.attn.{m}.weight": params[f"blocks.0.attn.{m}.weight"][:, swap] for m in "qkv"})
    swapped["blocks.0.attn.o.weight"] = params["blocks.0.attn.o.weight"][:, :, swap]
    x = torch.tensor([[a, b] for a in range(V) for b in range(V)])
    torch.testing.assert_close(fam(swapped, x), fam(params, x), atol=1e-5, rtol=1e-5)  # the same functions
    relabelled = dict(params, **{"embed.weight": params["embed.weight"][:, torch.randperm(V, generator=g)]})
    h = head_features(fam, params)
    assert h.shape == (6, 2, 4)
    torch.testing.assert_close(head_features(fam, rotated), h, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(head_features(fam, relabelled), h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head_features(fam, swapped), h[:, [1, 0]], atol=1e-5, rtol=1e-5)
    units = set_features(fam, params, "invariant")
    clf = WeightSetClassifier(steps=10, n_ensemble=1).fit(Sets(units, h), y)
    np.testing.assert_allclose(clf.decision_function(Sets(units, h[:, [1, 0]])), clf.decision_function(Sets(units, h)),
                               atol=1e-5)
    assert len(Sets(units, h)[np.array([0, 2])]) == 2


def test_learned_queries_run_on_token_models_with_soft_tokens():
    fam, params, y, groups = planted(out_shift=1.0)
    x = torch.tensor([[a, b] for a in range(V) for b in range(V)])
    batch = ModelBatch(fam, params, ProbeSets({"in_dist": x}, n_out=V), [f"m{i}" for i in range(len(y))])
    out, meta = get_extractor("learned-queries").fn(batch, labels=y, groups=groups, n_queries=2, steps=20)
    assert out.shape == (len(y), 2 * V) and meta["heldout_split"] == "families"
    assert meta["heldout_auroc"] > 0.9
