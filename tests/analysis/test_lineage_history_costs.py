"""Checkpoint-history evidence on hand-built trajectories: copies found, direction one way only."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.lineage import PairTests
from analysis.lineage_history import history_costs, history_edges, history_parents
from analysis.lineage_tree import lineage_forest


def _trajectories(seed: int = 0):
    """Models 0, 1: same init, different paths (steps 0, 10, 20); 2: spawned from 0 at step 10
    (a copy, then its own path); 3: fine-tuned from 1 (first checkpoint at 25, near 1's step 20);
    4: another init. Returns ``(x [k, P], owner [k], step [k])``."""
    rng = np.random.default_rng(seed)
    p = 50
    init, other = rng.normal(size=p), rng.normal(size=p)
    walk = lambda x: x + 0.3 * rng.normal(size=p)
    a10, b10 = walk(init), walk(init)
    a20, b20 = walk(a10), walk(b10)
    rows = [(0, 0, init), (0, 10, a10), (0, 20, a20), (1, 0, init), (1, 10, b10), (1, 20, b20),
            (2, 10, a10), (2, 20, walk(a10)), (3, 25, b20 + 0.01 * rng.normal(size=p)), (3, 30, walk(b20)),
            (4, 0, other), (4, 10, walk(other)), (4, 20, walk(other))]
    owner, step, x = zip(*rows)
    return np.asarray(x, dtype=np.float32), np.asarray(owner), np.asarray(step)


def test_children_continue_their_parents_trajectory_and_never_the_reverse():
    x, owner, step = _trajectories()
    cost = history_costs(x, owner, step, 5)
    assert cost[0, 2] < 1e-6  # the spawned child's first checkpoint copies its parent's step 10
    assert 0 < cost[1, 3] < 0.05 and cost[1, 3] < cost[:, 3][np.arange(5) != 1].min()
    # same-init siblings share only their first checkpoints: neither is the other's parent; the
    # children cannot be their parents' parents, nor can anything precede a step-0 start
    assert np.isinf(cost[:, [0, 1, 4]]).all() and np.isinf(cost[2, 0]) and np.isinf(cost[3, 1])
    blocked = history_costs(x, owner, step, 5, block=2)  # query blocks change nothing: the same pattern of
    assert np.array_equal(np.isinf(blocked), np.isinf(cost))  # allowed pairs, and the same costs up to how
    np.testing.assert_allclose(blocked[np.isfinite(cost)], cost[np.isfinite(cost)], rtol=1e-12, atol=1e-12)  # BLAS sums a block
    parent, d = history_parents(cost)
    assert parent.tolist() == [-1, -1, 0, 1, -1] and np.isinf(d[[0, 1, 4]]).all()
    fam = np.asarray([0, 0, 0, 0, 1])
    assert np.isinf(history_costs(x, owner, step, 5, family=np.asarray([0, 0, 1, 0, 1]))[0, 2])
    # the forest from these costs: inside the related family, every recovered edge is a true one
    a, b = np.triu_indices(5, 1)
    related = fam[a] == fam[b]
    tests = PairTests(a, b, np.where(related, 1e-4, 0.5), np.where(related, 1e-3, 0.5), related,
                      np.ones(len(a)), "exact", 0.05)
    assert lineage_forest(5, tests, np.zeros(5), cost).tolist() == [-1, -1, 0, 1, -1]
    # the same, one family at a time, as edges: exactly the finite in-family entries of the dense costs
    p, v, c = history_edges(x, owner, step, fam)
    dense = history_costs(x, owner, step, 5, family=fam)
    assert sorted(zip(p.tolist(), v.tolist())) == sorted(zip(*np.nonzero(np.isfinite(dense))))
    np.testing.assert_allclose(c, dense[p, v], rtol=1e-12, atol=1e-12)  # other product shapes: equal up to BLAS's summation order
    assert lineage_forest(5, tests, np.zeros(5), (p, v, c)).tolist() == [-1, -1, 0, 1, -1]


def test_bad_shapes_are_errors():
    x, owner, step = _trajectories()
    with pytest.raises(AnalysisError, match="checkpoints must be"):
        history_costs(x[:, :, None], owner, step, 5)
    with pytest.raises(AnalysisError, match="owners must be in 0..3"):
        history_costs(x, owner, step, 4)
    assert np.isinf(history_costs(x[:1], owner[:1], step[:1], 5)).all()  # one checkpoint: no evidence


def test_a_fine_tune_counting_from_zero_again_starts_on_its_parents_final_checkpoint():
    """Outside audits 68-69: fine-tunes whose step count restarts at 0 (their step 0 the base's final
    weights, or saved a few steps on) had no parent by history; a parent's final checkpoint is now
    admitted at any step number. Every admitted checkpoint must be at most NEARER times as far from
    the child's start as the parent's own start is: same-init siblings (one stopped at 30 steps,
    one trained 800; one first saved at step 50) are not each other's parents."""
    from analysis.lineage_history import NEARER

    rng = np.random.default_rng(0)
    init = rng.normal(size=40)
    drift = rng.normal(size=40)  # the direction both siblings' training takes, plus their own noise
    base = [init + 0.3 * k * drift + 0.1 * k * rng.normal(size=40) for k in range(4)]  # model 0: steps 0..300
    sib = [init + 0.3 * k * drift + 0.1 * k * rng.normal(size=40) for k in (0, 8)]  # model 1: the same init, 800 steps
    ft = [base[-1] + 0.02 * rng.normal(size=40)] + [base[-1] + 0.2 * k * rng.normal(size=40) for k in (1, 2)]  # model 2
    late = [init + 0.3 * k * drift + 0.1 * k * rng.normal(size=40) for k in (0.5, 3)]  # model 3: first saved at step 50
    x = np.stack([*base, *sib, *ft, *late])
    owner = np.asarray([0] * 4 + [1] * 2 + [2] * 3 + [3] * 2)
    step = np.asarray([0, 100, 200, 300, 0, 800, 0, 50, 150, 50, 300])  # the fine-tune counts from 0 again
    cost = history_costs(x, owner, step, 4)
    assert np.isfinite(cost[0, 2]) and cost[0, 2] < 0.05  # the base's final, 0.02 noise away: the fine-tune's parent
    assert np.isinf(cost[0, 1]) and np.isinf(cost[1, 0])  # siblings from one init: neither the other's parent
    assert np.isinf(cost[0, 3]) and np.isinf(cost[1, 3])  # a sibling first saved at step 50: no parent either
    assert np.isinf(cost[2, :]).all()  # nothing starts on the fine-tune's trajectory
    assert 0 < NEARER < 1
