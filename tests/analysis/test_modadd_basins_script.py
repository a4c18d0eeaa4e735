"""scripts/modadd_basins.py's within-group pass: which models of a two-rate zoo it scores together."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("modadd_basins", Path(__file__).parents[2] / "scripts" / "modadd_basins.py")
mb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mb)


def test_within_groups_keeps_clock_and_pizza_of_groups_holding_both():
    label = np.array(["clock", "pizza", "mixed", "clock", "pizza", "pizza", "mixed", "clock"])
    group = np.array(["r0.3", "r0.3", "r0.3", "r0.3", "r0.7", "r0.7", "r0.7", "r0.8"])
    out = mb.within_groups(label, group)
    assert list(out) == ["r0.3"]  # r0.7 has no clock, r0.8 no pizza
    assert out["r0.3"].tolist() == [True, True, False, True, False, False, False, False]


def test_within_groups_with_every_label_keeps_groups_of_two_labels_or_more():
    label = np.array(["pizza", "mixed", "pizza", "clock", "clock"])
    group = np.array(["r0.25", "r0.25", "r0.25", "r1", "r1"])
    out = mb.within_groups(label, group, None)
    assert list(out) == ["r0.25"] and out["r0.25"].tolist() == [True, True, True, False, False]


def test_cp_interval_resamples_init_families_of_the_kept_models():
    """The clock/pizza pass's interval: the clusters' AMI with the label over whole init families
    redrawn, on the kept models only, in the result's model order."""
    from types import SimpleNamespace

    table = {"model_id": np.array(["a", "b", "c", "d", "e", "f", "g", "h", "x"]),
             "init_seed": np.array([0, 0, 1, 1, 2, 2, 3, 3, 9])}
    keep = np.array([True] * 8 + [False])  # "x" (a mixed model) is not in the pass
    ids = ["h", "g", "f", "e", "d", "c", "b", "a"]  # any order: families are looked up by id
    perfect = SimpleNamespace(model_ids=ids, clusters=[0, 0, 1, 1, 0, 0, 1, 1],
                              label_values=["clock", "clock", "pizza", "pizza", "clock", "clock", "pizza", "pizza"])
    assert mb.cp_interval(perfect, table, keep) == [1.0, 1.0]  # a draw of one label has no AMI (left out); others 1
    mismatched = SimpleNamespace(model_ids=ids, clusters=[0, 1, 0, 1, 0, 1, 0, 1], label_values=perfect.label_values)
    lo, hi = mb.cp_interval(mismatched, table, keep)  # clusters split every family: no better than chance
    assert lo <= 0.0 and hi < 0.5
    assert mb.cp_interval(SimpleNamespace(model_ids=[], clusters=[], label_values=None), table, keep) is None
    few = {"model_id": table["model_id"], "init_seed": np.array([0, 0, 0, 0, 1, 1, 1, 1, 9])}
    assert mb.cp_interval(perfect, few, keep) is None  # 2 families: fewer than the bootstrap's 4
