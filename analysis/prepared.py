"""A fingerprint prepared for the analysis (:class:`Prepared`: its values on the models it is analysed on, and
their columns of the model table), and its label-free tests (:func:`label_free_tests`), which
:func:`redraw_label_free` draws again with more null replicates without analysing the rest again.
:mod:`analysis.scorecard` analyses a fingerprint from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from analysis import clustering as cl
from analysis import covariates, effect
from analysis import labelfree as lf
from analysis import metrics as mt
from analysis.errors import AnalysisError
from analysis.options import AnalysisOptions, FingerprintInput, strata_in

__all__ = ["Prepared", "prepare", "label_free_tests", "redraw_label_free"]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A fingerprint's values on the models it is analysed on (those the table knows, not diverged) and their
    columns: what the analysis and the redraw of its label-free tests (:func:`redraw_label_free`) start from."""

    values: np.ndarray  # [n, d] features, or [n, n] distances (float64); --covariate's part taken out
    dist: bool
    std: bool  # standardise the columns before the PCA
    ids: list[str]
    excluded: list[str]  # the fingerprint's models left out
    rows: np.ndarray  # [n] each model's row of the table
    label: np.ndarray | None  # [n]
    lineage: np.ndarray | None  # [n] a model without a value is its own family
    lineage_values: np.ndarray | None  # [n] as the table has them (the label-free tests leave out a missing one)
    parent_ids: np.ndarray | None  # [n]
    parents: np.ndarray | None  # [n] each model's parent-chain root
    taken: np.ndarray | None  # [n, p] --covariate's design, taken out of ``values``
    cells: np.ndarray | None  # [n] each model's level across its columns
    share: Any  # what --covariate took out
    cov_fit: covariates.Fit | None
    table: dict[str, np.ndarray]
    strata: list[str]  # the design columns the label-free tests take out
    # [n, n] a distance fingerprint's distances before --covariate took its part out (``values`` then holds
    # coordinates): what its resolution's steps are counted in (effect.steps_apart; outside audit 118); else None
    raw_dist: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def col(self, c: str) -> np.ndarray:
        """The table's column ``c`` on these models ``[n]``."""
        return np.asarray(self.table[c], dtype=object)[self.rows]


def prepare(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions, index: dict[str, int]) -> Prepared:
    """Check ``fp``'s values, leave out the models the table does not know and the diverged ones, take out
    ``--covariate``'s part, and gather the columns the analysis reads."""
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
    col = lambda c: np.asarray(table[c], dtype=object)[rows_arr]  # noqa: E731
    label = col(opts.label) if opts.label and opts.label in table else None
    lineage = col(opts.lineage) if opts.lineage and opts.lineage in table else None
    lineage_values = lineage  # the label-free tests leave a model without a value out (labelfree._without_unknown)
    if lineage is not None:  # elsewhere a model without a value (no CSV row) is its own family, not one with the others
        lineage = np.asarray([f"(none: {m})" if lf.missing(v) else v for v, m in zip(lineage, ids)], dtype=object)
    parents = parent_ids = None
    if "parent_id" in table:
        p = col("parent_id")
        if any(str(x) for x in p):
            parent_ids, parents = p, mt.root_family(ids, p)
    std = bool(fp.meta.get("standardize", True))  # combined fingerprints are block-scaled already
    taken = share = cells = cov_fit = raw_dist = None  # --covariate: the recorded settings' part of the fingerprint taken out first (their design)
    if opts.covariates:
        cols = opts.covariates_in(table)
        cov_fit = covariates.fit({c: col(c) for c in cols}, cols,  # on this fingerprint's models
                                 within={c: col(c) for c in strata_in(table, opts)}, families=lineage)
        try:  # (some of the table's may be left out)
            covariates.check(cov_fit)
        except AnalysisError as e:
            raise ValueError(f"{e} (on the {len(ids)} models this fingerprint has)") from None
        raw_dist = values if dist else None
        values, dist, std, share = covariates.taken_out(values, dist, std, cov_fit)
        taken, cells = cov_fit.design, cov_fit.levels
    return Prepared(values, bool(dist), std, ids, excluded, rows_arr, label, lineage, lineage_values, parent_ids,
                     parents, taken, cells, share, cov_fit, table, strata_in(table, opts), raw_dist)


def label_free_tests(prep: Prepared, opts: AnalysisOptions, coords: np.ndarray, clusters: np.ndarray, n_null: int,
                     resolution: float | None) -> lf.LabelFreeResult | None:
    """The label-free tests of a prepared fingerprint with ``n_null`` null replicates (``coords [n, c]``: the PCA
    or MDS it was clustered in; ``clusters [n]``: its basins), with its family tree and the size of each candidate
    difference (:func:`analysis.effect.sized`); ``None`` without lineage or calibration."""
    if prep.lineage is None or not opts.calibrate:
        return None
    lineage_values = prep.lineage_values
    strata = [prep.col(c) for c in prep.strata]
    generation = mt.generation(prep.ids, prep.parent_ids) if prep.parent_ids is not None else None  # a base model vs its fine-tunes
    label_free = lf.label_free(coords, lineage_values, n_null, opts.seed, opts.k_max, strata, prep.parents, generation,
                               prep.taken, prep.cells)
    if label_free.verdict == "insufficient" and len({str(v) for v in lineage_values}) == 1 \
            and str(lineage_values[0]) == "-1":  # an import that recorded no seeds: not one family, but unknown ones
        label_free = dataclasses.replace(label_free, sentence=f"insufficient: the init families are unknown (every "
                                         f"model's '{opts.lineage}' is -1, an import's mark for a seed it was not given)")
    if label_free.verdict != "insufficient":
        known = np.asarray([not lf.missing(v) for v in lineage_values], bool)
        label_free = dataclasses.replace(label_free, tree=lf.family_tree(coords[known], lineage_values[known]))
        # how big each candidate difference is, and one family set apart by the basins (docs/scorecard.md)
        label_free = effect.sized(label_free, lineage_values, coords, prep.values, prep.dist, clusters, known, opts.alpha,
                                  opts.n_family_boot, opts.seed, resolution, prep.raw_dist)
    return label_free


def redraw_label_free(fp: FingerprintInput, table: dict[str, np.ndarray], opts: AnalysisOptions, index: dict[str, int],
                      n_null: int, clusters: list[int]) -> lf.LabelFreeResult | None:
    """The label-free tests of an analysed fingerprint (whose basins were ``clusters [n]``) drawn again with
    ``n_null`` null replicates (:func:`analysis.calibration.more_replicates`): only they depend on the
    replicates, so the clustering, bootstrap and map are not computed again. The coordinates are those the analysis
    gives its label-free tests (:func:`analysis.clustering.coordinates`: the PCA the clustering computed too, or the
    MDS of a distance fingerprint), so the tests are those of the whole fingerprint analysed with ``n_null``
    replicates (tests/analysis/test_analysis.py checks it in each branch). ``None`` without lineage or calibration, as :func:`label_free_tests`."""
    prep = prepare(fp, table, opts, index)
    coords = cl.coordinates(prep.values, prep.dist, opts.n_components, opts.seed, prep.std)
    return label_free_tests(prep, opts, coords, np.asarray(clusters, int), n_null, fp.meta.get("resolution"))
