"""How far ``lmc-barrier``'s path resolution falls short of a 101-point path (docs/extractors.md).

    python scripts/lmc_resolution.py ZOO [ZOO ...] [--models 16] [--json out.json]

For each zoo, the first ``--models`` models' barriers (all pairs) on the 101-point path are the
reference; each candidate resolution (``n_points``, ``refine``) is scored by its error against it:
the absolute error (reference - candidate) averaged and at its largest over all pairs, and the
relative error over the pairs whose reference barrier is at least ``--floor`` (a relative error of
a barrier near 0 says nothing), with the number of loss evaluations per pair each one costs. A
negative error means the candidate found a higher point than the 101-point grid.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.registry import get_extractor

CANDIDATES = [(5, 0), (11, 0), (21, 0), (5, 4), (5, 6), (5, 8), (9, 6)]


def barriers(mb: ModelBatch, n_points: int, refine: int) -> tuple[np.ndarray, float]:
    spec = get_extractor("lmc-barrier")
    t = time.perf_counter()
    values, _ = spec.compute(mb, spec.resolve_params({"n_points": n_points, "refine": refine}))
    d = np.asarray(values)
    return d[np.triu_indices(len(d), 1)], time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--floor", type=float, default=0.01, help="relative errors over pairs whose barrier is at least this")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = {}
    for path in args.zoos:
        zoo = Zoo.open(path)
        ids = zoo.model_ids[: args.models]
        mb = ModelBatch.from_zoo(zoo, ids)
        ref, t_ref = barriers(mb, 101, 0)
        big = ref >= args.floor
        rows = {}
        print(f"{zoo.config['name']}: {len(ids)} models, {len(ref)} pairs, reference barrier mean {ref.mean():.4f} "
              f"max {ref.max():.4f}, {big.sum()} pairs >= {args.floor} ({t_ref:.1f} s)")
        for n_points, refine in CANDIDATES:
            est, t = barriers(mb, n_points, refine)
            err = ref - est
            rel = err[big] / ref[big] if big.any() else np.array([np.nan])
            row = {"evaluations": n_points - 2 + (refine + 1 if refine else 0), "abs_mean": float(err.mean()),
                   "abs_max": float(err.max()), "rel_mean": float(rel.mean()), "rel_max": float(rel.max()),
                   "rel_min": float(rel.min()), "seconds": round(t, 2)}
            rows[f"n_points={n_points},refine={refine}"] = row
            print(f"  n_points {n_points:3d} refine {refine}: {row['evaluations']:2d} evals, abs err mean {row['abs_mean']:.5f} "
                  f"max {row['abs_max']:.5f}; relative mean {100 * row['rel_mean']:.2f}% max {100 * row['rel_max']:.2f}% "
                  f"(min {100 * row['rel_min']:.2f}%), {t:.2f} s")
        out[zoo.config["name"]] = {"models": len(ids), "pairs": len(ref), "pairs_above_floor": int(big.sum()),
                                   "reference_mean": float(ref.mean()), "reference_max": float(ref.max()), "candidates": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
