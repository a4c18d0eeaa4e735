"""CPU and wall time of tiny-lm-quick's training steps and evaluation under three thread settings.

    python scripts/bench_wait_policy.py

Runs the same work (one evaluation of 16 random base models, 10 training steps) in a fresh process
for each setting: ``OMP_NUM_THREADS=1``; ``2`` with OpenMP's spinning wait (``ACTIVE``, the
runtime's default before our packages asked for ``PASSIVE``); ``2`` with ``PASSIVE`` (our default:
training.core.numerics.request_passive_threads). On a quiet host the three are close; on a host
whose cores other processes share, spinning threads burn CPU at every barrier (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

WORK = """
import time, torch
from training.config import load_config
from training.plan import build_task, build_family
from training.shard import evaluate
cfg = load_config("tiny-lm-quick")
task = build_task(cfg); fam = build_family(cfg, task)
p = fam.init(list(range(16)))
v = torch.zeros(16, dtype=torch.long)
evaluate(task, fam, p, v)
t = time.process_time(); evaluate(task, fam, p, v); ev = time.process_time() - t
x, y = (a[:32] for a in task.train_set())
pp = {k: t_.clone().requires_grad_(True) for k, t_ in p.items()}
t = time.process_time()
for _ in range(10):
    loss = task.loss(fam(pp, x), y.expand(16, *y.shape)).sum()
    torch.autograd.grad(loss, list(pp.values()))
print(f"{ev:.2f} {time.process_time() - t:.2f}")
"""

SETTINGS = [("1 thread", {"OMP_NUM_THREADS": "1"}),
            ("2 threads, ACTIVE", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}),
            ("2 threads, PASSIVE", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"})]


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'setting':20s} {'evaluate CPU s':>14s} {'10 steps CPU s':>14s} {'process wall s':>14s}")
    for name, env in SETTINGS:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", WORK], env={**os.environ, **env}, capture_output=True, text=True,
                             check=True).stdout.split()
        print(f"{name:20s} {float(out[0]):14.2f} {float(out[1]):14.2f} {time.perf_counter() - t:14.1f}")


if __name__ == "__main__":
    main()
