"""modadd's algorithm mix by attention rate: the table in docs/tasks.md.

    python scripts/modadd_rates.py --config modadd-quick --init 16 --init-start 100 \
        --rates 0 0.25 0.5 0.75 1 --out runs/rates --json docs/data/modadd-attention-rate.json
    python scripts/modadd_rates.py --config modadd-quick --steps 3000 --init 16 --init-start 100 \
        --rates 0.55 0.6 0.65 --out runs/rates3000 --json docs/data/modadd-attention-rate-3000.json

Trains one sweep per ``model.attention_rate`` (the config's seeds replaced by ``--init`` seeds from
``--init-start``, no optimiser state; ``--steps`` replaces ``train.steps``), then prints and writes per rate the label counts and the
mean and standard deviation of each diagnostic. ``--pilot`` prints, instead of labels, the
diagnostics at rates 0 (pizza-like) and 1 (clock-like) and for each the threshold that best
separates the two populations (balanced accuracy; the middle of the best-scoring range): how the
task's default thresholds were set, on seeds other than the table's.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from training.config import SweepConfig, read_config_file
from training.core.store import Zoo
from training.sweep import run_sweep

DIAGNOSTICS = ("gradient_symmetricity", "distance_irrelevance", "gradient_symmetricity_correct", "test_acc")


def train(config: str, rate: float, init: int, init_start: int, out: Path, steps: int | None = None) -> Zoo:
    data = read_config_file(config)
    if steps:
        data["train"] = {**data["train"], "steps": steps}
    data["model"]["attention_rate"] = rate
    data["seeds"] = {**data["seeds"], "init": init, "init_start": init_start}
    data["train"] = {**data["train"], "save_optimizer_state": False}
    data["name"] = f"{data['name']}-rate{rate}"
    zoo_dir = out / f"rate{rate}"
    if not (zoo_dir / "manifest.json").exists():
        run_sweep(SweepConfig.from_dict(data), zoo_dir)
    return Zoo.open(zoo_dir)


def summary(zoo: Zoo) -> dict:
    m = zoo.models
    row: dict = {"n": len(zoo.model_ids), "labels": dict(sorted(Counter(map(str, m["deep_label"])).items()))}
    for k in DIAGNOSTICS:
        v = np.asarray(m[k], dtype=float)
        row[f"{k}_mean"], row[f"{k}_std"] = round(float(v.mean()), 4), round(float(v.std()), 4)
    return row


def separating(high: np.ndarray, low: np.ndarray) -> tuple[float, float]:
    """The threshold that best tells ``high`` (>=) from ``low`` (<), as balanced accuracy: among the
    midpoints between sorted pooled values, the median one (the lower of two) of those that score best."""
    v = np.sort(np.concatenate([high, low]))
    cands = (v[1:] + v[:-1]) / 2
    score = np.array([((high >= t).mean() + (low < t).mean()) / 2 for t in cands])
    best = cands[score == score.max()]
    return float(best[(len(best) - 1) // 2]), float(score.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="modadd-quick")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--init", type=int, default=16)
    ap.add_argument("--init-start", type=int, default=100)
    ap.add_argument("--steps", type=int, help="training steps (default: the config's)")
    ap.add_argument("--out", type=Path, required=True, help="directory for the zoos (reused when present)")
    ap.add_argument("--json", type=Path, help="write the table here")
    ap.add_argument("--pilot", action="store_true", help="print the diagnostics at rates 0 and 1 and midpoint thresholds")
    args = ap.parse_args()
    rates = [0.0, 1.0] if args.pilot else args.rates
    zoos = {r: train(args.config, r, args.init, args.init_start, args.out, args.steps) for r in rates}
    if args.pilot:
        sym = {r: np.asarray(z.models["gradient_symmetricity"], float) for r, z in zoos.items()}
        irr = {r: np.asarray(z.models["distance_irrelevance"], float) for r, z in zoos.items()}
        for r in rates:
            print(f"rate {r}: symmetricity {np.round(np.sort(sym[r]), 3)}\n          irrelevance {np.round(np.sort(irr[r]), 3)}")
        t_sym, acc_sym = separating(sym[0.0], sym[1.0])
        t_irr, acc_irr = separating(irr[1.0], irr[0.0])
        print(f"thresholds: symmetricity {t_sym:.3f} (balanced accuracy {acc_sym:.2f}), "
              f"irrelevance {t_irr:.3f} (balanced accuracy {acc_irr:.2f})")
        return
    table = {str(r): summary(z) for r, z in zoos.items()}
    for r, row in table.items():
        print(r, row)
    if args.json:
        cfg = read_config_file(args.config)
        args.json.write_text(json.dumps({
            "command": f"python scripts/modadd_rates.py --config {args.config}" + (f" --steps {args.steps}" if args.steps else "")
                       + f" --init {args.init} --init-start {args.init_start}",
            "task": cfg["task"], "model": {k: v for k, v in cfg["model"].items() if k != "attention_rate"},
            "train": {k: v for k, v in cfg["train"].items() if k != "checkpoints"} | ({"steps": args.steps} if args.steps else {}),
            "rates": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
