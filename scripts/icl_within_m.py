"""Do fingerprints of an icl-regression zoo see the learner/memorizer difference *beyond* the pool size M?

For every cached fingerprint of the zoo at the final checkpoint (entries of earlier steps, which
``fingerprint forecast`` caches, and of model subsets are skipped): its coordinates (PCA / MDS, as the scorecard uses), then

* ``eta2_M`` / ``eta2_label``: the fraction of the coordinates' variance explained by the group means
  of M alone / of ``deep_label`` alone;
* ``resid_r2``: with M's group means removed from both the coordinates and ``icl_score``, the
  leave-one-out R^2 of a ridge regression predicting the residual ``icl_score`` from the residual
  coordinates (> 0: the fingerprint knows where a model sits between ridge and the pool lookup
  beyond what its M says); exact LOO through the ridge hat matrix;
* ``null95``: the 95th percentile of ``resid_r2`` when the residual ``icl_score`` is permuted
  within each M (``--n-perm`` permutations): a ``resid_r2`` below it is no evidence at all;
* ``resid_r2_noinit`` / ``null95_noinit``: the same with every model predicted from the other init
  families only (leave-one-family-out), so that recognising one's relatives does not count;
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


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)


def loo_ridge_r2(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Leave-one-out R^2 of ridge regression ``x [n, c] -> y [n]`` or ``[n, k]`` (k targets at once:
    the permutation null), features standardised, intercept unpenalised. Exact LOO through the hat
    matrix: residual_i / (1 - H_ii). Returns a float for ``y [n]``, ``[k]`` for ``y [n, k]``."""
    x1 = np.c_[np.ones(len(x)), _standardise(x)]
    pen = alpha * np.eye(x1.shape[1])
    pen[0, 0] = 0.0
    hat = x1 @ np.linalg.solve(x1.T @ x1 + pen, x1.T)  # [n, n]
    yy = y.reshape(len(y), -1)
    loo = (yy - hat @ yy) / (1 - np.diag(hat))[:, None]
    ss = ((yy - yy.mean(0)) ** 2).sum(0)
    r2 = np.where(ss > 0, 1 - (loo**2).sum(0) / np.where(ss > 0, ss, 1), np.nan)
    return float(r2[0]) if y.ndim == 1 else r2


def grouped_ridge_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """As :func:`loo_ridge_r2`, but each model is predicted by a ridge fit on the *other init families*
    only (leave-one-family-out): a fingerprint that only recognises its own relatives scores <= 0."""
    x1 = np.c_[np.ones(len(x)), _standardise(x)]
    pen = alpha * np.eye(x1.shape[1])
    pen[0, 0] = 0.0
    yy = y.reshape(len(y), -1)
    pred = np.empty_like(yy, dtype=float)
    for g in np.unique(groups):  # one solve per family, every target column at once
        te = groups == g
        w = np.linalg.solve(x1[~te].T @ x1[~te] + pen, x1[~te].T @ yy[~te])
        pred[te] = x1[te] @ w
    ss = ((yy - yy.mean(0)) ** 2).sum(0)
    r2 = np.where(ss > 0, 1 - ((yy - pred) ** 2).sum(0) / np.where(ss > 0, ss, 1), np.nan)
    return float(r2[0]) if y.ndim == 1 else r2


def permuted_within(y: np.ndarray, groups: np.ndarray, n_perm: int, seed: int = 0) -> np.ndarray:
    """``[n, n_perm]``: ``y`` shuffled within each group (M), a fresh permutation per column."""
    rng = np.random.default_rng(seed)
    base = np.argsort(groups, kind="stable")
    out = np.empty((len(y), n_perm))
    for k in range(n_perm):
        order = np.lexsort((rng.random(len(y)), groups))  # group-sorted, random within a group
        perm = np.empty(len(y), dtype=int)
        perm[base] = order
        out[:, k] = y[perm]
    return out


def final_entries(zoo: Zoo) -> list[dict]:
    """The population's cached fingerprints at the final checkpoint, one per spec: entries of earlier
    steps (``fingerprint forecast`` caches one per checkpoint) and of model subsets are left out."""
    final = {int(v) for v in zoo.models["final_step"]}
    final_key = final.pop() if len(final) == 1 else "final"
    out: dict[str, dict] = {}
    for meta in zoo.list_fingerprints():
        if "error" in meta or meta.get("subset") or meta.get("step") not in (final_key, None):
            continue
        out.setdefault(str(meta.get("spec") or meta.get("extractor")), meta)
    return list(out.values())


def analyse(zoo: Zoo, n_perm: int = 200) -> list[dict]:
    table = zoo.models
    ids = [str(i) for i in table["model_id"]]
    size = np.asarray(table["pool_size"], dtype=int)
    label = np.asarray(table["deep_label"]).astype(str)
    score = np.asarray(table["icl_score"], dtype=float)
    fam = np.asarray(table["init_seed"]).astype(str)
    target = demean(score, size)
    null_y = permuted_within(target, size, n_perm)  # the same permutations for every fingerprint
    rows = []
    for meta in final_entries(zoo):
        hit = zoo.load_fingerprint(meta["key"])
        if hit is None:
            continue
        values, fids, _ = hit
        pos = {m: i for i, m in enumerate(fids)}
        if not all(m in pos for m in ids):
            continue
        idx = np.asarray([pos[m] for m in ids])
        dist = meta.get("output") == "distances" and values.ndim == 2 and values.shape[0] == values.shape[1] == len(fids)
        values = values[np.ix_(idx, idx)] if dist else values[idx]
        coords = coordinates(values, n_components=10)
        x = demean(coords, size)
        name = meta.get("spec") or meta.get("extractor")
        row = {"fingerprint": name, "step": meta.get("step"), "eta2_M": eta2(coords, size), "eta2_label": eta2(coords, label),
               "resid_r2": loo_ridge_r2(x, target), "null95": float(np.nanpercentile(loo_ridge_r2(x, null_y), 95)),
               "resid_r2_noinit": grouped_ridge_r2(x, target, fam),
               "null95_noinit": float(np.nanpercentile(grouped_ridge_r2(x, null_y, fam), 95)), "within_M": {}}
        for m in np.unique(size):
            i = np.flatnonzero(size == m)
            labs, counts = np.unique(label[i], return_counts=True)
            if (counts >= 2).sum() < 2:
                continue
            sub = values[np.ix_(i, i)] if dist else values[i]
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
    ap.add_argument("--n-perm", type=int, default=200, help="permutations of the null (default 200)")
    args = ap.parse_args(argv)
    rows = analyse(Zoo.open(args.zoo), args.n_perm)
    print(f"{'fingerprint':40s} {'eta2_M':>7s} {'eta2_lab':>8s} {'resid_r2':>8s} {'null95':>7s} {'no-init':>7s} {'null95':>7s}"
          "  within-M (M: AMI / 1-NN acc)")
    for r in sorted(rows, key=lambda r: -r["resid_r2"]):
        w = "; ".join(f"{m}: {v['ami'] if v['ami'] is None else round(v['ami'], 2)} / {v['nn_acc']:.2f}" for m, v in r["within_M"].items())
        print(f"{r['fingerprint'][:40]:40s} {r['eta2_M']:7.3f} {r['eta2_label']:8.3f} {r['resid_r2']:8.3f} {r['null95']:7.3f} "
              f"{r['resid_r2_noinit']:7.3f} {r['null95_noinit']:7.3f}  {w or '-'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
