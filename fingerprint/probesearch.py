"""Probe search: look for the inputs on which a population's outputs fall into camps of init families.

Not an extractor: it reads the zoo's lineage column (the init family, default ``init_seed``; never a
label), which an extractor must never see. From a starting probe set it generates candidate inputs
generically and seeded (float inputs: random pairwise mixtures, extrapolations by 1.5-3x about the
probes' mean, sign flips of random coordinates, one axis pushed by 2-4 standard deviations; token
inputs: position-wise recombinations of probes), runs the whole population on them in one batched
forward pass, and hands the outputs to :func:`analysis.probesearch.cross_fit`, which keeps only the
inputs whose camps replicate on held-out families. The kept inputs' outputs become a fingerprint
``probe-search`` ``[n_models, k * n_out]`` in the zoo's cache (meta ``uses_lineage``), analysed by
``fingerprint cluster/report`` like any other; when nothing replicates, no fingerprint is written
(the right answer on a population with no deep difference) and the result says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.probesearch import camp_scores, cross_fit
from fingerprint.batch import ModelBatch
from fingerprint.extraction import active_models
from fingerprint.extractors.behavioural import recombined_batch
from fingerprint.extractors.common import generator, probes, transform_outputs
from fingerprint.population import check_code
from training.core.errors import UserError, unknown
from training.core.store import Zoo

SPEC = "probe-search"
VERSION = 1


@dataclass
class SearchResult:
    """``kept``: the replicated candidates' indices; ``key``: the cached fingerprint (None if none kept);
    ``summary``: what ``results/probe_search.json`` holds."""

    kept: list[int]
    key: str | None
    summary: dict[str, Any]


def candidates(x: torch.Tensor, n: int, seed: int = 0, vocab: int | None = None, pad_id: int | None = None) -> torch.Tensor:
    """``n`` candidate inputs generated from probes ``x`` ``[P, *input_shape]`` (seeded); token prompts
    left-padded with ``pad_id`` (HF zoos) stay valid prompts."""
    P = len(x)
    if P < 2:
        raise UserError(f"the probe search needs a starting probe set of >= 2 inputs, got {P}")
    if not x.is_floating_point():  # tokens: each position from one of two probes, as recombined-outputs makes them
        return recombined_batch(x, n, "coord", seed, pad_id)
    g = generator(seed)
    i, j = torch.randint(0, P, (n,), generator=g), torch.randint(0, P, (n,), generator=g)
    x = x.float()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-3)
    kind = torch.arange(n) % 4
    a = torch.rand(n, *[1] * (x.dim() - 1), generator=g)
    mix = a * x[i] + (1 - a) * x[j]
    scale = 1.5 + 1.5 * torch.rand(n, *[1] * (x.dim() - 1), generator=g)
    extra = mu + scale * (x[i] - mu)
    flips = torch.where(torch.rand(n, *x.shape[1:], generator=g) < 0.3, -1.0, 1.0)
    signed = mu + flips * (x[i] - mu)
    d = mu.numel()
    axis = x[i].reshape(n, d).clone()
    dims = torch.randint(0, d, (n,), generator=g)
    push = (2.0 + 2.0 * torch.rand(n, generator=g)) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    axis[torch.arange(n), dims] += push * sd.flatten()[dims]
    out = torch.stack([mix, extra, signed, axis.reshape_as(mix)])  # [4, n, ...]
    return out[kind, torch.arange(n)]


def search(zoo: Zoo, probe_set: str = "ood", lineage: str = "init_seed", n_candidates: int = 2048, keep: int = 16,
           seed: int = 0, alpha: float = 0.05, transform: str = "logprob", device: str = "cpu") -> SearchResult:
    """Generate candidates from ``probe_set``, keep those whose camps of ``lineage`` families replicate
    (cross-fitted by families), cache their outputs as the ``probe-search`` fingerprint and store
    ``results/probe_search.json``."""
    if lineage not in zoo.models:
        raise unknown("model column", lineage, zoo.models.names())
    if lineage == "deep_label":
        raise UserError("--lineage must name init families (e.g. init_seed), not the ground-truth label 'deep_label'")
    check_code(zoo)
    ids = active_models(zoo)
    batch = ModelBatch.from_zoo(zoo, ids, None, device)
    x0 = probes(batch, probe_set, 0)  # an unknown set: one line listing the valid ones
    vocab = getattr(batch.family, "vocab", None)
    cand = candidates(x0, n_candidates, seed, vocab, getattr(batch.family, "pad_id", None))
    out = transform_outputs(batch.forward(cand), transform).numpy()  # [n_models, n_candidates, n_out]
    families = [str(v) for v in np.asarray(zoo.models[lineage])[zoo.index(ids)]]
    fit = cross_fit(out, families, keep=keep, alpha=alpha, seed=seed)
    params = {"probe_set": probe_set, "lineage": lineage, "n_candidates": n_candidates, "keep": keep, "seed": seed,
              "alpha": alpha, "transform": transform}
    summary: dict[str, Any] = {
        "params": params, "n_models": len(ids), "n_families": len(set(families)), "candidates_scored": n_candidates,
        "halves": [list(h) for h in fit.halves], "kept": [], "tested": fit.tested,
        "message": "",
    }
    key = None
    if not fit.kept:
        summary["message"] = (f"no replicated camps: none of the top {keep} inputs of either half of the families "
                              "replicated on the other half; no fingerprint written (the search scores camps of whole "
                              "init families: a difference drawn per model, inside the families, is not what it looks "
                              "for; the report's label-free tests look there)")
    else:
        z_all = out[:, fit.kept, :]
        camps = camp_scores(z_all, families)
        for r, (c, p, q) in enumerate(zip(fit.kept, fit.p_value, fit.q_value)):
            low = camps.low_camp[:, r]
            summary["kept"].append({
                "candidate": int(c), "score": float(fit.score[c]), "p": p, "q": q,
                "camps": [[f for f, lo in zip(camps.families, low) if lo], [f for f, lo in zip(camps.families, low) if not lo]],
            })
        values = out[:, fit.kept, :].reshape(len(ids), -1)
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        key = f"{SPEC}-v{VERSION}-{digest}"
        finals = {int(zoo.models["final_step"][i]) for i in zoo.index(ids)}
        meta = {"extractor": SPEC, "spec": SPEC, "version": VERSION, "kind": "behavioural", "output": "features",
                "params": params, "step": finals.pop() if len(finals) == 1 else "final", "supervised": False,
                "source": "builtin", "uses_lineage": lineage, "shape": list(values.shape)}
        zoo.save_fingerprint(key, values, ids, meta, {"inputs": cand[fit.kept].numpy()})
        summary["message"] = f"{len(fit.kept)} inputs replicated on held-out families; fingerprint '{SPEC}' {list(values.shape)} cached"
        summary["key"] = key
    zoo.save_result("probe_search", summary)
    return SearchResult(kept=list(fit.kept), key=key, summary=summary)
