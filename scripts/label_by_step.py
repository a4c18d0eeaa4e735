"""The ceiling of any forecast: how often the task's own label at step s already equals the final one.

A task's diagnostics (e.g. modadd's ``deep_label`` from gradient symmetricity and distance
irrelevance) are evaluated at every checkpoint and stored with it (``Zoo.metrics(step)``). For each
checkpoint step, over the seed grid that did not diverge: the share of models whose label at that
step equals their final label (``agree``, with a 95% interval resampling init families), the same
over the models whose final label is not in ``--exclude`` (e.g. ``mixed``), and the label counts at
that step. A fingerprint forecast that reads the task's own diagnostic would reach at most about
``agree``; a forecaster of the final label beating it has learned where the diagnostic is going,
not where it is.

    python scripts/label_by_step.py ZOO [--label deep_label] [--exclude mixed] [--diag COLUMN ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from analysis.resampling import family_bootstrap_mean
from fingerprint.extraction import family_groups
from fingerprint.forecast import base_models
from training.core.store import Zoo


def _ci(hits: np.ndarray, family: np.ndarray) -> list[float] | None:
    """95% interval of an agreement rate, resampling init families (``None`` below four families)."""
    ci = family_bootstrap_mean(hits, family)
    return None if ci is None else list(ci)


def _fmt_ci(ci: list[float] | None) -> str:
    """``[lo, hi]`` to two decimals, or a dash where there is no interval (fewer than four families)."""
    return "–" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def label_by_step(zoo: Zoo, label: str = "deep_label", exclude: tuple[str, ...] = (), diagnostics: tuple[str, ...] = ()) -> dict:
    """``{"final_step", "n_models", "steps": [{step, fraction, agree, agree_ci, agree_kept, agree_kept_ci, counts, corr}]}``;
    ``corr``: for each numeric column of ``diagnostics`` (e.g. modadd's ``distance_irrelevance``),
    the Pearson correlation over models of its value at the step with its final value."""
    ids = base_models(zoo)
    idx = zoo.index(ids)
    final = np.asarray(zoo.models[label]).astype(str)[idx]  # [n]
    final_step = int(max(zoo.models["final_step"][idx]))
    fam = family_groups(zoo, ids)
    kept = ~np.isin(final, list(exclude))
    rows = []
    for s in zoo.steps:
        if s > final_step:
            continue
        at = np.asarray(zoo.metrics(s)[label]).astype(str)[idx]  # [n]; '' where a model has no checkpoint at s
        have = at != ""
        same = (at == final)[have]
        row = {"step": int(s), "fraction": s / final_step, "n": int(have.sum()),
               "agree": float(same.mean()), "agree_ci": _ci(same, fam[have]),
               "counts": dict(zip(*[v.tolist() for v in np.unique(at[have], return_counts=True)]))}
        k = have & kept
        if exclude and k.any():
            same_k = (at == final)[k]
            row.update({"agree_kept": float(same_k.mean()), "agree_kept_ci": _ci(same_k, fam[k])})
        if diagnostics:
            row["corr"] = {}
            for c in diagnostics:
                a = np.asarray(zoo.metrics(s)[c], dtype=float)[idx][have]
                b = np.asarray(zoo.models[c], dtype=float)[idx][have]
                row["corr"][c] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None
        rows.append(row)
    return {"label": label, "excluded": list(exclude), "final_step": final_step, "n_models": len(ids),
            "final_counts": dict(zip(*[v.tolist() for v in np.unique(final, return_counts=True)])), "steps": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--label", default="deep_label")
    ap.add_argument("--exclude", action="append", default=[], help="final labels left out of agree_kept (repeatable)")
    ap.add_argument("--diag", action="append", default=[], help="numeric diagnostic columns to correlate with their final value (repeatable)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    out = label_by_step(Zoo.open(args.zoo), args.label, tuple(args.exclude), tuple(args.diag))
    print(f"{out['label']}: {out['n_models']} seeds, final {out['final_counts']}")
    kept = f"  agree w/o {','.join(args.exclude)}" if args.exclude else ""
    print(f"{'step':>6s} {'fraction':>8s} {'agree':>6s} {'95% CI':>13s}{kept}  counts at step")
    for r in out["steps"]:
        ci = _fmt_ci(r["agree_ci"])
        k = f"  {r['agree_kept']:.2f} {_fmt_ci(r['agree_kept_ci'])}" if "agree_kept" in r else ""
        corr = "".join(f"  r({c})={'-' if v is None else format(v, '.2f')}" for c, v in r.get("corr", {}).items())
        print(f"{r['step']:6d} {r['fraction']:8.3f} {r['agree']:6.2f} {ci:>13s}{k}  {r['counts']}{corr}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
