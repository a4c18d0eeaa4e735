"""A population's parent chains: each model's root, its generation, the lineage value it inherits
from its ancestors, and its cross-validation group (the ``parent_id`` and lineage columns of a zoo's
model table, read as chains). Pure Python over ids, imported by the commands that only read a zoo's
tables (``sweep``, ``extract``): no scikit-learn here. :mod:`analysis.metrics` re-exports them."""

from __future__ import annotations

import numpy as np

from analysis.values import missing


def root_family(model_ids, parent_ids) -> np.ndarray:
    """Each model's lineage root: follow ``parent_id`` up to a model without a parent (or unknown).

    Base models are their own root; spawned / fine-tuned children share their ancestor's root.
    """
    ids = [str(m) for m in model_ids]
    parent = {m: ("" if p is None else str(p)) for m, p in zip(ids, parent_ids)}
    out = []
    for m in ids:
        seen = {m}
        cur = m
        while parent.get(cur, "") and parent[cur] not in seen:
            cur = parent[cur]
            seen.add(cur)
            if cur not in parent:  # parent outside the population (e.g. left out): still a shared root
                break
        out.append(cur)
    return np.asarray(out, dtype=object)


def _parents(model_ids, parent_ids) -> tuple[list[str], dict[str, str]]:
    """``(ids, {id: its parent_id, "" for none})`` as strings, a missing value (:func:`analysis.values.missing`) none."""
    ids = [str(m) for m in model_ids]
    return ids, {m: ("" if missing(p) else str(p).strip()) for m, p in zip(ids, parent_ids)}


def inherit_lineage(model_ids, lineage, parent_ids) -> tuple[np.ndarray, int]:
    """``(lineage [n], filled)``: each model's lineage value, a missing one (:func:`analysis.values.missing`)
    taken from its nearest ancestor that has one (follow ``parent_id`` up): a fine-tune is in its base's
    init family even when the metadata records the family on the bases only (an outside audit of the
    eighteenth session: the fine-tunes, blank, were left out of the label-free tests and a planted rule
    among them was missed). ``filled``: how many values were taken. A model whose chain reaches no
    value keeps its own (missing); a cycle stops at the first repeat."""
    ids, parent = _parents(model_ids, parent_ids)
    vals = list(lineage)
    own = {m: v for m, v in zip(ids, vals) if not missing(v)}
    out, filled = [], 0
    for m, v in zip(ids, vals):
        seen, cur = {m}, m
        while missing(v) and parent.get(cur, "") and parent[cur] not in seen:
            cur = parent[cur]
            seen.add(cur)
            v = own.get(cur, v)
        filled += not missing(v) and m not in own
        out.append(v)
    return np.asarray(out, dtype=object), filled


def parent_problem(model_ids, parent_ids) -> str | None:
    """What is wrong with a ``parent_id`` column, or ``None``: a parent that names no model but one up to
    letter case (a typo: it would read as a parent outside the population), or a chain that comes back
    to where it started (a cycle: no model in it is a base). A parent that names no model at all is
    allowed (a fine-tune of a base not imported)."""
    ids, parent = _parents(model_ids, parent_ids)
    known, folded = set(ids), {m.lower(): m for m in ids}
    for m, p in parent.items():
        if p and p not in known and p.lower() in folded:
            return f"model '{m}' has parent_id '{p}', which names no model; did you mean '{folded[p.lower()]}'?"
    for m in ids:
        seen, cur = [m], m
        while parent.get(cur, "") and parent[cur] in known:
            cur = parent[cur]
            if cur == m:
                return f"parent_id makes a cycle: {' -> '.join([*seen, m])} (a model cannot descend from itself)"
            if cur in seen:
                break  # a cycle further up, said from one of its own models
            seen.append(cur)
    return None


def generation(model_ids, parent_ids) -> np.ndarray:
    """Each model's generation in its parent chain ``[n]`` (int): 0 for a model without a parent, 1
    for its spawned / fine-tuned child, 2 for a grandchild, ... A parent outside the population still
    counts (a fine-tuned child whose base model was not imported is generation 1); a cycle stops at
    the first repeat."""
    ids = [str(m) for m in model_ids]
    parent = {m: ("" if p is None or (isinstance(p, float) and p != p) else str(p).strip())
              for m, p in zip(ids, parent_ids)}
    out = []
    for m in ids:
        seen, cur, depth = {m}, m, 0
        while parent.get(cur, "") and parent[cur] not in seen:
            cur = parent[cur]
            seen.add(cur)
            depth += 1
        out.append(depth)
    return np.asarray(out, dtype=np.int64)


def lineage_groups(model_ids, lineage=None, parent_ids=None) -> np.ndarray:
    """Each model's cross-validation group ``[n]``: the lineage value of its root (:func:`root_family`:
    follow ``parent_id`` up to a model without a parent), so a parent and its spawned / fine-tuned
    children share a group even when an imported zoo gives them different lineage values, and
    models whose roots share a value (one init seed) share it too. A root outside the population
    takes the value of its first member. Without ``lineage``, the root's id; without either, each
    model alone."""
    ids = [str(m) for m in model_ids]
    roots = root_family(ids, parent_ids) if parent_ids is not None else np.asarray(ids, dtype=object)
    if lineage is None:
        return roots
    own = dict(zip(ids, (str(x) for x in lineage)))
    name: dict[str, str] = {}
    for m, root in zip(ids, roots):
        name.setdefault(root, own.get(root, own[m]))
    return np.asarray([name[r] for r in roots], dtype=object)
