"""Benchmark: what verifying shard checksums costs `Zoo.params`.

Writes a zoo of ``--n-models`` models (default 1,000) with `fingerprint.zoo.write_shard`, the writer
sweeps use, in shards of ``--models-per-batch`` (default 256) with ``--steps`` checkpoints each, for
three sizes of model: ``small`` (the `xor-cues` MLP of width 32, depth 2: 1,410 parameters),
``medium`` (width 136, as in `scripts/bench_stream.py`: 20,130 parameters) and ``large`` (an
MNIST-sized MLP 784-64-64-10: 55,050 parameters, 220 MB for 1,000 models). The weights are
random: reading does not care what they are.

Then, for each size, it times ``Zoo.open(zoo, verify=v).params()`` (every model at its final step),
with and without verification interleaved in one run (``--repeats`` rounds, after a warm-up round
that fills the page cache), and prints the median and the best run of each and their ratios
(on a shared host the best runs are the less disturbed comparison). Opening is timed separately
(it reads and verifies the model tables). The target is a ratio under 1.10 for ``params``.

    python scripts/bench_zoo_read.py [--n-models 1000] [--models-per-batch 256] [--steps 3]
                                     [--repeats 21] [--sizes small,medium,large] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.core.store import ShardData, Zoo, write_manifest, write_shard  # noqa: E402

SIZES = {  # name -> [(parameter name, shape of one model's tensor)]
    "small": [("layer0.weight", (32, 8)), ("layer0.bias", (32,)), ("layer1.weight", (32, 32)),
              ("layer1.bias", (32,)), ("out.weight", (2, 32)), ("out.bias", (2,))],
    "medium": [("layer0.weight", (136, 8)), ("layer0.bias", (136,)), ("layer1.weight", (136, 136)),
               ("layer1.bias", (136,)), ("out.weight", (2, 136)), ("out.bias", (2,))],
    "large": [("layer0.weight", (64, 784)), ("layer0.bias", (64,)), ("layer1.weight", (64, 64)),
              ("layer1.bias", (64,)), ("out.weight", (10, 64)), ("out.bias", (10,))],
}


def build(root: Path, shapes: list[tuple[str, tuple[int, ...]]], n: int, mpb: int, steps: int) -> Path:
    """A zoo of ``n`` random models as a sweep would store them (model table, metrics, checkpoints)."""
    rng = np.random.default_rng(0)
    ids = [f"i{i}-d0" for i in range(n)]
    planned = []
    for s0 in range(0, n, mpb):
        chunk = ids[s0 : s0 + mpb]
        k, name = len(chunk), f"p0-g0-{s0 // mpb:04d}"
        table = {"model_id": chunk, "kind": ["base"] * k, "group": [""] * k, "task": ["bench"] * k, "arch": ["mlp"] * k,
                 "init_seed": np.arange(s0, s0 + k), "data_seed": np.zeros(k, np.int64), "parent_id": [""] * k,
                 "spawn_step": np.full(k, -1), "variant": np.zeros(k, np.int64), "final_step": np.full(k, 100 * (steps - 1)),
                 "diverged": np.zeros(k, bool), "diverged_step": np.full(k, -1), "test_acc": rng.random(k)}
        ckpts = {100 * t: {p: torch.from_numpy(rng.standard_normal((k, *shape), dtype=np.float32)) for p, shape in shapes}
                 for t in range(steps)}
        metrics = {step: {"test_acc": rng.random(k), "deep_label": ["rule_a"] * k} for step in ckpts}
        write_shard(root, ShardData(shard=name, table=table, checkpoints=ckpts, metrics=metrics))
        planned += [{"model_id": m, "shard": name, "kind": "base"} for m in chunk]
    write_manifest(root, {"kind": "zoo", "source": "modules", "config": {}, "planned": planned,
                          "shards": [{"name": p, "phase": 0, "n_models": 0} for p in dict.fromkeys(m["shard"] for m in planned)]})
    return root


def measure(zoo_dir: Path, repeats: int) -> dict[str, float]:
    """Seconds of open and of params() with and without verification, interleaved: the median and
    the best (``*_min``: other tenants of a shared host only ever slow a run down)."""
    times: dict[str, list[float]] = {"open": [], "open_verified": [], "params": [], "params_verified": []}
    for r in range(repeats + 1):  # round 0 warms the page cache and is not counted
        for verify in ((False, True) if r % 2 else (True, False)):  # alternate which goes first
            gc.collect()
            t0 = time.perf_counter()
            zoo = Zoo.open(zoo_dir, verify=verify)
            t1 = time.perf_counter()
            params = zoo.params()
            t2 = time.perf_counter()
            assert next(iter(params.values())).shape[0] == len(zoo)
            del zoo, params  # (freed before the next run allocates, whichever mode it is)
            if r:
                suffix = "_verified" if verify else ""
                times["open" + suffix].append(t1 - t0)
                times["params" + suffix].append(t2 - t1)
    out = {k: statistics.median(v) for k, v in times.items()}
    out.update({f"{k}_min": min(v) for k, v in times.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-models", type=int, default=1000)
    ap.add_argument("--models-per-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="checkpoints per model (params() reads the last)")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--sizes", default="small,medium,large")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-zoo-read-") as tmp:
        for size in args.sizes.split(","):
            shapes = SIZES[size]
            n_params = sum(math.prod(s) for _, s in shapes)
            zoo_dir = build(Path(tmp) / size, shapes, args.n_models, args.models_per_batch, args.steps)
            t = measure(zoo_dir, args.repeats)
            rows.append({"size": size, "n_models": args.n_models, "params_per_model": n_params,
                         "mb_read": round(args.n_models * n_params * 4 / 1e6, 1), **{k: round(v, 6) for k, v in t.items()},
                         "params_ratio": round(t["params_verified"] / t["params"], 3),
                         "params_ratio_min": round(t["params_verified_min"] / t["params_min"], 3),
                         "open_ratio": round(t["open_verified"] / t["open"], 3),
                         "open_ratio_min": round(t["open_verified_min"] / t["open_min"], 3)})
    if args.json:
        print(json.dumps({"host": platform.processor() or platform.machine(), "rows": rows}, indent=2))
        return
    print(f"Zoo.params() of {args.n_models} models ({args.models_per_batch} a shard, final of {args.steps} checkpoints), "
          f"{args.repeats} runs each: median (best)")
    print(f"{'size':<6} {'params/model':>12} {'MB':>6} {'params ms':>14} {'verified ms':>14} {'ratio':>12}   "
          f"{'open ms':>14} {'verified ms':>14} {'ratio':>12}")
    for r in rows:
        def ms(k: str) -> str:
            return f"{r[k] * 1e3:.1f} ({r[k + '_min'] * 1e3:.1f})"

        print(f"{r['size']:<6} {r['params_per_model']:>12,} {r['mb_read']:>6} {ms('params'):>14} {ms('params_verified'):>14} "
              f"{r['params_ratio']:>5.3f} ({r['params_ratio_min']:.3f})   {ms('open'):>14} {ms('open_verified'):>14} "
              f"{r['open_ratio']:>5.3f} ({r['open_ratio_min']:.3f})")


if __name__ == "__main__":
    main()
