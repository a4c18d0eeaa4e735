"""``fingerprint select``: the proposal's procedure on a zoo. ``select_and_continue`` fits the forecaster
(:mod:`fingerprint.forecast`) on a calibration subset of whole init families trained to the end, forecasts the
other seeds at an early step, continues only the seeds predicted to land in the wanted basin (from their
checkpoints, never from scratch), and reports the purity reached and the compute used against training every
seed to the end. ``procedure`` runs the forecast and the selection for ``fingerprint run`` (and the demo) from
the config's ``[forecast]`` section.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from analysis.intervals import proportion_interval
from fingerprint.extraction import extract
from fingerprint.forecast import (
    ForecastSettings,
    check_history,
    check_out,
    forecast,
    forecast_warnings,
    history_steps,
    imported,
    seed_grid,
)
from fingerprint.forecast_target import forecast_families, forecast_target
from fingerprint.import_history import common_end
from fingerprint.tables import model_table
from training.core.errors import UserError
from training.core.store import Zoo
from training.plan import check_device
from training.select import continue_models


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
    order = families[np.random.default_rng(seed).permutation(len(families))]
    for f in order:  # each family that brings the share nearer (review 126: one of 15 beside singletons took 15 of 16)
        if abs(taken.sum() + (groups == f).sum() - want) < abs(taken.sum() - want):
            taken |= groups == f
    for f in sorted(order, key=lambda f: (groups == f).sum()):  # every family larger than twice the share: the smallest
        if taken.sum() >= 2:
            break
        taken |= groups == f
    if taken.all():  # one family (or one holding most seeds): nothing left without a relative
        warnings.warn(f"the {n} seeds are of {len(families)} init famil{'y' if len(families) == 1 else 'ies'}: no "
                      "calibration set of whole families leaves a pool, so calibration and pool seeds are relatives "
                      "(the forecast may read a relative's known fate)", stacklevel=2)
        order = np.random.default_rng(seed).permutation(n)
        return np.sort(order[:want]), np.sort(order[want:])
    return np.flatnonzero(taken), np.flatnonzero(~taken)


def grow_calibration(groups: np.ndarray, cal: np.ndarray, bound: np.ndarray, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(calibration, pool, families added)``: ``cal`` with whole init families added in a seeded order, whatever
    their outcome (a user trains more random seeds to the end; review 127: choosing families by their final basins
    used the pool's outcomes and drained the basin from it), until the calibration holds 2 families whose models end
    in the basin (``bound [n]``) and 2 whose models end outside it, while a family stays in the pool."""
    groups = np.asarray(groups)
    taken = np.zeros(len(groups), dtype=bool)
    taken[cal] = True
    added = 0
    for f in np.unique(groups)[np.random.default_rng(seed + 1).permutation(len(np.unique(groups)))]:
        if min(len(set(groups[taken & b].tolist())) for b in (bound, ~bound)) >= 2:
            break
        rows = groups == f
        if taken[rows].any() or not (~taken & ~rows).any():
            continue
        taken |= rows
        added += 1
    return np.flatnonzero(taken), np.flatnonzero(~taken), added


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
    grid = seed_grid(zoo)
    finals = np.asarray(zoo.models["final_step"])[zoo.index(grid)]
    check_history(zoo, history_steps(zoo, grid, int(finals.max()))[0])  # audit 124: a ZeroDivisionError without a history
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
    info = t.info() or {}  # (its models without a candidate basin counted before they sit out)
    trained, without_basin = len(ids), [m for m, b in zip(ids, t.basins) if b == ""]  # (review 127: named, and counted
    if without_basin:  # in the compute) no candidate basin (a generation of its own): not forecast, as in forecast
        keep = t.basins != ""
        ids = [m for m, k in zip(ids, keep) if k]
        families = dataclasses.replace(families, groups=families.groups[keep])
        t = dataclasses.replace(t, basins=t.basins[keep])
    y, target = t.basins, t.name
    check_target(y, target, basin)
    for w in forecast_warnings({"families_known": families.known, "lineage": families.column, "models_alone": families.alone,
                                "targets": {fp: info}, "steps_left_out": [], "final_steps": [0]}, len(ids), finals):
        warnings.warn(w.replace("forecast's folds keep", "calibration keeps").replace("a fold", "the split"), stacklevel=2)
    cal, pool = calibration_split(families.groups, calibration, seed)
    cal, pool, grown = grow_calibration(families.groups, cal, y == basin, seed)
    if grown:  # a seeded draw short of a side: more seeds trained to the end, as a user would (review 126)
        warnings.warn(f"the calibration grew by {grown} init famil{'y' if grown == 1 else 'ies'} ({len(cal)} seeds) to "
                      f"hold 2 families in basin '{basin}' and 2 outside it", stacklevel=2)
    check_calibration(y[cal], families.groups[cal], basin, calibration, y, families.groups)
    cal_ids, pool_ids = [ids[i] for i in cal], [ids[i] for i in pool]
    (values,) = extract(zoo, [fp], step=at_step, model_ids=ids)  # one extraction: a population-relative fingerprint's
    if values.error:  # frame (cka's, aligned-weights' reference) is the same for both (outside audit 124)
        raise UserError(values.error)
    rows = {m: i for i, m in enumerate(values.model_ids)}
    x = np.asarray(values.values)
    keep, proba = select(x[[rows[m] for m in cal_ids]], y[cal], x[[rows[m] for m in pool_ids]], basin, budget, threshold, seed,
                         families.groups[cal] if families.known else None, families.groups[pool] if families.known else None)
    picked = pool[keep]  # the chosen seeds' rows of ids
    chosen = [ids[i] for i in picked]
    T = common_end(np.asarray(zoo.models["final_step"])[zoo.index(ids)])  # as the forecast's fractions (a review)
    result: dict[str, Any] = {"basin": basin, "target": target, "fingerprint": fp, "at_step": at_step, "fraction": at_step / T,
                              "n_seeds": len(ids), "n_calibration": len(cal_ids), "n_pool": len(pool_ids),
                              "without_checkpoint": [m for m in grid if m not in there], "without_basin": without_basin,
                              "n_selected": len(chosen), "selected": chosen, "out": None if out is None else str(out),
                              "continued": continued, "calibration_seeds": cal_ids, "lineage": families.column,
                              "n_calibration_families": len(set(families.groups[cal].tolist())),
                              "probabilities": {m: round(float(v), 4) for m, v in zip(pool_ids, proba)}}
    base_rate = float(np.mean(y[pool] == basin))
    if chosen and not continued:  # trained elsewhere: the final checkpoints the zoo holds say where each ended
        got = y[picked]
        purity, trained_steps = float(np.mean(got == basin)), 0
    elif chosen:
        summary = continue_models(zoo.path, chosen, at_step, out, executor=executor, device=device, overwrite=overwrite,
                                  resume=resume, **callbacks)
        new = Zoo.open(out)
        column = label or "deep_label"
        if column in new.models:  # each continued model's label, in the order of ``chosen`` (its parent_id)
            by_parent = dict(zip(new.models["parent_id"], np.asarray(new.models[column]).astype(str)))
            got = np.asarray([by_parent[c] for c in chosen])
        else:  # the continued models carry no such column (a label-free target): the source's (review 126 F8)
            got = y[picked]
            result["purity_from_source"] = True
        purity = float(np.mean(got == basin))
        trained_steps = summary.model_steps
        cfg = (zoo.config or {}).get("train") or {}  # plain SGD has no state to restore: exact without one
        stateless = cfg.get("optimizer") == "sgd" and not cfg.get("momentum")
        result["exact"] = bool(new.manifest["continue_from"].get("exact")) or stateless
        if not result["exact"]:  # outside audit 124: restarted moments made other models, and nothing said so
            warnings.warn(f"zoo '{zoo.path}' saved no optimiser state at step {at_step} (train.save_optimizer_state = "
                          "false): the continued seeds restart their optimiser's moments, so they are not the models "
                          "its own training made; purity is measured on the "
                          + ("source's final models (the continued ones carry no basin column)"
                             if result.get("purity_from_source") else "continued models"), stacklevel=2)
    else:
        purity, trained_steps = float("nan"), 0
    used, baseline = selection_compute(trained, len(cal_ids), len(chosen), at_step, T)  # every seed trained to at_step
    in_pool = int(np.sum(y[pool] == basin))
    found = int(np.sum(y[picked] == basin))
    result.update(selection_intervals(families.groups, pool, picked, y == basin, got == basin if chosen else None))
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
    if len(set(y)) < 2:  # before the basin's name: a run's config names the basin it hoped for (review 126)
        raise NothingToSelect(f"one final basin ('{next(iter(set(y)), '')}') of {target}: nothing to select (every seed "
                              "ends there)")
    if basin not in set(y):
        raise UserError(f"unknown basin '{basin}' for {target} (valid: {', '.join(sorted(set(y)))})")


def check_calibration(y_cal: np.ndarray, groups: np.ndarray, basin: str, calibration: float,
                      y_all: np.ndarray | None = None, groups_all: np.ndarray | None = None) -> None:
    """At least 2 init families of calibration seeds in ``basin`` and 2 outside it, else a one-line refusal (outside
    audit 124: a forecaster that had seen no seed of a small basin selected nothing and said nothing; one that had seen
    one picked its sibling; review 126: families, not seeds: one family's seeds are one draw). With the whole
    population's basins and families (``y_all``, ``groups_all``), a population that cannot give 2 of each whatever the
    draw is told so, not to raise --calibration (review 127: 2 families by --lineage data_seed)."""
    inside = y_cal == basin
    fam_in, fam_out = len(set(groups[inside].tolist())), len(set(groups[~inside].tolist()))
    if min(fam_in, fam_out) >= 2:
        return
    head = (f"the calibration seeds ({len(y_cal)} of {len(set(groups.tolist()))} init families) hold "
            f"{int(inside.sum())} in basin '{basin}' ({fam_in} famil{'y' if fam_in == 1 else 'ies'}) "
            f"and {int((~inside).sum())} outside it ({fam_out}): the forecaster needs at least 2 families of each")
    if y_all is not None and groups_all is not None:
        g_all, in_all = np.asarray(groups_all), np.asarray(y_all) == basin
        all_in, all_out, n_fam = len(set(g_all[in_all].tolist())), len(set(g_all[~in_all].tolist())), len(set(g_all.tolist()))
        if min(all_in, all_out) < 2 or n_fam < 3:  # (and a family left for the pool)
            raise NothingToSelect(f"{head}, and the population's {n_fam} init famil{'y' if n_fam == 1 else 'ies'} cannot "
                                  f"give them whatever the draw ({all_in} with a seed in '{basin}', {all_out} with one "
                                  "outside it, and one or more left for the pool): train more init families, or name "
                                  "the families with --lineage")
    raise NothingToSelect(f"{head}; raise --calibration (now {calibration:g}) or draw another with --seed")


def selection_intervals(groups: np.ndarray, pool: np.ndarray, chosen: np.ndarray, bound: np.ndarray,
                        purity_hits: np.ndarray | None) -> dict[str, list[float] | None]:
    """95% intervals of a selection's shares, counting the init families ``groups [n_seeds]``
    (:func:`analysis.intervals.proportion_interval`; ``None`` below four families): ``purity_ci``
    over the selected seeds (``purity_hits [n_selected]``: each continued model ended in the basin),
    ``base_rate_ci`` over the pool, ``recall_ci`` over the pool's seeds bound for the basin
    (``bound [n_seeds]``). Seeds of one family share their fate early in training, so a selection of
    a few families is a few draws however many seeds it holds: the seeds count as their families (the rows' mean
    family size is a floor of the design effect)."""
    pool = np.asarray(pool, dtype=int)
    in_b = pool[bound[pool]]
    picked = np.isin(in_b, chosen)

    def ci(hits: np.ndarray, rows: np.ndarray) -> tuple[float, float] | None:
        # the seeds count as their families at every share (outside audit 124: 15 picks of 5 families, all right, read
        # [85%, 100%]; review 126: a floor at the extremes only read 14 of 15 narrower than 15 of 15)
        if not len(rows):
            return None
        return proportion_interval(hits, groups[rows], shared_deff=len(rows) / len(set(groups[rows].tolist())))
    out = {"purity_ci": None if purity_hits is None else ci(np.asarray(purity_hits, float), np.asarray(chosen, dtype=int)),
           "base_rate_ci": ci(bound[pool].astype(float), pool), "recall_ci": ci(picked.astype(float), in_b)}
    return {k: None if v is None else [float(v[0]), float(v[1])] for k, v in out.items()}


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
