"""Continue a chosen subset of a zoo's models from an early checkpoint to the end of training.

This is the compute-saving half of the proposal's procedure (``fingerprint select``): train every
seed a little, forecast each one's basin, and spend the rest of the budget only on the seeds bound
for the wanted basin. The continued models go into a *new* zoo whose lineage points back to the
source (``parent_id`` = source model id, ``spawn_step`` = the step continued from, kind
``continued``). Nothing is retrained from scratch: each model restarts from its stored checkpoint,
and when the source saved optimiser state there (``train.save_optimizer_state = true``) the
continuation is bit-identical to the source's own uninterrupted training.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from training.config import SweepConfig
from training.core import store as zoo_io
from training.core.errors import UserError
from training.core.outputs import check_output
from training.executors import Executor, get_executor
from training.plan import ShardPlan, check_device, shards_from_manifest
from training.sweep import SweepSummary, execute


def prepare_continuation(source: Path, model_ids: Sequence[str], from_step: int, out: Path,
                         models_per_batch: int = 256, resume: bool = False, overwrite: bool = False) -> list[ShardPlan]:
    """Validate and write the new zoo's manifest; returns its shards (trained by
    :func:`training.shard.train_shard`, whose ``continued`` builder reads ``continue_from``)."""
    check_output(Path(out), {"source zoo": source}, overwrite=overwrite)
    src = zoo_io.Zoo.open(source)
    if src.manifest.get("source") != "sweep":
        raise UserError(f"zoo '{source}' was not trained here; only swept zoos can be continued")
    if not model_ids:
        raise UserError("no models selected to continue")
    idx = src.index(model_ids)
    kinds = set(src.models["kind"][idx].astype(str))
    if not kinds <= {"base", "spawn"}:
        raise UserError(f"only seed-grid and spawned models can be continued, not {sorted(kinds - {'base', 'spawn'})}")
    config = SweepConfig.from_dict(src.config)
    if not 0 <= from_step < config.train.steps:
        raise UserError(f"--at-step {from_step} must be in [0, {config.train.steps}) (the source trains {config.train.steps} steps)")
    missing = [m for m in model_ids if from_step not in src.model_steps(m)]
    if missing:
        raise UserError(f"model '{missing[0]}' has no checkpoint at step {from_step} (stored steps: {src.model_steps(missing[0])})")
    exact = True  # the optimiser's state at from_step is stored (the continuation loads it)
    try:
        src.optimizer_state(from_step, list(model_ids[:1]))
    except UserError:
        exact = False
    planned = []
    groups: dict[str, list[int]] = {}
    for i in idx:
        groups.setdefault(str(src.models["group"][i]), []).append(int(i))
    for gi, (group, rows) in enumerate(groups.items()):
        for j in range(0, len(rows), models_per_batch):
            name = f"c{from_step}-g{gi}-{j // models_per_batch:04d}"
            for r in rows[j : j + models_per_batch]:
                row = src.models.row(r)
                planned.append({"model_id": f"{row['model_id']}>c{from_step}", "shard": name, "kind": "continued", "group": group,
                                "init_seed": int(row["init_seed"]), "data_seed": int(row["data_seed"]),
                                "parent_id": row["model_id"], "spawn_step": int(from_step)})
    out = Path(out)
    manifest = {
        "kind": "zoo", "source": "continue", "created": time.time(), "config": src.config,
        "continue_from": {"zoo": str(Path(source).resolve()), "step": int(from_step), "exact": exact,
                          "n_source_models": len(src), "model_ids": list(model_ids)},
        "task": src.manifest.get("task", {}), "family": src.family_spec, "models_per_batch": models_per_batch,
        "planned": planned,
        "shards": [{"name": n, "phase": 0, "n_models": sum(1 for p in planned if p["shard"] == n)}
                   for n in dict.fromkeys(p["shard"] for p in planned)],
    }
    if out.exists() and any(out.iterdir()):
        if resume:
            old = zoo_io.read_manifest(out)
            if old.get("continue_from") != manifest["continue_from"]:
                raise UserError(f"cannot --resume '{out}': it continues a different selection")
            return shards_from_manifest(old)
        if not overwrite:
            raise UserError(f"output '{out}' already exists; pass --resume to finish it or --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    zoo_io.write_manifest(out, manifest)
    return shards_from_manifest(manifest)


def continue_models(source: str | Path, model_ids: Sequence[str], from_step: int, out: str | Path,
                    executor: str | Executor = "local", models_per_batch: int = 256, device: str = "cpu",
                    resume: bool = False, overwrite: bool = False, **callbacks) -> SweepSummary:
    """Continue ``model_ids`` of ``source`` from ``from_step`` to the end, into the new zoo ``out``."""
    check_device(device)
    ex = get_executor(executor) if isinstance(executor, str) else executor
    shards = prepare_continuation(Path(source), list(model_ids), from_step, Path(out), models_per_batch, resume, overwrite)
    config = SweepConfig.from_dict(zoo_io.read_manifest(Path(out))["config"])
    return execute(config, shards, Path(out), ex, device, **callbacks)
