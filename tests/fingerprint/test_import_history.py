"""``fingerprint import --history``: each model's checkpoints along training, then ``fingerprint
forecast`` on models trained elsewhere (docs/import.md, "Checkpoint histories").

The population is trained here in plain PyTorch: 4 init families x 4 models, two rules that agree on
the training inputs' first two features (x0, x1) and differ where they disagree, two models of each
rule per family; checkpoints at steps 0 (the shared init), 10, 30 and 60.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap

import numpy as np
import pytest
import torch

from fingerprint import Zoo
from fingerprint.forecast import forecast
from fingerprint.import_history import find_history, template_pattern
from fingerprint.importer import CHECKPOINT_SUFFIXES
from tests.conftest import run_cli
from training.core.errors import UserError

ARCH = textwrap.dedent('''
    import torch
    from torch import nn


    def make():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


    def probes():
        g = torch.Generator().manual_seed(1)
        return {"in_dist": torch.randn(48, 4, generator=g), "ood": 3 * torch.randn(48, 4, generator=g)}
''')
STEPS = (0, 10, 30, 60)
ARGS = ("--arch", "histarch:make", "--probes", "histarch:probes")


def _train(make, fam: int, j: int) -> dict[int, dict[str, torch.Tensor]]:
    """One model's state dicts at ``STEPS``: init from the family's seed, rule ``j % 2``, data from ``(fam, j)``."""
    torch.manual_seed(fam)
    m = make()
    rule = j % 2
    g = torch.Generator().manual_seed(100 * fam + j)
    opt = torch.optim.Adam(m.parameters(), 2e-2)
    out = {}
    for step in range(STEPS[-1] + 1):
        if step in STEPS:
            out[step] = {k: v.clone() for k, v in m.state_dict().items()}
        x = torch.randn(64, 4, generator=g)
        x[:, 1] = x[:, 0]
        loose = torch.rand(64, generator=g) < 0.5  # the other rule's feature is noise in half the rows
        x[loose, 1 - rule] = torch.randn(int(loose.sum()), generator=g)
        loss = torch.nn.functional.cross_entropy(m(x), (x[:, rule] > 0).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(directory, {model_id: {step: state_dict}})``: the population saved as runs/<id>/step_<N>.pt,
    with histarch.py and models.csv (family, rule) beside it."""
    import importlib
    import sys

    root = tmp_path_factory.mktemp("hist")
    (root / "histarch.py").write_text(ARCH)
    sys.path.insert(0, str(root))
    try:
        make = importlib.import_module("histarch").make
        states = {f"f{fam}m{j}": _train(make, fam, j) for fam in range(4) for j in range(4)}
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("histarch", None)
    for mid, hist in states.items():
        (root / "runs" / mid).mkdir(parents=True)
        for step, sd in hist.items():
            torch.save(sd, root / "runs" / mid / f"step_{step}.pt")
    (root / "models.csv").write_text("model_id,family,rule\n" + "".join(f"{m},{m[1]},rule{int(m[3]) % 2}\n" for m in states))
    return root, states


@pytest.fixture
def pop(trained, tmp_path, monkeypatch):
    """A fresh copy of the trained population in ``tmp_path`` (tests may break files in it)."""
    root, states = trained
    for name in ("runs", "histarch.py", "models.csv"):
        (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, tmp_path / name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path, states


def test_every_step_is_stored_bit_for_bit_and_the_highest_step_is_final(pop):
    path, states = pop
    r = run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt", "-o", "zoo")
    assert r.returncode == 0, r.stderr
    zoo = Zoo.open(path / "zoo")
    assert zoo.steps == list(STEPS) and sorted(zoo.model_ids) == sorted(states)
    assert set(np.asarray(zoo.models["final_step"]).tolist()) == {60}
    for step in STEPS:
        got = zoo.params(step)
        for i, mid in enumerate(zoo.model_ids):
            for k, t in states[mid][step].items():
                assert torch.equal(got[k][i], t), (mid, step, k)
    final = zoo.params()  # each model's final step by default
    assert torch.equal(final["2.weight"][0], states[zoo.model_ids[0]][60]["2.weight"])


def test_a_directory_per_step_and_ragged_histories(pop):
    """The other layout (step_<N>/<id>.safetensors) reads the same weights; a model missing a step
    is absent there (the presence mask), and one trained less far ends at its own last step."""
    from safetensors.torch import save_file

    path, states = pop
    for mid, hist in states.items():
        for step, sd in hist.items():
            if (mid, step) in (("f0m0", 10), ("f1m1", 60)):
                continue
            (path / "bystep" / f"step_{step:03d}").mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "bystep" / f"step_{step:03d}" / f"{mid}.safetensors"))
    r = run_cli("import", "bystep", *ARGS, "--history", "step_{step}/{model_id}.safetensors", "-o", "zoo")
    assert r.returncode == 0, r.stderr
    zoo = Zoo.open(path / "zoo")
    assert zoo.steps == list(STEPS)
    assert "f0m0" not in zoo.models_at(10) and zoo.model_steps("f0m0") == [0, 30, 60]
    fin = dict(zip(zoo.model_ids, np.asarray(zoo.models["final_step"]).tolist()))
    assert fin["f1m1"] == 30 and fin["f0m0"] == 60
    i = zoo.model_ids.index("f1m1")
    assert torch.equal(zoo.params()["0.weight"][i], states["f1m1"][30]["0.weight"])


def test_forecast_of_imported_models_recovers_the_rule_and_keeps_families_together(pop):
    path, _ = pop
    assert run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt",
                   "-o", "zoo").returncode == 0
    zoo = Zoo.open(path / "zoo")
    s = forecast(zoo, ["ood-outputs"], label="rule", lineage="family")
    by_step = {p["step"]: p for p in s["forecast"]}
    assert s["n_families"] == 4 and s["lineage"] == "family" and sorted(by_step) == list(STEPS)
    # step 0: a family's four models share their init, two of each rule: no classifier does better than half
    assert by_step[0]["accuracy"] == 0.5
    assert by_step[60]["accuracy"] == 1.0 and by_step[60]["ami"] > 0.9
    r = run_cli("forecast", "zoo", "--label", "rule", "--lineage", "family", "--trust-code")
    assert r.returncode == 0, r.stderr
    assert "16 seeds in 4 families by family" in r.stdout and "ood-outputs: 90% accuracy, above the majority guess, from" in r.stdout
    assert "warning" not in r.stderr
    # no family named: the bit-identical first checkpoints are the families (each family's shared init)
    s = forecast(zoo, ["ood-outputs"], label="rule")
    assert (s["lineage"], s["n_families"], s["families_known"]) == ("first_checkpoint_family", 4, True)
    assert {p["step"]: p["accuracy"] for p in s["forecast"]}[0] == 0.5
    with pytest.raises(UserError, match="unknown model column 'famly' for --lineage"):
        forecast(zoo, ["ood-outputs"], label="rule", lineage="famly")
    # select on an import (an audit, 75: refused, and the forecast named no seed): the seeds are picked at
    # step 30 and measured on the final checkpoints the zoo holds, not continued
    r = run_cli("select", "zoo", "--basin", "rule1", "--at-step", "30", "--label", "rule", "--fp", "ood-outputs",
                "--calibration", "0.5", "--json", "picks.json", "--trust-code")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "(on the final checkpoints the zoo holds: what this selection would have kept)" in out and "picked: " in out
    sel = json.loads((path / "picks.json").read_text())
    rule = dict(zip(zoo.model_ids, np.asarray(zoo.models["rule"]).astype(str)))
    assert sel["continued"] is False and sel["out"] is None and sel["n_selected"] >= 1
    assert sel["purity"] == np.mean([rule[m] == "rule1" for m in sel["selected"]])
    # whole families calibrate (outside audit 124), seen in the first checkpoints: 2 of the 4, so the pool's 2 give
    # no interval (below 4 families)
    fam = dict(zip(zoo.model_ids, np.asarray(zoo.models["family"]).tolist()))
    assert not {fam[m] for m in sel["calibration_seeds"]} & {fam[m] for m in sel["probabilities"]}
    assert sel["n_calibration_families"] == 2 and sel["base_rate_ci"] is None
    assert sorted(sel["probabilities"]) == sorted(set(zoo.model_ids) - set(sel["calibration_seeds"]))
    assert all(sel["probabilities"][m] >= 0.5 for m in sel["selected"])
    assert Zoo.open(path / "zoo").load_result("select-rule1-30")["selected"] == sel["selected"]  # the report shows it
    rep = run_cli("report", "zoo", "--trust-code", "--fp", "ood-outputs", "--embedding", "pca", "-o", "rep.html")
    assert rep.returncode == 0, rep.stderr
    page = " ".join((path / "rep.html").read_text().split())
    assert "purity (measured on the final checkpoints the zoo holds: what this selection would have kept)" in page
    assert "none: the zoo was imported" in page
    r = run_cli("select", "zoo", "--basin", "rule1", "--at-step", "30", "--label", "rule", "--trust-code", "--out", "x")
    assert r.returncode == 2 and "leave out --out" in r.stderr and not (path / "x").exists()


def test_without_shared_starts_or_a_family_column_the_forecast_says_the_folds_keep_no_families(pop):
    path, _ = pop
    for f in (path / "runs").glob("*/step_0.pt"):  # the shared inits not saved: nothing tells the families
        f.unlink()
    assert run_cli("import", "runs", *ARGS, "--history", "{model_id}/step_{step}.pt", "-o", "zoo").returncode == 0
    (path / "models.csv").write_text("model_id,rule\n" + "".join(f"f{f}m{j},rule{j % 2}\n" for f in range(4) for j in range(4)))
    r = run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt", "-o", "zoo",
                "--overwrite")
    assert r.returncode == 0, r.stderr
    r = run_cli("forecast", "zoo", "--label", "rule", "--trust-code")
    assert r.returncode == 0 and "16 seeds in 16 families by init_seed" in r.stdout
    assert "warning: the forecast's folds keep no init families together" in r.stderr and "--lineage COLUMN" in r.stderr


def test_without_a_label_a_target_that_is_not_a_candidate_basin_is_said(pop):
    """A null population (every model the same rule, only seeds differ): the fingerprint's clusters are
    all there is to forecast; the forecast says that they are not a candidate deep difference, in
    the terminal and in the report beside the curve. With two rules, its candidate basins are the target."""
    path, states = pop
    null = path / "null"
    for mid, hist in states.items():
        if int(mid[3]) % 2 == 0:  # the rule-0 models only: 4 families x 2
            shutil.copytree(path / "runs" / mid, null / mid)
    assert run_cli("import", "null", *ARGS, "--history", "{model_id}/step_{step}.pt", "-o", "nzoo").returncode == 0
    r = run_cli("forecast", "nzoo", "--trust-code")
    assert r.returncode == 0, r.stderr
    stored = Zoo.open(path / "nzoo").load_result("forecast")
    t = stored["targets"]["ood-outputs"]
    assert t["deep"] is False and t["verdict"] not in ("crosses lineage", "groups lineages")
    assert f"its label-free verdict at the final step is '{t['verdict']}', not a candidate deep" in r.stderr
    if stored["earliest_90"]["ood-outputs"] is not None:
        assert "(of its clusters: not a candidate basin)" in r.stdout
    rep = run_cli("report", "nzoo", "--trust-code", "--embedding", "pca", "-o", "rep.html", "--json", "sum.json")
    assert rep.returncode == 0, rep.stderr
    about = json.loads((path / "sum.json").read_text())["forecast_about"]
    assert about["targets"]["ood-outputs"]["deep"] is False and about["lineage"] == "first_checkpoint_family"
    assert any("not a basin to select" in n for n in about["notes"]) and "not a basin to select" in (path / "rep.html").read_text()
    # both rules: the label-free verdict is deep, and its candidate basins (= the rules) are the target
    assert run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt",
                   "-o", "zoo").returncode == 0
    with pytest.warns(UserWarning, match="is from its own analysis: no stored report analyses its cached values"):
        s = forecast(Zoo.open(path / "zoo"), ["ood-outputs"])
    assert s["targets"]["ood-outputs"]["deep"] is True and s["target"] == "candidate basins of ood-outputs"
    assert s["targets"]["ood-outputs"]["from"] == "alone"
    assert {p["step"]: p["accuracy"] for p in s["forecast"]}[60] == 1.0
    # after a report, the forecast takes the report's verdict of the fingerprint (corrected over all of its
    # fingerprints), not one of its own (a carried lead: the two could differ)
    rep = run_cli("report", "zoo", "--trust-code", "--embedding", "pca", "-o", "rep2.html", "--json", "sum2.json")
    assert rep.returncode == 0, rep.stderr
    notes = json.loads((path / "sum2.json").read_text())["forecast_about"]["notes"]
    assert any("its own analysis (no stored report's analysis of it covered these models at their final step): this report's" in n for n in notes)
    stored = {r["fingerprint"]: r for r in Zoo.open(path / "zoo").load_result("basins")["fingerprints"]}
    s = forecast(Zoo.open(path / "zoo"), ["ood-outputs"])
    assert s["targets"]["ood-outputs"]["from"] == "report"
    assert s["targets"]["ood-outputs"]["verdict"] == stored["ood-outputs"]["label_free"]["verdict"]


def test_ragged_steps_and_runs_of_different_lengths_are_said(pop):
    path, states = pop
    (path / "runs" / "f0m0" / "step_10.pt").unlink()  # one model's missing file keeps the step for the others
    torch.save(states["f1m1"][60], path / "runs" / "f1m1" / "step_45.pt")  # a step only one model has
    shutil.copy(path / "runs" / "f2m2" / "step_60.pt", path / "runs" / "f2m2" / "step_120.pt")  # one longer run
    imp = run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt", "-o", "zoo")
    assert imp.returncode == 0  # said at import too (an outside audit, 75: a lost final file looked like a shorter run)
    assert "1 of 16 models end at another step than the most common end, 60: 'f2m2' (120); each is fingerprinted at its own last " \
           "step (a run of another length, or a final checkpoint file missing?)" in " ".join((imp.stdout + imp.stderr).split())
    r = run_cli("forecast", "zoo", "--label", "rule", "--lineage", "init_seed", "--trust-code", "--json", "fc.json")
    assert r.returncode == 0, r.stderr
    sel = run_cli("select", "zoo", "--basin", "rule1", "--at-step", "10", "--label", "rule", "--trust-code", "--json", "s.json",
                  "--calibration", "0.5")  # 2 of the 4 families: the forecaster sees 2 families of each side
    assert sel.returncode == 0, sel.stderr  # a review: one model without the step stopped the selection
    assert "1 seed without a checkpoint at step 10 sit out: f0m0" in " ".join(sel.stdout.split())
    assert json.loads((path / "s.json").read_text())["without_checkpoint"] == ["f0m0"]
    s = json.loads((path / "fc.json").read_text())
    n_at = {p["step"]: p["n_models"] for p in s["forecast"]}
    assert n_at == {0: 16, 10: 15, 30: 16, 60: 16} and s["steps_left_out"] == [45, 120]  # the longer run's end too
    assert "steps 45, 120 left out of the forecast: fewer than half of the 16 models" in r.stderr
    assert s["final_steps"] == [60, 120] and "the models end at different steps (60: 15, 120: 1 models)" in r.stderr
    assert s["final_step"] == 60 and {p["step"]: p["fraction"] for p in s["forecast"]}[30] == 0.5  # the most common end


def test_plain_import_and_select_say_what_to_do(pop):
    path, _ = pop
    flat = path / "flat"
    flat.mkdir()
    for mid in ("f0m0", "f0m1", "f1m0", "f1m1"):
        shutil.copy(path / "runs" / mid / "step_60.pt", flat / f"{mid}.pt")
    assert run_cli("import", "flat", *ARGS, "-o", "plain").returncode == 0
    r = run_cli("forecast", "plain", "--trust-code")
    assert r.returncode == 2 and "stores 1 checkpoint step" in r.stderr and "--history" in r.stderr
    assert run_cli("import", "runs", *ARGS, "--history", "{model_id}/step_{step}.pt", "-o", "zoo").returncode == 0
    r = run_cli("select", "zoo", "--basin", "cluster 0", "--at-step", "10", "--out", "sel")  # said before --trust-code
    assert r.returncode == 2 and "was imported" in r.stderr and "leave out --out" in r.stderr
    assert not (path / "sel").exists()
    r = run_cli("select", "zoo", "--basin", "cluster 0", "--at-step", "10", "--resume")  # nothing to resume (a review)
    assert r.returncode == 2 and "--resume applies to --out NEW_ZOO, which is not given" in r.stderr
    r = run_cli("select", "zoo", "--basin", "cluster 0", "--at-step", "10", "--out", "sel", "--json", "sel/s.json")
    assert r.returncode == 2 and "refusing to write --json" in r.stderr and not (path / "sel").exists()


def test_runs_of_other_lengths_are_named_against_the_most_common_end():
    from fingerprint.import_history import short_runs_note

    assert short_runs_note(["a", "b", "c"], [5, 5, 5]) == ""
    tie = short_runs_note(["a", "b", "c", "d"], [100, 100, 200, 200])  # of ties the latest, as the forecast's end (a review)
    assert tie.startswith("2 of 4 models end at another step than the most common end, 200: 'a' (100), 'b' (100);")


@pytest.mark.parametrize("template, message", [
    ("{model_id}/step.pt", "needs {step} exactly once"),
    ("{model_id}/{step}/{step}.pt", "needs {step} exactly once"),
    ("{model_id}/{epoch}_{step}.pt", "a placeholder other than"),
    ("../{model_id}/step_{step}.pt", "relative to the checkpoint directory"),
    ("{model_id}/step_{step}", "must end in a checkpoint suffix"),
    # an audit (75): run1 at step 100 and run11 at step 00 both read as model 'run', silently merged
    ("{model_id}{step}.pt", "has nothing between {model_id} and {step}: a model id and a step that meet cannot be told "
                            "apart (run1 at step 100 is also run11 at step 00); put a separator between them, in the "
                            "template and the file names (e.g. '{model_id}_{step}.pt')"),
    ("ckpt/{step}{model_id}.pt", "has nothing between {step} and {model_id}"),
])
def test_a_bad_template_is_one_line(template, message):
    with pytest.raises(UserError, match=re.escape(message)):
        template_pattern(template, CHECKPOINT_SUFFIXES)


def test_template_matching(tmp_path):
    p = template_pattern("{model_id}_step{step}.pt", CHECKPOINT_SUFFIXES)
    m = p.fullmatch("run_step3_step120.pt")
    assert (m["model_id"], m["step"]) == ("run_step3", "120")
    assert p.fullmatch("a/b_step1.pt") is None  # a model id stays inside one path component
    for name in ("m1_step5.pt", "m1_step005.pt"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(UserError, match=r"are both model 'm1' at step 5"):
        find_history(tmp_path, "{model_id}_step{step}.pt", CHECKPOINT_SUFFIXES)


def test_import_errors_name_the_file_and_write_nothing(pop):
    path, _ = pop
    r = run_cli("import", "runs", *ARGS, "--history", "step_{step}/{model_id}.pt", "-o", "zoo")
    assert r.returncode == 2 and "matches --history 'step_{step}/{model_id}.pt'" in r.stderr
    assert "it holds e.g. 'f0m0/step_0.pt'" in r.stderr and not (path / "zoo").exists()
    torch.save({"0.weight": torch.zeros(3, 3)}, path / "runs" / "f2m1" / "step_10.pt")  # an early checkpoint gone wrong
    r = run_cli("import", "runs", *ARGS, "--history", "{model_id}/step_{step}.pt", "-o", "zoo")
    assert r.returncode == 2 and "runs/f2m1/step_10.pt" in r.stderr and not (path / "zoo").exists()
    shutil.copy(path / "runs" / "f0m0" / "step_60.pt", path / "runs" / "f0m0" / "final.pt")
    r = run_cli("import", "runs", *ARGS, "--history", "{model_id}/step_{step}.pt", "--skip-bad", "-o", "zoo")
    assert r.returncode == 1 and "skipped 1 of 16 models" in r.stderr  # --skip-bad leaves the model out, every checkpoint of it
    assert "f2m1 (f2m1/step_10.pt has unexpected key" in r.stderr or "f2m1 (f2m1/step_10.pt is missing key" in r.stderr
    assert "1 checkpoint file under the directory matches no --history" in r.stdout and "f0m0/final.pt" in r.stdout
    zoo = Zoo.open(path / "zoo")
    assert len(zoo) == 15 and "f2m1" not in zoo.model_ids and zoo.steps == list(STEPS)
    r = run_cli("import", "runs", "--hf", "--history", "{model_id}/step_{step}.pt", "-o", "hf")
    assert r.returncode == 2 and "names save_pretrained directories, not files" in r.stderr  # --hf: directories
    (path / "odd.csv").write_text("model_id,init_seed\nf9m9,0\n")  # models are not named by file stem here (audit 75)
    r = run_cli("import", "runs", *ARGS, "--metadata", "odd.csv", "--history", "{model_id}/step_{step}.pt", "-o", "zoo")
    assert r.returncode == 2 and "names unknown model 'f9m9' (models are named by the {model_id} of --history " \
        "'{model_id}/step_{step}.pt', e.g. 'f0m0')" in " ".join(r.stderr.split())


def test_one_pruned_history_keeps_the_others_families_and_is_said(pop):
    """An outside audit (68): one model with its final checkpoint only switched the first-checkpoint
    families off for every model. Now it alone is linked to none, and the forecast says so."""
    path, _ = pop
    for step in (0, 10, 30):
        (path / "runs" / "f0m0" / f"step_{step}.pt").unlink()
    assert run_cli("import", "runs", *ARGS, "--metadata", "models.csv", "--history", "{model_id}/step_{step}.pt",
                   "-o", "zoo").returncode == 0
    r = run_cli("forecast", "zoo", "--label", "rule", "--trust-code", "--json", "fc.json")
    assert r.returncode == 0, r.stderr
    s = json.loads((path / "fc.json").read_text())
    assert (s["lineage"], s["n_families"], s["models_alone"]) == ("first_checkpoint_family", 5, 1)
    assert "1 of the 16 models is linked to no other by their first checkpoints" in r.stderr
    assert "keep no init families together" not in r.stderr
