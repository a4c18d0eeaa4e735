"""How to run a zoo's models: its family (architecture) and its probe-set provider.

A zoo trained here rebuilds both from its config (the task gives the probe sets). An imported zoo
rebuilds its architecture from the ``module:factory`` it was imported with (or the in-memory
factory of ``Zoo.from_modules``) and reads its probe sets from ``ZOO/probes.h5``. Extractors see
either one through the same small interface: ``probe_names()``, ``probes(name)``, ``input_shape``,
``n_out``.

A zoo is data, and may come from anyone: nothing here imports or calls code that a zoo names (an
imported zoo's ``module:factory`` and its ``factory_dir``, a sweep's ``module:Class`` task) unless
the user vouched for it -- ``Zoo.open(..., trust_code=True)`` (``--trust-code``), their own factory
(:func:`use_architecture`, ``--arch``), or having named that factory themselves in this process.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fingerprint.hf_family import family_from_spec, require_transformers
from fingerprint.usercode import (
    TRUSTED_FACTORIES,
    build_template,
    resolve,
    resolve_factory,
)
from training.config import SweepConfig
from training.core import store as zoo_io
from training.core.errors import UserError, unknown
from training.families.module import ModuleFamily
from training.plan import MODEL_PREFIX, group_settings
from training.sweep import build_family, build_task
from training.tasks import list_tasks
from training.tasks.base import task_code


@dataclass
class ProbeSets:
    """The probe-only "task" of an imported zoo.

    It offers the probe API extractors see through :class:`~fingerprint.batch.TaskView` (the API a
    task offers too): ``name``, ``input_shape``, ``n_out``, ``layers``, ``probe_names()``,
    ``probes(name)`` -> inputs ``[n_probes, *input_shape]``, and ``hypotheses()`` -> ``{name:
    hypothesis}`` for ``causal-ii``, where a hypothesis has ``description``, ``layer``, ``position``,
    ``k`` and ``sample(n, generator)`` returning (base, source) pairs with their counterfactual labels
    (``training.tasks.Hypothesis`` is one). ``causal`` holds an imported zoo's hypotheses, if its
    owner supplies some; by default there are none.
    """

    sets: dict[str, torch.Tensor]
    n_out: int
    name: str = "imported"
    layers: list[str] = field(default_factory=list)
    causal: dict[str, Any] = field(default_factory=dict)
    privileged_probes: tuple[str, ...] = ()  # declared at import: built from the ground truth
    data_dir: Path | None = None  # the zoo whose data.h5 holds its labelled data (read on first use)
    _data: Any = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.sets.values())).shape[1:]) if self.sets else ()

    def probe_names(self) -> list[str]:
        return list(self.sets)

    def probes(self, name: str) -> torch.Tensor:
        if name not in self.sets:
            raise unknown("probe set of this imported zoo", name, self.sets)
        return self.sets[name]

    def hypotheses(self) -> dict[str, Any]:
        return dict(self.causal)

    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled data given at import, ``(x [N, *input_shape], y [N, ...])``."""
        return self._labelled()[:2]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-model mean loss ``[n]`` from outputs ``[n, B, n_out]`` and targets ``[n, B, ...]``:
        cross-entropy for class indices, squared error for float targets (as a built-in task's)."""
        if self._labelled()[2] == "classification":
            return torch.nn.functional.cross_entropy(out.movedim(-1, 1), y.long(), reduction="none").flatten(1).mean(1)
        return (out.squeeze(-1) if y.dim() == out.dim() - 1 else out).sub(y).pow(2).flatten(1).mean(1)

    def data_loss(self) -> str | None:
        """The labelled data's loss (``"classification"`` or ``"regression"``), ``None`` without data."""
        found = self._loaded()
        return None if found is None else found[2]

    def _loaded(self) -> tuple[torch.Tensor, torch.Tensor, str] | None:
        """The labelled data, read on first use (``None``: imported without)."""
        if self._data is None and self.data_dir is not None:
            self._data = zoo_io.read_data(self.data_dir)
        return self._data

    def _labelled(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        found = self._loaded()
        if found is None:
            raise UserError("this imported zoo has no labelled data: import it with --data module:function "
                            "(a function returning (x, y) tensors; in Python Zoo.from_modules(..., data=(x, y)))")
        return found


def is_imported(zoo: zoo_io.Zoo) -> bool:
    return zoo.manifest.get("source") in ("import", "modules")


def family_for(zoo: zoo_io.Zoo, group: str = ""):
    """The batched family that runs this zoo's stacked parameters (those of ``group``'s models, in a
    zoo whose ``model.sweep`` gives groups different architectures)."""
    if is_imported(zoo):
        spec = zoo.family_spec
        if spec.get("arch") == "hf":  # the config is data: transformers' own class for it, no code from the zoo
            return zoo.__dict__.setdefault("_hf_family", family_from_spec(spec))
        if zoo.module_factory is not None:
            factory = zoo.module_factory
        elif spec.get("factory"):
            factory = _named_factory(zoo, str(spec["factory"]), spec.get("factory_dir"))
        else:
            raise UserError(f"zoo '{zoo.path}' was built from in-memory modules of {spec.get('class')}; "
                            "reopen it with Zoo.from_modules or set zoo.module_factory")
        return ModuleFamily(factory=factory, input_shape=tuple(spec.get("input_shape") or ()), n_out=int(spec.get("n_out", -1)),
                            label=str(spec.get("factory") or spec.get("class")))
    return _trained_parts(zoo, group)[0]


def model_setting(zoo: zoo_io.Zoo, model_ids: Sequence[str]) -> list[str]:
    """Each model's ``model.sweep`` setting (``"model.width=16"``; ``""`` outside a model sweep) ``[n]``:
    models with equal settings share their parameter shapes and can be stacked."""
    model = zoo.config.get("model") if isinstance(zoo.config, dict) else None
    if is_imported(zoo) or not (isinstance(model, dict) and model.get("sweep")) or "group" not in zoo.models.names():
        return [""] * len(model_ids)
    names, inv = np.unique(np.asarray(zoo.models["group"], dtype=str)[zoo.index(model_ids)], return_inverse=True)
    own = [",".join(f"{k}={v}" for k, v in group_settings(str(g)).items() if k.startswith(MODEL_PREFIX)) for g in names]
    return [own[i] for i in inv.ravel()]


def stackable_runs(zoo: zoo_io.Zoo, model_ids: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``model_ids`` cut into runs of consecutive models of one architecture: ``[(a group of the
    run, ids), ...]``, in order (one run outside a ``model.sweep``)."""
    ids = list(model_ids)
    if not ids:
        return []
    setting = model_setting(zoo, ids)
    groups = (np.asarray(zoo.models["group"], dtype=object)[zoo.index(ids)] if any(setting) else [""] * len(ids))
    runs: list[tuple[str, list[str]]] = []
    for i, m in enumerate(ids):
        if runs and setting[i] == setting[i - 1]:
            runs[-1][1].append(m)
        else:
            runs.append((str(groups[i]), [m]))
    return runs


def check_code(zoo: zoo_io.Zoo) -> None:
    """Raise the one-line refusal now if running this zoo's models would import code it names
    without the user's consent (extraction calls this before its first computation, so the whole
    call stops with the reason instead of every extractor failing with it)."""
    spec = zoo.family_spec
    if is_imported(zoo):
        if spec.get("arch") == "hf":
            require_transformers("running the models of an HF zoo")
        elif zoo.module_factory is None and spec.get("factory"):
            _named_factory(zoo, str(spec["factory"]), spec.get("factory_dir"), load=False)
        return
    name = (zoo.config.get("task") or {}).get("name") if isinstance(zoo.config.get("task"), dict) else None
    if isinstance(name, str):
        check_task_code(zoo, name)


def untrusted(zoo: zoo_io.Zoo, what: str, task: bool = False) -> UserError:
    """The one-line refusal to run code a zoo names, saying why and what the user can pass (a sweep's
    ``module:Class`` task: only --trust-code; --arch is for an imported zoo's architecture)."""
    other = ("" if task else ", or --arch MODULE:FACTORY to build the architecture with your own code")
    python = "Zoo.open(path, trust_code=True)" + ("" if task else ", or set zoo.module_factory")
    return UserError(f"zoo '{zoo.path}' names code to run its models ({what}); a zoo may come from anyone, so its code "
                     f"is never imported unless you say so: pass --trust-code if you trust where the zoo came from"
                     f"{other} (in Python: {python})")


def _named_factory(zoo: zoo_io.Zoo, spec: str, directory: Any, load: bool = True) -> Any:
    """The factory an imported zoo's manifest names, imported only with the user's consent
    (``load=False``: only check for it)."""
    if spec in TRUSTED_FACTORIES:  # the user named this factory in this process: their own code, found as they found it
        return resolve(spec, "architecture factory") if load else None
    where = f" from '{directory}'" if directory else ""
    if not zoo.trust_code:
        raise untrusted(zoo, f"architecture factory '{spec}'{where}")
    if not load:
        return None
    if directory and not Path(str(directory)).is_absolute():  # relative to the zoo, not to wherever we run
        directory = str((zoo.path / str(directory)).resolve())
    return resolve_factory(spec, str(directory) if directory else None)


def check_task_code(zoo: zoo_io.Zoo, name: str) -> None:
    """Refuse a sweep zoo's ``module:Class`` task unless it is registered, already imported by the
    user, or the zoo is trusted: building it would import a module the zoo names."""
    if ":" not in name or zoo.trust_code:
        return
    if name in list_tasks() or name.partition(":")[0] in sys.modules:
        return
    raise untrusted(zoo, f"task '{name}'", task=True)


def use_architecture(zoo: zoo_io.Zoo, arch: str) -> None:
    """Run an imported zoo's models with the user's own factory ``arch`` (``module:function``,
    ``--arch``) instead of the one its manifest names; its parameters must match the zoo's."""
    if not is_imported(zoo):
        raise UserError(f"--arch is for imported zoos; zoo '{zoo.path}' was trained here with the built-in "
                        f"architecture '{zoo.family_spec.get('arch')}'")
    if zoo.family_spec.get("arch") == "hf":
        raise UserError(f"--arch is not for zoo '{zoo.path}': it was imported with --hf, and its models run as transformers' "
                        "own class for their stored config.json")
    factory = resolve(arch, "architecture factory")
    want = {k: tuple(v.shape) for k, v in build_template(factory, arch).state_dict().items()}
    have = {k: tuple(shape[1:]) for k, shape in zoo.shards[0].param_shapes.items()} if zoo.shards else want
    bad = next((k for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)), None)
    if bad is not None:
        raise UserError(f"architecture '{arch}' does not match zoo '{zoo.path}': parameter '{bad}' is "
                        f"{list(want[bad]) if bad in want else 'missing'} in it and "
                        f"{list(have[bad]) if bad in have else 'missing'} in the zoo")
    zoo.module_factory = factory


def _trained_parts(zoo: zoo_io.Zoo, group: str = "") -> tuple[Any, Any]:
    """``(family, task)`` of a zoo trained by a sweep, built once per open zoo (and group of a
    ``model.sweep``) from its stored config; the task (probe sets) is the first group's.

    Extraction asks for them once per chunk of models; rebuilding them each time (reading the
    manifest, validating the config) cost as much as fingerprinting a chunk of small models.
    """
    cache = zoo.__dict__.setdefault("_trained_parts", {})
    if group not in cache:
        config = SweepConfig.from_dict(zoo.config)  # the manifest the open zoo already holds
        check_task_code(zoo, config.task.name)
        task = build_task(config, next(iter(zoo.manifest.get("task", {}).get("groups") or {"": {}})))
        before, now = (zoo.manifest.get("task") or {}).get("code"), task_code(task)
        if before and now and before != now:  # once per open zoo: its parts are built once
            warnings.warn(f"task '{config.task.name}' has changed since zoo '{zoo.path}' was trained (its module's source "
                          "differs): probes it makes now may differ from those the cached fingerprints were computed on; "
                          f"`fingerprint extract {zoo.path} --force` recomputes them all", stacklevel=2)
        own = group if config.model.sweep else ""  # task.sweep groups share one architecture
        cache[group] = (build_family(config, build_task(config, own) if own else task, own), task)
    return cache[group]


def check_task_unchanged(zoo: zoo_io.Zoo) -> None:
    """Say an edited task plugin (the warning of :func:`_trained_parts`) when an extraction computed
    nothing, so built no task (outside audit 121, F8: every fingerprint asked for was cached on the old
    probes, and nothing was said). Only where the task can be built without importing code the zoo
    names (trusted, registered, or imported by the user); a plugin that cannot be built says nothing here."""
    if is_imported(zoo) or not (zoo.manifest.get("task") or {}).get("code"):
        return
    try:
        check_task_code(zoo, str((zoo.config.get("task") or {}).get("name", "")))  # refused: nothing imported
        _trained_parts(zoo)
    except UserError:  # not allowed, or its file gone or broken: the cached fingerprints are served as they are
        pass


def privileged_probes(zoo: zoo_io.Zoo) -> set[str]:
    """The zoo's probe sets built from the ground truth (a task's ``privileged_probes``, or declared at import)."""
    if is_imported(zoo):
        return set(zoo.family_spec.get("privileged_probes") or ())
    return set(getattr(task_for(zoo), "privileged_probes", ()) or ())


def task_for(zoo: zoo_io.Zoo) -> Any:
    """The object extractors get probe sets from (the task, or an imported zoo's stored probes)."""
    if is_imported(zoo):
        sets = zoo_io.read_probes(zoo.path)
        return ProbeSets(sets, n_out=int(zoo.family_spec.get("n_out", -1)), layers=list(zoo.family_spec.get("layers") or []),
                         privileged_probes=tuple(zoo.family_spec.get("privileged_probes") or ()), data_dir=zoo.path)
    return _trained_parts(zoo)[1]
