"""``fingerprint lineage`` on a real tiny zoo: related pairs found, the tree recovered, the JSON contract, errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fingerprint import Zoo
from fingerprint.lineage import lineage
from tests.conftest import run_cli
from training.core.errors import UserError

BIN = [sys.executable, "-m", "fingerprint.cli"]


def cli(*args) -> subprocess.CompletedProcess:
    return run_cli("lineage", *args, env={"COLUMNS": "200"})  # in this process; the table's names unabridged


def test_related_pairs_and_fine_tune_parents_are_recovered(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, n_perm=9999)
    assert r["evidence"] == "exact" and r["n_pairs"] == len(zoo) * (len(zoo) - 1) // 2
    seeds = dict(zip(zoo.model_ids, zoo.models["init_seed"].tolist()))
    pairs = {(p["a"], p["b"]): p for p in r["pairs"]}
    # same init, different data order: found; different inits: not
    siblings = [p for (a, b), p in pairs.items() if seeds[a] == seeds[b] and ">" not in a + b]
    assert siblings and all(p["related"] for p in siblings)
    assert r["truth"]["shared_init_power"] == 1.0
    assert r["truth"]["shared_init_fpr"] <= 0.1
    # families are the init seeds; the forest joins only relatives (from the checkpoint histories:
    # each of the 16 children gets a parent, the seed grid is roots); a fine-tune points away from its
    # parent (more training raised the weights' norm, learnt from the checkpoints)
    assert sorted(len(f) for f in r["families"]) == [6, 6, 6, 6] and r["two_in_one"] == []  # each whole: not cut in two
    assert len(r["edges"]) == 16 and all(seeds[p] == seeds[c] for p, c, _ in r["edges"])
    assert r["orientation"]["statistic"] == "norm" and r["orientation"]["sign"] == 1
    assert r["by_evidence"]["exact"]["by_kind"]["finetune"]["direction_accuracy"] == 1.0


def test_cli_writes_the_json_contract_with_behavioural_evidence(tiny_zoo, tmp_path):
    out = tmp_path / "lineage.json"
    res = cli(tiny_zoo, "--fp", "probe-outputs", "--n-perm", "999", "--json", out)
    assert res.returncode == 0, res.stderr
    assert "exact *" in res.stdout and "probe-outputs" in res.stdout
    assert "4 families of 6 models" in res.stdout  # the recovered sizes, not only their count
    r = json.loads(out.read_text())
    assert set(r["truth"]) == {"shared_init_fpr", "shared_init_power", "parent_accuracy", "direction_accuracy", "false_edges"}
    assert all(isinstance(r["truth"][k], float) for k in r["truth"] if k != "false_edges")
    recorded = dict(zip(Zoo.open(tiny_zoo).model_ids, Zoo.open(tiny_zoo).models["parent_id"].tolist()))
    wrong = sum(1 for p, c, _ in r["edges"] if recorded[c] != p and recorded[p] != c)  # joins no parent and child
    assert r["truth"]["false_edges"] == wrong <= 2
    assert set(r["pairs"][0]) == {"a", "b", "p_value", "q_value", "related"}
    assert all(len(e) == 3 and 0.0 <= e[2] <= 1.0 for e in r["edges"])
    assert set(r["by_evidence"]) == {"exact", "matched", "probe-outputs"}
    # the behavioural test alone, on sampled pairs, with the truth named by a column
    r = lineage(Zoo.open(tiny_zoo), ["probe-outputs"], weights=False, max_pairs=100, lineage_column="init_seed")
    assert r["evidence"] == "probe-outputs" and r["n_pairs"] == 100 and r["n_pairs_total"] == 276


def test_truth_is_null_where_the_zoo_has_none(tiny_zoo, monkeypatch):
    from fingerprint import tables

    monkeypatch.setattr(tables, "shared_starts", lambda zoo: None)  # one checkpoint each, as an import without histories
    zoo = Zoo.open(tiny_zoo)
    zoo.models.columns["init_seed"] = np.full(len(zoo), -1)  # as an imported zoo has it
    zoo.models.columns["parent_id"] = np.asarray([""] * len(zoo))
    r = lineage(zoo, n_perm=99)
    assert r["truth"] == dict.fromkeys(("shared_init_fpr", "shared_init_power", "parent_accuracy", "direction_accuracy",
                                        "false_edges"))


def test_bad_inputs_are_one_line_errors(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    for kwargs, expect in [({"alpha": 2.0}, "--alpha must be in (0, 1), got 2"),
                           ({"lineage_column": "nosuch"}, "unknown model column 'nosuch' for --lineage (valid: "),
                           ({"orient": "skew"}, "unknown --orient 'skew' (valid: auto, kurtosis, norm)"),
                           ({"max_pairs": 0}, "--max-pairs must be >= 1"),
                           ({"weights": False}, "name a fingerprint for the behavioural test (--fp NAME)"),
                           ({"fps": ["nosuch"]}, "nosuch")]:
        with pytest.raises(UserError) as e:
            lineage(zoo, **kwargs)
        assert expect in str(e.value) and "\n" not in str(e.value), (kwargs, str(e.value))
    res = cli(tiny_zoo, "--alpha", "2")
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "--alpha must be in (0, 1), got 2" in lines[0], res.stderr


def test_first_checkpoints_stand_in_for_a_missing_lineage_column(tiny_zoo):
    """An import with checkpoint histories that recorded no seeds: models whose first checkpoints are
    bit-identical (siblings at step 0; a spawned child's first checkpoint is its parent's at the fork)
    are the families, exactly, before any `fingerprint lineage`. A fine-tune's first stored checkpoint
    is 5 steps past its parent's last: alone, unless parent_id joins it."""
    from sklearn.metrics import adjusted_mutual_info_score

    from fingerprint import pipeline
    from fingerprint.tables import FIRST_CHECKPOINT, recovered_line

    zoo = Zoo.open(tiny_zoo)
    truth = zoo.models.columns["init_seed"].copy()
    zoo.models.columns["init_seed"] = np.full(len(zoo), -1)  # as an import without seeds has it
    res = pipeline.scorecard(zoo, ["probe-outputs"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca")
    assert res.lineage == FIRST_CHECKPOINT and res.scorecard[0].n_families == 4  # parent_id joins the fine-tunes
    starts = pipeline.model_table(zoo)[FIRST_CHECKPOINT]
    not_ft = np.asarray([k != "finetune" for k in zoo.models["kind"]])
    assert adjusted_mutual_info_score(truth[not_ft], starts[not_ft]) == 1.0
    assert set(starts[~not_ft]) == {""}  # each fine-tune linked to none by its checkpoints: its parent's family
    assert recovered_line(res.lineage, zoo) == ("lineage: the 4 families of models whose first checkpoints are bit-identical "
                                                "(4 (x4) models, and 8 models linked to none, each in its parent's family "
                                                "or alone: if those have relatives, name the families with --lineage "
                                                "COLUMN): a shared initialisation seen in the histories, not a column of "
                                                "the zoo (--lineage COLUMN names one)")


def test_recovered_families_stand_in_for_a_missing_lineage_column(tiny_zoo, monkeypatch):
    """An import that recorded no seeds (and one checkpoint per model): label-free verdicts are
    'insufficient' until `fingerprint lineage` recovers the families from the weights; then the
    analysis uses them as its lineage."""
    from sklearn.metrics import adjusted_mutual_info_score

    from fingerprint import pipeline, tables

    monkeypatch.setattr(tables, "shared_starts", lambda zoo: None)  # no histories to read families from
    zoo = Zoo.open(tiny_zoo)
    truth = zoo.models.columns["init_seed"].copy()
    zoo.models.columns["init_seed"] = np.full(len(zoo), -1)  # as an import without seeds has it
    zoo.models.columns["parent_id"] = np.asarray([""] * len(zoo))  # and without parentage (else its trees stand in)
    before = pipeline.scorecard(zoo, ["probe-outputs"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca")
    assert before.lineage == "init_seed" and before.scorecard[0].label_free_verdict == "insufficient"
    assert "fingerprint lineage ZOO" in before.scorecard[0].label_free_sentence
    assert before.scorecard[0].label_free_sentence.startswith(  # unknown, not one family (the thirteenth audit)
        "insufficient: the init families are unknown (every model's 'init_seed' is -1, an import's mark for a seed")
    lineage(zoo, n_perm=999)
    assert adjusted_mutual_info_score(truth, pipeline.model_table(zoo)[tables.RECOVERED]) == 1.0
    after = pipeline.scorecard(zoo, ["probe-outputs"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca")
    assert after.lineage == tables.RECOVERED and after.scorecard[0].n_families == 4
    assert after.scorecard[0].label_free_verdict != "insufficient"
    # the terminal says, once, that the lineage is the recovered one
    from fingerprint.tables import recovered_line

    assert recovered_line(after.lineage, zoo) == ("lineage: the 4 families recovered by `fingerprint lineage` (weights, "
                                                  "exact; 6 (x4) models), not a column of the zoo: an estimate (docs/lineage.md)")
    assert recovered_line(before.lineage, zoo) is None
    table = pipeline.model_table(zoo)  # nothing recovered: no empty list of sizes (the thirteenth audit)
    zoo.models.columns[tables.RECOVERED] = np.asarray([f"alone:{m}" for m in zoo.model_ids], dtype=object)
    assert recovered_line(tables.RECOVERED, zoo) == (
        f"lineage: `fingerprint lineage` recovered no family of two or more (weights, exact); all {len(zoo)} models "
        "alone, each its own family: an estimate, not a column of the zoo (docs/lineage.md)")
    del zoo.models.columns[tables.RECOVERED], table
    # a stored analysis is reused only with families built by the same rule (before it: connected components)
    from analysis.lineage import FAMILY_RULE
    from fingerprint.tables import options_stamp

    assert options_stamp(zoo, pipeline.options_for(zoo))["recovered"]["family_rule"] == FAMILY_RULE
    old = {k: v for k, v in zoo.load_result("lineage").items() if k != "family_rule"}
    zoo.save_result("lineage", old)  # as stored before audit 45: connected components
    assert recovered_line(after.lineage, zoo).endswith("one false pair merges: rerun `fingerprint lineage ZOO`")
    # a zoo that has its own lineage column keeps it
    assert pipeline.options_for(Zoo.open(tiny_zoo)).lineage == "init_seed"


def test_the_evidence_table_fits_80_columns_without_cutting_a_name():
    """At COLUMNS=80 the table showed `anomalo…`: names fold instead, and no number is cut."""
    from rich.console import Console

    from fingerprint.cli.lineage import evidence_table

    row = {"n_related": 12345, "n_families": 7, "shared_init_fpr": 0.052, "shared_init_power": 1.0, "bh_fdp": 0.048,
           "parent_accuracy": 0.5, "direction_accuracy": None}
    names = ["anomalous-inputs", "token-logprobs:prompts=ood", "anomalous-inputs:n_random=16"]
    r = {"zoo": "hf42/zoo_lin", "n_pairs": 105, "n_pairs_total": 105, "evidence": names[0], "by_evidence": {n: row for n in names}}
    console = Console(width=80, record=True, color_system=None)
    console.print(evidence_table(r, 0.05))
    text = console.export_text()
    lines = text.splitlines()
    assert "…" not in text and max(map(len, lines)) <= 80
    assert "anomalous-inputs *" in text  # the primary evidence, whole
    rows = [l for l in lines if "12,345" in l]
    assert len(rows) == 3 and all(l.split()[-9:] == ["12,345", "7", "–", "0.052", "1.000", "0.048", "0.500", "–", "–"]
                                 for l in rows)  # merged and false edges: none recorded
    # a longer name folds onto the next line: its pieces, joined, are the name
    folded = "".join(l.split("  ")[0].strip() for l in lines[lines.index(rows[2]):lines.index(rows[2]) + 2])
    assert folded == "anomalous-inputs:n_random=16", lines


def test_the_family_line_gives_sizes_and_the_pairs_left_between_families():
    """Audit 45: '14 families' hid a 72-model family of 9 seeds; the sizes show it, and the pairs
    the family rule left between families are counted."""
    from fingerprint.cli.lineage import family_sizes, left_out

    fams = [["m"] * s for s in [72, 32, 32, 16, 16] + [8] * 9]
    assert family_sizes(fams) == "14 families: 72, 32 (x2), 16 (x2), 8 (x9) models"
    assert family_sizes([["a", "b"]] * 30) == "30 families of 2 models"
    assert family_sizes([["m"] * s for s in range(2, 12)]) == "10 families: 11, 10, 9, 8, 7, 6, ... models"
    assert family_sizes([]) == "0 families"
    r = {"evidence": "exact", "by_evidence": {"exact": {"n_between": 21}}}
    assert left_out(r).startswith("21 significant pairs between the recovered families were left out: a pair joins two "
                                  "models into a family only when they share at least half of their relatives")
    r["by_evidence"]["exact"]["n_between"] = 0
    assert left_out(r) is None
    # a family that looks like two joined by chance pairs (audit 79 F3): said, the largest 3, then a count
    from fingerprint.cli.lineage import two_in_one_lines

    two = {"family": "family of m00", "parts": [[f"m{i:02d}" for i in range(0, 24, 4)], [f"m{i:02d}" for i in range(1, 24, 4)]],
           "between": 8, "pairs": 36, "within": 1.0, "p_value": 0.005, "q_value": 0.015}
    (line,) = two_in_one_lines({"two_in_one": [two]})
    assert line.startswith("the recovered family of m00 (12 models) may be two families joined by chance pairs: its models "
                           "fall into 6 (m00, m04, m08, ...) and 6 (m01, m05, m09, ...), related in 100% of the pairs within "
                           "the two and 8 of the 36 between (q 0.015 against one family whose pairs are missed at random)")
    assert two_in_one_lines({"two_in_one": [two] * 5})[-1].startswith("2 more recovered families may be two each")
    assert two_in_one_lines({"two_in_one": []}) == []


def test_each_model_gets_its_nearest_candidate_significant_or_not(tiny_zoo, tmp_path):
    """The sixth audit: on Hugging Face fine-tunes imported beside their bases, BH called no base
    pair, yet ranking the bases by each child's pair p-value put its own base first for 24 of 24.
    ``--candidates COLUMN=VALUE`` ranks them: each other model's nearest candidate and runner-up, by
    every evidence, with how often it is the true parent / of the true family."""
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, n_perm=999, candidates="kind=base")
    kinds = dict(zip(zoo.model_ids, zoo.models["kind"].tolist()))
    seeds = dict(zip(zoo.model_ids, zoo.models["init_seed"].tolist()))
    near = r["nearest"]["by_evidence"]["exact"]
    assert r["nearest"]["candidates"] == "kind=base" and set(r["nearest"]["by_evidence"]) == {"exact", "matched"}
    assert sorted(row["model"] for row in near["rows"]) == sorted(m for m, k in kinds.items() if k != "base")
    assert all(kinds[row["nearest"]] == "base" and kinds[row["runner_up"]] == "base" for row in near["rows"])
    assert all(seeds[row["nearest"]] == seeds[row["model"]] for row in near["rows"])  # a base of its own init
    assert near["family_match"] == [16, 16] and near["parent_match"][1] > 0 and near["n_unplaced"] == 0
    few = lineage(zoo, n_perm=99, candidates="kind=base", max_pairs=40)["nearest"]["by_evidence"]["exact"]
    assert len(few["rows"]) + few["n_unplaced"] == 16 and few["n_unplaced"] > 0  # a sample of the pairs: some not placed
    assert all(row["p_value"] <= row["p_runner_up"] for row in near["rows"])
    # generation=0 (the docs' example; the zoo has no such column): the models without a parent, from parent_id
    gen = lineage(zoo, n_perm=999, candidates="generation=0")["nearest"]["by_evidence"]["exact"]
    assert [(row["model"], row["nearest"]) for row in gen["rows"]] == [(row["model"], row["nearest"]) for row in near["rows"]]
    res = run_cli("lineage", tiny_zoo, "--candidates", "kind=base", "--n-perm", "999")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in " ".join(res.stdout.split()).split("nearest candidate")[1:2])
    assert line.startswith(" (kind=base) of 16 models by exact:") and "of the true family for 16 of 16" in line
    for bad, msg in (("kind", "--candidates must be COLUMN=VALUE (e.g. kind=base), got 'kind'"),
                     ("nope=base", "unknown model column 'nope' for --candidates"),
                     ("kind=parent", "--candidates kind=parent: no model has kind = 'parent', so there is nothing to rank")):
        with pytest.raises(UserError, match=msg.replace("(", "\\(").replace(")", "\\)")):
            lineage(zoo, n_perm=99, candidates=bad)


def test_more_relatives_than_the_nulls_tail_is_said(tiny_zoo):
    """The sixth audit: 13.8% of the pairs related under --lineage, the behavioural null (fitted to
    the pairs' 5% tail) too wide, and nothing called without a word. The share is in the JSON, and
    the terminal says it for behavioural evidence."""
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, ["weight-stats"], weights=False)
    seeds = zoo.models["init_seed"].tolist()
    same = sum(seeds[i] == seeds[j] for i in range(len(seeds)) for j in range(i + 1, len(seeds)))
    assert r["related_share"] == pytest.approx(same / (len(seeds) * (len(seeds) - 1) / 2))
    res = run_cli("lineage", tiny_zoo, "--fp", "weight-stats", "--no-weights")
    assert res.returncode == 0, res.stderr
    assert (f"{100 * r['related_share']:.1f}% of the tested pairs are relatives by the lineage column: more than the 5% "
            "tail") in " ".join(res.stdout.split())


def test_a_factory_module_not_found_says_where_it_is_looked_for():
    from fingerprint.usercode import resolve
    from training.core.errors import PluginError

    with pytest.raises(PluginError) as e:
        resolve("no_such_module_here:make", "architecture factory")
    assert str(e.value).endswith("(the module is looked for in the working directory and on PYTHONPATH: run from the "
                                 "directory of no_such_module_here.py, or set PYTHONPATH)")


def test_a_lineage_column_of_strings_scores_the_recovered_families_and_the_saved_ones_are_the_recovered(tiny_zoo):
    """The eleventh audit: `--lineage family` with string values crashed (`int('s5')`), and with integer
    values the saved families (what later reports use) were the column itself, not the recovered ones."""
    zoo = Zoo.open(tiny_zoo)
    r = lineage(zoo, lineage_column="kind", n_perm=99)
    saved: dict[str, list[str]] = {}
    for m, f in zoo.load_result("lineage")["family_of"].items():
        saved.setdefault(f, []).append(m)
    assert sorted(sorted(g) for g in saved.values() if len(g) >= 2) == sorted(sorted(g) for g in r["families"])
    assert zoo.load_result("lineage")["lineage_column"] == "kind" and r["related_share"] is not None
    by_seed = lineage(zoo, n_perm=99)  # the recovered families do not depend on which column scores them
    assert sorted(map(sorted, by_seed["families"])) == sorted(map(sorted, r["families"]))


def test_parent_trees_stand_in_when_nothing_else_records_the_families(tiny_zoo, monkeypatch):
    """An import with parent_id (bases and their fine-tunes), no seeds, no shared first checkpoints and no
    recovered families: each base's tree is a family, said once, instead of 'insufficient' (an outside
    audit: the forecast grouped the trees while the report called the families unknown)."""
    from fingerprint import pipeline, tables

    monkeypatch.setattr(tables, "shared_starts", lambda zoo: None)
    zoo = Zoo.open(tiny_zoo)
    zoo.models.columns["init_seed"] = np.full(len(zoo), -1)
    res = pipeline.scorecard(zoo, ["probe-outputs"], n_boot=5, n_perm=20, n_family_boot=20, embedding="pca")
    assert res.lineage == tables.PARENT_TREE and res.scorecard[0].n_families == 8  # 8 bases (two per init), 3 each
    assert res.scorecard[0].label_free_verdict != "insufficient"
    line = tables.recovered_line(res.lineage, zoo)
    assert line.startswith("lineage: the 8 parent_id trees as the init families (3 (x8) models") and "not known as relatives" in line
    # a column with one value per tree is named (an outside audit, 78: the CSV's family column was, and the line said none)
    assert "--lineage COLUMN names one;" in line
    zoo.models.columns["base"] = np.asarray(tables.model_table(zoo)[tables.PARENT_TREE], dtype=object)
    line = tables.recovered_line(res.lineage, zoo)
    assert "(--lineage base names one: its values are the same within every tree; fingerprint lineage" in line, line
    # a family recorded on the bases only counts (the fine-tunes take their base's, as the analysis does); the
    # ground truth does not, nor a column with a blank no parent fills (a review)
    table = {"model_id": np.array(["b0", "c0", "b1", "c1"]), "parent_id": np.array(["", "b0", "", "b1"], dtype=object),
             tables.PARENT_TREE: np.array(["tree of b0", "tree of b0", "tree of b1", "tree of b1"], dtype=object),
             "family": np.array(["A", "", "B", np.nan], dtype=object), "deep_label": np.array(["x", "x", "y", "y"]),
             "gap": np.array(["A", "A", "", "B"], dtype=object)}
    assert tables.tree_columns(table) == ["family"]


def test_without_a_family_column_lineage_scores_against_the_parent_trees_and_says_an_orientation_against_them(
        tiny_zoo, monkeypatch):
    """An outside audit (78): on bases and fine-tunes imported with parent_id and no family column, `lineage` left FPR
    and power blank while `report` used the parent_id trees as the families; and the forest, oriented by kurtosis
    assumed to rise, pointed every recorded base -> fine-tune edge backwards without a word."""
    from fingerprint import tables
    from fingerprint.cli.lineage import orientation_note, truth_coverage
    from fingerprint.lineage_truth import recorded_rises

    monkeypatch.setattr(tables, "shared_starts", lambda zoo: None)
    zoo = Zoo.open(tiny_zoo)
    zoo.models.columns["init_seed"] = np.full(len(zoo), -1)
    r = lineage(zoo, n_perm=99, history=False)  # final weights only: the forest is oriented by a statistic
    assert r["truth_column"] == tables.PARENT_TREE and r["truth_models"] == 24
    assert r["truth"]["shared_init_fpr"] is not None and r["truth"]["shared_init_power"] is not None
    assert ("; scored against the parent_id trees of 24 of 24 models (the lineage column records no families: --lineage "
            "COLUMN names them)") in truth_coverage(r)
    assert "(the lineage column records no families: --lineage fam names them: its values are the same within every " \
           "tree)" in truth_coverage({**r, "truth_columns": ["fam"]})
    assert r["orientation"]["recorded"]["n"] == 16  # 8 bases, a spawned and a fine-tuned child each
    assert zoo.load_result("lineage")["lineage_column"] == tables.PARENT_TREE
    true_family = tables.stored_lineage(zoo)["true_family"]  # the report's lineage section scores the same
    assert len(true_family) == 24 and all(f.startswith("tree of ") for f in true_family.values())
    # the share of recorded pairs in which each statistic rises from parent to child
    final = {"kurtosis": np.array([3.0, 1.0, 2.0, 5.0]), "norm": np.array([1.0, 2.0, 3.0, 0.5])}
    assert recorded_rises(final, np.array([-1, 0, 0, 0])) == {"n": 3, "rising": {"kurtosis": 1 / 3, "norm": 2 / 3}}
    assert recorded_rises(final, np.array([-1, -1, -1, -1])) is None and recorded_rises(final, None) is None
    ori = {"statistic": "kurtosis", "sign": 1, "consistency": None, "recorded": {"n": 32, "rising": {"kurtosis": 4 / 32, "norm": 1.0}}}
    assert orientation_note(ori) == (
        "the forest orients its edges by weight kurtosis rising from parent to child, which holds in only 4 of the 32 "
        "recorded parent_id pairs the zoo holds (weight norm rises in 32 of them: --orient norm): its trees may point the "
        "wrong way (dir. above); the recorded parents score the forest, they do not orient it")
    assert orientation_note({**ori, "recorded": {"n": 32, "rising": {"kurtosis": 0.9, "norm": 1.0}}}) is None
    assert orientation_note({**ori, "recorded": {"n": 2, "rising": {"kurtosis": 0.0, "norm": 1.0}}}) is None
    assert orientation_note({**ori, "recorded": None}) is None


class _NoGroups(torch.nn.Module):
    """A module whose units the toolkit cannot follow (not an nn.Sequential, no hidden_permutable())."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _random(n: int, g: torch.Generator) -> list[_NoGroups]:
    """``n`` unrelated models, every weight drawn from ``g``."""
    mods = [_NoGroups() for _ in range(n)]
    with torch.no_grad():
        for m in mods:
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    return mods


def test_no_weight_evidence_is_said_and_the_named_family_column_is_the_advice(tmp_path):
    """An outside audit (74): on nn.TransformerEncoder models, `lineage --fp ... --lineage family` ran
    no weight test and said nothing of it, then asked for the --lineage it had been given."""
    g = torch.Generator().manual_seed(0)
    mods = _random(6, g)
    zoo = Zoo.from_modules(mods, out=tmp_path / "z", probes={"in_dist": torch.randn(16, 4, generator=g)},
                           metadata={"family": np.arange(6) // 2})
    from fingerprint.cli.lineage import not_stored, weight_note

    r = lineage(zoo, ["probe-outputs"], lineage_column="family", n_perm=99)
    assert "exact" not in r["by_evidence"]
    assert weight_note(r, zoo).startswith("no weight evidence (exact, matched): the architecture declares no hidden-unit "
                                          "permutation groups")
    from types import SimpleNamespace

    # a Hugging Face zoo's users cannot declare groups: they are not asked to (a read-through)
    assert weight_note(r, SimpleNamespace(family_spec={"arch": "hf"})) == (
        "no weight evidence (exact, matched): this Hugging Face architecture has no MLP units the toolkit can align "
        "(docs/import.md names those that have)")
    none = {**r, "by_evidence": {k: {**v, "n_families": 0} for k, v in r["by_evidence"].items()}}
    assert not_stored(none, None, False, "family").endswith("take the families from the column you named: --lineage family")


def test_stock_encoder_layers_feed_forward_units_permute_and_give_weight_evidence(tmp_path, monkeypatch):
    """Audit 74 left it: a stock nn.TransformerEncoderLayer's forward is its own, so its feed-forward
    units permute whatever module holds it; lineage's weight tests now run on such models and find the
    families of a shared init (a custom activation callable: nothing inferred)."""
    from encoders import Encoder

    from fingerprint.population import family_for

    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    mods, fam = [], []
    for f in range(12):  # pairs: the empirical null is fitted to the pairs' tail, related pairs must be few
        base = Encoder().eval()
        for _ in range(2):
            child = copy.deepcopy(base)
            with torch.no_grad():
                for p in child.parameters():  # a shared init trained apart: its units keep their order
                    p.add_(0.05 * p.std() * torch.randn(p.shape, generator=g))
            mods.append(child)
            fam.append(f)
    x = torch.randn(32, 32, generator=g)
    twin = copy.deepcopy(mods[0])
    with torch.no_grad():
        perm = torch.randperm(16, generator=g)
        for p, axis in family_for(Zoo.from_modules(mods[:2], out=tmp_path / "one", probes={"in_dist": x})
                                  ).hidden_permutable()["layers.1.linear1"]:
            t = twin.get_parameter(p)
            t.copy_(t.index_select(axis, perm))
    assert torch.allclose(twin(x), mods[0](x), atol=1e-5)  # the inferred group is a symmetry of the function
    from fingerprint.batch import ModelBatch
    from fingerprint.registry import get_extractor

    aligned = get_extractor("aligned-weights")  # and aligned-weights takes it out: a permuted twin is its original
    rows = np.asarray(aligned.compute(ModelBatch.from_zoo(Zoo.from_modules(
        [mods[0], twin, mods[2]], out=tmp_path / "twin", probes={"in_dist": x})), aligned.params)[0])
    assert np.array_equal(rows[0], rows[1]) and not np.allclose(rows[0], rows[2], atol=1e-3)
    zoo = Zoo.from_modules(mods, out=tmp_path / "z", probes={"in_dist": x}, metadata={"family": np.array(fam)})
    assert sorted(family_for(zoo).hidden_permutable()) == ["layers.0.linear1", "layers.1.linear1"]
    r = lineage(zoo, ["probe-outputs"], lineage_column="family", n_perm=9999)  # 276 pairs in BH: a floor below 0.05 / 276
    assert r["evidence"] == "exact" and r["by_evidence"]["exact"]["shared_init_power"] == 1.0
    assert r["by_evidence"]["matched"]["shared_init_power"] == 1.0
    assert sorted(sorted(f) for f in r["families"]) == \
        sorted(sorted(m for m, f in zip(zoo.model_ids, fam) if f == k) for k in range(12))

    # weight tests estimated beyond the budget (torch's default 2,048 feed-forward units: ~0.6 s a pair and layer)
    # are left out, said, unless asked for; without a fingerprint to test instead, a one-line error
    import fingerprint.lineage as fl
    from fingerprint.cli.lineage import weight_note

    assert fl.slow_weight_tests(zoo, family_for(zoo).hidden_permutable(), 1225) == ""  # 16 units: microseconds
    monkeypatch.setattr(fl, "WEIGHT_TEST_SECONDS", 0.0)
    skipped = lineage(zoo, ["probe-outputs"], lineage_column="family", n_perm=99)
    assert skipped["evidence"] == "probe-outputs" and "exact" not in skipped["by_evidence"]
    assert skipped["weights_skipped"].startswith("the weight tests of 276 pairs (widest layer 16 units) would take about")
    assert weight_note(skipped, zoo).endswith("; to run them anyway: --weights")
    with pytest.raises(UserError, match=r"would take about .*name a fingerprint for the behavioural test .*--max-pairs N.*--weights"):
        lineage(zoo, lineage_column="family", n_perm=99)
    assert lineage(zoo, lineage_column="family", n_perm=99, weights=True)["evidence"] == "exact"

    odd = Encoder()
    for layer in odd.layers:
        layer.activation = lambda h: h * h.mean(-1, keepdim=True)  # not elementwise: its units do not permute
    from training.families.symmetries import feedforward_groups

    assert feedforward_groups(odd) == {} and sorted(feedforward_groups(Encoder())) == ["layers.0.linear1", "layers.1.linear1"]
    assert list(feedforward_groups(torch.nn.TransformerDecoderLayer(8, 2, 16, activation="gelu"))) == ["linear1"]

    class Gated(torch.nn.TransformerEncoderLayer):  # a forward of its own: twice the units into linear1, gated
        def __init__(self):
            super().__init__(8, 2, 16, dropout=0.0, batch_first=True)
            self.linear1 = torch.nn.Linear(8, 32)

        def _ff_block(self, x):
            a, b = self.linear1(x).chunk(2, -1)
            return self.linear2(torch.nn.functional.silu(a) * b)

    assert feedforward_groups(torch.nn.Sequential(Gated())) == {}  # a subclass is not assumed to be torch's


def test_a_fine_tune_without_a_family_takes_its_parent_chains_and_the_legend_says_so(tmp_path):
    """An outside audit (75): with the family recorded on the bases only (as docs/import.md suggests),
    lineage scored 28 of 276 pairs (the bases') and said nothing, where report takes a fine-tune's family
    from its parent chain. Now lineage does too, and its legend says how many models the scores cover."""
    from fingerprint.cli.lineage import evidence_lines

    g = torch.Generator().manual_seed(1)
    mods = _random(12, g)
    ids = [f"m{i}" for i in range(12)]
    family = [str(i // 2) if i % 2 == 0 else "" if i % 4 == 1 else "-1" for i in range(12)]  # the bases' only (-1: unknown)
    parent = ["" if i % 2 == 0 else f"m{i - 1}" for i in range(12)]
    zoo = Zoo.from_modules(mods, out=tmp_path / "z", model_ids=ids, probes={"in_dist": torch.randn(16, 4, generator=g)},
                           metadata={"family": np.asarray(family, dtype=object), "parent_id": np.asarray(parent, dtype=object)})
    r = lineage(zoo, ["probe-outputs"], lineage_column="family", n_perm=99)
    assert (r["truth_models"], r["truth_inherited"]) == (12, 6)
    # fine-tunes gathered without their base: the recorded parents are absent, and every forest edge is false
    # (an outside audit, 77: 18 sibling edges, false_edges null)
    kids = [i for i in range(12) if i % 2]
    orphans = Zoo.from_modules([mods[i] for i in kids], out=tmp_path / "kids", model_ids=[ids[i] for i in kids],
                               probes={"in_dist": torch.randn(16, 4, generator=g)},
                               metadata={"parent_id": np.asarray([parent[i] for i in kids], dtype=object)})
    o = lineage(orphans, ["probe-outputs"], n_perm=99)
    assert o["truth"]["parent_accuracy"] is None and o["truth"]["false_edges"] == len(o["edges"])  # counted, not null
    assert o["parents_absent"] == 6 and r["parents_absent"] == 0
    assert evidence_lines(r, 0.05)[1].endswith("; scored against the true families of 12 of 12 models (6 took theirs "
                                                "from the parent chain, parent_id: a fine-tune is in its base's init family)")
