"""Both sides of the anomalous-token objection on a zoo of base models and their fine-tuned children.

    python scripts/instruct_lineage.py RUN_DIR_OR_ZOO [--json OUT]

For every fingerprint cached in the zoo (``fingerprint run`` caches them), on the fine-tuned
children only:

- **base match**: is a child's nearest base model (Euclidean in the scorecard's standardised 50-d
  PCA, or the fingerprint's own distances) its parent? Chance is 1 / number of bases.
- **deep AMI**: the scorecard's clustering (same defaults; and with k fixed at 2) of the children
  alone against their ``deep_label``, and the family-grouped cross-validated probe AUROC (groups:
  the parent).

Beside them the whole-zoo scorecard's ``parent_nn`` / ``deep_ami`` / ``probe_auroc`` from the stored
run's ``summary.json``, when given a run directory. docs/results.md ("tiny-lm") quotes the output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from analysis import clustering as cl
from analysis import metrics as mt
from fingerprint import pipeline
from training.core.store import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--json", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = Path(args.path)
    zoo = Zoo.open(path / "zoo" if (path / "zoo").is_dir() else path)
    m = zoo.models
    ids = np.asarray(m["model_id"]).astype(str)
    kind, parent = np.asarray(m["kind"]).astype(str), np.asarray(m["parent_id"]).astype(str)
    label = np.asarray(m["deep_label"]).astype(str)
    row = {k: i for i, k in enumerate(ids)}
    summary = path / "summary.json"
    stored = {fp["fingerprint"]: fp for fp in json.loads(summary.read_text())["scorecard"]} if summary.exists() else {}
    out = {}
    print(f"{'fingerprint':44s} {'base match':>10s} {'chance':>6s} {'deep AMI':>8s} {'k=2':>5s} {'AUROC':>6s} | "
          f"{'zoo parent_nn':>13s} {'zoo deep AMI':>12s}")
    for fp in pipeline.cached_fingerprints(zoo):
        if fp.values is None:
            continue
        fids = [str(x) for x in fp.model_ids]
        vals = np.asarray(fp.values, dtype=np.float64)
        dist = bool(fp.distances)
        r = np.asarray([row[x] for x in fids])
        kids = np.flatnonzero(kind[r] == "finetune")
        bases = np.flatnonzero(kind[r] == "base")
        if dist:
            d = vals[np.ix_(kids, bases)]
            kid_vals = vals[np.ix_(kids, kids)]
        else:
            coords = cl.reduce_features(vals, 50, args.seed, True)
            d = ((coords[kids, None, :] - coords[None, bases, :]) ** 2).sum(-1)
            kid_vals = vals[kids]
        nearest = np.asarray(fids)[bases][d.argmin(1)]
        match = float((nearest == parent[r[kids]]).mean())
        est = cl.BasinClusterer("auto", None, 8, 10, dist, True, args.seed).fit(kid_vals)
        lab = label[r[kids]]
        ami = mt.ami(est.clustering_.labels, lab)
        ami2 = mt.ami(cl.BasinClusterer("auto", 2, 8, 10, dist, True, args.seed).fit(kid_vals).clustering_.labels, lab)
        kc = cl.coordinates(kid_vals, dist, 10, args.seed, True)
        auroc = mt.probe_auroc(kc, lab, random_state=args.seed, groups=parent[r[kids]])
        s = stored.get(fp.name, {})
        out[fp.name] = {"base_match": match, "chance": 1 / len(bases), "children_deep_ami": ami, "children_deep_ami_k2": ami2,
                        "children_probe_auroc": auroc, "zoo_parent_nn": s.get("parent_nn"),
                        "zoo_parent_nn_chance": s.get("parent_nn_chance"), "zoo_deep_ami": s.get("deep_ami"),
                        "zoo_probe_auroc": s.get("probe_auroc")}
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{fp.name:44s} {match:10.2f} {1 / len(bases):6.3f} {fmt(ami):>8s} {fmt(ami2):>5s} {fmt(auroc):>6s} | "
              f"{fmt(s.get('parent_nn')):>13s} {fmt(s.get('deep_ami')):>12s}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
