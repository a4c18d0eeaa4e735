"""Run extractors over a zoo, with caching and bounded memory.

``extract(zoo, ["ood-outputs", "cka:debiased=true"])`` resolves every spec first (an unknown name or
parameter is an immediate one-line error), then computes each fingerprint -- or reuses the zoo's
cache, keyed by (extractor, version, resolved parameters, step) and valid only for the same set of
models. Feature extractors whose rows depend only on their own model stream the zoo in chunks of
models; pairwise and population-level ones load the population once. A plugin that raises or
returns a bad shape or NaN gets a one-line error in its result; the others still complete and the
cache is never half-written. A plugin is also run again on a few models and its entry keeps a
warning when two runs differ or its rows depend on the other models in the call
(:mod:`fingerprint.plugin_checks`); its key covers its source text, so an edited body is
recomputed, and the entries of its earlier bodies are then removed. Diverged models are left out.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.parents import lineage_groups
from fingerprint.batch import PROBE_READS, ModelBatch
from fingerprint.extractors.mechanistic import forget_balanced
from fingerprint.parallel import worker_module
from fingerprint.plugin_checks import plugin_warnings
from fingerprint.population import (
    check_code,
    check_task_unchanged,
    model_setting,
    privileged_probes,
    stackable_runs,
)
from fingerprint.registry import ExtractorSpec, get_extractor, parse_spec, unloaded
from training.core.errors import CorruptFileError, UserError
from training.core.store import Zoo


@dataclass
class ExtractResult:
    """One fingerprint: ``values`` ``[n, d]`` (features) or ``[n, n]`` (distances), rows in ``model_ids`` order."""

    key: str
    name: str
    values: np.ndarray | None
    model_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cached: bool = False
    seconds: float | None = None  # wall time of computing it (None: from the cache); not stored


def resolve_specs(specs: Sequence[str]) -> list[tuple[str, ExtractorSpec, dict[str, Any]]]:
    """Parse and validate ``NAME[:key=value,...]`` specs before anything runs."""
    out = []
    for text in specs:
        name, overrides = parse_spec(text)
        spec = get_extractor(name)
        out.append((text, spec, spec.resolve_params(overrides)))
    return out


def _steps(zoo: Zoo, step: int | str | None) -> list[int | None]:
    if step is None or step == "final":
        return [None]
    if step == "all":
        return list(zoo.steps)
    try:
        s = int(step)
    except (TypeError, ValueError):
        raise UserError(f"--step must be a checkpoint step, 'final' or 'all', got {step!r} (steps: {zoo.steps})") from None
    if s not in zoo.steps:
        raise UserError(f"step {s} is not a stored checkpoint (steps: {', '.join(map(str, zoo.steps))})")
    return [s]


def active_models(zoo: Zoo, step: int | None = None) -> list[str]:
    """Models to fingerprint at ``step``: those that have the checkpoint and did not diverge by then."""
    zoo.require_models()
    ids = zoo.model_ids if step is None else zoo.models_at(step)
    idx = zoo.index(ids)
    div = np.asarray(zoo.models["diverged"], bool)[idx]
    dstep = np.asarray(zoo.models["diverged_step"])[idx]
    keep = ~div if step is None else ~(div & (dstep <= step))
    return [m for m, k in zip(ids, keep) if k]


def family_groups(zoo: Zoo, ids: Sequence[str], lineage: str = "init_seed", table: Any = None) -> np.ndarray:
    """Each model's init family ``[n]`` (for folds and held-out splits that keep relatives together):
    the ``lineage`` value of the model's lineage root, as in the scorecard
    (:func:`analysis.parents.lineage_groups`). A negative seed (an imported model's ``-1``: none
    recorded) is no family: such a model shares a group only with its own ancestors and descendants.
    ``table``: the model columns to read (default the zoo's own; :func:`fingerprint.tables.model_table`
    adds the families seen in the histories, recovered or of the parent trees)."""
    table = zoo.models if table is None else table
    idx = zoo.index(list(ids))
    parents = np.asarray(table["parent_id"], dtype=object)[idx] if "parent_id" in table else None
    values = None
    if lineage in table:
        col = np.asarray(table[lineage])[idx]
        values = np.asarray([f"model {m}" if np.issubdtype(col.dtype, np.integer) and lineage.endswith("_seed") and v < 0
                             else str(v) for m, v in zip(ids, col)], dtype=object)
    return lineage_groups(ids, values, parents)


CHUNK_WEIGHT_FLOATS, CHUNK_MODELS = 1 << 24, (256, 4096)  # auto chunks: 64 MB of float32; models with a runner, without


def auto_chunk_size(zoo: Zoo, runner: Any = None) -> int:
    """Models per chunk for streaming extractors when none is given: as many as fit
    ``CHUNK_WEIGHT_FLOATS``, at most 4,096 (each chunk costs file reads and set-up; per-model
    intermediates grow with it) and at most 256 with a runner (chunks are its tasks), down to one
    for big models (audit 72: a floor of 256 held 16 models of 8.5M parameters at once, 2.8 GB)."""
    return min(CHUNK_MODELS[0 if runner is not None else 1], max(1, CHUNK_WEIGHT_FLOATS // max(zoo.n_params, 1)))


def extract(zoo: Zoo, specs: Sequence[str], step: int | str | None = None, force: bool = False, chunk_size: int | None = None,
            labels: dict[str, Any] | Sequence[Any] | None = None, on_progress: Callable[[str, int, int], None] | None = None,
            device: str = "cpu", model_ids: Sequence[str] | None = None, runner: Any = None) -> list[ExtractResult]:
    """Compute (or load from the cache) fingerprints for every spec at every requested step.

    ``runner`` (``fingerprint.parallel.get_runner("ray", address)``) computes the chunks of streaming
    extractors as Ray tasks; the default computes them here, one chunk of weights in memory at a time.

    ``labels`` (a mapping model_id -> label, or a sequence in ``zoo.model_ids`` order) is passed only
    to supervised extractors. ``on_progress(spec, done, total)`` reports work in models.
    ``chunk_size`` (models per chunk of a streaming extractor) defaults to :func:`auto_chunk_size`.
    """
    resolved = resolve_specs([specs] if isinstance(specs, str) else specs)  # one spec given as a plain string
    progress = on_progress or (lambda *_: None)
    if chunk_size is None:
        chunk_size = auto_chunk_size(zoo, runner)
    elif chunk_size <= 0:
        raise UserError(f"chunk size must be > 0, got {chunk_size}")
    if isinstance(labels, dict):
        label_map = labels
    elif labels is not None:
        if len(labels) != len(zoo.model_ids):
            raise UserError(f"labels has {len(labels)} values for the zoo's {len(zoo.model_ids)} models "
                            "(give one per model, in zoo.model_ids order, or a mapping model_id -> label)")
        label_map = dict(zip(zoo.model_ids, labels))
    else:
        label_map = None
    results: list[ExtractResult] = []
    try:
        for s in _steps(zoo, step):
            population = active_models(zoo, s)
            ids = population if model_ids is None else list(model_ids)
            if not ids:
                continue
            subset = set(ids) != set(population)  # cached under its own key: never in place of the population's
            finals = {int(zoo.models["final_step"][i]) for i in zoo.index(ids)}
            step_key = s if s is not None else (finals.pop() if len(finals) == 1 else "final")
            batch_cache: dict[str, ModelBatch] = {}
            done = []
            for text, spec, params in resolved:
                done.append(_one(zoo, text, spec, params, s, step_key, ids, force, chunk_size, label_map, progress,
                                 device, batch_cache, runner, subset))
            if not subset:  # all refused: no new record (audit 117), a recorded one's reason kept true (review 119)
                record_failures(zoo, done, zoo.model_set_hash(ids), add=not all(r.error for r in done))
            results += done
        if results and all(r.cached for r in results):  # no task was built to say an edited plugin (audit 121)
            check_task_unchanged(zoo)
    finally:
        forget_balanced()  # the balanced copy the weight fingerprints shared: not past this call
    return results


FAILURES = "extraction_failures"  # results/extraction_failures.json (docs/zoo-format.md)


def record_failures(zoo: Zoo, results: Sequence[ExtractResult], model_set: str, add: bool = True) -> None:
    """Keep in the zoo which fingerprints failed to extract, and why (``results/extraction_failures.json``):
    a later ``report`` of the cached fingerprints says which are missing from it. A fingerprint
    computed since (or cached) drops out of the record; nothing is written when nothing changes. ``add=False``:
    only failures recorded already are brought up to date (their reason)."""
    stored = failures(zoo, model_set=None)
    now = {f["key"]: f for f in stored}
    for r in results:
        if r.error and (add or r.key in now):
            now[r.key] = {"key": r.key, "spec": str((r.meta or {}).get("spec") or r.name), "extractor": r.name,
                          "step": (r.meta or {}).get("step"), "model_set": model_set, "error": r.error}
        else:
            now.pop(r.key, None)
    if list(now.values()) != stored:
        zoo.save_result(FAILURES, {"failures": list(now.values())})


def failures(zoo: Zoo, model_set: str | None = "") -> list[dict]:
    """The recorded extraction failures (:func:`record_failures`), of ``model_set`` (``""``: the
    zoo's population; ``None``: every one recorded)."""
    rec = zoo.load_result(FAILURES) or {}
    want = zoo.model_set_hash(active_models(zoo)) if model_set == "" else model_set
    return [f for f in rec.get("failures", []) if want is None or f.get("model_set") == want]


def _one(zoo, text, spec, params, step, step_key, ids, force, chunk_size, label_map, on_progress, device, batch_cache,
         runner=None, subset=False):
    key_params = dict(params)
    if subset:  # a subset of the population (forecast, select): its own cache entry, marked as such
        key_params["_models"] = zoo.model_set_hash(ids)[:12]
    lab = fam = None
    if spec.supervised:
        if label_map is None:
            return ExtractResult(spec.cache_key(params, step_key), spec.name, None, ids,
                                 error=f"extractor '{spec.name}' is supervised: it needs labels (--label COLUMN)")
        lab = [label_map.get(m) for m in ids]
        key_params["_labels"] = hashlib.sha256("\n".join(map(str, lab)).encode()).hexdigest()[:12]
        if spec.takes_groups:  # held out by whole families: relatives on both sides would flatter the score
            _, fam = np.unique(family_groups(zoo, ids).astype(str), return_inverse=True)
            key_params["_groups"] = hashlib.sha256(fam.astype(np.int64).tobytes()).hexdigest()[:12]
    key = spec.cache_key(key_params, step_key)
    meta = {"extractor": spec.name, "spec": text, "version": spec.version, "kind": spec.kind, "output": spec.output,
            "params": params, "step": step_key, "supervised": spec.supervised, "source": spec.source, "scale": spec.scale,
            "reads": spec.reads}
    if subset:
        meta["subset"] = True
    if spec.code is not None and spec.source != "builtin":
        meta["code"] = spec.code  # find_cached tells this entry from one of an earlier body
    if not force:
        hit = zoo.load_fingerprint(key)
        if hit is not None and hit[2].get("model_set") == zoo.model_set_hash(ids):
            on_progress(text, len(ids), len(ids))
            return ExtractResult(key, spec.name, *hit, cached=True)
    check_code(zoo)  # outside the try: a zoo whose code the user did not allow stops the whole call, saying why
    named = {v for v in params.values() if isinstance(v, str)}  # probe_set=, reference=, ...; and what it reads (below)
    remote_module = worker_module(spec) if runner is not None and spec.streaming else False
    # chunks of streaming extractors: never across a model.sweep's architectures (their weights cannot be stacked)
    chunks = [run[i : i + chunk_size] for _, run in stackable_runs(zoo, ids) for i in range(0, len(run), chunk_size)]
    on_progress(text, 0, len(ids))  # computing starts: 0 done (a cached fingerprint arrives done at once, above)
    t0 = time.perf_counter()
    try:
        if remote_module is not False:
            done = [0]

            def on_chunk(n: int) -> None:
                done[0] += n
                on_progress(text, done[0], len(ids))

            parts = runner.map(chunks, str(zoo.path.resolve()), text, step, device, on_chunk, remote_module or None,
                               code=(zoo.trust_code, zoo.module_factory))
            _check_widths(zoo, text, ids, [p[0] for p in parts])
            named |= {str(n) for p in parts for n in p[1].pop(PROBE_READS, ())}  # each chunk's, not the fingerprint's meta
            values, extras = np.concatenate([p[0] for p in parts]), parts[-1][1]
        elif spec.streaming and len(chunks) > 1:
            parts, extras, done = [], {}, 0
            for chunk in chunks:
                mb = ModelBatch.from_zoo(zoo, chunk, step, device)
                v, extras = spec.compute(mb, params)
                named |= mb.task.read
                parts.append(v)
                done += len(chunk)
                on_progress(text, done, len(ids))
            _check_widths(zoo, text, ids, parts)
            values = np.concatenate(parts)
        else:
            if "all" not in batch_cache:
                batch_cache["all"] = ModelBatch.from_zoo(zoo, ids, step, device)
            batch_cache["all"].task.read.clear()  # (the batch is shared: this extractor's reads only)
            values, extras = spec.compute(batch_cache["all"], params, lab, fam)
            named |= batch_cache["all"].task.read
            on_progress(text, len(ids), len(ids))
    except CorruptFileError:  # the zoo's failure, not this extractor's: every other one would hit it too
        raise
    except UserError as e:
        return ExtractResult(key, spec.name, None, ids, meta, error=str(e))
    uses = sorted(named & privileged_probes(zoo))
    if uses:  # built from the ground truth: not label-free evidence, marked in every report
        meta["privileged"] = uses
    arrays = {k: np.asarray(v) for k, v in extras.items() if isinstance(v, np.ndarray)}
    meta.update({k: v for k, v in extras.items() if not isinstance(v, np.ndarray)})
    if spec.source != "builtin":
        warnings = plugin_warnings(zoo, spec, params, ids, step, device, lab, fam)
        if warnings:
            meta["warnings"] = warnings
    meta["shape"] = list(values.shape)
    if spec.output == "distances" and values.shape[1] != len(ids):  # to landmarks, [n, L]: coordinates, stored as features
        meta["output"] = "features"
    zoo.save_fingerprint(key, values, ids, meta, arrays)
    seconds = time.perf_counter() - t0
    if meta.get("code") and _replace_bodies(zoo, key):  # said once, by this run; not stored
        return ExtractResult(key, spec.name, values, ids, {**meta, "source_changed": True}, seconds=seconds)
    return ExtractResult(key, spec.name, values, ids, meta, seconds=seconds)


def _replace_bodies(zoo: Zoo, key: str) -> bool:
    """After a plugin's entry ``key`` is saved: remove the zoo's entries of the same fingerprint
    (:func:`body_group`) computed by another body of its function (another ``code``, or none: made
    before sources were keyed), which nothing loads once the new one exists. Whether one of them was
    of another (known) body: the cache was not reused because the source changed."""
    metas = cache_entries(zoo)
    mine = next((m for m in metas if m.get("key") == key), None)
    if mine is None:
        return False
    old = [m for m in metas if body_group(m) == body_group(mine) and m.get("code") != mine.get("code")]
    zoo.remove_fingerprints([m["key"] for m in old])
    return any(m.get("code") for m in old)


def _check_widths(zoo: Zoo, text: str, ids: Sequence[str], parts: Sequence[np.ndarray]) -> None:
    """One-line error when chunks of models of different architectures (a ``model.sweep``) gave
    fingerprints of different widths (weights of different sizes): they cannot be one table."""
    if len({p.shape[1:] for p in parts}) > 1:
        raise UserError(f"fingerprint '{text}' has {' vs '.join(sorted({str(p.shape[1:]) for p in parts}))} columns across the "
                        f"zoo's model.sweep groups ({', '.join(sorted(set(model_setting(zoo, ids))))}): it cannot be compared "
                        "across architectures (behavioural ones on a shared probe set, e.g. probe-outputs, can)")


def _params_blob(params: Any) -> str:
    return json.dumps(params, sort_keys=True, default=str)  # as the cache key sees them


def cache_entries(zoo: Zoo) -> list[dict]:
    """The metadata of every usable cache entry of ``zoo`` (failed extractions left out)."""
    return [m for m in zoo.list_fingerprints() if "error" not in m]


def find_cached(zoo: Zoo, text: str, metas: Sequence[dict] | None = None) -> list[dict]:
    """The cache entries (one per cached step) that ``text`` names, resolved as extraction keys them.

    ``text`` is a cache key, or a spec resolved to its extractor, version and parameters with the
    defaults merged (``cka`` and ``cka:debiased=false`` are one entry). A bare name whose default
    is not cached takes its one cached variant; several are a :class:`UserError` listing them. A
    name no registered extractor has (``probe-search``, a plugin not loaded) matches stored specs
    as written. A subset's entry (forecast, select) is found only by its key. ``[]``: not cached.
    """
    if metas is None:
        metas = cache_entries(zoo)
    by_key = [m for m in metas if m.get("key") == text]
    if by_key:
        return by_key
    population = [m for m in metas if not m.get("subset")]
    try:
        name, overrides = parse_spec(text)
        if unloaded(name):  # its cached entries read as written, never by importing it (outside audit 121)
            raise UserError(name)
        spec = get_extractor(name)
        params = spec.resolve_params(overrides)
    except UserError:
        named = [m for m in population if text in (m.get("spec"), m.get("extractor"))]
        specs = sorted({str(m.get("spec")) for m in named})  # review 122: a variant's entry under its extractor's name
        if text not in specs and len(specs) > 1:
            raise UserError(f"'{text}' is ambiguous: {len(specs)} variants are cached (name one with --fp): {', '.join(specs)}")
        named = [m for m in named if m.get("spec") == text] or named
        # an earlier body's entry names the fingerprint; a later body's, under another spec text, holds it now
        groups, seen = {body_group(m) for m in named}, {id(m) for m in named}
        return _latest_bodies(named + [m for m in population if m.get("code") and id(m) not in seen and body_group(m) in groups])
    mine = [m for m in population if m.get("extractor") == spec.name and str(m.get("version")) == str(spec.version)]
    if spec.code is not None and spec.source != "builtin":  # a loaded plugin: never an entry of an edited body
        mine = _latest_bodies([m for m in mine if m.get("code") in (None, spec.code)], spec.code)
    exact = [m for m in mine if _params_blob(m.get("params")) == _params_blob(params)]
    if exact or overrides:
        return exact
    variants = {_params_blob(m.get("params")): m for m in mine}
    if len(variants) > 1:
        names = sorted(variant_spec(spec.name, m.get("params") or {}, params) for m in variants.values())
        raise UserError(f"'{text}' is ambiguous: its default is not cached, and {len(names)} variants are "
                        f"(name one with --fp): {', '.join(names)}")
    return mine


def _latest_bodies(metas: list[dict], code: str | None = None) -> list[dict]:
    """A plugin's entries that differ only in the source they were computed with (``code``), one per
    fingerprint (:func:`body_group`): the one of ``code`` if given, else the newest. A plugin not
    loaded is found by name; an entry an earlier body left (extraction removes them when it
    recomputes: :func:`_replace_bodies`) is not taken. Entries without ``code`` (built-ins,
    ``probe-search``, plugin entries made before sources were keyed) are all kept where no entry of
    theirs has one."""
    groups: dict[tuple, list[dict]] = {}
    for m in metas:
        groups.setdefault(body_group(m), []).append(m)
    keep = set()
    for group in groups.values():
        if any(m.get("code") for m in group):
            best = max(group, key=lambda m: (code is not None and m.get("code") == code, float(m.get("created") or 0.0)))
            keep.add(id(best))
        else:
            keep.update(id(m) for m in group)
    return [m for m in metas if id(m) in keep]


def body_group(meta: dict) -> tuple:
    """What makes entries one fingerprint, whichever body of a plugin computed them: extractor,
    version, parameters and step (and a subset's model set)."""
    return (meta.get("extractor"), str(meta.get("version")), _params_blob(meta.get("params")), str(meta.get("step")),
            meta.get("model_set") if meta.get("subset") else None)


def superseded(metas: Sequence[dict]) -> set[str]:
    """The keys of the cache entries ``metas`` holds that a newer body of their plugin replaced:
    another entry of the same fingerprint (:func:`body_group`), with another ``code``, is newer.
    Extraction removes them when it recomputes the plugin; ones left (by a run before it did, or a
    crash between the save and the removal) are marked by ``inspect`` and used by no analysis."""
    newest: dict[tuple, dict[Any, float]] = {}
    for m in metas:
        by_code = newest.setdefault(body_group(m), {})
        by_code[m.get("code")] = max(by_code.get(m.get("code"), -np.inf), float(m.get("created") or 0.0))
    return {str(m.get("key")) for m in metas
            if any(c != m.get("code") and t > float(m.get("created") or 0.0) for c, t in newest[body_group(m)].items())}


def variant_spec(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    """``name:key=value,...`` with the parameters that differ from the defaults."""
    diff = [f"{k}={_params_blob(v).strip(chr(34))}" for k, v in sorted(params.items())
            if _params_blob(v) != _params_blob(defaults.get(k))]
    return f"{name}:{','.join(diff)}" if diff else name


def load_cached(zoo: Zoo, spec_text: str, step: int | str | None = None) -> ExtractResult | None:
    """The cached fingerprint for a spec (and step), without computing anything (:func:`find_cached`)."""
    for meta in find_cached(zoo, spec_text):
        if step is None or meta.get("step") == step:
            hit = zoo.load_fingerprint(meta["key"])
            if hit is not None:
                return ExtractResult(meta["key"], str(meta.get("extractor")), hit[0], hit[1], hit[2], cached=True)
    return None
