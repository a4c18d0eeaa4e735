"""Glue for ``fingerprint transfer``: zoo -> one fingerprint at every scale -> the scale-transfer table.

A zoo trained with a ``model.sweep`` (``xor-cues-scale-quick``) holds one group per scale, stored in
each model's ``group`` column (``model.width=16``). ``transfer`` extracts one fingerprint for every
model, fits the basin classifier of :mod:`analysis.transfer` on the models that match ``--fit``
(``model.width=16``, or several settings joined by commas) and scores it unchanged on every other
group. Only fingerprints whose columns mean the same at every scale can transfer: outputs on the
task's shared probe sets (``probe-outputs``, ``ood-outputs``, ...) do; per-weight fingerprints of
different widths do not, and extraction refuses them in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.errors import AnalysisError
from analysis.sortkeys import natural_key
from analysis.transfer import basin_transfer, scale_key
from fingerprint.extraction import active_models, extract
from training.core.errors import UserError, choices
from training.core.store import Zoo
from training.plan import group_settings


def parse_fit(text: str, groups: list[str]) -> dict[str, str]:
    """``"model.width=16[,model.depth=1]"`` -> ``{key: value}``, checked against the zoo's groups."""
    settings = [group_settings(g) for g in groups]
    valid: dict[str, set[str]] = {}
    for s in settings:
        for k, v in s.items():
            valid.setdefault(k, set()).add(v)
    if not valid:
        raise UserError("this zoo has one group: nothing to transfer across (train a config with a model.sweep, "
                        "e.g. xor-cues-scale-quick)")
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or any("=" not in p for p in pairs):
        raise UserError(f"--fit must be KEY=VALUE[,KEY=VALUE], got {text!r} (keys: {choices(valid)})")
    out = {}
    for p in pairs:
        k, v = (s.strip() for s in p.split("=", 1))
        if k not in valid:
            raise UserError(f"unknown --fit key {k!r} (valid: {choices(valid)})")
        if v not in valid[k]:
            raise UserError(f"--fit {k}={v} matches no model (valid values of {k}: "
                            f"{', '.join(sorted(valid[k], key=natural_key))})")
        out[k] = v
    return out


def transfer(zoo: Zoo, fp: str, fit: str, label: str | None = None, family: str = "init_seed",
             random_state: int = 0) -> dict[str, Any]:
    """The scale-transfer table as JSON-ready data: ``{"fit_on", "fingerprint", "label", "classes",
    "scales": [{"scale", "n_models", "auroc", "auroc_ci", "accuracy", "accuracy_ci", "basin_shares",
    "predicted_shares", "fit", "unseen_basins"}, ...]}``. The models matching ``fit`` form one
    scale named ``fit``; every other group is its own scale."""
    label = label or "deep_label"
    for col in (label, family, "group"):
        if col not in zoo.models:
            raise UserError(f"unknown model column '{col}' (valid: {', '.join(zoo.models.names())})")
    ids = active_models(zoo)
    idx = zoo.index(ids)
    groups = [str(g) for g in np.asarray(zoo.models["group"], dtype=str)[idx]]
    want = parse_fit(fit, sorted(set(groups), key=scale_key))
    fit_name = ",".join(f"{k}={v}" for k, v in want.items())
    scale = [fit_name if all(group_settings(g).get(k) == v for k, v in want.items()) else g for g in groups]
    if len(set(scale)) < 2:
        raise UserError(f"every model matches --fit {fit_name}: no other scale to transfer to "
                        f"(groups: {', '.join(sorted(set(groups), key=scale_key))})")
    (res,) = extract(zoo, [fp], model_ids=ids)
    if res.error:
        raise UserError(res.error)
    if res.meta.get("output") == "distances":
        raise UserError(f"fingerprint '{fp}' gives distances between models, not a row per model: a classifier "
                        "cannot be carried to other models (use a behavioural one, e.g. probe-outputs)")
    order = zoo.index(res.model_ids)  # rows as extraction returned them
    pos = {m: i for i, m in enumerate(ids)}
    rows = [pos[m] for m in res.model_ids]
    try:
        r = basin_transfer(res.values, np.asarray(zoo.models[label], dtype=str)[order], [scale[i] for i in rows],
                           np.asarray(zoo.models[family])[order], fit_name, random_state=random_state)
    except AnalysisError as e:
        raise UserError(str(e)) from None
    return {"zoo": str(zoo.path), "fingerprint": fp, "label": label, "family": family, **r.to_dict()}
