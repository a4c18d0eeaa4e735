"""Benchmark: what MKL's reproducible mode (``MKL_CBWR``, set by ``training.core.numerics``) costs.

Runs ``scripts/bench_train.py --json --no-compare`` (the vectorized harness vs the per-model loop)
in subprocesses, alternating MKL's default mode (``MKL_CBWR=`` empty: off), the non-strict
reproducible mode (``AUTO``) and the mode our packages request (``AUTO,STRICT``), so all see the
same host state; prints each run's harness time and the ratios of the best times to the default
(> 1: slower).

    python scripts/bench_blas_mode.py [--rounds 3] [--json] [-- bench_train args ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from training.core.numerics import MKL_MODE

BENCH = Path(__file__).with_name("bench_train.py")


def run(mode: str, extra: list[str]) -> dict:
    env = {**os.environ, "MKL_CBWR": mode}
    out = subprocess.run([sys.executable, str(BENCH), "--json", "--no-compare", *extra], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("rest", nargs="*", help="arguments for bench_train.py (after --)")
    args = ap.parse_args()
    modes = {"off": "", "AUTO": "AUTO", "reproducible": MKL_MODE}
    runs: dict[str, list[dict]] = {k: [] for k in modes}
    for r in range(args.rounds):
        for name, mode in modes.items():
            res = run(mode, args.rest)
            runs[name].append(res)
            if not args.json:
                print(f"round {r + 1} {name:>12}: harness {res['vectorized_seconds']:.2f} s, "
                      f"{100 * res['fraction_of_peak']:.1f}% of peak, {res['speedup_vs_loop']:.1f}x the loop")
    best = {k: min(x["vectorized_seconds"] for x in v) for k, v in runs.items()}
    summary = {"best_seconds": best, "slowdown": best["reproducible"] / best["off"], "slowdown_auto": best["AUTO"] / best["off"],
               "mode": MKL_MODE, "fraction_of_peak": {k: max(x["fraction_of_peak"] for x in v) for k, v in runs.items()}}
    print(json.dumps(summary) if args.json else
          f"best of {args.rounds}: {MKL_MODE} / off {summary['slowdown']:.3f}, AUTO / off {summary['slowdown_auto']:.3f}")


if __name__ == "__main__":
    main()
