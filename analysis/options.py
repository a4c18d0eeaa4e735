"""What the analysis is asked to do: :class:`AnalysisOptions` (the ``[analysis]`` config section,
validated once) and :class:`FingerprintInput` (one fingerprint's values with its model ids)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.errors import AnalysisError, choices
from analysis.sortkeys import natural_key

# the valid values of ``method`` and ``embedding`` (here, not in analysis.clustering / analysis.reduce,
# which import scikit-learn: a command that only checks options, `fingerprint sweep` or `list`, starts
# ~1 s sooner without it)
METHODS = ("auto", "gmm", "kmeans", "hdbscan", "agglomerative", "agglomerative-complete")
EMBEDDINGS = ("umap", "pca")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise AnalysisError(f"unknown clustering method '{method}' (valid: {choices(METHODS)})")


STRATA = ("data_seed", "kind")  # design columns crossed with the families (label-free within-family test;
# with parent links, the generation from parent_id goes beside them: label_free(generation=...), metrics.generation)
COVARIATE_FORMS = ("levels", "trend")  # --covariate COLUMN:levels / COLUMN:trend: how a column is taken out, forced


def covariate_spec(spec: str) -> tuple[str, str | None]:
    """``(column, form)`` of one ``--covariate`` entry: ``"lr:levels"`` -> ``("lr", "levels")``; a name
    without a known form after its last colon is all column (``"opt"`` -> ``("opt", None)``: the column's
    values decide, :func:`analysis.covariates.terms`)."""
    name, sep, form = spec.rpartition(":")
    return (name, form) if sep and name and form in COVARIATE_FORMS else (spec, None)


NO_STRATA = "none"  # --strata none: no design column taken out of the label-free tests, not even data_seed and kind
GENERATION = "(generation)"  # strata_follow's entry for the generation in a parent chain (parent_id): not a column


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of the clustering and the verdict (the ``[analysis]`` config section)."""

    method: str = "auto"
    k_max: int = 8
    k: int = 0  # 0 = choose k (BIC / silhouette); > 0 = fixed number of basins
    n_boot: int = 20
    n_components: int = 10
    embedding: str = "umap"  # umap | pca
    seed: int = 0
    label: str = "deep_label"  # ground-truth column ("" = none)
    lineage: str = "init_seed"  # lineage column: models sharing a value are one family
    combine: list = field(default_factory=list)  # lists of fingerprint names to concatenate
    strata: list = field(default_factory=list)  # design columns shared across families (a data order), besides data_seed, kind; ["none"]: none
    covariates: list = field(default_factory=list)  # recorded settings taken out of every fingerprint first (analysis.covariates)
    exclude: list = field(default_factory=list)  # model ids left out of the analysis (--exclude)
    deep_threshold: float = 0.3  # AMI(clusters, label) at or above this: deep signal
    noise_threshold: float = 0.3  # within-basin AMI(clusters, lineage) at or above this: noise signal
    auroc_threshold: float = 0.85  # cross-validated probe AUROC (binary, or macro one-vs-rest) at or above this: deep signal
    lineage_threshold: float = 0.9  # within-basin lineage identification AUC at or above this (significant): noise signal
    alpha: float = 0.05  # significance after Benjamini-Hochberg across the report's fingerprints
    n_perm: int = 199  # family-level permutations per p-value, and null replicates of the label-free tests
    n_family_boot: int = 200  # family bootstrap samples per 95% interval
    calibrate: bool = True  # false: no intervals, p-values or label-free tests (verdicts on thresholds alone)

    def validate(self, where: str = "analysis") -> None:
        check_method(self.method)
        if self.embedding not in EMBEDDINGS:
            raise AnalysisError(f"config key '{where}.embedding' must be one of {choices(EMBEDDINGS)}, got {self.embedding!r}")
        flag = {"k_max": " (--k-max)", "n_boot": " (--n-boot)", "k": " (--k)", "n_perm": " (--n-perm)", "alpha": " (--alpha)"}
        for key, lo in (("k_max", 2), ("n_boot", 0), ("n_components", 1), ("k", 0), ("n_perm", 19), ("n_family_boot", 20)):
            if getattr(self, key) < lo:
                raise AnalysisError(f"config key '{where}.{key}'{flag.get(key, '')} must be >= {lo}, got {getattr(self, key)}")
        top = 2**32 - 1 - self.n_boot  # scikit-learn's random_state is 32-bit; replicate b uses seed + b + 1
        if not 0 <= self.seed <= top:
            raise AnalysisError(f"config key '{where}.seed' (--seed) must be in [0, {top}], got {self.seed}")
        for key in ("deep_threshold", "noise_threshold", "auroc_threshold", "lineage_threshold", "alpha"):
            if not 0 <= getattr(self, key) <= 1:
                raise AnalysisError(f"config key '{where}.{key}'{flag.get(key, '')} must be in [0, 1], got {getattr(self, key)}")
        if not isinstance(self.strata, list) or not all(isinstance(c, str) and c for c in self.strata):
            raise AnalysisError(f"config key '{where}.strata' (--strata) must be a list of model column names, got {self.strata!r}")
        if NO_STRATA in self.strata and len(self.strata) > 1:
            raise AnalysisError(f"config key '{where}.strata' (--strata): 'none' takes out no design column, not even "
                                f"data_seed and kind; it cannot go with column names, got {self.strata!r}")
        if not isinstance(self.covariates, list) or not all(isinstance(c, str) and c for c in self.covariates):
            raise AnalysisError(f"config key '{where}.covariates' (--covariate) must be a list of model column names, "
                                f"got {self.covariates!r}")
        names = [covariate_spec(c)[0] for c in self.covariates]
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise AnalysisError(f"config key '{where}.covariates' (--covariate) names column '{twice[0]}' twice "
                                f"(got {self.covariates!r}); give each column once, with :levels or :trend if forced")
        if not isinstance(self.exclude, list) or not all(isinstance(m, str) and m for m in self.exclude):
            raise AnalysisError(f"config key '{where}.exclude' (--exclude) must be a list of model ids, got {self.exclude!r}")
        for i, group in enumerate(self.combine):
            if not isinstance(group, list) or len(group) < 2 or not all(isinstance(g, str) for g in group):
                raise AnalysisError(f"config key '{where}.combine[{i}]' must be a list of two or more fingerprint names")

    def covariates_in(self, table: dict) -> dict[str, str | None]:
        """``{column: form}`` of ``covariates`` against the model ``table`` (:func:`covariate_spec`; form ``None``:
        the values decide): an entry that is itself a column's name is that column, whatever follows its last
        colon (a column called ``opt:levels``: review 95)."""
        return dict((c, None) if c in table else covariate_spec(c) for c in self.covariates)

    def replace(self, **kw) -> "AnalysisOptions":
        kw = {k: v for k, v in kw.items() if v is not None}
        new = dataclasses.replace(self, **kw)
        new.validate()
        return new

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FingerprintInput:
    """One fingerprint to analyse: ``values`` ``[n, d]`` or ``[n, n]`` with rows in ``model_ids`` order."""

    name: str
    values: np.ndarray | None
    model_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def distances(self) -> bool | None:
        out = self.meta.get("output")
        return None if out is None else out == "distances"

    def without(self, ids: set[str]) -> "FingerprintInput":
        """This fingerprint on its models not in ``ids``: the rows of ``values`` (and the columns of a distance
        matrix ``[n, n]``) and the metadata's per-model figures (:data:`PER_MODEL_META`) of the others."""
        keep = np.asarray([m not in ids for m in self.model_ids], dtype=bool)
        if keep.all():
            return self
        values = self.values
        if values is not None:
            values = np.asarray(values)[keep]
            if self.distances and values.ndim == 2 and values.shape[1] == len(keep):
                values = values[:, keep]
        n = len(self.model_ids)
        meta = {k: ([x for x, k_ in zip(v, keep) if k_] if k in PER_MODEL_META and v is not None and len(v) == n else v)
                for k, v in self.meta.items()}
        return dataclasses.replace(self, values=values, model_ids=[m for m, k in zip(self.model_ids, keep) if k], meta=meta)


MIN_REST = 8  # models below which the others than those left out are not analysed (--exclude; the models that did not learn)
# metadata an extractor records per model, in its models' order (the disagreement extractor's, read by analysis.unlearned)
PER_MODEL_META = ("modal_share", "concentration", "spread")


def without(table: dict[str, np.ndarray], inputs: list[FingerprintInput], ids: list[str], least: int
            ) -> tuple[dict[str, np.ndarray], list[FingerprintInput]]:
    """The model ``table`` (column -> ``[n]``) and fingerprint ``inputs`` without the models ``ids`` (``--exclude``);
    an id the table does not hold, or fewer than ``least`` models left, is an :class:`AnalysisError` naming it."""
    known = [str(m) for m in table["model_id"]]
    held = set(known)
    unknown = [m for m in dict.fromkeys(ids) if m not in held]
    if unknown:
        some = sorted(known, key=natural_key)
        named = ", ".join(some[:5]) + (f", ... ({len(some)} models; fingerprint inspect lists them)" if len(some) > 5 else "")
        raise AnalysisError(f"unknown model id '{unknown[0]}' for --exclude (valid: {named})")
    gone = set(ids)
    keep = np.asarray([m not in gone for m in known], dtype=bool)
    if keep.sum() < least:
        raise AnalysisError(f"--exclude leaves {int(keep.sum())} of {len(known)} models; the analysis needs at least {least}")
    return {c: np.asarray(v)[keep] for c, v in table.items()}, [f.without(gone) for f in inputs]


def strata_in(table: dict, opts: AnalysisOptions) -> list[str]:
    """The design columns of ``table`` (:data:`STRATA` and ``--strata``) the label-free tests take out."""
    return [] if NO_STRATA in opts.strata else [c for c in dict.fromkeys([*STRATA, *opts.strata])
                                                if c in table and c not in (opts.lineage, opts.label)]
