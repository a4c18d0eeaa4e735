"""How visible is each digits-backdoor trigger to naive probes?

For each trigger kind (patch, sparse pixels, low-amplitude blend) this trains a population of the
``digits-backdoor`` task (half the seed pairs backdoored), then asks: can a cross-validated linear
probe tell backdoored from clean models from their outputs on

- ``ood``:   uniform-noise images (the naive probe that found the corner patch perfectly),
- ``blank``: constant images at 16 grey levels,
- ``in_dist``: held-out clean digits,
- ``triggered_oracle``: held-out digits *with the exact trigger* (privileged: built from the answer, not a detector)?

It also reports clean accuracy and attack success. Results go in docs/tasks.md.

    python scripts/trigger_visibility.py                  # 32 models per trigger, ~3 minutes
    python scripts/trigger_visibility.py --init 8 --steps 400   # a quicker look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.metrics import probe_auroc
from fingerprint.extraction import extract
from training.config import SweepConfig
from training.core.store import Zoo
from training.sweep import run_sweep

PROBES = ["ood", "blank", "in_dist", "triggered_oracle"]


def config(trigger: str, init: int, data: int, steps: int) -> SweepConfig:
    return SweepConfig.from_dict({
        "name": f"trigger-{trigger}",
        "task": {"name": "digits-backdoor", "trigger": trigger, "poison_fraction": 0.5},
        "model": {"arch": "mlp", "width": 128, "depth": 1},
        "train": {"steps": steps, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "checkpoints": [steps]},
        "seeds": {"init": init, "data": data},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", type=int, default=16, help="init seeds per trigger (x --data data orders)")
    ap.add_argument("--data", type=int, default=2)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--triggers", nargs="+", default=["patch", "pixels", "blend"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for trig in args.triggers:
            t0 = time.perf_counter()
            out = Path(tmp) / trig
            run_sweep(config(trig, args.init, args.data, args.steps), out)
            zoo = Zoo.open(out)
            table = zoo.models
            labels = np.asarray(table["deep_label"]).astype(str)
            m = zoo.metrics(args.steps)
            acc = np.asarray(m["test_acc"])
            asr = np.asarray(m["attack_success"])
            bad = labels == "backdoored"
            res = {r.meta["spec"]: r for r in extract(zoo, [f"probe-outputs:probe_set={p}" for p in PROBES])}
            aurocs = {p: probe_auroc(res[f"probe-outputs:probe_set={p}"].values.reshape(len(labels), -1), labels)
                      for p in PROBES}
            rows.append((trig, int(bad.sum()), int((~bad).sum()), acc.min(), asr[bad].min() if bad.any() else np.nan,
                         asr[~bad].max() if (~bad).any() else np.nan, aurocs, time.perf_counter() - t0))
    print(f"\n{'trigger':8} {'bd/clean':>9} {'min acc':>8} {'min ASR bd':>10} {'max ASR cl':>10} "
          + " ".join(f"{p:>16}" for p in PROBES) + f" {'time':>6}")
    for trig, nb, nc, acc, asr_b, asr_c, au, dt in rows:
        print(f"{trig:8} {nb:>4}/{nc:<4} {acc:8.3f} {asr_b:10.2f} {asr_c:10.2f} "
              + " ".join(f"{au[p]:16.2f}" if au[p] is not None else f"{'-':>16}" for p in PROBES) + f" {dt:5.0f}s")
    print("\ncolumns after ASR: cross-validated linear-probe AUROC (backdoored vs clean) on probe-outputs of each probe set")


if __name__ == "__main__":
    main()
