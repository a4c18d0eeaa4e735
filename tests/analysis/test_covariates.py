"""A recorded training setting taken out of every fingerprint (--covariate, analysis/covariates.py): the
setting's own camps are no candidate, a difference crossed with it is still found, the answer says what it
is beyond, and a column that cannot be taken out is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import covariates as cov
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
    assert how == "4 levels" and d.shape == (5, 3)  # a missing value is a level of its own
    assert np.allclose(d.mean(0), 0)
    _, how = cov.terms(np.geomspace(1e-4, 1e-1, 12))
    assert how == "a linear trend in log(values)"
    _, how = cov.terms(np.linspace(-1, 1, 12))
    assert how == "a linear trend in its values"
    _, how = cov.terms(np.arange(12), "data_seed")  # a seed's numbers are labels
    assert how == "12 levels"
    d, how = cov.terms(np.asarray([1.0, 2.0, "", 4.0, 5.0, 6.0, 7.0, 8.0], dtype=object))
    assert how.startswith("a linear trend in its values (and the 1 models without a value apart)") and d.shape == (8, 2)


def test_taken_out_leaves_every_level_the_same_mean_for_features_and_distances():
    r = np.random.default_rng(0)
    level = np.asarray(list("aabbbcc" * 3), dtype=object)
    x = (r.standard_normal((21, 5)) + 5 * (level == "b")[:, None]).astype(np.float32)
    out, dist, std = cov.taken_out(x, False, True, {"k": level})
    assert out.dtype == np.float32 and not dist and std
    for v in "abc":
        assert np.allclose(out[level == v].mean(0), out.mean(0), atol=1e-5)
    # the residuals are the fit's: uncorrelated with every level's indicator
    d = np.linalg.norm(x[:, None] - x[None], axis=-1).astype(np.float64)
    coords, dist, std = cov.taken_out(d, True, True, {"k": level})
    assert not dist and not std and coords.shape[0] == 21
    for v in "abc":
        assert np.allclose(coords[level == v].mean(0), 0, atol=1e-8)
    # an MDS of the distances, less the level means: the features' own residuals up to a rotation
    ref = distance_to_features(d, 21)
    assert np.isclose(np.linalg.norm(ref - ref.mean(0)) ** 2 - np.linalg.norm(coords) ** 2,
                      sum((level == v).sum() * np.linalg.norm(ref[level == v].mean(0)) ** 2 for v in "abc"))


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
    assert sentence.startswith("beyond column 'opt' (2 levels), taken out of every fingerprint first (--covariate): "
                               "no candidate deep difference")


def test_the_plain_answer_sends_the_user_to_covariate_for_independent_seeds():
    fp, table, _ = _population(1)
    from analysis.answer import label_free_answer

    sentence = label_free_answer(analyze([fp], table, OPTS)).sentence
    assert "it matches column 'opt'" in sentence
    assert ("whether anything beyond a setting differs, report with --covariate opt, which takes its levels out of "
            "every fingerprint first") in sentence
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


def test_a_column_of_one_value_is_refused():
    fp, table, _ = _population(1)
    with pytest.raises(AnalysisError, match="--covariate same has one value for every model: there is nothing to take out"):
        analyze([fp], {**table, "same": np.asarray(["x"] * 24, dtype=object)}, OPTS.replace(covariates=["same"]))
    with pytest.raises(AnalysisError, match=r"covariates' \(--covariate\) must be a list of model column names"):
        OPTS.replace(covariates="opt")
