"""scripts/modadd_similarity_signal.py's reading: blind to the token names and the embedding basis."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location("similarity_signal", Path(__file__).parents[2] / "scripts" / "modadd_similarity_signal.py")
ss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ss)

P, D = 7, 6
X = torch.cartesian_prod(torch.arange(P), torch.arange(P))  # the grid of token pairs


def test_a_surface_made_of_the_similarity_reads_one_and_an_unrelated_one_less():
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(3, P, D, generator=g, dtype=torch.float64)
    sim = ss.token_similarity(embed, X)
    assert sim.shape == (3, P * P) and torch.allclose(sim[:, X[:, 0] == X[:, 1]], torch.ones(1, dtype=torch.float64))
    follows = 2.0 * sim + 0.5  # a logit level that follows the similarity (pizza-like)
    other = torch.randn(3, P * P, generator=g, dtype=torch.float64)  # one that does not
    assert np.allclose(ss.reading(sim, follows), 1.0) and (ss.reading(sim, other) < 0.5).all()
    assert np.allclose(ss.reading(sim, -follows), 1.0)  # the direction does not matter


def test_the_reading_is_blind_to_token_names_and_embedding_rotations():
    """Relabelling the tokens (a new frequency set is one) permutes inputs and embedding rows
    together, and rotating the embedding space changes no cosine: the reading stays the same."""
    g = torch.Generator().manual_seed(1)
    embed = torch.randn(2, P, D, generator=g, dtype=torch.float64)
    surface = torch.randn(2, P * P, generator=g, dtype=torch.float64) + ss.token_similarity(embed, X)
    base = ss.reading(ss.token_similarity(embed, X), surface)
    perm = torch.randperm(P, generator=g)  # token t is now called perm[t]
    renamed = torch.empty_like(embed)
    renamed[:, perm] = embed
    x2 = perm[X]  # the same inputs under the new names, in the same order
    assert np.allclose(ss.reading(ss.token_similarity(renamed, x2), surface), base)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    assert np.allclose(ss.reading(ss.token_similarity(embed @ q, X), surface), base)
