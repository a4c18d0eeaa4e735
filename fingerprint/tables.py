"""The model table the analysis reads: the zoo's columns, plus the families ``fingerprint lineage``
recovered from the weights (``recovered_family``), and what a stored analysis must match; and the
stored lineage forest with the zoo's true one, for the report."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from analysis.options import AnalysisOptions
from training.core.errors import UserError
from training.core.store import Zoo

__all__ = ["RECOVERED", "check_parents", "model_table", "options_stamp", "recovered_line", "sizes_text", "stored_lineage"]

RECOVERED = "recovered_family"  # the model column that `fingerprint lineage`'s weight-recovered families add


def check_parents(meta: dict[str, np.ndarray] | None, ids: list[str], path: Any) -> None:
    """Refuse a metadata file whose ``parent_id`` has a typo of a model id or a cycle
    (:func:`analysis.metrics.parent_problem`), in one line naming the file, before anything is written."""
    from analysis.metrics import parent_problem  # deferred for start-up time

    problem = None if not meta or "parent_id" not in meta else parent_problem(ids, meta["parent_id"])
    if problem:
        raise UserError(f"metadata file '{path}': {problem}")


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


def sizes_text(sizes: list[int], most: int = 6) -> str:
    """``72, 32 (x2), 16 (x2), 8 (x9)``: family sizes, largest first, repeats counted (the ``most``
    largest distinct sizes, then ``...``)."""
    runs = sorted(Counter(sizes).items(), reverse=True)
    return ", ".join(f"{s} (x{c})" if c > 1 else str(s) for s, c in runs[:most]) + (", ..." if len(runs) > most else "")


def recovered_line(lineage: str | None, zoo: Zoo | None) -> str | None:
    """The terminal's line when the lineage used is the families ``fingerprint lineage`` recovered
    from the weights (an estimate standing in for the zoo's missing one): how many, their sizes,
    from what. None for any other lineage."""
    if zoo is None or lineage != RECOVERED:
        return None
    rec = zoo.load_result("lineage") or {}
    values = [str(v) for v in model_table(zoo).get(RECOVERED, [])]
    sizes = list(Counter(values).values())
    n, alone = sum(s >= 2 for s in sizes), sum(s == 1 for s in sizes)
    if n == 0:  # nothing recovered: no size list to give (the thirteenth audit's "exact;  models")
        return (f"lineage: `fingerprint lineage` recovered no family of two or more (weights, {rec.get('evidence', 'exact')}); "
                f"all {alone} models alone, each its own family: an estimate, not a column of the zoo (docs/lineage.md)")
    return (f"lineage: the {n} {'family' if n == 1 else 'families'} recovered by `fingerprint lineage` (weights, "
            f"{rec.get('evidence', 'exact')}; {sizes_text([s for s in sizes if s >= 2])} models"
            + (f", and {alone} {'model' if alone == 1 else 'models'} alone" if alone else "")
            + "), not a column of the zoo: an estimate (docs/lineage.md)"
            + ("" if rec.get("family_rule") else "; stored before the family rule, as connected components of the "
               "significant pairs, which one false pair merges: rerun `fingerprint lineage ZOO`"))
