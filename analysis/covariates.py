"""Recorded training settings taken out of every fingerprint before it is analysed (``--covariate``).

A setting that differs between models (an optimizer, a batch size, a rate of label noise) makes real
camps that behavioural fingerprints find, and a sweep of independent seeds reads them as a candidate
deep difference (an outside audit, 91: Adam against SGD, one rule, "one candidate deep difference";
``--strata`` could not help, as it takes a column out *within* init families and every model was its
own family). With the setting recorded as a model column, ``--covariate COLUMN`` asks whether anything
beyond it differs: each fingerprint is replaced by its residuals from a least-squares fit of the
column, before the clustering, the maps and every test. A column is taken out as levels (each
level's mean), unless it holds numbers of which more than half the models have their own (a learning
rate or a training length drawn per model): then as a linear trend, in the log of its values when
they are positive and span a factor of :data:`LOG_SPAN` or more. A missing value is a level of its own
(of a trend: the mean, with an indicator). The fit is made in float64 whatever the fingerprint's
dtype, and a feature the column decides (its residuals' spread under :data:`TINY` of its own) is left
at zero, not rounding error scaled up by the standardisation (review 92: a float32 fingerprint's
setting came back as its camps). A distance fingerprint is first given classical-MDS coordinates (at
most :data:`MDS_DIMS`), which are then analysed as features.

Each level's mean holds as much of a difference as its models carry, so the residuals' camps are
given their part of the fit back when they differ inside every level (:func:`_given_back`). The
label-free tests see the result as data and are given the design (``taken``): every null replicate is
fitted and given back the same way (:func:`analysis.labelfree.label_free`). Measured
(``scripts/covariate_calibration.py``, 200 Gaussian populations a design, 12-48 models, 2-8 levels): a
raw groups or split p at or below 0.05 in 0.5-4.5% of nulls and setting-only populations of independent
seeds, 3.0-6.0% with whole families nested in the levels; a rule crossed with the setting found in
89-100%, AMI 0.94-1.00, but in half of 8 families of 3 in 4 levels (``--unequal``: 97% in cells of 10,
2, 2 and 10 models, 0% without the give-back) (docs/scorecard.md, "Taking a recorded setting out").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.errors import AnalysisError, choices
from analysis.labelfree import give_back, orthonormal
from analysis.labelfree_sentences import all_split_floor
from analysis.metadata import column_kind, is_seed
from analysis.options import COVARIATE_FORMS, AnalysisOptions, strata_in
from analysis.reduce import distance_to_features, reduce_features
from analysis.sigclust import cluster_index, top_dims
from analysis.values import missing

__all__ = ["Fit", "fit", "terms", "taken_out", "check", "settings"]

LOG_SPAN = 10.0  # a positive trend column spanning this factor or more is fitted in the log of its values
MDS_DIMS = 200  # a distance fingerprint's classical-MDS coordinates, at most this many, are fitted
MIN_LEFT = 4  # the models a fit must leave beyond its terms and the mean (else nothing is left to compare)
TINY = 1e-6  # a feature whose residuals spread less than this share of its own is one the column decides: zero
BLOCK = 4096  # features fitted at a time (a float64 copy of a block, not of a wide fingerprint)


def terms(column: np.ndarray, name: str = "", form: str | None = None) -> tuple[np.ndarray, str]:
    """The design ``[n, p]`` of one model ``column [n]`` (centred; without the mean) and how it is
    taken out, for people: ``"2 levels"``, ``"a linear trend in log(values)"`` (:func:`_terms`)."""
    return _terms(column, name, form)[:2]


def _terms(column: np.ndarray, name: str = "", form: str | None = None) -> tuple[np.ndarray, str, np.ndarray | None]:
    """:func:`terms` and each model's level ``[n]`` (``None`` for a trend). Unless ``form`` forces
    ``"levels"`` or ``"trend"`` (``--covariate lr:levels``, audit 92 F4), numbers are a trend only when
    more than half the models have their own value (a batch size of 4 values over 12 models is 4 levels:
    fitted as a line, its setting-only camps read significant in 28-67% of populations, review 92); a
    seed column's numbers (``name`` ending in ``seed``) are labels: levels, never a trend."""
    vals = np.asarray(column, dtype=object)
    n = len(vals)
    nums, present = column_kind(vals)
    if form == "trend" and (nums is None or not present.any()):
        some = next((str(v) for v in vals if not missing(v)), None)
        if some is None:  # (on the models of one fingerprint, some of the table's left out: review 95)
            raise AnalysisError(f"--covariate {name}:trend: no model here has a value of column '{name}': there is no "
                                "trend to take out")
        raise AnalysisError(f"--covariate {name}:trend: column '{name}' does not hold numbers (such as {some!r}); "
                            f"a trend needs numbers, give --covariate {name} (its levels)")
    if form == "trend" or (form is None and nums is not None and not is_seed(name) and len(np.unique(nums[present])) > n // 2):
        x, logged = nums.copy(), bool((nums[present] > 0).all() and nums[present].max() >= LOG_SPAN * nums[present].min())
        if logged:
            x[present] = np.log(x[present])
        x[~present] = x[present].mean()
        cols = [x] + ([(~present).astype(np.float64)] if (~present).any() else [])
        how = "a linear trend in " + ("log(values)" if logged else "its values") + (
            f" (and the {_models((~present).sum())} without a value apart)" if (~present).any() else "")
        strs = None
    else:
        strs = np.asarray(["\0missing" if missing(v) else str(v) for v in vals], dtype=object)
        levels = sorted(set(strs.tolist()))
        cols = [(strs == lev).astype(np.float64) for lev in levels[1:]]
        gone = int((strs == "\0missing").sum())
        how = f"{len(levels)} levels" + (f", one of them the {_models(gone)} without a value" if gone and len(levels) > 1 else "")
    d = np.stack(cols, 1) if cols else np.zeros((n, 0))
    return d - d.mean(0), how, strs


@dataclass(frozen=True)
class Fit:
    """The ``--covariate`` columns of one set of models, read once (:func:`fit`): ``design [n, p]`` (their
    centred terms side by side), ``basis [n, r]`` (an orthonormal basis of it), ``hows`` (``{column: how}``,
    :func:`terms`), ``sizes`` (``{column: its number of terms}``: 0 for one value) and ``levels [n]`` (each
    model's level across the columns fitted as levels, trends aside: the cells of the lineage test's
    permutations; ``None`` when every column is a trend); :attr:`cells` is ``levels`` when no column is a trend
    (the camps' give-back asks them to differ inside every level)."""

    design: np.ndarray
    basis: np.ndarray
    hows: dict[str, str]
    sizes: dict[str, int]
    levels: np.ndarray | None  # [n] each model's level across the columns fitted as levels (None: none is)

    @property
    def cells(self) -> np.ndarray | None:
        """:attr:`levels` when every column is fitted as levels, else ``None``."""
        return None if any(_is_trend(how) for how in self.hows.values()) else self.levels

    @property
    def chance(self) -> float:
        """The share of a fingerprint's variance the fit explains when the columns change nothing: its rank over
        the models less one (a setting of 6 levels over 24 models: 5/23, 22%)."""
        return self.basis.shape[1] / max(len(self.design) - 1, 1)


def fit(columns: dict[str, np.ndarray], forms: dict[str, str | None] | None = None,
        within: dict[str, np.ndarray] | None = None, families: np.ndarray | None = None) -> Fit:
    """The :class:`Fit` of ``columns`` (``{name: [n]}``), each taken out as its ``forms`` entry says
    (``"levels"``, ``"trend"``; missing or ``None``: as its values decide, :func:`terms`). ``within``: the strata
    the label-free tests take out (``{name: [n]}``, a shared data order's ``data_seed``) and ``families [n]`` the
    init families; when every column is levels, each crossed with each stratum shared across the families is taken
    out too (:func:`_crossed`)."""
    parts = {name: _terms(c, name, (forms or {}).get(name)) for name, c in columns.items()}
    design = np.concatenate([d for d, _, _ in parts.values()], 1)
    levelled = [strs for _, _, strs in parts.values() if strs is not None]
    levels = np.asarray(["\x1f".join(t) for t in zip(*levelled)], dtype=object) if levelled else None
    hows = {c: how for c, (_, how, _) in parts.items()}
    if within and families is not None and levels is not None and len(levelled) == len(parts):
        design, levels, crossed = _crossed(design, levels, levelled, within, np.asarray(families, dtype=object))
        if crossed:
            hows = {c: f"{how}, within each value of {' and '.join(repr(k) for k in crossed)}" for c, how in hows.items()}
    return Fit(design, orthonormal(design) if design.shape[1] else design, hows,
               {c: d.shape[1] for c, (d, _, _) in parts.items()}, levels)


MIN_CELL = 4  # models in every (covariate level, stratum value) cell for the two to be crossed (review 127: 3 a cell
# took a 1-SD rule crossed with both from 26 of 30 populations found to 10)


def _shared(s: np.ndarray, families: np.ndarray) -> bool:
    """Whether a stratum ``s [n]`` is shared across the init ``families [n]``: a value in two families or more, and a
    family with two values or more (review 127: a data_seed set per family crossed the covariate with the families)."""
    fam_of: dict[str, set] = {}
    vals_of: dict[str, set] = {}
    for v, f in zip(s.tolist(), families.tolist()):
        fam_of.setdefault(v, set()).add(str(f))
        vals_of.setdefault(str(f), set()).add(v)
    return any(len(f) > 1 for f in fam_of.values()) and any(len(v) > 1 for v in vals_of.values())


def _crossed(design: np.ndarray, levels: np.ndarray, columns: list[np.ndarray], strata: dict[str, np.ndarray],
             families: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(design, levels, crossed)``: ``design [n, p]`` with the terms of each covariate's levels (``columns``, one
    ``[n]`` each; not their own interaction) crossed with each stratum column shared across the ``families``, beyond
    the main effects (the stratum's own are the label-free tests' to take out, and stay in the fingerprint),
    ``levels`` the cells of every covariate and crossed stratum, and the strata crossed. Outside audit 125 (F2): a rule
    the learning rate decided, lr taken out with data_seed as strata, left their interaction (each data order's noise
    differs between the two rules' trainings), and the camps of its (data order, lr) cells read as a new "one
    candidate deep difference", AMI -0.01 with the rule; the two columns combined as one read "no candidate". A
    stratum is crossed only where every crossed cell holds :data:`MIN_CELL` models or more."""
    crossed: list[str] = []
    for name, col in strata.items():
        s = np.asarray(["\0missing" if missing(v) else str(v) for v in col], dtype=object)
        if len(set(s.tolist())) < 2 or not _shared(s, families):
            continue
        each = [np.asarray([f"{a}\x1f{b}" for a, b in zip(c, s)], dtype=object) for c in columns]
        if min(np.unique(c, return_counts=True)[1].min() for c in each) < MIN_CELL:
            continue
        dummies = np.concatenate([np.stack([(c == v).astype(np.float64) for v in sorted(set(c.tolist()))], 1)
                                  for c in each], 1)
        mains = np.concatenate([np.ones((len(s), 1)), design] +
                               [np.stack([(s == v).astype(np.float64) for v in sorted(set(s.tolist()))], 1)], 1)
        q = orthonormal(mains)
        rest = dummies - q @ (q.T @ dummies)  # each covariate's cells with the stratum, beyond the main effects
        u, sv, _ = np.linalg.svd(rest, full_matrices=False)
        extra = u[:, sv > 1e-8 * max(float(sv.max(initial=0.0)), 1.0)]
        if extra.shape[1] and len(s) - 1 - design.shape[1] - extra.shape[1] >= MIN_LEFT:
            design = np.concatenate([design, extra], 1)
            levels = np.asarray([f"{a}\x1f{b}" for a, b in zip(levels, s)], dtype=object)
            crossed.append(name)
    return design, levels, crossed


def _is_trend(how: str) -> bool:
    """Whether :func:`terms`' ``how`` is a trend's (not levels)."""
    return how.startswith("a linear trend")


def _models(k: int) -> str:
    return f"{int(k)} model{'' if k == 1 else 's'}"


def check(f: Fit) -> None:
    """Raise :class:`AnalysisError` when the columns' terms leave fewer than :data:`MIN_LEFT` models to
    compare (their rank, beside the mean, out of the models')."""
    n, rank = len(f.design), f.basis.shape[1]
    if n - 1 - rank < MIN_LEFT:
        cols = ", ".join(f"'{c}' ({how})" for c, how in f.hows.items())
        raise AnalysisError(f"--covariate {cols}: {rank} terms for {n} models leave fewer than {MIN_LEFT} to compare "
                            "(a column with a value per model, such as an id, takes every model out); give a "
                            "column of few levels, or numbers, which are taken out as a linear trend")


def taken_out(values: np.ndarray, distances: bool, standardize: bool, f: Fit) -> tuple[np.ndarray, bool, bool, float]:
    """``values`` (features ``[n, d]`` or distances ``[n, n]``) less the columns' part of a least-squares
    fit (:class:`Fit`; the fit joint with the models' provisional two camps,
    :func:`_given_back`): ``(residuals [n, d'], distances=False, standardize, share)``, ``share`` the
    part of the (standardised) fingerprint's variance the columns' own fit explains. A distance
    fingerprint becomes its classical-MDS coordinates first, not standardised after (their scale is the
    distances'); features keep their dtype and their ``standardize``, fitted in float64 a block of
    :data:`BLOCK` at a time, a feature the columns decide left at zero (:data:`TINY`)."""
    q = f.basis
    if distances:
        x = distance_to_features(values, min(len(values), MDS_DIMS))
        r = _residuals(x, q)
        return _given_back(r, q, False, f.cells), False, False, _share(x, r, False)
    x = np.asarray(values)
    out = np.empty(x.shape, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
    for lo in range(0, x.shape[1], BLOCK):
        out[:, lo:lo + BLOCK] = _residuals(np.asarray(x[:, lo:lo + BLOCK], dtype=np.float64), q)
    share = _share(x, out, standardize)
    return _given_back(out, q, standardize, f.cells), False, standardize, share


def _residuals(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``x [n, d]`` (float64) less its projection on the orthonormal ``q [n, r]``; a column whose residuals
    spread less than :data:`TINY` of its own spread is set to zero (the column decided it)."""
    r = x - x.mean(0)
    r = r - q @ (q.T @ r) if q.shape[1] else r
    decided = r.std(0) <= TINY * x.std(0)
    r[:, decided] = 0.0
    return r


def _share(x: np.ndarray, r: np.ndarray, standardize: bool) -> float:
    """The share of ``x [n, d]``'s variance (each column's, standardised, summed; else the raw sum) that its
    residuals ``r [n, d]`` lost: what the fit explains (0 for a fingerprint that does not vary)."""
    sd = np.asarray(x, dtype=np.float64).std(0)
    keep = sd > 0
    if not keep.any():
        return 0.0
    kept = np.asarray(r, dtype=np.float64)[:, keep].var(0)
    left = float((kept / sd[keep] ** 2).sum() / keep.sum()) if standardize else float(kept.sum() / (sd[keep] ** 2).sum())
    return min(max(1.0 - left, 0.0), 1.0)


def _given_back(r: np.ndarray, q: np.ndarray, standardize: bool, cells: np.ndarray | None) -> np.ndarray:
    """Residuals ``r [n, d]`` (of the fit on the orthonormal ``q [n, p]``) with the part of the fit that
    the models' two camps explain given back: the camps (a 2-means split of the residuals' principal
    coordinates) are fitted jointly with the columns, and their share of the columns' fit returned, once
    (the tests' null replicates are given back the same way: :func:`analysis.labelfree.label_free`'s
    ``taken``). Each level's mean holds as much of a difference as its models carry: a rule crossed with
    an optimizer in cells of 10, 2, 2 and 10 models came within a third of its gap of the other rule's
    nearest cell once the means were out, a continuum the tests read as no camps (audit 92: found in 0
    of 20 Gaussian populations, and in none of its imports at 8, 4, 4, 8). Given back only when the
    camps are a difference inside every level of ``cells`` (the columns' levels, one label a model; None
    for a trend: nothing given back): their effect within each level at least :data:`INSIDE` of their
    effect overall. Without that, a level whose models scatter 3x wider, shifted or not, had its spread
    split and given back as camps: 17-23.5% of such nulls read p <= 0.05 (review 93). A split that the
    columns decide (one rule per optimizer) has nothing of its own to give back and stays out."""
    n = len(r)
    if q.shape[1] == 0 or n < 4 or cells is None:
        return r
    coords = top_dims(reduce_features(r, 10, 0, standardize), 5)
    split = cluster_index(coords[None], min_size=all_split_floor(n))[1][0].astype(np.float64)  # as the tests'
    s = split - split.mean()
    u = s - q @ (q.T @ s)  # the camps' own part, beside the columns' fit
    if not (u @ u) > 1e-9 * (s @ s) or not _in_every_level(coords, split, cells, u):
        return r  # the columns decide the camps, or the camps are one level's spread: nothing to give back
    y = np.empty_like(r)
    for lo in range(0, r.shape[1], BLOCK):  # r plus the camps' share of the fit, a block at a time
        y[:, lo:lo + BLOCK] = give_back(np.asarray(r[None, :, lo:lo + BLOCK], dtype=np.float64), q, split[None])[0][0]
    return y


INSIDE = 0.5  # the camps' effect within every level, as a share of their effect overall, to be given back


def _in_every_level(x: np.ndarray, split: np.ndarray, cells: np.ndarray, u: np.ndarray) -> bool:
    """Whether the camps ``split [n]`` of ``x [n, k]`` differ inside every level of ``cells [n]`` (with
    two models or more) along their overall effect (the coefficient of ``u [n]``, the split's part the
    columns do not explain), by at least :data:`INSIDE` of it; a level holding one camp only does not."""
    overall = (u @ x) / (u @ u)
    norm = float(overall @ overall)
    if not norm > 0:
        return False
    for level in np.unique(cells):
        k = cells == level
        if k.sum() < 2:
            continue
        sl = split[k] - split[k].mean()
        if not (sl @ sl) > 0:
            return False
        within = (sl @ (x[k] - x[k].mean(0))) / (sl @ sl)
        if float(within @ overall) < INSIDE * norm:
            return False
    return True


def settings(table: dict[str, np.ndarray], opts: AnalysisOptions) -> dict[str, Any]:
    """``{"covariate_terms": {column: how}}`` for the result's settings, after checking each
    ``--covariate`` column: known, not the lineage or the label, two values or more, and leaving at
    least :data:`MIN_LEFT` models beyond its terms (:func:`check`). Raises :class:`AnalysisError`
    naming the culprit."""
    out: dict[str, str] = {}
    notes = []
    cols = opts.covariates_in(table)
    for spec, c in zip(opts.covariates, cols):  # (validate refused a column named twice)
        if c in table:
            continue
        name, _, form = spec.rpartition(":")
        if name in table:  # a form misspelt: "lr:level"
            raise AnalysisError(f"unknown form '{form}' in --covariate {spec} (valid: {choices(COVARIATE_FORMS)}, "
                                f"or the column alone: its values decide)")
        raise AnalysisError(f"unknown model column '{c}' for --covariate (valid: {choices(table)})")
    for c in cols:
        if c in (opts.lineage, opts.label):
            which = "--lineage" if c == opts.lineage else "--label"
            raise AnalysisError(f"--covariate {c} is the {which} column: taking it out of the fingerprints leaves "
                                "nothing for it to be compared with; give a training setting's column")
    fam = table.get(opts.lineage) if opts.lineage else None
    f = fit({c: table[c] for c in cols}, cols, within={c: table[c] for c in strata_in(table, opts)},
            families=fam) if cols else None
    for c in cols:
        if not f.sizes[c] or len({str(v) for v in table[c]}) < 2:
            raise AnalysisError(f"--covariate {c} has one value for every model: there is nothing to take out")
        out[c] = f.hows[c]
        if not _is_trend(f.hows[c]):  # levels (audit 92: a model alone in its level is all setting)
            values, counts = np.unique([str(v) for v in table[c]], return_counts=True)
            alone = [str(v) for v, k in zip(values, counts) if k == 1]
            if alone:
                notes.append(f"--covariate {c}: {len(alone)} level{'s' if len(alone) > 1 else ''} "
                             f"({', '.join(repr(v) for v in alone[:3])}{', ...' if len(alone) > 3 else ''}) "
                             f"hold{'' if len(alone) > 1 else 's'} one model each: taking a level's mean out leaves "
                             "nothing of such a model, which then sits at the centre of every fingerprint; merge "
                             "such levels or leave the models out")
    if f is not None:
        check(f)
    for note in notes:  # after the refusals: a column refused is not warned about as well
        warnings.warn(note, stacklevel=2)
    return {"covariate_terms": out}
