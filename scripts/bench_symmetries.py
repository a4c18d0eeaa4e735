"""What taking the weights' symmetries out costs the weight fingerprints, side by side in one run.

``weight-stats`` then ``weight-spectra`` on seeded populations at init, with ``balance=false`` (the raw
weights) and ``balance=true`` (the default: rescaled units balanced, mixed units at their least-norm
point, shifts the function cannot see centred, those found by trying them included), best of
``--repeats``. Prints seconds and the ratio; ``--json`` prints them as one object.

    python scripts/bench_symmetries.py            # --repeats 2 --json
"""

from __future__ import annotations

import argparse
import json
import time

from fingerprint.batch import ModelBatch
from fingerprint.extractors import mechanistic
from fingerprint.extractors.shifts import forget_shifts
from fingerprint.registry import get_extractor
from training.families import get_family
from training.tasks import get_task

POPULATIONS = {  # name: (task, task params, family, hyper-parameters, models)
    "mlp": ("xor-cues", {}, "mlp", {"width": 64, "depth": 4}, 1024),
    "transformer": ("modadd", {"p": 23}, "transformer", {"vocab": 23, "d_model": 64, "n_heads": 4, "d_mlp": 256}, 256),
}


def seconds(mb: ModelBatch, balance: bool, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        mechanistic.forget_balanced()
        forget_shifts()
        t = time.perf_counter()
        for name in ("weight-stats", "weight-spectra"):
            ex = get_extractor(name)
            ex.compute(mb, {**ex.params, "balance": balance})
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    for key, (task_name, task_params, fam_name, hp, n) in POPULATIONS.items():
        task = get_task(task_name, task_params)
        fam = get_family(fam_name, task.input_shape, task.n_out, hp)
        mb = ModelBatch(fam, fam.init(list(range(n))), task, [str(i) for i in range(n)])
        raw, canonical = seconds(mb, False, args.repeats), seconds(mb, True, args.repeats)
        out[key] = {"models": n, "raw_s": round(raw, 3), "canonical_s": round(canonical, 3), "ratio": round(canonical / raw, 2)}
        if not args.json:
            print(f"{key:12s} {n:5d} models  raw {raw:6.2f} s  with the symmetries out {canonical:6.2f} s  ({canonical / raw:.2f}x)")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
