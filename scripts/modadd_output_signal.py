"""Where clock vs pizza shows in a `modadd-basins` zoo's outputs (docs/results.md, "A frequency-invariant
output profile"): label-reading diagnostics, not fingerprints.

    python scripts/modadd_output_signal.py ZOO [--json out.json]

Three measurements on the p x p grid, every model of the zoo at its final step:

1. ``irrelevance``: the label's ``distance_irrelevance`` (std of a per-input quantity along each
   diagonal a - b = d, averaged over d, over its std on the whole grid) recomputed on the correct
   logit (the label's own), on the mean logit over classes (``shift``: the per-input offset a
   softmax ignores), on the correct logit minus that shift (what a softmax can see), on the correct
   log-prob, the top-1 minus top-2 margin and the entropy. For each: the clock and pizza means, the
   AUROC of a low value for pizza over the clock/pizza models, and its correlation with the label's
   ``distance_irrelevance`` over every model. Plus, for the cached ``output-profile`` specs given with
   ``--fp``: the largest |correlation| of any of their columns with either diagnostic and the best
   single-column clock/pizza AUROC.
2. ``shift_gradients``: the cosine between the gradients, with respect to the embedding at the two
   input positions, of a class-free output scalar (the shift, the logsumexp, the top-1 logit, the
   margin): the mean, std and quartiles over the grid, each column's clock/pizza AUROC, the mean's
   correlation with both diagnostics, and the AMI of k-means (k = 2) on the standardised columns of
   the clock/pizza models with their label.
3. ``repeated_tokens``: a per-input statistic's std over the inputs a == b over its std over the
   grid (clock/pizza means, AUROC, correlation with both diagnostics, k-means AMI alone and beside
   the cached tuned ``input-grad-symmetry``).
4. ``interaction``: the share of a per-input statistic's variance over the grid that is not
   additive in the two tokens (the residual of row plus column means: a two-way ANOVA's
   interaction), blind to any relabelling of either token; the same columns as 3.

AUROCs are max(AUROC, 1 - AUROC) where the direction is not fixed by the hypothesis; k-means
(scikit-learn, 10 starts, seed 0) is not the scorecard's clustering.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, roc_auc_score

from fingerprint.batch import ModelBatch
from fingerprint.extraction import load_cached
from fingerprint.pipeline import open_zoo
from fingerprint.tables import model_table

IGS = "input-grad-symmetry:probe_set=all,n_probes=0,bins=3"


def either_way(y: np.ndarray, v: np.ndarray) -> float:
    a = roc_auc_score(y, v)
    return float(max(a, 1 - a))


def kmeans_ami(y: np.ndarray, f: np.ndarray) -> float:
    z = (f - f.mean(0)) / (f.std(0) + 1e-12)
    return float(adjusted_mutual_info_score(y, KMeans(2, n_init=10, random_state=0).fit(z).labels_))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--fp", action="append", default=[], help="cached output-profile specs to correlate with the diagnostics")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    zoo = open_zoo(args.zoo)
    t = model_table(zoo)
    mb = ModelBatch.from_zoo(zoo)
    assert list(mb.model_ids) == [str(m) for m in t["model_id"]], "model order differs from the model table"
    lab = np.asarray([str(x) for x in t["deep_label"]])
    cp = np.isin(lab, ["clock", "pizza"])
    y = (lab[cp] == "pizza").astype(int)
    irr, sym = (np.asarray(t[c], float) for c in ("distance_irrelevance", "gradient_symmetricity"))
    x = mb.task.probes("all")
    p = int(x.max()) + 1
    with torch.no_grad():
        out = mb.forward(x).double()  # [n, p*p, p]
    lp = torch.log_softmax(out, -1)
    top2 = out.topk(2, -1).values
    target = ((x[:, 0] + x[:, 1]) % p).expand(len(out), -1).unsqueeze(-1)
    d = (x[:, 0] - x[:, 1]) % p
    correct = out.gather(-1, target).squeeze(-1)
    res: dict = {"n": len(lab), "labels": {k: int((lab == k).sum()) for k in ("clock", "pizza", "mixed")}}

    def diag_irrelevance(v: torch.Tensor) -> np.ndarray:
        along = torch.stack([v[:, d == k].std(1, unbiased=False) for k in range(p)], 1).mean(1)
        return (along / v.std(1, unbiased=False)).numpy()

    res["irrelevance"] = {}
    for name, v in {"correct logit": correct, "shift": out.mean(-1), "correct logit - shift": correct - out.mean(-1),
                    "correct log-prob": lp.gather(-1, target).squeeze(-1), "margin": top2[..., 0] - top2[..., 1],
                    "entropy": -(lp.exp() * lp).sum(-1)}.items():
        di = diag_irrelevance(v)
        res["irrelevance"][name] = {"clock": float(di[lab == "clock"].mean()), "pizza": float(di[lab == "pizza"].mean()),
                                    "auroc_pizza_low": float(roc_auc_score(y, -di[cp])),
                                    "r_distance_irrelevance": float(np.corrcoef(di, irr)[0, 1])}
    for spec in args.fp:
        f = np.asarray(load_cached(zoo, spec).values, float)
        cols = [c for c in f.T if c.std() > 0]
        res["irrelevance"][spec] = {"max_abs_r_irrelevance": float(max(abs(np.corrcoef(c, irr)[0, 1]) for c in cols)),
                                    "max_abs_r_symmetricity": float(max(abs(np.corrcoef(c, sym)[0, 1]) for c in cols)),
                                    "best_column_auroc": max(either_way(y, c[cp]) for c in cols)}

    fam = mb.family
    params = {k: v.detach() for k, v in mb.params.items()}
    q = torch.linspace(0, 1, 5, dtype=torch.float64)[1:-1]
    res["shift_gradients"] = {}
    for name, fn in {"shift": lambda o: o.mean(-1), "logsumexp": lambda o: torch.logsumexp(o, -1),
                     "top-1 logit": lambda o: o.max(-1).values,
                     "margin": lambda o: o.topk(2, -1).values[..., 0] - o.topk(2, -1).values[..., 1]}.items():
        leaf: list[torch.Tensor] = []

        def grab(a: torch.Tensor) -> torch.Tensor:
            leaf.append(a.detach().requires_grad_(True))
            return leaf[-1]

        with torch.enable_grad():
            o, _ = fam.forward(params, x, edit={"embed": grab})
            (g,) = torch.autograd.grad(fn(o.reshape(o.shape[0], o.shape[1], -1, o.shape[-1])[:, :, -1]).sum(), leaf[0])
        g = g.double() / g.double().norm(dim=-1, keepdim=True).clamp_min(1e-30)
        cos = (g[:, :, 0] * g[:, :, 1]).sum(-1)  # [n, p*p]
        f = torch.cat([cos.mean(1, keepdim=True), cos.std(1, keepdim=True), torch.quantile(cos, q, dim=1).T], 1).numpy()
        res["shift_gradients"][name] = {
            "mean_cos_clock": float(f[lab == "clock", 0].mean()), "mean_cos_pizza": float(f[lab == "pizza", 0].mean()),
            "column_aurocs": [either_way(y, c[cp]) for c in f.T], "r_mean_irrelevance": float(np.corrcoef(f[:, 0], irr)[0, 1]),
            "r_mean_symmetricity": float(np.corrcoef(f[:, 0], sym)[0, 1]), "kmeans_cp_ami": kmeans_ami(y, f[cp])}

    rep = x[:, 0] == x[:, 1]
    igs = np.asarray(load_cached(zoo, IGS).values, float)
    igs_z = (igs - igs.mean(0)) / (igs.std(0) + 1e-12) / np.sqrt(igs.shape[1])  # the block weighs as one column
    res["repeated_tokens"] = {}
    for name, v in {"shift": out.mean(-1), "top-1 logit": top2[..., 0], "margin": top2[..., 0] - top2[..., 1],
                    "top-1 log-prob": lp.max(-1).values, "entropy": -(lp.exp() * lp).sum(-1)}.items():
        ratio = (v[:, rep].std(1) / v.std(1)).numpy()
        rz = ((ratio - ratio.mean()) / ratio.std())[:, None]
        res["repeated_tokens"][name] = {
            "clock": float(ratio[lab == "clock"].mean()), "pizza": float(ratio[lab == "pizza"].mean()),
            "auroc_pizza_low": float(roc_auc_score(y, -ratio[cp])), "r_irrelevance": float(np.corrcoef(ratio, irr)[0, 1]),
            "r_symmetricity": float(np.corrcoef(ratio, sym)[0, 1]), "kmeans_cp_ami": kmeans_ami(y, ratio[cp, None]),
            "kmeans_cp_ami_with_igs": float(adjusted_mutual_info_score(
                y, KMeans(2, n_init=10, random_state=0).fit(np.column_stack([igs_z, rz])[cp]).labels_))}
    res["interaction"] = {}
    for name, v in {"shift": out.mean(-1), "top-1 logit": top2[..., 0], "logsumexp": torch.logsumexp(out, -1),
                    "margin": top2[..., 0] - top2[..., 1], "top-1 log-prob": lp.max(-1).values,
                    "entropy": -(lp.exp() * lp).sum(-1)}.items():
        grid = v.reshape(len(v), p, p)  # probe set "all" is the grid in row-major (a, b) order
        grid = grid - grid.mean((1, 2), keepdim=True)
        resid = grid - grid.mean(2, keepdim=True) - grid.mean(1, keepdim=True)
        share = (resid.pow(2).mean((1, 2)) / grid.pow(2).mean((1, 2))).numpy()
        sz = ((share - share.mean()) / share.std())[:, None]
        res["interaction"][name] = {
            "clock": float(share[lab == "clock"].mean()), "pizza": float(share[lab == "pizza"].mean()),
            "auroc_pizza_high": float(roc_auc_score(y, share[cp])), "r_irrelevance": float(np.corrcoef(share, irr)[0, 1]),
            "r_symmetricity": float(np.corrcoef(share, sym)[0, 1]), "kmeans_cp_ami": kmeans_ami(y, share[cp, None]),
            "kmeans_cp_ami_with_igs": float(adjusted_mutual_info_score(
                y, KMeans(2, n_init=10, random_state=0).fit(np.column_stack([igs_z, sz])[cp]).labels_))}
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
