"""The larger-p pilot of modadd-basins (docs/results.md, "A larger p: the seed decides, at one rate?").

    python scripts/modadd_bigp.py ZOO [ZOO ...] --json docs/data/modadd-basins-bigp-pilot.json

Per zoo (one attention rate, as ``scripts/modadd_rates.py --out DIR`` writes them): the label counts,
mean test accuracy, whether the final ``gradient_symmetricity`` is bimodal (a histogram in 0.05 bins,
the widest gap between sorted values and where it sits, the values nearest the label's threshold
either side), ``distance_irrelevance`` by final label, and the label at 83% / 92% of training against
the final one (``scripts/label_by_step.py``), the split by symmetricity alone (>= 0.89: pizza), and how
often two models of one init seed share a label (against pairs of different init seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from analysis.resampling import family_bootstrap_mean
from training.core.store import Zoo
from training.tasks.modadd import ModAdd

sys.path.insert(0, str(Path(__file__).parent))
from label_by_step import label_by_step  # noqa: E402


def summarise(path: str, threshold: float = ModAdd.symmetricity_threshold) -> dict:
    zoo = Zoo.open(path)
    m = zoo.models
    sym = np.asarray(m["gradient_symmetricity"], float)
    irr = np.asarray(m["distance_irrelevance"], float)
    lab = np.asarray(m["deep_label"]).astype(str)
    acc = np.asarray(m["test_acc"], float)
    s = np.sort(sym)
    gaps = np.diff(s)
    g = int(np.argmax(gaps))
    hist, edges = np.histogram(sym, bins=np.arange(0.0, 1.0001, 0.05))
    lbs = label_by_step(zoo, exclude=("mixed",), diagnostics=("gradient_symmetricity", "distance_irrelevance"))
    at = {f"{r['fraction']:.2f}": {k: r.get(k) for k in ("agree", "agree_ci", "agree_kept", "agree_kept_ci", "counts", "corr")}
          for r in lbs["steps"] if 0.8 <= r["fraction"] < 1}
    cfg = {k: v for k, v in zoo.config.items() if k in ("task", "model", "train")}
    init = np.asarray(m["init_seed"])
    same = init[:, None] == init[None, :]
    off = ~np.eye(len(lab), dtype=bool)
    agree = lab[:, None] == lab[None, :]
    return {
        "zoo": str(path), "config": cfg, "n": len(lab), "labels": dict(sorted(Counter(lab.tolist()).items())),
        "test_acc_mean": round(float(acc.mean()), 3), "test_acc_min": round(float(acc.min()), 3),
        "symmetricity_range": [round(float(s[0]), 3), round(float(s[-1]), 3)],
        "widest_gap": {"from": round(float(s[g]), 3), "to": round(float(s[g + 1]), 3), "width": round(float(gaps[g]), 3)},
        "nearest_below_threshold": round(float(s[s < threshold].max()), 3) if (s < threshold).any() else None,
        "nearest_at_or_above_threshold": round(float(s[s >= threshold].min()), 3) if (s >= threshold).any() else None,
        "symmetricity_histogram": {f"{edges[i]:.2f}": int(h) for i, h in enumerate(hist) if h},
        "symmetricity_only": {"pizza": int((sym >= threshold).sum()), "clock": int((sym < threshold).sum())},
        "same_init_label_agreement": round(float(agree[same & off].mean()), 3),
        "other_pairs_label_agreement": round(float(agree[~same].mean()), 3),
        "irrelevance_by_label": {k: [round(float(irr[lab == k].min()), 3), round(float(irr[lab == k].max()), 3)] for k in sorted(set(lab.tolist()))},
        "label_by_step": at,
        "models": [{"init_seed": int(i), "sym": round(float(a), 4), "irr": round(float(b), 4), "label": c, "test_acc": round(float(d), 4)}
                   for i, a, b, c, d in zip(init, sym, irr, lab, acc)],
    }


def pooled(rows: list[dict], threshold: float = ModAdd.symmetricity_threshold) -> dict:
    """The zoos of one attention rate together (init seeds differ between them): label shares with a 95%
    interval resampling init families, and the symmetricity histogram and the values either side of
    ``threshold``."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(str(r["config"]["model"]["attention_rate"]), []).extend(r["models"])
    out = {}
    for rate, ms in sorted(by.items()):
        lab = np.array([m["label"] for m in ms])
        fam = np.array([m["init_seed"] for m in ms])
        sym = np.sort([m["sym"] for m in ms])
        row: dict = {"n": len(ms)}
        for k in ("clock", "pizza", "mixed"):
            hit = (lab == k).astype(float)
            ci = family_bootstrap_mean(hit, fam)
            row[k] = {"n": int(hit.sum()), "share": round(float(hit.mean()), 3), "ci": None if ci is None else [round(float(c), 3) for c in ci]}
        hist, edges = np.histogram(sym, bins=np.arange(0.0, 1.0001, 0.1))
        row["symmetricity_histogram"] = {f"{edges[i]:.1f}": int(h) for i, h in enumerate(hist)}
        row["below_threshold_max"] = round(float(sym[sym < threshold].max()), 3) if (sym < threshold).any() else None
        row["at_or_above_threshold_min"] = round(float(sym[sym >= threshold].min()), 3) if (sym >= threshold).any() else None
        out[rate] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    out = [summarise(z) for z in args.zoos]
    for r in out:
        lbs = {k: (v["agree"], v.get("agree_kept")) for k, v in r["label_by_step"].items()}
        print(f"{r['zoo']}: {r['labels']} sym-only {r['symmetricity_only']} same-init {r['same_init_label_agreement']} "
              f"other {r['other_pairs_label_agreement']} acc {r['test_acc_mean']} (min {r['test_acc_min']}) sym {r['symmetricity_range']} "
              f"gap {r['widest_gap']} near 0.89: {r['nearest_below_threshold']} | {r['nearest_at_or_above_threshold']}\n"
              f"  hist {r['symmetricity_histogram']}\n  irr {r['irrelevance_by_label']}\n  label=final (all, c/p) {lbs}")
    pool = pooled(out)
    for rate, row in pool.items():
        print(f"rate {rate} pooled, {row['n']} models: " + "; ".join(f"{k} {row[k]['n']} {row[k]['share']:.2f} {row[k]['ci']}" for k in ("clock", "pizza", "mixed"))
              + f"; symmetricity {row['symmetricity_histogram']}, around 0.89: {row['below_threshold_max']} | {row['at_or_above_threshold_min']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": "python scripts/modadd_bigp.py " + " ".join(args.zoos),
                                               "pooled_by_rate": pool, "zoos": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
