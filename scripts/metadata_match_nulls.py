"""How often does an unrelated model column "match" candidate basins (analysis/metadata.py)?

Draws two candidate basins of the two kinds a label-free deep verdict gives -- ``cross`` (camps
inside every init family, half of each family's members on each side) and ``groups`` (whole
families on each side) -- and model columns drawn independently of them: per-model columns (a
2-valued number such as epochs 10 / 40, a 3-valued category, a continuous number) and family-level
ones (the same value for every member of a family: a 2-valued number, a continuous number), and
counts the matches of :func:`analysis.metadata.compare` with its defaults (AMI interval's lower end
>= 0.3, AUROC's >= 0.85; 200 family-bootstrap samples). Also the rate for a column that *does*
decide the basins (power). Prints one row per (basins, families, column kind) with the match rate
and its Clopper-Pearson 95% interval; ``--json`` for the numbers docs/scorecard.md quotes.

    python scripts/metadata_match_nulls.py [--reps 200] [--families 6 12] [--size 3] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import binomtest

from analysis.metadata import compare

KINDS = ("model-2", "model-3cat", "model-cont", "family-2", "family-cont", "decides")


def column(kind: str, fam: np.ndarray, basins: np.ndarray, r: np.random.Generator) -> np.ndarray:
    n, nf = len(fam), int(fam.max()) + 1
    if kind == "model-2":
        return r.choice([10, 40], n)
    if kind == "model-3cat":
        return np.asarray(r.choice(["adam", "sgd", "lion"], n), dtype=object)
    if kind == "model-cont":
        return r.uniform(0, 1, n)
    if kind == "family-2":
        return r.choice([10, 40], nf)[fam]
    if kind == "family-cont":
        return r.uniform(0, 1, nf)[fam]
    return np.where(basins == 1, 40, 10)  # decides


def basins_of(kind: str, n_fam: int, size: int, r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    fam = np.repeat(np.arange(n_fam), size)
    if kind == "cross":
        return np.concatenate([r.permutation(np.arange(size) % 2) for _ in range(n_fam)]), fam
    return r.permutation(np.arange(n_fam) % 2)[fam], fam


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--families", type=int, nargs="+", default=[6, 12])
    ap.add_argument("--size", type=int, default=3, help="models per family")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for basin_kind in ("cross", "groups"):
        for n_fam in args.families:
            for kind in KINDS:
                hits = 0
                for rep in range(args.reps):
                    r = np.random.default_rng([rep, n_fam, KINDS.index(kind), basin_kind == "cross"])
                    basins, fam = basins_of(basin_kind, n_fam, args.size, r)
                    out = compare(basins, {"c": column(kind, fam, basins, r)}, fam, random_state=rep)
                    hits += any(e["match"] for e in out)
                ci = binomtest(hits, args.reps).proportion_ci(0.95, method="exact")
                rows.append({"basins": basin_kind, "families": n_fam, "size": args.size, "column": kind, "matches": hits,
                             "reps": args.reps, "rate": hits / args.reps, "ci": [round(ci.low, 4), round(ci.high, 4)]})
    if args.json:
        print(json.dumps(rows))
        return
    for x in rows:
        print(f"{x['basins']:6s} {x['families']:3d} x {x['size']}  {x['column']:12s} {x['matches']:4d}/{x['reps']}  "
              f"{100 * x['rate']:5.1f}% [{100 * x['ci'][0]:.1f}, {100 * x['ci'][1]:.1f}]")


if __name__ == "__main__":
    main()
