"""Benchmark: would ``torch.compile`` pay for the transformer harness? (issue 26 item 1)

For the shapes, batch and optimiser loss of the full ``configs/tiny-lm.toml`` and ``configs/modadd.toml``
(``--config``), one training thread's share of the population (``--models``, default half of it, as the
harness trains on 2 cores), at one intra-op thread, times one gradient step three ways side by side:

- ``harness``: the family's ``value_and_grad`` as the trainer runs it (the hand-written unhooked pass);
- ``plain``: the same forward through its plain-op (hooked) path and autograd;
- ``compiled``: that plain forward under ``torch.compile`` (inductor, ``dynamic=False``; its backward
  compiled by AOTAutograd), with the compile's own seconds.

It then checks what the harness promises (a model's identity is its seeds): the compiled gradients of
model 1 alone and among the others are bit-identical. ``--json`` prints one object per config.

    python scripts/bench_compile.py [--config tiny-lm|modadd|all] [--models 16] [--reps 20] [--json]

The trainer does not compile (docs/benchmarks.md, "torch.compile, measured"): on tiny-lm the compiled step
is 1.4x the harness's, short of the issue's 5x the loop and 25% of peak, and a new shape's compile (17 s
with inductor's on-disk cache empty, 1.5 s from it) is repaid only after ~1,100 steps; on modadd the
compiled plain ops are slower than the harness's hand-written pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import TRANSFORMER_CONFIGS, transformer_setup  # noqa: E402

from training.core.numerics import cpu_name  # noqa: E402


def _best(step, reps: int) -> float:
    """Seconds of one call of ``step``: the best of 5 means over ``reps`` calls, after 3 warm-up calls."""
    for _ in range(3):
        step()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            step()
        times.append((time.perf_counter() - t) / reps)
    return min(times)


def measure(name: str, n_models: int | None, reps: int) -> dict:
    """One config's three steps (milliseconds), the compile's seconds and the compiled batch invariance."""
    config, task, fam, cfg = transformer_setup(name, 1)
    n = n_models or max(2, config.seeds.init * config.seeds.data // 2)
    x, y = task.train_set()
    idx = torch.randint(0, len(x), (n, cfg.batch_size), generator=torch.Generator().manual_seed(0))
    xs, ys = x[idx], y[idx]  # [n, B, ...]
    if len(fam.readout_positions()) > 1:
        ys = ys[:, :, fam.readout_positions()]

    def parameters(rows) -> dict[str, torch.Tensor]:
        return {k: v.requires_grad_(True) for k, v in fam.init([int(r) for r in rows]).items()}

    def loss(out: torch.Tensor, rows) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, fam.n_out), ys[rows].reshape(-1), reduction="sum")

    rows = torch.arange(n)
    params = parameters(rows)
    grads = {k: torch.zeros_like(v) for k, v in params.items()}

    def plain(p, xb):
        return fam.forward(p, xb, capture=("out",))[0]  # a capture: the hooked path's plain ops

    def gradient(forward, p, rows) -> list[torch.Tensor]:
        return list(torch.autograd.grad(loss(forward(p, xs[rows]), rows), list(p.values()), allow_unused=True))

    def stepper(forward):
        def step():
            for (k, _), g in zip(params.items(), gradient(forward, params, rows)):
                grads[k].zero_() if g is None else grads[k].copy_(g)
        return step

    harness = _best(lambda: fam.value_and_grad(params, xs, lambda out: loss(out, rows), grads), reps)
    eager = _best(stepper(plain), reps)
    compiled_fn = torch.compile(plain, dynamic=False)
    t = time.perf_counter()
    stepper(compiled_fn)()
    compile_s = time.perf_counter() - t
    compiled = _best(stepper(compiled_fn), reps)
    # model 1 alone and among the others: the same gradients, bit for bit (a new shape: compiled again)
    alone = gradient(compiled_fn, parameters([1]), torch.tensor([1]))
    among = gradient(compiled_fn, parameters(rows), rows)
    invariant = all((a is None and b is None) or torch.equal(a[0], b[1]) for a, b in zip(alone, among))
    return {"config": name, "models": n, "batch": cfg.batch_size, "harness_ms": 1e3 * harness, "plain_ms": 1e3 * eager,
            "compiled_ms": 1e3 * compiled, "compile_seconds": compile_s, "compiled_speedup_vs_harness": harness / compiled,
            "steps_to_repay_compile": (compile_s / (harness - compiled)) if compiled < harness else None,
            "compiled_batch_invariant": invariant, "cpu": cpu_name()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=(*TRANSFORMER_CONFIGS, "all"), default="all")
    ap.add_argument("--models", type=int, default=None, help="models in the share (default: half the config's population)")
    ap.add_argument("--reps", type=int, default=20, help="steps per timed mean (best of 5 means)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = TRANSFORMER_CONFIGS if args.config == "all" else (args.config,)
    results = [measure(name, args.models, args.reps) for name in names]
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        repay = "never" if r["steps_to_repay_compile"] is None else f"{r['steps_to_repay_compile']:.0f} steps"
        print(f"{r['config']}: {r['models']} models, batch {r['batch']}, one thread ({r['cpu']})\n"
              f"  harness {r['harness_ms']:.2f} ms | plain ops {r['plain_ms']:.2f} ms | compiled {r['compiled_ms']:.2f} ms "
              f"({r['compiled_speedup_vs_harness']:.2f}x the harness; compile {r['compile_seconds']:.1f} s, repaid after {repay})\n"
              f"  compiled gradients of a model alone and among the others bit-identical: {r['compiled_batch_invariant']}")


if __name__ == "__main__":
    main()
