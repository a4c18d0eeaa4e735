"""Activations of an imported module whose blocks sit in an ``nn.ModuleList`` (the sixteenth session's
outside audit: ``activation-spectrum`` asked for "parameter 'blocks'", exit 2, on the usual way to
write a transformer)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.registry import get_extractor
from training.core.errors import UserError


class _Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(6, 6), nn.ReLU()) for _ in range(2)])
        self.spare = nn.Linear(6, 6)  # never called
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def test_containers_are_not_activations_and_a_submodule_that_never_runs_is_named(tmp_path):
    x = torch.randn(16, 6)
    mb = ModelBatch.from_zoo(Zoo.from_modules([_Blocks().eval() for _ in range(2)], out=tmp_path / "zoo", probes={"in_dist": x}))
    names = mb.activation_names()
    assert "blocks" not in names and {"blocks.0", "blocks.1", "out"} <= set(names)
    ex = get_extractor("activation-spectrum")
    rows, _ = ex.compute(mb, {**ex.params, "layers": ["blocks.0", "blocks.1"]})
    assert rows.shape[0] == 2
    with pytest.raises(UserError, match=r"submodule 'spare' did not run in the forward pass, so it has no output to read"):
        mb.activations(x, ["spare"])
