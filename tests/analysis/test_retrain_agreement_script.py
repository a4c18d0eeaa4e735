"""scripts/retrain_agreement.py: the share of models that keep their label between two trainings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("retrain_agreement", Path(__file__).parents[2] / "scripts" / "retrain_agreement.py")
ra = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ra)


def test_label_agreement_counts_kept_labels_transitions_and_the_excluded_ones():
    a = ["clock", "pizza", "mixed", "clock", "pizza", "mixed", "clock", "pizza"]
    b = ["clock", "mixed", "clock", "clock", "pizza", "mixed", "pizza", "pizza"]
    fam = [0, 0, 1, 1, 2, 2, 3, 3]
    r = ra.label_agreement(a, b, fam, exclude=("mixed",))
    assert r["kept"] == 5 and r["agree"] == 5 / 8
    assert r["n_kept_labels"] == 6 and r["agree_kept"] == 4 / 6  # mixed in the first run left out
    assert r["counts_a"] == {"clock": 3, "mixed": 2, "pizza": 3} and r["counts_b"] == {"clock": 3, "mixed": 2, "pizza": 3}
    assert r["transitions"] == {"clock->clock": 2, "clock->pizza": 1, "mixed->clock": 1, "mixed->mixed": 1,
                                "pizza->mixed": 1, "pizza->pizza": 2}
    lo, hi = r["agree_ci"]
    assert 0.0 <= lo <= 5 / 8 <= hi <= 1.0


def test_label_agreement_identical_runs_and_too_few_families():
    a = np.array(["clock", "pizza"] * 4)
    r = ra.label_agreement(a, a.copy(), [0, 0, 1, 1, 2, 2, 3, 3])
    assert r["agree"] == 1.0 and r["agree_ci"] == [1.0, 1.0] and "agree_kept" not in r
    assert ra.label_agreement(a, a, [0, 0, 0, 0, 1, 1, 1, 1])["agree_ci"] is None  # 2 families: no interval
