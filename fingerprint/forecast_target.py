"""What ``fingerprint forecast`` forecasts, and which models it keeps together.

**The target.** A ground-truth column (``--label``, or the task's ``deep_label``) when there is one.
Without it, the fingerprint's own label-free verdict at the final step decides: a candidate deep
difference (``crosses lineage`` / ``groups lineages``) is forecast as its candidate basins, the
report's; anything else leaves only the fingerprint's clusters, which may be initialization noise, so
the forecast says that it forecasts clusters and not a basin to select (an outside audit: on nine
null populations, "90% accuracy from 0.0-0.75 of training" of noise clusters, while the report said
"no candidate deep difference").

**Whose verdict.** The report's, when ``fingerprint report`` has stored an analysis of this fingerprint (the
same extractor, version and parameters, ``METHODS_VERSION``) that holds every forecast model at its final step: its verdict was
corrected with the report's other fingerprints (Benjamini-Hochberg over them), and the forecast should
forecast what the report claims. Without one, the fingerprint is analysed alone, which corrects over its own
tests only; the forecast says so (``from``: ``report`` / ``alone``), since a verdict from one fingerprint can
be deep where the report's, corrected over ten, is not.

**The families.** The column ``--lineage`` names; else ``init_seed`` when it records families; else,
as ``report`` does (:func:`fingerprint.tables.unrecorded_lineage`), models whose first stored
checkpoints are bit-identical (a shared initialisation seen directly: an import's ``step_0.pt``),
else the families ``fingerprint lineage`` recovered, else the ``parent_id`` trees; else none, which
the forecast warns about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.errors import AnalysisError
from analysis.labelfree_sentences import DEEP_VERDICTS
from analysis.options import AnalysisOptions, FingerprintInput
from analysis.results import AnalysisResult, FingerprintResult
from fingerprint.extraction import body_group, extract, family_groups
from fingerprint.tables import (
    FIRST_CHECKPOINT,
    model_table,
    says_something,
    unrecorded_lineage,
)
from training.core.errors import UserError
from training.core.store import Zoo
from training.core.validate import from_mapping


@dataclass(frozen=True)
class Families:
    """Each seed's init family ``[n]`` (folds and intervals keep one together), where they came from, and
    whether they say anything (``False``: every model its own family, said in a warning)."""

    groups: np.ndarray
    column: str
    known: bool
    table: dict[str, np.ndarray]  # the model columns (:func:`fingerprint.tables.model_table`)
    alone: int = 0  # by first checkpoints: the models linked to no other (their relatives, if any, unknown)


@dataclass(frozen=True)
class Target:
    """The final basin of each seed ``[n]`` (``""``: none, left out), what it is, and, without a label,
    the fingerprint's label-free verdict (``deep``: its candidate basins are the target)."""

    basins: np.ndarray
    name: str
    verdict: str | None = None
    deep: bool | None = None
    source: str | None = None  # whose verdict: "report" (its stored analysis) or "alone" (this fingerprint's own)

    def info(self) -> dict[str, Any] | None:
        """The verdict, whether it is deep and whose it is (not its sentence: its effect size is the report's to
        give, from the report's own analysis of every fingerprint; an outside audit saw the two differ)."""
        if self.verdict is None:
            return None
        return {"verdict": self.verdict, "deep": self.deep, "left_out": int(np.sum(self.basins == "")), "from": self.source}


def forecast_families(zoo: Zoo, ids: Sequence[str], table: dict[str, np.ndarray], lineage: str | None) -> Families:
    """The families of ``ids`` (module docstring): named, recorded, seen in the first checkpoints,
    recovered, the ``parent_id`` trees, or none; ``alone`` counts the models the first checkpoints
    link to no other."""
    if lineage is not None and lineage not in table:
        raise UserError(f"unknown model column '{lineage}' for --lineage (valid: {', '.join(sorted(table))})")
    column = lineage or ("init_seed" if "init_seed" in table and says_something(table["init_seed"]) else
                         unrecorded_lineage(table) or "init_seed")
    groups = family_groups(zoo, ids, column, table)
    sizes = Counter(groups.tolist())
    # known: a column that records families, or groups of relatives (parent trees; first checkpoints)
    known = (column in table and says_something(table[column])) or max(sizes.values()) > 1
    alone = sum(1 for g in groups.tolist() if sizes[g] == 1) if column == FIRST_CHECKPOINT else 0
    return Families(groups, column, known, table, alone)


def forecast_target(zoo: Zoo, ids: Sequence[str], label: str | None, fp: str, families: Families | None = None) -> Target:
    """The final basin of each of ``ids``: ``label`` (default ``deep_label``), else ``fp``'s candidate
    basins when its label-free verdict at the final step is deep, else its clusters (module docstring)."""
    label = label or ("deep_label" if "deep_label" in zoo.models else None)
    if label is not None:
        if label not in zoo.models:
            raise UserError(f"unknown model column '{label}' (valid: {', '.join(zoo.models.names())})")
        return Target(np.asarray(zoo.models[label])[zoo.index(ids)].astype(str), label)
    (res,) = extract(zoo, [fp], model_ids=ids)
    if res.error:
        raise UserError(res.error)
    r, source = reported(zoo, dict(res.meta), ids), "report"
    if r is None:
        r, source = _alone(zoo, ids, fp, res, families), "alone"
    free = r.label_free or {}
    verdict = str(free.get("verdict") or r.verdict)
    basins = free.get("candidate_basins") or {}
    pos = {m: i for i, m in enumerate(r.model_ids)}
    # the report's basins beyond a setting it took out (--covariate): said with the target (review 92)
    taken = ((zoo.load_result("basins") or {}).get("settings") or {}).get("covariate_terms") if source == "report" else None
    beyond = f" (beyond {', '.join(repr(c) for c in taken)}, which the report took out: --covariate)" if taken else ""
    if verdict in DEEP_VERDICTS and basins:
        y = [f"basin {basins[m]}" if basins.get(m, -1) >= 0 else "" for m in ids]
        return Target(np.asarray(y), f"candidate basins of {fp}{beyond}", verdict, True, source)
    y = [f"cluster {r.clusters[pos[m]]}" if m in pos and r.clusters and r.clusters[pos[m]] >= 0 else "" for m in ids]
    return Target(np.asarray(y), f"final clusters of {fp}{beyond}", verdict, False, source)


def reported(zoo: Zoo, meta: dict[str, Any], ids: Sequence[str]) -> FingerprintResult | None:
    """The stored report's analysis of the fingerprint whose cache entry is ``meta`` (module docstring; the
    forecast's seed grid, a subset of the models, has an entry of its own: :func:`same_fingerprint`), when it
    was made by code whose statistics are these (``METHODS_VERSION``) and analysed every one of ``ids``; else
    ``None``. Its verdict is the report's, with the report's families."""
    from analysis.scorecard import METHODS_VERSION  # deferred for start-up time

    stored = zoo.load_result("basins")
    if not stored or stored.get("methods") != METHODS_VERSION:
        return None
    finals = {int(s) for s in np.asarray(zoo.models["final_step"])[zoo.index(ids)]}

    def fits(r: FingerprintResult) -> bool:  # the report's "final": each model's last checkpoint, the grid's step if shared
        step = r.meta.get("step")
        return (not r.error and bool(r.meta) and not r.meta.get("subset") and same_fingerprint(r.meta, meta)
                and (step == meta.get("step") or (step == "final" and finals == {meta.get("step")}))
                and set(ids) <= set(map(str, r.model_ids)))

    return next((r for r in AnalysisResult.from_dict(stored).fingerprints if fits(r)), None)


def same_fingerprint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether cache entries ``a`` and ``b`` are one fingerprint, whichever models and step each covers:
    extractor, version, parameters (as the cache key sees them) and a plugin's body (``code``). A subset's
    entry (forecast, select) and the population's have different keys."""
    return body_group(a)[:3] == body_group(b)[:3] and a.get("code") == b.get("code")  # (its step and model set aside)


def _alone(zoo: Zoo, ids: Sequence[str], fp: str, res: Any, families: Families | None) -> FingerprintResult:
    """``fp``'s own label-free analysis at the final step (no stored report holds it)."""
    from analysis.scorecard import analyze  # deferred for start-up time

    fam = families or forecast_families(zoo, ids, model_table(zoo), None)
    section = zoo.config.get("analysis") if isinstance(zoo.config, dict) else None
    try:
        # (a PCA map: no one sees this analysis's map, and UMAP's cost a process, 30 s of compiling in a new environment)
        opts = from_mapping(AnalysisOptions, dict(section or {}), "analysis").replace(label="", lineage=fam.column, combine=[],
                                                                                     embedding="pca")
        (r,) = analyze([FingerprintInput(fp, res.values, res.model_ids, dict(res.meta))], fam.table, opts).fingerprints
    except AnalysisError as e:
        raise UserError(str(e)) from e
    if r.error:
        raise UserError(f"fingerprint '{fp}' at the final step could not be analysed: {r.error}")
    return r
