"""Which values of a design column the clusters set apart, their contrast and its chance (analysis/strata_sides.py):
one difference the column decides against each value's own seed noise (an outside audit, 112)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from analysis.strata_sides import SIDE_PURITY, chance, sides, table_sides


def _population(effect: np.ndarray, n_families: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_families`` init families x one model per value of a shared column (``effect [n_values, d]``, each
    value's shift), family effects and model noise: ``(coords [m, d], column [m], family [m])``."""
    r = np.random.default_rng(seed)
    n_values, d = effect.shape
    fam, col = np.repeat(np.arange(n_families), n_values), np.tile(np.arange(n_values), n_families)
    coords = r.standard_normal((n_families, d))[fam] + 0.3 * r.standard_normal((len(fam), d)) + effect[col]
    return coords, col, fam


def _clusters(coords: np.ndarray) -> np.ndarray:
    return KMeans(2, n_init=4, random_state=0).fit_predict(coords - coords.mean(0))


def test_one_value_apart_from_three_alike_values_has_a_contrast_seed_noise_rarely_gives():
    """The backdoor of audit 112 in the models of one shared data seed of four: that value apart, the other three
    together, far beyond what four values' seed noise gives (chance under 1%)."""
    effect = np.zeros((4, 6))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect)
    out = sides(coords, (col == 0).astype(int), col + 500, fam)
    assert out["sides"] == [["500"], ["501", "502", "503"]] and out["sizes"] == [32, 96]
    assert out["contrast"] > 10 and out["chance"] < 0.01


def test_each_values_own_seed_noise_is_said_as_no_more_than_it_can_give():
    """Four values, each shifted by its own draw in six directions (a data order's seed noise, strong enough that the
    clusters follow it): whichever sides the clusters find, the contrast is what seed noise gives, in 20 of 20
    populations (chance above 5%)."""
    chances = []
    for seed in range(20):
        effect = 2.0 * np.random.default_rng(100 + seed).standard_normal((4, 6))
        coords, col, fam = _population(effect, seed=seed)
        out = sides(coords, _clusters(coords), col, fam)
        if out is not None:  # (a value cut in two by the clusters: no sides)
            chances.append(out["chance"])
    assert len(chances) >= 10 and min(chances) > 0.05


def test_no_sides_for_two_values_a_value_spread_over_clusters_or_every_value_its_own_side():
    effect = np.zeros((4, 3))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect)
    assert sides(coords[col < 2], (col[col < 2] == 0).astype(int), col[col < 2], fam[col < 2]) is None  # two values
    spread = (col == 0).astype(int)
    spread[np.flatnonzero(col == 1)[: int((1 - SIDE_PURITY) * 32) + 2]] = 1  # value 1 in both clusters
    assert sides(coords, spread, col, fam) is None
    assert sides(coords, col, col, fam) is None  # every value its own cluster: nothing to contrast
    assert sides(coords, np.zeros(len(col), int), col, fam) is None  # one cluster
    table = {"data_seed": col.astype(object), "other": col.astype(object)}
    rows = np.arange(len(col))
    got = table_sides(coords, (col == 0).astype(int), table, rows, fam, ["data_seed"])
    assert [e["column"] for e in got["strata_sides"]] == ["data_seed"]  # only the design columns asked for
    assert "strata_sides" not in table_sides(coords, np.zeros(len(col), int), table, rows, fam, ["data_seed"])


def test_the_chance_is_the_share_of_one_direction_draws_reaching_the_contrast():
    """``chance`` is calibrated against fresh draws of values along one direction (its worst case): the best split's
    contrast of 4,000 fresh draws reaches the 5% point in about 5% of them; it falls as the contrast grows and as
    the values grow in number."""
    assert chance(3.0, 4) > chance(10.0, 4) > chance(20.0, 4)
    assert chance(5.0, 3) > chance(5.0, 4) > chance(5.0, 8)
    assert chance(1e9, 4) == pytest.approx(1 / 20000)
    pts = np.sort(np.random.default_rng(7).standard_normal((4000, 4)), axis=1)
    best = np.max([np.diff(pts, axis=1)[:, i] / np.maximum(pts[:, i] - pts[:, 0], pts[:, -1] - pts[:, i + 1])
                   for i in range(3)], axis=0)
    point = np.quantile(best, 0.95)
    assert 0.04 <= chance(point, 4) <= 0.06


def test_values_held_unevenly_by_the_families_are_read_by_an_additive_fit():
    """Families that hold different values (a data order recorded for some members only): each value's effect comes
    from an additive fit of family and value, so family effects do not leak into it; values that no family joins to
    the others have no sides."""
    effect = np.zeros((4, 6))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect, seed=3)
    r = np.random.default_rng(0)
    coords = coords + 5.0 * (fam % 2 == 0)[:, None] * np.eye(6)[1]  # strong family effects ...
    keep = ~((fam % 2 == 0) & (col == 3)) & ~((fam % 2 == 1) & (col == 1))  # ... and an uneven design
    got = sides(coords[keep], (col[keep] == 0).astype(int), col[keep], fam[keep])
    assert got["sides"] == [["0"], ["1", "2", "3"]] and got["contrast"] > 10
    from analysis.strata_sides import _additive_fit

    fam_k, col_k = fam[keep], col[keep]
    truth = r.standard_normal((4, 3))
    x = r.standard_normal((32, 3))[fam_k] + truth[col_k]  # exact: no model noise
    v, resid = _additive_fit(x, fam_k, col_k)
    assert np.allclose(v - v[0], truth - truth[0], atol=1e-8) and np.allclose(resid, 0, atol=1e-8)
    chain = np.stack([np.arange(30), np.arange(1, 31)], 1).ravel()  # 30 families, each holding two neighbouring values
    y = r.standard_normal((31, 2))
    v, _ = _additive_fit(y[chain] + np.repeat(r.standard_normal((30, 2)), 2, 0), np.repeat(np.arange(30), 2), chain)
    assert np.allclose(v - v[0], y - y[0], atol=1e-8)  # (review 113: the backfitting was off by 2.0 on such a chain)
    alone = np.where(col == 3, 100 + fam % 2, fam)  # value 3 held only by two families of its own
    assert sides(coords, (col == 0).astype(int), col, alone) is None


def test_missing_values_unclustered_models_and_degenerate_coordinates_are_left_out():
    """Review 113: a missing value ('', nan) was read as a value ('nan' named as a data seed) or spread over the
    clusters and hid the whole column; HDBSCAN's unclustered models (-1) made a side; constant coordinates read as an
    infinite contrast that decided."""
    effect = np.zeros((4, 6))
    effect[0, 0] = 6.0
    coords, col, fam = _population(effect)
    clusters = (col == 0).astype(int)
    gappy = (col + 500000).astype(float)
    gappy[np.random.default_rng(1).random(len(col)) < 0.1] = np.nan  # a CSV column with gaps: floats
    got = sides(coords, clusters, gappy, fam)
    assert got["sides"] == [["500000"], ["500001", "500002", "500003"]] and got["sizes"][0] < 32
    for gap in ("", None, np.nan):  # value 3 unrecorded: three values left, none of them the gap
        assert sides(coords, clusters, np.where(col == 3, gap, col).astype(object), fam)["sides"] == [["0"], ["1", "2"]]
    noise = np.where(col == 0, 0, -1)  # one real cluster, the rest unclustered
    assert sides(coords, noise, col, fam) is None
    assert sides(np.ones_like(coords), clusters, col, fam) is None
    with_nan = coords.copy()
    with_nan[5, 2] = np.nan
    assert sides(with_nan, clusters, col, fam)["sizes"] == [32, 95]  # the model with a NaN left out


def test_three_sides_get_the_chance_of_three_sides():
    """Review 113: the chance drew splits in two only, while a partition in three reaches larger contrasts (4 values
    drawn along one direction: chance at most 5% in 22% of draws); it is now the best partition into as many sides as
    observed, calibrated against fresh draws the same way."""
    assert chance(10.0, 4, 3) > chance(10.0, 4, 2)
    pts = np.sort(np.random.default_rng(11).standard_normal((2000, 4)), axis=1)
    best = np.zeros(2000)
    for cuts in ((0, 1), (0, 2), (1, 2)):
        bounds = [0, cuts[0] + 1, cuts[1] + 1, 4]
        ranges = np.max([pts[:, b - 1] - pts[:, a] for a, b in zip(bounds[:-1], bounds[1:])], axis=0)
        with np.errstate(divide="ignore"):
            best = np.maximum(best, np.diff(pts, axis=1)[:, list(cuts)].min(1) / ranges)
    assert 0.035 <= chance(np.quantile(best, 0.95), 4, 3) <= 0.065
    assert chance(5.0, 20, 8) is None  # too many partitions to try: no chance, so no "decides"


def test_seed_noise_along_one_direction_rarely_decides_where_sides_are_shown():
    """The chance is a bound over draws, but sides are shown only where the clusters follow the values closely,
    which selects uneven draws (review 113: 7-18% of the shown ones at 5%). At the answer's DECIDES_CHANCE, four and
    eight values' seed noise along one direction, whitened away from the features' scales, decide in few of the
    populations that show sides."""
    from analysis.strata_sides import DECIDES_CHANCE

    for n_values in (4, 8):
        shown = decided = 0
        for seed in range(60):
            r = np.random.default_rng(seed)
            effect = np.zeros((n_values, 3))
            effect[:, 0] = 3.0 * r.standard_normal(n_values)
            coords, col, fam = _population(effect, n_families=16, seed=seed)
            got = sides(coords, _clusters(coords), col, fam)
            if got is not None:
                shown += 1
                decided += got["chance"] is not None and got["chance"] <= DECIDES_CHANCE
        assert shown >= 10 and decided <= 0.1 * shown, (n_values, shown, decided)


def test_a_deciding_column_is_said_beside_a_lead_and_a_user_column_is_not_called_seed_noise():
    """Review 113: the head promised the deciding column "(below)" and a lead holding its fingerprint dropped it; an
    even learning-rate sweep under --strata lr was said to be "no more than the values' own seed noise"."""
    from analysis.answer import Answer, _followed_said, _sides_text

    deciding = {"fingerprints": ["a"], "ami": [0.6, 0.6], "q": 0.01,
                "sides": {"sides": [["0"], ["1", "2", "3"]], "sizes": [8, 24], "contrast": 17.0, "chance": 0.007,
                          "fingerprints": ["a"], "decides": True}}
    plain = {**deciding, "sides": {**deciding["sides"], "contrast": 2.0, "chance": 0.4, "decides": False}}
    ans = Answer(n_fingerprints=1, n_judged=1, strata_followed={"data_seed": deciding, "order": plain})
    assert list(_followed_said(ans, inside={"a"})) == ["data_seed"]  # the deciding one stays beside a lead of "a"
    user = _sides_text(plain["sides"], user=True)
    assert "a Gaussian spread among 4 values" in user and "from the values' spread" in user and "seed noise" not in user
    assert "from the values' own seed noise" in _sides_text(plain["sides"])
    close = _sides_text({**plain["sides"], "contrast": 1.03})  # (outside audit 114: "1 times as far apart")
    assert close.startswith(": the clusters set its value '0' (8 models) apart from '1', '2', '3' (24), but in the fit the "
                            "sides are hardly farther apart than the values on each side are from one another "
                            "(contrast 1.0)") and "times" not in close


def test_the_sides_most_fingerprints_agree_on_are_said_with_the_median_of_their_contrasts():
    """Outside audit 114: the sides said were the best-following fingerprint's 3-way split while 7 others agreed on the
    planted 2 + 2, and the smallest of the agreeing contrasts let the weakest fingerprint speak for them all."""
    from analysis.answer import _column_sides, _sides_text
    from analysis.results import FingerprintResult

    def fp(name: str, sides: list[list[str]], contrast: float) -> FingerprintResult:
        return FingerprintResult(fingerprint=name, scores={"strata_sides": [
            {"column": "data_seed", "sides": sides, "sizes": [16] * len(sides), "contrast": contrast,
             "chance": chance(contrast, 4, len(sides))}]})

    finer = fp("k3", [["2"], ["3"], ["0", "1"]], 1.8)
    pairs = [fp(f"p{i}", [["0", "1"], ["2", "3"]], c) for i, c in enumerate((3.7, 5.0, 8.0, 13.7))]
    got = _column_sides("data_seed", [finer, *pairs])
    assert got["sides"] == [["0", "1"], ["2", "3"]] and got["fingerprints"] == ["p0", "p1", "p2", "p3"]
    assert got["contrast"] == pytest.approx(np.sqrt(5.0 * 8.0)) and got["contrasts"] == [3.7, 13.7]  # (on the log scale)
    assert got["chance"] == chance(got["contrast"], 4, 2) and got["n_with_sides"] == 5
    assert _column_sides("data_seed", [finer])["sides"] == [["2"], ["3"], ["0", "1"]]
    said = _sides_text(got | {"decides": False})
    assert "(4 of the 5 fingerprints that set sides apart set these, the median of their 4 contrasts, 3.7-13.7; " in said
    # a contrast under 1.5 that decides (12 values: review 115) is not said to be "hardly farther apart"
    twelve = {"sides": [["0"], [str(v) for v in range(1, 12)]], "sizes": [8, 88], "contrast": 1.3, "chance": 0.007,
              "fingerprints": ["a"], "decides": True}
    assert "hardly" not in _sides_text(twelve) and "a difference the column decides, it seems" in _sides_text(twelve)


def test_whitening_keeps_every_direction_and_refuses_round_off():
    """Review 114: directions of little residual spread were dropped (a shift along one read "nothing here tells"),
    more coordinates than residual degrees of freedom dropped some by construction, and residuals of round-off read a
    contrast of 1e16. The covariance is shrunk towards its mean variance instead; round-off residuals give no sides."""
    effect = np.zeros((4, 6))
    effect[0, 5] = 6.0
    coords, col, fam = _population(effect)
    coords[:, 5] = 6.0 * (col == 0) + 1e-9 * np.random.default_rng(0).standard_normal(len(col))  # no residual noise
    got = sides(coords, (col == 0).astype(int), col, fam)
    assert got is not None and got["contrast"] > 10
    few = fam < 4  # 4 families x 4 values: 16 models, 6 coordinates, 9 residual degrees of freedom
    assert sides(coords[few], (col[few] == 0).astype(int), col[few], fam[few])["contrast"] > 3
    exact = np.eye(4)[col] @ np.random.default_rng(1).standard_normal((4, 6)) + np.eye(32)[fam] @ np.ones((32, 6))
    assert sides(exact, (col == 0).astype(int), col, fam) is None  # residuals are round-off: nothing to measure in
    assert sides(np.zeros((0, 6)), np.zeros(0, int), np.zeros(0), np.zeros(0)) is None


def test_sides_that_are_a_parent_chains_generations_are_said_as_the_fine_tuning():
    """Outside audit 115: 8 base models trained on data order 100 and their 48 fine-tunes on orders 200-205 (6 a base);
    the fingerprints' clusters, the bases against the fine-tunes, set value 100 apart, and the answer read "it seems to
    decide one (one rule, or a backdoor)" with a small-basin lead of the 8 bases, though parent_id recorded them. The
    sides are the generations: said as the fine-tuning, not deciding, and no lead."""
    from analysis.answer import label_free_answer
    from analysis.options import AnalysisOptions
    from analysis.results import small_basin_leads
    from analysis.scorecard import FingerprintInput, analyze
    from analysis.strata_sides import generation_sides

    r = np.random.default_rng(5)
    ids = [f"p{p}" for p in range(8)] + [f"p{p}c{j}" for p in range(8) for j in range(6)]
    parent = [""] * 8 + [f"p{p}" for p in range(8) for _ in range(6)]
    family = np.asarray(list(range(8)) + [p for p in range(8) for _ in range(6)])
    order = np.asarray([100] * 8 + [200 + j for _ in range(8) for j in range(6)])
    base = np.asarray([1.0] * 8 + [0.0] * 48)
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": family, "data_seed": order,
             "parent_id": np.asarray(parent, dtype=object)}
    fps = []
    for k in range(2):
        x = 0.5 * r.standard_normal((8, 6))[family] + 0.3 * r.standard_normal((56, 6))
        x[:, :2] += 6.0 * base[:, None]
        fps.append(FingerprintInput(f"fp{k}", x, ids, {"extractor": f"fp{k}", "output": "features"}))
    res = analyze(fps, table, AnalysisOptions(n_perm=199, n_boot=4, label="", embedding="pca"))
    entries = [e for f in res.fingerprints for e in (f.scores or {}).get("strata_sides") or []]
    assert entries and all(e["sides"][0] == ["100"] and e["generation"] for e in entries)
    ans = label_free_answer(res)
    sides = ans.strata_followed["data_seed"]["sides"]
    assert sides["generation"] and not sides["decides"] and sides["chance"] < 0.01  # far apart, and not deciding
    assert ans.sentence.startswith("no candidate deep difference: ") and "seems to decide" not in ans.sentence
    assert ("these sides are the generations of the parent chains (parent_id: base models apart from their fine-tunes), "
            "so the split seen is the fine-tuning's, which says nothing of the values within one generation; the tests "
            "here take out both, the column and the generation, as lineage; to test the column's values within a "
            "generation (a difference one order of the fine-tunes decides), report on that generation alone (--exclude "
            "the others) with --strata none") in ans.sentence
    assert small_basin_leads(res, ans) == []
    # the check itself: each side one generation, no generation on two sides
    col, gen = np.asarray(["0", "0", "1", "2"], dtype=object), np.asarray([0, 0, 1, 1])
    assert generation_sides([["0"], ["1", "2"]], col, gen)
    assert not generation_sides([["0", "1"], ["2"]], col, gen)  # a side with both generations
    assert not generation_sides([["0"], ["1", "2"]], col, np.zeros(4, int))  # one generation: no chain


def _shared_orders(effect: np.ndarray, n_families: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outside audit 123's design: ``n_families`` bases x one fine-tune per shared data order (``effect [n_values, d]``,
    each order's shift), the bases far apart (the clusters are the bases): ``(coords, column, family)``."""
    r = np.random.default_rng(seed)
    n_values, d = effect.shape
    fam, col = np.repeat(np.arange(n_families), n_values), np.tile(np.arange(n_values), n_families)
    return 20.0 * r.standard_normal((n_families, d))[fam] + r.standard_normal((len(fam), d)) + effect[col], col, fam


def test_orders_that_decide_a_difference_inside_the_families_are_set_apart_whatever_the_clusters():
    """Outside audit 123: a backdoor in the data of 3 of 10 data orders 4 bases shared read "no candidate" with no
    lead: the clusters were the bases, each order on all of them, so the clusters gave the column no sides. The
    values' effects inside the families set orders 0-2 apart far beyond what 10 values' seed noise gives."""
    from analysis.strata_sides import DECIDES_CHANCE, within_sides

    effect = 0.3 * np.random.default_rng(1).standard_normal((10, 6))
    effect[:3, 0] += 15.0
    coords, col, fam = _shared_orders(effect)
    clusters = KMeans(4, n_init=4, random_state=0).fit_predict(coords)
    assert sides(coords, clusters, col, fam) is None  # the clusters are the bases: no sides
    got = within_sides(coords, col, fam)
    assert got["sides"] == [["0", "1", "2"], ["3", "4", "5", "6", "7", "8", "9"]] and got["sizes"] == [12, 28]
    assert got["contrast"] > 3 and got["chance"] * 11 <= DECIDES_CHANCE
    scores = table_sides(coords, clusters, {"data_seed": col}, np.arange(len(col)), fam, ["data_seed"])
    assert "strata_sides" not in scores and scores["strata_within"][0]["sides"] == got["sides"]


def test_inside_the_families_heavy_tailed_order_noise_rarely_decides_and_one_value_is_no_side():
    """Each order's own seed noise, heavy-tailed (Student t, 1 degree of freedom) along one direction, the worst case
    the chance is taken for: the most extreme of 40 populations' columns reaches the chance of "decides" at most
    twice; a single order far out is no side (its own quirk: a side holds two values or more)."""
    from analysis.strata_sides import DECIDES_CHANCE, within_sides

    decided = 0
    for seed in range(40):
        effect = np.zeros((8, 6))
        effect[:, 0] = np.random.default_rng(200 + seed).standard_t(1, 8)
        got = within_sides(*_shared_orders(effect, seed=seed))
        decided += got is not None and got["chance"] is not None and got["chance"] <= DECIDES_CHANCE
    assert decided <= 2, decided
    effect = 0.3 * np.random.default_rng(2).standard_normal((6, 6))
    effect[0, 0] += 20.0
    got = within_sides(*_shared_orders(effect))
    assert got is None or (min(len(s) for s in got["sides"]) >= 2 and not (got["chance"] or 1) <= DECIDES_CHANCE)
    assert within_sides(*_shared_orders(np.zeros((3, 6)))) is None  # too few values for two sides of two


def test_inside_the_families_many_values_of_pure_noise_give_no_sides():
    """Review 128: with 40 values in 10 coordinates, distances concentrate and pure noise beat the one-direction
    chance (25 of 30 populations "decided", at "0.5 times as far apart"). Sides now need a contrast of 1.5 (farther
    apart than the values on each side: below, a test that cannot decide); above 60 values there are none."""
    from analysis.strata_sides import WITHIN_CONTRAST, within_sides

    for n_values in (20, 40):
        for seed in range(10):
            got = within_sides(*_shared_orders(np.zeros((n_values, 10)), seed=seed))
            assert got["contrast"] < WITHIN_CONTRAST and got["chance"] is None, (n_values, seed, got["contrast"])
    assert within_sides(*_shared_orders(np.zeros((61, 4)))) is None


def test_the_chance_of_sides_of_two_values_or_more_leaves_out_a_value_alone():
    """``smallest``: only cuts whose sides hold that many values; with four values, the one cut in the middle."""
    assert chance(3.0, 4, 2, draws=4000, smallest=2) <= chance(3.0, 4, 2, draws=4000)
    pts = np.sort(np.random.default_rng(0).standard_normal((4000, 4)), axis=1)
    middle = (pts[:, 2] - pts[:, 1]) / np.maximum(pts[:, 1] - pts[:, 0], pts[:, 3] - pts[:, 2])
    assert chance(3.0, 4, 2, draws=4000, smallest=2) == max(np.mean(middle >= 3.0), 1 / 4000)


def test_a_column_that_decides_inside_the_families_is_said_with_its_corrected_chance_and_leads_the_answer():
    from analysis.answer import Answer, _decided_head, _strata_within_text
    from analysis.results import FingerprintResult
    from analysis.strata_within import strata_within

    def fp(name: str, chance_: float, sides_: list[list[str]]) -> FingerprintResult:
        return FingerprintResult(fingerprint=name, scores={"strata_within": [
            {"column": "data_seed", "sides": sides_, "sizes": [12, 28], "contrast": 9.0, "chance": chance_}]})

    planted = [["0", "1", "2"], [str(v) for v in range(3, 10)]]
    fps = [fp("a", 5e-5, planted), fp("b", 0.002, planted), fp("c", 0.3, [["4", "5"], ["0", "1"]])]
    got = strata_within(fps)["data_seed"]
    assert got["fingerprints"] == ["a", "b"] and got["n_tested"] == 3 and got["corrected"] == pytest.approx(1.5e-4)
    # a fingerprint below the contrast floor (chance None) was tested too: counted, in the column and the correction
    got4 = strata_within([*fps, fp("d", None, planted)])["data_seed"]
    assert got4["n_tested"] == got4["n_tests"] == 4 and got4["fingerprints"] == ["a", "b"]
    assert strata_within(fps, {"data_seed"}) == {}  # said already as a followed column's sides
    assert strata_within([fp(f"f{i}", 0.002, planted) for i in range(6)]) == {}  # 6 x 0.002 > 1%: no
    ans = Answer(n_fingerprints=3, n_judged=3, strata_within={"data_seed": got})
    assert _decided_head(ans) == " with column 'data_seed' taken out as lineage, though it seems to decide one (below)"
    text = _strata_within_text(ans.strata_within)
    assert text.startswith("; besides, column 'data_seed', taken out as lineage, seems to decide a difference inside the "
                           "init families: its values '0', '1', '2' (12 models) apart from '3', '4', '5', '6', ... "
                           "(7 values) (28 models), 9.0 times as far apart")
    assert "(a, b: 2 of the 3 fingerprints tested set these sides;" in text and "0.015% for the most extreme of 3 tests" in text
    assert "report with --strata none to test these sides as a candidate" in text
