"""Sweeps: plan a population from a config, train it shard by shard, and resume after a crash.

The plan is a pure function of the config: every model gets an id from its seeds and lineage
(``i3-d0``, ``i3-d0>s50-d1000`` for a spawned child, ``i3-d0>ft-d2000`` for a fine-tune; a
``task.sweep`` group prefixes ``M=4:``). Models are cut into shards of at most ``models_per_batch``;
phase 0 trains the seed grid, phase 1 spawned children, phase 2 fine-tunes. A shard is complete
exactly when its file exists in ``ZOO/shards``; ``resume`` trains only the missing ones.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from training import config as cfgmod
from training.config import SweepConfig, TrainConfig, checkpoint_steps, from_mapping
from training.core import store as zoo_io
from training.core.errors import CorruptFileError, DiskFullError, UserError, choices
from training.core.outputs import check_output
from training.families import get_family
from training.families.base import Family
from training.tasks import Task, get_task
from training.trainer import train_population


# -- planning --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedModel:
    model_id: str
    kind: str  # base | spawn | finetune
    group: str
    init_seed: int
    data_seed: int
    parent_id: str = ""
    spawn_step: int = -1
    spec: int = -1  # index into config.spawn / config.finetune


@dataclass(frozen=True)
class ShardPlan:
    name: str
    phase: int
    group: str
    kind: str
    spec: int
    models: tuple[PlannedModel, ...]

    @property
    def n_models(self) -> int:
        return len(self.models)


@dataclass
class Plan:
    config: SweepConfig
    groups: dict[str, dict[str, Any]]  # group label -> task params
    shards: list[ShardPlan]

    @property
    def models(self) -> list[PlannedModel]:
        return [m for s in self.shards for m in s.models]

    def shard(self, name: str) -> ShardPlan:
        for s in self.shards:
            if s.name == name:
                return s
        raise UserError(f"unknown shard {name!r} (valid: {choices(s.name for s in self.shards)})")


def task_groups(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """Sub-populations from ``task.sweep``: label (``"M=4,noise=0.1"``) -> full task params."""
    if not config.task.sweep:
        return {"": dict(config.task.params)}
    keys = list(config.task.sweep)
    out = {}
    for combo in itertools.product(*(config.task.sweep[k] for k in keys)):
        label = ",".join(f"{k}={v}" for k, v in zip(keys, combo))
        out[label] = {**config.task.params, **dict(zip(keys, combo))}
    return out


def make_plan(config: SweepConfig, models_per_batch: int | None = None) -> Plan:
    mpb = models_per_batch or config.models_per_batch
    groups = task_groups(config)
    shards: list[ShardPlan] = []

    def cut(models: list[PlannedModel], phase: int, gi: int, group: str, kind: str, spec: int, tag: str) -> None:
        for i in range(0, len(models), mpb):
            shards.append(ShardPlan(f"p{phase}-g{gi}{tag}-{i // mpb:04d}", phase, group, kind, spec, tuple(models[i : i + mpb])))

    for gi, group in enumerate(groups):
        prefix = f"{group}:" if group else ""
        base = [PlannedModel(f"{prefix}i{i}-d{d}", "base", group, i, d)
                for i in config.seeds.init_seeds() for d in config.seeds.data_seeds()]
        cut(base, 0, gi, group, "base", -1, "")
        for si, sp in enumerate(config.spawn):
            kids = [PlannedModel(f"{b.model_id}>s{sp.at_step}-d{sp.data_seed_start + c}", "spawn", group, b.init_seed,
                                 sp.data_seed_start + c, b.model_id, sp.at_step, si)
                    for b in base for c in range(sp.children)]
            cut(kids, 1, gi, group, "spawn", si, f"-s{si}")
        for fi, ft in enumerate(config.finetune):
            kids = [PlannedModel(f"{b.model_id}>{ft.name}-d{ft.data_seed_start + c}", "finetune", group, b.init_seed,
                                 ft.data_seed_start + c, b.model_id, -1, fi)
                    for b in base for c in range(ft.children)]
            cut(kids, 2, gi, group, "finetune", fi, f"-f{fi}")
    ids = [m.model_id for s in shards for m in s.models]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"the config plans model '{dup}' twice (overlapping seeds in [seeds], [[spawn]] or [[finetune]])")
    return Plan(config, groups, shards)


# -- building the pieces ---------------------------------------------------------------------------
def build_task(config: SweepConfig, group: str = "", finetune: int = -1) -> Task:
    params = task_groups(config)[group]
    if finetune >= 0:
        params = {**params, **config.finetune[finetune].task}
    return get_task(config.task.name, params)


def build_family(config: SweepConfig, task: Task) -> Family:
    model = {**task.default_model()}
    if config.model.arch and config.model.arch != model.get("arch"):
        model = {"arch": config.model.arch}
    model.update(config.model.params)
    arch = model.pop("arch")
    return get_family(arch, task.input_shape, task.n_out, model)


def phase_train_config(config: SweepConfig, kind: str, spec: int) -> TrainConfig:
    if kind != "finetune":
        return config.train
    merged = {**cfgmod.to_dict(config.train), **config.finetune[spec].train}
    return from_mapping(TrainConfig, merged, f"finetune[{spec}].train")


def base_checkpoints(config: SweepConfig) -> list[int]:
    steps = set(checkpoint_steps(config.train.checkpoints, config.train.steps))
    return sorted(steps | {s.at_step for s in config.spawn})


DEFAULT_MAX_GB = 20.0  # `--max-gb` / FINGERPRINT_MAX_GB: a plan above this is refused before anything is written


def planned_bytes(config: SweepConfig, n_params: dict[str, int]) -> int:
    """Bytes of the checkpoints a sweep stores: models x checkpoints x parameters x 4 (float32), plus the
    optimiser buffers (Adam 2, SGD with momentum 1 per parameter) when ``train.save_optimizer_state``
    (at every checkpoint but a phase's first step, where the optimiser is still empty).

    ``n_params``: parameters per model of each task group (groups may differ, e.g. in input size)."""
    def per_model(tcfg: TrainConfig, steps: Sequence[int], start: int) -> int:
        buffers = (2 if tcfg.optimizer != "sgd" else int(tcfg.momentum > 0)) if tcfg.save_optimizer_state else 0
        return 4 * (len(steps) + buffers * sum(1 for s in steps if s > start))

    seeds = len(config.seeds.init_seeds_range()) * len(config.seeds.data_seeds_range())
    base = base_checkpoints(config)
    per_param = per_model(config.train, base, 0)
    for sp in config.spawn:
        per_param += sp.children * per_model(config.train, [s for s in base if s >= sp.at_step], sp.at_step)
    for fi, ft in enumerate(config.finetune):
        tcfg = phase_train_config(config, "finetune", fi)
        per_param += ft.children * per_model(tcfg, checkpoint_steps(tcfg.checkpoints, tcfg.steps), 0)
    return seeds * per_param * sum(n_params.values())


def validate(config: SweepConfig, models_per_batch: int | None = None, max_gb: float | None = None) -> Plan:
    """Build every task, family and phase config once and check the planned size against ``max_gb``
    (default :data:`DEFAULT_MAX_GB`), so bad input fails before anything is written."""
    max_gb = DEFAULT_MAX_GB if max_gb is None else max_gb
    if not max_gb > 0:  # also nan
        raise UserError(f"--max-gb must be > 0, got {max_gb}")
    if models_per_batch is not None and not 1 <= models_per_batch <= cfgmod.MODELS_MAX:  # < 1 would plan no shard
        raise UserError(f"--models-per-batch must be in [1, {cfgmod.MODELS_MAX}], got {models_per_batch}")
    n_params = {}
    for group in task_groups(config):
        task = build_task(config, group)
        n_params[group] = build_family(config, task).n_params()
        for fi in range(len(config.finetune)):
            build_task(config, group, fi)
            phase_train_config(config, "finetune", fi)
    size = planned_bytes(config, n_params)
    if size > max_gb * 1e9:
        shown = f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.1f} MB"
        raise UserError(f"the config plans {shown} of checkpoints ({config.n_planned():,} models, up to "
                        f"{len(base_checkpoints(config))} checkpoints of {max(n_params.values()):,} parameters each), above "
                        f"the {max_gb:g} GB limit: pass --max-gb {math.ceil(size / 1e9)} (or set FINGERPRINT_MAX_GB) if "
                        "that is meant")
    return make_plan(config, models_per_batch)


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here (valid: cpu)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown device '{device}' (valid: cpu, cuda, cuda:N)")


# -- training one shard ----------------------------------------------------------------------------
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


def _forward_fn(family: Family, params: dict[str, torch.Tensor], chunk: int = 4096) -> PopulationForward:
    return PopulationForward(family, params, chunk)


def evaluate(task: Task, family: Family, params: dict[str, torch.Tensor], variant: torch.Tensor,
             diverged: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Metrics and ground-truth diagnostics ``{column: [n]}`` of a population."""
    forward = _forward_fn(family, params)
    cols: dict[str, np.ndarray] = {k: v.numpy() for k, v in task.evaluate(forward, variant).items()}
    for k, v in task.diagnostics(forward, variant).items():
        cols[k] = np.asarray(v)
    if diverged is not None and "deep_label" in cols and diverged.any():
        lab = cols["deep_label"].astype(object)
        lab[diverged] = "diverged"
        cols["deep_label"] = lab
    return cols


def train_shard(zoo_dir: Path, shard_name: str, device: str = "cpu", on_step: Callable[[int, int], None] | None = None) -> Path:
    """Train one shard of the zoo's plan and write its file atomically. Pure function of the plan."""
    manifest = zoo_io.read_manifest(zoo_dir)
    if manifest.get("source") == "continue":
        from training.select import train_continuation_shard

        return train_continuation_shard(Path(zoo_dir), manifest, shard_name, device, on_step)
    config = SweepConfig.from_dict(manifest["config"])
    plan = make_plan(config, manifest.get("models_per_batch"))
    sp = plan.shard(shard_name)
    task = build_task(config, sp.group, sp.spec if sp.kind == "finetune" else -1)
    family = build_family(config, task)
    tcfg = phase_train_config(config, sp.kind, sp.spec)
    models = sp.models
    init_seeds = [m.init_seed for m in models]
    data_seeds = [m.data_seed for m in models]
    offset, start = 0, 0
    if sp.kind == "base":
        params = family.init(init_seeds)
        variant = task.variant(torch.tensor(init_seeds), torch.tensor(data_seeds))
        ckpts = base_checkpoints(config)
    else:
        parents = zoo_io.Zoo.open(zoo_dir)
        pids = [m.parent_id for m in models]
        pvariant = torch.as_tensor(parents.models["variant"][parents.index(pids)], dtype=torch.int64)
        if sp.kind == "spawn":
            start = config.spawn[sp.spec].at_step
            params = parents.params(start, pids)
            variant = pvariant
            ckpts = [s for s in base_checkpoints(config) if s >= start]
        else:
            offset = int(max(parents.models["final_step"][parents.index(pids)]))
            params = parents.params(None, pids)
            variant = task.variant(torch.tensor(init_seeds), torch.tensor(data_seeds))
            ckpts = checkpoint_steps(tcfg.checkpoints, tcfg.steps, f"finetune[{sp.spec}].train.checkpoints")
    return _train_and_write(zoo_dir, shard_name, models, task, family, tcfg, params, variant, start, ckpts, offset,
                            device, on_step, {"phase": sp.phase, "kind": sp.kind, "group": sp.group})


def _train_and_write(zoo_dir: Path, shard_name: str, models: Sequence[PlannedModel], task: Task, family: Family,
                     tcfg: TrainConfig, params: dict[str, torch.Tensor], variant: torch.Tensor, start: int, ckpts: list[int],
                     offset: int, device: str, on_step: Callable[[int, int], None] | None, attrs: dict[str, Any],
                     optimizer_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Train a batch of planned models, evaluate every checkpoint, and write the shard atomically."""
    init_seeds = [m.init_seed for m in models]
    data_seeds = [m.data_seed for m in models]
    result = train_population(family, task, tcfg, params, data_seeds, variant, start_step=start, checkpoint_steps=ckpts,
                              step_offset=offset, device=device, on_step=on_step, optimizer_state=optimizer_state,
                              save_optimizer_state=tcfg.save_optimizer_state)
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
    data = zoo_io.ShardData(shard=shard_name, table=table, checkpoints=result.checkpoints, metrics=metrics,
                            optimizer_states=result.optimizer_states or None,
                            attrs={"task": {"name": task.name, "params": task.params()}, "family": family.hparams(), **attrs})
    return zoo_io.write_shard(Path(zoo_dir), data)


# -- executors -------------------------------------------------------------------------------------
class Executor(Protocol):
    """Runs shards of a planned zoo. ``on_done(shard)`` after each; ``on_steps(n)`` for model-steps progress."""

    name: str

    def run(self, zoo_dir: Path, shards: Sequence[ShardPlan], device: str,
            on_done: Callable[[ShardPlan], None], on_steps: Callable[[int], None]) -> None: ...


class LocalExecutor:
    """Train shards one after another in this process."""

    name = "local"

    def run(self, zoo_dir, shards, device, on_done, on_steps):
        for sp in shards:
            train_shard(zoo_dir, sp.name, device, on_step=lambda _step, n: on_steps(n))
            on_done(sp)


DISK_FULL_EXIT = 28  # a worker's exit status when its disk is full (ENOSPC's number)


class ProcessExecutor:
    """Train shards in worker subprocesses (``python -m training.worker``), ``workers`` at a time.

    Workers get only the zoo path and shard name on their command line (nothing is pickled) and
    split the machine's cores between them.
    """

    name = "process"

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, min(os.cpu_count() or 1, 4))

    def run(self, zoo_dir, shards, device, on_done, on_steps):
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pending = list(shards)
        running: dict[subprocess.Popen, ShardPlan] = {}
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    sp = pending.pop(0)
                    cmd = [sys.executable, "-m", "training.worker", str(zoo_dir), sp.name, "--device", device, "--threads", str(threads),
                           "--parent", str(os.getpid())]  # the worker exits if this process dies
                    running[subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)] = sp
                time.sleep(0.05)
                for proc in [p for p in running if p.poll() is not None]:
                    sp = running.pop(proc)
                    err = proc.stderr.read() if proc.stderr else ""
                    if proc.returncode != 0:
                        last = (err.strip().splitlines() or ["(no output)"])[-1]
                        if proc.returncode == DISK_FULL_EXIT:  # the sweep says what to do about it
                            raise DiskFullError(last.removeprefix("error: "))
                        raise UserError(f"shard '{sp.name}' failed in a worker process (exit {proc.returncode}): {last}")
                    on_steps(sp.n_models * _shard_steps(sp, zoo_dir))
                    on_done(sp)
        finally:
            for proc in running:
                proc.kill()


def read_manifest_config(zoo_dir: Path) -> SweepConfig:
    return SweepConfig.from_dict(zoo_io.read_manifest(zoo_dir)["config"])


def _shard_steps(sp: ShardPlan, zoo_dir: Path) -> int:
    return shard_steps(read_manifest_config(zoo_dir), sp)


def shard_steps(config: SweepConfig, sp: ShardPlan) -> int:
    if sp.kind == "continued":
        return config.train.steps - sp.models[0].spawn_step
    if sp.kind == "spawn":
        return config.train.steps - config.spawn[sp.spec].at_step
    return phase_train_config(config, sp.kind, sp.spec).steps


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "process": ProcessExecutor}


def get_executor(name: str, **kwargs: Any) -> Executor:
    if name == "ray":
        try:
            import ray  # noqa: F401 - optional extra

            from training.ray_executor import RayExecutor
        except ImportError as e:
            raise UserError(f"executor 'ray' needs the ray extra: pip install 'basin-fingerprint[ray]' ({e})") from None
        return RayExecutor(**kwargs)
    if name not in EXECUTORS:
        raise UserError(f"unknown executor '{name}' (valid: {choices([*EXECUTORS, 'ray'])})")
    return EXECUTORS[name](**kwargs)


# -- the driver ------------------------------------------------------------------------------------
@dataclass
class SweepSummary:
    zoo: Path
    n_planned: int
    n_trained_now: int
    n_skipped: int
    seconds: float
    model_steps: int
    diverged: list[str] = field(default_factory=list)


def planned_entries(plan: Plan) -> list[dict[str, str]]:
    """The manifest's ``planned`` list: every model in plan order, with its shard."""
    return [{"model_id": m.model_id, "shard": s.name, "kind": m.kind} for s in plan.shards for m in s.models]


def prepare_zoo(config: SweepConfig, out: Path, models_per_batch: int | None, resume: bool, overwrite: bool,
                inputs: Mapping[str, Path | None] | None = None, max_gb: float | None = None) -> Plan:
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
            return plan
        else:
            raise UserError(f"output '{out}' already exists; pass --resume to finish it or --overwrite to replace it")
    elif resume and not out.exists():
        raise UserError(f"cannot --resume '{out}': it does not exist")
    out.mkdir(parents=True, exist_ok=True)
    first_task = build_task(config, next(iter(plan.groups)))
    family = build_family(config, first_task)
    zoo_io.write_manifest(out, {
        "kind": "zoo",
        "created": time.time(),
        "config": config.to_dict(),
        "models_per_batch": models_per_batch or config.models_per_batch,
        "task": {"name": first_task.name, "params": first_task.params(), "groups": plan.groups},
        "family": family.hparams(),
        "planned": planned_entries(plan),
        "shards": [{"name": s.name, "phase": s.phase, "n_models": s.n_models} for s in plan.shards],
        "source": "sweep",
    })
    return plan


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
    plan = prepare_zoo(config, out, models_per_batch, resume, overwrite, inputs, max_gb)
    return execute(config, plan.shards, out, ex, device, on_start, on_steps, on_done)


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
