"""Sweep configuration: frozen dataclasses loaded from TOML and validated with messages for people.

A config file has the sections ``[task]``, ``[model]``, ``[train]``, ``[seeds]``, optional
``[[spawn]]`` / ``[[finetune]]`` blocks (lineage), and the pipeline sections ``[fingerprints]``,
``[analysis]`` and ``[forecast]`` that later stages read. Every key is checked: an unknown key or a wrong type is a
one-line :class:`~training.core.errors.UserError` naming the dotted key and the valid choices.
Configs round-trip to plain JSON (``to_dict``) for the zoo manifest.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.errors import UserError, choices
from training.core.validate import (
    INT64_MAX,
    check,
    from_mapping,
    key_path,
    positive,
    to_dict,
    within,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# Ranges of the numeric config keys, each with the reason it exists (docs/config.md lists them).
SEED_MAX = INT64_MAX  # seeds are stored as int64 (model tables, torch tensors); derive_seed would alias beyond 2**64
STEP_MAX = 2**31 - 1  # step and epoch counters are mixed into 32-bit hash lanes (training.core.seeds.mix)
BATCH_MAX = 2**20  # a shard holds every model's batch in memory at once
CHECKPOINTS_MAX = 10_000  # each is a group of every shard, evaluated on every task metric
MODELS_MAX = 1_000_000  # the plan and the manifest list every model


def _seed_run(where: str, key: str, start: int, count: int) -> None:
    """Seeds ``start .. start + count - 1`` all in [0, SEED_MAX]."""
    if start < 0:
        raise UserError(f"config key '{key_path(where, key)}' must be >= 0, got {start}")
    if start + count - 1 > SEED_MAX:
        raise UserError(f"config key '{key_path(where, key)}' = {start} puts seed number {count} at {start + count - 1}, "
                        "beyond 2**63 - 1 (seeds are stored as 64-bit integers)")


@dataclass(frozen=True)
class TaskSpec:
    """Which task, and its parameters (validated by the task itself)."""

    name: str
    params: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)  # param -> list of values: one sub-population each

    @classmethod
    def parse(cls, data: Any, where: str = "task") -> "TaskSpec":
        if not isinstance(data, dict):
            raise UserError(f"config section '{where}' must be a table")
        data = dict(data)
        if "name" not in data:
            raise UserError(f"missing config key '{where}.name'")
        name = check(data.pop("name"), str, f"{where}.name")
        sweep = data.pop("sweep", {})
        if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
            raise UserError(f"config key '{where}.sweep' must map parameter names to non-empty lists")
        return cls(name=name, params=data, sweep=sweep)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture name and its hyper-parameters (validated by the family).

    ``sweep`` maps hyper-parameters to lists of values (``sweep = { width = [16, 32, 64] }``): one
    sub-population (group) per combination, labelled ``model.width=16``, for populations at several
    scales. Models of a group share their shapes; shards never mix groups."""

    arch: str | None = None
    params: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)  # hyper-parameter -> list of values: one group each

    @classmethod
    def parse(cls, data: Any, where: str = "model") -> "ModelSpec":
        if not isinstance(data, dict):
            raise UserError(f"config section '{where}' must be a table")
        data = dict(data)
        arch = data.pop("arch", None)
        if arch is not None:
            arch = check(arch, str, f"{where}.arch")
        sweep = data.pop("sweep", {})
        if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
            raise UserError(f"config key '{where}.sweep' must map hyper-parameter names to non-empty lists")
        if "arch" in sweep:  # the architecture decides which keys exist; one per zoo
            raise UserError(f"config key '{where}.sweep' cannot sweep 'arch' (sweep its hyper-parameters, e.g. width, depth)")
        return cls(arch=arch, params=data, sweep=sweep)


_CKPT = re.compile(r"^(log|lin):(\d+)$")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model of a phase."""

    steps: int = 500
    batch_size: int = 64
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | linear
    warmup_steps: int = 0
    grad_clip: float = 0.0  # per-model global-norm clip; 0 = off
    checkpoints: str | list[int] = "log:8"
    save_optimizer_state: bool = False  # store optimiser buffers at checkpoints (exact continuation, `select`)

    def validate(self, where: str) -> None:
        within(where, "steps", self.steps, 1, STEP_MAX, "step counters are 32-bit")
        within(where, "batch_size", self.batch_size, 1, BATCH_MAX)
        positive(where, "lr", self.lr)
        if not 0 <= self.momentum < 1:  # torch refuses < 0 only when a shard starts, after the manifest is written; >= 1 never decays
            raise UserError(f"config key '{where}.momentum' must be in [0, 1), got {self.momentum!r}")
        positive(where, "eps", self.eps)
        positive(where, "weight_decay", self.weight_decay, allow_zero=True)
        positive(where, "grad_clip", self.grad_clip, allow_zero=True)
        within(where, "warmup_steps", self.warmup_steps, 0, STEP_MAX)  # beyond steps: lr never reaches its peak
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise UserError(f"unknown optimizer '{self.optimizer}' at '{where}.optimizer' (valid: adam, adamw, sgd)")
        if self.schedule not in ("constant", "cosine", "linear"):
            raise UserError(f"unknown schedule '{self.schedule}' at '{where}.schedule' (valid: constant, cosine, linear)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"config key '{where}.betas' must be two numbers in [0, 1)")
        checkpoint_steps(self.checkpoints, self.steps, where=f"{where}.checkpoints")


def checkpoint_steps(spec: str | list[int], total: int, where: str = "train.checkpoints") -> list[int]:
    """Resolve a checkpoint spec to sorted unique steps in [0, total], always including ``total``.

    ``"log:K"`` gives K log-spaced steps (plus 0 and the end), ``"lin:K"`` K evenly spaced ones,
    a list gives exactly those steps.
    """
    if isinstance(spec, str):
        m = _CKPT.match(spec)
        if not m:
            raise UserError(f"config key '{where}' must be 'log:K', 'lin:K' or a list of steps, got {spec!r}")
        kind, k = m.group(1), int(m.group(2))
        if k < 1:
            raise UserError(f"config key '{where}' = {spec!r} asks for {k} checkpoints; K must be at least 1 "
                            "(the final step is always kept: use [] for no others)")
        if k > CHECKPOINTS_MAX:  # each costs a group in every shard (a K beyond the steps only repeats steps)
            raise UserError(f"config key '{where}' = {spec!r} asks for {k} checkpoints; K must be at most {CHECKPOINTS_MAX}")
        if kind == "log":
            import numpy as np

            steps = {0, total} | {int(round(s)) for s in np.geomspace(1, total, num=max(k, 1))} if total > 0 else {0}
        else:
            steps = {int(round(total * i / max(k, 1))) for i in range(k + 1)}
    else:
        bad = [s for s in spec if not 0 <= s <= total]
        if bad:
            raise UserError(f"config key '{where}' has step {bad[0]} outside [0, {total}]")
        steps = set(spec) | {total}
        if len(steps) > CHECKPOINTS_MAX:
            raise UserError(f"config key '{where}' lists {len(steps)} checkpoint steps; at most {CHECKPOINTS_MAX}")
    return sorted(steps)


@dataclass(frozen=True)
class SeedGrid:
    """``init`` x ``data`` seeds: a family is the models that share an init seed."""

    init: int | list[int] = 8
    data: int | list[int] = 1
    init_start: int = 0
    data_start: int = 0

    def validate(self, where: str) -> None:
        for key in ("init", "data"):
            v = getattr(self, key)
            if isinstance(v, int):
                within(where, key, v, 1, MODELS_MAX, "seeds per sweep")
                _seed_run(where, f"{key}_start", getattr(self, f"{key}_start"), v)
            elif not v or any(not 0 <= s <= SEED_MAX for s in v):
                raise UserError(f"config key '{where}.{key}' must be a count in [1, {MODELS_MAX}] or a list of seeds in "
                                "[0, 2**63 - 1]")
            elif len(v) > MODELS_MAX:
                raise UserError(f"config key '{where}.{key}' lists {len(v)} seeds; at most {MODELS_MAX}")
        within(where, "init_start", self.init_start, 0, SEED_MAX)
        within(where, "data_start", self.data_start, 0, SEED_MAX)

    def init_seeds(self) -> list[int]:
        return list(self.init_seeds_range())

    def data_seeds(self) -> list[int]:
        return list(self.data_seeds_range())

    def init_seeds_range(self) -> Sequence[int]:
        return range(self.init_start, self.init_start + self.init) if isinstance(self.init, int) else self.init

    def data_seeds_range(self) -> Sequence[int]:
        return range(self.data_start, self.data_start + self.data) if isinstance(self.data, int) else self.data


@dataclass(frozen=True)
class SpawnSpec:
    """Children that restart from a parent's checkpoint at ``at_step`` with new data seeds.

    The linear-mode-connectivity "spawn" protocol: the child continues the parent's schedule from
    ``at_step`` to the end with a fresh optimiser state and a data order from its own data seed.
    """

    at_step: int
    children: int = 2
    data_seed_start: int = 1000

    def validate(self, where: str) -> None:
        within(where, "at_step", self.at_step, 0, STEP_MAX)
        within(where, "children", self.children, 1, MODELS_MAX)
        _seed_run(where, "data_seed_start", self.data_seed_start, self.children)


@dataclass(frozen=True)
class FinetuneSpec:
    """Children fine-tuned from a parent's final weights on a variant of the task."""

    task: dict = field(default_factory=dict)  # overrides of the task's parameters
    children: int = 1
    data_seed_start: int = 2000
    train: dict = field(default_factory=dict)  # overrides of [train] for the fine-tune phase
    name: str = "ft"

    def validate(self, where: str) -> None:
        within(where, "children", self.children, 1, MODELS_MAX)
        _seed_run(where, "data_seed_start", self.data_seed_start, self.children)
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise UserError(f"config key '{where}.name' must be alphanumeric, got {self.name!r}")


@dataclass(frozen=True)
class SweepConfig:
    """Everything needed to plan and train a population."""

    task: TaskSpec
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: SeedGrid = field(default_factory=SeedGrid)
    spawn: list[SpawnSpec] = field(default_factory=list)
    finetune: list[FinetuneSpec] = field(default_factory=list)
    name: str = "sweep"
    models_per_batch: int = 256
    fingerprints: dict = field(default_factory=dict)  # read by the pipeline (fingerprint run)
    analysis: dict = field(default_factory=dict)
    forecast: dict = field(default_factory=dict)  # forecast and selection after the analysis (fingerprint run)

    SECTIONS = ("name", "task", "model", "train", "seeds", "spawn", "finetune", "models_per_batch", "fingerprints", "analysis",
                "forecast")

    @classmethod
    def from_dict(cls, data: dict) -> "SweepConfig":
        """A validated config from a TOML file's tables, or from a trained zoo's manifest: for an open
        zoo, ``SweepConfig.from_dict(zoo.config)`` is the way to get its config (the manifest is
        already read; nothing else re-reads it)."""
        unknown_keys = [k for k in data if k not in cls.SECTIONS]
        if unknown_keys:
            raise UserError(f"unknown config key '{unknown_keys[0]}' (valid: {choices(cls.SECTIONS)})")
        if "task" not in data:
            raise UserError("missing config section '[task]'")
        task = TaskSpec.parse(data["task"])
        model = ModelSpec.parse(data.get("model", {}))
        train = from_mapping(TrainConfig, data.get("train", {}), "train")
        seeds = from_mapping(SeedGrid, data.get("seeds", {}), "seeds")
        spawn = [from_mapping(SpawnSpec, s, f"spawn[{i}]") for i, s in enumerate(_as_list(data.get("spawn", []), "spawn"))]
        for i, s in enumerate(spawn):
            if s.at_step > train.steps:
                raise UserError(f"config key 'spawn[{i}].at_step' is {s.at_step}, past train.steps = {train.steps}")
        finetune = [from_mapping(FinetuneSpec, s, f"finetune[{i}]") for i, s in enumerate(_as_list(data.get("finetune", []), "finetune"))]
        name = check(data.get("name", "sweep"), str, "name")
        mpb = check(data.get("models_per_batch", 256), int, "models_per_batch")
        within("", "models_per_batch", mpb, 1, MODELS_MAX)
        fps = check(data.get("fingerprints", {}), dict, "fingerprints")
        ana = check(data.get("analysis", {}), dict, "analysis")
        fc = check(data.get("forecast", {}), dict, "forecast")
        cfg = cls(task=task, model=model, train=train, seeds=seeds, spawn=spawn, finetune=finetune,
                  name=name, models_per_batch=mpb, fingerprints=fps, analysis=ana, forecast=fc)
        n = cfg.n_planned()
        if n > MODELS_MAX:  # counted, not listed: listing 10**8 planned models is itself the MemoryError
            raise UserError(f"the config plans {n:,} models (task.sweep x model.sweep groups x seeds.init x seeds.data x "
                            f"(1 + spawn and finetune children)); at most {MODELS_MAX:,}")
        return cfg

    def n_planned(self) -> int:
        """How many models the plan holds, computed without listing them."""
        groups = math.prod(len(v) for v in self.task.sweep.values()) * math.prod(len(v) for v in self.model.sweep.values())
        per_seed = 1 + sum(s.children for s in self.spawn) + sum(f.children for f in self.finetune)
        return groups * len(self.seeds.init_seeds_range()) * len(self.seeds.data_seeds_range()) * per_seed

    def to_dict(self) -> dict:
        d = to_dict(self)
        d["task"] = {"name": self.task.name, **self.task.params, **({"sweep": self.task.sweep} if self.task.sweep else {})}
        d["model"] = {**({"arch": self.model.arch} if self.model.arch else {}), **self.model.params,
                      **({"sweep": self.model.sweep} if self.model.sweep else {})}
        return d


def _as_list(v: Any, where: str) -> list:
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, list):
        raise UserError(f"config key '{where}' must be a table or an array of tables")
    return v


def builtin_config_dir() -> Path:
    return Path(__file__).resolve().parent / "configs"


def builtin_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (file stem)."""
    return {p.stem: p for p in sorted(builtin_config_dir().glob("*.toml"))}


def config_file(path: str | Path) -> Path:
    """The file a config reference names: a TOML path, or a built-in config's file by name."""
    p = Path(path)
    if not p.exists():
        builtins = builtin_configs()
        if str(path) in builtins:
            return builtins[str(path)]
        raise UserError(f"config file '{path}' not found (built-in configs: {choices(builtins)})")
    return p


def read_config_file(path: str | Path) -> dict:
    """Read a TOML file (or a built-in config by name) into a dict, with a readable error."""
    p = config_file(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file '{p}' is not valid TOML: {e}") from None


def load_config(path: str | Path) -> SweepConfig:
    """Load and validate a sweep config from a TOML path or a built-in config name."""
    return SweepConfig.from_dict(read_config_file(path))
