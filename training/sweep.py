"""Sweeps: plan a population from a config, train it shard by shard, and resume after a crash.

This is the driver; the pieces live in :mod:`training.plan` (which models, in which shards, and the
checks before anything is written), :mod:`training.shard` (training one shard of any kind) and
:mod:`training.executors` (running shards here, in worker processes or on Ray). A shard is complete
exactly when its file exists in ``ZOO/shards``; ``resume`` trains only the missing ones. A zoo's
config is ``SweepConfig.from_dict(zoo.config)`` (the open zoo's manifest already holds it).

The names the CLI, ``fingerprint/`` and the tests import from here (``validate``, ``check_device``,
``get_executor``, ``planned_bytes``, ``build_family``, ``build_task``, ``train_shard``, ...) are
re-exported from those modules.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.config import SweepConfig
from training.core import store as zoo_io
from training.core.errors import CorruptFileError, DiskFullError, UserError
from training.core.outputs import check_output
from training.executors import DISK_FULL_EXIT, Executor, get_executor
from training.plan import (
    DEFAULT_MAX_GB,
    Plan,
    PlannedModel,
    ShardPlan,
    build_family,
    build_task,
    check_device,
    make_plan,
    planned_bytes,
    planned_entries,
    shard_steps,
    task_plugin_failure,
    validate,
)
from training.shard import train_shard
from training.tasks.base import task_code

__all__ = [
    "DEFAULT_MAX_GB", "DISK_FULL_EXIT", "Executor", "Plan", "PlannedModel", "ShardPlan", "SweepSummary", "build_family",
    "build_task", "check_device", "execute", "get_executor", "make_plan", "planned_bytes", "prepare_zoo",
    "run_sweep", "train_shard", "validate",
]


@dataclass
class SweepSummary:
    zoo: Path
    n_planned: int
    n_trained_now: int
    n_skipped: int
    seconds: float
    model_steps: int
    diverged: list[str] = field(default_factory=list)


def prepare_zoo(config: SweepConfig, out: Path, models_per_batch: int | None, resume: bool, overwrite: bool,
                inputs: Mapping[str, Path | None] | None = None, max_gb: float | None = None, device: str = "cpu") -> Plan:
    """Validate, then create (or check, when resuming) the zoo directory and its manifest.

    ``inputs`` (e.g. ``{"config file": path}``) must not overlap ``out`` (see :mod:`training.core.outputs`)."""
    plan = validate(config, models_per_batch, max_gb)
    out = Path(out)
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    check_output(out, inputs, overwrite=overwrite)
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif resume:
            if not (out / zoo_io.MANIFEST).exists():
                raise UserError(f"cannot --resume '{out}': it has no {zoo_io.MANIFEST}")
            old = zoo_io.read_manifest(out)
            if old.get("config") != config.to_dict():
                raise UserError(f"cannot --resume '{out}': its config differs from this one (use --overwrite or a new --out)")
            if models_per_batch is None and old.get("models_per_batch"):
                plan = make_plan(config, old["models_per_batch"])
            elif old.get("models_per_batch") != (models_per_batch or config.models_per_batch):
                raise UserError(f"cannot --resume '{out}' with a different --models-per-batch (it used {old.get('models_per_batch')})")
            if old["planned"] != planned_entries(plan):  # e.g. cut short by hand: which models are missing is unknowable
                raise CorruptFileError(f"zoo manifest '{out / zoo_io.MANIFEST}' is corrupt: its 'planned' list ({len(old['planned'])} "
                                       f"models) is not the plan its config makes ({len(plan.models)} models)")
            _check_training_path(out, config, plan, device)
            return plan
        else:
            raise UserError(f"output '{out}' already exists; pass --resume to finish it or --overwrite to replace it")
    elif resume and not out.exists():
        raise UserError(f"cannot --resume '{out}': it does not exist")
    out.mkdir(parents=True, exist_ok=True)
    first_task = build_task(config, next(iter(plan.groups)))
    family = build_family(config, first_task, next(iter(plan.groups)))
    code = task_code(first_task)
    if resume and (out / zoo_io.MANIFEST).exists():  # the code the first shards were trained with stays on record
        before = (zoo_io.read_manifest(out).get("task") or {}).get("code")
        if before and code and before != code:
            warnings.warn(f"task '{config.task.name}' has changed since this zoo's first shards were trained (its "
                          "module's source differs): the shards trained now use the new code", stacklevel=2)
        code = before or code
    zoo_io.write_manifest(out, {
        "kind": "zoo",
        "created": time.time(),
        "config": config.to_dict(),
        "models_per_batch": models_per_batch or config.models_per_batch,
        "task": {"name": first_task.name, "params": first_task.params(), "groups": plan.groups,
                 **({"code": code} if code else {})},
        "family": family.hparams(),
        "planned": planned_entries(plan),
        "shards": [{"name": s.name, "phase": s.phase, "n_models": s.n_models} for s in plan.shards],
        "source": "sweep",
    })
    return plan


def _check_training_path(out: Path, config: SweepConfig, plan: Plan, device: str) -> None:
    """Refuse to --resume a zoo on another training path than its finished shards' (the fused MLP
    kernels or torch: they agree only to float rounding, so the same seeds would not give the same
    models; the seventh outside audit resumed a killed sweep without a C++ compiler and got 32
    models of one path and 64 of the other, silently)."""
    done = zoo_io.completed_shards(out)
    if not done:
        return
    group = next(iter(plan.groups))
    here = build_family(config, build_task(config, group), group).training_path(device)
    theirs = {p for p in (zoo_io.Shard(f, verify=False).attrs.get("training_path") for f in done.values()) if p}
    if theirs and theirs != {here}:
        from training.families import kernels  # deferred: only to say why

        raise UserError(f"cannot --resume '{out}': its finished shards were trained on the {' and '.join(sorted(theirs))} "
                        f"path and this process would train on the {here} path (kernels: {kernels.status(build=False)}); "
                        "the two agree only to float rounding, so the same seeds would not give the same models: resume "
                        f"where the kernels {'build' if 'fused kernels' in theirs else 'are off'} (set "
                        f"{kernels.ENV}={'1' if 'fused kernels' in theirs else '0'}), or start a new --out")


def run_sweep(config: SweepConfig, out: str | Path, executor: str | Executor = "local", models_per_batch: int | None = None,
              device: str = "cpu", resume: bool = False, overwrite: bool = False,
              on_start: Callable[[int, int, int], None] | None = None,
              on_steps: Callable[[int], None] | None = None,
              on_done: Callable[[ShardPlan], None] | None = None,
              inputs: Mapping[str, Path | None] | None = None, max_gb: float | None = None) -> SweepSummary:
    """Plan, train and store a population. ``on_start(n_models, n_done_models, total_model_steps)``.

    ``max_gb``: refuse a plan whose checkpoints would take more (default :data:`DEFAULT_MAX_GB`)."""
    check_device(device)
    out = Path(out)
    ex = get_executor(executor) if isinstance(executor, str) else executor
    if hasattr(ex, "check"):  # e.g. Ray at a dead address: say so before the zoo is written
        ex.check()
    fresh = not resume or not (out / zoo_io.MANIFEST).exists()
    plan = prepare_zoo(config, out, models_per_batch, resume, overwrite, inputs, max_gb, device)
    try:
        return execute(config, plan.shards, out, ex, device, on_start, on_steps, on_done)
    except UserError:  # (a kill or Ctrl-C is no Exception: it passes through as before)
        raise
    except Exception as e:  # noqa: BLE001 - a user's task is the likely culprit; a built-in one's failure is a bug
        task = str(config.task.name)
        if ":" not in task:  # a built-in task: a bug, with its traceback
            raise
        trained = bool(zoo_io.completed_shards(out))
        if fresh and not trained:  # nothing trained: leave nothing half-written (only the manifest was)
            shutil.rmtree(out, ignore_errors=True)
        kept = ("nothing was written" if fresh and not trained else
                "the finished shards are kept: fix the task, then rerun with --resume")
        err = task_plugin_failure(task, e, kept)
        if trained:  # done in part (README, exit statuses): 1, not the 2 of "nothing done" (an outside audit, 71)
            err.exit_code = 1
        raise err from None


def execute(config: SweepConfig, shards: Sequence[ShardPlan], out: Path, ex: Executor, device: str,
            on_start: Callable[[int, int, int], None] | None = None, on_steps: Callable[[int], None] | None = None,
            on_done: Callable[[ShardPlan], None] | None = None) -> SweepSummary:
    """Train the shards of a prepared zoo that are not complete yet, phase by phase."""
    done = zoo_io.completed_shards(out)
    todo = [s for s in shards if s.name not in done]
    total_steps = sum(s.n_models * shard_steps(config, s) for s in todo)
    n_planned = sum(s.n_models for s in shards)
    n_done = n_planned - sum(s.n_models for s in todo)
    if on_start:
        on_start(n_planned, n_done, total_steps)
    t0 = time.time()
    steps_done = 0

    def _steps(n: int) -> None:
        nonlocal steps_done
        steps_done += n
        if on_steps:
            on_steps(n)

    try:
        for phase in sorted({s.phase for s in todo}):
            ex.run(out, [s for s in todo if s.phase == phase], device, on_done or (lambda _s: None), _steps)
    except DiskFullError as e:
        raise DiskFullError(f"{e}; the finished shards are kept: free space, then rerun with --resume") from None
    zoo = zoo_io.Zoo.open(out)
    diverged = [m for m, d in zip(zoo.model_ids, zoo.models["diverged"]) if d]
    return SweepSummary(out, n_planned, n_planned - n_done, n_done, time.time() - t0, steps_done, diverged)

