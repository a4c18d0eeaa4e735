"""Import of the checkpoint and model shapes users bring from training code: a forward that returns a
tuple / dict / ModelOutput, keys saved through a DataParallel or torch.compile wrapper, training
checkpoints that hold the state_dict under a key. Each is read as users expect, or refused in one
line that says what was found and what to do, with nothing written."""

from __future__ import annotations

import re
import textwrap
from collections import OrderedDict

import pytest
import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.importer import import_checkpoints, zoo_from_modules
from tests.conftest import run_cli, saved_models
from training.core.errors import UserError

ARCH = textwrap.dedent('''
    from collections import OrderedDict

    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(torch.relu(self.fc1(x)))


    class TupNet(Net):
        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.head(h), h


    class DictNet(Net):
        def forward(self, x):
            return {"logits": super().forward(x)}


    class Output(OrderedDict):  # what an HF ModelOutput is: a mapping with attribute access
        def __getattr__(self, k):
            return self[k]


    class OutNet(Net):
        def forward(self, x):
            return Output(logits=super().forward(x))


    class Logits(TupNet):  # the fix the error suggests: a subclass keeps the checkpoints' keys
        def forward(self, x):
            return super().forward(x)[0]


    def make():
        return Net()

    def make_tup():
        return TupNet()

    def make_dict():
        return DictNet()

    def make_out():
        return OutNet()

    def make_logits():
        return Logits()

    def probes():
        return {"in_dist": torch.randn(10, 6, generator=torch.Generator().manual_seed(0))}


    class Seq(nn.Module):  # another architecture: token ids through an embedding
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(self.emb(x).mean(1))

    def make_seq():
        return Seq()

    def probes_column():  # each input a column [6, 1]: not what Linear(6, 8) takes
        return {"in_dist": torch.randn(10, 6, 1)}
''')


@pytest.fixture
def fmt_models(tmp_path, monkeypatch):
    """Four untrained models of ``fmtarch.Net`` saved as plain state dicts in ckpts/."""
    return saved_models(tmp_path, monkeypatch, "fmtarch", ARCH, 4)


def _resave(ckpts, wrap):
    """Every checkpoint in ``ckpts`` saved again as ``wrap(state_dict)``."""
    for f in sorted(ckpts.glob("*.pt")):
        torch.save(wrap(torch.load(f, weights_only=True)), f)


def _nothing_written(tmp_path):
    return not (tmp_path / "zoo").exists() and not list(tmp_path.glob(".zoo*"))


@pytest.mark.parametrize("factory,expect", [
    ("make_tup", "returns a tuple (tensor [2, 3], tensor [2, 8]) from forward, not one tensor of outputs: make forward "
                 "return the logits tensor (e.g. a factory that builds a subclass whose forward returns super().forward(x)[0];"),
    ("make_dict", "returns a dict (logits: tensor [2, 3]) from forward, not one tensor of outputs: make forward return the "
                  "logits tensor (e.g. a factory that builds a subclass whose forward returns super().forward(x)['logits'];"),
    ("make_out", "returns an Output (logits: tensor [2, 3]) from forward, not one tensor of outputs: make forward return "
                 "the logits tensor (e.g. a factory that builds a subclass whose forward returns super().forward(x).logits;"),
])
def test_a_forward_that_returns_a_tuple_or_dict_says_what_it_returned_and_what_to_do(fmt_models, factory, expect):
    res = run_cli("import", "ckpts", "--arch", f"fmtarch:{factory}", "--probes", "fmtarch:probes", "--out", "zoo",
                  cwd=fmt_models, env={"COLUMNS": "400"})
    assert res.returncode == 2 and _nothing_written(fmt_models)
    err = " ".join(res.stderr.split())
    assert f"error: architecture 'fmtarch:{factory}' {expect}" in err, res.stderr
    assert "a wrapper module would prefix them" in err and len(res.stderr.strip().splitlines()) == 1
    # the subclass the message suggests imports the same checkpoints, keys unchanged
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make_logits", "--probes", "fmtarch:probes", "--out", "zoo",
                  cwd=fmt_models)
    assert res.returncode == 0, res.stderr


def test_probes_that_do_not_run_name_the_checkpoints_architecture_first_and_the_rows_tried(fmt_models):
    """An outside audit (103): a factory of another architecture than the checkpoints' was told as "probe set ...
    does not run through" it, the keys' mismatch unsaid; and torch's message about the two probes the check runs
    ("expected input[1, 2, 8, 8] ... got 2 channels") named a shape the user never made."""
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make_seq", "--probes", "fmtarch:probes", "--out", "zoo",
                  cwd=fmt_models, env={"COLUMNS": "400"})
    err = " ".join(res.stderr.split())
    assert res.returncode == 2 and _nothing_written(fmt_models) and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "is missing key 'emb.weight' for this architecture" in err and "has unexpected key 'fc1.weight'" in err, err
    assert err.endswith("(nor do the probes run through 'fmtarch:make_seq': is it the checkpoints' architecture?)"), err
    # not for another mistake of --arch's (an unknown layer, no probes given): review 104
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make_seq", "--layers", "fc1", "--out", "zoo", cwd=fmt_models,
                  env={"COLUMNS": "400"})
    assert res.returncode == 2 and "unknown layer 'fc1' for architecture 'fmtarch:make_seq'" in res.stderr, res.stderr
    assert "nor do the probes" not in res.stderr
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--probes", "fmtarch:probes_column", "--out", "zoo",
                  cwd=fmt_models, env={"COLUMNS": "400"})
    err = " ".join(res.stderr.split())
    assert res.returncode == 2 and _nothing_written(fmt_models), res.stderr
    assert ("error: probe set 'in_dist' [10, 6, 1] does not run through 'fmtarch:make' (tried on its first 2, [2, 6, 1]): "
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied") in err, err


def test_the_same_output_check_guards_labelled_data_modules_and_extraction(fmt_models):
    import fmtarch

    x, y = torch.randn(5, 6), torch.zeros(5, dtype=torch.long)
    with pytest.raises(UserError, match=r"returns a dict \(logits: tensor \[2, 3\]\) from forward") as e:
        import_checkpoints(fmt_models / "ckpts", "fmtarch:make_dict", fmt_models / "zoo", data=(x, y))
    assert "\n" not in str(e.value) and _nothing_written(fmt_models)
    with pytest.raises(UserError, match=r"'fmtarch:make_tup' returns a tuple \(tensor \[2, 3\], tensor \[2, 8\]\)"):
        zoo_from_modules([fmtarch.make_tup(), fmtarch.make_tup()], fmt_models / "zoo", probes=fmtarch.probes(),
                         factory="fmtarch:make_tup")
    assert _nothing_written(fmt_models)
    # with neither probes nor data nothing runs at import; the batched family says it at extraction
    from training.families.module import ModuleFamily

    fam = ModuleFamily(factory=fmtarch.make_tup, input_shape=(6,), label="fmtarch:make_tup")
    params = {k: torch.stack([v, v]) for k, v in fmtarch.make_tup().state_dict().items()}
    with pytest.raises(UserError, match=r"'fmtarch:make_tup' returns a tuple \(tensor \[3, 3\], tensor \[3, 8\]\) from forward"):
        fam.forward(params, torch.randn(3, 6))


@pytest.mark.parametrize("prefix,who", [("module.", "DataParallel / DistributedDataParallel"),
                                        ("_orig_mod.", "torch.compile"),
                                        ("module._orig_mod.", "DataParallel / DistributedDataParallel, torch.compile")])
def test_a_wrapper_prefix_on_every_key_is_stripped_and_said(fmt_models, prefix, who):
    plain = {f.stem: torch.load(f, weights_only=True) for f in sorted((fmt_models / "ckpts").glob("*.pt"))}
    _resave(fmt_models / "ckpts", lambda sd: {prefix + k: v for k, v in sd.items()})
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--out", "zoo", cwd=fmt_models, env={"COLUMNS": "400"})
    assert res.returncode == 0, res.stderr
    assert f"stripped the key prefix '{prefix}' ({who}) from every checkpoint" in res.stdout, res.stdout
    zoo = Zoo.open(fmt_models / "zoo")
    params = zoo.params()
    assert sorted(params) == sorted(plain["m0"])
    for i, mid in enumerate(zoo.model_ids):
        assert all(torch.equal(params[k][i], v) for k, v in plain[mid].items())


def test_a_prefix_that_does_not_explain_the_keys_is_an_error_naming_it(fmt_models):
    # one key short: stripping would not make the keys the architecture's, so nothing is renamed
    _resave(fmt_models / "ckpts", lambda sd: {f"module.{k}": v for k, v in sd.items() if k != "head.bias"})
    with pytest.raises(UserError) as e:
        import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo")
    assert str(e.value).endswith("m0.pt' is missing key 'fc1.weight' for this architecture (and 3 more) and has unexpected "
                                 "key 'module.fc1.weight' (and 2 more); every key starts with 'module.' (DataParallel / "
                                 "DistributedDataParallel), but even without it key 'head.bias' is missing (and 3 more "
                                 "checkpoints refused: m1.pt, m2.pt, m3.pt); every checkpoint was refused"), str(e.value)
    assert _nothing_written(fmt_models)


def test_an_unknown_prefix_is_not_stripped_but_the_error_says_the_keys_match_without_it(fmt_models):
    _resave(fmt_models / "ckpts", lambda sd: {f"model.{k}": v for k, v in sd.items()})  # a Lightning module's self.model
    with pytest.raises(UserError) as e:
        import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo")
    assert ("has unexpected key 'model.fc1.weight' (and 3 more); every key starts with 'model.' and matches without it: "
            "save the inner module's state_dict, or strip 'model.' from the keys") in str(e.value)
    assert _nothing_written(fmt_models)


def test_a_model_whose_own_submodule_is_named_module_is_not_renamed():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = nn.Linear(2, 2)

    from fingerprint.import_checks import strip_wrapper_prefix

    sd = Outer().state_dict()
    assert strip_wrapper_prefix(sd, sd) == (sd, "")
    wrapped = {f"module.{k}": v for k, v in sd.items()}  # DataParallel around it: module.module.weight
    assert strip_wrapper_prefix(wrapped, sd)[1] == "module."


def test_a_training_checkpoint_is_read_from_its_only_state_dict_and_said(fmt_models):
    _resave(fmt_models / "ckpts", lambda sd: {"model": sd, "step": 100, "optimizer": {"state": {}, "param_groups": []}})
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--out", "zoo", cwd=fmt_models, env={"COLUMNS": "400"})
    assert res.returncode == 0, res.stderr
    assert "read the state_dict under key 'model' of every checkpoint" in res.stdout, res.stdout
    notes = []
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo2", on_note=notes.append)
    assert notes == ["read the state_dict under key 'model' of every checkpoint"]


def test_several_state_dicts_need_state_key_and_none_lists_the_keys(fmt_models):
    ck = fmt_models / "ckpts"
    _resave(ck, lambda sd: {"model": dict(sd), "ema": {k: v + 1 for k, v in sd.items()}, "step": 100})
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--out", "zoo", cwd=fmt_models, env={"COLUMNS": "400"})
    assert res.returncode == 2 and _nothing_written(fmt_models)
    assert ("m0.pt' holds 2 state_dicts, under 'model', 'ema': name the one to import with --state-key KEY (its top-level "
            "keys: model (dict of 4), ema (dict of 4), step (int))") in " ".join(res.stderr.split()), res.stderr
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--out", "zoo", "--state-key", "ema", cwd=fmt_models)
    assert res.returncode == 0, res.stderr
    ema = torch.load(ck / "m1.pt", weights_only=True)["ema"]
    params = Zoo.open(fmt_models / "zoo").params()
    assert all(torch.equal(params[k][1], v) for k, v in ema.items())
    for key, expect in (("nope", "has no top-level key 'nope' (--state-key; its keys: model, ema, step)"),
                        ("step", "key 'step' holds an int, not a state_dict")):
        with pytest.raises(UserError, match=expect.replace("(", r"\(").replace(")", r"\)")):
            import_checkpoints(ck, "fmtarch:make", fmt_models / "zoo3", state_key=key)
    _resave(ck, lambda d: {"step": d["step"], "hparams": {"lr": 0.1}})
    with pytest.raises(UserError, match=r"is not a state_dict \(a mapping of names to tensors\), nor holds one under a "
                                        r"top-level key: its keys are step \(int\), hparams \(dict of 1\)"):
        import_checkpoints(ck, "fmtarch:make", fmt_models / "zoo3")
    assert not (fmt_models / "zoo3").exists()


def test_the_lightning_layout_state_dict_key_wins_as_before(fmt_models):
    _resave(fmt_models / "ckpts", lambda sd: {"state_dict": sd, "ema": OrderedDict(sd), "epoch": 3})
    notes = []
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", on_note=notes.append)
    assert notes == ["read the state_dict under key 'state_dict' of every checkpoint"]


def test_an_empty_checkpoint_and_one_with_python_objects_say_what_to_do(fmt_models):
    """An empty dict says so (not "its keys are " with nothing after); a training checkpoint with
    Python objects beside the weights (argparse args) is refused unread, with how to save the weights alone."""
    import argparse

    ck = fmt_models / "ckpts"
    _resave(ck, lambda sd: {})
    with pytest.raises(UserError, match=r"m0.pt' is an empty dict: no weights to import"):
        import_checkpoints(ck, "fmtarch:make", fmt_models / "zoo3")
    for f in sorted(ck.glob("*.pt")):
        torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, f)
    with pytest.raises(UserError, match=r"refusing to unpickle arbitrary objects \(Unsupported global: GLOBAL "
                                        r"argparse.Namespace\); .*torch.save\(ckpt\['model'\], path\)"):
        import_checkpoints(ck, "fmtarch:make", fmt_models / "zoo3")
    assert not (fmt_models / "zoo3").exists()


def test_a_checkpoint_with_nan_weights_is_named_with_what_to_do(fmt_models):
    ck = fmt_models / "ckpts"
    sd = torch.load(ck / "m2.pt", weights_only=True)
    key = sorted(sd)[0]
    sd[key] = torch.full_like(sd[key], float("nan"))
    torch.save(sd, ck / "m2.pt")
    torch.save({}, ck / "m3.pt")  # a second bad one is named in the same run
    with pytest.raises(UserError, match=rf"m2.pt' key '{key}' holds NaN or inf: a diverged model cannot be fingerprinted; "
                                        r"import the others \(move this file out, and its row from the --metadata CSV\) "
                                        r"\(and 1 more checkpoint refused: m3.pt\); or pass --skip-bad to import the "
                                        r"other 2 \(their CSV rows are then ignored\)$"):
        import_checkpoints(ck, "fmtarch:make", fmt_models / "zoo3")
    assert not (fmt_models / "zoo3").exists()


def test_a_checkpoint_copied_twice_is_named_and_still_imported(fmt_models):
    import shutil

    shutil.copy(fmt_models / "ckpts" / "m1.pt", fmt_models / "ckpts" / "m9.pt")
    notes = []
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", on_note=notes.append)
    assert notes == ["1 model has exactly the weights of another (m9 = m1): a checkpoint copied twice? Duplicates read "
                     "as the closest of relatives"]
    assert len(Zoo.open(fmt_models / "zoo").model_ids) == 5
    notes.clear()
    (fmt_models / "ckpts" / "m9.pt").unlink()
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo2", on_note=notes.append)
    assert notes == []


def test_children_without_a_data_seed_column_get_a_note_about_shared_orders(fmt_models):
    """The ninth audit: fine-tuned children whose data-order seed j was the same under every parent,
    unrecorded, read as a difference crossing the families. Import says so when children come
    without a data_seed column, and not when the column is there."""
    csv = fmt_models / "meta.csv"
    csv.write_text("model_id,family,parent_id\nm0,a,\nm1,a,m0\nm2,b,\nm3,b,m2\n")
    notes = []
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", metadata=csv, on_note=notes.append)
    assert notes == ["children of parents (parent_id) and no data_seed column: if children of different parents share "
                     "a data-order or batch seed (child j of every parent trained with seed j), record it as data_seed "
                     "(or report with --strata COLUMN), or the label-free tests can read the shared order as a "
                     "difference that cuts across the families"]
    csv.write_text("model_id,family,parent_id,data_seed\nm0,a,,0\nm1,a,m0,1\nm2,b,,0\nm3,b,m2,1\n")
    notes.clear()
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo2", metadata=csv, on_note=notes.append)
    assert notes == []
    # the import line lists the model_id and the CSV's columns, not the zoo's own empty ones (kind, spawn_step, ...)
    res = run_cli("import", "ckpts", "--arch", "fmtarch:make", "--metadata", "meta.csv", "--out", "zoo3", cwd=fmt_models,
                  env={"COLUMNS": "400"})
    assert res.returncode == 0, res.stderr
    listed = " ".join(res.stdout.split()).split("(columns: ")[1].split(")")[0].split(", ")
    assert listed[0] == "model_id" and sorted(listed) == ["data_seed", "family", "model_id", "parent_id"], res.stdout


def test_a_parent_id_typo_or_cycle_is_refused_in_one_line(fmt_models):
    """An outside audit (eighteenth session): `B0` for the imported `m0` read silently as children of
    an absent parent, and a cycle imported and reported with no message. Both are refused, naming the
    file and the models; a parent that is not imported is still allowed."""
    csv = fmt_models / "meta.csv"
    for rows, msg in (("m0,a,\nm1,a,M0\n", "model 'm1' has parent_id 'M0', which names no model; did you mean 'm0'?"),
                      ("m0,a,m1\nm1,a,m0\n", "parent_id makes a cycle: m0 -> m1 -> m0 (a model cannot descend from itself)")):
        csv.write_text("model_id,family,parent_id\n" + rows)
        with pytest.raises(UserError, match="metadata file '.*meta.csv': " + re.escape(msg)):
            import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", metadata=csv)
        assert not (fmt_models / "zoo").exists()
    csv.write_text("model_id,family,parent_id\nm0,a,\nm1,a,gone\n")
    import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", metadata=csv, on_note=lambda m: None)


def test_two_files_with_one_stem_are_named_before_anything_else_is_read(fmt_models):
    """m1.pt and m1.safetensors: the duplicate id is the first error, naming both files (the audit saw
    another checkpoint's shape error first, and a metadata count of files as models)."""
    from safetensors.torch import save_file

    ckpts = fmt_models / "ckpts"
    save_file({k: v.contiguous() for k, v in torch.load(ckpts / "m1.pt", weights_only=True).items()},
              str(ckpts / "m1.safetensors"))
    torch.save({"fc1.weight": torch.zeros(2, 2)}, ckpts / "m0.pt")  # a broken checkpoint too
    (fmt_models / "meta.csv").write_text("model_id,family\nm1,0\n")
    with pytest.raises(UserError, match=r"^two checkpoints map to model id 'm1' \(m1.pt, m1.safetensors\) \(ids are "
                                        r"file stems, or directory names with --hf; rename one\)$"):
        import_checkpoints(ckpts, "fmtarch:make", fmt_models / "zoo", metadata=fmt_models / "meta.csv")
    assert _nothing_written(fmt_models)


def test_one_model_without_a_metadata_row_is_said_in_the_singular(fmt_models):
    (fmt_models / "meta.csv").write_text("model_id,family\nm0,0\nm1,0\nm2,1\n")
    with pytest.warns(UserWarning, match=r"covers 3 of 4 models: 1 has no row \(e.g. m3\)"):
        import_checkpoints(fmt_models / "ckpts", "fmtarch:make", fmt_models / "zoo", metadata=fmt_models / "meta.csv")


class _Tokens(nn.Module):
    """Token ids in, class logits out; the forward casts whatever it gets to ids (as users' do)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(23, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.emb(x.long()).mean(1))


def test_token_ids_stored_as_floats_are_named_at_import(tmp_path):
    """The seventh audit: float probes of token ids ran at import and failed at extraction with a
    bare IndexError (anomalous-inputs perturbs a float probe as a vector)."""
    ids = torch.randint(0, 23, (10, 5), generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"probe set 'tokens' holds whole numbers stored as floats and the module has an "
                                         r"nn.Embedding: if they are token ids, save them as an integer tensor"):
        zoo_from_modules([_Tokens(), _Tokens()], tmp_path / "zoo", probes={"tokens": ids.float()})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo_from_modules([_Tokens(), _Tokens()], tmp_path / "zoo2", probes={"tokens": ids})  # integer ids: silent
