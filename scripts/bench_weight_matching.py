"""What weight matching (``aligned-weights``) costs as layers widen, against the default set's estimate.

``fingerprint.extractors.mechanistic.matching_seconds`` estimates weight matching's time from the
shapes alone (about ``MATCH_ROUNDS`` assignments of ``h x h`` per model and group, each ``h^3``, and
their cost matrices, ``h^2`` times the group's other axes), and the default set leaves
``aligned-weights`` out above ``fingerprint.pipeline.ALIGN_DEFAULT_SECONDS`` (an outside audit, 72:
16 MLPs of three 2,048-unit layers ran for more than 8 minutes). This times the two parts of one
solve at several widths, side by side with the constants the estimate uses, and one whole
``weight_match`` of a population whose models are noisy unit-permuted copies of one model (the
rounds trained models take vary; the audit's trained MLPs needed about 7 solves per model and layer).

    OMP_NUM_THREADS=1 python scripts/bench_weight_matching.py [--widths 256 512 1024] [--models 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from fingerprint.extractors.mechanistic import (
    ASSIGNMENT_SECONDS,
    COST_SECONDS,
    MATCH_ROUNDS,
    matching_seconds,
    weight_match,
)


def population(width: int, n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, list[tuple[str, int]]]]:
    """``n`` MLPs 32-w-w-w-2: noisy copies of one model with their hidden units shuffled, and the groups."""
    g = torch.Generator().manual_seed(seed)
    dims = [32, width, width, width, 2]
    base = {}
    for i in range(4):
        base[f"{i}.weight"] = torch.randn(dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5
        base[f"{i}.bias"] = torch.randn(dims[i + 1], generator=g) * 0.1
    groups = {f"h{i}": [(f"{i}.weight", 0), (f"{i}.bias", 0), (f"{i + 1}.weight", 1)] for i in range(3)}
    models = []
    for _ in range(n):
        m = {k: v + 0.3 * v.std() * torch.randn(v.shape, generator=g) for k, v in base.items()}
        for i in range(3):
            p = torch.randperm(width, generator=g)
            m[f"{i}.weight"], m[f"{i}.bias"] = m[f"{i}.weight"][p], m[f"{i}.bias"][p]
            m[f"{i + 1}.weight"] = m[f"{i + 1}.weight"][:, p]
        models.append(m)
    return {k: torch.stack([m[k] for m in models]) for k in base}, groups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for w in args.widths:
        rng = np.random.default_rng(w)
        a, b = rng.standard_normal((w, 2 * w)), rng.standard_normal((w, 2 * w))
        t = time.perf_counter()
        cost = a @ b.T
        t_cost = time.perf_counter() - t
        t = time.perf_counter()
        linear_sum_assignment(cost, maximize=True)
        t_lsa = time.perf_counter() - t
        params, groups = population(w, args.models)
        shapes = {k: tuple(v.shape[1:]) for k, v in params.items()}
        t = time.perf_counter()
        weight_match(params, {k: v[:1] for k, v in params.items()}, groups)
        t_match = time.perf_counter() - t
        est = matching_seconds(shapes, groups, args.models)
        rows.append({"width": w, "assignment_s": t_lsa, "assignment_model_s": ASSIGNMENT_SECONDS * w**3,
                     "cost_s": t_cost, "cost_model_s": COST_SECONDS * w * w * 2 * w, "match_s": t_match,
                     "estimate_s": est, "measured_over_estimate": t_match / est})
        r = rows[-1]
        print(f"width {w:>5}: one assignment {r['assignment_s']:.3f} s (model {r['assignment_model_s']:.3f} s), one cost "
              f"matrix {r['cost_s']:.3f} s (model {r['cost_model_s']:.3f} s); weight_match of {args.models} models "
              f"{r['match_s']:.2f} s against the estimate's {r['estimate_s']:.2f} s ({MATCH_ROUNDS} rounds): "
              f"ratio {r['measured_over_estimate']:.2f}", flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
