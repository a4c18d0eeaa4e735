"""Attention's free scales as a null (docs/extractors.md, "Rescaled units"): a transformer population in
which half the models of every init family have their attention rescaled, per dimension, by a transform that
leaves every model's function as it was (a query dimension times ``c`` with its key dimension divided
by ``c``; a value dimension times ``c`` with the output projection's column divided by ``c``).

    python scripts/attention_scales_null.py ZOO [ZOO ...] [--spread 1.0 | --factor 2] [--seed 0]

Each zoo is a trained population of the built-in ``transformer`` family with at least two models in
each init family (e.g. ``fingerprint sweep configs/tiny-lm-quick.toml``). The default fingerprints are
computed in memory (nothing is written to the zoo) on the population as trained and on its transformed
copy, each twice in one run: with attention's scales taken out (``hidden_rescalable``'s ``attn.qk`` and
``attn.vo`` groups, the default since the fourteenth session) and without them (the MLP units only, as
before). Prints each analysis's label-free answer and the verdicts of the fingerprints whose verdict
changed. The transformed copy is a null: no deep difference was planted, so any candidate is false.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from analysis.answer import label_free_answer
from analysis.options import FingerprintInput
from analysis.scorecard import analyze
from fingerprint import pipeline
from fingerprint.batch import ModelBatch
from fingerprint.extractors import mechanistic
from fingerprint.registry import get_extractor, parse_spec
from fingerprint.tables import model_table
from training.core.errors import UserError
from training.families.transformer import TransformerFamily


def rescale_attention(params: dict[str, torch.Tensor], rows: np.ndarray, n_layers: int, spread: float,
                      seed: int, factor: float | None = None) -> dict[str, torch.Tensor]:
    """``params`` with attention's free scales moved in the models ``rows``: per dimension, ``c = exp(N(0,
    spread))`` for the queries (keys divided by it) and another for the values (the output projection's
    columns divided by it); with ``factor``, ``c = factor`` for every dimension of every moved model. The
    function is unchanged."""
    g = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in params.items()}
    for j in rows:
        for i in range(n_layers):
            a = f"blocks.{i}.attn"
            d = out[f"{a}.q.weight"].shape[1]
            c, cv = torch.exp(spread * torch.randn(d, generator=g)), torch.exp(spread * torch.randn(d, generator=g))
            if factor is not None:
                c, cv = torch.full((d,), factor), torch.full((d,), factor)
            out[f"{a}.q.weight"][j] *= c[:, None]
            out[f"{a}.k.weight"][j] /= c[:, None]
            out[f"{a}.v.weight"][j] *= cv[:, None]
            out[f"{a}.o.weight"][j] /= cv[None, :]
    return out


def fingerprints(mb: ModelBatch, specs: list[str]) -> list[FingerprintInput]:
    """The fingerprints ``specs`` of ``mb``, computed in memory, as the analysis reads them."""
    out = []
    for text in specs:
        name, overrides = parse_spec(text)
        spec = get_extractor(name)
        try:
            values, meta = spec.compute(mb, spec.resolve_params(overrides))
        except Exception as e:  # noqa: BLE001 - a fingerprint that cannot run is an input with an error, as in extract
            out.append(FingerprintInput(text, None, list(mb.model_ids), {}, error=str(e)))
            continue
        # as extraction stores it (the extractor's own metadata under "extra"), read as the pipeline reads it
        declared = pipeline._declared({"extractor": name, "output": spec.output, "spec": text, "extra": meta})
        out.append(FingerprintInput(text, np.asarray(values), list(mb.model_ids), declared))
    mechanistic.forget_balanced()
    return out


def answer(mb: ModelBatch, specs: list[str], table: dict, lineage: str) -> tuple[str, dict[str, str]]:
    res = analyze(fingerprints(mb, specs), table, pipeline.analysis_options({"lineage": lineage, "embedding": "pca"}))
    ans = label_free_answer(res)
    return (ans.sentence if ans else "(no answer)"), {str(f.fingerprint): str((f.label_free or {}).get("verdict"))
                                                      for f in res.fingerprints}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--spread", type=float, default=1.0, help="log-scale spread of the per-dimension factors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factor", type=float, default=None, help="one factor for every dimension instead of random ones")
    ap.add_argument("--lineage", default="init_seed", help="the init-family column")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    attention_too = TransformerFamily.hidden_rescalable

    def mlp_only(self):  # what hidden_rescalable returned before attention's scales were taken out
        return {g: m for g, m in attention_too(self).items() if ".attn." not in g}

    for path in a.zoos:
        zoo = pipeline.open_zoo(path)
        table = model_table(zoo)
        try:
            mb = ModelBatch.from_zoo(zoo)
        except UserError as e:  # e.g. two architectures (modadd-basins-mixed): analyse each as its own zoo
            print(f"{path}: skipped ({e})")
            continue
        if not isinstance(mb.family, TransformerFamily):
            print(f"{path}: not a built-in transformer zoo, skipped")
            continue
        fam = np.asarray([str(v) for v in table[a.lineage]])
        rows = np.concatenate([np.flatnonzero(fam == f)[1::2] for f in sorted(set(fam.tolist()))])  # every other member
        moved = ModelBatch(mb.family, rescale_attention(mb.params, rows, mb.family.n_layers, a.spread, a.seed, a.factor), mb.task,
                           mb.model_ids)
        specs = pipeline.default_fingerprints(zoo)
        print(f"{path}: {len(mb)} models, {len(set(fam.tolist()))} init families, attention rescaled in {len(rows)} "
              f"(half of each family), {len(specs)} fingerprints")
        for label, batch in (("as trained", mb), ("attention rescaled (a null)", moved)):
            results = {}
            for arm, method in (("before (MLP units only)", mlp_only), ("now (attention too)", attention_too)):
                TransformerFamily.hidden_rescalable = method
                try:
                    results[arm] = answer(batch, specs, table, a.lineage)
                finally:
                    TransformerFamily.hidden_rescalable = attention_too
            print(f"  {label}:")
            for arm, (sentence, _) in results.items():
                print(f"    {arm}: {sentence}")
            (_, v0), (_, v1) = results.values()
            for fp in v0:
                print(f"      {fp}: {v0[fp]}" + (f" -> {v1.get(fp)}" if v0[fp] != v1.get(fp) else " (both)"))


if __name__ == "__main__":
    main()
