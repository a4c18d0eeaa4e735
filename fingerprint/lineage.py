"""``fingerprint lineage``: shared-initialization tests, families and the lineage forest of a zoo.

Reads a zoo's final weights (and each model's previous checkpoint, to learn which way training
moves the statistic that orients tree edges) and any cached fingerprints, runs the tests of
:mod:`analysis.lineage` and the forest of :mod:`analysis.lineage_tree` (from the checkpoint
histories of :mod:`analysis.lineage_history` when the zoo stores them), and scores them against the
zoo's truth when it has some (``init_seed`` and ``parent_id``, or the ``--lineage`` column of an
imported zoo). The result is the JSON of ``docs/lineage.md``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.lineage import (
    FAMILY_RULE,
    PairTests,
    all_pairs,
    behaviour_test,
    between_families,
    families,
    family_names,
    nearest_candidates,
    weight_test,
)
from analysis.lineage_history import history_edges
from analysis.lineage_merges import two_in_one
from analysis.lineage_tree import (
    STATISTICS,
    Orientation,
    family_scores,
    lineage_forest,
    orientation,
    shared_init_rates,
    sibling_or_child,
    tree_accuracy,
    weight_statistics,
)
from analysis.parents import generation
from fingerprint.extractors.mechanistic import MATCH_ROUNDS, matching_cost
from fingerprint.lineage_truth import (
    false_edges,
    parents_absent,
    recorded_rises,
    true_parents,
    truth_labels,
)
from fingerprint.pipeline import analysis_errors, inputs_for
from fingerprint.population import check_code, family_for
from training.core.errors import UserError, choices
from training.core.store import Zoo
from training.families.symmetries import matching_groups

ORIENT_CHOICES = ("auto",) + STATISTICS


def _matrices(params: dict[str, Any]) -> list[np.ndarray]:
    """The weight matrices and kernels (``[n, out, in, ...]``; what ``ModelBatch.weight_matrices`` gives)."""
    return [np.asarray(params[k]) for k in sorted(params) if params[k].dim() >= 3]


def _orientation(zoo: Zoo, final: dict[str, np.ndarray], statistic: str) -> Orientation:
    """From each model's previous checkpoint to its last one; MoTHer's kurtosis, rising, without checkpoints."""
    by_step: dict[int, list[str]] = defaultdict(list)
    for m in zoo.model_ids:
        steps = zoo.model_steps(m)
        if len(steps) >= 2:
            by_step[steps[-2]].append(m)
    if not by_step:
        return Orientation("kurtosis" if statistic == "auto" else statistic, 1, None)
    ids = [m for ms in by_step.values() for m in ms]
    parts = [weight_statistics(_matrices(zoo.params(s, ms))) for s, ms in by_step.items()]
    earlier = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    later = {k: v[zoo.index(ids)] for k, v in final.items()}
    return orientation(earlier, later, statistic)


def _checkpoints(zoo: Zoo) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """Every stored checkpoint, one architecture (``group``) at a time: ``(x [k, P], owner [k],
    step [k])`` each; None when no model has two checkpoints (an imported zoo: its one state dict
    each), so the forest falls back to final weights."""
    ids = zoo.model_ids
    steps = [zoo.model_steps(m) for m in ids]
    if max(len(s) for s in steps) < 2:
        return None
    n = len(ids)
    group = np.asarray([str(g) for g in zoo.models["group"]]) if "group" in zoo.models else np.full(n, "")
    out = []
    for g in np.unique(group):  # a model.sweep group has its own parameter shapes; parents are in the child's group
        members = np.flatnonzero(group == g)
        rows, owner, step = [], [], []
        for s in sorted({s for i in members for s in steps[i]}):
            at = [ids[i] for i in members if s in steps[i]]
            p = zoo.params(s, at)
            rows.append(np.concatenate([p[k].numpy().reshape(len(at), -1) for k in sorted(p)], axis=1))
            owner.append(zoo.index(at))
            step.append(np.full(len(at), s, dtype=np.int64))
        out.append((np.concatenate(rows), np.concatenate(owner), np.concatenate(step)))
    return out


def _history(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], family: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """History edges ``(parent, child, cost)`` inside ``family [n]``
    (:func:`analysis.lineage_history.history_edges`), over every architecture."""
    edges = [history_edges(x, o, s, family) for x, o, s in parts]
    return tuple(np.concatenate([e[i] for e in edges]) for i in range(3))


def _histories(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fams: dict[str, np.ndarray]
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """History edges per evidence (``fams``: each evidence's families ``[n]``), measured once per
    distinct partition: evidences that recover the same families (the usual case) share them."""
    done: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    out = {}
    for name, fam in fams.items():
        _, first, inverse = np.unique(fam, return_index=True, return_inverse=True)
        canon = np.argsort(np.argsort(first))[inverse].astype(np.int64).tobytes()  # families numbered by first member
        if canon not in done:
            done[canon] = _history(parts, fam)
        out[name] = done[canon]
    return out


def _scores(tests: PairTests, parent: np.ndarray, truth, true_parent, kinds, family: np.ndarray) -> dict[str, Any]:
    rates = ({**shared_init_rates(tests, *truth), **family_scores(family, *truth)} if truth is not None else dict.fromkeys(
        ("shared_init_fpr", "shared_init_power", "bh_fdp", "bh_power", "family_ami", "n_merged", "n_split")))
    acc, direction = tree_accuracy(parent, true_parent) if true_parent is not None else (None, None)
    out = {**rates, "parent_accuracy": acc, "direction_accuracy": direction}
    if true_parent is not None and kinds is not None:
        out["by_kind"] = {}
        for k in sorted(set(kinds[true_parent >= 0].tolist())):
            pa, da = tree_accuracy(parent, true_parent, kinds == k)
            out["by_kind"][k] = {"parent_accuracy": pa, "direction_accuracy": da}
    return out


WEIGHT_TEST_SECONDS = 600.0  # beyond this (estimated), the weight tests run only when asked for (--weights)


def slow_weight_tests(zoo: Zoo, groups: dict[str, list[tuple[str, int]]], n_pairs: int) -> str:
    """Why the weight tests of ``n_pairs`` pairs are left out for their cost, or ``""``: one ``h x h``
    assignment per pair and group of ``h`` units (:func:`~fingerprint.extractors.mechanistic.matching_seconds`
    for one round), which grows as ``h^3`` (a review: 2,048 feed-forward units of a stock
    ``TransformerEncoderLayer``, torch's default, took 0.6 s a pair and layer, 2 layers of 50 models ~24 min)."""
    cost = matching_cost(family_for(zoo).param_shapes(), groups, n_pairs)  # None: the test names what the shapes lack
    seconds, widest = (0.0, 0) if cost is None else (cost[0] / MATCH_ROUNDS, cost[1])  # one round, not weight_match's
    if seconds <= WEIGHT_TEST_SECONDS:
        return ""
    return (f"the weight tests of {n_pairs:,} pairs (widest layer {widest:,} units) would take about {seconds / 60:.0f} min "
            "on one core (one assignment per pair and layer, growing as the cube of its width)")


def _weight_groups(zoo: Zoo, weights: bool | None, behavioural: bool) -> tuple[dict, str]:
    """The hidden-unit groups the weight tests align by, and why they are left out: a cached fingerprint's test
    needs no code of the zoo's, so when running it is refused (no --arch / --trust-code) only they go (audit 79)."""
    if weights is False:
        return {}, ""
    if behavioural and not weights:
        try:
            check_code(zoo)  # the refusal to import the code a zoo names; any other error is the factory's own
        except UserError:
            return {}, "the weight tests need the architecture's code, which was not loaded (--arch MODULE:FACTORY or --trust-code)"
    return matching_groups(family_for(zoo).hidden_permutable()), ""


def lineage(zoo: Zoo, fps: Sequence[str] = (), alpha: float = 0.05, lineage_column: str | None = None,
            max_pairs: int | None = 200_000, n_perm: int = 99_999, orient: str = "auto", weights: bool | None = None,
            seed: int = 0, history: bool = True, candidates: str | None = None) -> dict[str, Any]:
    """Test every pair of ``zoo``'s models (or ``max_pairs`` of them) for a shared initialization.

    Evidence: ``exact`` and ``matched`` from the weights (when the architecture declares its
    hidden-unit permutation symmetry and ``weights``; ``None``: unless they would take longer than
    :data:`WEIGHT_TEST_SECONDS`, :func:`slow_weight_tests`), and each fingerprint in ``fps`` (cached, or
    computed). The first is the primary one: its pairs, families and forest are the result's own;
    ``by_evidence`` has every evidence's scores side by side. With ``history`` (and a zoo that
    stores two or more checkpoints of some model), every evidence's forest comes from the
    checkpoint histories inside its families; otherwise from final-weight distances, oriented by
    a weight statistic. ``candidates`` (``COLUMN=VALUE``, e.g. ``kind=base``) names the models that
    may be the others' origin: every other model gets its nearest candidate by each evidence, with
    or without a significant pair (``nearest``). See ``docs/lineage.md``.
    """
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    if orient not in ORIENT_CHOICES:
        raise UserError(f"unknown --orient '{orient}' (valid: {choices(ORIENT_CHOICES)})")
    if max_pairs is not None and max_pairs < 1:
        raise UserError(f"--max-pairs must be >= 1, got {max_pairs}")
    n = len(zoo)
    if n < 2:
        raise UserError(f"zoo '{zoo.path}' has {n} model(s); lineage needs at least 2")
    truth, inherited, truth_column, could = truth_labels(zoo, lineage_column)
    is_candidate = _candidates(zoo, candidates)
    true_parent = true_parents(zoo)
    kinds = np.asarray([str(k) for k in zoo.models["kind"]]) if "kind" in zoo.models else None
    raw = zoo.params()
    params = {k: v.numpy() for k, v in raw.items()}
    groups, skipped = _weight_groups(zoo, weights, bool(fps))
    n_tested = min(n * (n - 1) // 2, max_pairs or n * n)
    slow = slow_weight_tests(zoo, groups, n_tested) if groups and weights is None else ""
    if slow and not fps:
        raise UserError(f"zoo '{zoo.path}': {slow}; name a fingerprint for the behavioural test (--fp probe-outputs), "
                        "test fewer pairs (--max-pairs N), or run them anyway (--weights)")
    skipped = f"{slow}; to run them anyway: --weights" if slow else skipped
    groups = {} if slow else groups
    if not groups and not fps:
        if (zoo.family_spec or {}).get("arch") == "hf":  # its users cannot add a method to transformers' classes
            raise UserError(f"zoo '{zoo.path}': its Hugging Face architecture has no MLP units the toolkit can align for the "
                            "weight tests (most have: docs/import.md): name a fingerprint for the "
                            "behavioural test (--fp anomalous-inputs, --fp probe-outputs)")
        stop = family_for(zoo).permutation_stop()
        where = "" if stop is None else f" (its units cannot be followed past {stop})"
        raise UserError(f"zoo '{zoo.path}': its architecture declares no hidden-unit permutation symmetry to align "
                        f"weights by{where}: give the module a hidden_permutable() method (docs/extractors.md, 'family'), or "
                        "name a fingerprint for the behavioural test (--fp NAME)")
    inputs = inputs_for(zoo, list(fps)) if fps else []
    with analysis_errors():
        pairs = all_pairs(n, max_pairs, seed)
        tests: dict[str, PairTests] = {}
        if groups:
            tests["exact"], tests["matched"] = weight_test(params, groups, pairs, alpha, n_perm, seed)
        for fi in inputs:
            if fi.values is None:
                raise UserError(f"fingerprint '{fi.name}' could not be computed: {fi.error}")
            if sorted(fi.model_ids) != sorted(zoo.model_ids):
                raise UserError(f"fingerprint '{fi.name}' covers {len(fi.model_ids)} of the zoo's {n} models; "
                                f"recompute it (`fingerprint extract {zoo.path} --fp {fi.name} --force`)")
            rows = np.asarray(fi.values)[np.argsort(zoo.index(fi.model_ids))]
            tests[fi.name] = behaviour_test(rows, pairs, alpha, fi.name)
        final = weight_statistics(_matrices(raw))
        o = _orientation(zoo, final, orient)
        order = o.sign * final[o.statistic]
        parts = _checkpoints(zoo) if history else None
        fams = {name: families(n, t) for name, t in tests.items()}
        h = _histories(parts, fams) if parts else {}
        forests = {name: lineage_forest(n, t, order, h.get(name), fams[name]) for name, t in tests.items()}
    primary = next(iter(tests))
    t, parent = tests[primary], forests[primary]
    ids = zoo.model_ids
    p_of = {(int(a), int(b)): float(p) for a, b, p in zip(t.a, t.b, t.p_value)}
    by_evidence = {}
    for name, tt in tests.items():
        s = _scores(tt, forests[name], truth, true_parent, kinds, fams[name])
        by_evidence[name] = {"n_related": int(tt.related.sum()), "n_families": int((np.bincount(fams[name]) >= 2).sum()),
                             "n_between": between_families(fams[name], tt), **s,  # false edges: where parents are recorded
                             "false_edges": false_edges(forests[name], true_parent)}
    s = by_evidence[primary]
    labels = fams[primary]
    names = family_names(ids, labels.tolist())  # the recovered families as the user reads them: models' ids
    out = {
        "zoo": str(zoo.path), "n_models": n, "n_pairs": int(len(t.a)), "n_pairs_total": n * (n - 1) // 2,
        "alpha": alpha, "evidence": primary, "family_rule": FAMILY_RULE,
        "orientation": {"statistic": o.statistic, "sign": o.sign, "consistency": o.consistency,
                        "recorded": None if h else recorded_rises(final, true_parent)},
        "history": {"used": bool(h),
                    "n_continuing": int(len(np.unique(h[primary][1]))) if h else None},
        "truth": {k: s[k] for k in ("shared_init_fpr", "shared_init_power", "parent_accuracy", "direction_accuracy",
                                    "false_edges")},
        "pairs": [{"a": ids[a], "b": ids[b], "p_value": float(p), "q_value": float(q), "related": bool(r)}
                  for a, b, p, q, r in zip(t.a.tolist(), t.b.tolist(), t.p_value, t.q_value, t.related)],
        "edges": [[ids[p], ids[c], p_of[(min(p, c), max(p, c))]] for c, p in enumerate(parent.tolist()) if p >= 0],
        # final-weight forests only: a history places a sibling by its trajectory
        "sibling_or_child": [] if primary in h else [ids[v] for v in np.flatnonzero(sibling_or_child(parent, t.a, t.b, t.distance))],
        "families": _family_lists(ids, labels),
        # many chance pairs between two families' relatives join them (an outside audit, 79): said, not split
        "two_in_one": [{**f, "family": names[f["parts"][0][0]],
                        "parts": [[ids[i] for i in part] for part in f["parts"]]}
                       for f in two_in_one(labels, t.a, t.b, t.related, n, alpha, seed=seed)],
        "by_evidence": by_evidence,
        "weights_skipped": skipped or None,
        "truth_models": int(truth[1].sum()) if truth is not None else 0, "truth_inherited": inherited,
        "truth_column": truth_column,
        "truth_columns": could,
        "parents_absent": parents_absent(zoo),
    }
    if truth is not None:  # the empirical null is fitted to the pairs' 5% tail: more relatives than that widen it
        true_labels, known = truth  # not `labels`: those are the recovered families, saved below
        both = known[t.a] & known[t.b]
        out["related_share"] = float((true_labels[t.a] == true_labels[t.b])[both].mean()) if both.any() else None
    if is_candidate is not None:
        out["nearest"] = {"candidates": candidates, "by_evidence": {
            name: _nearest(tt, is_candidate, ids, truth, true_parent) for name, tt in tests.items()}}
    if primary == "exact":  # weight evidence only: families recovered from a fingerprint would be circular
        # what later analyses use (family_of) and the report shows (the forest and its scores; not the pairs)
        zoo.save_result("lineage", {"evidence": primary, "alpha": alpha, "model_set": zoo.model_set_hash(), "family_rule": FAMILY_RULE,
                                    "family_of": dict(zip(ids, names)),
                                    "lineage_column": truth_column or lineage_column or "init_seed",
                                    **{k: out[k] for k in ("n_pairs", "n_pairs_total", "orientation", "history", "truth", "edges",
                                                           "by_evidence")}})
    return out


def _candidates(zoo: Zoo, spec: str | None) -> np.ndarray | None:
    """``--candidates COLUMN=VALUE``: the models ``[n]`` (bool) whose column holds that value; ``generation``
    (unless the zoo has such a column) is each model's generation in its ``parent_id`` chain, so that
    ``generation=0`` names the base models (an outside audit of the eighteenth session: the documented
    example was refused as an unknown column)."""
    if spec is None:
        return None
    col, eq, value = spec.partition("=")
    if not eq or not col:
        raise UserError(f"--candidates must be COLUMN=VALUE (e.g. kind=base), got '{spec}'")
    derived = col == "generation" and col not in zoo.models and "parent_id" in zoo.models
    if col not in zoo.models and not derived:
        valid = [*zoo.models.names(), *(["generation"] if "parent_id" in zoo.models else [])]
        raise UserError(f"unknown model column '{col}' for --candidates (valid: {choices(valid)})")
    if derived:  # each model's generation in its parent chain (0: no parent, a base), from parent_id
        values = np.asarray([str(g) for g in generation(zoo.models["model_id"], zoo.models["parent_id"])])
    else:
        values = np.asarray([str(v) for v in zoo.models[col]])
    mask = values == value
    if not mask.any() or mask.all():
        seen = sorted(set(values.tolist()))
        raise UserError(f"--candidates {spec}: {'no' if not mask.any() else 'every'} model has {col} = '{value}', so "
                        f"there is nothing to rank (values: {choices(seen[:12])}{', ...' if len(seen) > 12 else ''})")
    return mask


def _nearest(t: PairTests, is_candidate: np.ndarray, ids: list[str], truth, true_parent) -> dict[str, Any]:
    """One evidence's nearest candidates (:func:`analysis.lineage.nearest_candidates`) as rows, and
    how often the nearest is the model's true parent (``parent_id``) or of its true family."""
    r = nearest_candidates(t, is_candidate)
    num = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731 - JSON has no NaN
    rows = [{"model": ids[m], "nearest": ids[b], "p_value": num(p),
             "runner_up": ids[s] if s >= 0 else None, "p_runner_up": None if s < 0 else num(q)}
            for m, b, p, s, q in zip(r["model"].tolist(), r["best"].tolist(), r["p_best"].tolist(),
                                     r["second"].tolist(), r["p_second"].tolist())]
    # a model without a tested pair to any candidate (--max-pairs samples the pairs) is not placed: counted
    out: dict[str, Any] = {"rows": rows, "n_unplaced": int((~is_candidate).sum()) - len(rows),
                           "parent_match": None, "family_match": None}
    if true_parent is not None:
        has = is_candidate[np.maximum(true_parent[r["model"]], 0)] & (true_parent[r["model"]] >= 0)
        if has.any():
            out["parent_match"] = [int((r["best"][has] == true_parent[r["model"]][has]).sum()), int(has.sum())]
    if truth is not None:
        labels, known = truth
        ok = known[r["model"]] & known[r["best"]]
        if ok.any():
            out["family_match"] = [int((labels[r["model"]][ok] == labels[r["best"]][ok]).sum()), int(ok.sum())]
    return out


def _family_lists(ids: list[str], labels: np.ndarray) -> list[list[str]]:
    groups: dict[int, list[str]] = defaultdict(list)
    for m, f in zip(ids, labels.tolist()):
        groups[f].append(m)
    return sorted((g for g in groups.values() if len(g) >= 2), key=lambda g: (-len(g), g[0]))

