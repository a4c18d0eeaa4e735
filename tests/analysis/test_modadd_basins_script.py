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
