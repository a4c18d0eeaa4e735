"""The calibrated "identifies lineage" test (analysis/identification.py): its AUC is the ROC-AUC of
pair distances for "same family", its permutation p-value is small where families are identifiable
and uniform where the fingerprint is noise, and the verdict uses it as noise evidence."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from analysis.calibration import verdict
from analysis.identification import lineage_identification
from analysis.options import AnalysisOptions

FAM = np.repeat(np.arange(12), 4)  # 12 init families x 4 models


def test_auc_is_the_roc_auc_of_pair_distances_and_distances_give_the_same_test():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 5)) + rng.normal(size=(12, 5))[FAM]  # families identifiable, not separated
    i, j = np.triu_indices(48, 1)
    expect = roc_auc_score(FAM[i] == FAM[j], -np.linalg.norm(x[i] - x[j], axis=1))
    r = lineage_identification(FAM, coords=x, n_perm=199)
    assert abs(r.auc - expect) < 1e-9 and 0.6 < r.auc < 0.95
    assert r.p_value <= 0.01 and (r.n_related, r.n_unrelated) == (72, 1056)
    d = lineage_identification(FAM, dist=cdist(x, x), n_perm=199)
    assert abs(d.auc - r.auc) < 1e-9 and d.p_value == r.p_value


def test_pairs_compare_only_inside_a_true_basin():
    """Families that sit in two far-apart basins: across basins every pair is unrelated and far, which
    would flatter the AUC; inside each basin the members are exchangeable, so it is chance."""
    rng = np.random.default_rng(1)
    basin = FAM % 2
    x = rng.normal(size=(48, 4)) + 50.0 * basin[:, None]
    assert lineage_identification(FAM, coords=x, n_perm=0).auc > 0.7  # confounded by the basins
    r = lineage_identification(FAM, basin, coords=x, n_perm=199)
    assert abs(r.auc - 0.5) < 0.15 and r.p_value > 0.05 and r.n_unrelated == 2 * (24 * 23 // 2 - 6 * 6)


def test_calibrated_on_noise_fingerprints():
    """50 i.i.d. fingerprints (Gaussian, and heavy-tailed in three basins): rejected at 0.05 about 5% of the time."""
    p = []
    for s in range(50):
        rng = np.random.default_rng(100 + s)
        x = rng.normal(size=(48, 5)) if s % 2 else rng.standard_t(2, size=(48, 5))
        p.append(lineage_identification(FAM, None if s % 2 else FAM % 3, coords=x, n_perm=99, random_state=s).p_value)
    p = np.asarray(p)
    assert (p <= 0.05).mean() <= 0.12  # binomial(50, 0.05): at most 6 rejections with probability 0.99
    assert 0.3 < np.median(p) < 0.7  # uniform, not merely conservative


def test_sampled_and_degenerate_inputs():
    fam = np.repeat(np.arange(30), 3)
    x = np.random.default_rng(2).normal(size=(90, 3)) + 3 * np.random.default_rng(3).normal(size=(30, 3))[fam]
    r = lineage_identification(fam, coords=x, n_perm=19, max_models=45)
    assert r.sampled == 45 and r.auc > 0.8
    none = lineage_identification(np.arange(6), coords=x[:6], n_perm=19)  # no relatives at all
    assert none.auc is None and none.p_value is None


def test_the_verdict_uses_identification_as_noise_evidence():
    opts = AnalysisOptions()
    quiet = dict(deep_q=0.5, noise_q=0.5)
    v, why = verdict(0.1, 0.1, None, False, opts, True, **quiet, lineage_auc=0.97, lineage_q=0.01)
    assert v == "tracks initialization noise" and "identifies lineage: AUC 0.97 >= 0.9 (q 0.01)" in why
    v, why = verdict(0.1, 0.1, None, False, opts, True, **quiet, lineage_auc=0.97, lineage_q=0.2)
    assert v == "uninformative" and "lineage AUC 0.97 not significant" in why
    assert verdict(0.1, 0.1, None, False, opts, True, **quiet, lineage_auc=0.8, lineage_q=0.001)[0] == "uninformative"
    # basins that follow the label and not the families stay clean: identification is only named
    v, why = verdict(0.6, 0.1, None, False, opts, True, deep_q=0.01, noise_q=0.5, lineage_auc=0.95, lineage_q=0.01)
    assert v == "tracks deep differences" and "within basins that follow the label, not the families" in why
    # ... while a label only a probe reads, in basins that do not show it, is deep and noise
    assert verdict(0.1, 0.1, 0.95, False, opts, True, **quiet, probe_ci=(0.9, 0.99), lineage_auc=0.95,
                   lineage_q=0.01)[0] == "tracks both"
    # basins that follow the families as well as the label: both, with or without identification
    assert verdict(0.6, 0.5, None, False, opts, True, deep_q=0.01, noise_q=0.01, lineage_auc=0.95,
                   lineage_q=0.01)[0] == "tracks both"
