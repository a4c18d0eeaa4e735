"""The deep-vs-noise scorecard: cluster each fingerprint, score it, and give a verdict.

:func:`analyze` takes fingerprints (arrays with their model ids and metadata) and the population's
per-model table (columns as arrays), and returns one JSON-ready dict: per fingerprint the basins,
bootstrap stability, 2-D map, scores and verdict, plus the ``scorecard`` list. Formulas, thresholds
and verdict rules are in ``docs/scorecard.md``; :class:`AnalysisOptions` mirrors the ``[analysis]``
config section.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis import clustering as cl
from analysis import labelfree as lf
from analysis import metrics as mt
from analysis.errors import AnalysisError, choices
from analysis.verdicts import LABELLED, Verdict

RESULT_VERSION = 1
VERDICTS = tuple(v.value for v in LABELLED)
NO_TRUTH = Verdict.NO_TRUTH.value
FAILED = Verdict.FAILED.value


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
    deep_threshold: float = 0.3  # AMI(clusters, label) at or above this: deep signal
    noise_threshold: float = 0.3  # within-basin AMI(clusters, lineage) at or above this: noise signal
    auroc_threshold: float = 0.85  # binary labels: cross-validated probe AUROC at or above this: deep signal
    alpha: float = 0.05  # significance after Benjamini-Hochberg across the report's fingerprints
    n_perm: int = 199  # family-level permutations per p-value, and null replicates of the label-free tests
    n_family_boot: int = 200  # family bootstrap samples per 95% interval
    calibrate: bool = True  # false: no intervals, p-values or label-free tests (verdicts on thresholds alone)

    def validate(self, where: str = "analysis") -> None:
        cl.check_method(self.method)
        if self.embedding not in cl.EMBEDDINGS:
            raise AnalysisError(f"config key '{where}.embedding' must be one of {choices(cl.EMBEDDINGS)}, got {self.embedding!r}")
        for key, lo in (("k_max", 2), ("n_boot", 0), ("n_components", 1), ("k", 0), ("n_perm", 19), ("n_family_boot", 20)):
            if getattr(self, key) < lo:
                raise AnalysisError(f"config key '{where}.{key}' must be >= {lo}, got {getattr(self, key)}")
        top = 2**32 - 1 - self.n_boot  # scikit-learn's random_state is 32-bit; replicate b uses seed + b + 1
        if not 0 <= self.seed <= top:
            raise AnalysisError(f"config key '{where}.seed' (--seed) must be in [0, {top}], got {self.seed}")
        for key in ("deep_threshold", "noise_threshold", "auroc_threshold", "alpha"):
            if not 0 <= getattr(self, key) <= 1:
                raise AnalysisError(f"config key '{where}.{key}' must be in [0, 1], got {getattr(self, key)}")
        for i, group in enumerate(self.combine):
            if not isinstance(group, list) or len(group) < 2 or not all(isinstance(g, str) for g in group):
                raise AnalysisError(f"config key '{where}.combine[{i}]' must be a list of two or more fingerprint names")

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


def verdict(deep_ami: float | None, noise_ami: float | None, probe_auroc: float | None, binary: bool,
            opts: AnalysisOptions, has_label: bool, deep_q: float | None = None, noise_q: float | None = None,
            probe_ci: tuple[float, float] | None = None) -> tuple[str, str]:
    """The verdict and the reason for it (the rules of ``docs/scorecard.md``). A score counts only
    when it is significant: deep and noise AMI need their Benjamini-Hochberg-adjusted family
    permutation p-values ``deep_q`` / ``noise_q`` at or below ``opts.alpha`` (``None``: untested),
    the probe AUROC a family-bootstrap interval ``probe_ci`` above 0.5."""
    if not has_label:
        return NO_TRUTH, "no ground-truth label to score against"
    deep_parts, weak = [], []
    if deep_ami is not None and deep_ami >= opts.deep_threshold:
        if deep_q is None or deep_q <= opts.alpha:
            deep_parts.append(f"deep AMI {deep_ami:.2f} >= {opts.deep_threshold:g}" + ("" if deep_q is None else f" (q {deep_q:.3g})"))
        else:
            weak.append(f"deep AMI {deep_ami:.2f} not significant (q {deep_q:.3g} > {opts.alpha:g})")
    if binary and probe_auroc is not None and probe_auroc >= opts.auroc_threshold:
        if probe_ci is None or probe_ci[0] > 0.5:
            deep_parts.append(f"probe AUROC {probe_auroc:.2f} >= {opts.auroc_threshold:g}")
        else:
            weak.append(f"probe AUROC {probe_auroc:.2f} whose interval reaches 0.5")
    noise = noise_ami is not None and noise_ami >= opts.noise_threshold and (noise_q is None or noise_q <= opts.alpha)
    if noise_ami is not None and noise_ami >= opts.noise_threshold and not noise:
        weak.append(f"noise AMI {noise_ami:.2f} not significant (q {noise_q:.3g})")
    noise_txt = f"noise AMI {noise_ami:.2f} {'>=' if noise_ami >= opts.noise_threshold else '<'} {opts.noise_threshold:g}" \
        if noise_ami is not None else "noise AMI n/a"
    d = f"deep AMI {deep_ami:.2f} {'>=' if deep_ami >= opts.deep_threshold else '<'} {opts.deep_threshold:g}" \
        if deep_ami is not None else "deep AMI n/a"
    if deep_parts and noise:
        return "tracks both", f"{' and '.join(deep_parts)}; {noise_txt}"
    if deep_parts:
        return "tracks deep differences", f"{' and '.join(deep_parts)}; {noise_txt}"
    if noise:
        return "tracks initialization noise", "; ".join([d, noise_txt, *weak])
    return "uninformative", "; ".join([d, noise_txt, *weak])


def _fmt(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def analyze_one(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions,
                index: dict[str, int]) -> dict[str, Any]:
    """Cluster one fingerprint and score it against ``table`` (columns aligned with ``index``)."""
    meta = {k: v for k, v in fp.meta.items() if k not in ("extra",)}
    out: dict[str, Any] = {"fingerprint": fp.name, "key": meta.get("key"), "extractor": meta.get("extractor", fp.name),
                           "kind": meta.get("kind"), "output": meta.get("output"), "step": meta.get("step"),
                           "supervised": bool(meta.get("supervised", False)), "meta": meta, "error": fp.error}
    if fp.error or fp.values is None:
        out.update(error=fp.error or "no values", verdict=FAILED, reason=fp.error or "no values")
        return out
    t0 = time.time()
    try:
        out.update(_analyze_values(fp, table, opts, index))
    except AnalysisError:
        raise
    except Exception as e:  # noqa: BLE001 - one broken fingerprint must not hide the others; shown as failed
        out.update(error=f"analysis failed: {type(e).__name__}: {e}", verdict=FAILED,
                   reason=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=4))
    out["seconds"] = round(time.time() - t0, 3)
    return out


def _analyze_values(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions,
                    index: dict[str, int]) -> dict[str, Any]:
    values = cl.as_floats(fp.values)  # a float32 fingerprint of 10^5 models stays float32 (half the memory)
    ids = list(fp.model_ids)
    if len(values) != len(ids):
        raise ValueError(f"{len(values)} rows but {len(ids)} model ids")
    if not np.isfinite(values).all():
        raise ValueError("fingerprint has NaN or infinite values")
    dist = cl.as_distance(values, fp.distances)
    if dist:
        values = np.asarray(values, dtype=np.float64)
    # leave out models the table does not know and diverged ones
    rows = [index.get(m) for m in ids]
    div = np.asarray(table["diverged"], bool) if "diverged" in table else np.zeros(len(table["model_id"]), bool)
    keep = np.asarray([r is not None and not div[r] for r in rows], bool)
    excluded = [m for m, k in zip(ids, keep) if not k]
    if not keep.all():
        values = values[np.ix_(keep, keep)] if dist else values[keep]
        ids = [m for m, k in zip(ids, keep) if k]
    rows_arr = np.asarray([index[m] for m in ids], int)
    n = len(ids)
    col = lambda c: np.asarray(table[c], dtype=object)[rows_arr]  # noqa: E731
    label = col(opts.label) if opts.label and opts.label in table else None
    lineage = col(opts.lineage) if opts.lineage and opts.lineage in table else None
    parents = None
    if "parent_id" in table:
        p = col("parent_id")
        if any(str(x) for x in p):
            parents = mt.root_family(ids, p)

    k_fixed = opts.k or None
    std = bool(fp.meta.get("standardize", True))  # combined fingerprints are block-scaled already
    est = cl.BasinClusterer(opts.method, k_fixed, opts.k_max, opts.n_components, dist, std, opts.seed).fit(values)
    c = est.clustering_
    boot = cl.bootstrap(values, opts.method, opts.n_boot, opts.k_max, opts.seed, opts.n_components, dist, k_fixed, std) \
        if opts.n_boot > 0 else {"consensus_k": None, "k_counts": {}, "stability": None, "n_boot": 0}
    xy, emb = cl.embed_2d(values, opts.embedding, opts.seed, dist, std)
    # the PCA the models were clustered in, reduced once (distances: their MDS coordinates)
    coords = est.coordinates_ if not dist and est.coordinates_ is not None else \
        cl.coordinates(values, dist, opts.n_components, opts.seed, std)
    # 1-NN: the distance matrix, or Euclidean in a 50-dim PCA searched in blocks (nothing n x n)
    nn_dist, nn_coords = (values, None) if dist else (None, cl.reduce_features(values, max(opts.n_components, 50), opts.seed, std))
    ex = cl.exemplars(values, c.labels, dist, opts.n_components, opts.seed, std, coords=None if dist else coords)
    clusters = c.labels

    scores: dict[str, Any] = {}
    has_label = label is not None and len({str(v) for v in label}) >= 2
    binary = has_label and len({str(v) for v in label}) == 2
    # the sampling unit: init families (lineage), or each model alone when the zoo names none
    family = lineage if lineage is not None else np.asarray(ids, dtype=object)
    n_families = len({str(f) for f in family})
    calib: dict[str, Any] = {"n_families": n_families}
    oof = None
    if has_label:
        scores["deep_ami"] = mt.ami(clusters, label)
        oof = mt.probe_auroc(coords, label, random_state=opts.seed, groups=family, return_oof=True)
        scores["probe_auroc"] = None if oof is None else oof[0]
    else:
        scores["deep_ami"] = None
        scores["probe_auroc"] = None
    basins = label if has_label else None
    if lineage is not None:
        scores["noise_ami"], scores["noise_ami_per_basin"] = mt.within_basin_ami(clusters, lineage, basins)
        scores["lineage_nn"], scores["lineage_nn_chance"] = mt.lineage_nn(nn_dist, lineage, basins, nn_coords,
                                                                          random_state=opts.seed)
    if parents is not None:
        scores["parent_noise_ami"], scores["parent_noise_ami_per_basin"] = mt.within_basin_ami(clusters, parents, basins)
        scores["parent_nn"], scores["parent_nn_chance"] = mt.lineage_nn(nn_dist, parents, basins, nn_coords,
                                                                        random_state=opts.seed)
    noise_vals = [v for v in (scores.get("noise_ami"), scores.get("parent_noise_ami")) if v is not None]
    noise = max(noise_vals) if noise_vals else None
    if opts.calibrate:
        calib.update(_calibrate(clusters, label if has_label else None, lineage, family, oof, scores, opts))
    label_free = lf.label_free(coords, family, opts.n_perm, opts.seed, opts.k_max) \
        if lineage is not None and opts.calibrate else None

    # what the clusters line up with, over the whole population (no ground truth needed)
    alignment = {}
    for name in _lineage_columns(table, opts):
        a = mt.ami(clusters, col(name))
        if a is not None:
            alignment[name] = a
    if parents is not None:
        a = mt.ami(clusters, parents)
        if a is not None:
            alignment["parent family"] = a
    aligns_with = max(alignment, key=alignment.get) if alignment and max(alignment.values()) > 0.05 else None

    basin_rows = []
    for lab in sorted(set(clusters.tolist())):
        m = clusters == lab
        row = {"cluster": int(lab), "size": int(m.sum()), "exemplar": ids[ex[int(lab)]]}
        if label is not None:
            u, cnt = np.unique(np.asarray([str(x) for x in label[m]]), return_counts=True)
            row["labels"] = {str(a): int(b) for a, b in zip(u, cnt)}
        if lineage is not None:
            row["n_families"] = int(len({str(x) for x in lineage[m]}))
        basin_rows.append(row)
    return {
        "n_models": n, "excluded": excluded, "approximations": approximations(
            n, c.method, boot, emb, basin_rows, lineage is not None or parents is not None, opts.calibrate),
        "method": c.method, "k": int(c.k), "k_scores": {str(a): _fmt(b) for a, b in c.scores.items()},
        # the chosen k is the largest one tried while more were possible: a larger k_max may score better
        "k_at_cap": bool(k_fixed is None and c.k == opts.k_max and opts.k_max < n - 1),
        "bootstrap": boot, "embedding_method": emb, "distances": bool(dist),
        "model_ids": ids, "clusters": clusters.tolist(), "embedding": np.round(xy, 5).tolist(),
        "label_values": None if label is None else [str(x) for x in label],
        "lineage_values": None if lineage is None else [str(x) for x in lineage],
        "scores": {k: (_fmt(v) if not isinstance(v, dict) else {a: _fmt(b) for a, b in v.items()}) for k, v in scores.items()},
        "noise_score": _fmt(noise), "binary_label": binary, "calibration": calib, "has_label": has_label,
        "_label_free": label_free,  # decided across fingerprints in analyze(), then replaced by its JSON form
        "alignment": alignment, "aligns_with": aligns_with, "basins": basin_rows,
        "confusion": mt.confusion(clusters, label) if label is not None else None,
    }


def _calibrate(clusters: np.ndarray, label: np.ndarray | None, lineage: np.ndarray | None, family: np.ndarray,
               oof: tuple | None, scores: dict[str, Any], opts: AnalysisOptions) -> dict[str, Any]:
    """95% intervals from a bootstrap over init families and one-sided p-values from permutations
    at the family level (docs/scorecard.md, "Uncertainty"): deep AMI (labels move between families
    as whole blocks), noise AMI (members move across families inside each true basin: the null that
    the family does not matter), the probe AUROC (its out-of-fold probabilities, folds grouped by
    family, resampled by family)."""
    out: dict[str, Any] = {}
    seed, nb, npm = opts.seed, opts.n_family_boot, opts.n_perm
    rows = lf.family_sample(family, lf.MAX_MODELS, seed)
    if rows is not None:  # a large population: on a random sample of whole families (docs/scorecard.md)
        clusters, family = clusters[rows], family[rows]
        label = None if label is None else label[rows]
        lineage = None if lineage is None else lineage[rows]
        oof = None if oof is None else (oof[0], oof[1][rows], oof[2][rows])
        out["sampled"] = len(rows)
    if label is not None and scores.get("deep_ami") is not None:
        out["deep_ami_ci"] = lf.family_bootstrap(lambda r, _d: mt.ami(clusters[r], label[r]), family, nb, seed)
        out["deep_ami_p"] = lf.family_permutation_p(lambda lab: mt.ami(clusters, lab), label, family, npm, seed)
    if oof is not None:
        _, y, prob = oof
        out["probe_auroc_ci"] = lf.family_bootstrap(lambda r, _d: mt.auroc_of(y[r], prob[r]), family, nb, seed)
    if lineage is not None and scores.get("noise_ami") is not None:
        basins = label
        out["noise_ami_ci"] = lf.family_bootstrap(
            lambda r, d: mt.within_basin_ami(clusters[r], d, None if basins is None else basins[r])[0], family, nb, seed)
        out["noise_ami_p"] = lf.member_permutation_p(lambda f: mt.within_basin_ami(clusters, f, basins)[0], lineage,
                                                     basins, npm, seed)
    return out


def _decide(results: list[dict[str, Any]], opts: AnalysisOptions) -> None:
    """Verdicts for all fingerprints at once: the labelled ones need their p-values significant after
    a Benjamini-Hochberg correction across the report's fingerprints (deep and noise AMIs together);
    the label-free ones come from :func:`analysis.labelfree.decide` over the same fingerprints."""
    from scipy.stats import false_discovery_control

    ok = [r for r in results if r.get("verdict") != FAILED and "calibration" in r]
    tests = [(r, k) for r in ok for k in ("deep_ami_p", "noise_ami_p") if r["calibration"].get(k) is not None]
    if tests:
        qs = false_discovery_control([r["calibration"][k] for r, k in tests], method="bh")
        for (r, k), q in zip(tests, qs):
            r["calibration"][k.replace("_p", "_q")] = float(q)
    free = [r for r in ok if r.get("_label_free") is not None]
    for r, d in zip(free, lf.decide([r["_label_free"] for r in free], opts.alpha)):
        r["_label_free"] = d
    for r in ok:
        c, s = r["calibration"], r["scores"]
        few = c["n_families"] < lf.MIN_FAMILIES
        if few and r["has_label"]:
            r["verdict"], r["reason"] = f"insufficient: {c['n_families']} families", \
                f"at least {lf.MIN_FAMILIES} independent init families are needed to decide"
        else:
            noise = r.get("noise_score")
            r["verdict"], r["reason"] = verdict(s.get("deep_ami"), noise, s.get("probe_auroc"), r["binary_label"], opts,
                                                r["has_label"], c.get("deep_ami_q"), c.get("noise_ami_q"), c.get("probe_auroc_ci"))
        deep_ok = c.get("deep_ami_q") is not None and c["deep_ami_q"] <= opts.alpha
        noise_ok = c.get("noise_ami_q") is not None and c["noise_ami_q"] <= opts.alpha
        free_r = r.pop("_label_free")
        r["label_free"] = _label_free_json(free_r, r["model_ids"], "" if opts.calibrate else "not computed (calibrate = false)")
        if r["has_label"]:
            r["significant"] = {"tracks deep differences": deep_ok or r["verdict"] == "tracks deep differences" and c.get("deep_ami_q") is None,
                                "tracks initialization noise": noise_ok, "tracks both": deep_ok and noise_ok}.get(r["verdict"], False)
            r["label_free"]["agrees"] = _agree(r["verdict"], r["label_free"]["verdict"])
        else:
            r["significant"] = free_r is not None and free_r.significant
    for r in results:
        r.pop("_label_free", None)


def _label_free_json(res: lf.LabelFreeResult | None, ids: list[str], why: str = "") -> dict[str, Any]:
    if res is None:
        return {"verdict": "insufficient", "candidate_basins": {},
                "sentence": why or "insufficient: the zoo names no lineage column to group models by"}
    basins = res.candidate_basins
    return {"verdict": res.verdict, "sentence": res.sentence or lf.SENTENCES[res.verdict],
            "q": _fmt(res.q), "p_lineage": res.p_lineage, "p_groups": res.p_groups, "p_split": res.p_split,
            "n_families": res.n_families, "split_rate": res.split_rate, "cluster_index_groups": res.ci_groups,
            "cluster_index_split": res.ci_split, "pseudo_f": _fmt(res.pseudo_f), "family_groups": res.family_groups,
            "candidate_basins": {} if basins is None else {m: int(b) for m, b in zip(ids, basins)}}


def _agree(labelled: str, free: str) -> bool | None:
    """Do the labelled and the label-free verdict say the same thing (deep, noise, or nothing)?"""
    kind = {"tracks deep differences": "deep", "tracks both": "deep", "tracks initialization noise": "noise",
            "uninformative": "none", "crosses lineage": "deep", "groups lineages": "deep", "lineage only": "noise",
            "no structure": "none"}
    a, b = kind.get(labelled), kind.get(free)
    return None if a is None or b is None else a == b


def approximations(n: int, method: str, boot: dict, embedding: str, basins: list[dict], nn: bool = True,
                   calibrated: bool = False) -> list[str]:
    """What a large population's analysis computed on samples instead of every model (empty when exact).

    The thresholds are those of ``analysis/clustering.py`` and ``analysis/metrics.py``;
    ``docs/scorecard.md`` ("Large populations") explains each one.
    """
    out = []
    if n > cl.SILHOUETTE_SAMPLE and method in ("kmeans", "agglomerative", "agglomerative-complete"):
        out.append(f"silhouette of each k on a fixed random sample of {cl.SILHOUETTE_SAMPLE} models")
    if boot.get("max_models"):
        out.append(f"bootstrap replicates keep a random {boot['max_models']} of their distinct models")
    if any(b["size"] > cl.MEDOID_SAMPLE for b in basins):
        out.append(f"exemplar of a basin larger than {cl.MEDOID_SAMPLE}: medoid of a random sample of {cl.MEDOID_SAMPLE} members")
    if nn and n > mt.NN_QUERIES:
        out.append(f"lineage 1-NN rates averaged over at most {mt.NN_QUERIES} random models (exact neighbours)")
    if calibrated and n > lf.MAX_MODELS:
        out.append(f"intervals, p-values and label-free tests on a random sample of whole families (at most "
                   f"{lf.MAX_MODELS} models); the other models join the nearest candidate basin")
    if embedding == "umap-sample":
        out.append(f"map: UMAP fitted on a random {cl.EMBED_FIT_MAX} models, the others placed by UMAP's transform")
    return out


def _lineage_columns(table: dict[str, np.ndarray], opts: AnalysisOptions) -> list[str]:
    cands = [opts.lineage, "init_seed", "data_seed", "kind", "group", "variant"]
    out = []
    for c in cands:
        if c and c in table and c not in out and c != opts.label:
            out.append(c)
    return out


def analyze(fingerprints: list[FingerprintInput], table: dict[str, np.ndarray], opts: AnalysisOptions | None = None
            ) -> dict[str, Any]:
    """Analyse every fingerprint (plus the combined ones of ``opts.combine``) against ``table``.

    ``table`` maps column name -> per-model array; it must have ``model_id``. Returns the JSON-ready
    result with ``settings``, ``fingerprints`` (full detail) and ``scorecard`` (one row each).
    """
    opts = opts or AnalysisOptions()
    if "model_id" not in table:
        raise AnalysisError("the model table needs a 'model_id' column")
    for what, c in (("--label", opts.label), ("--lineage", opts.lineage)):
        if c and c not in table and not (what == "--label" and c == "deep_label"):
            raise AnalysisError(f"unknown model column '{c}' for {what} (valid: {choices(table)})")
    index = {str(m): i for i, m in enumerate(table["model_id"])}
    fps = list(fingerprints)
    by_name = {f.name: f for f in fps}
    for group in opts.combine:
        fps.append(combined_input(group, by_name, opts))
    results = [analyze_one(f, table, opts, index) for f in fps]
    _decide(results, opts)
    return {
        "version": RESULT_VERSION,
        "created": time.time(),
        "settings": {**opts.to_dict(), "label": opts.label if opts.label in table else None,
                     "thresholds": {"deep_ami": opts.deep_threshold, "noise_ami": opts.noise_threshold,
                                    "probe_auroc": opts.auroc_threshold}},
        "n_models": len(table["model_id"]),
        "fingerprints": results,
        "scorecard": [scorecard_row(r) for r in results],
    }


def combined_input(group: list[str], by_name: dict[str, FingerprintInput], opts: AnalysisOptions) -> FingerprintInput:
    """Concatenate several fingerprints (per-block scaling) on the models they all cover."""
    name = "+".join(group)
    missing = [g for g in group if g not in by_name]
    if missing:
        return FingerprintInput(name, None, [], {"extractor": "combined", "output": "features"},
                                error=f"cannot combine: no fingerprint '{missing[0]}' (have: {choices(by_name)})")
    parts = [by_name[g] for g in group]
    bad = [p.name for p in parts if p.values is None]
    if bad:
        return FingerprintInput(name, None, [], {"extractor": "combined", "output": "features"},
                                error=f"cannot combine: fingerprint '{bad[0]}' failed")
    others = [set(p.model_ids) for p in parts[1:]]
    shared = [m for m in parts[0].model_ids if all(m in o for o in others)]
    blocks = []
    for p in parts:
        pos = {m: i for i, m in enumerate(p.model_ids)}
        idx = np.asarray([pos[m] for m in shared], int)
        v = np.asarray(p.values)
        d = cl.as_distance(v, p.distances)
        blocks.append((v[np.ix_(idx, idx)] if d else v[idx], d))
    values = cl.combine([b for b, _ in blocks], [d for _, d in blocks], opts.n_components, opts.seed)
    kinds = {p.meta.get("kind") for p in parts}
    meta = {"extractor": "combined", "output": "features", "kind": kinds.pop() if len(kinds) == 1 else "mixed",
            "parts": [p.meta.get("key") for p in parts], "supervised": any(p.meta.get("supervised") for p in parts),
            "step": parts[0].meta.get("step"), "standardize": False}
    return FingerprintInput(name, values, shared, meta)


def scorecard_row(r: dict[str, Any]) -> dict[str, Any]:
    s = r.get("scores") or {}
    boot = r.get("bootstrap") or {}
    return {
        "fingerprint": r["fingerprint"], "extractor": r.get("extractor"), "kind": r.get("kind"),
        "output": r.get("output"), "supervised": r.get("supervised", False), "n_models": r.get("n_models"),
        "n_clusters": r.get("k"), "k_at_cap": bool(r.get("k_at_cap")), "consensus_k": boot.get("consensus_k"),
        "stability": boot.get("stability"),
        "deep_ami": s.get("deep_ami"), "probe_auroc": s.get("probe_auroc"), "noise_ami": s.get("noise_ami"),
        "parent_noise_ami": s.get("parent_noise_ami"), "lineage_nn": s.get("lineage_nn"),
        "lineage_nn_chance": s.get("lineage_nn_chance"), "parent_nn": s.get("parent_nn"),
        "parent_nn_chance": s.get("parent_nn_chance"), "aligns_with": r.get("aligns_with"),
        "verdict": r.get("verdict"), "reason": r.get("reason"), "error": r.get("error"),
        "significant": bool(r.get("significant", False)),
        "label_free_verdict": (r.get("label_free") or {}).get("verdict", "insufficient"),
        "label_free_sentence": (r.get("label_free") or {}).get("sentence"),
        "candidate_basins": (r.get("label_free") or {}).get("candidate_basins", {}),
        "n_families": (r.get("calibration") or {}).get("n_families"),
        **{k: _ci((r.get("calibration") or {}).get(k)) for k in ("deep_ami_ci", "noise_ami_ci", "probe_auroc_ci")},
        **{k: (r.get("calibration") or {}).get(k) for k in ("deep_ami_p", "noise_ami_p", "deep_ami_q", "noise_ami_q")},
    }


def _ci(v: Any) -> list[float] | None:
    return None if v is None else [float(v[0]), float(v[1])]


def summary(result: dict[str, Any], provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.json``: the numbers of the report without the per-model maps."""
    fps = []
    for r in result["fingerprints"]:
        d = {k: v for k, v in r.items() if k not in ("embedding", "label_values", "lineage_values", "clusters", "model_ids", "traceback")}
        if r.get("model_ids") is not None and r.get("clusters") is not None:
            d["assignments"] = dict(zip(r["model_ids"], r["clusters"]))
        fps.append(d)
    ok = [r for r in result["scorecard"] if r.get("deep_ami") is not None and not r.get("error")]
    best = max(ok, key=lambda r: r["deep_ami"]) if ok else None
    return {"version": result.get("version"), "settings": result.get("settings"), "n_models": result.get("n_models"),
            "scorecard": result["scorecard"], "best_deep": None if best is None else {"fingerprint": best["fingerprint"], "deep_ami": best["deep_ami"]},
            "n_failed": sum(1 for r in result["scorecard"] if r.get("error")),
            "fingerprints": fps, "provenance": provenance or {}}
