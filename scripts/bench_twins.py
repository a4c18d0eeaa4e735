"""Benchmark: the near-twin check (`fingerprint.twins.twin_families`) on imports of independent MLPs.

Builds ``Zoo.from_modules`` zoos of independently initialised 16-W-W-2 MLPs (``--sizes``: models x W) and
times the check once per zoo (it reads every weight once per process, then is cached), printing seconds
and the families found (independent inits: every model alone).

    python scripts/bench_twins.py [--sizes 200x128 1000x128 2000x64 4000x32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fingerprint import Zoo
from fingerprint.twins import twin_families


def zoo_of(n: int, width: int, where: Path) -> Zoo:
    torch.manual_seed(0)
    mods = [torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                torch.nn.ReLU(), torch.nn.Linear(width, 2)) for _ in range(n)]
    return Zoo.from_modules(mods, where, probes={"in_dist": torch.randn(8, 16)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["200x128", "1000x128", "2000x64", "4000x32"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            n, width = (int(v) for v in size.split("x"))
            zoo = zoo_of(n, width, Path(tmp) / size)
            start = time.perf_counter()
            fam = twin_families(zoo)
            seconds = time.perf_counter() - start
            print(f"{n} models x {zoo.n_params:,} parameters: {seconds:.2f} s, "
                  f"{len(set(fam.tolist())) if fam is not None else 'no'} families")


if __name__ == "__main__":
    main()
