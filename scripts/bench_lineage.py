"""Benchmark: `fingerprint lineage`'s statistics on every pair of a 1,000-model population.

Builds a synthetic population of one-hidden-layer MLPs shaped like ``xor-cues``' (``--d-in`` inputs,
``--width`` hidden units, 2 outputs) in init families of ``--family-size``: each family's members
are its random initialization plus independent drift (training), with their hidden units in the
same order, as training from one initialization leaves them. Then it times, on all
``n (n - 1) / 2`` pairs, what ``fingerprint lineage`` runs after loading the zoo:
:func:`analysis.lineage.weight_test` (Hungarian matching per pair, the exact test with
``--n-perm`` permutations and the matched test), :func:`analysis.lineage.behaviour_test` on a
``--fp-dim``-column fingerprint, and the forest (:func:`analysis.lineage_tree.lineage_forest`),
from final weights and from checkpoint histories (:func:`histories`: ``--checkpoints`` per model,
the first two of each family from its initialization, the rest spawned from one of them at a
random checkpoint; :func:`analysis.lineage_history.history_edges` inside the exact test's families, then the forest).
Prints wall seconds per stage (and the process's CPU seconds: on a shared machine the wall
time measures the neighbours too), pairs per second and the false-positive rate / power at 0.05 (a check
that the population is what it claims); ``--json`` prints one object.

    OMP_NUM_THREADS=1 python scripts/bench_lineage.py [--models 1000] [--width 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from analysis.lineage import all_pairs, behaviour_test, families, weight_test
from analysis.lineage_history import history_edges
from analysis.lineage_tree import lineage_forest, shared_init_rates, tree_accuracy


def population(n: int, d_in: int, width: int, family_size: int, drift: float, seed: int = 0):
    """Stacked params ``{name: [n, ...]}``, their permutation groups and each model's family ``[n]``."""
    rng = np.random.default_rng(seed)
    fam = np.arange(n) // family_size
    n_fam = int(fam.max()) + 1
    shapes = {"layer0.weight": (width, d_in), "layer0.bias": (width,), "out.weight": (2, width), "out.bias": (2,)}
    params = {}
    for name, shape in shapes.items():
        base = rng.normal(size=(n_fam, *shape)) / np.sqrt(shape[-1])
        params[name] = (base[fam] + drift * rng.normal(size=(n, *shape)) / np.sqrt(shape[-1])).astype(np.float32)
    groups = {"layer0": [("layer0.weight", 0), ("layer0.bias", 0), ("out.weight", 1)]}
    return params, groups, fam


def histories(fam: np.ndarray, n_params: int, k: int, seed: int = 0):
    """Synthetic checkpoint histories: ``(x [rows, n_params], owner [rows], step [rows], true_parent [n])``.

    In each family the first two members train from the family's initialization (checkpoints at
    steps ``0, 10, ..., 10 (k - 1)``); each other member is spawned from one of them at a random
    checkpoint (its first checkpoint a copy of it) and trains on to the same final step.
    """
    rng = np.random.default_rng(seed)
    n = len(fam)
    init = rng.normal(size=(int(fam.max()) + 1, n_params))
    first_of = {f: np.flatnonzero(fam == f)[:2] for f in np.unique(fam)}
    traj: dict[int, list[np.ndarray]] = {}
    true_parent = np.full(n, -1, dtype=np.int64)
    xs, owner, step = [], [], []
    for m in range(n):  # a model's parent precedes it, so its trajectory exists
        base = first_of[fam[m]]
        if m in base:
            start, path = 0, [init[fam[m]]]
        else:
            true_parent[m] = p = base[m % len(base)]
            start = int(rng.integers(1, k - 1))
            path = [traj[p][start]]
        for _ in range(start + 1, k):
            path.append(path[-1] + 0.2 * rng.normal(size=n_params))
        traj[m] = [None] * start + path
        for i in range(start, k):
            xs.append(traj[m][i])
            owner.append(m)
            step.append(10 * i)
    return np.asarray(xs, dtype=np.float32), np.asarray(owner), np.asarray(step), true_parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--family-size", type=int, default=6)
    ap.add_argument("--d-in", type=int, default=12)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--drift", type=float, default=0.5, help="training drift relative to the initialization's scale")
    ap.add_argument("--n-perm", type=int, default=99_999)
    ap.add_argument("--fp-dim", type=int, default=64)
    ap.add_argument("--checkpoints", type=int, default=6, help="checkpoints per trajectory for the history forest")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    params, groups, fam = population(args.models, args.d_in, args.width, args.family_size, args.drift)
    out: dict = {"models": args.models, "width": args.width, "n_perm": args.n_perm}
    t0, c0 = time.perf_counter(), time.process_time()
    pairs = all_pairs(args.models)
    out["pairs"] = int(len(pairs[0]))
    exact, matched = weight_test(params, groups, pairs, 0.05, args.n_perm)
    out["weight_test_s"] = round(time.perf_counter() - t0, 2)
    out["weight_test_cpu_s"] = round(time.process_time() - c0, 2)
    t1 = time.perf_counter()
    fp = np.random.default_rng(1).normal(size=(args.models, args.fp_dim)) \
        + 2.0 * np.random.default_rng(2).normal(size=(int(fam.max()) + 1, args.fp_dim))[fam]
    behaviour = behaviour_test(fp, pairs, 0.05, "fingerprint")
    out["behaviour_test_s"] = round(time.perf_counter() - t1, 2)
    t2 = time.perf_counter()
    lineage_forest(args.models, exact, np.linalg.norm(params["layer0.weight"].reshape(args.models, -1), axis=1))
    out["forest_s"] = round(time.perf_counter() - t2, 2)
    x, owner, step, true_parent = histories(fam, sum(v[0].size for v in params.values()), args.checkpoints)
    t3, c3 = time.perf_counter(), time.process_time()
    cost = history_edges(x, owner, step, families(args.models, exact))
    out["history_costs_s"] = round(time.perf_counter() - t3, 2)
    t4 = time.perf_counter()
    parent = lineage_forest(args.models, exact, np.zeros(args.models), cost)
    out["history_forest_s"] = round(time.perf_counter() - t4, 2)
    out["history_cpu_s"] = round(time.process_time() - c3, 2)
    out["checkpoint_rows"] = int(len(x))
    out["history_parent_accuracy"], out["history_direction_accuracy"] = tree_accuracy(parent, true_parent)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["total_cpu_s"] = round(time.process_time() - c0, 2)
    out["pairs_per_cpu_s_weights"] = round(out["pairs"] / out["weight_test_cpu_s"])
    for name, t in (("exact", exact), ("matched", matched), ("behaviour", behaviour)):
        r = shared_init_rates(t, fam)
        out[f"{name}_fpr"], out[f"{name}_power"] = round(r["shared_init_fpr"], 4), round(r["shared_init_power"], 4)
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
