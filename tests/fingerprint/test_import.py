"""Bring your own models: import checkpoints trained with plain PyTorch; every bad input is a clear error."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fingerprint
from fingerprint import ModelBatch, Zoo
from fingerprint.extraction import extract
from fingerprint.importer import import_checkpoints
from tests.conftest import run_cli, saved_models
from training.core.errors import UserError

# the source tree under test, kept on PYTHONPATH by the CLI runs that set their own
PACKAGE = str(Path(fingerprint.__file__).resolve().parent.parent)

ARCH = textwrap.dedent('''
    import torch
    from torch import nn

    def make():
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def make_wide():
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))

    def probes():
        g = torch.Generator().manual_seed(0)
        return {"in_dist": torch.randn(40, 6, generator=g), "ood": 5 * torch.randn(40, 6, generator=g)}

    def probes_extra():
        return {**probes(), "trigger": probes()["in_dist"][:8] + 3.0}
''')


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """Eight models trained here with plain PyTorch, half saved as .pt, half as .safetensors."""
    from safetensors.torch import save_file

    (tmp_path / "userarch.py").write_text(ARCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import userarch

    importlib.reload(userarch)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    x = torch.randn(256, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    rows = []
    for i in range(8):
        torch.manual_seed(i)
        m = userarch.make()
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        sd = m.state_dict()
        if i % 2:
            save_file({k: v.contiguous() for k, v in sd.items()}, str(ckpts / f"model{i}.safetensors"))
        else:
            torch.save(sd, ckpts / f"model{i}.pt")
        rows.append({"model_id": f"model{i}", "family": f"f{i // 4}", "label": "a" if i < 4 else "b", "lr": 0.01})
    with open(tmp_path / "models.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_import_both_formats_with_metadata_and_probes(user_models):
    out = import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "zoo",
                             metadata=user_models / "models.csv", probes="userarch:probes", layers=["1"])
    zoo = Zoo.open(out)
    assert zoo.model_ids == [f"model{i}" for i in range(8)]
    assert list(zoo.models["label"]) == ["a"] * 4 + ["b"] * 4
    assert zoo.models["lr"].dtype.kind == "f"
    import userarch

    m = userarch.make()
    m.load_state_dict({k: v[3] for k, v in zoo.params().items()})
    from safetensors.torch import load_file

    ref = load_file(str(user_models / "ckpts" / "model3.safetensors"))
    assert all(torch.equal(m.state_dict()[k], ref[k]) for k in ref)
    # the zoo runs through the batched module family with named activations
    from fingerprint.population import family_for, task_for

    fam, task = family_for(zoo), task_for(zoo)
    assert task.probe_names() == ["in_dist", "ood"]
    out_b, acts = fam.forward(zoo.params(), task.probes("ood"), capture=["1"])
    assert out_b.shape == (8, 40, 3) and acts["1"].shape == (8, 40, 16)
    assert torch.allclose(out_b[3], m(task.probes("ood")), atol=1e-5)


def test_a_probe_set_the_default_set_does_not_read_is_said(user_models):
    """An outside audit (105): a third probe set given at import was read by no default fingerprint, silently."""
    from fingerprint.pipeline import unread_probe_sets

    extra = import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "extra", probes="userarch:probes_extra")
    assert unread_probe_sets(Zoo.open(extra)) == (
        "probe set 'trigger' is read by no fingerprint of the default set (it reads 'in_dist' and 'ood'): name it to "
        "use it, e.g. --fp probe-outputs:probe_set=trigger --fp disagreement:probe_set=trigger (a set built from what "
        "you know of the models is declared at import with --privileged: not label-free evidence)")
    plain = import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "plain", probes="userarch:probes")
    assert unread_probe_sets(Zoo.open(plain)) == ""
    declared = import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "declared",
                                  probes="userarch:probes_extra", privileged_probes=["trigger"])
    assert unread_probe_sets(Zoo.open(declared)) == ""  # built from the truth, declared: read on purpose, by --fp


@pytest.mark.parametrize("breakage,expect", [
    ("truncate", "cannot be read (corrupt or truncated?)"),
    ("wrong_arch", "key '0.weight' has shape [32, 6], the architecture expects [16, 6]"),
    ("extra_key", "unexpected key 'extra.weight'"),
    ("missing_key", "is missing key '2.bias'"),
    ("csv_unknown", "names unknown model 'model99'"),
    ("csv_twice", "row 3 names model 'model0' a second time"),
    ("csv_latin1", "is not a UTF-8 CSV"),
    ("not_state_dict", "holds a list of 3, not a state_dict"),
])
def test_bad_inputs_are_clear_errors_and_write_nothing(user_models, breakage, expect):
    ck = user_models / "ckpts"
    meta = None
    if breakage == "truncate":
        data = (ck / "model0.pt").read_bytes()
        (ck / "model0.pt").write_bytes(data[: len(data) // 2])
    elif breakage == "wrong_arch":
        import userarch

        torch.save(userarch.make_wide().state_dict(), ck / "model0.pt")
    elif breakage == "extra_key":
        sd = torch.load(ck / "model0.pt", weights_only=True)
        sd["extra.weight"] = torch.zeros(2)
        torch.save(sd, ck / "model0.pt")
    elif breakage == "missing_key":
        sd = torch.load(ck / "model0.pt", weights_only=True)
        del sd["2.bias"]
        torch.save(sd, ck / "model0.pt")
    elif breakage == "csv_unknown":
        meta = user_models / "bad.csv"
        meta.write_text("model_id,label\nmodel0,a\nmodel99,b\n")
    elif breakage == "csv_twice":
        meta = user_models / "bad.csv"
        meta.write_text("model_id,label\nmodel0,a\nmodel0,b\n")
    elif breakage == "csv_latin1":
        meta = user_models / "bad.csv"
        meta.write_bytes("model_id,label\nmodel0,caf\u00e9\n".encode("latin-1"))
    elif breakage == "not_state_dict":
        torch.save([1, 2, 3], ck / "model0.pt")
    with pytest.raises(UserError, match=expect.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")) as e:
        import_checkpoints(ck, "userarch:make", user_models / "zoo", metadata=meta)
    assert "\n" not in str(e.value)
    assert not (user_models / "zoo").exists()
    assert not list(user_models.glob(".zoo.*"))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['EVIL_MARKER'])}",))


def test_malicious_pickle_is_refused_not_executed(user_models, monkeypatch):
    marker = user_models / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    with open(user_models / "ckpts" / "model0.pt", "wb") as f:
        pickle.dump({"0.weight": _Evil()}, f)
    with pytest.raises(UserError, match="refusing to unpickle arbitrary objects") as err:
        import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "zoo")
    assert "model0.pt" in str(err.value) and "False" not in str(err.value)  # no hint to turn the check off
    assert not marker.exists()
    assert not (user_models / "zoo").exists()


def test_import_cli_and_errors(user_models):
    # the commands run in this process (run_cli), where the fixture put the factory's directory on sys.path, as
    # PYTHONPATH would; reading the zoo from elsewhere without it needs a fresh interpreter (below)
    run = lambda *a: run_cli(*a, cwd=user_models)  # noqa: E731
    res = run("import", "ckpts", "--arch", "userarch:make", "--out", "zoo", "--metadata", "models.csv", "--probes", "userarch:probes")
    assert res.returncode == 0, res.stderr
    assert "imported 8 models" in " ".join(res.stdout.split())
    res = run("import", "ckpts", "--arch", "userarch:nope", "--out", "zoo2")
    assert res.returncode == 2 and "architecture factory 'userarch:nope' cannot be imported" in res.stderr
    res = run("import", "ckpts", "--arch", "userarch:make", "--out", "zoo")
    assert res.returncode == 2 and "already exists" in res.stderr
    res = run("import", "ckpts", "--arch", "userarch:make", "--out", "zoo3", "--layers", "7")
    assert res.returncode == 2 and "unknown layer '7'" in res.stderr
    # read from another directory, without the factory on PYTHONPATH: the zoo names code, which runs only
    # with --trust-code, and then from the directory recorded at import
    elsewhere = {**os.environ, "PYTHONPATH": PACKAGE}
    extract_elsewhere = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "fingerprint.cli", "extract", str(user_models / "zoo"), "--fp", "ood-outputs", *a],
        capture_output=True, text=True, cwd=user_models.parent, env=elsewhere, timeout=120)
    res = extract_elsewhere()
    assert res.returncode == 2 and "names code to run its models" in res.stderr and "--trust-code" in res.stderr
    res = extract_elsewhere("--trust-code")
    assert res.returncode == 0, res.stderr
    assert run("import", "ckpts", "--arch", "userarch:make", "--out", "bare").returncode == 0  # no --probes
    res = run("extract", "bare", "--fp", "ood-outputs", "--arch", "userarch:make")
    # 2: nothing computed, the input's to fix (as at import); 1: done in part, the rest cached
    assert res.returncode == 2 and "has no probe sets (no probes.h5" in res.stderr and "--probes" in res.stderr
    res = run("extract", "bare", "--fp", "ood-outputs", "--fp", "weight-stats", "--arch", "userarch:make")
    assert res.returncode == 1 and "has no probe sets (no probes.h5" in res.stderr and "weight-stats" in res.stdout


def test_zoo_from_modules_in_three_lines():
    mods = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(5)]
    zoo = Zoo.from_modules(mods, metadata={"label": ["x", "x", "y", "y", "y"]}, probes={"in_dist": torch.randn(10, 4)})
    assert len(zoo) == 5 and list(zoo.models["label"]) == ["x", "x", "y", "y", "y"]
    from fingerprint.population import family_for

    out = family_for(zoo)(zoo.params(), torch.randn(3, 4))
    assert out.shape == (5, 3, 2)
    # a model id given twice: said in the API's terms, not the CLI's files (outside audit 117)
    with pytest.raises(UserError, match=r"^model id 'a' is given twice \(models 0 and 1 of model_ids\): each model needs"):
        Zoo.from_modules(mods, model_ids=["a", "a", "b", "c", "d"], probes={"in_dist": torch.randn(10, 4)})


def test_imported_population_is_fingerprinted(user_models):
    """Forward-pass, activation and weight extractors run on any nn.Module through functional_call + vmap."""
    from fingerprint.extraction import extract

    out = import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "zoo",
                             metadata=user_models / "models.csv", probes="userarch:probes", layers=["1"])
    zoo = Zoo.open(out)
    specs = ["probe-outputs", "ood-outputs", "anomalous-inputs", "disagreement", "weight-stats", "weight-spectra",
             "cka", "gradients"]
    res = {r.name: r for r in extract(zoo, specs)}
    for name in specs:
        assert res[name].error is None, (name, res[name].error)
        assert res[name].values.shape[0] == 8 and np.isfinite(res[name].values).all()
    assert res["cka"].meta["layer"] == "1"  # the user's hook point
    # extractors that need what an imported zoo lacks say so in one line
    got = {r.name: r.error for r in extract(zoo, ["lmc-barrier", "aligned-weights"])}
    assert "labelled training data" in got["lmc-barrier"]
    assert got["aligned-weights"] is None  # an nn.Sequential's hidden-unit symmetry is inferred (issue 21 item 9)
    # supervised extractors take the CSV's label column
    (lq,) = extract(zoo, ["learned-queries:steps=20"], labels=dict(zip(zoo.model_ids, zoo.models["label"])))
    assert lq.error is None and 0 <= lq.meta["heldout_auroc"] <= 1


def test_readme_example_runs(tmp_path, monkeypatch, request):
    """The README's "Fingerprint your own models" example, verbatim."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- byo-example -->")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "make_models.py").write_text(block)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tmp_path), PACKAGE))}
    res = subprocess.run([sys.executable, "make_models.py"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    # the commands run in this process (run_cli) with the script's directory on sys.path, as PYTHONPATH puts it
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("make_models", None))  # imported by the commands: gone after the test
    run = lambda *a: run_cli(*a, cwd=tmp_path)  # noqa: E731
    res = run("import", "ckpts", "--arch", "make_models:make", "--probes", "make_models:probes",
              "--metadata", "models.csv", "--layers", "1", "--out", "myzoo")
    assert res.returncode == 0, res.stderr
    res = run("extract", "myzoo", "--arch", "make_models:make", "--fp", "ood-outputs", "--fp", "weight-spectra", "--fp", "cka")
    assert res.returncode == 0, res.stderr
    zoo = Zoo.open(tmp_path / "myzoo")
    assert len(zoo) == 12 and sorted(set(zoo.models["family"].tolist())) == [0, 1, 2, 3, 4, 5]
    assert len(zoo.list_fingerprints()) == 3
    res = run("report", "myzoo", "-o", "myreport.html", "--json", "summary.json", "--lineage", "family", "--label", "rule")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {row["fingerprint"]: row for row in summary["scorecard"]}
    assert set(rows) >= {"ood-outputs", "weight-spectra", "cka"}
    # the planted rule is found on models the toolkit did not train
    assert max(rows["ood-outputs"]["deep_ami"], rows["ood-outputs"]["probe_auroc"] or 0) >= 0.8, rows["ood-outputs"]
    assert rows["cka"]["deep_ami"] >= 0.8 and rows["cka"]["label_free_verdict"] == "crosses lineage", rows["cka"]
    assert "<html" in (tmp_path / "myreport.html").read_text()
    res = run("inspect", "myzoo")
    assert res.returncode == 0 and "basins" in res.stdout.lower(), res.stdout


def test_imported_sequential_models_get_permutation_groups_and_aligned_weights(tmp_path):
    """Issue 21 item 9: an nn.Sequential of Linear layers and elementwise activations has its
    hidden-unit symmetry inferred (permuting along a group keeps the function), so aligned-weights
    runs on an imported zoo; a module class can declare its own groups."""
    from training.families.module import ModuleFamily

    make = lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))  # noqa: E731
    fam = ModuleFamily(factory=make, input_shape=(4,), n_out=3)
    groups = fam.hidden_permutable()
    assert groups == {"0": [("0.weight", 0), ("0.bias", 0), ("2.weight", 1)],
                      "2": [("2.weight", 0), ("2.bias", 0), ("4.weight", 1)]}
    m = make()
    x = torch.randn(5, 4)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    for members in groups.values():
        perm = torch.randperm(sd[members[0][0]].shape[0])
        for name, axis in members:
            sd[name] = sd[name].index_select(axis, perm)
    m2 = make()
    m2.load_state_dict(sd)
    assert torch.allclose(m(x), m2(x), atol=1e-6)
    zoo = Zoo.from_modules([make() for _ in range(6)], out=tmp_path / "z", probes={"ood": torch.randn(16, 4)})
    (res,) = extract(zoo, ["aligned-weights"])
    assert res.error is None and res.values.shape[0] == 6

    class Declared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

        def hidden_permutable(self):
            return {"a": [("a.weight", 0), ("a.bias", 0), ("b.weight", 1)]}

    assert ModuleFamily(factory=Declared, input_shape=(4,), n_out=3).hidden_permutable() == {
        "a": [("a.weight", 0), ("a.bias", 0), ("b.weight", 1)]}


SEQ_ARCH = textwrap.dedent('''
    import torch
    from torch import nn

    class GRUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(6, 8)
            self.gru = nn.GRU(8, 12, batch_first=True)  # returns (output, h): not one tensor
            self.pool = nn.Identity()
            self.head = nn.Linear(12, 3)

        def forward(self, ids):
            out, _ = self.gru(self.emb(ids))
            return self.head(self.pool(out[:, -1]))

    def make():
        return GRUNet()

    def probes():
        return {"in_dist": torch.randint(0, 6, (16, 7), generator=torch.Generator().manual_seed(0))}
''')


@pytest.fixture
def seq_models(tmp_path, monkeypatch):
    """Eight GRU models (not an nn.Sequential; a submodule whose output is a tuple) saved as .pt."""
    return saved_models(tmp_path, monkeypatch, "seqarch", SEQ_ARCH, 8)


@pytest.mark.filterwarnings("ignore:seqarch.make. cannot vmap this module")  # a GRU: expected, and said once
def test_a_layer_that_returns_a_tuple_is_a_one_line_error_at_import_and_at_extraction(seq_models):
    tmp_path = seq_models
    run = lambda *a: run_cli(*a, cwd=tmp_path)  # noqa: E731
    res = run("import", "ckpts", "--arch", "seqarch:make", "--probes", "seqarch:probes", "--layers", "pool",
              "--layers", "gru", "--out", "zoo")
    assert res.returncode == 2 and not (tmp_path / "zoo").exists()
    err = " ".join(res.stderr.split())
    assert "layer 'gru' returns a tuple (tensor [2, 7, 12], tensor [1, 2, 12]), not a tensor" in err, res.stderr
    assert "name a module whose output is a tensor" in err and len(res.stderr.strip().splitlines()) == 1
    res = run("import", "ckpts", "--arch", "seqarch:make", "--probes", "seqarch:probes", "--layers", "pool", "--out", "zoo")
    assert res.returncode == 0, res.stderr
    zoo = Zoo.open(tmp_path / "zoo")
    ok, gru, spectrum = extract(zoo, ["cka", "cka:layer=gru", "activation-spectrum"])  # the last: every named module
    assert ok.error is None and ok.meta["layer"] == "pool"
    for r in (gru, spectrum):
        assert "layer 'gru' returns a tuple (tensor [16, 7, 12], tensor [1, 16, 12]), not a tensor" in r.error, r.error
    # the CLI: the same line exits 2 as at import when it stops everything asked, 1 when the rest is cached
    res = run("extract", "zoo", "--arch", "seqarch:make", "--fp", "cka:layer=gru")
    assert res.returncode == 2 and "error: layer 'gru' returns a tuple" in res.stderr, res.stderr
    res = run("extract", "zoo", "--arch", "seqarch:make", "--fp", "cka:layer=gru", "--fp", "weight-stats")
    assert res.returncode == 1 and "error: layer 'gru' returns a tuple" in res.stderr and "weight-stats" in res.stdout


def test_extract_says_which_defaults_it_leaves_out_and_which_layer_cka_compares(seq_models):
    run = lambda *a: run_cli(*a, cwd=seq_models)  # noqa: E731
    # the declared layer is cka's default, before a module whose name looks like a last layer ('pool')
    assert run("import", "ckpts", "--arch", "seqarch:make", "--probes", "seqarch:probes", "--layers", "emb",
               "--out", "zoo").returncode == 0
    res = run("extract", "zoo", "--arch", "seqarch:make")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    lines = [line for line in res.stdout.splitlines() if line.startswith("default set without")]
    assert len(lines) == 1, res.stdout
    assert "default set without ood-outputs (no probe set 'ood'); disagreement (no probe set 'ood'); aligned-weights " \
           "(no hidden-unit permutation groups: inferred only for an nn.Sequential of Linear/Conv layers and stock " \
           "TransformerEncoderLayer / TransformerDecoderLayer feed-forward units" in out
    assert "computed recombined-outputs" in out and "computed aligned-weights" not in out
    assert "computed disagreement:probe_set=in_dist" in out  # the default set's predictions on in_dist
    assert re.search(r"computed cka .* layer 'emb'", out), res.stdout
    # without --layers, cka is left out too, and the line says how to name a layer
    assert run("import", "ckpts", "--arch", "seqarch:make", "--probes", "seqarch:probes", "--out", "bare").returncode == 0
    res = run("extract", "bare", "--arch", "seqarch:make", "--fp", "weight-stats")
    assert "default set without" not in res.stdout  # an explicit --fp list skips nothing
    from fingerprint.pipeline import skipped_defaults

    assert skipped_defaults(Zoo.open(seq_models / "bare"))["cka"].endswith("--fp cka:layer=NAME")


def test_families_found_from_a_fingerprint_say_they_are_not_stored_and_the_report_says_how_to_name_some(
        seq_models, monkeypatch):
    """An import without seeds, no weight test (no permutation groups): `lineage` finds families from a
    fingerprint but does not store them, and says so; the next `cluster` takes the families from near-twin
    weights, and where those cannot be read (a zoo too large, or too few weights) says, in the terminal, why
    every label-free verdict is 'too few' and how to name init families."""
    from fingerprint import tables

    run = lambda *a: run_cli(*a, cwd=seq_models, env={"COLUMNS": "400"})  # noqa: E731
    assert run("import", "ckpts", "--arch", "seqarch:make", "--probes", "seqarch:probes", "--out", "zoo").returncode == 0
    res = run("lineage", "zoo", "--arch", "seqarch:make", "--fp", "probe-outputs", "--json", "lin.json")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert ("`report` and `cluster` need init families (an import's near-twin weights stand in when they can be read: "
            "docs/lineage.md, \"Near twins\"), else every label-free verdict is 'too few'") in out, res.stdout
    assert "--lineage COLUMN" in out
    found = json.loads((seq_models / "lin.json").read_text())["by_evidence"]["probe-outputs"]["n_families"]
    if found:  # families among 8 random inits: the empirical null's false positives, or none
        fams = "family" if found == 1 else "families"
        assert f"not stored: the {found} {fams} of two or more models found from 'probe-outputs'" in out
        assert "--json wrote them to lin.json ('families')" in out
    else:
        assert "no two models were found related from 'probe-outputs'" in out
    assert not (seq_models / "zoo" / "results" / "lineage.json").exists()
    res = run("cluster", "zoo", "--arch", "seqarch:make", "--fp", "probe-outputs", "--n-boot", "5", "--n-perm", "20")
    out = " ".join(res.stdout.split())
    assert res.returncode == 0 and "lineage: every model its own family: no two of the" in out, res.stdout
    assert "every label-free verdict is 'too few'" not in out
    monkeypatch.setattr(tables, "twin_families", lambda zoo: None)  # the check cannot run: no stand-in
    res = run("cluster", "zoo", "--arch", "seqarch:make", "--fp", "probe-outputs", "--n-boot", "5", "--n-perm", "20")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "lineage: every label-free verdict is 'too few': insufficient" in out, res.stdout
    assert "`--lineage COLUMN` names the model column" in out
    assert ("no model column of the zoo looks like init seeds (4 or more values, fewer than the models; 2 or 3 init "
            "families are enough to test; add one to the --metadata CSV") in out
    # models of independent seeds need no column (an outside audit, 79: every hint was a dead end for a GRU's)
    assert ("if no two models share an initialisation (each trained from its own seed), --lineage model_id says so" in out)
    res = run("cluster", "zoo", "--arch", "seqarch:make", "--fp", "probe-outputs", "--n-boot", "5", "--n-perm", "20",
              "--lineage", "model_id")
    assert res.returncode == 0, res.stderr
    assert "every label-free verdict is 'too few'" not in " ".join(res.stdout.split())


def test_big_models_import_a_shard_at_a_time_and_exactly(user_models, monkeypatch):
    """An outside audit (72): import held every checkpoint at once (16 models of 8.5M parameters: 2.3 GB).
    Each file is now checked and let go, then read again a shard at a time, a shard at most SHARD_FLOATS
    weights: the same zoo, in more shards."""
    import fingerprint.importer as imp

    whole = Zoo.open(import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "zoo1",
                                        metadata=user_models / "models.csv", probes="userarch:probes"))
    reads = []
    real = imp.read_checked
    monkeypatch.setattr(imp, "read_checked", lambda p, *a: reads.append(p.name) or real(p, *a))
    monkeypatch.setattr(imp, "SHARD_FLOATS", 3 * int(whole.family_spec["n_params"]))  # three models a shard
    parts = Zoo.open(import_checkpoints(user_models / "ckpts", "userarch:make", user_models / "zoo3",
                                        metadata=user_models / "models.csv", probes="userarch:probes"))
    assert [s["n_models"] for s in parts.manifest["shards"]] == [3, 3, 2] and len(whole.manifest["shards"]) == 1
    assert parts.model_ids == whole.model_ids and list(parts.models["label"]) == list(whole.models["label"])
    a, b = whole.params(), parts.params()
    assert all(torch.equal(a[k], b[k]) for k in a)
    files = sorted(p.name for p in (user_models / "ckpts").iterdir())
    assert len(files) == 8 and sorted(reads) == sorted(files * 2)  # each file read to check, and again to write


TIED = textwrap.dedent('''
    import torch
    from torch import nn

    class TiedLM(nn.Module):
        """A tiny LM whose output layer is its embedding (tied), as most LMs are."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(12, 16)
            self.mix = nn.Linear(16, 16)
            self.out = nn.Linear(16, 12, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, x):
            return self.out(torch.tanh(self.mix(self.emb(x))).mean(1))

    def make():
        return TiedLM()

    def probes():
        g = torch.Generator().manual_seed(0)
        return {"in_dist": torch.randint(0, 12, (20, 5), generator=g)}
''')


def test_a_model_with_tied_weights_imports_and_runs(tmp_path, monkeypatch, request):
    """An outside audit (85): a tiny LM whose output layer shares the embedding was refused at import, every checkpoint
    'a diverged run?': its state dict names both tied parameters, which torch's functional_call refuses to tie."""
    (tmp_path / "tiedarch.py").write_text(TIED)
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("tiedarch", None))
    import tiedarch

    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for i in range(4):
        torch.manual_seed(i)
        m = tiedarch.make()
        assert set(m.state_dict()) >= {"emb.weight", "out.weight"}
        torch.save(m.state_dict(), ckpts / f"m{i}.pt")
    out = import_checkpoints(ckpts, "tiedarch:make", tmp_path / "zoo", probes="tiedarch:probes")
    zoo = Zoo.open(out)
    zoo.module_factory = tiedarch.make
    (res,) = extract(zoo, ["probe-outputs"])
    assert res.error is None and res.values.shape[0] == 4
    torch.manual_seed(0)
    ref = tiedarch.make().eval()
    with torch.no_grad():  # the batched pass is the module's own forward, tie and all
        assert torch.allclose(ModelBatch.from_zoo(zoo).forward(tiedarch.probes()["in_dist"])[0], ref(tiedarch.probes()["in_dist"]),
                              atol=1e-5)
