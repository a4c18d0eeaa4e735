"""Glue for ``fingerprint forecast`` and ``fingerprint select``: zoo -> early fingerprints -> basins.

``forecast`` extracts a fingerprint at every checkpoint step of the seed grid and scores how well it
predicts each model's final basin (the ground-truth label, or the fingerprint's own final clusters
when there is none), cross-validated in folds that keep an init family together; ``ForecastSettings``
is a run's ``[forecast]`` section. The selection (``fingerprint select``, and ``procedure``, which runs
both for ``fingerprint run``) is :mod:`fingerprint.selection`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fingerprint.extraction import active_models, extract
from fingerprint.forecast_target import forecast_families, forecast_target
from fingerprint.import_history import common_end
from fingerprint.tables import model_table
from training.core.errors import UserError
from training.core.store import Zoo


def base_models(zoo: Zoo) -> list[str]:
    """The seed grid (kind ``base``, or every model of an imported zoo) that did not diverge: the
    population forecasting is about."""
    keep = set(active_models(zoo))
    return [m for m, k in zip(zoo.model_ids, zoo.models["kind"]) if k in ("base", "imported") and m in keep]


def imported(zoo: Zoo) -> bool:
    """Whether ``zoo`` holds models trained elsewhere (``fingerprint import``)."""
    return any(k == "imported" for k in zoo.models["kind"])


def check_out(zoo: Zoo, out: Path | None) -> None:
    """``select`` continues the chosen seeds into ``out`` with the toolkit's own training; an imported zoo's
    seeds were trained elsewhere: they are picked, measured on the final checkpoints it holds, not continued."""
    if imported(zoo) and out is not None:
        raise UserError(f"zoo '{zoo.path}' was imported (trained elsewhere): select picks its seeds and measures the "
                        "selection on the final checkpoints it holds, but cannot continue them; leave out --out "
                        "(--json FILE writes the picks and their probabilities)")
    if not imported(zoo) and out is None:
        raise UserError("--out NEW_ZOO is needed: select continues the chosen seeds into a new zoo")


def final_basins(zoo: Zoo, ids: Sequence[str], label: str | None, fp: str) -> tuple[np.ndarray, str]:
    """Final basin per model and what it is: the ``label`` column (default deep_label), else ``fp``'s
    candidate basins when its label-free verdict is deep, else its clusters
    (:func:`fingerprint.forecast_target.forecast_target`)."""
    t = forecast_target(zoo, ids, label, fp)
    return t.basins, t.name


def seed_grid(zoo: Zoo) -> list[str]:
    ids = base_models(zoo)
    if len(ids) < 4:
        raise UserError(f"zoo '{zoo.path}' has {len(ids)} seed-grid models; forecasting needs at least 4")
    return ids


def forecast(zoo: Zoo, specs: Sequence[str], label: str | None = None, exclude_basins: Sequence[str] = (),
             lineage: str | None = None) -> dict[str, Any]:
    """Forecast curves ``[{fingerprint, step, fraction, accuracy, accuracy_ci, auroc, ami, n_models}]``.

    ``exclude_basins``: final basins whose models are left out (e.g. ``mixed``, a label that means
    the diagnostics disagree rather than a basin); the forecast is then between the others.
    ``lineage``: the column of init families that folds and intervals keep together; the target
    without a label and the families without ``lineage``: :mod:`fingerprint.forecast_target`.
    What a user should know is said in warnings: families unknown, a target that is not a candidate
    basin, steps too few models have, runs of different lengths."""
    from analysis.forecast import earliest, forecast_step  # deferred for start-up time

    all_ids = seed_grid(zoo)
    finals = np.asarray(zoo.models["final_step"])[zoo.index(all_ids)]
    final_step = common_end(finals)
    steps, thin = history_steps(zoo, all_ids, int(finals.max()))
    check_history(zoo, steps)
    fam = forecast_families(zoo, all_ids, model_table(zoo), lineage)
    curve, targets = [], {}
    for spec in specs:
        t = forecast_target(zoo, all_ids, label, spec, fam)
        targets[spec] = {"name": t.name, **(t.info() or {})}
        unknown = sorted(set(exclude_basins) - set(t.basins))
        if unknown:
            raise UserError(f"unknown basin '{unknown[0]}' for --exclude-basin of {t.name} (valid: {', '.join(sorted(set(t.basins)))})")
        keep = ~np.isin(t.basins, [*exclude_basins, ""])
        ids, y, families = [m for m, k in zip(all_ids, keep) if k], t.basins[keep], fam.groups[keep]
        if exclude_basins and len(set(y)) < 2:  # without exclusions a one-basin grid is scored as before (accuracy None)
            raise UserError(f"--exclude-basin leaves {len(set(y))} basin of {t.name}; forecasting needs at least 2")
        wanted = set(ids)
        for s in steps:
            have = [m for m in zoo.models_at(s) if m in wanted]
            (res,) = extract(zoo, [spec], step=s, model_ids=have)
            if res.error:
                raise UserError(res.error)
            rows = [ids.index(m) for m in res.model_ids]
            point = forecast_step(res.values, y[rows], groups=families[rows])
            curve.append({"fingerprint": spec, "step": int(s), "fraction": s / final_step, **point})
    names = list(dict.fromkeys(t["name"] for t in targets.values()))
    summary = {"target": names[0] if len(names) == 1 else "; ".join(names), "targets": targets, "n_models": len(ids),
               "n_families": int(len(set(families))), "lineage": fam.column, "families_known": fam.known,
               "models_alone": fam.alone,
               "final_step": final_step, "forecast": curve, "excluded_basins": sorted(set(exclude_basins)),
               "steps_left_out": thin, "final_steps": sorted({int(f) for f in finals}),
               "earliest_90": {spec: earliest([c for c in curve if c["fingerprint"] == spec]) for spec in specs}}
    for w in forecast_warnings(summary, len(all_ids), finals):
        warnings.warn(w, stacklevel=2)
    zoo.save_result("forecast", summary)
    return summary


def check_history(zoo: Zoo, steps: Sequence[int]) -> None:
    if len(steps) < 2:
        how = ("import them with --history (docs/import.md, \"Checkpoint histories\")" if imported(zoo)
               else "train with train.checkpoints = \"log:K\"")
        raise UserError(f"zoo '{zoo.path}' stores {len(steps)} checkpoint step{'' if len(steps) == 1 else 's'} that most of "
                        f"its models have: forecasting needs checkpoints along training; {how}")


def history_steps(zoo: Zoo, ids: Sequence[str], final_step: int) -> tuple[list[int], list[int]]:
    """``(steps, thin)``: the checkpoint steps (up to ``final_step``) that at least half of ``ids`` (and 4)
    have, and those fewer have, left out (one model's missing file does not remove a step for all)."""
    wanted = set(ids)
    count = {s: sum(m in wanted for m in zoo.models_at(s)) for s in zoo.steps if s <= final_step}
    need = max(4, -(-len(ids) // 2))
    return [s for s, c in count.items() if c >= need], [s for s, c in count.items() if c < need]


def forecast_warnings(summary: dict[str, Any], n: int, finals: np.ndarray) -> list[str]:
    """The forecast's caveats, one line each (module docstring of :mod:`fingerprint.forecast_target`)."""
    out = []
    if not summary["families_known"]:
        out.append(f"the forecast's folds keep no init families together: '{summary['lineage']}' does not record them "
                   "(-1 for every imported model) and no two models start from the same checkpoint; models that share "
                   "an initialisation then sit on both sides of a fold and early forecasts look better than they are: "
                   "name the families with --lineage COLUMN (or run fingerprint lineage first: its recovered families are "
                   "then used)")
    if summary.get("models_alone") and summary["families_known"]:
        k = summary["models_alone"]
        out.append(f"{k} of the {n} models {'is' if k == 1 else 'are'} linked to no other by their first checkpoints (a run "
                   "that saved no shared step 0, or one checkpoint only): each is its own family in the folds, so relatives "
                   "of theirs would sit on both sides of a fold and make early forecasts look better than they are: name "
                   "the families with --lineage COLUMN")
    for spec, t in summary["targets"].items():
        if t.get("left_out"):
            out.append(f"{spec}: {t['left_out']} of the {n} models have no candidate basin (the label-free split leaves "
                       "them out: bases beside their fine-tunes are a generation of their own) and are not forecast")
        if t.get("deep") and t.get("from") == "alone":
            out.append(f"{spec}: its label-free verdict at the final step, '{t['verdict']}', is from its own analysis: no "
                       "stored report analyses its cached values, and a report corrects over all its fingerprints, so it "
                       "may not call this a candidate: run fingerprint report first to forecast the report's verdict")
        if t.get("deep") is False:
            out.append(f"{spec}: its label-free verdict at the final step is '{t['verdict']}', not a candidate deep "
                       f"difference, so this forecasts its clusters, which may be initialization noise: not a basin to "
                       "select (give a basin column with --label to forecast it)")
    if summary["steps_left_out"]:
        out.append(f"step{'s' if len(summary['steps_left_out']) > 1 else ''} "
                   f"{', '.join(map(str, summary['steps_left_out']))} left out of the forecast: fewer than half of the "
                   f"{n} models have a checkpoint there")
    if len(summary["final_steps"]) > 1:
        ends = ", ".join(f"{int(s)}: {int((finals == s).sum())}" for s in summary["final_steps"])
        out.append(f"the models end at different steps ({ends} models): every fraction is step / {summary['final_step']}, "
                   "the most common end; a model's own fraction is its step / its final step")
    return out


# -- the whole procedure in a run (the config's [forecast] section) ---------------------------------
@dataclass(frozen=True)
class ForecastSettings:
    """The ``[forecast]`` section of a run: forecast curves for ``fingerprints``, then, with a
    ``basin``, the selection (``select``) of the seeds bound for it, continued into ``selected/``."""

    fingerprints: list[str] = field(default_factory=list)  # empty: no forecast
    exclude_basins: list[str] = field(default_factory=list)  # final basins left out of the forecast (e.g. mixed)
    basin: str | None = None  # the wanted basin (a value of the label column); None: no selection
    at_step: int | None = None  # None: the earliest checkpoint whose forecast accuracy reaches 90% (else the best one)
    fingerprint: str | None = None  # the forecaster of the selection; None: the first of ``fingerprints``
    calibration: float = 0.25
    threshold: float = 0.5
    budget: int | None = None

    def validate(self, where: str = "forecast") -> None:
        if self.basin is not None and not (self.fingerprints or self.fingerprint):
            raise UserError(f"config key '{where}.basin' needs '{where}.fingerprints' (or '{where}.fingerprint')")
        if not 0 < self.calibration < 1:
            raise UserError(f"config key '{where}.calibration' must be in (0, 1), got {self.calibration}")
        if not 0 < self.threshold <= 1:
            raise UserError(f"config key '{where}.threshold' must be in (0, 1], got {self.threshold}")

    @property
    def enabled(self) -> bool:
        return bool(self.fingerprints or self.basin)
