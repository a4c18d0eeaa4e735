"""Training one shard: build where its models start, train them together, evaluate, write the file.

Every shard, whatever its kind, goes through :func:`train_shard`: a table (:data:`SHARD_BUILDERS`)
maps the kind to the builder of its :class:`ShardStart` (task, family, training config, starting
parameters, variants, checkpoint steps and, for an exact continuation, optimiser state):

- ``base``: fresh models from their init seeds;
- ``spawn``: children of this zoo's base models, from the parent's checkpoint at ``at_step``;
- ``finetune``: children of this zoo's base models, from the parent's final parameters, on the
  fine-tune's task and training config, counting steps on from the parent's last;
- ``continued``: models of another zoo (a continuation zoo's source), from its checkpoint at the
  step continued from, with its optimiser state when stored (then bit-identical to the source).

:func:`write_trained_shard` then trains, evaluates every checkpoint and writes the shard atomically.
A shard is a pure function of the zoo's manifest and its name, so any executor can run it anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import SweepConfig, TrainConfig, checkpoint_steps
from training.core import store as zoo_io
from training.families.base import Family
from training.plan import (
    ShardPlan,
    base_checkpoints,
    build_family,
    build_task,
    manifest_shard,
    phase_train_config,
)
from training.tasks import Task
from training.trainer import train_population


# -- evaluation ------------------------------------------------------------------------------------
class PopulationForward:
    """What tasks' ``evaluate``/``diagnostics`` receive: ``forward(x) -> [n, n_inputs, n_out]`` (no grad).

    Tasks whose diagnostics need more than outputs (gradients, activations) also get the
    ``family`` and the stacked ``params``.
    """

    def __init__(self, family: Family, params: dict[str, torch.Tensor], chunk: int = 4096):
        self.family = family
        self.params = params
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(next(iter(self.params.values())).device)
        return self.family.outputs(self.params, x, self.chunk).cpu()


def evaluate(task: Task, family: Family, params: dict[str, torch.Tensor], variant: torch.Tensor,
             diverged: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Metrics and ground-truth diagnostics ``{column: [n]}`` of a population."""
    forward = PopulationForward(family, params)
    cols: dict[str, np.ndarray] = {k: v.numpy() for k, v in task.evaluate(forward, variant).items()}
    for k, v in task.diagnostics(forward, variant).items():
        cols[k] = np.asarray(v)
    if diverged is not None and "deep_label" in cols and diverged.any():
        lab = cols["deep_label"].astype(object)
        lab[diverged] = "diverged"
        cols["deep_label"] = lab
    return cols


# -- where a shard's models start ------------------------------------------------------------------
@dataclass
class ShardStart:
    """Everything a shard's training needs besides its plan."""

    task: Task
    family: Family
    train: TrainConfig
    params: dict[str, torch.Tensor]  # [n_models, ...]
    variant: torch.Tensor  # [n_models]
    checkpoints: list[int]
    start: int = 0  # the first step trained
    offset: int = 0  # added to step numbers (a fine-tune counts on from its parent's last step)
    optimizer_state: dict[str, torch.Tensor] | None = None


Builder = Callable[[Path, dict, SweepConfig, ShardPlan], ShardStart]


def _seeds(sp: ShardPlan) -> tuple[list[int], list[int]]:
    return [m.init_seed for m in sp.models], [m.data_seed for m in sp.models]


def _parents(zoo: zoo_io.Zoo, sp: ShardPlan) -> tuple[list[str], torch.Tensor]:
    """The parents' ids and their variants ``[n_models]``."""
    pids = [m.parent_id for m in sp.models]
    return pids, torch.as_tensor(zoo.models["variant"][zoo.index(pids)], dtype=torch.int64)


def build_base(zoo_dir: Path, manifest: dict, config: SweepConfig, sp: ShardPlan) -> ShardStart:
    task = build_task(config, sp.group)
    family = build_family(config, task, sp.group)
    init_seeds, data_seeds = _seeds(sp)
    # (a plugin's variants were checked model by model before the sweep wrote anything: training.plan.validate)
    return ShardStart(task, family, config.train, family.init(init_seeds),
                      task.variant(torch.tensor(init_seeds), torch.tensor(data_seeds)), base_checkpoints(config))


def build_spawn(zoo_dir: Path, manifest: dict, config: SweepConfig, sp: ShardPlan) -> ShardStart:
    task = build_task(config, sp.group)
    parents = zoo_io.Zoo.open(zoo_dir)
    pids, variant = _parents(parents, sp)
    start = config.spawn[sp.spec].at_step
    return ShardStart(task, build_family(config, task, sp.group), config.train, parents.params(start, pids), variant,
                      [s for s in base_checkpoints(config) if s >= start], start=start)


def build_finetune(zoo_dir: Path, manifest: dict, config: SweepConfig, sp: ShardPlan) -> ShardStart:
    task = build_task(config, sp.group, sp.spec)
    tcfg = phase_train_config(config, sp.kind, sp.spec)
    parents = zoo_io.Zoo.open(zoo_dir)
    pids, _ = _parents(parents, sp)
    init_seeds, data_seeds = _seeds(sp)
    return ShardStart(task, build_family(config, task, sp.group), tcfg, parents.params(None, pids),
                      task.variant(torch.tensor(init_seeds), torch.tensor(data_seeds)),
                      checkpoint_steps(tcfg.checkpoints, tcfg.steps, f"finetune[{sp.spec}].train.checkpoints"),
                      offset=int(max(parents.models["final_step"][parents.index(pids)])))


def build_continued(zoo_dir: Path, manifest: dict, config: SweepConfig, sp: ShardPlan) -> ShardStart:
    cont = manifest["continue_from"]
    task = build_task(config, sp.group)
    src = zoo_io.Zoo.open(cont["zoo"])
    k = int(cont["step"])
    pids, variant = _parents(src, sp)
    state = src.optimizer_state(k, pids) if cont.get("exact") else None
    return ShardStart(task, build_family(config, task, sp.group), config.train, src.params(k, pids), variant,
                      [s for s in base_checkpoints(config) if s >= k], start=k, optimizer_state=state)


SHARD_BUILDERS: dict[str, Builder] = {
    "base": build_base, "spawn": build_spawn, "finetune": build_finetune, "continued": build_continued,
}


# -- training and writing --------------------------------------------------------------------------
def train_shard(zoo_dir: Path, shard_name: str, device: str = "cpu", on_step: Callable[[int, int], None] | None = None) -> Path:
    """Train one shard of the zoo's plan (a sweep's or a continuation's) and write its file atomically."""
    zoo_dir = Path(zoo_dir)
    manifest = zoo_io.read_manifest(zoo_dir)
    config, sp = manifest_shard(zoo_dir, manifest, shard_name)
    return write_trained_shard(zoo_dir, sp, SHARD_BUILDERS[sp.kind](zoo_dir, manifest, config, sp), device, on_step)


def write_trained_shard(zoo_dir: Path, sp: ShardPlan, s: ShardStart, device: str = "cpu",
                        on_step: Callable[[int, int], None] | None = None) -> Path:
    """Train shard ``sp``'s models from ``s``, evaluate every checkpoint, and write the shard atomically."""
    models, task, family, variant, offset = sp.models, s.task, s.family, s.variant, s.offset
    init_seeds, data_seeds = _seeds(sp)
    result = train_population(family, task, s.train, s.params, data_seeds, variant, start_step=s.start,
                              checkpoint_steps=s.checkpoints, step_offset=offset, device=device, on_step=on_step,
                              optimizer_state=s.optimizer_state, save_optimizer_state=s.train.save_optimizer_state)
    diverged = result.diverged.numpy()
    metrics = {}
    for step, p in result.checkpoints.items():
        div_now = diverged & (result.diverged_step.numpy() + offset <= step)
        metrics[step] = evaluate(task, family, p, variant, div_now)
    final_step = max(result.checkpoints)
    table: dict[str, Any] = {
        "model_id": [m.model_id for m in models],
        "kind": [m.kind for m in models],
        "group": [m.group for m in models],
        "task": [task.name] * len(models),
        "arch": [family.name] * len(models),
        "init_seed": np.asarray(init_seeds, dtype=np.int64),
        "data_seed": np.asarray(data_seeds, dtype=np.int64),
        "parent_id": [m.parent_id for m in models],
        "spawn_step": np.asarray([m.spawn_step for m in models], dtype=np.int64),
        "variant": variant.numpy().astype(np.int64),
        "final_step": np.full(len(models), final_step, dtype=np.int64),
        "diverged": diverged,
        "diverged_step": np.where(result.diverged_step.numpy() >= 0, result.diverged_step.numpy() + offset, -1),
    }
    for k, v in metrics[final_step].items():
        table[k] = v
    data = zoo_io.ShardData(shard=sp.name, table=table, checkpoints=result.checkpoints, metrics=metrics,
                            optimizer_states=result.optimizer_states or None,
                            attrs={"task": {"name": task.name, "params": task.params()}, "family": family.hparams(),
                                   "phase": sp.phase, "kind": sp.kind, "group": sp.group,
                                   "training_path": family.training_path(device)})
    return zoo_io.write_shard(Path(zoo_dir), data)
