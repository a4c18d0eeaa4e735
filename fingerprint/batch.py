"""``ModelBatch``: what an extractor sees of a population.

Stacked parameters ``[n_models, ...]``, a vectorised forward pass, named activations, the task's
probe sets, the model ids and the checkpoint step -- and nothing else: no labels, no lineage, so
a fingerprint cannot leak the answer it is scored against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class TaskView:
    """The task as extractors see it: probe sets and the input/output spec."""

    def __init__(self, task: Any):
        self._task = task
        self.name = getattr(task, "name", "task")

    def probe_names(self) -> list[str]:
        return list(self._task.probe_names())

    def probes(self, name: str) -> torch.Tensor:
        """Probe inputs ``[n_probes, *input_shape]``."""
        return self._task.probes(name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._task.input_shape)

    @property
    def n_out(self) -> int:
        return int(self._task.n_out)


class ModelBatch:
    """A population of models to fingerprint.

    Attributes
    ----------
    params : dict[str, Tensor]
        Stacked parameters ``{name: [n_models, ...]}``.
    task : TaskView
        Probe sets (``task.probes("ood")``) and the input/output spec.
    model_ids : list[str]
    step : int or str
        The checkpoint step (``"final"`` for each model's last step).
    family : Family
        The batched architecture (``family.activation_names()``, ``family.hidden_permutable()``).
    """

    def __init__(self, family: Any, params: dict[str, torch.Tensor], task: Any, model_ids: Sequence[str],
                 step: int | str = "final", device: str = "cpu", chunk: int = 2048):
        self.family = family
        self.device = device
        self.params = {k: v.to(device) for k, v in params.items()}
        self.task = task if isinstance(task, TaskView) else TaskView(task)
        self.model_ids = list(model_ids)
        self.step = step
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self.model_ids)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[n_models, n_inputs, n_out]`` for shared inputs ``x [n_inputs, *input_shape]``."""
        return self.family.outputs(self.params, x.to(self.device), self.chunk)

    @torch.no_grad()
    def activations(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Named hidden activations ``{name: [n_models, n_inputs, ...]}`` (see ``activation_names()``)."""
        valid = self.activation_names()
        bad = [n for n in names if n not in valid]
        if bad:
            from fingerprint.errors import unknown

            raise unknown("activation", bad[0], valid)
        x = x.to(self.device)
        parts = [self.family.forward(self.params, x[i : i + self.chunk], capture=list(names))[1] for i in range(0, len(x), self.chunk)]
        return {n: torch.cat([p[n] for p in parts], 1) for n in names}

    def activation_names(self) -> list[str]:
        return list(self.family.activation_names())

    def subset(self, idx: Sequence[int]) -> "ModelBatch":
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        return ModelBatch(self.family, {k: v[idx_t.to(v.device)] for k, v in self.params.items()}, self.task,
                          [self.model_ids[i] for i in idx], self.step, self.device, self.chunk)

    @classmethod
    def from_zoo(cls, zoo: Any, model_ids: Sequence[str] | None = None, step: int | None = None,
                 device: str = "cpu") -> "ModelBatch":
        """Load ``model_ids`` (default: every model) at ``step`` (default: each model's final step)."""
        from fingerprint.population import family_for, task_for

        ids = list(zoo.model_ids if model_ids is None else model_ids)
        return cls(family_for(zoo), zoo.params(step, ids), task_for(zoo), ids, "final" if step is None else step, device)
