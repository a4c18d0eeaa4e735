"""A recorded training setting taken out of every fingerprint (--covariate, analysis/covariates.py): the
setting's own camps are no candidate, a difference crossed with it is still found, the answer says what it
is beyond, and a column that cannot be taken out is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import covariates as cov
from analysis import labelfree as lf
from analysis.errors import AnalysisError
from analysis.metrics import ami
from analysis.reduce import distance_to_features
from analysis.scorecard import AnalysisOptions, FingerprintInput, analyze


def _population(seed: int, n: int = 24, setting_shift: float = 3.0, rule_shift: float = 0.0):
    """``n`` independent models (every model its own init family) in 40 feature dimensions; an optimizer
    (``adam`` / ``sgd``, alternating) shifts each model by ``setting_shift`` SDs, a rule crossed with it
    (half of each optimizer's models) by ``rule_shift``."""
    r = np.random.default_rng(seed)
    scale = np.exp(-np.arange(40) / 8)
    x = r.standard_normal((n, 40)) * scale
    opt = np.where(np.arange(n) % 2 == 0, "adam", "sgd").astype(object)
    rule = (np.arange(n) // 2) % 2
    x += setting_shift * np.outer(opt == "sgd", r.standard_normal(40)) * scale
    x += rule_shift * np.outer(rule, r.standard_normal(40)) * scale
    ids = [f"m{i:02d}" for i in range(n)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(n), "opt": opt,
             "steps": np.linspace(200, 2000, n), "lr": np.geomspace(1e-4, 1e-1, n), "run": np.asarray(ids, dtype=object)}
    fp = FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"})
    return fp, table, rule


OPTS = AnalysisOptions(n_perm=99, n_boot=2, label="", embedding="pca")


def _deep(res) -> bool:
    return res.fingerprints[0].label_free["verdict"] in ("groups lineages", "crosses lineage")


def test_terms_levels_trends_and_seeds():
    d, how = cov.terms(np.asarray(["adam", "sgd", "adam", "lion", ""], dtype=object))
    assert how == "4 levels, one of them the 1 model without a value" and d.shape == (5, 3)  # a level of its own
    assert np.allclose(d.mean(0), 0)
    _, how = cov.terms(np.geomspace(1e-4, 1e-1, 12))
    assert how == "a linear trend in log(values)"
    _, how = cov.terms(np.linspace(-1, 1, 12))
    assert how == "a linear trend in its values"
    _, how = cov.terms(np.arange(12), "data_seed")  # a seed's numbers are labels
    assert how == "12 levels"
    d, how = cov.terms(np.asarray([1.0, 2.0, "", 4.0, 5.0, 6.0, 7.0, 8.0], dtype=object))
    assert how == "a linear trend in its values (and the 1 model without a value apart)" and d.shape == (8, 2)


def test_the_fit_leaves_every_level_the_same_mean_for_features_and_distances():
    r = np.random.default_rng(0)
    level = np.asarray(list("aabbbcc" * 3), dtype=object)
    x = (r.standard_normal((21, 5)) + 5 * (level == "b")[:, None]).astype(np.float32)
    q = cov.fit({"k": level}).basis
    res = cov._residuals(x.astype(np.float64), q)
    for v in "abc":
        assert np.allclose(res[level == v].mean(0), 0, atol=1e-9)
    out, dist, std, share = cov.taken_out(x, False, True, cov.fit({"k": level}))
    assert out.dtype == np.float32 and not dist and std and 0.5 < share < 1
    d = np.linalg.norm(x[:, None] - x[None], axis=-1).astype(np.float64)
    coords, dist, std, _ = cov.taken_out(d, True, True, cov.fit({"k": level}))
    assert not dist and not std and coords.shape[0] == 21
    # an MDS of the distances, less the level means: the features' own residuals up to a rotation
    ref = distance_to_features(d, 21)
    fitted = cov._residuals(ref, q)
    assert np.isclose(np.linalg.norm(ref - ref.mean(0)) ** 2 - np.linalg.norm(fitted) ** 2,
                      sum((level == v).sum() * np.linalg.norm(ref[level == v].mean(0)) ** 2 for v in "abc"))


def test_a_rule_crossed_unevenly_with_the_setting_keeps_its_whole_gap():
    """Audit 92 (F1): a rule in cells of 10, 2, 2 and 10 models across two optimizers. Each optimizer's mean
    holds most of its models' rule, so the means alone took two thirds of the rule's gap; fitted jointly with
    the models' camps, the setting's part goes and the rule's gap stays."""
    r = np.random.default_rng(3)
    opt = np.asarray([0] * 10 + [1] * 2 + [0] * 2 + [1] * 10)
    rule = np.repeat([0, 1], 12)
    x = 0.3 * r.standard_normal((24, 30)) + 4 * opt[:, None] * r.standard_normal(30) + 3 * rule[:, None]
    setting = np.asarray(["adam", "sgd"], dtype=object)[opt]
    plain = cov._residuals(x, cov.fit({"opt": setting}).basis)
    out, _, _, _ = cov.taken_out(x, False, False, cov.fit({"opt": setting}))
    gap = lambda v: np.linalg.norm(v[rule == 1].mean(0) - v[rule == 0].mean(0)) / np.sqrt(30)  # noqa: E731
    assert gap(plain) < 2 and abs(gap(out) - 3) < 0.3  # the means alone: 1.67 of 3
    assert ami(rule, out[:, 0] > np.median(out[:, 0])) == 1.0
    for k in (0, 1):  # inside each camp the optimizers' shift is gone (it was 4 SDs a feature)
        inside = out[rule == k]
        assert np.abs(inside[opt[rule == k] == 0].mean(0) - inside[opt[rule == k] == 1].mean(0)).mean() < 0.5
    # the setting deciding the rule (one rule per optimizer): nothing of the camps' own to give back
    y = 0.3 * r.standard_normal((24, 30)) + 3 * rule[:, None]
    out, _, _, share = cov.taken_out(y, False, False, cov.fit({"opt": np.asarray(["adam", "sgd"], dtype=object)[rule]}))
    assert share > 0.9 and gap(out) < 0.2  # (of 3)


def test_a_level_that_only_scatters_wider_is_not_given_back_as_camps():
    """Review 93: a level whose models scatter 3x wider (shifted or not) had its spread split, and the split's
    part of the fit given back as camps: 17-23.5% of such nulls read p <= 0.05. The camps must differ inside
    every level to be given back."""
    r = np.random.default_rng(5)
    level = np.arange(24) % 2
    x = r.standard_normal((24, 30)) * np.where(level == 1, 3.0, 1.0)[:, None] + 3 * level[:, None]
    col = {"opt": np.asarray(["adam", "sgd"], dtype=object)[level]}
    out = cov.taken_out(x, False, False, cov.fit(col))[0]
    assert np.allclose(out, cov._residuals(x, cov.fit(col).basis))
    assert cov.fit({"lr": np.geomspace(1e-4, 1e-1, 24)}).cells is None  # a trend: no levels, nothing given back


def test_a_settings_own_camps_are_no_candidate_once_it_is_taken_out():
    """The 91st outside audit's N5: Adam against SGD, one rule, read "one candidate deep difference"."""
    fp, table, _ = _population(1)
    plain = analyze([fp], table, OPTS)
    assert _deep(plain)
    assert ami(plain.fingerprints[0].clusters, table["opt"]) > 0.9
    taken = analyze([fp], table, OPTS.replace(covariates=["opt"]))
    assert not _deep(taken)
    assert taken.settings["covariate_terms"] == {"opt": "2 levels"}
    from analysis.answer import label_free_answer

    sentence = label_free_answer(taken).sentence
    share = taken.fingerprints[0].scores["covariate_share"]
    assert share > 0.3 and taken.fingerprints[0].scores["covariate_chance"] == 1 / 23
    assert sentence.startswith(f"beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate; it "
                               f"explained up to {100 * share:.0f}% of a fingerprint's variance (outputs), against "
                               "about 4% by chance: a difference it decides (one rule per value), if any, went with it, "
                               "and the report without --covariate shows it): no candidate deep difference")
    # a setting whose fit explains no more than chance is not said to have taken anything
    fp0, table0, _ = _population(1, setting_shift=0.0)
    quiet = label_free_answer(analyze([fp0], table0, OPTS.replace(covariates=["opt"]))).sentence
    assert quiet.startswith("beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate): ")


def test_the_plain_answer_sends_the_user_to_covariate_for_independent_seeds():
    fp, table, _ = _population(1)
    from analysis.answer import label_free_answer

    sentence = label_free_answer(analyze([fp], table, OPTS)).sentence
    assert "it matches column 'opt'" in sentence
    assert ("whether anything beyond a setting differs, report with --covariate opt, which takes it out of every "
            "fingerprint first") in sentence
    assert "--strata" not in sentence


def test_a_rule_crossed_with_the_setting_is_found_beyond_it():
    """The 91st audit's P3/P4: a planted rule balanced over a nuisance setting. With the setting
    taken out the candidate is the rule (the setting's camps gone)."""
    fp, table, rule = _population(2, n=32, setting_shift=4.0, rule_shift=3.0)
    taken = analyze([fp], table, OPTS.replace(covariates=["opt"])).fingerprints[0]
    assert taken.label_free["verdict"] in ("groups lineages", "crosses lineage")
    assert ami(taken.clusters, rule) > 0.9
    assert ami(taken.clusters, table["opt"]) < 0.1


def test_a_numeric_setting_is_taken_out_as_a_trend_and_a_distance_fingerprint_as_coordinates():
    """A training length drawn per model, short or long (many distinct values): its camps, in features and in
    distances, are candidates until it is taken out as a linear trend."""
    fp, table, _ = _population(3, setting_shift=0.0)
    r = np.random.default_rng(3)
    steps = np.where(np.arange(24) % 2 == 0, r.uniform(200, 400, 24), r.uniform(1600, 2000, 24))
    z = (steps - steps.mean()) / steps.std()
    x = fp.values + 2.0 * np.outer(z, r.standard_normal(40)) * np.exp(-np.arange(40) / 8)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    fps = [FingerprintInput("steps", x, fp.model_ids, fp.meta),
           FingerprintInput("dist", d, fp.model_ids, {"extractor": "dist", "output": "distances", "kind": "behavioural"})]
    table = {**table, "steps": steps}
    assert all(_deep(analyze([f], table, OPTS)) for f in fps)
    res = analyze(fps, table, OPTS.replace(covariates=["steps"]))
    assert res.settings["covariate_terms"] == {"steps": "a linear trend in its values"}
    for r_ in res.fingerprints:
        assert not r_.error and r_.label_free["verdict"] not in ("groups lineages", "crosses lineage"), r_.fingerprint


@pytest.mark.parametrize("column, message", [
    ("nope", "unknown model column 'nope' for --covariate (valid: "),
    ("init_seed", "--covariate init_seed is the --lineage column"),
    ("run", "--covariate 'run' (24 levels): 23 terms for 24 models leave fewer than 4 to compare"),
])
def test_a_column_that_cannot_be_taken_out_is_refused_by_name(column, message):
    fp, table, _ = _population(1)
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analyze([fp], table, OPTS.replace(covariates=[column]))


def test_a_level_of_one_model_is_warned_about():
    """Audit 92 (F3): a level held by one model was accepted silently; that model becomes the centre."""
    fp, table, _ = _population(1)
    opt = table["opt"].copy()
    opt[0] = "lion"
    with pytest.warns(UserWarning, match=r"--covariate opt: 1 level \('lion'\) holds one model each: taking a level's "
                                         "mean out leaves nothing of such a model"):
        analyze([fp], {**table, "opt": opt}, OPTS.replace(covariates=["opt"]))


def test_a_column_of_one_value_is_refused():
    fp, table, _ = _population(1)
    with pytest.raises(AnalysisError, match="--covariate same has one value for every model: there is nothing to take out"):
        analyze([fp], {**table, "same": np.asarray(["x"] * 24, dtype=object)}, OPTS.replace(covariates=["same"]))
    with pytest.raises(AnalysisError, match=r"covariates' \(--covariate\) must be a list of model column names"):
        OPTS.replace(covariates="opt")


def test_a_float32_fingerprint_the_setting_decides_in_part_keeps_no_rounding_error_as_camps():
    """Review 92: features the setting decides, large (1e5), fitted in float32, left rounding error that the
    standardisation scaled up to the setting's camps (AMI 1.00). Fitted in float64, such a feature is zero."""
    r = np.random.default_rng(1)
    opt = np.arange(24) % 2
    x = np.concatenate([r.standard_normal((2, 20))[opt] * 3e4 + 1e5, r.standard_normal((24, 20))], 1)
    ids = [f"m{i}" for i in range(24)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(24),
             "opt": np.asarray(["adam", "sgd"], dtype=object)[opt]}
    out = cov.taken_out(x.astype(np.float32), False, True, cov.fit({"opt": table["opt"]}))[0]
    assert out.dtype == np.float32 and not out[:, :20].any()  # the decided features: exactly zero
    assert np.allclose(out[:, 20:], cov.taken_out(x, False, True, cov.fit({"opt": table["opt"]}))[0][:, 20:], atol=1e-5)
    for dt in (np.float64, np.float32):
        res = analyze([FingerprintInput("fp", x.astype(dt), ids, {"output": "features"})], table,
                      OPTS.replace(covariates=["opt"]))
        assert not _deep(res) and abs(ami(res.fingerprints[0].clusters, opt) or 0) < 0.3, dt


def test_a_number_coded_setting_of_few_values_is_levels_and_several_columns_are_said_in_order():
    """Review 92: a batch size of 4 values over 12 models, fitted as a line, left its camps (bs == 128)."""
    _, how = cov.terms(np.asarray([32, 64, 128, 256] * 3))
    assert how == "4 levels"
    _, how = cov.terms(np.asarray([32, 64, 128, 256, 512, 1024, 2048] * 2))  # 7 values, 14 models: still levels
    assert how == "7 levels"
    r = np.random.default_rng(0)
    bs = np.asarray([32, 64, 128, 256])[np.arange(12) % 4]
    x = r.standard_normal((12, 40)) + 3 * r.standard_normal((4, 40))[np.arange(12) % 4]
    ids = [f"m{i:02d}" for i in range(12)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": np.arange(12), "bs": bs,
             "wd": np.asarray([0, 0.1] * 6), "aug": np.asarray(["a"] * 6 + ["b"] * 6, dtype=object)}
    res = analyze([FingerprintInput("fp", x, ids, {"output": "features"})], table, OPTS.replace(covariates=["bs"]))
    assert not _deep(res)
    from analysis.answer import label_free_answer

    three = analyze([FingerprintInput("fp", x, ids, {"output": "features"})], table,
                    OPTS.replace(covariates=["bs", "wd", "aug"]))
    assert label_free_answer(three).sentence.startswith(
        "beyond columns 'bs' (4 levels), 'wd' (2 levels) and 'aug' (2 levels), taken out of every fingerprint first")


def test_every_null_replicate_is_fitted_as_the_data_were():
    """The tests' null replicates lose the design's part as the data did and get back what their own split
    explains of it (review 92: pairs of models alone in a level are mirror images once their mean is out,
    and the data's camps are given their part back; a null drawn without either read p <= 0.05 in 13-17%)."""
    d = cov.fit({"k": np.asarray(list("aaabbbcccddd"), dtype=object)}).design
    e = np.random.default_rng(0).standard_normal((5, 12, 3))
    out = lf._taken_out(e, d, 2)
    q = lf.orthonormal(d)
    ec = e - e.mean(1, keepdims=True)
    assert np.allclose(out.mean(1), 0)
    assert np.allclose(out - q @ (q.T @ out), ec - q @ (q.T @ ec))  # outside the design: the replicate's own
    assert not np.allclose(q @ (q.T @ out), 0)  # inside it: what each replicate's split explains, given back


def test_the_lineage_permutations_stay_inside_the_levels_taken_out():
    """Review 93: with the levels' means out, models are exchangeable inside a level only. Families nested in
    4 levels (families of 3, a family effect of 0.5 SD) lost their lineage (found in 37% of populations, 100%
    without the setting); a setting's levels inside every family read lineage in 15-21% of nulls. Review 95:
    the levels are the columns fitted as levels, a trend beside them or many levels notwithstanding."""
    levels = np.asarray(list("abcd") * 6, dtype=object)
    f = cov.fit({"k": levels, "lr": np.geomspace(1e-4, 1e-1, 24)})  # a trend beside the levels
    assert f.cells is None and ami(f.levels, levels) == 1.0
    assert ami(lf._exchangeable_cells(None, f.levels), levels) == 1.0
    assert cov.fit({"lr": np.geomspace(1e-4, 1e-1, 24)}).levels is None  # a trend alone: no cells
    many = cov.fit({"lr": np.geomspace(1e-4, 1e-1, 15)[np.arange(30) % 15]}, {"lr": "levels"})
    assert len(set(many.levels.tolist())) == 15  # more levels than half the models: still the cells
    gen = np.asarray([0, 1] * 12)
    assert len(set(lf._exchangeable_cells(gen, f.levels).tolist())) == 4 and lf._exchangeable_cells(gen, None).max() == 1
    scale = np.exp(-np.arange(50) / 8)
    family = np.arange(24) // 3
    found = 0
    for seed in range(8):
        r = np.random.default_rng(seed)
        setting = np.asarray([f"L{v}" for v in family % 4], dtype=object)
        x = (r.standard_normal((24, 50)) + 0.5 * r.standard_normal((8, 50))[family]
             + 3 * r.standard_normal((4, 50))[family % 4]) * scale
        fit = cov.fit({"setting": setting})
        res = lf.label_free(cov.taken_out(x, False, True, fit)[0], family, n_null=99, random_state=seed,
                            taken=fit.design, taken_cells=fit.levels)
        found += res.p_lineage <= 0.05
    assert found >= 6  # 7 of 8 here; 3 of 8 with permutations across the levels
    # every level one family: no permutation moves a model to another family, and the lineage is not tested
    one = cov.fit({"setting": np.asarray([f"L{v}" for v in family], dtype=object)})
    x = np.random.default_rng(0).standard_normal((24, 10))
    res = lf.label_free(cov.taken_out(x, False, True, one)[0], family, n_null=19, taken=one.design, taken_cells=one.levels)
    assert res.p_lineage is None


def test_a_form_forced_after_the_column_name():
    """Audit 92 (F4): an 8-value learning-rate grid over 24 models is a trend by its values, and a grid whose
    effect is not monotone had no way to be taken out as levels; ``lr:levels`` and ``bs:trend`` force the form."""
    lr = np.geomspace(1e-4, 1e-1, 8)[np.arange(24) % 8]
    _, how = cov.terms(lr, "lr")
    assert how == "8 levels"  # 8 values over 24 models: levels by its values already
    _, how = cov.terms(np.geomspace(1e-4, 1e-1, 24), "lr", "levels")
    assert how == "24 levels"
    _, how = cov.terms(np.asarray([32, 64, 128, 256] * 3), "bs", "trend")
    assert how == "a linear trend in its values"
    with pytest.raises(AnalysisError, match=r"--covariate opt:trend: column 'opt' does not hold numbers \(such as 'adam'\)"):
        cov.terms(np.asarray(["adam", "sgd"] * 3, dtype=object), "opt", "trend")
    # a grid whose middle rates move the models one way, the ends the other: a line leaves it, its levels do not
    fp, table, _ = _population(5, setting_shift=0.0)
    r = np.random.default_rng(5)
    rates = np.geomspace(1e-4, 1e-1, 12)[np.arange(24) % 12]
    bump = np.where((np.arange(24) % 12 >= 3) & (np.arange(24) % 12 <= 8), 1.0, -1.0)
    x = fp.values + 2.5 * np.outer(bump, r.standard_normal(40)) * np.exp(-np.arange(40) / 8)
    fp = FingerprintInput("grid", x, fp.model_ids, fp.meta)
    table = {**table, "lr": rates}
    trend = analyze([fp], table, OPTS.replace(covariates=["lr:trend"]))
    assert trend.settings["covariate_terms"] == {"lr": "a linear trend in log(values)"} and _deep(trend)
    levels = analyze([fp], table, OPTS.replace(covariates=["lr:levels"]))
    assert levels.settings["covariate_terms"] == {"lr": "12 levels"} and not _deep(levels)
    from analysis.answer import label_free_answer

    assert label_free_answer(levels).sentence.startswith("beyond column 'lr' (12 levels), taken out of every fingerprint")


@pytest.mark.parametrize("covariates, message", [
    (["opt:level"], "unknown form 'level' in --covariate opt:level (valid: levels, trend, or the column alone"),
    (["nope:levels"], "unknown model column 'nope' for --covariate (valid: "),
])
def test_a_misspelt_form_or_column_is_refused_by_name(covariates, message):
    fp, table, _ = _population(1)
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analyze([fp], table, OPTS.replace(covariates=covariates))
    with pytest.raises(AnalysisError, match=r"--covariate\) names column 'lr' twice"):
        OPTS.replace(covariates=["lr", "lr:levels"])


def test_a_column_whose_name_ends_in_a_form_is_that_column():
    """Review 95 (L6): a column called ``opt:levels`` was refused as "unknown model column 'opt'"."""
    fp, table, _ = _population(2)
    table = {k: v for k, v in table.items() if k != "opt"} | {"opt:levels": table["opt"]}
    res = analyze([fp], table, OPTS.replace(covariates=["opt:levels"]))
    assert res.settings["covariate_terms"] == {"opt:levels": "2 levels"}


def _shared_orders(seed: int, rule_shift: float = 0.0):
    """16 init families x 4 data orders shared across them (``data_seed``, a stratum of the label-free tests); the
    learning rate high where family + order is odd (each family and each order holds both); each (order, lr) cell
    shifted its own way (the data order's noise differs between the two trainings: their interaction); a rule
    crossed with everything (one model of each family and order pair in two, by a hash) shifts by ``rule_shift``."""
    r = np.random.default_rng(seed)
    scale = np.exp(-np.arange(40) / 8)
    fam, order = np.repeat(np.arange(16), 4), np.tile(np.arange(4), 16)
    lr = np.where((fam + order) % 2 == 1, "1e-2", "3e-3").astype(object)
    rule = ((fam * 7 + order * 3) // 2) % 2
    cell = r.standard_normal((4, 2, 40)) * 3
    x = r.standard_normal((64, 40)) + r.standard_normal((16, 40))[fam] + cell[order, (lr == "1e-2").astype(int)]
    x = (x + rule_shift * np.outer(rule, r.standard_normal(40))) * scale
    ids = [f"f{f:02d}-o{o}" for f, o in zip(fam, order)]
    table = {"model_id": np.asarray(ids, dtype=object), "init_seed": fam, "data_seed": order, "lr": lr}
    fp = FingerprintInput("outputs", x, ids, {"extractor": "outputs", "output": "features", "kind": "behavioural"})
    return fp, table, rule


@pytest.mark.parametrize("seed", range(3))
def test_a_setting_taken_out_beside_shared_data_orders_leaves_no_camps_of_their_cells(seed):
    """Outside audit 125 (F2): `--covariate lr` with data_seed as strata left the two columns' interaction, and the
    camps of the (data order, lr) cells read as "one candidate deep difference". The setting is taken out within each
    data order; a rule crossed with both is still found."""
    fp, table, rule = _shared_orders(seed)
    opts = OPTS.replace(covariates=["lr"])
    res = analyze([fp], table, opts)
    assert not _deep(res), res.fingerprints[0].label_free
    assert res.settings["covariate_terms"]["lr"] == "2 levels, within each value of 'data_seed'"
    fp, table, rule = _shared_orders(seed, rule_shift=6.0)
    free = analyze([fp], table, opts).fingerprints[0].label_free
    basins = free["candidate_basins"]
    assert free["verdict"] == "crosses lineage" and ami(rule, [basins[m] for m in table["model_id"]]) > 0.9


def test_only_a_stratum_shared_across_families_is_crossed_and_each_covariate_alone():
    """Review 127: a data_seed set per family was crossed with the covariate (taking out the covariate x family
    interaction, and the lineage test with it); two covariates beside a stratum lost their own interaction too."""
    fam = np.repeat(np.arange(12), 4)
    lr = np.tile(np.asarray(["a", "b"], dtype=object), 24)
    per_family = cov.fit({"lr": lr}, within={"data_seed": fam}, families=fam)
    assert per_family.hows["lr"] == "2 levels" and per_family.basis.shape[1] == 1
    order = np.tile(np.arange(4), 12)
    lr = np.where(fam % 2 == 0, "a", "b").astype(object)  # set per family, crossed with the 4 shared orders
    wd = np.where((fam // 2) % 2 == 0, "x", "y").astype(object)
    f = cov.fit({"lr": lr, "wd": wd}, within={"data_seed": order}, families=fam)
    assert f.hows["lr"] == "2 levels, within each value of 'data_seed'"
    assert f.basis.shape[1] == 1 + 1 + 3 + 3  # each covariate's own crossing with the 4 orders, not lr x wd
    both = (lr == "a").astype(float) * (wd == "x") - ((lr == "a") * (wd == "x")).mean()
    assert np.linalg.norm(both - f.basis @ (f.basis.T @ both)) > 0.1 * np.linalg.norm(both)
