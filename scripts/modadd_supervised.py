"""Supervised baselines for clock vs pizza on `modadd-basins`, scored on held-out init families.

    fingerprint run modadd-basins-quick --out runs/mbq
    python scripts/modadd_supervised.py runs/mbq/zoo [--method weight-set --method soft-probes ...] [--json out.json]

Only the clock and pizza models (``deep_label``; ``mixed`` left out). Every method is fitted on the
training families of each fold (``StratifiedGroupKFold`` over ``init_seed``) and scores the held-out
families' models; one AUROC over the pooled out-of-fold scores, its 95% interval resampling
families, and the FLOPs counted by torch over every fit (train) and every held-out scoring (eval;
plus ``extract_flops``, computing the inputs of every model once: weight compositions or a
fingerprint).
Methods:

* ``weight-set``: DeepSets over MLP hidden units in token coordinates (``fingerprint/weightset.py``;
  ``--units``: raw descriptions, token-relabelling invariants, or both); ``weight-set+heads``: the
  same with attention heads as a second set (query-key circuit statistics, ``head_features``);
  ``heads-readout``: a linear readout of the head descriptions sorted over heads;
* ``nfn``: the `nfn` package's HNP neural functional on the same units (if `nfn` is installed);
* ``soft-probes``: learned soft-token probe inputs and a linear readout (``fingerprint/softprobes.py``);
  ``soft-probes-sorted``: the readout sees each probe's sorted log-probabilities;
* ``readout:SPEC``: a linear readout of an unsupervised fingerprint (default: the
  ``input-grad-symmetry`` setting of the config), its extraction's FLOPs as eval FLOPs. A supervised
  readout of an unsupervised fingerprint, not a weight-space method.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from fingerprint.batch import ModelBatch
from fingerprint.extraction import resolve_specs
from fingerprint.pipeline import open_zoo
from fingerprint.softprobes import ProbeInputs, SoftProbeClassifier
from fingerprint.supervised import LinearReadout, count_flops, evaluate
from fingerprint.weightset import (
    NFNClassifier,
    Sets,
    WeightSetClassifier,
    head_features,
    set_features,
    unit_features,
)
from training.core.store import write_json

IGS = "input-grad-symmetry:probe_set=all,n_probes=0,bins=3"
METHODS = ["weight-set", "weight-set+heads", "heads-readout", "nfn", "soft-probes", "soft-probes-sorted", f"readout:{IGS}", "readout:weight-spectra"]


def fingerprint_features(batch: ModelBatch, spec_text: str) -> tuple[torch.Tensor, int]:
    """An extractor's features ``[n, F]`` on ``batch``, computed here (not cached), and its FLOPs."""
    (_, spec, params), = resolve_specs([spec_text])
    out, flops = count_flops(spec.fn, batch, **params)
    out = out[0] if isinstance(out, tuple) else out
    return torch.as_tensor(np.asarray(out), dtype=torch.float32).flatten(1), flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--method", action="append", default=None, help=f"repeatable (default: {' '.join(METHODS)})")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--units", default="invariant", help="weight-set unit descriptions: raw, invariant (default), both")
    ap.add_argument("--seeds", type=int, default=1, help="fold seeds: the AUROC is reported per seed and averaged")
    ap.add_argument("--ensemble", type=int, default=3, help="networks averaged by weight-set and nfn (default 3)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = open_zoo(args.zoo)
    m = zoo.models
    label = np.asarray([str(x) for x in m["deep_label"]])
    keep = np.flatnonzero(np.isin(label, ["clock", "pizza"]))
    ids = [zoo.model_ids[i] for i in keep]
    y = (label[keep] == "pizza").astype(int)
    groups = np.asarray([str(x) for x in np.asarray(m["init_seed"])[keep]])
    batch = ModelBatch.from_zoo(zoo, ids)
    info = {"zoo": str(args.zoo), "n": len(ids), "labels": dict(Counter(label[keep].tolist())),
            "n_families": len(set(groups)), "folds": args.folds, "positive": "pizza"}
    print(json.dumps(info))
    rows = []
    for method in args.method or METHODS:
        t0 = time.time()
        extra_eval = 0
        if method == "weight-set+heads":
            (units, heads), extra_eval = count_flops(lambda: (set_features(batch.family, batch.params, args.units),
                                                              head_features(batch.family, batch.params)))
            clf, X = WeightSetClassifier(n_ensemble=args.ensemble), Sets(units, heads)
        elif method == "heads-readout":
            heads, extra_eval = count_flops(head_features, batch.family, batch.params)
            clf, X = LinearReadout(), heads.sort(1).values  # sorted: head order ignored
        elif method in ("weight-set", "nfn"):
            if method == "nfn":
                try:
                    import nfn  # noqa: F401
                except ImportError:
                    print(json.dumps({"method": method, "error": "nfn is not installed (pip install nfn)"}))
                    continue
                X, extra_eval = count_flops(unit_features, batch.family, batch.params)
                clf = NFNClassifier(batch.family.n_out, n_ensemble=args.ensemble)
            else:
                X, extra_eval = count_flops(set_features, batch.family, batch.params, args.units)
                clf = WeightSetClassifier(n_ensemble=args.ensemble)
        elif method in ("soft-probes", "soft-probes-sorted"):
            clf, X = SoftProbeClassifier(sort=method.endswith("sorted")), ProbeInputs(batch.family, batch.params)
        elif method.startswith("readout:"):
            X, extra_eval = fingerprint_features(batch, method.split(":", 1)[1])
            clf = LinearReadout()
        else:
            raise SystemExit(f"unknown method '{method}' (valid: {', '.join(METHODS)})")
        per_seed = [evaluate(clf, X, y, groups, args.folds, seed=s) for s in range(args.seeds)]
        r = per_seed[0]
        name = f"{method}:{args.units}" if method.startswith("weight-set") else method
        row = {"method": name, **r.to_dict(), "eval_flops": r.eval_flops + extra_eval, "extract_flops": extra_eval,
               "auroc_seeds": [round(p.auroc, 4) for p in per_seed],
               "auroc_mean": round(float(np.mean([p.auroc for p in per_seed])), 4), "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        write_json(args.json, {**info, "methods": rows})  # a NaN interval (< 4 families) is null


if __name__ == "__main__":
    main()
