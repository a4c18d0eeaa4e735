"""Planning: which models a sweep (or a continuation) trains, in which shards, and what that costs.

The plan is a pure function of the config: every model gets an id from its seeds and lineage
(``i3-d0``, ``i3-d0>s50-d1000`` for a spawned child, ``i3-d0>ft-d2000`` for a fine-tune; a
``task.sweep`` or ``model.sweep`` group prefixes ``M=4:`` or ``model.width=16:``). Models are cut into shards of at most ``models_per_batch``;
phase 0 trains the seed grid, phase 1 spawned children, phase 2 fine-tunes. A continuation zoo
(``fingerprint select``) stores its plan in the manifest's ``planned`` list instead
(:func:`shards_from_manifest`); :func:`manifest_shard` finds a shard of either kind. Also here: the
task, family and phase training config a shard is built from, the planned size in bytes, and the
checks (:func:`validate`, :func:`check_device`) that run before anything is written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import config as cfgmod
from training.config import SweepConfig, TrainConfig, checkpoint_steps, from_mapping
from training.core import seeds as rng
from training.core.errors import PluginError, UserError, choices
from training.families import get_family
from training.families.base import Family
from training.tasks import Task, get_task
from training.tasks.base import builtin_task


@dataclass(frozen=True)
class PlannedModel:
    model_id: str
    kind: str  # base | spawn | finetune | continued
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


MODEL_PREFIX = "model."  # a model.sweep key in a group label (``model.width=16``); task.sweep keys have none


def sweep_groups(config: SweepConfig) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Sub-populations from ``task.sweep`` x ``model.sweep``: label (``"M=4,model.width=16"``) ->
    (full task params, the model hyper-parameters this group overrides)."""
    swept = [(k, vs) for k, vs in config.task.sweep.items()] + [(MODEL_PREFIX + k, vs) for k, vs in config.model.sweep.items()]
    if not swept:
        return {"": (dict(config.task.params), {})}
    out = {}
    for combo in itertools.product(*(vs for _, vs in swept)):
        label = ",".join(f"{k}={v}" for (k, _), v in zip(swept, combo))
        task = {k: v for (k, _), v in zip(swept, combo) if not k.startswith(MODEL_PREFIX)}
        model = {k[len(MODEL_PREFIX):]: v for (k, _), v in zip(swept, combo) if k.startswith(MODEL_PREFIX)}
        out[label] = ({**config.task.params, **task}, model)
    return out


def task_groups(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """Sub-populations: label (``"M=4,noise=0.1"``) -> full task params (see :func:`sweep_groups`)."""
    return {label: task for label, (task, _) in sweep_groups(config).items()}


def group_settings(label: str) -> dict[str, str]:
    """A group label's settings, ``"M=4,model.width=16"`` -> ``{"M": "4", "model.width": "16"}``."""
    return dict(part.split("=", 1) for part in label.split(",") if "=" in part) if label else {}


def make_plan(config: SweepConfig, models_per_batch: int | None = None) -> Plan:
    """Every model of a sweep, cut into shards of at most ``models_per_batch`` (default: the config's)."""
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


# -- the pieces a shard is built from ------------------------------------------------------------
def build_task(config: SweepConfig, group: str = "", finetune: int = -1) -> Task:
    params = task_groups(config)[group]
    if finetune >= 0:
        params = {**params, **config.finetune[finetune].task}
    return get_task(config.task.name, params)


def build_family(config: SweepConfig, task: Task, group: str = "") -> Family:
    """The architecture of ``group``'s models (the task's default, the config's ``[model]``, the group's
    ``model.sweep`` settings, in that order)."""
    model = {**task.default_model()}
    if config.model.arch and config.model.arch != model.get("arch"):
        model = {"arch": config.model.arch}
    model.update(config.model.params)
    if group:
        groups = sweep_groups(config)
        if group not in groups:
            raise UserError(f"unknown group {group!r} (valid: {choices(groups)})")
        model.update(groups[group][1])
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
    n_params, tasks = {}, {}
    for group in task_groups(config):
        task = tasks[group] = build_task(config, group)
        family = build_family(config, task, group)
        n_params[group] = family.n_params()
        _check_fit(config, task, family)
        for fi in range(len(config.finetune)):
            _check_fit(config, build_task(config, group, fi), family)
            phase_train_config(config, "finetune", fi)
    size = planned_bytes(config, n_params)
    if size > max_gb * 1e9:
        shown = f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.1f} MB"
        raise UserError(f"the config plans {shown} of checkpoints ({config.n_planned():,} models, up to "
                        f"{len(base_checkpoints(config))} checkpoints of {max(n_params.values()):,} parameters each), above "
                        f"the {max_gb:g} GB limit: pass --max-gb {math.ceil(size / 1e9)} (or set FINGERPRINT_MAX_GB) if "
                        "that is meant")
    plan = make_plan(config, models_per_batch)
    task = tasks[plan.shards[0].group]  # make_plan's groups are task_groups
    if not builtin_task(task):  # a plugin: its variant and sampler must read the seeds alone
        first = plan.shards[0].models[:4]  # seeds the first shard trains anyway: a plugin failing on others fails there
        try:
            check_seeds_only(str(config.task.name), task, config.train.batch_size,
                             [m.init_seed for m in first], [m.data_seed for m in first])
            for t in tasks.values():  # its probe sets feed the models: their input shape (outside audit 121)
                for pname in t.probe_names():
                    got, want = tuple(t.probes(pname).shape[1:]), tuple(t.input_shape)
                    if got != want:
                        raise PluginError(f"task '{config.task.name}': probes('{pname}') gives inputs of shape "
                                          f"{list(got)}, its input_shape is {list(want)}: every probe set feeds the models")
            for sp in plan.shards:  # every model's variant, alone and in its shard: before anything is written
                if sp.kind == "base":
                    init = torch.tensor([m.init_seed for m in sp.models])
                    data = torch.tensor([m.data_seed for m in sp.models])
                    check_variant_alone(str(config.task.name), tasks[sp.group], init, data,
                                        tasks[sp.group].variant(init, data))
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's task is the likely culprit
            raise task_plugin_failure(str(config.task.name), e, "nothing was written") from None
    return plan


def task_plugin_failure(task: str, e: Exception, kept: str) -> PluginError:
    """The one-line error for a task plugin whose data or probes break a step (``kept``: what is on disk)."""
    first = (str(e).strip().splitlines() or [""])[0]
    return PluginError(f"training failed with task '{task}' (a task plugin's train_set, test_set, probes or "
                       f"diagnostics not matching the architecture?): {type(e).__name__}: {first[:300]}; {kept}")


def _check_fit(config: SweepConfig, task: Task, family: Family) -> None:
    """:func:`check_outputs_fit`; a task plugin that fails it is named in one line (a built-in task's
    failure is a bug, raised with its traceback)."""
    try:
        check_outputs_fit(task, family)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's task is the likely culprit
        if ":" not in str(config.task.name):
            raise
        raise task_plugin_failure(str(config.task.name), e, "nothing was written") from None


VARIANT_BY_POSITION = ("task '{name}': variant(init_seeds, data_seeds) gives a model another condition by its position "
                       "among the models (or by a random draw), not by its seeds alone: a model trained alone or among "
                       "others must be the same model; compute it from each model's seeds")


def check_variant_alone(name: str, task: Task, init: torch.Tensor, data: torch.Tensor, v: torch.Tensor) -> None:
    """Each model's variant in ``v`` (the shard's, ``task.variant(init, data)``) is the one it gets alone, or a one-line
    error. Run on every shard, all its models (outside audit 121: a variant that read the position past the first
    shard's first four models trained silently, and two seeds' ``deep_label`` differed alone and in the population)."""
    with torch.random.fork_rng(devices=[]):
        for i in range(len(init)):
            if not torch.equal(task.variant(init[i:i + 1], data[i:i + 1]), v[i:i + 1]):
                raise PluginError(VARIANT_BY_POSITION.format(name=name))


def check_seeds_only(name: str, task: Task, batch_size: int, init_seeds: Sequence[int], data_seeds: Sequence[int]) -> None:
    """A model's identity is its seeds: a task's ``variant`` and its ``sampler``'s first batches must give
    each model the same whether it trains alone, first or last in its shard. Checked on the given seed
    pairs (the first shard's first four) in two orders (each model's variant alone: every shard's, by
    :func:`check_variant_alone` in :func:`validate`), with the global random generator left as it was; a task plugin that
    reads a model's position or the global generator is a one-line error (an outside audit, 71: such a
    plugin trained silently, and one seed's ``deep_label`` differed alone and in the population)."""
    init, data = torch.tensor(list(init_seeds)), torch.tensor(list(data_seeds))
    if len(init) < 2:
        return
    flip = torch.roll(torch.arange(len(init)), -1)  # a rotation: no model keeps its place
    why = "see docs/tasks.md, 'Writing your own task': draw from the data states it is given, never the global generator"
    with torch.random.fork_rng(devices=[]):
        v = task.variant(init, data)
        if not torch.equal(task.variant(init[flip], data[flip]), v[flip]):
            raise PluginError(VARIANT_BY_POSITION.format(name=name))
        states = rng.seed_lanes(data, rng.DATA)
        together, reordered = task.sampler(states, batch_size, v), task.sampler(states[flip], batch_size, v[flip])
        for step in (0, 1):
            a, b = together(step), reordered(step)
            if not all(torch.equal(x[flip], y) for x, y in zip(a, b)):
                raise PluginError(f"task '{name}': its sampler gives a model other data at step {step} when the models "
                                  "are ordered otherwise (a draw from the global random generator, by position, or "
                                  f"arithmetic across the models that rounds by position? bit for bit counts): {why}")


def check_outputs_fit(task: Task, family: Family) -> None:
    """The family's outputs on two training examples have the shape the task's loss reads: one row of
    ``task.n_out`` per target (``[1, B, ..., n_out]`` for targets ``[B, ...]``) for a classification,
    the targets' shape (a last axis of 1 dropped) for a regression. A model read out at the
    last position against a task with a target at every position (``model.readout``) would otherwise
    fail at the first step with torch's shape error, or a regression's outputs broadcast against
    targets of another shape."""
    if type(task).loss is not Task.loss:  # a task with a loss of its own says what it reads
        return
    x, y = task.train_set()
    with torch.no_grad():
        out = family(family.init([0]), x[:2])
    if task.loss_kind == "classification":
        want, got = (1, *y[:2].shape, task.n_out), tuple(out.shape)
    else:  # the squared error reads the outputs without a last axis of 1, as the loss does
        want, got = (1, *y[:2].shape), tuple(out.squeeze(-1).shape)
    if got != want:
        readout = getattr(family, "readout", None)
        how = f" read out at '{readout}' ('model.readout')" if readout else ""
        raise UserError(f"the '{family.name}' model{how} gives outputs {list(out.shape[1:])} for 2 training examples of task "
                        f"'{task.name}', whose targets need {list(want[1:])}: set the model to match the task (see its "
                        f"default model in `fingerprint list`)")


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here (valid: cpu)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown device '{device}' (valid: cpu, cuda, cuda:N)")


def shard_steps(config: SweepConfig, sp: ShardPlan) -> int:
    """Training steps each model of shard ``sp`` takes (for progress: models x steps)."""
    if sp.kind == "continued":
        return config.train.steps - sp.models[0].spawn_step
    if sp.kind == "spawn":
        return config.train.steps - config.spawn[sp.spec].at_step
    return phase_train_config(config, sp.kind, sp.spec).steps


def planned_entries(plan: Plan) -> list[dict[str, str]]:
    """The manifest's ``planned`` list: every model in plan order, with its shard."""
    return [{"model_id": m.model_id, "shard": s.name, "kind": m.kind} for s in plan.shards for m in s.models]


def shards_from_manifest(manifest: dict) -> list[ShardPlan]:
    """The shards of a continuation zoo, from its manifest's ``planned`` list (one phase, kind ``continued``)."""
    by_shard: dict[str, list[PlannedModel]] = {}
    for m in manifest["planned"]:
        fields = {k: m[k] for k in ("model_id", "kind", "group", "init_seed", "data_seed", "parent_id", "spawn_step")}
        by_shard.setdefault(m["shard"], []).append(PlannedModel(**fields))
    return [ShardPlan(name, 0, models[0].group, "continued", -1, tuple(models)) for name, models in by_shard.items()]


def manifest_shard(zoo_dir: Path, manifest: dict, shard_name: str) -> tuple[SweepConfig, ShardPlan]:
    """The config and the plan of shard ``shard_name`` of the zoo whose manifest is ``manifest``."""
    config = SweepConfig.from_dict(manifest["config"])
    if manifest.get("source") == "continue":
        sp = next((s for s in shards_from_manifest(manifest) if s.name == shard_name), None)
        if sp is None:
            raise UserError(f"unknown shard {shard_name!r} in continuation zoo '{zoo_dir}'")
        return config, sp
    return config, make_plan(config, manifest.get("models_per_batch")).shard(shard_name)
