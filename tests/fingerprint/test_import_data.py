"""Imported zoos with labelled data (issue 21 item 9): ``fingerprint import --data module:function``
stores ``(x, y)`` in the zoo, so that ``lmc-barrier`` and the task's loss work on models trained
elsewhere; without it, the error says to pass ``--data``."""

from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from fingerprint import Zoo
from fingerprint.batch import ModelBatch
from fingerprint.extraction import extract
from tests.conftest import run_cli
from training.core.errors import UserError

ARCH = textwrap.dedent('''
    import torch
    from torch import nn

    def make():
        return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))

    def probes():
        return {"in_dist": torch.randn(24, 5, generator=torch.Generator().manual_seed(1))}

    def data():
        x = torch.randn(96, 5, generator=torch.Generator().manual_seed(2))
        return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

    def bad_shape():
        return torch.randn(10, 4), torch.zeros(10, dtype=torch.long)

    def bad_classes():
        return torch.randn(10, 5), torch.full((10,), 7)
''')


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """Four models trained here with plain PyTorch on ``userdata.data()``, saved as state dicts."""
    (tmp_path / "userdata.py").write_text(ARCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import userdata

    importlib.reload(userdata)
    x, y = userdata.data()
    (tmp_path / "ckpts").mkdir()
    models = []
    for i in range(4):
        torch.manual_seed(i)
        m = userdata.make()
        opt = torch.optim.Adam(m.parameters(), lr=0.02)
        for _ in range(25):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        torch.save(m.state_dict(), tmp_path / "ckpts" / f"m{i}.pt")
        models.append(m.eval())
    return tmp_path, userdata, models


def cli(cwd, *args: str) -> subprocess.CompletedProcess:
    """``fingerprint ARGS`` in this process (``run_cli``) from ``cwd``, which ``trained`` put on sys.path as
    PYTHONPATH would."""
    return run_cli(*args, cwd=cwd)


def barrier(make, a: nn.Module, b: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas=(0.25, 0.5, 0.75)) -> float:
    """The loss barrier on the straight line between two plain modules, written out by hand."""
    def loss(sd):
        m = make()
        m.load_state_dict(sd)
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(x), y))

    sa, sb = a.state_dict(), b.state_dict()
    la, lb = loss(sa), loss(sb)
    return max(0.0, max(loss({k: (1 - t) * sa[k] + t * sb[k] for k in sa}) - ((1 - t) * la + t * lb) for t in alphas))


def test_import_with_data_gives_lmc_barriers_and_losses(trained):
    root, userdata, models = trained
    res = cli(root, "import", "ckpts", "--arch", "userdata:make", "--probes", "userdata:probes", "--data", "userdata:data",
              "--out", "zoo")
    assert res.returncode == 0, res.stderr
    assert (root / "zoo" / "data.h5").exists()
    zoo = Zoo.open(root / "zoo", trust_code=True)
    assert zoo.family_spec["data"] == {"n": 96, "loss": "classification", "source": "userdata:data"}
    (lmc,) = extract(zoo, ["lmc-barrier:n_probes=64,refine=0,balance=false"])  # the 5-point grid between the models as trained, as below
    assert lmc.error is None, lmc.error
    x, y = userdata.data()
    order = [int(m[1:]) for m in lmc.model_ids]
    want = np.array([[barrier(userdata.make, models[i], models[j], x[:64], y[:64]) if i != j else 0.0 for j in order] for i in order])
    assert np.allclose(lmc.values, want, atol=1e-4), (lmc.values, want)
    assert want.max() > 0  # independently trained models: a real barrier to find
    # the task's loss, as a plugin would compute it (losses and their gradients)
    mb = ModelBatch.from_zoo(zoo)
    xd, yd = mb.task.train_data()
    out = mb.forward(xd)
    per_model = mb.task.loss(out, yd.expand(len(mb), *yd.shape))
    with torch.no_grad():
        hand = [float(nn.functional.cross_entropy(models[int(m[1:])](x), y)) for m in mb.model_ids]
    assert np.allclose(per_model.numpy(), hand, atol=1e-5)


def test_without_data_the_error_says_to_pass_it_and_bad_data_is_refused(trained):
    root, userdata, models = trained
    zoo = Zoo.from_modules(models, out=root / "nodata", probes=userdata.probes())
    (r,) = extract(zoo, ["lmc-barrier"])
    assert "labelled training data" in r.error and "--data module:function" in r.error
    with pytest.raises(UserError, match=r"data 'userdata:bad_shape': inputs of shape \[4\], the probe sets' are \[5\]"):
        Zoo.from_modules(models, out=root / "bad", probes=userdata.probes(), data="userdata:bad_shape")
    with pytest.raises(UserError, match=r"integer y are class indices \[N\] in \[0, 3\)"):
        Zoo.from_modules(models, out=root / "bad", probes=userdata.probes(), data="userdata:bad_classes")
    assert not (root / "bad").exists()
    # in memory, and regression targets (float y of the outputs' shape: squared error)
    x = torch.randn(20, 5)
    with torch.no_grad():
        target = models[0](x)
    z = Zoo.from_modules(models, out=root / "reg", probes=userdata.probes(), data=(x, target))
    assert z.family_spec["data"]["loss"] == "regression"
    mb = ModelBatch.from_zoo(z)
    xd, yd = mb.task.train_data()
    losses = mb.task.loss(mb.forward(xd), yd.expand(len(mb), *yd.shape))
    assert float(losses[0]) < 1e-10 and float(losses[1:].min()) > 1e-3  # model 0 fits its own outputs


def test_what_the_outputs_are_read_as(tmp_path):
    """An outside audit of the sixteenth session: (1) float one-hot targets made a classifier a
    "regression"; (2) with float targets the output fingerprints still read the outputs' log-softmax,
    which hid a +1 offset of half the models; (3) without --data nothing said that two or more outputs
    are read as class logits. One-hot rows are class indices now, a regression's outputs are read as
    they are, and the import says how outputs are read when no data says."""
    from fingerprint.import_notes import logits_note
    from fingerprint.registry import get_extractor

    g = torch.Generator().manual_seed(3)
    mods = [nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval() for _ in range(2)]
    x = torch.randn(20, 5, generator=g)
    labels = torch.randint(0, 3, (20,), generator=g)
    hot = Zoo.from_modules(mods, out=tmp_path / "hot", probes={"in_dist": x}, data=(x, nn.functional.one_hot(labels, 3).float()))
    mb = ModelBatch.from_zoo(hot)
    assert mb.task.regression() is False and torch.equal(mb.task.train_data()[1], labels)
    reg = ModelBatch.from_zoo(Zoo.from_modules(mods, out=tmp_path / "reg", probes={"in_dist": x}, data=(x, torch.randn(20, 3, generator=g))))
    assert reg.task.regression()
    ex = get_extractor("probe-outputs")
    rows, _ = ex.compute(reg, ex.params)
    assert np.allclose(rows, reg.forward(x).flatten(1).numpy(), atol=1e-6)  # the values, not their log-softmax
    rows, _ = ex.compute(mb, ex.params)
    assert not np.allclose(rows, mb.forward(x).flatten(1).numpy(), atol=1e-3)
    dis = get_extractor("disagreement")  # the seventeenth session's second audit: it compared a regression's argmax
    d, meta = dis.compute(reg, {**dis.params, "probe_set": "in_dist"})
    out = reg.forward(x).flatten(1)
    assert meta["predicts"] == "values" and "resolution" not in meta
    assert np.allclose(d, (torch.cdist(out, out) / np.sqrt(20)).numpy(), atol=1e-5)
    # each model's output vector's SD over the probes, in the distances' units (version 8: audit 98's failed regressions)
    assert np.allclose(meta["spread"], out.reshape(2, 20, 3).var(1).sum(-1).sqrt().numpy(), rtol=1e-3)
    assert dis.compute(mb, {**dis.params, "probe_set": "in_dist"})[1]["predicts"] == "classes"
    assert "read as class logits" in logits_note(3, None) and "--data" in logits_note(3, None)
    assert logits_note(3, (x, labels, "classification")) == "" and logits_note(1, None) == ""
    one = [nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)).eval() for _ in range(2)]
    with pytest.raises(UserError, match=r"values -3\.\.3; a one-output model is a regression: give float y"):  # audit 66 F4
        Zoo.from_modules(one, out=tmp_path / "int", probes={"in_dist": x}, data=(x, torch.arange(20) % 7 - 3))
    assert not (tmp_path / "int").exists()


def test_outputs_at_every_position_are_said_at_import(tmp_path, monkeypatch):
    """Outside audit 112: a hand-written LM returning logits at all 8 positions, trained at the last, was imported
    without a word, and its 7 never-trained positions diluted the output fingerprints. The import says so in one line;
    a forward returning one row per input says nothing."""
    from fingerprint.import_notes import positions_note
    from tests.conftest import run_cli, saved_models

    src = saved_models(tmp_path, monkeypatch, "allpos", ALLPOS, 3)
    res = run_cli("import", src / "ckpts", "--arch", "allpos:make", "--probes", "allpos:probes", "--out", tmp_path / "zoo")
    assert res.returncode == 0, res.stderr
    assert ("the models' outputs are ['batch', 8, 5]: the output fingerprints read the last axis as the outputs (the "
            "classes) at every one of the 8 entries before it (positions? pixels?); a model trained at its last position "
            "alone reads best from a factory whose forward returns that position's (out[:, -1]), and one whose classes "
            "are another axis from one that moves them last") in " ".join(res.stdout.split()), res.stdout
    last = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 5))
    assert positions_note(last, {"in_dist": torch.randn(4, 8)}) == ""



def test_from_modules_warns_with_the_notes_the_import_prints(tmp_path):
    """``Zoo.from_modules`` gave none of the import's notes (the thirty-ninth session's list): now copies of one model,
    children without their data order, and outputs at every position each come as one warning; a plain classifier
    population of distinct models gets none (the outputs-as-logits line is the CLI's alone)."""
    import warnings

    module: dict = {}
    exec(ALLPOS, module)  # the import test's module: a forward returning every position
    torch.manual_seed(0)
    lms = [module["make"]().eval() for _ in range(3)]
    lms.append(lms[0])  # the same module twice
    ids = torch.randint(0, 5, (12, 8), generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning) as seen:
        Zoo.from_modules(lms, out=tmp_path / "lm", probes={"in_dist": ids},
                         metadata={"parent_id": ["", "m0", "m0", ""]})
    text = [str(w.message) for w in seen]
    assert any(t.startswith("Zoo.from_modules: the models' outputs are ['batch', 8, 5]") for t in text), text
    assert any(t.startswith("Zoo.from_modules: children of parents (parent_id) and no data_seed column") for t in text)
    from fingerprint.import_notes import shared_order_note

    assert shared_order_note({"parent_id": [None, float("nan"), "", "None"]}) == ""  # roots only (review 116)
    assert "Zoo.from_modules: 1 model has exactly the weights of another (m3 = m0)" in " ".join(text)
    mlps = [nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval() for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Zoo.from_modules(mlps, out=tmp_path / "mlp", probes={"in_dist": torch.randn(6, 5)})


ALLPOS = '''
import torch
from torch import nn


class AllPositions(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(5, 4), nn.Linear(4, 5)

    def forward(self, ids):
        return self.head(torch.cumsum(self.emb(ids), 1))  # [B, T, 5]: every position


def make():
    return AllPositions()


def probes():
    return {"in_dist": torch.randint(0, 5, (12, 8), generator=torch.Generator().manual_seed(0))}
'''
