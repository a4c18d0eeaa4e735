"""One basin against the rest: cross-validated linear-probe accuracy of every cached fingerprint.

The scorecard's probe AUROC is defined for two-valued labels; with three basins (clock / pizza /
mixed) this asks the binary question directly: can a linear classifier on the fingerprint (the
scorecard's coordinates: standardised, PCA to at most 10 dimensions) tell the models of basin
``--basin`` from all others? Stratified 5-fold cross-validation in folds that keep an init family
(the ``init_seed`` of each model's lineage root) together; the floor is the majority rate.

    python scripts/basin_probe.py ZOO --basin clock [--label deep_label]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    cross_val_score,
)

from analysis.clustering import coordinates
from fingerprint.extraction import family_groups
from training.core.store import Zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--basin", required=True)
    ap.add_argument("--label", default="deep_label")
    args = ap.parse_args()
    zoo = Zoo.open(args.zoo)
    labels = np.asarray(zoo.models[args.label]).astype(str)
    print(f"{args.zoo}: {len(labels)} models, {int((labels == args.basin).sum())} in '{args.basin}'")
    print(f"{'fingerprint':40s} {'accuracy':>8s} {'majority':>8s}")
    final = max(zoo.steps)
    for meta in sorted(zoo.list_fingerprints(), key=lambda m: str(m.get("spec"))):
        if "error" in meta or meta.get("step") not in (final, "final"):
            continue  # forecasting caches earlier checkpoints too; the final one is asked about
        values, ids, _ = zoo.load_fingerprint(meta["key"])
        y = (labels[zoo.index(ids)] == args.basin).astype(int)
        groups = np.unique(family_groups(zoo, ids).astype(str), return_inverse=True)[1]
        folds = int(min(5, np.bincount(y, minlength=2).min(), groups.max() + 1))
        if folds < 2:
            continue
        x = coordinates(values, meta.get("output") == "distances", n_components=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cv = StratifiedGroupKFold(folds, shuffle=True, random_state=0) if groups.max() + 1 < len(groups) else \
                StratifiedKFold(folds, shuffle=True, random_state=0)  # no relatives: the plain folds
            acc = cross_val_score(LogisticRegression(max_iter=3000), x, y, groups=groups, cv=cv).mean()
        print(f"{meta['spec']:40s} {acc:8.2f} {max(y.mean(), 1 - y.mean()):8.2f}")


if __name__ == "__main__":
    main()
