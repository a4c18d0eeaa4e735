"""Two trainings of the same seeds: are the models the same bits, and do they keep their labels?

A retrain on other code, another thread count, another BLAS code path (``MKL_CBWR``: what another
host's CPU picks) or another ``models_per_batch`` changes at most the float rounding of training.
This compares two zoos model by model (matched by ``model_id``): how many models end with
bit-identical parameters, the largest parameter difference, and how many keep their label, with a
95% interval that resamples init families (as the scorecard's); the same over the models that are
clock or pizza in the first zoo (``--exclude mixed``); the label transitions; and for each
``--diag`` column the median and largest absolute change (a categorical column: how many models keep
their value).

    python scripts/retrain_agreement.py ZOO_A ZOO_B [--label deep_label] [--exclude mixed] [--diag COL ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from analysis.resampling import family_bootstrap_mean
from training.core.store import Zoo, write_json


def label_agreement(labels_a, labels_b, family, exclude: tuple[str, ...] = ()) -> dict:
    """Share of models with the same label in both runs, and over the models whose first-run label is
    not in ``exclude``; each with a 95% init-family interval (``None`` below four families).
    ``labels_a``, ``labels_b``, ``family``: ``[n]``, the same models in the same order."""
    a, b = np.asarray(labels_a).astype(str), np.asarray(labels_b).astype(str)
    fam = np.asarray(family)
    same = (a == b).astype(float)
    kept = ~np.isin(a, list(exclude))
    out = {"n": int(len(a)), "kept": int(same.sum()), "agree": float(same.mean()) if len(a) else float("nan"),
           "agree_ci": _ci(same, fam),
           "counts_a": dict(sorted(Counter(a.tolist()).items())), "counts_b": dict(sorted(Counter(b.tolist()).items())),
           "transitions": {f"{x}->{y}": n for (x, y), n in sorted(Counter(zip(a.tolist(), b.tolist())).items())}}
    if exclude:
        out.update({"n_kept_labels": int(kept.sum()), "agree_kept": float(same[kept].mean()) if kept.any() else float("nan"),
                    "agree_kept_ci": _ci(same[kept], fam[kept])})
    return out


def _ci(hits: np.ndarray, family: np.ndarray) -> list[float] | None:
    ci = family_bootstrap_mean(hits, family)
    return None if ci is None else list(ci)


def compare(zoo_a: Zoo, zoo_b: Zoo, label: str = "deep_label", exclude: tuple[str, ...] = (),
            diagnostics: tuple[str, ...] = ()) -> dict:
    """Parameters, label and diagnostics of the models both zoos hold, at each model's final step."""
    ids = [m for m in zoo_a.model_ids if m in set(zoo_b.model_ids)]
    if not ids:
        raise SystemExit(f"error: zoos '{zoo_a.path}' and '{zoo_b.path}' share no model id")
    ia, ib = zoo_a.index(ids), zoo_b.index(ids)
    pa, pb = zoo_a.params(model_ids=ids), zoo_b.params(model_ids=ids)
    diff = np.zeros(len(ids))
    for k in pa:
        d = (pa[k] - pb[k]).abs().reshape(len(ids), -1).max(1).values.numpy()
        diff = np.maximum(diff, d)
    out = {"zoo_a": str(zoo_a.path), "zoo_b": str(zoo_b.path), "n_models": len(ids),
           "bit_identical": int((diff == 0).sum()), "max_param_diff": float(diff.max()),
           "median_param_diff": float(np.median(diff))}
    la, lb = np.asarray(zoo_a.models[label]).astype(str)[ia], np.asarray(zoo_b.models[label]).astype(str)[ib]
    fam = np.asarray(zoo_a.models["init_seed"])[ia]
    out["labels"] = label_agreement(la, lb, fam, exclude)
    out["changed"] = [f"{m}: {x} -> {y}" for m, x, y in zip(ids, la, lb) if x != y]
    out["diagnostics"] = {}
    for c in diagnostics:
        va, vb = np.asarray(zoo_a.models[c])[ia], np.asarray(zoo_b.models[c])[ib]
        if va.dtype.kind in "fiub" and vb.dtype.kind in "fiub":
            d = np.abs(va.astype(float) - vb.astype(float))
            out["diagnostics"][c] = {"median_abs_change": float(np.median(d)), "max_abs_change": float(d.max())}
        else:  # a categorical column (e.g. modadd's key_freqs): how many models keep their value
            out["diagnostics"][c] = {"equal": int((va.astype(str) == vb.astype(str)).sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo_a")
    ap.add_argument("zoo_b")
    ap.add_argument("--label", default="deep_label")
    ap.add_argument("--exclude", action="append", default=[], help="first-run labels left out of agree_kept (repeatable)")
    ap.add_argument("--diag", action="append", default=[], help="numeric columns whose change to report (repeatable)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    r = compare(Zoo.open(args.zoo_a), Zoo.open(args.zoo_b), args.label, tuple(args.exclude), tuple(args.diag))
    lab = r["labels"]

    def ci(c):
        return "–" if c is None else f"[{c[0]:.2f}, {c[1]:.2f}]"

    print(f"{r['n_models']} models in both; bit-identical parameters: {r['bit_identical']}; "
          f"largest parameter difference {r['max_param_diff']:.3g} (median {r['median_param_diff']:.3g})")
    print(f"labels kept: {lab['kept']} of {lab['n']} = {lab['agree']:.2f} {ci(lab['agree_ci'])}")
    if "agree_kept" in lab:
        print(f"  of the {lab['n_kept_labels']} not {'/'.join(args.exclude)} in the first: {lab['agree_kept']:.2f} "
              f"{ci(lab['agree_kept_ci'])}")
    print(f"counts: {lab['counts_a']} -> {lab['counts_b']}; transitions {lab['transitions']}")
    for c, d in r["diagnostics"].items():
        print(f"{c}: equal in {d['equal']} of {r['n_models']}" if "equal" in d else
              f"{c}: median |change| {d['median_abs_change']:.4f}, max {d['max_abs_change']:.4f}")
    if args.json:
        write_json(Path(args.json), r)  # an undefined share (no model kept by --exclude) is null, not NaN
    return 0


if __name__ == "__main__":
    sys.exit(main())
