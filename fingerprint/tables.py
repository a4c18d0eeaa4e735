"""The model table the analysis reads: the zoo's columns, plus the families ``fingerprint lineage``
recovered from the weights (``recovered_family``) and, when nothing records the init families, those
of models whose first stored checkpoints are bit-identical (``first_checkpoint_family``), and what a
stored analysis must match; and the stored lineage forest with the zoo's true one, for the report."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np

from analysis.options import AnalysisOptions
from analysis.parents import inherit_lineage, root_family
from analysis.values import missing
from fingerprint.twins import TWIN_R, frozen_tensors, twin_families
from training.core.errors import UserError
from training.core.store import Zoo

__all__ = ["FIRST_CHECKPOINT", "PARENT_TREE", "RECOVERED", "TWIN_FAMILY", "imported_only", "check_parents", "model_table", "options_stamp", "recovered_line",
           "says_something", "shared_starts", "sizes_text", "stored_lineage", "unrecorded_lineage"]

RECOVERED = "recovered_family"  # the model column that `fingerprint lineage`'s weight-recovered families add
FIRST_CHECKPOINT = "first_checkpoint_family"  # the column of models whose first checkpoints are bit-identical
PARENT_TREE = "parent_tree"  # the column of each model's parent_id root, when nothing else records families
TWIN_FAMILY = "twin_family"  # an import's models joined by near-twin weights, when nothing else gives families


def says_something(col: Any) -> bool:
    """Whether a lineage column separates models: two or more values that are not 'none recorded' (-1, "")."""
    values = {v for v in np.asarray(col).tolist() if not (isinstance(v, (int, float)) and v < 0) and str(v) != ""}
    return len(values) >= 2


def shared_starts(zoo: Zoo) -> np.ndarray | None:
    """Each model's family by its first stored checkpoint ``[n_models]`` (zoo order): a model whose first
    checkpoint is bit-identical to another model's first, to its checkpoint at that step, or to its
    final one shares that model's family (a shared initialisation, as an import's ``step_0.pt`` of
    relatives; a child spawned from a copy; a fine-tune saved first as its base's final weights), seen
    directly. ``None`` when no two are linked, or the zoo stores one step. A model with one checkpoint
    (its first is its final one) is in practice linked to none: its own family (an outside audit: one
    such model had switched the families off for all 24). Reads each model's first and final
    checkpoints and every checkpoint at a step some model starts at."""
    ids = zoo.model_ids
    if not ids or len(zoo.steps) < 2:  # one stored step: every model's first checkpoint is its final one
        return None
    steps = {m: zoo.model_steps(m) for m in ids}  # a model with one checkpoint (a pruned history) is linked to none
    where = {m: i for i, m in enumerate(ids)}
    digests: dict[str, list[int]] = {}  # a checkpoint's hash -> the models that have it
    first = [""] * len(ids)
    wanted = {(m, s[0]) for m, s in steps.items()} | {(m, s[-1]) for m, s in steps.items()}
    starts = sorted({s[0] for s in steps.values()})
    wanted |= {(m, t) for m, s in steps.items() for t in starts if t in s}
    for step in sorted({t for _, t in wanted}):
        at = [m for m in ids if (m, step) in wanted]
        p = zoo.params(step, at)
        for i, m in enumerate(at):
            h = hashlib.sha256()
            for k in sorted(p):
                h.update(p[k][i].numpy().tobytes())
            d = h.hexdigest()
            digests.setdefault(d, []).append(where[m])
            if step == steps[m][0]:
                first[where[m]] = d
    root = list(range(len(ids)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, d in enumerate(first):
        for j in digests[d]:
            root[find(i)] = find(j)
    fam = [find(i) for i in range(len(ids))]
    size = Counter(fam)
    if len(size) == len(ids):
        return None
    # a model linked to none is its own family, or, with a parent_id, blank: it takes its parent chain's family
    parents = [str(p) for p in zoo.models["parent_id"]] if "parent_id" in zoo.models else [""] * len(ids)
    return np.asarray([f"start of {ids[f]}" if size[f] > 1 or not parents[i] else "" for i, f in enumerate(fam)],
                      dtype=object)


def check_parents(meta: dict[str, np.ndarray] | None, ids: list[str], path: Any) -> None:
    """Refuse a metadata file whose ``parent_id`` has a typo of a model id or a cycle
    (:func:`analysis.parents.parent_problem`), in one line naming the file, before anything is written."""
    from analysis.parents import parent_problem  # deferred for start-up time

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
    if not says_something(table.get("init_seed", [])):
        if FIRST_CHECKPOINT not in table and (starts := shared_starts(zoo)) is not None:
            table[FIRST_CHECKPOINT] = starts
        parents = [str(p) for p in table.get("parent_id", [])]
        if PARENT_TREE not in table and any(parents):
            table[PARENT_TREE] = np.asarray([f"tree of {r}" for r in root_family(zoo.model_ids, parents)], dtype=object)
        if imported_only(table) and not {FIRST_CHECKPOINT, RECOVERED, PARENT_TREE, TWIN_FAMILY} & set(table):
            twins = twin_families(zoo)
            if twins is not None:
                table[TWIN_FAMILY] = twins
    return table


def imported_only(table: dict[str, np.ndarray]) -> bool:
    """Whether every model of ``table`` was imported (trained elsewhere: its families are not known by construction)."""
    return {str(k) for k in table.get("kind", [])} == {"imported"}


def unrecorded_lineage(table: dict[str, np.ndarray]) -> str | None:
    """The families to use when the lineage column records none: those of bit-identical first
    checkpoints (exact), else those ``fingerprint lineage`` recovered (an estimate), else each
    ``parent_id`` tree (a base and its fine-tunes; bases that share an init are not known to), else an import's
    models joined by near-twin weights (:func:`twin_families`), else None."""
    return next((c for c in (FIRST_CHECKPOINT, RECOVERED, PARENT_TREE, TWIN_FAMILY) if c in table), None)


ZOO_COLUMNS = ("model_id", "kind", "group", "task", "arch", "init_seed", "data_seed", "parent_id", "spawn_step", "variant",
              "final_step", "diverged", "diverged_step", PARENT_TREE, RECOVERED, FIRST_CHECKPOINT, TWIN_FAMILY)  # the zoo's own


def tree_columns(table: dict[str, np.ndarray]) -> list[str]:
    """Columns (not the zoo's own, nor ``deep_label``) with one value inside every ``parent_id`` tree, a
    fine-tune's blank taken from its parent chain as the analysis takes it (a family on the bases only), and
    two or more values across trees, some tree holding two or more models: columns that may record the init
    families."""
    trees = [str(v) for v in table.get(PARENT_TREE, [])]
    if len(set(trees)) < 2 or len(set(trees)) == len(trees):
        return []
    out = []
    for c, col in table.items():
        if c in ZOO_COLUMNS or c == "deep_label" or len(col) != len(trees):
            continue
        filled = inherit_lineage(table["model_id"], list(col), table["parent_id"])[0]
        if any(missing(v) for v in filled):
            continue
        values = [str(v) for v in filled]
        if len(set(values)) >= 2 and all(len({v for v, t in zip(values, trees) if t == tree}) == 1 for tree in set(trees)):
            out.append(c)
    return sorted(out)


def options_stamp(zoo: Zoo, opts: AnalysisOptions) -> dict[str, Any]:
    """The options a stored analysis must match; with recovered families, also which recovery; with near-twin
    families, the families themselves (the rule that reads them changed: a stored analysis of older ones is redone)."""
    d = opts.to_dict()
    if opts.lineage == RECOVERED:
        rec = zoo.load_result("lineage") or {}
        d["recovered"] = {k: rec.get(k) for k in ("evidence", "alpha", "model_set", "family_rule")}
    if opts.lineage == TWIN_FAMILY:
        fam = twin_families(zoo)
        d["twins"] = None if fam is None else hashlib.sha256("\n".join(map(str, fam)).encode()).hexdigest()[:16]
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
    stand_in = col in (PARENT_TREE, FIRST_CHECKPOINT) and col not in zoo.models  # scored against the report's stand-in
    columns = model_table(zoo) if stand_in else zoo.models.columns
    values = list(columns[col]) if col in columns else []
    if values and not stand_in:  # as lineage scored them: -1 unknown, a fine-tune's blank its parent chain's (review)
        values = list(inherit_lineage(ids, ["" if str(v) == "-1" else v for v in values], parents)[0])
    fams = [str(v) for v in values]
    return {**rec, "true_parent": {c: p for c, p in zip(ids, parents) if p in known and p != c},
            "true_family": {m: f for m, f in zip(ids, fams) if f not in ("", "-1", "None", "nan")}}




def sizes_text(sizes: list[int], most: int = 6) -> str:
    """``72, 32 (x2), 16 (x2), 8 (x9)``: family sizes, largest first, repeats counted (the ``most``
    largest distinct sizes, then ``...``)."""
    runs = sorted(Counter(sizes).items(), reverse=True)
    return ", ".join(f"{s} (x{c})" if c > 1 else str(s) for s, c in runs[:most]) + (", ..." if len(runs) > most else "")


def recovered_line(lineage: str | None, zoo: Zoo | None, label: str | None = None) -> str | None:
    """The terminal's line when the lineage used is the families ``fingerprint lineage`` recovered
    from the weights (an estimate standing in for the zoo's missing one): how many, their sizes,
    from what. None for any other lineage."""
    if zoo is not None and lineage == FIRST_CHECKPOINT:
        values = [str(v) for v in model_table(zoo).get(FIRST_CHECKPOINT, [])]
        counts = Counter(v for v in values if v)
        sizes, alone = [c for c in counts.values() if c > 1], values.count("") + sum(c == 1 for c in counts.values())
        n = len(sizes)
        return (f"lineage: the {n} {'family' if n == 1 else 'families'} of models whose first checkpoints are "
                f"bit-identical ({sizes_text(sizes)} models"
                + (f", and {alone} {'model' if alone == 1 else 'models'} linked to none, each in its parent's family or "
                   "alone: if those have relatives, name the families with --lineage COLUMN" if alone else "")
                + "): a shared initialisation seen in the histories, not a column of the zoo (--lineage COLUMN names one)")
    if zoo is not None and lineage == PARENT_TREE:
        table = model_table(zoo)
        sizes = list(Counter(str(v) for v in table.get(PARENT_TREE, [])).values())
        like = [c for c in tree_columns(table) if c != label]  # audit 78: the CSV's family column; not the label (review)
        name = (f"--lineage {like[0]} names one: its values are the same within every tree" if like else
                "--lineage COLUMN names one")
        return (f"lineage: the {len(sizes)} parent_id trees as the init families ({sizes_text(sizes)} models: a base and "
                "its fine-tunes, or fine-tunes of one base), since the lineage column records none: bases that share an "
                f"initialisation are not known as relatives ({name}; fingerprint lineage recovers families from the weights)")
    if zoo is not None and lineage == TWIN_FAMILY:
        sizes = list(Counter(str(v) for v in model_table(zoo).get(TWIN_FAMILY, [])).values())
        if not sizes:
            return None
        n, alone = sum(s >= 2 for s in sizes), sum(s == 1 for s in sizes)
        groups = (f"the {n} {'family' if n == 1 else 'families'} of models whose weights are near twins "
                  f"({sizes_text([s for s in sizes if s >= 2])} models" + (f", and {alone} alone" if alone else "") + ")"
                  if n else f"every model its own family: no two of the {alone} have near-twin weights")
        # an outside audit (81): relatives trained far apart (strong weight decay) left 10 of 24 alone beside partial
        # families, and the command that found them was never named
        drift = (f"; models alone may be relatives whose weights drifted apart (long training, strong weight decay): "
                 f"`fingerprint lineage {zoo.path}` tests every pair with the units aligned first where the architecture "
                 "declares them (docs/lineage.md), and the families that weight test recovers come first" if alone else
                 # an outside audit (83): an identity-initialised recurrent matrix joined 24 independent seeds, unsaid
                 f"; all {sizes[0]} models are one family: if they were initialised independently, a tensor they all "
                 "start from (an identity, a fixed table, a shared pretrained part) joins them, and --lineage model_id "
                 "says each is its own" if n == 1 else "")
        k, share = frozen_tensors(zoo)  # an outside audit (85): a frozen base under adapters went unsaid
        frozen = (f"; {'one weight tensor' if k == 1 else f'{k} weight tensors'} ({share:.0%} of the weight tensors' entries) "
                  f"{'is' if k == 1 else 'are'} the same in every model and left out "
                  "(a part no model trained: a frozen base under adapters, a fixed table), so these families are those "
                  "of the parts trained" if k else "")
        return (f"lineage: {groups} (correlation {TWIN_R:g} or more, as relatives keep their shared start), since the zoo "
                "records none: an estimate from the weights, not a column of the zoo; training that parts relatives' "
                "weights far enough would split a family along that difference, which then reads as lineage"
                f"{frozen}{drift} (--lineage COLUMN names the families; docs/lineage.md, \"Near twins\")")
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
