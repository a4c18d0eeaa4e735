"""Typed results of the analysis: one :class:`FingerprintResult` per fingerprint, one
:class:`ScorecardRow` per scorecard line, and the :class:`AnalysisResult` holding them.

These are what :func:`analysis.scorecard.analyze` returns and what the report, the CLI tables and the
pipeline read (attributes, scikit-learn's way, instead of string keys). ``to_dict`` gives the JSON
form stored as ``results/basins.json`` (key order fixed: it is a file format) and ``from_dict``
reads one back, including results stored by earlier versions. The top two levels are typed; the
nested payloads (``scores``, ``calibration``, ``bootstrap``, ``basins``, ``label_free``, ...) stay
JSON dicts whose keys are documented on each field. :func:`summary` is ``summary.json``.
Longer than ~400 lines because the readings of a whole result that ``summary.json``, the report's
verdict box and the terminal share (outliers, small-basin leads, candidate basins apart from the
clusters) live beside the types they read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis import unlearned as ul
from analysis.answer import AGREE, label_free_answer, unlearned_models
from analysis.labelfree_sentences import (
    DEEP_VERDICTS,
    closest_splits_disagree,
    closest_splits_sentence,
)
from analysis.options import GENERATION
from analysis.rare import models_named, tail_leads
from analysis.values import missing


def jsonable(v: Any) -> Any:
    """A numpy scalar as a plain number (non-finite floats as ``None``); anything else unchanged."""
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


# the per-fingerprint fields that only an analysed (not failed-before-clustering) fingerprint has, in file order
ANALYSED_FIELDS = ("n_models", "excluded", "approximations", "method", "k", "k_scores", "k_at_cap", "bootstrap",
                   "embedding_method", "distances", "model_ids", "clusters", "embedding", "label_values",
                   "lineage_values", "scores", "noise_score", "binary_label", "calibration", "has_label", "alignment",
                   "aligns_with", "basins", "confusion")
BASE_FIELDS = ("fingerprint", "key", "extractor", "kind", "output", "step", "supervised", "meta", "error")


@dataclass
class FingerprintResult:
    """One fingerprint's analysis. A fingerprint that failed before clustering has only the
    identification fields, ``error``, ``verdict`` and ``reason`` (``n_models is None``)."""

    fingerprint: str
    key: str | None = None
    extractor: str | None = None
    kind: str | None = None
    output: str | None = None
    step: int | None = None
    supervised: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # the fingerprint's cache metadata (extractor params, ...)
    error: str | None = None
    # -- analysed fingerprints -------------------------------------------------------------------
    n_models: int | None = None  # models analysed (diverged / unknown ones left out: ``excluded``)
    excluded: list[str] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)  # sampled steps of a large population
    method: str | None = None  # clustering method used
    k: int | None = None  # number of basins
    k_scores: dict[str, float | None] = field(default_factory=dict)  # str(k) -> BIC / silhouette
    k_at_cap: bool = False  # the chosen k is k_max while more were possible
    bootstrap: dict[str, Any] = field(default_factory=dict)  # consensus_k, k_counts, stability, n_boot[, max_models]
    embedding_method: str | None = None
    distances: bool = False  # the fingerprint is an [n, n] distance matrix
    model_ids: list[str] = field(default_factory=list)  # analysed models, the row order of the lists below
    clusters: list[int] = field(default_factory=list)
    embedding: list[list[float]] = field(default_factory=list)  # [n, 2] map
    label_values: list[str] | None = None
    lineage_values: list[str] | None = None
    scores: dict[str, Any] = field(default_factory=dict)  # deep_ami, probe_auroc, noise_ami(_per_basin), lineage_nn(_chance), parent_*
    noise_score: float | None = None  # max(noise AMI, parent-family noise AMI)
    binary_label: bool = False
    calibration: dict[str, Any] = field(default_factory=dict)  # n_families[, sampled], *_ci, *_p, *_q
    has_label: bool = False
    alignment: dict[str, float] = field(default_factory=dict)  # lineage column -> AMI with the clusters
    aligns_with: str | None = None
    basins: list[dict[str, Any]] = field(default_factory=list)  # cluster, size, exemplar[, labels, n_families]
    confusion: dict[str, Any] | None = None  # clusters, labels, counts
    # -- outcome ---------------------------------------------------------------------------------
    seconds: float | None = None
    verdict: str | None = None
    reason: str | None = None
    traceback: str | None = None  # an unexpected failure's last frames
    label_free: dict[str, Any] | None = None  # verdict, sentence, q, p_*, candidate_basins, tree[, agrees]
    significant: bool | None = None
    # candidate basins against the model table's other columns (analysis.metadata): column, statistic, value, ci, match
    metadata_match: list[dict[str, Any]] | None = None
    # numeric model columns against the fingerprint within the init families (analysis.metadata.gradients)
    metadata_gradient: list[dict[str, Any]] | None = None
    # the clusters against each design column the label-free tests took out (analysis.metadata.strata_follow)
    strata_follow: list[dict[str, Any]] | None = None
    # columns the fingerprint's own clusters follow inside its candidate camps (analysis.metadata.finer)
    metadata_finer: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a stored result this version does not know

    @property
    def analysed(self) -> bool:
        return self.n_models is not None

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def to_dict(self) -> dict[str, Any]:
        """The ``results/basins.json`` form (today's key order)."""
        d = {k: getattr(self, k) for k in BASE_FIELDS}
        if self.analysed:
            d.update((k, getattr(self, k)) for k in ANALYSED_FIELDS)
            tail = ("seconds", "verdict", "reason", "traceback", "label_free", "significant", "metadata_match",
                    "metadata_gradient", "strata_follow", "metadata_finer")
        else:
            tail = ("verdict", "reason", "traceback", "seconds", "label_free", "significant")
        always = ("verdict", "reason", "metadata_match")  # metadata_match: null without candidate basins
        d.update((k, getattr(self, k)) for k in tail if getattr(self, k) is not None or k in always)
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FingerprintResult":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        if known.get("meta") is None:
            known.pop("meta", None)
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


@dataclass
class ScorecardRow:
    """One line of the scorecard: a fingerprint's headline numbers (``summary.json``'s ``scorecard``)."""

    fingerprint: str
    extractor: str | None = None
    kind: str | None = None
    output: str | None = None
    supervised: bool = False
    n_models: int | None = None
    n_clusters: int | None = None
    k_at_cap: bool = False
    consensus_k: int | None = None
    stability: float | None = None
    deep_ami: float | None = None
    probe_auroc: float | None = None
    noise_ami: float | None = None
    parent_noise_ami: float | None = None
    lineage_nn: float | None = None
    lineage_nn_chance: float | None = None
    parent_nn: float | None = None
    parent_nn_chance: float | None = None
    aligns_with: str | None = None
    verdict: str | None = None
    reason: str | None = None
    error: str | None = None
    significant: bool = False
    label_free_verdict: str = "insufficient"
    label_free_sentence: str | None = None
    candidate_basins: dict[str, int] = field(default_factory=dict)  # model id -> candidate basin
    n_families: int | None = None
    deep_ami_ci: list[float] | None = None  # 95% family-bootstrap interval
    noise_ami_ci: list[float] | None = None
    probe_auroc_ci: list[float] | None = None
    deep_ami_p: float | None = None  # family permutation p-value
    noise_ami_p: float | None = None
    deep_ami_q: float | None = None  # Benjamini-Hochberg adjusted across the report's fingerprints
    noise_ami_q: float | None = None
    lineage_nn_ci: list[float] | None = None  # 95% family-bootstrap intervals (issue 20, after the keys above)
    stability_ci: list[float] | None = None  # the replicates' clusterings fixed, compared on resampled families
    privileged: bool = False  # computed on a probe set built from the ground truth: not label-free evidence (issue 21)
    lineage_auc: float | None = None  # identifies lineage: P(relatives closer than unrelated models), 0.5 chance (issue 22)
    lineage_auc_p: float | None = None  # its permutation p-value (members moved across families inside basins)
    lineage_auc_q: float | None = None  # Benjamini-Hochberg adjusted with the deep and noise p-values
    label_free_q: float | None = None  # the label-free verdict's adjusted p-value (its raw p's: FingerprintResult.label_free)
    probe_auroc_p: float | None = None  # family permutation of the label, a least-squares probe refitted on each
    probe_auroc_q: float | None = None  # Benjamini-Hochberg adjusted with the others
    probe_only: bool = False  # a deep verdict the probe alone made: the basins do not follow the label significantly

    @classmethod
    def of(cls, r: FingerprintResult) -> "ScorecardRow":
        s, boot, cal, free = r.scores or {}, r.bootstrap or {}, r.calibration or {}, r.label_free or {}
        return cls(
            fingerprint=r.fingerprint, extractor=r.extractor, kind=r.kind, output=r.output, supervised=r.supervised,
            n_models=r.n_models, n_clusters=r.k, k_at_cap=bool(r.k_at_cap), consensus_k=boot.get("consensus_k"),
            stability=boot.get("stability"), deep_ami=s.get("deep_ami"), probe_auroc=s.get("probe_auroc"),
            noise_ami=s.get("noise_ami"), parent_noise_ami=s.get("parent_noise_ami"), lineage_nn=s.get("lineage_nn"),
            lineage_nn_chance=s.get("lineage_nn_chance"), parent_nn=s.get("parent_nn"),
            parent_nn_chance=s.get("parent_nn_chance"), aligns_with=r.aligns_with, verdict=r.verdict, reason=r.reason,
            error=r.error, significant=bool(r.significant), label_free_verdict=free.get("verdict", "insufficient"),
            label_free_sentence=free.get("sentence"), candidate_basins=free.get("candidate_basins", {}),
            n_families=cal.get("n_families"),
            **{k: _ci(cal.get(k)) for k in ("deep_ami_ci", "noise_ami_ci", "probe_auroc_ci", "lineage_nn_ci",
                                              "stability_ci")},
            **{k: cal.get(k) for k in ("deep_ami_p", "noise_ami_p", "deep_ami_q", "noise_ami_q", "probe_auroc_p",
                                        "probe_auroc_q")},
            privileged=bool((r.meta or {}).get("privileged")), lineage_auc=s.get("lineage_auc"),
            lineage_auc_p=cal.get("lineage_auc_p"), lineage_auc_q=cal.get("lineage_auc_q"), label_free_q=free.get("q"),
            probe_only=bool(cal.get("probe_only")))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScorecardRow":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _ci(v: Any) -> list[float] | None:
    return None if v is None else [float(v[0]), float(v[1])]


@dataclass
class AnalysisResult:
    """The analysis of a population's fingerprints (what ``results/basins.json`` stores).

    ``settings`` is :class:`~analysis.options.AnalysisOptions` as a dict, with ``label`` ``None``
    when the table has no such column and a ``thresholds`` dict. ``keys`` and ``options`` are set by
    the pipeline (the cached fingerprints and options the result was made from).
    """

    version: int
    created: float
    settings: dict[str, Any]
    n_models: int
    fingerprints: list[FingerprintResult]
    scorecard: list[ScorecardRow]
    keys: list[str] | None = None
    options: dict[str, Any] | None = None
    methods: int | None = None  # analysis.scorecard.METHODS_VERSION of the code that made it
    # the models that did not learn left out and the others analysed alone: {"excluded": [ids], "result":
    # AnalysisResult or None (too few)} (analysis.scorecard.analyze)
    rest: dict[str, Any] | None = None

    @property
    def label(self) -> str | None:
        return self.settings.get("label")

    @property
    def lineage(self) -> str | None:
        return self.settings.get("lineage")

    def fingerprint(self, name: str) -> FingerprintResult:
        """The result of the fingerprint called ``name`` (``KeyError`` if none)."""
        for r in self.fingerprints:
            if r.fingerprint == name:
                return r
        raise KeyError(name)

    def _repr_html_(self) -> str:
        """The scorecard as a table in Jupyter (user strings escaped)."""
        from markupsafe import escape

        cols = ("fingerprint", "n_clusters", "stability", "deep_ami", "probe_auroc", "noise_ami", "verdict",
                "label_free_verdict")
        cell = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else escape(str(v)))  # noqa: E731
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{cell(getattr(r, c))}</td>" for c in cols) + "</tr>" for r in self.scorecard)
        return (f"<div><b>{self.n_models} models</b>, ground truth <code>{escape(str(self.label or '–'))}</code>, lineage "
                f"<code>{escape(str(self.lineage))}</code><table><tr>{head}</tr>{body}</table></div>")

    def to_dict(self) -> dict[str, Any]:
        """The ``results/basins.json`` dict, keys in the order of earlier versions."""
        d = {"version": self.version, "created": self.created, "settings": self.settings, "n_models": self.n_models,
             "fingerprints": [r.to_dict() for r in self.fingerprints],
             "scorecard": [r.to_dict() for r in self.scorecard]}
        if self.keys is not None:
            d["keys"] = self.keys
        if self.options is not None:
            d["options"] = self.options
        if self.methods is not None:
            d["methods"] = self.methods
        if self.rest is not None:
            d["rest"] = {"excluded": list(self.rest["excluded"]),
                         "result": None if self.rest["result"] is None else self.rest["result"].to_dict()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnalysisResult":
        """Read a stored ``results/basins.json`` back."""
        fps = [FingerprintResult.from_dict(r) for r in d.get("fingerprints", [])]
        rows = d.get("scorecard")
        return cls(version=d.get("version"), created=d.get("created"), settings=d.get("settings") or {},
                   n_models=d.get("n_models"), fingerprints=fps,
                   scorecard=[ScorecardRow.of(r) for r in fps] if rows is None else [ScorecardRow.from_dict(r) for r in rows],
                   keys=d.get("keys"), options=d.get("options"), methods=d.get("methods"),
                   rest=None if not d.get("rest") else {"excluded": list(d["rest"]["excluded"]), "result": None
                                                        if d["rest"].get("result") is None else cls.from_dict(d["rest"]["result"])})


MAP_FIELDS = ("embedding", "label_values", "lineage_values", "clusters", "model_ids", "traceback")


TINY_BASIN = 0.02  # a basin of one model, or of fewer than this share of the models, is an outlier


def lone_models(r: FingerprintResult) -> list[str]:
    """The models of ``r``'s tiny basins (one model, or under :data:`TINY_BASIN` of the models) when
    every other model sits in one basin, i.e. the basins are "the rest and a few outliers" (a
    diverged run among healthy ones: k = 2 = {m2_3} vs 19); else ``[]``. Several real basins with
    a small one besides are left alone: a one-model basin is common there (118 of 829 analyses of
    the outside audits' zoos), "one basin and outliers" rare (16, of which 3 the diverged run)."""
    if not r.analysed or not r.clusters:
        return []
    sizes: dict[int, int] = {}
    for c in r.clusters:
        sizes[c] = sizes.get(c, 0) + 1
    n = len(r.clusters)
    tiny = {c for c, k in sizes.items() if k == 1 or k < TINY_BASIN * n}
    if not tiny or len(sizes) - len(tiny) != 1:
        return []
    return [m for m, c in zip(r.model_ids, r.clusters) if c in tiny]


def lone_models_text(names: Sequence[str], ids: Sequence[str], n: int) -> str:
    """The one sentence for fingerprints (``names``) whose basins are the rest and the outliers ``ids``."""
    who = f"1 model ({ids[0]})" if len(ids) == 1 else f"{len(ids)} models ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''})"
    return (f"{', '.join(names)}: the basins are {n - len(ids)} models and {who} alone: an outlier, not a basin? A model "
            "far from all the others decides k and can swamp the label-free tests. Check it: a diverged or lagging run "
            "shows in its metrics, and then report without it; a healthy one is this fingerprint's extreme, or a model "
            "unlike the others (a backdoor or a rule only a few models hold is set apart so), a lead to look at, not to drop")


def lone_sentences(result: AnalysisResult, answer: Any = None) -> list[str]:
    """One sentence per set of outlier models (:func:`lone_models`) that :data:`MIN_LEAD_FINGERPRINTS` or more
    fingerprints set alone, naming the fingerprints where they are the only basin besides the rest; for the report's
    headline and the terminal. Not for models
    that are the smaller camp of one of ``answer``'s candidates (an outside audit of the eighteenth session:
    4 memorizers among 24, the candidate's smaller side, were also called "an outlier, not a basin? ...
    report without it")."""
    camps = []
    for c in getattr(answer, "candidates", None) or []:
        sides: dict[int, set[str]] = {}
        for m, v in (c.basins or {}).items():
            if v >= 0:
                sides.setdefault(v, set()).add(str(m))
        if len(sides) == 2:
            camps.append(min(sides.values(), key=len))
    by: dict[tuple[str, ...], list[str]] = {}
    sizes: dict[tuple[str, ...], int] = {}
    for r in result.fingerprints:
        ids = tuple(lone_models(r))
        if ids and not any(set(ids) <= camp for camp in camps):
            by.setdefault(ids, []).append(str(r.fingerprint))
            sizes[ids] = len(r.clusters)
    # two fingerprints or more (outside audit 116: one fingerprint's extreme healthy model, on the predicted-class
    # distances mostly, in 21 of 220 analyses of nulls; a diverged run stands alone on several)
    return [lone_models_text(names, list(ids), sizes[ids]) for ids, names in by.items() if len(names) >= MIN_LEAD_FINGERPRINTS]


SMALL_BASIN = 0.15  # a basin of two or more models, not outliers, but at most this share of the models: a lead
MIN_LEAD_FINGERPRINTS = 2  # fingerprints whose clusters agree on one small basin before it is named


def small_basin(r: FingerprintResult) -> tuple[str, ...]:
    """The models of ``r``'s smaller basin when its clusters are two basins, the smaller of two or
    more models (not :func:`lone_models`' outliers) and at most :data:`SMALL_BASIN` of the models,
    from two or more init families; else ``()``. A minority a few models strong: the label-free gap test cannot tell it from outliers
    (a camp of two models needs a gap hundreds of times its own spread), so it is only a lead."""
    if not r.analysed or not r.clusters or lone_models(r):
        return ()
    ks = [c for c in r.clusters if c >= 0]
    if len(set(ks)) != 2:
        return ()
    small = min(set(ks), key=ks.count)
    ids = tuple(m for m, c in zip(r.model_ids, r.clusters) if c == small)
    if not 2 <= len(ids) <= SMALL_BASIN * len(r.clusters):
        return ()
    values = r.lineage_values or []
    fams = {values[i] for i, c in enumerate(r.clusters) if c == small and i < len(values) and not missing(values[i])}
    return ids if len(fams) >= 2 else ()  # models without a lineage value tell no family


def small_basin_leads(result: AnalysisResult, answer: Any = None) -> list[dict[str, Any]]:
    """The small basins (:func:`small_basin`) that :data:`MIN_LEAD_FINGERPRINTS` or more fingerprints'
    clusters agree on and no candidate of the answer holds as a camp, each ``{fingerprints, models,
    n_larger, n_families, beside}`` (``n_larger``: the models of the larger basin; ``n_families``: the
    known init families of its models; ``beside``: each of them has a relative in the larger basin).
    The tenth outside audit: 2 of 24 models on another rule, each in its own family, clustered
    exactly by 6 fingerprints, confirmed by no label-free verdict, and nothing said so. ``answer``:
    ``result``'s :func:`~analysis.answer.label_free_answer` where the caller has it (else computed)."""
    by: dict[tuple[str, ...], list[FingerprintResult]] = {}
    for r in result.fingerprints:
        ids = small_basin(r)
        if ids:
            by.setdefault(tuple(sorted(ids)), []).append(r)
    # not the base models of a parent chain against their fine-tunes, which parent_id records (the generation:
    # outside audit 115's 8 parents beside their 48 fine-tunes; the cluster leads leave it out the same way)
    by = {ids: rs for ids, rs in by.items() if len(rs) >= MIN_LEAD_FINGERPRINTS
          and not all(_follows_generation(r) for r in rs)}
    ans = (answer or label_free_answer(result)) if by else None
    found = [{m for m, b in c.basins.items() if b == side} for c in ([*ans.candidates, *ans.few_family_leads, *ans.lone_leads] if ans else [])
             for side in set(c.basins.values())]
    out = []
    for ids, rs in by.items():
        if set(ids) in found:  # a candidate's (or a few-families lead's) camp already: the answer says it
            continue
        r = rs[0]
        where = {m: v for m, v in zip(r.model_ids, r.lineage_values or []) if not missing(v)}  # known families only
        larger = [m for m, c in zip(r.model_ids, r.clusters) if c >= 0 and m not in ids]  # density noise (-1) aside
        known = [m for m in ids if m in where]
        beside = bool(known) and all(any(where.get(x) == where[m] for x in larger) for m in known)
        out.append({"fingerprints": [str(x.fingerprint) for x in rs], "models": list(ids), "n_larger": len(larger),
                    "n_families": len({where[m] for m in known}), "beside": beside})
    return out


def failed_models(result: AnalysisResult, inputs: Sequence[Any]) -> list[str]:
    """The models that did not learn, which the others are analysed again without: those of the answer
    (:func:`analysis.answer.unlearned_models`), else those of a small-basin lead (:func:`small_basin_leads`) whose
    in-distribution outputs read as failed against the rest (flat, blown up, or agreeing with nothing of their own:
    :mod:`analysis.unlearned`), each confirmed by its own figures. Outside audit 116: 2 of 60 models trained at 300
    times the learning rate, their outputs constant, were a small-basin lead "(a few that learned something else ...)"
    and swamped 9 of 10 fingerprints' tests into "no structure"; the others alone read as its seed-only twin."""
    ans = label_free_answer(result)
    failed = unlearned_models(ans, inputs)
    if failed:
        return failed
    found = ul.predictions(inputs)
    if found is None:
        return []
    _, d, ids, per_model, values = found
    out: set[str] = set()
    for lead in small_basin_leads(result, ans):  # (the same answer, not computed again)
        stats = ul.camps(d, ids, {m: int(m in lead["models"]) for m in ids}, per_model, values)
        failing = {k for k in (ul.diverged(stats), ul.flat(stats), ul.agrees_with_nothing(stats)) if k is not None}
        if failing == {1}:  # the small basin's camp, and not the rest
            out |= ul.confirmed(set(lead["models"]), inputs) or set()
    return sorted(out, key=lambda m: ids.index(m))


def _follows_generation(r: FingerprintResult) -> bool:
    """Whether ``r``'s clusters are the generations of the parent chains, one to one (``strata_follow``'s entry for
    it, ``exact``: :func:`analysis.metadata.one_to_one`)."""
    return any(e["column"] == GENERATION and e.get("exact") for e in r.strata_follow or ())


def small_basin_sentences(result: AnalysisResult, answer: Any = None) -> list[str]:
    """One sentence per :func:`small_basin_leads` lead, for the report's verdict box and the terminal."""
    out = []
    failed = set((result.rest or {}).get("excluded") or ())  # (failed_models: a small basin's, audit 116)
    for lead in small_basin_leads(result, answer):
        ids = lead["models"]
        who = models_named(ids)
        head = (f"{', '.join(lead['fingerprints'])}: the basins are {lead['n_larger']} models and "
                f"{len(ids)} models ({who}) of {lead['n_families']} init families"
                + (", each beside relatives in the larger basin" if lead["beside"] else ""))
        if failed and set(ids) <= failed:
            out.append(head + ": models that did not learn what the others did (on the in-distribution probes their "
                       "outputs barely move, blow up, or agree with nothing of their own: check their accuracy), not a "
                       "basin; the others are analysed again without them (the label-free answer's last part)")
            continue
        out.append(head + ": a small basin that no label-free verdict confirms (too few models to tell a basin from "
                   "outliers), an exploratory lead: look at these models (a few that learned something else, or "
                   "that a training setting drawn per model set apart, such as the least label noise or the largest "
                   "learning rate?)")
    return out


MATCHES_CLUSTERS = AGREE  # AMI at or above which a deep verdict's candidate basins count as its clusters


def candidates_apart(r: FingerprintResult) -> str | None:
    """How a deep label-free verdict's candidate basins differ from the fingerprint's clusters
    (``"its clusters: 1 basin"`` or ``"AMI 0.01 with its clusters"``, on the models with a candidate basin), or ``None`` when
    they agree (AMI >= :data:`MATCHES_CLUSTERS`) or the verdict is not deep."""
    from analysis.metrics import ami  # deferred for start-up time (scikit-learn)

    free = r.label_free or {}
    if free.get("verdict") not in DEEP_VERDICTS or not r.clusters:
        return None
    basins = free.get("candidate_basins") or {}
    pairs = [(c, basins[m]) for m, c in zip(r.model_ids, r.clusters) if basins.get(m, -1) >= 0]
    if len({c for c, _ in pairs}) < 2:
        k = len({c for c in r.clusters if c >= 0})  # -1: a density clustering's noise, no basin
        return f"its clusters: {k} {'basin' if k == 1 else 'basins, one holding every candidate'}"
    a = ami([c for c, _ in pairs], [b for _, b in pairs])
    return None if a is None or a >= MATCHES_CLUSTERS else f"AMI {a:.2f} with its clusters"


def candidates_apart_sentence(result: AnalysisResult) -> str | None:
    """One sentence naming the fingerprints whose deep verdict's candidate basins are not their
    clusters (:func:`candidates_apart`): the basin table, the maps' colours, ``forecast`` and
    ``select`` use the clusters, the verdict is about the candidate basins."""
    apart = [(str(r.fingerprint), how) for r in result.fingerprints if (how := candidates_apart(r))]
    if not apart:
        return None
    return (f"the candidate basins of {', '.join(f'{n} ({how})' for n, how in apart)} are not the "
            "clusters of the basin table and the maps: the clusters are each fingerprint's strongest structure, the "
            "verdict is about the label-free split (its candidate basins: the report's label-free section, summary.json "
            "label_free.candidate_basins), which forecast and select forecast when there is no label")


def summary(result: AnalysisResult, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.json``: the numbers of the report without the per-model maps."""
    fps = []
    for r in result.fingerprints:
        d = {k: v for k, v in r.to_dict().items() if k not in MAP_FIELDS}
        if r.analysed:
            d["assignments"] = dict(zip(r.model_ids, r.clusters))
        fps.append(d)
    ok = [r for r in result.scorecard if r.deep_ami is not None and not r.error]
    best = max(ok, key=lambda r: r.deep_ami) if ok else None
    ans = label_free_answer(result)
    return {"version": result.version, "settings": result.settings, "n_models": result.n_models,
            "scorecard": [r.to_dict() for r in result.scorecard],
            "best_deep": None if best is None else {"fingerprint": best.fingerprint, "deep_ami": best.deep_ami},
            "n_failed": sum(1 for r in result.scorecard if r.error),
            "lone_models": {str(r.fingerprint): ids for r in result.fingerprints if (ids := lone_models(r))},
            "small_basins": small_basin_leads(result, ans),
            "far_tails": tail_leads(result, ans),
            "candidates_apart": {str(r.fingerprint): how for r in result.fingerprints if (how := candidates_apart(r))},
            "label_free_answer": None if ans is None else ans.to_dict(),
            # fingerprints whose closest splits of the families disagree, by partition, and the caution (audit 73)
            "closest_splits_disagree": closest_splits_disagree(closest := {str(r.fingerprint): r.label_free
                                                                           for r in result.fingerprints}),
            "closest_splits_note": closest_splits_sentence(closest),
            "fingerprints": fps, "provenance": provenance or {}}
