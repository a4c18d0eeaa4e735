"""The label-free analysis of freshly extracted fingerprints, as tests of single extractors run it."""

from __future__ import annotations

import numpy as np

from analysis.options import AnalysisOptions, FingerprintInput
from analysis.scorecard import analyze


def label_free(zoo, fps, lineage: str = "family") -> list:
    """The analysed fingerprints (``FingerprintResult``) of the extraction results ``fps`` of ``zoo``,
    label-free with the model column ``lineage`` as init families (99 permutations, PCA maps)."""
    inputs = [FingerprintInput(r.name, r.values, list(r.model_ids), r.meta) for r in fps]
    table = {"model_id": np.asarray(zoo.model_ids), lineage: np.asarray(zoo.models[lineage], dtype=object)}
    options = AnalysisOptions(lineage=lineage, label="", n_perm=99, n_boot=0, n_family_boot=30, embedding="pca")
    return analyze(inputs, table, options).fingerprints
