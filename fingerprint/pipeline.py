"""The pipeline: sweep -> fingerprints -> basins and scorecard -> report, callable from a notebook.

``fingerprint run`` is a thin wrapper over :func:`run`; each stage is a function of its own, so a
notebook can run one, look, and go on::

    from fingerprint import pipeline
    cfg = pipeline.RunConfig.load("xor-cues-quick")          # [task] ... [fingerprints] [analysis]
    result = pipeline.run(cfg, "runs/xor")                   # zoo/, report.html, figures/, summary.json

    zoo = pipeline.sweep(cfg, "runs/xor/zoo")                # or stage by stage
    inputs = pipeline.fingerprints(zoo, cfg.fingerprints.specs(zoo))
    result = pipeline.analyze(zoo, inputs, cfg.analysis)
    pipeline.write_report(zoo, result, inputs, "report.html", "summary.json")

What a zoo keeps: ``results/basins.json`` (the whole analysis: settings, clusters, 2-D maps, scores,
verdicts), ``results/scorecard.json`` (the ``summary.json`` numbers), and ``results/forecast.json``
and ``results/select-*.json`` when forecast and select ran (the report shows them). Long stages
report to a :class:`Progress` (the CLI's draws rich bars; the default is silent). Longer than 400
lines: it is the one place the stages are glued, for the CLI and a notebook alike.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.errors import AnalysisError
from analysis.options import AnalysisOptions, FingerprintInput
from analysis.results import AnalysisResult, FingerprintResult, summary
from analysis.values import missing as no_value
from fingerprint.extraction import (
    FAILURES,
    ExtractResult,
    cache_entries,
    extract,
    failures,
    find_cached,
    resolve_specs,
    superseded,
)
from fingerprint.extractors.attribution import ONE_VALUE
from fingerprint.extractors.behavioural import ONE_COORDINATE, RARE_TOKENS
from fingerprint.extractors.mechanistic import matching_cost
from fingerprint.forecast import ForecastSettings
from fingerprint.parallel import get_runner
from fingerprint.population import (
    family_for,
    privileged_probes,
    task_for,
    use_architecture,
)
from fingerprint.progress import SILENT, Progress
from fingerprint.registry import builtin_spec
from fingerprint.selection import procedure
from fingerprint.tables import (
    RECOVERED,
    imported_only,
    model_table,
    options_stamp,
    stored_lineage,
    unrecorded_lineage,
)
from fingerprint.twins import TWIN_R, near_twins, twin_families
from training.config import SweepConfig, config_file, load_config
from training.core.errors import UserError, choices
from training.core.outputs import check_output
from training.core.store import (
    MANIFEST,
    Zoo,
    atomic_path,
    package_version,
    publish_mode,
    staging_dir,
    write_json,
)
from training.core.validate import from_mapping
from training.families.symmetries import matching_groups
from training.sweep import SweepSummary, get_executor, run_sweep, validate

if TYPE_CHECKING:
    from analysis.clustering import BasinClusterer

# which class each model predicts on in-distribution probes: a different rule (a+b vs a-b) disagrees on most of
# them, where confidence dominates the outputs' own features (the seventh outside audit; docs/extractors.md)
PREDICTIONS = "disagreement:probe_set=in_dist"
DEFAULT_FINGERPRINTS = ["probe-outputs", "ood-outputs", "recombined-outputs", "anomalous-inputs", "disagreement", PREDICTIONS,
                        "weight-stats", "weight-spectra", "cka", "aligned-weights", "input-saliency"]
TOKEN_INPUTS = "the 'in_dist' probes are token ids, which have no input gradient: token-occlusion in its place"
ONE_TOKEN = "the 'in_dist' probes are single token ids: no input gradient, and no other position to compare"
INTEGER_ARRAYS = "the 'in_dist' probes are integer arrays, not token sequences [probes, positions]: no input gradient"
# where input-saliency is left out for TOKEN_INPUTS, the default set reads the positions the outputs move on instead
TOKEN_SALIENCY = "token-occlusion"
ALIGN_DEFAULT_SECONDS = 120.0  # aligned-weights' estimated weight matching above this: out of the default set, said


def default_fingerprints(zoo: Zoo, skipped: dict[str, str] | None = None) -> list[str]:
    """The standard set that applies to ``zoo``: :data:`DEFAULT_FINGERPRINTS`, less what an imported
    architecture cannot give (``aligned-weights`` needs permutation symmetry, ``cka`` named
    layers) and the probe-set fingerprints whose default probe set (``in_dist`` / ``ood``) it lacks
    (:func:`skipped_defaults` says why each is left out; ``skipped``: its answer, when the caller has it).
    ``aligned-weights`` stays where the architecture has declared or inferred permutation groups. On
    token sequences, :data:`TOKEN_SALIENCY` (``token-occlusion``) takes ``input-saliency``'s place, last."""
    skip = skipped_defaults(zoo) if skipped is None else skipped
    return [f for f in DEFAULT_FINGERPRINTS if f not in skip] + ([TOKEN_SALIENCY] if skip.get("input-saliency") == TOKEN_INPUTS else [])


def skipped_text(skipped: dict[str, str]) -> str:
    """``default set without NAME (why); ...`` for :func:`skipped_defaults`' answer, or ``""`` (said once, by
    ``extract`` before its first result and by ``fingerprint run`` at its fingerprints stage)."""
    return "default set without " + "; ".join(f"{n} ({w})" for n, w in skipped.items()) if skipped else ""


def unread_probe_sets(zoo: Zoo) -> str:
    """``probe set 'trigger' is read by no fingerprint of the default set ...`` for an import's probe sets other than
    ``in_dist`` and ``ood`` (the default set reads only those), or ``""``: said by ``extract`` without ``--fp``. An
    outside audit (105): a third probe set given at import was read by nothing, and nothing said so."""
    if zoo.family_spec.get("arch") not in ("module", "hf"):  # a built-in task's extra sets are its own, not the user's
        return ""
    privileged = privileged_probes(zoo)  # declared at import: read on purpose, by --fp
    # the rare-token rows of an HF import are anomalous-inputs' own (outside audit 123: said as unread on every HF zoo)
    own = (RARE_TOKENS,) if zoo.family_spec.get("arch") == "hf" else ()
    extra = [n for n in task_for(zoo).probe_names() if n not in ("in_dist", "ood", *own) and n not in privileged]
    if not extra:
        return ""
    names = ", ".join(f"'{n}'" for n in extra)
    return (f"probe set{'s' if len(extra) > 1 else ''} {names} {'are' if len(extra) > 1 else 'is'} read by no fingerprint "
            f"of the default set (it reads 'in_dist' and 'ood'): name {'them' if len(extra) > 1 else 'it'} to use "
            f"{'them' if len(extra) > 1 else 'it'}, e.g. --fp probe-outputs:probe_set={extra[0]} --fp "
            f"disagreement:probe_set={extra[0]} (a set built from what you know of the models is declared at import with --privileged: "
            "not label-free evidence)")


def skipped_defaults(zoo: Zoo) -> dict[str, str]:
    """``{extractor: why}`` for each of :data:`DEFAULT_FINGERPRINTS` that does not apply to ``zoo``
    (for a built-in zoo, only ``input-saliency`` on token inputs), in that order."""
    arch = zoo.family_spec.get("arch")
    if arch not in ("module", "hf"):  # the built-in tasks' probe sets are all there; token ids: a vocabulary (no code run)
        slow = slow_alignment(zoo)
        why = {"aligned-weights": slow} if slow else {}
        if int(zoo.family_spec.get("vocab", 0) or 0) > 0:
            why["input-saliency"] = _integer_inputs(zoo.family_spec.get("input_shape") or ())
        return why
    task = task_for(zoo)
    sets = set(task.probe_names())
    x = task.probes("in_dist") if "in_dist" in sets else None  # read once: the checks below all look at it
    needs = {"probe-outputs": "in_dist", "ood-outputs": "ood", "recombined-outputs": "in_dist", "disagreement": "ood", "cka": "in_dist",
             "anomalous-inputs": "in_dist", PREDICTIONS: "in_dist", "input-saliency": "in_dist"}
    why: dict[str, str] = {}
    for f in DEFAULT_FINGERPRINTS:
        if f == "aligned-weights" and not family_for(zoo).hidden_permutable():
            stop = family_for(zoo).permutation_stop()
            why[f] = ("no hidden-unit permutation groups (inferred for the MLPs of GPT-2, GPT-NeoX, Llama-style and "
                      "other HF architectures, docs/import.md; not this one)" if arch == "hf" else
                      "no hidden-unit permutation groups: inferred only for an nn.Sequential of Linear/Conv layers "
                      "and stock TransformerEncoderLayer / TransformerDecoderLayer feed-forward units, "
                      + (f"whose units cannot be followed past {stop} here, " if stop else "")
                      + "else declared by a hidden_permutable() method of the module")
        elif f == "aligned-weights" and (slow := slow_alignment(zoo)):
            why[f] = slow
        elif f == "cka" and arch == "module" and not zoo.family_spec.get("layers"):
            why[f] = "no layer declared at import (--layers NAME), or name one: --fp cka:layer=NAME"
        elif f in needs and needs[f] not in sets:
            why[f] = f"no probe set '{needs[f]}'"
        elif f == "recombined-outputs" and x[0].numel() == 1:
            why[f] = ONE_COORDINATE
        elif f == "input-saliency" and (not x.is_floating_point() or x[0].numel() == 1):
            why[f] = ONE_VALUE if x.is_floating_point() else _integer_inputs(x.shape[1:])
    return why


def slow_alignment(zoo: Zoo) -> str:
    """Why ``aligned-weights`` is left out of the default set for ``zoo``'s size, or ``""``: weight
    matching estimated (:func:`~fingerprint.extractors.mechanistic.matching_seconds`) to take more
    than :data:`ALIGN_DEFAULT_SECONDS` (an outside audit, 72: 16 MLPs of three 2,048-unit layers ran
    for more than 8 minutes inside the default set). Named with ``--fp``, it is computed anyway."""
    seconds, widest = 0.0, 0
    counts = Counter(str(g) for g in zoo.models["group"]) if "group" in zoo.models else Counter({"": len(zoo)})
    for group, n in counts.items():  # a model.sweep's architectures each (a review: the base's alone read 0.0002 s)
        family = family_for(zoo, group)
        groups = matching_groups(family.hidden_permutable())
        if not groups:
            continue
        cost = matching_cost(family.param_shapes(), groups, n)
        if cost is None:  # groups naming a tensor the shapes do not have: the extractor says so itself
            return ""
        seconds, widest = seconds + cost[0], max(widest, cost[1])
    if seconds <= ALIGN_DEFAULT_SECONDS:
        return ""
    took = f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"  # (audit 113: "about 2 min" beside a 2-min budget)
    return (f"weight matching of {len(zoo)} models whose widest layer has {widest:,} units would take about {took} on "
            f"one core, beyond the default set's {ALIGN_DEFAULT_SECONDS:.0f} s (it grows as the cube of that width); to "
            "compute it anyway: --fp aligned-weights")


def _integer_inputs(shape) -> str:
    """Why ``input-saliency`` does not apply to integer inputs of one probe's ``shape``: token sequences
    (``[T]``, two or more positions: :data:`TOKEN_SALIENCY` in its place), one token, or integer arrays."""
    shape = [int(v) for v in shape]
    if len(shape) == 1 and shape[0] >= 2:
        return TOKEN_INPUTS
    return ONE_TOKEN if len(shape) <= 1 else INTEGER_ARRAYS


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FingerprintSettings:
    """The ``[fingerprints]`` section: extractor specs, the checkpoint step, models per chunk."""

    names: list[str] | None = None  # None (not given): the default set that applies to the zoo (:meth:`specs`)
    step: str | int = "final"  # "final" or a checkpoint step
    chunk_size: int | None = None  # None: extraction's automatic size

    def validate(self, where: str = "fingerprints") -> None:
        if self.names is not None and (not self.names or not all(self.names)):
            raise UserError(f"config key '{where}.names' must be a non-empty list of extractor specs (NAME[:key=value,...])")
        dup = next((n for n in self.names or [] if self.names.count(n) > 1), None)
        if dup is not None:
            raise UserError(f"config key '{where}.names' lists '{dup}' twice")
        if isinstance(self.step, str) and self.step != "final":
            raise UserError(f"config key '{where}.step' must be 'final' or a checkpoint step, got {self.step!r}")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise UserError(f"config key '{where}.chunk_size' must be > 0, got {self.chunk_size}")

    def specs(self, zoo: Zoo, skipped: dict[str, str] | None = None) -> list[str]:
        """The extractor specs to compute on ``zoo``: ``names`` as given, else :func:`default_fingerprints`
        (the default set less what does not apply to the zoo's inputs, such as ``input-saliency`` on token ids;
        ``skipped``: :func:`skipped_defaults`' answer, when the caller has it)."""
        return list(self.names) if self.names is not None else default_fingerprints(zoo, skipped)

    @property
    def checkpoint(self) -> int | None:
        """The step to fingerprint (None: each model's final one)."""
        return None if self.step == "final" else int(self.step)


@contextmanager
def analysis_errors() -> Iterator[None]:
    """``analysis/`` raises ValueErrors (scikit-learn's way); here they become one-line errors for people."""
    try:
        yield
    except AnalysisError as e:
        raise UserError(str(e)) from e


def analysis_options(section: dict | AnalysisOptions | None = None, **overrides: Any) -> AnalysisOptions:
    """``[analysis]`` (a mapping, or options already validated such as ``RunConfig.analysis``) validated into
    :class:`~analysis.scorecard.AnalysisOptions`, then overrides (None: keep; an unknown name is a UserError)."""
    known = set(AnalysisOptions.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown analysis option '{unknown[0]}' (valid: {choices(sorted(known))})")
    with analysis_errors():
        base = section if isinstance(section, AnalysisOptions) else from_mapping(AnalysisOptions, dict(section or {}), "analysis")
        return base.replace(**overrides)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the sweep, the fingerprints to compute and the analysis settings, all validated."""

    sweep: SweepConfig
    fingerprints: FingerprintSettings
    analysis: AnalysisOptions
    source: Path | None = None  # the config file, if it came from one
    forecast: ForecastSettings = field(default_factory=ForecastSettings)  # forecast and selection (docs/forecasting.md)

    @classmethod
    def from_sweep(cls, sweep: SweepConfig, source: Path | None = None) -> "RunConfig":
        """Check a sweep config's pipeline sections (and that every extractor exists) before anything is trained."""
        fps = from_mapping(FingerprintSettings, dict(sweep.fingerprints or {}), "fingerprints")
        opts = analysis_options(sweep.analysis)
        fc = from_mapping(ForecastSettings, dict(sweep.forecast or {}), "forecast")
        resolve_specs([*(fps.names or DEFAULT_FINGERPRINTS), *fc.fingerprints, *([fc.fingerprint] if fc.fingerprint else [])])  # fail now, not after the sweep
        if "input-saliency" in {n.split(":")[0] for n in fps.names or []} and int(sweep.model.params.get("vocab", 0) or 0) > 0:
            raise UserError("config key 'fingerprints.names' lists input-saliency, but this model's inputs are token ids "
                            "(model.vocab > 0), which have no input gradient (remove it: with no names, the default set "
                            "leaves it out)")
        return cls(sweep, fps, opts, source, fc)

    @classmethod
    def load(cls, ref: str | Path) -> "RunConfig":
        """From a TOML path or a built-in config name (``fingerprint list`` shows them)."""
        return cls.from_sweep(load_config(ref), config_file(ref))


# -- stages ----------------------------------------------------------------------------------------
def allow_models(zoo: Zoo, trust_code: bool = False, arch: str | None = None) -> Zoo:
    """Let an open zoo's models run: with consent to import the code it names (``trust_code``), or
    with the user's own architecture factory (``arch``, ``module:factory``)."""
    zoo.trust_code = trust_code
    if arch:
        use_architecture(zoo, arch)
    return zoo


def open_zoo(path: str | Path, trust_code: bool = False, arch: str | None = None) -> Zoo:
    """Open a zoo to run its models (:func:`allow_models`)."""
    return allow_models(Zoo.open(path), trust_code, arch)


def sweep(config: RunConfig | SweepConfig, out: str | Path, executor: str = "local", address: str | None = None,
          models_per_batch: int | None = None, device: str = "cpu", resume: bool = False, overwrite: bool = False,
          inputs: dict | None = None, max_gb: float | None = None, progress: Progress = SILENT) -> SweepSummary:
    """Train the sweep into the zoo ``out`` (see :func:`training.sweep.run_sweep`)."""
    cfg = config.sweep if isinstance(config, RunConfig) else config
    if address and executor != "ray":
        raise UserError(f"--address is for --executor ray, not '{executor}'")
    if inputs is None and isinstance(config, RunConfig) and config.source is not None:
        inputs = {"config file": config.source}
    ex = get_executor(executor, **({"address": address} if address else {}))
    return run_sweep(cfg, Path(out), executor=ex, models_per_batch=models_per_batch, device=device, resume=resume,
                     overwrite=overwrite, on_start=progress.sweep_started, on_steps=progress.sweep_advanced,
                     on_done=lambda sp: progress.shard_finished(sp.n_models), inputs=inputs, max_gb=max_gb)


def compute(zoo: Zoo, specs: list[str], step: int | str | None = None, force: bool = False, label: str | None = None,
            chunk_size: int | None = None, runner: Any = None, device: str = "cpu", progress: Progress = SILENT) -> list[ExtractResult]:
    """Compute fingerprints (cached in the zoo; cached ones are reused). ``label``: a model column that
    supervised extractors may train on."""
    labels = dict(zip(zoo.model_ids, zoo.models[label])) if label is not None else None
    results = extract(zoo, specs, step=step, force=force, labels=labels, on_progress=progress.extraction,
                      chunk_size=chunk_size, runner=runner, device=device)
    progress.extracted(results)
    return results


def fingerprints(zoo: Zoo, specs: list[str], step: int | None = None, label: str | None = None, chunk_size: int | None = None,
                 runner: Any = None, device: str = "cpu", progress: Progress = SILENT) -> list[FingerprintInput]:
    """Fingerprints as analysis inputs, computed or reused from the cache; a failure is an input with an ``error``."""
    results = compute(zoo, specs, step, False, label if (label and label in zoo.models) else None, chunk_size, runner,
                      device, progress)
    out = []
    for r in results:
        meta = _declared(r.meta or {})
        meta.setdefault("key", r.key)
        name = str(meta.get("spec") or r.name)
        if r.values is not None and len(results) > len(specs):  # several steps: keep them apart
            name = f"{name}@{meta.get('step')}"
        out.append(FingerprintInput(name, r.values, list(r.model_ids), meta, error=r.error))
    return out


LIFTED = ("predicts",)  # keys of an extractor's own metadata the analysis reads (disagreement: classes or values)


def _declared(meta: dict) -> dict:
    """A cache entry's ``meta`` as the analysis reads it: without the extractor's own metadata
    (``extra``: layers, landmarks, ...) but for its :data:`LIFTED` keys, and with what the extractor
    declared: ``standardize``, how it scales the fingerprint's columns (``ExtractorSpec.scale``), and
    ``reads``, what the fingerprint summarises (``ExtractorSpec.reads``), each from what extraction
    stored with it or (a cache written before it stored one) the built-in's declaration; a plugin's,
    columns standardised and its own source."""
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    out = {k: v for k, v in meta.items() if k != "extra"}
    out.update({k: extra[k] for k in LIFTED if k in extra})
    spec = None if "standardize" in out and "reads" in out else builtin_spec(str(out.get("extractor")))
    if "standardize" not in out:
        out["standardize"] = (out.get("scale") or (spec.scale if spec else None) or "columns") == "columns"
    if "reads" not in out:
        out["reads"] = (spec.reads if spec else None) or ""
    return out


def _fp_name(meta: dict) -> str:
    return str(meta.get("spec") or meta.get("extractor") or meta.get("key"))


def _step_rank(step: Any) -> float:
    return float(step) if isinstance(step, (int, float)) else float("inf")


def _entry_rank(meta: dict) -> tuple[float, float]:
    return _step_rank(meta.get("step")), float(meta.get("created") or 0.0)


def cached_fingerprints(zoo: Zoo, names: list[str] | None = None) -> list[FingerprintInput]:
    """Cached fingerprints as analysis inputs: the named ones (a spec resolved to its cache entry with
    the defaults merged, or a cache key: :func:`~fingerprint.extraction.find_cached`) or all. With
    several cached steps of one fingerprint, the latest is used; an entry of a plugin's earlier body
    (:func:`~fingerprint.extraction.superseded`) never is."""
    metas = cache_entries(zoo)
    if names:
        chosen = []
        for n in names:  # resolved as extraction keys it: `cka` and `cka:debiased=false` are one entry
            hits = find_cached(zoo, n, metas)
            if not hits:
                raise UserError(f"no cached fingerprint '{n}' in zoo '{zoo.path}' (cached: {choices(_fp_name(m) for m in metas)})")
            best = max(hits, key=_entry_rank)
            if best["key"] not in {c["key"] for c in chosen}:  # two names of one entry: analysed once
                chosen.append(best)
    else:
        latest: dict[str, dict] = {}
        stale = superseded(metas)  # an earlier body's entry, under whatever spec text it was extracted
        for m in metas:
            if m.get("subset") or m.get("key") in stale:
                continue
            k = _fp_name(m)
            # the latest step; of one step, the newest entry
            if k not in latest or _entry_rank(m) >= _entry_rank(latest[k]):
                latest[k] = m
        chosen = list(latest.values())
    out = []
    for m in chosen:
        hit = zoo.load_fingerprint(m["key"])
        if hit is None:
            out.append(FingerprintInput(_fp_name(m), None, [], m, error=f"cached fingerprint '{m['key']}' is unreadable"))
            continue
        values, ids, meta = hit
        meta = _declared(meta)
        out.append(FingerprintInput(_fp_name(meta), values, ids, meta))
    return out


def inputs_for(zoo: Zoo, names: list[str] | None, label: str | None = None, progress: Progress = SILENT) -> list[FingerprintInput]:
    """What ``cluster`` / ``report`` analyse: the named fingerprints (computing those not cached), or every cached one."""
    if not names:
        inputs = cached_fingerprints(zoo)
        if not inputs:
            spec = zoo.family_spec or {}  # an import runs your factory again (--arch; a zoo never imports code itself)
            # the zoo's own factory name is only named, never put in the command: following a hint built from a
            # downloaded zoo would import whatever module of that name sits in the working directory
            module = spec.get("arch") == "module"
            arch = " --arch MODULE:FACTORY" if module else ""
            own = ("; MODULE:FACTORY is your own code that builds the architecture"
                   + (f", as '{spec['factory']}' did at import" if spec.get("factory") else "")) if module else ""
            raise UserError(f"zoo '{zoo.path}' has no fingerprints yet: run `fingerprint extract {zoo.path}{arch}` (the "
                            f"default set{own}) or pass --fp")
        return inputs
    metas = cache_entries(zoo)
    missing = [n for n in names if not find_cached(zoo, n, metas)]  # an ambiguous bare name stops here
    failed = {}
    if missing:
        got = fingerprints(zoo, missing, label=label, progress=progress)
        errors = [r.error for r in got if r.error]
        # one result per spec (one step): each failure's own error; several steps: all of them
        own = {n: r.error for n, r in zip(missing, got) if r.error} if len(got) == len(missing) else {}
        metas = cache_entries(zoo)
        failed = {n: own.get(n) or "; ".join(errors) or "not computed" for n in missing if not find_cached(zoo, n, metas)}
    if failed and len(failed) == len(names):  # each one's error is already shown: no analysis of nothing
        raise UserError(f"nothing to analyse: {choices(failed)} could not be computed (above)")
    ok = cached_fingerprints(zoo, [n for n in names if n not in failed])
    return ok + [FingerprintInput(n, None, [], {"spec": n}, error=e) for n, e in failed.items()]


def forget_failures(zoo: Zoo) -> list[str]:
    """Drop the zoo population's recorded extraction failures (:func:`fingerprint.extraction.record_failures`), e.g. of a spec written
    wrong, which no later extraction would compute and so drop; the specs dropped (`extract --forget-failed`)."""
    dropped = failures(zoo)
    if dropped:  # every other population's entries kept
        zoo.save_result(FAILURES, {"failures": [f for f in failures(zoo, model_set=None) if f not in dropped]})
    return [str(f.get("spec") or f["key"]) for f in dropped]


def not_in_report(zoo: Zoo, inputs: list[FingerprintInput]) -> list[dict[str, str]]:
    """The fingerprints whose last extraction for this population failed and that are therefore not
    among ``inputs`` (``[{"fingerprint", "error"}]``, from ``results/extraction_failures.json``):
    a report of the cached fingerprints says they are missing, and why."""
    have = {str(f.meta.get("key")) for f in inputs} | {f.name.split("@")[0] for f in inputs}  # at another step: there
    return [{"fingerprint": f["spec"], "error": f["error"]} for f in failures(zoo) if not {f["key"], f["spec"]} & have]


def options_for(zoo: Zoo, **overrides: Any) -> AnalysisOptions:
    """The zoo's own ``[analysis]`` section (a sweep's config), then ``overrides`` (None: keep). A zoo
    whose lineage column is missing or says nothing (an import: ``init_seed`` -1 for every model)
    uses the families of bit-identical first checkpoints when its histories show them, else the
    weight-recovered families when ``fingerprint lineage`` stored them, unless ``lineage=`` names a
    column (:func:`fingerprint.tables.unrecorded_lineage`)."""
    section = zoo.config.get("analysis") if isinstance(zoo.config, dict) else None
    table = model_table(zoo)
    for flag, column in (("--label", overrides.get("label")), ("--lineage", overrides.get("lineage"))):
        if column is not None and column not in table:
            raise UserError(f"unknown model column '{column}' for {flag} (valid: {choices(table)})")
    opts = analysis_options(section, **overrides)
    for c in opts.strata:  # --strata, or a config's [analysis] strata ("none": not even data_seed and kind)
        if c not in table and c != "none":
            raise UserError(f"unknown model column '{c}' for --strata (valid: {choices(table)}, or none)")
    if opts.exclude:  # each --exclude id checked before any fingerprint is analysed
        from analysis.options import MIN_REST, without  # deferred for start-up time

        with analysis_errors():
            without(table, [], opts.exclude, MIN_REST)
    if opts.covariates:  # each --covariate column checked before any fingerprint is analysed
        from analysis import covariates  # deferred for start-up time

        with analysis_errors():
            covariates.settings(table, opts)
    label = opts.label if opts.label in table else None  # --label or the config's
    if label is not None and overrides.get("label") is not None:
        values = {str(v) for v in table[label].tolist()}
        if len(values) < 2:  # every verdict would be "no ground truth" without saying why
            warnings.warn(f"--label {label} has one value ({next(iter(values), '')!r}) for all {len(table[label])} "
                          "models: nothing to score against, so every verdict is 'no ground truth' (the label-free "
                          "verdicts are unaffected)", stacklevel=2)
        empty = sum(no_value(v) for v in table[label].tolist())
        if empty and len(values) >= 2:  # an outside audit (78): bases with an empty cell were scored as a class, unsaid
            warnings.warn(f"--label {label} is empty for {empty} of {len(table[label])} models: the deep scores treat the "
                          "empty value as a basin of its own (as bases without a label beside their labelled fine-tunes "
                          "would be): give those models a value if they are not one", stacklevel=2)
    from analysis.metadata import measurements  # deferred for start-up time

    measured = None if label is None else measurements(np.asarray(table[label], dtype=object))
    if measured is not None:
        distinct, n = measured
        what = f"--label {label} holds measurements ({distinct} distinct numbers, not all whole, on {n} models), not classes"
        fix = ("give a column of classes (bin it in your metadata CSV), or read the metadata match, which compares the "
               "candidate basins with every column, numbers by rank (docs/scorecard.md, \"Candidate basins and your metadata\")")
        if distinct > max(10, n // 2):  # a value per model, or nearly: no basin to score against
            raise UserError(f"{what}: the deep scores would treat each value as a basin; {fix}")
        warnings.warn(f"{what}: the deep scores treat each of its {distinct} values as a basin; {fix}", stacklevel=2)
    told = overrides.get("lineage") is not None
    stand_in = unrecorded_lineage(table)  # exact first-checkpoint families, else recovered ones
    if stand_in and not told and (opts.lineage not in table or len(set(table[opts.lineage].tolist())) < 2):
        opts = opts.replace(lineage=stand_in)
    twins_warning(zoo, table, opts.lineage, told)
    return opts


def twins_warning(zoo: Zoo, table: dict[str, np.ndarray], lineage: str | None, told: bool = True) -> None:
    """Warn when ``lineage`` makes every model of an import its own init family while some models' weights are
    near twins (:func:`fingerprint.twins.near_twins`): relatives, whose groups the fingerprints would show as
    candidate basins (an outside audit, 80: two nulls of hidden families read so under ``--lineage model_id``)."""
    n = len(table.get("model_id", []))
    if not imported_only(table) or lineage not in table or n < 4 or len({str(v) for v in table[lineage].tolist()}) < n:
        return
    twins = near_twins(zoo) or []
    fams = twin_families(zoo) if twins else None
    if twins and fams is not None and len(set(fams.tolist())) > 1:  # one family of all: no groups it could make
        a, b, r = max(twins, key=lambda t: t[2])
        models = len({m for t in twins for m in t[:2]})
        who = f"--lineage {lineage} makes" if told else f"the lineage in use ({lineage}) makes"
        fix = (f"`fingerprint lineage {zoo.path}` tests which models share one" if told or lineage != RECOVERED else
               "the weight test missed them: name the families with --lineage COLUMN")
        warnings.warn(f"{who} every model its own init family, but {len(twins)} pairs of models ({models} models) have "
                      f"near-twin weights (correlation {TWIN_R:g} or more, in all or in one tensor; {r:.2f} for '{a}' and '{b}'), as models "
                      f"that share an initialisation do: the groups the fingerprints find may be those families, not basins; "
                      f"{fix}", stacklevel=3)


def provenance(zoo: Zoo, extra: dict | None = None) -> dict[str, Any]:
    """Where a result came from: the zoo, its config and versions, when."""
    m = zoo.manifest
    return {"zoo": str(zoo.path), "task": zoo.task_name, "task_params": zoo.task_params, "family": zoo.family_spec,
            "n_models": len(zoo), "zoo_created": m.get("created"), "zoo_source": m.get("source"),
            "zoo_package_version": m.get("package_version"), "package_version": package_version(),
            "config": zoo.config, "report_created": time.time(),
            "refused_at_import": list(m.get("refused") or []),  # --skip-bad's checkpoints, named (audit 73)
            **(extra or {})}


def analyze(zoo: Zoo, inputs: list[FingerprintInput], opts: AnalysisOptions, progress: Progress = SILENT,
            on_result=None) -> AnalysisResult:
    """Cluster and score ``inputs``; store the result in the zoo (``results/basins.json``, ``scorecard.json``).
    ``on_result``: :func:`analysis.scorecard.analyze`'s, called with each fingerprint's result as it comes."""
    from analysis import scorecard as sc  # deferred for start-up time

    with progress.analysing(), analysis_errors():
        result = sc.analyze(inputs, model_table(zoo), opts, on_result)
    result.keys = sorted(str(f.meta.get("key")) for f in inputs)
    result.options = options_stamp(zoo, opts)
    zoo.save_result("basins", result.to_dict())
    zoo.save_result("scorecard", summary(result, provenance(zoo)))
    return result


def stored_analysis(zoo: Zoo, inputs: list[FingerprintInput], opts: AnalysisOptions) -> AnalysisResult | None:
    """The stored analysis if it was made with the same options from the same cached fingerprints, by
    code whose statistics are the same (``METHODS_VERSION``)."""
    from analysis.scorecard import METHODS_VERSION  # deferred for start-up time

    res = zoo.load_result("basins")
    if not res or any(f.error for f in inputs):
        return None
    want = sorted(str(f.meta.get("key")) for f in inputs)
    if res.get("keys") != want or res.get("options") != options_stamp(zoo, opts) or res.get("methods") != METHODS_VERSION:
        return None
    return AnalysisResult.from_dict(res)


def distance_matrices(inputs: list[FingerprintInput], result: AnalysisResult) -> dict[str, np.ndarray]:
    """Square distance fingerprints re-indexed to the analysed models (for dendrograms / heat-maps)."""
    out = {}
    for r in result.fingerprints:
        d = distance_matrix(inputs, r)
        if d is not None:
            out[str(r.fingerprint)] = d
    return out


def distance_matrix(inputs: list[FingerprintInput], r: FingerprintResult) -> np.ndarray | None:
    """``r``'s distance fingerprint re-indexed to its analysed models, or ``None`` (features, or not an input)."""
    f = next((f for f in inputs if f.name == str(r.fingerprint)), None)
    if f is None or f.values is None or not r.distances or not r.model_ids:
        return None
    pos = {m: i for i, m in enumerate(f.model_ids)}
    idx = np.asarray([pos[m] for m in r.model_ids], int)
    return np.asarray(f.values, dtype=np.float64)[np.ix_(idx, idx)]


@contextmanager
def report_analysis(zoo: Zoo, inputs: list[FingerprintInput], opts: AnalysisOptions, progress: Progress = SILENT
                    ) -> Iterator[tuple[AnalysisResult, dict[str, Any]]]:
    """``with report_analysis(...) as (result, drawn)``: the analysis ``report`` shows (the stored one
    when current, else a new one) and, for a new one, the fingerprints' sections drawn in a second
    process while it ran (:class:`analysis.report.SectionDrawer`), for :func:`write_report`'s
    ``drawn`` inside the block (the drawing process ends with it)."""
    from analysis.report import SectionDrawer  # deferred for start-up time

    stored = stored_analysis(zoo, inputs, opts)
    rows = sum(len(f.model_ids) for f in inputs)
    sections = None if stored is None else sum(not r.error for r in stored.fingerprints)
    with SectionDrawer(rows, distances=lambda r: distance_matrix(inputs, r), sections=sections) as drawer:
        if stored is not None:  # its sections shared between a second process and this one
            yield stored, drawer.draw_ahead(stored)
        else:
            result = analyze(zoo, inputs, opts, progress, on_result=drawer)
            yield result, drawer.views(result)  # the families' trees queued there too, behind the sections


def selections(zoo: Zoo) -> list[dict]:
    """The stored ``select`` results (``results/select-*.json``), in name order."""
    return [r for r in (zoo.load_result(n) for n in zoo.list_results() if n.startswith("select-")) if isinstance(r, dict)]


def write_report(zoo: Zoo, result: AnalysisResult, inputs: list[FingerprintInput], html_path: str | Path,
                 json_path: str | Path | None = None, extra_provenance: dict | None = None,
                 drawn: dict[str, Any] | None = None, missing: list[dict[str, str]] | None = None) -> None:
    """The self-contained HTML report, ``summary.json``, and every figure as PNG and PDF in the
    report's own figures directory (:func:`figures_dir`), replaced as a whole so that no figure of
    an earlier report stays among them. The forecast, selections and goodhart curves stored in the
    zoo are in all three. Figures and summary are written before the HTML is renamed into place: if
    one fails, no new HTML is published. ``drawn``: sections drawn already (:func:`report_analysis`).
    ``missing``: fingerprints not in the report because their extraction failed (:func:`not_in_report`),
    named in the HTML and in ``summary.json`` (``not_in_report``)."""
    from analysis.forecast import (  # deferred for start-up time
        FORECAST_ABOUT,
        forecast_about,
    )
    from analysis.report import page  # deferred for start-up time

    figs = figures_dir(html_path)
    check_figures_dir(figs, zoo.path, json_path)
    prov = provenance(zoo, extra_provenance)
    if missing:
        prov["not_in_report"] = missing
    stored_fc = zoo.load_result("forecast") or {}  # load_result: None when none is stored
    forecast = stored_fc.get("forecast")
    notes = forecast_about(stored_fc, (result.settings or {}).get("lineage")) if forecast else []
    chosen = selections(zoo)
    goodhart = zoo.load_result("goodhart")
    tree = stored_lineage(zoo)
    with analysis_errors():
        pg = page(result, prov, distance_matrices(inputs, result), forecast, chosen, goodhart=goodhart, lineage=tree,
                  drawn=drawn, forecast_notes=notes)
    with atomic_path(Path(html_path)) as tmp:
        tmp.write_text(pg.html, encoding="utf-8")
        publish_figures(figs, {f"{f.name}.{ext}": data for f in pg.figures for ext, data in f.files.items()})
        if json_path:  # published before the HTML is renamed into place: if it fails, neither is written
            s = summary(result, prov)
            s["not_in_report"] = list(missing or [])
            if forecast:
                s["forecast"] = forecast
                s["forecast_about"] = {k: stored_fc[k] for k in FORECAST_ABOUT if k in stored_fc}
                s["forecast_about"]["notes"] = notes
            if chosen:
                s["selections"] = chosen
            if goodhart:
                s["goodhart"] = goodhart
            if tree:
                s["lineage"] = {k: tree.get(k) for k in ("evidence", "alpha", "truth", "by_evidence", "edges")}
            write_json(Path(json_path), s)


FIGURE_SUFFIXES = (".png", ".pdf")
DESKTOP_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # a file browser's, left in any folder it showed


def figures_dir(html_path: str | Path) -> Path:
    """Where a report's PNG and PDF figures go: ``figures/`` beside ``report.html`` (a run
    directory's layout), ``NAME-figures/`` beside any other ``NAME.html``, so that two reports in
    one directory never share, or mix, their figures."""
    html = Path(html_path)
    return html.parent / ("figures" if html.stem == "report" else f"{html.stem}-figures")


def check_figures_dir(figs: Path, zoo_path: str | Path, json_path: str | Path | None = None) -> None:
    """Refuse (one line) a figures directory a report may not replace: inside the zoo, holding the
    ``--json`` output, or holding anything but PNG and PDF files (not a report's figures: a
    directory of the user's own)."""
    check_output(figs, {"zoo": zoo_path}, option=f"{figs.name}/ (beside -o)", others={"--json": json_path})
    if figs.is_symlink() or figs.exists() and not figs.is_dir():
        raise UserError(f"refusing to replace '{figs}', where the report's figures go: it is "
                        f"{'a symbolic link' if figs.is_symlink() else 'a file'}; move it or write the report (-o) elsewhere")
    stray = next((p.name for p in sorted(figs.iterdir()) if not p.is_file() or p.suffix not in FIGURE_SUFFIXES
                  and p.name not in DESKTOP_FILES), None) if figs.is_dir() else None
    if stray is not None:
        raise UserError(f"refusing to replace '{figs}', where the report's figures go: it holds '{stray}', which is not a "
                        "report's figure (PNG or PDF); move it or write the report (-o) elsewhere")


def publish_figures(figs: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (``{name: bytes}``) as the directory ``figs``: built in a temporary sibling,
    then swapped for the old one, which is removed, so that the directory holds exactly this
    report's figures (none of an earlier report's left among them) and is never half-written. The
    temporaries are named after their writer, so that the next report removes those of a killed one."""
    tmp = staging_dir(figs)  # also removes what killed writers left for ``figs``
    old, moved = None, False
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            publish_mode(tmp / name)
        publish_mode(tmp)
        if figs.exists():
            old = staging_dir(figs)
            os.replace(figs, old / figs.name)
            moved = True
        os.replace(tmp, figs)
        moved = False
    finally:
        if moved:  # the new directory could not take its place: the old one goes back
            os.replace(old / figs.name, figs)
        if tmp.exists():
            shutil.rmtree(tmp)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- one call each, for a notebook ----------------------------------------------------------------
def cluster(values: Any, **params: Any) -> BasinClusterer:
    """Cluster one fingerprint ``[n_models, d]`` (or distances ``[n, n]``): a fitted
    :class:`~analysis.clustering.BasinClusterer` (``labels_``, ``n_clusters_``, ``coordinates_``)."""
    from analysis.clustering import BasinClusterer  # deferred for start-up time

    with analysis_errors():
        return BasinClusterer(**params).fit(np.asarray(values))


def scorecard(zoo: Zoo, fingerprints: list[str] | None = None, progress: Progress = SILENT, **options: Any) -> AnalysisResult:
    """Cluster and score a zoo's fingerprints (the named ones, computed if not cached; default every
    cached one) with the zoo's ``[analysis]`` settings and ``options`` (``AnalysisOptions`` fields:
    ``label=``, ``lineage=``, ``k=``, ...). Stored in the zoo like ``fingerprint cluster``."""
    opts = options_for(zoo, **options)
    inputs = inputs_for(zoo, fingerprints, opts.label, progress)
    return analyze(zoo, inputs, opts, progress)


def report(zoo: Zoo, out: str | Path = "report.html", json_out: str | Path | None = None,
           fingerprints: list[str] | None = None, progress: Progress = SILENT, **options: Any) -> Path:
    """``fingerprint report`` in one call: the stored analysis when current (else a new one), written
    to ``out`` (and ``summary.json`` to ``json_out``). Returns the HTML's path."""
    opts = options_for(zoo, **options)
    inputs = inputs_for(zoo, fingerprints, opts.label, progress)
    with report_analysis(zoo, inputs, opts, progress) as (result, drawn):
        write_report(zoo, result, inputs, out, json_out, drawn=drawn)
    return Path(out)


# -- the whole run ---------------------------------------------------------------------------------
def _prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready (checked by :func:`check_output` first): kept to resume, emptied to overwrite."""
    zoo_dir = out / "zoo"
    if resume and not out.exists():
        raise UserError(f"cannot --resume '{out}': it does not exist")
    is_run_dir = (zoo_dir / MANIFEST).exists() or (zoo_dir / "shards").exists()
    if resume and any(out.iterdir()) and not is_run_dir:
        raise UserError(f"cannot --resume '{out}': it is not a `fingerprint run` directory (no zoo/)")
    if out.exists() and any(out.iterdir()):
        if overwrite:  # check_output made sure it is a run directory
            shutil.rmtree(out)
        elif not resume:
            raise UserError(f"output '{out}' already exists; pass --resume to finish it or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)


def run(config: RunConfig | str | Path, out: str | Path, resume: bool = False, overwrite: bool = False, device: str = "cpu",
        executor: str = "local", models_per_batch: int | None = None, address: str | None = None,
        max_gb: float | None = None, progress: Progress = SILENT) -> dict:
    """Sweep -> fingerprints -> basins and scorecard [-> forecast and selection, the config's
    ``[forecast]``] -> report into ``out`` (``zoo/``, ``report.html``, ``summary.json``, ``figures/``
    and the selected seeds' zoo ``selected/``); returns the analysis (``results/basins.json``).

    ``resume`` finishes an interrupted run (trained shards, cached fingerprints and a current analysis
    are kept); ``overwrite`` deletes an earlier run directory first (never anything else).
    """
    t0 = time.time()
    ref = config if not isinstance(config, RunConfig) else None
    cfg = config if isinstance(config, RunConfig) else RunConfig.load(config)
    out = Path(out)
    zoo_dir = out / "zoo"
    inputs = {"config file": cfg.source} if cfg.source is not None else {}
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    check_output(out, inputs, kind="run", overwrite=overwrite)
    validate(cfg.sweep, models_per_batch, max_gb)  # tasks, families and the planned size: before anything is deleted
    _prepare_run_dir(out, resume, overwrite)
    n_stages = 4 if cfg.forecast.enabled else 3
    progress.stage(1, n_stages, "sweep", cfg.sweep.name)
    runner = get_runner("ray", address) if executor == "ray" else None
    sweep(cfg, zoo_dir, executor, address, models_per_batch, device, resume and (zoo_dir / MANIFEST).exists(), False,
          inputs, max_gb, progress)
    zoo = Zoo.open(zoo_dir)
    options_for(zoo)  # the [analysis] columns (strata, covariates) against the trained table, before any extraction
    fps = cfg.fingerprints
    progress.stage(2, n_stages, "fingerprints")
    skipped = skipped_defaults(zoo) if fps.names is None else {}  # read once: said, then left out
    if skipped:
        progress.note(skipped_text(skipped))
    found = fingerprints(zoo, fps.specs(zoo, skipped), fps.checkpoint, cfg.analysis.label, fps.chunk_size, runner, device, progress)
    progress.stage(3, n_stages, "basins and scorecard")
    result = (stored_analysis(zoo, found, cfg.analysis) if resume else None) or analyze(zoo, found, cfg.analysis, progress)
    if cfg.forecast.enabled:
        progress.stage(4, n_stages, "forecast and selection", "seeds continued into selected/" if cfg.forecast.basin else "")
        procedure(zoo, cfg.forecast, out / "selected", cfg.analysis.label, resume)
    write_report(zoo, result, found, out / "report.html", out / "summary.json",
                 {"run_config": str(ref if ref is not None else cfg.source or cfg.sweep.name),
                  "run_seconds": round(time.time() - t0, 1)})
    return result

