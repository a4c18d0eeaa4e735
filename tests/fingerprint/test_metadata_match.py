"""A report on an imported zoo compares the candidate basins with the metadata's columns
(analysis/metadata.py through the pipeline): a column that decides the camps is named in
summary.json, the HTML and the terminal; the same column at random is not."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _zoo(epochs_decide: bool):
    """6 init families of 4 near-copies (a small MLP); in every family the second and fourth
    members' output biases are moved (as if trained longer): two camps across every family.
    ``epochs`` is 40 for those members, or drawn at random."""
    import torch

    import fingerprint

    g = torch.Generator().manual_seed(0)
    mods, fam, longer = [], [], []
    for i in range(24):
        torch.manual_seed(i // 4)
        m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            if i % 2:
                m[2].bias.add_(torch.tensor([2.0, -2.0, 0.0]))
        mods.append(m)
        fam.append(f"f{i // 4}")
        longer.append(i % 2)
    r = np.random.default_rng(1)
    epochs = [40 if x else 10 for x in longer] if epochs_decide else r.choice([10, 40], 24).tolist()
    meta = {"family": fam, "epochs": epochs, "lr": r.uniform(1e-4, 1e-2, 24).tolist()}
    return fingerprint.Zoo.from_modules(mods, metadata=meta, probes={"ood": 3 * torch.randn(32, 4, generator=g)})


@pytest.mark.parametrize("decides", [True, False], ids=["epochs-decides", "epochs-at-random"])
def test_the_report_names_the_metadata_column_that_decides_the_camps(tmp_path, decides, monkeypatch):
    import io

    from rich.console import Console

    import fingerprint
    import fingerprint.cli.display as display

    zoo = _zoo(decides)
    fps = ["ood-outputs", "weight-stats"]
    html = fingerprint.report(zoo, tmp_path / "r.html", tmp_path / "s.json", fps, lineage="family", embedding="pca",
                              n_boot=2).read_text()
    s = json.loads((tmp_path / "s.json").read_text())
    for f in s["fingerprints"]:
        assert f["label_free"]["verdict"] == "crosses lineage"  # the moved biases: camps across the families
        m = {(e["column"], e["statistic"]): e["match"] for e in f["metadata_match"]}
        # family is the lineage (not compared); lr is unrelated; epochs decides, or not
        assert m == {("epochs", "AMI"): decides, ("epochs", "AUROC"): decides, ("lr", "AUROC"): False}
    assert html.count("Candidate basins and your metadata") == 2
    assert ("the candidate basins match column <code>epochs</code>" in html) is decides
    out = Console(width=100, record=True, file=io.StringIO())
    monkeypatch.setattr(display, "console", out)
    display.print_scorecard(fingerprint.scorecard(zoo, fps, lineage="family", embedding="pca", n_boot=2))
    text = out.export_text()
    assert ("candidate basins match column 'epochs': ood-outputs, weight-stats (AMI 1.00 [1.00, 1.00]; AUROC 1.00 "
            "[1.00, 1.00])" in text) is decides


def test_a_label_of_measurements_is_refused_or_warned_not_scored_as_classes(monkeypatch):
    """The sixth audit: ``--label weight_decay`` (a number per model) or a measured score with 4
    values scored each value as a basin (a null read ``tracks deep differences``). A column of
    numbers, not all whole, is refused when nearly every model has its own value, warned about with
    a few values; whole numbers and two rates (0.25 / 1.0) are classes."""
    import fingerprint.pipeline as pl
    from analysis.metadata import measurements
    from training.core.errors import UserError

    assert measurements(np.asarray([0.25, 1.0, 0.25, 1.0], dtype=object)) is None  # two rates: classes
    assert measurements(np.asarray([1, 2, 3, 4, 5.0], dtype=object)) is None  # whole numbers
    assert measurements(np.asarray(["a", "b", "c"], dtype=object)) is None
    assert measurements(np.asarray([0.1, 0.2, "", 0.3], dtype=object)) == (3, 3)  # a missing value is not counted
    zoo = _zoo(True)
    with pytest.raises(UserError) as e:
        pl.options_for(zoo, label="lr", lineage="family")
    assert str(e.value).startswith("--label lr holds measurements (24 distinct numbers, not all whole, on 24 models), "
                                   "not classes: the deep scores would treat each value as a basin; give a column of classes")
    assert pl.options_for(zoo, label="epochs", lineage="family").label == "epochs"  # whole numbers: classes, silently
    table = pl.model_table(zoo)
    table["lr"] = np.asarray([0.125, 0.25, 0.375, 0.5] * 6, dtype=object)  # a measured score with 4 values
    monkeypatch.setattr(pl, "model_table", lambda _zoo: table)
    with pytest.warns(UserWarning, match="^--label lr holds measurements \\(4 distinct numbers") as w:
        opts = pl.options_for(zoo, label="lr", lineage="family")
    assert opts.label == "lr" and len(w) == 1


def test_a_label_with_one_value_says_so(monkeypatch):
    """The seventh audit: ``--label rule`` where every model has rule 'a' made every verdict 'no
    ground truth' without saying why."""
    import fingerprint.pipeline as pl

    zoo = _zoo(True)
    table = pl.model_table(zoo)
    table["rule"] = np.asarray(["a"] * len(table["model_id"]), dtype=object)
    monkeypatch.setattr(pl, "model_table", lambda _zoo: table)
    with pytest.warns(UserWarning, match=r"^--label rule has one value \('a'\) for all 24 models: nothing to score "
                                         r"against, so every verdict is 'no ground truth'"):
        pl.options_for(zoo, label="rule", lineage="family")
    # empty cells are a value of their own, said (an outside audit, 78: bases with no label scored as a third class)
    table["rule"] = np.asarray(["a", "b", "", "a"] * 6, dtype=object)
    with pytest.warns(UserWarning, match=r"^--label rule is empty for 6 of 24 models: the deep scores treat the empty "
                                         r"value as a basin of its own"):
        pl.options_for(zoo, label="rule", lineage="family")
