"""A small imported transformer built on ``nn.TransformerEncoderLayer`` (an ``nn.MultiheadAttention``
inside each), for the tests of what the weight fingerprints take out of imported modules."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Two encoder layers of width 8 and 2 heads over a sequence of 4 vectors, read out at the last
    position; nothing declared. ``bias=False``: no biases, and at init every layer norm's gain is 1."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, bias=bias)
                                     for _ in range(2)])
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 4, 8)
        for layer in self.layers:
            x = layer(x)
        return self.out(x[:, -1])
