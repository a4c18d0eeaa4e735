"""The model table the analysis reads: the zoo's columns, plus the families ``fingerprint lineage``
recovered from the weights (``recovered_family``), and what a stored analysis must match; and the
stored lineage forest with the zoo's true one, for the report."""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.options import AnalysisOptions
from training.core.store import Zoo

__all__ = ["RECOVERED", "model_table", "options_stamp", "stored_lineage"]

RECOVERED = "recovered_family"  # the model column that `fingerprint lineage`'s weight-recovered families add


def model_table(zoo: Zoo) -> dict[str, np.ndarray]:
    """The zoo's model columns, plus ``recovered_family`` when ``fingerprint lineage`` stored
    families recovered from the weights for exactly this model set (``results/lineage.json``)."""
    table = dict(zoo.models.columns)
    rec = zoo.load_result("lineage")
    if isinstance(rec, dict) and rec.get("model_set") == zoo.model_set_hash() and RECOVERED not in table:
        family_of = rec.get("family_of") or {}
        table[RECOVERED] = np.asarray([str(family_of.get(m, f"alone:{m}")) for m in zoo.model_ids], dtype=object)
    return table


def options_stamp(zoo: Zoo, opts: AnalysisOptions) -> dict[str, Any]:
    """The options a stored analysis must match; with recovered families, also which recovery."""
    d = opts.to_dict()
    if opts.lineage == RECOVERED:
        rec = zoo.load_result("lineage") or {}
        d["recovered"] = {k: rec.get(k) for k in ("evidence", "alpha", "model_set", "family_rule")}
    return d


def stored_lineage(zoo: Zoo) -> dict[str, Any] | None:
    """``fingerprint lineage``'s stored forest for exactly this model set (``results/lineage.json``),
    with the zoo's truth beside it: ``true_parent`` ``{child: parent}`` (``parent_id``) and
    ``true_family`` ``{model: family}`` (the column the run scored against; ``{}`` when unknown).
    None when nothing current is stored, or it predates the stored forest."""
    rec = zoo.load_result("lineage")
    if not isinstance(rec, dict) or rec.get("model_set") != zoo.model_set_hash() or "edges" not in rec:
        return None
    ids = [str(m) for m in zoo.model_ids]
    known = set(ids)
    parents = [str(p) for p in zoo.models["parent_id"]] if "parent_id" in zoo.models else [""] * len(ids)
    col = rec.get("lineage_column") or "init_seed"
    fams = [str(v) for v in zoo.models[col]] if col in zoo.models else []
    return {**rec, "true_parent": {c: p for c, p in zip(ids, parents) if p in known and p != c},
            "true_family": {m: f for m, f in zip(ids, fams) if f not in ("", "-1", "None", "nan")}}
