"""Glue for ``fingerprint forecast`` and ``fingerprint select``: zoo -> early fingerprints -> basins.

``forecast`` extracts a fingerprint at every checkpoint step of the seed grid and scores how well it
predicts each model's final basin (the ground-truth label, or the fingerprint's own final clusters
when there is none), cross-validated in folds that keep an init family together. ``select_and_continue`` runs the proposal's procedure: fit the forecaster on a
calibration subset trained to the end, forecast the other seeds at an early step, continue only the
seeds predicted to land in the wanted basin (from their checkpoints, never from scratch), and report
the purity reached and the compute used against training every seed to the end. ``procedure``
runs both for ``fingerprint run`` (and the demo) from the config's ``[forecast]`` section.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.intervals import proportion_interval
from fingerprint.extraction import active_models, extract
from fingerprint.forecast_target import forecast_families, forecast_target
from fingerprint.import_history import common_end
from fingerprint.tables import model_table
from training.core.errors import UserError
from training.core.store import Zoo
from training.plan import check_device
from training.select import continue_models


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


def _seed_grid(zoo: Zoo) -> list[str]:
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

    all_ids = _seed_grid(zoo)
    finals = np.asarray(zoo.models["final_step"])[zoo.index(all_ids)]
    final_step = common_end(finals)
    steps, thin = _steps(zoo, all_ids, int(finals.max()))
    _check_history(zoo, steps)
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


def _check_history(zoo: Zoo, steps: Sequence[int]) -> None:
    if len(steps) < 2:
        how = ("import them with --history (docs/import.md, \"Checkpoint histories\")" if imported(zoo)
               else "train with train.checkpoints = \"log:K\"")
        raise UserError(f"zoo '{zoo.path}' stores {len(steps)} checkpoint step{'' if len(steps) == 1 else 's'} that most of "
                        f"its models have: forecasting needs checkpoints along training; {how}")


def _steps(zoo: Zoo, ids: Sequence[str], final_step: int) -> tuple[list[int], list[int]]:
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


def calibration_split(groups: np.ndarray | int, calibration: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(calibration [n_cal], pool [n - n_cal])``, sorted: a seeded random ``calibration`` share
    (>= 2 seeds) of whole init families (``groups [n_seeds]``; an int ``n``: n seeds each its own), taken in
    a seeded order until the share is reached, so that no pool seed has a relative the forecaster was
    fitted on (outside audit 124: seeds drawn one by one left a third of the pool with a calibrated
    sibling, whose known fate the forecaster read; a label no early fingerprint carries was "selected"
    at 100%). Seeds of a single family are split one by one, with a warning."""
    groups = np.arange(groups) if isinstance(groups, (int, np.integer)) else np.asarray(groups)
    n, want = len(groups), max(2, int(round(calibration * len(groups))))
    families = np.unique(groups)
    taken = np.zeros(n, dtype=bool)
    for f in families[np.random.default_rng(seed).permutation(len(families))]:
        if taken.sum() >= want:
            break
        taken |= groups == f
    if taken.all():  # one family (or one holding most seeds): nothing left without a relative
        warnings.warn(f"the {n} seeds are of {len(families)} init famil{'y' if len(families) == 1 else 'ies'}: no "
                      "calibration set of whole families leaves a pool, so calibration and pool seeds are relatives "
                      "(the forecast may read a relative's known fate)", stacklevel=2)
        order = np.random.default_rng(seed).permutation(n)
        return np.sort(order[:want]), np.sort(order[want:])
    return np.flatnonzero(taken), np.flatnonzero(~taken)


def selection_compute(n_seeds: int, n_calibration: int, n_selected: int, at_step: int, final_step: int) -> tuple[int, int]:
    """``(used, baseline)`` in model-steps: every seed to ``at_step``, calibration and selected seeds on
    to the end; against every seed trained to the end."""
    used = n_seeds * at_step + (n_calibration + n_selected) * (final_step - at_step)
    return used, n_seeds * final_step


def select_and_continue(zoo: Zoo, basin: str, at_step: int, out: Path | None, fp: str = "ood-outputs", label: str | None = None,
                        budget: int | None = None, calibration: float = 0.25, threshold: float = 0.5, seed: int = 0,
                        executor: Any = "local", device: str = "cpu", overwrite: bool = False, resume: bool = False,
                        lineage: str | None = None, **callbacks) -> dict[str, Any]:
    """Forecast at ``at_step`` with a calibration subset, continue the selected seeds, measure purity and compute.

    With no seed forecast for ``basin`` (``n_selected == 0``) nothing is trained and ``out`` is not written.
    An imported zoo (``out`` ``None``) is not continued: its chosen seeds' purity is measured on the
    final checkpoints it holds (``continued`` false), what a selection at ``at_step`` would have given
    (an outside audit, 75: the forecast named no seed, and select refused imports)."""
    from analysis.forecast import select  # deferred for start-up time

    check_device(device)
    check_out(zoo, out)
    continued = not imported(zoo)
    if not 0 < threshold <= 1:
        raise UserError(f"--threshold must be in (0, 1], got {threshold}")
    if budget is not None and budget < 1:
        raise UserError(f"--budget must be at least 1, got {budget}")
    if not 0 < calibration < 1:
        raise UserError(f"--calibration must be in (0, 1), got {calibration}")
    grid = _seed_grid(zoo)
    finals = np.asarray(zoo.models["final_step"])[zoo.index(grid)]
    _check_history(zoo, _steps(zoo, grid, int(finals.max()))[0])  # audit 124: a ZeroDivisionError without a history
    if at_step not in zoo.steps:
        raise UserError(f"--at-step {at_step} is not a stored checkpoint (steps: {', '.join(map(str, zoo.steps))})")
    if at_step >= common_end(finals):  # an import's final step: its outcome read, not forecast (audit 124)
        raise UserError(f"--at-step {at_step} is the models' final step ({common_end(finals)}): a selection there forecasts "
                        "nothing; choose an earlier checkpoint")
    there = set(zoo.models_at(at_step))
    ids = [m for m in grid if m in there]  # an import's model without that checkpoint sits out (a review: one lost file stopped it)
    if len(ids) < 4:
        raise UserError(f"--at-step {at_step}: {len(ids)} of the {len(grid)} seeds have a checkpoint there; choose another step")
    families = forecast_families(zoo, ids, model_table(zoo), lineage)
    t = forecast_target(zoo, ids, label, fp, families)
    y, target = t.basins, t.name
    check_target(y, target, basin)
    for w in forecast_warnings({"families_known": families.known, "lineage": families.column, "models_alone": families.alone,
                                "targets": {fp: t.info() or {}}, "steps_left_out": [], "final_steps": [0]}, len(ids), finals):
        warnings.warn(w.replace("forecast's folds keep", "calibration keeps").replace("a fold", "the split"), stacklevel=2)
    cal, pool = calibration_split(families.groups, calibration, seed)
    check_calibration(y[cal], families.groups[cal], basin, calibration)
    cal_ids, pool_ids = [ids[i] for i in cal], [ids[i] for i in pool]
    (values,) = extract(zoo, [fp], step=at_step, model_ids=ids)  # one extraction: a population-relative fingerprint's
    if values.error:  # frame (cka's, aligned-weights' reference) is the same for both (outside audit 124)
        raise UserError(values.error)
    rows = {m: i for i, m in enumerate(values.model_ids)}
    x = np.asarray(values.values)
    keep, proba = select(x[[rows[m] for m in cal_ids]], y[cal], x[[rows[m] for m in pool_ids]], basin, budget, threshold, seed)
    chosen = [pool_ids[i] for i in keep]
    T = common_end(np.asarray(zoo.models["final_step"])[zoo.index(ids)])  # as the forecast's fractions (a review)
    result: dict[str, Any] = {"basin": basin, "target": target, "fingerprint": fp, "at_step": at_step, "fraction": at_step / T,
                              "n_seeds": len(ids), "n_calibration": len(cal_ids), "n_pool": len(pool_ids),
                              "without_checkpoint": [m for m in grid if m not in there],
                              "n_selected": len(chosen), "selected": chosen, "out": None if out is None else str(out),
                              "continued": continued, "calibration_seeds": cal_ids, "lineage": families.column,
                              "n_calibration_families": len(set(families.groups[cal].tolist())),
                              "probabilities": {m: round(float(v), 4) for m, v in zip(pool_ids, proba)}}
    base_rate = float(np.mean(y[pool] == basin))
    if chosen and not continued:  # trained elsewhere: the final checkpoints the zoo holds say where each ended
        got = y[[ids.index(c) for c in chosen]]
        purity, trained_steps = float(np.mean(got == basin)), 0
    elif chosen:
        summary = continue_models(zoo.path, chosen, at_step, out, executor=executor, device=device, overwrite=overwrite,
                                  resume=resume, **callbacks)
        new = Zoo.open(out)
        column = label or "deep_label"
        if column in new.models:  # each continued model's label, in the order of ``chosen`` (its parent_id)
            by_parent = dict(zip(new.models["parent_id"], np.asarray(new.models[column]).astype(str)))
            got = np.asarray([by_parent[c] for c in chosen])
        else:
            got = y[[ids.index(c) for c in chosen]]
        purity = float(np.mean(got == basin))
        trained_steps = summary.model_steps
        result["exact"] = bool(new.manifest["continue_from"].get("exact"))
        if not result["exact"]:  # outside audit 124: restarted moments made other models, and nothing said so
            warnings.warn(f"zoo '{zoo.path}' saved no optimiser state at step {at_step} (train.save_optimizer_state = "
                          "false): the continued seeds restart their optimiser's moments, so they are not the models "
                          "its own training made; purity is measured on the continued models", stacklevel=2)
    else:
        purity, trained_steps = float("nan"), 0
    used, baseline = selection_compute(len(ids), len(cal_ids), len(chosen), at_step, T)
    in_pool = int(np.sum(y[pool] == basin))
    found = int(np.sum(y[[ids.index(c) for c in chosen]] == basin)) if chosen else 0
    result.update(selection_intervals(zoo, ids, pool, [ids.index(c) for c in chosen], y == basin,
                                      got == basin if chosen else None, families.groups))
    result.update({"purity": purity, "base_rate": base_rate, "recall": found / in_pool if in_pool else None,
                   "purity_source": found / len(chosen) if chosen else None,
                   "model_steps_used": used, "model_steps_baseline": baseline, "compute_saved": 1 - used / baseline,
                   "continued_model_steps": trained_steps, "selected_true_basin_count": found})
    zoo.save_result(f"select-{basin}-{at_step}".replace("/", "_").replace(" ", "_"), result)
    return result


class NothingToSelect(UserError):
    """A population the selection cannot forecast (one final basin; a calibration without two seeds on each side):
    the command refuses it; a run's ``[forecast]`` section skips its selection with a warning."""


def check_target(y: np.ndarray, target: str, basin: str) -> None:
    """A basin the target has, and another beside it (audit 124: a one-basin null trained a "selection" of every seed)."""
    if basin not in set(y):
        raise UserError(f"unknown basin '{basin}' for {target} (valid: {', '.join(sorted(set(y)))})")
    if len(set(y)) < 2:
        raise NothingToSelect(f"one final basin ('{basin}') of {target}: nothing to select (every seed ends there)")


def check_calibration(y_cal: np.ndarray, groups: np.ndarray, basin: str, calibration: float) -> None:
    """At least 2 calibration seeds in ``basin`` and 2 outside it, else a one-line refusal (outside audit 124: a
    forecaster that had seen no seed of a small basin selected nothing and said nothing; one that had seen one picked
    its sibling)."""
    inside = y_cal == basin
    if inside.sum() < 2 or (~inside).sum() < 2:
        raise NothingToSelect(f"the calibration seeds ({len(y_cal)} of {len(set(groups.tolist()))} init families) hold "
                        f"{int(inside.sum())} in basin '{basin}' and {int((~inside).sum())} outside it: the forecaster "
                        f"needs at least 2 of each; raise --calibration (now {calibration:g})")


def selection_intervals(zoo: Zoo, ids: list[str], pool: np.ndarray, chosen: list[int], bound: np.ndarray,
                        purity_hits: np.ndarray | None, groups: np.ndarray | None = None) -> dict[str, list[float] | None]:
    """95% intervals of a selection's shares, counting init families
    (:func:`analysis.intervals.proportion_interval`; ``None`` below four families): ``purity_ci``
    over the selected seeds (``purity_hits [n_selected]``: each continued model ended in the basin),
    ``base_rate_ci`` over the pool, ``recall_ci`` over the pool's seeds bound for the basin
    (``bound [n_seeds]``). Seeds of one family share their fate early in training, so a selection of
    a few families is a few draws however many seeds it holds; where every hit is alike, the seeds count as
    as many draws as their families."""
    groups = forecast_families(zoo, ids, model_table(zoo), None).groups if groups is None else groups
    pool = np.asarray(pool, dtype=int)
    in_b = pool[bound[pool]]
    picked = np.isin(in_b, chosen)

    def ci(hits: np.ndarray, rows: np.ndarray) -> tuple[float, float] | None:
        # every hit alike (a selection all right, the common case): the hits cannot show how relatives share their
        # fate, so the seeds count as their families (outside audit 124: 15 picks of 5 families read [85%, 100%])
        alike = len(rows) and np.ptp(hits) == 0
        shared = len(rows) / len(set(groups[rows].tolist())) if alike else 1.0
        return None if not len(rows) else proportion_interval(hits, groups[rows], shared_deff=shared)
    out = {"purity_ci": None if purity_hits is None else ci(np.asarray(purity_hits, float), np.asarray(chosen, dtype=int)),
           "base_rate_ci": ci(bound[pool].astype(float), pool), "recall_ci": ci(picked.astype(float), in_b)}
    return {k: None if v is None else [float(v[0]), float(v[1])] for k, v in out.items()}


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


def forecast_step_for(curve: list[dict], fp: str, final_step: int, level: float = 0.9) -> int:
    """The checkpoint to select at: the earliest before the end whose forecast accuracy with ``fp``
    reaches ``level`` while beating the majority guess (:func:`analysis.forecast.reaches`), else the
    most accurate one before the end."""
    from analysis.forecast import reaches  # deferred for start-up time

    pts = [p for p in curve if p["fingerprint"] == fp and p["step"] < final_step and p.get("accuracy") is not None]
    if not pts:
        why = next((p["skipped"] for p in curve if p["fingerprint"] == fp and p.get("skipped")), None)
        raise UserError(f"no forecast of '{fp}' before the final step {final_step}"
                        + (f" ({why}, so no classifier can be cross-validated)" if why else "") + ": set forecast.at_step")
    hits = [p["step"] for p in pts if reaches(p, "accuracy", level)]
    return min(hits) if hits else max(pts, key=lambda p: (p["accuracy"], -p["step"]))["step"]


def procedure(zoo: Zoo, settings: ForecastSettings, selected: Path, label: str | None = None, resume: bool = False,
              **callbacks) -> dict[str, Any]:
    """Forecast, then select and continue into ``selected`` (a new zoo): both results are stored in
    ``zoo`` (``results/forecast.json``, ``results/select-B-S.json``) for the report."""
    out: dict[str, Any] = {}
    fp = settings.fingerprint or (list(settings.fingerprints) or [None])[0]
    auto = settings.basin is not None and settings.at_step is None  # the forecast curve picks the step
    specs = list(dict.fromkeys([*settings.fingerprints, *([fp] if auto else [])]))
    if specs:
        out["forecast"] = forecast(zoo, specs, label, settings.exclude_basins)
    if settings.basin is not None:
        step = settings.at_step
        if step is None:
            step = forecast_step_for(out["forecast"]["forecast"], fp, out["forecast"]["final_step"])
        try:
            out["select"] = select_and_continue(zoo, settings.basin, step, selected, fp, label, settings.budget,
                                                settings.calibration, settings.threshold, resume=resume and selected.exists(),
                                                **callbacks)
        except NothingToSelect as e:  # the run's sweep and analysis stand; its selection is said, not made
            warnings.warn(f"no selection: {e}", stacklevel=2)
    return out
