"""``activation-mahalanobis``: the distances are Mahalanobis distances to each model's own Gaussian,
unchanged by an invertible linear map of the activations (without shrinkage; by rotations and scale
with it), the same whatever else is in the batch, deterministic, and a wrong layer or scale is a
one-line error naming the valid ones. Runs on the tiny real modadd zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fingerprint
from fingerprint.batch import ModelBatch
from fingerprint.extractors.anomaly import mahalanobis_distances
from fingerprint.extractors.common import distribution_summary
from fingerprint.registry import get_extractor
from training.core.errors import UserError
from training.families import get_family
from training.tasks import get_task


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_distances_are_the_textbook_ones_per_model():
    g = _gen()
    ref = torch.randn(3, 40, 5, generator=g, dtype=torch.float64) @ torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    test = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    for s in (0.0, 0.3):
        d = mahalanobis_distances(ref, test, s)
        assert d.shape == (3, 7)
        for i in range(3):
            r = ref[i].numpy()
            cov = np.cov(r, rowvar=False, bias=True)
            cov = (1 - s) * cov + s * np.trace(cov) / 5 * np.eye(5)
            diff = test[i].numpy() - r.mean(0)
            want = np.sqrt(np.einsum("sd,de,se->s", diff, np.linalg.inv(cov), diff))
            assert np.allclose(d[i].numpy(), want, rtol=1e-9)


def test_invariant_to_an_invertible_affine_map_without_shrinkage_and_to_rotation_and_scale_with_it():
    g = _gen(1)
    ref = torch.randn(2, 50, 6, generator=g, dtype=torch.float64)
    test = 3 * torch.randn(2, 9, 6, generator=g, dtype=torch.float64)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64) + 3 * torch.eye(6, dtype=torch.float64)  # invertible, not orthogonal
    b = torch.randn(6, generator=g, dtype=torch.float64)
    base = mahalanobis_distances(ref, test, 0.0)
    assert torch.allclose(mahalanobis_distances(ref @ A.T + b, test @ A.T + b, 0.0), base, rtol=1e-8)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    shrunk = mahalanobis_distances(ref, test, 0.2)
    assert torch.allclose(mahalanobis_distances(7.5 * ref @ Q.T + b, 7.5 * test @ Q.T + b, 0.2), shrunk, rtol=1e-8)
    # what it is not invariant to: a non-orthogonal map once the covariance is shrunk to the identity
    assert not torch.allclose(mahalanobis_distances(ref @ A.T, test @ A.T, 0.2), shrunk, rtol=1e-3)


def test_a_singular_covariance_without_shrinkage_still_gives_finite_distances():
    ref = torch.zeros(2, 10, 4, dtype=torch.float64)
    ref[:, :, 0] = torch.arange(10.0)  # rank 1; the second model's is rank 0
    ref[1] = 0
    d = mahalanobis_distances(ref, torch.ones(2, 3, 4, dtype=torch.float64), 0.0)
    assert torch.isfinite(d).all()


def test_a_singular_model_does_not_move_the_others_distances():
    """The ridge a singular covariance needs is added to that model only: an ill-conditioned but
    full-rank model gets the same distances alone and beside a singular one."""
    g = torch.Generator().manual_seed(0)
    good = torch.randn(1, 40, 4, generator=g, dtype=torch.float64)
    good[..., 3] *= 1e-4  # ill-conditioned, full rank: a ridge would move its distances
    test = torch.randn(1, 5, 4, generator=g, dtype=torch.float64)
    singular = torch.zeros(1, 40, 4, dtype=torch.float64)
    alone = mahalanobis_distances(good, test, 0.0)
    beside = mahalanobis_distances(torch.cat([good, singular]), torch.cat([test, test]), 0.0)
    assert torch.allclose(alone[0], beside[0], rtol=1e-10, atol=0) and torch.isfinite(beside).all()  # the old shared ridge: off by 33


def test_the_summary_runs_off_the_cpu():
    """The quantile levels are made on the distances' device (``--device cuda``): on torch's ``meta``
    device a CPU tensor in the arithmetic is an error."""
    assert distribution_summary(torch.empty(2, 7, dtype=torch.float64, device="meta"), 3).shape == (2, 5)


def _rotate_residual_stream(params, A):
    """The same functions with the residual stream mapped by ``h -> h A^T`` (no layernorm): writers
    to the residual are multiplied by ``A``, readers by ``A^-1``."""
    Ai = torch.linalg.inv(A)
    p = {k: v.clone() for k, v in params.items()}
    for k in ("embed.weight", "pos.weight", "blocks.0.mlp.proj.bias"):
        p[k] = params[k] @ A.T
    for k in ("blocks.0.attn.o.weight", "blocks.0.mlp.proj.weight"):
        p[k] = A @ params[k]
    for k in ("blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight", "blocks.0.mlp.fc.weight", "out.weight"):
        p[k] = params[k] @ Ai
    return p


def test_a_linear_map_of_the_residual_stream_through_the_weights_leaves_the_row_unchanged():
    task = get_task("modadd", {"p": 7})
    fam = get_family("transformer", task.input_shape, task.n_out,
                     {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16, "attention_rate": 0.7})
    params = {k: v.double() for k, v in fam.init([0, 1, 2]).items()}
    A = torch.randn(8, 8, generator=_gen(2), dtype=torch.float64) + 2 * torch.eye(8, dtype=torch.float64)
    moved = _rotate_residual_stream(params, A)
    ids = ["m0", "m1", "m2"]
    x = task.probes("all")
    assert torch.allclose(fam.forward(moved, x)[0], fam.forward(params, x)[0], atol=1e-9)  # the same function
    ex = get_extractor("activation-mahalanobis")
    kw = ex.resolve_params({"layers": ["block0.resid_mid"], "shrinkage": 0.0, "probe_set": "all"})
    before, meta = ex.compute(ModelBatch(fam, params, task, ids), kw)
    after, _ = ex.compute(ModelBatch(fam, moved, task, ids), kw)
    assert meta["layers"] == ["block0.resid_mid"] and np.asarray(before).shape == (3, 11)
    assert np.allclose(np.asarray(after), np.asarray(before), rtol=1e-5)
    shrunk = ex.resolve_params({"layers": ["block0.resid_mid"], "shrinkage": 0.1, "probe_set": "all"})
    assert not np.allclose(np.asarray(ex.compute(ModelBatch(fam, moved, task, ids), shrunk)[0]),
                           np.asarray(ex.compute(ModelBatch(fam, params, task, ids), shrunk)[0]), rtol=1e-3)


def test_runs_on_a_modadd_zoo_rows_independent_of_the_batch_and_deterministic(modadd_zoo):
    spec = 'activation-mahalanobis:layers=["block0.resid_mid","block0.mlp.post"],bins=3'
    (res,) = fingerprint.extract(modadd_zoo, [spec])
    assert res.error is None and np.asarray(res.values).shape == (4, 10)
    v = np.asarray(res.values)
    assert np.isfinite(v).all() and (v[:, [0, 5]] > 0).all()
    assert (np.diff(v[:, 2:5], axis=1) >= 0).all() and (np.diff(v[:, 7:10], axis=1) >= 0).all()  # quantiles ascend
    assert res.meta["positions"] == {"block0.resid_mid": "1", "block0.mlp.post": "1"}
    assert fingerprint.extract(modadd_zoo, [spec])[0].cached

    ex = get_extractor("activation-mahalanobis")
    kw = ex.resolve_params({"layers": ["block0.resid_mid", "block0.mlp.post"], "bins": 3})
    ids = list(modadd_zoo.model_ids)
    whole = np.asarray(ex.compute(ModelBatch.from_zoo(modadd_zoo, ids), kw)[0])
    assert np.array_equal(whole, np.asarray(ex.compute(ModelBatch.from_zoo(modadd_zoo, ids), kw)[0]))  # deterministic
    rows = {m: whole[i] for i, m in enumerate(ids)}
    for sub in (ids[::-1], ids[2:3], [ids[3], ids[0]]):
        got = np.asarray(ex.compute(ModelBatch.from_zoo(modadd_zoo, sub), kw)[0])
        assert np.allclose(got, np.stack([rows[m] for m in sub]), rtol=1e-6, atol=1e-7)
    assert np.allclose(whole, v[[list(res.model_ids).index(m) for m in ids]], rtol=1e-6, atol=1e-7)

    med = np.asarray(ex.compute(ModelBatch.from_zoo(modadd_zoo, ids), {**kw, "scale": "median"})[0])
    ratio = med[:, 0] / whole[:, 0]
    assert np.allclose(med[:, :5], whole[:, :5] * ratio[:, None], rtol=1e-5)  # one per-model, per-layer divisor


def test_unknown_layer_and_scale_are_one_line_errors(modadd_zoo):
    mb = ModelBatch.from_zoo(modadd_zoo, list(modadd_zoo.model_ids)[:2])
    ex = get_extractor("activation-mahalanobis")
    with pytest.raises(UserError, match=r"unknown activation 'block0.nope' for activation-mahalanobis \(valid: embed, .*block0.resid_mid"):
        ex.compute(mb, ex.resolve_params({"layers": ["block0.nope"]}))
    with pytest.raises(UserError, match=r"unknown scale 'mean' for activation-mahalanobis \(valid: none, median\)"):
        ex.compute(mb, ex.resolve_params({"scale": "mean"}))
    with pytest.raises(UserError, match=r"parameter 'shrinkage' of extractor 'activation-mahalanobis' must be in \[0.0, 1.0\], got 2.0"):
        ex.resolve_params({"shrinkage": 2})
