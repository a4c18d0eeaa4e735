"""The batched family statistics equal the per-sample ones they replaced (issue 26 item 2).

``analysis.calibration.calibrate`` scores every bootstrap sample and permutation at once; the
references here are the per-sample loops it used before (``_loop_calibrate`` is that code, kept
verbatim on top of the per-sample statistics and the loop versions of the resampling), with the
same draws in the same order. Values agree within 1e-12 (on the host they were written on, bit for
bit: each sample's sums run over the same terms in the same order).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import agreement as ag
from analysis import labelfree as lf
from analysis import metrics as mt
from analysis import resampling as rs
from analysis.calibration import calibrate, near_floor
from analysis.intervals import auroc_interval, cv_widen
from analysis.options import AnalysisOptions

TOL = 1e-12


def _same(a, b, path=""):
    """Nested dicts / tuples / numbers equal within TOL (None and NaN only to themselves)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, a, b)
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif a is None or b is None:
        assert a is None and b is None, (path, a, b)
    elif isinstance(a, str):
        assert a == b, (path, a, b)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), (path, a, b)
    else:
        assert abs(a - b) <= TOL, (path, a, b)


# -- the per-sample versions (analysis.resampling and analysis.calibration before batching) ------------
def _loop_family_permutation_p(stat, labels, family, n_perm=199, random_state=0, beaten=None):
    """The p-value; with a list ``beaten``, also appends whether a permutation's value exceeded the
    observed one (not only tied it: the calibration's ``deep_ami_at_floor`` is its negation)."""
    lab = np.asarray([str(v) for v in labels], dtype=object)
    obs = stat(lab)
    if obs is None:
        return None
    codes, names = rs.family_codes(family)
    members = [np.flatnonzero(codes == f) for f in range(len(names))]
    by_size: dict[int, list[int]] = {}
    for f, m in enumerate(members):
        by_size.setdefault(len(m), []).append(f)
    rng = np.random.default_rng(random_state)
    hits, over = 0, False
    for _ in range(n_perm):
        perm = lab.copy()
        for fams in by_size.values():
            for f, g in zip(fams, rng.permutation(fams)):
                perm[members[f]] = lab[rng.permutation(members[g])]
        v = stat(perm)
        hits += v is not None and v >= obs
        over = over or (v is not None and v > obs + 1e-9)
    if beaten is not None:
        beaten.append(over)
    return float((1 + hits) / (n_perm + 1))


def _loop_member_permutation_p(stat, family, within=None, n_perm=199, random_state=0):
    fam = np.asarray([str(v) for v in family], dtype=object)
    obs = stat(fam)
    if obs is None:
        return None
    groups = np.zeros(len(fam), int) if within is None else rs.family_codes(within)[0]
    idx = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(random_state)
    hits = 0
    for _ in range(n_perm):
        perm = fam.copy()
        for ix in idx:
            perm[ix] = fam[rng.permutation(ix)]
        v = stat(perm)
        hits += v is not None and v >= obs
    return float((1 + hits) / (n_perm + 1))


def _loop_calibrate(clusters, label, lineage, family, oof, scores, opts, nn_hits=None, replicates=None):
    out = {}
    seed, nb, npm = opts.seed, opts.n_family_boot, opts.n_perm
    stab = None if not replicates else mt.replicate_agreement(replicates, len(clusters), random_state=seed)
    rows = lf.family_sample(family, lf.MAX_MODELS, seed)
    if rows is not None:
        clusters, family = clusters[rows], family[rows]
        nn_hits = None if nn_hits is None else nn_hits[rows]
        label = None if label is None else label[rows]
        lineage = None if lineage is None else lineage[rows]
        oof = None if oof is None else (oof[0], oof[1][rows], oof[2][rows], oof[3])
        out["sampled"] = len(rows)
    if label is not None and scores.get("deep_ami") is not None:
        cc, lc = mt.label_codes(clusters), mt.label_codes(label)
        out["deep_ami_ci"] = rs.family_bootstrap(lambda r, _d: mt.ami_codes(cc[r], lc[r]), family, nb, seed)
        beaten: list[bool] = []
        out["deep_ami_p"] = _loop_family_permutation_p(lambda lab: mt.ami_codes(cc, mt.label_codes(lab)), label, family, npm,
                                                       seed, beaten)
        if out["deep_ami_p"] is not None:
            exact, is_exact = rs.family_permutation_floor_exact(label, family)
            out["deep_ami_p_floor"] = max(exact, 1.0 / (npm + 1))
            out["deep_ami_floor_by"] = "families" if exact >= 1.0 / (npm + 1) else "permutations"
            out["deep_ami_at_floor"] = bool(not beaten[0] and out["deep_ami_p"] <= near_floor(out["deep_ami_p_floor"], npm))
            if is_exact and mt.ami_codes(cc, lc) >= 1.0 - 1e-9:
                out["deep_ami_p"] = exact
    if oof is not None:
        _, y, prob, folds = oof  # no bootstrap: Newcombe's interval at the families' effective size
        out["probe_auroc_ci"] = auroc_interval(y, prob, family, inflate=cv_widen(folds) ** 2)
    if lineage is not None and scores.get("noise_ami") is not None:
        basins = label
        out["noise_ami_ci"] = rs.family_bootstrap(
            lambda r, d: mt.within_basin_ami(clusters[r], d, None if basins is None else basins[r])[0], family, nb, seed)
        out["noise_ami_p"] = _loop_member_permutation_p(lambda f: mt.within_basin_ami(clusters, f, basins)[0], lineage,
                                                        basins, npm, seed)
    if nn_hits is not None and np.isfinite(nn_hits).any():
        out["lineage_nn_ci"] = rs.family_bootstrap(
            lambda r, _d: float(np.nanmean(h)) if np.isfinite(h := nn_hits[r]).any() else None, family, nb, seed)
    if stab is not None:
        out["stability_ci"] = rs.family_bootstrap(lambda r, _d: stab(r if rows is None else rows[r]), family, nb, seed)
    return out


def _case(seed: int):
    """A random population: families of mixed or equal sizes, 1-11 clusters, 2-3 labels (sometimes
    the family's), basins or none, the probe's probabilities with ties, 1-NN hits with gaps, and
    0-5 bootstrap replicates (hdbscan-style -1 labels included)."""
    rng = np.random.default_rng(seed)
    n_fam, most = int(rng.integers(3, 30)), int(rng.integers(1, 6))
    sizes = rng.integers(1, most + 1, n_fam) if seed % 3 else np.full(n_fam, most)
    fam = np.repeat(np.arange(n_fam), sizes)
    n, k, kl = len(fam), int(rng.integers(1, 12)), int(rng.integers(2, 4))
    label = fam % kl if seed % 4 == 0 else rng.integers(0, kl, n)
    clusters = rng.integers(0, k, n) if seed % 5 else (label * 2 + rng.integers(0, 2, n)) % k
    labels = np.asarray([f"L{v}" for v in label], dtype=object)
    lineage = np.asarray([f"s{v}" for v in fam], dtype=object)
    basins = labels if seed % 6 else None
    scores = {"deep_ami": mt.ami(clusters, labels), "noise_ami": mt.within_basin_ami(clusters, lineage, basins)[0]}
    oof = (0.5, mt.label_codes(labels), rng.dirichlet(np.ones(kl), n).round(2), 5)
    hits = rng.integers(0, 2, n).astype(float)
    hits[rng.random(n) < 0.3] = np.nan
    reps = []
    for _ in range(int(rng.integers(0, 6))):
        idx = np.sort(rng.choice(n, max(2, int(n * 0.8)), replace=False))
        reps.append((idx, rng.integers(-1, 4, len(idx))))
    opts = AnalysisOptions(n_family_boot=int(rng.integers(20, 120)), n_perm=int(rng.integers(10, 60)), seed=seed)
    return (clusters, labels if seed % 7 else None, lineage, lineage, oof if seed % 8 else None, scores, opts, hits, reps)


@pytest.mark.parametrize("seed", range(40))
def test_calibrate_equals_the_per_sample_loops(seed):
    args = _case(seed)
    _same(calibrate(*args), _loop_calibrate(*args))


def test_calibrate_on_a_family_sample_equals_the_loops(monkeypatch):
    """Above MAX_MODELS the statistics run on a sample of whole families (the stability indexes the
    whole population through it)."""
    monkeypatch.setattr(lf, "MAX_MODELS", 40)
    args = _case(15)
    assert len(args[0]) > 40 and args[8]
    got, want = calibrate(*args), _loop_calibrate(*args)
    assert got["sampled"] <= 40
    _same(got, want)


def _tables(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> np.ndarray:
    t = np.zeros((ka, kb), int)
    np.add.at(t, (a, b), 1)
    return t


def test_ami_tables_equals_ami_with_empty_rows_and_special_cases():
    rng = np.random.default_rng(0)
    tables, want = [], []
    for t in range(400):
        n, ka, kb = int(rng.integers(1, 150)), int(rng.integers(1, 9)), int(rng.integers(1, 25))
        a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
        if t % 5 == 0:
            b = (a * 2 + rng.integers(0, 2, n)) % kb  # related
        if t % 7 == 0:
            b = np.arange(n) % kb  # near-singletons
        tables.append(_tables(a, b, 10, 26))  # padded: values that do not occur are empty rows / columns
        want.append(ag.ami(a, b))
    got = ag.ami_tables(np.stack(tables))
    assert np.abs(got - np.array(want)).max() <= TOL
    one = ag.ami_tables(np.stack([_tables(np.zeros(5, int), np.zeros(5, int), 2, 2),
                                  _tables(np.zeros(5, int), np.arange(5) % 2, 2, 2), np.zeros((2, 2), int)]))
    assert one.tolist() == [1.0, 0.0, 1.0]  # one value each; one side constant; no models


def test_ami_tables_in_chunks_equals_ami(monkeypatch):
    """Many or large tables are scored in chunks (memory): the same values."""
    monkeypatch.setattr(ag, "EMI_TERMS", 50)
    monkeypatch.setattr(ag, "TABLE_CELLS", 64)
    rng = np.random.default_rng(5)
    tables, want = [], []
    for _ in range(100):
        n, ka, kb = int(rng.integers(1, 120)), int(rng.integers(1, 6)), int(rng.integers(1, 9))
        a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
        tables.append(_tables(a, b, 6, 9))
        want.append(ag.ami(a, b))
    assert np.abs(ag.ami_tables(np.stack(tables)) - np.array(want)).max() <= TOL


def test_weighted_auroc_equals_auroc_of_the_expanded_sample():
    rng = np.random.default_rng(1)
    for k in (2, 3, 4):
        n = 40
        y = rng.integers(0, k, n)
        p = rng.dirichlet(np.ones(k), n).round(1)  # heavy ties
        w = rng.integers(0, 3, (30, n))
        got = mt.auroc_of_weighted(y, p, w)
        for s in range(len(w)):
            rows = np.repeat(np.arange(n), w[s])
            want = mt.auroc_of(y[rows], p[rows])
            assert (np.isnan(got[s]) and want is None) or abs(got[s] - want) <= TOL


def test_within_basin_tables_equal_within_basin_ami_under_permutations():
    rng = np.random.default_rng(2)
    fam = np.repeat(np.arange(12), 4)
    basins = np.asarray([f"b{v}" for v in rng.integers(0, 3, len(fam))], dtype=object)
    clusters = rng.integers(0, 4, len(fam))
    perm = rs.member_permutations(len(fam), basins, 25, 0)
    bcodes, cc = mt.label_codes(basins), mt.label_codes(clusters)
    tables = [_stack(fam[perm][:, bcodes == b], cc[bcodes == b], 12, 4) for b in range(3)]
    got = mt.within_basin_ami_tables(tables)
    for p in range(len(perm)):
        want = mt.within_basin_ami(clusters, fam[perm[p]], basins)[0]
        assert (np.isnan(got[p]) and want is None) or abs(got[p] - want) <= TOL


def _stack(rows: np.ndarray, cols: np.ndarray, kr: int, kc: int) -> np.ndarray:
    return np.stack([_tables(r, cols, kr, kc) for r in rows])


def test_replicate_agreement_of_weights_equals_one_sample_at_a_time():
    rng = np.random.default_rng(3)
    n = 30
    reps = [(np.sort(rng.choice(n, 25, replace=False)), rng.integers(0, 3, 25)) for _ in range(6)]
    stab = mt.replicate_agreement(reps, n)
    w = rng.integers(0, 3, (20, n))
    got = stab.of_weights(w)
    for s in range(len(w)):
        want = stab(np.repeat(np.arange(n), w[s]))
        assert abs(got[s] - want) <= TOL


def test_permutations_are_the_draws_of_the_loops():
    """The index permutations reproduce the loops' random draws: the same p-values for any statistic."""
    rng = np.random.default_rng(4)
    fam = rng.integers(0, 9, 40)
    labels = rng.integers(0, 2, 40)
    stat = lambda lab: float(np.mean(lab[:20] == lab[0]))  # noqa: E731 - depends on where each label lands
    assert rs.family_permutation_p(stat, labels, fam, 30, 7) == _loop_family_permutation_p(stat, labels, fam, 30, 7)
    within = rng.integers(0, 3, 40)
    assert rs.member_permutation_p(stat, fam, within, 30, 7) == _loop_member_permutation_p(stat, fam, within, 30, 7)
