"""Glue for ``fingerprint goodhart``: a basin detector under selection and under optimization pressure.

One fingerprint for every model; the init families split in two (a family never on both sides);
the detector of :mod:`analysis.goodhart` fit on one part. *Selection*: the held-out models ranked
by it. *Optimization*: the held-out models trained on (their own data order, the sweep's optimizer
and learning rate, a fresh optimizer state) with a penalty ``lambda * -log p_detector(B)`` on their
fingerprint, every lambda at once in one vectorized population (the trainer's
:class:`~training.trainer.Penalty`), then relabelled by the task's own diagnostics on held-out
inputs (:meth:`~training.tasks.base.Task.behaviour_label`).

The penalty needs the fingerprint as a differentiable function of the models' outputs on fixed
inputs. It is the extractor itself, run on :class:`OutputReplay`: a stand-in for the
:class:`~fingerprint.batch.ModelBatch` that records the inputs the extractor asks outputs for and
then replays outputs computed elsewhere (in the training step, with their gradient). An extractor
that reads weights or activations is refused in one line; the replayed fingerprint of the stored
models is checked against the extracted one before anything trains.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from analysis.errors import AnalysisError
from analysis.goodhart import (
    Detector,
    fit_detector,
    heldout_auroc,
    keep_fractions,
    pressure_point,
    selection_curve,
    split_families,
)
from analysis.sortkeys import natural_key
from fingerprint.batch import TaskView
from fingerprint.extraction import active_models, extract, family_groups, resolve_specs
from fingerprint.population import family_for, model_setting, task_for
from training.config import SweepConfig
from training.core.errors import UserError, choices, unknown
from training.core.store import Zoo
from training.shard import evaluate
from training.trainer import Penalty, train_population

LAMBDAS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DIFFERENTIABLE = "probe-outputs, ood-outputs, recombined-outputs, anomalous-inputs"  # built-ins that are functions of outputs alone
REPLAY_TOL = 1e-3  # replayed vs extracted fingerprint of the stored models (float32 sums in another order)


class OutputReplay:
    """What a fingerprint of outputs on fixed inputs sees instead of a ``ModelBatch``: ``forward(x)``
    records ``x`` (while ``outputs`` is None) or returns the next of ``outputs`` (``[n, len(x), ...]``
    each, in the order recorded). Anything else an extractor reaches for (weights, activations) is
    a one-line refusal."""

    def __init__(self, name: str, family: Any, task: TaskView, n_out: int):
        self.name, self.family, self.task, self.n_out = name, family, task, n_out
        self.model_ids, self.step, self.device, self.chunk = ["m0000"], "final", "cpu", 2048
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.model_ids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outputs is None:
            self.inputs.append(x)
            return torch.zeros(1, len(x), self.n_out)
        return self.outputs.pop(0)

    def __getattr__(self, name: str) -> Any:
        raise UserError(f"fingerprint '{self.__dict__.get('name')}' reads the models' {name}, not only their outputs on "
                        f"fixed inputs: training against it needs one of those ({DIFFERENTIABLE})")


@dataclasses.dataclass
class Fingerprint:
    """A fingerprint as a function of outputs: ``inputs [P, *input_shape]`` (every recorded input, in
    order) and ``features(outputs [n, P, ...]) -> [n, d]``, differentiable."""

    inputs: torch.Tensor
    features: Callable[[torch.Tensor], torch.Tensor]


def differentiable(zoo: Zoo, text: str) -> Fingerprint:
    """The fingerprint ``text`` as a differentiable function of the models' outputs (see the module docstring)."""
    ((_, spec, params),) = resolve_specs([text])
    if spec.output != "features" or spec.supervised:
        raise UserError(f"fingerprint '{text}' is {'supervised' if spec.supervised else 'a distance'}: training "
                        f"against it needs one that gives a row per model from its outputs ({DIFFERENTIABLE})")
    task = TaskView(task_for(zoo))
    replay = OutputReplay(text, family_for(zoo), task, task.n_out)
    call = (lambda m: spec.fn(**params)(m)) if inspect.isclass(spec.fn) else (lambda m: spec.fn(m, **params))
    call(replay)
    if not replay.inputs:
        raise UserError(f"fingerprint '{text}' never asks for the models' outputs: nothing to train against "
                        f"(use one of {DIFFERENTIABLE})")
    sizes = [len(x) for x in replay.inputs]

    def features(out: torch.Tensor) -> torch.Tensor:
        replay.outputs = list(torch.split(out, sizes, dim=1))
        replay.model_ids = [f"m{i:04d}" for i in range(len(out))]
        try:
            return torch.as_tensor(call(replay)).flatten(1)
        finally:
            replay.outputs = None

    return Fingerprint(torch.cat(replay.inputs), features)


def _detector_logit(fp: Fingerprint, det: Detector) -> Callable[[torch.Tensor], torch.Tensor]:
    coef = torch.as_tensor(det.coef, dtype=torch.float32)
    return lambda out: fp.features(out) @ coef + float(det.intercept)


def _columns(zoo: Zoo, label: str, family: str) -> None:
    for col in (label, family):
        if col not in zoo.models:
            raise unknown("model column", col, zoo.models.names())


def goodhart(zoo: Zoo, fp: str, basin: str, label: str | None = None, lineage: str = "init_seed",
             lambdas: Sequence[float] | None = None, steps: int | None = None, keeps: Sequence[float] | None = None,
             fit_fraction: float = 0.5, n_boot: int = 200, random_state: int = 0, device: str = "cpu",
             on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Selection and optimization pressure on the detector of ``basin`` built on ``fp``; the JSON of
    ``docs/goodhart.md`` (``{"selection": [...], "optimization": [...], ...}``), also stored in the
    zoo as ``results/goodhart.json`` (the report draws it). ``steps``: training steps at every
    lambda (default: a quarter of the sweep's, at most 200)."""
    label = label or "deep_label"
    _columns(zoo, label, lineage)
    if zoo.manifest.get("source") not in ("sweep", "continue"):
        raise UserError(f"zoo '{zoo.path}' was not trained here: goodhart continues training its models, which needs "
                        "the sweep's task and data (a zoo made by `fingerprint sweep` or `run`)")
    ids = active_models(zoo)
    if len(set(model_setting(zoo, ids))) > 1:
        raise UserError(f"zoo '{zoo.path}' holds several architectures (a model.sweep): goodhart trains one "
                        "population, so run it on a zoo of one architecture")
    idx = zoo.index(ids)
    labels = np.asarray([str(v) for v in np.asarray(zoo.models[label])[idx]], dtype=object)
    valid = sorted(set(labels.tolist()) - {"diverged"}, key=natural_key)
    if basin not in valid:
        raise UserError(f"unknown basin '{basin}' for --basin (valid: {', '.join(valid)})")
    lambdas = LAMBDAS if lambdas is None else lambdas
    bad = [x for x in lambdas if not (x >= 0 and np.isfinite(x))]
    if bad or not lambdas:
        raise UserError(f"--lambdas must be numbers >= 0, got {bad[0] if bad else 'none'}")
    config = SweepConfig.from_dict(zoo.config)
    steps = min(config.train.steps // 4, 200) if steps is None else int(steps)
    if steps < 0:
        raise UserError(f"--steps must be >= 0, got {steps}")
    grad_fp = differentiable(zoo, fp)  # refuses a fingerprint it cannot train against before extracting
    (res,) = extract(zoo, [fp], model_ids=ids, device=device)
    if res.error:
        raise UserError(res.error)
    pos = {m: i for i, m in enumerate(ids)}
    order = np.asarray([pos[m] for m in res.model_ids])
    ids, labels = list(res.model_ids), labels[order]
    x = np.asarray(res.values, dtype=np.float64)
    fam = family_groups(zoo, ids, lineage)
    try:
        fit = split_families(labels, basin, fam, fit_fraction, random_state)
        det = fit_detector(x[fit], labels[fit], basin, fam[fit], random_state)
    except AnalysisError as e:
        raise UserError(str(e)) from None
    held = np.flatnonzero(~fit)
    held_ids, held_fam, truly0 = [ids[i] for i in held], fam[held], labels[held] == basin
    score = det.logit(x[held])
    selection = selection_curve(score, score > 0, truly0, held_fam, keep_fractions(len(held), keeps), n_boot, random_state)

    # -- optimization: every lambda's copy of the held-out models in one population ----------------
    family, task = family_for(zoo, str(zoo.models["group"][zoo.index(held_ids[:1])][0])), task_for(zoo)
    hidx = zoo.index(held_ids)
    params = zoo.params(None, held_ids)
    n, lam = len(held_ids), torch.tensor([float(v) for v in lambdas], dtype=torch.float32)
    logit = _detector_logit(grad_fp, det)
    with torch.no_grad():
        replayed = grad_fp.features(family.outputs(params, grad_fp.inputs)).double().numpy()
    if np.abs(replayed - x[held]).max() > REPLAY_TOL * max(1.0, float(np.abs(x[held]).max())):
        raise UserError(f"fingerprint '{fp}' is not a function of the models' outputs alone (recomputing it from "
                        f"them gives other values): training against it needs one of {DIFFERENTIABLE}")
    variant = torch.as_tensor(np.asarray(zoo.models["variant"])[hidx], dtype=torch.int64)
    data_seeds = [int(s) for s in np.asarray(zoo.models["data_seed"])[hidx]]
    L = len(lam)
    stacked = {k: v.repeat(L, *([1] * (v.dim() - 1))) for k, v in params.items()}  # [L * n, ...], lambda-major
    penalty = Penalty(grad_fp.inputs, lambda out: torch.nn.functional.softplus(-logit(out)), lam.repeat_interleave(n))
    cfg = dataclasses.replace(config.train, steps=max(steps, 1), checkpoints=[])
    if steps > 0:
        trained = train_population(family, task, cfg, stacked, data_seeds * L, variant.repeat(L), device=device,
                                   on_step=on_step, penalty=penalty)
        final, diverged = trained.checkpoints[max(trained.checkpoints)], trained.diverged.numpy()
    else:
        final, diverged = stacked, np.zeros(L * n, bool)
    with torch.no_grad():
        says = (logit(family.outputs(final, grad_fp.inputs)) > 0).numpy()
    cols = evaluate(task, family, final, variant.repeat(L), diverged)
    truth = task.behaviour_label(cols) if label == "deep_label" else cols.get(label)
    if truth is None:
        raise UserError(f"the task's diagnostics do not give '{label}' (they give: {choices(cols)}): a trained model "
                        "cannot be relabelled by it (use --label deep_label)")
    truly = np.asarray([str(v) == basin for v in truth])
    optimization = [pressure_point(float(lam[j]), says[j * n:(j + 1) * n], truly[j * n:(j + 1) * n], held_fam,
                                   diverged[j * n:(j + 1) * n]) for j in range(L)]
    before = np.asarray([str(v) == basin for v in task.behaviour_label(evaluate(task, family, params, variant))]) \
        if label == "deep_label" else truly0
    result = {
        "zoo": str(zoo.path), "fingerprint": fp, "basin": basin, "label": label, "family": lineage,
        "n_fit": int(fit.sum()), "n_heldout": n, "fit_families": len(set(fam[fit].tolist())),
        "heldout_families": len(set(held_fam.tolist())),
        "detector": {"cv_auroc": det.cv_auroc, "heldout_auroc": heldout_auroc(score, truly0),
                     "calibrated": det.calibrated, "says_basin": float((score > 0).mean()), "base_rate": float(truly0.mean()),
                     "behaviour_base_rate": float(before.mean())},
        "selection": [dataclasses.asdict(p) for p in selection],
        "optimization": [p.to_dict() for p in optimization],
        "settings": {"steps": steps, "lambdas": [float(v) for v in lambdas], "fit_fraction": fit_fraction,
                     "optimizer": config.train.optimizer, "lr": config.train.lr, "batch_size": config.train.batch_size,
                     "n_boot": n_boot, "random_state": random_state},
    }
    previous = zoo.load_result("goodhart") or {}
    if previous.get("basin") not in (None, basin) or previous.get("fingerprint") not in (None, fp):
        warnings.warn(f"this run replaces the stored goodhart result of basin '{previous.get('basin')}' on "
                      f"{previous.get('fingerprint')} (results/goodhart.json holds one run; keep each with --json FILE)",
                      stacklevel=2)
    skill = [v for v in (det.cv_auroc, result["detector"]["heldout_auroc"]) if v is not None]
    if skill and min(skill) < CHANCE_AUROC:  # outside audit 124: "evasion 0%" of a detector that never said B
        warnings.warn(f"the '{basin}' detector on {fp} barely tells the basin (AUROC {', '.join(f'{v:.2f}' for v in skill)}, "
                      f"cross-validated and held out; under {CHANCE_AUROC}): what it says under either pressure says "
                      "little of the basin (a detector that never says B shows no evasion)", stacklevel=2)
    zoo.save_result("goodhart", result)
    return result


CHANCE_AUROC = 0.6  # a detector below this (cross-validated or held out) is said to be near chance
