"""A `crosses lineage` candidate that keeps more init families whole than a per-model draw would: a mixture (outside
audit 125, F1: a rule the init decided in 8 families of 16 and the data order in the others read "the camps cut across
the init families (the init seed does not decide them)")."""

from __future__ import annotations

import types

import numpy as np
import pytest

from analysis.answer import _mixture


def _result(families: list[int]) -> types.SimpleNamespace:
    ids = [f"m{i}" for i in range(len(families))]
    return types.SimpleNamespace(model_ids=ids, lineage_values=np.asarray([str(f) for f in families], dtype=object))


def test_half_the_families_whole_on_both_sides_is_a_mixture():
    fam = np.repeat(np.arange(16), 4)
    side = np.where(fam < 8, fam % 2, np.tile([0, 1, 0, 1], 16))  # families 0-7 whole (4 a side), 8-15 cut 2/2
    whole, small, cut, n, p = _mixture(_result(fam.tolist()), {f"m{i}": int(s) for i, s in enumerate(side)})
    assert (whole, cut, n) == (8, 8, 16) and small == 4 and p < 0.001


@pytest.mark.parametrize("seed", range(20))
def test_camps_drawn_model_by_model_are_not(seed):
    fam = np.repeat(np.arange(16), 4)
    side = np.random.default_rng(seed).integers(0, 2, 64)
    assert _mixture(_result(fam.tolist()), {f"m{i}": int(s) for i, s in enumerate(side)}) is None


def test_every_family_cut_alike_or_whole_families_on_one_side_only_are_not():
    fam = np.repeat(np.arange(16), 4)
    balanced = np.tile([0, 1, 0, 1], 16)  # a data order's camps: every family cut 2/2
    assert _mixture(_result(fam.tolist()), {f"m{i}": int(s) for i, s in enumerate(balanced)}) is None
    minority = np.zeros(64, int)
    minority[[1, 5, 9, 13]] = 1  # four strays: no whole family in the smaller camp
    assert _mixture(_result(fam.tolist()), {f"m{i}": int(s) for i, s in enumerate(minority)}) is None


def test_a_continuum_beside_a_few_models_is_no_evidence_of_one():
    """Outside audit 125 (F6): three fingerprints whose camps were exactly a 4-model minority of 64 were "held back as one
    continuum" beside a candidate; the caveat said elsewhere (a gap test sees little beside so few) is said there too."""
    from analysis.answer import Candidate, _held_same_text

    def cand(sizes):
        return Candidate(fingerprints=["a"], verdicts={"a": "crosses lineage"}, representative="a", privileged=False,
                         q=0.01, separation=11.0, sizes=sizes, basins={}, held_same={"b": [1.0, "no gap"]})

    assert "beside a camp of only 4 models a gap test sees little" in _held_same_text(cand([60, 4]))
    assert "a gap test sees little" not in _held_same_text(cand([32, 32]))
