"""Throughput of the Ray executor with 1 and 2 workers (local Ray instance), side by side.

Trains the same sweep (xor-cues, 16-unit MLP, ``--models`` models in shards of ``--per-shard``)
with a local Ray instance limited to 1 CPU and then to 2 CPUs (each shard a task with
``num_cpus=1`` and one torch thread), and extracts ``ood-outputs`` + ``weight-stats`` through Ray
chunks. Prints model-steps per second and the 2-vs-1 speed-up. Results go in docs/scaling.md.

    python scripts/bench_ray.py                 # 512 models, 16 shards
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def one(n_cpus: int, models: int, per_shard: int, steps: int, tmp: Path) -> tuple[float, float]:
    import ray

    from fingerprint.extraction import extract
    from fingerprint.parallel import RayChunks
    from training.config import SweepConfig
    from training.core.store import Zoo
    from training.executors import RayExecutor
    from training.sweep import run_sweep

    cfg = SweepConfig.from_dict({
        "name": f"bench-ray-{n_cpus}", "models_per_batch": per_shard,
        "task": {"name": "xor-cues"},
        "model": {"arch": "mlp", "width": 16, "depth": 1, "activation": "tanh"},
        "train": {"steps": steps, "batch_size": 64, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                  "checkpoints": [steps]},
        "seeds": {"init": models},
    })
    ray.init(address="local", num_cpus=n_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        out = tmp / f"zoo-{n_cpus}"
        t0 = time.perf_counter()
        run_sweep(cfg, out, executor=RayExecutor())
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        extract(Zoo.open(out), ["ood-outputs", "weight-stats"], chunk_size=per_shard, runner=RayChunks())
        extract_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return train_s, extract_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=512)
    ap.add_argument("--per-shard", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = {n: one(n, args.models, args.per_shard, args.steps, Path(tmp)) for n in (1, 2)}
    ms = args.models * args.steps
    print(f"\n{args.models} models x {args.steps} steps in {args.models // args.per_shard} shards")
    print(f"{'workers':>8} {'train s':>8} {'model-steps/s':>14} {'extract s':>10}")
    for n, (tr, ex) in res.items():
        print(f"{n:>8} {tr:8.1f} {ms / tr:14.0f} {ex:10.1f}")
    print(f"speed-up 2 vs 1 workers: train {res[1][0] / res[2][0]:.2f}x, extract {res[1][1] / res[2][1]:.2f}x")


if __name__ == "__main__":
    main()
