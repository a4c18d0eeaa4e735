"""Near twins by their weights: told every model is its own init family (``--lineage model_id``), an import
whose models share initialisations is warned about (an outside audit, 80: two nulls of hidden families read
their families as candidate basins)."""

from __future__ import annotations

import warnings

import pytest
import torch

from fingerprint import Zoo
from fingerprint import pipeline as pl
from fingerprint.tables import TWIN_R, near_twins


def _mlp(seed: int, nudge: int | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    if nudge is not None:  # a relative: the same start, trained a little otherwise (here: moved at random)
        g = torch.Generator().manual_seed(nudge)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * p.std() * torch.randn(p.shape, generator=g))
    return m


def test_relatives_are_near_twins_and_independent_inits_are_not(tmp_path):
    mods = [_mlp(s) for s in range(6)] + [_mlp(100, nudge=k) for k in range(3)]
    ids = [f"m{i}" for i in range(6)] + ["r0", "r1", "r2"]
    zoo = Zoo.from_modules(mods, tmp_path / "z", model_ids=ids, probes={"in_dist": torch.randn(8, 6)})
    twins = near_twins(zoo)
    assert sorted((a, b) for a, b, _ in twins) == [("r0", "r1"), ("r0", "r2"), ("r1", "r2")]
    assert all(r >= TWIN_R for *_, r in twins)
    with pytest.warns(UserWarning, match=r"^--lineage model_id makes every model its own init family, but 3 pairs of "
                                         r"models \(3 models\) have nearly the same weights"):
        pl.options_for(zoo, lineage="model_id")
    alone = Zoo.from_modules(mods[:6], tmp_path / "y", probes={"in_dist": torch.randn(8, 6)})
    assert near_twins(alone) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pl.options_for(alone, lineage="model_id")  # independent inits: nothing to say
