"""The deep-vs-noise scorecard: cluster each fingerprint, score it, and give a verdict.

:func:`analyze` takes fingerprints (arrays with their model ids and metadata) and the population's per-model table
(columns as arrays), and returns an :class:`~analysis.results.AnalysisResult`: per fingerprint
(:class:`~analysis.results.FingerprintResult`) the basins, bootstrap stability, 2-D map, scores and verdict, plus the
scorecard rows. Formulas, thresholds and verdict rules are in ``docs/scorecard.md``. The options live in
:mod:`analysis.options`, the intervals and verdicts in :mod:`analysis.calibration`, the result types in
:mod:`analysis.results`; their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np
import sklearn
from threadpoolctl import threadpool_limits

from analysis import clustering as cl
from analysis import covariates, effect, metadata, options, parallel, rare, unlearned
from analysis import identification as ident
from analysis import labelfree as lf
from analysis import metrics as mt
from analysis.calibration import (
    FAILED,
    NO_TRUTH,
    calibrate,
    decide,
    more_replicates,
    verdict,
)
from analysis.combine import combined_input
from analysis.errors import AnalysisError, choices
from analysis.options import (  # noqa: F401 (STRATA: scripts)
    MIN_REST,
    NO_STRATA,
    STRATA,
    AnalysisOptions,
    FingerprintInput,
    without,
)
from analysis.prepared import label_free_tests, prepare, redraw_label_free
from analysis.results import (
    AnalysisResult,
    FingerprintResult,
    ScorecardRow,
    failed_models,
    jsonable,
    summary,
)
from analysis.strata_sides import table_sides
from analysis.verdicts import LABELLED

__all__ = ["AnalysisOptions", "FingerprintInput", "AnalysisResult", "FingerprintResult", "ScorecardRow", "analyze",
           "analyze_one", "combined_input", "approximations", "verdict", "summary", "VERDICTS", "NO_TRUTH", "FAILED",
           "RESULT_VERSION", "METHODS_VERSION"]

RESULT_VERSION = 1
# Bumped whenever a statistic changes (the stored results/basins.json of another number is analysed again);
# what each number changed: docs/scorecard.md, "What each METHODS_VERSION changed".
METHODS_VERSION = 46
VERDICTS = tuple(v.value for v in LABELLED)


def analyze_one(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions,
                index: dict[str, int], n_null: int | None = None) -> tuple[FingerprintResult, lf.LabelFreeResult | None]:
    """Cluster one fingerprint and score it against ``table`` (columns aligned with ``index``).

    Returns the result (no verdict yet: :func:`analysis.calibration.decide` sets it across all
    fingerprints) and the raw label-free tests (``None`` without lineage or calibration), with
    ``n_null`` null replicates each (default ``opts.n_perm``)."""
    meta = {k: v for k, v in fp.meta.items() if k not in ("extra",)}
    out = FingerprintResult(fingerprint=fp.name, key=meta.get("key"), extractor=meta.get("extractor", fp.name),
                            kind=meta.get("kind"), output=meta.get("output"), step=meta.get("step"),
                            supervised=bool(meta.get("supervised", False)), meta=meta, error=fp.error)
    if fp.error or fp.values is None:
        out.error = out.reason = fp.error or "no values"
        out.verdict = FAILED
        return out, None
    t0, free = time.time(), None
    try:
        fields, free = _analyze_values(fp, table, opts, index, n_null or opts.n_perm)
        out = dataclasses.replace(out, **fields)
    except AnalysisError:
        raise
    except Exception as e:  # noqa: BLE001 - one broken fingerprint must not hide the others; shown as failed
        out.error, out.verdict = f"analysis failed: {type(e).__name__}: {e}", FAILED
        out.reason, out.traceback = f"{type(e).__name__}: {e}", traceback.format_exc(limit=4)
    out.seconds = round(time.time() - t0, 3)
    return out, free


def _analyze_values(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions,
                    index: dict[str, int], n_null: int) -> tuple[dict[str, Any], lf.LabelFreeResult | None]:
    """The :class:`~analysis.results.FingerprintResult` fields of an analysed fingerprint, and its
    raw label-free tests."""
    prep = prepare(fp, table, opts, index)
    values, dist, std, ids, rows_arr, n = prep.values, prep.dist, prep.std, prep.ids, prep.rows, prep.n
    label, lineage, lineage_values, parent_ids, parents = prep.label, prep.lineage, prep.lineage_values, prep.parent_ids, prep.parents
    share, col, k_fixed = prep.share, prep.col, opts.k or None
    est = cl.BasinClusterer(opts.method, k_fixed, opts.k_max, opts.n_components, dist, std, opts.seed).fit(values)
    c = est.clustering_
    boot, replicates = cl.bootstrap(values, opts.method, opts.n_boot, opts.k_max, opts.seed, opts.n_components, dist,
                                    k_fixed, std, return_replicates=True) \
        if opts.n_boot > 0 else ({"consensus_k": None, "k_counts": {}, "stability": None, "n_boot": 0}, None)
    xy, emb = cl.embed_2d(values, opts.embedding, opts.seed, dist, std)
    # the PCA the models were clustered in, reduced once (distances: their MDS coordinates); what cl.coordinates
    # gives, which analysis.prepared.redraw_label_free computes again (tests/analysis/test_analysis.py: the same)
    coords = est.coordinates_ if not dist and est.coordinates_ is not None else \
        cl.coordinates(values, dist, opts.n_components, opts.seed, std)
    # 1-NN: the distance matrix, or Euclidean in a 50-dim PCA searched in blocks (nothing n x n)
    nn_dist, nn_coords = (values, None) if dist else (None, cl.reduce_features(values, max(opts.n_components, 50), opts.seed, std))
    ex = cl.exemplars(values, c.labels, dist, opts.n_components, opts.seed, std, coords=None if dist else coords)
    clusters = c.labels

    scores: dict[str, Any] = {} if share is None else {  # what --covariate took out, and would by chance
        "covariate_share": share, "covariate_chance": prep.cov_fit.chance}
    if len(set(clusters.tolist()) - {-1}) == 2:  # two own clusters: a gap between them (what a cluster lead needs)
        scores["own_gap"] = own_gap(coords, clusters)
    if (tail := rare.far_tail(coords, opts.seed)) is not None:  # a few models far out along one direction (rare.py)
        scores["far_tail"] = {"models": [str(ids[i]) for i in tail["rows"]], "z": tail["z"], "kurtosis": tail["kurtosis"]}
    has_label = label is not None and len({str(v) for v in label}) >= 2
    binary = has_label and len({str(v) for v in label}) == 2
    # the sampling unit: init families (lineage), or each model alone when the zoo names none
    family = lineage if lineage is not None else np.asarray(ids, dtype=object)
    # the probe's folds: the lineage value of each model's root, so that a child (whose imported
    # lineage value may differ from its parent's) never sits across a fold from its parent
    folds = mt.lineage_groups(ids, lineage, parent_ids)
    n_families = len({str(f) for f in family})
    calib: dict[str, Any] = {"n_families": n_families}
    oof = None
    if has_label:
        scores["deep_ami"] = mt.ami(clusters, label)
        oof = mt.probe_auroc(coords, label, random_state=opts.seed, groups=folds, return_oof=True, scale="common")
        scores["probe_auroc"] = None if oof is None else oof[0]
        if oof is None:  # the verdict's reason says why the AUROC column reads "–"
            scores["probe_skipped"] = mt.probe_skipped(label, folds)
    else:
        scores["deep_ami"] = None
        scores["probe_auroc"] = None
    basins = label if has_label else None
    nn_hits = None
    if lineage is not None:
        scores["noise_ami"], scores["noise_ami_per_basin"] = mt.within_basin_ami(clusters, lineage, basins)
        scores["lineage_nn"], scores["lineage_nn_chance"], nn_hits = mt.lineage_nn(
            nn_dist, lineage, basins, nn_coords, random_state=opts.seed, return_hits=True)
        identified = ident.lineage_identification(lineage, basins, nn_coords, nn_dist,
                                                  opts.n_perm if opts.calibrate else 0, opts.seed)
        scores["lineage_auc"] = identified.auc
    if parents is not None:
        scores["parent_noise_ami"], scores["parent_noise_ami_per_basin"] = mt.within_basin_ami(clusters, parents, basins)
        scores["parent_nn"], scores["parent_nn_chance"] = mt.lineage_nn(nn_dist, parents, basins, nn_coords,
                                                                        random_state=opts.seed)
    noise_vals = [v for v in (scores.get("noise_ami"), scores.get("parent_noise_ami")) if v is not None]
    noise = max(noise_vals) if noise_vals else None
    if opts.calibrate:
        calib.update(calibrate(clusters, label if has_label else None, lineage, family, oof, scores, opts, nn_hits,
                               replicates, probe=(coords, np.asarray(folds))))
        if lineage is not None:
            calib["lineage_auc_p"] = identified.p_value
    # known design factors crossed with the init families (a data order shared by several inits, the
    # kind of model, the generation from parent_id): relatives too, so a split along them is not a candidate deep difference
    label_free = label_free_tests(prep, opts, coords, clusters, n_null, fp.meta.get("resolution"))

    # columns that follow it within the families (a knob varied by degrees), design columns' values its clusters set apart
    calibrated, strata = lineage is not None and opts.calibrate, options.strata_in(table, opts)
    gradient = metadata.table_gradients(coords, table, rows_arr, lineage_values, opts, {*strata, *opts.covariates_in(table)}) if calibrated else None
    scores |= table_sides(coords, clusters, table, rows_arr, lineage_values, strata, opts.seed) if calibrated else {}

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
    return dict(
        n_models=n, excluded=prep.excluded, approximations=approximations(
            n, c.method, boot, emb, basin_rows, lineage is not None or parents is not None, opts.calibrate),
        method=c.method, k=int(c.k), k_scores={str(a): jsonable(b) for a, b in c.scores.items()},
        # the chosen k is the largest one tried while more were possible: a larger k_max may score better
        k_at_cap=bool(k_fixed is None and c.k == opts.k_max and opts.k_max < n - 1),
        bootstrap=boot, embedding_method=emb, distances=bool(dist),
        model_ids=ids, clusters=clusters.tolist(), embedding=np.round(xy, 5).tolist(),
        label_values=None if label is None else [str(x) for x in label],
        lineage_values=None if lineage is None else [str(x) for x in lineage],
        scores={k: (jsonable(v) if not isinstance(v, dict) else {a: jsonable(b) for a, b in v.items()}) for k, v in scores.items()},
        noise_score=jsonable(noise), binary_label=binary, calibration=calib, has_label=has_label,
        alignment=alignment, aligns_with=aligns_with, basins=basin_rows,
        confusion=mt.confusion(clusters, label) if label is not None else None, metadata_gradient=gradient,
    ), label_free


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
    if nn and n > ident.MAX_MODELS:
        out.append(f"lineage identification (AUC and its p-value) on a random sample of whole families (at most "
                   f"{ident.MAX_MODELS} models)")
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


BLAS_THREADS = 1  # BLAS and OpenMP threads: the analysis is thousands of small products (one BLAS thread is 3.7x faster on 2 cores)


def analyze(fingerprints: list[FingerprintInput], table: dict[str, np.ndarray], opts: AnalysisOptions | None = None,
            on_result: Callable[[FingerprintResult, dict[str, Any]], None] | None = None) -> AnalysisResult:
    """Analyse every fingerprint (plus the combined ones of ``opts.combine``) against ``table``.

    ``table`` maps column name -> per-model array; it must have ``model_id``. Returns the
    :class:`~analysis.results.AnalysisResult` (``settings``, ``fingerprints`` in full detail,
    ``scorecard`` one row each); ``.to_dict()`` is its JSON form.

    When the label-free answer finds models that did not learn (:func:`analysis.results.failed_models`), the
    others are analysed again without them (``result.rest``: ``excluded``, and ``result``, ``None`` for fewer than
    :data:`MIN_REST` models): a difference among them may hide behind the failed ones (review 95).

    Runs with BLAS and OpenMP at :data:`BLAS_THREADS` thread(s) (:func:`_limits`): its products here
    are small (models x a few dozen columns), and a threaded BLAS spent most of its time synchronising
    (``docs/benchmarks.md``, "The scorecard's family statistics").

    ``on_result(result, settings)`` is called with each fingerprint's result as soon as it is analysed
    (before the verdicts, which are decided across all of them) and the result's ``settings``: the
    report draws figures meanwhile (:class:`analysis.report.SectionDrawer`).
    """
    with _limits():
        result = _analyze(fingerprints, table, opts, on_result)
        opts = opts or AnalysisOptions()
        analysed = [f.without(set(opts.exclude)) for f in fingerprints]
        failed = failed_models(result, analysed)  # models that did not learn (the answer's, a small basin's): the rest alone
        if failed:
            rest = len(table["model_id"]) - len(set(opts.exclude) | set(failed))
            result.rest = {"excluded": failed, "result": _analyze(fingerprints, table, opts.replace(
                exclude=[*opts.exclude, *failed])) if rest >= MIN_REST else None}
        return result


def _analyze_one_limited(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions,
                         index: dict[str, int], n_null: int | None = None
                         ) -> tuple[FingerprintResult, lf.LabelFreeResult | None]:
    """:func:`analyze_one` under :func:`analyze`'s limits, in whichever process runs it."""
    with _limits():
        return analyze_one(fp, table, opts, index, n_null)


def _redraw_limited(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions, index: dict[str, int],
                    n_null: int, result: FingerprintResult, first: lf.LabelFreeResult | None
                    ) -> tuple[FingerprintResult, lf.LabelFreeResult | None, str | None]:
    """:func:`redraw_label_free` under :func:`analyze`'s limits for ``result`` (analysed with fewer
    replicates, its label-free tests ``first``): the result, its ``seconds`` counting the redraw's, with the tests
    drawn again, and ``None``. Out of memory (the replicates' memory grows with them: review 110 measured 0.49 ->
    1.45 GB at 4,000 models, 199 -> 2,399 replicates), the first draw, whose p-values are valid, and what to tell
    the user; any other error is a bug, and raised."""
    t0 = time.time()
    try:
        with _limits():
            free = redraw_label_free(fp, table, opts, index, n_null, result.clusters)
    except MemoryError:
        return result, first, (f"{fp.name}: its label-free tests could not be drawn again with {n_null} null replicates "
                               f"(out of memory): decided at {first.n_null if first else opts.n_perm}")
    return dataclasses.replace(result, seconds=round((result.seconds or 0.0) + time.time() - t0, 3)), free, None


OWN_FAR = 2 * effect.GAUSSIAN_HALVES  # own two clusters this many within-cluster SDs apart are no halves of one spread


def own_gap(coords: np.ndarray, clusters: np.ndarray) -> dict[str, Any]:
    """Are a fingerprint's own two clusters (``clusters [n]``) two groups rather than the halves of one spread, along
    the line joining them in ``coords [n, c]``: the dip test's and the spacing bound's p-values
    (:func:`analysis.effect.gap_p`, :func:`analysis.effect.spacing_p`) and ``gap`` (either at most
    :data:`analysis.effect.GAP_ALPHA`, as a candidate's camps need: docs/scorecard.md, "A gap between the camps"),
    their ``separation`` in within-cluster SDs (:func:`analysis.effect.separation`) and ``far`` (at least
    :data:`OWN_FAR`, twice the halves of one Gaussian cloud: a unimodal spread cut at its middle gives 2-3.5). The
    answer's cluster lead needs ``gap`` or ``far`` (outside audit 111: the k-means halves of one single-peaked axis,
    69% of it between families, cut half the families of a null and read as a lead; dip p 0.96-0.99)."""
    dip, spacing = effect.gap_p(coords, clusters), effect.spacing_p(coords, clusters)
    sep = effect.separation(coords, clusters)
    return {"dip_p": dip, "spacing_p": spacing, "separation": sep,
            "gap": any(p is not None and p <= effect.GAP_ALPHA for p in (dip, spacing)),
            "far": sep is not None and sep >= OWN_FAR}


def _redraw_rows(n_models: int, n_null: int, n_perm: int) -> int:
    """What the redraw of one fingerprint's label-free tests costs, in the rows of whole analyses that
    :func:`analysis.parallel.map_ordered` weighs a pool's start-up against: at 2,399 replicates against 199, about
    7 analyses of its models (review 110), so about half the ratio of the replicates."""
    return n_models * n_null // max(2 * n_perm, 1)


@contextlib.contextmanager
def _limits():
    """One BLAS and one OpenMP thread, and scikit-learn's per-call validation off: inputs are checked
    once (finite values, known options), and its validation of the same arrays cost more than some of
    its computations (docs/benchmarks.md, "The report's speed"). OpenMP too: scikit-learn's k-means
    (above 700 models) runs OpenMP threads, and in a pool of one worker per core each worker's
    threads spun waiting on the others' (1,000 x 10 took 11 minutes instead of ~40 s). And the objects
    that exist already (the imported modules: ~150,000 after scikit-learn's import, ~260,000 after
    umap's) out of the cyclic collector's full passes meanwhile (:func:`_frozen`)."""
    with threadpool_limits(limits=BLAS_THREADS), _frozen(), \
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        yield


@contextlib.contextmanager
def _frozen():
    """``gc.freeze()`` while the analysis runs, ``gc.unfreeze()`` after it (unless something else has
    frozen objects already): its full collections scanned every imported module's objects, 0.3-0.4 s of
    a 100 x 10 analysis's ~5.5 s of CPU (docs/benchmarks.md, "The report's speed"). Garbage made of
    objects frozen here is collected once they are unfrozen."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _analyze(fingerprints: list[FingerprintInput], table: dict[str, np.ndarray], opts: AnalysisOptions | None,
             on_result: Callable[[FingerprintResult, dict[str, Any]], None] | None = None) -> AnalysisResult:
    opts = opts or AnalysisOptions()
    if "model_id" not in table:
        raise AnalysisError("the model table needs a 'model_id' column")
    if opts.exclude:  # --exclude: the analysis of the other models
        table, fingerprints = without(table, fingerprints, opts.exclude, MIN_REST)
    for what, c in (("--label", opts.label), ("--lineage", opts.lineage), *(("--strata", c) for c in opts.strata if c != NO_STRATA)):
        if c and c not in table and not (what == "--label" and c == "deep_label"):
            raise AnalysisError(f"unknown model column '{c}' for {what} (valid: {choices(table)})")
    filled = 0
    if opts.lineage in table and "parent_id" in table:  # a fine-tune without a family value is in its base's
        inherited, filled = mt.inherit_lineage(table["model_id"], table[opts.lineage], table["parent_id"])
        if filled:
            table = {**table, opts.lineage: inherited}
    index = {str(m): i for i, m in enumerate(table["model_id"])}
    fps = list(fingerprints)
    by_name = {f.name: f for f in fps}
    for group in opts.combine:
        fps.append(combined_input(group, by_name, opts))
    # large populations: one process per fingerprint (analysis.parallel); the same results as in turn
    rows = sum(len(f.model_ids) for f in fps)
    settings = {**opts.to_dict(), "label": opts.label if opts.label in table else None,
                "thresholds": {"deep_ami": opts.deep_threshold, "noise_ami": opts.noise_threshold,
                               "probe_auroc": opts.auroc_threshold, "lineage_auc": opts.lineage_threshold},
                "lineage_inherited": filled, **metadata.table_settings(table, opts), **covariates.settings(table, opts),
                "generation_columns": metadata.generation_columns(table, {opts.lineage, opts.label}),
                # the design columns taken out of the label-free tests as shared across families (a data order)
                "strata_columns": [c for c in options.strata_in(table, opts) if len(set(map(str, table[c]))) > 1]}
    each = None if on_result is None else (lambda one: on_result(one[0], settings))
    analysed = parallel.map_ordered(_analyze_one_limited, [(f, table, opts, index) for f in fps], rows,
                                    preload=["analysis.scorecard"], on_each=each)
    # a label-free deep test at the floor of its null replicates unconfirmed after the correction across
    # fingerprints, or one its Monte Carlo error could turn: its label-free tests drawn again with replicates enough
    # to decide it (docs/scorecard.md, "Null replicates"; nothing else depends on the replicates)
    again = more_replicates(analysed, opts)
    redone = parallel.map_ordered(_redraw_limited, [(fps[i], table, opts, index, n, *analysed[i])
                                                    for i, n in again.items()],
                                  sum(_redraw_rows(len(fps[i].model_ids), n, opts.n_perm) for i, n in again.items()),
                                  preload=["analysis.scorecard"])
    for i, (r, free, failed) in zip(again, redone):
        analysed[i] = (r, free)
        if failed:
            warnings.warn(failed, RuntimeWarning, stacklevel=2)
    decide(analysed, opts)
    results = [r for r, _ in analysed]
    unlearned.attach(results, fps)  # what each one's camps predict on the in-distribution probes
    if opts.calibrate:  # the candidate basins against the model table's other columns (docs/scorecard.md)
        metadata.attach(results, table, opts, settings["strata_columns"])
    return AnalysisResult(
        version=RESULT_VERSION, created=time.time(),
        settings=settings, n_models=len(table["model_id"]), fingerprints=results, scorecard=[ScorecardRow.of(r) for r in results],
        methods=METHODS_VERSION)
