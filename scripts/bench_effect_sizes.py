"""Time the label-free effect sizes (analysis/effect.py) against the label-free tests they follow.

usage: python scripts/bench_effect_sizes.py [--families 30] [--members 8] [--features 768] [--repeats 3]

A synthetic population: init families x members, ``features`` raw values (family effects, member
noise, and a split of every family's members the way a planted backdoor cuts them), reduced to the
scorecard's 10 PCA coordinates. Prints the seconds of ``label_free`` and of ``effect.sized`` (the
sizes of every partition that could become a deep verdict, with 200 family-bootstrap samples each,
and the one-family pointer), best of ``repeats``. docs/benchmarks.md, "Label-free effect sizes".
"""

import argparse
import time

import numpy as np

from analysis import clustering as cl
from analysis import labelfree as lf
from analysis.effect import sized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", type=int, default=30)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.families * a.members
    fam = np.repeat(np.arange(a.families), a.members).astype(str)
    camp = np.tile(np.arange(a.members) < max(1, a.members // 4), a.families)
    raw = (rng.normal(size=(a.families, a.features))[np.repeat(np.arange(a.families), a.members)]
           + rng.normal(size=(n, a.features)) + 3.0 * camp[:, None] * rng.normal(size=a.features))
    coords = cl.coordinates(raw, False, 10, 0, True)
    t_lf, t_sz = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        res = lf.label_free(coords, fam)
        t1 = time.perf_counter()
        out = sized(res, fam, coords, raw, False, np.zeros(n, int))
        t2 = time.perf_counter()
        t_lf.append(t1 - t0)
        t_sz.append(t2 - t1)
    shares = {k: round(e["share"], 3) for k, e in out.effects.items()}
    print(f"{a.families} x {a.members} models, {a.features} features: label_free {min(t_lf):.3f} s, "
          f"sized {min(t_sz):.3f} s (partitions {sorted(out.effects)}, shares {shares})")


if __name__ == "__main__":
    main()
