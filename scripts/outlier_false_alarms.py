"""How often the import's diverged-model check would fire on healthy populations (its false alarms).

For every zoo given (directories holding a ``manifest.json``; globs are expanded by the shell), the
statistic the import computes (:mod:`fingerprint.model_health`): each model's largest |weight| and
its largest |output| over the first 64 inputs of each probe set, as decades and robust standard
deviations above the population's median. Prints one row per zoo (the most extreme model's
numbers) and how many zoos the rule would flag. Reads zoos only (runs their models with
``trust_code``: give only zoos whose factory code you trust, e.g. your own and the audits').

    python scripts/outlier_false_alarms.py /tmp/audit4*/*/zoo /tmp/demo44/fingerprint-demo/zoo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from fingerprint.batch import ModelBatch
from fingerprint.model_health import PROBE_ROWS, excess, outliers
from training.core.store import Zoo


def stats(path: Path) -> dict:
    zoo = Zoo.open(path)
    zoo.trust_code = True
    ids = [m for m, d in zip(zoo.model_ids, zoo.models["diverged"]) if not d]
    params = zoo.params(None, ids)
    wmax = np.max(np.stack([v.reshape(len(ids), -1).abs().amax(1).numpy() if v.is_floating_point() and v[0].numel()
                            else np.zeros(len(ids)) for v in params.values()]), axis=0)
    omax = np.full(len(ids), np.nan)
    try:
        mb = ModelBatch.from_zoo(zoo, ids)
        tops = []
        for name in mb.task.probe_names():
            with torch.no_grad():
                out = mb.forward(mb.task.probes(name)[:PROBE_ROWS])
            tops.append(out.reshape(len(ids), -1).abs().amax(1).float().numpy())
        if tops:
            omax = np.max(np.stack(tops), axis=0)
    except Exception as e:  # noqa: BLE001 - a zoo whose models cannot run here: weights only
        print(f"  ({path}: outputs not run: {type(e).__name__}: {str(e)[:100]})", file=sys.stderr)
    wd, wm = excess(wmax)
    od, om = excess(omax)
    return {"zoo": str(path), "n": len(ids), "arch": zoo.family_spec.get("arch"),
            "w_dec": np.nanmax(wd) if np.isfinite(wd).any() else np.nan, "w_mad": np.nanmax(wm) if np.isfinite(wm).any() else np.nan,
            "o_dec": np.nanmax(od) if np.isfinite(od).any() else np.nan, "o_mad": np.nanmax(om) if np.isfinite(om).any() else np.nan,
            "flag": int(outliers(wmax).sum() + outliers(omax).sum()), "nonfinite": int((~np.isfinite(omax)).sum()) if np.isfinite(omax).any() else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for p in args.zoos:
        if not (p / "manifest.json").exists():
            continue
        try:
            r = stats(p)
        except Exception as e:  # noqa: BLE001 - unreadable or deliberately broken zoos (audits keep some)
            print(f"  ({p}: skipped: {type(e).__name__}: {str(e)[:100]})", file=sys.stderr)
            continue
        rows.append(r)
        print(f"{r['zoo']:60s} n={r['n']:4d} {str(r['arch']):8s} weights +{r['w_dec']:.2f} dec {r['w_mad']:6.1f} MAD  "
              f"outputs +{r['o_dec']:.2f} dec {r['o_mad']:6.1f} MAD  flagged {r['flag']}  non-finite {r['nonfinite']}", flush=True)
    flagged = [r for r in rows if r["flag"]]
    print(f"\n{len(rows)} zoos, {sum(r['n'] for r in rows)} models: the rule fired in {len(flagged)} zoos"
          + (f" ({', '.join(r['zoo'] for r in flagged)})" if flagged else ""))
    for k in ("w_dec", "w_mad", "o_dec", "o_mad"):
        v = np.array([r[k] for r in rows], float)
        print(f"largest {k}: {np.nanmax(v):.2f} (median over zoos {np.nanmedian(v):.2f})")


if __name__ == "__main__":
    main()
