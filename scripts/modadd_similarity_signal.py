"""Does the raw logit level follow how alike the model sees its two input tokens? A label-free
reading of the irrelevance half of clock vs pizza, measured over rounding draws (docs/results.md,
"Intervals over rounding draws"): the measurement; the extractor ``token-similarity`` computes the
same reading (signed, for any token model and any number of tokens; tests/fingerprint/test_token_similarity.py
checks that the two agree).

    python scripts/modadd_similarity_signal.py ZOO_1 ... ZOO_K [--json out.json]

Per model, on the p x p grid: the cosine of the model's own centred token embeddings of the two
input tokens (``similarity [inputs]``) and the |Pearson correlation| over the inputs of a per-input
logit surface with it (``reading``): the top-1 logit and the mean logit over classes (the ``shift``
that a softmax ignores). Why: pizza's logits scale with |e_a + e_b| of its key frequencies, a
function of the two tokens' similarity, clock's do not; the reading asks this of any token model
(inputs of two tokens, an embedding matrix) without the task's a + b / a - b structure, its labels
or its frequencies (it is unchanged by any relabelling of the tokens and any rotation of the
embedding space: tested). Reported per zoo: clock and pizza means, the clock/pizza AUROC (either
direction), the correlation with the label's two diagnostics, and the scorecard's clustering of the
clock/pizza models on the reading alone and beside the cached tuned ``input-grad-symmetry``
(``--combine``), with its noise AMI against ``key_freqs``; over the zoos the two-level bootstrap of
:mod:`analysis.draws` (each zoo one draw), and the paired gain of adding the reading to
``input-grad-symmetry`` (the same bootstrap samples for both). Scoring stores results in the zoos:
use copies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from analysis.draws import ami_by_families, draws_bootstrap, share_interval
from analysis.options import FingerprintInput
from analysis.scorecard import analyze
from fingerprint.batch import ModelBatch
from fingerprint.extractors.similarity import correlate, token_similarity
from fingerprint.pipeline import inputs_for, open_zoo, options_for
from fingerprint.tables import model_table
from training.core.store import write_json

IGS = "input-grad-symmetry:probe_set=all,n_probes=0,bins=3"
NAME = "similarity-reading"


def reading(similarity: torch.Tensor, surface: torch.Tensor) -> np.ndarray:
    """|Pearson correlation| over the inputs of ``surface [n, inputs]`` with ``similarity [n, inputs]``
    (the ``token-similarity`` extractor's :func:`token_similarity`): ``[n]``."""
    return correlate(similarity, surface).abs().numpy()


def features(zoo) -> tuple[np.ndarray, list[str], list[str]]:
    """``[n, 2]`` readings (top-1 logit, shift) of every model at its final step, its model ids and column names."""
    mb = ModelBatch.from_zoo(zoo)
    x = mb.task.probes("all")
    with torch.no_grad():
        out = mb.forward(x).double()  # [n, inputs, classes]
    sim = token_similarity(mb.params["embed.weight"], x)
    cols = {"top-1 logit": out.max(-1).values, "shift": out.mean(-1)}
    return np.column_stack([reading(sim, v) for v in cols.values()]), list(mb.model_ids), list(cols)


def one_zoo(zoo) -> tuple[dict, dict]:
    t = model_table(zoo)
    f, ids, cols = features(zoo)
    pos = {m: i for i, m in enumerate(ids)}
    order = [pos[str(m)] for m in t["model_id"]]
    f = f[order]
    lab = np.asarray([str(v) for v in t["deep_label"]])
    cp = np.isin(lab, ["clock", "pizza"])
    y = (lab[cp] == "pizza").astype(int)
    diag = {c: np.asarray(t[c], float) for c in ("distance_irrelevance", "gradient_symmetricity")}
    out: dict = {"labels": {k: int((lab == k).sum()) for k in ("clock", "pizza", "mixed")}, "columns": {}}
    for j, c in enumerate(cols):
        a = roc_auc_score(y, f[cp, j])
        out["columns"][c] = {"clock": float(f[lab == "clock", j].mean()), "pizza": float(f[lab == "pizza", j].mean()),
                             "auroc": float(max(a, 1 - a)),
                             **{f"r_{k}": float(np.corrcoef(f[:, j], v)[0, 1]) for k, v in diag.items()}}
    fam = dict(zip([str(m) for m in t["model_id"]], [str(s) for s in t["init_seed"]]))
    fp = FingerprintInput(NAME, f[:, :1], [str(m) for m in t["model_id"]], {"output": "features"})  # the top-1 reading
    combo = [[IGS, NAME]]
    passes = {}
    for key, rows in (("noise", None), ("cp", cp)):
        opts = options_for(zoo, calibrate=False, combine=combo, **({"lineage": "key_freqs"} if key == "noise" else {}))
        tab = t if rows is None else {k: np.asarray(v)[rows] for k, v in t.items()}
        res = analyze(inputs_for(zoo, [IGS], opts.label) + [fp], tab, opts)
        for s in res.scorecard:
            short = {NAME: "reading", IGS: "igs", f"{IGS}+{NAME}": "igs+reading"}[s.fingerprint]
            if key == "noise":
                out[f"{short} noise_ami_key_freqs"] = s.noise_ami
            else:
                r = res.fingerprint(s.fingerprint)
                out[f"{short} ami_cp"], out[f"{short} k_cp"], out[f"{short} probe_auroc_cp"] = s.deep_ami, s.n_clusters, s.probe_auroc
                passes[short] = {"clusters": list(r.clusters), "labels": list(r.label_values),
                                 "family": [fam[m] for m in r.model_ids]}
    return out, passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res: dict = {"zoos": {}, "over_draws": {}}
    passes: dict[str, list] = {}
    for p in args.zoos:
        r, ps = one_zoo(open_zoo(p))
        res["zoos"][str(p)] = r
        for k, v in ps.items():
            passes.setdefault(k, []).append(v)
        print(p, json.dumps(r))
    boots = {}
    for k, ps in passes.items():
        names = sorted({f for q in ps for f in q["family"]})
        b = boots[k] = draws_bootstrap([ami_by_families(q["clusters"], q["labels"], q["family"], names) for q in ps],
                                       len(names), 1000, 0)
        vals = [res["zoos"][str(p)][f"{k} ami_cp"] for p in args.zoos]
        met = [v >= 0.8 and res["zoos"][str(p)][f"{k} noise_ami_key_freqs"] < 0.2 for v, p in zip(vals, args.zoos)]
        res["over_draws"][k] = {"ami_cp": vals, "mean": float(np.mean(vals)), "mean_ci": b.mean_ci, "one_draw_ci": b.one_draw_ci,
                                "one_draw_share_at_least_0.8": b.share_at_least(0.8), "target_met": int(sum(met)),
                                "target_met_jeffreys_95": share_interval(int(sum(met)), len(met))}
        print(k, json.dumps(res["over_draws"][k]))
    # the same samples (families and draws) for both: the gain of adding the reading, paired
    gain = boots["igs+reading"].means - boots["igs"].means
    gain = gain[np.isfinite(gain)]
    res["over_draws"]["gain_mean"] = float(np.mean(res["over_draws"]["igs+reading"]["ami_cp"]) - np.mean(res["over_draws"]["igs"]["ami_cp"]))
    res["over_draws"]["gain_ci"] = [float(np.quantile(gain, 0.025)), float(np.quantile(gain, 0.975))]
    res["over_draws"]["gain_share_positive"] = float((gain > 0).mean())
    print("gain of igs+reading over igs:", res["over_draws"]["gain_mean"], res["over_draws"]["gain_ci"])
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
