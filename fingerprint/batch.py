"""``ModelBatch``: what an extractor sees of a population.

Stacked parameters ``[n_models, ...]``, a vectorised forward pass, named activations, a view of the
task (probe sets, the input/output spec and two narrow interfaces some built-ins need), opaque row
ids and the checkpoint step -- and nothing else: no seeds, no lineage, no labels, so a fingerprint
cannot leak the answer it is scored against (``docs/extractors.md``, "What an extractor sees").
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fingerprint.population import family_for, model_setting, stackable_runs, task_for
from training.core.errors import UserError, unknown
from training.tasks import Task, list_tasks

# The task objects behind live TaskViews, by key, with the number of views using each. A view keeps
# only its key: walking a view's attributes reaches no Task (whose ``variant(init, data)`` maps seeds
# to the answer). Code that goes looking in this module can find it; see the docs on the boundary.
_BEHIND: dict[str, list[Any]] = {}


def _release(key: str) -> None:
    entry = _BEHIND.get(key)
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            del _BEHIND[key]


@dataclass(frozen=True)
class HypothesisInfo:
    """A task's causal hypothesis as extractors see it: what it claims and where to look; its
    (base, source) pairs come from :meth:`TaskView.interchanges`."""

    description: str
    layer: str = ""
    position: int | None = None
    k: int = 0


PROBE_READS = "_probe_reads"  # a remote chunk's extras: the probe sets it read (TaskView.read), for the driver's mark


class TaskView:
    """The task as extractors see it: plain values and methods that return tensors.

    ``name``, ``input_shape``, ``n_out`` and ``layers`` (the hook points an imported zoo declares),
    probe sets (``probe_names()``, ``probes(name)``), causal hypotheses (``hypotheses()``,
    ``interchanges(name, n, generator)``) and the labelled training data with its loss
    (``train_data()``, ``loss(out, y)``). It holds no Task object.
    """

    def __init__(self, task: Any):
        self.name = str(getattr(task, "name", "task"))
        self.input_shape = tuple(int(s) for s in task.input_shape)
        self.n_out = int(task.n_out)
        self.layers = [str(x) for x in (getattr(task, "layers", None) or [])]
        key = f"{type(task).__module__}.{type(task).__qualname__}@{id(task):x}"
        _BEHIND.setdefault(key, [task, 0])[1] += 1
        weakref.finalize(self, _release, key)
        self._key = key
        # the probe sets read through probes(): extraction marks a fingerprint that read a privileged one (built from
        # the ground truth) whether it named it as a parameter or in its own code (outside audit 121)
        self.read: set[str] = set()

    def _behind(self) -> Any:
        return _BEHIND[self._key][0]

    def probe_names(self) -> list[str]:
        return [str(n) for n in self._behind().probe_names()]

    def regression(self) -> bool:
        """Whether the outputs are regression values, not class logits: a built-in task's ``loss_kind``,
        an imported zoo's labelled data (float targets); ``False`` when nothing says (outputs of two or
        more are then read as class logits, as the behavioural fingerprints read them)."""
        task = self._behind()
        kind = getattr(task, "loss_kind", None)
        if kind is None and callable(getattr(task, "data_loss", None)):
            kind = task.data_loss()
        return kind == "regression"

    def probes(self, name: str, record: bool = True) -> torch.Tensor:
        """Probe inputs ``[n_probes, *input_shape]`` (a copy: editing it changes nothing for others). ``record=False``:
        not counted among the fingerprint's reads (``read``): inputs a symmetry trial runs to see whether a change of
        the weights moves the outputs at all, not what the fingerprint is made of (review 122: the weight
        fingerprints' trial read every set, and whichever ran first was marked privileged)."""
        out = self._behind().probes(name).clone()
        if record:
            self.read.add(str(name))
        return out

    def hypotheses(self, required_by: str | None = None) -> dict[str, HypothesisInfo]:
        """``{name: HypothesisInfo}`` for ``causal-ii`` (empty when the probe source declares none).

        With ``required_by`` (an extractor's name), none is a one-line error naming the tasks that
        do declare some, instead of an empty dict.
        """
        found = getattr(self._behind(), "hypotheses", None)
        hyps = found() if callable(found) else {}
        out = {str(n): HypothesisInfo(str(h.description), str(h.layer or ""), h.position, int(h.k or 0))
               for n, h in (hyps or {}).items()}
        if not out and required_by:
            have = sorted(name for name, cls in list_tasks().items() if getattr(cls, "hypotheses", None) is not Task.hypotheses)
            raise UserError(f"task '{self.name}' declares no causal hypotheses for {required_by} "
                            f"(tasks that do: {', '.join(have) or '(none)'})")
        return out

    def interchanges(self, hypothesis: str, n: int, generator: torch.Generator) -> Any:
        """``n`` (base, source) pairs of ``hypothesis`` with its counterfactual labels: an
        ``Interchange`` of tensors (``base``, ``source``, ``base_value``, ``source_value``,
        ``counterfactual``)."""
        found = getattr(self._behind(), "hypotheses", None)
        hyps = found() if callable(found) else {}
        if hypothesis not in hyps:
            raise unknown(f"hypothesis of task '{self.name}'", hypothesis, hyps)
        return hyps[hypothesis].sample(n, generator)

    def train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's training set ``(x [N, *input_shape], y [N, ...])``: the same for every model
        (no per-model data order, poisoning or seeds)."""
        task = self._behind()
        if not hasattr(task, "train_set") or not hasattr(task, "loss"):
            raise UserError(f"task '{self.name}' has no labelled training data")
        x, y = task.train_set()
        return x.clone(), y.clone()

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's per-model training loss ``[n_models]`` from outputs ``[n_models, B, n_out]``."""
        return self._behind().loss(out, y)


def _natural(name: str) -> list:
    """Sort key: layer2 before layer10, 2.weight before 10.weight."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


class ModelBatch:
    """A population of models to fingerprint.

    Attributes
    ----------
    params : dict[str, Tensor]
        Stacked parameters ``{name: [n_models, ...]}``.
    task : TaskView
        Probe sets (``task.probes("ood")``) and the input/output spec.
    model_ids : list[str]
        Row names. An extractor called through the registry sees opaque ones (``m0000``, ...,
        by position in the batch it is given); the zoo's ids, which encode seeds and lineage, are
        put back on its rows after it returns.
    step : int or str
        The checkpoint step (``"final"`` for each model's last step).
    family : Family
        The batched architecture (``family.activation_names()``, ``family.hidden_permutable()``).
    """

    def __init__(self, family: Any, params: dict[str, torch.Tensor], task: Any, model_ids: Sequence[str],
                 step: int | str = "final", device: str = "cpu", chunk: int = 2048):
        self.family = family
        self.device = device
        self.params = {k: v.to(device) for k, v in params.items()}  # a plain dict: torch.func.vmap's pytree
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
            raise unknown("activation", bad[0], valid)
        x = x.to(self.device)
        parts = [self.family.forward(self.params, x[i : i + self.chunk], capture=list(names))[1] for i in range(0, len(x), self.chunk)]
        return {n: torch.cat([p[n] for p in parts], 1) for n in names}

    def activation_names(self) -> list[str]:
        return list(self.family.activation_names())

    def weight_matrices(self) -> list[tuple[str, torch.Tensor]]:
        """The weight matrices (and conv kernels) in the architecture's order, whatever their names:
        ``[(name, [n_models, out, in, ...]), ...]``; biases, other vectors, scalars and buffers left
        out. One plugin runs on built-in and imported zoos alike."""
        w = self.weights()
        return [(k, w[k]) for k in sorted(w, key=_natural) if w[k].dim() >= 3]

    def weights(self) -> dict[str, torch.Tensor]:
        """The trained weights ``{name: [n_models, ...]}``: every parameter but the entries of
        :meth:`non_weights` (an imported module's buffers). Weight-space extractors read these."""
        skip = self.non_weights()
        return {k: v for k, v in self.params.items() if k not in skip}

    def non_weights(self) -> dict[str, str]:
        """State entries that are not weights, and what each is (``{"norm.running_mean": "buffer",
        "count": "int64 buffer"}``): extractors leave them out and say so in their metadata."""
        found = getattr(self.family, "non_weights", None)
        return {k: v for k, v in (found() if callable(found) else {}).items() if k in self.params}

    def subset(self, idx: Sequence[int]) -> "ModelBatch":
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        return ModelBatch(self.family, {k: v[idx_t.to(v.device)] for k, v in self.params.items()}, self.task,
                          [self.model_ids[i] for i in idx], self.step, self.device, self.chunk)

    @classmethod
    def from_zoo(cls, zoo: Any, model_ids: Sequence[str] | None = None, step: int | None = None,
                 device: str = "cpu") -> "ModelBatch":
        """Load ``model_ids`` (default: every model) at ``step`` (default: each model's final step)."""
        ids = list(zoo.model_ids if model_ids is None else model_ids)
        settings = sorted(set(model_setting(zoo, ids)))
        if len(settings) > 1:  # a model.sweep: parameters of different shapes cannot be stacked
            raise UserError(f"the models span {len(settings)} architectures of the zoo's model.sweep ({', '.join(settings)}), "
                            "whose parameters cannot be stacked: this needs the models of one setting at a time "
                            "(streaming extractors such as probe-outputs do that; population-level ones cannot)")
        group = stackable_runs(zoo, ids)[0][0] if ids else ""
        return cls(family_for(zoo, group), zoo.params(step, ids), task_for(zoo), ids, "final" if step is None else step, device)
