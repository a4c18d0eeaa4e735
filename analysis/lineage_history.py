"""Lineage from checkpoint histories: whose trajectory a model's first checkpoint continues.

A spawned child starts as a copy of its parent's checkpoint at the fork step, and a fine-tuned
child's first checkpoint lies a few steps from its parent's last one; a model trained from scratch
starts at its initialization, which only its same-init siblings (at *their* first checkpoint)
share. So when a zoo stores checkpoints, the directed evidence "``v``'s first checkpoint is near a
checkpoint of ``p`` that is not ``p``'s first one, at a step no later than ``v``'s first" says
that ``p`` can be ``v``'s parent, and how far ``v`` started from ``p``'s trajectory; its converse
never holds (``p``'s matched checkpoint comes after ``p``'s first, so ``p`` started strictly
earlier than ``v``). Final weights cannot tell a child spawned at step 20 from its parent (both
train the rest of the way), histories can. Arrays in, arrays out; the zoo glue is in
``fingerprint/lineage.py``.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import AnalysisError

NEARER = 0.5  # a parent's checkpoint counts when the child starts at most this share as far from it as from the parent's start


def _checked(checkpoints, owner, step, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [k, P], owner [k], step [k])`` as arrays, or an :class:`AnalysisError` naming what does
    not fit (shapes, or an owner outside ``0..n-1``)."""
    x = np.asarray(checkpoints)
    owner, step = np.asarray(owner, dtype=np.int64), np.asarray(step, dtype=np.int64)
    if x.ndim != 2 or owner.shape != (len(x),) or step.shape != (len(x),):
        raise AnalysisError(f"checkpoints must be [k, P] with owner and step [k]; got {x.shape}, {owner.shape}, {step.shape}")
    if len(x) and (owner.min() < 0 or owner.max() >= n):
        raise AnalysisError(f"checkpoint owners must be in 0..{n - 1}")
    return x, owner, step


def _first_rows(owner: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """Row of each model's first (lowest-step) checkpoint ``[n]`` (``-1``: the model has none)."""
    order = np.lexsort((step, owner))
    first = np.full(n, -1, dtype=np.int64)
    o = owner[order]
    starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
    first[o[starts]] = order[starts]
    return first


def _sq_distances(q: np.ndarray, x: np.ndarray, block: int = 1024) -> np.ndarray:
    """Squared Euclidean distances ``[m, k]`` between rows of ``q [m, P]`` and ``x [k, P]``, in
    float64 (a copied checkpoint is at distance ~0, not float32 round-off of the norms)."""
    q64 = q.astype(np.float64)
    qq = (q64 * q64).sum(1)
    out = np.empty((len(q), len(x)))
    for i in range(0, len(x), block):
        xb = x[i:i + block].astype(np.float64)
        out[:, i:i + block] = qq[:, None] + (xb * xb).sum(1)[None, :] - 2.0 * q64 @ xb.T
    return np.maximum(out, 0.0)


def history_costs(checkpoints: np.ndarray, owner: np.ndarray, step: np.ndarray, n: int,
                  family: np.ndarray | None = None, block: int = 512) -> np.ndarray:
    """Directed history distances ``[n, n]``: ``cost[p, v]``, the relative distance
    ``||x_v - x_p(t)|| / ||x_v||`` from model ``v``'s first checkpoint ``x_v`` to the nearest
    checkpoint ``x_p(t)`` of ``p`` that is not ``p``'s first and has ``t <= `` ``v``'s first step;
    ``inf`` where there is none (``p`` cannot be ``v``'s parent), or ``p`` and ``v`` are of
    different ``family [n]`` (when given). ``p``'s final checkpoint is admitted at any step number (a
    fine-tune whose step count starts again at 0: an outside audit's parents were all missed); and
    any checkpoint only when ``x_v`` is at most :data:`NEARER` times as far from it as from ``p``'s
    first checkpoint (a copy, or a few steps on; a same-init sibling starts at ``p``'s start, and
    another audit's siblings first saved at step 50, or trained for 30 steps beside 800, were read
    as children without it).

    ``checkpoints [k, P]``: every stored checkpoint of one architecture, flattened; ``owner [k]``
    its model (``0..n-1``), ``step [k]`` its training step. One batched distance computation
    (each model's first checkpoint against all ``k`` checkpoints, ``block`` models at a time),
    reduced per owner. Memory: the ``[n, n]`` result and ``[block, k]`` distances.
    """
    x, owner, step = _checked(checkpoints, owner, step, n)
    cost = np.full((n, n), np.inf)
    first = _first_rows(owner, step, n)
    have = np.flatnonzero(first >= 0)
    if len(have) < 2:
        return cost
    is_first = np.zeros(len(x), bool)
    is_first[first[have]] = True
    last = _first_rows(owner, -step, n)  # each model's last checkpoint: its first by descending step
    is_last = np.zeros(len(x), bool)
    is_last[last[have]] = True
    cand = np.flatnonzero(~is_first)  # a parent's checkpoint after its own start
    if not len(cand):
        return cost
    cand = cand[np.argsort(owner[cand], kind="stable")]  # grouped by owner, to reduce each query's row per owner
    o = owner[cand]
    starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
    xc = x[cand]
    owners, at_owner = np.unique(o, return_inverse=True)  # each candidate's owner, for the distance to its start
    family = None if family is None else np.asarray(family)
    for i in range(0, len(have), block):  # query blocks bound the [block, k] distances' memory
        v = have[i:i + block]
        q = x[first[v]]
        norm = np.maximum(np.linalg.norm(q.astype(np.float64), axis=1), 1e-30)[:, None]
        d = np.sqrt(_sq_distances(q, xc)) / norm
        start = (np.sqrt(_sq_distances(q, x[first[owners]])) / norm)[:, at_owner]  # [block, len(cand)]: to p's start
        # a checkpoint of p at a step no later than v's first, or p's final one at any step number (a fine-tune
        # counting from 0 again); either way v must start much nearer to it than to p's own start: a copy, or a
        # few steps on, not a sibling from the shared init (at its start: 0) nor one that merely moved alike
        ok = (o[None, :] != v[:, None]) & ((step[cand][None, :] <= step[first[v]][:, None]) | is_last[cand][None, :])
        ok &= d <= NEARER * start
        if family is not None:
            ok &= family[o][None, :] == family[v][:, None]
        cost[np.ix_(o[starts], v)] = np.minimum.reduceat(np.where(ok, d, np.inf), starts, axis=1).T
    return cost


def history_parents(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each model's nearest admissible parent by history alone ``[n]`` (``-1``: none) and its
    relative distance ``[n]`` (``inf``: none); from :func:`history_costs`."""
    cost = np.asarray(cost)
    p = np.argmin(cost, axis=0)
    d = cost[p, np.arange(cost.shape[1])]
    return np.where(np.isfinite(d), p, -1), d


def history_edges(checkpoints: np.ndarray, owner: np.ndarray, step: np.ndarray, family: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The finite :func:`history_costs` inside each family, as edges ``(parent [e], child [e],
    cost [e])``: one family at a time (rows sorted by family once), so memory and time grow with
    the families' sizes, not with ``n^2`` (30,000 models in families of 6 are 5,000 small blocks)."""
    family = np.asarray(family)
    x, owner, step = _checked(checkpoints, owner, step, len(family))
    order = np.argsort(family[owner], kind="stable")
    f = family[owner][order]
    bounds = np.flatnonzero(np.r_[True, f[1:] != f[:-1], True])
    ps, vs, cs = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = order[lo:hi]
        members, local = np.unique(owner[rows], return_inverse=True)
        if len(members) < 2:
            continue
        cost = history_costs(x[rows], local, step[rows], len(members))
        p, v = np.nonzero(np.isfinite(cost))
        ps.append(members[p])
        vs.append(members[v])
        cs.append(cost[p, v])
    if not ps:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ps), np.concatenate(vs), np.concatenate(cs)
