"""Answering without ground truth: lineage-aware basins, and statistics whose unit is the init family.

The person running the proposal for real never has a deep label, but always has lineage: which
models share an init seed (a *family*: its data orders, spawned and fine-tuned children). Models of
one family are not independent samples, so every test and interval here resamples or permutes
*families*. Jenner's objection, made operational: structure unique to one family is initialization
noise; structure shared by many independent families, or splitting a family's members apart, is a
candidate deep difference. Three tests on a fingerprint's coordinates ``[n, d]``:

- ``lineage``: are families identifiable? The pseudo-F of the family partition (between- over
  within-family variance) against member permutations across families (the null: family does not
  matter).
- ``groups``: do the families' centroids fall into >= 2 groups? SigClust's statistic (Liu et al.
  2008): the 2-means cluster index (within sum of squares of the best split over the total) of the
  centroids, against centroids drawn from one Gaussian with their own covariance (a parametric
  bootstrap with families as units; the sample covariance of a bimodal cloud is stretched along
  the split, which makes the test conservative).
- ``crosses``: do members of one family split the same way across families? Two statistics,
  Bonferroni-combined: the 2-means cluster index of all models against a hierarchical Gaussian null
  (family effects with the centroids' covariance, members with the pooled within-family one:
  conservative; :func:`_all_split` also has a rotation null, measured and not the default), and
  the lowest 1-D cluster index of the within-family residuals along one of their principal
  directions, against Gaussian members with the pooled within-family covariance, residualised
  exactly as the data are (family, plus known design factors such as a data order shared across
  families, and parent chains). The second has the power the first lacks when the split cuts every
  family: there the split itself inflates the pooled within-family covariance of the first's null.
  Both take the design factors and the generation from ``parent_id`` out (docs/scorecard.md).

The family-level resampling (samples, bootstrap intervals, permutation p-values) lives in
:mod:`analysis.resampling` and is re-exported here. :func:`decide` turns the raw p-values of several fingerprints into verdicts after a
Benjamini-Hochberg correction across all of them; what each verdict's sentence says is in
:mod:`analysis.labelfree_sentences`. Functions take arrays and return dataclasses;
invalid input raises ``ValueError``. ``docs/scorecard.md`` ("Without ground truth") explains the
verdicts; ``tests/analysis/test_labelfree.py`` measures the false "deep" rate on null populations.

Longer than ~400 lines: the three tests, their null simulations and the residualisation the split
test shares with its null are one statistic's definition; the cluster index itself is in
:mod:`analysis.sigclust`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.stats import binomtest, false_discovery_control, rankdata

from analysis.labelfree_sentences import (  # noqa: F401 (camp_min: analysis.labelfree.camp_min, as docs/scorecard.md names it)
    DEEP_VERDICTS,
    FEW_SENTENCES,
    NO_RELATIVES,
    SENTENCES,
    TESTS,
    all_split_floor,
    alone,
    at_floor,
    camp_min,
    closest_split,
    cut_text,
    families,
    few_families,
    few_models,
    minority_text,
    mostly_alone,
    nearly_alone_sentence,
    p_floor,
    unknown_note,
    with_unconfirmed,
    within_floor,
)
from analysis.resampling import (
    MAX_MODELS,
    MIN_FAMILIES,
    family_bootstrap,
    family_permutation_p,
    family_sample,
    member_permutation_p,
)
from analysis.resampling import family_codes as _codes
from analysis.sigclust import (
    axis_index,
    axis_projections,
    cluster_index,
    gaussian_like,
    projection_index,
    top_dims,
)
from analysis.sortkeys import natural_key
from analysis.values import missing
from analysis.verdicts import LABEL_FREE

__all__ = ["MAX_MODELS", "MIN_FAMILIES", "family_bootstrap", "family_permutation_p", "family_sample", "member_permutation_p",
           "LabelFreeResult", "cluster_index", "axis_index", "pseudo_f", "label_free", "family_tree", "decide", "VERDICTS", "DEEP_VERDICTS", "SENTENCES",
           "NO_RELATIVES", "missing"]

VERDICTS = tuple(v.value for v in LABEL_FREE)
NULL_CHUNK = 16  # null replicates of all models simulated at once (memory: NULL_CHUNK x n x dims floats)
MAX_TREE_FAMILIES = 200  # more init families than this: no dendrogram (unreadable, and it would bloat basins.json)
MAX_DIMS = 5  # the tests work in at most this many principal directions (of the centroids / all models)
CROSS_SPLIT_RATE = 1 / 3  # a significant split that cuts at least this share of families crosses lineage
# ... and so does one whose smaller side is mostly models of at least this many families, each beside relatives on
# the other side (a minority of few models, which cuts few of many families: docs/scorecard.md, "A minority")
MINORITY_FAMILIES = 2
# two or three init families: only the within-family camps are tested (:func:`_few_families`), and they cross
# lineage when they cut at least FEW_CUT_FAMILIES of them (a difference seen in one family is its quirk)
FEW_MIN_FAMILIES = 2
FEW_CUT_FAMILIES = 2
FEW_SAME_WAY = 0.5  # ... each of them with its own camps at least this share as far apart as the farthest family's


@dataclass(frozen=True)
class LabelFreeResult:
    """The label-free tests of one fingerprint (raw p-values; :func:`decide` sets the verdict).

    ``candidate_basins`` ``[n]`` (``-1`` for none) are the basins of the verdict's kind: the
    centroid groups (``groups``) or the split of the within-family direction (``crosses``).
    """

    n_models: int
    n_families: int
    p_lineage: float | None
    p_groups: float | None
    p_split: float | None
    pseudo_f: float | None = None
    ci_groups: float | None = None  # 2-means cluster index of the centroids (lower: more clustered)
    ci_split: float | None = None  # 2-means cluster index of all models
    ci_axis: float | None = None  # the lowest 2-means cluster index of the centroids along one principal direction
    groups_axis: int | None = None  # the principal direction (0 = first) whose split gives the centroid groups, if any
    split_rate: float | None = None  # share of families with relatives that the models' 2-means split cuts
    n_related_families: int | None = None  # init families with two or more models (``split_rate``'s denominator)
    ci_within: float | None = None  # the lowest 1-D cluster index of the within-family residuals
    split_within: bool = False  # the split is the within-family residuals' (the stronger evidence, cutting families)
    # [n] the models' split as a `groups lineages` verdict's candidate basins: a whole family (or a model the
    # split left out) on its family's majority side, each model of a cut family on its own side
    split_families: np.ndarray | None = None
    split_majority: np.ndarray | None = None  # [n] each family wholly on its majority side of the split
    split_min_families: int | None = None  # init families on the smaller side of the split (each on its majority side)
    # families with a model on the split's smaller side, and how many of them have more than half their models there
    split_side_families: int = 0
    split_side_whole: int = 0
    # models on the split's smaller side, and how many of them are of families with at most half their models there
    split_side_models: int = 0
    split_side_light: int = 0
    cut_families: tuple[str, ...] = ()  # families with relatives on both sides of the all-model split (:func:`decide`
    # keeps them for a `groups lineages` verdict from that split only: the seeds that did not decide its side)
    sampled: int | None = None  # models the tests ran on, when fewer than n_models (a sample of whole families)
    n_unknown: int = 0  # models without a lineage value (:func:`missing`): left out of the tests, placed after
    group_basins: np.ndarray | None = None  # [n] from the centroid groups
    n_null: int | None = None  # null replicates per test (a raw p cannot go below 1 / (n_null + 1))
    split_basins: np.ndarray | None = None  # [n] the 2-means split of all models
    # when the within-family camps replaced the split of all models (split_within): that split [n], its own p-value
    # (doubled, as the combined one) and the families it cuts, which :func:`decide` takes back when the within-family
    # camps are held back by their size and it is not (an outside audit, 103)
    split_all: np.ndarray | None = None
    p_split_all: float | None = None
    split_rate_all: float | None = None
    family_groups: dict[str, int] = field(default_factory=dict)  # family -> group (centroid groups)
    family_sizes: dict[str, int] = field(default_factory=dict)  # family -> models (of those tested)
    verdict: str = "no structure"
    q: float | None = None  # the BH-adjusted p-value behind the verdict
    # each test's BH-adjusted p-value ("lineage", "groups", "split"), over every test :func:`decide` corrected
    q_tests: dict[str, float] = field(default_factory=dict)
    candidate_basins: np.ndarray | None = None
    sentence: str = ""
    tree: dict | None = None  # the families' dendrogram (:func:`family_tree`), for the report
    # why a significant deep test got no deep verdict (:func:`held_reason`): "no gap", "small", "coarse", or None
    held: str | None = None
    # the camps of the partition so held, for "no gap" and "few" ([n], as candidate_basins): models that did not
    # learn, held back as a continuum or a few models, are read on the in-distribution probes too (analysis.unlearned)
    held_basins: np.ndarray | None = None
    # the camps ([n], as candidate_basins) of a split test significant before the correction across fingerprints but
    # not after, nor held back: the answer says them as a lead when two fingerprints' agree (an outside audit, 103)
    unconfirmed_basins: np.ndarray | None = None

    @property
    def significant(self) -> bool:
        return self.verdict in ("crosses lineage", "groups lineages", "lineage only")


def _centroids(x: np.ndarray, codes: np.ndarray, n_fam: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(codes, minlength=n_fam).astype(np.float64)
    sums = np.zeros((n_fam, x.shape[1]))
    np.add.at(sums, codes, x)
    return sums / np.maximum(counts, 1)[:, None], counts


def pseudo_f(x: np.ndarray, codes: np.ndarray, n_fam: int) -> float:
    """Between- over within-family mean squares of ``x [n, d]`` (PERMANOVA's statistic, Euclidean)."""
    cent, counts = _centroids(x, codes, n_fam)
    grand = x.mean(0)
    ssb = float((counts[:, None] * (cent - grand) ** 2).sum())
    ssw = float(((x - cent[codes]) ** 2).sum())
    n = len(x)
    if n - n_fam <= 0 or ssw <= 0:
        return float("inf") if ssb > 0 else 0.0
    return (ssb / (n_fam - 1)) / (ssw / (n - n_fam))


def label_free(coords: np.ndarray, family: Sequence, n_null: int = 199, random_state: int = 0, k_max: int = 8,
               strata: Sequence[Sequence] = (), nested: Sequence | None = None,
               generation: Sequence | None = None, taken: np.ndarray | None = None,
               taken_cells: Sequence | None = None) -> LabelFreeResult:
    """The three label-free tests of one fingerprint, from its coordinates ``coords [n, d]`` (e.g.
    its PCA reduction) and each model's init family ``family [n]``. Raw p-values; see :func:`decide`.
    ``strata`` are known design factors crossed with the families (each ``[n]``: data order, kind),
    taken out before the within-family camps are looked for, as are ``nested`` sub-families (each
    model's parent-chain root, ``[n]``) (:func:`_within_split`). ``generation`` ``[n]`` (int: 0 for a
    model without a parent, 1 for its fine-tuned child, ...; :func:`analysis.metrics.generation`) is
    a design factor of all three tests: the lineage permutations stay inside a generation, the
    within-family camps are looked for among the models of one family and one generation, and the
    all-model split leaves out a model alone in its generation of its family and sees the rest with
    the generation's shared effect taken out, as a stratum's. ``taken`` ``[n, p]``: the design that
    ``coords`` were residualised on already (``--covariate``, :class:`analysis.covariates.Fit`'s ``design``): every
    null replicate is residualised on it as the data were (:func:`_taken_out`), the within-family
    camps are looked for beside it (a data order's levels, without giving a camp its part back);
    ``taken_cells`` ``[n]``: each model's level across the columns of ``taken`` fitted as levels (not its
    trends), inside which the lineage permutations stay (:func:`_exchangeable_cells`).
    Above :data:`MAX_MODELS` models the tests run on a random sample of whole families, and every
    other model joins the candidate basin whose mean is nearest (``sampled`` says how many were tested).
    """
    x = np.asarray(coords, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(family):
        raise ValueError(f"coords must be [n, d] with one family per row, got {x.shape} and {len(family)} families")
    if not np.isfinite(x).all():
        raise ValueError("coords have NaN or infinite values")
    if generation is not None and len({int(g) for g in np.asarray(generation)}) < 2:
        generation = None  # one generation (no parent links here): nothing to take out
    unknown = np.asarray([missing(f) for f in family], bool)
    if unknown.all():
        return LabelFreeResult(len(x), 0, None, None, None, verdict="insufficient", n_unknown=len(x),
                               sentence="insufficient: no model has a lineage value")
    if unknown.any():  # nobody knows whose relatives they are: not counted as a family, nor as families of one
        return _without_unknown(x, family, unknown, n_null, random_state, k_max, strata, nested, generation, taken,
                                taken_cells)
    rows = family_sample(family, MAX_MODELS, random_state)
    if rows is not None:
        fam = np.asarray([str(f) for f in family], dtype=object)
        res = label_free(x[rows], fam[rows], n_null, random_state, k_max,
                         [np.asarray(c, dtype=object)[rows] for c in strata],
                         None if nested is None else np.asarray(nested, dtype=object)[rows],
                         None if generation is None else np.asarray(generation)[rows],
                         None if taken is None else taken[rows],
                         None if taken_cells is None else np.asarray(taken_cells, dtype=object)[rows])
        spread = {k: _extend(x, rows, getattr(res, k)) for k in ("group_basins", "split_families", "split_majority")}
        # with generations, a model alone in its generation of its family is in no camp (as in the sample)
        cells = fam if generation is None else _generation_cells(fam, generation)
        lone = _with_generation_relatives(_codes(fam)[0], generation)
        spread["split_basins"] = (  # camps of the within-family residuals: extended in residual space
            _extend(_family_centred(x, cells), rows, res.split_basins, _family_sizes(cells) >= 2) if res.split_within
            else _extend(x, rows, res.split_basins, lone))
        if res.split_all is not None:
            spread["split_all"] = _extend(x, rows, res.split_all, lone)
        return replace(res, n_models=len(x), sampled=len(rows), **spread)
    codes, names = _codes(family)
    n, n_fam = len(x), len(names)
    if n_fam < FEW_MIN_FAMILIES or n < 2 * MIN_FAMILIES:
        need = f"at least {FEW_MIN_FAMILIES} with relatives and {2 * MIN_FAMILIES} models" if n_fam >= FEW_MIN_FAMILIES \
            else f"at least {FEW_MIN_FAMILIES} needed"
        return LabelFreeResult(n, n_fam, None, None, None, verdict="insufficient",
                               sentence=f"insufficient: {families(n_fam)} ({need})")
    rng = np.random.default_rng(random_state)
    x = x - x.mean(0)
    if x.shape[1] == 0 or not np.abs(x).max(initial=0.0) > 0:  # every model identical on this fingerprint
        return LabelFreeResult(n, n_fam, None, None, None, sentence=SENTENCES["no structure"])
    cent, counts = _centroids(x, codes, n_fam)
    if n_fam < MIN_FAMILIES and int((counts >= 2).sum()) < FEW_MIN_FAMILIES:
        return LabelFreeResult(n, n_fam, None, None, None, verdict="insufficient",
                               sentence=f"insufficient: {families(n_fam)} (at least {FEW_MIN_FAMILIES} with relatives needed)")

    # lineage: pseudo-F against members permuted across families (family sizes kept)
    f_obs = p_lin = None
    if n > n_fam:  # some family has relatives (singletons join the permutations: they once kept the test from running)
        xl, u = x, rng.random((n_null, n))
        perms = np.argsort(u, 1)
        if generation is not None:  # members exchangeable within a generation only, its mean shift taken out
            g = _codes(np.asarray(generation))[0]
            xl = x - _centroids(x, g, int(g.max()) + 1)[0][g]
        cells = _exchangeable_cells(generation, taken_cells)
        if cells is not None:
            perms[:, np.argsort(cells, kind="stable")] = np.argsort(cells + u, 1)  # a permutation inside each cell
        if cells is None or _families_meet(cells, codes):
            f_obs = pseudo_f(xl, codes, n_fam)
            null_f = np.array([pseudo_f(xl, codes[p], n_fam) for p in perms])
            p_lin = float((1 + (null_f >= f_obs).sum()) / (n_null + 1))
        # else no cell holds two families: no permutation moves a model to another family (the lineage is
        # confounded with the levels taken out, which took its effect with them): not tested
    if n_fam < MIN_FAMILIES:  # two or three families: no groups of families, camps inside them only
        return _few_families(x, codes, names, counts, n_null, rng, strata, nested, generation,
                             LabelFreeResult(n, n_fam, p_lin, None, None, pseudo_f=f_obs, n_null=n_null), taken)

    # groups: SigClust on the centroids, in their top principal directions, jointly and along each
    # direction alone (Bonferroni over the two statistics)
    k = min(MAX_DIMS, x.shape[1], n_fam - 2)
    min_group = 2  # a group of one family is that family's quirk, not a basin
    c = top_dims(cent, max(k, 1))
    ci_obs, split = cluster_index(c[None], min_size=min_group)
    null = gaussian_like(c, n_null, rng)
    if taken is not None:  # the families' part of the design out of every replicate, as out of the data
        null = _taken_out(null, _centroids(np.asarray(taken, dtype=np.float64), codes, n_fam)[0], min_group)
    null_ci, _ = cluster_index(null, min_size=min_group)
    p_joint = float((1 + (null_ci <= ci_obs[0]).sum()) / (n_null + 1))
    axis_ci, axis_split = axis_index(c, min_size=min_group)
    null_axis = np.concatenate([axis_index(null[i : i + NULL_CHUNK], min_group)[0].min(-1)
                                for i in range(0, n_null, NULL_CHUNK)])
    axis = int(axis_ci.argmin())
    p_axis = float((1 + (null_axis <= axis_ci[axis]).sum()) / (n_null + 1))
    p_groups = min(1.0, 2 * min(p_joint, p_axis))
    if p_axis < p_joint:
        fam_group, groups_axis = axis_split[axis], axis
    else:
        fam_group, groups_axis = _group_families(cent, k_max, split[0]), None
    group_basins = fam_group[codes]

    # one population or two? The 2-means cluster index of all models against a hierarchical
    # Gaussian null (:func:`_all_split`). With parent links, a model alone in its generation of its
    # family (a base model imported beside its fine-tunes) is left out of it: its offset from its
    # family is the generation's effect and the children's camps at once, and either way it lands
    # between the camps (measured: the planted backdoor of the outside audit's imports was lost)
    n_split = 2 * n_null + 1  # the split's p is the smaller of two, doubled: twice the replicates keep its floor
    design_strata = list(strata) if generation is None else [*strata, np.asarray(generation, dtype=object)]
    keep = _with_generation_relatives(codes, generation)
    if keep is None:
        ci_c, p_split, split = _all_split(x, codes, n_fam, n_split, rng, design_strata, taken=taken)
    else:
        sub = _codes(codes[keep])[0]
        ci_c, p_split, side = _all_split(x[keep] - x[keep].mean(0), sub, int(sub.max()) + 1, n_split, rng,
                                         [np.asarray(c, dtype=object)[keep] for c in design_strata],
                                         taken=None if taken is None else taken[keep])
        split = np.full(n, -1)
        split[keep] = side
    # how often a family with relatives is cut by that split: a seed-decided split leaves families whole
    multi_fams = np.flatnonzero(counts >= 2)
    split_rate = _cut_rate(split, codes, multi_fams)
    split_basins = split
    inside = split >= 0
    tested = np.bincount(codes[inside], minlength=n_fam)  # [n_fam] each family's models in the split
    ones = np.bincount(codes[inside & (split == 1)], minlength=n_fam)  # [n_fam] ... of them on side 1
    sides = np.array([tested.sum() - ones.sum(), ones.sum()])
    larger, smaller = int(sides.argmax()), int(sides.argmin())
    # -1: a family with no model in the split; a family split evenly is on the larger side (not the smaller one's)
    majority = np.where(tested == 0, -1, np.where(2 * ones == tested, larger, (2 * ones > tested).astype(int)))
    # a cut family's models each keep their own side: they are the seeds whose side the init did not decide
    # (measured: scripts/labelfree_cut_families.py, docs/scorecard.md "Cut families")
    cut = [names[f] for f in multi_fams if 0 < ones[f] < tested[f]]
    own_side = np.where(inside, split, majority[codes])
    # the families with a model on the smaller side, and those with more than half their models there (minority)
    on_small = ones if smaller == 1 else tested - ones
    side_families, side_whole = int((on_small > 0).sum()), int((2 * on_small > tested).sum())
    side_light = int(on_small[2 * on_small <= tested].sum())  # the smaller side's models beside relatives on the other

    # camps inside the families, the same way across them: the within-family residuals alone (drawn
    # last, so the tests above keep their random streams). Used when it is the stronger evidence and
    # its split cuts families as a crossing split does; Bonferroni over the two statistics either way.
    ci_w, p_w, w_split = _within_split(x, codes, n_fam, n_split, rng, strata, nested, generation, taken=taken)
    split_within = False
    alternative = {}
    if p_w is not None:
        w_rate = _cut_rate(w_split, codes, multi_fams)
        if p_w < p_split and w_rate >= CROSS_SPLIT_RATE:
            alternative = {"split_all": split, "p_split_all": min(1.0, 2 * p_split), "split_rate_all": split_rate}
            p_split, split_rate, split_basins, split_within = min(1.0, 2 * p_w), w_rate, w_split, True
        else:
            p_split = min(1.0, 2 * p_split)

    return LabelFreeResult(
        n, n_fam, p_lin, p_groups, p_split, pseudo_f=f_obs, ci_groups=float(ci_obs[0]), ci_split=ci_c,
        groups_axis=groups_axis, ci_axis=float(axis_ci[axis]),
        group_basins=group_basins, split_basins=split_basins, split_rate=split_rate, split_families=own_side,
        split_majority=majority[codes],
        ci_within=ci_w, split_within=split_within, split_min_families=int(np.bincount(majority[majority >= 0], minlength=2).min()),
        family_groups={names[i]: int(g) for i, g in enumerate(fam_group)}, n_related_families=len(multi_fams),
        family_sizes={names[i]: int(c) for i, c in enumerate(counts)},
        cut_families=tuple(sorted(cut, key=natural_key)), n_null=n_null, split_side_families=side_families,
        split_side_whole=side_whole, split_side_models=int(on_small.sum()), split_side_light=side_light, **alternative)


def _few_families(x: np.ndarray, codes: np.ndarray, names: list[str], counts: np.ndarray, n_null: int,
                  rng: np.random.Generator, strata: Sequence[Sequence], nested: Sequence | None,
                  generation: Sequence | None, base: LabelFreeResult, taken: np.ndarray | None = None) -> LabelFreeResult:
    """:func:`label_free` with two or three init families (``base``: its lineage test): no test of
    groups of families (a group needs two families, two groups four), and no all-model split (its
    null draws family effects from the centroids' covariance, which two or three centroids cannot
    estimate). What is left is the within-family camps (:func:`_within_split`), the test that needs
    no family-level null: members of each family in two camps the same way. Its p-value is doubled
    as the full test's is (one floor, :func:`~analysis.labelfree_sentences.p_floor`, for every
    population), and :func:`decide` reads it as crossing lineage only when it cuts at least two
    families (:data:`FEW_CUT_FAMILIES`): a difference seen in one family cannot be told from that
    family's quirk (docs/scorecard.md, "Two or three families")."""
    n_fam = len(names)
    ci_w, p_w, split = _within_split(x, codes, n_fam, 2 * n_null + 1, rng, strata, nested, generation,
                                     min_families=FEW_MIN_FAMILIES, taken=taken)
    family_sizes = {names[i]: int(c) for i, c in enumerate(counts)}
    multi = np.flatnonzero(counts >= 2)
    if p_w is None:
        return replace(base, family_sizes=family_sizes, n_related_families=len(multi))
    cut = _cut_the_same_way(x, codes, split, generation)
    inside = split >= 0
    tested = np.bincount(codes[inside], minlength=n_fam)
    ones = np.bincount(codes[inside & (split == 1)], minlength=n_fam)
    on_small = ones if 2 * ones.sum() <= tested.sum() else tested - ones
    return replace(
        base, p_split=min(1.0, 2 * p_w), ci_within=ci_w, split_within=True, split_basins=split,
        split_rate=_cut_rate(split, codes, multi), n_related_families=len(multi), family_sizes=family_sizes,
        split_min_families=0,  # no groups of families from two or three
        cut_families=tuple(sorted((names[f] for f in cut), key=natural_key)),
        # the families the camps really divide: one alone is the one-family lead, "leaving every other family whole"
        split_side_families=len(cut) if len(cut) < FEW_CUT_FAMILIES else int((on_small > 0).sum()),
        split_side_whole=0 if len(cut) < FEW_CUT_FAMILIES else int((2 * on_small > tested).sum()))


def _cut_the_same_way(x: np.ndarray, codes: np.ndarray, split: np.ndarray, generation: Sequence | None) -> list[int]:
    """The families (codes) that the within-family camps ``split [n]`` (``-1``: no camp) divide the
    way they divide the others: along the line joining the camps' means of the family-centred
    ``x [n, d]`` (centred in each family and generation), each family's own camps at least
    :data:`FEW_SAME_WAY` as far apart as the farthest family's. A family that only the threshold cuts
    (its models one cloud, some on each side of a split another family's quirk set) has camps about
    2.65 of its own SDs apart, not the quirk's distance: counted, it made one family's quirk cross
    lineage with unequal family sizes (a review: 17 of 20 populations of 20 + 4 models, half of the
    larger family shifted)."""
    cells = codes if generation is None else _generation_cells(codes, generation)
    xc = _family_centred(x, cells)
    a, b = split == 0, split == 1
    if not a.any() or not b.any():
        return []
    u = xc[b].mean(0) - xc[a].mean(0)
    norm = float(np.linalg.norm(u))
    if not norm > 0:
        return []
    pos = xc @ (u / norm)
    gaps = {int(f): float(pos[(codes == f) & b].mean() - pos[(codes == f) & a].mean())
            for f in np.unique(codes[a | b]) if ((codes == f) & a).any() and ((codes == f) & b).any()}
    top = max(gaps.values(), default=0.0)
    return sorted(f for f, g in gaps.items() if top > 0 and g >= FEW_SAME_WAY * top)


def minority(r: LabelFreeResult) -> bool:
    """Is ``r``'s split a minority across families: cutting fewer than :data:`CROSS_SPLIT_RATE` of them,
    its smaller side made of models of at least :data:`MINORITY_FAMILIES` families with at most half
    their models there (each beside relatives on the other side), and, if some families have more than
    half there, most of the smaller side's models still of the others. Such a split is no family group,
    and its few models are mostly not decided by their init seed. (Before the eighteenth session no
    family could have more than half its models on the smaller side: an outside audit's minorities of
    12-16 models in as many families, plus one family with 2 of 2 or 3 of 4 there, as independent
    assignment gives in a third of such populations, were missed or read as seed-decided groups.)"""
    if (r.split_rate or 0) >= CROSS_SPLIT_RATE:
        return False
    if r.split_side_whole == 0:
        return r.split_side_families >= MINORITY_FAMILIES
    return (r.split_side_families - r.split_side_whole >= MINORITY_FAMILIES
            and 2 * r.split_side_light > r.split_side_models)


def _without_unknown(x: np.ndarray, family: Sequence, unknown: np.ndarray, n_null: int, random_state: int, k_max: int,
                     strata: Sequence[Sequence], nested: Sequence | None, generation: Sequence | None,
                     taken: np.ndarray | None = None, taken_cells: Sequence | None = None) -> LabelFreeResult:
    """:func:`label_free` of the models with a lineage value; each of the ``unknown`` ones (``[n]``
    bool) joins the candidate basin whose mean is nearest, and is in no within-family camp. Counting
    them as one family pools unrelated models; counting each as its own family passes relatives off
    as independent (measured: a null with 10 of 40 rows missing read `groups lineages` on 6 of 8
    fingerprints that way, 0 of 8 with its rows)."""
    rows = np.flatnonzero(~unknown)
    pick = lambda c: None if c is None else np.asarray(c, dtype=object)[rows]  # noqa: E731
    res = label_free(x[rows], pick(family), n_null, random_state, k_max, [pick(c) for c in strata], pick(nested),
                     None if generation is None else np.asarray(generation)[rows], None if taken is None else taken[rows],
                     pick(taken_cells))
    spread = {k: _extend(x, rows, getattr(res, k)) for k in ("group_basins", "split_families", "split_majority")}
    spread["split_basins"] = _extend(x, rows, res.split_basins, ~unknown if res.split_within else None)
    if res.split_all is not None:
        spread["split_all"] = _extend(x, rows, res.split_all)
    return replace(res, n_models=len(x), n_unknown=int(unknown.sum()), **spread)


def _within_split(x: np.ndarray, codes: np.ndarray, n_fam: int, n_null: int, rng: np.random.Generator,
                  strata: Sequence[np.ndarray] = (), nested: Sequence | None = None,
                  generation: Sequence | None = None, min_families: int = MIN_FAMILIES, taken: np.ndarray | None = None
                  ) -> tuple[float | None, float | None, np.ndarray]:
    """Members of a family in two camps, the same way across families: the lowest 1-D 2-means cluster
    index of the within-family residuals of ``x [n, d]`` (models with relatives only) along their top
    principal directions, its p-value against Gaussian members with the pooled within-family
    covariance, residualised as the data are (directions re-estimated per replicate), and the split
    ``[n]`` (``-1``: a model without relatives). ``(None, None, all -1)`` when too few models.

    ``strata``: known design factors crossed with the families (each ``[n]``: the data order, the
    kind of model), whose shared effects are lineage too (models trained on one data order are
    relatives across init families): the residuals are taken from an additive least-squares fit of
    family and every stratum whose values recur across families, so that a split along one of them
    is not a camp. ``nested`` ``[n]``: sub-families inside the init families (the root of each model's
    parent chain: a base model and its spawned or fine-tuned children), taken out the same way.
    ``generation`` ``[n]``: each model's generation in its parent chain; the relatives are then the
    models of one family *and* one generation (a base model imported beside its fine-tunes is not a
    member of their camps: measured on an outside audit's imports, base-vs-fine-tuned read as camps
    in 7 of 24 null fingerprints, and taking the generation out as a stratum instead lost the planted
    backdoor, the base models landing between its camps), so a model alone in its generation of its
    family is left out as a model without relatives is. ``min_families``: the fewest families with
    relatives to look in (:func:`_few_families` looks in two or three)."""
    cell = codes if generation is None else _generation_cells(codes, generation)
    counts = np.bincount(cell)
    rows = np.flatnonzero(counts[cell] >= 2)
    none = np.full(len(x), -1)
    _, fam = np.unique(codes[rows], return_inverse=True)
    n_f, m = int(fam.max(initial=-1)) + 1, len(rows)
    if n_f < min_families:  # too few families with relatives (none at all: every model its own family)
        return None, None, none
    blocks = [np.eye(n_f)[fam]]
    if generation is not None:  # a column per (family, generation) cell: the generations' means taken out
        _, gen_cell = np.unique(cell[rows], return_inverse=True)
        blocks.append(np.eye(int(gen_cell.max(initial=-1)) + 1)[gen_cell])
    if nested is not None:  # a column per parent-chain root with two or more members here
        _, sub = np.unique(np.asarray([str(v) for v in np.asarray(nested, dtype=object)[rows]]), return_inverse=True)
        size = np.bincount(sub)
        for v in np.flatnonzero(size >= 2):
            blocks.append((sub == v).astype(np.float64)[:, None])
    # a column per level shared by several families (a missing value is no level); every family here has relatives
    shared_levels = _level_indicators(fam, [np.asarray(col, dtype=object)[rows] for col in strata])
    levels = [] if shared_levels is None else [shared_levels]
    if taken is not None:  # --covariate's design: beside the families, no camp given its part back
        blocks.append(np.asarray(taken, dtype=np.float64)[rows])
    relatives = orthonormal(np.hstack(blocks))  # [m, r] the families (and cells, sub-families)
    basis = orthonormal(np.hstack([relatives, *levels])) if levels else relatives  # [m, rank] orthonormal
    rank = basis.shape[1]
    shared = None  # [m, t] what only the strata explain: a camp's part along them is given back to it
    if levels:
        t = np.hstack(levels)
        t = t - relatives @ (relatives.T @ t)
        shared = orthonormal(t) if np.abs(t).max() > 1e-9 else None
    k = min(MAX_DIMS, x.shape[1], m - rank)
    if k < 1:
        return None, None, none

    alone = len(blocks) == 1 and not levels  # the families alone: the fit is each family's mean
    fam_counts = np.bincount(fam).astype(np.float64)

    def residual(e: np.ndarray) -> np.ndarray:  # [..., m, k] minus the additive fit (its projection)
        if not alone:
            return e - basis @ (basis.T @ e)
        e3 = e.reshape(-1, m, e.shape[-1])  # (the same projection in O(m k), not O(m rank k): 30,000 models' 3 s)
        return (e3 - _batch_centroids(e3, fam, n_f, fam_counts)[:, fam]).reshape(e.shape)

    r = top_dims(residual(x[rows]), k)
    if not np.abs(r).max(initial=0.0) > 1e-12 * max(np.abs(x).max(), 1e-300):  # the members of every family identical
        return None, None, none
    min_side = within_floor(m)  # a camp, not a pair of outliers
    raw = None  # the camps of the families' residuals before the strata were taken out (a third start)
    third = shared is not None and _fully_recorded(fam, [np.asarray(col, dtype=object)[rows] for col in strata])
    if third:
        before = top_dims(x[rows] - relatives @ (relatives.T @ x[rows]), k)
        ci_raw, split_raw = projection_index(axis_projections(before), min_side)
        raw = split_raw[int(ci_raw.argmin())]
    level = _codes(["|".join(str(_level(v)) for v in vals) for vals in zip(*(np.asarray(c, dtype=object)[rows]
                                                                              for c in strata))])[0] if strata else None
    indices = _camp_indices(r, min_side, basis, shared, raw, None if level is None else (fam, level), third)
    sd = np.sqrt((r**2).sum(0) / (m - rank))  # pooled residual sd per direction
    null = np.concatenate([  # [statistics, n_null]: each replicate's lowest index, chunk by chunk
        [ci.min(-1) for ci, _ in _camp_indices(residual(rng.standard_normal((b, m, k)) * sd), min_side, basis, shared,
                                               cells=None if level is None else (fam, level), third=third)]
        for b in _chunks(n_null)], axis=1)
    lowest = np.array([ci.min() for ci, _ in indices])
    p_each = (1 + (null <= lowest[:, None]).sum(1)) / (n_null + 1)
    best = int(p_each.argmin())  # the first (the residuals' own camps) on a tie
    if len(indices) == 1:
        p = float(p_each[0])
    else:  # min-p over both statistics, calibrated on the same replicates (each replicate's own smaller p)
        null_p = rankdata(null, method="ordinal", axis=1) / (n_null + 1)  # [statistics, n_null]
        p = float((1 + (null_p.min(0) <= p_each.min()).sum()) / (n_null + 1))
    ci, split = indices[best]
    j = int(ci.argmin())
    out = none.copy()
    out[rows] = split[j]
    return float(ci[j]), p, out


def orthonormal(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis ``[m, r]`` of ``a [m, c]``'s columns (its rank ``r``, from the SVD)."""
    u, sv, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, sv > sv.max(initial=0.0) * max(a.shape) * np.finfo(float).eps]


def _camp_indices(c: np.ndarray, min_side: int, basis: np.ndarray, shared: np.ndarray | None,
                  raw: np.ndarray | None = None, cells: tuple[np.ndarray, np.ndarray] | None = None,
                  third: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """The camp statistics of within-family residuals ``c [..., m, k]``, each ``(index [..., k], splits
    [..., k, m])``: :func:`~analysis.sigclust.axis_index` of the residuals; and, with ``shared [m, t]``
    (the design strata's part orthogonal to the families), the same index after each direction's
    split, fitted jointly with the design (``basis [m, rank]``, least squares), is given back its part
    along the strata. The strata's means absorb a camp spread unevenly over their levels (4, 2, 5 and
    5 of 8 models of each data order: an outside audit of the twentieth session lost such a backdoor),
    which blurs the residuals' camps though the strata explain a tenth of the split; giving it back
    also gives a noise split its own part along the strata, so a camp spread evenly over them is
    tested better by the first. A third: the same given back to the camps the models form before the strata are
    taken out (``raw [m]``, the split of the families' residuals alone; a replicate, whose strata hold nothing, its
    own lowest-index split), unless that split lies mostly along the strata (:data:`OWN_SHARE`, as
    :func:`_split_given_back`): the residuals' own camps can be other than the planted one, whose part along the
    strata was the larger at the levels that held most of it (outside audit 123: a backdoor in 3 of each base's 10
    fine-tunes, 4 bases sharing 10 data orders, the orders holding 3, 2, 1 or none of it; five fingerprints
    separated it exactly once each base's mean was out, and the residuals' camps were another split). Without
    ``raw`` a replicate's own is taken, so data and replicates get the same statistics. Nor when one pattern of that
    split over the strata's values recurs in half the families it cuts or more (:func:`_recurring`; ``cells``: each
    model's family and strata level, codes ``[m]``): a data order's effect that differs between groups of families
    (outside audit 125's population whose learning rate was set per family: the orders' parity split every family
    of one rate the same way, and given back it read a lone camp at p 0.01). ``third`` false: no third statistic,
    for data and replicates alike (:func:`_fully_recorded`: a data order recorded in some families only).
    :func:`_within_split` takes the smallest p of them, calibrated as such on the same null replicates."""
    proj = axis_projections(c)  # [..., k, m]
    out = [projection_index(proj, min_side)]
    if shared is None:
        return out
    s = out[0][1].astype(np.float64)
    out.append(projection_index(proj + _given_back(s, proj, basis, shared), min_side))
    if not third:
        return out
    if raw is None:  # the lowest-index split of each replicate, broadcast over its directions
        pick = out[0][0].argmin(-1)  # [...]
        raw = np.take_along_axis(out[0][1], pick[..., None, None], axis=-2)[..., 0, :]
    s = np.broadcast_to(np.asarray(raw, np.float64)[..., None, :], proj.shape)
    s = s - s.mean(-1, keepdims=True)
    along, whole = ((s @ shared) ** 2).sum(-1), (s * s).sum(-1)  # [..., k]
    own = s - (s @ basis) @ basis.T
    mostly = ((own * own).sum(-1) < OWN_SHARE * whole) | (along > (1 - OWN_SHARE) * whole)
    if cells is not None:
        mostly = mostly | _recurring(np.asarray(raw), *cells)[..., None]
    out.append(projection_index(proj + np.where(mostly[..., None], 0.0, _given_back(s, proj, basis, shared)),
                                min_side))
    return out


def _fully_recorded(fam: np.ndarray, strata: Sequence[np.ndarray]) -> bool:
    """Whether every model ``[m]`` has, in each stratum column with a level shared by two families or more, one of
    those shared levels (``fam [m]``: family codes). Review 128: a data order left blank in some families, or named
    by each family alone there, while those families' models shared the orders: the third start followed the
    unrecorded orders' effects, given back it rebuilt them in the recorded families too, and the within-family test
    read p <= 0.05 in 24-47% of such nulls (2-6% before). Without a full record the third start is not taken."""
    return all(ind is None or (ind.sum(1) == 1).all() for ind in (_level_indicators(fam, [col]) for col in strata))


RECURRING_SHARE = 0.5  # a split's pattern over the strata's values in this share of the families it cuts (and 3): recurring


def _recurring(splits: np.ndarray, fam: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Whether each split ``[..., m]`` (0/1) cuts the families ``fam [m]`` (codes) the same way over the strata's
    levels ``level [m]`` (codes) in :data:`RECURRING_SHARE` of the families it cuts or more, and in 3 or more:
    ``[...]`` (bool). A family's pattern is the sides of its models ordered by level, with its levels; a family
    wholly on one side has none (a small camp leaves most families so). Families of over 62 models are left out."""
    lead, m = splits.shape[:-1], splits.shape[-1]
    sp = np.asarray(splits).reshape(-1, m).astype(np.int64)
    groups = [r[np.argsort(level[r], kind="stable")] for r in (np.flatnonzero(fam == f) for f in range(int(fam.max()) + 1))]
    groups = [r for r in groups if 2 <= len(r) <= 62]
    if len(groups) < 3:
        return np.zeros(lead, bool)
    keys = np.stack([sp[:, r] @ (np.int64(1) << np.arange(len(r), dtype=np.int64)) for r in groups], 1)  # [b, F]
    mixed = np.stack([(sp[:, r].min(1) == 0) & (sp[:, r].max(1) == 1) for r in groups], 1)  # [b, F] cut families
    kinds = _codes([tuple(level[r].tolist()) for r in groups])[0]  # [F] each family's levels
    out = np.zeros(len(sp), bool)
    for b in range(len(sp)):
        cut = np.flatnonzero(mixed[b])
        if len(cut) >= 3:
            _, counts = np.unique(np.stack([keys[b, cut], kinds[cut]], 1), axis=0, return_counts=True)
            out[b] = counts.max() >= max(3, RECURRING_SHARE * len(cut))
    return out.reshape(lead)


def _given_back(s: np.ndarray, proj: np.ndarray, basis: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """The part along the strata (``shared [m, t]``) of splits ``s [..., k, m]``, times their effect along each
    direction ``proj [..., k, m]`` fitted jointly with the design (``basis [m, rank]``): ``[..., k, m]``, what the
    strata's means absorbed of each camp."""
    own = s - (s @ basis) @ basis.T  # the split's part the design does not explain
    delta = (own * proj).sum(-1) / np.maximum((own * own).sum(-1), 1e-300)  # its effect, fitted with the design
    return delta[..., None] * ((s @ shared) @ shared.T)


def _with_generation_relatives(codes: np.ndarray, generation: Sequence | None) -> np.ndarray | None:
    """Models ``[n]`` (bool) the all-model split looks at when parent links give generations: all but
    a model alone in its generation of a family that has other models. ``None``: all of them (also
    when fewer than :data:`MIN_FAMILIES` families or twice as many models would be left, e.g. every
    family a base and one fine-tune: then the generation is only projected out, as a stratum)."""
    if generation is None:
        return None
    cell = _generation_cells(codes, generation)
    keep = (np.bincount(cell)[cell] >= 2) | (np.bincount(codes)[codes] == 1)
    if keep.all() or len(np.unique(codes[keep])) < MIN_FAMILIES or keep.sum() < 2 * MIN_FAMILIES:
        return None
    return keep


def _generation_cells(family: Sequence, generation: Sequence) -> np.ndarray:
    """Each model's (family, generation) cell ``[n]`` as codes: the relatives of a model when parent
    links give generations (a base model and its fine-tunes are in different cells of one family)."""
    return _codes([f"{f}|{g}" for f, g in zip(family, np.asarray(generation))])[0]


def _all_split(x: np.ndarray, codes: np.ndarray, n_fam: int, n_split: int, rng: np.random.Generator,
               strata: Sequence[np.ndarray] = (), null: str = "plug-in", taken: np.ndarray | None = None
               ) -> tuple[float, float, np.ndarray]:
    """The 2-means cluster index of all models ``x [n, d]`` (centred), its p-value against a
    hierarchical Gaussian null (``n_split`` replicates, a family's clump one unit, not m points), and
    the split ``[n]``. Known design factors shared across families (``strata``: a data order, the
    generation in a parent chain) are taken out of the members first, data and null alike: their
    within-family contrasts are projected out (family centroids untouched), so a split along them is
    not a camp here either; and the index is also taken with the camps fitted jointly with them
    (:func:`_joint_index`), the smaller p of the two calibrated on the same replicates.

    ``null="plug-in"`` (the default): family effects drawn from N(0, cov_c), cov_c the centroids'
    covariance minus the within part, members from the pooled within-family covariance. cov_c is
    estimated from few centroids, so its eigenvalues spread wider than the truth's, the replicates look
    more split than the data, and the test is conservative (raw p <= 0.05 in 0 of 1,200 Gaussian
    nulls). ``null="rotation"`` (measured, not the default): each replicate keeps the data's between-family and
    within-family scatter matrices exactly and draws only their arrangement: the (size-weighted)
    centroids and the within-family residuals are rotated by random orthonormal frames in their own
    subspaces (orthogonal to the grand mean, resp. to the families and the design contrasts). For
    Gaussian family effects and members with equal family sizes that arrangement is uniform given
    the scatter matrices, so the test is exact whatever the covariances (a rotation test). With
    unequal sizes each centroid is weighted by ``1 / sqrt(tr cov_c + tr cov_w / m)`` first (its sd,
    isotropic approximation). Calibrated on Gaussian nulls (5.5%), twice the power on planted splits,
    but anti-conservative on skewed and heavy-tailed ones (raw p <= 0.05 in 30-37% of log-normal
    nulls), and on the outside audits' real null zoos it added 3 false deep verdicts in 136 (1 -> 4)
    for 2 true ones in 72 planted (45 -> 47): real fingerprints are not Gaussian, so the default stays
    the conservative null (docs/results.md, "All-model split: a calibrated null, measured")."""
    if null not in ("rotation", "plug-in"):
        raise ValueError(f"unknown all-model null {null!r} (valid: rotation, plug-in)")
    n = len(x)
    counts = np.bincount(codes, minlength=n_fam).astype(np.float64)
    design = _stratum_contrasts(codes, n_fam, strata)
    n_design = 0 if design is None else design.shape[1]
    x_all = x if design is None else x - design @ (design.T @ x)
    dims = min(MAX_DIMS, x.shape[1])
    xr = top_dims(x_all, dims)
    cent_r, _ = _centroids(xr, codes, n_fam)
    resid = xr - cent_r[codes]
    cov_w = resid.T @ resid / max(n - n_fam - n_design, 1)
    cov_c = np.cov(cent_r.T, ddof=1).reshape(dims, dims) - cov_w * float(np.mean(1 / counts))
    if taken is not None:  # the centroids' scatter lost to the design's fit, given back to the family effects drawn
        rank_f = orthonormal(_centred(_centroids(np.asarray(taken, dtype=np.float64), codes, n_fam)[0])).shape[1]
        cov_c *= (n_fam - 1) / max(n_fam - 1 - rank_f, 1)
    min_side = all_split_floor(n)
    ci_arr, full_split = cluster_index(xr[None], min_size=min_side)

    def residualised(e: np.ndarray) -> np.ndarray:  # [b, n, k] minus family means and the strata's contrasts
        e = e - _batch_centroids(e, codes, n_fam, counts)[:, codes]
        return e if design is None else e - design @ (design.T @ e)

    if null == "rotation":
        tr_c, tr_w = max(float(np.trace(cov_c)), 0.0), float(np.trace(cov_w))
        w = 1 / np.sqrt(tr_c + tr_w / counts) if tr_c + tr_w > 0 else np.ones(n_fam)
        y = cent_r * w[:, None]
        y = y - np.outer(w, w @ y) / (w @ w)  # the weighted grand mean out (it moves every model alike)
        between, within = _frame_factor(y), _frame_factor(resid)

        def replicate(b: int) -> np.ndarray:
            g = rng.standard_normal((b, n_fam, between.shape[0]))
            g = g - w[:, None] * np.einsum("f,bfk->bk", w, g)[:, None] / (w @ w)
            c = (_haar_frame(g) @ between) / w[:, None]
            e = _haar_frame(residualised(rng.standard_normal((b, n, within.shape[0])))) @ within
            return c[:, codes] + e
    else:
        vals, vecs = np.linalg.eigh(cov_c)
        root_c = vecs * np.sqrt(np.clip(vals, 0, None))
        vals_w, vecs_w = np.linalg.eigh(cov_w)
        root_w = vecs_w * np.sqrt(np.clip(vals_w, 0, None))

        def replicate(b: int) -> np.ndarray:  # member noise residualised on the strata as the data are
            e = rng.standard_normal((b, n, dims)) @ root_w.T
            e = e if design is None else e - design @ (design.T @ e)
            return (rng.standard_normal((b, n_fam, dims)) @ root_c.T)[:, codes] + e

    draw = replicate if taken is None else (lambda b: _taken_out(replicate(b), taken, min_side))  # as the data were
    if design is None or taken is not None:  # (--covariate's fit gives its own part back: _taken_out)
        null_b = np.concatenate([  # in chunks: n_null x n x dims floats at once would not scale
            cluster_index(draw(b), min_size=min_side)[0] for b in _chunks(n_split)])
        ci_c = float(ci_arr[0])
        return ci_c, float((1 + (null_b <= ci_c).sum()) / (n_split + 1)), full_split[0]
    # with strata, a second statistic: the camps fitted jointly with the strata (audit 101: a rule drawn per model, one
    # data order of which held one side only, lost to that order's mean), :func:`_joint_index`; the smaller p of the
    # two, calibrated on the same replicates (each replicate's own smaller p)
    raw_split = cluster_index(top_dims(x - x.mean(0), dims)[None], min_size=min_side)[1]
    levels = _stratum_levels(codes, strata)
    joint_ci, joint_split = _joint_index(xr[None], (full_split, raw_split), design, levels, min_side)

    def both(e: np.ndarray) -> np.ndarray:  # [2, b]; a replicate's strata hold nothing, so it is its own raw start
        ci, sp = cluster_index(e, min_size=min_side)
        return np.stack([ci, _joint_index(e, (sp,), design, levels, min_side)[0]])

    null = np.concatenate([both(draw(b)) for b in _chunks(n_split)], axis=1)  # [2, n_split]
    obs = np.array([ci_arr[0], joint_ci[0]])
    p_each = (1 + (null <= obs[:, None]).sum(1)) / (n_split + 1)
    # each replicate's p among the others and the data (the data beyond them all leave each replicate's p above its own)
    null_p = (rankdata(null, method="ordinal", axis=1) + (obs[:, None] <= null)) / (n_split + 1)
    p = float((1 + (null_p.min(0) <= p_each.min()).sum()) / (n_split + 1))
    z = (obs - null.mean(1)) / np.maximum(null.std(1), 1e-300)  # on a tie, the index further below its null's
    best = min(range(2), key=lambda i: (p_each[i], z[i]))
    return float(obs[best]), p, (full_split, joint_split)[best][0]


def _joint_index(x: np.ndarray, starts: Sequence[np.ndarray], design: np.ndarray, levels: np.ndarray, min_side: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The 2-means cluster index ``[b]`` and split ``[b, n]`` of models ``x [b, n, k]`` (the strata's within-family
    contrasts ``design [n, r]`` projected out) with the camps fitted jointly with the strata: each start's split
    ``[b, n]`` given back its part along the strata (:func:`_split_given_back`), the lowest index of the starts. A
    level's mean absorbs as much of a camp as its models carry, all of it when the level holds one camp only: then
    the models' own split (the first start) halves that level and keeps it so; the split of the models before the
    strata were taken out (a second start) keeps it whole."""
    out = [cluster_index(_split_given_back(x, s, design, levels), min_size=min_side) for s in starts]
    ci = np.stack([c for c, _ in out])  # [starts, b]
    # on a tie the last start: a camp that one level holds most of has a mirror in that level (the level's other
    # models, moved the other way by its mean), which given back ties with it; the fingerprint's own split before
    # the strata were taken out holds the camp (audit 102: 4 models of one order, the mirror returned and held small)
    tied = ci <= ci.min(0) + 1e-9 * np.abs(ci.min(0))
    pick = len(starts) - 1 - tied[::-1].argmax(0)
    return ci[pick, np.arange(ci.shape[1])], np.stack([sp for _, sp in out])[pick, np.arange(ci.shape[1])]


OWN_SHARE = 0.5  # a split given its part along the strata back has at least this share of its own (of its sum of squares)


def _split_given_back(x: np.ndarray, split: np.ndarray, design: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Models ``x [b, n, k]`` (the strata's within-family contrasts ``design [n, r]`` projected out) given back
    the part along those contrasts of their own 2-means ``split [b, n]``, its effect fitted jointly with the
    design (least squares): a level's mean absorbs as much of a camp as its models carry, all of it when the
    level holds one camp only, and the camps blur (the all-model split's twin of :func:`_camp_indices`). A split
    mostly along the strata gives nothing back: its own part (beside the contrasts) under :data:`OWN_SHARE` of it,
    or its part along the levels themselves (``levels [n, l]``, centred over all models) more than the rest (a rule
    the data order decides is that order's; a split of the orders' own effects, which with levels unevenly spread
    over the families stay in the families' means too, is no camp: review 101)."""
    s = split - split.mean(1, keepdims=True)  # [b, n]
    along = (s @ design) @ design.T  # [b, n] the split's part the strata explain
    own = s - along  # ... and its own part
    size, whole = (own * own).sum(1), (s * s).sum(1)
    delta = np.einsum("bn,bnk->bk", own, x) / np.maximum(size, 1e-300)[:, None]  # [b, k]
    by_level = ((s @ levels) ** 2).sum(1)
    delta[(size < OWN_SHARE * whole) | (by_level > (1 - OWN_SHARE) * whole)] = 0.0
    return x + along[..., None] * delta[:, None, :]


def _stratum_levels(codes: np.ndarray, strata: Sequence[np.ndarray]) -> np.ndarray:
    """An orthonormal basis ``[n, l]`` of the strata's levels as :func:`_stratum_contrasts` takes them, centred over
    all models, not within the families."""
    s = _level_indicators(codes, strata)
    return np.zeros((len(codes), 0)) if s is None else orthonormal(s - s.mean(0))


def _level_indicators(codes: np.ndarray, strata: Sequence[np.ndarray]) -> np.ndarray | None:
    """The indicators ``[n, l]`` of every stratum level shared by two or more families with relatives (a missing
    value is no level), or ``None`` without one."""
    counts = np.bincount(codes)
    related = counts[codes] >= 2
    cols = []
    for col in strata:
        vals = np.asarray([_level(v) for v in np.asarray(col, dtype=object)], dtype=object)
        for v in sorted({v for v in vals[related].tolist() if v is not None}):
            if len(np.unique(codes[related & (vals == v)])) >= 2:
                cols.append((vals == v).astype(np.float64))
    return np.stack(cols, 1) if cols else None


def _batch_centroids(e: np.ndarray, codes: np.ndarray, n_fam: int, counts: np.ndarray) -> np.ndarray:
    """Family means ``[b, n_fam, k]`` of each replicate ``e [b, n, k]`` (every family has a model)."""
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.cumsum(counts[:-1])].astype(int)
    return np.add.reduceat(e[:, order], starts, axis=1) / counts[None, :, None]


def _frame_factor(a: np.ndarray) -> np.ndarray:
    """``a [m, k]``'s thin SVD without its left frame: ``S V^T [r, k]`` over its ``r`` nonzero
    singular values (at least one row, zeros when ``a`` is zero), so a random frame ``[m, r]`` times it
    has ``a``'s scatter matrix ``a^T a``."""
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    r = max(int((sv > sv.max(initial=0.0) * max(a.shape) * np.finfo(float).eps).sum()), 1)
    return sv[:r, None] * vt[:r]


def _haar_frame(g: np.ndarray) -> np.ndarray:
    """Orthonormal frames ``[b, m, r]`` uniform on the subspace that Gaussian ``g [b, m, r]`` (already
    projected onto it) spans: its QR's Q with the signs fixed by R's diagonal (Mezzadri 2007)."""
    q, r = np.linalg.qr(g)
    sign = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    return q * np.where(sign == 0, 1.0, sign)[:, None, :]


def _stratum_contrasts(codes: np.ndarray, n_fam: int, strata: Sequence[np.ndarray]) -> np.ndarray | None:
    """An orthonormal basis ``[n, r]`` of the strata's within-family contrasts: a column per level
    shared by two or more families with relatives (as :func:`_within_split` takes them), centred in
    each family, so that projecting it out removes a design factor's effect on the members and leaves
    the family centroids as they are. ``None`` without such a level (nothing to take out)."""
    s = _level_indicators(codes, strata)
    if s is None:
        return None
    s = s - _centroids(s, codes, n_fam)[0][codes]
    u, sv, _ = np.linalg.svd(s, full_matrices=False)
    if not sv.max(initial=0.0) > 1e-9:  # every level constant inside each family: no contrast
        return None
    return u[:, sv > sv.max() * max(s.shape) * np.finfo(float).eps]


def _centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(0)


def _taken_out(e: np.ndarray, design: np.ndarray, min_size: int) -> np.ndarray:
    """Replicates ``e [b, m, k]`` fitted as a ``--covariate`` fingerprint was
    (:func:`analysis.covariates.taken_out`): less a mean and their least-squares fit of the (centred)
    ``design [m, p]``, then given back the part of that fit that their residuals' 2-means split (each
    side at least ``min_size``) explains jointly with the design. Without the fit, pairs of models alone
    in a level (mirror images once their mean is out) read p <= 0.05 in 13-17% of nulls (review 92);
    without the give-back, 6-13.5% of nulls of 4 levels of 6 models did against the data's (two runs)
    (docs/scorecard.md, "Taking a recorded setting out")."""
    d = np.asarray(design, dtype=np.float64)
    q = orthonormal(_centred(d)) if d.shape[1] else d
    e = e - e.mean(-2, keepdims=True)
    if q.shape[1] == 0:
        return e
    r = e - q @ (q.T @ e)
    return give_back(r, q, cluster_index(r, min_size=min_size)[1])[0]


def give_back(r: np.ndarray, q: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals ``r [b, m, k]`` (orthogonal to the orthonormal ``q [m, p]``) plus the part of the fit on
    ``q`` that each replicate's ``split [b, m]`` explains jointly with it, and which replicates had any
    (``[b]``: a split the design decides has nothing of its own)."""
    s = split.astype(np.float64)
    s = s - s.mean(1, keepdims=True)
    inside = (s @ q) @ q.T  # [b, m] the split's part that the fit took
    u = s - inside
    uu = (u * u).sum(1)
    ok = uu > 1e-9 * (s * s).sum(1)
    coef = np.einsum("bm,bmk->bk", u, r) / np.where(ok, uu, 1.0)[:, None]
    return r + (ok[:, None] * inside)[:, :, None] * coef[:, None, :], ok


def _exchangeable_cells(generation: Sequence | None, taken_cells: Sequence | None) -> np.ndarray | None:
    """``[n]`` codes of the cells whose models the lineage permutations may exchange (``None``: all of them):
    a generation's, and the levels ``--covariate`` took out (``taken_cells``: each model's level across the
    columns fitted as levels; a trend's values are no cells). Residuals of a level's mean are exchangeable
    inside the level only; across levels, permuted families drew models of one level together where the
    data's drew one of each, or the reverse (measured, ``scripts/covariate_calibration.py --lineage``: a
    setting's levels inside every family read lineage in 15-21% of populations with none at p <= 0.05;
    whole families nested in the levels in 0%, with the power at a family effect of 0.5 SD down from 1.00
    to 0.37-0.65; review 95: the levels guessed from the design's rows were lost beside a trend column,
    21.7% of nulls)."""
    keys = [_codes(np.asarray(k))[0] for k in (generation, taken_cells) if k is not None]
    if not keys:
        return None
    return _codes(np.asarray(["\x1f".join(map(str, k)) for k in zip(*keys)], dtype=object))[0]


def _families_meet(cells: np.ndarray, codes: np.ndarray) -> bool:
    """Whether some cell of ``cells`` ``[n]`` holds models of two families or more (``codes`` ``[n]``): else no
    permutation inside the cells moves a model to another family."""
    return len({(int(c), int(f)) for c, f in zip(cells, codes)}) > len(set(cells.tolist()))


def _chunks(n: int) -> list[int]:
    """Null replicates simulated :data:`NULL_CHUNK` at a time: the chunks' sizes, summing to ``n``."""
    return [NULL_CHUNK] * (n // NULL_CHUNK) + ([n % NULL_CHUNK] if n % NULL_CHUNK else [])


def _cut_rate(split: np.ndarray, codes: np.ndarray, families: np.ndarray) -> float:
    """The share of ``families`` whose members ``split [n]`` puts on both sides (``-1``, no side, ignored)."""
    cut = [len(np.unique(split[(codes == f) & (split >= 0)])) > 1 for f in families]
    return float(np.mean(cut)) if cut else 0.0


def _level(v) -> str | None:
    """A stratum value as a level: ``None`` for a missing one (:func:`missing`); ``1`` and ``1.0`` alike."""
    if missing(v):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def family_tree(coords: np.ndarray, family: Sequence, max_families: int = MAX_TREE_FAMILIES) -> dict | None:
    """Models -> families -> groups as a tree: the average-linkage dendrogram (Euclidean) of the
    init families' centroids in ``coords [n, d]`` (the coordinates the tests ran in). Returns
    ``{"families": names, "sizes": members each, "linkage": scipy's [n_families - 1, 4] matrix}``,
    or ``None`` with fewer than 2 or more than ``max_families`` families."""
    from scipy.cluster.hierarchy import linkage

    codes, names = _codes(family)
    if not 2 <= len(names) <= max_families:
        return None
    x = np.asarray(coords, dtype=np.float64)
    cent, counts = _centroids(x - x.mean(0), codes, len(names))
    z = linkage(cent, method="average")
    return {"families": names, "sizes": counts.astype(int).tolist(), "linkage": np.round(z, 6).tolist()}


def _extend(x: np.ndarray, rows: np.ndarray, basins: np.ndarray | None, eligible: np.ndarray | None = None
            ) -> np.ndarray | None:
    """Basins ``[len(rows)]`` found on a sample, extended to every model ``[n]`` by the nearest basin
    mean; models not ``eligible`` (e.g. without relatives, for within-family camps) get -1."""
    if basins is None:
        return None
    labels = np.unique(basins[basins >= 0])  # -1: no basin (a model without relatives)
    if not len(labels):
        return np.full(len(x), -1)
    means = np.stack([x[rows][basins == b].mean(0) for b in labels])
    out = labels[((x[:, None, :] - means[None]) ** 2).sum(2).argmin(1)]
    if eligible is not None:
        out[~eligible] = -1
    out[rows] = basins
    return out


def _family_sizes(family: np.ndarray) -> np.ndarray:
    """Each model's family size ``[n]``."""
    codes, _ = _codes(family)
    return np.bincount(codes)[codes]


def _family_centred(x: np.ndarray, family: np.ndarray) -> np.ndarray:
    """``x [n, d]`` minus each model's family mean (whole families are sampled, so a family's mean is
    the same over the sample and over everyone; where a few large families are sampled member by
    member, :func:`~analysis.resampling.family_sample`, about the same)."""
    codes, names = _codes(family)
    cent, _ = _centroids(x, codes, len(names))
    return x - cent[codes]


def _group_families(cent: np.ndarray, k_max: int, split: np.ndarray) -> np.ndarray:
    """Each family's group ``[n_families]``: the 2-means split, or more groups where k-means with a
    higher silhouette finds them (every group at least two families)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    best, best_s = split.astype(int), -1.0
    n_fam = len(cent)
    if len(np.unique(best)) == 2 and n_fam > 2:
        best_s = silhouette_score(cent, best)
    for k in range(3, min(k_max, n_fam // 2) + 1):
        with warnings.catch_warnings():  # fewer distinct centroids than k (a discrete fingerprint): an empty group,
            warnings.simplefilter("ignore", ConvergenceWarning)  # skipped below; not a warning for the user (audit 79)
            lab = KMeans(k, n_init=10, random_state=0).fit_predict(cent)
        if np.bincount(lab).min() < 2:
            continue
        s = silhouette_score(cent, lab)
        if s > best_s:
            best, best_s = lab, s
    return best


def _small_partitions(r: LabelFreeResult) -> dict[str, dict]:
    """The candidate partitions of ``r`` (``"split"``, ``"split_families"``, ``"split_majority"``, ``"groups"``) whose size
    (:class:`analysis.effect.SizedLabelFree`'s ``effects``) is small: basins closer than the two
    halves of one Gaussian cloud, which no deep verdict is made of (docs/scorecard.md, "How big is the
    difference"), or, but for ``"split_majority"`` (a guard on the families' sides only), without a gap
    between them (``no_gap``: the models spread along the line between the basins as one continuum,
    Hartigan's dip test; "A gap between the camps"), or fewer steps of the fingerprint's resolution apart
    than ``effect.MIN_STEPS`` (``coarse``: camps that differ on an input or so). Empty for a result without sizes."""
    effects = getattr(r, "effects", None) or {}
    return {k: e for k, e in effects.items()
            if (e or {}).get("small") or (e or {}).get("coarse") or ((e or {}).get("no_gap") and k != "split_majority")}


def _split_verdict(r: LabelFreeResult, small: dict[str, dict], enough: bool = True) -> tuple[str, np.ndarray] | None:
    """The verdict and candidate basins a significant split test of ``r`` gives (:func:`decide`'s ladder): ``crosses
    lineage`` with ``split_basins`` when the split cuts enough families (or is a :func:`minority`) and is not small
    (``enough``: enough cut families with two or three families), else ``groups lineages`` with ``split_families``
    when it cuts few, at least two families are on each side and neither partition of the families' sides is
    small; ``None`` otherwise."""
    if ((r.split_rate or 0) >= CROSS_SPLIT_RATE or minority(r)) and "split" not in small and enough:
        return "crosses lineage", r.split_basins
    if ((r.split_rate or 0) < CROSS_SPLIT_RATE and (r.split_min_families is None or r.split_min_families >= 2)
            and "split_families" not in small and "split_majority" not in small):
        return "groups lineages", r.split_families
    return None


def _all_model_camps(r: LabelFreeResult) -> LabelFreeResult:
    """``r`` with the split of all models back in place of the within-family camps that replaced it (their p-value
    was smaller), when those camps are held back by their size (:func:`_small_partitions`) and the split of all
    models, sized as ``"split_all"``, is not: its own p-value (doubled, for the two statistics looked at) is the
    split test's then. An outside audit (103): a backdoor in 12 of 24 GRUs, 8 families of 3, was the split of all
    models (6.2 SDs apart, p 0.005), but the within-family camps (another split, 0.96 SDs apart, p 0.0025) took
    its place and were held back as small: "no candidate", though two fingerprints' own clusters were the backdoor."""
    small = _small_partitions(r)
    effects = getattr(r, "effects", None) or {}
    if not r.split_within or r.split_all is None or "split" not in small or "split_all" not in effects \
            or "split_all" in small:
        return r
    return replace(r, split_basins=r.split_all, split_within=False, p_split=r.p_split_all, split_rate=r.split_rate_all,
                   effects={**effects, "split": effects["split_all"]})


def _blocking(r: LabelFreeResult, sig: dict[str, float], small: dict[str, dict]) -> dict[str, dict]:
    """The partitions of ``small`` that kept a significant test from its deep verdict in
    :func:`decide`'s ladder (the split's own when it cuts enough families to cross lineage, else its
    families' sides; the centroid groups'), for the sentence that says why: not a partition the
    ladder never used."""
    keys = []
    if "split" in sig:
        keys += ["split"] if (r.split_rate or 0) >= CROSS_SPLIT_RATE or minority(r) else ["split_families", "split_majority"]
    if "groups" in sig:
        keys.append("groups")
    return {k: small[k] for k in keys if k in small}


# the result's field of each partition :func:`_blocking` names (the others' fields have their names)
HELD_BASINS = {"split": "split_basins", "groups": "group_basins"}


def held_reason(blocking: dict[str, dict]) -> str | None:
    """Why the first partition of ``blocking`` (:func:`_blocking`) kept a significant test from a deep
    verdict, as its sentence says it (:func:`analysis.labelfree_sentences.with_unconfirmed`): ``"small"``
    (closer than two halves of one Gaussian cloud), ``"coarse"`` (an input or so apart), ``"no gap"``
    (one continuum along the line joining the camps: a graded difference cut in two), ``"few"`` (no gap a test can
    see beside a camp of :data:`~analysis.labelfree_sentences.FEW_MODELS` models or fewer), else ``None``."""
    if not blocking:
        return None
    e = next(iter(blocking.values())) or {}
    if e.get("small") or e.get("coarse"):
        return "small" if e.get("small") else "coarse"
    if not e.get("no_gap"):
        return None
    return "few" if few_models(e) else "no gap"


MAX_NULL = 9_999  # the most null replicates :func:`replicates_to_decide` asks for
MC_LEVEL = 0.99  # the confidence of a Monte Carlo p-value's interval (:func:`mc_interval`, :func:`undecided`)


def _adjusted(results: Sequence[LabelFreeResult]) -> dict[tuple[int, str], float]:
    """Benjamini-Hochberg adjusted p-values of every test of ``results``, by ``(index, test)``."""
    pvals = [(i, name, p) for i, r in enumerate(results)
             for name, p in zip(TESTS, (r.p_lineage, r.p_groups, r.p_split)) if p is not None]
    if not pvals:
        return {}
    adj = false_discovery_control([p for _, _, p in pvals], method="bh")
    return {(i, name): float(a) for (i, name, _), a in zip(pvals, adj)}


def _own(q: dict[tuple[int, str], float], i: int) -> dict[str, float]:
    """The adjusted p-values of the ``i``-th result's tests, by test name."""
    return {name: q[(i, name)] for name in TESTS if (i, name) in q}


def replicates_for(n_tests: int, alpha: float) -> int:
    """Null replicates that put a deep test's floor (:func:`~analysis.labelfree_sentences.p_floor`, at most ``2 / (n + 1)``) at ``alpha
    / (2 n_tests)``: a test at that floor is significant after the Benjamini-Hochberg correction over
    ``n_tests`` tests even when it is the only small p-value among them (its q is ``alpha / 2``)."""
    return min(MAX_NULL, int(np.ceil(4 * n_tests / alpha)) - 1)


def replicates_to_decide(results: Sequence[LabelFreeResult], alpha: float = 0.05) -> dict[int, int]:
    """``{index: n_null}`` for each result of ``results`` whose split, groups or lineage test sits at
    the floor of its null replicates and is not significant after :func:`decide`'s correction (the
    lineage test since ``METHODS_VERSION`` 24: an outside audit, 74, read families the clusters were
    exactly, at p 0.005, as "no structure" on a null where only two other tests were significant): with more
    replicates (:func:`replicates_for` the number of tests) its p-value could go lower and decide it.
    And a groups or split test above its floor whose decision its Monte Carlo error could turn (:func:`undecided`:
    its q, or a split's raw p, against alpha), with :func:`replicates_for` the number of tests: at 199 replicates a
    report's ``--seed`` decided such tests (outside audit 109).
    Not a test that a smaller floor could not change (significant already, or some null replicate as
    extreme as the data) and whose decision is clear, and nothing when ``n_null`` is that large already. A fingerprint
    drawn again is decided on the second run's p-values, each a valid Monte Carlo p-value; choosing which to draw
    again from the first run costs a little of the level (docs/scorecard.md, "Null replicates")."""
    results = [_all_model_camps(r) for r in results]  # as decide corrects them
    q = _adjusted(results)
    need = replicates_for(len(q), alpha)
    out = {}
    for (i, test), qv in q.items():
        r = results[i]
        p = {"groups": r.p_groups, "split": r.p_split, "lineage": r.p_lineage}.get(test)
        if p is None or not r.n_null or r.n_null >= need:
            continue
        if qv > alpha and at_floor(p, r.n_null, test):
            out[i] = need
        elif test != "lineage" and not at_floor(p, r.n_null, test) \
                and (test == "groups" or r.ci_within is not None) and undecided(p, qv, r.n_null, test, alpha):
            out[i] = need  # (a split of fewer than 4 families with relatives is not doubled: another unit, left out)
    return out


def mc_interval(p: float, n_null: int, test: str, level: float = MC_LEVEL) -> tuple[float, float]:
    """``(low, high)``: where the raw p-value ``p`` of ``test`` would be with unlimited null replicates, at
    ``level`` confidence (Clopper-Pearson on the count of replicates as extreme as the data, out of the
    ``n_null`` replicates of the groups and lineage statistics or the ``2 n_null + 1`` of the split's, scaled as
    ``p`` is: doubled for the two statistics of the groups and the split)."""
    m = 2 * n_null + 1 if test == "split" else n_null
    unit = p_floor(n_null, test)  # p = unit * (1 + b), b the replicates as extreme as the data
    b = min(m, max(0, int(round(p / unit)) - 1))
    scale = unit * (m + 1)  # p = scale * (1 + b) / (m + 1): the statistic's own p, scaled
    ci = binomtest(b, m).proportion_ci(level, method="exact")  # Clopper-Pearson
    return min(1.0, scale * ci.low), min(1.0, scale * ci.high)


def undecided(p: float, qv: float, n_null: int, test: str, alpha: float) -> bool:
    """Could the Monte Carlo error of ``test``'s raw p-value ``p`` (:func:`mc_interval`) put its adjusted ``qv``
    (taken to scale with it: a heuristic, the correction's q is not exactly proportional) on the other side of
    ``alpha``, or, for a split, the raw p itself? The q decides every verdict, a split's raw p whether it is
    "significant before the correction" (the unconfirmed lead). An outside audit (109)
    re-reported 70 populations at four ``--seed`` values: a GRU backdoor's split read p 0.005 at one seed and
    0.030-0.035 at three (a candidate at one seed, a lead or nothing at the others), a null's groups test p 0.002-0.004
    refined from its floor at two seeds and 0.02-0.03, one replicate above the floor and never refined, at the others."""
    if p <= 0 or p >= 1:
        return False
    lo, hi = mc_interval(p, n_null, test)
    return (test == "split" and lo <= alpha < hi) or (qv * lo / p <= alpha < qv * hi / p)


def decide(results: Sequence[LabelFreeResult], alpha: float = 0.05) -> list[LabelFreeResult]:
    """Verdicts for several fingerprints, after a Benjamini-Hochberg correction over all their
    tests. A deep verdict needs its test significant: the split of all models (``crosses lineage``
    when it cuts at least :data:`CROSS_SPLIT_RATE` of the families with relatives or is a
    :func:`minority` of models from several families, mostly beside relatives on the other side, else ``groups
    lineages`` with each whole family on its side and each model of a cut family on its own, the cut
    families named: ``cut_families``; neither that partition nor each family on its majority side
    small), else the centroid groups. Each result's ``q`` is its verdict's
    adjusted p-value, and ``q_tests`` every one of its tests' (for the answer, which reads which tests
    were significant without a deep verdict, and which found the lineage)."""
    results = [_all_model_camps(r) for r in results]
    q = _adjusted(results)
    out = []
    for i, r in enumerate(results):
        if r.verdict == "insufficient":  # no candidate basins to join: the unknown ones only counted, if some are known
            known = 0 < r.n_unknown < r.n_models
            out.append(replace(r, q_tests=_own(q, i), sentence=r.sentence.rstrip(".") + "." + unknown_note(r, basins=False) if known else r.sentence))
            continue
        sig = {name: q[(i, name)] for name in TESTS if (i, name) in q and q[(i, name)] <= alpha}
        small = _small_partitions(r)  # closer than two halves of one Gaussian cloud, or no gap: not a basin
        cut: tuple[str, ...] = ()  # the families a `groups lineages` split cuts
        few = r.n_families < MIN_FAMILIES  # two or three: camps inside the families only (_few_families)
        enough = not few or len(r.cut_families) >= FEW_CUT_FAMILIES
        split_v = _split_verdict(r, small, enough)  # what a significant split test would give
        if "split" in sig and split_v is not None:
            v, basins, key = split_v[0], split_v[1], "split"
            cut = r.cut_families if v == "groups lineages" else ()
        elif "groups" in sig and "groups" not in small:
            v, basins, key = "groups lineages", r.group_basins, "groups"
        elif "lineage" in sig:
            v, basins, key = "lineage only", None, "lineage"
        else:
            v, basins, key = "no structure", None, None
        qv = q.get((i, key)) if key else min((q.get((i, k), 1.0) for k in TESTS), default=None)
        nearly = mostly_alone(r) if v == "groups lineages" else None
        sentence = (NO_RELATIVES.get(v, SENTENCES[v]) if alone(r) else nearly_alone_sentence(nearly) if nearly else
                    FEW_SENTENCES.get(v, SENTENCES[v]) if few else SENTENCES[v]) + cut_text(cut)
        if v == "crosses lineage" and few:  # the families the camps divide the same way: what the verdict rests on
            cut = r.cut_families
        if v == "crosses lineage" and (r.split_rate or 0) < CROSS_SPLIT_RATE:
            sentence += minority_text(r)
        done = replace(r, verdict=v, q=qv, q_tests=_own(q, i), candidate_basins=basins, cut_families=cut)
        if v in ("lineage only", "no structure"):
            blocking = _blocking(r, sig, small)
            why = held_reason(blocking)
            first = next(iter(blocking), None)
            camps = getattr(r, HELD_BASINS.get(first, first)) if why in ("no gap", "few") else None
            done = replace(done, held=why, held_basins=camps)
            if split_v is not None and r.p_split is not None and r.p_split <= alpha and "split" not in sig:
                done = replace(done, unconfirmed_basins=split_v[1])  # a split that is no verdict only for its q
            sentence = with_unconfirmed(sentence, r, q, i, alpha, blocking)
            if "groups" not in sig:  # a significant one kept from its verdict by its size is said above, not "not significant"
                sentence += closest_split(done, tail="would tell" not in sentence)
        out.append(replace(done, sentence=sentence + few_families(done) + unknown_note(done)))
    return out
