"""Check that a change to the training pass leaves trained weights bit for bit unchanged.

Trains a few models of every built-in transformer config (each task/model sweep group; tiny-lm's
fine-tune phase from the trained base models too) for a few steps through ``train_population``, and
saves the final parameters and optimiser state (``--save REF.npz``) or compares them with a saved
reference (``--compare REF.npz``), every entry with a bitwise test. Floats differ between hosts
(vector widths), so a reference is only comparable on the host that wrote it: save it from a
checkout of the code to compare against (``PYTHONPATH=/path/to/main``), on the same machine.

    PYTHONPATH=/work/main python scripts/check_train_bits.py --save /tmp/ref.npz
    python scripts/check_train_bits.py --compare /tmp/ref.npz      # exit 1 on any difference
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from training.config import load_config
from training.plan import build_family, build_task, make_plan, phase_train_config
from training.trainer import train_population

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def transformer_configs() -> list[Path]:
    return sorted(p for p in CONFIGS.glob("*.toml") if 'arch = "transformer"' in p.read_text())


def train_config(path: Path, steps: int, models: int) -> dict[str, np.ndarray]:
    """Final parameters and optimiser buffers of ``models`` models of each group after ``steps`` steps."""
    config = load_config(path)
    out: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    for sp in make_plan(config).shards:
        if sp.kind != "base" or sp.group in seen:
            continue
        seen.add(sp.group)
        task = build_task(config, sp.group)
        fam = build_family(config, task, sp.group)
        ms = sp.models[:models]
        init, data = [m.init_seed for m in ms], [m.data_seed for m in ms]
        variant = task.variant(torch.tensor(init), torch.tensor(data))
        cfg = dataclasses.replace(config.train, steps=steps, checkpoints=[])
        res = train_population(fam, task, cfg, fam.init(init), data, variant, checkpoint_steps=[], save_optimizer_state=True)
        tag = f"{path.stem}/{sp.group or '-'}"
        final = res.checkpoints[steps]
        out.update({f"{tag}/{k}": v.numpy() for k, v in final.items()})
        out.update({f"{tag}/opt/{k}": v.numpy() for k, v in res.optimizer_states[steps].items()})
        for fi, ft in enumerate(config.finetune):  # a fine-tune's task, from the trained models
            ftask = build_task(config, sp.group, fi)
            fcfg = dataclasses.replace(phase_train_config(config, "finetune", fi), steps=steps, checkpoints=[])
            fres = train_population(fam, ftask, fcfg, final, data, variant, checkpoint_steps=[])
            out.update({f"{tag}/ft{fi}/{k}": v.numpy() for k, v in fres.checkpoints[steps].items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", type=Path)
    ap.add_argument("--compare", type=Path)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--configs", nargs="*", default=None, help="config names (default: every transformer config)")
    args = ap.parse_args()
    if (args.save is None) == (args.compare is None):
        ap.error("give one of --save or --compare")
    torch.set_num_threads(1)
    paths = [CONFIGS / f"{c}.toml" for c in args.configs] if args.configs else transformer_configs()
    result: dict[str, np.ndarray] = {}
    for p in paths:
        result.update(train_config(p, args.steps, args.models))
    if args.save:
        np.savez(args.save, **result)
        print(f"saved {len(result)} arrays from {len(paths)} configs to {args.save}")
        return
    with np.load(args.compare, allow_pickle=False) as ref:
        keys = [k for k in ref.files if not args.configs or k.split("/")[0] in args.configs]
        missing = sorted(set(keys) ^ set(result))
        bad = [k for k in keys if k in result and not (ref[k].shape == result[k].shape and ref[k].tobytes() == result[k].tobytes())]
        for k in bad:
            diff = np.abs(ref[k].astype(np.float64) - result[k].astype(np.float64)).max() if ref[k].shape == result[k].shape else np.inf
            print(f"DIFFERENT {k}: max |diff| {diff:.3g}")
    for k in missing:
        print(f"MISSING {k}")
    print(f"{len(keys) - len(bad)}/{len(keys)} arrays bit-identical" + ("" if bad or missing else ": OK"))
    sys.exit(1 if bad or missing else 0)


if __name__ == "__main__":
    main()
