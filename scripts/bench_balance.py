"""Benchmark: the balanced weight fingerprints of one batch sharing its balancing vs each balancing it.

``weight-stats``, ``weight-spectra``, ``aligned-weights`` and ``cka`` each start from the batch's
parameters with their rescalable ReLU units balanced (docs/extractors.md, "Rescaled units"). One
``extract`` call hands them the same tensors, and the last balanced copy is reused
(``fingerprint.extractors.mechanistic._LastBalanced``). This runs the fingerprints one after the
other on an MLP population at init, both ways, alternating, in one process, and prints the CPU
seconds of each round and the ratio of the best ones; ``--json`` prints them as one object.

    python scripts/bench_balance.py            # 1,024 MLPs, width 64, depth 8; --models, --width, --depth, --rounds
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fingerprint.batch import ModelBatch
from fingerprint.extractors import mechanistic
from fingerprint.registry import get_extractor
from training.families import get_family
from training.tasks import get_task

NAMES = ("weight-stats", "weight-spectra", "aligned-weights")


def _each(self, params, groups):  # the behaviour before sharing: balance on every call
    self.result = None
    return mechanistic.balance_units(params, groups)


def run(models: int, width: int, depth: int, rounds: int) -> dict:
    torch.set_num_threads(1)
    task = get_task("xor-cues")
    fam = get_family("mlp", task.input_shape, task.n_out, {"width": width, "depth": depth})
    mb = ModelBatch(fam, fam.init(list(range(models))), task, [f"m{i}" for i in range(models)])
    shared_get = mechanistic._LastBalanced.get
    times: dict[str, list[float]] = {"shared": [], "each": []}
    try:
        for _ in range(rounds):
            for mode in times:
                mechanistic._LastBalanced.get = shared_get if mode == "shared" else _each
                mechanistic._LAST.result = None
                t = time.process_time()
                for name in NAMES:
                    spec = get_extractor(name)
                    spec.compute(mb, spec.params)
                times[mode].append(round(time.process_time() - t, 2))
    finally:
        mechanistic._LastBalanced.get = shared_get
    return {"models": models, "width": width, "depth": depth, "fingerprints": list(NAMES), "cpu_seconds": times,
            "speedup": round(min(times["each"]) / min(times["shared"]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1024)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = run(a.models, a.width, a.depth, a.rounds)
    if a.json:
        print(json.dumps(out))
        return
    for mode, ts in out["cpu_seconds"].items():
        print(f"{mode:>6}: {', '.join(f'{t:.2f}' for t in ts)} s CPU ({', '.join(NAMES)})")
    print(f"balancing once per batch: {out['speedup']}x less CPU than once per fingerprint")


if __name__ == "__main__":
    main()
