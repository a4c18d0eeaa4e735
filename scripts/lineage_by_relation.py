"""The calibrated lineage tests of ``fingerprint lineage``, broken down by how two models are related.

    python scripts/lineage_by_relation.py ZOO [--fp F ...] [--n-perm 9999] [--json OUT]

For a zoo of base models and fine-tuned children (``tiny-lm``), every pair is one of: *parent*
(a base and its own child), *siblings* (two children of one base), *same init* (two bases of one
init seed, different data orders), *cousins* (children of two same-init bases), *uncle* (a base
and a same-init base's child), or *unrelated* (different init seeds). Per evidence (``exact`` and
``matched`` from the weights, one per fingerprint), it prints the share of each kind of pair with
``p <= alpha`` (the unrelated column is the false-positive rate), the share BH at ``alpha`` calls
related, and the **parent match**: for each child, is the base model with the smallest p-value its
parent (the calibrated analogue of the original experiment's nearest-base match; chance 1 / bases).
docs/results.md ("tiny-lm", lineage) quotes the output.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from analysis.lineage import all_pairs, behaviour_test, weight_test
from fingerprint.pipeline import inputs_for
from fingerprint.population import family_for
from training.core.store import Zoo

KINDS = ("parent", "siblings", "same init", "cousins", "uncle", "unrelated")


def relation(i: int, j: int, init: np.ndarray, parent: np.ndarray) -> str:
    if init[i] != init[j]:
        return "unrelated"
    pi, pj = parent[i], parent[j]
    if pi == j or pj == i:
        return "parent"
    if pi >= 0 and pi == pj:
        return "siblings"
    if pi < 0 and pj < 0:
        return "same init"
    return "cousins" if pi >= 0 and pj >= 0 else "uncle"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--fp", action="append", default=[])
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--n-perm", type=int, default=9999)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    zoo = Zoo.open(args.zoo)
    ids = zoo.model_ids
    n = len(ids)
    init = np.asarray(zoo.models["init_seed"])
    where = {m: k for k, m in enumerate(ids)}
    parent = np.asarray([where.get(str(p), -1) if str(p) else -1 for p in zoo.models["parent_id"]])
    pairs = all_pairs(n)
    rel = np.asarray([relation(i, j, init, parent) for i, j in zip(*pairs)])
    tests = dict(zip(("exact", "matched"), weight_test({k: v.numpy() for k, v in zoo.params().items()},
                                                        family_for(zoo).hidden_permutable(), pairs, args.alpha, args.n_perm, 0)))
    for fi in inputs_for(zoo, args.fp):
        rows = np.asarray(fi.values)[np.argsort(zoo.index(fi.model_ids))]
        tests[fi.name] = behaviour_test(rows, pairs, args.alpha, fi.name)
    bases, kids = np.flatnonzero(parent < 0), np.flatnonzero(parent >= 0)
    out = {}
    print(f"{'evidence':36s} " + " ".join(f"{k:>9s}" for k in KINDS) + f" {'BH rel':>6s} {'BH FDP':>6s} {'parent match':>12s}")
    for name, t in tests.items():
        p = np.ones((n, n))
        p[t.a, t.b] = p[t.b, t.a] = t.p_value
        share = {k: float((t.p_value[rel == k] <= args.alpha).mean()) for k in KINDS if (rel == k).any()}
        called = t.related
        fdp = float((rel[called] == "unrelated").mean()) if called.any() else 0.0
        match = float(np.mean([bases[np.argmin(p[c, bases])] == parent[c] for c in kids]))
        out[name] = {"p_le_alpha": share, "bh_related": int(called.sum()), "bh_fdp": fdp,
                     "bh_power": float(called[rel != "unrelated"].mean()), "parent_match": match}
        print(f"{name[:36]:36s} " + " ".join(f"{share.get(k, float('nan')):9.3f}" for k in KINDS)
              + f" {int(called.sum()):6d} {fdp:6.3f} {match:12.2f}")
    print("pairs: " + ", ".join(f"{k} {int((rel == k).sum())}" for k in KINDS) + f"; chance parent match 1/{len(bases)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
