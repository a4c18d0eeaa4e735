"""How to run a zoo's models: its family (architecture) and its probe-set provider.

A zoo trained here rebuilds both from its config (the task gives the probe sets). An imported zoo
rebuilds its architecture from the ``module:factory`` it was imported with (or the in-memory
factory of ``Zoo.from_modules``) and reads its probe sets from ``ZOO/probes.h5``. Extractors see
either one through the same small interface: ``probe_names()``, ``probes(name)``, ``input_shape``,
``n_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fingerprint import zoo as zoo_io
from fingerprint.errors import UserError, unknown


@dataclass
class ProbeSets:
    """The probe-only "task" of an imported zoo."""

    sets: dict[str, torch.Tensor]
    n_out: int
    name: str = "imported"
    layers: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.sets.values())).shape[1:]) if self.sets else ()

    def probe_names(self) -> list[str]:
        return list(self.sets)

    def probes(self, name: str) -> torch.Tensor:
        if name not in self.sets:
            raise unknown("probe set of this imported zoo", name, self.sets)
        return self.sets[name]


def is_imported(zoo: zoo_io.Zoo) -> bool:
    return zoo.manifest.get("source") in ("import", "modules")


def family_for(zoo: zoo_io.Zoo):
    """The batched family that runs this zoo's stacked parameters."""
    if is_imported(zoo):
        from training.families.module import ModuleFamily

        spec = zoo.family_spec
        if zoo.module_factory is not None:
            factory = zoo.module_factory
        elif spec.get("factory"):
            from fingerprint.importer import resolve_factory

            factory = resolve_factory(spec["factory"], spec.get("factory_dir"))
        else:
            raise UserError(f"zoo '{zoo.path}' was built from in-memory modules of {spec.get('class')}; "
                            "reopen it with Zoo.from_modules or set zoo.module_factory")
        return ModuleFamily(factory=factory, input_shape=tuple(spec.get("input_shape") or ()), n_out=int(spec.get("n_out", -1)),
                            label=str(spec.get("factory") or spec.get("class")))
    return _trained_parts(zoo)[0]


def _trained_parts(zoo: zoo_io.Zoo) -> tuple[Any, Any]:
    """``(family, task)`` of a zoo trained by a sweep, built once per open zoo from its stored config.

    Extraction asks for them once per chunk of models; rebuilding them each time (reading the
    manifest, validating the config) cost as much as fingerprinting a chunk of small models.
    """
    cache = zoo.__dict__.setdefault("_trained_parts", {})
    if "parts" not in cache:
        from training.sweep import build_family, build_task, read_manifest_config

        config = read_manifest_config(zoo.path)
        task = build_task(config, next(iter(zoo.manifest.get("task", {}).get("groups") or {"": {}})))
        cache["parts"] = (build_family(config, task), task)
    return cache["parts"]


def task_for(zoo: zoo_io.Zoo) -> Any:
    """The object extractors get probe sets from (the task, or an imported zoo's stored probes)."""
    if is_imported(zoo):
        sets = zoo_io.read_probes(zoo.path)
        return ProbeSets(sets, n_out=int(zoo.family_spec.get("n_out", -1)), layers=list(zoo.family_spec.get("layers") or []))
    return _trained_parts(zoo)[1]
