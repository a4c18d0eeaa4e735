"""Do fingerprints of an icl-regression zoo see the learner/memorizer difference *beyond* the pool size M?

For every cached fingerprint of the zoo: its coordinates (PCA / MDS, as the scorecard uses), then

* ``eta2_M`` / ``eta2_label``: the fraction of the coordinates' variance explained by the group means
  of M alone / of ``deep_label`` alone;
* ``resid_r2``: with M's group means removed from both the coordinates and ``icl_score``, the
  leave-one-out R^2 of a ridge regression predicting the residual ``icl_score`` from the residual
  coordinates (> 0: the fingerprint knows where a model sits between ridge and the pool lookup
  beyond what its M says);
* per M value where at least two labels occur (each on >= 2 models): the AMI between the
  fingerprint's clustering of those models and ``deep_label``, and the leave-one-out 1-NN label
  accuracy.

Usage: ``python scripts/icl_within_m.py ZOO [--json out.json]`` (fingerprints must be extracted).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from analysis.clustering import cluster, coordinates
from analysis.metrics import ami
from training.core.store import Zoo


def eta2(coords: np.ndarray, groups: np.ndarray) -> float:
    """Between-group share of the total sum of squares of ``coords [n, c]``."""
    c = coords - coords.mean(0)
    total = (c**2).sum()
    between = sum(len(i) * (c[i].mean(0) ** 2).sum() for i in (np.flatnonzero(groups == g) for g in np.unique(groups)))
    return float(between / total) if total > 0 else float("nan")


def demean(a: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=float)
    for g in np.unique(groups):
        i = groups == g
        out[i] -= out[i].mean(0)
    return out


def loo_ridge_r2(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> float:
    """Leave-one-out R^2 of ridge regression ``x -> y`` (features standardised)."""
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    n = len(y)
    pred = np.empty(n)
    for i in range(n):
        tr = np.arange(n) != i
        xt, yt = x[tr], y[tr]
        mu = yt.mean()
        w = np.linalg.solve(xt.T @ xt + alpha * np.eye(x.shape[1]), xt.T @ (yt - mu))
        pred[i] = x[i] @ w + mu
    ss = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / ss) if ss > 0 else float("nan")


def analyse(zoo: Zoo) -> list[dict]:
    table = zoo.models
    ids = [str(i) for i in table["model_id"]]
    size = np.asarray(table["pool_size"], dtype=int)
    label = np.asarray(table["deep_label"]).astype(str)
    score = np.asarray(table["icl_score"], dtype=float)
    rows = []
    for meta in zoo.list_fingerprints():
        if "error" in meta:
            continue
        hit = zoo.load_fingerprint(meta["key"])
        if hit is None:
            continue
        values, fids, _ = hit
        pos = {m: i for i, m in enumerate(fids)}
        if not all(m in pos for m in ids):
            continue
        idx = np.asarray([pos[m] for m in ids])
        values = values[np.ix_(idx, idx)] if values.ndim == 2 and values.shape[0] == values.shape[1] == len(fids) and meta.get("output") == "distances" else values[idx]
        coords = coordinates(values, n_components=10)
        name = meta.get("spec") or meta.get("extractor")
        row = {"fingerprint": name, "eta2_M": eta2(coords, size), "eta2_label": eta2(coords, label),
               "resid_r2": loo_ridge_r2(demean(coords, size), demean(score, size)), "within_M": {}}
        for m in np.unique(size):
            i = np.flatnonzero(size == m)
            labs, counts = np.unique(label[i], return_counts=True)
            if (counts >= 2).sum() < 2:
                continue
            sub = values[np.ix_(i, i)] if values.ndim == 2 and meta.get("output") == "distances" else values[i]
            cl = cluster(sub, k_max=min(4, len(i) - 1)).labels
            c = coordinates(sub, n_components=min(5, len(i) - 1))
            d = ((c[:, None] - c[None]) ** 2).sum(-1)
            np.fill_diagonal(d, np.inf)
            nn = float((label[i][d.argmin(1)] == label[i]).mean())
            row["within_M"][int(m)] = {"n": len(i), "labels": dict(zip(labs.tolist(), counts.tolist())),
                                       "ami": ami(cl, label[i]), "nn_acc": nn}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = analyse(Zoo.open(args.zoo))
    print(f"{'fingerprint':40s} {'eta2_M':>7s} {'eta2_lab':>8s} {'resid_r2':>8s}  within-M (M: AMI / 1-NN acc)")
    for r in rows:
        w = "; ".join(f"{m}: {v['ami'] if v['ami'] is None else round(v['ami'], 2)} / {v['nn_acc']:.2f}" for m, v in r["within_M"].items())
        print(f"{r['fingerprint'][:40]:40s} {r['eta2_M']:7.3f} {r['eta2_label']:8.3f} {r['resid_r2']:8.3f}  {w or '-'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
