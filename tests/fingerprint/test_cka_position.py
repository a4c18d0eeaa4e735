"""CKA on sequence models compares the readout position by default; joining every position is a parameter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fingerprint.batch import ModelBatch
from fingerprint.extractors.mechanistic import cka_matrix
from fingerprint.registry import get_extractor
from training.core.errors import UserError
from training.families import TransformerFamily, get_family
from training.tasks import get_task


class PositionZeroScrambled(TransformerFamily):
    """The same transformer, whose captured per-position activations are noise at position 0."""

    def forward(self, params, x, capture=(), edit=None):
        out, acts = super().forward(params, x, capture, edit)
        g = torch.Generator().manual_seed(len(x))
        return out, {k: torch.cat([torch.randn(v[:, :, :1].shape, generator=g), v[:, :, 1:]], 2) if v.dim() == 4 else v
                     for k, v in acts.items()}


def _transformers(n=4):
    task = get_task("modadd", {"p": 7})
    fam = get_family("transformer", task.input_shape, task.n_out, {"vocab": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16})
    scrambled = PositionZeroScrambled(**{f.name: getattr(fam, f.name) for f in dataclasses.fields(fam)})
    params = fam.init(list(range(n)))
    ids = [f"m{i}" for i in range(n)]
    return ModelBatch(fam, params, task, ids), ModelBatch(scrambled, params, task, ids)


def _cka(mb, **params):
    spec = get_extractor("cka")
    values, meta = spec.compute(mb, spec.resolve_params(params))
    return np.asarray(values), meta


def test_transformer_cka_default_uses_the_readout_position_only():
    mb, scrambled = _transformers()
    default, meta = _cka(mb, n_probes=32)
    assert meta["position"] == "1"  # the last of the two tokens, the one the output is read from
    assert np.allclose(default, _cka(scrambled, n_probes=32)[0], atol=1e-6)  # position 0 does not count
    assert np.allclose(default, _cka(mb, n_probes=32, position=-1)[0], atol=1e-6)
    x = mb.task.probes("in_dist")[:32]
    last = mb.activations(x, ["block0.resid_post"])["block0.resid_post"][:, :, -1]  # [n, P, d]
    assert np.allclose(default, (1 - cka_matrix(last)).clamp_min(0).numpy(), atol=1e-6)


def test_transformer_cka_joins_every_position_by_parameter():
    mb, scrambled = _transformers()
    joined, meta = _cka(mb, n_probes=32, position="all")
    assert meta["position"] == "all"
    x = mb.task.probes("in_dist")[:32]
    acts = mb.activations(x, ["block0.resid_post"])["block0.resid_post"]  # [n, P, 2, d], flattened: the old behaviour
    assert np.allclose(joined, (1 - cka_matrix(acts)).clamp_min(0).numpy(), atol=1e-6)
    assert not np.allclose(joined, _cka(scrambled, n_probes=32, position="all")[0], atol=1e-3)
    assert not np.allclose(_cka(mb, n_probes=32, position=0)[0], _cka(mb, n_probes=32)[0], atol=1e-3)


def test_cka_position_errors_and_models_without_positions():
    mb, _ = _transformers()
    with pytest.raises(UserError, match="readout, all or a position index"):
        _cka(mb, position="middle")
    with pytest.raises(UserError, match="valid: -2 to 1"):
        _cka(mb, position=2)
    task = get_task("xor-cues")
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": 12, "depth": 2})
    mlp = ModelBatch(fam, fam.init([0, 1, 2]), task, ["a", "b", "c"])
    a, meta = _cka(mlp)
    assert meta["position"] == "all" and np.allclose(a, _cka(mlp, position="all")[0])
