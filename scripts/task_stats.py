"""Basin frequencies of a trained zoo, and whether lineage predicts the basin.

    python scripts/task_stats.py ZOO [--by COLUMN]

Prints, per kind of model (base / spawn / finetune), the counts of ``deep_label``; then for base
models the *same-init agreement* (the fraction of pairs of models sharing an init seed but not a
data seed that land in the same basin) against the agreement of random pairs, and for children the
fraction that land in their parent's basin. docs/tasks.md quotes its output.
"""

from __future__ import annotations

import argparse
from collections import Counter
from itertools import combinations

import numpy as np

from training.core.store import Zoo


def pair_agreement(labels: np.ndarray, groups: np.ndarray) -> tuple[float, float, int]:
    """(agreement of pairs within a group, agreement of all pairs, number of within-group pairs)."""
    same, n_same = 0, 0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        for i, j in combinations(idx, 2):
            same += labels[i] == labels[j]
            n_same += 1
    freq = np.array(list(Counter(labels).values()), dtype=float) / len(labels)
    chance = float((freq**2).sum())  # two random models share a basin
    return (same / n_same if n_same else float("nan")), chance, n_same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--by", default="deep_label", help="the basin column (default deep_label)")
    args = ap.parse_args()
    zoo = Zoo.open(args.zoo)
    t = zoo.models
    lab = np.asarray(t[args.by]).astype(str)
    kind = np.asarray(t["kind"]).astype(str)
    print(f"{args.zoo}: {zoo.n_models} models")
    for k in dict.fromkeys(kind):
        c = Counter(lab[kind == k])
        n = sum(c.values())
        print(f"  {k:9} n={n:4}  " + "  ".join(f"{b}={v} ({100 * v / n:.0f}%)" for b, v in sorted(c.items())))
    base = kind == "base"
    agree, chance, pairs = pair_agreement(lab[base], np.asarray(t["init_seed"])[base])
    print(f"  same-init pairs in the same basin: {agree:.2f} ({pairs} pairs); random pairs: {chance:.2f}")
    ids = list(zoo.model_ids)
    parent = np.asarray(t["parent_id"]).astype(str)
    for k in sorted(set(kind) - {"base"}):
        sel = np.flatnonzero(kind == k)
        plab = np.array([lab[ids.index(parent[i])] for i in sel])
        moved = Counter(f"{a}->{b}" for a, b in zip(plab, lab[sel]))
        print(f"  {k}: child in parent's basin {np.mean(plab == lab[sel]):.2f}; transitions "
              + ", ".join(f"{m}: {v}" for m, v in sorted(moved.items())))


if __name__ == "__main__":
    main()
