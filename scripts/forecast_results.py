"""Forecasting and selection on a trained zoo: the numbers behind docs/results.md ("Forecast and select").

For each fingerprint (``--fp``, repeatable):

1. the forecast curve of ``fingerprint forecast`` (at every stored checkpoint step, the
   cross-validated accuracy of predicting each seed's final basin from its fingerprint at that step,
   against always guessing the largest basin), and the earliest fraction of training at which the
   accuracy reaches ``--level`` (default 0.9);
2. the cheapest selection that reaches ``--purity`` (default 0.95) in the wanted basin ``--basin``:
   for every checkpoint step and every threshold of a grid, the seeds ``fingerprint select`` would
   continue (the same calibration split, forecaster and threshold rule), their purity and recall read
   off the zoo's final labels (every seed of the zoo was trained to the end, so the outcome of
   continuing a seed is known), and the compute used in model-steps against training every seed to
   the end. Among the points with purity >= ``--purity`` and recall >= ``--min-recall`` (so that
   "select almost nothing" does not count), the one that saves the most compute is reported.

``--verify`` then runs the real ``fingerprint select`` procedure (``select_and_continue``: the
selected seeds continue from their checkpoints into a new zoo) at that point and reports the purity
it measured; with ``train.save_optimizer_state = true`` in the sweep's config, continuation is exact
and the two purities agree.

    python scripts/forecast_results.py ZOO --fp ood-outputs [--fp ...] --basin rule_a [--label deep_label]
                                       [--level 0.9] [--purity 0.95] [--min-recall 0.5]
                                       [--calibration 0.25] [--verify] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from analysis.forecast import select
from fingerprint.extraction import extract
from fingerprint.forecast import base_models, final_basins, forecast
from fingerprint.forecast_target import forecast_families
from fingerprint.selection import (
    calibration_split,
    select_and_continue,
    selection_compute,
)
from fingerprint.tables import model_table
from training.core.store import Zoo

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def selection_points(zoo: Zoo, spec: str, basin: str, label: str | None, calibration: float, seed: int = 0) -> list[dict]:
    """Every (step, threshold) selection ``fingerprint select`` could make, scored on the final labels."""
    ids = base_models(zoo)
    y, _ = final_basins(zoo, ids, label, spec)
    cal, pool = calibration_split(forecast_families(zoo, ids, model_table(zoo), None).groups, calibration, seed)
    final_step = int(max(zoo.models["final_step"][zoo.index(ids)]))
    in_pool = int(np.sum(y[pool] == basin))
    points = []
    for step in [s for s in zoo.steps if s < final_step]:
        (f,) = extract(zoo, [spec], step=step, model_ids=ids)  # one frame for both (as select: outside audit 124)
        rows = {m: i for i, m in enumerate(f.model_ids)}
        x = np.asarray(f.values)
        x_cal, x_pool = x[[rows[ids[i]] for i in cal]], x[[rows[ids[i]] for i in pool]]
        for th in THRESHOLDS:
            keep, _ = select(x_cal, y[cal], x_pool, basin, threshold=th, random_state=seed)
            found = int(np.sum(y[pool][keep] == basin))
            used, baseline = selection_compute(len(ids), len(cal), len(keep), step, final_step)
            points.append({"step": int(step), "fraction": step / final_step, "threshold": th, "n_selected": int(len(keep)),
                           "purity": found / len(keep) if len(keep) else None, "recall": found / in_pool if in_pool else None,
                           "compute_saved": 1 - used / baseline})
    return points


def best_point(points: list[dict], purity: float, min_recall: float) -> dict | None:
    ok = [p for p in points if p["purity"] is not None and p["purity"] >= purity and (p["recall"] or 0) >= min_recall]
    return max(ok, key=lambda p: (p["compute_saved"], p["recall"])) if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--fp", action="append", required=True)
    ap.add_argument("--basin", required=True, help="the wanted basin, a value of the label column")
    ap.add_argument("--label", default=None, help="final basin column (default deep_label)")
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--purity", type=float, default=0.95)
    ap.add_argument("--min-recall", type=float, default=0.5)
    ap.add_argument("--calibration", type=float, default=0.25)
    ap.add_argument("--verify", action="store_true", help="run the real select-and-continue at the best point")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    zoo = Zoo.open(args.zoo)
    summary = forecast(zoo, args.fp, args.label)
    ids = base_models(zoo)
    y, _ = final_basins(zoo, ids, args.label, args.fp[0])
    print(f"{args.zoo}: {summary['n_models']} seeds, final step {summary['final_step']}, target {summary['target']}; "
          f"basins: {', '.join(f'{b} {int(np.sum(y == b))}' for b in sorted(set(y)))}")
    print("\n| fingerprint | step | fraction | accuracy | majority | AMI |\n|---|---:|---:|---:|---:|---:|")
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for p in summary["forecast"]:
        print(f"| {p['fingerprint']} | {p['step']} | {p['fraction']:.3f} | {f(p['accuracy'])} | {f(p['majority'])} | {f(p['ami'])} |")
    out: dict = {"zoo": str(args.zoo), "basin": args.basin, "forecast": summary, "selection": {}}
    print(f"\n| fingerprint | earliest {args.level:.0%} accuracy | best point for >= {args.purity:.0%} purity "
          f"(recall >= {args.min_recall:.0%}) | purity | recall | compute saved |\n|---|---:|---|---:|---:|---:|")
    for spec in args.fp:
        points = selection_points(zoo, spec, args.basin, args.label, args.calibration)
        best = best_point(points, args.purity, args.min_recall)
        first = [p["fraction"] for p in summary["forecast"]
                 if p["fingerprint"] == spec and p["accuracy"] is not None and p["accuracy"] >= args.level]
        where = "never" if best is None else f"step {best['step']} ({best['fraction']:.3f}), threshold {best['threshold']}"
        print(f"| {spec} | {f(min(first)) if first else 'never'} | {where} | {f(best and best['purity'])} | "
              f"{f(best and best['recall'])} | {'–' if best is None else format(best['compute_saved'], '.0%')} |")
        out["selection"][spec] = {"earliest": min(first) if first else None, "best": best, "points": points}
        if args.verify and best is not None:
            with tempfile.TemporaryDirectory() as tmp:
                r = select_and_continue(zoo, args.basin, best["step"], Path(tmp) / "selected", spec, args.label,
                                        calibration=args.calibration, threshold=best["threshold"])
            print(f"  verified with select-and-continue: {r['n_selected']} seeds continued, purity {r['purity']:.3f}, "
                  f"recall {r['recall']:.3f}, compute saved {r['compute_saved']:.1%}")
            out["selection"][spec]["verified"] = {k: r[k] for k in ("n_selected", "purity", "recall", "compute_saved")}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
