"""`fingerprint lineage` on an imported population: a zoo's final weights as plain state dicts.

Takes each model's final weights from a zoo of one-hidden-layer MLPs (``arch = "mlp"``, depth 1),
loads them into a plain ``nn.Sequential(Flatten, Linear, activation, Linear)`` each, and imports
those modules as a new zoo (``Zoo.from_modules``) that knows nothing of seeds, parents or
checkpoints: one state dict per model, as a population trained elsewhere arrives. Its only
metadata is ``family`` (the source's ``init_seed``), named with ``--lineage family`` to *score*
the shared-initialization test, never to infer. Prints the lineage result's truth scores per
evidence and whether checkpoint histories were used (they cannot be: one checkpoint per model).

    OMP_NUM_THREADS=1 python scripts/lineage_population.py ZOO OUT [--models N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.lineage import lineage
from training.core.errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def import_population(zoo: Zoo, out: str, n_models: int | None = None) -> Zoo:
    """The first ``n_models`` of ``zoo`` as an imported zoo of ``nn.Sequential`` state dicts at ``out``."""
    spec = zoo.family_spec
    if spec.get("arch") != "mlp" or spec.get("depth") != 1:
        raise UserError(f"zoo '{zoo.path}' is not of one-hidden-layer MLPs (family {spec.get('arch')}, depth {spec.get('depth')})")
    act = ACTIVATIONS.get(spec.get("activation", "relu"))
    if act is None:
        raise UserError(f"unknown activation '{spec.get('activation')}' (valid: {', '.join(ACTIVATIONS)})")
    ids = zoo.model_ids[:n_models]
    p = zoo.params(model_ids=ids)
    d_in, width, n_out = p["layer0.weight"].shape[2], p["layer0.weight"].shape[1], p["out.weight"].shape[1]
    mods = []
    for i in range(len(ids)):
        m = nn.Sequential(nn.Flatten(), nn.Linear(d_in, width), act(), nn.Linear(width, n_out))
        m.load_state_dict({"1.weight": p["layer0.weight"][i], "1.bias": p["layer0.bias"][i],
                           "3.weight": p["out.weight"][i], "3.bias": p["out.bias"][i]})
        mods.append(m)
    family = [str(s) for s in zoo.models["init_seed"].tolist()][: len(ids)]
    probes = {"in_dist": torch.randn(16, *spec["input_shape"], generator=torch.Generator().manual_seed(0))}
    return Zoo.from_modules(mods, out=out, metadata={"family": family}, probes=probes, overwrite=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("out")
    ap.add_argument("--models", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    imp = import_population(Zoo.open(args.zoo), args.out, args.models)
    t0 = time.perf_counter()
    r = lineage(imp, lineage_column="family")
    res = {"models": len(imp), "pairs": r["n_pairs"], "seconds": round(time.perf_counter() - t0, 1), "history": r["history"],
           "by_evidence": {k: {m: v[m] for m in ("shared_init_fpr", "shared_init_power", "bh_fdp", "bh_power", "n_families")}
                           for k, v in r["by_evidence"].items()}}
    print(json.dumps(res) if args.json else json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
