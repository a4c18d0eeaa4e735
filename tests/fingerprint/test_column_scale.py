"""How an extractor's columns are scaled before the analysis's PCA (``ExtractorSpec.scale``):
standardised one by one (``columns``, the default: columns in different units), or only centred
(``common``: a model's outputs, one unit). docs/extractors.md, "Scale"."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import scorecard as sc
from analysis.metrics import ami
from fingerprint import pipeline
from fingerprint.registry import (
    builtin_spec,
    extractor,
    get_extractor,
    reset_plugins,
)
from training.core.errors import UserError


def _outputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """24 models (12 families of 2), one model of each family in each of two rules: 8 output columns
    where the rules differ by 6 SDs of the family effects, and 400 where every model answers all
    but the same (a probe far from any boundary: spread 1e-3). ``(x [24, 408], family, rule)``."""
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(12), 2)
    rule = np.tile([0, 1], 12)
    loud = rng.normal(size=(12, 8))[fam] + 6.0 * rule[:, None] + 0.3 * rng.normal(size=(24, 8))
    quiet = 1e-3 * (rng.normal(size=(12, 400))[fam] + rng.normal(size=(24, 400)))
    return np.hstack([loud, quiet]), fam.astype(str), rule


def _analysed(x: np.ndarray, fam: np.ndarray, standardize: bool):
    ids = [f"m{i}" for i in range(len(x))]
    table = {"model_id": np.asarray(ids, dtype=object), "family": fam.astype(object)}
    opts = sc.AnalysisOptions(label="", lineage="family", n_boot=0, embedding="pca", n_family_boot=20)
    return sc.analyze([sc.FingerprintInput("fp", x, ids, {"standardize": standardize})], table, opts).fingerprints[0]


def test_outputs_in_one_unit_are_centred_not_standardised():
    """Standardised column by column, 400 columns every model agrees on outweigh the 8 that tell two
    rules apart (each gets unit variance): the clusters miss the rules. Centred only, the clusters
    are the rules, and the label-free split test finds them."""
    x, fam, rule = _outputs()
    common = _analysed(x, fam, standardize=False)
    columns = _analysed(x, fam, standardize=True)
    assert ami(common.clusters, rule) == pytest.approx(1.0)
    assert ami(columns.clusters, rule) < 0.5
    assert common.label_free["verdict"] == "crosses lineage"


def test_built_ins_declare_their_scale_and_a_bad_one_is_refused():
    for name in ("probe-outputs", "ood-outputs", "recombined-outputs", "anomalous-inputs"):
        assert get_extractor(name).scale == builtin_spec(name).scale == "common"
    for name in ("weight-stats", "weight-spectra", "output-profile", "token-logprobs"):
        assert get_extractor(name).scale == "columns"
    assert builtin_spec("my_module:my_plugin") is None  # never imported to read it
    with pytest.raises(UserError, match=r"unknown scale 'unit' \(valid: columns, common\)"):
        extractor("test-bad-scale", scale="unit")(lambda models: None)


def test_built_ins_declare_what_they_read_and_a_bad_declaration_is_refused():
    """``ExtractorSpec.reads``, the consensus's voters (analysis.answer._source)."""
    assert {n for n in ("weight-stats", "weight-spectra", "aligned-weights") if get_extractor(n).reads == "weights"} == \
        {"weight-stats", "weight-spectra", "aligned-weights"}
    assert get_extractor("cka").reads == builtin_spec("cka").reads == "activations"
    assert get_extractor("disagreement").reads == "outputs" and get_extractor("anomalous-inputs").reads == ""
    with pytest.raises(UserError, match=r"unknown reads 'logits' \(valid: activations, gradients, occlusions, outputs, weights, or leave it out"):
        extractor("test-bad-reads", reads="logits")(lambda models: None)


def test_the_declared_scale_is_stored_with_the_fingerprint_and_reaches_the_analysis(tiny_zoo):
    """A plugin's ``scale`` is stored in the cache entry, so ``fingerprint report`` (another process,
    the plugin not loaded) scales it the same way; a cache entry stored before entries had a scale
    takes its built-in's declaration, and an unknown extractor's is standardised."""
    try:
        @extractor("test-common-outputs", scale="common", reads="outputs")
        def common_outputs(models, n_probes: int = 8):
            return models.forward(models.task.probes("in_dist")[:n_probes]).flatten(1)

        zoo = pipeline.open_zoo(tiny_zoo)
        pipeline.compute(zoo, ["test-common-outputs", "weight-stats", "disagreement:probe_set=in_dist"])
        reset_plugins()  # a later process: the plugin is not registered
        got = {fp.name: fp.meta for fp in pipeline.cached_fingerprints(pipeline.open_zoo(tiny_zoo))}
        assert got["test-common-outputs"]["scale"] == "common" and got["test-common-outputs"]["standardize"] is False
        assert got["test-common-outputs"]["reads"] == "outputs" and got["weight-stats"]["reads"] == "weights"
        assert got["weight-stats"]["standardize"] is True
        # an extractor's own metadata stays out of the analysis, but for what it reads (disagreement: classes)
        assert got["disagreement:probe_set=in_dist"]["predicts"] == "classes" and "extra" not in got["weight-stats"]
    finally:
        reset_plugins()
    old = {"extractor": "probe-outputs"}  # cached before entries stored their scale
    assert pipeline._declared(old)["standardize"] is False and pipeline._declared(old)["reads"] == "outputs"
    assert pipeline._declared({"extractor": "some.module:fn"})["standardize"] is True
    assert pipeline._declared({"extractor": "some.module:fn"})["reads"] == ""
