"""The task API: data, probe sets, and ground-truth diagnostics.

A task is a frozen dataclass whose fields are its parameters. It declares the input/output spec
and a default architecture; gives a deterministic train sampler driven by each model's data seed;
names **probe sets** for fingerprints (``in_dist``, ``ood``, and task-specific ones); and computes
**ground-truth diagnostics** after training from behaviour on held-out diagnostic inputs: a
categorical ``deep_label`` per model plus the continuous scores it came from.

A task knows nothing about fingerprints. Everything it returns is a function of its parameters
(and, for per-model data, of each model's seeds), so probe sets are identical across processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from training.core import seeds as rng
from training.core.errors import PluginError, UserError, choices, unknown
from training.core.imports import resolve
from training.core.validate import check, type_name

# ``forward(x)`` runs the whole population: x shared ``[n_inputs, *input_shape]`` -> ``[n_models, n_inputs, n_out]``.
Forward = Callable[[torch.Tensor], torch.Tensor]


def _take(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``data[idx]`` (rows of ``data [N, ...]`` at ``idx [n, B]``) via ``index_select``: ~3x faster."""
    return data.index_select(0, idx.reshape(-1)).view(*idx.shape, *data.shape[1:])


class DataOrder:
    """Epoch-wise per-model shuffling of a finite data set of size ``n_data``.

    ``indices(step)`` gives ``[n_models, batch_size]``: model ``j``'s batch at ``step`` depends only on
    its data state (from its data seed) — the permutation of each epoch is a counter-based hash.
    """

    def __init__(self, data_states: torch.Tensor, n_data: int, batch_size: int):
        self.states = data_states
        self.n_data = n_data
        self.batch_size = min(batch_size, n_data)
        self.per_epoch = max(n_data // self.batch_size, 1)
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = rng.permutation(self.states, self.n_data, epoch)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[:, k * self.batch_size : (k + 1) * self.batch_size]


@dataclass(frozen=True)
class Task:
    """Base class for tasks. Subclasses are frozen dataclasses registered with :func:`register_task`."""

    name: ClassVar[str] = "task"
    description: ClassVar[str] = ""
    loss_kind: ClassVar[str] = "classification"  # or "regression"
    deep_labels: ClassVar[tuple[str, ...]] = ()
    variant_names: ClassVar[tuple[str, ...]] = ("default",)

    # -- spec ----------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def n_out(self) -> int:
        raise NotImplementedError

    def default_model(self) -> dict[str, Any]:
        """Default ``[model]`` section: ``{"arch": ..., **hyper-parameters}``."""
        return {"arch": "mlp", "width": 64, "depth": 2}

    def validate(self) -> None:
        """Raise :class:`UserError` for bad parameters (one line, naming the key)."""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- data ----------------------------------------------------------------------------------
    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The finite training set ``(x [N, *input_shape], y [N, ...])``."""
        raise NotImplementedError

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out data from the training distribution."""
        raise NotImplementedError

    def variant(self, init_seeds: torch.Tensor, data_seeds: torch.Tensor) -> torch.Tensor:
        """Per-model training condition ``[n]`` (e.g. poisoned or not); a function of seeds only."""
        return torch.zeros(len(init_seeds), dtype=torch.int64)

    def sampler(self, data_states: torch.Tensor, batch_size: int, variant: torch.Tensor) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
        """``step -> (x [n, B, *input_shape], y [n, B, ...])``. Default: shuffled epochs of ``train_set``."""
        x, y = self.train_set()
        order = DataOrder(data_states, len(x), batch_size)

        def sample(step: int):
            idx = order.indices(step)
            return _take(x, idx), _take(y, idx)

        return sample

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-model mean loss ``[n]`` from outputs ``[n, B, n_out]`` and targets ``[n, B]``."""
        if self.loss_kind == "classification":
            if out.dim() > 2 and out.is_contiguous():
                # outputs laid out class-last (a transformer's): rows of classes, no transposed copy
                n_out = out.shape[-1]
                return F.cross_entropy(out.reshape(-1, n_out), y.long().reshape(-1), reduction="none").view(out.shape[0], -1).mean(1)
            # classes moved to axis 1 (torch's ``[N, C, d1, ...]`` form): a contiguous pass when the
            # outputs come class-major, as the MLP trainer computes them
            return F.cross_entropy(out.movedim(-1, 1), y.long(), reduction="none").flatten(1).mean(1)
        return (out.squeeze(-1) - y).pow(2).flatten(1).mean(1)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, forward: Forward, variant: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final metrics per model ``[n]``: ``train_loss``, ``test_loss`` and (classification) accuracies."""
        out: dict[str, torch.Tensor] = {}
        for split, (x, y) in (("train", self.train_set()), ("test", self.test_set())):
            o = forward(x)
            out[f"{split}_loss"] = self.loss(o, y.expand(o.shape[0], *y.shape))
            if self.loss_kind == "classification":
                out[f"{split}_acc"] = (o.argmax(-1) == y).float().flatten(1).mean(1)
        return out

    # -- probes and diagnostics ----------------------------------------------------------------
    # Probe sets built from the ground truth (where the deep labels differ, the planted trigger): a
    # fingerprint on one is marked privileged: not something a user without the answer could compute.
    # Reports mark it "privileged" and never call it best without that mark.
    privileged_probes: ClassVar[tuple[str, ...]] = ()

    def probe_names(self) -> list[str]:
        return ["in_dist", "ood"]

    def probes(self, name: str) -> torch.Tensor:
        """Probe inputs ``[n_probes, *input_shape]`` for fingerprints; deterministic per task params."""
        raise unknown(f"probe set of task '{self.name}'", name, self.probe_names())

    def diagnostics(self, forward: Forward, variant: torch.Tensor) -> dict[str, Any]:
        """Ground truth per model: ``deep_label`` (array of str ``[n]``) plus continuous scores ``[n]``."""
        return {}

    def behaviour_label(self, diagnostics: dict[str, Any]) -> np.ndarray:
        """The basin each model is in by its behaviour alone ``[n]``, from :meth:`diagnostics`' output.

        ``deep_label`` where that is measured (the default). A task whose ``deep_label`` is planted
        (the training condition: poisoned or not) overrides this with the measured behaviour, so that
        a model trained further (``fingerprint goodhart``) is relabelled by what it does now.
        """
        return np.asarray(diagnostics["deep_label"], dtype=object)

    def hypotheses(self) -> dict[str, "Hypothesis"]:
        """Candidate high-level algorithms for the ``causal-ii`` fingerprint: ``{name: Hypothesis}``.

        Default: none. A task that declares some lets ``causal-ii`` score every model by how well
        each hypothesis's variable can be found (and swapped) inside it.
        """
        return {}

    # -- helpers for subclasses -----------------------------------------------------------------
    def _gen(self, *keys: int) -> torch.Generator:
        return rng.generator(rng.TASK, getattr(self, "seed", 0), *keys)


@dataclass(frozen=True)
class Interchange:
    """A batch of interchange interventions for one hypothesis.

    ``base`` and ``source`` are inputs ``[B, *input_shape]``; ``base_value`` / ``source_value`` the
    hypothesis's high-level variable on each (``[B, ...]``); ``counterfactual [B]`` the label the
    hypothesis predicts when the variable of ``base`` is set to ``source_value`` and everything else
    is left as it was in ``base``.
    """

    base: torch.Tensor
    source: torch.Tensor
    base_value: torch.Tensor
    source_value: torch.Tensor
    counterfactual: torch.Tensor


@dataclass(frozen=True)
class Hypothesis:
    """A candidate high-level algorithm, reduced to one causal variable and its interchange prediction.

    ``sample(n, generator)`` returns an :class:`Interchange` of ``n`` (base, source) pairs, drawn so
    that the variable differs between base and source (an intervention that does nothing cannot
    score). ``layer`` names the activation where the variable is looked for (``""``: the extractor's
    default) and ``position`` the token position to patch for sequence models (``None``: every
    position the activation has, i.e. the whole vector for MLPs). ``k`` suggests the dimension of
    the subspace that should hold the variable (0: the extractor's default).
    """

    description: str
    sample: Callable[[int, torch.Generator], Interchange]
    layer: str = ""
    position: int | None = None
    k: int = 0


def label_from_score(score: np.ndarray, hi: float, lo: float, labels: tuple[str, str, str]) -> np.ndarray:
    """``labels[0]`` where score >= hi, ``labels[1]`` where score <= lo, else ``labels[2]``."""
    score = np.asarray(score, dtype=float)
    return np.where(score >= hi, labels[0], np.where(score <= lo, labels[1], labels[2])).astype(object)


# -- registry -----------------------------------------------------------------------------------
_TASKS: dict[str, type[Task]] = {}
_ENTRY_POINTS_LOADED = False
ENTRY_POINT_GROUP = "fingerprint.tasks"


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by ``cls.name`` (plugins use the same decorator)."""
    _TASKS[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise PluginError(f"task plugin '{ep.name}' ({ep.value}) failed to import: {type(e).__name__}: {e}") from None
        if isinstance(obj, type) and issubclass(obj, Task):
            _TASKS.setdefault(obj.name, obj)


def reset_task_plugins() -> None:
    """Forget tasks registered from entry points so the next lookup rescans them (for tests).

    A built-in is any task defined in this package (``training.tasks.*``): derived, not listed, so a
    new built-in cannot be forgotten here."""
    global _ENTRY_POINTS_LOADED
    for name, cls in list(_TASKS.items()):
        if not cls.__module__.startswith(f"{__package__}."):
            del _TASKS[name]
    _ENTRY_POINTS_LOADED = False


def list_tasks() -> dict[str, type[Task]]:
    # the built-ins are registered already: importing this module first runs training/tasks/__init__.py
    _load_entry_points()
    return dict(_TASKS)


def task_param_specs(cls: type[Task]) -> dict[str, tuple[str, Any]]:
    """``name -> (type name, default)`` for ``fingerprint list``."""

    hints = typing.get_type_hints(cls)
    return {f.name: (type_name(hints[f.name]), f.default) for f in dataclasses.fields(cls)}


def named_task(spec: str, what: str = "plugin") -> type[Task] | None:
    """The :class:`Task` subclass ``module:Class`` names, else ``None`` (another object: an extractor function);
    ``what`` names it in the error when it cannot be imported."""
    obj = resolve(spec, what)
    return obj if isinstance(obj, type) and issubclass(obj, Task) else None


def module_tasks(module: str) -> dict[str, type[Task]]:
    """The tasks registered (``@register_task``) from ``module``, imported already, or its submodules: what
    ``fingerprint list --plugin MODULE`` lists of a task plugin."""
    return {n: c for n, c in list_tasks().items() if c.__module__ == module or c.__module__.startswith(module + ".")}


def _import_task(spec: str) -> type[Task]:
    """``module:Class`` names a user task that is importable but not registered."""
    cls = named_task(spec, "task")
    if cls is None:
        raise PluginError(f"task '{spec}' is not a Task subclass")
    return cls


def builtin_task(task: Task) -> bool:
    """Is ``task`` one of the package's own (``training.tasks``), not a plugin?"""
    return builtin_task_class(type(task))


def builtin_task_class(cls: type) -> bool:
    """Is the task class ``cls`` one of the package's own?"""
    return cls.__module__.startswith("training.tasks.")


def _loose_fields(cls: type) -> list[str]:
    """Fields a task class annotates that are no dataclass fields: each class of the hierarchy that
    annotates fields must itself be a dataclass (else they are plain class attributes, not parameters)."""
    loose = []
    for klass in cls.__mro__:
        if klass is object or "__dataclass_fields__" in klass.__dict__:
            continue
        loose += [k for k, a in inspect.get_annotations(klass).items() if "ClassVar" not in str(a)]
    return loose


def task_code(task: Task) -> str | None:
    """12 hex digits of sha256 of the source file of a task plugin's module (its probes and data may
    come from any function there), ``None`` for a built-in task (the package's own code) or where
    Python keeps no file. The sweep records it in the manifest; a zoo whose plugin's file has changed
    since says so when its task is built again (an outside audit, 71: an edited plugin's new probes
    were mixed silently with fingerprints cached on the old ones)."""
    if builtin_task(task):
        return None
    try:
        path = inspect.getsourcefile(type(task))
        return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except (OSError, TypeError):
        return None


def get_task(name: str, params: dict | None = None) -> Task:
    """Build a task from its name and parameters; unknown or ill-typed parameters are one-line errors."""

    tasks = list_tasks()
    if ":" in name and name not in tasks:
        cls = _import_task(name)
    elif name not in tasks:  # a plugin registered by a module nobody imported reads as unknown: say how to name it
        raise UserError(f"unknown task {name!r} (valid: {choices(tasks)}; a task plugin: name it module:Class, or "
                        "install it under the entry-point group fingerprint.tasks)")
    else:
        cls = tasks[name]
    plugin = not builtin_task_class(cls)  # a plugin: a dataclass, what it must define, its own validate(), each one line
    loose = _loose_fields(cls) if plugin else []
    if loose:  # outside audit 121 (F9): a plain class trained, its annotated fields silently not parameters
        raise PluginError(f"task '{name}' is not a dataclass: its field(s) {', '.join(loose)} would not be parameters "
                          "(decorate the class with @dataclass(frozen=True), as Task is)")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    clean = {}
    for k, v in (params or {}).items():
        if k not in fields:
            raise UserError(f"unknown parameter 'task.{k}' for task '{name}' (valid: {', '.join(sorted(fields))})")
        clean[k] = check(v, hints[k], f"task.{k}")
    task = cls(**clean)
    missing = [m for m in REQUIRED if getattr(cls, m, None) is getattr(Task, m)] if plugin else []
    if missing:  # outside audit 121: a traceback ending in NotImplementedError, or an empty message
        raise PluginError(f"task '{name}' does not define {', '.join(missing)} (a task defines {', '.join(REQUIRED)}: "
                          "docs/tasks.md, 'Writing your own task')")
    try:
        task.validate()
    except UserError:
        raise
    except Exception as e:  # a built-in's bug is a traceback; a plugin's own check is said as its message
        if not plugin:
            raise
        raise PluginError(f"task '{name}': validate() raised {type(e).__name__}: {e}") from None
    return task


REQUIRED = ("input_shape", "n_out", "train_set", "test_set")  # what a task plugin must define (Task raises otherwise)
